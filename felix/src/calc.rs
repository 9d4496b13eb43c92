//! The pure calculation: [`Model`] → [`Desired`] kernel state. No I/O here; everything is
//! unit-tested below.
//!
//! # What is computed
//! * **Pod routes**: `<ip>/32|/128 dev <cali…> scope link proto 80` per local endpoint
//!   address, and a permanent neighbour entry (pod IP → pod MAC) when the MAC is known
//!   (IPv4 and IPv6).
//! * **Blackholes**: `blackhole <block>` for each of the node's own blocks.
//! * **Learned routes** (BGP): `via <nh>` (ECMP when several next hops). Inside an IPIP
//!   pool (`Always`, or `CrossSubnet` with the next hop outside the node's IPv4 prefix):
//!   `via <nh> dev tunl0 onlink`. Inside a VXLAN pool: `via <remote tunnel addr> dev
//!   vxlan.brindle onlink`, plus a neighbour entry (remote tunnel addr → remote VTEP MAC)
//!   and an FDB entry (VTEP MAC → remote node IP). A learned prefix equal to or inside an
//!   own block is never installed.
//! * **Remote nodes' blocks** in IPIP/VXLAN pools get the same tunnel routes without
//!   waiting for BGP (Calico's VXLAN mode works that way); in `CrossSubnet` pools a
//!   same-subnet node's block is routed natively `via <nodeIP>`. Blocks of `Never` pools
//!   are left to BGP. A learned route for the same prefix wins over the block route.
//!   Disabled pools still decide the encapsulation of their existing blocks (disabling
//!   a pool only stops allocation, as in Calico).
//! * **Tunnels**: `tunl0` when an enabled IPv4 pool uses IPIP or any route needs it (up,
//!   `<ipip tunnel addr>/32`, MTU host − 20); `vxlan.brindle` likewise for VXLAN (VNI
//!   4096, UDP 4789, local = node IP, learning off, MTU host − 50, `<vxlan tunnel
//!   addr>/32`, MAC [`vxlan_mac`] derived from the node name).
//! * **Sysctls** per endpoint interface (felix's part of [`crate::sysctl::HOST_IFACE`]:
//!   `proxy_arp`, `forwarding`, `route_localnet`, `rp_filter=1`,
//!   `neigh/<if>/proxy_delay=0`, IPv6 `accept_ra=0`, `proxy_ndp=1`, `forwarding=1`) and
//!   globally `ip_forward=1` (IPv6 `conf/all/forwarding=1` when a
//!   local endpoint has an IPv6 address).
//! * **MTU**: [`host_mtu`] from the links; pod MTU = host MTU − the overhead of the
//!   encapsulation in use ([`Desired::pod_mtu`]).
//!
//! # rp_filter
//! The kernel filters with `max(conf.all.rp_filter, conf.<if>.rp_filter)` (0 off,
//! 1 strict, 2 loose) — the *numeric* maximum, so loose (2) beats strict (1) from
//! either side. Brindle's two needs:
//!
//! * **tunl0** receives decapsulated packets whose return route may leave by another
//!   interface (a client outside the cluster reaching a pod through an IPIP tunnel);
//!   strict filtering drops them (Calico's field failure: Calico never writes
//!   `tunl0/rp_filter`). Brindle sets `tunl0/rp_filter=2` (loose). Because of the
//!   numeric maximum, this is effective whatever `conf.all` says (measured in the VM:
//!   `all=1, tunl0=2` delivers) — but only while tunl0 has an address: loose mode drops
//!   everything on an interface without one (measured). Without a tunnel address Brindle
//!   sets `tunl0/rp_filter=0`, which leaves the decision to `conf.all`: any non-zero
//!   `all` then drops.
//! * **cali interfaces** get `rp_filter=1`: strict anti-spoofing on the pod side (a pod
//!   may only source its own addresses, whose route points back at its veth). Strict
//!   `1` is only effective while `conf.all.rp_filter` is not 2 — and systemd ≥ 240 ships
//!   `all=2`, which makes every interface loose. (Calico therefore matches
//!   `-m rpfilter --invert` in the raw table; Brindle's iptables layer may add the same
//!   as defence in depth, but here the sysctl itself is made effective.)
//!
//! So `conf.all` is in the way exactly when (a) it is 2 and there are local endpoints,
//! or (b) it is non-zero and tunl0 is wanted without an address ([`rp_filter_plan`]).
//! Under [`RpFilterPolicy::Normalize`] (default) Brindle then first raises every other
//! interface's own value (and `conf.default`) to `max(own, all)`, and then sets
//! `conf.all` to 0. The effective value of every non-Brindle interface is exactly what
//! it was (existing ones through their own value, future ones through `conf.default`),
//! while Brindle's interfaces get exactly their own setting. Per-interface values are
//! raised *before* `all` is lowered, so no interface is ever less strict than before,
//! not even briefly. Nothing is restored on cleanup (the normalised form is
//! equivalent). Under [`RpFilterPolicy::ReportOnly`] nothing global changes and a
//! [`Warning`] says what will be dropped or is weaker than wanted.

