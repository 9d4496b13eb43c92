//! `brindlectl`: inspect a running brindle-node and the cluster's resource file.

use brindle::ctl::{self, Layout, DEFAULT_CONFIG, DEFAULT_STATUS_SOCKET};
use brindle::status::{NodeRoutes, NodeStatus, ROUTES_REQUEST, STATUS_REQUEST};
use brindle_model::Kind;
use clap::{Parser, Subcommand, ValueEnum};
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
    /// List resources from the configuration file, like `calicoctl get`.
    Get {
        /// bgppeers, nodes, ippools, ipamconfigurations, blockaffinities or bgpconfigurations.
        kind: GetKind,
        /// Only these resources.
        names: Vec<String>,
        /// The Calico resource file.
        #[arg(long, env = "BRINDLE_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = GetFormat::Ps)]
        output: GetFormat,
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

fn get(kind: GetKind, names: &[String], config_path: &Path, output: GetFormat) -> ExitCode {
    let cfg = match brindle::datastore::file::read(config_path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let kind = kind.kind();
    let missing = ctl::missing_names(&cfg, kind, names);
    if !missing.is_empty() {
        return fail(format!(
            "{}: {} resource(s) not found: {}",
            config_path.display(),
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
            print!("{}", ctl::render_get_table(&cfg, kind, names, Layout::Wide));
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
            config,
            output,
        } => get(*kind, names, config, *output),
        Command::Validate { config, node } => validate(config, node.as_deref()),
    }
}
