//! `brindlectl`: inspect a running brindle-node and the cluster's resource file.

use brindle::ctl::{self, Layout, DEFAULT_CONFIG, DEFAULT_STATUS_SOCKET};
use brindle::status::{NodeRoutes, NodeStatus, ROUTES_REQUEST, STATUS_REQUEST};
use brindle_model::Kind;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "brindlectl",
    version,
    about = "Inspect Brindle: BGP status of this node and the cluster's Calico resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// This node's agent (talks to brindle-node's status socket).
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// List resources, like `calicoctl get`: from the configuration file, or in Kubernetes
    /// mode (--kubeconfig or KUBECONFIG) from the API. `-o wide` on network policies adds
    /// this node's kernel counters (PACKETS, BYTES) from the agent's status socket.
    Get {
        /// bgppeers, nodes, ippools, ipamconfigurations, blockaffinities, bgpconfigurations,
        /// networkpolicies or globalnetworkpolicies.
        kind: GetKind,
        /// Only these resources.
        names: Vec<String>,
        #[command(flatten)]
        ds: DatastoreArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = GetFormat::Ps)]
        output: GetFormat,
        /// brindle-node's status socket (for `-o wide` policy counters).
        #[arg(long, env = "BRINDLE_STATUS_SOCKET", default_value = DEFAULT_STATUS_SOCKET)]
        socket: PathBuf,
    },
    /// IP address management, like `calicoctl ipam`: in Kubernetes mode (--kubeconfig or
    /// KUBECONFIG) Calico's IPAM CRDs, in file mode the node's store (--state-dir).
    Ipam {
        #[command(subcommand)]
        command: IpamCommand,
    },
    /// Network policy, like `calicoctl` would explain it: which policy and rule decide a flow.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Check the configuration file as brindle-node reads it: the file, then the BGP plan
    /// of every node in it (or of --node, shown in full). Fails when the agent would refuse it.
    Validate {
        #[arg(long, env = "BRINDLE_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only this node's plan, with its peers and advertised prefixes.
        #[arg(long)]
        node: Option<String>,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// BGP sessions of this node, like `calicoctl node status`.
    Status(SocketArgs),
    /// Routes in this node's BGP table.
    Routes(SocketArgs),
}

#[derive(Subcommand)]
enum IpamCommand {
    /// Pool (and block) usage, or who holds one address.
    Show {
        /// Also one row per block.
        #[arg(long)]
        show_blocks: bool,
        /// Who holds this address.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        #[command(flatten)]
        ds: DatastoreArgs,
        #[arg(short, long, value_enum, default_value_t = StatusFormat::Table)]
        output: StatusFormat,
    },
    /// Addresses without pods, pods without addresses, blocks without nodes, and whether
    /// blocks, handles and affinities agree.
    Check {
        #[command(flatten)]
        ds: DatastoreArgs,
        #[arg(short, long, value_enum, default_value_t = StatusFormat::Table)]
        output: StatusFormat,
    },
    /// Release addresses whoever holds them (e.g. ones `ipam check` reports leaked).
    Release {
        #[arg(long, required = true)]
        ip: Vec<std::net::IpAddr>,
        #[command(flatten)]
        ds: DatastoreArgs,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// The verdict on one flow and the policy and rule that decided it, from the
    /// compiled program (the same the dataplane is given).
    Explain {
        /// NAMESPACE/POD, hep/HOSTENDPOINT or an IP address.
        #[arg(long)]
        from: String,
        /// NAMESPACE/POD, hep/HOSTENDPOINT or an IP address.
        #[arg(long)]
        to: String,
        /// PORT[/tcp|udp|sctp] or icmp[/TYPE].
        #[arg(long)]
        port: String,
        /// The flow's source port (rules with source ports match only when it is given).
        #[arg(long)]
        source_port: Option<u16>,
        #[command(flatten)]
        ds: DatastoreArgs,
        #[arg(short, long, value_enum, default_value_t = StatusFormat::Table)]
        output: StatusFormat,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatastoreKind {
    Kubernetes,
    File,
}

#[derive(clap::Args)]
struct DatastoreArgs {
    /// Default: kubernetes when a kubeconfig is given, else file.
    #[arg(long, value_enum)]
    datastore: Option<DatastoreKind>,
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// File mode: the Calico resource file (for the pools, nodes and pods).
    #[arg(long, env = "BRINDLE_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// File mode: brindle-node's state directory (the store is <dir>/calico-ipam).
    #[arg(long, env = "BRINDLE_STATE_DIR", default_value = "/var/lib/brindle")]
    state_dir: PathBuf,
}

#[derive(clap::Args)]
struct SocketArgs {
    /// brindle-node's status socket.
    #[arg(long, env = "BRINDLE_STATUS_SOCKET", default_value = DEFAULT_STATUS_SOCKET)]
    socket: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = StatusFormat::Table)]
    output: StatusFormat,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Clone, Copy, ValueEnum)]
