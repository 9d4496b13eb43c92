//! Kernel tests of the dataplane in throw-away network namespaces (root required; the
//! root namespace is never touched). Each test takes 1–6 s.

mod common;

use brindle_felix::calc::{WarningCode, VXLAN_IFACE};
use brindle_felix::dataplane::{ApplyReport, Dataplane, DataplaneConfig};
use brindle_felix::model::{EncapMode, LocalEndpoint, Model, Pool, RemoteNode};
use common::*;
use std::time::Duration;

fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> Pool {
    Pool {
        cidr: cidr.parse().unwrap(),
        block_size: 26,
        ipip_mode: ipip,
        vxlan_mode: vxlan,
        nat_outgoing: false,
        disabled: false,
    }
}

fn endpoint(p: &Pod) -> LocalEndpoint {
    LocalEndpoint {
        iface: p.host_iface.clone(),
        ips: vec![format!("{}/32", p.ip).parse().unwrap()],
        mac: Some(p.mac.clone()),
    }
}

fn cfg() -> DataplaneConfig {
    DataplaneConfig {
        request_timeout: Duration::from_secs(5),
        // these tests remove endpoints from the model while their veth still exists
        unclaimed_route_grace: Duration::ZERO,
        ..Default::default()
    }
}

/// Applies `model` once in `ns` with a fresh Dataplane.
fn apply(ns: &Netns, model: &Model, cfg: DataplaneConfig) -> ApplyReport {
    let model = model.clone();
    in_ns(ns, move || async move {
        let mut dp = Dataplane::new(cfg).expect("dataplane");
        dp.apply(&model).await
    })
}

/// Sends a ping from `pod` with a source outside its addresses (routed elsewhere by the
/// node); whether the node's reverse-path filter counted a drop.
fn spoof_dropped(node: &Netns, pod: &Pod, dst: &str) -> bool {
    let _ = pod.ns.try_ip("addr add 10.99.99.99/32 dev eth0");
    let before = rpf_drops(node);
    let _ = pod.ns.sh(&format!("ping -c 1 -W 1 -I 10.99.99.99 {dst}"));
    rpf_drops(node) > before
}

fn assert_clean(r: &ApplyReport) {
    assert!(r.errors.is_empty(), "errors: {:#?}", r.errors);
}

/// A node with an uplink and two pods; `model` describes them.
struct OnePodNode {
    node: Netns,
    _world: Netns,
    pods: Vec<Pod>,
    model: Model,
}

fn one_node() -> OnePodNode {
    let node = Netns::new();
    let world = add_uplink(&node, "192.168.50.1", "192.168.50.254");
    rp_baseline(&node, 0, 0);
    node.ip("addr add 192.168.77.1/32 dev lo");
    let pods = vec![
        add_pod(&node, "cali0000000000a", "10.65.0.5"),
        add_pod(&node, "cali0000000000b", "10.65.0.6"),
    ];
    let model = Model {
        node_name: "node-a".into(),
        node_ipv4: Some("192.168.50.1/24".parse().unwrap()),
        pools: vec![pool("10.65.0.0/16", EncapMode::Never, EncapMode::Never)],
        own_blocks: vec!["10.65.0.0/26".parse().unwrap()],
        endpoints: pods.iter().map(endpoint).collect(),
        ..Default::default()
    };
    OnePodNode {
        node,
        _world: world,
        pods,
        model,
    }
}

