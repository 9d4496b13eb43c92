//! The Calico resource kinds (`projectcalico.org/v3`) as domain types: what Brindle uses
//! of each, with unset fields kept apart from defaults. Decoding from YAML/JSON lives in
//! [`crate::decode`].

use crate::selector::Selector;
use crate::values::Community;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

pub use crate::kind::{Kind, API_VERSION};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// `spec.bindMode` of a BGPConfiguration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum BindMode {
    /// Listen on all addresses (Calico default).
    #[default]
    None,
    /// Listen only on the node's addresses.
    NodeIP,
}

/// `spec.serviceLoadBalancerAggregation` of a BGPConfiguration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum ServiceLoadBalancerAggregation {
    /// Advertise the `serviceLoadBalancerIPs` CIDRs themselves (Calico default).
    #[default]
    Enabled,
    /// Advertise one /32 (/128) per LoadBalancer service IP instead.
    Disabled,
}

/// A key of a Kubernetes Secret (`secretKeyRef`), in calico-node's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretKeyRef {
    /// The Secret's name (Kubernetes lets it be empty; such a reference never resolves).
    pub name: String,
    pub key: String,
    /// `optional: true`: a missing Secret or key means no password rather than an error.
    pub optional: bool,
}

/// Where a BGP password comes from (`spec.password`, `spec.nodeMeshPassword`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PasswordSource {
    /// Brindle extension for file mode: `{value: "..."}`.
    Value(String),
    /// Calico's `{secretKeyRef: {name, key}}`: resolved by the caller (the Kubernetes
    /// datastore); unresolved, the sessions have no password.
    SecretKeyRef(SecretKeyRef),
}

impl PasswordSource {
    /// The password written in the resource, if it is written there.
    pub fn value(&self) -> Option<&str> {
        match self {
            PasswordSource::Value(v) => Some(v),
            PasswordSource::SecretKeyRef(_) => None,
        }
    }

    /// The Secret key the password is to be read from, if any.
    pub fn secret(&self) -> Option<&SecretKeyRef> {
        match self {
            PasswordSource::Value(_) => None,
            PasswordSource::SecretKeyRef(r) => Some(r),
        }
    }
}

/// A named community from `spec.communities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedCommunity {
    pub name: String,
    pub value: Community,
}

/// One entry of `spec.prefixAdvertisements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixAdvertisement {
    pub cidr: IpNetwork,
    /// Names from `communities`, or literal `aa:nn` / `aa:nn:mm` values.
    pub communities: Vec<String>,
}

/// A `BGPConfiguration` as written (unset fields are `None`; see
/// [`super::ClusterConfig::bgp_config_for`] for the effective values).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct BgpConfiguration {
    /// `default`, or `node.<nodename>`.
    pub name: String,
    pub as_number: Option<u32>,
    pub node_to_node_mesh_enabled: Option<bool>,
    pub listen_port: Option<u16>,
    pub log_severity_screen: Option<String>,
    pub communities: Option<Vec<NamedCommunity>>,
    pub prefix_advertisements: Option<Vec<PrefixAdvertisement>>,
    pub service_cluster_ips: Option<Vec<IpNetwork>>,
    pub service_external_ips: Option<Vec<IpNetwork>>,
    pub service_load_balancer_ips: Option<Vec<IpNetwork>>,
    /// The mesh password in force: `nodeMeshPassword.value`, or the Secret's value once
    /// the caller has resolved [`Self::node_mesh_password_source`] (`None` until then).
    pub node_mesh_password: Option<String>,
    /// `spec.nodeMeshPassword` as written.
    pub node_mesh_password_source: Option<PasswordSource>,
    pub node_mesh_max_restart_time: Option<Duration>,
    pub bind_mode: Option<BindMode>,
    pub ignored_interfaces: Option<Vec<String>>,
    /// `spec.serviceLoadBalancerAggregation` (unset: [`ServiceLoadBalancerAggregation::Enabled`]).
    pub service_load_balancer_aggregation: Option<ServiceLoadBalancerAggregation>,
}

impl BgpConfiguration {
    /// The node a `node.<name>` configuration applies to.
    pub fn node_name(&self) -> Option<&str> {
        self.name.strip_prefix("node.")
    }

    /// The Secret key of `nodeMeshPassword` while no password has been resolved from it.
    pub fn unresolved_mesh_password(&self) -> Option<&SecretKeyRef> {
        match (&self.node_mesh_password, &self.node_mesh_password_source) {
            (None, Some(src)) => src.secret(),
            _ => None,
        }
    }
}

