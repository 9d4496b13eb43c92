//! brindle-node against BIRD 2: sessions, prefixes both ways, withdrawals, hold timer, TCP MD5
//! and OPEN errors. Topology per test: namespace `node` (brindle-node, 10.<i>.0.1/24,
//! fd00:<i>::1/64) and namespace `router` (BIRD, .2) on one veth link.

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
const BIRD_STATIC: &str = "192.0.2.0/24";
const BIRD_STATIC_V6: &str = "2001:db8:1::/48";
/// BIRD's protocol name for the session to brindle-node.
const P: &str = "node1";

/// The node's Calico resources: one Node, an IPv4 pool with the node's block, service CIDR.
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

/// BIRD's config: a static protocol holding `statics` (blackholes) and one BGP session to the
/// node's IPv4 (or IPv6) address that exports only the static routes.
fn bird_conf(
    t: &P2p,
    local_as: u32,
    node_as: u32,
    v6: bool,
    extra: &str,
    statics: &[&str],
) -> String {
    let fam = if v6 { "ipv6" } else { "ipv4" };
    let routes: String = statics
        .iter()
        .map(|r| format!(" route {r} blackhole;"))
        .collect();
    let neighbor = if v6 { t.node_v6() } else { t.node_v4() };
    format!(
        "protocol static st1 {{ {fam};{routes} }}\n{}",
        bird_bgp(
            P,
            local_as,
            &neighbor,
            node_as,
            extra,
            &format!("{fam} {{ import all; export where source = RTS_STATIC; }};"),
        )
    )
}

fn start_node(t: &P2p, yaml: &str) -> BrindleNode {
    BrindleNode::start(&t.node, NODE, yaml, &[&t.node_v4(), &t.node_v6()])
}

/// Both ends agree the session is Established.
fn wait_both_established(node: &BrindleNode, bird: &Bird, peer: &str) {
    wait_until(
        &format!("brindle peer {peer} and BIRD {P} Established"),
        CONVERGE,
        &[node, bird],
        || node.established(peer) && bird.established(P),
    );
}

/// `brindlectl node status` agrees with BIRD: Established, prefixesReceived = BIRD's exported
/// count, prefixesAdvertised = BIRD's imported count.
fn wait_status_agrees_with_bird(node: &BrindleNode, bird: &Bird, peer: &str) {
    wait_until(
        "brindle status counters agree with BIRD's route counts",
        CONVERGE,
        &[node, bird],
        || {
            let (Some(p), Some((imported, exported))) = (node.peer(peer), bird.route_counts(P))
            else {
                return false;
            };
            jstr(&p, "state") == "Established"
                && ju64(&p, "prefixesReceived") == Some(exported)
                && ju64(&p, "prefixesAdvertised") == Some(imported)
        },
    );
}