#[test]
fn pod_routes_neighbours_sysctls_mtu_and_ping() {
    let t = one_node();
    let state = std::env::temp_dir().join(format!("fx-state-{}-a", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let before_ping = t.pods[0].ns.ping("192.168.77.1");
    assert!(
        !before_ping,
        "the pod must not reach the node before felix configured it"
    );

    let r = apply(
        &t.node,
        &t.model,
        DataplaneConfig {
            state_dir: Some(state.clone()),
            ..cfg()
        },
    );
    assert_clean(&r);
    assert_eq!(r.routes_added, 3, "{r:#?}");
    assert_eq!(r.neighbours_added, 2);
    assert_eq!(r.pending, 0);
    assert_eq!((r.host_mtu, r.pod_mtu), (1500, 1500));
    assert_eq!(brindle_felix::endpoint::read_mtu(&state), Some(1500));

    let routes = t.node.own_routes();
    assert!(
        routes.contains("10.65.0.5 dev cali0000000000a scope link"),
        "{routes}"
    );
    assert!(
        routes.contains("10.65.0.6 dev cali0000000000b scope link"),
        "{routes}"
    );
    assert!(routes.contains("blackhole 10.65.0.0/26"), "{routes}");
    let neigh = t.node.ip("neigh show dev cali0000000000a");
    assert!(
        neigh.contains(&format!("10.65.0.5 lladdr {} PERMANENT", t.pods[0].mac)),
        "{neigh}"
    );
    assert!(t.node.ip("neigh show proto 80").contains("10.65.0.6"));
    for (k, v) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/cali0000000000a/proxy_arp", "1"),
        ("net/ipv4/conf/cali0000000000a/forwarding", "1"),
        ("net/ipv4/conf/cali0000000000a/route_localnet", "1"),
        ("net/ipv4/conf/cali0000000000a/rp_filter", "1"),
        ("net/ipv4/neigh/cali0000000000a/proxy_delay", "0"),
        ("net/ipv6/conf/cali0000000000a/accept_ra", "0"),
        ("net/ipv6/conf/cali0000000000a/proxy_ndp", "1"),
        ("net/ipv6/conf/cali0000000000a/forwarding", "1"),
        ("net/ipv4/conf/cali0000000000b/rp_filter", "1"),
    ] {
        assert_eq!(t.node.sysctl(k), v, "{k}");
    }
    // pod -> host address, pod -> pod through the node
    assert!(t.pods[0].ns.ping("192.168.77.1"), "pod -> node address");
    assert!(t.pods[0].ns.ping("10.65.0.6"), "pod -> pod");
    assert!(t.pods[1].ns.ping("10.65.0.5"), "pod -> pod, other way");
    // anti-spoofing: a pod sourcing another address is dropped by strict rp_filter
    assert!(
        spoof_dropped(&t.node, &t.pods[0], "10.65.0.6"),
        "spoofed source must be dropped by rp_filter"
    );

    // a second apply changes nothing
    let r2 = apply(
        &t.node,
        &t.model,
        DataplaneConfig {
            state_dir: Some(state.clone()),
            ..cfg()
        },
    );
    assert_clean(&r2);
    assert_eq!(r2.changes(), 0, "{r2:#?}");
    assert_eq!(r2.routes_programmed, 3);

    // an endpoint removed from the model loses its route and neighbour entry
    let mut m = t.model.clone();
    m.endpoints.pop();
    let r3 = apply(&t.node, &m, cfg());
    assert_eq!(
        (r3.routes_removed, r3.neighbours_removed),
        (1, 1),
        "{r3:#?}"
    );
    assert!(!t.node.own_routes().contains("10.65.0.6"));
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn endpoint_whose_veth_does_not_exist_yet_is_pending_then_programmed() {
    let t = one_node();
    let mut m = t.model.clone();
    m.endpoints.push(LocalEndpoint {
        iface: "cali0000000000c".into(),
        ips: vec!["10.65.0.7/32".parse().unwrap()],
        mac: Some("02:00:00:00:00:07".into()),
    });
    let r = apply(&t.node, &m, cfg());
    assert_clean(&r);
    assert!(
        r.pending >= 2,
        "route, neighbour and sysctls wait for the interface: {r:#?}"
    );
    let _pod = add_pod(&t.node, "cali0000000000c", "10.65.0.7");
    let r = apply(&t.node, &m, cfg());
    assert_clean(&r);
    assert_eq!(r.pending, 0, "{r:#?}");
    assert!(t
        .node
        .own_routes()
        .contains("10.65.0.7 dev cali0000000000c"));
}

#[test]
fn other_protocols_untouched_ecmp_and_cleanup() {
    let t = one_node();
    t._world.ip("addr add 192.168.50.253/24 dev up0");
    t.node
        .ip("route add 10.99.0.0/24 via 192.168.50.254 proto static");
    t.node
        .ip("route add 10.98.0.0/24 via 192.168.50.254 proto 12");
    t.node
        .ip("route add 10.97.0.0/24 via 192.168.50.254 proto static"); // holds a key Brindle wants
    let before: Vec<String> = ["10.99.0.0/24", "10.98.0.0/24", "10.97.0.0/24"]
        .iter()
        .map(|p| t.node.ip(&format!("route show {p}")))
        .collect();
    let mut m = t.model.clone();
    m.learned.insert(
        "10.100.0.0/24".parse().unwrap(),
        vec![
            "192.168.50.253".parse().unwrap(),
            "192.168.50.254".parse().unwrap(),
        ],
    );
    m.learned.insert(
        "10.97.0.0/24".parse().unwrap(),
        vec!["192.168.50.253".parse().unwrap()],
    );
    let r = apply(&t.node, &m, cfg());
    assert_clean(&r);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.code == WarningCode::ForeignRoute && w.message.contains("10.97.0.0/24")),
        "{:#?}",
        r.warnings
    );

    let ecmp = t.node.ip("route show 10.100.0.0/24");
    assert!(ecmp.contains("proto 80"), "{ecmp}");
    assert!(
        ecmp.contains("nexthop via 192.168.50.253 dev eth0")
            && ecmp.contains("nexthop via 192.168.50.254 dev eth0"),
        "{ecmp}"
    );
    let after: Vec<String> = ["10.99.0.0/24", "10.98.0.0/24", "10.97.0.0/24"]
        .iter()
        .map(|p| t.node.ip(&format!("route show {p}")))
        .collect();
    assert_eq!(before, after, "routes of other protocols must be untouched");
    // a second apply: the ECMP route is recognised, nothing changes
    let r2 = apply(&t.node, &m, cfg());
    assert_eq!(r2.changes(), 0, "{r2:#?}");

    // cleanup removes Brindle's routes and neighbours, nothing else
    let c = in_ns(&t.node, || async {
        brindle_felix::cleanup().await.expect("cleanup")
    });
    assert!(c.errors.is_empty(), "{c:#?}");
    assert_eq!(c.routes_removed, 4, "{c:#?}");
    assert_eq!(c.neighbours_removed, 2);
    assert_eq!(t.node.own_routes().trim(), "");
    assert_eq!(t.node.ip("neigh show proto 80").trim(), "");
    let after: Vec<String> = ["10.99.0.0/24", "10.98.0.0/24", "10.97.0.0/24"]
        .iter()
        .map(|p| t.node.ip(&format!("route show {p}")))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn restart_keeps_routes_and_a_new_dataplane_adopts_them_without_churn() {
    let t = one_node();
    let mut m = t.model.clone();
    m.learned.insert(
        "10.100.0.0/24".parse().unwrap(),
        vec!["192.168.50.254".parse().unwrap()],
    );
    let r = apply(&t.node, &m, cfg()); // the Dataplane is dropped at the end of the thread
    assert_clean(&r);
    let routes = t.node.own_routes();
    assert_eq!(routes.lines().count(), 4, "{routes}");
    let r2 = apply(&t.node, &m, cfg());
    assert_clean(&r2);
    assert_eq!(r2.changes(), 0, "{r2:#?}");
    assert_eq!(r2.routes_programmed, 4);
    assert_eq!(t.node.own_routes(), routes);
}

#[test]
fn run_loop_repairs_hand_changes_and_follows_the_model() {
    let t = one_node();
    let (tx, rx) = tokio::sync::watch::channel(t.model.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (rep_tx, rep_rx) = std::sync::mpsc::channel::<ApplyReport>();
    let h = spawn_in_ns(&t.node, move || async move {
        // a long resync: repairs must come from kernel events
        let mut dp = Dataplane::new(DataplaneConfig {
            resync_interval: Duration::from_secs(300),
            ..cfg()
        })
        .unwrap();
        dp.run(rx, move |r| drop(rep_tx.send(r.clone())), async move {
            drop(stop_rx.await)
        })
        .await
    });
    let first = rep_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("first apply");
    assert_clean(&first);
    assert!(t
        .node
        .own_routes()
        .contains("10.65.0.5 dev cali0000000000a"));

    // hand-deleted route
    t.node.ip("route del 10.65.0.5/32 dev cali0000000000a");
    let back = wait_for(Duration::from_secs(5), || {
        t.node
            .own_routes()
            .contains("10.65.0.5 dev cali0000000000a")
    });
    assert!(back.is_some(), "hand-deleted route not restored within 5 s");
    eprintln!("route restored after {:?}", back.unwrap());

    // hand-deleted blackhole and hand-replaced route (other device)
    t.node.ip("route del blackhole 10.65.0.0/26");
    t.node
        .ip("route replace 10.65.0.6/32 dev cali0000000000a proto 80 scope link");
    let back = wait_for(Duration::from_secs(5), || {
        let r = t.node.own_routes();
        r.contains("blackhole 10.65.0.0/26") && r.contains("10.65.0.6 dev cali0000000000b")
    });
    assert!(
        back.is_some(),
        "routes not repaired: {}",
        t.node.own_routes()
    );

    // hand-changed sysctls (rp_filter raises a netconf event; proxy_arp too)
    t.node
        .set_sysctl("net/ipv4/conf/cali0000000000a/rp_filter", "0");
    let back = wait_for(Duration::from_secs(5), || {
        t.node.sysctl("net/ipv4/conf/cali0000000000a/rp_filter") == "1"
    });
    assert!(
        back.is_some(),
        "hand-changed rp_filter not restored within 5 s"
    );
    eprintln!("rp_filter restored after {:?}", back.unwrap());
    t.node
        .set_sysctl("net/ipv4/conf/cali0000000000b/proxy_arp", "0");
    assert!(
        wait_for(Duration::from_secs(5), || t
            .node
            .sysctl("net/ipv4/conf/cali0000000000b/proxy_arp")
            == "1")
        .is_some(),
        "proxy_arp not restored"
    );

    // hand-deleted neighbour entry
    t.node.ip("neigh del 10.65.0.5 dev cali0000000000a");
    assert!(
        wait_for(Duration::from_secs(5), || t
            .node
            .ip("neigh show proto 80")
            .contains("10.65.0.5"))
        .is_some(),
        "neighbour not restored"
    );

    // model change: a learned route appears, then an endpoint goes
    let mut m = t.model.clone();
    m.learned.insert(
        "10.100.0.0/24".parse().unwrap(),
        vec!["192.168.50.254".parse().unwrap()],
    );
    tx.send(m.clone()).unwrap();
    assert!(wait_for(Duration::from_secs(5), || t
        .node
        .own_routes()
        .contains("10.100.0.0/24 via 192.168.50.254"))
    .is_some());
    m.endpoints.pop();
    tx.send(m).unwrap();
    assert!(wait_for(Duration::from_secs(5), || !t
        .node
        .own_routes()
        .contains("10.65.0.6"))
    .is_some());

    // stop: the routes stay
    let routes = t.node.own_routes();
    stop_tx.send(()).unwrap();
    h.join().unwrap().unwrap();
    assert_eq!(t.node.own_routes(), routes);
    let reports: Vec<ApplyReport> = rep_rx.try_iter().collect();
    assert!(reports.iter().all(|r| r.errors.is_empty()), "{reports:#?}");
    eprintln!("{} applies after the first", reports.len());
}

#[test]
fn rp_filter_all_loose_is_normalized_so_pods_are_strict() {
    let t = one_node();
    rp_baseline(&t.node, 2, 2);
    t.node.set_sysctl("net/ipv4/conf/eth0/rp_filter", "0");
    t.node.set_sysctl("net/ipv4/conf/lo/rp_filter", "1");
    let r = apply(&t.node, &t.model, cfg());
    assert_clean(&r);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.code == WarningCode::RpFilterNormalized),
        "{:#?}",
        r.warnings
    );
    assert_eq!(t.node.sysctl("net/ipv4/conf/all/rp_filter"), "0");
    assert_eq!(t.node.sysctl("net/ipv4/conf/default/rp_filter"), "2");
    // effective values of the other interfaces are unchanged: max(all=2, own) = 2
    assert_eq!(t.node.sysctl("net/ipv4/conf/eth0/rp_filter"), "2");
    assert_eq!(t.node.sysctl("net/ipv4/conf/lo/rp_filter"), "2");
    assert_eq!(
        t.node.sysctl("net/ipv4/conf/cali0000000000a/rp_filter"),
        "1"
    );
    // strict on the pod side now: a spoofed source is dropped, the real one passes
    assert!(t.pods[0].ns.ping("10.65.0.6"));
    assert!(
        spoof_dropped(&t.node, &t.pods[0], "10.65.0.6"),
        "spoofed source must be dropped by rp_filter"
    );
    // ReportOnly: a namespace left at all=2 gets a warning and no global change
    rp_baseline(&t.node, 2, 2);
    let r = apply(
        &t.node,
        &t.model,
        DataplaneConfig {
            rp_filter_policy: brindle_felix::RpFilterPolicy::ReportOnly,
            ..cfg()
        },
    );
    assert!(
        r.warnings.iter().any(|w| w.code == WarningCode::RpFilter),
        "{:#?}",
        r.warnings
    );
    assert_eq!(t.node.sysctl("net/ipv4/conf/all/rp_filter"), "2");
}

