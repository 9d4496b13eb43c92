//! Route reflection the Calico way (RFC 4456), with real routers. On one LAN: two
//! brindle-node route reflectors with one cluster ID (Nodes labelled
//! `route-reflector: 'true'` with `routeReflectorClusterID`, the mesh off), two brindle
//! nodes peering with them through `peerSelector: route-reflector == 'true'`, and a BIRD
//! and an FRR router as `peerIP` clients of both reflectors.
//!
//! Checked: every client's routes reach every other client through the reflectors (in the
//! kernel of the brindle nodes too) with ORIGINATOR_ID and CLUSTER_LIST as the RFC sets
//! them; a reflector drops its partner's reflections of its own cluster (the loop); with
//! one reflector killed (`kill -9`) no route is lost.

mod common;

use common::*;
use std::time::Duration;

const AS: u32 = 64512;
const CLUSTER: &str = "224.0.0.1";
const BLOCK1: &str = "10.65.0.0/26";
const BLOCK2: &str = "10.65.0.64/26";
const BIRD_NET: &str = "192.0.2.0/24";
const FRR_NET: &str = "198.51.100.0/24";

fn cluster_yaml(lan: &Lan) -> String {
    let h = "apiVersion: projectcalico.org/v3\n";
    let rr = |name: &str, k: usize| {
        format!(
            "{h}kind: Node\nmetadata:\n  name: {name}\n  labels:\n    route-reflector: 'true'\nspec:\n  bgp:\n    ipv4Address: {}/24\n    routeReflectorClusterID: {CLUSTER}\n",
            lan.v4(k)
        )
    };
    let node = |name: &str, k: usize| {
        format!(
            "{h}kind: Node\nmetadata:\n  name: {name}\nspec:\n  bgp:\n    ipv4Address: {}/24\n",
            lan.v4(k)
        )
    };
    let client = |name: &str, k: usize| {
        format!(
            "{h}kind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n  peerIP: {}\n  asNumber: {AS}\n  nodeSelector: route-reflector == 'true'\n",
            lan.v4(k)
        )
    };
    [
        format!("{h}kind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  asNumber: {AS}\n  nodeToNodeMeshEnabled: false\n"),
        rr("rr1", 1),
        rr("rr2", 2),
        node("n1", 3),
        node("n2", 4),
        format!("{h}kind: IPPool\nmetadata:\n  name: pool\nspec:\n  cidr: 10.65.0.0/16\n  blockSize: 26\n  ipipMode: Never\n  vxlanMode: Never\n  nodeSelector: all()\n"),
        format!("{h}kind: BlockAffinity\nmetadata:\n  name: n1-block\nspec:\n  node: n1\n  cidr: {BLOCK1}\n  state: confirmed\n"),
        format!("{h}kind: BlockAffinity\nmetadata:\n  name: n2-block\nspec:\n  node: n2\n  cidr: {BLOCK2}\n  state: confirmed\n"),
        format!("{h}kind: BGPPeer\nmetadata:\n  name: peer-with-route-reflectors\nspec:\n  nodeSelector: all()\n  peerSelector: route-reflector == 'true'\n"),
        client("bird", 5),
        client("frr", 6),
    ]
    .join("---\n")
}

