//! The node agent's runtime: reads the Calico YAML file, computes this node's plan, runs
//! the BGP speaker, serves status on a Unix socket, and reloads the file when it changes
//! (keeping the last good configuration when a reload is bad).

use crate::calc::{NodePlan, PeerPlan};
use anyhow::Context;
use brindle_bgp::rib::{FibChange, LocalRoute};
use brindle_bgp::speaker::{PeerConfig, Speaker, SpeakerConfig};
use brindle_bgp::status::{ROUTES_REQUEST, STATUS_REQUEST};
use brindle_bgp::types::{Afi, Prefix};
use brindle_model::{self as config, Community};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// How long after a start the dataplane keeps routes BGP has not confirmed yet, at most.
const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Options of `brindle-node`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub config: PathBuf,
    pub node_name: String,
    pub state_dir: PathBuf,
    pub status_socket: PathBuf,
    /// Addresses to listen on for BGP (port from BGPConfiguration `listenPort`). Empty:
    /// `0.0.0.0` and `::`.
    pub listen_addresses: Vec<IpAddr>,
    /// How often the configuration file is checked for changes.
    pub reload_interval: Duration,
    /// Address for `/metrics`, `/liveness`, `/readiness` (None: off).
    pub http_address: Option<SocketAddr>,
    /// Program the kernel (felix). Off: BGP only.
    pub dataplane: bool,
    /// On shutdown, remove every route and link Brindle owns (default: leave them, so a
    /// restart does not interrupt traffic).
    pub cleanup: bool,
}

/// Converts one planned session into the speaker's peer configuration.
pub fn peer_config(p: &PeerPlan) -> PeerConfig {
    let mut c = PeerConfig::new(p.address, p.remote_as, p.local_as);
    c.name = p.name.clone();
    c.peer_type = p.peer_type;
    c.port = p.port;
    c.passive = p.passive;
    c.password = p.password.clone();
    c.ttl_security = p.ttl_security;
    c.source_address = p.source_address;
    c.keep_original_next_hop = p.keep_original_next_hop;
    if let Some(t) = p.max_restart_time {
        c.graceful_restart_time = Some(t.as_secs().min(4095) as u16);
    }
    if let Some(k) = p.keepalive_time {
        c.hold_time = (k.as_secs() * 3).clamp(3, 65535) as u16;
    }
    c.afis = vec![Afi::of(&p.address)];
    c
}

/// The prefixes this node originates, with their communities.
pub fn local_routes(plan: &NodePlan) -> BTreeMap<Prefix, LocalRoute> {
    plan.advertise
        .iter()
        .map(|a| {
            let mut r = LocalRoute::default();
            for c in &a.communities {
                match c {
                    Community::Standard(v) => r.communities.push(*v),
                    Community::Large(g, l1, l2) => r.large_communities.push((*g, *l1, *l2)),
                }
            }
            (Prefix::from(a.prefix), r)
        })
        .collect()
}

fn speaker_config(plan: &NodePlan, listen: Vec<SocketAddr>) -> SpeakerConfig {
    SpeakerConfig {
        node_name: plan.node_name.clone(),
        router_id: plan.router_id,
        local_as: plan.local_as,
        listen,
        next_hop_v4: plan.ipv4_address.map(|a| IpAddr::V4(a.ip())),
        next_hop_v6: plan.ipv6_address.map(|a| IpAddr::V6(a.ip())),
        restarting: false,
    }
}

/// Marker left in the state directory by a graceful shutdown, so that the next start
/// announces itself as restarting (RFC 4724 Restart State bit).
fn restart_marker(state_dir: &Path) -> PathBuf {
    state_dir.join("bgp-graceful-restart")
}

/// Fingerprint of the file, to notice edits (also replacement by rename).
fn file_stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn load_plan(opts: &NodeOptions) -> anyhow::Result<(config::ClusterConfig, NodePlan)> {
    let cfg = config::load(&opts.config)?;
    let plan = crate::calc::node_plan(&cfg, &opts.node_name)?;
    Ok((cfg, plan))
}