/// A Calico `Node` (only what BGP and routing need).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NodeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.bgp.asNumber`; `None` means the cluster default applies.
    pub as_number: Option<u32>,
    pub ipv4_address: Option<Ipv4Network>,
    pub ipv6_address: Option<Ipv6Network>,
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    pub ipv4_ipip_tunnel_addr: Option<Ipv4Addr>,
    /// `spec.ipv4VXLANTunnelAddr`.
    pub ipv4_vxlan_tunnel_addr: Option<Ipv4Addr>,
    /// `spec.vxlanTunnelMACAddr`.
    pub vxlan_tunnel_mac_addr: Option<String>,
    /// Brindle extension (`spec.bgp.routerID`): needed by IPv6-only nodes.
    pub router_id: Option<Ipv4Addr>,
    /// `spec.addresses` of type `InternalIP` (in Kubernetes mode: the Kubernetes Node's
    /// InternalIPs, as Calico fills them), for `kubernetes-internal-ip` autodetection.
    pub internal_ips: Vec<IpAddr>,
}

/// `spec.sourceAddress` of a BGPPeer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum SourceAddress {
    /// Bind the session to the node's IP of the peer's family (Calico default).
    #[default]
    UseNodeIP,
    /// Let the kernel choose.
    None,
}

/// `spec.nextHopMode` of a BGPPeer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum NextHopMode {
    /// BGP's default: next hop self towards eBGP peers, unchanged towards iBGP peers.
    #[default]
    Auto,
    /// Always next hop self (`Self` in Calico).
    SelfHop,
    /// Never change the next hop.
    Keep,
}

impl NextHopMode {
    /// Calico's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NextHopMode::Auto => "Auto",
            NextHopMode::SelfHop => "Self",
            NextHopMode::Keep => "Keep",
        }
    }
}

/// `spec.reversePeering` of a BGPPeer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum ReversePeering {
    /// Calico default: the Calico nodes selected as peers peer back automatically.
    #[default]
    Auto,
    /// The reverse peering needs its own BGPPeer.
    Manual,
}

/// A `BGPPeer`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct BgpPeerSpec {
    pub name: String,
    pub node: Option<String>,
    pub node_selector: Option<Selector>,
    pub peer_ip: Option<IpAddr>,
    /// Port from `peerIP: "a.b.c.d:port"`.
    pub peer_port: Option<u16>,
    pub peer_selector: Option<Selector>,
    pub as_number: Option<u32>,
    pub local_as_number: Option<u32>,
    /// The password in force: `password.value`, or the Secret's value once the caller has
    /// resolved [`Self::password_source`] (`None` until then: no password).
    pub password: Option<String>,
    /// `spec.password` as written.
    pub password_source: Option<PasswordSource>,
    /// True for `keepOriginalNextHop: true` or `nextHopMode: Keep`.
    pub keep_original_next_hop: bool,
    /// `spec.nextHopMode` (unset: see [`Self::effective_next_hop_mode`]).
    pub next_hop_mode: Option<NextHopMode>,
    pub reverse_peering: ReversePeering,
    /// `spec.filters`: names of BGPFilters, in order.
    pub filters: Vec<String>,
    /// `spec.localWorkloadSelector`.
    pub local_workload_selector: Option<Selector>,
    pub ttl_security: Option<u8>,
    pub max_restart_time: Option<Duration>,
    pub source_address: SourceAddress,
    pub keepalive_time: Option<Duration>,
    pub num_allowed_local_as_numbers: Option<u32>,
    pub reachable_by: Option<IpAddr>,
}

impl BgpPeerSpec {
    /// Global when the peer applies to every node (no `node`, no `nodeSelector` or
    /// `nodeSelector: all()`), node specific otherwise.
    pub fn is_global(&self) -> bool {
        self.node.is_none() && self.node_selector.as_ref().is_none_or(|s| s.is_all())
    }

    /// The next hop mode in force: `nextHopMode`, else `Keep` for the deprecated
    /// `keepOriginalNextHop: true` (which Calico applies to eBGP peers only), else `Auto`.
    pub fn effective_next_hop_mode(&self) -> NextHopMode {
        match self.next_hop_mode {
            Some(m) => m,
            None if self.keep_original_next_hop => NextHopMode::Keep,
            None => NextHopMode::Auto,
        }
    }

    /// The Secret key of `password` while no password has been resolved from it.
    pub fn unresolved_password(&self) -> Option<&SecretKeyRef> {
        match (&self.password, &self.password_source) {
            (None, Some(src)) => src.secret(),
            _ => None,
        }
    }

    /// Whether this peering applies to the node `name` with `labels`.
    pub fn applies_to(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match (&self.node, &self.node_selector) {
            (Some(node), _) => node == name,
            (None, Some(sel)) => sel.matches(labels),
            (None, None) => true,
        }
    }
}

/// `ipipMode` / `vxlanMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

impl EncapMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EncapMode::Never => "Never",
            EncapMode::Always => "Always",
            EncapMode::CrossSubnet => "CrossSubnet",
        }
    }
}

