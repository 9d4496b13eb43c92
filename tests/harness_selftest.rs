//! Self-tests of the interop harness without brindle: real daemons peer with each other in
//! namespaces. They prove the harness (namespaces, veth, daemon start/stop, parsers) and the
//! daemons on this machine work, so a failing brindle interop test points at brindle.

mod common;

use common::*;
use std::time::Duration;

const BIRD_V4: &str = "ipv4 { import all; export all; };";
const BIRD_V6: &str = "ipv6 { import all; export all; };";

/// BIRD (AS 64512, node side) and FRR (AS 64512, router side): iBGP IPv4 comes up, a BIRD
/// static route reaches FRR, an FRR `network` reaches BIRD, and both withdraw.
#[test]
fn selftest_bird_frr_ibgp_ipv4_exchanges_and_withdraws_prefixes() {
    let t = P2p::new(1);
    let bird_body = |with_static: bool| {
        let stat = if with_static {
            "protocol static st1 { ipv4; route 192.0.2.0/24 blackhole; }\n"
        } else {
            "protocol static st1 { ipv4; }\n"
        };
        format!(
            "{stat}{}",
            bird_bgp("frr1", 64512, &t.router_v4(), 64512, "", BIRD_V4)
        )
    };
    let bird = Bird::start(&t.node, &t.node_v4(), &bird_body(true));
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(
            64512,
            &t.router_v4(),
            &[(&t.node_v4(), 64512)],
            &["198.51.100.0/24"],
            &[],
        ),
    );
    let dumps: [&dyn Dump; 2] = [&bird, &frr];

    let took = wait_until("BIRD and FRR Established", CONVERGE, &dumps, || {
        bird.established("frr1") && frr.established(&t.node_v4())
    });
    eprintln!("BIRD<->FRR iBGP Established after {took:?}");

    wait_until("198.51.100.0/24 in BIRD", CONVERGE, &dumps, || {
        bird.has_route("198.51.100.0/24")
    });
    wait_until("192.0.2.0/24 in FRR", CONVERGE, &dumps, || {
        frr.has_route("192.0.2.0/24")
    });
    assert_eq!(
        bird.route_counts("frr1"),
        Some((1, 1)),
        "{}",
        bird.protocol_all("frr1")
    );
    let path = &frr.route("192.0.2.0/24").unwrap()[0];
    assert_eq!(
        jstr(&path["nexthops"][0], "ip"),
        t.node_v4(),
        "next hop of BIRD's route in FRR: {path}"
    );

    // Withdraw from BIRD (reconfigure without the static route).
    bird.reconfigure(&bird_body(false));
    wait_until(
        "192.0.2.0/24 withdrawn from FRR",
        Duration::from_secs(10),
        &dumps,
        || !frr.has_route("192.0.2.0/24"),
    );
    // Withdraw from FRR.
    frr.configure(&[
        "router bgp 64512",
        "address-family ipv4 unicast",
        "no network 198.51.100.0/24",
    ]);
    wait_until(
        "198.51.100.0/24 withdrawn from BIRD",
        Duration::from_secs(10),
        &dumps,
        || !bird.has_route("198.51.100.0/24"),
    );
    assert!(
        bird.established("frr1"),
        "session must survive the withdrawals"
    );
}

/// BIRD (AS 64512) and GoBGP (AS 65000): eBGP IPv4, prefixes both ways, withdrawals both ways.
#[test]
fn selftest_bird_gobgp_ebgp_ipv4_exchanges_and_withdraws_prefixes() {
    let t = P2p::new(2);
    let bird_body = |with_static: bool| {
        let stat = if with_static {
            "protocol static st1 { ipv4; route 192.0.2.0/24 blackhole; }\n"
        } else {
            "protocol static st1 { ipv4; }\n"
        };
        format!(
            "{stat}{}",
            bird_bgp("gobgp1", 64512, &t.router_v4(), 65000, "", BIRD_V4)
        )
    };
    let bird = Bird::start(&t.node, &t.node_v4(), &bird_body(true));
    let gobgp = GoBgp::start(
        &t.router,
        &gobgp_toml(65000, &t.router_v4(), &[(&t.node_v4(), 64512)]),
    );
    let dumps: [&dyn Dump; 2] = [&bird, &gobgp];

    let took = wait_until("BIRD and GoBGP Established", CONVERGE, &dumps, || {
        bird.established("gobgp1") && gobgp.established(&t.node_v4())
    });
    eprintln!("BIRD<->GoBGP eBGP Established after {took:?}");

    gobgp.add_route("203.0.113.0/24", &["community", "65000:100"]);
    wait_until("203.0.113.0/24 in BIRD", CONVERGE, &dumps, || {
        bird.has_route("203.0.113.0/24")
    });
    let detail = bird.route_all("203.0.113.0/24");
    assert!(
        detail.contains("BGP.community: (65000,100)"),
        "community in BIRD: {detail}"
    );
    assert!(
        detail.contains("BGP.as_path: 65000"),
        "as path in BIRD: {detail}"
    );
    wait_until("192.0.2.0/24 in GoBGP", CONVERGE, &dumps, || {
        gobgp.has_route("192.0.2.0/24")
    });

    gobgp.del_route("203.0.113.0/24");
    wait_until(
        "203.0.113.0/24 withdrawn from BIRD",
        Duration::from_secs(10),
        &dumps,
        || !bird.has_route("203.0.113.0/24"),
    );
    bird.reconfigure(&bird_body(false));
    wait_until(
        "192.0.2.0/24 withdrawn from GoBGP",
        Duration::from_secs(10),
        &dumps,
        || !gobgp.has_route("192.0.2.0/24"),
    );
}

