//! The resolved policy program for one node's dataplane: the contract between the policy
//! compiler (`brindle-policies`, which knows Kubernetes and Calico) and felix (which
//! renders it into iptables chains and ipsets and knows neither). Named address sets with
//! their members, per policy the ordered rules over those sets, and per local endpoint
//! (by interface) the tiers of policies that apply to it in each direction. Plain data.

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

/// Everything felix needs for policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Resolved {
    pub sets: BTreeMap<String, Members>,
    pub policies: BTreeMap<String, RPolicy>,
    pub endpoints: Vec<REndpoint>,
}
