//! The reconcilers behind one trait: each owns one kind of kernel state, and every apply
//! runs each of them, in order, through the same three steps —
//!
//! 1. [`Reconciler::observe`]: read what it owns from the kernel (netlink dumps,
//!    `/proc/sys`, files);
//! 2. [`Reconciler::plan`]: diff that against the [`Desired`] state, purely (no I/O, the
//!    time is [`Cx::now`]);
//! 3. [`Reconciler::apply`]: make the changes, and say what happened in the one
//!    [`Report`] type.
//!
//! Order matters and is the list's: links first (they give the interface indexes and
//! the host MTU every later step needs, through [`Cx`]), then sysctls, neighbours and
//! FDB, routes, the pod MTU file, network policy and natOutgoing (iptables and ipsets,
//! [`crate::policy_reconcile`]). An observation that fails ends the apply there, with
//! the error in that reconciler's report: the later plans would be made without what
//! the earlier ones learnt (a route plan without the interfaces deletes routes). The
//! run loop retries with a back-off.
//!
//! Links plan coarsely (the tunnels wanted): creating a device and tuning it needs the
//! kernel's answer (its index) in between, so their apply runs that sequence itself.

use crate::calc::{self, Desired, RpFilterPolicy, Warning, WarningCode};
use crate::endpoint;
use crate::links::{self, Link, LinkOutcome};
use crate::neigh::{self, KernelNeighbour, NeighPlan};
use crate::nl::Netlink;
use crate::routes::{self, KernelRoute, RoutePlan};
use crate::sysctl::{self, SysctlPlan};
use futures::future::BoxFuture;
use ipnetwork::IpNetwork;
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the reconcilers of one apply share: the desired state and the kernel handles,
/// and what earlier reconcilers found (interface indexes, MTUs).
pub struct Cx<'a> {
    pub desired: &'a Desired,
    pub(crate) nl: &'a Netlink,
    /// Route and neighbour protocol of Brindle's entries.
    pub protocol: u8,
    /// Root of the sysctl tree.
    pub proc_sys: &'a std::path::Path,
    pub rp_filter_policy: RpFilterPolicy,
    /// The resolved network policy (None: none; the policy reconciler removes its chains).
    pub policy: Option<&'a brindle_model::resolved::Resolved>,
    /// The IP pools (natOutgoing).
    pub pools: &'a [crate::model::Pool],
    /// The time of this apply (plans use it, never the clock).
    pub now: Instant,
    /// Interface name → index, as the links reconciler leaves them.
    pub ifindex: HashMap<String, u32>,
    pub host_mtu: u32,
    pub pod_mtu: u32,
}

/// What one reconciler did in one apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The reconciler ([`Reconciler::name`]).
    pub name: &'static str,
    /// Entries created.
    pub added: usize,
    /// Entries rewritten in place (a route replaced, a sysctl or link setting written).
    pub changed: usize,
    pub removed: usize,
    /// Desired entries already right after the apply.
    pub in_place: usize,
    /// Entries waiting for an interface that does not exist (or is not up) yet.
    pub pending: usize,
    pub warnings: Vec<Warning>,
    pub errors: Vec<String>,
}

impl Report {
    fn new(name: &'static str) -> Report {
        Report {
            name,
            ..Default::default()
        }
    }

    /// Kernel changes made.
    pub fn changes(&self) -> usize {
        self.added + self.changed + self.removed
    }
}

/// One rule's kernel counters: `(origin, packets, bytes)`; for policy the origin is
/// `<policy> <direction> rule <n>`.
pub type RuleCounter = (String, u64, u64);

/// One kind of kernel state, reconciled in three steps (see the module doc).
pub trait Reconciler: Send {
    fn name(&self) -> &'static str;
    /// Reads the kernel's state into `self`.
    fn observe<'a>(&'a mut self, cx: &'a Cx<'a>) -> BoxFuture<'a, io::Result<()>>;
    /// Diffs the observation against `cx.desired`, into `self`. Pure.
    fn plan(&mut self, cx: &Cx<'_>);
    /// Makes the planned changes; may fill `cx` for the reconcilers after it.
    fn apply<'a>(&'a mut self, cx: &'a mut Cx<'_>) -> BoxFuture<'a, Report>;
    /// The kernel's counters of what this reconciler programmed, read now (None: it
    /// counts nothing, or has nothing programmed). Read apart from the applies.
    fn kernel_counters(&self) -> Option<(Vec<RuleCounter>, Vec<String>)> {
        None
    }
}

