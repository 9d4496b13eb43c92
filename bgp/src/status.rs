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
    /// RFC 3339 time of the last change of the session's calicoctl STATE (`up` or
    /// `start`), as BIRD's `since` column: when the session came up or went down, or when
    /// a BGP error restarted it; not at every connection attempt.
    pub since: String,
    /// calicoctl's INFO column, worded as BIRD's `show protocols` ([`BirdError`]):
    /// "Established", "Active Socket: Connection refused", "Passive", "Idle BGP Error:
    /// Hold timer expired"...
    pub info: String,
    /// The last error in the speaker's own words (more detail than `info`).
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
    /// What the peer sent that was not taken as sent.
    #[serde(default)]
    pub import_errors: ImportErrors,
}

/// Counts of a peer's malformed or unusable input, since the peer was configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportErrors {
    /// Attributes discarded (RFC 7606 "attribute discard").
    pub attributes_discarded: u64,
    /// UPDATEs treated as withdraw (RFC 7606).
    pub treated_as_withdraw: u64,
    /// Routes ignored because their NEXT_HOP is one of this node's addresses (RFC 4271
    /// §6.3).
    pub own_next_hop: u64,
}

/// The speaker's status: its identity and every peer's session. The node agent serves
/// it as part of its node status document (with the dataplane and the datastore, which
/// are not the speaker's business).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpeakerStatus {
    pub node_name: String,
    pub router_id: Option<std::net::Ipv4Addr>,
    pub as_number: u32,
    pub listen: Vec<String>,
    pub peers: Vec<PeerStatus>,
    /// Connections accepted from addresses that are not configured peers (and closed),
    /// since the speaker started.
    #[serde(default)]
    pub unconfigured_connections: u64,
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
    /// The port of that peer's session (several sessions may share an address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<u16>,
    pub as_path: Vec<u32>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// Standard communities as "65000:100".
    pub communities: Vec<String>,
    /// Selected as best (or as an equal-cost multipath member).
    pub best: bool,
    /// Locally originated (own block, service CIDR).
    pub local: bool,
    /// RFC 4456 ORIGINATOR_ID, when the path was reflected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator_id: Option<std::net::Ipv4Addr>,
    /// RFC 4456 CLUSTER_LIST (nearest cluster first), when the path was reflected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_list: Vec<std::net::Ipv4Addr>,
}

/// The document served for the `routes` request on the status socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RoutesStatus {
    pub routes: Vec<RouteStatus>,
}

/// The last error of a session as BIRD keeps it (`last_error_class` / `last_error_code`
/// in `proto/bgp/bgp.c`), for calicoctl's INFO column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BirdError {
    /// None since the session was last Established.
    #[default]
    None,
    /// `BE_MISC` ("Error: No listening socket"...).
    Misc(&'static str),
    /// `BE_SOCKET`: the errno of a failed connection; `None` for a closed one
    /// ("Socket: Connection closed").
    Socket(Option<i32>),
    /// `BE_BGP_RX`: a NOTIFICATION received ("Received: Administrative shutdown").
    Received(u8, u8),
    /// `BE_BGP_TX`: a NOTIFICATION sent ("BGP Error: Hold timer expired").
    Sent(u8, u8),
}

impl BirdError {
    /// BIRD's text: class prefix (`bgp_err_classes`) and message (`bgp_last_errmsg`).
    pub fn text(&self) -> String {
        match self {
            BirdError::None => String::new(),
            BirdError::Misc(m) => format!("Error: {m}"),
            BirdError::Socket(None) | BirdError::Socket(Some(0)) => {
                "Socket: Connection closed".to_string()
            }
            BirdError::Socket(Some(e)) => format!("Socket: {}", strerror(*e)),
            BirdError::Received(c, s) => format!("Received: {}", bird_error_dsc(*c, *s)),
            BirdError::Sent(c, s) => format!("BGP Error: {}", bird_error_dsc(*c, *s)),
        }
    }
}

/// BIRD's description of a NOTIFICATION code/subcode (`bgp_msg_table` and
/// `bgp_error_dsc` in BIRD's `proto/bgp/packets.c`, as in Calico's fork).
pub fn bird_error_dsc(code: u8, subcode: u8) -> String {
    let s = match (code, subcode) {
        (1, 0) => "Invalid message header",
        (1, 1) => "Connection not synchronized",
        (1, 2) => "Bad message length",
        (1, 3) => "Bad message type",
        (2, 0) => "Invalid OPEN message",
        (2, 1) => "Unsupported version number",
        (2, 2) => "Bad peer AS",
        (2, 3) => "Bad BGP identifier",
        (2, 4) => "Unsupported optional parameter",
        (2, 5) => "Authentication failure",
        (2, 6) => "Unacceptable hold time",
        (2, 7) => "Required capability missing",
        (2, 8) => "No supported AFI/SAFI",
        (3, 0) => "Invalid UPDATE message",
        (3, 1) => "Malformed attribute list",
        (3, 2) => "Unrecognized well-known attribute",
        (3, 3) => "Missing mandatory attribute",
        (3, 4) => "Invalid attribute flags",
        (3, 5) => "Invalid attribute length",
        (3, 6) => "Invalid ORIGIN attribute",
        (3, 7) => "AS routing loop",
        (3, 8) => "Invalid NEXT_HOP attribute",
        (3, 9) => "Optional attribute error",
        (3, 10) => "Invalid network field",
        (3, 11) => "Malformed AS_PATH",
        (4, 0) => "Hold timer expired",
        (5, 0) => "Finite state machine error",
        (5, 1) => "Unexpected message in OpenSent state",
        (5, 2) => "Unexpected message in OpenConfirm state",
        (5, 3) => "Unexpected message in Established state",
        (6, 0) => "Cease",
        (6, 1) => "Maximum number of prefixes reached",
        (6, 2) => "Administrative shutdown",
        (6, 3) => "Peer de-configured",
        (6, 4) => "Administrative reset",
        (6, 5) => "Connection rejected",
        (6, 6) => "Other configuration change",
        (6, 7) => "Connection collision resolution",
        (6, 8) => "Out of Resources",
        (7, 0) => "Invalid ROUTE-REFRESH message",
        (7, 1) => "Invalid ROUTE-REFRESH message length",
        _ => return format!("Unknown error {code}.{subcode}"),
    };
    s.to_string()
}

