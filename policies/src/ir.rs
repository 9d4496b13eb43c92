//! The backend-neutral program: what felix renders into iptables chains and ipsets, and
//! what the evaluator runs.
//!
//! - A [`Policy`] applies to the endpoints its [`Applies`] selects, for the directions in
//!   `types`; its rules are ordered, each a [`Match`] and an [`Action`].
//! - Policies run in Calico's order: by tier (only `default` so far), then `order` (none
//!   = last), then name. For one endpoint and direction: the first rule that matches in
//!   the first policy that has one decides (Allow, Deny; Pass skips to the next tier; Log
//!   logs and goes on); when policies select the endpoint but none decides, the end of
//!   the tier drops (Felix's end-of-tier drop). A workload no policy selects for a
//!   direction is not isolated in it (Calico's profile `kns.<namespace>` allows); a host
//!   endpoint is (default-deny unless its profile is `projectcalico-default-allow`; the
//!   evaluator adds the failsafe ports).
//! - The other side of a flow is matched by [`Peer`] sets, defined by what selects their
//!   members ([`SetDef`]), resolved against the [`crate::World`] by [`SetDef::contains`]
//!   here and into ipset members by the renderer.

use crate::world::{Endpoint, World};
use brindle_model::policy::{LabelSelector, NamespaceMatch};
use brindle_model::selector::Scope;
use brindle_model::Selector;
use ipnetwork::IpNetwork;
use serde::Serialize;
use std::net::IpAddr;

/// Which kind of object a policy came from, for names and explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` NetworkPolicy (Calico's `knp.default.<name>`).
    KubernetesNetworkPolicy,
    NetworkPolicy,
    GlobalNetworkPolicy,
}

/// A policy's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PolicyId {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            PolicyKind::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
        };
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Direction {
    Ingress,
    Egress,
}

pub use brindle_model::resolved::Action;

/// The endpoints a policy applies to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Applies {
    /// A Kubernetes `podSelector` in one namespace.
    KubePods {
        namespace: String,
        pod_selector: LabelSelector,
    },
    /// A Calico policy's `selector` (in its namespace for a NetworkPolicy), restricted
    /// by `namespaceSelector` (GlobalNetworkPolicy) and `serviceAccountSelector`.
    Calico {
        namespace: Option<String>,
        selector: Selector,
        namespace_selector: Option<Selector>,
        service_account_selector: Option<Selector>,
    },
}

impl Applies {
    pub fn selects(&self, e: &Endpoint) -> bool {
        match self {
            Applies::KubePods {
                namespace,
                pod_selector,
            } => !e.is_host() && &e.namespace == namespace && pod_selector.matches(&e.labels),
            Applies::Calico { .. } => false,
        }
    }

    /// Whether the policy applies to `e` (Calico selectors need the world's labels).
    pub fn selects_in(&self, e: &Endpoint, world: &World) -> bool {
        match self {
            Applies::Calico {
                namespace,
                selector,
                namespace_selector,
                service_account_selector,
            } => {
                let labels = world.calico_labels(e);
                if e.is_host() {
                    // Only a GlobalNetworkPolicy's selector, evaluated as Felix does for a
                    // non-namespaced endpoint; a namespace or service account selector
                    // needs labels a host endpoint does not have.
                    return namespace.is_none()
                        && selector.matches_in(&labels, Scope::NonNamespaced)
                        && namespace_selector.as_ref().is_none_or(|s| {
                            s.with_label_prefix("pcns.")
                                .matches_in(&labels, Scope::NonNamespaced)
                        })
                        && service_account_selector.as_ref().is_none_or(|s| {
                            s.with_label_prefix("pcsa.")
                                .matches_in(&labels, Scope::NonNamespaced)
                        });
                }
                namespace.as_ref().is_none_or(|ns| &e.namespace == ns)
                    && selector.matches_in(&labels, Scope::Namespaced)
                    && namespace_selector.as_ref().is_none_or(|s| {
                        s.with_label_prefix("pcns.")
                            .matches_in(&labels, Scope::Namespaced)
                    })
                    && service_account_selector.as_ref().is_none_or(|s| {
                        s.with_label_prefix("pcsa.")
                            .matches_in(&labels, Scope::Namespaced)
                    })
            }
            other => other.selects(e),
        }
    }
}

/// A set of addresses (the other side of a flow), by what selects its members.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum SetDef {
    /// Kubernetes peer selectors: pods matching `pod_selector` (None: all pods) in
    /// namespaces matching `namespace_selector` (None: only `namespace`, the policy's).
    KubePods {
        namespace: String,
        pod_selector: Option<LabelSelector>,
        namespace_selector: Option<LabelSelector>,
    },
    /// A Calico entity's `selector` and `namespaceSelector`: endpoints matching both;
    /// without a `namespaceSelector`, those of `namespace` (the policy's, for a
    /// NetworkPolicy; every namespace for a GlobalNetworkPolicy). No selector: every
    /// endpoint of those namespaces.
    Calico {
        namespace: Option<String>,
        selector: Option<Selector>,
        namespace_selector: Option<NamespaceMatch>,
    },
    /// `ipBlock`: `cidr` minus `except`.
    Nets {
        cidr: IpNetwork,
        except: Vec<IpNetwork>,
    },
}