/// The reconcilers of a [`crate::Dataplane`], in order.
pub fn all(
    state_dir: Option<PathBuf>,
    unclaimed_route_grace: Duration,
) -> Vec<Box<dyn Reconciler>> {
    vec![
        Box::new(Links::default()),
        Box::new(Sysctls::default()),
        Box::new(Neighbours::default()),
        Box::new(Routes {
            grace: unclaimed_route_grace,
            ..Default::default()
        }),
        Box::new(PodMtu {
            state_dir,
            ..Default::default()
        }),
        Box::new(crate::policy_reconcile::Policy::default()),
        Box::new(crate::policy_reconcile::NatOutgoing::default()),
    ]
}

/// `tunl0` and `vxlan.brindle`: existence, MTU, MAC, addresses.
#[derive(Default)]
pub struct Links {
    observed: Vec<Link>,
}

impl Reconciler for Links {
    fn name(&self) -> &'static str {
        "links"
    }

    fn observe<'a>(&'a mut self, cx: &'a Cx<'a>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.observed = links::dump_links(cx.nl).await?;
            Ok(())
        })
    }

    fn plan(&mut self, _cx: &Cx<'_>) {}

    fn apply<'a>(&'a mut self, cx: &'a mut Cx<'_>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let mut r = Report::new(self.name());
            let summaries: Vec<_> = self.observed.iter().map(Link::summary).collect();
            cx.host_mtu = calc::host_mtu(&summaries);
            cx.pod_mtu = cx.desired.pod_mtu(cx.host_mtu);
            let mut lo = LinkOutcome::default();
            let before = std::mem::take(&mut self.observed);
            let after =
                match links::reconcile(cx.nl, cx.desired, cx.host_mtu, before, &mut lo).await {
                    Ok(l) => l,
                    Err(e) => {
                        r.errors.push(format!("netlink: {e}"));
                        Vec::new()
                    }
                };
            r.changed = lo.changes;
            r.errors.extend(lo.errors);
            cx.ifindex = after.iter().map(|l| (l.name.clone(), l.index)).collect();
            r
        })
    }
}

/// The global rp_filter normalisation and the desired sysctls (pod interfaces, tunnels).
#[derive(Default)]
pub struct Sysctls {
    rp_filter: Option<calc::RpFilterObserved>,
    rp_filter_error: Option<String>,
    observed: sysctl::Observed,
    plan: SysctlPlan,
    warnings: Vec<Warning>,
}

impl Reconciler for Sysctls {
    fn name(&self) -> &'static str {
        "sysctls"
    }

    fn observe<'a>(&'a mut self, cx: &'a Cx<'a>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match sysctl::observe_rp_filter(cx.proc_sys) {
                Ok(o) => {
                    self.rp_filter = Some(o);
                    self.rp_filter_error = None;
                }
                Err(e) => {
                    self.rp_filter = None;
                    self.rp_filter_error = Some(format!("read rp_filter settings: {e}"));
                }
            }
            self.observed = sysctl::observe(cx.proc_sys, cx.desired.sysctls.keys());
            Ok(())
        })
    }

    fn plan(&mut self, cx: &Cx<'_>) {
        let first = match &self.rp_filter {
            Some(obs) => {
                let p = calc::rp_filter_plan(cx.desired, obs, cx.rp_filter_policy);
                self.warnings = p.warnings;
                p.writes
            }
            None => {
                self.warnings.clear();
                Vec::new()
            }
        };
        self.plan = sysctl::plan(&first, &cx.desired.sysctls, &self.observed, |i| {
            cx.ifindex.contains_key(i)
        });
    }

    fn apply<'a>(&'a mut self, cx: &'a mut Cx<'_>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let mut r = Report::new(self.name());
            r.errors.extend(self.rp_filter_error.take());
            r.warnings = std::mem::take(&mut self.warnings);
            let p = std::mem::take(&mut self.plan);
            for (k, v) in &p.writes {
                match sysctl::write(cx.proc_sys, k, v) {
                    Ok(()) => r.changed += 1,
                    Err(e) => r.errors.push(format!("write {k}={v}: {e}")),
                }
            }
            r.pending = p.pending.len();
            r.in_place = cx
                .desired
                .sysctls
                .len()
                .saturating_sub(p.pending.len() + p.absent.len());
            r.errors.extend(p.errors);
            r
        })
    }
}

/// Neighbour entries (proxy-ARP'd pods' permanent entries, VXLAN peers) and the VXLAN
/// FDB, tagged with Brindle's protocol.
#[derive(Default)]
pub struct Neighbours {
    kernel: Vec<KernelNeighbour>,
    bridge: Vec<KernelNeighbour>,
    plan: NeighPlan,
}