enum GetFormat {
    /// calicoctl's default columns.
    #[value(alias = "table")]
    Ps,
    Wide,
    Json,
    Yaml,
}

#[derive(Clone, Copy, ValueEnum)]
enum GetKind {
    #[value(alias = "bgppeer", alias = "bgpp")]
    Bgppeers,
    #[value(alias = "node", alias = "no")]
    Nodes,
    #[value(alias = "ippool", alias = "ipp")]
    Ippools,
    #[value(
        alias = "ipamconfiguration",
        alias = "ipamconfig",
        alias = "ipamconfigs"
    )]
    Ipamconfigurations,
    #[value(alias = "blockaffinity", alias = "ba")]
    Blockaffinities,
    #[value(alias = "bgpconfiguration", alias = "bgpconfig")]
    Bgpconfigurations,
    #[value(alias = "networkpolicy", alias = "netpol", alias = "np")]
    Networkpolicies,
    #[value(alias = "globalnetworkpolicy", alias = "gnp")]
    Globalnetworkpolicies,
    #[value(alias = "hostendpoint", alias = "hep", alias = "heps")]
    Hostendpoints,
    #[value(alias = "felixconfiguration", alias = "felixconfig")]
    Felixconfigurations,
}

impl GetKind {
    fn kind(self) -> Kind {
        match self {
            GetKind::Bgppeers => Kind::BgpPeer,
            GetKind::Nodes => Kind::Node,
            GetKind::Ippools => Kind::IpPool,
            GetKind::Ipamconfigurations => Kind::IpamConfig,
            GetKind::Blockaffinities => Kind::BlockAffinity,
            GetKind::Bgpconfigurations => Kind::BgpConfiguration,
            GetKind::Networkpolicies => Kind::NetworkPolicy,
            GetKind::Globalnetworkpolicies => Kind::GlobalNetworkPolicy,
            GetKind::Hostendpoints => Kind::HostEndpoint,
            GetKind::Felixconfigurations => Kind::FelixConfiguration,
        }
    }
}

/// Prints `brindlectl: <message>` on stderr and fails.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("brindlectl: {message}");
    ExitCode::FAILURE
}

fn print_doc<T: serde::Serialize>(value: &T, json: bool) -> ExitCode {
    let text = if json {
        serde_json::to_string_pretty(value)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| e.to_string())
    } else {
        ctl::to_yaml(value)
    };
    match text {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("cannot format output: {e}")),
    }
}

fn node_status(args: &SocketArgs) -> ExitCode {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let status: NodeStatus = match ctl::fetch(&args.socket, STATUS_REQUEST, timeout) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match args.output {
        StatusFormat::Table => {
            print!(
                "{}",
                ctl::render_status_table(&status, chrono::Local::now())
            );
            ExitCode::SUCCESS
        }
        StatusFormat::Json => print_doc(&status, true),
        StatusFormat::Yaml => print_doc(&status, false),
    }
}

fn node_routes(args: &SocketArgs) -> ExitCode {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let routes: NodeRoutes = match ctl::fetch(&args.socket, ROUTES_REQUEST, timeout) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match args.output {
        StatusFormat::Table => {
            print!("{}", ctl::render_node_routes(&routes));
            ExitCode::SUCCESS
        }
        StatusFormat::Json => print_doc(&routes, true),
        StatusFormat::Yaml => print_doc(&routes, false),
    }
}

