//! The dataplane driver: [`Dataplane::apply`] computes the desired state from a
//! [`Model`] and runs the reconcilers ([`crate::reconcile`]: links → sysctls →
//! neighbours/FDB → routes → the pod MTU file → network policy → natOutgoing); [`Dataplane::run`] re-applies on model changes, on kernel
//! events (route/link/neighbour/address/netconf multicast groups: a hand-deleted route or
//! a changed `rp_filter` is repaired within the debounce delay) and on a periodic resync.
//!
//! Threading: a `Dataplane` works in the network namespace of the thread that created it
//! (netlink sockets and `/proc/sys/net` follow the calling thread). Create it, and run
//! it, on that thread's tokio runtime; never move a tokio worker between namespaces.
//!
//! Shutdown: dropping a `Dataplane` (or leaving [`Dataplane::run`]) leaves every route in
//! place, so pods keep working while the agent restarts; the next `Dataplane` adopts the
//! routes without churn. [`cleanup`] removes everything Brindle owns.

use crate::calc::{self, Desired, RpFilterPolicy, Warning, ROUTE_PROTOCOL};
use crate::links;
use crate::model::Model;
use crate::neigh;
use crate::nl::{raise_rcvbuf, Netlink};
use crate::reconcile::Cx;
use crate::routes;
use crate::sysctl;
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourState};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_proto::sys::protocols::NETLINK_ROUTE;
use netlink_proto::sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Settings of a [`Dataplane`].
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Route protocol number of Brindle's routes (default [`ROUTE_PROTOCOL`]).
    pub protocol: u8,
    /// Where the pod MTU file goes ([`endpoint::mtu_path`]); `None`: not written.
    pub state_dir: Option<PathBuf>,
    /// Full resync period (default 30 s).
    pub resync_interval: Duration,
    /// Timeout of every netlink request/batch (default 5 s).
    pub request_timeout: Duration,
    /// Delay between a kernel event and the re-apply; more events in that window are
    /// folded into one apply (default 100 ms).
    pub debounce: Duration,
    pub rp_filter_policy: RpFilterPolicy,
    /// Root of the sysctl tree (default `/proc/sys`).
    pub proc_sys: PathBuf,
    /// How long a host route out of a pod interface that no endpoint claims is left alone
    /// (default 5 s): the CNI plugin makes it before the agent has read the pod's record.
    pub unclaimed_route_grace: Duration,
    /// How often [`Dataplane::run`] reads the kernel's policy counters (default 10 s),
    /// apart from any apply (`iptables-save -c` costs about 1 s at 180k rules).
    pub counters_interval: Duration,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            protocol: ROUTE_PROTOCOL,
            state_dir: None,
            resync_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            debounce: Duration::from_millis(100),
            rp_filter_policy: RpFilterPolicy::default(),
            proc_sys: PathBuf::from(sysctl::PROC_SYS),
            unclaimed_route_grace: Duration::from_secs(5),
            counters_interval: Duration::from_secs(10),
        }
    }
}

pub use crate::reconcile::RuleCounter;

/// What one apply did: the reconcilers' [`crate::reconcile::Report`]s, and their sums.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub routes_added: usize,
    pub routes_replaced: usize,
    pub routes_removed: usize,
    /// Desired routes present in the kernel after the apply.
    pub routes_programmed: usize,
    /// Neighbour entries and VXLAN FDB entries.
    pub neighbours_added: usize,
    pub neighbours_removed: usize,
    pub links_changed: usize,
    pub sysctls_written: usize,
    /// ipsets and iptables tables written for policy.
    pub policy_writes: usize,
    /// The kernel's per-rule policy counters, `(origin, packets, bytes)`, when they were
    /// read (`Some([])` once policy is gone).
    pub policy_counters: Option<Vec<RuleCounter>>,
    /// Not an apply: [`Dataplane::run`]'s counter tick (every
    /// [`DataplaneConfig::counters_interval`]) read `policy_counters` and nothing else; the
    /// other fields repeat the last apply's.
    pub counters_only: bool,
    /// Items waiting for an interface that does not exist (or is not up) yet.
    pub pending: usize,
    pub local_endpoints: usize,
    pub host_mtu: u32,
    pub pod_mtu: u32,
    /// This apply was the periodic resync.
    pub resync: bool,
    pub duration: Duration,
    pub warnings: Vec<Warning>,
    pub errors: Vec<String>,
    /// Each reconciler's report, in order (the fields above sum them).
    pub reconcilers: Vec<crate::reconcile::Report>,
}

impl ApplyReport {
    /// Number of kernel changes made.
    pub fn changes(&self) -> usize {
        self.routes_added
            + self.routes_replaced
            + self.routes_removed
            + self.neighbours_added
            + self.neighbours_removed
            + self.links_changed
            + self.sysctls_written
            + self.policy_writes
    }
}

