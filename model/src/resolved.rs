//! The resolved policy program for one node's dataplane: the contract between the policy
//! compiler (`brindle-policies`, which knows Kubernetes and Calico) and felix (which
//! renders it into iptables chains and ipsets and knows neither). Named address sets with
//! their members, per policy the ordered rules over those sets, and per local endpoint
//! (by interface) the tiers of policies that apply to it in each direction; the node's
//! host endpoints (by interface, or `*` for all of them) likewise, with whether a profile
//! allows what no policy decides, and the failsafe ports that no policy can close. Plain
//! data.

use ipnetwork::IpNetwork;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    Allow,
    Deny,
    /// Skip the rest of this tier.
    Pass,
    /// Log and go on to the next rule.
    Log,
}

/// Members of a named set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Members {
    /// Addresses or networks (`hash:net`).
    Nets(Vec<IpNetwork>),
    /// (address, protocol, port) (`hash:ip,port`): a named port on the endpoints of a set.
    IpPorts(Vec<(IpAddr, u8, u16)>),
}

/// One alternative of a side: in `set` and, if given, not in `except` (a Kubernetes
/// `ipBlock` with `except`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetAlt {
    pub set: String,
    pub except: Option<String>,
}

/// One side of a resolved rule: every criterion present must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RSide {
    /// One of these alternatives (empty: no restriction).
    pub sets: Vec<SetAlt>,
    pub not_sets: Vec<String>,
    pub nets: Vec<IpNetwork>,
    pub not_nets: Vec<IpNetwork>,
    /// Any of these (protocol, first, last) or any of `named_ports` (empty both: no
    /// restriction).
    pub ports: Vec<(u8, u16, u16)>,
    /// `hash:ip,port` sets of named ports (matched on this side's address and port).
    pub named_ports: Vec<String>,
    /// Protocols whose every port matches (a `ports` entry without a number).
    pub protocols: Vec<u8>,
    pub not_ports: Vec<(u8, u16, u16)>,
    pub not_named_ports: Vec<String>,
}

/// A resolved rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RRule {
    pub ip_version: Option<u8>,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<(Option<u8>, Option<u8>)>,
    pub not_icmp: Option<(Option<u8>, Option<u8>)>,
    pub source: RSide,
    pub destination: RSide,
    pub action: Action,
    /// `<policy> <direction> rule <n>`, for comments and logs.
    pub origin: String,
}

/// A policy's rules, by the chain-name key felix derives its chains from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RPolicy {
    pub id: String,
    pub ingress: Vec<RRule>,
    pub egress: Vec<RRule>,
}

/// The policies of one tier that apply to an endpoint, in order (policy keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierRef {
    pub name: String,
    pub policies: Vec<String>,
}

/// What applies to one local endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct REndpoint {
    pub iface: String,
    pub ingress: Vec<TierRef>,
    pub egress: Vec<TierRef>,
}

/// The interface name of the all-interfaces host endpoint (`interfaceName: "*"`).
pub const ALL_INTERFACES: &str = "*";

/// What applies to one host endpoint of this node (Calico `HostEndpoint`, normal
/// policy: traffic the host itself receives on, or sends from, the interface).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RHostEndpoint {
    /// The HostEndpoint's name.
    pub name: String,
    /// The interface, or [`ALL_INTERFACES`] (every interface but workloads' and `lo`).
    pub iface: String,
    /// Traffic to the host from the interface (Calico's ingress).
    pub ingress: Vec<TierRef>,
    /// Traffic from the host out of the interface (Calico's egress).
    pub egress: Vec<TierRef>,
    /// A profile allows what no policy decided (`projectcalico-default-allow`); without
    /// one the host endpoint drops it (a host endpoint is default-deny).
    pub profile_allows: bool,
}

/// A failsafe port (Felix's `FailsafeInboundHostPorts`/`FailsafeOutboundHostPorts`):
/// host endpoint traffic on it is accepted before any policy. Inbound it is the
/// destination port and the source net; outbound the destination port and net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Failsafe {
    /// IANA protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u8,
    pub port: u16,
    pub net: Option<IpNetwork>,
}

impl Failsafe {
    pub const fn new(protocol: u8, port: u16) -> Failsafe {
        Failsafe {
            protocol,
            port,
            net: None,
        }
    }

    /// `tcp:22`, `udp:10.0.0.0/8:53` (Felix's environment-variable form).
    pub fn label(&self) -> String {
        let proto = match self.protocol {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            132 => "sctp".to_string(),
            n => n.to_string(),
        };
        match self.net {
            Some(n) => format!("{proto}:{n}:{}", self.port),
            None => format!("{proto}:{}", self.port),
        }
    }
}