fn get(
    kind: GetKind,
    names: &[String],
    ds: &DatastoreArgs,
    output: GetFormat,
    socket: &Path,
) -> ExitCode {
    let kind = kind.kind();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let (cfg, source) = match rt.block_on(cluster(ds, &[kind])) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let missing = ctl::missing_names(&cfg, kind, names);
    if !missing.is_empty() {
        return fail(format!(
            "{source}: {} resource(s) not found: {}",
            kind,
            missing.join(", ")
        ));
    }
    match output {
        GetFormat::Ps => {
            print!(
                "{}",
                ctl::render_get_table(&cfg, kind, names, Layout::Narrow)
            );
            ExitCode::SUCCESS
        }
        GetFormat::Wide => {
            let counters = if matches!(kind, Kind::NetworkPolicy | Kind::GlobalNetworkPolicy) {
                match ctl::fetch::<NodeStatus>(socket, STATUS_REQUEST, Duration::from_secs(3)) {
                    Ok(s) => Some(s.dataplane.map(|d| d.policy_counters).unwrap_or_default()),
                    Err(e) => {
                        eprintln!("brindlectl: no policy counters (PACKETS, BYTES): {e}");
                        None
                    }
                }
            } else {
                None
            };
            print!(
                "{}",
                ctl::render_get_table_with(&cfg, kind, names, Layout::Wide, counters.as_deref())
            );
            ExitCode::SUCCESS
        }
        GetFormat::Json => print_doc(&ctl::get_document(&cfg, kind, names), true),
        GetFormat::Yaml => print_doc(&ctl::get_document(&cfg, kind, names), false),
    }
}

fn validate(config_path: &Path, node: Option<&str>) -> ExitCode {
    // brindle-node's file datastore reads the file this way, then plans its node
    let cfg = match brindle::datastore::file::read(config_path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    for w in &cfg.warnings {
        eprintln!("brindlectl: warning: {w}");
    }
    let names: Vec<String> = match node {
        Some(n) => vec![n.to_string()],
        None => cfg.nodes.iter().map(|n| n.name.clone()).collect(),
    };
    let mut plans = Vec::new();
    let mut refused = false;
    for name in &names {
        match brindle::calc::node_plan(&cfg, name) {
            Ok(p) => plans.push(p),
            Err(e) => {
                eprintln!(
                    "brindlectl: {}: node {name}: brindle-node would not start: {e}",
                    config_path.display()
                );
                refused = true;
            }
        }
    }
    if refused {
        return ExitCode::FAILURE;
    }
    println!(
        "{}: OK ({} resources: {} nodes, {} BGP peers, {} IP pools, {} block affinities)",
        config_path.display(),
        cfg.resources.len(),
        cfg.nodes.len(),
        cfg.bgp_peers.len(),
        cfg.ip_pools.len(),
        cfg.block_affinities.len()
    );
    if node.is_none() {
        for p in &plans {
            println!(
                "Node {}: router ID {}, AS {}, port {}, {} BGP peers, {} advertised prefixes",
                p.node_name,
                p.router_id,
                p.local_as,
                p.listen_port,
                p.peers.len(),
                p.advertise.len()
            );
        }
        return ExitCode::SUCCESS;
    }
    let plan = &plans[0];
    println!(
        "\nNode {}: router ID {}, AS {}, port {}",
        plan.node_name, plan.router_id, plan.local_as, plan.listen_port
    );
    let rows: Vec<Vec<String>> = plan
        .peers
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format!("{}", p.address),
                p.port.to_string(),
                p.remote_as.to_string(),
                p.peer_type.calico_name().to_string(),
                if p.passive { "passive" } else { "active" }.to_string(),
            ]
        })
        .collect();
    print!(
        "\n{}",
        ctl::columns(&["PEER", "ADDRESS", "PORT", "ASN", "TYPE", "MODE"], &rows)
    );
    let rows: Vec<Vec<String>> = plan
        .advertise
        .iter()
        .map(|a| {
            let comms: Vec<String> = a.communities.iter().map(|c| c.to_string()).collect();
            vec![a.prefix.to_string(), comms.join(" ")]
        })
        .collect();
    print!("\n{}", ctl::columns(&["ADVERTISED", "COMMUNITIES"], &rows));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Node {
            command: NodeCommand::Status(args),
        } => node_status(args),
        Command::Node {
            command: NodeCommand::Routes(args),
        } => node_routes(args),
        Command::Get {
            kind,
            names,
            ds,
            output,
            socket,
        } => get(*kind, names, ds, *output, socket),
        Command::Validate { config, node } => validate(config, node.as_deref()),
        Command::Ipam { command } => ipam(command),
        Command::Policy { command } => policy(command),
    }
}

/// The cluster's pods, namespaces and policies, from either datastore.
async fn policy_cluster(ds: &DatastoreArgs) -> Result<brindle_model::ClusterConfig, String> {
    cluster(
        ds,
        &[
            Kind::Pod,
            Kind::Namespace,
            Kind::KubernetesNetworkPolicy,
            Kind::NetworkPolicy,
            Kind::GlobalNetworkPolicy,
            Kind::HostEndpoint,
            Kind::GlobalNetworkSet,
            Kind::NetworkSet,
            Kind::FelixConfiguration,
        ],
    )
    .await
    .map(|(c, _)| c)
}

