//! Status snapshots the speaker publishes for `brindlectl node status`, metrics and readiness.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// RFC 4271 §8.2.2 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Idle => "Idle",
            SessionState::Connect => "Connect",
            SessionState::Active => "Active",
            SessionState::OpenSent => "OpenSent",
            SessionState::OpenConfirm => "OpenConfirm",
            SessionState::Established => "Established",
        }
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a peer came to be configured; rendered as calicoctl's PEER TYPE column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum PeerType {
    /// "node-to-node mesh"
    #[default]
    NodeMesh,
    /// "node specific" (a BGPPeer with `node` or `nodeSelector`)
    NodeSpecific,
    /// "global" (a BGPPeer that selects every node)
    Global,
}

impl PeerType {
    pub fn calico_name(self) -> &'static str {
        match self {
            PeerType::NodeMesh => "node-to-node mesh",
            PeerType::NodeSpecific => "node specific",
            PeerType::Global => "global",
        }
    }
}

/// One peer's state as shown by `brindlectl node status -o json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    pub peer_address: IpAddr,
    /// Remote port (179 unless configured otherwise).
    pub peer_port: u16,
    pub peer_type: PeerType,
    /// Calico's rendering of the peer type ("node-to-node mesh", ...).
    pub peer_type_name: String,
    /// Protocol name as BIRD under Calico would call it (`Mesh_10_0_0_1`).
    pub name: String,
    pub as_number: u32,
    pub local_as_number: u32,
    /// FSM state name (RFC 4271).
    pub state: SessionState,
    /// RFC 3339 time of the last state change.
    pub since: String,
    /// Short human text, as calicoctl's INFO column ("Established", "Connect Socket: Connection refused").
    pub info: String,
    pub last_error: Option<String>,
    pub prefixes_received: u64,
    pub prefixes_accepted: u64,
    pub prefixes_advertised: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub updates_in: u64,
    pub updates_out: u64,
    pub session_resets: u64,
    /// Negotiated hold time in seconds, when OPEN was exchanged.
    pub hold_time: Option<u16>,
    /// Remote BGP identifier, when OPEN was received.
    pub remote_router_id: Option<std::net::Ipv4Addr>,
}

/// The whole status document served on the status socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpeakerStatus {
    pub node_name: String,
    pub router_id: Option<std::net::Ipv4Addr>,
    pub as_number: u32,
    pub listen: Vec<String>,
    pub peers: Vec<PeerStatus>,
    /// Filled in by the node agent when it runs the dataplane (not by the speaker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<DataplaneStatus>,
}

/// The dataplane's last apply, as part of the node status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneStatus {
    pub routes_programmed: u64,
    pub local_endpoints: u64,
    pub host_mtu: u32,
    pub pod_mtu: u32,
    /// RFC 3339 time of the last apply.
    pub last_apply: String,
    pub last_apply_millis: f64,
    /// Conditions that will drop traffic (e.g. rp_filter), worded for operators.
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

/// One route in the speaker's Loc-RIB, as served for `brindlectl node routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// "10.65.1.0/26"
    pub prefix: String,
    /// Next hop as received ("" for locally originated routes).
    pub next_hop: String,
    /// The peer the path came from; None for locally originated routes.
    pub peer_address: Option<IpAddr>,
    pub as_path: Vec<u32>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// Standard communities as "65000:100".
    pub communities: Vec<String>,
    /// Selected as best (or as an equal-cost multipath member).
    pub best: bool,
    /// Locally originated (own block, service CIDR).
    pub local: bool,
}

/// The document served for the `routes` request on the status socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RoutesStatus {
    pub routes: Vec<RouteStatus>,
}

/// Requests understood on the status socket: one line, one JSON document back, then close.
pub const STATUS_REQUEST: &str = "status";
/// See [`STATUS_REQUEST`].
pub const ROUTES_REQUEST: &str = "routes";
