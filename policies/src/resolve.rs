//! The program resolved for one node's dataplane, with nothing of Kubernetes or Calico
//! left in it: named address sets with their members, per policy the ordered rules over
//! those sets, and per local endpoint (by interface) the tiers of policies that apply to
//! it in each direction. Only the active policies (those that apply to a local
//! endpoint, Felix's active rules) and the sets they name are in it; [`add_host_endpoints`] adds the node's host endpoints (by
//! interface, or `*`) likewise, with the failsafe ports. felix renders this into
//! iptables chains and ipsets.
//!
//! Set names are stable hashes of what defines the set (as Felix's `s:<hash>`), so a
//! membership change rewrites only the set, not the chains.

use crate::ir::{Applies, Direction, PolicyId, PortMatch, Program, SetDef, Side};
use crate::world::{Endpoint, World};
pub use brindle_model::resolved::{
    Failsafe, Members, REndpoint, RHostEndpoint, RPolicy, RRule, RSide, Resolved, SetAlt, TierRef,
};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// FNV-1a 64-bit of a stable text, as a short name part.
fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The key of a policy (its chains are named from it).
pub fn policy_key(id: &PolicyId) -> String {
    let kind = match id.kind {
        crate::ir::PolicyKind::KubernetesNetworkPolicy => "knp",
        crate::ir::PolicyKind::NetworkPolicy => "np",
        crate::ir::PolicyKind::GlobalNetworkPolicy => "gnp",
    };
    match &id.namespace {
        Some(ns) => format!("{kind}/{ns}/{}", id.name),
        None => format!("{kind}/{}", id.name),
    }
}

/// What defines a set's members (its name is a hash of this, so a name has one source).
#[derive(Debug, Clone, PartialEq)]
enum SetSource {
    /// The endpoints (host prefixes) or the net of a selector or `ipBlock`.
    Def(SetDef),
    /// Fixed nets (an `ipBlock`'s except).
    Nets(Vec<IpNetwork>),
    /// A named port on the endpoints of `sets` (every endpoint when empty).
    Named {
        name: String,
        protocol: u8,
        sets: Vec<SetDef>,
    },
    /// A named port set restricted to the endpoints a policy applies to.
    Restricted {
        name: String,
        protocol: u8,
        sets: Vec<SetDef>,
        applies: Applies,
    },
}

impl SetSource {
    fn members(&self, world: &World) -> Members {
        match self {
            SetSource::Def(def) => Members::Nets(def.members(world)),
            SetSource::Nets(n) => Members::Nets(n.clone()),
            SetSource::Named {
                name,
                protocol,
                sets,
            } => Members::IpPorts(named_members(name, *protocol, sets, world)),
            SetSource::Restricted {
                name,
                protocol,
                sets,
                applies,
            } => Members::IpPorts(
                named_members(name, *protocol, sets, world)
                    .into_iter()
                    .filter(|(ip, _, _)| {
                        world
                            .endpoint_at(*ip)
                            .is_some_and(|e| applies.selects_in(e, world))
                    })
                    .collect(),
            ),
        }
    }

    /// Whether `e` (in `world`) is one of the members' sources: a change of `e` can
    /// change the members only if its old or its new version is. (A named-port member
    /// comes from an endpoint with that port; restricted, it is kept by the policy's
    /// selection of the endpoint at its address, that same endpoint, addresses being
    /// distinct whenever this is asked.)
    fn touches(&self, e: &Endpoint, world: &World) -> bool {
        let named = |name: &String, protocol: u8, sets: &[SetDef]| {
            e.named_ports
                .iter()
                .any(|n| &n.name == name && n.protocol == protocol)
                && (sets.is_empty() || sets.iter().any(|s| s.selects(e, world)))
        };
        match self {
            SetSource::Def(def) => def.selects(e, world),
            SetSource::Nets(_) => false,
            SetSource::Named {
                name,
                protocol,
                sets,
            } => named(name, *protocol, sets),
            SetSource::Restricted {
                name,
                protocol,
                sets,
                applies,
            } => named(name, *protocol, sets) && applies.selects_in(e, world),
        }
    }
}

