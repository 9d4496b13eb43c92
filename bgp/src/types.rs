//! Protocol value types shared by the codec, the session and the RIB: prefixes, address
//! families, NOTIFICATIONs and path attributes in Brindle's own (4-octet-AS) form.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The identity of one BGP session: the peer's address and the TCP port it is dialled on.
/// Several sessions may share an address on different ports (Calico's `_port_N`
/// peerings: a `peerIP: "10.0.0.5:1790"` next to one on 179, or a peer node with its own
/// `listenPort`), so everything per peer (sessions, Adj-RIBs-In, stale routes, status) is
/// keyed by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerKey {
    pub ip: IpAddr,
    pub port: u16,
}

impl PeerKey {
    /// The BGP port.
    pub const DEFAULT_PORT: u16 = 179;

    pub fn new(ip: IpAddr, port: u16) -> Self {
        PeerKey { ip, port }
    }
}

impl From<IpAddr> for PeerKey {
    /// The session to `ip` on port 179.
    fn from(ip: IpAddr) -> Self {
        PeerKey::new(ip, PeerKey::DEFAULT_PORT)
    }
}

impl fmt::Display for PeerKey {
    /// `10.0.0.5` on port 179 (as logs always showed peers), else `10.0.0.5:1790` /
    /// `[fd00::5]:1790`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == PeerKey::DEFAULT_PORT {
            write!(f, "{}", self.ip)
        } else {
            write!(f, "{}", std::net::SocketAddr::new(self.ip, self.port))
        }
    }
}

/// Address family + SAFI unicast: the only two families Brindle speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Afi {
    Ipv4,
    Ipv6,
}

impl Afi {
    pub fn of(addr: &IpAddr) -> Afi {
        match addr {
            IpAddr::V4(_) => Afi::Ipv4,
            IpAddr::V6(_) => Afi::Ipv6,
        }
    }
    /// IANA AFI number.
    pub fn code(self) -> u16 {
        match self {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
        }
    }
    pub fn from_code(afi: u16, safi: u8) -> Option<Afi> {
        match (afi, safi) {
            (1, 1) => Some(Afi::Ipv4),
            (2, 1) => Some(Afi::Ipv6),
            _ => None,
        }
    }
    pub fn max_len(self) -> u8 {
        match self {
            Afi::Ipv4 => 32,
            Afi::Ipv6 => 128,
        }
    }
}

/// A unicast prefix with host bits cleared. Ordered (IPv4 before IPv6), hashable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// Builds a prefix, masking host bits. `None` if `len` is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                Some(Prefix {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)),
                    len,
                })
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                Some(Prefix {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)),
                    len,
                })
            }
            _ => None,
        }
    }
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    pub fn len(&self) -> u8 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn afi(&self) -> Afi {
        Afi::of(&self.addr)
    }
    /// True when `addr` lies inside this prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        Prefix::new(addr, self.len).is_some_and(|p| p.addr == self.addr)
    }
    /// Wire form of the NLRI (length octet + minimal address octets).
    pub fn write_nlri(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        let n = (self.len as usize).div_ceil(8);
        match self.addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
        }
    }
    /// Parses one NLRI entry; returns the prefix and the bytes consumed.
    pub fn read_nlri(afi: Afi, buf: &[u8]) -> Option<(Prefix, usize)> {
        let len = *buf.first()?;
        if len > afi.max_len() {
            return None;
        }
        let n = (len as usize).div_ceil(8);
        let bytes = buf.get(1..1 + n)?;
        let addr = match afi {
            Afi::Ipv4 => {
                let mut o = [0u8; 4];
                o[..n].copy_from_slice(bytes);
                IpAddr::V4(Ipv4Addr::from(o))
            }
            Afi::Ipv6 => {
                let mut o = [0u8; 16];
                o[..n].copy_from_slice(bytes);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        };
        Some((Prefix::new(addr, len)?, 1 + n))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}
impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: missing /len"))?;
        let addr: IpAddr = a.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let len: u8 = l.parse().map_err(|e| format!("{s:?}: {e}"))?;
        Prefix::new(addr, len).ok_or_else(|| format!("{s:?}: prefix length too long"))
    }
}

impl From<ipnetwork::IpNetwork> for Prefix {
    fn from(n: ipnetwork::IpNetwork) -> Self {
        Prefix::new(n.ip(), n.prefix()).expect("ipnetwork prefix lengths are valid")
    }
}
impl From<Prefix> for ipnetwork::IpNetwork {
    fn from(p: Prefix) -> Self {
        ipnetwork::IpNetwork::new(p.addr, p.len).expect("prefix lengths are valid")
    }
}