/// `strerror` as Calico's BIRD prints it: Calico builds BIRD on Alpine, so the texts are
/// musl's (`src/errno/__strerror.h`), which differ from glibc's for some socket errors
/// ("Host is unreachable", not "No route to host"). Other errnos: the system's text.
pub fn strerror(errno: i32) -> String {
    let musl = match errno {
        libc::ECONNREFUSED => "Connection refused",
        libc::ECONNRESET => "Connection reset by peer",
        libc::ETIMEDOUT => "Operation timed out",
        libc::EHOSTUNREACH => "Host is unreachable",
        libc::EHOSTDOWN => "Host is down",
        libc::ENETUNREACH => "Network unreachable",
        libc::ENETDOWN => "Network is down",
        libc::ENETRESET => "Connection reset by network",
        libc::ECONNABORTED => "Connection aborted",
        libc::EADDRINUSE => "Address in use",
        libc::EADDRNOTAVAIL => "Address not available",
        libc::EPIPE => "Broken pipe",
        libc::EACCES => "Permission denied",
        libc::EPERM => "Operation not permitted",
        libc::EINVAL => "Invalid argument",
        libc::ENOBUFS => "No buffer space available",
        libc::ENOTCONN => "Socket not connected",
        libc::EMFILE => "No file descriptors available",
        libc::ENFILE => "Too many open files in system",
        libc::ENOMEM => "Out of memory",
        _ => {
            let s = std::io::Error::from_raw_os_error(errno).to_string();
            return match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
        }
    };
    musl.to_string()
}

/// BIRD's connection-state word for a session (`bgp_state_dsc`): the FSM state, or
/// "Passive" for a passive session waiting without any connection.
pub fn bird_state_dsc(state: SessionState, passive: bool) -> &'static str {
    if passive && matches!(state, SessionState::Idle | SessionState::Active) {
        return "Passive";
    }
    state.as_str()
}

/// calicoctl's INFO cell: BIRD prints `"%-14s%s%s"` (state, error class, message) and
/// calicoctl splits the line on whitespace and joins the words after the state with one
/// space (`commands/node/status.go`), so this is "state" or "state error".
pub fn calico_info(state_dsc: &str, error: &BirdError) -> String {
    let e = error.text();
    if e.is_empty() {
        state_dsc.to_string()
    } else {
        format!("{state_dsc} {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_worded_as_bird_under_calicoctl() {
        let refused = BirdError::Socket(Some(libc::ECONNREFUSED));
        assert_eq!(
            calico_info("Active", &refused),
            "Active Socket: Connection refused"
        );
        assert_eq!(
            calico_info("Connect", &refused),
            "Connect Socket: Connection refused"
        );
        assert_eq!(
            calico_info("Active", &BirdError::Socket(Some(libc::EHOSTUNREACH))),
            "Active Socket: Host is unreachable"
        );
        assert_eq!(
            calico_info("Active", &BirdError::Socket(None)),
            "Active Socket: Connection closed"
        );
        assert_eq!(calico_info("Idle", &BirdError::None), "Idle");
        assert_eq!(
            calico_info("Idle", &BirdError::Sent(4, 0)),
            "Idle BGP Error: Hold timer expired"
        );
        assert_eq!(
            calico_info("Active", &BirdError::Received(6, 2)),
            "Active Received: Administrative shutdown"
        );
        assert_eq!(
            calico_info("OpenSent", &BirdError::Sent(2, 2)),
            "OpenSent BGP Error: Bad peer AS"
        );
        assert_eq!(
            calico_info("Idle", &BirdError::Misc("No listening socket")),
            "Idle Error: No listening socket"
        );
        assert_eq!(bird_error_dsc(9, 1), "Unknown error 9.1");
        assert_eq!(bird_state_dsc(SessionState::Active, true), "Passive");
        assert_eq!(bird_state_dsc(SessionState::Idle, true), "Passive");
        assert_eq!(bird_state_dsc(SessionState::OpenSent, true), "OpenSent");
        assert_eq!(bird_state_dsc(SessionState::Active, false), "Active");
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
    }
}
