//! [`NodePlan`]: what one node's BGP speaker does, computed from the cluster's resources
//! the way Calico's confd renders BIRD's configuration, so that calico-node and
//! brindle-node agree on every session during a rolling migration.
//!
//! The peerings follow confd's two steps (our own implementation of them):
//!
//! 1. `updatePeersV1` (`confd/pkg/backends/calico/client.go`) turns the BGPPeers into
//!    keyed peerings: first the *global* ones (no `node`, no `nodeSelector`: note that
//!    `nodeSelector: all()` is **not** global there), keyed by (IP, port); then the
//!    node-specific ones, keyed by (node, IP, port) and dropped when a global peering has
//!    the same (IP, port); then the automatic *reverse* peerings, which never replace a
//!    peering already emitted. The first peering emitted for a key wins (confd iterates
//!    a Go map; here the BGPPeers' order).
//! 2. `processPeers` (`confd/pkg/backends/calico/bgp_processor.go`) renders the mesh and
//!    each peering of the node (`buildPeerFromData`): names, passive side, route
//!    reflector clients, next hop.

use brindle_bgp::status::PeerType;
use brindle_model::values::net_contains;
use brindle_model::{
    BgpPeerSpec, BindMode, ClusterConfig, Community, ConfigError, IpPoolSpec, NextHopMode,
    NodeSpec, ReversePeering, SourceAddress, DEFAULT_AS_NUMBER, DEFAULT_LISTEN_PORT,
};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::Serialize;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Everything one node's BGP speaker needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePlan {
    pub node_name: String,
    /// The router-ID override (`CALICO_ROUTER_ID`) if given, else `spec.bgp.routerID`
    /// (Brindle extension), else the node's IPv4 address.
    pub router_id: Ipv4Addr,
    /// Node `spec.bgp.asNumber`, else the default BGPConfiguration's, else 64512.
    pub local_as: u32,
    /// `listenPort` of `node.<name>`, else of `default`, else 179.
    pub listen_port: u16,
    /// `bindMode: NodeIP` (default BGPConfiguration): listen only on these addresses
    /// (the node's IPv4 and IPv6 addresses). Empty: listen on every address.
    pub listen_addresses: Vec<IpAddr>,
    pub ipv4_address: Option<Ipv4Network>,
    pub ipv6_address: Option<Ipv6Network>,
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// Sorted by (address, port), one per (address, port): a global BGPPeer's peering
    /// over a node-specific one over a reverse one over the mesh; among equals the first
    /// BGPPeer (in resource order) wins.
    pub peers: Vec<PeerPlan>,
    /// Prefixes this node originates, sorted, with their communities.
    pub advertise: Vec<Advertisement>,
    /// Every IP pool in the cluster.
    pub pools: Vec<IpPoolSpec>,
    /// This node's (confirmed, not deleted) pod blocks, sorted.
    pub blocks: Vec<IpNetwork>,
    /// The service prefixes among [`Self::advertise`] with why each is advertised, and
    /// the service ranges learned routes are kept out of the kernel for
    /// ([`crate::calc::services`]).
    pub services: crate::calc::services::ServiceRoutes,
}

