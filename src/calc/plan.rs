//! [`NodePlan`]: what one node's BGP speaker does, computed from the cluster's resources
//! the way Calico's confd would render BIRD's configuration.

use brindle_bgp::status::PeerType;
use brindle_model::values::net_contains;
use brindle_model::{ClusterConfig, Community, ConfigError, IpPoolSpec, NodeSpec, SourceAddress};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Everything one node's BGP speaker needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePlan {
    pub node_name: String,
    /// `spec.bgp.routerID` if set, else the node's IPv4 address.
    pub router_id: Ipv4Addr,
    /// Node `asNumber`, else the BGPConfiguration's, else 64512.
    pub local_as: u32,
    pub listen_port: u16,
    pub ipv4_address: Option<Ipv4Network>,
    pub ipv6_address: Option<Ipv6Network>,
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// Sorted by address, one per address (node specific over global over mesh; among
    /// equals the later resource wins).
    pub peers: Vec<PeerPlan>,
    /// Prefixes this node originates, sorted, with their communities.
    pub advertise: Vec<Advertisement>,
    /// Every IP pool in the cluster.
    pub pools: Vec<IpPoolSpec>,
    /// This node's (confirmed, not deleted) pod blocks, sorted.
    pub blocks: Vec<IpNetwork>,
}

/// One BGP session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerPlan {
    /// BIRD-style protocol name: `Mesh_10_0_0_2`, `Node_192_168_1_1`, `Global_2001_db8__1`.
    pub name: String,
    pub peer_type: PeerType,
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    pub local_as: u32,
    pub password: Option<String>,
    pub ttl_security: Option<u8>,
    pub keep_original_next_hop: bool,
    pub max_restart_time: Option<Duration>,
    /// The node's own address of the peer's family, when `sourceAddress: UseNodeIP`.
    pub source_address: Option<IpAddr>,
    /// Only accept incoming connections (mesh: the side with the higher address).
    pub passive: bool,
    /// This node is a route reflector and the peer one of its clients.
    pub route_reflector_client: bool,
    /// `keepaliveTime` of the BGPPeer.
    pub keepalive_time: Option<Duration>,
    /// `numAllowedLocalASNumbers` of the BGPPeer.
    pub num_allowed_local_as_numbers: Option<u32>,
}

/// A prefix to originate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advertisement {
    pub prefix: IpNetwork,
    pub communities: Vec<Community>,
}

/// `10.0.0.2` → `10_0_0_2`, `2001:db8::1` → `2001_db8__1`.
pub(crate) fn protocol_suffix(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "_")
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