/// A BGP NOTIFICATION (RFC 4271 §4.5): code, subcode, data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }
    pub fn cease(subcode: u8) -> Self {
        Notification::new(codes::CEASE, subcode, Vec::new())
    }
    /// A name for logs and status, e.g. "OPEN Message Error / Bad Peer AS".
    pub fn describe(&self) -> String {
        let (c, s) = codes::names(self.code, self.subcode);
        let mut t = format!("{c} / {s}");
        if self.code == codes::CEASE && matches!(self.subcode, 2 | 4) && !self.data.is_empty() {
            // RFC 8203 shutdown communication
            let n = self.data[0] as usize;
            if let Some(msg) = self.data.get(1..1 + n) {
                t.push_str(&format!(": {:?}", String::from_utf8_lossy(msg)));
            }
        }
        t
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.describe(), self.code, self.subcode)
    }
}

/// NOTIFICATION error codes and subcodes (RFC 4271 §4.5, RFC 4486, RFC 7313).
pub mod codes {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;

    pub const HDR_NOT_SYNCHRONIZED: u8 = 1;
    pub const HDR_BAD_LENGTH: u8 = 2;
    pub const HDR_BAD_TYPE: u8 = 3;

    pub const OPEN_UNSUPPORTED_VERSION: u8 = 1;
    pub const OPEN_BAD_PEER_AS: u8 = 2;
    pub const OPEN_BAD_BGP_ID: u8 = 3;
    pub const OPEN_UNSUPPORTED_OPT_PARAM: u8 = 4;
    pub const OPEN_UNACCEPTABLE_HOLD: u8 = 6;
    pub const OPEN_UNSUPPORTED_CAPABILITY: u8 = 7;

    pub const UPD_MALFORMED_ATTR_LIST: u8 = 1;
    pub const UPD_UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const UPD_MISSING_WELL_KNOWN: u8 = 3;
    pub const UPD_ATTR_FLAGS: u8 = 4;
    pub const UPD_ATTR_LENGTH: u8 = 5;
    pub const UPD_INVALID_ORIGIN: u8 = 6;
    pub const UPD_INVALID_NEXT_HOP: u8 = 8;
    pub const UPD_OPTIONAL_ATTR: u8 = 9;
    pub const UPD_INVALID_NETWORK: u8 = 10;
    pub const UPD_MALFORMED_AS_PATH: u8 = 11;

    pub const FSM_UNSPECIFIC: u8 = 0;
    pub const FSM_IN_OPENSENT: u8 = 1;
    pub const FSM_IN_OPENCONFIRM: u8 = 2;
    pub const FSM_IN_ESTABLISHED: u8 = 3;

    pub const CEASE_MAX_PREFIXES: u8 = 1;
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMIN_RESET: u8 = 4;
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
    pub const CEASE_OTHER_CONFIG_CHANGE: u8 = 6;
    pub const CEASE_COLLISION: u8 = 7;
    pub const CEASE_OUT_OF_RESOURCES: u8 = 8;

    /// Human names for a code/subcode pair.
    pub fn names(code: u8, subcode: u8) -> (&'static str, &'static str) {
        let c = match code {
            HEADER => "Message Header Error",
            OPEN => "OPEN Message Error",
            UPDATE => "UPDATE Message Error",
            HOLD_TIMER => "Hold Timer Expired",
            FSM => "Finite State Machine Error",
            CEASE => "Cease",
            ROUTE_REFRESH => "ROUTE-REFRESH Message Error",
            _ => "Unknown error code",
        };
        let s = match (code, subcode) {
            (_, 0) => "Unspecific",
            (HEADER, 1) => "Connection Not Synchronized",
            (HEADER, 2) => "Bad Message Length",
            (HEADER, 3) => "Bad Message Type",
            (OPEN, 1) => "Unsupported Version Number",
            (OPEN, 2) => "Bad Peer AS",
            (OPEN, 3) => "Bad BGP Identifier",
            (OPEN, 4) => "Unsupported Optional Parameter",
            (OPEN, 6) => "Unacceptable Hold Time",
            (OPEN, 7) => "Unsupported Capability",
            (UPDATE, 1) => "Malformed Attribute List",
            (UPDATE, 2) => "Unrecognized Well-known Attribute",
            (UPDATE, 3) => "Missing Well-known Attribute",
            (UPDATE, 4) => "Attribute Flags Error",
            (UPDATE, 5) => "Attribute Length Error",
            (UPDATE, 6) => "Invalid ORIGIN Attribute",
            (UPDATE, 8) => "Invalid NEXT_HOP Attribute",
            (UPDATE, 9) => "Optional Attribute Error",
            (UPDATE, 10) => "Invalid Network Field",
            (UPDATE, 11) => "Malformed AS_PATH",
            (FSM, 1) => "Unexpected Message in OpenSent",
            (FSM, 2) => "Unexpected Message in OpenConfirm",
            (FSM, 3) => "Unexpected Message in Established",
            (CEASE, 1) => "Maximum Number of Prefixes Reached",
            (CEASE, 2) => "Administrative Shutdown",
            (CEASE, 3) => "Peer De-configured",
            (CEASE, 4) => "Administrative Reset",
            (CEASE, 5) => "Connection Rejected",
            (CEASE, 6) => "Other Configuration Change",
            (CEASE, 7) => "Connection Collision Resolution",
            (CEASE, 8) => "Out of Resources",
            (CEASE, 9) => "Hard Reset",
            (ROUTE_REFRESH, 1) => "Invalid Message Length",
            _ => "Unknown subcode",
        };
        (c, s)
    }
}

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// One AS_PATH segment with 4-octet AS numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AsSegment {
    pub kind: SegmentKind,
    pub asns: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SegmentKind {
    Set,
    Sequence,
    ConfedSequence,
    ConfedSet,
}

