//! Network policy objects as typed data (the policy compiler in `policies/` consumes them):
//! Calico `NetworkPolicy` / `GlobalNetworkPolicy` (`projectcalico.org/v3`) and Kubernetes
//! `networking.k8s.io/v1` NetworkPolicy, with the Kubernetes [`LabelSelector`].
//!
//! The types keep what was written, validated the way Calico's validator and the
//! Kubernetes API server validate it (see `decode::policy`); where an absent field and an
//! empty one mean different things, they are told apart (`Option<Vec<_>>`). Defaults the
//! API servers apply on creation are not baked in but available as methods
//! ([`CalicoPolicy::effective_types`], [`KubeNetworkPolicy::effective_types`]).

use crate::selector::Selector;
use ipnetwork::IpNetwork;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The tier of a Calico policy without `spec.tier`.
pub const DEFAULT_TIER: &str = "default";

/// A direction a policy applies to (`types` / `policyTypes` entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

/// The directions a policy applies to, after defaulting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct PolicyTypes {
    pub ingress: bool,
    pub egress: bool,
}

impl PolicyTypes {
    fn of(types: &[PolicyType]) -> PolicyTypes {
        PolicyTypes {
            ingress: types.contains(&PolicyType::Ingress),
            egress: types.contains(&PolicyType::Egress),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Calico
// ---------------------------------------------------------------------------------------

/// A Calico `NetworkPolicy` (namespaced) or `GlobalNetworkPolicy`.
///
/// The spec as written is in the object's `RawResource::json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalicoPolicy {
    /// `None` for a GlobalNetworkPolicy.
    pub namespace: Option<String>,
    /// `metadata.name` as written (see [`CalicoPolicy::unprefixed_name`]).
    pub name: String,
    /// `spec.tier` ([`DEFAULT_TIER`] when absent or empty).
    pub tier: String,
    /// `spec.order`; `None` sorts last ("infinite").
    pub order: Option<f64>,
    /// `spec.selector`: the endpoints the policy applies to (`all()` when absent or empty).
    pub selector: Selector,
    /// `spec.types` as written (`None` when absent; never empty, Calico refuses `[]`).
    /// Use [`CalicoPolicy::effective_types`].
    pub types: Option<Vec<PolicyType>>,
    /// `spec.ingress` (absent and empty are the same to Calico).
    pub ingress: Vec<Rule>,
    /// `spec.egress` (absent and empty are the same to Calico).
    pub egress: Vec<Rule>,
    /// `spec.serviceAccountSelector`: further restricts the endpoints to pods whose
    /// service account matches (`None` when absent or empty: no restriction).
    pub service_account_selector: Option<Selector>,
    /// `spec.namespaceSelector` (GlobalNetworkPolicy only): further restricts the
    /// endpoints to those in matching namespaces (`None` when absent or empty).
    pub namespace_selector: Option<Selector>,
    /// `spec.doNotTrack` (GlobalNetworkPolicy only): rules apply before connection
    /// tracking and allowed packets are not tracked (requires `apply_on_forward`).
    pub do_not_track: bool,
    /// `spec.preDNAT` (GlobalNetworkPolicy only): rules apply before DNAT (ingress only;
    /// requires `apply_on_forward`; not with `do_not_track`).
    pub pre_dnat: bool,
    /// `spec.applyOnForward` (GlobalNetworkPolicy only): rules also apply to forwarded
    /// traffic through host endpoints.
    pub apply_on_forward: bool,
}

impl CalicoPolicy {
    pub fn is_global(&self) -> bool {
        self.namespace.is_none()
    }

    /// The directions the policy applies to: `types` when written, else Calico's default
    /// from the rules present: Egress only when there are egress rules but no ingress
    /// rules, both when there are both, Ingress otherwise (also with no rules at all).
    pub fn effective_types(&self) -> PolicyTypes {
        match &self.types {
            Some(t) if !t.is_empty() => PolicyTypes::of(t),
            _ => match (self.ingress.is_empty(), self.egress.is_empty()) {
                (_, true) => PolicyTypes {
                    ingress: true,
                    egress: false,
                },
                (true, false) => PolicyTypes {
                    ingress: false,
                    egress: true,
                },
                (false, false) => PolicyTypes {
                    ingress: true,
                    egress: true,
                },
            },
        }
    }

    /// The name without the `<tier>.` prefix that Calico before 3.32 used: there a policy
    /// in tier `t` had to be named `t.<name>`, and a default-tier policy could be written
    /// `default.<name>` or `<name>` (both the same policy, stored as `default.<name>`).
    /// Calico 3.32+ takes names as written. `knp.default.*` / `ossg.default.*` names
    /// (Calico's translations) are returned unchanged.
    pub fn unprefixed_name(&self) -> &str {
        if self.name.starts_with("knp.") || self.name.starts_with("ossg.") {
            return &self.name;
        }
        self.name
            .strip_prefix(self.tier.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&self.name)
    }
}

/// A Calico policy rule: match criteria and an action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub action: Action,
    /// `ipVersion`: restricts the rule to IPv4 or IPv6 traffic.
    pub ip_version: Option<IpVersion>,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    /// `icmp` (only with protocol ICMP or ICMPv6).
    pub icmp: Option<IcmpMatch>,
    /// `notICMP`.
    pub not_icmp: Option<IcmpMatch>,
    /// `source` (all-empty when absent).
    pub source: EntityRule,
    /// `destination` (all-empty when absent).
    pub destination: EntityRule,
    /// `http`: application-layer match (only on Allow rules of ingress; Calico enforces
    /// it only with its application layer policy, not in iptables).
    pub http: Option<HttpMatch>,
    /// `metadata.annotations` (informational; Felix shows them as rule comments).
    pub annotations: BTreeMap<String, String>,
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    Allow,
    Deny,
    /// Log the packet and continue with the next rule.
    Log,
    /// Skip the rest of this tier's policies; go to the next tier.
    Pass,
}

impl Action {
    pub const ALL: [(&'static str, Action); 4] = [
        ("Allow", Action::Allow),
        ("Deny", Action::Deny),
        ("Log", Action::Log),
        ("Pass", Action::Pass),
    ];
}

/// `ipVersion: 4` or `6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn number(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }
}

impl Serialize for IpVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.number())
    }
}