/// Felix's port-list form of `FELIX_FAILSAFEINBOUNDHOSTPORTS` /
/// `FELIX_FAILSAFEOUTBOUNDHOSTPORTS` (`felix/config/param_types.go` `PortListParam`):
/// comma-separated `(tcp|udp):<cidr>:<port>`, `(tcp|udp):<port>` or `<port>` (TCP), an
/// IPv6 CIDR in brackets (`tcp:[fd00::/8]:22`); `none` (any case) is the empty list.
pub fn parse_port_list(raw: &str) -> Result<Vec<Failsafe>, String> {
    if raw.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in raw.split(',') {
        let mut item = item.trim().to_string();
        if item.is_empty() {
            continue;
        }
        let mut net: Option<String> = None;
        if let (Some(a), Some(b)) = (item.find('['), item.find("]:")) {
            if a < b {
                net = Some(item[a + 1..b].to_string());
                item = format!("{}{}", &item[..a], &item[b + 2..]);
            }
        }
        let parts: Vec<&str> = item.split(':').collect();
        let (proto, port) = match parts.as_slice() {
            [port] => ("tcp".to_string(), *port),
            [proto, port] => (proto.to_ascii_lowercase(), *port),
            [proto, n, port] => {
                net = Some(n.to_string());
                (proto.to_ascii_lowercase(), *port)
            }
            _ => {
                return Err(format!(
                    "{item:?}: ports should be <protocol>:<net>:<number> or <protocol>:<number> or <number>"
                ))
            }
        };
        let protocol = match proto.as_str() {
            "tcp" => 6,
            "udp" => 17,
            other => return Err(format!("{item:?}: unknown protocol {other:?} (tcp or udp)")),
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{item:?}: ports should be integers in 0-65535"))?;
        let net = match net {
            None => None,
            Some(n) => Some(crate::values::parse_cidr(&n).or_else(|_| {
                n.parse::<IpAddr>()
                    .map(IpNetwork::from)
                    .map_err(|_| format!("{item:?}: invalid CIDR or IP {n:?}"))
            })?),
        };
        // Felix keeps the network (host bits cleared).
        let net = net.map(|n| IpNetwork::new(n.network(), n.prefix()).expect("same prefix"));
        out.push(Failsafe {
            protocol,
            port,
            net,
        });
    }
    Ok(out)
}

/// Calico's default `FailsafeInboundHostPorts`: SSH, DHCP, BGP, etcd, Typha, the
/// Kubernetes API server and kube-proxy's health ports.
pub const DEFAULT_FAILSAFE_INBOUND: &[Failsafe] = &[
    Failsafe::new(6, 22),
    Failsafe::new(17, 68),
    Failsafe::new(6, 179),
    Failsafe::new(6, 2379),
    Failsafe::new(6, 2380),
    Failsafe::new(6, 5473),
    Failsafe::new(6, 6443),
    Failsafe::new(6, 6666),
    Failsafe::new(6, 6667),
];

/// Calico's default `FailsafeOutboundHostPorts`: DNS, DHCP, BGP, etcd, Typha, the
/// Kubernetes API server and kube-proxy's health ports.
pub const DEFAULT_FAILSAFE_OUTBOUND: &[Failsafe] = &[
    Failsafe::new(17, 53),
    Failsafe::new(17, 67),
    Failsafe::new(6, 179),
    Failsafe::new(6, 2379),
    Failsafe::new(6, 2380),
    Failsafe::new(6, 5473),
    Failsafe::new(6, 6443),
    Failsafe::new(6, 6666),
    Failsafe::new(6, 6667),
];

/// Everything felix needs for policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Resolved {
    pub sets: BTreeMap<String, Members>,
    pub policies: BTreeMap<String, RPolicy>,
    pub endpoints: Vec<REndpoint>,
    /// This node's host endpoints (none: host traffic is not policed at all).
    pub host_endpoints: Vec<RHostEndpoint>,
    /// Failsafe ports for host endpoint traffic (used only with host endpoints).
    pub failsafe_inbound: Vec<Failsafe>,
    pub failsafe_outbound: Vec<Failsafe>,
    /// With host endpoints: the encapsulation this node uses (IPIP, VXLAN), accepted
    /// from and to the other nodes' addresses ([`tunnel_hosts`](Self::tunnel_hosts))
    /// before host endpoint policy, as Felix does, so that a default-deny host endpoint
    /// does not cut the pod network.
    pub ipip: bool,
    pub vxlan: bool,
    pub tunnel_hosts: Vec<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felix_port_lists() {
        let l = |s: &str| {
            parse_port_list(s)
                .unwrap()
                .iter()
                .map(Failsafe::label)
                .collect::<Vec<_>>()
        };
        assert_eq!(l("tcp:22, udp:68,443"), ["tcp:22", "udp:68", "tcp:443"]);
        assert_eq!(l("tcp:10.1.2.3/8:22"), ["tcp:10.0.0.0/8:22"]);
        assert_eq!(l("UDP:192.0.2.1:53"), ["udp:192.0.2.1/32:53"]);
        assert_eq!(l("tcp:[fd00::1/8]:22"), ["tcp:fd00::/8:22"]);
        assert!(l("none").is_empty() && l("None").is_empty() && l("").is_empty());
        assert!(parse_port_list("sctp:9").is_err());
        assert!(parse_port_list("tcp:x").is_err());
        assert!(parse_port_list("tcp:70000").is_err());
        assert!(parse_port_list("a:b:c:d").is_err());
    }
}
