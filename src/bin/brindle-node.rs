//! `brindle-node`: the Brindle node agent.

use brindle::agent::{self, NodeOptions};
use brindle::datastore::DatastoreConfig;
use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Brindle node agent: BGP speaker and dataplane for one node, configured from the
/// Kubernetes API (Calico's CRDs and node annotations) or a file of Calico resources.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where the cluster's objects come from: `kubernetes` or `file`. Default:
    /// `kubernetes` when running in a cluster (KUBERNETES_SERVICE_HOST) or given
    /// --kubeconfig, else `file`.
    #[arg(long, env = "DATASTORE_TYPE", value_parser = ["kubernetes", "file"])]
    datastore: Option<String>,
    /// Kubeconfig for the Kubernetes datastore (default: in-cluster, else KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// File mode: multi-document YAML of Calico (and Kubernetes) objects; edits are picked
    /// up without a restart.
    #[arg(
        long,
        env = "BRINDLE_CONFIG",
        default_value = "/etc/brindle/brindle.yaml"
    )]
    config: PathBuf,
    /// This node's name (the Node resource to act as).
    #[arg(long, env = "NODENAME")]
    node_name: String,
    /// Directory for the agent's state.
    #[arg(long, default_value = "/var/lib/brindle")]
    state_dir: PathBuf,
    /// Unix socket serving status to brindlectl.
    #[arg(
        long,
        env = "BRINDLE_STATUS_SOCKET",
        default_value = "/var/run/brindle/status.sock"
    )]
    status_socket: PathBuf,
    /// Address to listen on for BGP (repeatable); default 0.0.0.0 and ::.
    #[arg(long = "listen-address")]
    listen_addresses: Vec<IpAddr>,
    /// Address for /metrics, /liveness and /readiness ("off" to disable).
    #[arg(long, default_value = "127.0.0.1:9099")]
    http_address: String,
    /// Do not program the kernel (BGP only).
    #[arg(long)]
    no_dataplane: bool,
    /// On shutdown remove every route and tunnel Brindle programmed (default: leave them so
    /// a restart does not interrupt traffic).
    #[arg(long)]
    cleanup: bool,
    /// File mode: seconds between checks of the file (a check is a `stat`; the default
    /// keeps a Service or EndpointSlice edit within a second of the BGP update).
    #[arg(long, default_value_t = 0.25)]
    reload_interval: f64,
    /// Kubernetes mode: seconds between IPAM garbage collection passes (0: off). Each
    /// node releases its own leaked addresses; the first node also a deleted node's.
    #[arg(long, default_value_t = 60.0)]
    ipam_gc_interval: f64,
    /// Seconds an address must stay leaked (its pod gone) before it is released
    /// (Calico's kube-controllers: 15 minutes).
    #[arg(long, default_value_t = 900.0)]
    ipam_gc_grace: f64,
}

fn main() {
    brindle::health::tune_malloc();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let http_address = match args.http_address.as_str() {
        "off" | "" => None,
        a => match a.parse() {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("brindle-node: --http-address {a:?}: {e}");
                std::process::exit(2);
            }
        },
    };
    let kubernetes = match args.datastore.as_deref() {
        Some(d) => d == "kubernetes",
        None => args.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    };
    let datastore = if kubernetes {
        DatastoreConfig::Kubernetes {
            kubeconfig: args.kubeconfig.clone(),
            node_name: args.node_name.clone(),
        }
    } else {
        DatastoreConfig::File {
            path: args.config.clone(),
            poll: Duration::from_secs_f64(args.reload_interval.max(0.1)),
        }
    };
    let failsafe_env = match brindle::dataplane::FailsafeEnv::read(|k| std::env::var(k).ok()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("brindle-node: {e}");
            std::process::exit(2);
        }
    };
    let opts = NodeOptions {
        failsafe_env,
        datastore,
        http_address,
        dataplane: !args.no_dataplane,
        cleanup: args.cleanup,
        node_name: args.node_name,
        state_dir: args.state_dir,
        status_socket: args.status_socket,
        listen_addresses: args.listen_addresses,
        ipam_gc: (args.ipam_gc_interval > 0.0).then(|| brindle::agent::IpamGcOptions {
            interval: Duration::from_secs_f64(args.ipam_gc_interval.max(0.1)),
            grace: Duration::from_secs_f64(args.ipam_gc_grace.max(0.0)),
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(agent::run(opts)) {
        eprintln!("brindle-node: {e:#}");
        std::process::exit(1);
    }
}
