//! The agent's side of the dataplane: builds felix's [`Model`] from the cluster
//! configuration, the CNI plugin's endpoint records and the routes BGP learned.
//!
//! Tunnel addresses follow one convention every node can compute for every other node
//! without talking to it: a node's IPIP (VXLAN) tunnel address is `ipv4IPIPTunnelAddr` when
//! set, else the first address of its first active block in an IPIP (VXLAN) pool. The CNI
//! plugin never hands out a block's first address, so it is free for this.

use crate::config::{ClusterConfig, EncapMode as CfgEncap, IpPoolSpec, NodePlan};
use brindle_felix::endpoint::EndpointRecord;
use brindle_felix::model::{EncapMode, LocalEndpoint, Model, Pool, RemoteNode};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

fn encap(m: CfgEncap) -> EncapMode {
    match m {
        CfgEncap::Never => EncapMode::Never,
        CfgEncap::Always => EncapMode::Always,
        CfgEncap::CrossSubnet => EncapMode::CrossSubnet,
    }
}

fn pool(p: &IpPoolSpec) -> Pool {
    Pool {
        cidr: p.cidr,
        block_size: p.block_size,
        ipip_mode: encap(p.ipip_mode),
        vxlan_mode: encap(p.vxlan_mode),
        nat_outgoing: p.nat_outgoing,
        disabled: p.disabled,
    }
}

fn active_blocks(cfg: &ClusterConfig, node: &str) -> Vec<IpNetwork> {
    let mut v: Vec<IpNetwork> = cfg.block_affinities.iter().filter(|b| b.node == node && b.is_active()).map(|b| b.cidr).collect();
    v.sort_by_key(|n| (n.ip(), n.prefix()));
    v.dedup();
    v
}

/// First address of the node's first block in a pool with the given encapsulation.
fn tunnel_addr(cfg: &ClusterConfig, blocks: &[IpNetwork], ipip: bool) -> Option<Ipv4Addr> {
    blocks.iter().find_map(|b| {
        let IpAddr::V4(a) = b.network() else { return None };
        let p = cfg.pool_for(b)?;
        let mode = if ipip { p.ipip_mode } else { p.vxlan_mode };
        (mode != CfgEncap::Never && !p.disabled).then_some(a)
    })
}

/// The static part of the model (everything but endpoints and learned routes).
pub fn base_model(cfg: &ClusterConfig, plan: &NodePlan) -> Model {
    let own = active_blocks(cfg, &plan.node_name);
    let me = cfg.node(&plan.node_name);
    let remote_nodes = cfg
        .nodes
        .iter()
        .filter(|n| n.name != plan.node_name)
        .map(|n| {
            let blocks = active_blocks(cfg, &n.name);
            RemoteNode {
                name: n.name.clone(),
                ipv4: n.ipv4_address,
                ipv6: n.ipv6_address,
                ipip_tunnel_addr: n.ipv4_ipip_tunnel_addr.or_else(|| tunnel_addr(cfg, &blocks, true)),
                vxlan_tunnel_addr: tunnel_addr(cfg, &blocks, false),
                vxlan_mac: None,
                blocks,
            }
        })
        .collect();
    Model {
        node_name: plan.node_name.clone(),
        node_ipv4: plan.ipv4_address,
        node_ipv6: plan.ipv6_address,
        pools: cfg.ip_pools.iter().map(pool).collect(),
        ipip_tunnel_addr: me.and_then(|n| n.ipv4_ipip_tunnel_addr).or_else(|| tunnel_addr(cfg, &own, true)),
        vxlan_tunnel_addr: tunnel_addr(cfg, &own, false),
        own_blocks: own,
        endpoints: Vec::new(),
        remote_nodes,
        learned: BTreeMap::new(),
    }
}

/// Local endpoints from the CNI plugin's records.
pub fn endpoints(records: &[EndpointRecord]) -> Vec<LocalEndpoint> {
    let mut v: Vec<LocalEndpoint> = records
        .iter()
        .map(|r| LocalEndpoint { iface: r.host_iface.clone(), ips: r.ips.clone(), mac: Some(r.mac.clone()) })
        .collect();
    v.sort_by(|a, b| a.iface.cmp(&b.iface));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: a}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: b}
spec: {bgp: {ipv4Address: 10.0.1.2/24}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p}
spec: {cidr: 10.65.0.0/16, ipipMode: CrossSubnet}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: ba}
spec: {node: a, cidr: 10.65.0.0/26}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: bb}
spec: {node: b, cidr: 10.65.0.64/26}
"#;

    #[test]
    fn model_from_config() {
        let cfg = crate::config::parse("t.yaml", YAML).unwrap();
        let plan = cfg.node_plan("a").unwrap();
        let m = base_model(&cfg, &plan);
        assert_eq!(m.own_blocks, vec!["10.65.0.0/26".parse::<IpNetwork>().unwrap()]);
        assert_eq!(m.ipip_tunnel_addr, Some("10.65.0.0".parse().unwrap()));
        assert_eq!(m.vxlan_tunnel_addr, None);
        assert_eq!(m.pools[0].ipip_mode, EncapMode::CrossSubnet);
        assert_eq!(m.remote_nodes.len(), 1);
        assert_eq!(m.remote_nodes[0].ipip_tunnel_addr, Some("10.65.0.64".parse().unwrap()));
        assert_eq!(m.remote_nodes[0].blocks, vec!["10.65.0.64/26".parse::<IpNetwork>().unwrap()]);
    }
}