use crate::model::{EncapMode, Model, Pool, RemoteNode};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// Brindle's route protocol number (`ip route ... proto 80`); also tags its neighbour
/// entries (`NDA_PROTOCOL`). Routes of any other protocol are never touched.
pub const ROUTE_PROTOCOL: u8 = 80;
/// The IPIP device (the kernel's fallback tunnel device).
pub const IPIP_IFACE: &str = "tunl0";
/// Brindle's VXLAN device.
pub const VXLAN_IFACE: &str = "vxlan.brindle";
pub const VXLAN_VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;
/// Bytes IPIP adds (outer IPv4 header).
pub const IPIP_OVERHEAD: u32 = 20;
/// Bytes VXLAN over IPv4 adds (outer IPv4 + UDP + VXLAN + inner Ethernet).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Host MTU assumed when no physical-looking interface is up.
pub const DEFAULT_HOST_MTU: u32 = 1500;
/// Host-side pod veths are named `cali` + 11 hex characters.
pub const ENDPOINT_IFACE_PREFIX: &str = "cali";
/// `rp_filter` Brindle gives tunl0 when it has an address (loose).
pub const TUNL0_RP_FILTER: u8 = 2;
/// `rp_filter` on endpoint interfaces (strict).
pub const ENDPOINT_RP_FILTER: u8 = 1;

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Parses `aa:bb:cc:dd:ee:ff` (also `-` separated).
    pub fn parse(s: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.trim().split([':', '-']) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return None;
            }
            out[n] = u8::from_str_radix(part, 16).ok()?;
            n += 1;
        }
        (n == 6).then_some(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The VTEP MAC of a node's `vxlan.brindle`: FNV-1a-64 of the node name, first six
/// bytes, locally administered unicast (`x2:…`). Every node computes every other node's
/// MAC the same way, so the MAC need not be published (a published one wins).
pub fn vxlan_mac(node_name: &str) -> Mac {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    Mac([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// One next hop of a gateway route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NextHop {
    pub gateway: IpAddr,
    /// Output interface; `None` lets the kernel resolve it.
    pub iface: Option<String>,
    pub onlink: bool,
}

impl NextHop {
    pub fn via(gateway: IpAddr) -> Self {
        NextHop {
            gateway,
            iface: None,
            onlink: false,
        }
    }
    pub fn onlink(gateway: IpAddr, iface: &str) -> Self {
        NextHop {
            gateway,
            iface: Some(iface.to_string()),
            onlink: true,
        }
    }
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RouteTarget {
    /// `dev <iface> scope link` (pod routes).
    Device(String),
    /// `blackhole` (own blocks).
    Blackhole,
    /// `via …` (sorted, deduplicated; several = ECMP multipath).
    Gateways(Vec<NextHop>),
}

impl RouteTarget {
    /// Interfaces this route needs.
    pub fn ifaces(&self) -> Vec<&str> {
        match self {
            RouteTarget::Device(i) => vec![i.as_str()],
            RouteTarget::Blackhole => vec![],
            RouteTarget::Gateways(h) => h.iter().filter_map(|h| h.iface.as_deref()).collect(),
        }
    }
}

/// A permanent neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Neighbour {
    pub iface: String,
    pub ip: IpAddr,
    pub mac: Mac,
}

/// A VXLAN forwarding entry: frames for `mac` go to `dst` (a remote node's IP).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FdbEntry {
    pub iface: String,
    pub mac: Mac,
    pub dst: Ipv4Addr,
}

/// `tunl0`, when wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpipTunnel {
    /// `<addr>/32` on tunl0.
    pub address: Option<Ipv4Addr>,
}

/// `vxlan.brindle`, when wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VxlanTunnel {
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub mac: Mac,
    pub address: Option<Ipv4Addr>,
}

/// Something that will not work as the user probably expects. Logged and shown in
/// status; never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: WarningCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarningCode {
    /// Reverse-path filtering will drop traffic Brindle needs, or is weaker than wanted.
    RpFilter,
    /// Brindle changed `conf.all.rp_filter` (see the module docs).
    RpFilterNormalized,
    /// The node's IPv4 address is a /32: CrossSubnet tunnels everything.
    NodePrefixHost,
    /// A tunnel route lacks information (tunnel address, node IP).
    MissingTunnelInfo,
    /// A learned route or block conflicts with an own block.
    OwnBlockConflict,
    /// Input Brindle cannot use (bad interface name, MAC, mixed families).
    InvalidInput,
    /// A feature combination Brindle does not implement.
    Unsupported,
    /// A route key is held by a route of another protocol; left alone.
    ForeignRoute,
}

impl Warning {
    pub fn new(code: WarningCode, message: impl Into<String>) -> Self {
        Warning {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// The desired kernel state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub protocol: u8,
    /// Main-table routes by (normalised) destination.
    pub routes: BTreeMap<IpNetwork, RouteTarget>,
    pub neighbours: BTreeSet<Neighbour>,
    pub fdb: BTreeSet<FdbEntry>,
    /// Path under `/proc/sys` → value. Interface-specific entries for interfaces that
    /// do not exist (yet) are skipped by the reconciler.
    pub sysctls: BTreeMap<String, String>,
    pub ipip: Option<IpipTunnel>,
    pub vxlan: Option<VxlanTunnel>,
    /// Local endpoint interfaces.
    pub endpoint_ifaces: BTreeSet<String>,
    pub warnings: Vec<Warning>,
    /// Keep Brindle's routes that are not desired (the model is still incomplete).
    pub keep_undesired_routes: bool,
}

impl Desired {
    /// Bytes of encapsulation overhead in use (the largest of the tunnels wanted).
    pub fn encap_overhead(&self) -> u32 {
        if self.vxlan.is_some() {
            VXLAN_OVERHEAD
        } else if self.ipip.is_some() {
            IPIP_OVERHEAD
        } else {
            0
        }
    }

    /// The MTU pods should use given the host MTU.
    pub fn pod_mtu(&self, host_mtu: u32) -> u32 {
        host_mtu.saturating_sub(self.encap_overhead())
    }
}

/// Normalises a prefix (host bits cleared).
pub fn norm(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

/// The host prefix (/32, /128) of an address.
pub fn host_net(ip: IpAddr) -> IpNetwork {
    match ip {
        IpAddr::V4(_) => IpNetwork::new(ip, 32).expect("/32"),
        IpAddr::V6(_) => IpNetwork::new(ip, 128).expect("/128"),
    }
}

/// Whether `inner` lies inside `outer` (or equals it).
pub fn contains_net(outer: IpNetwork, inner: IpNetwork) -> bool {
    outer.is_ipv4() == inner.is_ipv4()
        && outer.prefix() <= inner.prefix()
        && outer.contains(inner.network())
}

/// A Linux interface name Brindle is willing to use.
pub fn valid_iface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', ' ', '\0', ':'])
}

enum Encap {
    None,
    Ipip,
    Vxlan,
}

struct Calc<'a> {
    model: &'a Model,
    own_blocks: Vec<IpNetwork>,
    warnings: Vec<Warning>,
    neighbours: BTreeSet<Neighbour>,
    fdb: BTreeSet<FdbEntry>,
    cross_subnet_used: bool,
}

impl<'a> Calc<'a> {
    fn pool_for(&self, prefix: IpNetwork) -> Option<&'a Pool> {
        self.model
            .pools
            .iter()
            .filter(|p| contains_net(norm(p.cidr), prefix))
            .max_by_key(|p| p.cidr.prefix())
    }

    fn same_subnet(&self, ip: Ipv4Addr) -> bool {
        self.model
            .node_ipv4
            .is_some_and(|n| n.prefix() < 32 && n.contains(ip))
    }

    /// The encapsulation for traffic to `prefix` through node `node_ip`.
    fn encap(&mut self, prefix: IpNetwork, node_ip: IpAddr) -> Encap {
        let Some(pool) = self.pool_for(prefix) else {
            return Encap::None;
        };
        let IpAddr::V4(node_ip) = node_ip else {
            return Encap::None;
        };
        if !prefix.is_ipv4() {
            return Encap::None;
        }
        let decide = |me: &mut Self, mode: EncapMode| match mode {
            EncapMode::Never => false,
            EncapMode::Always => true,
            EncapMode::CrossSubnet => {
                me.cross_subnet_used = true;
                !me.same_subnet(node_ip)
            }
        };
        if pool.vxlan_mode != EncapMode::Never {
            if decide(self, pool.vxlan_mode) {
                return Encap::Vxlan;
            }
            return Encap::None;
        }
        if decide(self, pool.ipip_mode) {
            return Encap::Ipip;
        }
        Encap::None
    }

