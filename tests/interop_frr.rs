//! brindle-node against FRR 8 (zebra + bgpd): iBGP and eBGP IPv4, an IPv6 session, prefixes
//! both ways and withdrawals both ways. Topology: namespace `node` (brindle-node, 10.<i>.0.1/24,
//! fd00:<i>::1/64) and namespace `router` (FRR, .2) on one veth link.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const NODE: &str = "node-1";
const NODE_AS: u32 = 64512;
const ROUTER_AS: u32 = 65000;
const BLOCK: &str = "10.65.0.0/26";
const SERVICES: &str = "10.96.0.0/12";
const BLOCK_V6: &str = "fd00:65::/122";
const FRR_NET: &str = "198.51.100.0/24";
const FRR_NET_V6: &str = "2001:db8:2::/48";

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

fn start_node(t: &P2p, yaml: &str) -> BrindleNode {
    BrindleNode::start(&t.node, NODE, yaml, &[&t.node_v4(), &t.node_v6()])
}

fn wait_both_established(node: &BrindleNode, frr: &Frr, peer: &str, frr_neighbor: &str) {
    wait_until(
        &format!("brindle peer {peer} and FRR neighbor {frr_neighbor} Established"),
        CONVERGE,
        &[node, frr],
        || node.established(peer) && frr.established(frr_neighbor),
    );
}

/// FRR's best path for `prefix` (panics if absent).
fn frr_best(frr: &Frr, prefix: &str) -> Value {
    let paths = frr
        .route(prefix)
        .unwrap_or_else(|| panic!("FRR has no {prefix}\n{}", frr.dump()));
    paths
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["bestpath"] == Value::Bool(true))
                .cloned()
        })
        .unwrap_or_else(|| panic!("FRR has no best path for {prefix}: {paths}"))
}

fn assert_learned_from(node: &BrindleNode, prefix: &str, from: &str, as_path: &[u64]) {
    let r = node
        .learned_route(prefix)
        .unwrap_or_else(|| panic!("no learned route {prefix}\n{}", node.dump()));
    assert_eq!(
        jstr(&r, "peerAddress").parse::<std::net::IpAddr>().ok(),
        from.parse().ok(),
        "{r}"
    );
    assert_eq!(
        jstr(&r, "nextHop").parse::<std::net::IpAddr>().ok(),
        from.parse().ok(),
        "{r}"
    );
    let path: Vec<u64> = r["asPath"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert_eq!(path, as_path, "asPath of {r}");
}

/// FRR's `pfxRcd` for a neighbor from `show bgp summary json` (family ipv4Unicast/ipv6Unicast).
fn frr_pfx_rcd(frr: &Frr, fam: &str, neighbor: &str) -> Option<u64> {
    frr.summary()
        .get(fam)?
        .get("peers")?
        .get(neighbor)?
        .get("pfxRcd")?
        .as_u64()
}

#[test]
fn frr_ibgp_ipv4_exchanges_prefixes() {
    let t = P2p::new(1);
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(
            NODE_AS,
            &t.router_v4(),
            &[(&t.node_v4(), NODE_AS)],
            &[FRR_NET],
            &[],
        ),
    );
    let cfg = base_config(&t).peer("frr-v4", &t.router_v4(), NODE_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &frr, &t.router_v4(), &t.node_v4());

    wait_until(
        "node block and service CIDR in FRR",
        CONVERGE,
        &[&node, &frr],
        || frr.has_route(BLOCK) && frr.has_route(SERVICES),
    );
    let p = frr_best(&frr, BLOCK);
    assert_eq!(p["valid"], Value::Bool(true), "{p}");
    assert_eq!(jstr(&p, "pathFrom"), "internal", "{p}");
    assert_eq!(ju64(&p, "locPrf"), Some(100), "{p}");
    assert_eq!(jstr(&p["nexthops"][0], "ip"), t.node_v4(), "{p}");

    wait_until("FRR's network in brindle", CONVERGE, &[&node, &frr], || {
        node.has_learned_route(FRR_NET)
    });
    assert_learned_from(&node, FRR_NET, &t.router_v4(), &[]);
    wait_until(
        "brindle counters agree with FRR",
        CONVERGE,
        &[&node, &frr],
        || {
            node.peer(&t.router_v4()).is_some_and(|p| {
                ju64(&p, "prefixesReceived") == Some(1)
                    && ju64(&p, "prefixesAdvertised")
                        == frr_pfx_rcd(&frr, "ipv4Unicast", &t.node_v4())
            })
        },
    );
}

