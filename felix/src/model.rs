//! The dataplane's input: everything felix needs to know to compute the kernel state.

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// `ipipMode` / `vxlanMode` of an IP pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

/// An IP pool, as far as the dataplane cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub cidr: IpNetwork,
    pub block_size: u8,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub nat_outgoing: bool,
    pub disabled: bool,
}

/// A pod interface on this node (from the CNI plugin's endpoint record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoint {
    /// Host-side veth, `cali` + 11 hex chars.
    pub iface: String,
    /// The pod's addresses (/32 and /128).
    pub ips: Vec<IpNetwork>,
    /// The pod-side MAC (for the permanent neighbour entry).
    pub mac: Option<String>,
}

/// Another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteNode {
    pub name: String,
    pub ipv4: Option<Ipv4Network>,
    pub ipv6: Option<Ipv6Network>,
    /// Its IPIP tunnel address (`ipv4IPIPTunnelAddr`), if known.
    pub ipip_tunnel_addr: Option<Ipv4Addr>,
    /// Its VXLAN tunnel address and VTEP MAC, if known.
    pub vxlan_tunnel_addr: Option<Ipv4Addr>,
    pub vxlan_mac: Option<String>,
    /// Its pod blocks (from BlockAffinity), used for tunnel routes.
    pub blocks: Vec<IpNetwork>,
}

/// Everything the dataplane is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Model {
    pub node_name: String,
    /// This node's address with its prefix (the prefix drives CrossSubnet).
    pub node_ipv4: Option<Ipv4Network>,
    pub node_ipv6: Option<Ipv6Network>,
    pub pools: Vec<Pool>,
    /// This node's pod blocks (blackholed, advertised).
    pub own_blocks: Vec<IpNetwork>,
    pub endpoints: Vec<LocalEndpoint>,
    pub remote_nodes: Vec<RemoteNode>,
    /// Routes learned over BGP: prefix → next hops (ECMP when several).
    pub learned: BTreeMap<IpNetwork, Vec<IpAddr>>,
    /// This node's IPIP tunnel address (from its block), when any pool uses IPIP.
    pub ipip_tunnel_addr: Option<Ipv4Addr>,
    /// This node's VXLAN tunnel address, when any pool uses VXLAN.
    pub vxlan_tunnel_addr: Option<Ipv4Addr>,
    /// The learned routes are not complete yet (BGP is still syncing after a start, e.g.
    /// a restart): Brindle's routes that the model lacks are kept rather than removed.
    #[serde(default)]
    pub routes_incomplete: bool,
    /// Network policy resolved for this node's endpoints (None: no policy in the
    /// cluster; then no policy chains are installed).
    #[serde(skip)]
    pub policy: Option<brindle_model::resolved::Resolved>,
}