/// Binds the BGP listener: the given addresses, else both wildcards (IPv4 only when the
/// machine has no IPv6).
fn start_speaker(
    plan: &NodePlan,
    opts: &NodeOptions,
) -> anyhow::Result<(Speaker, mpsc::UnboundedReceiver<FibChange>)> {
    let port = plan.listen_port;
    if !opts.listen_addresses.is_empty() {
        let addrs: Vec<SocketAddr> = opts
            .listen_addresses
            .iter()
            .map(|a| SocketAddr::new(*a, port))
            .collect();
        return Speaker::start(restarting(speaker_config(plan, addrs.clone()), opts))
            .with_context(|| format!("cannot listen on {addrs:?}"));
    }
    let both = vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    ];
    match Speaker::start(restarting(speaker_config(plan, both), opts)) {
        Ok(s) => Ok(s),
        Err(e) => {
            warn!(error = %e, "cannot listen on [::]:{port}; trying IPv4 only");
            let v4 = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)];
            Speaker::start(restarting(speaker_config(plan, v4), opts))
                .with_context(|| format!("cannot listen on 0.0.0.0:{port}"))
        }
    }
}

fn restarting(mut c: SpeakerConfig, opts: &NodeOptions) -> SpeakerConfig {
    c.restarting = restart_marker(&opts.state_dir).exists();
    c
}

fn apply_plan(speaker: &Speaker, plan: &NodePlan) {
    speaker.set_identity(plan.router_id, plan.local_as);
    // routes before peers: a session that comes up must not send End-of-RIB before them
    speaker.set_local_routes(local_routes(plan));
    speaker.set_peers(plan.peers.iter().map(peer_config).collect());
    if let Some(id) = plan.route_reflector_cluster_id {
        warn!(
            cluster_id = %id,
            "routeReflectorClusterID is set but route reflection is not implemented yet: this node leaves the mesh and does not reflect routes"
        );
    }
}

/// Serves `status` and `routes` requests on the Unix socket.
async fn serve_status(
    listener: UnixListener,
    speaker: Speaker,
    dataplane: crate::dataplane::SharedStatus,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "status socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let speaker = speaker.clone();
        let dataplane = dataplane.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut line = String::new();
            let mut rd = BufReader::new(rd);
            if tokio::time::timeout(Duration::from_secs(5), rd.read_line(&mut line))
                .await
                .is_err()
            {
                return;
            }
            let body = match line.trim() {
                STATUS_REQUEST => speaker.status().await.and_then(|mut s| {
                    s.dataplane = dataplane.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    serde_json::to_string(&s).ok()
                }),
                ROUTES_REQUEST => speaker
                    .routes()
                    .await
                    .and_then(|s| serde_json::to_string(&s).ok()),
                other => Some(
                    serde_json::json!({"error": format!("unknown request {other:?}")}).to_string(),
                ),
            };
            let _ = wr
                .write_all(body.unwrap_or_else(|| "{}".into()).as_bytes())
                .await;
            let _ = wr.shutdown().await;
        });
    }
}