/// Two nodes joined by an underlay veth; a pod on each; VXLAN pool.
#[test]
fn vxlan_pod_to_pod_across_two_nodes() {
    let a = Netns::new();
    let b = Netns::new();
    a.ip(&format!(
        "link add eth0 type veth peer name eth0 netns {}",
        b.name
    ));
    a.ip("addr add 192.168.60.1/24 dev eth0");
    b.ip("addr add 192.168.60.2/24 dev eth0");
    a.ip("link set eth0 up");
    b.ip("link set eth0 up");
    // a default route so that proxy ARP answers for 169.254.1.1
    a.ip("route add default via 192.168.60.2");
    b.ip("route add default via 192.168.60.1");
    rp_baseline(&a, 0, 0);
    rp_baseline(&b, 0, 0);
    let pa = add_pod(&a, "cali00000000001", "10.65.1.5");
    let pb = add_pod(&b, "cali00000000002", "10.65.2.5");
    let remote = |name: &str, ip: &str, tun: &str, block: &str| RemoteNode {
        name: name.into(),
        ipv4: Some(ip.parse().unwrap()),
        ipv6: None,
        ipip_tunnel_addr: None,
        vxlan_tunnel_addr: Some(tun.parse().unwrap()),
        vxlan_mac: None,
        blocks: vec![block.parse().unwrap()],
    };
    let model = |me: &str, ip: &str, tun: &str, block: &str, pod: &Pod, other: RemoteNode| Model {
        node_name: me.into(),
        node_ipv4: Some(ip.parse().unwrap()),
        pools: vec![pool("10.65.0.0/16", EncapMode::Never, EncapMode::Always)],
        own_blocks: vec![block.parse().unwrap()],
        endpoints: vec![endpoint(pod)],
        remote_nodes: vec![other],
        vxlan_tunnel_addr: Some(tun.parse().unwrap()),
        ..Default::default()
    };
    let ma = model(
        "node-a",
        "192.168.60.1/24",
        "10.65.1.0",
        "10.65.1.0/26",
        &pa,
        remote("node-b", "192.168.60.2/24", "10.65.2.0", "10.65.2.0/26"),
    );
    let mb = model(
        "node-b",
        "192.168.60.2/24",
        "10.65.2.0",
        "10.65.2.0/26",
        &pb,
        remote("node-a", "192.168.60.1/24", "10.65.1.0", "10.65.1.0/26"),
    );
    let ra = apply(&a, &ma, cfg());
    let rb = apply(&b, &mb, cfg());
    assert_clean(&ra);
    assert_clean(&rb);
    assert_eq!(ra.pod_mtu, 1450);

    let link = a.ip(&format!("-d link show dev {VXLAN_IFACE}"));
    assert!(
        link.contains("mtu 1450")
            && link.contains("vxlan id 4096")
            && link.contains("dstport 4789")
            && link.contains("local 192.168.60.1")
            && link.contains("nolearning"),
        "{link}"
    );
    assert!(
        link.contains(&brindle_felix::calc::vxlan_mac("node-a").to_string()),
        "{link}"
    );
    assert!(a
        .ip(&format!("-4 addr show dev {VXLAN_IFACE}"))
        .contains("10.65.1.0/32"));
    let routes = a.own_routes();
    assert!(
        routes.contains(&format!(
            "10.65.2.0/26 via 10.65.2.0 dev {VXLAN_IFACE} onlink"
        )),
        "{routes}"
    );
    let mac_b = brindle_felix::calc::vxlan_mac("node-b").to_string();
    assert!(a
        .ip(&format!("neigh show dev {VXLAN_IFACE}"))
        .contains(&format!("10.65.2.0 lladdr {mac_b} PERMANENT")));
    let fdb = run_ok(
        "bridge",
        &["-n", &a.name, "fdb", "show", "dev", VXLAN_IFACE],
    );
    assert!(
        fdb.contains(&format!("{mac_b} dst 192.168.60.2 self permanent")),
        "{fdb}"
    );

    assert!(pa.ns.ping("10.65.2.5"), "pod a -> pod b over VXLAN");
    assert!(pb.ns.ping("10.65.1.5"), "pod b -> pod a over VXLAN");

    // idempotent, and the device goes away when VXLAN is no longer used
    let again = apply(&a, &ma, cfg());
    assert_eq!(again.changes(), 0, "{again:#?}");
    let mut plain = ma.clone();
    plain.pools = vec![pool("10.65.0.0/16", EncapMode::Never, EncapMode::Never)];
    let r = apply(&a, &plain, cfg());
    assert_clean(&r);
    assert!(
        !a.try_ip(&format!("link show dev {VXLAN_IFACE}")).0,
        "vxlan device should be deleted"
    );
    assert_eq!(r.pod_mtu, 1500);
}