/// One BGP session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerPlan {
    /// BIRD protocol name as Calico writes it: `Mesh_10_0_0_2`, `Node_192_168_1_1`,
    /// `Global_2001_db8__1`, and `<that>_port_<port>` when the peering has a port (from
    /// `peerIP: ip:port` or the peer node's configured `listenPort`).
    pub name: String,
    pub peer_type: PeerType,
    pub address: IpAddr,
    /// The port to dial (179 when the peering has none).
    pub port: u16,
    pub remote_as: u32,
    /// `localASNumber` of a `peerIP` BGPPeer, else the node's AS.
    pub local_as: u32,
    pub password: Option<String>,
    pub ttl_security: Option<u8>,
    /// `next_hop_mode == Keep` (kept for callers that only know "keep or not").
    pub keep_original_next_hop: bool,
    /// `nextHopMode`, else `Keep` for the deprecated `keepOriginalNextHop: true` towards
    /// an eBGP peer (Calico ignores it towards iBGP peers), else `Auto`.
    pub next_hop_mode: NextHopMode,
    /// `maxRestartTime` of the BGPPeer; `nodeMeshMaxRestartTime` for the mesh.
    pub max_restart_time: Option<Duration>,
    /// The node's own address of the peer's family, when `sourceAddress: UseNodeIP`
    /// (always for the mesh).
    pub source_address: Option<IpAddr>,
    /// Only accept incoming connections: mesh peers, and global `peerIP` peers that are
    /// a cluster node, whose IP is greater *as a string* than the node's.
    pub passive: bool,
    /// This node is a route reflector and the peer one of its clients.
    pub route_reflector_client: bool,
    /// `keepaliveTime` of the BGPPeer.
    pub keepalive_time: Option<Duration>,
    /// `numAllowedLocalASNumbers` of a `peerIP` BGPPeer.
    pub num_allowed_local_as_numbers: Option<u32>,
    /// The BGPPeer the session comes from (`None`: the node-to-node mesh).
    pub bgp_peer: Option<String>,
    /// An automatic reverse peering of [`Self::bgp_peer`] (`reversePeering: Auto`).
    pub reverse: bool,
}

/// A prefix to originate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advertisement {
    pub prefix: IpNetwork,
    pub communities: Vec<Community>,
}

/// The router ID given outside the resources: calico-node's `CALICO_ROUTER_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RouterIdOverride {
    /// `hash`: derived from the node name ([`hashed_router_id`]).
    Hash,
    /// An IPv4 address.
    Address(Ipv4Addr),
}

impl RouterIdOverride {
    /// The environment variable calico-node reads.
    pub const ENV: &'static str = "CALICO_ROUTER_ID";

    /// Reads a `CALICO_ROUTER_ID` value: empty is no override, `hash` (exactly, as in
    /// confd) the hashed one, anything else must be an IPv4 address.
    pub fn parse(value: &str) -> Result<Option<RouterIdOverride>, String> {
        match value {
            "" => Ok(None),
            "hash" => Ok(Some(RouterIdOverride::Hash)),
            other => other
                .parse::<Ipv4Addr>()
                .map(|a| Some(RouterIdOverride::Address(a)))
                .map_err(|_| {
                    format!(
                        "{}={other:?} is neither \"hash\" nor an IPv4 address",
                        Self::ENV
                    )
                }),
        }
    }

    fn resolve(self, node_name: &str) -> Ipv4Addr {
        match self {
            RouterIdOverride::Hash => hashed_router_id(node_name),
            RouterIdOverride::Address(a) => a,
        }
    }
}

/// `CALICO_ROUTER_ID=hash`: the first four bytes of the SHA-256 of the node name as an
/// IPv4 address, with 32 taken off a first byte above 223 to stay out of the multicast
/// and reserved ranges (confd's `HashToIPv4`, `confd/pkg/resource/template/util.go`).
pub fn hashed_router_id(node_name: &str) -> Ipv4Addr {
    use sha2::Digest;
    let h = sha2::Sha256::digest(node_name.as_bytes());
    let first = if h[0] > 223 { h[0] - 32 } else { h[0] };
    Ipv4Addr::new(first, h[1], h[2], h[3])
}

/// An address as Go's `net.IP.String()` writes it (confd compares and names peers by
/// these strings): like Rust's, except an IPv4-mapped IPv6 address in dotted form.
fn go_ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// Calico's protocol name suffix: `10.0.0.2` → `10_0_0_2` (dots replaced in IPv4),
/// `2001:db8::1` → `2001_db8__1` (colons replaced in IPv6).
pub(crate) fn protocol_suffix(ip: IpAddr) -> String {
    let text = go_ip_string(ip);
    match ip {
        IpAddr::V4(_) => text.replace('.', "_"),
        IpAddr::V6(_) => text.replace(':', "_"),
    }
}

/// Calico's passive rule: wait for a peer whose address is greater *as a string*
/// (`"10.0.0.9" > "10.0.0.10"`).
fn waits_for(peer: IpAddr, own: IpAddr) -> bool {
    go_ip_string(peer) > go_ip_string(own)
}