fn bind_status_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        // a stale socket from a previous run; refuse if an agent still answers on it
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another brindle-node is serving {}", path.display());
        }
        let _ = std::fs::remove_file(path);
    }
    UnixListener::bind(path)
        .with_context(|| format!("cannot bind status socket {}", path.display()))
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(opts: NodeOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create state dir {}", opts.state_dir.display()))?;
    let mut stamp = file_stamp(&opts.config);
    let (cfg, mut plan) = load_plan(&opts)?;
    info!(node = %plan.node_name, router_id = %plan.router_id, asn = plan.local_as, peers = plan.peers.len(), prefixes = plan.advertise.len(), "configuration loaded");
    let (speaker, mut fib) = start_speaker(&plan, &opts)?;
    let _ = std::fs::remove_file(restart_marker(&opts.state_dir));
    info!(listen = ?speaker.listen_addrs(), "BGP listening");
    apply_plan(&speaker, &plan);
    let status = bind_status_socket(&opts.status_socket)?;
    let dp_status = crate::dataplane::SharedStatus::default();
    tokio::spawn(serve_status(status, speaker.clone(), dp_status.clone()));
    let dataplane_metrics = std::sync::Arc::new(crate::health::DataplaneMetrics::default());
    if let Some(addr) = opts.http_address {
        let (sp, dp) = (speaker.clone(), dataplane_metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::health::serve(addr, sp, dp).await {
                error!("cannot serve metrics and health on {addr}: {e}");
            }
        });
    }

    // The dataplane model: configuration + CNI endpoint records + routes BGP learned.
    // Read the pods before the first apply, and keep the kernel's learned routes until
    // BGP has caught up (every peer sent End-of-RIB, or STARTUP_GRACE): after a restart
    // the routes are still right, and removing them would cut traffic.
    let (records, _) = brindle_felix::endpoint::read_all(&opts.state_dir);
    let mut asm = crate::dataplane::ModelAssembler {
        base: crate::dataplane::base_model(&cfg, &plan),
        endpoints: crate::dataplane::endpoints(&records),
        learned: BTreeMap::new(),
        routes_incomplete: true,
    };
    let started = std::time::Instant::now();
    let sync_speaker = speaker.clone();
    let (model_tx, model_rx) = tokio::sync::watch::channel(asm.model());
    let (base_tx, mut base_rx) = mpsc::unbounded_channel();
    let state_dir = opts.state_dir.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut bad_seen = std::collections::BTreeSet::new();
        loop {
            tokio::select! {
                c = fib.recv() => match c {
                    Some(c) => {
                        tracing::debug!(prefix = %c.prefix, next_hops = ?c.next_hops, "learned route change");
                        asm.learned_change(&c);
                        // a burst (a session's whole table) makes one model, not one per route
                        while let Ok(c) = fib.try_recv() {
                            asm.learned_change(&c);
                        }
                    }
                    None => break,
                },
                Some(b) = base_rx.recv() => asm.base = b,
                _ = tick.tick() => {
                    if asm.routes_incomplete && (started.elapsed() > STARTUP_GRACE || sync_speaker.synced().await) {
                        info!(after = ?started.elapsed(), "BGP caught up: routes the model lacks may now be removed");
                        asm.routes_incomplete = false;
                    }
                    let (records, bad) = brindle_felix::endpoint::read_all(&state_dir);
                    for (path, e) in bad {
                        if bad_seen.insert(path.clone()) {
                            warn!(file = %path.display(), error = %e, "unreadable endpoint record ignored");
                        }
                    }
                    asm.endpoints = crate::dataplane::endpoints(&records);
                }
            }
            let m = asm.model();
            model_tx.send_if_modified(|cur| {
                if *cur != m {
                    *cur = m;
                    true
                } else {
                    false
                }
            });
        }
    });
    let felix = opts.dataplane.then(|| {
        crate::dataplane::spawn(
            opts.state_dir.clone(),
            model_rx,
            dp_status.clone(),
            dataplane_metrics.clone(),
            opts.cleanup,
        )
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(opts.reload_interval);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => {
                let now = file_stamp(&opts.config);
                if now == stamp {
                    continue;
                }
                stamp = now;
                match load_plan(&opts) {
                    Ok((cfg, new)) => {
                        let _ = base_tx.send(crate::dataplane::base_model(&cfg, &new));
                        if new == plan {
                            continue;
                        }
                        if new.listen_port != plan.listen_port {
                            warn!(old = plan.listen_port, new = new.listen_port, "listenPort changed: takes effect after a restart");
                        }
                        info!(peers = new.peers.len(), prefixes = new.advertise.len(), "configuration reloaded");
                        apply_plan(&speaker, &new);
                        plan = new;
                    }
                    Err(e) => error!("configuration reload failed, keeping the last good configuration: {e:#}"),
                }
            }
        }
    }
    info!("shutting down");
    if opts.cleanup {
        speaker.shutdown().await;
    } else {
        // routes stay in the kernel; peers that support graceful restart keep ours too
        speaker.shutdown_for_restart().await;
        let _ = std::fs::write(
            restart_marker(&opts.state_dir),
            chrono::Utc::now().to_rfc3339(),
        );
    }
    if let Some((stop, handle)) = felix {
        let _ = stop.send(());
        match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(Err(e))) => error!("dataplane: {e:#}"),
            Ok(Err(_)) => error!("dataplane thread panicked"),
            _ => {}
        }
    }
    let _ = std::fs::remove_file(&opts.status_socket);
    Ok(())
}