#[test]
fn ipv6_pod_routes_blackhole_and_ecmp() {
    let t = one_node();
    t.node.ip("addr add fd00:50::1/64 dev eth0 nodad");
    t._world.ip("addr add fd00:50::fd/64 dev up0 nodad");
    t._world.ip("addr add fd00:50::fe/64 dev up0 nodad");
    let mut m = t.model.clone();
    m.endpoints[0].ips.push("fd00:65::5/128".parse().unwrap());
    m.own_blocks.push("fd00:65::/122".parse().unwrap());
    m.learned.insert(
        "fd00:70::/64".parse().unwrap(),
        vec![
            "fd00:50::fd".parse().unwrap(),
            "fd00:50::fe".parse().unwrap(),
        ],
    );
    m.learned.insert(
        "fd00:71::/64".parse().unwrap(),
        vec!["fd00:50::fe".parse().unwrap()],
    );
    let r = apply(&t.node, &m, cfg());
    assert_clean(&r);
    let v6 = t.node.ip("-6 route show proto 80");
    assert!(
        v6.contains("fd00:65::5 dev cali0000000000a metric 1024"),
        "{v6}"
    );
    assert!(v6.contains("blackhole fd00:65::/122"), "{v6}");
    assert!(v6.contains("fd00:71::/64 via fd00:50::fe dev eth0"), "{v6}");
    assert!(
        v6.contains("nexthop via fd00:50::fd dev eth0")
            && v6.contains("nexthop via fd00:50::fe dev eth0"),
        "{v6}"
    );
    assert!(t.node.ip("-6 neigh show proto 80").contains(&format!(
        "fd00:65::5 dev cali0000000000a lladdr {} PERMANENT",
        t.pods[0].mac
    )));
    assert_eq!(t.node.sysctl("net/ipv6/conf/all/forwarding"), "1");
    let r2 = apply(&t.node, &m, cfg());
    assert_clean(&r2);
    assert_eq!(r2.changes(), 0, "IPv6 routes must be recognised: {r2:#?}");
    // the ECMP set shrinks to one next hop
    m.learned.insert(
        "fd00:70::/64".parse().unwrap(),
        vec!["fd00:50::fd".parse().unwrap()],
    );
    let r3 = apply(&t.node, &m, cfg());
    assert_clean(&r3);
    let v6 = t.node.ip("-6 route show fd00:70::/64");
    assert!(
        v6.contains("via fd00:50::fd") && !v6.contains("fd00:50::fe"),
        "{v6}"
    );
    assert_eq!(apply(&t.node, &m, cfg()).changes(), 0);
}