fn node_ips(n: &NodeSpec) -> [Option<IpAddr>; 2] {
    [
        n.ipv4_address.map(|a| IpAddr::V4(a.ip())),
        n.ipv6_address.map(|a| IpAddr::V6(a.ip())),
    ]
}

fn same_family_ip(n: &NodeSpec, peer: IpAddr) -> Option<IpAddr> {
    match peer {
        IpAddr::V4(_) => n.ipv4_address.map(|a| IpAddr::V4(a.ip())),
        IpAddr::V6(_) => n.ipv6_address.map(|a| IpAddr::V6(a.ip())),
    }
}

fn plan_error(cluster: &ClusterConfig, node: &str, message: String) -> ConfigError {
    ConfigError::invalid(
        &cluster.file,
        Some(format!("Node/{node}")),
        None,
        message,
        None,
    )
}

/// What confd knows of one node (its `/calico/bgp/v1/host/<name>/...` keys).
struct Host<'a> {
    spec: &'a NodeSpec,
    /// `as_num`: the Node's AS, else the global one.
    as_number: u32,
    /// `listenPort` of `node.<name>` (confd's `nodeListenPorts`).
    own_listen_port: Option<u16>,
}

/// One peering as `updatePeersV1` emits it (confd's `backends.BGPPeer`).
struct Peering<'a> {
    from: &'a BgpPeerSpec,
    ip: IpAddr,
    /// `None`: the peering has no port (BIRD's 179, no `_port_` in the name).
    port: Option<u16>,
    as_number: u32,
    /// `localASNumber` and `numAllowedLocalASNumbers`: set by `peerIP` peerings only
    /// (confd's `nodeAsBGPPeers` copies neither).
    local_as: Option<u32>,
    num_allowed_local_as: Option<u32>,
    /// The peer IP is a cluster node's (`peerIP` peerings only: `CalicoNode`).
    calico_node: bool,
    /// The peer node's route reflector cluster ID (node-derived peerings only).
    rr_cluster_id: Option<Ipv4Addr>,
    reverse: bool,
}

/// The peerings of one node, keyed as `updatePeersV1` keys them: the first one emitted
/// for a key wins; a node-specific one is dropped when a global one has its (IP, port).
#[derive(Default)]
struct Emitted<'a> {
    global: Vec<Peering<'a>>,
    node: Vec<Peering<'a>>,
    global_keys: HashSet<(IpAddr, Option<u16>)>,
    node_keys: HashSet<(IpAddr, Option<u16>)>,
}

impl<'a> Emitted<'a> {
    fn emit_global(&mut self, p: Peering<'a>) {
        if self.global_keys.insert((p.ip, p.port)) {
            self.global.push(p);
        }
    }

    fn emit_node(&mut self, p: Peering<'a>) {
        let key = (p.ip, p.port);
        if !self.global_keys.contains(&key) && self.node_keys.insert(key) {
            self.node.push(p);
        }
    }
}

/// The cluster as confd sees it.
struct View<'a> {
    hosts: Vec<Host<'a>>,
    global_as: u32,
    /// `listenPort` of `default` (confd's `globalListenPort`).
    global_listen_port: Option<u16>,
}

impl<'a> View<'a> {
    fn new(cluster: &'a ClusterConfig) -> Self {
        let global = cluster.bgp_configuration("default");
        let global_as = global
            .and_then(|c| c.as_number)
            .unwrap_or(DEFAULT_AS_NUMBER);
        let hosts = cluster
            .nodes
            .iter()
            .map(|spec| Host {
                spec,
                as_number: spec.as_number.unwrap_or(global_as),
                own_listen_port: cluster
                    .bgp_configuration(&format!("node.{}", spec.name))
                    .and_then(|c| c.listen_port),
            })
            .collect();
        View {
            hosts,
            global_as,
            global_listen_port: global.and_then(|c| c.listen_port),
        }
    }

