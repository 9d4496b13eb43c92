//! The tokio driver around the sans-IO core: one task owns every [`Session`], the [`Rib`]
//! and the Adj-RIBs-Out, and reacts to socket events, commands and timers. Small tasks
//! per connection read and write bytes; connection attempts run in their own tasks. A
//! panic or error in a connection task is just a closed connection.
//!
//! The agent talks to it through [`Speaker`]: declarative `set_peers` /
//! `set_local_routes` (a changed peer is restarted, unchanged peers are not touched),
//! status snapshots, and a stream of [`FibChange`]s for the kernel.

use crate::codec;
use crate::fsm::{Action, ConnId, Session, SessionConfig};
use crate::rib::{AdjRibOut, Best, ExportPeer, FibChange, LocalRoute, NextHopMode, PeerInfo, Rib};
use crate::status::{
    bird_state_dsc, calico_info, BirdError, PeerStatus, PeerType, RouteStatus, RoutesStatus,
    SessionState, SpeakerStatus,
};
use crate::transport::{self, ConnectOptions, Listener, TtlMode};
use crate::types::{codes, community_str, Afi, Notification, PeerKey, Prefix};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// One configured peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// BIRD-style protocol name ("Mesh_10_0_0_2", "Node_...", "Global_...").
    pub name: String,
    pub peer_type: PeerType,
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    pub local_as: u32,
    pub passive: bool,
    pub password: Option<String>,
    /// RFC 5082 GTSM with this many hops.
    pub ttl_security: Option<u8>,
    /// Outgoing TTL (default 64; 1 = directly connected only).
    pub multihop_ttl: Option<u8>,
    pub source_address: Option<IpAddr>,
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Calico's `nextHopMode` for the routes sent to this peer.
    pub next_hop_mode: NextHopMode,
    /// BIRD's `allow local as N` (Calico's `numAllowedLocalASNumbers`): routes whose
    /// AS_PATH holds our AS up to this many times are accepted. 0: none (the default).
    pub allow_local_as: u32,
    pub export_learned: bool,
    /// Families to offer; empty means the family of `address`.
    pub afis: Vec<Afi>,
    pub graceful_restart_time: Option<u16>,
    /// The peer is one of this node's route reflector clients (RFC 4456; only
    /// meaningful on an iBGP session of a node with a cluster ID).
    pub rr_client: bool,
}

impl PeerConfig {
    pub fn new(address: IpAddr, remote_as: u32, local_as: u32) -> Self {
        PeerConfig {
            name: format!("Global_{}", address.to_string().replace(['.', ':'], "_")),
            peer_type: PeerType::Global,
            address,
            port: 179,
            remote_as,
            local_as,
            passive: false,
            password: None,
            ttl_security: None,
            multihop_ttl: None,
            source_address: None,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            next_hop_mode: NextHopMode::Auto,
            allow_local_as: 0,
            export_learned: false,
            afis: Vec::new(),
            graceful_restart_time: Some(120),
            rr_client: false,
        }
    }

    /// The session's identity: address and port.
    pub fn key(&self) -> PeerKey {
        PeerKey::new(self.address, self.port)
    }

    /// The TCP-MD5 key, if any (an empty password is none).
    fn md5_key(&self) -> Option<&[u8]> {
        self.password
            .as_deref()
            .map(str::as_bytes)
            .filter(|k| !k.is_empty())
    }

    fn ttl_mode(&self) -> TtlMode {
        // Like Calico's BIRD configuration, peers are multihop by default (a home router
        // or ToR is often a hop away); GTSM when `ttlSecurity` is set.
        match (self.ttl_security, self.multihop_ttl) {
            (Some(h), _) => TtlMode::Gtsm { hops: h },
            (None, Some(1)) => TtlMode::Direct,
            (None, t) => TtlMode::Multihop(t.unwrap_or(64)),
        }
    }

    fn session_config(&self, router_id: Ipv4Addr, restarting: bool) -> SessionConfig {
        let mut s = SessionConfig::new(self.address, self.local_as, self.remote_as, router_id);
        s.hold_time = self.hold_time;
        s.connect_retry = self.connect_retry;
        s.passive = self.passive;
        if !self.afis.is_empty() {
            s.afis = self.afis.clone();
        }
        s.graceful_restart_time = self.graceful_restart_time;
        s.restarting = restarting;
        s
    }

    /// Fields whose change needs a new session (everything but export policy; a change
    /// of `allow_local_as` restarts the session, so that what it had rejected is sent
    /// again).
    fn session_key(&self) -> PeerConfig {
        PeerConfig {
            next_hop_mode: NextHopMode::Auto,
            export_learned: false,
            name: String::new(),
            peer_type: PeerType::Global,
            ..self.clone()
        }
    }
}

/// Speaker-wide settings.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    pub node_name: String,
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    /// Addresses to listen on (empty: do not listen).
    pub listen: Vec<SocketAddr>,
    /// Node addresses used as next hop for families the session's own address is not of.
    pub next_hop_v4: Option<IpAddr>,
    pub next_hop_v6: Option<IpAddr>,
    /// This speaker restarted gracefully (RFC 4724 Restart State bit in its first OPENs).
    pub restarting: bool,
}

enum Command {
    SetPeers(Vec<PeerConfig>),
    /// Add or update one peer; others untouched.
    UpsertPeer(PeerConfig),
    RemovePeer(PeerKey),
    Originate(Prefix, LocalRoute),
    Withdraw(Prefix),
    SetLocalRoutes(BTreeMap<Prefix, LocalRoute>),
    Status(oneshot::Sender<SpeakerStatus>),
    Routes(oneshot::Sender<RoutesStatus>),
    Synced(oneshot::Sender<bool>),
    SetRouterId(Ipv4Addr, u32),
    /// Become a route reflector with this cluster ID (None: stop reflecting).
    SetClusterId(Option<Ipv4Addr>),
    /// Stop every session; `graceful`: as for a restart (RFC 4724).
    Shutdown(oneshot::Sender<()>, bool),
}

enum Event {
    Incoming(TcpStream, SocketAddr, SocketAddr),
    /// An incoming connection from an address several sessions share, once the AS in
    /// its OPEN was read (without consuming it); `None`: no OPEN in time.
    Identified {
        stream: TcpStream,
        from: SocketAddr,
        local: SocketAddr,
        remote_as: Option<u32>,
    },
    Connected {
        peer: PeerKey,
        generation: u64,
        stream: TcpStream,
    },
    ConnectFailed {
        peer: PeerKey,
        generation: u64,
        error: String,
        /// The kernel's errno; `None` when the attempt timed out here.
        errno: Option<i32>,
    },
    Bytes(ConnId, Vec<u8>),
    /// A connection ended: why, and the errno (`Some(0)`: closed by the peer).
    Closed(ConnId, String, Option<i32>),
}

/// Handle to the running speaker. Cheap to clone.
#[derive(Clone)]
pub struct Speaker {
    tx: mpsc::UnboundedSender<Command>,
    listen: Vec<SocketAddr>,
}

impl Speaker {
    /// Binds the listening sockets and starts the speaker task. Learned-route changes for
    /// the forwarding table arrive on the returned receiver.
    pub fn start(cfg: SpeakerConfig) -> io::Result<(Speaker, mpsc::UnboundedReceiver<FibChange>)> {
        let listener = if cfg.listen.is_empty() {
            None
        } else {
            Some(Arc::new(Listener::bind(&cfg.listen)?))
        };
        let listen = listener
            .as_ref()
            .map(|l| l.local_addrs())
            .unwrap_or_default();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (fib_tx, fib_rx) = mpsc::unbounded_channel();
        if let Some(l) = &listener {
            let l = l.clone();
            let ev = ev_tx.clone();
            tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, peer, local)) => {
                            if ev.send(Event::Incoming(s, peer, local)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
        let core = Core {
            rib: Rib::new(cfg.local_as, cfg.router_id),
            cfg,
            listen: listen.clone(),
            listener,
            peers: BTreeMap::new(),
            conns: HashMap::new(),
            listener_md5: BTreeMap::new(),
            md5_conflicts: BTreeSet::new(),
            next_conn: 1,
            next_generation: 1,
            ev_tx,
            fib_tx,
            closing: Vec::new(),
            unconfigured: 0,
            unconfigured_log: LogLimiter::new(UNCONFIGURED_LOG_INTERVAL),
            unconfigured_last: None,
        };
        tokio::spawn(core.run(rx, ev_rx));
        Ok((Speaker { tx, listen }, fib_rx))
    }

    /// The addresses actually listened on.
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen
    }