/// On a kernel without IPIP the failure is reported (and the tunnel routes wait); with
/// IPIP (e.g. inside the VM) tunl0 gets configured.
#[test]
fn ipip_wanted_reports_missing_kernel_support_or_configures_tunl0() {
    let t = one_node();
    let mut m = t.model.clone();
    m.pools = vec![pool("10.65.0.0/16", EncapMode::Always, EncapMode::Never)];
    m.ipip_tunnel_addr = Some("10.65.0.1".parse().unwrap());
    m.learned.insert(
        "10.65.9.0/26".parse().unwrap(),
        vec!["192.168.50.9".parse().unwrap()],
    );
    let r = apply(&t.node, &m, cfg());
    assert_eq!(r.pod_mtu, 1480);
    if t.node.try_ip("link show dev tunl0").0 {
        assert_clean(&r);
        assert!(t
            .node
            .own_routes()
            .contains("10.65.9.0/26 via 192.168.50.9 dev tunl0 onlink"));
    } else {
        assert!(
            r.errors.iter().any(|e| e.contains("no IPIP support")),
            "{:#?}",
            r.errors
        );
        assert!(r.pending >= 1, "the tunnel route waits for tunl0: {r:#?}");
        // everything else is programmed anyway
        assert!(t
            .node
            .own_routes()
            .contains("10.65.0.5 dev cali0000000000a"));
    }
}