#[test]
fn frr_ebgp_ipv4_exchanges_prefixes() {
    let t = P2p::new(2);
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(
            ROUTER_AS,
            &t.router_v4(),
            &[(&t.node_v4(), NODE_AS)],
            &[FRR_NET],
            &[],
        ),
    );
    let cfg = base_config(&t).peer("frr-v4", &t.router_v4(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &frr, &t.router_v4(), &t.node_v4());

    wait_until(
        "node block and service CIDR in FRR",
        CONVERGE,
        &[&node, &frr],
        || frr.has_route(BLOCK) && frr.has_route(SERVICES),
    );
    let p = frr_best(&frr, BLOCK);
    assert_eq!(p["valid"], Value::Bool(true), "{p}");
    assert_eq!(jstr(&p, "pathFrom"), "external", "{p}");
    assert_eq!(jstr(&p, "path"), NODE_AS.to_string(), "AS path in FRR: {p}");
    assert_eq!(jstr(&p["nexthops"][0], "ip"), t.node_v4(), "{p}");

    wait_until("FRR's network in brindle", CONVERGE, &[&node, &frr], || {
        node.has_learned_route(FRR_NET)
    });
    assert_learned_from(&node, FRR_NET, &t.router_v4(), &[ROUTER_AS as u64]);
    let n = frr.neighbor(&t.node_v4()).unwrap();
    let p = node.peer(&t.router_v4()).unwrap();
    assert_eq!(jstr(&p, "remoteRouterId"), t.router_v4(), "{p}");
    assert_eq!(
        ju64(&p, "holdTime"),
        ju64(&n, "bgpTimerHoldTimeMsecs").map(|ms| ms / 1000),
        "hold time: brindle {p}\nFRR {n}"
    );
}

#[test]
fn frr_ipv6_session_exchanges_prefixes() {
    let t = P2p::new(3);
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(
            ROUTER_AS,
            &t.router_v4(),
            &[(&t.node_v6(), NODE_AS)],
            &[FRR_NET_V6],
            &[],
        ),
    );
    let cfg = base_config(&t)
        .pool("pool-v6", "fd00:65::/48", 122)
        .affinity(NODE, BLOCK_V6)
        .peer("frr-v6", &t.router_v6(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &frr, &t.router_v6(), &t.node_v6());

    wait_until("node IPv6 block in FRR", CONVERGE, &[&node, &frr], || {
        frr.has_route(BLOCK_V6)
    });
    let p = frr_best(&frr, BLOCK_V6);
    assert_eq!(p["valid"], Value::Bool(true), "{p}");
    let nh: Vec<String> = p["nexthops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| jstr(h, "ip").to_string())
        .collect();
    assert!(
        nh.contains(&t.node_v6()),
        "global IPv6 next hop {} among {nh:?}: {p}",
        t.node_v6()
    );

    wait_until(
        "FRR's IPv6 network in brindle",
        CONVERGE,
        &[&node, &frr],
        || node.has_learned_route(FRR_NET_V6),
    );
    assert_learned_from(&node, FRR_NET_V6, &t.router_v6(), &[ROUTER_AS as u64]);
}

#[test]
fn frr_withdrawals_both_ways() {
    let t = P2p::new(4);
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(
            ROUTER_AS,
            &t.router_v4(),
            &[(&t.node_v4(), NODE_AS)],
            &[FRR_NET, "203.0.113.0/24"],
            &[],
        ),
    );
    let cfg = base_config(&t).peer("frr-v4", &t.router_v4(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &frr, &t.router_v4(), &t.node_v4());
    wait_until("prefixes both ways", CONVERGE, &[&node, &frr], || {
        frr.has_route(BLOCK)
            && node.has_learned_route(FRR_NET)
            && node.has_learned_route("203.0.113.0/24")
    });

    // brindle -> FRR: drop the BlockAffinity from the YAML.
    let mut cfg2 = cfg.clone();
    cfg2.affinities.clear();
    node.rewrite_config(&cfg2.to_yaml());
    let took = wait_until(
        "block withdrawn from FRR",
        Duration::from_secs(10),
        &[&node, &frr],
        || !frr.has_route(BLOCK),
    );
    eprintln!("BlockAffinity removal reached FRR after {took:?}");
    assert!(
        frr.has_route(SERVICES),
        "service CIDR must stay\n{}",
        frr.dump()
    );

    // FRR -> brindle: `no network`.
    frr.configure(&[
        &format!("router bgp {ROUTER_AS}"),
        "address-family ipv4 unicast",
        &format!("no network {FRR_NET}"),
    ]);
    let took = wait_until(
        "FRR's network withdrawn from brindle",
        Duration::from_secs(10),
        &[&node, &frr],
        || !node.has_learned_route(FRR_NET),
    );
    eprintln!("FRR withdrawal reached brindle after {took:?}");
    assert!(
        node.has_learned_route("203.0.113.0/24"),
        "the other network must stay\n{}",
        node.dump()
    );
    assert!(
        node.established(&t.router_v4()) && frr.established(&t.node_v4()),
        "no session reset"
    );
}