    fn remote_by_ip(&self, ip: IpAddr) -> Option<&'a RemoteNode> {
        self.model
            .remote_nodes
            .iter()
            .find(|n| n.ipv4.is_some_and(|a| IpAddr::V4(a.ip()) == ip))
    }

    /// The VXLAN next hop towards `node`, registering its neighbour and FDB entries.
    fn vxlan_hop(&mut self, node: &RemoteNode, node_ip: Ipv4Addr, what: &str) -> Option<NextHop> {
        let Some(tun) = node.vxlan_tunnel_addr else {
            self.warnings.push(Warning::new(
                WarningCode::MissingTunnelInfo,
                format!(
                    "{what}: node {} has no VXLAN tunnel address; routing natively via {node_ip}",
                    node.name
                ),
            ));
            return None;
        };
        let mac = match node.vxlan_mac.as_deref() {
            Some(s) => match Mac::parse(s) {
                Some(m) => m,
                None => {
                    self.warnings.push(Warning::new(
                        WarningCode::InvalidInput,
                        format!(
                            "node {}: bad VXLAN MAC {s:?}; using the derived one",
                            node.name
                        ),
                    ));
                    vxlan_mac(&node.name)
                }
            },
            None => vxlan_mac(&node.name),
        };
        self.neighbours.insert(Neighbour {
            iface: VXLAN_IFACE.into(),
            ip: IpAddr::V4(tun),
            mac,
        });
        self.fdb.insert(FdbEntry {
            iface: VXLAN_IFACE.into(),
            mac,
            dst: node_ip,
        });
        Some(NextHop::onlink(IpAddr::V4(tun), VXLAN_IFACE))
    }

    fn in_own_block(&self, prefix: IpNetwork) -> bool {
        self.own_blocks.iter().any(|b| contains_net(*b, prefix))
    }
}

fn sort_hops(mut hops: Vec<NextHop>) -> Vec<NextHop> {
    hops.sort();
    hops.dedup();
    hops
}

/// Computes the desired kernel state. Pure.
pub fn desired(model: &Model, protocol: u8) -> Desired {
    let mut c = Calc {
        model,
        own_blocks: model.own_blocks.iter().map(|b| norm(*b)).collect(),
        warnings: Vec::new(),
        neighbours: BTreeSet::new(),
        fdb: BTreeSet::new(),
        cross_subnet_used: false,
    };
    let mut routes: BTreeMap<IpNetwork, RouteTarget> = BTreeMap::new();

    for p in &model.pools {
        if p.cidr.is_ipv6() && p.ipip_mode != EncapMode::Never {
            c.warnings.push(Warning::new(
                WarningCode::Unsupported,
                format!(
                    "pool {}: IPIP does not apply to IPv6; routing natively",
                    p.cidr
                ),
            ));
        }
        if p.cidr.is_ipv6() && p.vxlan_mode != EncapMode::Never {
            c.warnings.push(Warning::new(
                WarningCode::Unsupported,
                format!(
                    "pool {}: IPv6 VXLAN is not implemented; routing natively",
                    p.cidr
                ),
            ));
        }
        if p.ipip_mode != EncapMode::Never && p.vxlan_mode != EncapMode::Never {
            c.warnings.push(Warning::new(
                WarningCode::InvalidInput,
                format!(
                    "pool {}: both ipipMode and vxlanMode set; using VXLAN",
                    p.cidr
                ),
            ));
        }
    }

    // 1. Remote nodes' blocks in encapsulated pools.
    for node in &model.remote_nodes {
        for block in node.blocks.iter().map(|b| norm(*b)) {
            if c.in_own_block(block) {
                c.warnings.push(Warning::new(
                    WarningCode::OwnBlockConflict,
                    format!(
                        "node {} claims block {block}, which is inside an own block; ignored",
                        node.name
                    ),
                ));
                continue;
            }
            let (Some(pool), Some(node_ip)) = (c.pool_for(block), node.ipv4.map(|n| n.ip())) else {
                continue;
            };
            if !block.is_ipv4()
                || (pool.ipip_mode == EncapMode::Never && pool.vxlan_mode == EncapMode::Never)
            {
                continue;
            }
            let hop = match c.encap(block, IpAddr::V4(node_ip)) {
                Encap::Ipip => NextHop::onlink(IpAddr::V4(node_ip), IPIP_IFACE),
                Encap::Vxlan => match c.vxlan_hop(node, node_ip, &format!("block {block}")) {
                    Some(h) => h,
                    None => NextHop::via(IpAddr::V4(node_ip)),
                },
                Encap::None => NextHop::via(IpAddr::V4(node_ip)),
            };
            routes.insert(block, RouteTarget::Gateways(vec![hop]));
        }
    }

    // 2. Learned routes.
    for (prefix, nhs) in &model.learned {
        let prefix = norm(*prefix);
        if c.in_own_block(prefix) {
            continue;
        }
        let mut hops = Vec::new();
        for nh in nhs {
            if nh.is_ipv4() != prefix.is_ipv4() {
                c.warnings.push(Warning::new(
                    WarningCode::InvalidInput,
                    format!(
                        "learned {prefix}: next hop {nh} is of the other address family; ignored"
                    ),
                ));
                continue;
            }
            let hop = match c.encap(prefix, *nh) {
                Encap::Ipip => NextHop::onlink(*nh, IPIP_IFACE),
                Encap::Vxlan => {
                    let IpAddr::V4(nh4) = *nh else {
                        unreachable!("encap is IPv4 only")
                    };
                    match c.remote_by_ip(*nh) {
                        Some(node) => c
                            .vxlan_hop(node, nh4, &format!("learned {prefix}"))
                            .unwrap_or(NextHop::via(*nh)),
                        None => {
                            c.warnings.push(Warning::new(WarningCode::MissingTunnelInfo, format!("learned {prefix}: next hop {nh} is no known node; cannot use VXLAN, routing natively")));
                            NextHop::via(*nh)
                        }
                    }
                }
                Encap::None => NextHop::via(*nh),
            };
            hops.push(hop);
        }
        if !hops.is_empty() {
            routes.insert(prefix, RouteTarget::Gateways(sort_hops(hops)));
        }
    }

    // 3. Own blocks.
    for b in &c.own_blocks {
        routes.insert(*b, RouteTarget::Blackhole);
    }

    // 4. Local endpoints.
    let mut sysctls = BTreeMap::new();
    let mut endpoint_ifaces = BTreeSet::new();
    let mut any_v6 = false;
    for ep in &model.endpoints {
        if !valid_iface_name(&ep.iface) {
            c.warnings.push(Warning::new(
                WarningCode::InvalidInput,
                format!(
                    "endpoint interface {:?} is not a valid interface name; ignored",
                    ep.iface
                ),
            ));
            continue;
        }
        let mac = match ep.mac.as_deref() {
            Some(s) => {
                let m = Mac::parse(s);
                if m.is_none() {
                    c.warnings.push(Warning::new(
                        WarningCode::InvalidInput,
                        format!("endpoint {}: bad MAC {s:?}; no neighbour entry", ep.iface),
                    ));
                }
                m
            }
            None => None,
        };
        endpoint_ifaces.insert(ep.iface.clone());
        for ip in &ep.ips {
            let ip = ip.ip();
            any_v6 |= ip.is_ipv6();
            routes.insert(host_net(ip), RouteTarget::Device(ep.iface.clone()));
            if let Some(mac) = mac {
                c.neighbours.insert(Neighbour {
                    iface: ep.iface.clone(),
                    ip,
                    mac,
                });
            }
        }
        for s in crate::sysctl::HOST_IFACE.iter().filter(|s| s.by_felix()) {
            sysctls.insert(s.key(&ep.iface), s.value.to_string());
        }
    }
    sysctls.insert("net/ipv4/ip_forward".into(), "1".into());
    if any_v6 {
        sysctls.insert("net/ipv6/conf/all/forwarding".into(), "1".into());
    }

    // 5. Tunnels.
    let enabled_v4 = || {
        model
            .pools
            .iter()
            .filter(|p| !p.disabled && p.cidr.is_ipv4())
    };
    let uses = |routes: &BTreeMap<IpNetwork, RouteTarget>, dev: &str| {
        routes.values().any(|t| t.ifaces().contains(&dev))
    };
    let want_ipip = enabled_v4()
        .any(|p| p.ipip_mode != EncapMode::Never && p.vxlan_mode == EncapMode::Never)
        || uses(&routes, IPIP_IFACE);
    let want_vxlan =
        enabled_v4().any(|p| p.vxlan_mode != EncapMode::Never) || uses(&routes, VXLAN_IFACE);

    let ipip = want_ipip.then(|| {
        if model.ipip_tunnel_addr.is_none() {
            c.warnings.push(Warning::new(
                WarningCode::MissingTunnelInfo,
                "IPIP in use but this node has no IPIP tunnel address: host-originated traffic into tunl0 gets a wrong source, and tunl0 rp_filter is set to 0 instead of loose",
            ));
        }
        let rpf = if model.ipip_tunnel_addr.is_some() { TUNL0_RP_FILTER } else { 0 };
        sysctls.insert(format!("net/ipv4/conf/{IPIP_IFACE}/rp_filter"), rpf.to_string());
        IpipTunnel { address: model.ipip_tunnel_addr }
    });

    let vxlan = if want_vxlan {
        match model.node_ipv4 {
            Some(n) => {
                if model.vxlan_tunnel_addr.is_none() {
                    c.warnings.push(Warning::new(WarningCode::MissingTunnelInfo, "VXLAN in use but this node has no VXLAN tunnel address; vxlan.brindle gets no address"));
                }
                Some(VxlanTunnel {
                    vni: VXLAN_VNI,
                    port: VXLAN_PORT,
                    local: n.ip(),
                    mac: vxlan_mac(&model.node_name),
                    address: model.vxlan_tunnel_addr,
                })
            }
            None => {
                c.warnings.push(Warning::new(WarningCode::MissingTunnelInfo, "VXLAN in use but this node has no IPv4 address; no VXLAN device, VXLAN routes dropped"));
                routes.retain(|_, t| !t.ifaces().contains(&VXLAN_IFACE));
                c.neighbours.retain(|n| n.iface != VXLAN_IFACE);
                c.fdb.clear();
                None
            }
        }
    } else {
        None
    };

    if c.cross_subnet_used && model.node_ipv4.is_some_and(|n| n.prefix() == 32) {
        c.warnings.push(Warning::new(
            WarningCode::NodePrefixHost,
            format!("node address {} is a /32: CrossSubnet cannot tell same-subnet nodes and tunnels to all of them (give the node address its real prefix)", model.node_ipv4.expect("checked")),
        ));
    }

    Desired {
        protocol,
        routes,
        neighbours: c.neighbours,
        fdb: c.fdb,
        sysctls,
        ipip,
        vxlan,
        endpoint_ifaces,
        warnings: c.warnings,
        keep_undesired_routes: model.routes_incomplete,
    }
}