/// An IP protocol, by name or number (Calico's `numorstring.Protocol`). A number is kept
/// as written (`6` stays `Number(6)`); compare with [`Protocol::number`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    IcmpV6,
    Sctp,
    UdpLite,
    /// 1..=255.
    Number(u8),
}

impl Protocol {
    /// The names Calico accepts (exact case).
    pub const NAMES: [(&'static str, Protocol); 6] = [
        ("TCP", Protocol::Tcp),
        ("UDP", Protocol::Udp),
        ("ICMP", Protocol::Icmp),
        ("ICMPv6", Protocol::IcmpV6),
        ("SCTP", Protocol::Sctp),
        ("UDPLite", Protocol::UdpLite),
    ];

    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::IcmpV6 => 58,
            Protocol::Sctp => 132,
            Protocol::UdpLite => 136,
            Protocol::Number(n) => n,
        }
    }

    /// TCP, UDP or SCTP (by name or number): the protocols Calico allows ports with.
    pub fn supports_ports(self) -> bool {
        matches!(self.number(), 6 | 17 | 132)
    }

    /// ICMP (1) or ICMPv6 (58).
    pub fn is_icmp(self) -> bool {
        matches!(self.number(), 1 | 58)
    }

    pub fn name(self) -> Option<&'static str> {
        Protocol::NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.number()),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Number(n) => s.serialize_u8(*n),
            p => s.serialize_str(p.name().unwrap_or_default()),
        }
    }
}

/// `icmp` / `notICMP`: an ICMP type and optionally a code (absent type: any ICMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct IcmpMatch {
    /// 0..=254.
    #[serde(rename = "type")]
    pub icmp_type: Option<u8>,
    /// 0..=255; only with a type.
    pub code: Option<u8>,
}