fn assert_learned(node: &BrindleNode, prefix: &str, from: &str, as_path: &[u64]) -> Value {
    let r = node
        .learned_route(prefix)
        .unwrap_or_else(|| panic!("no learned route {prefix}\n{}", node.dump()));
    assert_eq!(
        jstr(&r, "peerAddress").parse::<std::net::IpAddr>().ok(),
        from.parse().ok(),
        "peerAddress of {r}"
    );
    assert_eq!(
        jstr(&r, "nextHop").parse::<std::net::IpAddr>().ok(),
        from.parse().ok(),
        "nextHop of {r}"
    );
    let path: Vec<u64> = r["asPath"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert_eq!(path, as_path, "asPath of {r}");
    r
}

#[test]
fn bird_ibgp_ipv4_exchanges_prefixes() {
    let t = P2p::new(1);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(&t, NODE_AS, NODE_AS, false, "", &[BIRD_STATIC]),
    );
    let cfg = base_config(&t).peer("bird-v4", &t.router_v4(), NODE_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &bird, &t.router_v4());

    wait_until(
        "node block and service CIDR in BIRD",
        CONVERGE,
        &[&node, &bird],
        || bird.has_route(BLOCK) && bird.has_route(SERVICES),
    );
    let detail = bird.route_all(BLOCK);
    assert!(
        detail.contains(&format!("via {} on eth0", t.node_v4())),
        "BIRD's route to the block: {detail}"
    );
    assert!(
        detail.contains("BGP.local_pref: 100"),
        "iBGP route carries LOCAL_PREF: {detail}"
    );
    assert!(
        detail.contains("BGP.as_path: \n") || detail.contains("BGP.as_path:\n"),
        "iBGP route has an empty AS path: {detail}"
    );

    wait_until(
        "BIRD's static in brindle",
        CONVERGE,
        &[&node, &bird],
        || node.has_learned_route(BIRD_STATIC),
    );
    let r = assert_learned(&node, BIRD_STATIC, &t.router_v4(), &[]);
    assert_eq!(r["best"], Value::Bool(true), "{r}");
    assert_eq!(ju64(&r, "localPref"), Some(100), "{r}");

    wait_status_agrees_with_bird(&node, &bird, &t.router_v4());
    let p = node.peer(&t.router_v4()).unwrap();
    assert_eq!(jstr(&p, "peerType"), "nodeSpecific", "{p}");
    assert_eq!(jstr(&p, "peerTypeName"), "node specific", "{p}");
    assert_eq!(ju64(&p, "asNumber"), Some(NODE_AS as u64), "{p}");
    assert_eq!(ju64(&p, "localAsNumber"), Some(NODE_AS as u64), "{p}");
    assert_eq!(jstr(&p, "remoteRouterId"), t.router_v4(), "{p}");
    let st = node.status();
    assert_eq!(jstr(&st, "nodeName"), NODE, "{st}");
    assert_eq!(ju64(&st, "asNumber"), Some(NODE_AS as u64), "{st}");
    assert_eq!(jstr(&st, "routerId"), t.node_v4(), "{st}");
}

#[test]
fn bird_ebgp_ipv4_exchanges_prefixes() {
    let t = P2p::new(2);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(&t, ROUTER_AS, NODE_AS, false, "", &[BIRD_STATIC]),
    );
    let cfg = base_config(&t).peer("bird-v4", &t.router_v4(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &bird, &t.router_v4());

    wait_until(
        "node block and service CIDR in BIRD",
        CONVERGE,
        &[&node, &bird],
        || bird.has_route(BLOCK) && bird.has_route(SERVICES),
    );
    let detail = bird.route_all(BLOCK);
    assert!(
        detail.contains(&format!("via {} on eth0", t.node_v4())),
        "BIRD's route to the block: {detail}"
    );
    assert!(
        detail.contains(&format!("BGP.as_path: {NODE_AS}")),
        "eBGP AS path: {detail}"
    );
    assert!(
        detail.contains(&format!("BGP.next_hop: {}", t.node_v4())),
        "next hop: {detail}"
    );

    wait_until(
        "BIRD's static in brindle",
        CONVERGE,
        &[&node, &bird],
        || node.has_learned_route(BIRD_STATIC),
    );
    assert_learned(&node, BIRD_STATIC, &t.router_v4(), &[ROUTER_AS as u64]);

    wait_status_agrees_with_bird(&node, &bird, &t.router_v4());
    let p = node.peer(&t.router_v4()).unwrap();
    assert_eq!(ju64(&p, "asNumber"), Some(ROUTER_AS as u64), "{p}");
    assert_eq!(ju64(&p, "localAsNumber"), Some(NODE_AS as u64), "{p}");
    assert_eq!(ju64(&p, "sessionResets"), Some(0), "{p}");
}

