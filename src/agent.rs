//! The node agent's runtime: reads the cluster's objects through the datastore seam
//! ([`crate::datastore`], file or Kubernetes), waits until every kind it needs is in
//! sync, computes this node's plan, runs the BGP speaker and the dataplane, serves status
//! on a Unix socket, and applies every later change (keeping the last good plan when a
//! change is bad). Backends are invisible from here on: one event stream, one snapshot.

use crate::calc::{NodePlan, PeerPlan};
use crate::datastore::{cache::Cache, Datastore, DatastoreConfig, Event, AGENT_KINDS};
use anyhow::Context;
use brindle_bgp::rib::{FibChange, LocalRoute, NextHopMode as BgpNextHopMode};
use brindle_bgp::speaker::{PeerConfig, Speaker, SpeakerConfig};
use brindle_bgp::types::{Afi, Prefix};
use brindle_model::{ClusterConfig, Community, NextHopMode};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// How long after a start the dataplane keeps routes BGP has not confirmed yet, at most.
const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Options of `brindle-node`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Where the cluster's objects come from.
    pub datastore: DatastoreConfig,
    pub node_name: String,
    pub state_dir: PathBuf,
    pub status_socket: PathBuf,
    /// Addresses to listen on for BGP (port from BGPConfiguration `listenPort`). Empty:
    /// `0.0.0.0` and `::`.
    pub listen_addresses: Vec<IpAddr>,
    /// Address for `/metrics`, `/liveness`, `/readiness` (None: off).
    pub http_address: Option<SocketAddr>,
    /// Program the kernel (felix). Off: BGP only.
    pub dataplane: bool,
    /// On shutdown, remove every route and link Brindle owns (default: leave them, so a
    /// restart does not interrupt traffic).
    pub cleanup: bool,
    /// Kubernetes mode: IPAM garbage collection (None: off).
    pub ipam_gc: Option<IpamGcOptions>,
    /// Failsafe ports from the environment (over FelixConfiguration's).
    pub failsafe_env: crate::dataplane::FailsafeEnv,
}

/// How often IPAM garbage collection runs and how long a leak must last.
#[derive(Debug, Clone, Copy)]
pub struct IpamGcOptions {
    pub interval: Duration,
    pub grace: Duration,
}

/// What IPAM garbage collection needs of the cluster: its pods and node names.
type GcView = Option<(
    Vec<std::sync::Arc<brindle_model::kubernetes::Pod>>,
    std::collections::BTreeSet<String>,
)>;

/// `AUTODETECT_POLL_INTERVAL` as calico-node reads it (a Go duration; unset: 60 s; zero:
/// off). A bad value is logged and the default used.
pub fn autodetect_poll_interval(v: Option<&str>) -> Option<Duration> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Some(Duration::from_secs(60)),
        Some(s) => match brindle_model::parse_go_duration(s) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => {
                warn!("AUTODETECT_POLL_INTERVAL: {e}; using 60s");
                Some(Duration::from_secs(60))
            }
        },
    }
}

/// Kubernetes mode: every `interval`, releases this node's leaked addresses (and, on the
/// first node, a deleted node's) as [`crate::ipam::gc`] decides.
async fn ipam_gc(
    store: crate::ipam::kubernetes::KubeStore,
    me: String,
    opts: IpamGcOptions,
    view: tokio::sync::watch::Receiver<GcView>,
) {
    use crate::ipam::{Block, Ipam, IpamSettings, Store};
    let mut gc = crate::ipam::gc::Gc::new();
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some((pods, nodes)) = view.borrow().clone() else {
            continue;
        };
        let blocks: Vec<Block> = match store.list::<Block>().await {
            Ok(b) => b.into_iter().map(|v| v.value).collect(),
            Err(e) => {
                warn!("IPAM GC: listing blocks: {e}");
                continue;
            }
        };
        let pods = crate::ipam::gc::pods_of(pods.iter().map(|p| &**p));
        let now = chrono::Utc::now().timestamp();
        let actions = gc.pass(
            &me,
            &blocks,
            &pods,
            &nodes,
            now,
            opts.grace.as_secs() as i64,
        );
        if actions.release.is_empty() && actions.release_hosts.is_empty() {
            continue;
        }
        let pools = match crate::datastore::kubernetes::list_ip_pools(store.client(), store.group())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!("IPAM GC: listing pools: {e}");
                continue;
            }
        };
        let ipam = Ipam::new(store.clone(), pools, IpamSettings::default());
        for r in &actions.release {
            match ipam
                .release_checked(r.ip, r.sequence, r.handle.as_deref())
                .await
            {
                Ok(true) => {
                    info!(ip = %r.ip, owner = %r.owner, handle = ?r.handle, "IPAM GC: released a leaked address (its pod is gone)")
                }
                Ok(false) => {}
                Err(e) => warn!(ip = %r.ip, "IPAM GC: {e}"),
            }
        }
        for n in &actions.release_hosts {
            match ipam.release_host(n).await {
                Ok(k) => {
                    info!(node = %n, blocks = k, "IPAM GC: the node is gone; gave back its block affinities")
                }
                Err(e) => warn!(node = %n, "IPAM GC: {e}"),
            }
        }
    }
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
    c.next_hop_mode = match p.next_hop_mode {
        NextHopMode::Auto => BgpNextHopMode::Auto,
        NextHopMode::SelfHop => BgpNextHopMode::SelfHop,
        NextHopMode::Keep => BgpNextHopMode::Keep,
    };
    c.allow_local_as = p.num_allowed_local_as_numbers.unwrap_or(0);
    c.rr_client = p.route_reflector_client;
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

