//! Network policy and natOutgoing as reconcilers ([`crate::reconcile::Reconciler`]),
//! in the same list as links, sysctls, neighbours and routes:
//!
//! - [`Policy`]: observe — nothing up front: its applier reads the filter table back
//!   itself when due (every [`crate::policy_apply::READ_BACK_EVERY`], after an error,
//!   when the kernel chains' jumps change), and otherwise trusts what it wrote; plan —
//!   the incremental renderers ([`crate::policy_render::Renderer`]) brought to the
//!   resolved policy, purely; apply — the ipsets and one `iptables-restore` per family
//!   ([`crate::policy_apply::PolicyApplier`]), or the removal of every `brl-` chain and
//!   set once no policy is left; once, the chains and sets a replaced calico-node left.
//! - [`NatOutgoing`]: plan — the nat table for the pools ([`crate::nat_outgoing`]);
//!   apply — the same applier, or the removal of Brindle's nat chains.

use crate::model::Pool;
use crate::policy_apply::PolicyApplier;
use crate::policy_render::{Family, Rendered, Renderer};
use crate::reconcile::{Cx, Reconciler, Report};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::io;
use tracing::{info, warn};

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

pub use crate::reconcile::RuleCounter;

/// The policy chains and ipsets of both families.
#[derive(Default)]
pub struct Policy {
    applier: PolicyApplier,
    /// Per family, updated incrementally (None: no policy programmed).
    renderers: Option<[Renderer; 2]>,
    /// What apply does: program (true) or remove (false, when policy was on).
    program: bool,
    remove: bool,
    calico_leftovers_checked: bool,
}

impl Policy {
    /// The kernel's counters of every policy rule programmed, both families summed (None
    /// without policy; the errors say which family could not be read).
    pub fn counters(&self) -> Option<(Vec<RuleCounter>, Vec<String>)> {
        let renderers = self.renderers.as_ref()?;
        let mut sums: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut errors = Vec::new();
        for (family, rd) in FAMILIES.into_iter().zip(renderers.iter()) {
            let out = rd.rendered();
            if out.origins.is_empty() {
                continue;
            }
            match crate::policy_apply::counters(family, out) {
                Ok(c) => {
                    for (origin, (p, b)) in c {
                        let e = sums.entry(origin).or_default();
                        e.0 += p;
                        e.1 += b;
                    }
                }
                Err(e) => errors.push(format!("policy counters ({family:?}): {e}")),
            }
        }
        Some((
            sums.into_iter().map(|(o, (p, b))| (o, p, b)).collect(),
            errors,
        ))
    }
}

impl Reconciler for Policy {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn observe<'a>(&'a mut self, _cx: &'a Cx<'a>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn plan(&mut self, cx: &Cx<'_>) {
        match cx.policy {
            Some(resolved) => {
                let rds = self
                    .renderers
                    .get_or_insert_with(|| [Renderer::new(Family::V4), Renderer::new(Family::V6)]);
                for rd in rds.iter_mut() {
                    rd.update(resolved);
                }
                self.program = true;
                self.remove = false;
            }
            None => {
                self.program = false;
                self.remove = self.renderers.take().is_some();
            }
        }
    }

    fn apply<'a>(&'a mut self, _cx: &'a mut Cx<'_>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let mut r = Report {
                name: "policy",
                ..Default::default()
            };
            if let (true, Some(rds)) = (self.program, &self.renderers) {
                for (family, rd) in FAMILIES.into_iter().zip(rds.iter()) {
                    let rep = self.applier.apply(family, rd.rendered(), false);
                    r.changed += rep.tables_written + rep.sets_written;
                    if rep.drift_repaired {
                        warn!(
                            ?family,
                            "policy chains had drifted (changed outside Brindle): rewritten"
                        );
                    }
                    r.errors
                        .extend(rep.errors.into_iter().map(|e| format!("policy: {e}")));
                }
            }
            if std::mem::take(&mut self.remove) {
                for family in FAMILIES {
                    let rep = self.applier.remove(family);
                    r.removed += rep.chains_removed;
                    r.errors
                        .extend(rep.errors.into_iter().map(|e| format!("policy: {e}")));
                }
                info!("no network policy any more: policy chains removed");
            }
            if !self.calico_leftovers_checked {
                // Once, after Brindle's own chains are in place: a calico-node this agent
                // replaced must not go on enforcing its last policy.
                self.calico_leftovers_checked = true;
                for family in FAMILIES {
                    match crate::policy_apply::remove_calico_leftovers(family) {
                        Ok(0) => {}
                        Ok(n) => {
                            r.removed += n;
                            warn!(
                                ?family,
                                chains = n,
                                "removed the cali- chains and sets a replaced calico-node left behind"
                            )
                        }
                        Err(e) => r.errors.push(format!("calico-node leftovers: {e}")),
                    }
                }
            }
            r
        })
    }

    fn kernel_counters(&self) -> Option<(Vec<RuleCounter>, Vec<String>)> {
        self.counters()
    }
}

/// The nat table's natOutgoing chains and sets, per family.
#[derive(Default)]
pub struct NatOutgoing {
    applier: PolicyApplier,
    /// Per family: programmed.
    on: [bool; 2],
    plan: [Option<Rendered>; 2],
}

impl Reconciler for NatOutgoing {
    fn name(&self) -> &'static str {
        "nat-outgoing"
    }

    fn observe<'a>(&'a mut self, _cx: &'a Cx<'a>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn plan(&mut self, cx: &Cx<'_>) {
        let pools: &[Pool] = cx.pools;
        self.plan = FAMILIES.map(|f| crate::nat_outgoing::render(pools, f));
    }

    fn apply<'a>(&'a mut self, _cx: &'a mut Cx<'_>) -> BoxFuture<'a, Report> {
        Box::pin(async move {
            let mut r = Report {
                name: "nat-outgoing",
                ..Default::default()
            };
            let plans = std::mem::take(&mut self.plan);
            for (i, (family, out)) in FAMILIES.into_iter().zip(plans).enumerate() {
                match out {
                    Some(out) => {
                        let rep = self.applier.apply(family, &out, false);
                        r.changed += rep.tables_written + rep.sets_written;
                        r.errors
                            .extend(rep.errors.into_iter().map(|e| format!("natOutgoing: {e}")));
                        self.on[i] = true;
                    }
                    None if self.on[i] => {
                        let rep = self.applier.remove_table(family, "nat", &["nat-"]);
                        r.removed += rep.chains_removed;
                        r.errors
                            .extend(rep.errors.into_iter().map(|e| format!("natOutgoing: {e}")));
                        self.on[i] = false;
                    }
                    None => {}
                }
            }
            r
        })
    }
}