#[test]
fn bird_ipv6_session_exchanges_prefixes() {
    let t = P2p::new(3);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(&t, ROUTER_AS, NODE_AS, true, "", &[BIRD_STATIC_V6]),
    );
    let cfg = base_config(&t)
        .pool("pool-v6", "fd00:65::/48", 122)
        .affinity(NODE, BLOCK_V6)
        .peer("bird-v6", &t.router_v6(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &bird, &t.router_v6());

    wait_until("node IPv6 block in BIRD", CONVERGE, &[&node, &bird], || {
        bird.has_route(BLOCK_V6)
    });
    let detail = bird.route_all(BLOCK_V6);
    assert!(
        detail.contains(&format!("BGP.as_path: {NODE_AS}")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("via {} on eth0", t.node_v6())),
        "IPv6 next hop: {detail}"
    );
    // IPv4 routes do not travel on the IPv6-only session (BIRD has only an ipv6 channel).
    assert!(
        !bird.has_route(BLOCK),
        "IPv4 block leaked into an IPv6 session\n{}",
        bird.dump()
    );

    wait_until(
        "BIRD's IPv6 static in brindle",
        CONVERGE,
        &[&node, &bird],
        || node.has_learned_route(BIRD_STATIC_V6),
    );
    assert_learned(&node, BIRD_STATIC_V6, &t.router_v6(), &[ROUTER_AS as u64]);
    wait_status_agrees_with_bird(&node, &bird, &t.router_v6());
}

#[test]
fn bird_sees_configured_communities() {
    let t = P2p::new(4);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(&t, ROUTER_AS, NODE_AS, false, "", &[]),
    );
    let cfg = base_config(&t)
        .community("tor", "65000:100")
        .prefix_advertisement(BLOCK, &["tor"])
        .prefix_advertisement(SERVICES, &["65000:200"])
        .peer("bird-v4", &t.router_v4(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &bird, &t.router_v4());
    wait_until(
        "communities on the node's routes in BIRD",
        CONVERGE,
        &[&node, &bird],
        || {
            bird.route_all(BLOCK).contains("BGP.community: (65000,100)")
                && bird
                    .route_all(SERVICES)
                    .contains("BGP.community: (65000,200)")
        },
    );
    // brindle's own view of its local routes carries them too.
    let local: Vec<Value> = node
        .route_entries(BLOCK)
        .into_iter()
        .filter(|r| r["local"] == Value::Bool(true))
        .collect();
    assert!(
        local.iter().any(|r| r["communities"]
            .as_array()
            .is_some_and(|c| c.contains(&Value::from("65000:100")))),
        "local route {BLOCK} with community 65000:100 in brindlectl node routes: {local:?}"
    );
}

#[test]
fn bird_block_affinity_removal_withdraws_within_10s() {
    let t = P2p::new(5);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(&t, ROUTER_AS, NODE_AS, false, "", &[]),
    );
    let cfg = base_config(&t).peer("bird-v4", &t.router_v4(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &bird, &t.router_v4());
    wait_until("node block in BIRD", CONVERGE, &[&node, &bird], || {
        bird.has_route(BLOCK) && bird.has_route(SERVICES)
    });

    let mut cfg2 = cfg.clone();
    cfg2.affinities.clear();
    node.rewrite_config(&cfg2.to_yaml());
    let took = wait_until(
        "block withdrawn from BIRD",
        Duration::from_secs(10),
        &[&node, &bird],
        || !bird.has_route(BLOCK),
    );
    eprintln!("BlockAffinity removal reached BIRD after {took:?}");
    assert!(
        bird.has_route(SERVICES),
        "service CIDR must stay\n{}",
        bird.dump()
    );
    assert!(bird.established(P));
    let p = node.peer(&t.router_v4()).unwrap();
    assert_eq!(
        ju64(&p, "sessionResets"),
        Some(0),
        "a config reload must not reset the session: {p}"
    );

    // And back: the block is announced again.
    node.rewrite_config(&cfg.to_yaml());
    wait_until(
        "block re-announced to BIRD",
        Duration::from_secs(10),
        &[&node, &bird],
        || bird.has_route(BLOCK),
    );
}