impl SetDef {
    /// The endpoints of the world this set's selectors select (nothing for nets).
    pub fn selects(&self, e: &Endpoint, world: &World) -> bool {
        match self {
            SetDef::KubePods {
                namespace,
                pod_selector,
                namespace_selector,
            } => {
                if e.is_host() {
                    return false;
                }
                let ns_ok = match namespace_selector {
                    None => &e.namespace == namespace,
                    Some(sel) => sel.matches(world.namespace_labels(&e.namespace)),
                };
                ns_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&e.labels))
            }
            SetDef::Calico {
                namespace,
                selector,
                namespace_selector,
            } => {
                let labels = world.calico_labels(e);
                if e.is_host() {
                    // Host endpoints are selected by `global()` and by a
                    // GlobalNetworkPolicy's rule selector without a namespace selector.
                    let ns_ok = match namespace_selector {
                        Some(NamespaceMatch::Global) => true,
                        Some(NamespaceMatch::Selector(_)) => false,
                        None => namespace.is_none(),
                    };
                    return ns_ok
                        && selector
                            .as_ref()
                            .is_none_or(|s| s.matches_in(&labels, Scope::NonNamespaced));
                }
                let ns_ok = match namespace_selector {
                    // global(): host endpoints and network sets only, never a pod.
                    Some(NamespaceMatch::Global) => false,
                    Some(NamespaceMatch::Selector(s)) => s
                        .with_label_prefix("pcns.")
                        .matches_in(&labels, Scope::Namespaced),
                    None => namespace.as_ref().is_none_or(|ns| &e.namespace == ns),
                };
                ns_ok
                    && selector
                        .as_ref()
                        .is_none_or(|s| s.matches_in(&labels, Scope::Namespaced))
            }
            SetDef::Nets { .. } => false,
        }
    }

    /// Whether this set's selectors select a GlobalNetworkSet or NetworkSet (Calico
    /// selectors only): a GlobalNetworkSet as a host endpoint is selected (`global()`, or
    /// a GlobalNetworkPolicy's selector without a namespace selector), a NetworkSet as a
    /// pod in its namespace is.
    pub fn selects_network_set(&self, n: &brindle_model::NetworkSetSpec, world: &World) -> bool {
        let SetDef::Calico {
            namespace,
            selector,
            namespace_selector,
        } = self
        else {
            return false;
        };
        let labels = world.network_set_labels(n);
        let (ns_ok, scope) = match &n.namespace {
            None => (
                match namespace_selector {
                    Some(NamespaceMatch::Global) => true,
                    Some(NamespaceMatch::Selector(_)) => false,
                    None => namespace.is_none(),
                },
                Scope::NonNamespaced,
            ),
            Some(ns) => (
                match namespace_selector {
                    Some(NamespaceMatch::Global) => false,
                    Some(NamespaceMatch::Selector(s)) => s
                        .with_label_prefix("pcns.")
                        .matches_in(&labels, Scope::Namespaced),
                    None => namespace.as_ref().is_none_or(|p| p == ns),
                },
                Scope::Namespaced,
            ),
        };
        ns_ok
            && selector
                .as_ref()
                .is_none_or(|s| s.matches_in(&labels, scope))
    }

    /// Whether `ip` is a member.
    pub fn contains(&self, ip: IpAddr, world: &World) -> bool {
        match self {
            SetDef::Nets { cidr, except } => {
                cidr.contains(ip)
                    && cidr.is_ipv4() == ip.is_ipv4()
                    && !except.iter().any(|x| x.contains(ip))
            }
            _ => {
                world
                    .endpoint_at(ip)
                    .is_some_and(|e| self.selects(e, world))
                    || world.network_sets.iter().any(|n| {
                        n.nets
                            .iter()
                            .any(|net| net.is_ipv4() == ip.is_ipv4() && net.contains(ip))
                            && self.selects_network_set(n, world)
                    })
            }
        }
    }

    /// The members as the renderer puts them in an ipset: host prefixes of the selected
    /// endpoints and the nets of the selected network sets, or the nets (an `except` is
    /// a second set, matched negatively).
    pub fn members(&self, world: &World) -> Vec<IpNetwork> {
        match self {
            SetDef::Nets { cidr, .. } => vec![*cidr],
            _ => {
                let mut v: Vec<IpNetwork> = world
                    .endpoints
                    .iter()
                    .filter(|e| self.selects(e, world))
                    .flat_map(|e| e.ips.iter())
                    .map(|ip| {
                        IpNetwork::new(*ip, if ip.is_ipv4() { 32 } else { 128 })
                            .expect("host prefix")
                    })
                    .collect();
                for n in &world.network_sets {
                    if self.selects_network_set(n, world) {
                        v.extend(n.nets.iter().copied());
                    }
                }
                v.sort();
                v.dedup();
                v
            }
        }
    }
}