impl fmt::Display for EncapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `allowedUses` of an IPPool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

/// `assignmentMode` of an IPPool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum AssignmentMode {
    /// Addresses are assigned from the pool automatically (Calico default).
    #[default]
    Automatic,
    /// Only when a workload asks for this pool by name.
    Manual,
}

/// An `IPPool`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpPoolSpec {
    pub name: String,
    pub cidr: IpNetwork,
    pub block_size: u8,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub nat_outgoing: bool,
    pub disabled: bool,
    pub disable_bgp_export: bool,
    pub node_selector: Selector,
    /// Never empty: Calico's default is `[Workload, Tunnel]`.
    pub allowed_uses: Vec<AllowedUse>,
    pub assignment_mode: AssignmentMode,
    /// `spec.namespaceSelector` (`None`: every namespace).
    pub namespace_selector: Option<Selector>,
}

/// `spec.state` of a BlockAffinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum AffinityState {
    #[default]
    Confirmed,
    Pending,
    PendingDeletion,
}

impl AffinityState {
    /// Calico's spelling (`confirmed`, `pending`, `pendingDeletion`).
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityState::Confirmed => "confirmed",
            AffinityState::Pending => "pending",
            AffinityState::PendingDeletion => "pendingDeletion",
        }
    }
}

/// A `BlockAffinity`: in file mode, the pod blocks each node owns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockAffinitySpec {
    pub name: String,
    pub node: String,
    pub cidr: IpNetwork,
    pub state: AffinityState,
    pub deleted: bool,
    /// `spec.type`: `host` (also when unset) or `virtual`.
    pub affinity_type: Option<String>,
}

impl BlockAffinitySpec {
    /// Whether the node really owns the block (confirmed and not deleted).
    pub fn is_active(&self) -> bool {
        self.state == AffinityState::Confirmed && !self.deleted
    }
}

/// `IPAMConfiguration` (`default`): cluster-wide IPAM settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpamConfigSpec {
    pub name: String,
    /// Borrowing from other nodes' blocks is forbidden (Calico default false).
    pub strict_affinity: bool,
    /// Blocks are claimed on demand (default true).
    pub auto_allocate_blocks: bool,
    /// 0 = Calico's default (20).
    pub max_blocks_per_host: u32,
}

impl Default for IpamConfigSpec {
    fn default() -> Self {
        IpamConfigSpec {
            name: "default".into(),
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
        }
    }
}

/// A named port of a host endpoint (`spec.ports`), for named ports in policy rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointPort {
    pub name: String,
    /// IANA protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u8,
    pub port: u16,
}

/// A `HostEndpoint` (cluster-wide): one interface of a node (or all of them, `*`) whose
/// host traffic normal policy polices, with labels for GlobalNetworkPolicy selectors
/// and `expectedIPs` as its addresses in other policies' rule selectors.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HostEndpointSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.node`: the node the endpoint is on (empty: none, never enforced).
    pub node: String,
    /// `spec.interfaceName`: an interface, `*` (all of them) or empty (then the endpoint
    /// is only its `expectedIPs` in selectors: Brindle does not find the interface by
    /// address).
    pub interface_name: String,
    pub expected_ips: Vec<IpAddr>,
    /// `spec.profiles`; `projectcalico-default-allow` allows what no policy decides.
    pub profiles: Vec<String>,
    pub ports: Vec<EndpointPort>,
}

/// A `GlobalNetworkSet` (cluster-wide) or `NetworkSet` (namespaced): labelled networks
/// that policy rule selectors select as they select endpoints (their nets join the
/// selector's address set).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NetworkSetSpec {
    /// `None`: a GlobalNetworkSet.
    pub namespace: Option<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.nets`, masked to their network addresses (as Felix does).
    pub nets: Vec<ipnetwork::IpNetwork>,
}

/// The profile that allows everything (Calico's built-in).
pub const DEFAULT_ALLOW_PROFILE: &str = "projectcalico-default-allow";

impl HostEndpointSpec {
    /// Whether a profile allows what no policy decides.
    pub fn profile_allows(&self) -> bool {
        self.profiles.iter().any(|p| p == DEFAULT_ALLOW_PROFILE)
    }
}

/// A `FelixConfiguration`: `default` (cluster-wide) or `node.<name>` (one node, over
/// `default`). Brindle uses the failsafe ports; the other fields are accepted with a
/// warning.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct FelixConfigurationSpec {
    pub name: String,
    /// `failsafeInboundHostPorts` (None: unset, Calico's defaults; empty: none).
    pub failsafe_inbound_host_ports: Option<Vec<crate::resolved::Failsafe>>,
    pub failsafe_outbound_host_ports: Option<Vec<crate::resolved::Failsafe>>,
}
