//! Kubernetes `networking.k8s.io/v1` NetworkPolicy, compiled as Calico converts it
//! (`libcalico-go/lib/backend/k8s/conversion/conversion.go`): tier `default`, order 1000,
//! the policy's pods as its endpoints, every rule an Allow. The semantics:
//!
//! - a pod selected by any policy of a type is isolated for that type (default deny);
//! - the rules of all policies that select a pod are ORed;
//! - in one peer `podSelector` and `namespaceSelector` are ANDed; two peers are ORed;
//!   `podSelector` alone means the policy's namespace, `namespaceSelector` alone every pod
//!   of the matching namespaces, `{}` everything;
//! - `ipBlock` with `except`;
//! - absent or empty `from`/`to` matches every peer, absent or empty `ports` every port;
//!   a port without a number every port of its protocol; `endPort` a range; a named port
//!   resolves on the destination pod (ingress: the selected pod; egress: the peer);
//! - `policyTypes` absent or empty: Ingress, plus Egress when there are egress rules.

use crate::ir::{
    Action, Applies, Match, Policy, PolicyId, PolicyKind, PortMatch, Rule, SetDef, Side,
};
use brindle_model::policy::{KubeNetworkPolicy, KubePeer, KubePortValue, KubeRule};

/// Calico's order for Kubernetes NetworkPolicies.
pub const ORDER: f64 = 1000.0;

fn rule(np: &KubeNetworkPolicy, r: &KubeRule, index: usize, ingress: bool) -> Rule {
    let sets: Vec<SetDef> = if r.all_peers() {
        Vec::new()
    } else {
        r.peer_list()
            .iter()
            .map(|p| match p {
                KubePeer::Selectors {
                    pod_selector,
                    namespace_selector,
                } => SetDef::KubePods {
                    namespace: np.namespace.clone(),
                    pod_selector: pod_selector.clone(),
                    namespace_selector: namespace_selector.clone(),
                },
                KubePeer::IpBlock(b) => SetDef::Nets {
                    cidr: b.cidr,
                    except: b.except.clone(),
                },
            })
            .collect()
    };
    let ports = if r.all_ports() {
        Vec::new()
    } else {
        r.port_list()
            .iter()
            .map(|p| {
                let protocol = p.protocol.number();
                match &p.port {
                    None => PortMatch::Protocol(protocol),
                    Some(KubePortValue::Number(n)) => PortMatch::Range {
                        protocol,
                        first: *n,
                        last: p.end_port.unwrap_or(*n).max(*n),
                    },
                    Some(KubePortValue::Named(name)) => PortMatch::Named {
                        protocol,
                        name: name.clone(),
                    },
                }
            })
            .collect()
    };
    // The peer is the source of ingress and the destination of egress; the ports are the
    // destination's.
    let (source, destination) = if ingress {
        (
            Side {
                sets,
                ..Side::default()
            },
            Side {
                ports,
                ..Side::default()
            },
        )
    } else {
        (
            Side::default(),
            Side {
                sets,
                ports,
                ..Side::default()
            },
        )
    };
    Rule {
        matches: Match {
            source,
            destination,
            ..Match::default()
        },
        action: Action::Allow,
        source_index: index,
    }
}

/// Compiles one NetworkPolicy.
pub fn compile(np: &KubeNetworkPolicy) -> Policy {
    let types = np.effective_types();
    Policy {
        id: PolicyId {
            kind: PolicyKind::KubernetesNetworkPolicy,
            namespace: Some(np.namespace.clone()),
            name: np.name.clone(),
        },
        tier: brindle_model::policy::DEFAULT_TIER.to_string(),
        order: Some(ORDER),
        applies: Applies::KubePods {
            namespace: np.namespace.clone(),
            pod_selector: np.pod_selector.clone(),
        },
        ingress_type: types.ingress,
        egress_type: types.egress,
        ingress: np
            .ingress_rules()
            .iter()
            .enumerate()
            .map(|(i, r)| rule(np, r, i, true))
            .collect(),
        egress: np
            .egress_rules()
            .iter()
            .enumerate()
            .map(|(i, r)| rule(np, r, i, false))
            .collect(),
    }
}