#[test]
fn reflectors_pass_routes_between_brindle_bird_and_frr_clients_and_survive_one_failure() {
    let lan = Lan::new(73, &["rr1", "rr2", "n1", "n2", "bird", "frr"]);
    let yaml = cluster_yaml(&lan);
    let ns = |k: usize| &lan.members[k - 1];
    let rr1 = BrindleNode::start(ns(1), "rr1", &yaml, &[&lan.v4(1)]);
    let rr2 = BrindleNode::start(ns(2), "rr2", &yaml, &[&lan.v4(2)]);
    let n1 = BrindleNode::start(ns(3), "n1", &yaml, &[&lan.v4(3)]);
    let n2 = BrindleNode::start(ns(4), "n2", &yaml, &[&lan.v4(4)]);
    let bird_conf = format!(
        "protocol static st {{ ipv4; route {BIRD_NET} blackhole; }}\n\
         protocol kernel {{ ipv4 {{ export where source = RTS_BGP; }}; }}\n{}{}",
        bird_bgp(
            "rr1",
            AS,
            &lan.v4(1),
            AS,
            "",
            "ipv4 { import all; export where source = RTS_STATIC; };"
        ),
        bird_bgp(
            "rr2",
            AS,
            &lan.v4(2),
            AS,
            "",
            "ipv4 { import all; export where source = RTS_STATIC; };"
        ),
    );
    let bird = Bird::start(ns(5), &lan.v4(5), &bird_conf);
    let frr = Frr::start(
        ns(6),
        &frr_router_bgp(
            AS,
            &lan.v4(6),
            &[(&lan.v4(1), AS), (&lan.v4(2), AS)],
            &[FRR_NET],
            &[],
        ),
    );
    let dumps: [&dyn Dump; 6] = [&rr1, &rr2, &n1, &n2, &bird, &frr];

    let took = wait_until("every session Established", CONVERGE, &dumps, || {
        [&rr1, &rr2]
            .iter()
            .all(|rr| [3, 4, 5, 6].iter().all(|k| rr.established(&lan.v4(*k))))
            && rr1.established(&lan.v4(2))
            && rr2.established(&lan.v4(1))
            && bird.established("rr1")
            && bird.established("rr2")
            && frr.established(&lan.v4(1))
            && frr.established(&lan.v4(2))
    });
    eprintln!("all sessions Established after {took:?}");
    // the reflectors do not peer with each other's clients as a mesh: n1 has exactly
    // the two reflectors
    let n1_peers = n1.status()["peers"].as_array().cloned().unwrap_or_default();
    assert_eq!(n1_peers.len(), 2, "{n1_peers:?}");

    let took = wait_until(
        "every client has every other client's route",
        CONVERGE,
        &dumps,
        || {
            n2.has_learned_route(BLOCK1)
                && n1.has_learned_route(BLOCK2)
                && n1.has_learned_route(BIRD_NET)
                && n1.has_learned_route(FRR_NET)
                && bird.has_route(BLOCK1)
                && bird.has_route(BLOCK2)
                && bird.has_route(FRR_NET)
                && frr.has_route(BLOCK1)
                && frr.has_route(BIRD_NET)
        },
    );
    eprintln!("routes reflected to every client after {took:?}");

    // RFC 4456 §8: ORIGINATOR_ID is the originating client's identifier, CLUSTER_LIST
    // the reflectors' cluster; the next hop is the originator's (iBGP, unchanged)
    let r = n2.learned_route(BLOCK1).unwrap();
    assert_eq!(jstr(&r, "originatorId"), lan.v4(3), "{r}");
    assert_eq!(r["clusterList"], serde_json::json!([CLUSTER]), "{r}");
    assert_eq!(jstr(&r, "nextHop"), lan.v4(3), "{r}");
    let r = n1.learned_route(FRR_NET).unwrap();
    assert_eq!(jstr(&r, "originatorId"), lan.v4(6), "{r}");
    let birds = bird.route_all(BLOCK2);
    assert!(
        birds.contains(&format!("BGP.originator_id: {}", lan.v4(4)))
            && birds.contains(&format!("BGP.cluster_list: {CLUSTER}")),
        "{birds}"
    );
    let f = frr.route(BIRD_NET).unwrap();
    assert!(
        f.to_string().contains(&lan.v4(5)),
        "FRR's path to {BIRD_NET}: {f}"
    );
    // in n2's kernel: BLOCK1 via n1
    wait_until("n2's kernel routes BLOCK1 via n1", CONVERGE, &dumps, || {
        ns(4)
            .routes_text()
            .lines()
            .any(|l| l.starts_with(BLOCK1) && l.contains(&format!("via {}", lan.v4(3))))
    });

    // the loop: rr2 gets rr1's reflections with its own cluster ID in CLUSTER_LIST and
    // drops them (received, not accepted)
    wait_until("rr2 drops rr1's reflections", CONVERGE, &dumps, || {
        rr2.peer(&lan.v4(1)).is_some_and(|p| {
            ju64(&p, "prefixesReceived").unwrap_or(0) > 0 && ju64(&p, "prefixesAccepted") == Some(0)
        })
    });

    // one reflector fails: nothing is lost, everything still passes through the other
    // SAFETY: kill(2) on the PID of a child this test started.
    unsafe { libc::kill(rr1.pid(), libc::SIGKILL) };
    let dumps: [&dyn Dump; 5] = [&rr2, &n1, &n2, &bird, &frr];
    assert_never(
        "a route is lost with rr1 dead",
        Duration::from_secs(3),
        &dumps,
        || {
            !(n2.has_learned_route(BLOCK1)
                && n1.has_learned_route(BIRD_NET)
                && bird.has_route(BLOCK1)
                && frr.has_route(BIRD_NET))
        },
    );
    wait_until("the clients see rr1 gone", CONVERGE, &dumps, || {
        !n2.established(&lan.v4(1)) && !bird.established("rr1") && !frr.established(&lan.v4(1))
    });
    for (node, prefix) in [
        (&n2, BLOCK1),
        (&n1, BLOCK2),
        (&n1, BIRD_NET),
        (&n2, FRR_NET),
    ] {
        assert!(
            node.has_learned_route(prefix),
            "{prefix} lost\n{}",
            node.dump()
        );
    }
    assert!(bird.has_route(BLOCK1) && frr.has_route(BIRD_NET));
}