/// The objects of `kinds` from either datastore (the file holds every kind), and where
/// they came from, for messages.
async fn cluster(
    ds: &DatastoreArgs,
    kinds: &[Kind],
) -> Result<(brindle_model::ClusterConfig, String), String> {
    let kube = match ds.datastore {
        Some(DatastoreKind::Kubernetes) => true,
        Some(DatastoreKind::File) => false,
        None => ds.kubeconfig.is_some(),
    };
    if !kube {
        return brindle::datastore::file::read(&ds.config)
            .map(|c| (c, ds.config.display().to_string()))
            .map_err(|e| e.to_string());
    }
    let client = brindle::datastore::kubernetes::client(ds.kubeconfig.as_deref())
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let group = brindle::datastore::kubernetes::detect_group(&client).await?;
    let objects = brindle::datastore::kubernetes::list_objects(&client, group, kinds).await?;
    let mut rejected = Vec::new();
    let cfg =
        brindle_model::ClusterConfig::from_objects_lenient("kubernetes", objects, &mut rejected);
    for (what, e) in rejected {
        eprintln!("warning: {what}: {e} (skipped)");
    }
    Ok((cfg, "kubernetes".to_string()))
}

fn policy(command: &PolicyCommand) -> ExitCode {
    let PolicyCommand::Explain {
        from,
        to,
        port,
        source_port,
        ds,
        output,
    } = command;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = match rt.block_on(policy_cluster(ds)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (program, warnings) = brindle_policies::program_of(&cfg);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let world = brindle_policies::world_of(&cfg);
    let flow = (|| {
        let (protocol, port) = ctl::policy::parse_port(port)?;
        Ok::<_, String>(brindle_policies::Flow {
            src: ctl::policy::resolve(&world, from)?,
            dst: ctl::policy::resolve(&world, to)?,
            protocol,
            port,
            src_port: *source_port,
        })
    })();
    let flow = match flow {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A host endpoint's failsafe ports are its node's (FelixConfiguration).
    let node = [flow.dst, flow.src]
        .iter()
        .find_map(|ip| world.endpoint_at(*ip).and_then(|e| e.host.as_ref()))
        .map(|h| h.node.clone())
        .unwrap_or_default();
    let (inbound, outbound) = cfg.failsafe_ports(&node);
    let env = match brindle::dataplane::FailsafeEnv::read(|k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failsafe = brindle_policies::FailsafePorts {
        inbound: env.inbound.unwrap_or(inbound),
        outbound: env.outbound.unwrap_or(outbound),
    };
    let d = brindle_policies::evaluate_with(&program, &world, &flow, &failsafe);
    match output {
        StatusFormat::Table => {
            print!("{}", ctl::policy::render(&world, &flow, &d));
            ExitCode::SUCCESS
        }
        o => print_ipam_doc(&d, *o),
    }
}

/// The cluster as `ipam` needs it: the store, the pools, the pods and the nodes.
struct IpamWorld {
    source: ctl::ipam::Source,
    pools: Vec<brindle_model::IpPoolSpec>,
    pods: Vec<brindle::ipam::report::PodAddresses>,
    nodes: std::collections::BTreeSet<String>,
}

async fn ipam_world(ds: &DatastoreArgs) -> Result<IpamWorld, String> {
    use brindle::ipam::report::PodAddresses;
    let kube = match ds.datastore {
        Some(DatastoreKind::Kubernetes) => true,
        Some(DatastoreKind::File) => false,
        None => ds.kubeconfig.is_some(),
    };
    if kube {
        let client = brindle::datastore::kubernetes::client(ds.kubeconfig.as_deref())
            .await
            .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
        let group = brindle::datastore::kubernetes::detect_group(&client).await?;
        let pools = brindle::datastore::kubernetes::list_ip_pools(&client, group).await?;
        let pod_api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client.clone());
        let node_api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
        let lp = kube::api::ListParams::default();
        let pods = pod_api
            .list(&lp)
            .await
            .map_err(|e| format!("listing pods: {e}"))?
            .items
            .into_iter()
            .filter(|p| {
                !p.spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false)
            })
            .map(|p| {
                let status = p.status.unwrap_or_default();
                let mut ips: Vec<IpAddr> = status
                    .pod_ips
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|i| i.ip.parse().ok())
                    .collect();
                if ips.is_empty() {
                    let ann = p.metadata.annotations.clone().unwrap_or_default();
                    ips = ann
                        .get("cni.projectcalico.org/podIPs")
                        .map(|v| {
                            v.split(',')
                                .filter_map(|s| s.split('/').next()?.parse().ok())
                                .collect()
                        })
                        .unwrap_or_default();
                }
                PodAddresses {
                    namespace: p.metadata.namespace.unwrap_or_default(),
                    name: p.metadata.name.unwrap_or_default(),
                    node: p.spec.and_then(|s| s.node_name).unwrap_or_default(),
                    ips,
                }
            })
            .collect();
        let nodes = node_api
            .list(&lp)
            .await
            .map_err(|e| format!("listing nodes: {e}"))?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        Ok(IpamWorld {
            source: ctl::ipam::Source::Kube(brindle::ipam::kubernetes::KubeStore::new(
                client, group,
            )),
            pools,
            pods,
            nodes,
        })
    } else {
        let cfg = brindle::datastore::file::read(&ds.config)
            .map_err(|e| format!("{}: {e}", ds.config.display()))?;
        let mut pods: Vec<PodAddresses> = cfg
            .pods
            .iter()
            .filter(|p| !p.host_network)
            .map(|p| PodAddresses {
                namespace: p.namespace.to_string(),
                name: p.name.clone(),
                node: p.node_name.as_deref().unwrap_or("").to_string(),
                ips: p.ips.clone(),
            })
            .collect();
        // This node's pods as the CNI plugin recorded them.
        for r in brindle_felix::endpoint::read_all(&ds.state_dir).0 {
            if !pods
                .iter()
                .any(|p| p.namespace == r.namespace && p.name == r.pod)
            {
                pods.push(PodAddresses {
                    namespace: r.namespace.clone(),
                    name: r.pod.clone(),
                    node: String::new(),
                    ips: r.ips.iter().map(|n| n.ip()).collect(),
                });
            }
        }
        Ok(IpamWorld {
            source: ctl::ipam::Source::File(brindle::ipam::file::FileStore::new(
                ds.state_dir.join("calico-ipam"),
            )),
            pools: cfg.ip_pools.clone(),
            pods,
            nodes: cfg.nodes.iter().map(|n| n.name.clone()).collect(),
        })
    }
}