fn named_members(
    name: &str,
    protocol: u8,
    sets: &[SetDef],
    world: &World,
) -> Vec<(IpAddr, u8, u16)> {
    let mut members: Vec<(IpAddr, u8, u16)> = world
        .endpoints
        .iter()
        .filter(|e| sets.is_empty() || sets.iter().any(|s| s.selects(e, world)))
        .flat_map(|e| {
            e.named_ports
                .iter()
                .filter(|n| n.name == name && n.protocol == protocol)
                .flat_map(move |n| e.ips.iter().map(move |ip| (*ip, n.protocol, n.port)))
        })
        .collect();
    members.sort();
    members.dedup();
    members
}

/// Collects the sets a policy's rules name (the rules need no world).
#[derive(Default)]
struct Builder {
    sets: Vec<(String, SetSource)>,
}

impl Builder {
    fn set(&mut self, def: &SetDef) -> String {
        let name = format!("s:{}", short_hash(&format!("{def:?}")));
        self.sets.push((name.clone(), SetSource::Def(def.clone())));
        name
    }

    fn alt(&mut self, def: &SetDef) -> SetAlt {
        let except = match def {
            SetDef::Nets { except, .. } if !except.is_empty() => {
                let name = format!("s:{}", short_hash(&format!("except {except:?}")));
                self.sets
                    .push((name.clone(), SetSource::Nets(except.clone())));
                Some(name)
            }
            _ => None,
        };
        SetAlt {
            set: self.set(def),
            except,
        }
    }

    /// `ipBlock`'s except becomes a second set matched negatively; a Kubernetes rule with
    /// several peers is several sets, any of which matches.
    fn side(&mut self, s: &Side, rule_sets_for_named: &[SetDef]) -> RSide {
        let mut r = RSide {
            nets: s.nets.clone(),
            not_nets: s.not_nets.clone(),
            ..RSide::default()
        };
        for def in &s.sets {
            r.sets.push(self.alt(def));
        }
        for def in &s.not_sets {
            r.not_sets.push(self.set(def));
        }
        for p in &s.ports {
            self.port(
                p,
                &mut r.ports,
                &mut r.named_ports,
                &mut r.protocols,
                rule_sets_for_named,
            );
        }
        let mut ignored = Vec::new();
        for p in &s.not_ports {
            self.port(
                p,
                &mut r.not_ports,
                &mut r.not_named_ports,
                &mut ignored,
                rule_sets_for_named,
            );
        }
        r
    }

    fn port(
        &mut self,
        p: &PortMatch,
        ports: &mut Vec<(u8, u16, u16)>,
        named: &mut Vec<String>,
        protocols: &mut Vec<u8>,
        sets: &[SetDef],
    ) {
        match p {
            PortMatch::Protocol(proto) => protocols.push(*proto),
            PortMatch::Range {
                protocol,
                first,
                last,
            } => ports.push((*protocol, *first, *last)),
            PortMatch::Named { protocol, name } => {
                // The named port on the endpoints of this side's sets (every endpoint
                // when the side has none), as Felix's `n:` sets.
                let key = format!("n:{}", short_hash(&format!("{name}/{protocol}/{sets:?}")));
                self.sets.push((
                    key.clone(),
                    SetSource::Named {
                        name: name.clone(),
                        protocol: *protocol,
                        sets: sets.to_vec(),
                    },
                ));
                named.push(key);
            }
        }
    }

    /// Restricts a named-port set to the endpoints the policy selects.
    fn restrict_to_selected(&mut self, name: &str, p: &crate::ir::Policy) -> String {
        let Some(SetSource::Named {
            name: port,
            protocol,
            sets,
        }) = self
            .sets
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
        else {
            return name.to_string();
        };
        let key = format!("n:{}", short_hash(&format!("{name}/{}", policy_key(&p.id))));
        self.sets.push((
            key.clone(),
            SetSource::Restricted {
                name: port,
                protocol,
                sets,
                applies: p.applies.clone(),
            },
        ));
        key
    }
}

