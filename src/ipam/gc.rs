//! Garbage collection of IPAM, as Calico's kube-controllers does it
//! (`kube-controllers/pkg/controllers/node/ipam.go`, `design/ipam/ipam-gc.md`), run by
//! the agents themselves. Pure: each pass gets the blocks, the pods and the nodes, and
//! says what to release.
//!
//! - An address is **leaked** when its allocation names a pod (`namespace`, `pod`) that
//!   does not exist or no longer has that address. It is released only after it has
//!   been seen leaked for the grace period (Calico: 15 minutes) on at least two passes,
//!   with the sequence number and handle seen, so an address re-allocated meanwhile is
//!   never freed.
//! - Each agent collects its own node's allocations (`node` attribute). The allocations
//!   and blocks of a node that no longer exists are collected by one agent: the one with
//!   the lowest name among the existing nodes (no lease needed; if two agents briefly
//!   disagree, the compare-and-swap writes keep the result right).
//! - A deleted node's block affinities are given back once it has been missing on two
//!   passes over the grace period.

use super::block::Block;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

/// A release to perform: only if the address is still at `sequence` under `handle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub ip: IpAddr,
    pub sequence: u64,
    pub handle: Option<String>,
    /// For the log: `namespace/pod` on `node`.
    pub owner: String,
}

/// What one pass decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    pub release: Vec<Release>,
    /// Nodes whose block affinities are to be given back.
    pub release_hosts: Vec<String>,
    /// Leaks seen but still in their grace period.
    pub pending: usize,
}

/// Candidate state carried between passes.
#[derive(Debug, Default)]
pub struct Gc {
    /// (ip, sequence) → (first seen, passes seen).
    leaks: HashMap<(IpAddr, u64), (i64, u32)>,
    /// node → (first seen missing, passes seen).
    gone: HashMap<String, (i64, u32)>,
}

/// The pods that exist: (namespace, name) → their addresses.
pub type Pods = HashMap<(String, String), HashSet<IpAddr>>;

impl Gc {
    pub fn new() -> Gc {
        Gc::default()
    }

    /// One pass at time `now` (seconds).
    pub fn pass(
        &mut self,
        me: &str,
        blocks: &[Block],
        pods: &Pods,
        nodes: &BTreeSet<String>,
        now: i64,
        grace_secs: i64,
    ) -> Actions {
        let responsible = nodes.iter().next().is_none_or(|first| first == me);
        let mine = |node: Option<&String>| match node {
            Some(n) if n == me => true,
            Some(n) => responsible && !nodes.contains(n),
            None => false,
        };
        let mut out = Actions::default();
        let mut seen_leaks = HashSet::new();
        for b in blocks {
            for (ip, attr) in b.in_use() {
                let Some(owner) = &attr.owner else { continue };
                if !mine(owner.get("node")) {
                    continue;
                }
                let (Some(ns), Some(pod)) = (owner.get("namespace"), owner.get("pod")) else {
                    continue; // tunnel addresses and other non-pod allocations
                };
                let alive = pods
                    .get(&(ns.clone(), pod.clone()))
                    .is_some_and(|ips| ips.is_empty() || ips.contains(&ip));
                if alive {
                    continue;
                }
                let ord = b.ip_to_ordinal(ip).unwrap_or(0);
                let seq = b.sequence_for(ord);
                let key = (ip, seq);
                seen_leaks.insert(key);
                let e = self.leaks.entry(key).or_insert((now, 0));
                e.1 += 1;
                if e.1 >= 2 && now - e.0 >= grace_secs {
                    out.release.push(Release {
                        ip,
                        sequence: seq,
                        handle: attr.handle_id.clone(),
                        owner: format!(
                            "{ns}/{pod} on {}",
                            owner.get("node").map(String::as_str).unwrap_or("?")
                        ),
                    });
                } else {
                    out.pending += 1;
                }
            }
        }
        self.leaks.retain(|k, _| seen_leaks.contains(k));
        let mut missing = BTreeSet::new();
        if responsible {
            for b in blocks {
                if let Some(h) = b.host() {
                    if !nodes.contains(h) {
                        missing.insert(h.to_string());
                    }
                }
            }
        }
        for n in &missing {
            let e = self.gone.entry(n.clone()).or_insert((now, 0));
            e.1 += 1;
            if e.1 >= 2 && now - e.0 >= grace_secs {
                out.release_hosts.push(n.clone());
            }
        }
        self.gone.retain(|k, _| missing.contains(k));
        out
    }
}