    /// Replaces the set of peers: new ones start, removed ones get a Cease (Peer
    /// De-configured), changed ones restart, unchanged ones are not disturbed.
    pub fn set_peers(&self, peers: Vec<PeerConfig>) {
        let _ = self.tx.send(Command::SetPeers(peers));
    }

    /// Adds a peer, or updates it (restarting its session only if a session parameter
    /// changed). Other peers are not touched.
    pub fn upsert_peer(&self, peer: PeerConfig) {
        let _ = self.tx.send(Command::UpsertPeer(peer));
    }

    /// Removes a peer (Cease / Peer De-configured).
    pub fn remove_peer(&self, peer: PeerKey) {
        let _ = self.tx.send(Command::RemovePeer(peer));
    }

    /// Originates (or updates the communities of) one prefix.
    pub fn originate(&self, prefix: Prefix, route: LocalRoute) {
        let _ = self.tx.send(Command::Originate(prefix, route));
    }

    /// Stops originating one prefix.
    pub fn withdraw(&self, prefix: Prefix) {
        let _ = self.tx.send(Command::Withdraw(prefix));
    }

    /// Replaces the set of originated prefixes.
    pub fn set_local_routes(&self, routes: BTreeMap<Prefix, LocalRoute>) {
        let _ = self.tx.send(Command::SetLocalRoutes(routes));
    }

    /// Changes router ID / AS (restarts every session).
    pub fn set_identity(&self, router_id: Ipv4Addr, local_as: u32) {
        let _ = self.tx.send(Command::SetRouterId(router_id, local_as));
    }

    /// Makes this speaker a route reflector (RFC 4456) with `cluster_id`, or not (None).
    /// Which peers are clients is each [`PeerConfig::rr_client`].
    pub fn set_cluster_id(&self, cluster_id: Option<Ipv4Addr>) {
        let _ = self.tx.send(Command::SetClusterId(cluster_id));
    }

    pub async fn status(&self) -> Option<SpeakerStatus> {
        let (t, r) = oneshot::channel();
        self.tx.send(Command::Status(t)).ok()?;
        r.await.ok()
    }

    /// True once every peer is Established and has sent End-of-RIB for every family:
    /// the learned routes are complete (used after a start to know when stale kernel
    /// routes may go).
    pub async fn synced(&self) -> bool {
        let (t, r) = oneshot::channel();
        if self.tx.send(Command::Synced(t)).is_err() {
            return false;
        }
        r.await.unwrap_or(false)
    }

    pub async fn routes(&self) -> Option<RoutesStatus> {
        let (t, r) = oneshot::channel();
        self.tx.send(Command::Routes(t)).ok()?;
        r.await.ok()
    }

    /// Sends Cease (Administrative Shutdown) to every peer and stops.
    pub async fn shutdown(&self) {
        self.stop(false).await
    }

    /// Stops for a restart (RFC 4724): peers that can help (they advertised graceful
    /// restart) see the connection close without a NOTIFICATION and keep our routes until
    /// we are back and have sent End-of-RIB; the others get a Cease.
    pub async fn shutdown_for_restart(&self) {
        self.stop(true).await
    }

    async fn stop(&self, graceful: bool) {
        let (t, r) = oneshot::channel();
        if self.tx.send(Command::Shutdown(t, graceful)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
    }
}

struct PeerState {
    cfg: PeerConfig,
    session: Session,
    out: AdjRibOut,
    /// Local address of the Established connection.
    local_addr: Option<IpAddr>,
    /// Ignore results of connection attempts from before a restart.
    generation: u64,
    /// The peer is restarting (RFC 4724): its stale routes go at this time at the latest.
    stale_until: Option<Instant>,
    /// Families the peer has sent End-of-RIB for since the session came up.
    eor_received: std::collections::BTreeSet<Afi>,
    /// The last error as BIRD would show it (calicoctl's INFO column).
    bird_error: BirdError,
    /// When the calicoctl STATE (`up` / `start`) last changed, as BIRD's `since`: the
    /// peer was added, the session came up or went down, or a BGP error restarted it.
    since: SystemTime,
    /// The session was Established at the last look.
    up: bool,
    /// Malformed or unusable input from the peer, counted.
    import_errors: crate::status::ImportErrors,
    /// Their log lines, at most one per [`IMPORT_ERROR_LOG_INTERVAL`].
    import_error_log: LogLimiter,
}

/// How often a peer's import errors are logged, at most.
const IMPORT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// At most one log line per `interval` for a repeated event; the others are counted and
/// reported with the next line (or by [`LogLimiter::flush`] once the interval is over).
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// One event: `Some(n)` when it is to be logged, with the `n` events not logged
    /// since the last line; `None` when it is only counted.
    pub(crate) fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// When counted events are due to be reported.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.last {
            Some(t) if self.suppressed > 0 => Some(t + self.interval),
            _ => None,
        }
    }

    /// `Some(n)`: `n` events were counted and the interval is over; log them now.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<u64> {
        let due = self.deadline()?;
        if now < due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// How often a flood of connections from unconfigured addresses is logged, at most.
const UNCONFIGURED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The type, code and subcode of a NOTIFICATION message.
fn notification_codes(msg: &[u8]) -> Option<(u8, u8)> {
    (msg.len() >= 21 && msg[..16].iter().all(|b| *b == 0xff) && msg[18] == 3)
        .then(|| (msg[19], msg[20]))
}

/// The first NOTIFICATION in a chunk of bytes read from a connection.
fn find_notification(bytes: &[u8]) -> Option<(u8, u8)> {
    (0..bytes.len().saturating_sub(20)).find_map(|i| notification_codes(&bytes[i..]))
}

/// Code and subcode back from the session's "Received: <code name> / <subcode name>"
/// (when the NOTIFICATION did not arrive in one read).
fn received_codes(last_error: &str) -> Option<(u8, u8)> {
    let rest = last_error.strip_prefix("Received: ")?;
    (1..=7u8).find_map(|code| {
        (0..=15u8).find_map(|sub| {
            let (c, s) = codes::names(code, sub);
            (s != "Unknown subcode" && rest.starts_with(&format!("{c} / {s}")))
                .then_some((code, sub))
        })
    })
}