    fn host(&self, name: &str) -> Option<&Host<'a>> {
        self.hosts.iter().find(|h| h.spec.name == name)
    }

    /// The port peers dial `host` on: its own `listenPort`, else the global one.
    fn listen_port(&self, host: &Host<'a>) -> Option<u16> {
        host.own_listen_port.or(self.global_listen_port)
    }

    fn hosts_matching<'s>(
        &'s self,
        sel: &'s brindle_model::Selector,
    ) -> impl Iterator<Item = &'s Host<'a>> + 's {
        self.hosts
            .iter()
            .filter(move |h| sel.matches(&h.spec.labels))
    }

    /// confd's `nodesWithIPPortAndAS`: the nodes with address `ip` and AS `asn` (unset:
    /// the global AS) and, when `port` is given, listening on it. The port test is
    /// Calico's to the letter, quirks included, since both ends must agree on who gets
    /// a reverse peering: a node whose own `listenPort` differs is out; otherwise a
    /// global `listenPort` that differs puts it out too (even when the node's own one
    /// matches); with no `listenPort` anywhere, any port matches.
    fn hosts_with_ip_port_as(
        &self,
        ip: IpAddr,
        asn: Option<u32>,
        port: Option<u16>,
    ) -> Vec<&Host<'a>> {
        let asn = asn.unwrap_or(self.global_as);
        self.hosts
            .iter()
            .filter(|h| node_ips(h.spec).contains(&Some(ip)) && h.as_number == asn)
            .filter(|h| match port {
                None => true,
                Some(p) => match h.own_listen_port {
                    Some(own) if own != p => false,
                    _ => self.global_listen_port.is_none_or(|g| g == p),
                },
            })
            .collect()
    }

    /// confd's `nodeAsBGPPeers`: peerings to `host`'s addresses of the wanted families
    /// (IPv4, IPv6), on the port it listens on, with its AS and cluster ID.
    fn host_peerings(
        &self,
        host: &Host<'a>,
        families: [bool; 2],
        from: &'a BgpPeerSpec,
        reverse: bool,
    ) -> Vec<Peering<'a>> {
        node_ips(host.spec)
            .into_iter()
            .zip(families)
            .filter_map(|(ip, wanted)| ip.filter(|_| wanted))
            .map(|ip| Peering {
                from,
                ip,
                port: self.listen_port(host),
                as_number: host.as_number,
                local_as: None,
                num_allowed_local_as: None,
                calico_node: false,
                rr_cluster_id: host.spec.route_reflector_cluster_id,
                reverse,
            })
            .collect()
    }

    /// The forward peerings of a BGPPeer (`updatePeersV1`'s first two passes):
    /// `peerSelector` → every selected node's IPv4 and IPv6 address; else `peerIP`, on
    /// its port, else on the listen port of the node at that address with that AS.
    fn forward_peerings(&self, peer: &'a BgpPeerSpec) -> Vec<Peering<'a>> {
        if let Some(sel) = &peer.peer_selector {
            return self
                .hosts_matching(sel)
                .flat_map(|h| self.host_peerings(h, [true, true], peer, false))
                .collect();
        }
        let Some(ip) = peer.peer_ip else {
            return Vec::new();
        };
        let port = peer.peer_port.or_else(|| {
            self.hosts_with_ip_port_as(ip, peer.as_number, None)
                .first()
                .and_then(|h| self.listen_port(h))
        });
        vec![Peering {
            from: peer,
            ip,
            port,
            as_number: peer.as_number.unwrap_or(self.global_as),
            local_as: peer.local_as_number,
            num_allowed_local_as: peer.num_allowed_local_as_numbers,
            calico_node: self
                .hosts
                .iter()
                .any(|h| node_ips(h.spec).contains(&Some(ip))),
            rr_cluster_id: None,
            reverse: false,
        }]
    }

    /// The reverse peerings `node` gets from a BGPPeer (`updatePeersV1`'s last pass):
    /// when `node` is one the BGPPeer peers with (selected by `peerSelector`, or at
    /// `peerIP` with its AS and port), it peers back with every node the BGPPeer
    /// applies to (`node`, `nodeSelector`, else all): both families for `peerSelector`,
    /// the family of `peerIP` otherwise.
    fn reverse_peerings(&self, peer: &'a BgpPeerSpec, node: &NodeSpec) -> Vec<Peering<'a>> {
        if peer.reverse_peering == ReversePeering::Manual {
            return Vec::new();
        }
        let families = if let Some(sel) = &peer.peer_selector {
            if !sel.matches(&node.labels) {
                return Vec::new();
            }
            [true, true]
        } else if let Some(ip) = peer.peer_ip {
            let targets = self.hosts_with_ip_port_as(ip, peer.as_number, peer.peer_port);
            if !targets.iter().any(|h| h.spec.name == node.name) {
                return Vec::new();
            }
            [ip.is_ipv4(), ip.is_ipv6()]
        } else {
            return Vec::new();
        };
        let sources: Vec<&Host<'a>> = match (&peer.node, &peer.node_selector) {
            (Some(name), _) => self.host(name).into_iter().collect(),
            (None, Some(sel)) => self.hosts_matching(sel).collect(),
            (None, None) => self.hosts.iter().collect(),
        };
        sources
            .into_iter()
            .flat_map(|h| self.host_peerings(h, families, peer, true))
            .collect()
    }
}