/// A policy's resolved rules and the sets they name.
fn compile_policy(p: &crate::ir::Policy) -> (RPolicy, Vec<(String, SetSource)>) {
    let mut b = Builder::default();
    let mut rp = RPolicy {
        id: p.id.to_string(),
        ..RPolicy::default()
    };
    for (d, rules, list) in [
        (Direction::Ingress, &p.ingress, &mut rp.ingress),
        (Direction::Egress, &p.egress, &mut rp.egress),
    ] {
        for r in rules {
            let m = &r.matches;
            // A named destination port resolves on the endpoint the traffic goes to:
            // for ingress the policy's own endpoints, for egress the rule's peers.
            let dest_sets: Vec<SetDef> = match d {
                Direction::Ingress => Vec::new(),
                Direction::Egress => m.destination.sets.clone(),
            };
            let mut destination = b.side(&m.destination, &dest_sets);
            if d == Direction::Ingress && !destination.named_ports.is_empty() {
                // Restrict the named-port sets to the endpoints the policy selects.
                destination.named_ports = destination
                    .named_ports
                    .iter()
                    .map(|n| b.restrict_to_selected(n, p))
                    .collect();
            }
            list.push(RRule {
                ip_version: m.ip_version,
                protocol: m.protocol,
                not_protocol: m.not_protocol,
                icmp: m.icmp,
                not_icmp: m.not_icmp,
                source: b.side(&m.source, &[]),
                destination,
                action: r.action,
                origin: format!(
                    "{} {} rule {}",
                    p.id,
                    if d == Direction::Ingress {
                        "ingress"
                    } else {
                        "egress"
                    },
                    r.source_index
                ),
            });
        }
    }
    (rp, b.sets)
}

/// Resolves a program for the local endpoints `local` (interface → the endpoint's
/// address).
pub fn resolve(program: &Program, world: &World, local: &[(String, IpAddr)]) -> Resolved {
    let mut r = Resolver::new();
    r.update(program, &std::sync::Arc::new(world.clone()), local);
    r.out
}

/// A policy as the resolver keeps it: compiled, resolved, and the sets its rules name.
type CompiledPolicy = (crate::ir::Policy, RPolicy, Vec<(String, SetSource)>);

/// One local endpoint as last resolved.
#[derive(Debug)]
struct LocalState {
    iface: String,
    ip: IpAddr,
    /// The world's endpoint at `ip` (None: no such endpoint, not resolved).
    endpoint: Option<Endpoint>,
    /// The keys of the policies that apply, per direction (ingress, egress).
    applies: [std::collections::BTreeSet<String>; 2],
    resolved: REndpoint,
}

/// Resolves incrementally: a policy is re-resolved only when it changed, a set's members
/// recomputed only when a changed endpoint (or namespace) could be one of them, and an
/// endpoint's tiers only when it or a policy that may apply to it changed. The result is
/// always identical to [`resolve`]'s (tested on random change sequences).
#[derive(Debug, Default)]
pub struct Resolver {
    /// Per policy key: the compiled policy, its resolved rules, and the sets they name
    /// (every policy of the program; only the active ones reach the output).
    policies: BTreeMap<String, CompiledPolicy>,
    /// Per set name: its source and members.
    sets: BTreeMap<String, SetSource>,
    /// The program's order: (key, tier), to notice a reordering.
    order: Vec<(String, String)>,
    locals: Vec<LocalState>,
    /// The world of the last update, shared with the caller's (not copied).
    world: Option<std::sync::Arc<World>>,
    out: Resolved,
}

type EpKey<'a> = (&'a str, &'a str);

fn by_key(w: &World) -> Option<BTreeMap<EpKey<'_>, &Endpoint>> {
    let mut m = BTreeMap::new();
    let mut ips = std::collections::HashSet::new();
    for e in &w.endpoints {
        if m.insert((e.namespace.as_str(), e.name.as_str()), e)
            .is_some()
        {
            return None;
        }
        for ip in &e.ips {
            if !ips.insert(*ip) {
                return None;
            }
        }
    }
    Some(m)
}

