//! Calico rules with source ports, enforced by the kernel: db admits UDP 5353 only from
//! source ports 1000–1999 except 1500 (`source: {ports: ['1000:1999'], notPorts: [1500]}`).
//! Real datagrams from web's namespace, bound to each source port, in a node namespace
//! this test creates. A `Log` rule first logs every datagram through the kernel's LOG
//! target with a prefix naming the policy (its counter shows each was logged; the log
//! itself stays in this namespace: the kernel logs other namespaces' packets only with
//! the host-wide `nf_log_all_netns`, which a test must not set).

mod common;

use brindle_felix::policy_apply::PolicyApplier;
use brindle_felix::policy_render::{render, Family};
use brindle_policies::resolve::resolve;
use brindle_policies::{program_of, world_of};
use common::*;
use std::net::UdpSocket;
use std::time::Duration;

/// Sends one datagram from `sport` to 10.1.0.2:5353 in web's namespace; true when db
/// echoed it back.
fn probe(web: &Netns, sport: u16) -> bool {
    in_ns(web, move || async move {
        let s = UdpSocket::bind(("0.0.0.0", sport)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        s.send_to(b"hi", "10.1.0.2:5353").unwrap();
        let mut buf = [0u8; 16];
        s.recv_from(&mut buf).is_ok()
    })
}

#[test]
fn source_ports_are_enforced() {
    let node = Netns::new();
    node.set_sysctl("net/ipv4/ip_forward", "1");
    // A default route, so that proxy ARP answers the pods' 169.254.1.1.
    let _uplink = add_uplink(&node, "192.0.2.1", "192.0.2.254");
    let pods: Vec<Pod> = [("caliweb", "10.1.0.1"), ("calidb", "10.1.0.2")]
        .iter()
        .map(|(i, ip)| {
            let p = add_pod(&node, i, ip);
            node.ip(&format!("route add {ip}/32 dev {i} scope link"));
            node.set_sysctl(&format!("net/ipv4/conf/{i}/proxy_arp"), "1");
            p
        })
        .collect();
    // db echoes every datagram on 5353 (until the test ends).
    let _echo = spawn_in_ns(&pods[1].ns, || async {
        let s = UdpSocket::bind("0.0.0.0:5353").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 16];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(pods[0].ns.ping("10.1.0.2"), "web pings db");
    assert!(probe(&pods[0].ns, 1500), "open before any policy");

    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {nodeName: n}\nstatus: {phase: Running, podIP: 10.1.0.1}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {nodeName: n}\nstatus: {phase: Running, podIP: 10.1.0.2}\n---\n\
        apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: dns-from-low-ports, namespace: shop}\nspec:\n  selector: app == 'db'\n  ingress:\n    - {action: Log, protocol: UDP}\n    - action: Allow\n      protocol: UDP\n      source: {ports: ['1000:1999'], notPorts: [1500]}\n      destination: {ports: [5353]}\n";
    let cfg = brindle_model::parse("p.yaml", yaml).unwrap();
    let (program, warnings) = program_of(&cfg);
    assert!(warnings.is_empty(), "{warnings:?}");
    let world = world_of(&cfg);
    let local: Vec<(String, std::net::IpAddr)> = pods
        .iter()
        .map(|p| (p.host_iface.clone(), p.ip.parse().unwrap()))
        .collect();
    let out = render(&resolve(&program, &world, &local), Family::V4);
    assert!(
        out.filter
            .contains("-m multiport ! --sports 1500 -m multiport --sports 1000:1999 -m multiport --dports 5353"),
        "{}",
        out.filter
    );
    let out2 = out.clone();
    let r = in_ns(&node, move || async move {
        PolicyApplier::new().apply(Family::V4, &out2, true)
    });
    assert!(r.errors.is_empty(), "{r:?}");
    for (sport, want) in [
        (1000, true),
        (1999, true),
        (1500, false),
        (2000, false),
        (999, false),
    ] {
        assert_eq!(probe(&pods[0].ns, sport), want, "source port {sport}");
    }
    // The Log rule: the kernel's LOG target, prefixed with the policy, saw all five.
    let saved = node.sh_ok("iptables-save -t filter");
    assert!(
        saved.contains("-j LOG --log-prefix \"brl NetworkPolicy shop/dns-f \""),
        "{saved}"
    );
    let out2 = out.clone();
    let c = in_ns(&node, move || async move {
        brindle_felix::policy_apply::counters(Family::V4, &out2)
    })
    .unwrap();
    let logged = c["NetworkPolicy shop/dns-from-low-ports ingress rule 0"].0;
    assert!(logged >= 5, "{c:?}");
    // The evaluator agrees.
    for (sport, want) in [(1000, true), (1500, false), (2000, false)] {
        let flow = brindle_policies::Flow {
            src: "10.1.0.1".parse().unwrap(),
            dst: "10.1.0.2".parse().unwrap(),
            protocol: 17,
            port: Some(5353),
            src_port: Some(sport),
        };
        assert_eq!(
            brindle_policies::evaluate(&program, &world, &flow).allowed,
            want,
            "evaluator, source port {sport}"
        );
    }
}