/// A link as [`host_mtu`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    pub name: String,
    pub mtu: u32,
    pub up: bool,
    /// `IFLA_INFO_KIND` (`veth`, `vxlan`, `ipip`, …); `None` for physical devices.
    pub kind: Option<String>,
}

/// Whether a link is Brindle's or otherwise not part of the physical path.
fn virtual_looking(l: &LinkSummary) -> bool {
    let n = l.name.as_str();
    n == "lo"
        || n.starts_with(ENDPOINT_IFACE_PREFIX)
        || n == IPIP_IFACE
        || n.starts_with("vxlan")
        || n.starts_with("kube-ipvs")
        || matches!(
            l.kind.as_deref(),
            Some(
                "ipip"
                    | "vxlan"
                    | "dummy"
                    | "wireguard"
                    | "gre"
                    | "gretap"
                    | "sit"
                    | "ip6tnl"
                    | "ip6gre"
                    | "geneve"
                    | "nlmon"
                    | "ifb"
            )
        )
}

/// The smallest MTU among up, physical-looking links (lo, cali*, tunl0, vxlan* and
/// tunnel/dummy kinds are skipped); [`DEFAULT_HOST_MTU`] when there is none.
pub fn host_mtu(links: &[LinkSummary]) -> u32 {
    links
        .iter()
        .filter(|l| l.up && l.mtu > 0 && !virtual_looking(l))
        .map(|l| l.mtu)
        .min()
        .unwrap_or(DEFAULT_HOST_MTU)
}

/// What to do when `conf.all.rp_filter` defeats Brindle's per-interface settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RpFilterPolicy {
    /// Move `conf.all` into every interface's own value, then set `all` to 0 (keeps
    /// every other interface's effective filtering; see the module docs).
    #[default]
    Normalize,
    /// Change nothing global; report what will be dropped.
    ReportOnly,
}

/// The `rp_filter` values observed on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpFilterObserved {
    pub all: u8,
    pub default: u8,
    /// Every other interface that is not Brindle's (not cali*, tunl0, vxlan.brindle).
    pub others: BTreeMap<String, u8>,
}

/// Global `rp_filter` writes, in order, and warnings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpFilterPlan {
    /// `(path under /proc/sys, value)` in the order they must be written.
    pub writes: Vec<(String, String)>,
    pub warnings: Vec<Warning>,
}

/// Whether an interface name is one Brindle manages.
pub fn is_brindle_iface(name: &str) -> bool {
    name.starts_with(ENDPOINT_IFACE_PREFIX) || name == IPIP_IFACE || name == VXLAN_IFACE
}