/// BIRD and FRR over IPv6 (ipv6 channel / ipv6 unicast address family only).
#[test]
fn selftest_bird_frr_ebgp_ipv6_exchanges_prefixes() {
    let t = P2p::new(3);
    let body = format!(
        "protocol static st6 {{ ipv6; route 2001:db8:1::/48 blackhole; }}\n{}",
        bird_bgp("frr6", 64512, &t.router_v6(), 65000, "", BIRD_V6)
    );
    let bird = Bird::start(&t.node, &t.node_v4(), &body);
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(
            65000,
            &t.router_v4(),
            &[(&t.node_v6(), 64512)],
            &["2001:db8:2::/48"],
            &[],
        ),
    );
    let dumps: [&dyn Dump; 2] = [&bird, &frr];
    wait_until("BIRD and FRR IPv6 Established", CONVERGE, &dumps, || {
        bird.established("frr6") && frr.established(&t.node_v6())
    });
    wait_until("2001:db8:2::/48 in BIRD", CONVERGE, &dumps, || {
        bird.has_route("2001:db8:2::/48")
    });
    wait_until("2001:db8:1::/48 in FRR", CONVERGE, &dumps, || {
        frr.has_route("2001:db8:1::/48")
    });
}

/// FRR configured to expect AS 65001 from a BIRD that speaks AS 65000: FRR answers BIRD's OPEN
/// with a Bad Peer AS NOTIFICATION, and BIRD reports it as "Received: Bad peer AS".
#[test]
fn selftest_bird_reports_bad_peer_as_notification() {
    let t = P2p::new(4);
    let bird = Bird::start(
        &t.node,
        &t.node_v4(),
        &bird_bgp("frr1", 65000, &t.router_v4(), 64512, "", BIRD_V4),
    );
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(64512, &t.router_v4(), &[(&t.node_v4(), 65001)], &[], &[]),
    );
    let dumps: [&dyn Dump; 2] = [&bird, &frr];
    wait_until(
        "BIRD Last error: Received: Bad peer AS",
        CONVERGE,
        &dumps,
        || bird.last_error("frr1").as_deref() == Some("Received: Bad peer AS"),
    );
    assert!(!bird.established("frr1"));
    let n = frr.neighbor(&t.node_v4()).unwrap();
    eprintln!(
        "FRR lastResetDueTo: {:?}; BIRD: {:?}",
        n.get("lastResetDueTo"),
        bird.last_error("frr1")
    );
}

/// TCP MD5 between BIRD and FRR: the same password → Established.
#[test]
fn selftest_bird_frr_md5_password_established() {
    let t = P2p::new(5);
    let bird = Bird::start(
        &t.node,
        &t.node_v4(),
        &bird_bgp(
            "frr1",
            64512,
            &t.router_v4(),
            65000,
            "password \"s3cret\";",
            BIRD_V4,
        ),
    );
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(
            65000,
            &t.router_v4(),
            &[(&t.node_v4(), 64512)],
            &[],
            &[&format!("neighbor {} password s3cret", t.node_v4())],
        ),
    );
    let dumps: [&dyn Dump; 2] = [&bird, &frr];
    wait_until("MD5 session Established", CONVERGE, &dumps, || {
        bird.established("frr1") && frr.established(&t.node_v4())
    });
}

/// TCP MD5 with different passwords → never Established.
#[test]
fn selftest_bird_frr_md5_wrong_password_never_established() {
    let t = P2p::new(6);
    let bird = Bird::start(
        &t.node,
        &t.node_v4(),
        &bird_bgp(
            "frr1",
            64512,
            &t.router_v4(),
            65000,
            "password \"s3cret\";",
            BIRD_V4,
        ),
    );
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(
            65000,
            &t.router_v4(),
            &[(&t.node_v4(), 64512)],
            &[],
            &[&format!("neighbor {} password wrong", t.node_v4())],
        ),
    );
    let dumps: [&dyn Dump; 2] = [&bird, &frr];
    assert_never(
        "an MD5 session with mismatched passwords Established",
        Duration::from_secs(8),
        &dumps,
        || bird.established("frr1") || frr.established(&t.node_v4()),
    );
}

/// A frozen BIRD (SIGSTOP, `hold time 6`) makes FRR's hold timer expire.
#[test]
fn selftest_frozen_bird_expires_frr_hold_timer() {
    let t = P2p::new(7);
    let bird = Bird::start(
        &t.node,
        &t.node_v4(),
        &bird_bgp(
            "frr1",
            64512,
            &t.router_v4(),
            65000,
            "hold time 6;",
            BIRD_V4,
        ),
    );
    let frr = Frr::start(
        &t.router,
        &frr_router_bgp(65000, &t.router_v4(), &[(&t.node_v4(), 64512)], &[], &[]),
    );
    let dumps: [&dyn Dump; 2] = [&bird, &frr];
    wait_until("Established", CONVERGE, &dumps, || {
        bird.established("frr1") && frr.established(&t.node_v4())
    });
    let n = frr.neighbor(&t.node_v4()).unwrap();
    assert_eq!(
        ju64(&n, "bgpTimerHoldTimeMsecs"),
        Some(6000),
        "negotiated hold time: {n}"
    );
    bird.freeze();
    let took = wait_until(
        "FRR leaves Established",
        Duration::from_secs(12),
        &dumps,
        || !frr.established(&t.node_v4()),
    );
    let n = frr.neighbor(&t.node_v4()).unwrap();
    eprintln!(
        "FRR dropped a frozen BIRD after {took:?}: lastResetDueTo={:?}",
        n.get("lastResetDueTo")
    );
    bird.thaw();
    wait_until("re-Established after SIGCONT", CONVERGE, &dumps, || {
        bird.established("frr1") && frr.established(&t.node_v4())
    });
}