#[test]
fn bird_static_removal_withdraws_from_brindle() {
    let t = P2p::new(6);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(
            &t,
            ROUTER_AS,
            NODE_AS,
            false,
            "",
            &[BIRD_STATIC, "198.51.100.0/24"],
        ),
    );
    let cfg = base_config(&t).peer("bird-v4", &t.router_v4(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &bird, &t.router_v4());
    wait_until("both statics in brindle", CONVERGE, &[&node, &bird], || {
        node.has_learned_route(BIRD_STATIC) && node.has_learned_route("198.51.100.0/24")
    });
    wait_status_agrees_with_bird(&node, &bird, &t.router_v4());

    bird.reconfigure(&bird_conf(
        &t,
        ROUTER_AS,
        NODE_AS,
        false,
        "",
        &["198.51.100.0/24"],
    ));
    let took = wait_until(
        "BIRD's static withdrawn from brindle",
        Duration::from_secs(10),
        &[&node, &bird],
        || !node.has_learned_route(BIRD_STATIC),
    );
    eprintln!("BIRD static removal reached brindle after {took:?}");
    assert!(
        node.has_learned_route("198.51.100.0/24"),
        "the other route must stay\n{}",
        node.dump()
    );
    wait_status_agrees_with_bird(&node, &bird, &t.router_v4());
}

#[test]
fn bird_frozen_expires_brindle_hold_timer() {
    let t = P2p::new(7);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(
            &t,
            ROUTER_AS,
            NODE_AS,
            false,
            "hold time 6;",
            &[BIRD_STATIC],
        ),
    );
    let cfg = base_config(&t).peer("bird-v4", &t.router_v4(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &bird, &t.router_v4());
    let p = node.peer(&t.router_v4()).unwrap();
    assert_eq!(ju64(&p, "holdTime"), Some(6), "negotiated hold time: {p}");

    bird.freeze();
    let took = wait_until(
        "brindle leaves Established with a frozen BIRD",
        Duration::from_secs(10),
        &[&node],
        || !node.established(&t.router_v4()),
    );
    eprintln!("hold timer expiry detected after {took:?}");
    let p = node.peer(&t.router_v4()).unwrap();
    let err = jstr(&p, "lastError").to_lowercase();
    assert!(
        err.contains("hold"),
        "lastError should mention the hold timer: {p}"
    );
    wait_until(
        "the learned route is gone after the session dropped",
        Duration::from_secs(5),
        &[&node],
        || !node.has_learned_route(BIRD_STATIC),
    );

    bird.thaw();
    wait_both_established(&node, &bird, &t.router_v4());
    wait_until(
        "route re-learned after recovery",
        CONVERGE,
        &[&node, &bird],
        || node.has_learned_route(BIRD_STATIC),
    );
}

#[test]
fn bird_md5_matching_password_established() {
    let t = P2p::new(8);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(
            &t,
            ROUTER_AS,
            NODE_AS,
            false,
            "password \"s3cret\";",
            &[BIRD_STATIC],
        ),
    );
    let cfg = base_config(&t).peer_with_password(
        "bird-v4",
        &t.router_v4(),
        ROUTER_AS,
        Some(NODE),
        "s3cret",
    );
    let node = start_node(&t, &cfg.to_yaml());
    wait_both_established(&node, &bird, &t.router_v4());
    wait_until(
        "prefixes over the MD5 session",
        CONVERGE,
        &[&node, &bird],
        || node.has_learned_route(BIRD_STATIC) && bird.has_route(BLOCK),
    );
}

#[test]
fn bird_md5_wrong_password_never_established() {
    let t = P2p::new(9);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(
            &t,
            ROUTER_AS,
            NODE_AS,
            false,
            "password \"s3cret\";",
            &[BIRD_STATIC],
        ),
    );
    let cfg = base_config(&t).peer_with_password(
        "bird-v4",
        &t.router_v4(),
        ROUTER_AS,
        Some(NODE),
        "wrong",
    );
    let node = start_node(&t, &cfg.to_yaml());
    assert_never(
        "a session with mismatched MD5 passwords Established",
        Duration::from_secs(15),
        &[&node, &bird],
        || node.established(&t.router_v4()) || bird.established(P),
    );
    assert!(
        node.peer(&t.router_v4()).is_some(),
        "the peer is configured\n{}",
        node.dump()
    );
    let st = bird.protocol_state(P);
    assert!(st.as_deref() != Some("Established"), "BIRD state {st:?}");
}

