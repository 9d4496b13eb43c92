//! Node-to-node mesh between two brindle-nodes fed the same YAML, and the same mesh plus BIRD as a
//! global BGPPeer on a shared LAN.

mod common;

use common::*;
use serde_json::Value;

const AS: u32 = 64512;
const BLOCK1: &str = "10.65.0.0/26";
const BLOCK2: &str = "10.65.0.64/26";

/// Both nodes' resources: 2 Nodes, 2 BlockAffinities, mesh on, optional global peer.
fn cluster_config(i: u8, global_peer: Option<(&str, u32)>) -> CalicoConfig {
    let mut c = CalicoConfig::new(AS, true)
        .node(
            "node-1",
            &format!("10.{i}.0.1/24"),
            Some(&format!("fd00:{i}::1/64")),
        )
        .node(
            "node-2",
            &format!("10.{i}.0.2/24"),
            Some(&format!("fd00:{i}::2/64")),
        )
        .pool("pool-v4", "10.65.0.0/16", 26)
        .affinity("node-1", BLOCK1)
        .affinity("node-2", BLOCK2);
    if let Some((ip, asn)) = global_peer {
        c = c.peer("tor", ip, asn, None);
    }
    c
}

fn assert_mesh_peer(node: &BrindleNode, peer: &str) {
    let p = node
        .peer(peer)
        .unwrap_or_else(|| panic!("no peer {peer}\n{}", node.dump()));
    assert_eq!(jstr(&p, "peerType"), "nodeMesh", "{p}");
    assert_eq!(jstr(&p, "peerTypeName"), "node-to-node mesh", "{p}");
    assert_eq!(
        jstr(&p, "name"),
        format!("Mesh_{}", peer.replace('.', "_")),
        "{p}"
    );
    assert_eq!(ju64(&p, "asNumber"), Some(AS as u64), "{p}");
}

fn assert_learned_via(node: &BrindleNode, prefix: &str, via: &str) {
    let r = node
        .learned_route(prefix)
        .unwrap_or_else(|| panic!("no {prefix}\n{}", node.dump()));
    assert_eq!(jstr(&r, "nextHop"), via, "{r}");
    assert_eq!(jstr(&r, "peerAddress"), via, "{r}");
    assert_eq!(r["best"], Value::Bool(true), "{r}");
}

#[test]
fn mesh_two_nodes_establish_and_learn_each_others_blocks() {
    let n1 = Netns::new("a");
    let n2 = Netns::new("b");
    veth(&n1, "eth0", &n2, "eth0");
    for (ns, k) in [(&n1, 1), (&n2, 2)] {
        ns.add_addr("eth0", &format!("10.9.0.{k}/24"));
        ns.add_addr("eth0", &format!("fd00:9::{k}/64"));
    }
    let yaml = cluster_config(9, None).to_yaml();
    let node1 = BrindleNode::start(&n1, "node-1", &yaml, &["10.9.0.1", "fd00:9::1"]);
    let node2 = BrindleNode::start(&n2, "node-2", &yaml, &["10.9.0.2", "fd00:9::2"]);
    let dumps: [&dyn Dump; 2] = [&node1, &node2];

    let took = wait_until("mesh Established on both nodes", CONVERGE, &dumps, || {
        node1.established("10.9.0.2") && node2.established("10.9.0.1")
    });
    eprintln!("mesh Established after {took:?}");
    assert_mesh_peer(&node1, "10.9.0.2");
    assert_mesh_peer(&node2, "10.9.0.1");
    // A node never peers with itself.
    assert!(
        node1.peer("10.9.0.1").is_none(),
        "node-1 peers with itself\n{}",
        node1.dump()
    );

    wait_until(
        "each node learns the other's block",
        CONVERGE,
        &dumps,
        || node1.has_learned_route(BLOCK2) && node2.has_learned_route(BLOCK1),
    );
    assert_learned_via(&node1, BLOCK2, "10.9.0.2");
    assert_learned_via(&node2, BLOCK1, "10.9.0.1");
    // Own block is local, not learned back.
    assert!(
        !node1.has_learned_route(BLOCK1),
        "node-1 learned its own block\n{}",
        node1.dump()
    );
    assert!(
        node1
            .route_entries(BLOCK1)
            .iter()
            .any(|r| r["local"] == Value::Bool(true)),
        "{}",
        node1.dump()
    );

    let table = node1.status_table();
    assert!(
        table.contains("node-to-node mesh"),
        "table output:\n{table}"
    );
    assert!(table.contains("Established"), "table output:\n{table}");
    assert!(table.contains("10.9.0.2"), "table output:\n{table}");
}

#[test]
fn mesh_two_nodes_and_global_bird_peer() {
    let lan = Lan::new(8, &["a", "b", "r"]);
    let bird_ip = lan.v4(3);
    let body: String = [("n1", lan.v4(1)), ("n2", lan.v4(2))]
        .iter()
        .map(|(name, ip)| {
            bird_bgp(
                name,
                65000,
                ip,
                AS,
                "",
                "ipv4 { import all; export none; };",
            )
        })
        .collect();
    let bird = Bird::start(&lan.members[2], &bird_ip, &body);
    let yaml = cluster_config(8, Some((&bird_ip, 65000))).to_yaml();
    let node1 = BrindleNode::start(&lan.members[0], "node-1", &yaml, &[&lan.v4(1), &lan.v6(1)]);
    let node2 = BrindleNode::start(&lan.members[1], "node-2", &yaml, &[&lan.v4(2), &lan.v6(2)]);
    let dumps: [&dyn Dump; 3] = [&node1, &node2, &bird];

    wait_until(
        "mesh and both BIRD sessions Established",
        CONVERGE,
        &dumps,
        || {
            node1.established(&lan.v4(2))
                && node2.established(&lan.v4(1))
                && node1.established(&bird_ip)
                && node2.established(&bird_ip)
                && bird.established("n1")
                && bird.established("n2")
        },
    );
    for node in [&node1, &node2] {
        let p = node.peer(&bird_ip).unwrap();
        assert_eq!(jstr(&p, "peerType"), "global", "{p}");
        assert_eq!(jstr(&p, "peerTypeName"), "global", "{p}");
    }
    wait_until("BIRD sees both blocks", CONVERGE, &dumps, || {
        bird.has_route(BLOCK1) && bird.has_route(BLOCK2)
    });
    let b1 = bird.route_all(BLOCK1);
    let b2 = bird.route_all(BLOCK2);
    assert!(b1.contains(&format!("via {} on eth0", lan.v4(1))), "{b1}");
    assert!(b2.contains(&format!("via {} on eth0", lan.v4(2))), "{b2}");
    wait_until("the mesh still exchanges blocks", CONVERGE, &dumps, || {
        node1.has_learned_route(BLOCK2) && node2.has_learned_route(BLOCK1)
    });
}