struct ConnHandle {
    peer: PeerKey,
    local: SocketAddr,
    writer: mpsc::UnboundedSender<Option<Vec<u8>>>,
    writer_task: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

/// How long a restarted peer's stale routes may wait for its End-of-RIB once the session
/// is back (FRR's stale-path-time default).
const STALE_PATH_TIME: Duration = Duration::from_secs(360);

struct Core {
    cfg: SpeakerConfig,
    listen: Vec<SocketAddr>,
    listener: Option<Arc<Listener>>,
    rib: Rib,
    peers: BTreeMap<PeerKey, PeerState>,
    conns: HashMap<ConnId, ConnHandle>,
    /// The TCP-MD5 password installed on the listener per remote address (the kernel
    /// keys it by address only, so sessions sharing an address share it).
    listener_md5: BTreeMap<IpAddr, Option<String>>,
    /// Addresses whose sessions disagree on the password (warned once).
    md5_conflicts: BTreeSet<IpAddr>,
    next_conn: ConnId,
    next_generation: u64,
    ev_tx: mpsc::UnboundedSender<Event>,
    fib_tx: mpsc::UnboundedSender<FibChange>,
    /// Writer tasks of closed connections that may still be flushing.
    closing: Vec<tokio::task::JoinHandle<()>>,
    /// Connections accepted from addresses that are not configured peers.
    unconfigured: u64,
    unconfigured_log: LogLimiter,
    /// The last such address, for the summary line.
    unconfigured_last: Option<SocketAddr>,
}

impl Core {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Command>,
        mut evs: mpsc::UnboundedReceiver<Event>,
    ) {
        loop {
            let deadline = self
                .peers
                .values()
                .filter_map(|p| p.session.next_deadline())
                .chain(self.peers.values().filter_map(|p| p.stale_until))
                .chain(self.unconfigured_log.deadline())
                .min();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = cmds.recv() => match c {
                    Some(Command::Shutdown(done, graceful)) => {
                        self.shutdown(graceful);
                        // let the writers flush the Cease NOTIFICATIONs before we go
                        for h in std::mem::take(&mut self.closing) {
                            let _ = tokio::time::timeout(Duration::from_secs(1), h).await;
                        }
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.command(c),
                    None => { self.shutdown(false); return; }
                },
                Some(e) = evs.recv() => self.event(e),
                _ = sleep => {
                    let now = Instant::now();
                    if let Some(n) = self.unconfigured_log.flush(now) {
                        let last = self.unconfigured_last.map(|a| a.to_string()).unwrap_or_default();
                        warn!(count = n, last_from = %last, total = self.unconfigured, "{n} more connections from addresses that are not configured peers were closed (not logged one by one)");
                    }
                    let addrs: Vec<PeerKey> = self.peers.keys().copied().collect();
                    for a in addrs {
                        if let Some(p) = self.peers.get_mut(&a) {
                            if p.stale_until.is_some_and(|d| d <= now) {
                                p.stale_until = None;
                                let n = self.rib.sweep_stale(&a, None);
                                info!(peer = %a, routes = n, "graceful restart time over: stale routes removed");
                            }
                        }
                        if let Some(p) = self.peers.get_mut(&a) {
                            let acts = p.session.on_timer(now);
                            self.apply(a, acts);
                        }
                    }
                }
            }
            self.propagate();
        }
    }

