//! The evaluator: runs a [`Program`] on one flow, as the kernel rules rendered from the
//! same program do, and says what decided. Egress is decided at the source endpoint (if
//! it is a local workload), ingress at the destination; the flow passes when both allow.
//!
//! A host endpoint (an address in a HostEndpoint's `expectedIPs`, one with an interface:
//! one without polices nothing) decides like a workload, as Felix's host endpoint chains
//! do: first the failsafe ports (inbound: destination port and source net; outbound:
//! destination port and net) allow, then the policies that select it, then its profile:
//! `projectcalico-default-allow` allows, without it the host endpoint drops (default
//! deny). The flow is taken as crossing the host endpoint's interface (traffic between a
//! host and its own local workloads is not host endpoint traffic in the dataplane).

use crate::ir::{Action, Direction, PolicyId, Program};
use crate::world::{Endpoint, World};
use brindle_model::resolved::{Failsafe, DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND};
use serde::Serialize;
use std::net::IpAddr;

/// A flow: who talks to whom, on which protocol and destination port (and source port,
/// when known: a rule with source ports matches only a flow whose source port it names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number.
    pub protocol: u8,
    pub port: Option<u16>,
    pub src_port: Option<u16>,
}

/// How one direction was decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Step {
    /// That side is not a workload endpoint (a host or outside address): no policy here.
    NotAnEndpoint,
    /// No policy selects the endpoint for this direction: not isolated (allowed).
    NotIsolated,
    /// A rule decided.
    Rule {
        policy: PolicyId,
        /// The rule's index in the policy's `ingress`/`egress` list.
        rule: usize,
        action: Action,
    },
    /// Policies select the endpoint and none allowed: the end of tier `tier` dropped it.
    EndOfTier {
        tier: String,
        policies: Vec<PolicyId>,
    },
    /// Every tier passed: the profile allowed it.
    Passed,
    /// A host endpoint's failsafe port (`tcp:22`): allowed before any policy.
    Failsafe { port: String },
    /// A host endpoint that no policy decided for: its profile
    /// `projectcalico-default-allow` allowed it.
    ProfileAllowed,
    /// A host endpoint that no policy decided for, without a profile that allows: dropped
    /// (a host endpoint is default-deny).
    HostEndpointDefaultDeny { policies: Vec<PolicyId> },
}

impl Step {
    pub fn allows(&self) -> bool {
        match self {
            Step::NotAnEndpoint
            | Step::NotIsolated
            | Step::Passed
            | Step::Failsafe { .. }
            | Step::ProfileAllowed => true,
            Step::Rule { action, .. } => *action == Action::Allow,
            Step::EndOfTier { .. } | Step::HostEndpointDefaultDeny { .. } => false,
        }
    }
}

/// The verdict and both directions' reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub egress: Step,
    pub ingress: Step,
}