#[test]
fn bird_md5_password_only_on_brindle_never_established() {
    let t = P2p::new(10);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(&t, ROUTER_AS, NODE_AS, false, "", &[BIRD_STATIC]),
    );
    let cfg = base_config(&t).peer_with_password(
        "bird-v4",
        &t.router_v4(),
        ROUTER_AS,
        Some(NODE),
        "s3cret",
    );
    let node = start_node(&t, &cfg.to_yaml());
    assert_never(
        "a session with MD5 on one side only Established",
        Duration::from_secs(15),
        &[&node, &bird],
        || node.established(&t.router_v4()) || bird.established(P),
    );
}

/// BIRD speaks AS 65001 while brindle's BGPPeer says 65000: brindle must reject BIRD's OPEN with
/// an OPEN Message Error / Bad Peer AS NOTIFICATION. BIRD 2.0.12 shows it as
/// `Last error: Received: Bad peer AS` (measured with FRR in harness_selftest).
#[test]
fn bird_wrong_as_gets_bad_peer_as_notification() {
    let t = P2p::new(11);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &bird_conf(&t, 65001, NODE_AS, false, "", &[BIRD_STATIC]),
    );
    let cfg = base_config(&t).peer("bird-v4", &t.router_v4(), ROUTER_AS, Some(NODE));
    let node = start_node(&t, &cfg.to_yaml());
    wait_until(
        "BIRD reports Received: Bad peer AS",
        CONVERGE,
        &[&node, &bird],
        || bird.last_error(P).as_deref() == Some("Received: Bad peer AS"),
    );
    wait_until(
        "brindle's lastError names the bad AS",
        Duration::from_secs(10),
        &[&node, &bird],
        || {
            node.peer(&t.router_v4())
                .is_some_and(|p| jstr(&p, "lastError").contains("65001"))
        },
    );
    assert!(!node.established(&t.router_v4()));
    assert!(
        !node.has_learned_route(BIRD_STATIC),
        "no route from a rejected peer\n{}",
        node.dump()
    );
}

/// The `peers` entry of the session to `addr` on `port` (several sessions share `addr`).
fn peer_on_port(node: &BrindleNode, addr: &str, port: u64) -> Option<Value> {
    let st = node.try_status().ok()?;
    st["peers"]
        .as_array()?
        .iter()
        .find(|p| jstr(p, "peerAddress") == addr && ju64(p, "peerPort") == Some(port))
        .cloned()
}