    fn shutdown(&mut self, graceful: bool) {
        let now = Instant::now();
        let addrs: Vec<PeerKey> = self.peers.keys().copied().collect();
        for a in addrs {
            if let Some(p) = self.peers.get_mut(&a) {
                let cease = Notification::cease(codes::CEASE_ADMIN_SHUTDOWN);
                let acts = if graceful {
                    p.session.stop_graceful(now, cease)
                } else {
                    p.session.stop(now, cease)
                };
                self.apply(a, acts);
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::SetPeers(list) => self.set_peers(list),
            Command::UpsertPeer(cfg) => self.upsert_peer(cfg),
            Command::RemovePeer(a) => {
                if self.peers.contains_key(&a) {
                    info!(peer = %a, "peer removed");
                    self.remove_peer(a, codes::CEASE_PEER_DECONFIGURED);
                }
            }
            Command::Originate(p, r) => self.rib.originate(p, r),
            Command::Withdraw(p) => self.rib.withdraw_local(&p),
            Command::SetLocalRoutes(routes) => {
                let old: Vec<Prefix> = self.rib.local_routes().keys().copied().collect();
                for p in old {
                    if !routes.contains_key(&p) {
                        self.rib.withdraw_local(&p);
                    }
                }
                for (p, r) in routes {
                    self.rib.originate(p, r);
                }
            }
            Command::Status(t) => {
                let _ = t.send(self.status());
            }
            Command::Routes(t) => {
                let _ = t.send(self.routes());
            }
            Command::Synced(t) => {
                let synced = self.peers.values().all(|p| {
                    p.session
                        .negotiated()
                        .is_some_and(|n| n.afis.iter().all(|a| p.eor_received.contains(a)))
                });
                let _ = t.send(synced);
            }
            Command::SetRouterId(id, asn) => {
                if id != self.cfg.router_id || asn != self.cfg.local_as {
                    self.cfg.router_id = id;
                    self.cfg.local_as = asn;
                    self.rib.router_id = id;
                    self.rib.local_as = asn;
                    let peers: Vec<PeerConfig> =
                        self.peers.values().map(|p| p.cfg.clone()).collect();
                    let addrs: Vec<PeerKey> = self.peers.keys().copied().collect();
                    for a in addrs {
                        self.remove_peer(a, codes::CEASE_OTHER_CONFIG_CHANGE);
                    }
                    self.set_peers(peers);
                }
            }
            Command::SetClusterId(id) => {
                if id != self.rib.cluster_id {
                    info!(cluster_id = ?id, "route reflector cluster ID changed");
                    self.rib.cluster_id = id;
                    // what is reflected changes for every iBGP peer
                    self.rib.mark_all_dirty();
                }
            }
            Command::Shutdown(..) => {}
        }
    }

    fn set_peers(&mut self, list: Vec<PeerConfig>) {
        let wanted: BTreeMap<PeerKey, PeerConfig> =
            list.into_iter().map(|p| (p.key(), p)).collect();
        let gone: Vec<PeerKey> = self
            .peers
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for a in gone {
            info!(peer = %a, "peer removed");
            self.remove_peer(a, codes::CEASE_PEER_DECONFIGURED);
        }
        for cfg in wanted.into_values() {
            self.upsert_peer(cfg);
        }
    }

    fn upsert_peer(&mut self, cfg: PeerConfig) {
        let a = cfg.key();
        match self.peers.get_mut(&a) {
            Some(p) if p.cfg == cfg => {}
            Some(p) if p.cfg.session_key() == cfg.session_key() => {
                // export policy or names only: resend what changed, keep the session
                p.cfg = cfg;
                self.sync_out(a, None);
            }
            Some(_) => {
                info!(peer = %a, "peer changed; restarting its session");
                self.remove_peer(a, codes::CEASE_OTHER_CONFIG_CHANGE);
                self.add_peer(cfg);
            }
            None => self.add_peer(cfg),
        }
    }

    /// Installs on the listener the TCP-MD5 key for `ip` that its sessions call for.
    fn refresh_listener_md5(&mut self, ip: IpAddr) {
        let Some(l) = &self.listener else {
            return;
        };
        let sessions: Vec<&PeerConfig> = self
            .peers
            .values()
            .map(|p| &p.cfg)
            .filter(|c| c.address == ip)
            .collect();
        let (want, conflict) = listener_password(&sessions);
        if conflict {
            if self.md5_conflicts.insert(ip) {
                let names: Vec<String> = sessions
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.key()))
                    .collect();
                warn!(peer = %ip, sessions = ?names, using = %sessions[0].name, "sessions to one address have different passwords: the kernel keys TCP MD5 on the listener by address only, so incoming connections from it are checked with the first session's password (each session's own connections use its own)");
            }
        } else {
            self.md5_conflicts.remove(&ip);
        }
        let want = want.map(str::to_string);
        let installed = self.listener_md5.get(&ip);
        if installed == Some(&want) || (installed.is_none() && want.is_none()) {
            return;
        }
        if let Err(e) = l.set_md5(ip, want.as_deref().map(str::as_bytes)) {
            warn!(peer = %ip, error = %e, "cannot install TCP MD5 key on the listener");
        }
        if sessions.is_empty() {
            self.listener_md5.remove(&ip);
        } else {
            self.listener_md5.insert(ip, want);
        }
    }

    fn add_peer(&mut self, cfg: PeerConfig) {
        let now = Instant::now();
        info!(peer = %cfg.key(), remote_as = cfg.remote_as, name = %cfg.name, passive = cfg.passive, "peer added");
        let session = Session::new(
            cfg.session_config(self.cfg.router_id, self.cfg.restarting),
            now,
        );
        let a = cfg.key();
        let generation = self.next_generation;
        self.next_generation += 1;
        self.peers.insert(
            a,
            PeerState {
                cfg,
                session,
                out: AdjRibOut::default(),
                local_addr: None,
                generation,
                stale_until: None,
                eor_received: Default::default(),
                bird_error: BirdError::None,
                since: SystemTime::now(),
                up: false,
                import_errors: Default::default(),
                import_error_log: LogLimiter::new(IMPORT_ERROR_LOG_INTERVAL),
            },
        );
        self.refresh_listener_md5(a.ip);
        let acts = self
            .peers
            .get_mut(&a)
            .map(|p| p.session.start(now))
            .unwrap_or_default();
        self.apply(a, acts);
    }

    fn remove_peer(&mut self, a: PeerKey, cease: u8) {
        let now = Instant::now();
        if let Some(p) = self.peers.get_mut(&a) {
            let acts = p.session.stop(now, Notification::cease(cease));
            self.apply(a, acts);
        }
        if self.peers.remove(&a).is_some() {
            self.refresh_listener_md5(a.ip);
        }
        self.rib.peer_down(&a);
    }

    fn event(&mut self, e: Event) {
        let now = Instant::now();
        match e {
            Event::Incoming(stream, peer, local) => {
                let ip = transport::normalize(peer).ip();
                let sessions: Vec<PeerKey> = self.sessions_of(ip).collect();
                match sessions[..] {
                    [] => self.unconfigured_connection(peer, now),
                    [one] => self.accept(one, stream, local, now),
                    _ => {
                        // several sessions share the address: read the AS in its OPEN first.
                        // GTSM / TTL options go on before that when the sessions agree on
                        // them (else the chosen session's, once known).
                        let modes: Vec<TtlMode> = self
                            .peers
                            .values()
                            .filter(|p| p.cfg.address == ip)
                            .map(|p| p.cfg.ttl_mode())
                            .collect();
                        if modes.iter().all(|m| *m == modes[0]) {
                            if let Err(e) = transport::apply_ttl(&stream, &modes[0]) {
                                warn!(from = %peer, error = %e, "cannot set TTL options");
                            }
                        }
                        debug!(from = %peer, sessions = sessions.len(), "incoming connection from an address with several sessions: reading its OPEN");
                        let ev = self.ev_tx.clone();
                        tokio::spawn(async move {
                            if let Some((stream, remote_as)) = identify(stream).await {
                                let _ = ev.send(Event::Identified {
                                    stream,
                                    from: peer,
                                    local,
                                    remote_as,
                                });
                            }
                        });
                    }
                }
            }
            Event::Identified {
                stream,
                from,
                local,
                remote_as,
            } => {
                let ip = transport::normalize(from).ip();
                let candidates: Vec<IncomingCandidate> = self
                    .peers
                    .values()
                    .filter(|p| p.cfg.address == ip)
                    .map(|p| IncomingCandidate {
                        key: p.cfg.key(),
                        remote_as: p.cfg.remote_as,
                        source_address: p.cfg.source_address,
                        established: p.session.state() == SessionState::Established,
                    })
                    .collect();
                match choose_incoming(&candidates, transport::normalize(local), remote_as) {
                    Some(key) => {
                        debug!(from = %from, ?remote_as, peer = %key, "incoming connection matched to a session");
                        self.accept(key, stream, local, now)
                    }
                    None => self.unconfigured_connection(from, now),
                }
            }
            Event::Connected {
                peer,
                generation,
                stream,
            } => {
                let local = stream
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
                match self.peers.get(&peer) {
                    Some(p) if p.generation == generation => {}
                    _ => return, // peer removed or restarted meanwhile
                }
                let id = self.next_conn;
                self.next_conn += 1;
                debug!(peer = %peer, conn = id, "outgoing connection established");
                self.spawn_conn(id, peer, stream, transport::normalize(local));
                let acts = self
                    .peers
                    .get_mut(&peer)
                    .map(|p| p.session.on_connected(now, id))
                    .unwrap_or_default();
                self.apply(peer, acts);
            }
            Event::ConnectFailed {
                peer,
                generation,
                error,
                errno,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.generation == generation {
                        debug!(peer = %peer, %error, "connect failed");
                        // BIRD keeps the errno of a failed connect; a connect that only
                        // timed out is tried again without an error
                        if let (Some(e), false) = (errno, p.up) {
                            p.bird_error = BirdError::Socket(Some(e));
                        }
                        let acts = p.session.on_connect_failed(now, &error);
                        self.apply(peer, acts);
                    }
                }
            }
            Event::Bytes(id, bytes) => {
                let Some(c) = self.conns.get(&id) else { return };
                let peer = c.peer;
                let acts = self
                    .peers
                    .get_mut(&peer)
                    .map(|p| p.session.on_bytes(now, id, &bytes))
                    .unwrap_or_default();
                // a NOTIFICATION received ends the connection without one sent back
                let closed = acts.iter().any(|a| matches!(a, Action::Close(_)));
                let sent = acts
                    .iter()
                    .any(|a| matches!(a, Action::Send(_, m) if notification_codes(m).is_some()));
                if closed && !sent {
                    if let Some(p) = self.peers.get(&peer) {
                        let codes = p
                            .session
                            .last_error
                            .as_deref()
                            .filter(|e| e.starts_with("Received: "))
                            .and_then(|e| find_notification(&bytes).or_else(|| received_codes(e)));
                        if let Some((code, sub)) = codes {
                            self.note_error(peer, id, BirdError::Received(code, sub));
                        }
                    }
                }
                self.apply(peer, acts);
            }
            Event::Closed(id, why, errno) => {
                let Some(peer) = self.conns.get(&id).map(|c| c.peer) else {
                    return;
                };
                self.note_error(peer, id, BirdError::Socket(errno));
                let Some(c) = self.conns.remove(&id) else {
                    return;
                };
                let acts = self
                    .peers
                    .get_mut(&c.peer)
                    .map(|p| p.session.on_closed(now, id, &why))
                    .unwrap_or_default();
                self.apply(c.peer, acts);
            }
        }
    }

    /// The sessions configured for one remote address.
    fn sessions_of(&self, ip: IpAddr) -> impl Iterator<Item = PeerKey> + '_ {
        self.peers.keys().filter(move |k| k.ip == ip).copied()
    }

    /// A connection from an address no session is configured for: closed (by dropping
    /// it), counted, logged at a bounded rate.
    fn unconfigured_connection(&mut self, peer: SocketAddr, now: Instant) {
        self.unconfigured += 1;
        self.unconfigured_last = Some(peer);
        if let Some(n) = self.unconfigured_log.hit(now) {
            if n == 0 {
                warn!(from = %peer, "connection from an address that is not a configured peer: closed");
            } else {
                warn!(from = %peer, suppressed = n, total = self.unconfigured, "connection from an address that is not a configured peer: closed ({n} more since the last such line were not logged)");
            }
        }
    }

    /// Hands an accepted connection to session `key`.
    fn accept(&mut self, key: PeerKey, stream: TcpStream, local: SocketAddr, now: Instant) {
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        if let Err(e) = transport::apply_ttl(&stream, &p.cfg.ttl_mode()) {
            warn!(peer = %key, error = %e, "cannot set TTL options");
        }
        let id = self.next_conn;
        self.next_conn += 1;
        debug!(peer = %key, conn = id, "incoming connection");
        self.spawn_conn(id, key, stream, local);
        let acts = self
            .peers
            .get_mut(&key)
            .map(|p| p.session.on_incoming(now, id))
            .unwrap_or_default();
        self.apply(key, acts);
    }

    fn spawn_conn(&mut self, id: ConnId, peer: PeerKey, stream: TcpStream, local: SocketAddr) {
        let (mut rd, mut wr) = stream.into_split();
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
        let ev = self.ev_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let (why, errno) = loop {
                match rd.read(&mut buf).await {
                    Ok(0) => break ("closed by peer".to_string(), Some(0)),
                    Ok(n) => {
                        if ev.send(Event::Bytes(id, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) => break (e.to_string(), e.raw_os_error()),
                }
            };
            let _ = ev.send(Event::Closed(id, why, errno));
        });
        let writer_task = tokio::spawn(async move {
            while let Some(m) = wrx.recv().await {
                match m {
                    Some(b) => {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                }
            }
            let _ = wr.shutdown().await;
        });
        self.conns.insert(
            id,
            ConnHandle {
                peer,
                local,
                writer: wtx,
                writer_task,
                reader,
            },
        );
    }

    fn apply(&mut self, peer: PeerKey, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Connect => self.connect(peer),
                Action::Send(id, bytes) => {
                    if let Some((code, sub)) = notification_codes(&bytes) {
                        self.note_error(peer, id, BirdError::Sent(code, sub));
                    }
                    if let Some(c) = self.conns.get(&id) {
                        let _ = c.writer.send(Some(bytes));
                    }
                }
                Action::Close(id) => {
                    if let Some(c) = self.conns.remove(&id) {
                        let _ = c.writer.send(None);
                        c.reader.abort();
                        // remembered so that a shutdown can wait for the last bytes
                        self.closing.retain(|h| !h.is_finished());
                        self.closing.push(c.writer_task);
                    }
                }
                Action::Established(id) => {
                    let local = self.conns.get(&id).map(|c| c.local.ip());
                    if let Some(p) = self.peers.get_mut(&peer) {
                        info!(peer = %peer, name = %p.cfg.name, "session Established");
                        p.bird_error = BirdError::None;
                        p.up = true;
                        p.since = SystemTime::now();
                        p.local_addr = local;
                        p.out.clear();
                        p.eor_received.clear();
                        // a peer that comes back without graceful restart keeps nothing stale
                        // RFC 4724 §4.2: families the peer no longer preserves lose their stale
                        // routes now; the others wait for End-of-RIB (bounded by a local timer)
                        let preserved: Vec<Afi> = p
                            .session
                            .negotiated()
                            .and_then(|n| n.remote_caps.graceful_restart.as_ref().map(|g| (n, g)))
                            .map(|(n, g)| {
                                g.afis
                                    .iter()
                                    .filter(|(a, forwarding)| *forwarding && n.afis.contains(a))
                                    .map(|(a, _)| *a)
                                    .collect()
                            })
                            .unwrap_or_default();
                        if p.stale_until.is_some() {
                            for afi in [Afi::Ipv4, Afi::Ipv6] {
                                if !preserved.contains(&afi) {
                                    self.rib.sweep_stale(&peer, Some(afi));
                                }
                            }
                            p.stale_until = (self.rib.stale_count(&peer) > 0)
                                .then(|| Instant::now() + STALE_PATH_TIME);
                        }
                    }
                    self.sync_out(peer, None);
                    if let Some(p) = self.peers.get_mut(&peer) {
                        let afis = p
                            .session
                            .negotiated()
                            .map(|n| n.afis.clone())
                            .unwrap_or_default();
                        let eor = afis.into_iter().map(codec::encode_end_of_rib).collect();
                        let acts = p.session.send_updates(eor);
                        self.apply(peer, acts);
                    }
                }
                Action::Down { reason, graceful } => {
                    match graceful {
                        Some(g) => {
                            let n = self.rib.peer_stale(&peer, &g.afis);
                            info!(peer = %peer, %reason, stale_routes = n, restart_time = ?g.restart_time, "session down; peer may be restarting, keeping its routes");
                            if let Some(p) = self.peers.get_mut(&peer) {
                                p.stale_until = Some(Instant::now() + g.restart_time);
                            }
                        }
                        None => {
                            info!(peer = %peer, %reason, "session down");
                            self.rib.peer_down(&peer);
                            if let Some(p) = self.peers.get_mut(&peer) {
                                p.stale_until = None;
                            }
                        }
                    }
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.out.clear();
                        p.local_addr = None;
                        p.up = false;
                        p.since = SystemTime::now();
                    }
                }
                Action::Update(mut u) => {
                    let own = [
                        self.peers.get(&peer).and_then(|p| p.local_addr),
                        self.cfg.next_hop_v4,
                        self.cfg.next_hop_v6,
                    ];
                    let Some(p) = self.peers.get_mut(&peer) else {
                        continue;
                    };
                    let now = Instant::now();
                    // RFC 4271 §6.3: a NEXT_HOP that is one of our own addresses is not
                    // usable; the routes are not taken (as withdrawn, replacing what the
                    // peer sent for them before).
                    let own_hop = u
                        .attrs
                        .as_ref()
                        .and_then(|a| a.next_hop)
                        // (the peer's own address is its to give, even when it is ours
                        // too: two speakers on one loopback)
                        .filter(|nh| own.contains(&Some(*nh)) && *nh != peer.ip);
                    if own_hop.is_some() && !u.announced.is_empty() {
                        p.import_errors.own_next_hop += u.announced.len() as u64;
                        if let Some(n) = p.import_error_log.hit(now) {
                            warn!(peer = %peer, next_hop = ?own_hop, prefixes = u.announced.len(), suppressed = n, "routes ignored: their NEXT_HOP is this node's own address (RFC 4271 §6.3)");
                        }
                        let announced = std::mem::take(&mut u.announced);
                        u.withdrawn.extend(announced);
                        u.attrs = None;
                    }
                    if let Some(r) = &u.treat_as_withdraw {
                        p.import_errors.treated_as_withdraw += 1;
                        if let Some(n) = p.import_error_log.hit(now) {
                            warn!(peer = %peer, reason = %r, prefixes = u.withdrawn.len(), suppressed = n, "malformed UPDATE treated as withdraw (RFC 7606)");
                        }
                    }
                    for d in &u.discarded {
                        p.import_errors.attributes_discarded += 1;
                        if let Some(n) = p.import_error_log.hit(now) {
                            warn!(peer = %peer, note = %d, suppressed = n, "attribute discarded (RFC 7606)");
                        }
                    }
                    let p = &*p;
                    let info = PeerInfo {
                        key: peer,
                        ebgp: p.cfg.local_as != p.cfg.remote_as,
                        remote_id: p
                            .session
                            .negotiated()
                            .map_or(Ipv4Addr::UNSPECIFIED, |n| n.remote_id),
                        local_as: p.cfg.local_as,
                        allow_local_as: p.cfg.allow_local_as,
                        rr_client: p.cfg.rr_client,
                    };
                    self.rib
                        .peer_update(&info, &u.withdrawn, &u.announced, u.attrs.as_ref());
                    if let Some(afi) = u.end_of_rib {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.eor_received.insert(afi);
                        }
                        // RFC 4724: End-of-RIB ends a restart; what was not refreshed goes
                        let n = self.rib.sweep_stale(&peer, Some(afi));
                        if n > 0 {
                            info!(peer = %peer, ?afi, routes = n, "End-of-RIB: stale routes removed");
                        }
                        if self.rib.stale_count(&peer) == 0 {
                            if let Some(p) = self.peers.get_mut(&peer) {
                                p.stale_until = None;
                            }
                        }
                    }
                }
                Action::RouteRefresh(_) => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.out.clear();
                    }
                    self.sync_out(peer, None);
                }
            }
        }
    }

    /// Keeps an error on connection `conn` as BIRD would (`bgp_store_error`): while the
    /// session is up, only errors of its own connection count. A BGP error other than a
    /// Cease makes BIRD restart the protocol, which changes its `since`.
    fn note_error(&mut self, peer: PeerKey, conn: ConnId, e: BirdError) {
        let ours = self.conns.get(&conn).is_some_and(|c| c.peer == peer);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        match p.session.established() {
            Some((up, _)) if up != conn => return,
            None if !ours => return,
            _ => {}
        }
        if matches!(e, BirdError::Sent(c, _) | BirdError::Received(c, _) if c != codes::CEASE)
            && !p.up
        {
            p.since = SystemTime::now();
        }
        p.bird_error = e;
    }

    fn connect(&mut self, peer: PeerKey) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let mut opts = ConnectOptions::new(SocketAddr::new(peer.ip, p.cfg.port), p.cfg.ttl_mode());
        opts.source = p.cfg.source_address;
        opts.md5_key = p.cfg.md5_key().map(<[u8]>::to_vec);
        opts.timeout = p.cfg.connect_retry.max(Duration::from_secs(1));
        let generation = p.generation;
        let ev = self.ev_tx.clone();
        tokio::spawn(async move {
            let e = match transport::connect(&opts).await {
                Ok(stream) => Event::Connected {
                    peer,
                    generation,
                    stream,
                },
                Err(e) => Event::ConnectFailed {
                    peer,
                    generation,
                    error: short_error(&e),
                    errno: transport::os_error(&e),
                },
            };
            let _ = ev.send(e);
        });
    }

    fn export_peer(&self, p: &PeerState) -> Option<ExportPeer> {
        let n = p.session.negotiated()?;
        let (mut v4, mut v6) = (self.cfg.next_hop_v4, self.cfg.next_hop_v6);
        match p.local_addr {
            Some(a @ IpAddr::V4(_)) => v4 = Some(a),
            Some(a @ IpAddr::V6(_)) => v6 = Some(a),
            None => {}
        }
        Some(ExportPeer {
            key: p.cfg.key(),
            ebgp: p.cfg.local_as != p.cfg.remote_as,
            local_as: p.cfg.local_as,
            remote_as: p.cfg.remote_as,
            afis: n.afis.clone(),
            next_hop_v4: v4,
            next_hop_v6: v6,
            export_learned: p.cfg.export_learned,
            next_hop_mode: p.cfg.next_hop_mode,
            rr_client: p.cfg.rr_client,
            remote_id: n.remote_id,
        })
    }

    /// Sends a peer what changed in its Adj-RIB-Out (all prefixes when `prefixes` is None).
    fn sync_out(&mut self, peer: PeerKey, prefixes: Option<&[Prefix]>) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(ep) = self.export_peer(p) else {
            return;
        };
        let Some(ctx) = p.session.negotiated().map(|n| n.encode_ctx()) else {
            return;
        };
        let p = self.peers.get_mut(&peer).expect("present");
        let delta = p.out.sync(&self.rib, &ep, prefixes);
        if delta.is_empty() {
            return;
        }
        let mut msgs = Vec::new();
        for (afi, w) in &delta.withdraw {
            msgs.extend(codec::encode_withdraw(&ctx, *afi, w));
        }
        for (attrs, pfx) in &delta.announce {
            msgs.extend(codec::encode_announce(&ctx, attrs, pfx));
        }
        let acts = p.session.send_updates(msgs);
        self.apply(peer, acts);
    }

    /// After any event: run the decision process, update every Adj-RIB-Out, and hand
    /// forwarding changes to the dataplane.
    fn propagate(&mut self) {
        if !self.rib.has_dirty() {
            return;
        }
        let (changed, fib) = self.rib.recompute();
        for f in fib {
            let _ = self.fib_tx.send(f);
        }
        if changed.is_empty() {
            return;
        }
        let addrs: Vec<PeerKey> = self.peers.keys().copied().collect();
        for a in addrs {
            self.sync_out(a, Some(&changed));
        }
    }

    fn status(&self) -> SpeakerStatus {
        let peers = self
            .peers
            .values()
            .map(|p| {
                let s = &p.session;
                let (rx, acc) = self.rib.peer_counts(&p.cfg.key());
                let n = s.negotiated();
                PeerStatus {
                    peer_address: p.cfg.address,
                    peer_port: p.cfg.port,
                    peer_type: p.cfg.peer_type,
                    peer_type_name: p.cfg.peer_type.calico_name().to_string(),
                    name: p.cfg.name.clone(),
                    as_number: p.cfg.remote_as,
                    local_as_number: p.cfg.local_as,
                    state: s.state(),
                    since: chrono::DateTime::<chrono::Utc>::from(p.since)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    info: calico_info(
                        bird_state_dsc(s.state(), p.cfg.passive),
                        if s.state() == SessionState::Established {
                            &BirdError::None
                        } else {
                            &p.bird_error
                        },
                    ),
                    last_error: s.last_error.clone(),
                    prefixes_received: rx,
                    prefixes_accepted: acc,
                    prefixes_advertised: if s.state() == SessionState::Established {
                        p.out.len() as u64
                    } else {
                        0
                    },
                    messages_in: s.counters.messages_in,
                    messages_out: s.counters.messages_out,
                    updates_in: s.counters.updates_in,
                    updates_out: s.counters.updates_out,
                    session_resets: s.counters.session_resets,
                    hold_time: n.map(|n| n.hold_time),
                    remote_router_id: n.map(|n| n.remote_id),
                    import_errors: p.import_errors,
                }
            })
            .collect();
        SpeakerStatus {
            node_name: self.cfg.node_name.clone(),
            router_id: Some(self.cfg.router_id),
            as_number: self.cfg.local_as,
            listen: self.listen.iter().map(|a| a.to_string()).collect(),
            peers,
            unconfigured_connections: self.unconfigured,
        }
    }

    fn routes(&self) -> RoutesStatus {
        let mut routes = Vec::new();
        for (p, b) in self.rib.best() {
            match b {
                Best::Local(l) => routes.push(RouteStatus {
                    prefix: p.to_string(),
                    next_hop: String::new(),
                    peer_address: None,
                    peer_port: None,
                    as_path: vec![],
                    local_pref: None,
                    med: None,
                    communities: l.communities.iter().map(|c| community_str(*c)).collect(),
                    best: true,
                    local: true,
                    originator_id: None,
                    cluster_list: Vec::new(),
                }),
                Best::Learned(paths) => {
                    for path in paths {
                        let a = &path.attrs;
                        routes.push(RouteStatus {
                            prefix: p.to_string(),
                            next_hop: a.next_hop.map(|n| n.to_string()).unwrap_or_default(),
                            peer_address: Some(path.peer.ip),
                            peer_port: Some(path.peer.port),
                            as_path: a.as_path_flat(),
                            local_pref: a.local_pref,
                            med: a.med,
                            communities: a.communities.iter().map(|c| community_str(*c)).collect(),
                            best: true,
                            local: false,
                            originator_id: a.originator_id,
                            cluster_list: a.cluster_list.clone(),
                        })
                    }
                }
            }
        }
        RoutesStatus { routes }
    }
}

