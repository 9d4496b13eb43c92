//! brindle-node against GoBGP 3: eBGP and iBGP IPv4, prefixes both ways (`gobgp global rib
//! add`), withdrawals both ways (`global rib del`, BlockAffinity removal).
//! Topology: namespace `node` (brindle-node, 10.<i>.0.1/24) and `router` (gobgpd, .2).

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const NODE: &str = "node-1";
const NODE_AS: u32 = 64512;
const ROUTER_AS: u32 = 65000;
const BLOCK: &str = "10.65.0.0/26";
const SERVICES: &str = "10.96.0.0/12";
const GOBGP_NET: &str = "203.0.113.0/24";

fn base_config(t: &P2p) -> CalicoConfig {
    CalicoConfig::new(NODE_AS, false)
        .node(
            NODE,
            &format!("{}/24", t.node_v4()),
            Some(&format!("{}/64", t.node_v6())),
        )
        .pool("pool-v4", "10.65.0.0/16", 26)
        .affinity(NODE, BLOCK)
        .service_cluster_ip(SERVICES)
}

/// The AS path of a GoBGP path (attribute type 2), flattened.
fn gobgp_as_path(path: &Value) -> Vec<u64> {
    path["attrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == 2)
        .flat_map(|a| a["as_paths"].as_array().cloned().unwrap_or_default())
        .flat_map(|seg| seg["asns"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_u64())
        .collect()
}

/// The NEXT_HOP of a GoBGP path (attribute type 3).
fn gobgp_next_hop(path: &Value) -> String {
    path["attrs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == 3)
        .map(|a| jstr(a, "nexthop").to_string())
        .unwrap_or_default()
}

fn exchange_and_withdraw(i: u8, router_as: u32) {
    let t = P2p::new(i);
    let gobgp = GoBgp::start(
        &t.router,
        &gobgp_toml(router_as, &t.router_v4(), &[(&t.node_v4(), NODE_AS)]),
    );
    let cfg = base_config(&t).peer("gobgp-v4", &t.router_v4(), router_as, Some(NODE));
    let node = BrindleNode::start(&t.node, NODE, &cfg.to_yaml(), &[&t.node_v4(), &t.node_v6()]);
    let dumps: [&dyn Dump; 2] = [&node, &gobgp];
    let took = wait_until("brindle and GoBGP Established", CONVERGE, &dumps, || {
        node.established(&t.router_v4()) && gobgp.established(&t.node_v4())
    });
    eprintln!("Established after {took:?}");

    // brindle -> GoBGP
    wait_until(
        "node block and service CIDR in GoBGP",
        CONVERGE,
        &dumps,
        || gobgp.has_route(BLOCK) && gobgp.has_route(SERVICES),
    );
    let path = gobgp.route(BLOCK).unwrap()[0].clone();
    assert_eq!(gobgp_next_hop(&path), t.node_v4(), "{path}");
    let want_path: Vec<u64> = if router_as == NODE_AS {
        vec![]
    } else {
        vec![NODE_AS as u64]
    };
    assert_eq!(gobgp_as_path(&path), want_path, "{path}");

    // GoBGP -> brindle
    gobgp.add_route(GOBGP_NET, &[]);
    wait_until("GoBGP's route in brindle", CONVERGE, &dumps, || {
        node.has_learned_route(GOBGP_NET)
    });
    let r = node.learned_route(GOBGP_NET).unwrap();
    assert_eq!(jstr(&r, "nextHop"), t.router_v4(), "{r}");
    assert_eq!(jstr(&r, "peerAddress"), t.router_v4(), "{r}");
    let as_path: Vec<u64> = r["asPath"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let want: Vec<u64> = if router_as == NODE_AS {
        vec![]
    } else {
        vec![router_as as u64]
    };
    assert_eq!(as_path, want, "{r}");
    wait_until("brindle prefixesReceived = 1", CONVERGE, &dumps, || {
        node.peer(&t.router_v4())
            .is_some_and(|p| ju64(&p, "prefixesReceived") == Some(1))
    });

    // Withdrawals both ways.
    gobgp.del_route(GOBGP_NET);
    wait_until(
        "GoBGP's route withdrawn from brindle",
        Duration::from_secs(10),
        &dumps,
        || !node.has_learned_route(GOBGP_NET),
    );
    let mut cfg2 = cfg.clone();
    cfg2.affinities.clear();
    node.rewrite_config(&cfg2.to_yaml());
    wait_until(
        "block withdrawn from GoBGP",
        Duration::from_secs(10),
        &dumps,
        || !gobgp.has_route(BLOCK),
    );
    assert!(
        gobgp.has_route(SERVICES),
        "service CIDR must stay\n{}",
        gobgp.dump()
    );
    assert!(node.established(&t.router_v4()), "no session reset");
}

#[test]
fn gobgp_ebgp_ipv4_exchanges_and_withdraws_prefixes() {
    exchange_and_withdraw(1, ROUTER_AS);
}

#[test]
fn gobgp_ibgp_ipv4_exchanges_and_withdraws_prefixes() {
    exchange_and_withdraw(2, NODE_AS);
}