/// What [`cleanup`] removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupReport {
    pub routes_removed: usize,
    pub neighbours_removed: usize,
    pub links_changed: usize,
    pub errors: Vec<String>,
}

/// Brindle's dataplane in one network namespace.
pub struct Dataplane {
    cfg: DataplaneConfig,
    nl: Netlink,
    logged_warnings: BTreeSet<String>,
    /// The reconcilers, in order ([`crate::reconcile::all`]).
    reconcilers: Vec<Box<dyn crate::reconcile::Reconciler>>,
    /// The last model had network policy (its counters are cleared when it goes).
    policy_on: bool,
}

impl Dataplane {
    /// Opens the netlink socket in the calling thread's namespace; needs a tokio runtime.
    pub fn new(cfg: DataplaneConfig) -> io::Result<Self> {
        let nl = Netlink::open(cfg.request_timeout)?;
        let reconcilers = crate::reconcile::all(cfg.state_dir.clone(), cfg.unclaimed_route_grace);
        Ok(Dataplane {
            cfg,
            nl,
            logged_warnings: BTreeSet::new(),
            reconcilers,
            policy_on: false,
        })
    }

    pub fn config(&self) -> &DataplaneConfig {
        &self.cfg
    }

    /// Computes the desired state for `model` and brings the kernel to it.
    pub async fn apply(&mut self, model: &Model) -> ApplyReport {
        let start = Instant::now();
        let d = calc::desired(model, self.cfg.protocol);
        let mut r = ApplyReport {
            warnings: d.warnings.clone(),
            local_endpoints: model.endpoints.len(),
            ..Default::default()
        };
        self.reconcile(&d, model, &mut r).await;
        if self.policy_on && model.policy.is_none() {
            r.policy_counters = Some(Vec::new());
        }
        self.policy_on = model.policy.is_some();
        r.duration = start.elapsed();
        self.log(&r);
        r
    }

    /// The kernel's counters of every rule programmed (network policy), from the
    /// reconcilers that count (None: none has anything programmed).
    pub fn policy_counters(&self) -> Option<(Vec<RuleCounter>, Vec<String>)> {
        let mut out: Option<(Vec<RuleCounter>, Vec<String>)> = None;
        for rec in &self.reconcilers {
            if let Some((c, e)) = rec.kernel_counters() {
                let o = out.get_or_insert_with(Default::default);
                o.0.extend(c);
                o.1.extend(e);
            }
        }
        out
    }

    fn log(&mut self, r: &ApplyReport) {
        let now: BTreeSet<String> = r.warnings.iter().map(|w| w.to_string()).collect();
        for w in now.difference(&self.logged_warnings) {
            warn!("dataplane: {w}");
        }
        self.logged_warnings = now;
        for e in &r.errors {
            warn!("dataplane error: {e}");
        }
        if r.changes() > 0 {
            info!(
                routes_added = r.routes_added,
                routes_replaced = r.routes_replaced,
                routes_removed = r.routes_removed,
                neighbours = r.neighbours_added + r.neighbours_removed,
                links = r.links_changed,
                sysctls = r.sysctls_written,
                pending = r.pending,
                ms = r.duration.as_millis() as u64,
                "dataplane applied"
            );
        } else {
            debug!(
                routes = r.routes_programmed,
                pending = r.pending,
                "dataplane in sync"
            );
        }
    }

    /// Runs the reconcilers ([`crate::reconcile`]) and sums their reports into `r`.
    async fn reconcile(&mut self, d: &Desired, model: &Model, r: &mut ApplyReport) {
        let mut cx = Cx {
            desired: d,
            policy: model.policy.as_ref(),
            pools: &model.pools,
            nl: &self.nl,
            protocol: self.cfg.protocol,
            proc_sys: &self.cfg.proc_sys,
            rp_filter_policy: self.cfg.rp_filter_policy,
            now: Instant::now(),
            ifindex: HashMap::new(),
            host_mtu: 0,
            pod_mtu: 0,
        };
        let reports = crate::reconcile::run(&mut self.reconcilers, &mut cx).await;
        r.host_mtu = cx.host_mtu;
        r.pod_mtu = cx.pod_mtu;
        for rep in &reports {
            match rep.name {
                "links" => r.links_changed += rep.changes(),
                "sysctls" => r.sysctls_written += rep.changes(),
                "neighbours" => {
                    r.neighbours_added += rep.added;
                    r.neighbours_removed += rep.removed;
                }
                "routes" => {
                    r.routes_added += rep.added;
                    r.routes_replaced += rep.changed;
                    r.routes_removed += rep.removed;
                    r.routes_programmed += rep.in_place;
                }
                "policy" | "nat-outgoing" => r.policy_writes += rep.changed,
                _ => {}
            }
            r.pending += rep.pending;
            r.warnings.extend(rep.warnings.iter().cloned());
            r.errors.extend(rep.errors.iter().cloned());
        }
        r.reconcilers = reports;
    }