/// The TCP-MD5 password for the listener's entry for one address, from the sessions to
/// it (in key order), and whether they disagree. The kernel keys a listener's MD5
/// entries by remote address only, so sessions to one address on different ports share
/// one: the first session's; outgoing connections each carry their own session's key.
fn listener_password<'a>(sessions: &[&'a PeerConfig]) -> (Option<&'a str>, bool) {
    let pw = |c: &&'a PeerConfig| c.password.as_deref().filter(|p| !p.is_empty());
    let first = sessions.first().and_then(pw);
    let conflict = sessions.iter().any(|c| pw(c) != first);
    (first, conflict)
}

/// What is known of a session when an incoming connection is to be matched to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IncomingCandidate {
    key: PeerKey,
    remote_as: u32,
    source_address: Option<IpAddr>,
    established: bool,
}

/// Which of several sessions to one address an accepted connection belongs to.
///
/// TCP cannot tell: the peer connects from an ephemeral port to our listening port
/// whatever port we dial it on. BIRD (`bgp_find_proto`) takes the first protocol whose
/// neighbor address, local port and local address match the connection. Brindle has
/// one listening port, so it narrows the sessions of the connection's source address
/// step by step, each step applying only when some session passes it:
/// 1. the AS the peer announces in its OPEN (read before the connection is handed to a
///    session; `None` when no OPEN came in time) equals the session's remote AS;
/// 2. the session's `source_address`, when set, is the address the connection arrived on;
/// 3. the session is not Established (for an Established session the connection could
///    only be a collision its FSM closes);
/// 4. the session's configured remote port is the port the connection arrived on (179
///    unless `listenPort` says otherwise): the peer listening where we listen is the
///    one that dials us there;
/// 5. then the first by port.
fn choose_incoming(
    candidates: &[IncomingCandidate],
    local: SocketAddr,
    remote_as: Option<u32>,
) -> Option<PeerKey> {
    fn narrow(
        c: Vec<&IncomingCandidate>,
        keep: impl Fn(&IncomingCandidate) -> bool,
    ) -> Vec<&IncomingCandidate> {
        let kept: Vec<&IncomingCandidate> = c.iter().copied().filter(|x| keep(x)).collect();
        if kept.is_empty() {
            c
        } else {
            kept
        }
    }
    let mut c: Vec<&IncomingCandidate> = candidates.iter().collect();
    if let Some(asn) = remote_as {
        c = narrow(c, |x| x.remote_as == asn);
    }
    c = narrow(c, |x| x.source_address.is_none_or(|a| a == local.ip()));
    c = narrow(c, |x| !x.established);
    c = narrow(c, |x| x.key.port == local.port());
    c.into_iter().map(|x| x.key).min_by_key(|k| k.port)
}