impl Resolver {
    pub fn new() -> Resolver {
        Resolver::default()
    }

    /// The last result.
    pub fn resolved(&self) -> &Resolved {
        &self.out
    }

    /// Brings the resolution to `program`, `world` and `local`; returns it.
    pub fn update(
        &mut self,
        program: &Program,
        world_arc: &std::sync::Arc<World>,
        local: &[(String, IpAddr)],
    ) -> &Resolved {
        let world: &World = world_arc;
        // The endpoints that changed (old and new versions); None: everything is to be
        // recomputed (the first time, or endpoints this diff cannot key: two endpoints
        // with one name or one address).
        let keys: Vec<String> = program.policies.iter().map(|p| policy_key(&p.id)).collect();
        let distinct_keys =
            keys.iter().collect::<std::collections::BTreeSet<_>>().len() == keys.len();
        let old_world = self.world.take();
        // Network sets and service accounts are few: a change of them recomputes all.
        let same_rest = old_world.as_ref().is_some_and(|o| {
            o.network_sets == world.network_sets && o.service_accounts == world.service_accounts
        });
        let changed: Option<(Vec<&Endpoint>, Vec<&Endpoint>)> = match (&old_world, by_key(world)) {
            (Some(old), Some(new)) if distinct_keys && same_rest => by_key(old).map(|old_map| {
                let ns_changed = |ns: &str| old.namespace_labels(ns) != world.namespace_labels(ns);
                let mut gone = Vec::new();
                let mut came = Vec::new();
                for (k, e) in &old_map {
                    if new.get(k) != Some(e) || ns_changed(&e.namespace) {
                        gone.push(*e);
                    }
                }
                for (k, e) in &new {
                    if old_map.get(k) != Some(e) || ns_changed(&e.namespace) {
                        came.push(*e);
                    }
                }
                (gone, came)
            }),
            _ => None,
        };
        if changed.is_none() {
            self.policies.clear();
            self.sets.clear();
            self.locals.clear();
            self.order.clear();
            self.out = Resolved::default();
        }

        // Policies: re-resolved when they changed.
        let mut changed_policies: std::collections::BTreeSet<String> =
            std::collections::BTreeSet::new();
        let wanted: std::collections::BTreeSet<&String> = keys.iter().collect();
        let gone: Vec<String> = self
            .policies
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for k in gone {
            self.policies.remove(&k);
            self.out.policies.remove(&k);
            changed_policies.insert(k);
        }
        for (p, key) in program.policies.iter().zip(&keys) {
            if self.policies.get(key).is_some_and(|(old, _, _)| old == p) {
                continue;
            }
            let (rp, sets) = compile_policy(p);
            // Re-inserted below when active.
            self.out.policies.remove(key);
            self.policies.insert(key.clone(), (p.clone(), rp, sets));
            changed_policies.insert(key.clone());
        }

        // Endpoints: which policies apply, re-evaluated for a changed endpoint (all
        // policies) or a changed policy (all endpoints); tiers rebuilt in program order.
        let order: Vec<(String, String)> = program
            .policies
            .iter()
            .zip(&keys)
            .map(|(p, k)| (k.clone(), p.tier.clone()))
            .collect();
        let reordered = order != self.order;
        let position: std::collections::HashMap<&str, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let by_key_policy: BTreeMap<&str, &crate::ir::Policy> = keys
            .iter()
            .map(String::as_str)
            .zip(program.policies.iter())
            .collect();
        let mut old_locals: BTreeMap<(String, IpAddr), LocalState> =
            std::mem::take(&mut self.locals)
                .into_iter()
                .map(|l| ((l.iface.clone(), l.ip), l))
                .collect();
        let mut any_changed = old_locals.len() != local.len();
        let mut locals = Vec::with_capacity(local.len());
        for (iface, ip) in local {
            // A host endpoint's expected address on a pod interface is not a workload.
            let e = world.endpoint_at(*ip).filter(|e| !e.is_host());
            let prev = old_locals.remove(&(iface.clone(), *ip));
            let same_endpoint = prev.as_ref().is_some_and(|l| {
                l.endpoint.as_ref() == e
                    && e.is_none_or(|e| {
                        old_world.as_ref().is_some_and(|ow| {
                            ow.namespace_labels(&e.namespace)
                                == world.namespace_labels(&e.namespace)
                        })
                    })
            }) && changed.is_some();
            let mut st = match prev {
                Some(l) if same_endpoint => l,
                _ => {
                    any_changed = true;
                    LocalState {
                        iface: iface.clone(),
                        ip: *ip,
                        endpoint: e.cloned(),
                        applies: Default::default(),
                        resolved: REndpoint {
                            iface: iface.clone(),
                            ..REndpoint::default()
                        },
                    }
                }
            };
            let Some(e) = e else {
                locals.push(st);
                continue;
            };
            let mut dirty = !same_endpoint || reordered;
            if same_endpoint {
                // Only the policies that changed can apply differently.
                for k in &changed_policies {
                    for (i, d) in [Direction::Ingress, Direction::Egress]
                        .into_iter()
                        .enumerate()
                    {
                        let now = by_key_policy
                            .get(k.as_str())
                            .is_some_and(|p| p.applies_in(d) && p.applies.selects_in(e, world));
                        let was = st.applies[i].contains(k);
                        if now != was {
                            dirty = true;
                            if now {
                                st.applies[i].insert(k.clone());
                            } else {
                                st.applies[i].remove(k);
                            }
                        }
                    }
                }
            } else {
                // A new or changed endpoint: every policy.
                for (p, k) in program.policies.iter().zip(&keys) {
                    for (i, d) in [Direction::Ingress, Direction::Egress]
                        .into_iter()
                        .enumerate()
                    {
                        if p.applies_in(d) && p.applies.selects_in(e, world) {
                            st.applies[i].insert(k.clone());
                        }
                    }
                }
            }
            if dirty {
                for i in 0..2 {
                    let mut ks: Vec<&String> = st.applies[i].iter().collect();
                    ks.sort_by_key(|k| position[k.as_str()]);
                    let mut tiers: Vec<TierRef> = Vec::new();
                    for k in ks {
                        let tier = &by_key_policy[k.as_str()].tier;
                        match tiers.last_mut() {
                            Some(t) if &t.name == tier => t.policies.push(k.clone()),
                            _ => tiers.push(TierRef {
                                name: tier.clone(),
                                policies: vec![k.clone()],
                            }),
                        }
                    }
                    let slot = if i == 0 {
                        &mut st.resolved.ingress
                    } else {
                        &mut st.resolved.egress
                    };
                    if *slot != tiers {
                        *slot = tiers;
                        any_changed = true;
                    }
                }
            }
            locals.push(st);
        }
        if any_changed || !old_locals.is_empty() || changed.is_none() {
            let mut eps: Vec<REndpoint> = locals
                .iter()
                .filter(|l| l.endpoint.is_some())
                .map(|l| l.resolved.clone())
                .collect();
            eps.sort_by(|a, b| a.iface.cmp(&b.iface));
            self.out.endpoints = eps;
        }
        self.locals = locals;
        // Active policies (Felix's active rules): those that apply to a local endpoint.
        // Only they, and the sets they name, reach the output: a node programs nothing
        // for the rest of the cluster's policies.
        let active: std::collections::BTreeSet<&String> = self
            .locals
            .iter()
            .filter(|l| l.endpoint.is_some())
            .flat_map(|l| l.applies.iter().flatten())
            .collect();
        self.out.policies.retain(|k, _| active.contains(k));
        for k in &active {
            if !self.out.policies.contains_key(*k) {
                if let Some((_, rp, _)) = self.policies.get(*k) {
                    self.out.policies.insert((*k).clone(), rp.clone());
                }
            }
        }

        // Sets: the union of what the active policies name; members recomputed for a new
        // set (or source), or when a changed endpoint can be a member.
        let mut want_sets: BTreeMap<&String, &SetSource> = BTreeMap::new();
        for k in &active {
            if let Some((_, _, sets)) = self.policies.get(*k) {
                for (n, s) in sets {
                    want_sets.entry(n).or_insert(s);
                }
            }
        }
        self.sets.retain(|n, _| want_sets.contains_key(n));
        self.out.sets.retain(|n, _| want_sets.contains_key(n));
        for (n, src) in want_sets {
            let recompute = match (self.sets.get(n), &changed, &old_world) {
                (Some(old), Some((gone, came)), Some(ow)) if old == src => {
                    gone.iter().any(|e| src.touches(e, ow))
                        || came.iter().any(|e| src.touches(e, world))
                }
                _ => true,
            };
            if recompute {
                self.out.sets.insert(n.clone(), src.members(world));
                self.sets.insert(n.clone(), src.clone());
            }
        }

        self.order = order;
        self.world = Some(world_arc.clone());
        &self.out
    }
}