fn decide(
    program: &Program,
    world: &World,
    at: &Endpoint,
    d: Direction,
    src: Option<&Endpoint>,
    dst: Option<&Endpoint>,
    flow: &Flow,
) -> Step {
    let mut tier: Option<&str> = None;
    let mut selecting: Vec<PolicyId> = Vec::new();
    let mut any_selected = false;
    let mut skip_tier: Option<&str> = None;
    for p in &program.policies {
        if tier != Some(p.tier.as_str()) {
            // Leaving a tier: if policies selected the endpoint and none decided or
            // passed, its end drops.
            if let Some(t) = tier {
                if !selecting.is_empty() && skip_tier != Some(t) {
                    return Step::EndOfTier {
                        tier: t.to_string(),
                        policies: selecting,
                    };
                }
            }
            tier = Some(p.tier.as_str());
            selecting.clear();
        }
        if skip_tier == Some(p.tier.as_str())
            || !p.applies_in(d)
            || !p.applies.selects_in(at, world)
        {
            continue;
        }
        any_selected = true;
        selecting.push(p.id.clone());
        for r in p.rules(d) {
            let m = &r.matches;
            let icmp_ok = |want: &Option<(Option<u8>, Option<u8>)>| {
                // The flow's ICMP type travels in `port` (type) for ICMP flows.
                want.is_some_and(|(t, _)| {
                    t.is_none()
                        || (flow.protocol == 1 || flow.protocol == 58)
                            && t == flow.port.map(|p| p as u8)
                })
            };
            let version = if flow.src.is_ipv4() { 4 } else { 6 };
            let ok = m.ip_version.is_none_or(|v| v == version)
                && m.protocol.is_none_or(|p| p == flow.protocol)
                && m.not_protocol != Some(flow.protocol)
                && (m.icmp.is_none() || icmp_ok(&m.icmp))
                && !(m.not_icmp.is_some() && icmp_ok(&m.not_icmp))
                && m.source
                    .matches(flow.src, src, flow.protocol, flow.src_port, world)
                && m.destination
                    .matches(flow.dst, dst, flow.protocol, flow.port, world);
            if !ok {
                continue;
            }
            match r.action {
                Action::Log => continue,
                Action::Pass => {
                    skip_tier = Some(p.tier.as_str());
                    break;
                }
                action => {
                    return Step::Rule {
                        policy: p.id.clone(),
                        rule: r.source_index,
                        action,
                    }
                }
            }
        }
    }
    if let Some(t) = tier {
        if !selecting.is_empty() && skip_tier != Some(t) {
            return Step::EndOfTier {
                tier: t.to_string(),
                policies: selecting,
            };
        }
    }
    if any_selected {
        Step::Passed
    } else {
        Step::NotIsolated
    }
}

/// The failsafe ports host endpoints have (Felix's `FailsafeInboundHostPorts` and
/// `FailsafeOutboundHostPorts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailsafePorts {
    pub inbound: Vec<Failsafe>,
    pub outbound: Vec<Failsafe>,
}

impl Default for FailsafePorts {
    /// Calico's defaults.
    fn default() -> Self {
        FailsafePorts {
            inbound: DEFAULT_FAILSAFE_INBOUND.to_vec(),
            outbound: DEFAULT_FAILSAFE_OUTBOUND.to_vec(),
        }
    }
}

fn failsafe_step(list: &[Failsafe], other: IpAddr, flow: &Flow) -> Option<Step> {
    list.iter()
        .find(|f| {
            f.protocol == flow.protocol
                && flow.port == Some(f.port)
                && f.net
                    .is_none_or(|n| n.is_ipv4() == other.is_ipv4() && n.contains(other))
        })
        .map(|f| Step::Failsafe { port: f.label() })
}

/// One direction at one endpoint: a workload's as [`decide`]; a host endpoint's with
/// failsafe ports first and its profile last.
#[allow(clippy::too_many_arguments)]
fn decide_at(
    program: &Program,
    world: &World,
    at: &Endpoint,
    d: Direction,
    src: Option<&Endpoint>,
    dst: Option<&Endpoint>,
    flow: &Flow,
    failsafe: &FailsafePorts,
) -> Step {
    let Some(h) = &at.host else {
        return decide(program, world, at, d, src, dst, flow);
    };
    if h.iface.is_empty() {
        // Without an interface a host endpoint polices nothing.
        return Step::NotAnEndpoint;
    }
    let fs = match d {
        Direction::Ingress => failsafe_step(&failsafe.inbound, flow.src, flow),
        Direction::Egress => failsafe_step(&failsafe.outbound, flow.dst, flow),
    };
    if let Some(step) = fs {
        return step;
    }
    match decide(program, world, at, d, src, dst, flow) {
        Step::NotIsolated | Step::Passed if h.profile_allows => Step::ProfileAllowed,
        Step::NotIsolated | Step::Passed => Step::HostEndpointDefaultDeny {
            policies: program
                .policies
                .iter()
                .filter(|p| p.applies_in(d) && p.applies.selects_in(at, world))
                .map(|p| p.id.clone())
                .collect(),
        },
        other => other,
    }
}

/// Evaluates one flow (host endpoints with Calico's default failsafe ports).
pub fn evaluate(program: &Program, world: &World, flow: &Flow) -> Decision {
    evaluate_with(program, world, flow, &FailsafePorts::default())
}

