//! What `brindlectl ipam show` and `ipam check` report, computed from the stored
//! objects (pure: the caller reads them).

use super::block::Block;
use super::objects::{Affinity, AffinityState, Handle, IpamObject};
use brindle_model::IpPoolSpec;
use ipnetwork::IpNetwork;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// One row of `ipam show`: a pool or a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// `IP Pool` or `Block`.
    pub grouping: String,
    pub cidr: IpNetwork,
    pub total: u128,
    pub in_use: u128,
    /// For a block: the node it is affine to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn size(net: &IpNetwork) -> u128 {
    let host = u32::from(if net.is_ipv4() { 32 } else { 128 } - net.prefix());
    if host >= 128 {
        u128::MAX
    } else {
        1u128 << host
    }
}

/// Pool rows, each followed by its blocks' rows when `blocks`.
pub fn usage(pools: &[IpPoolSpec], stored: &[Block], blocks: bool) -> Vec<Usage> {
    let mut out = Vec::new();
    let mut pools: Vec<&IpPoolSpec> = pools.iter().collect();
    pools.sort_by_key(|p| (p.cidr.is_ipv6(), p.cidr.network(), p.cidr.prefix()));
    for p in pools {
        let mine: Vec<&Block> = stored
            .iter()
            .filter(|b| p.cidr.contains(b.cidr.network()))
            .collect();
        let used: u128 = mine.iter().map(|b| b.in_use().count() as u128).sum();
        out.push(Usage {
            grouping: "IP Pool".into(),
            cidr: p.cidr,
            total: size(&p.cidr),
            in_use: used,
            node: None,
        });
        if blocks {
            let mut mine = mine;
            mine.sort_by_key(|b| (b.cidr.network(), b.cidr.prefix()));
            for b in mine {
                out.push(Usage {
                    grouping: "Block".into(),
                    cidr: b.cidr,
                    total: size(&b.cidr),
                    in_use: b.in_use().count() as u128,
                    node: b.host().map(str::to_string),
                });
            }
        }
    }
    out
}

/// Who holds one address (`ipam show --ip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub ip: IpAddr,
    pub block: IpNetwork,
    pub handle: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// The holder of `ip`, if it is allocated.
pub fn holder(stored: &[Block], ip: IpAddr) -> Option<Holder> {
    let b = stored.iter().find(|b| b.cidr.contains(ip))?;
    let a = b.attribute_of(ip)?;
    Some(Holder {
        ip,
        block: b.cidr,
        handle: a.handle_id.clone(),
        attributes: a.owner.clone().unwrap_or_default(),
    })
}

/// A pod as `ipam check` knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddresses {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
}

/// `ipam check`'s findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub allocations: usize,
    /// Addresses allocated to a pod that does not exist, or not with that address.
    pub leaked: Vec<String>,
    /// Pods with an address in a pool that IPAM has not allocated to them.
    pub pods_without_allocation: Vec<String>,
    /// Blocks affine to a node that does not exist.
    pub blocks_without_node: Vec<String>,
    /// Broken invariants between blocks, handles and affinities.
    pub inconsistencies: Vec<String>,
}

impl Check {
    pub fn is_clean(&self) -> bool {
        self.leaked.is_empty()
            && self.pods_without_allocation.is_empty()
            && self.blocks_without_node.is_empty()
            && self.inconsistencies.is_empty()
    }
}

/// Every invariant the stored objects must hold: blocks valid, every allocated address
/// counted by its handle and no handle counting more, every affine block with a
/// confirmed affinity of the same node, no affinity without its block.
pub fn consistency(blocks: &[Block], handles: &[Handle], affinities: &[Affinity]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut counted: BTreeMap<(String, String), usize> = BTreeMap::new();
    for b in blocks {
        if let Err(e) = b.validate() {
            problems.push(e.to_string());
        }
        for (_, a) in b.in_use() {
            if let Some(h) = &a.handle_id {
                *counted.entry((h.clone(), b.cidr.to_string())).or_default() += 1;
            }
        }
        if let Some(host) = b.host() {
            let ok = affinities
                .iter()
                .any(|a| a.node == host && a.cidr == b.cidr && a.state == AffinityState::Confirmed);
            if !ok {
                problems.push(format!(
                    "block {} is {host}'s but has no confirmed affinity",
                    b.cidr
                ));
            }
        }
    }
    let mut stored: BTreeMap<(String, String), usize> = BTreeMap::new();
    for h in handles {
        for (c, n) in &h.block {
            stored.insert((h.handle_id.clone(), c.clone()), *n);
        }
    }
    for (k, n) in &counted {
        if stored.get(k) != Some(n) {
            problems.push(format!(
                "handle {} holds {n} address(es) in {} but counts {}",
                k.0,
                k.1,
                stored.get(k).copied().unwrap_or(0)
            ));
        }
    }
    for (k, n) in &stored {
        if !counted.contains_key(k) {
            problems.push(format!(
                "handle {} counts {n} address(es) in {} but holds none",
                k.0, k.1
            ));
        }
    }
    for a in affinities {
        if a.state != AffinityState::Confirmed {
            problems.push(format!("affinity {} is {:?}", a.name(), a.state));
        }
        let b = blocks.iter().find(|b| b.cidr == a.cidr);
        if b.and_then(|b| b.host()) != Some(a.node.as_str()) {
            problems.push(format!(
                "affinity {} has no block affine to {}",
                a.name(),
                a.node
            ));
        }
    }
    problems
}

/// `ipam check`: allocations against the pods and nodes that exist.
pub fn check(
    blocks: &[Block],
    handles: &[Handle],
    affinities: &[Affinity],
    pods: &[PodAddresses],
    nodes: &BTreeSet<String>,
    pools: &[IpPoolSpec],
) -> Check {
    let mut c = Check {
        inconsistencies: consistency(blocks, handles, affinities),
        ..Check::default()
    };
    let by_ip: BTreeMap<IpAddr, &PodAddresses> = pods
        .iter()
        .flat_map(|p| p.ips.iter().map(move |ip| (*ip, p)))
        .collect();
    let mut allocated = BTreeSet::new();
    for b in blocks {
        for (ip, a) in b.in_use() {
            c.allocations += 1;
            allocated.insert(ip);
            let owner = a.owner.clone().unwrap_or_default();
            let (Some(ns), Some(pod)) = (owner.get("namespace"), owner.get("pod")) else {
                continue; // tunnel addresses and the like
            };
            match by_ip.get(&ip) {
                Some(p) if &p.namespace == ns && &p.name == pod => {}
                _ => c.leaked.push(format!(
                    "{ip} ({}) is allocated to pod {ns}/{pod}, which {}",
                    a.handle_id.as_deref().unwrap_or("no handle"),
                    if pods.iter().any(|p| &p.namespace == ns && &p.name == pod) {
                        "does not have that address"
                    } else {
                        "does not exist"
                    }
                )),
            }
        }
        if let Some(host) = b.host() {
            if !nodes.contains(host) {
                c.blocks_without_node.push(format!(
                    "{} is affine to node {host}, which does not exist",
                    b.cidr
                ));
            }
        }
    }
    for p in pods {
        for ip in &p.ips {
            if pools.iter().any(|pool| pool.cidr.contains(*ip)) && !allocated.contains(ip) {
                c.pods_without_allocation.push(format!(
                    "pod {}/{} on {} has {ip}, which IPAM has not allocated",
                    p.namespace, p.name, p.node
                ));
            }
        }
    }
    c
}