/// Ports: a protocol and a numeric range, or a named port resolved on the endpoint of
/// that side.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum PortMatch {
    /// Protocol only (every port).
    Protocol(u8),
    Range {
        protocol: u8,
        first: u16,
        last: u16,
    },
    Named {
        protocol: u8,
        name: String,
    },
}

impl PortMatch {
    pub fn protocol(&self) -> u8 {
        match self {
            PortMatch::Protocol(p)
            | PortMatch::Range { protocol: p, .. }
            | PortMatch::Named { protocol: p, .. } => *p,
        }
    }

    /// Whether `(protocol, port)` on the endpoint `ep` (if that side is one) matches.
    pub fn matches(&self, protocol: u8, port: Option<u16>, ep: Option<&Endpoint>) -> bool {
        if protocol != self.protocol() {
            return false;
        }
        match self {
            PortMatch::Protocol(_) => true,
            PortMatch::Range { first, last, .. } => port.is_some_and(|p| *first <= p && p <= *last),
            PortMatch::Named { protocol, name } => match (port, ep) {
                (Some(p), Some(e)) => e
                    .named_ports
                    .iter()
                    .any(|n| &n.name == name && n.protocol == *protocol && n.port == p),
                _ => false,
            },
        }
    }
}

/// One side (source or destination) of a flow as a rule restricts it. Every criterion
/// present must hold; an empty side matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Side {
    /// A member of at least one of these (empty: no restriction).
    pub sets: Vec<SetDef>,
    /// A member of none of these.
    pub not_sets: Vec<SetDef>,
    /// In one of these nets (empty: no restriction).
    pub nets: Vec<IpNetwork>,
    pub not_nets: Vec<IpNetwork>,
    /// On one of these ports (empty: no restriction); named ports resolve on this side's
    /// endpoint.
    pub ports: Vec<PortMatch>,
    pub not_ports: Vec<PortMatch>,
}

impl Side {
    /// Whether `ip` (the endpoint `ep` if it is one) on `port` with `protocol` matches.
    pub fn matches(
        &self,
        ip: IpAddr,
        ep: Option<&Endpoint>,
        protocol: u8,
        port: Option<u16>,
        world: &World,
    ) -> bool {
        (self.sets.is_empty() || self.sets.iter().any(|s| s.contains(ip, world)))
            && !self.not_sets.iter().any(|s| s.contains(ip, world))
            && (self.nets.is_empty()
                || self
                    .nets
                    .iter()
                    .any(|n| n.contains(ip) && n.is_ipv4() == ip.is_ipv4()))
            && !self
                .not_nets
                .iter()
                .any(|n| n.contains(ip) && n.is_ipv4() == ip.is_ipv4())
            && (self.ports.is_empty() || self.ports.iter().any(|m| m.matches(protocol, port, ep)))
            && !self.not_ports.iter().any(|m| m.matches(protocol, port, ep))
    }
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Match {
    /// `ipVersion`: 4 or 6 (None: both).
    pub ip_version: Option<u8>,
    /// IANA protocol number (None: any).
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    /// ICMP type and code (`icmp`), and `notICMP`.
    pub icmp: Option<(Option<u8>, Option<u8>)>,
    pub not_icmp: Option<(Option<u8>, Option<u8>)>,
    pub source: Side,
    pub destination: Side,
}

/// One rule, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub matches: Match,
    pub action: Action,
    /// Index of the rule in the source object's `ingress`/`egress` list (a Kubernetes
    /// rule with several peers or ports stays one rule here).
    pub source_index: usize,
}

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub id: PolicyId,
    pub tier: String,
    pub order: Option<f64>,
    pub applies: Applies,
    pub ingress_type: bool,
    pub egress_type: bool,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

impl Policy {
    pub fn applies_in(&self, d: Direction) -> bool {
        match d {
            Direction::Ingress => self.ingress_type,
            Direction::Egress => self.egress_type,
        }
    }

    pub fn rules(&self, d: Direction) -> &[Rule] {
        match d {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Every policy, in evaluation order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Program {
    pub policies: Vec<Policy>,
}

impl Program {
    /// Sorts as Calico does within a tier: `order` (none last), then name; tiers by name
    /// for now (only `default` exists until Calico tiers are compiled).
    pub fn new(mut policies: Vec<Policy>) -> Program {
        policies.sort_by(|a, b| {
            a.tier
                .cmp(&b.tier)
                .then_with(|| {
                    let oa = a.order.unwrap_or(f64::INFINITY);
                    let ob = b.order.unwrap_or(f64::INFINITY);
                    oa.partial_cmp(&ob).unwrap_or(std::cmp::Ordering::Equal)
                })
                .then_with(|| a.id.name.cmp(&b.id.name))
                .then_with(|| a.id.namespace.cmp(&b.id.namespace))
                .then_with(|| a.id.kind.cmp(&b.id.kind))
        });
        Program { policies }
    }
}