    /// Applies `models`' current value, then re-applies whenever the model changes, a
    /// relevant kernel event arrives, the resync period elapses, or (after errors or
    /// pending items) a retry is due — until `shutdown` completes or the model sender is
    /// dropped. Every apply's report goes to `on_report`. Leaves the kernel state in
    /// place when it returns.
    pub async fn run<F, R>(
        &mut self,
        mut models: watch::Receiver<Model>,
        mut on_report: R,
        shutdown: F,
    ) -> io::Result<()>
    where
        F: Future<Output = ()>,
        R: FnMut(&ApplyReport),
    {
        let mut events = Events::open(self.cfg.protocol, self.nl.port)?;
        tokio::pin!(shutdown);
        let mut model = models.borrow_and_update().clone();
        let mut next_resync = tokio::time::Instant::now() + self.cfg.resync_interval;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_secs(1);
        let mut dirty = true;
        let mut resync = false;
        let mut next_counters = tokio::time::Instant::now() + self.cfg.counters_interval;
        let mut last = ApplyReport::default();
        loop {
            if dirty {
                let mut r = self.apply(&model).await;
                r.resync = resync;
                on_report(&r);
                last = r.clone();
                if r.errors.is_empty() && r.pending == 0 {
                    retry_at = None;
                    backoff = Duration::from_secs(1);
                } else {
                    retry_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(self.cfg.resync_interval);
                }
                dirty = false;
                resync = false;
            }
            let retry = retry_at.unwrap_or(next_resync);
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                changed = models.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    model = models.borrow_and_update().clone();
                    dirty = true;
                }
                relevant = events.next() => {
                    if relevant {
                        // fold a burst of events into one apply
                        tokio::time::sleep(self.cfg.debounce).await;
                        events.drain();
                        dirty = true;
                    }
                }
                _ = tokio::time::sleep_until(next_resync) => {
                    next_resync = tokio::time::Instant::now() + self.cfg.resync_interval;
                    dirty = true;
                    resync = true;
                }
                _ = tokio::time::sleep_until(retry), if retry_at.is_some() => {
                    dirty = true;
                }
                _ = tokio::time::sleep_until(next_counters) => {
                    next_counters = tokio::time::Instant::now() + self.cfg.counters_interval;
                    if let Some((counters, errors)) = self.policy_counters() {
                        for e in &errors {
                            warn!("dataplane error: {e}");
                        }
                        let r = ApplyReport {
                            policy_counters: Some(counters),
                            counters_only: true,
                            errors,
                            ..last.clone()
                        };
                        on_report(&r);
                    }
                }
            }
        }
    }

    /// Removes everything Brindle owns in this namespace (see [`cleanup`]).
    pub async fn cleanup(&mut self) -> io::Result<CleanupReport> {
        cleanup_with(&self.nl, self.cfg.protocol).await
    }
}

async fn cleanup_with(nl: &Netlink, protocol: u8) -> io::Result<CleanupReport> {
    let mut r = CleanupReport::default();
    r.routes_removed = routes::cleanup(nl, protocol, &mut r.errors).await?;
    r.neighbours_removed = neigh::cleanup(nl, protocol, &mut r.errors).await?;
    r.links_changed = links::cleanup(nl, &mut r.errors).await?;
    let mut policy = crate::policy_apply::PolicyApplier::new();
    for family in [
        crate::policy_render::Family::V4,
        crate::policy_render::Family::V6,
    ] {
        r.errors.extend(policy.remove(family).errors);
        r.errors
            .extend(policy.remove_table(family, "nat", &["nat-"]).errors);
    }
    info!(
        routes = r.routes_removed,
        neighbours = r.neighbours_removed,
        links = r.links_changed,
        errors = r.errors.len(),
        "dataplane cleaned up"
    );
    Ok(r)
}

/// Removes everything Brindle owns in the calling thread's network namespace: every
/// route with [`ROUTE_PROTOCOL`] (all tables), every neighbour entry tagged with it,
/// `vxlan.brindle`, and tunl0's addresses (tunl0 is set down). Sysctls are left as they
/// are. Needs a tokio runtime.
pub async fn cleanup() -> io::Result<CleanupReport> {
    let nl = Netlink::open(DataplaneConfig::default().request_timeout)?;
    cleanup_with(&nl, ROUTE_PROTOCOL).await
}