/// 2-octet placeholder AS (RFC 6793).
pub const AS_TRANS: u32 = 23456;

/// The attributes of a path, in the speaker's own form (AS numbers always 4 octets,
/// AS4_PATH already merged). Attributes Brindle does not interpret but must pass on
/// (optional transitive unknowns, extended communities) are kept as raw
/// `(flags, type, value)` triples.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PathAttrs {
    pub origin: Option<Origin>,
    pub as_path: Vec<AsSegment>,
    /// IPv4 NEXT_HOP, or the MP_REACH global next hop.
    pub next_hop: Option<IpAddr>,
    /// MP_REACH IPv6 link-local next hop, when given.
    pub next_hop_local: Option<Ipv6Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<(u32, u32, u32)>,
    /// Extended communities, 8 octets each (RFC 4360), carried verbatim.
    pub ext_communities: Vec<[u8; 8]>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// Other optional transitive attributes, passed on with the Partial bit set.
    pub unknown: Vec<(u8, u8, Vec<u8>)>,
}

impl PathAttrs {
    /// All AS numbers of the path in order (sets flattened).
    pub fn as_path_flat(&self) -> Vec<u32> {
        self.as_path
            .iter()
            .flat_map(|s| s.asns.iter().copied())
            .collect()
    }
    /// RFC 4271 §9.1.2.2 a): sets count 1, confederation segments 0.
    pub fn as_path_len(&self) -> usize {
        self.as_path
            .iter()
            .map(|s| match s.kind {
                SegmentKind::Sequence => s.asns.len(),
                SegmentKind::Set => 1,
                _ => 0,
            })
            .sum()
    }
    /// The neighbour AS: first AS of the first sequence.
    pub fn first_as(&self) -> Option<u32> {
        match self.as_path.first() {
            Some(s) if s.kind == SegmentKind::Sequence => s.asns.first().copied(),
            _ => None,
        }
    }
    pub fn contains_as(&self, asn: u32) -> bool {
        self.as_path.iter().any(|s| s.asns.contains(&asn))
    }
    /// How many times `asn` appears in the AS_PATH, in every segment (BIRD's
    /// `as_path_contains` count, used by `allow local as`).
    pub fn count_as(&self, asn: u32) -> usize {
        self.as_path
            .iter()
            .map(|s| s.asns.iter().filter(|a| **a == asn).count())
            .sum()
    }
    /// Prepends `asn` to the path (eBGP export).
    pub fn prepend(&mut self, asn: u32) {
        match self.as_path.first_mut() {
            Some(s) if s.kind == SegmentKind::Sequence && s.asns.len() < 255 => {
                s.asns.insert(0, asn)
            }
            _ => self.as_path.insert(
                0,
                AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }
}

/// Formats a standard community as "aa:nn".
pub fn community_str(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_masks_and_orders() {
        let p: Prefix = "10.1.2.3/24".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.2.0/24");
        assert!(p.contains("10.1.2.200".parse().unwrap()));
        assert!(!p.contains("10.1.3.1".parse().unwrap()));
        let q: Prefix = "fd00::1/64".parse().unwrap();
        assert_eq!(q.to_string(), "fd00::/64");
        assert!(p < q);
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
    }

    #[test]
    fn nlri_round_trip() {
        for s in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.65.0.64/26",
            "1.2.3.4/32",
            "2001:db8::/32",
            "::/0",
            "fd00::1/128",
        ] {
            let p: Prefix = s.parse().unwrap();
            let mut b = Vec::new();
            p.write_nlri(&mut b);
            let (q, n) = Prefix::read_nlri(p.afi(), &b).unwrap();
            assert_eq!((p, b.len()), (q, n));
        }
        assert!(Prefix::read_nlri(Afi::Ipv4, &[33, 1, 2, 3, 4, 5]).is_none());
        assert!(Prefix::read_nlri(Afi::Ipv4, &[24, 1, 2]).is_none());
    }

    #[test]
    fn prepend_and_length() {
        let mut a = PathAttrs::default();
        a.prepend(65001);
        a.prepend(65000);
        assert_eq!(a.as_path_flat(), vec![65000, 65001]);
        assert_eq!(a.first_as(), Some(65000));
        assert_eq!(a.as_path_len(), 2);
    }

    #[test]
    fn notification_names() {
        let n = Notification::new(2, 2, vec![0xfd, 0xe8]);
        assert_eq!(n.describe(), "OPEN Message Error / Bad Peer AS");
        let mut data = vec![5];
        data.extend_from_slice(b"maint");
        assert!(Notification::new(6, 2, data).describe().contains("maint"));
    }
}