/// The pods map from the model's pods.
pub fn pods_of<'a>(pods: impl Iterator<Item = &'a brindle_model::kubernetes::Pod>) -> Pods {
    let mut m: Pods = HashMap::new();
    for p in pods {
        m.entry((p.namespace.to_string(), p.name.clone()))
            .or_default()
            .extend(p.ips.iter().copied());
    }
    m
}

/// For the log and tests: release counts per node.
pub fn by_node(r: &[Release]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for x in r {
        let node = x.owner.rsplit(" on ").next().unwrap_or("?").to_string();
        *m.entry(node).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(node: &str, cidr: &str, allocs: &[(&str, &str, &str)]) -> Block {
        let mut b = Block::new(cidr.parse().unwrap(), 1);
        b.affinity = Some(format!("host:{node}"));
        for (ns, pod, on) in allocs {
            let owner = BTreeMap::from([
                ("namespace".to_string(), ns.to_string()),
                ("pod".to_string(), pod.to_string()),
                ("node".to_string(), on.to_string()),
            ]);
            b.auto_assign(1, Some(&format!("h-{pod}")), Some(&owner), &|_| false);
        }
        b
    }

    fn pods(list: &[(&str, &str, &str)]) -> Pods {
        list.iter()
            .map(|(ns, p, ip)| {
                (
                    (ns.to_string(), p.to_string()),
                    HashSet::from([ip.parse().unwrap()]),
                )
            })
            .collect()
    }

    #[test]
    fn leaks_are_released_after_the_grace_on_two_passes() {
        let nodes = BTreeSet::from(["a".to_string(), "b".to_string()]);
        let blocks = vec![block(
            "a",
            "10.0.0.0/30",
            &[("d", "live", "a"), ("d", "gone", "a"), ("d", "moved", "a")],
        )];
        // "moved" exists but with another address (a new incarnation).
        let p = pods(&[("d", "live", "10.0.0.0"), ("d", "moved", "10.9.9.9")]);
        let mut gc = Gc::new();
        let a = gc.pass("a", &blocks, &p, &nodes, 0, 900);
        assert!(a.release.is_empty());
        assert_eq!(a.pending, 2);
        let a = gc.pass("a", &blocks, &p, &nodes, 600, 900);
        assert!(a.release.is_empty(), "still in the grace period");
        let a = gc.pass("a", &blocks, &p, &nodes, 901, 900);
        let ips: Vec<String> = a.release.iter().map(|r| r.ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(a.release[0].handle.as_deref(), Some("h-gone"));
        // Node b never collects a's allocations.
        let mut gcb = Gc::new();
        gcb.pass("b", &blocks, &p, &nodes, 0, 0);
        assert!(gcb.pass("b", &blocks, &p, &nodes, 1, 0).release.is_empty());
        // A pod that comes back (or a leak fixed otherwise) resets the count.
        let p2 = pods(&[
            ("d", "live", "10.0.0.0"),
            ("d", "gone", "10.0.0.1"),
            ("d", "moved", "10.0.0.2"),
        ]);
        let mut gc = Gc::new();
        gc.pass("a", &blocks, &p, &nodes, 0, 10);
        gc.pass("a", &blocks, &p2, &nodes, 5, 10);
        assert!(gc.pass("a", &blocks, &p, &nodes, 20, 10).release.is_empty());
    }

    #[test]
    fn a_deleted_nodes_blocks_and_pods_are_collected_by_the_first_node() {
        let nodes = BTreeSet::from(["a".to_string(), "b".to_string()]);
        let blocks = vec![block("gone", "10.0.0.0/30", &[("d", "p", "gone")])];
        let p = Pods::new();
        let mut gc_a = Gc::new();
        let mut gc_b = Gc::new();
        for t in [0, 100] {
            let b = gc_b.pass("b", &blocks, &p, &nodes, t, 60);
            assert!(
                b.release.is_empty() && b.release_hosts.is_empty(),
                "b is not responsible"
            );
            let a = gc_a.pass("a", &blocks, &p, &nodes, t, 60);
            if t == 100 {
                assert_eq!(a.release_hosts, ["gone"]);
                assert_eq!(
                    by_node(&a.release),
                    BTreeMap::from([("gone".to_string(), 1)])
                );
            }
        }
    }
}