/// Global in confd's sense: neither `node` nor `nodeSelector` (`nodeSelector: all()`
/// is node specific there).
fn calico_global(peer: &BgpPeerSpec) -> bool {
    peer.node.is_none() && peer.node_selector.is_none()
}

/// Computes the BGP plan of node `node_name` (no router-ID override).
pub fn node_plan(cluster: &ClusterConfig, node_name: &str) -> Result<NodePlan, ConfigError> {
    node_plan_with_router_id(cluster, node_name, None)
}

/// Computes the BGP plan of node `node_name`; `router_id` is calico-node's
/// `CALICO_ROUTER_ID` (see [`RouterIdOverride::parse`]), which IPv6-only nodes need
/// unless their Node sets `spec.bgp.routerID`.
pub fn node_plan_with_router_id(
    cluster: &ClusterConfig,
    node_name: &str,
    router_id: Option<RouterIdOverride>,
) -> Result<NodePlan, ConfigError> {
    let node = cluster.node(node_name).ok_or_else(|| {
        let known: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
        let known = if known.is_empty() {
            "the file defines no Node".to_string()
        } else {
            format!("nodes in the file: {}", known.join(", "))
        };
        plan_error(cluster,
            node_name,
            format!("no Node named {node_name:?} ({known}); the node name must match metadata.name of a Node resource"),
        )
    })?;
    let cfg = cluster.bgp_config_for(node_name);
    let view = View::new(cluster);
    let local_as = node.as_number.unwrap_or(view.global_as);
    let router_id = router_id
        .map(|r| r.resolve(&node.name))
        .or(node.router_id)
        .or(node.ipv4_address.map(|a| a.ip()))
        .ok_or_else(|| {
            plan_error(cluster,
                node_name,
                format!("no BGP router ID: set spec.bgp.ipv4Address, or on an IPv6-only node {}=hash (or an IPv4 address) or spec.bgp.routerID", RouterIdOverride::ENV),
            )
        })?;
    // bindMode is read from `default` only (confd's getBindMode).
    let listen_addresses = match cfg.bind_mode {
        BindMode::NodeIP => node_ips(node).into_iter().flatten().collect(),
        BindMode::None => Vec::new(),
    };

    // updatePeersV1, restricted to this node's peerings.
    let mut emitted = Emitted::default();
    let usable = |p: &&BgpPeerSpec| p.local_workload_selector.is_none();
    for peer in cluster.bgp_peers.iter().filter(usable) {
        if calico_global(peer) {
            for p in view.forward_peerings(peer) {
                emitted.emit_global(p);
            }
        }
    }
    for peer in cluster.bgp_peers.iter().filter(usable) {
        if !calico_global(peer) && peer.applies_to(&node.name, &node.labels) {
            for p in view.forward_peerings(peer) {
                emitted.emit_node(p);
            }
        }
    }
    for peer in cluster.bgp_peers.iter().filter(usable) {
        for p in view.reverse_peerings(peer, node) {
            emitted.emit_node(p);
        }
    }

    // processPeers: (class, sequence, plan); the lowest (class, sequence) per
    // (address, port) is kept.
    let mut candidates: Vec<(u8, usize, PeerPlan)> = Vec::new();
    let classes = [
        (PeerType::Global, &emitted.global),
        (PeerType::NodeSpecific, &emitted.node),
    ];
    for (class, (peer_type, list)) in classes.into_iter().enumerate() {
        for p in list.iter() {
            if let Some(plan) = render_peering(node, local_as, peer_type, p) {
                let seq = candidates.len();
                candidates.push((class as u8, seq, plan));
            }
        }
    }

    // Node-to-node mesh (processMeshPeers): not on route reflectors, not towards them.
    if cfg.node_to_node_mesh_enabled && node.route_reflector_cluster_id.is_none() {
        for other in &view.hosts {
            if other.spec.name == node.name || other.spec.route_reflector_cluster_id.is_some() {
                continue;
            }
            for (local, remote) in node_ips(node).into_iter().zip(node_ips(other.spec)) {
                let (Some(local), Some(remote)) = (local, remote) else {
                    continue;
                };
                if local == remote {
                    continue;
                }
                let port = view.listen_port(other);
                let seq = candidates.len();
                candidates.push((
                    2,
                    seq,
                    PeerPlan {
                        name: format!("Mesh_{}", protocol_suffix(remote)),
                        peer_type: PeerType::NodeMesh,
                        address: remote,
                        port: port.unwrap_or(DEFAULT_LISTEN_PORT),
                        remote_as: other.as_number,
                        local_as,
                        password: cfg.node_mesh_password.clone(),
                        ttl_security: None,
                        keep_original_next_hop: false,
                        next_hop_mode: NextHopMode::Auto,
                        max_restart_time: cfg.node_mesh_max_restart_time,
                        source_address: Some(local),
                        passive: waits_for(remote, local),
                        route_reflector_client: false,
                        keepalive_time: None,
                        num_allowed_local_as_numbers: None,
                        bgp_peer: None,
                        reverse: false,
                    },
                ));
            }
        }
    }

    candidates.sort_by_key(|c| (c.2.address, c.2.port, c.0, c.1));
    let mut peers: Vec<PeerPlan> = Vec::new();
    for (_, _, plan) in candidates {
        match peers.last() {
            Some(last) if last.address == plan.address && last.port == plan.port => {}
            _ => peers.push(plan),
        }
    }

    // Blocks and advertisements.
    let mut blocks: Vec<IpNetwork> = cluster
        .block_affinities
        .iter()
        .filter(|b| b.node == node.name && b.is_active())
        .map(|b| b.cidr)
        .collect();
    blocks.sort();
    blocks.dedup();
    let mut prefixes: Vec<IpNetwork> = blocks
        .iter()
        .filter(|b| {
            cluster
                .pool_for(b)
                .is_none_or(|p| !p.disabled && !p.disable_bgp_export)
        })
        .copied()
        .collect();
    // Addresses this node's pods borrowed from other nodes' blocks (IPAM with
    // `strictAffinity: false`): their /32 (/128) is advertised from here; the block's
    // owner advertises the block.
    prefixes.extend(borrowed_addresses(cluster, &node.name, &blocks));
    let services = crate::calc::services::service_routes(&crate::calc::services::Inputs {
        config: &cfg,
        node_name: &node.name,
        node_labels: &node.labels,
        services: &cluster.services,
        endpoint_slices: &cluster.endpoint_slices,
    });
    prefixes.extend(services.advertise.iter().map(|r| r.prefix));
    prefixes.sort();
    prefixes.dedup();
    let mut advertise = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        let best = cfg
            .prefix_advertisements
            .iter()
            .filter(|pa| net_contains(&pa.cidr, &prefix))
            .max_by_key(|pa| pa.cidr.prefix());
        let mut communities = Vec::new();
        for text in best.iter().flat_map(|pa| pa.communities.iter()) {
            let c = cfg.resolve_community(text).ok_or_else(|| {
                plan_error(
                    cluster,
                    node_name,
                    format!("community {text:?} used for {prefix} is not defined"),
                )
            })?;
            if !communities.contains(&c) {
                communities.push(c);
            }
        }
        advertise.push(Advertisement {
            prefix,
            communities,
        });
    }

    Ok(NodePlan {
        node_name: node.name.clone(),
        router_id,
        local_as,
        listen_port: cfg.listen_port,
        listen_addresses,
        ipv4_address: node.ipv4_address,
        ipv6_address: node.ipv6_address,
        route_reflector_cluster_id: node.route_reflector_cluster_id,
        peers,
        advertise,
        pools: cluster.ip_pools.clone(),
        blocks,
        services,
    })
}