/// The source or destination half of a rule. Every criterion present must match.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EntityRule {
    /// `nets` (empty: no restriction).
    pub nets: Vec<IpNetwork>,
    pub not_nets: Vec<IpNetwork>,
    /// `selector`: only traffic from/to Calico endpoints matching it. `None` when absent
    /// or empty, which is not the same as `all()` (that matches Calico endpoints only).
    pub selector: Option<Selector>,
    /// `notSelector`: not from/to Calico endpoints matching it (`None`: absent or empty).
    pub not_selector: Option<Selector>,
    /// `namespaceSelector` (`None`: absent or empty, meaning the policy's own namespace
    /// for a NetworkPolicy and all namespaces for a GlobalNetworkPolicy).
    pub namespace_selector: Option<NamespaceMatch>,
    /// `ports`: numbers, ranges, named ports (empty: no restriction).
    pub ports: Vec<Port>,
    pub not_ports: Vec<Port>,
    /// `serviceAccounts`.
    pub service_accounts: Option<ServiceAccountMatch>,
    /// `services` (only in the source of ingress rules and the destination of egress
    /// rules; exclusive with selectors, nets and service accounts).
    pub services: Option<ServiceMatch>,
}

impl EntityRule {
    /// No criterion at all (matches everything).
    pub fn is_empty(&self) -> bool {
        self == &EntityRule::default()
    }
}

/// An entity rule's `namespaceSelector`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamespaceMatch {
    /// `global()`: non-namespaced endpoints only (host endpoints, global network sets).
    Global,
    /// Endpoints in namespaces whose labels match.
    Selector(Selector),
}

impl Serialize for NamespaceMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NamespaceMatch::Global => s.serialize_str("global()"),
            NamespaceMatch::Selector(sel) => sel.serialize(s),
        }
    }
}

/// A port criterion (Calico's `numorstring.Port`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    /// `80` or `"80"`.
    Number(u16),
    /// `"1000:2000"` (inclusive; `min <= max`).
    Range(u16, u16),
    /// A named port of the endpoint (`"http"`): a Kubernetes port name.
    Named(String),
}

impl Port {
    /// The numeric range (`(p, p)` for a single port); `None` for a named port.
    pub fn range(&self) -> Option<(u16, u16)> {
        match self {
            Port::Number(p) => Some((*p, *p)),
            Port::Range(a, b) => Some((*a, *b)),
            Port::Named(_) => None,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Number(p) => write!(f, "{p}"),
            Port::Range(a, b) => write!(f, "{a}:{b}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Number(p) => s.serialize_u16(*p),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

/// `serviceAccounts`: pods running as a matching service account (names AND selector).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ServiceAccountMatch {
    /// `names` (empty: any name).
    pub names: Vec<String>,
    /// `selector` over the service accounts' labels (`None`: absent or empty).
    pub selector: Option<Selector>,
}

/// `services`: the endpoints of a Kubernetes Service (and, as destination, its ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceMatch {
    pub name: String,
    /// `None`: the policy's namespace (always set in a GlobalNetworkPolicy).
    pub namespace: Option<String>,
}

/// `http`: methods OR'ed, paths OR'ed, the two AND'ed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HttpMatch {
    pub methods: Vec<String>,
    pub paths: Vec<HttpPath>,
}

/// One `http.paths` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HttpPath {
    Exact(String),
    Prefix(String),
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

/// A Kubernetes `networking.k8s.io/v1` NetworkPolicy.
///
/// The spec as written is in the object's `RawResource::json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubeNetworkPolicy {
    pub namespace: String,
    pub name: String,
    /// `spec.podSelector`: the pods of the namespace the policy isolates (absent: empty,
    /// all pods).
    pub pod_selector: LabelSelector,
    /// `spec.policyTypes` as written (`None` when absent). Use
    /// [`KubeNetworkPolicy::effective_types`].
    pub policy_types: Option<Vec<PolicyType>>,
    /// `spec.ingress`: `None` when absent, `Some([])` for `ingress: []`; both allow no
    /// ingress traffic when the policy applies to ingress.
    pub ingress: Option<Vec<KubeRule>>,
    /// `spec.egress`, like `ingress`.
    pub egress: Option<Vec<KubeRule>>,
}

impl KubeNetworkPolicy {
    /// The directions the policy applies to, as the API server defaults `policyTypes`
    /// when it is absent or empty: Ingress, plus Egress when there is at least one egress
    /// rule.
    pub fn effective_types(&self) -> PolicyTypes {
        match &self.policy_types {
            Some(t) if !t.is_empty() => PolicyTypes::of(t),
            _ => PolicyTypes {
                ingress: true,
                egress: self.egress.as_ref().is_some_and(|e| !e.is_empty()),
            },
        }
    }

    /// The ingress rules (empty when absent).
    pub fn ingress_rules(&self) -> &[KubeRule] {
        self.ingress.as_deref().unwrap_or_default()
    }