/// Two sessions to one peer address on different ports (Calico's `_port_N` peerings):
/// BIRD (AS 65000) on 179 and GoBGP (AS 65010) on 1790 share the router's address. Both
/// dial brindle-node's one listener from ephemeral ports as brindle dials them, and each
/// connection must reach its own session: both Established, each route learned from its
/// own session. BIRD and GoBGP also both send 203.0.113.0/24 with the node's AS in the
/// path: only the GoBGP session has `numAllowedLocalASNumbers: 1`, so only its copy is
/// accepted (BIRD's `allow local as 1`).
#[test]
fn bird_and_gobgp_on_one_address_two_ports_and_allow_local_as() {
    const GOBGP_AS: u32 = 65010;
    const GOBGP_NET: &str = "198.51.100.0/24";
    const LOOPED: &str = "203.0.113.0/24";
    let t = P2p::new(12);
    let bird = Bird::start(
        &t.router,
        &t.router_v4(),
        &format!(
            "protocol static st1 {{ ipv4; route {BIRD_STATIC} blackhole; route {LOOPED} blackhole; }}\n{}",
            bird_bgp(
                P,
                ROUTER_AS,
                &t.node_v4(),
                NODE_AS,
                "",
                &format!(
                    "ipv4 {{ import all; export filter {{ if net = {LOOPED} then bgp_path.prepend({NODE_AS}); if source = RTS_STATIC then accept; reject; }}; }};"
                ),
            )
        ),
    );
    let gobgp = GoBgp::start(
        &t.router,
        &gobgp_toml(GOBGP_AS, "10.255.0.2", &[(&t.node_v4(), NODE_AS)]).replacen(
            "port = 179\n",
            "port = 1790\n",
            1,
        ),
    );
    gobgp.add_route(GOBGP_NET, &["nexthop", &t.router_v4()]);
    gobgp.add_route(
        LOOPED,
        &["aspath", &NODE_AS.to_string(), "nexthop", &t.router_v4()],
    );
    let mut yaml = base_config(&t)
        .peer("bird-v4", &t.router_v4(), ROUTER_AS, Some(NODE))
        .to_yaml();
    yaml.push_str(&format!(
        "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: gobgp-1790\nspec:\n  \
         node: {NODE}\n  peerIP: \"{}:1790\"\n  asNumber: {GOBGP_AS}\n  numAllowedLocalASNumbers: 1\n",
        t.router_v4()
    ));
    let node = start_node(&t, &yaml);
    let dumps: [&dyn Dump; 3] = [&node, &bird, &gobgp];
    let router = t.router_v4();
    let up = |port: u64| {
        peer_on_port(&node, &router, port).is_some_and(|p| jstr(&p, "state") == "Established")
    };
    wait_until(
        "both sessions to the router's address Established, at both ends",
        CONVERGE,
        &dumps,
        || up(179) && up(1790) && bird.established(P) && gobgp.established(&t.node_v4()),
    );
    let b = peer_on_port(&node, &router, 179).unwrap();
    let g = peer_on_port(&node, &router, 1790).unwrap();
    assert_eq!(ju64(&b, "asNumber"), Some(ROUTER_AS as u64), "{b}");
    assert_eq!(ju64(&g, "asNumber"), Some(GOBGP_AS as u64), "{g}");
    assert_eq!(jstr(&b, "remoteRouterId"), router, "{b}");
    assert_eq!(jstr(&g, "remoteRouterId"), "10.255.0.2", "{g}");
    assert_eq!(jstr(&b, "name"), "Node_10_12_0_2", "{b}");
    assert_eq!(jstr(&g, "name"), "Node_10_12_0_2_port_1790", "{g}");

    // each route from its own session
    let from = |prefix: &str| -> Vec<(u64, Vec<u64>)> {
        node.route_entries(prefix)
            .iter()
            .filter(|r| r["local"] != Value::Bool(true))
            .map(|r| {
                let path = r["asPath"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                (ju64(r, "peerPort").unwrap_or(0), path)
            })
            .collect()
    };
    wait_until("routes from both sessions", CONVERGE, &dumps, || {
        !from(BIRD_STATIC).is_empty() && !from(GOBGP_NET).is_empty() && !from(LOOPED).is_empty()
    });
    assert_eq!(from(BIRD_STATIC), vec![(179, vec![ROUTER_AS as u64])]);
    assert_eq!(from(GOBGP_NET), vec![(1790, vec![GOBGP_AS as u64])]);
    // the looped route: only GoBGP's copy (AS path 65010 64512) is accepted
    assert_eq!(
        from(LOOPED),
        vec![(1790, vec![GOBGP_AS as u64, NODE_AS as u64])]
    );
    wait_until("per-session counters", CONVERGE, &dumps, || {
        let (Some(b), Some(g)) = (
            peer_on_port(&node, &router, 179),
            peer_on_port(&node, &router, 1790),
        ) else {
            return false;
        };
        ju64(&b, "prefixesReceived") == Some(2)
            && ju64(&b, "prefixesAccepted") == Some(1)
            && ju64(&g, "prefixesReceived") == Some(2)
            && ju64(&g, "prefixesAccepted") == Some(2)
    });

    // the node's block reached both routers
    wait_until("node block in BIRD and GoBGP", CONVERGE, &dumps, || {
        bird.has_route(BLOCK) && gobgp.has_route(BLOCK)
    });

    // calicoctl's table tells the two apart as calicoctl would
    let table = node.status_table();
    assert!(table.contains("| 10.12.0.2 "), "{table}");
    assert!(table.contains("| 10.12.0.2.port.1790 "), "{table}");

    // brindle's sessions were not reset by connections meant for the other one
    let resets = |port: u64| {
        peer_on_port(&node, &router, port)
            .and_then(|p| ju64(&p, "sessionResets"))
            .unwrap_or(99)
    };
    assert_never("a session reset", Duration::from_secs(5), &dumps, || {
        !(up(179) && up(1790))
    });
    assert_eq!((resets(179), resets(1790)), (0, 0), "{}", node.dump());
}
