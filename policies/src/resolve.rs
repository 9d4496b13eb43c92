//! The program resolved for one node's dataplane, with nothing of Kubernetes or Calico
//! left in it: named address sets with their members, per policy the ordered rules over
//! those sets, and per local endpoint (by interface) the tiers of policies that apply to
//! it in each direction; [`add_host_endpoints`] adds the node's host endpoints (by
//! interface, or `*`) likewise, with the failsafe ports. felix renders this into
//! iptables chains and ipsets.
//!
//! Set names are stable hashes of what defines the set (as Felix's `s:<hash>`), so a
//! membership change rewrites only the set, not the chains.

use crate::ir::{Direction, PolicyId, PortMatch, Program, SetDef, Side};
use crate::world::{Endpoint, World};
pub use brindle_model::resolved::{
    Failsafe, Members, REndpoint, RHostEndpoint, RPolicy, RRule, RSide, Resolved, SetAlt, TierRef,
};
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

struct Builder<'a> {
    world: &'a World,
    sets: BTreeMap<String, Members>,
}

impl Builder<'_> {
    fn set(&mut self, def: &SetDef) -> String {
        let name = format!("s:{}", short_hash(&format!("{def:?}")));
        if !self.sets.contains_key(&name) {
            self.sets
                .insert(name.clone(), Members::Nets(def.members(self.world)));
        }
        name
    }

    fn alt(&mut self, def: &SetDef) -> SetAlt {
        let except = match def {
            SetDef::Nets { except, .. } if !except.is_empty() => {
                let name = format!("s:{}", short_hash(&format!("except {except:?}")));
                self.sets
                    .insert(name.clone(), Members::Nets(except.clone()));
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
                let mut members: Vec<(IpAddr, u8, u16)> = self
                    .world
                    .endpoints
                    .iter()
                    .filter(|e| sets.is_empty() || sets.iter().any(|s| s.selects(e, self.world)))
                    .flat_map(|e| {
                        e.named_ports
                            .iter()
                            .filter(|n| &n.name == name && n.protocol == *protocol)
                            .flat_map(move |n| {
                                e.ips.iter().map(move |ip| (*ip, n.protocol, n.port))
                            })
                    })
                    .collect();
                members.sort();
                members.dedup();
                let key = format!("n:{}", short_hash(&format!("{name}/{protocol}/{sets:?}")));
                self.sets.insert(key.clone(), Members::IpPorts(members));
                named.push(key);
            }
        }
    }
}

/// Resolves a program for the local endpoints `local` (interface → the endpoint's
/// address).
pub fn resolve(program: &Program, world: &World, local: &[(String, IpAddr)]) -> Resolved {
    let mut b = Builder {
        world,
        sets: BTreeMap::new(),
    };
    let mut out = Resolved::default();
    for p in &program.policies {
        let key = policy_key(&p.id);
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
                        .map(|n| restrict_to_selected(&mut b, n, p, world))
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
        out.policies.insert(key, rp);
    }
    for (iface, ip) in local {
        let Some(e) = world.endpoint_at(*ip) else {
            continue;
        };
        let mut ep = REndpoint {
            iface: iface.clone(),
            ..REndpoint::default()
        };
        if e.is_host() {
            continue;
        }
        ep.ingress = tiers_for(program, world, e, Direction::Ingress);
        ep.egress = tiers_for(program, world, e, Direction::Egress);
        out.endpoints.push(ep);
    }
    out.endpoints.sort_by(|a, b| a.iface.cmp(&b.iface));
    out.sets = b.sets;
    out
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
/// tiers of the policies that select each and the failsafe ports; nothing when the node
/// has none (host traffic is then not policed and the failsafe ports mean nothing).
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
}

fn restrict_to_selected(
    b: &mut Builder,
    name: &str,
    p: &crate::ir::Policy,
    world: &World,
) -> String {
    let Some(Members::IpPorts(all)) = b.sets.get(name).cloned() else {
        return name.to_string();
    };
    let kept: Vec<(IpAddr, u8, u16)> = all
        .into_iter()
        .filter(|(ip, _, _)| {
            world
                .endpoint_at(*ip)
                .is_some_and(|e| p.applies.selects_in(e, world))
        })
        .collect();
    let key = format!("n:{}", short_hash(&format!("{name}/{}", policy_key(&p.id))));
    b.sets.insert(key.clone(), Members::IpPorts(kept));
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::compile;
    use crate::world::NamedPort;

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
                labels: [("app".to_string(), app.to_string())].into(),
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
}