/// Binds the BGP listener: the given addresses, else both wildcards (IPv4 only when the
/// machine has no IPv6).
fn start_speaker(
    plan: &NodePlan,
    opts: &NodeOptions,
) -> anyhow::Result<(Speaker, mpsc::UnboundedReceiver<FibChange>)> {
    let port = plan.listen_port;
    // --listen-address, else the plan's (bindMode: NodeIP), else the wildcards
    let chosen = if opts.listen_addresses.is_empty() {
        &plan.listen_addresses
    } else {
        &opts.listen_addresses
    };
    if !chosen.is_empty() {
        let addrs: Vec<SocketAddr> = chosen.iter().map(|a| SocketAddr::new(*a, port)).collect();
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
    speaker.set_cluster_id(plan.route_reflector_cluster_id);
    // routes before peers: a session that comes up must not send End-of-RIB before them
    speaker.set_local_routes(local_routes(plan));
    speaker.set_peers(plan.peers.iter().map(peer_config).collect());
}

/// This node's plan, with `CALICO_ROUTER_ID` (`hash` or an address) as calico-node reads it.
fn plan_for(cfg: &ClusterConfig, node: &str) -> anyhow::Result<NodePlan> {
    let router_id = match std::env::var("CALICO_ROUTER_ID") {
        Ok(v) => crate::calc::plan::RouterIdOverride::parse(&v)
            .map_err(|e| anyhow::anyhow!("CALICO_ROUTER_ID: {e}"))?,
        Err(_) => None,
    };
    Ok(crate::calc::plan::node_plan_with_router_id(
        cfg, node, router_id,
    )?)
}

/// How long a burst of datastore events is gathered into one snapshot.
const BURST: Duration = Duration::from_millis(100);

/// The agent's view of the datastore: the cache of objects, and what it has logged.
struct Cluster {
    cache: Cache,
    label: String,
    logged: std::collections::BTreeSet<String>,
    connected: bool,
    /// What `brindlectl node status` shows of the datastore.
    status: crate::status::SharedDatastoreStatus,
}

impl Cluster {
    fn new(label: &str) -> Cluster {
        Cluster {
            cache: Cache::new(),
            label: label.to_string(),
            logged: Default::default(),
            connected: true,
            status: {
                let s = crate::status::SharedDatastoreStatus::default();
                crate::status::update(&s, |d| *d = crate::status::DatastoreStatus::new(label));
                s
            },
        }
    }

    /// Logs `msg` once (a bad object is reported when it appears, not at every event).
    fn once(&mut self, msg: String) -> bool {
        if self.logged.len() > 10_000 {
            self.logged.clear();
        }
        self.logged.insert(msg)
    }

    /// Takes one event; true when the objects changed.
    fn handle(&mut self, mut e: Event) -> bool {
        if let Event::Apply(o) = &mut e {
            // Objects as written are for `brindlectl get`, which reads the datastore
            // itself; the agent plans from the decoded model alone (memory: ~2 KB per
            // Calico object, a BlockAffinity per node).
            o.raw.json = serde_json::Value::Null;
        }
        match &e {
            Event::Invalid {
                kind: None, error, ..
            } => {
                // a whole source (the file) that did not read: nothing of it is applied
                error!("configuration reload failed, keeping the last good configuration: {error}");
                crate::health::give_back_memory();
            }
            Event::Invalid { label, error, .. } if self.once(format!("{label}: {error}")) => {
                error!(object = %label, "skipped: {error}");
                // what decoding a refused object took goes back to the system
                crate::health::give_back_memory();
            }
            Event::Warnings(ws) => {
                for w in ws {
                    if self.once(w.clone()) {
                        warn!("{w}");
                    }
                }
            }
            Event::Connection(Some(reason)) => {
                if self.connected {
                    warn!(datastore = %self.label, "datastore unreachable, keeping the last state (forwarding and BGP sessions stay): {reason}");
                }
                self.connected = false;
            }
            Event::Connection(None) => {
                if !self.connected {
                    info!(datastore = %self.label, "datastore reachable again; resyncing");
                }
                self.connected = true;
            }
            Event::InSync(kind) => tracing::debug!(%kind, "in sync"),
            _ => {}
        }
        let connection = match &e {
            Event::Connection(x) => Some(x.clone()),
            _ => None,
        };
        let changed = self.cache.apply(e).changed;
        let in_sync = self.cache.in_sync(AGENT_KINDS);
        crate::status::update(&self.status, |d| {
            if let Some(x) = &connection {
                d.connection(x.as_deref());
            }
            d.in_sync = in_sync;
        });
        changed
    }

    /// The checked snapshot; objects left out and new warnings are logged once.
    fn snapshot(&mut self) -> ClusterConfig {
        let (cfg, rejected) = self.cache.snapshot(&self.label);
        for (label, e) in rejected {
            if self.once(format!("{label}: {e}")) {
                error!(object = %label, "skipped: {e}");
            }
        }
        for w in self.cache.new_warnings(&cfg) {
            warn!("{w}");
        }
        cfg
    }
}

/// Gathers events until every kind the agent needs is in sync and this node has a plan.
/// In file mode a file that gives no plan is an error (the agent does not start); from
/// the API, the node may not be described yet, so the agent waits. `None`: stopped.
async fn wait_for_plan(
    opts: &NodeOptions,
    datastore: &Datastore,
    cluster: &mut Cluster,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> anyhow::Result<Option<(ClusterConfig, NodePlan)>> {
    let started = std::time::Instant::now();
    let mut report = tokio::time::interval(Duration::from_secs(10));
    report.tick().await;
    let mut last_plan_error = String::new();
    let mut identity_checked = false;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(None),
            _ = sigterm.recv() => return Ok(None),
            _ = report.tick() => {
                let missing = cluster.cache.missing(AGENT_KINDS);
                if !missing.is_empty() {
                    let names: Vec<String> = missing.iter().map(|k| k.to_string()).collect();
                    info!(after = ?started.elapsed(), "waiting for the datastore: not in sync yet: {}", names.join(", "));
                }
                continue;
            }
            e = events.recv() => {
                let Some(e) = e else { anyhow::bail!("the datastore stopped before it was in sync") };
                cluster.handle(e);
                while let Ok(e) = events.try_recv() {
                    cluster.handle(e);
                }
            }
        }
        if !cluster.cache.in_sync(AGENT_KINDS) {
            continue;
        }
        let cfg = cluster.snapshot();
        if !identity_checked && matches!(opts.datastore, DatastoreConfig::Kubernetes { .. }) {
            // calico-node's startup: this node's addresses (IP, IP_AUTODETECTION_METHOD...)
            identity_checked = true;
            match crate::node_identity::ensure(datastore, &cfg, &opts.node_name).await {
                Ok(true) => continue, // the Node's watch event brings the new address
                Ok(false) => {}
                Err(e) => error!("node address: {e}"),
            }
        }
        match plan_for(&cfg, &opts.node_name) {
            Ok(plan) => {
                info!(after = ?started.elapsed(), objects = cluster.cache.len(), "datastore in sync");
                return Ok(Some((cfg, plan)));
            }
            Err(e) if matches!(opts.datastore, DatastoreConfig::File { .. }) => return Err(e),
            Err(e) => {
                let text = e.to_string();
                if text != last_plan_error {
                    warn!("waiting for this node's description in the datastore: {text}");
                    last_plan_error = text;
                }
            }
        }
    }
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(opts: NodeOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create state dir {}", opts.state_dir.display()))?;
    let (datastore, mut events) = Datastore::start(&opts.datastore).await?;
    let mut cluster = Cluster::new(opts.datastore.name());
    // Probes answer from the start (a large cluster takes a while to sync): liveness
    // says live, readiness why the node is not ready yet.
    let health = crate::health::Sources {
        speaker: Default::default(),
        dataplane: std::sync::Arc::new(crate::health::DataplaneMetrics::default()),
        datastore: cluster.status.clone(),
    };
    if let Some(addr) = opts.http_address {
        let src = health.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::health::serve(addr, src).await {
                error!("cannot serve metrics and health on {addr}: {e}");
            }
        });
    }
    let Some((cfg, mut plan)) = wait_for_plan(&opts, &datastore, &mut cluster, &mut events).await?
    else {
        return Ok(());
    };
    // the initial list's pages and decoding buffers are freed: give them back
    crate::health::give_back_memory();
    let (gc_tx, gc_rx) = tokio::sync::watch::channel::<GcView>(Some((
        cfg.pods.clone(),
        cfg.nodes.iter().map(|n| n.name.clone()).collect(),
    )));
    if let (Some(o), Some(store)) = (opts.ipam_gc, datastore.ipam_store()) {
        tokio::spawn(ipam_gc(store, opts.node_name.clone(), o, gc_rx));
    }
    info!(node = %plan.node_name, router_id = %plan.router_id, asn = plan.local_as, peers = plan.peers.len(), prefixes = plan.advertise.len(), "configuration loaded");
    let (speaker, mut fib) = start_speaker(&plan, &opts)?;
    let _ = std::fs::remove_file(restart_marker(&opts.state_dir));
    info!(listen = ?speaker.listen_addrs(), "BGP listening");
    apply_plan(&speaker, &plan);
    let status = crate::status_socket::bind(&opts.status_socket)?;
    let dp_status = crate::dataplane::SharedStatus::default();
    let service_status = crate::status::SharedServiceStatus::default();
    crate::status::update(&service_status, |s| *s = plan.services.clone());
    tokio::spawn(crate::status_socket::serve(
        status,
        crate::status_socket::Sources {
            speaker: speaker.clone(),
            dataplane: dp_status.clone(),
            datastore: cluster.status.clone(),
            services: service_status.clone(),
        },
    ));
    let dataplane_metrics = health.dataplane.clone();
    let _ = health.speaker.set(speaker.clone());

    // The dataplane model: configuration + CNI endpoint records + routes BGP learned.
    // Read the pods before the first apply, and keep the kernel's learned routes until
    // BGP has caught up (every peer sent End-of-RIB, or STARTUP_GRACE): after a restart
    // the routes are still right, and removing them would cut traffic.
    let (records, _) = brindle_felix::endpoint::read_all(&opts.state_dir);
    let mut asm = crate::dataplane::ModelAssembler {
        base: crate::dataplane::base_model(&cfg, &plan),
        endpoints: crate::dataplane::endpoints(&records),
        learned: BTreeMap::new(),
        kernel_reject: plan.services.kernel_reject.clone(),
        routes_incomplete: true,
        policy: crate::dataplane::policy_source(&cfg, &plan.node_name, &opts.failsafe_env),
        policy_cache: Default::default(),
    };
    // the first snapshot is not kept: the cache holds the objects (memory, measured in
    // BENCHMARKS.md)
    drop(cfg);
    let started = std::time::Instant::now();
    let sync_speaker = speaker.clone();
    let (model_tx, model_rx) = tokio::sync::watch::channel(asm.model());
    let (base_tx, mut base_rx) = mpsc::unbounded_channel();
    let state_dir = opts.state_dir.clone();
    let endpoint_events = crate::endpoint_events::bind(&opts.state_dir).with_context(|| {
        format!(
            "cannot bind {}",
            crate::endpoint_events::socket_path(&opts.state_dir).display()
        )
    })?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut records_tick = tokio::time::interval(crate::endpoint_events::SAFETY_RESYNC);
        let mut buf = [0u8; 256];
        let mut bad_seen = std::collections::BTreeSet::new();
        loop {
            let mut read_records = false;
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
                Some((b, reject, policy)) = base_rx.recv() => {
                    asm.base = b;
                    asm.kernel_reject = reject;
                    asm.policy = policy;
                }
                _ = tick.tick(), if asm.routes_incomplete => {
                    if started.elapsed() > STARTUP_GRACE || sync_speaker.synced().await {
                        info!(after = ?started.elapsed(), "BGP caught up: routes the model lacks may now be removed");
                        asm.routes_incomplete = false;
                    }
                }
                r = endpoint_events.recv(&mut buf) => {
                    if let Ok(n) = r {
                        tracing::debug!(container = %String::from_utf8_lossy(&buf[..n]), "endpoint record changed");
                    }
                    read_records = true;
                }
                _ = records_tick.tick() => read_records = true,
            }
            if read_records {
                let (records, bad) = brindle_felix::endpoint::read_all(&state_dir);
                for (path, e) in bad {
                    if bad_seen.insert(path.clone()) {
                        warn!(file = %path.display(), error = %e, "unreadable endpoint record ignored");
                    }
                }
                asm.endpoints = crate::dataplane::endpoints(&records);
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
    // calico-node's address monitor: autodetection again every AUTODETECT_POLL_INTERVAL
    // (default 60 s; 0 turns it off), the Node updated when the address changed.
    let kube = matches!(opts.datastore, DatastoreConfig::Kubernetes { .. });
    let poll = autodetect_poll_interval(std::env::var("AUTODETECT_POLL_INTERVAL").ok().as_deref());
    let mut redetect = tokio::time::interval(poll.unwrap_or(Duration::from_secs(3600)));
    redetect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    redetect.tick().await; // the first tick is now: startup just did it
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = redetect.tick(), if kube && poll.is_some() => {
                let cfg = cluster.snapshot();
                match crate::node_identity::ensure(&datastore, &cfg, &opts.node_name).await {
                    Ok(true) => info!("this node's address changed: the Node is updated"),
                    Ok(false) => {}
                    Err(e) => warn!("node address: {e}"),
                }
            }
            e = events.recv() => {
                let Some(e) = e else {
                    error!("the datastore stopped; keeping the last state");
                    std::future::pending::<()>().await;
                    continue;
                };
                let mut changed = cluster.handle(e);
                // a burst (a relist, a file edit) makes one snapshot, not one per object
                let burst = tokio::time::sleep(BURST);
                tokio::pin!(burst);
                loop {
                    tokio::select! {
                        _ = &mut burst => break,
                        more = events.recv() => match more {
                            Some(e) => changed |= cluster.handle(e),
                            None => break,
                        },
                    }
                }
                if !changed {
                    continue;
                }
                let cfg = cluster.snapshot();
                gc_tx.send_replace(Some((
                    cfg.pods.clone(),
                    cfg.nodes.iter().map(|n| n.name.clone()).collect(),
                )));
                match plan_for(&cfg, &opts.node_name) {
                    Ok(new) => {
                        let _ = base_tx.send((
                            crate::dataplane::base_model(&cfg, &new),
                            new.services.kernel_reject.clone(),
                            crate::dataplane::policy_source(
                                &cfg,
                                &opts.node_name,
                                &opts.failsafe_env,
                            ),
                        ));
                        if new == plan {
                            continue;
                        }
                        if new.listen_port != plan.listen_port {
                            warn!(old = plan.listen_port, new = new.listen_port, "listenPort changed: takes effect after a restart");
                        }
                        info!(peers = new.peers.len(), prefixes = new.advertise.len(), service_routes = new.services.advertise.len(), "configuration changed: applying");
                        apply_plan(&speaker, &new);
                        crate::status::update(&service_status, |s| *s = new.services.clone());
                        plan = new;
                    }
                    Err(e) => error!("the changed configuration gives this node no valid plan, keeping the last good one: {e:#}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_bgp::status::PeerType;

    fn plan(port: u16, mode: NextHopMode, allow: Option<u32>) -> PeerPlan {
        PeerPlan {
            name: format!("Global_10_0_0_5_port_{port}"),
            peer_type: PeerType::Global,
            address: "10.0.0.5".parse().unwrap(),
            port,
            remote_as: 65001,
            local_as: 64512,
            password: None,
            ttl_security: None,
            keep_original_next_hop: mode == NextHopMode::Keep,
            next_hop_mode: mode,
            max_restart_time: None,
            source_address: None,
            passive: false,
            route_reflector_client: false,
            keepalive_time: None,
            num_allowed_local_as_numbers: allow,
            bgp_peer: Some("tor".into()),
            reverse: false,
        }
    }

    #[test]
    fn autodetect_poll_interval_as_calico_node() {
        assert_eq!(
            autodetect_poll_interval(None),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            autodetect_poll_interval(Some("5s")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(autodetect_poll_interval(Some("0")), None);
        assert_eq!(autodetect_poll_interval(Some("0s")), None);
        assert_eq!(
            autodetect_poll_interval(Some("soon")),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn peer_config_keys_by_port_and_carries_next_hop_mode_and_allow_local_as() {
        let a = peer_config(&plan(179, NextHopMode::Auto, None));
        let b = peer_config(&plan(1790, NextHopMode::SelfHop, Some(2)));
        assert_ne!(a.key(), b.key(), "two sessions to one address");
        assert_eq!(
            (a.next_hop_mode, a.allow_local_as),
            (BgpNextHopMode::Auto, 0)
        );
        assert_eq!(
            (b.next_hop_mode, b.allow_local_as, b.port),
            (BgpNextHopMode::SelfHop, 2, 1790)
        );
        let k = peer_config(&plan(179, NextHopMode::Keep, None));
        assert_eq!(k.next_hop_mode, BgpNextHopMode::Keep);
    }
}