fn print_ipam_doc<T: serde::Serialize>(v: &T, output: StatusFormat) -> ExitCode {
    print_doc(
        v,
        matches!(output, StatusFormat::Json | StatusFormat::Table),
    )
}

fn ipam(command: &IpamCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ds = match command {
        IpamCommand::Show { ds, .. }
        | IpamCommand::Check { ds, .. }
        | IpamCommand::Release { ds, .. } => ds,
    };
    let world = match rt.block_on(ipam_world(ds)) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let snap = match command {
        IpamCommand::Release { .. } => None,
        _ => match rt.block_on(world.source.snapshot()) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: reading the IPAM objects: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match command {
        IpamCommand::Show {
            show_blocks,
            ip,
            output,
            ..
        } => {
            let snap = snap.expect("read above");
            if let Some(ip) = ip {
                let h = brindle::ipam::report::holder(&snap.blocks, *ip);
                return match output {
                    StatusFormat::Table => {
                        print!("{}", ctl::ipam::render_ip(*ip, h.as_ref()));
                        ExitCode::SUCCESS
                    }
                    o => print_ipam_doc(&h, *o),
                };
            }
            let usage = brindle::ipam::report::usage(&world.pools, &snap.blocks, *show_blocks);
            match output {
                StatusFormat::Table => {
                    print!("{}", ctl::ipam::render_usage(&usage));
                    ExitCode::SUCCESS
                }
                o => print_ipam_doc(&usage, *o),
            }
        }
        IpamCommand::Check { output, .. } => {
            let snap = snap.expect("read above");
            let c = ctl::ipam::check(&snap, &world.pods, &world.nodes, &world.pools);
            match output {
                StatusFormat::Table => {
                    let ips: usize = world.pods.iter().map(|p| p.ips.len()).sum();
                    print!(
                        "{}",
                        ctl::ipam::render_check(&c, &snap.blocks, &world.pools, ips)
                    );
                    ExitCode::SUCCESS
                }
                o => print_ipam_doc(&c, *o),
            }
        }
        IpamCommand::Release { ip, .. } => {
            match rt.block_on(world.source.release(&world.pools, ip)) {
                Ok(not) => {
                    let mut code = ExitCode::SUCCESS;
                    for a in ip {
                        if not.contains(a) {
                            eprintln!("IP address {a} is not assigned");
                            code = ExitCode::FAILURE;
                        } else {
                            println!("Successfully released IP address {a}");
                        }
                    }
                    code
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