/// Computes the BGP plan of node `node_name`.
pub fn node_plan(cluster: &ClusterConfig, node_name: &str) -> Result<NodePlan, ConfigError> {
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
    let (local_as, _) = cluster.node_as_number(node);
    let router_id = node
        .router_id
        .or(node.ipv4_address.map(|a| a.ip()))
        .ok_or_else(|| {
            plan_error(cluster,
                node_name,
                "no BGP router ID: set spec.bgp.ipv4Address (or spec.bgp.routerID on IPv6-only nodes)".into(),
            )
        })?;
    let own_ips = node_ips(node);
    let is_own = |ip: IpAddr| own_ips.contains(&Some(ip));

    // (priority, sequence, plan): the highest (priority, sequence) per address wins.
    let mut candidates: Vec<(u8, usize, PeerPlan)> = Vec::new();

    // Node-to-node mesh.
    if cfg.node_to_node_mesh_enabled && node.route_reflector_cluster_id.is_none() {
        for other in &cluster.nodes {
            if other.name == node.name || other.route_reflector_cluster_id.is_some() {
                continue;
            }
            let other_cfg = cluster.bgp_config_for(&other.name);
            if !other_cfg.node_to_node_mesh_enabled {
                continue;
            }
            let (other_as, _) = cluster.node_as_number(other);
            for (local, remote) in own_ips.into_iter().zip(node_ips(other)) {
                let (Some(local), Some(remote)) = (local, remote) else {
                    continue;
                };
                if local == remote {
                    continue;
                }
                let seq = candidates.len();
                candidates.push((
                    0,
                    seq,
                    PeerPlan {
                        name: format!("Mesh_{}", protocol_suffix(remote)),
                        peer_type: PeerType::NodeMesh,
                        address: remote,
                        port: other_cfg.listen_port,
                        remote_as: other_as,
                        local_as,
                        password: cfg.node_mesh_password.clone(),
                        ttl_security: None,
                        keep_original_next_hop: false,
                        max_restart_time: cfg.node_mesh_max_restart_time,
                        source_address: Some(local),
                        // Calico: passive towards a peer whose IP is greater *as a string*
                        passive: remote.to_string() > local.to_string(),
                        route_reflector_client: false,
                        keepalive_time: None,
                        num_allowed_local_as_numbers: None,
                    },
                ));
            }
        }
    }

    // Explicit BGPPeers.
    for peer in &cluster.bgp_peers {
        if !peer.applies_to(&node.name, &node.labels) {
            continue;
        }
        let peer_type = if peer.is_global() {
            PeerType::Global
        } else {
            PeerType::NodeSpecific
        };
        let (prefix, priority) = match peer_type {
            PeerType::Global => ("Global", 1),
            _ => ("Node", 2),
        };
        let peer_local_as = peer.local_as_number.unwrap_or(local_as);
        // (address, port, remote AS, the Node behind the address if any)
        let mut targets: Vec<(IpAddr, u16, u32, Option<&NodeSpec>)> = Vec::new();
        if let (Some(ip), Some(asn)) = (peer.peer_ip, peer.as_number) {
            let behind = cluster
                .nodes
                .iter()
                .find(|n| node_ips(n).contains(&Some(ip)));
            targets.push((ip, peer.peer_port.unwrap_or(179), asn, behind));
        }
        if let Some(sel) = &peer.peer_selector {
            for other in cluster.nodes_matching(sel) {
                if other.name == node.name {
                    continue;
                }
                let (other_as, _) = cluster.node_as_number(other);
                let port = cluster.bgp_config_for(&other.name).listen_port;
                for ip in node_ips(other).into_iter().flatten() {
                    targets.push((ip, port, other_as, Some(other)));
                }
            }
        }
        for (address, port, remote_as, behind) in targets {
            if is_own(address) {
                continue;
            }
            let same_cluster = behind.is_some_and(|b| {
                b.route_reflector_cluster_id.is_some()
                    && b.route_reflector_cluster_id == node.route_reflector_cluster_id
            });
            let seq = candidates.len();
            candidates.push((
                priority,
                seq,
                PeerPlan {
                    name: format!("{prefix}_{}", protocol_suffix(address)),
                    peer_type,
                    address,
                    port,
                    remote_as,
                    local_as: peer_local_as,
                    password: peer.password.clone(),
                    ttl_security: peer.ttl_security,
                    keep_original_next_hop: peer.keep_original_next_hop,
                    max_restart_time: peer.max_restart_time,
                    source_address: match peer.source_address {
                        SourceAddress::UseNodeIP => same_family_ip(node, address),
                        SourceAddress::None => None,
                    },
                    passive: false,
                    route_reflector_client: node.route_reflector_cluster_id.is_some()
                        && remote_as == peer_local_as
                        && !same_cluster,
                    keepalive_time: peer.keepalive_time,
                    num_allowed_local_as_numbers: peer.num_allowed_local_as_numbers,
                },
            ));
        }
    }

    candidates.sort_by_key(|c| (c.2.address, c.0, c.1));
    let mut peers: Vec<PeerPlan> = Vec::new();
    for (_, _, plan) in candidates {
        match peers.last_mut() {
            Some(last) if last.address == plan.address => *last = plan,
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
    prefixes.extend(cfg.service_cluster_ips.iter().copied());
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
        ipv4_address: node.ipv4_address,
        ipv6_address: node.ipv6_address,
        route_reflector_cluster_id: node.route_reflector_cluster_id,
        peers,
        advertise,
        pools: cluster.ip_pools.clone(),
        blocks,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