/// How long an incoming connection from a shared address may take to send its OPEN
/// before it is matched without it.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the first bytes of a connection say about the peer's AS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenPeek {
    /// Not a whole message yet.
    Incomplete,
    /// An OPEN from this AS (the 4-octet AS capability's when present, RFC 6793).
    As(u32),
    /// Something else (not an OPEN, or malformed): the session will say what is wrong.
    Unknown,
}

/// Reads the peer's AS from an OPEN at the start of `b` (RFC 4271 §4.2, RFC 6793 §3,
/// RFC 9072 extended optional parameters length).
fn open_peer_as(b: &[u8]) -> OpenPeek {
    if b.len() < 19 {
        return OpenPeek::Incomplete;
    }
    let len = u16::from_be_bytes([b[16], b[17]]) as usize;
    if b[..16].iter().any(|x| *x != 0xff) || b[18] != 1 || !(29..=4096).contains(&len) {
        return OpenPeek::Unknown;
    }
    if b.len() < len {
        return OpenPeek::Incomplete;
    }
    let m = &b[19..len];
    let my_as = u16::from_be_bytes([m[1], m[2]]) as u32;
    // optional parameters: (type, length, value), lengths of 2 octets after 255, 255
    let (mut params, wide) = if m[9] == 255 && m.get(10) == Some(&255) && m.len() >= 13 {
        (&m[13..], true)
    } else {
        (&m[10..], false)
    };
    while let Some(&kind) = params.first() {
        let (plen, hdr) = if wide {
            match params.get(1..3) {
                Some(l) => (u16::from_be_bytes([l[0], l[1]]) as usize, 3),
                None => break,
            }
        } else {
            match params.get(1) {
                Some(l) => (*l as usize, 2),
                None => break,
            }
        };
        let Some(value) = params.get(hdr..hdr + plen) else {
            break;
        };
        if kind == 2 {
            // capabilities: (code, length, value)
            let mut caps = value;
            while caps.len() >= 2 {
                let (code, clen) = (caps[0], caps[1] as usize);
                let Some(v) = caps.get(2..2 + clen) else {
                    break;
                };
                if code == 65 && clen == 4 {
                    return OpenPeek::As(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
                }
                caps = &caps[2 + clen..];
            }
        }
        params = &params[hdr + plen..];
    }
    OpenPeek::As(my_as)
}

/// Waits (at most [`IDENTIFY_TIMEOUT`]) for the peer's OPEN on an accepted connection
/// and reads its AS without consuming anything. `None`: the peer closed the connection.
async fn identify(stream: TcpStream) -> Option<(TcpStream, Option<u32>)> {
    let read = async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            match open_peer_as(&buf[..n]) {
                OpenPeek::As(a) => return Some(Some(a)),
                OpenPeek::Unknown => return Some(None),
                // peek returns at once while data is waiting: poll for the rest
                OpenPeek::Incomplete => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    let asn = match tokio::time::timeout(IDENTIFY_TIMEOUT, read).await {
        Ok(r) => r?,
        Err(_) => None,
    };
    Some((stream, asn))
}

/// "Connection refused" rather than "Connection refused (os error 111)".
fn short_error(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn lo() -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    fn start(listen: bool) -> Speaker {
        Speaker::start(SpeakerConfig {
            node_name: "t".into(),
            router_id: "1.1.1.1".parse().unwrap(),
            local_as: 64512,
            listen: if listen {
                vec![SocketAddr::new(lo(), 0)]
            } else {
                vec![]
            },
            next_hop_v4: Some(lo()),
            next_hop_v6: None,
            restarting: false,
        })
        .unwrap()
        .0
    }

    async fn peer_status(s: &Speaker) -> PeerStatus {
        s.status().await.unwrap().peers.remove(0)
    }

    async fn wait_info(s: &Speaker, what: impl Fn(&str) -> bool) -> PeerStatus {
        for _ in 0..100 {
            let p = peer_status(s).await;
            if what(&p.info) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("info now: {:?}", peer_status(s).await.info);
    }

    #[test]
    fn log_limiter_bounds_lines_and_counts_everything() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let (mut lines, mut counted) = (0u64, 0u64);
        // 10,000 events spread evenly over 60 s, with flushes when due
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i * 6);
            if let Some(n) = l.flush(now) {
                lines += 1;
                counted += n;
            }
            if let Some(n) = l.hit(now) {
                lines += 1;
                counted += n + 1;
            }
        }
        let end = t0 + Duration::from_secs(120);
        assert_eq!(l.deadline().map(|d| d <= end), Some(true));
        if let Some(n) = l.flush(end) {
            lines += 1;
            counted += n;
        }
        assert_eq!(counted, 10_000);
        assert!(lines <= 8, "{lines} lines for 60 s");
        assert_eq!(l.deadline(), None, "nothing left to report");
        assert_eq!(l.flush(end + Duration::from_secs(60)), None);
    }

    #[tokio::test]
    async fn connections_from_unconfigured_addresses_are_closed_and_counted() {
        let s = start(true);
        let mut p = PeerConfig::new("127.0.0.2".parse().unwrap(), 64512, 64512);
        p.passive = true;
        s.set_peers(vec![p]);
        let addr = s.listen_addrs()[0];
        let n = 300;
        for _ in 0..n {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut b = [0u8; 1];
            let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b)).await;
            assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "closed by the speaker");
        }
        let st = s.status().await.unwrap();
        assert_eq!(st.unconfigured_connections, n);
        assert_eq!(st.peers[0].info, "Passive");
        assert_eq!(st.peers[0].state, SessionState::Active);
    }

    #[tokio::test]
    async fn refused_connects_keep_since_and_read_as_bird() {
        let s = start(false);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut p = PeerConfig::new(lo(), 65000, 64512);
        p.port = port;
        p.connect_retry = Duration::from_millis(200);
        s.set_peers(vec![p]);
        let first = wait_info(&s, |i| i.ends_with("Socket: Connection refused")).await;
        assert!(
            first.info == "Active Socket: Connection refused"
                || first.info == "Connect Socket: Connection refused",
            "{}",
            first.info
        );
        // several attempts later (one every 200 ms), the STATE has not changed: neither has SINCE
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let later = peer_status(&s).await;
        assert!(
            later.info.ends_with("Socket: Connection refused"),
            "{}",
            later.info
        );
        assert_eq!(later.since, first.since);
    }

    /// A fake peer on loopback: accepts one connection, reads our OPEN, answers `reply`.
    async fn fake_peer(reply: Vec<u8>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut b = vec![0u8; 4096];
            let _ = c.read(&mut b).await;
            let _ = c.write_all(&reply).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        port
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(kind);
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn notifications_received_and_sent_read_as_bird() {
        let s = start(false);
        let port = fake_peer(message(3, &[6, 2])).await;
        let mut p = PeerConfig::new(lo(), 65000, 64512);
        p.port = port;
        s.set_peers(vec![p]);
        let st = wait_info(&s, |i| i.contains("Received")).await;
        assert!(
            st.info.ends_with(" Received: Administrative shutdown"),
            "{}",
            st.info
        );

        // an OPEN from AS 65001 where 65000 is configured: we send Bad Peer AS
        let s = start(false);
        let mut open = vec![4];
        open.extend_from_slice(&65001u16.to_be_bytes());
        open.extend_from_slice(&90u16.to_be_bytes());
        open.extend_from_slice(&[2, 2, 2, 2, 0]);
        let port = fake_peer(message(1, &open)).await;
        let mut p = PeerConfig::new(lo(), 65000, 64512);
        p.port = port;
        s.set_peers(vec![p]);
        let st = wait_info(&s, |i| i.contains("BGP Error")).await;
        assert!(st.info.ends_with(" BGP Error: Bad peer AS"), "{}", st.info);
    }

    #[test]
    fn notification_codes_from_bytes_and_text() {
        let n = message(3, &[4, 0]);
        assert_eq!(notification_codes(&n), Some((4, 0)));
        let mut chunk = message(4, &[]);
        chunk.extend_from_slice(&n);
        assert_eq!(find_notification(&chunk), Some((4, 0)));
        assert_eq!(find_notification(&message(4, &[])), None);
        assert_eq!(
            received_codes("Received: Cease / Administrative Shutdown: \"bye\""),
            Some((6, 2))
        );
        assert_eq!(
            received_codes("Received: Hold Timer Expired / Unspecific"),
            Some((4, 0))
        );
        assert_eq!(received_codes("Connection closed: x"), None);
    }

    fn cand(port: u16, asn: u32, established: bool) -> IncomingCandidate {
        IncomingCandidate {
            key: PeerKey::new("10.0.0.5".parse().unwrap(), port),
            remote_as: asn,
            source_address: None,
            established,
        }
    }

    #[test]
    fn incoming_connection_matched_among_sessions_to_one_address() {
        let on_179: SocketAddr = "10.0.0.1:179".parse().unwrap();
        let port = |k: Option<PeerKey>| k.map(|k| k.port);
        let both = [cand(179, 65001, false), cand(1790, 65002, false)];
        // the AS in the OPEN decides
        assert_eq!(
            port(choose_incoming(&both, on_179, Some(65002))),
            Some(1790)
        );
        assert_eq!(port(choose_incoming(&both, on_179, Some(65001))), Some(179));
        // no OPEN (or an AS neither expects): the one on the port it arrived on
        assert_eq!(port(choose_incoming(&both, on_179, None)), Some(179));
        assert_eq!(port(choose_incoming(&both, on_179, Some(7))), Some(179));
        let on_1790: SocketAddr = "10.0.0.1:1790".parse().unwrap();
        assert_eq!(port(choose_incoming(&both, on_1790, None)), Some(1790));
        // ... unless that one is Established already
        let up = [cand(179, 65001, true), cand(1790, 65002, false)];
        assert_eq!(port(choose_incoming(&up, on_179, None)), Some(1790));
        // same AS on both: not Established first, then the port
        let same = [cand(179, 65001, true), cand(1790, 65001, false)];
        assert_eq!(
            port(choose_incoming(&same, on_179, Some(65001))),
            Some(1790)
        );
        let same = [cand(179, 65001, false), cand(1790, 65001, false)];
        assert_eq!(port(choose_incoming(&same, on_179, Some(65001))), Some(179));
        // neither on the arrival port: the first by port
        let other = [cand(1791, 65001, false), cand(1790, 65001, false)];
        assert_eq!(port(choose_incoming(&other, on_179, None)), Some(1790));
        // a session with a source address takes only what arrives there
        let mut a = cand(179, 65001, false);
        a.source_address = Some("10.0.0.9".parse().unwrap());
        let src = [a, cand(1790, 65001, false)];
        assert_eq!(port(choose_incoming(&src, on_179, Some(65001))), Some(1790));
        let at_9: SocketAddr = "10.0.0.9:179".parse().unwrap();
        assert_eq!(port(choose_incoming(&src, at_9, Some(65001))), Some(179));
        assert_eq!(choose_incoming(&[], on_179, None), None);
    }

    fn open(my_as: u16, params: &[u8]) -> Vec<u8> {
        let mut body = vec![4];
        body.extend_from_slice(&my_as.to_be_bytes());
        body.extend_from_slice(&90u16.to_be_bytes());
        body.extend_from_slice(&[2, 2, 2, 2, params.len() as u8]);
        body.extend_from_slice(params);
        message(1, &body)
    }

    #[test]
    fn peer_as_read_from_an_open() {
        // 2-octet AS, no parameters
        assert_eq!(open_peer_as(&open(65001, &[])), OpenPeek::As(65001));
        // AS_TRANS with the 4-octet AS capability (after multiprotocol)
        let caps = [2, 12, 1, 4, 0, 1, 0, 1, 65, 4, 0, 1, 0x11, 0x70];
        assert_eq!(open_peer_as(&open(23456, &caps)), OpenPeek::As(70000));
        // as captured from BIRD: several capabilities in one parameter, then more bytes
        let mut b = open(64512, &[2, 6, 65, 4, 0, 0, 0xfc, 0x00, 2, 2, 70, 0]);
        b.extend_from_slice(&message(4, &[]));
        assert_eq!(open_peer_as(&b), OpenPeek::As(64512));
        // RFC 9072 extended optional parameters length
        let mut body = vec![4];
        body.extend_from_slice(&23456u16.to_be_bytes());
        body.extend_from_slice(&90u16.to_be_bytes());
        body.extend_from_slice(&[2, 2, 2, 2, 255, 255, 0, 9, 2, 0, 6, 65, 4, 0, 1, 0x11, 0x71]);
        assert_eq!(open_peer_as(&message(1, &body)), OpenPeek::As(70001));
        // partial, other messages, garbage
        let o = open(65001, &[]);
        assert_eq!(open_peer_as(&o[..10]), OpenPeek::Incomplete);
        assert_eq!(open_peer_as(&o[..o.len() - 1]), OpenPeek::Incomplete);
        assert_eq!(open_peer_as(&message(4, &[])), OpenPeek::Unknown);
        assert_eq!(open_peer_as(&[0u8; 40]), OpenPeek::Unknown);
        // truncated parameters never panic
        let bad = open(65001, &[2, 9, 65, 4, 0]);
        assert_eq!(open_peer_as(&bad), OpenPeek::As(65001));
        for n in 0..o.len() {
            let _ = open_peer_as(&o[..n]);
        }
    }

    #[test]
    fn listener_password_is_the_first_sessions_and_conflicts_are_seen() {
        let mk = |port: u16, pw: Option<&str>| {
            let mut c = PeerConfig::new("10.0.0.5".parse().unwrap(), 65001, 64512);
            c.port = port;
            c.password = pw.map(str::to_string);
            c
        };
        let (a, b, none, empty) = (
            mk(179, Some("a")),
            mk(1790, Some("b")),
            mk(1791, None),
            mk(1792, Some("")),
        );
        assert_eq!(listener_password(&[]), (None, false));
        assert_eq!(listener_password(&[&a]), (Some("a"), false));
        assert_eq!(
            listener_password(&[&a, &mk(1790, Some("a"))]),
            (Some("a"), false)
        );
        assert_eq!(listener_password(&[&a, &b]), (Some("a"), true));
        assert_eq!(listener_password(&[&none, &a]), (None, true));
        // an empty password is none
        assert_eq!(listener_password(&[&none, &empty]), (None, false));
    }

    #[test]
    fn next_hop_mode_and_allow_local_as_are_export_or_session_settings() {
        let a = PeerConfig::new(lo(), 65000, 64512);
        let mut b = a.clone();
        b.next_hop_mode = NextHopMode::SelfHop;
        assert_eq!(a.session_key(), b.session_key(), "export policy only");
        b.allow_local_as = 1;
        assert_ne!(a.session_key(), b.session_key(), "import: a new session");
        let mut c = a.clone();
        c.port = 1790;
        assert_ne!(a.key(), c.key());
        assert_eq!(c.key().to_string(), "127.0.0.1:1790");
        assert_eq!(a.key().to_string(), "127.0.0.1");
    }
}