impl Reconciler for Neighbours {
    fn name(&self) -> &'static str {
        "neighbours"
    }

    fn observe<'a>(&'a mut self, cx: &'a Cx<'a>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let fdb = neigh::needs_fdb(&cx.desired.fdb, &cx.ifindex);
            (self.kernel, self.bridge) = neigh::observe(cx.nl, fdb).await?;
            Ok(())
        })
    }

    fn plan(&mut self, cx: &Cx<'_>) {
        self.plan = neigh::plan(
            cx.protocol,
            &cx.desired.neighbours,
            &cx.desired.fdb,
            &cx.ifindex,
            &self.kernel,
            &self.bridge,
        );
    }

    fn apply<'a>(&'a mut self, cx: &'a mut Cx<'_>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let o = neigh::apply_plan(cx.nl, cx.protocol, &self.plan).await;
            Report {
                name: self.name(),
                added: o.added + o.fdb_added,
                removed: o.removed + o.fdb_removed,
                pending: o.pending,
                errors: o.errors,
                ..Default::default()
            }
        })
    }
}

/// The main table's routes of Brindle's protocol.
#[derive(Default)]
pub struct Routes {
    own: Vec<KernelRoute>,
    plan: RoutePlan,
    /// Pod-interface routes no endpoint claims, and since when.
    unclaimed_seen: HashMap<IpNetwork, Instant>,
    /// How long such a route is left alone (the CNI plugin makes it before the agent
    /// has read the pod's record).
    grace: Duration,
}

impl Reconciler for Routes {
    fn name(&self) -> &'static str {
        "routes"
    }

    fn observe<'a>(&'a mut self, cx: &'a Cx<'a>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.own = routes::dump_own(cx.nl, cx.protocol, Some(routes::MAIN_TABLE)).await?;
            Ok(())
        })
    }

    fn plan(&mut self, cx: &Cx<'_>) {
        self.plan = routes::plan(
            &cx.desired.routes,
            &self.own,
            &cx.ifindex,
            cx.desired.keep_undesired_routes,
        );
        routes::expire_unclaimed(&mut self.plan, &mut self.unclaimed_seen, cx.now, self.grace);
    }

    fn apply<'a>(&'a mut self, cx: &'a mut Cx<'_>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let o = routes::apply_plan(cx.nl, cx.protocol, &self.plan, &cx.ifindex).await;
            let mut r = Report {
                name: self.name(),
                added: o.added,
                changed: o.replaced,
                removed: o.removed,
                in_place: o.programmed,
                pending: o.pending,
                errors: o.errors,
                ..Default::default()
            };
            for dst in o.foreign {
                r.warnings.push(Warning::new(
                    WarningCode::ForeignRoute,
                    format!(
                        "{dst}: a route of another protocol holds this destination; left alone"
                    ),
                ));
            }
            r
        })
    }
}

/// The pod MTU file the CNI plugin reads ([`endpoint::mtu_path`]).
#[derive(Default)]
pub struct PodMtu {
    state_dir: Option<PathBuf>,
    current: Option<u32>,
    write: Option<u32>,
}

impl Reconciler for PodMtu {
    fn name(&self) -> &'static str {
        "pod-mtu"
    }

    fn observe<'a>(&'a mut self, _cx: &'a Cx<'a>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.current = self.state_dir.as_deref().and_then(endpoint::read_mtu);
            Ok(())
        })
    }

    fn plan(&mut self, cx: &Cx<'_>) {
        self.write =
            (self.state_dir.is_some() && self.current != Some(cx.pod_mtu)).then_some(cx.pod_mtu);
    }

    fn apply<'a>(&'a mut self, _cx: &'a mut Cx<'_>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let mut r = Report::new(self.name());
            if let (Some(dir), Some(mtu)) = (&self.state_dir, self.write.take()) {
                let path = endpoint::mtu_path(dir);
                match endpoint::write_atomic(&path, format!("{mtu}\n").as_bytes()) {
                    // Not a kernel change: not counted as one.
                    Ok(()) => {}
                    Err(e) => r.errors.push(format!("write {}: {e}", path.display())),
                }
            }
            r
        })
    }
}

/// Runs `list` in order over one apply's context; one report per reconciler.
pub async fn run(list: &mut [Box<dyn Reconciler>], cx: &mut Cx<'_>) -> Vec<Report> {
    let mut reports = Vec::with_capacity(list.len());
    for rec in list.iter_mut() {
        if let Err(e) = rec.observe(cx).await {
            let mut r = Report::new(rec.name());
            r.errors.push(format!("netlink: {e}"));
            reports.push(r);
            break;
        }
        rec.plan(cx);
        reports.push(rec.apply(cx).await);
    }
    reports
}