/// Decides the global `rp_filter` changes for `desired` given what the host has. Pure.
pub fn rp_filter_plan(
    desired: &Desired,
    observed: &RpFilterObserved,
    policy: RpFilterPolicy,
) -> RpFilterPlan {
    let all = observed.all.min(2);
    let mut problems = Vec::new();
    // with an address, tunl0's own loose setting wins over any `all` (numeric maximum)
    if desired.ipip.as_ref().is_some_and(|t| t.address.is_none()) {
        if all == 1 {
            problems.push("conf.all.rp_filter=1 makes tunl0 (which has no address, so its own rp_filter is 0) strict: packets arriving through the IPIP tunnel whose return route leaves by another interface (clients outside the cluster) are dropped".to_string());
        } else if all == 2 {
            problems.push("conf.all.rp_filter=2 with tunl0 lacking an address: loose mode drops every packet arriving on tunl0".to_string());
        }
    }
    if all == 2 && !desired.endpoint_ifaces.is_empty() {
        problems.push("conf.all.rp_filter=2 makes the pod interfaces' rp_filter=1 loose: pods could send with spoofed source addresses".to_string());
    }
    let mut plan = RpFilterPlan::default();
    if problems.is_empty() {
        return plan;
    }
    match policy {
        RpFilterPolicy::ReportOnly => {
            for p in problems {
                plan.warnings.push(Warning::new(WarningCode::RpFilter, p));
            }
        }
        RpFilterPolicy::Normalize => {
            let mut raised = Vec::new();
            for (name, own) in &observed.others {
                if is_brindle_iface(name) || !valid_iface_name(name) {
                    continue;
                }
                if *own < all {
                    plan.writes
                        .push((format!("net/ipv4/conf/{name}/rp_filter"), all.to_string()));
                    raised.push(name.as_str());
                }
            }
            if observed.default < all {
                plan.writes
                    .push(("net/ipv4/conf/default/rp_filter".into(), all.to_string()));
            }
            plan.writes
                .push(("net/ipv4/conf/all/rp_filter".into(), "0".into()));
            plan.warnings.push(Warning::new(
                WarningCode::RpFilterNormalized,
                format!(
                    "conf.all.rp_filter was {all} ({}); set it to 0 after raising conf.default and the own rp_filter of [{}] to {all}, so their effective filtering is unchanged",
                    problems.join("; "),
                    raised.join(", ")
                ),
            ));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LocalEndpoint, Pool};

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> Pool {
        Pool {
            cidr: net(cidr),
            block_size: 26,
            ipip_mode: ipip,
            vxlan_mode: vxlan,
            nat_outgoing: true,
            disabled: false,
        }
    }
    fn base() -> Model {
        Model {
            node_name: "node-a".into(),
            node_ipv4: Some("192.168.1.10/24".parse().unwrap()),
            ..Default::default()
        }
    }
    fn remote(name: &str, ipv4: &str, blocks: &[&str]) -> RemoteNode {
        RemoteNode {
            name: name.into(),
            ipv4: Some(ipv4.parse().unwrap()),
            ipv6: None,
            ipip_tunnel_addr: None,
            vxlan_tunnel_addr: None,
            vxlan_mac: None,
            blocks: blocks.iter().map(|b| net(b)).collect(),
        }
    }
    fn gw(d: &Desired, p: &str) -> Vec<NextHop> {
        match d.routes.get(&net(p)) {
            Some(RouteTarget::Gateways(h)) => h.clone(),
            other => panic!("{p}: {other:?}"),
        }
    }
    fn codes(d: &Desired) -> Vec<WarningCode> {
        d.warnings.iter().map(|w| w.code).collect()
    }

    #[test]
    fn pod_routes_neighbours_and_sysctls() {
        let mut m = base();
        m.endpoints.push(LocalEndpoint {
            iface: "cali0123456789a".into(),
            ips: vec![net("10.65.0.5/32"), net("fd00::5/128")],
            mac: Some("02:00:00:00:00:05".into()),
        });
        m.endpoints.push(LocalEndpoint {
            iface: "cali0123456789b".into(),
            ips: vec![net("10.65.0.6/24")],
            mac: None,
        });
        let d = desired(&m, ROUTE_PROTOCOL);
        assert_eq!(d.protocol, 80);
        assert_eq!(
            d.routes[&net("10.65.0.5/32")],
            RouteTarget::Device("cali0123456789a".into())
        );
        assert_eq!(
            d.routes[&net("fd00::5/128")],
            RouteTarget::Device("cali0123456789a".into())
        );
        // a non-host prefix in the record still yields the /32
        assert_eq!(
            d.routes[&net("10.65.0.6/32")],
            RouteTarget::Device("cali0123456789b".into())
        );
        let mac = Mac::parse("02:00:00:00:00:05").unwrap();
        assert_eq!(
            d.neighbours.iter().cloned().collect::<Vec<_>>(),
            vec![
                Neighbour {
                    iface: "cali0123456789a".into(),
                    ip: ip("10.65.0.5"),
                    mac
                },
                Neighbour {
                    iface: "cali0123456789a".into(),
                    ip: ip("fd00::5"),
                    mac
                },
            ]
        );
        let s = &d.sysctls;
        for (k, v) in [
            ("net/ipv4/conf/cali0123456789a/proxy_arp", "1"),
            ("net/ipv4/conf/cali0123456789a/forwarding", "1"),
            ("net/ipv4/conf/cali0123456789a/route_localnet", "1"),
            ("net/ipv4/conf/cali0123456789a/rp_filter", "1"),
            ("net/ipv4/neigh/cali0123456789a/proxy_delay", "0"),
            ("net/ipv6/conf/cali0123456789a/accept_ra", "0"),
            ("net/ipv6/conf/cali0123456789a/proxy_ndp", "1"),
            ("net/ipv6/conf/cali0123456789a/forwarding", "1"),
            ("net/ipv4/conf/cali0123456789b/rp_filter", "1"),
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv6/conf/all/forwarding", "1"),
        ] {
            assert_eq!(s.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(d.ipip.is_none() && d.vxlan.is_none());
        assert_eq!(d.pod_mtu(1500), 1500);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn ipv6_forwarding_only_with_ipv6_endpoints_and_bad_input_is_reported() {
        let mut m = base();
        m.endpoints.push(LocalEndpoint {
            iface: "cali1".into(),
            ips: vec![net("10.65.0.5/32")],
            mac: Some("zz".into()),
        });
        m.endpoints.push(LocalEndpoint {
            iface: "../etc".into(),
            ips: vec![net("10.65.0.7/32")],
            mac: None,
        });
        let d = desired(&m, 80);
        assert!(!d.sysctls.contains_key("net/ipv6/conf/all/forwarding"));
        assert!(d.neighbours.is_empty());
        assert!(!d.routes.contains_key(&net("10.65.0.7/32")));
        assert_eq!(
            codes(&d),
            vec![WarningCode::InvalidInput, WarningCode::InvalidInput]
        );
    }

    #[test]
    fn blackholes_for_own_blocks_and_no_learned_route_inside_them() {
        let mut m = base();
        m.own_blocks = vec![net("10.65.0.0/26"), net("fd00:65::/122")];
        m.learned
            .insert(net("10.65.0.0/26"), vec![ip("192.168.1.11")]);
        m.learned
            .insert(net("10.65.0.32/27"), vec![ip("192.168.1.11")]);
        m.learned
            .insert(net("10.65.0.9/32"), vec![ip("192.168.1.11")]);
        m.learned
            .insert(net("10.65.0.0/16"), vec![ip("192.168.1.11")]);
        let d = desired(&m, 80);
        assert_eq!(d.routes[&net("10.65.0.0/26")], RouteTarget::Blackhole);
        assert_eq!(d.routes[&net("fd00:65::/122")], RouteTarget::Blackhole);
        assert!(!d.routes.contains_key(&net("10.65.0.32/27")));
        assert!(!d.routes.contains_key(&net("10.65.0.9/32")));
        // an aggregate containing the own block is fine
        assert_eq!(
            gw(&d, "10.65.0.0/16"),
            vec![NextHop::via(ip("192.168.1.11"))]
        );
        // unnormalised input is normalised
        m.own_blocks = vec![net("10.65.0.5/26")];
        let d = desired(&m, 80);
        assert_eq!(d.routes[&net("10.65.0.0/26")], RouteTarget::Blackhole);
    }

    #[test]
    fn learned_ecmp_native_and_family_mismatch() {
        let mut m = base();
        m.learned.insert(
            net("10.70.0.0/24"),
            vec![ip("192.168.1.12"), ip("192.168.1.11"), ip("192.168.1.11")],
        );
        m.learned
            .insert(net("fd00:70::/64"), vec![ip("fd00::1"), ip("192.168.1.1")]);
        m.learned.insert(net("10.71.0.0/24"), vec![]);
        let d = desired(&m, 80);
        assert_eq!(
            gw(&d, "10.70.0.0/24"),
            vec![
                NextHop::via(ip("192.168.1.11")),
                NextHop::via(ip("192.168.1.12"))
            ]
        );
        assert_eq!(gw(&d, "fd00:70::/64"), vec![NextHop::via(ip("fd00::1"))]);
        assert!(!d.routes.contains_key(&net("10.71.0.0/24")));
        assert_eq!(codes(&d), vec![WarningCode::InvalidInput]);
        assert!(d.ipip.is_none());
    }

    #[test]
    fn ipip_always_routes_through_tunl0_onlink() {
        let mut m = base();
        m.pools = vec![pool("10.65.0.0/16", EncapMode::Always, EncapMode::Never)];
        m.ipip_tunnel_addr = Some("10.65.0.1".parse().unwrap());
        m.learned
            .insert(net("10.65.1.0/26"), vec![ip("192.168.1.11")]);
        m.learned
            .insert(net("10.80.0.0/24"), vec![ip("192.168.1.11")]); // outside pools
        let d = desired(&m, 80);
        assert_eq!(
            gw(&d, "10.65.1.0/26"),
            vec![NextHop::onlink(ip("192.168.1.11"), "tunl0")]
        );
        assert_eq!(
            gw(&d, "10.80.0.0/24"),
            vec![NextHop::via(ip("192.168.1.11"))]
        );
        assert_eq!(
            d.ipip,
            Some(IpipTunnel {
                address: Some("10.65.0.1".parse().unwrap())
            })
        );
        assert_eq!(d.sysctls["net/ipv4/conf/tunl0/rp_filter"], "2");
        assert_eq!(d.encap_overhead(), 20);
        assert_eq!(d.pod_mtu(1500), 1480);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn ipip_cross_subnet_picks_native_or_tunnel_per_next_hop() {
        let mut m = base();
        m.pools = vec![pool(
            "10.65.0.0/16",
            EncapMode::CrossSubnet,
            EncapMode::Never,
        )];
        m.ipip_tunnel_addr = Some("10.65.0.1".parse().unwrap());
        m.learned
            .insert(net("10.65.1.0/26"), vec![ip("192.168.1.11")]); // same /24
        m.learned
            .insert(net("10.65.2.0/26"), vec![ip("192.168.2.11")]); // other subnet
        m.learned.insert(
            net("10.65.3.0/26"),
            vec![ip("192.168.1.11"), ip("192.168.2.11")],
        );
        let d = desired(&m, 80);
        assert_eq!(
            gw(&d, "10.65.1.0/26"),
            vec![NextHop::via(ip("192.168.1.11"))]
        );
        assert_eq!(
            gw(&d, "10.65.2.0/26"),
            vec![NextHop::onlink(ip("192.168.2.11"), "tunl0")]
        );
        assert_eq!(
            gw(&d, "10.65.3.0/26"),
            vec![
                NextHop::via(ip("192.168.1.11")),
                NextHop::onlink(ip("192.168.2.11"), "tunl0")
            ]
        );
        assert!(d.ipip.is_some());
        assert!(d.warnings.is_empty());
        // a /32 node address: everything tunnels, with a warning
        m.node_ipv4 = Some("192.168.1.10/32".parse().unwrap());
        let d = desired(&m, 80);
        assert_eq!(
            gw(&d, "10.65.1.0/26"),
            vec![NextHop::onlink(ip("192.168.1.11"), "tunl0")]
        );
        assert_eq!(codes(&d), vec![WarningCode::NodePrefixHost]);
    }

    #[test]
    fn ipip_remote_blocks_without_bgp_and_missing_tunnel_address() {
        let mut m = base();
        m.pools = vec![
            pool("10.65.0.0/16", EncapMode::Always, EncapMode::Never),
            pool("10.90.0.0/16", EncapMode::Never, EncapMode::Never),
        ];
        m.remote_nodes.push(remote(
            "node-b",
            "192.168.2.11/24",
            &["10.65.4.0/26", "10.90.4.0/26"],
        ));
        let d = desired(&m, 80);
        assert_eq!(
            gw(&d, "10.65.4.0/26"),
            vec![NextHop::onlink(ip("192.168.2.11"), "tunl0")]
        );
        assert!(
            !d.routes.contains_key(&net("10.90.4.0/26")),
            "Never pools are left to BGP"
        );
        assert_eq!(d.sysctls["net/ipv4/conf/tunl0/rp_filter"], "0");
        assert_eq!(codes(&d), vec![WarningCode::MissingTunnelInfo]);
    }

    #[test]
    fn disabled_pools_keep_their_encapsulation_but_do_not_force_the_tunnel() {
        let mut m = base();
        let mut p = pool("10.65.0.0/16", EncapMode::Always, EncapMode::Never);
        p.disabled = true;
        m.pools = vec![p];
        let d = desired(&m, 80);
        assert!(d.ipip.is_none());
        m.learned
            .insert(net("10.65.1.0/26"), vec![ip("192.168.1.11")]);
        let d = desired(&m, 80);
        assert!(d.ipip.is_some());
        assert_eq!(
            gw(&d, "10.65.1.0/26"),
            vec![NextHop::onlink(ip("192.168.1.11"), "tunl0")]
        );
    }

    #[test]
    fn vxlan_routes_neighbours_fdb_and_device() {
        let mut m = base();
        m.pools = vec![pool("10.65.0.0/16", EncapMode::Never, EncapMode::Always)];
        m.vxlan_tunnel_addr = Some("10.65.0.0".parse().unwrap());
        let mut b = remote("node-b", "192.168.2.11/24", &["10.65.4.0/26"]);
        b.vxlan_tunnel_addr = Some("10.65.4.0".parse().unwrap());
        let mut c = remote("node-c", "192.168.1.12/24", &[]);
        c.vxlan_tunnel_addr = Some("10.65.5.0".parse().unwrap());
        c.vxlan_mac = Some("0a:00:00:00:00:0c".into());
        m.remote_nodes = vec![b, c];
        m.learned
            .insert(net("10.65.5.0/26"), vec![ip("192.168.1.12")]);
        m.learned
            .insert(net("10.65.6.0/26"), vec![ip("192.168.1.99")]); // unknown node
        let d = desired(&m, 80);
        assert_eq!(
            gw(&d, "10.65.4.0/26"),
            vec![NextHop::onlink(ip("10.65.4.0"), VXLAN_IFACE)]
        );
        assert_eq!(
            gw(&d, "10.65.5.0/26"),
            vec![NextHop::onlink(ip("10.65.5.0"), VXLAN_IFACE)]
        );
        assert_eq!(
            gw(&d, "10.65.6.0/26"),
            vec![NextHop::via(ip("192.168.1.99"))]
        );
        let mac_b = vxlan_mac("node-b");
        let mac_c = Mac::parse("0a:00:00:00:00:0c").unwrap();
        assert!(d.neighbours.contains(&Neighbour {
            iface: VXLAN_IFACE.into(),
            ip: ip("10.65.4.0"),
            mac: mac_b
        }));
        assert!(d.neighbours.contains(&Neighbour {
            iface: VXLAN_IFACE.into(),
            ip: ip("10.65.5.0"),
            mac: mac_c
        }));
        assert!(d.fdb.contains(&FdbEntry {
            iface: VXLAN_IFACE.into(),
            mac: mac_b,
            dst: "192.168.2.11".parse().unwrap()
        }));
        assert!(d.fdb.contains(&FdbEntry {
            iface: VXLAN_IFACE.into(),
            mac: mac_c,
            dst: "192.168.1.12".parse().unwrap()
        }));
        assert_eq!(
            d.vxlan,
            Some(VxlanTunnel {
                vni: 4096,
                port: 4789,
                local: "192.168.1.10".parse().unwrap(),
                mac: vxlan_mac("node-a"),
                address: Some("10.65.0.0".parse().unwrap())
            })
        );
        assert!(d.ipip.is_none());
        assert_eq!(d.pod_mtu(1500), 1450);
        assert_eq!(codes(&d), vec![WarningCode::MissingTunnelInfo]);
    }

    #[test]
    fn vxlan_cross_subnet_and_missing_node_address() {
        let mut m = base();
        m.pools = vec![pool(
            "10.65.0.0/16",
            EncapMode::Never,
            EncapMode::CrossSubnet,
        )];
        m.vxlan_tunnel_addr = Some("10.65.0.0".parse().unwrap());
        let mut b = remote("node-b", "192.168.1.11/24", &["10.65.4.0/26"]);
        b.vxlan_tunnel_addr = Some("10.65.4.0".parse().unwrap());
        let mut c = remote("node-c", "192.168.3.11/24", &["10.65.5.0/26"]);
        c.vxlan_tunnel_addr = Some("10.65.5.0".parse().unwrap());
        m.remote_nodes = vec![b, c];
        let d = desired(&m, 80);
        assert_eq!(
            gw(&d, "10.65.4.0/26"),
            vec![NextHop::via(ip("192.168.1.11"))]
        );
        assert_eq!(
            gw(&d, "10.65.5.0/26"),
            vec![NextHop::onlink(ip("10.65.5.0"), VXLAN_IFACE)]
        );
        assert_eq!(d.fdb.len(), 1);
        // without a node address VXLAN cannot work: device and its routes are dropped
        m.node_ipv4 = None;
        let d = desired(&m, 80);
        assert!(d.vxlan.is_none());
        assert!(d.fdb.is_empty() && d.neighbours.is_empty());
        assert!(d
            .routes
            .values()
            .all(|t| !t.ifaces().contains(&VXLAN_IFACE)));
        assert!(codes(&d).contains(&WarningCode::MissingTunnelInfo));
    }

    #[test]
    fn endpoint_route_wins_over_learned_host_route_and_learned_wins_over_block_route() {
        let mut m = base();
        m.pools = vec![pool("10.65.0.0/16", EncapMode::Always, EncapMode::Never)];
        m.ipip_tunnel_addr = Some("10.65.0.1".parse().unwrap());
        m.remote_nodes
            .push(remote("node-b", "192.168.2.11/24", &["10.65.4.0/26"]));
        m.learned.insert(
            net("10.65.4.0/26"),
            vec![ip("192.168.2.11"), ip("192.168.2.12")],
        );
        m.learned
            .insert(net("10.66.0.9/32"), vec![ip("192.168.1.11")]);
        m.endpoints.push(LocalEndpoint {
            iface: "cali1".into(),
            ips: vec![net("10.66.0.9/32")],
            mac: None,
        });
        let d = desired(&m, 80);
        assert_eq!(
            d.routes[&net("10.66.0.9/32")],
            RouteTarget::Device("cali1".into())
        );
        assert_eq!(gw(&d, "10.65.4.0/26").len(), 2);
    }

    #[test]
    fn vxlan_mac_is_deterministic_locally_administered_unicast() {
        let a = vxlan_mac("node-a");
        assert_eq!(a, vxlan_mac("node-a"));
        assert_ne!(a, vxlan_mac("node-b"));
        assert_eq!(a.0[0] & 0x03, 0x02);
        assert_eq!(Mac::parse(&a.to_string()), Some(a));
        assert_eq!(Mac::parse("02:00:00:00:00"), None);
        assert_eq!(Mac::parse("02:00:00:00:00:00:00"), None);
        assert_eq!(Mac::parse("EE-EE-EE-EE-EE-EE"), Some(Mac([0xee; 6])));
    }

    #[test]
    fn host_mtu_skips_virtual_links_and_down_links() {
        let l = |name: &str, mtu, up, kind: Option<&str>| LinkSummary {
            name: name.into(),
            mtu,
            up,
            kind: kind.map(str::to_string),
        };
        let links = vec![
            l("lo", 65536, true, None),
            l("eth0", 9000, true, None),
            l("eth1", 1500, false, None),
            l("bond0", 8950, true, Some("bond")),
            l("cali0123456789a", 1400, true, Some("veth")),
            l("tunl0", 1480, true, Some("ipip")),
            l("vxlan.brindle", 1450, true, Some("vxlan")),
            l("wg0", 1420, true, Some("wireguard")),
        ];
        assert_eq!(host_mtu(&links), 8950);
        assert_eq!(host_mtu(&links[..1]), DEFAULT_HOST_MTU);
        // MTU math with the encapsulations
        let mut m = base();
        m.pools = vec![pool("10.65.0.0/16", EncapMode::Always, EncapMode::Never)];
        assert_eq!(desired(&m, 80).pod_mtu(8950), 8930);
        m.pools = vec![pool("10.65.0.0/16", EncapMode::Never, EncapMode::Always)];
        assert_eq!(desired(&m, 80).pod_mtu(8950), 8900);
        m.pools = vec![
            pool("10.65.0.0/16", EncapMode::Always, EncapMode::Never),
            pool("10.66.0.0/16", EncapMode::Never, EncapMode::Always),
        ];
        let d = desired(&m, 80);
        assert!(d.ipip.is_some() && d.vxlan.is_some());
        assert_eq!(d.pod_mtu(1500), 1450);
        m.pools = vec![pool("fd00::/48", EncapMode::Never, EncapMode::Never)];
        assert_eq!(desired(&m, 80).pod_mtu(1500), 1500);
    }

    fn observed(all: u8, default: u8, others: &[(&str, u8)]) -> RpFilterObserved {
        RpFilterObserved {
            all,
            default,
            others: others.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        }
    }

    fn ipip_model(addr: bool, endpoints: bool) -> Desired {
        let mut m = base();
        m.pools = vec![pool("10.65.0.0/16", EncapMode::Always, EncapMode::Never)];
        m.ipip_tunnel_addr = addr.then(|| "10.65.0.1".parse().unwrap());
        if endpoints {
            m.endpoints.push(LocalEndpoint {
                iface: "cali1".into(),
                ips: vec![net("10.65.0.5/32")],
                mac: None,
            });
        }
        desired(&m, 80)
    }

    #[test]
    fn rp_filter_nothing_to_do_when_all_is_zero_or_harmless() {
        let d = ipip_model(true, true);
        assert_eq!(
            rp_filter_plan(
                &d,
                &observed(0, 1, &[("eth0", 1)]),
                RpFilterPolicy::Normalize
            ),
            RpFilterPlan::default()
        );
        // tunl0 with an address is loose whatever `all` says (max(all, 2) = 2)
        let d = ipip_model(true, false);
        assert_eq!(
            rp_filter_plan(&d, &observed(1, 1, &[]), RpFilterPolicy::Normalize),
            RpFilterPlan::default()
        );
        assert_eq!(
            rp_filter_plan(&d, &observed(2, 2, &[]), RpFilterPolicy::Normalize),
            RpFilterPlan::default()
        );
        // all=1 is fine without IPIP: cali stays strict
        let d = desired(
            &Model {
                endpoints: vec![LocalEndpoint {
                    iface: "cali1".into(),
                    ips: vec![],
                    mac: None,
                }],
                ..base()
            },
            80,
        );
        assert_eq!(
            rp_filter_plan(&d, &observed(1, 1, &[]), RpFilterPolicy::Normalize),
            RpFilterPlan::default()
        );
    }

    #[test]
    fn rp_filter_all_strict_with_addressless_tunl0_is_normalized_keeping_other_interfaces() {
        let d = ipip_model(false, false);
        let obs = observed(
            1,
            0,
            &[
                ("eth0", 0),
                ("eth1", 2),
                ("lo", 0),
                ("cali1", 0),
                ("tunl0", 0),
                ("vxlan.brindle", 0),
            ],
        );
        let plan = rp_filter_plan(&d, &obs, RpFilterPolicy::Normalize);
        let w: Vec<(&str, &str)> = plan
            .writes
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            w,
            vec![
                ("net/ipv4/conf/eth0/rp_filter", "1"),
                ("net/ipv4/conf/lo/rp_filter", "1"),
                ("net/ipv4/conf/default/rp_filter", "1"),
                ("net/ipv4/conf/all/rp_filter", "0"),
            ]
        );
        assert_eq!(plan.warnings.len(), 1);
        assert_eq!(plan.warnings[0].code, WarningCode::RpFilterNormalized);
        // effective values max(all, own) of the other interfaces are preserved
        let eff_before = |own: u8| own.max(1);
        let eff_after = |name: &str, own: u8| {
            plan.writes
                .iter()
                .find(|(p, _)| p == &format!("net/ipv4/conf/{name}/rp_filter"))
                .map(|(_, v)| v.parse::<u8>().unwrap())
                .unwrap_or(own)
        };
        for (name, own) in [("eth0", 0), ("eth1", 2), ("lo", 0)] {
            assert_eq!(eff_after(name, own), eff_before(own), "{name}");
        }
    }

    #[test]
    fn rp_filter_all_loose_with_endpoints_is_normalized_so_cali_is_strict() {
        let d = ipip_model(true, true);
        let plan = rp_filter_plan(
            &d,
            &observed(2, 2, &[("eth0", 1)]),
            RpFilterPolicy::Normalize,
        );
        let w: Vec<(&str, &str)> = plan
            .writes
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            w,
            vec![
                ("net/ipv4/conf/eth0/rp_filter", "2"),
                ("net/ipv4/conf/all/rp_filter", "0")
            ]
        );
    }

    #[test]
    fn rp_filter_report_only_warns_about_each_drop() {
        let plan = rp_filter_plan(
            &ipip_model(false, true),
            &observed(1, 1, &[]),
            RpFilterPolicy::ReportOnly,
        );
        assert!(plan.writes.is_empty());
        assert_eq!(plan.warnings.len(), 1);
        assert_eq!(plan.warnings[0].code, WarningCode::RpFilter);
        assert!(plan.warnings[0].message.contains("tunl0"));
        // loose all: cali loses strictness, and tunl0 without address drops everything
        let plan = rp_filter_plan(
            &ipip_model(false, true),
            &observed(2, 2, &[]),
            RpFilterPolicy::ReportOnly,
        );
        assert_eq!(plan.warnings.len(), 2);
        assert!(plan.writes.is_empty());
    }
}