/// Evaluates one flow, host endpoints with `failsafe` ports.
pub fn evaluate_with(
    program: &Program,
    world: &World,
    flow: &Flow,
    failsafe: &FailsafePorts,
) -> Decision {
    let src = world.endpoint_at(flow.src);
    let dst = world.endpoint_at(flow.dst);
    let egress = match src {
        Some(s) => decide_at(
            program,
            world,
            s,
            Direction::Egress,
            src,
            dst,
            flow,
            failsafe,
        ),
        None => Step::NotAnEndpoint,
    };
    let ingress = match dst {
        Some(d) => decide_at(
            program,
            world,
            d,
            Direction::Ingress,
            src,
            dst,
            flow,
            failsafe,
        ),
        None => Step::NotAnEndpoint,
    };
    Decision {
        allowed: egress.allows() && ingress.allows(),
        egress,
        ingress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Applies, Match, Policy, PolicyKind, PortMatch, Rule, Side};
    use brindle_model::policy::LabelSelector;

    fn world() -> World {
        let mut w = World::default();
        for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2")] {
            w.add_endpoint(Endpoint {
                namespace: "ns".into(),
                name: name.into(),
                labels: Default::default(),
                ips: vec![ip.parse().unwrap()],
                named_ports: vec![],
                service_account: String::new(),
                host: None,
            });
        }
        w
    }

    fn policy(name: &str, order: f64, rules: Vec<(Action, Option<u16>)>) -> Policy {
        Policy {
            id: PolicyId {
                kind: PolicyKind::NetworkPolicy,
                namespace: Some("ns".into()),
                name: name.into(),
            },
            tier: "default".into(),
            order: Some(order),
            applies: Applies::KubePods {
                namespace: "ns".into(),
                pod_selector: LabelSelector::default(),
            },
            ingress_type: true,
            egress_type: false,
            ingress: rules
                .into_iter()
                .enumerate()
                .map(|(i, (action, port))| Rule {
                    matches: Match {
                        destination: Side {
                            ports: port
                                .map(|p| {
                                    vec![PortMatch::Range {
                                        protocol: 6,
                                        first: p,
                                        last: p,
                                    }]
                                })
                                .unwrap_or_default(),
                            ..Side::default()
                        },
                        ..Match::default()
                    },
                    action,
                    source_index: i,
                })
                .collect(),
            egress: vec![],
        }
    }

    fn flow(port: u16) -> Flow {
        Flow {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: 6,
            port: Some(port),
            src_port: None,
        }
    }

    #[test]
    fn order_deny_pass_and_log() {
        let w = world();
        // order 10 denies 22, logs everything; order 20 allows 22 and 80.
        let p = Program::new(vec![
            policy(
                "late",
                20.0,
                vec![(Action::Allow, Some(22)), (Action::Allow, Some(80))],
            ),
            policy(
                "early",
                10.0,
                vec![(Action::Log, None), (Action::Deny, Some(22))],
            ),
        ]);
        let d = evaluate(&p, &w, &flow(22));
        assert!(!d.allowed);
        assert!(
            matches!(&d.ingress, Step::Rule { policy, rule: 1, action: Action::Deny } if policy.name == "early"),
            "{d:?}"
        );
        let d = evaluate(&p, &w, &flow(80));
        assert!(d.allowed);
        assert!(matches!(&d.ingress, Step::Rule { policy, rule: 1, .. } if policy.name == "late"));
        assert!(!evaluate(&p, &w, &flow(443)).allowed, "end of tier");
        // Pass skips the rest of the tier: the profile allows.
        let p = Program::new(vec![
            policy("pass", 1.0, vec![(Action::Pass, None)]),
            policy("deny", 2.0, vec![(Action::Deny, None)]),
        ]);
        let d = evaluate(&p, &w, &flow(1));
        assert!(d.allowed);
        assert_eq!(d.ingress, Step::Passed);
        assert_eq!(d.egress, Step::NotIsolated);
    }
}