/// The tiers of the policies that select `e` for `d`, in program order.
fn tiers_for(program: &Program, world: &World, e: &Endpoint, d: Direction) -> Vec<TierRef> {
    let mut tiers: Vec<TierRef> = Vec::new();
    for p in program
        .policies
        .iter()
        .filter(|p| p.applies_in(d) && p.applies.selects_in(e, world))
    {
        match tiers.last_mut() {
            Some(t) if t.name == p.tier => t.policies.push(policy_key(&p.id)),
            _ => tiers.push(TierRef {
                name: p.tier.clone(),
                policies: vec![policy_key(&p.id)],
            }),
        }
    }
    tiers
}

/// Adds `node`'s host endpoints (those with an interface, or `*`) to `out`, with the
/// tiers of the policies that select each (added to `out` with their sets when no
/// workload made them active) and the failsafe ports; nothing when the node has none
/// (host traffic is then not policed and the failsafe ports mean nothing).
/// Not incremental: a node has few host endpoints.
pub fn add_host_endpoints(
    out: &mut Resolved,
    program: &Program,
    world: &World,
    node: &str,
    failsafe_inbound: &[Failsafe],
    failsafe_outbound: &[Failsafe],
) {
    for e in world.host_endpoints_of(node) {
        let Some(h) = &e.host else { continue };
        if h.iface.is_empty() {
            continue;
        }
        out.host_endpoints.push(RHostEndpoint {
            name: e.name.clone(),
            iface: h.iface.clone(),
            ingress: tiers_for(program, world, e, Direction::Ingress),
            egress: tiers_for(program, world, e, Direction::Egress),
            profile_allows: h.profile_allows,
        });
    }
    out.host_endpoints
        .sort_by(|a, b| (&a.iface, &a.name).cmp(&(&b.iface, &b.name)));
    if !out.host_endpoints.is_empty() {
        out.failsafe_inbound = failsafe_inbound.to_vec();
        out.failsafe_outbound = failsafe_outbound.to_vec();
    }
    // The policies that apply to the host endpoints are active too, with their sets.
    let keys: std::collections::BTreeSet<String> = out
        .host_endpoints
        .iter()
        .flat_map(|h| h.ingress.iter().chain(&h.egress))
        .flat_map(|t| t.policies.iter().cloned())
        .collect();
    for key in keys {
        if out.policies.contains_key(&key) {
            continue;
        }
        let Some(p) = program.policies.iter().find(|p| policy_key(&p.id) == key) else {
            continue;
        };
        let (rp, sets) = compile_policy(p);
        out.policies.insert(key, rp);
        for (n, src) in sets {
            out.sets.entry(n).or_insert_with(|| src.members(world));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::compile;
    use crate::world::{Endpoint, NamedPort};

    #[test]
    fn sets_rules_and_endpoint_tiers() {
        let cfg = brindle_model::parse(
            "p.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}, {ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}}], ports: [{port: pg}]}]\n",
        )
        .unwrap();
        let mut w = World::default();
        for (name, app, ip) in [("web", "web", "10.1.0.1"), ("db", "db", "10.1.0.2")] {
            w.add_endpoint(Endpoint {
                namespace: "shop".into(),
                name: name.into(),
                labels: std::sync::Arc::new([("app".to_string(), app.to_string())].into()),
                ips: vec![ip.parse().unwrap()],
                named_ports: vec![NamedPort {
                    name: "pg".into(),
                    protocol: 6,
                    port: 5432,
                }],
                service_account: String::new(),
                host: None,
            });
        }
        let program = Program::new(
            cfg.kubernetes_network_policies
                .iter()
                .map(compile)
                .collect(),
        );
        let r = resolve(
            &program,
            &w,
            &[
                ("caliweb".into(), "10.1.0.1".parse().unwrap()),
                ("calidb".into(), "10.1.0.2".parse().unwrap()),
            ],
        );
        // db has the policy for ingress; web has nothing.
        assert_eq!(r.endpoints.len(), 2);
        let db = r.endpoints.iter().find(|e| e.iface == "calidb").unwrap();
        assert_eq!(
            db.ingress,
            vec![TierRef {
                name: "default".into(),
                policies: vec!["knp/shop/db".into()]
            }]
        );
        assert!(db.egress.is_empty());
        assert!(r
            .endpoints
            .iter()
            .find(|e| e.iface == "caliweb")
            .unwrap()
            .ingress
            .is_empty());
        let rule = &r.policies["knp/shop/db"].ingress[0];
        assert_eq!(rule.source.sets.len(), 2, "two peers, two sets");
        let members: Vec<(&Members, Option<&Members>)> = rule
            .source
            .sets
            .iter()
            .map(|a| (&r.sets[&a.set], a.except.as_ref().map(|e| &r.sets[e])))
            .collect();
        assert!(members.contains(&(&Members::Nets(vec!["10.1.0.1/32".parse().unwrap()]), None)));
        let block = Members::Nets(vec!["192.168.0.0/16".parse().unwrap()]);
        let except = Members::Nets(vec!["192.168.1.0/24".parse().unwrap()]);
        assert!(members.contains(&(&block, Some(&except))), "{members:?}");
        // The named port resolves on db only (the policy's endpoint), not on web.
        assert_eq!(rule.destination.named_ports.len(), 1);
        assert_eq!(
            r.sets[&rule.destination.named_ports[0]],
            Members::IpPorts(vec![("10.1.0.2".parse().unwrap(), 6, 5432)])
        );
        assert_eq!(
            rule.origin,
            "KubernetesNetworkPolicy shop/db ingress rule 0"
        );
    }

    /// A small deterministic generator (no dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn pod(g: &mut Lcg, i: u64) -> serde_json::Value {
        let role = ["web", "api", "db"][g.next(3) as usize];
        let mut labels = serde_json::json!({"role": role});
        if g.next(2) == 0 {
            labels["tier"] = serde_json::json!(["a", "b"][g.next(2) as usize]);
        }
        let port = if g.next(2) == 0 { "http" } else { "pg" };
        serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i}"), "namespace": format!("ns{}", g.next(3)), "labels": labels},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": port, "containerPort": 8000 + g.next(3)}]}]},
            "status": {"phase": "Running", "podIP": format!("10.0.0.{}", i + 1 + 100 * g.next(2))}})
    }

    fn policy(g: &mut Lcg, j: u64) -> serde_json::Value {
        let peer = |g: &mut Lcg| match g.next(4) {
            0 => {
                serde_json::json!({"podSelector": {"matchLabels": {"role": (["web", "api", "db"][g.next(3) as usize])}}})
            }
            1 => {
                serde_json::json!({"namespaceSelector": {"matchLabels": {"team": (["x", "y"][g.next(2) as usize])}}})
            }
            2 => serde_json::json!({"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.8/29"]}}),
            _ => {
                serde_json::json!({"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}})
            }
        };
        let ports = |g: &mut Lcg| {
            (0..g.next(3))
                .map(|_| match g.next(3) {
                    0 => serde_json::json!({"port": "http"}),
                    1 => serde_json::json!({"port": "pg", "protocol": "TCP"}),
                    _ => serde_json::json!({"port": 5000 + g.next(4)}),
                })
                .collect::<Vec<_>>()
        };
        let mut spec = serde_json::json!({"podSelector": {"matchLabels": {"role": (["web", "api", "db"][g.next(3) as usize])}}});
        let types = ["Ingress", "Egress"];
        let mut pt = Vec::new();
        if g.next(3) > 0 {
            spec["ingress"] = serde_json::json!([{"from": [peer(g), peer(g)], "ports": ports(g)}]);
            pt.push(types[0]);
        }
        if g.next(2) == 0 {
            spec["egress"] = serde_json::json!([{"to": [peer(g)], "ports": ports(g)}]);
            pt.push(types[1]);
        }
        spec["policyTypes"] = serde_json::json!(pt);
        serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("np{j}"), "namespace": format!("ns{}", g.next(3))}, "spec": spec})
    }

    #[test]
    fn incremental_resolution_equals_a_full_one() {
        let mut g = Lcg(11);
        let mut pods: BTreeMap<u64, serde_json::Value> =
            (0..12).map(|i| (i, pod(&mut g, i))).collect();
        let mut pols: BTreeMap<u64, serde_json::Value> =
            (0..6).map(|j| (j, policy(&mut g, j))).collect();
        let mut ns_team = ["x", "y", "x"];
        let mut nlocal = 8;
        let mut inc = Resolver::new();
        let mut nonempty = 0;
        for step in 0..400 {
            for _ in 0..1 + g.next(2) {
                match g.next(7) {
                    0 => {
                        let i = g.next(20);
                        pods.insert(i, pod(&mut g, i));
                    }
                    1 => {
                        pods.remove(&g.next(20));
                    }
                    2 => {
                        let j = g.next(10);
                        pols.insert(j, policy(&mut g, j));
                    }
                    3 => {
                        pols.remove(&g.next(10));
                    }
                    4 => ns_team[g.next(3) as usize] = ["x", "y", "z"][g.next(3) as usize],
                    5 => nlocal = g.next(15) as usize,
                    _ => {
                        // A label of one pod.
                        if let Some(p) = pods.values_mut().nth(g.next(12) as usize) {
                            p["metadata"]["labels"]["role"] =
                                serde_json::json!(["web", "api", "db"][g.next(3) as usize]);
                        }
                    }
                }
            }
            let mut objects: Vec<serde_json::Value> = (0..3)
                .map(|n| {
                    serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": format!("ns{n}"), "labels": {"team": ns_team[n]}}})
                })
                .collect();
            objects.extend(pods.values().cloned());
            objects.extend(pols.values().cloned());
            let decoded: Vec<brindle_model::Object> = objects
                .iter()
                .filter_map(|o| brindle_model::decode_json("t", o).unwrap())
                .collect();
            let cfg = brindle_model::ClusterConfig::from_objects("t", decoded).unwrap();
            let (program, _) = crate::program_of(&cfg);
            let world = std::sync::Arc::new(crate::world_of(&cfg));
            let local: Vec<(String, IpAddr)> = world
                .endpoints
                .iter()
                .take(nlocal)
                .map(|e| (format!("cali{}", e.name), e.ips[0]))
                .collect();
            let full = resolve(&program, &world, &local);
            let got = inc.update(&program, &world, &local);
            assert_eq!(got, &full, "step {step}");
            if !full.policies.is_empty() && !full.sets.is_empty() {
                nonempty += 1;
            }
        }
        // Not vacuous: most steps had active policies and sets.
        assert!(
            nonempty > 200,
            "{nonempty} of 400 steps with active policies"
        );
    }
}