/// The host prefixes of this node's workload pods whose address is in an exported pool
/// but not in one of the node's own blocks.
fn borrowed_addresses(cluster: &ClusterConfig, node: &str, blocks: &[IpNetwork]) -> Vec<IpNetwork> {
    let mut out = Vec::new();
    for pod in cluster
        .pods
        .iter()
        .filter(|p| p.node_name.as_deref() == Some(node) && p.is_workload())
    {
        for ip in &pod.ips {
            if blocks.iter().any(|b| b.contains(*ip)) {
                continue;
            }
            let exported = cluster
                .ip_pools
                .iter()
                .find(|p| p.cidr.contains(*ip))
                .is_some_and(|p| !p.disabled && !p.disable_bgp_export);
            if exported {
                out.push(
                    IpNetwork::new(*ip, if ip.is_ipv4() { 32 } else { 128 }).expect("host prefix"),
                );
            }
        }
    }
    out
}

/// confd's `buildPeerFromData`: one peering of `node` as a session, or `None` when it
/// is to the node itself or of a family the node has no address of (confd then
/// renders no BIRD configuration for that family).
fn render_peering(
    node: &NodeSpec,
    node_as: u32,
    peer_type: PeerType,
    p: &Peering<'_>,
) -> Option<PeerPlan> {
    let own = same_family_ip(node, p.ip)?;
    if own == p.ip {
        return None;
    }
    let prefix = match peer_type {
        PeerType::Global => "Global",
        _ => "Node",
    };
    let mut name = format!("{prefix}_{}", protocol_suffix(p.ip));
    if let Some(port) = p.port {
        name.push_str(&format!("_port_{port}"));
    }
    let peer = p.from;
    let local_as = p.local_as.unwrap_or(node_as);
    let ibgp = p.as_number == local_as;
    let next_hop_mode = match peer.next_hop_mode {
        Some(mode) => mode,
        // The deprecated keepOriginalNextHop only applies to eBGP peers.
        None if peer.keep_original_next_hop && !ibgp => NextHopMode::Keep,
        None => NextHopMode::Auto,
    };
    let route_reflector_client = ibgp
        && node
            .route_reflector_cluster_id
            .is_some_and(|own_id| p.rr_cluster_id != Some(own_id));
    Some(PeerPlan {
        name,
        peer_type,
        address: p.ip,
        port: p.port.unwrap_or(DEFAULT_LISTEN_PORT),
        remote_as: p.as_number,
        local_as,
        password: peer.password.clone(),
        ttl_security: peer.ttl_security,
        keep_original_next_hop: next_hop_mode == NextHopMode::Keep,
        next_hop_mode,
        max_restart_time: peer.max_restart_time,
        source_address: match peer.source_address {
            SourceAddress::UseNodeIP => Some(own),
            SourceAddress::None => None,
        },
        // Only global peerings towards a cluster node wait, like the mesh.
        passive: peer_type == PeerType::Global && p.calico_node && waits_for(p.ip, own),
        route_reflector_client,
        keepalive_time: peer.keepalive_time,
        num_allowed_local_as_numbers: p.num_allowed_local_as,
        bgp_peer: Some(peer.name.clone()),
        reverse: p.reverse,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
