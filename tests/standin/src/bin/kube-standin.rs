//! `kube-standin`: the Kubernetes API stand-in as a process, for shell-driven and e2e
//! tests. Serves until SIGTERM/SIGINT; the kubeconfig is written (atomically) once the
//! listener is bound, so its appearance means "ready".
//!
//! `kube-standin ctl --socket PATH COMMAND...` sends one control command instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use brindle_kube_standin::{control, Config, StandIn};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kube-standin",
    version,
    about = "Kubernetes API stand-in for Brindle's tests"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: Serve,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Send one command to a running stand-in's control socket and print the answer.
    Ctl {
        /// The control socket.
        #[arg(long)]
        socket: PathBuf,
        /// The command and its arguments (`help` lists them).
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct Serve {
    /// Address to listen on (port 0: any free port; the kubeconfig tells which).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The bearer token clients must present.
    #[arg(long, default_value = "standin-token", env = "KUBE_STANDIN_TOKEN")]
    token: String,
    /// Files of objects to load at start. Repeatable. `*.json`, `*.jsonl`, `*.ndjson`:
    /// JSON (an object, an array, a `List`, or one per line), created under one lock (the
    /// fast way to load a large cluster); otherwise multi-document YAML, applied (CRDs
    /// first).
    #[arg(long)]
    load: Vec<PathBuf>,
    /// Server-side cap on a watch's duration, seconds.
    #[arg(long, default_value_t = 1800.0)]
    watch_timeout: f64,
    /// Interval of watch bookmarks, seconds.
    #[arg(long, default_value_t = 60.0)]
    bookmark_interval: f64,
    /// Events kept for watches.
    #[arg(long, default_value_t = 10_000)]
    history: usize,
    /// Budget of the watch history: MiB of objects its events hold.
    #[arg(long, default_value_t = 256)]
    history_mib: usize,
    /// Extra subject alternative names for the server certificate. Repeatable.
    #[arg(long)]
    san: Vec<String>,
    /// Host for the kubeconfig's server URL (default: the listen IP).
    #[arg(long)]
    advertise: Option<String>,
    /// Serve the control socket (line protocol; `help` lists the commands) here.
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Also write the CA certificate (PEM) here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
}

fn secs(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{what} {s}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    if let Some(Cmd::Ctl { socket, command }) = cli.cmd {
        match control::request(&socket, &command.join(" ")).await {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                return Ok(());
            }
            Err(e) => {
                eprintln!("kube-standin ctl: {e:#}");
                std::process::exit(1);
            }
        }
    }
    let a = cli.serve;
    let kubeconfig = a.kubeconfig.context("--kubeconfig is required to serve")?;
    let standin = StandIn::start(Config {
        listen: a.listen,
        token: a.token,
        sans: a.san,
        advertise: a.advertise,
        watch_timeout: secs(a.watch_timeout, "watch-timeout")?,
        bookmark_interval: secs(a.bookmark_interval, "bookmark-interval")?,
        history_limit: a.history,
        history_bytes: a.history_mib.saturating_mul(1 << 20),
        default_namespaces: true,
    })?;
    for f in &a.load {
        let json = f
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "jsonl" | "ndjson"));
        let t = std::time::Instant::now();
        let n = if json {
            standin.load_json_file(f)?
        } else {
            standin.load_file(f)?.len()
        };
        tracing::info!(
            "loaded {n} objects from {} in {:.2} s",
            f.display(),
            t.elapsed().as_secs_f64()
        );
    }
    if let Some(ca) = &a.ca_out {
        standin
            .write_ca(ca)
            .with_context(|| format!("writing {}", ca.display()))?;
    }
    if let Some(sock) = &a.control_socket {
        standin.serve_control_socket(sock)?;
    }
    standin
        .write_kubeconfig(&kubeconfig)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    tracing::info!(url = standin.url(), kubeconfig = %kubeconfig.display(), "serving");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping");
    if let Some(sock) = &a.control_socket {
        let _ = std::fs::remove_file(sock);
    }
    drop(standin);
    Ok(())
}