    /// The egress rules (empty when absent).
    pub fn egress_rules(&self) -> &[KubeRule] {
        self.egress.as_deref().unwrap_or_default()
    }
}

/// One ingress rule (`from`, `ports`) or egress rule (`to`, `ports`). Traffic must match
/// one of the peers and one of the ports.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct KubeRule {
    /// `from` (ingress) / `to` (egress) as written: `None` when absent, `Some([])` when
    /// empty; both match every peer (see [`KubeRule::all_peers`]).
    pub peers: Option<Vec<KubePeer>>,
    /// `ports` as written: `None` when absent, `Some([])` when empty; both match every
    /// port (see [`KubeRule::all_ports`]).
    pub ports: Option<Vec<KubePort>>,
}

impl KubeRule {
    /// True when the rule does not restrict peers (`from`/`to` absent or empty).
    pub fn all_peers(&self) -> bool {
        self.peers.as_ref().is_none_or(|p| p.is_empty())
    }

    /// True when the rule does not restrict ports (`ports` absent or empty).
    pub fn all_ports(&self) -> bool {
        self.ports.as_ref().is_none_or(|p| p.is_empty())
    }

    /// The peers (empty when unrestricted).
    pub fn peer_list(&self) -> &[KubePeer] {
        self.peers.as_deref().unwrap_or_default()
    }

    /// The ports (empty when unrestricted).
    pub fn port_list(&self) -> &[KubePort] {
        self.ports.as_deref().unwrap_or_default()
    }
}

/// A `from` / `to` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum KubePeer {
    /// `podSelector` and/or `namespaceSelector` (at least one is set). Only
    /// `pod_selector`: pods of the policy's namespace; only `namespace_selector`: all
    /// pods of the matching namespaces; both: matching pods in matching namespaces. A
    /// present but empty selector matches everything.
    Selectors {
        pod_selector: Option<LabelSelector>,
        namespace_selector: Option<LabelSelector>,
    },
    /// `ipBlock` (alone in its peer).
    IpBlock(IpBlock),
}

/// `ipBlock`: a CIDR minus exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpBlock {
    /// `cidr`, as its network (host bits, which the API allows, are cleared).
    pub cidr: IpNetwork,
    /// `except`: strict subnets of `cidr` (host bits cleared).
    pub except: Vec<IpNetwork>,
}

/// A `ports` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubePort {
    /// `protocol`: TCP (the default), UDP or SCTP.
    pub protocol: Protocol,
    /// `port`: `None` matches every port of the protocol.
    pub port: Option<KubePortValue>,
    /// `endPort`: with a numeric `port`, the inclusive end of the range (`>= port`).
    pub end_port: Option<u16>,
}

impl KubePort {
    /// The numeric range (`port..=endPort`, or `port..=port`); `None` for a named port or
    /// no port.
    pub fn range(&self) -> Option<(u16, u16)> {
        match self.port {
            Some(KubePortValue::Number(p)) => Some((p, self.end_port.unwrap_or(p))),
            _ => None,
        }
    }
}

/// A port number or the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KubePortValue {
    Number(u16),
    Named(String),
}

impl Serialize for KubePortValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KubePortValue::Number(p) => s.serialize_u16(*p),
            KubePortValue::Named(n) => s.serialize_str(n),
        }
    }
}

/// A Kubernetes label selector (`matchLabels` AND `matchExpressions`). The empty selector
/// matches everything; "no selector" is `Option::None` where it is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// True for `{}` (matches everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: LabelSelectorOperator,
    /// Non-empty for `In` / `NotIn`, empty for `Exists` / `DoesNotExist`.
    pub values: Vec<String>,
}

impl LabelSelectorRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            LabelSelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            // As in Kubernetes, NotIn also matches objects without the label.
            LabelSelectorOperator::NotIn => !value.is_some_and(|v| self.values.contains(v)),
            LabelSelectorOperator::Exists => value.is_some(),
            LabelSelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelectorOperator {
    pub const ALL: [(&'static str, LabelSelectorOperator); 4] = [
        ("In", LabelSelectorOperator::In),
        ("NotIn", LabelSelectorOperator::NotIn),
        ("Exists", LabelSelectorOperator::Exists),
        ("DoesNotExist", LabelSelectorOperator::DoesNotExist),
    ];
}