// rtnetlink multicast groups (RTNLGRP_*)
const GROUPS: [u32; 8] = [
    1,  // LINK
    3,  // NEIGH
    5,  // IPV4_IFADDR
    7,  // IPV4_ROUTE
    9,  // IPV6_IFADDR
    11, // IPV6_ROUTE
    24, // IPV4_NETCONF (rp_filter, forwarding, proxy_arp changes)
    25, // IPV6_NETCONF
];

/// The kernel-event socket of the run loop.
struct Events {
    sock: TokioSocket,
    protocol: u8,
    /// Port id of our own request socket: its changes' echoes are not news.
    own_port: u32,
}

impl Events {
    fn open(protocol: u8, own_port: u32) -> io::Result<Self> {
        let mut sock = TokioSocket::new(NETLINK_ROUTE)?;
        let mask = GROUPS.iter().fold(0u32, |m, g| m | 1 << (g - 1));
        sock.socket_mut().bind(&SocketAddr::new(0, mask))?;
        raise_rcvbuf(sock.socket_ref(), 4 << 20);
        Ok(Events {
            sock,
            protocol,
            own_port,
        })
    }

    /// Waits for the next datagram; whether it may concern Brindle.
    async fn next(&mut self) -> bool {
        match self.sock.recv_from_full().await {
            Ok((buf, _)) => relevant(&buf, self.protocol, self.own_port),
            Err(e) => {
                // ENOBUFS: events were lost, so re-check everything
                if e.raw_os_error() != Some(libc::ENOBUFS) {
                    warn!("netlink event socket: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                true
            }
        }
    }

    /// Discards queued datagrams (an apply follows anyway).
    fn drain(&mut self) {
        let s = self.sock.socket_ref();
        let mut buf = vec![0u8; 65536];
        loop {
            match s.recv(&mut &mut buf[..], libc::MSG_DONTWAIT) {
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(_) => break,
            }
        }
    }
}

/// Whether a datagram of rtnetlink notifications may concern Brindle: its routes, any
/// link or address change, its neighbour entries, netconf changes (undecoded).
fn relevant(buf: &[u8], protocol: u8, own_port: u32) -> bool {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        if len < 16 || off + len > buf.len() {
            return true;
        }
        let rel = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len]) {
            // the echo of a change we made ourselves
            Ok(m) if own_port != 0 && m.header.port_number == own_port => false,
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r),
                ) => u8::from(r.header.protocol) == protocol,
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n),
                ) => {
                    let ours = n.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Protocol(p) if u8::from(*p) == protocol));
                    ours || (n.header.family == AddressFamily::Bridge
                        && n.header.state == NeighbourState::Permanent)
                }
                NetlinkPayload::InnerMessage(_) => true,
                _ => false,
            },
            // e.g. RTM_NEWNETCONF, which the packet crate does not decode
            Err(_) => true,
        };
        if rel {
            return true;
        }
        off += (len + 3) & !3;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The agent spawns these on a multi-threaded runtime: they must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(dp: &mut Dataplane, rx: watch::Receiver<Model>, m: &Model) {
        assert_send(&dp.apply(m));
        assert_send(&dp.run(rx, |_r: &ApplyReport| {}, async {}));
        assert_send(&cleanup());
    }

    #[test]
    fn event_filter_keeps_own_routes_links_and_netconf_and_skips_foreign_routes() {
        use netlink_packet_route::route::{RouteMessage, RouteProtocol};
        let encode = |m: RouteNetlinkMessage| {
            let mut nl = NetlinkMessage::from(m);
            nl.finalize();
            let mut buf = vec![0u8; nl.buffer_len()];
            nl.serialize(&mut buf);
            buf
        };
        let route = |proto: u8| {
            let mut r = RouteMessage::default();
            r.header.address_family = AddressFamily::Inet;
            r.header.protocol = RouteProtocol::from(proto);
            encode(RouteNetlinkMessage::DelRoute(r))
        };
        assert!(relevant(&route(80), 80, 4242));
        assert!(!relevant(&route(186), 80, 4242));
        // the echo of our own change (nlmsg_pid = our port)
        let mut own = route(80);
        own[12..16].copy_from_slice(&4242u32.to_ne_bytes());
        assert!(!relevant(&own, 80, 4242));
        // two messages in one datagram: relevant if any is
        let mut both = route(186);
        both.extend(route(80));
        assert!(relevant(&both, 80, 4242));
        assert!(relevant(
            &encode(RouteNetlinkMessage::NewLink(Default::default())),
            80,
            4242
        ));
        // RTM_NEWNETCONF (type 80), which the packet crate does not decode
        let mut netconf = vec![0u8; 24];
        netconf[0..4].copy_from_slice(&24u32.to_ne_bytes());
        netconf[4..6].copy_from_slice(&80u16.to_ne_bytes());
        netconf[16] = 2; // AF_INET
        assert!(relevant(&netconf, 80, 4242));
    }
}