/// Thousands of routes go in batches of 128 (more than one batch, and far more than the
/// default receive buffer would take in one send) and are recognised afterwards.
#[test]
fn many_routes_in_batches() {
    let t = one_node();
    let mut m = t.model.clone();
    for i in 0..5000u32 {
        let p = format!("10.{}.{}.0/24", 100 + i / 256, i % 256);
        m.learned
            .insert(p.parse().unwrap(), vec!["192.168.50.254".parse().unwrap()]);
    }
    let r = apply(&t.node, &m, cfg());
    assert_clean(&r);
    assert_eq!(r.routes_added, 5003);
    eprintln!("5003 routes added in {:?}", r.duration);
    let r2 = apply(&t.node, &m, cfg());
    assert_eq!(r2.changes(), 0);
    eprintln!("no-op apply over 5003 routes in {:?}", r2.duration);
    m.learned.clear();
    let r3 = apply(&t.node, &m, cfg());
    assert_eq!(r3.routes_removed, 5000);
    eprintln!("5000 routes removed in {:?}", r3.duration);
}

#[test]
fn pod_route_made_by_the_cni_plugin_survives_until_its_record_is_read() {
    let t = one_node();
    // the CNI plugin made a third pod's route; the agent has not read its record yet
    let pod = add_pod(&t.node, "cali0000000000c", "10.65.0.7");
    t.node
        .ip("route add 10.65.0.7/32 dev cali0000000000c scope link proto 80");
    let graced = DataplaneConfig {
        unclaimed_route_grace: Duration::from_secs(5),
        ..cfg()
    };
    let r = apply(&t.node, &t.model, graced.clone());
    assert_clean(&r);
    assert_eq!(r.routes_removed, 0, "{r:#?}");
    assert!(t
        .node
        .own_routes()
        .contains("10.65.0.7 dev cali0000000000c"));
    // its record arrives: adopted without churn
    let mut m = t.model.clone();
    m.endpoints.push(endpoint(&pod));
    let r = apply(&t.node, &m, graced);
    assert_eq!((r.routes_added, r.routes_removed), (0, 0), "{r:#?}");
    // a route nobody claims goes once the grace period is over
    let r = apply(&t.node, &t.model, cfg());
    assert_eq!(r.routes_removed, 1, "{r:#?}");
}
