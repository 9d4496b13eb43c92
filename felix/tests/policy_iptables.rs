//! The rendered policy chains and ipsets applied to a real kernel (in a network
//! namespace this test creates): `iptables-restore` and `ipset` accept them, and they
//! enforce. Node namespace with three pods (web, db, other) on `cali*` veths; a Calico
//! GlobalNetworkPolicy lets only web ping db. Applied by the applier: unchanged
//! re-applies write nothing, drift (a rule deleted, a foreign rule) is repaired, the jump is
//! kept first, and removal leaves nothing.

mod common;

use brindle_felix::policy_apply::{PolicyApplier, PolicyReport};
use brindle_felix::policy_render::{render, Family, Rendered};
use brindle_policies::resolve::resolve;
use brindle_policies::{program_of, world_of};
use common::*;

fn apply_in(node: &Netns, mut a: PolicyApplier, out: &Rendered) -> (PolicyApplier, PolicyReport) {
    let out = out.clone();
    in_ns(node, move || async move {
        let r = a.apply(Family::V4, &out, true);
        (a, r)
    })
}

#[test]
fn rendered_rules_apply_and_enforce() {
    let node = Netns::new();
    node.set_sysctl("net/ipv4/ip_forward", "1");
    let _world = add_uplink(&node, "192.0.2.1", "192.0.2.254");
    let pods: Vec<Pod> = [
        ("caliweb", "10.1.0.1"),
        ("calidb", "10.1.0.2"),
        ("caliother", "10.1.0.3"),
    ]
    .iter()
    .map(|(i, ip)| {
        let p = add_pod(&node, i, ip);
        node.ip(&format!("route add {ip}/32 dev {i} scope link"));
        node.set_sysctl(&format!("net/ipv4/conf/{i}/proxy_arp"), "1");
        p
    })
    .collect();
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {nodeName: n}\nstatus: {phase: Running, podIP: 10.1.0.1}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {nodeName: n}\nstatus: {phase: Running, podIP: 10.1.0.2}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: other, namespace: shop, labels: {app: other}}\nspec: {nodeName: n}\nstatus: {phase: Running, podIP: 10.1.0.3}\n---\n\
        apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db-ping}\nspec:\n  selector: app == 'db'\n  ingress: [{action: Allow, protocol: ICMP, source: {selector: app == 'web'}}]\n";
    let cfg = brindle_model::parse("p.yaml", yaml).unwrap();
    let (program, _) = program_of(&cfg);
    let world = world_of(&cfg);
    let local: Vec<(String, std::net::IpAddr)> = pods
        .iter()
        .map(|p| (p.host_iface.clone(), p.ip.parse().unwrap()))
        .collect();
    let out = render(&resolve(&program, &world, &local), Family::V4);
    // Before anything is applied everything passes.
    assert!(pods[2].ns.ping("10.1.0.2"));
    let applier = PolicyApplier::new();
    let (applier, r) = apply_in(&node, applier, &out);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.tables_written, 1);
    assert!(pods[0].ns.ping("10.1.0.2"), "web may ping db");
    // The allow rule counted that ping (the kernel's counters, by rule origin).
    let out_c = out.clone();
    let c = in_ns(&node, move || async move {
        brindle_felix::policy_apply::counters(Family::V4, &out_c)
    })
    .unwrap();
    let (packets, _) = c["GlobalNetworkPolicy db-ping ingress rule 0"];
    assert!(packets >= 1, "{c:?}");
    assert!(!pods[2].ns.ping("10.1.0.2"), "other may not");
    assert!(pods[2].ns.ping("10.1.0.1"), "web is not isolated");
    assert!(
        pods[1].ns.ping("10.1.0.3"),
        "db's egress is not isolated; the reply returns"
    );
    // Applied again unchanged: nothing written.
    let (applier, r) = apply_in(&node, applier, &out);
    assert_eq!((r.tables_written, r.sets_written > 0), (0, true), "{r:?}");
    // Drift: a foreign rule inserted into a Brindle chain is removed...
    node.sh_ok("iptables -I brl-tw-calidb 1 -j ACCEPT");
    assert!(pods[2].ns.ping("10.1.0.2"), "the foreign rule opened db");
    let (applier, r) = apply_in(&node, applier, &out);
    assert!(r.drift_repaired && r.errors.is_empty(), "{r:?}");
    assert_eq!(
        r.chains_written, 1,
        "only the drifted chain is rewritten: {r:?}"
    );
    assert!(!pods[2].ns.ping("10.1.0.2"), "closed again");
    // ... and a rule deleted by hand comes back (db's dispatch: its replies are dropped
    // as from an unknown interface meanwhile).
    node.sh_ok(
        "iptables -S brl-from-wl-dispatch | grep -- '-i calidb' | sed 's/^-A/iptables -D/' | sh",
    );
    assert!(!pods[0].ns.ping("10.1.0.2"), "db cannot answer");
    let (applier, r) = apply_in(&node, applier, &out);
    assert!(r.drift_repaired && r.errors.is_empty(), "{r:?}");
    assert!(pods[0].ns.ping("10.1.0.2"), "web reaches db again");
    // The hook moved down by another rule goes back to the top.
    node.sh_ok("iptables -I FORWARD 1 -j ACCEPT");
    let (applier, _) = apply_in(&node, applier, &out);
    let fwd = node.sh_ok("iptables -S FORWARD");
    assert!(
        fwd.lines().nth(1) == Some("-A FORWARD -j brl-FORWARD"),
        "{fwd}"
    );
    node.sh_ok("iptables -D FORWARD -j ACCEPT");
    // Removing takes every chain, jump and set away; traffic flows again.
    let mut applier = applier;
    let r = in_ns(&node, move || async move { applier.remove(Family::V4) });
    assert!(r.errors.is_empty() && r.chains_removed > 5, "{r:?}");
    assert!(!node.sh_ok("iptables-save -t filter").contains("brl-"));
    assert!(!node.sh_ok("ipset list -n").contains("brl4-"));
    assert!(pods[2].ns.ping("10.1.0.2"));
}

/// natOutgoing: a pod in a `natOutgoing` pool reaches a host outside every pool that has
/// no route back to the pool (so it only works masqueraded); pod → pod in the pools keeps
/// its source; removed, the outside host is unreachable again.
#[test]
fn nat_outgoing_masquerades_traffic_leaving_the_pools() {
    use brindle_felix::model::{EncapMode, Pool};
    let node = Netns::new();
    node.set_sysctl("net/ipv4/ip_forward", "1");
    let world = add_uplink(&node, "192.0.2.1", "192.0.2.254");
    let pod = add_pod(&node, "calinat", "10.65.0.5");
    node.ip("route add 10.65.0.5/32 dev calinat scope link");
    node.set_sysctl("net/ipv4/conf/calinat/proxy_arp", "1");
    assert!(
        !pod.ns.ping("192.0.2.254"),
        "the outside host has no route back to the pool"
    );
    let pools = vec![Pool {
        cidr: "10.65.0.0/16".parse().unwrap(),
        block_size: 26,
        ipip_mode: EncapMode::Never,
        vxlan_mode: EncapMode::Never,
        nat_outgoing: true,
        disabled: false,
    }];
    let out = brindle_felix::nat_outgoing::render(&pools, Family::V4).unwrap();
    let (applier, r) = apply_in(&node, PolicyApplier::new(), &out);
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(pod.ns.ping("192.0.2.254"), "masqueraded");
    let nat = node.sh_ok("iptables -t nat -S POSTROUTING");
    assert!(nat.contains("-A POSTROUTING -j brl-POSTROUTING"), "{nat}");
    let _ = world;
    let mut applier = applier;
    let r = in_ns(&node, move || async move {
        applier.remove_table(Family::V4, "nat", &["nat-"])
    });
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(!node.sh_ok("iptables-save -t nat").contains("brl-"));
    assert!(!pod.ns.ping("192.0.2.254"), "no NAT any more");
}

/// A replaced calico-node's chains and sets (a stale deny) are removed; others' rules stay.
#[test]
fn calico_node_leftovers_are_removed() {
    let node = Netns::new();
    node.set_sysctl("net/ipv4/ip_forward", "1");
    let _world = add_uplink(&node, "192.0.2.1", "192.0.2.254");
    let a = add_pod(&node, "calia", "10.1.0.1");
    let _b = add_pod(&node, "calib", "10.1.0.2");
    for (i, ip) in [("calia", "10.1.0.1"), ("calib", "10.1.0.2")] {
        node.ip(&format!("route add {ip}/32 dev {i} scope link"));
        node.set_sysctl(&format!("net/ipv4/conf/{i}/proxy_arp"), "1");
    }
    node.sh_ok(
        "ipset create cali40s:stale hash:net family inet && ipset add cali40s:stale 10.1.0.1",
    );
    node.sh_ok("iptables -N cali-FORWARD && iptables -N cali-fw-calia && iptables -A cali-FORWARD -j cali-fw-calia && iptables -A cali-fw-calia -m set --match-set cali40s:stale src -j DROP && iptables -I FORWARD 1 -j cali-FORWARD");
    node.sh_ok("iptables -t nat -N cali-nat-outgoing && iptables -t nat -A POSTROUTING -j cali-nat-outgoing");
    node.sh_ok("iptables -A FORWARD -s 10.9.9.9 -j DROP"); // someone else's
    assert!(!a.ns.ping("10.1.0.2"), "the stale calico policy drops");
    let n = in_ns(&node, || async {
        brindle_felix::policy_apply::remove_calico_leftovers(Family::V4)
    })
    .unwrap();
    assert_eq!(n, 3);
    assert!(a.ns.ping("10.1.0.2"));
    let all = node.sh_ok("iptables-save");
    assert!(!all.contains("cali-"), "{all}");
    assert!(
        all.contains("-A FORWARD -s 10.9.9.9/32 -j DROP"),
        "other rules stay: {all}"
    );
    assert!(!node.sh_ok("ipset list -n").contains("cali40"));
}

/// IPv6: the rendered chains and sets for an IPv6 endpoint are accepted by ip6tables and
/// ipset (ICMPv6, nets, named ports), applied and removed.
#[test]
fn ipv6_rules_are_accepted() {
    let node = Netns::new();
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {nodeName: n, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}\nstatus: {phase: Running, podIPs: [{ip: 10.1.0.1}, {ip: 'fd00::1'}]}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {nodeName: n}\nstatus: {phase: Running, podIPs: [{ip: 10.1.0.2}, {ip: 'fd00::2'}]}\n---\n\
        apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: v6}\nspec:\n  selector: app == 'web'\n  ingress:\n    - {action: Allow, protocol: ICMPv6, icmp: {type: 128}}\n    - {action: Allow, protocol: TCP, source: {nets: ['fd00::/64'], notNets: ['fd00::ff/128']}, destination: {ports: [http]}}\n    - {action: Deny, ipVersion: 6, source: {selector: app == 'db'}}\n";
    let cfg = brindle_model::parse("p.yaml", yaml).unwrap();
    let (program, _) = program_of(&cfg);
    let world = world_of(&cfg);
    let local = vec![
        ("caliweb".to_string(), "10.1.0.1".parse().unwrap()),
        ("calidb".to_string(), "10.1.0.2".parse().unwrap()),
    ];
    let out = render(&resolve(&program, &world, &local), Family::V6);
    assert!(
        out.filter
            .contains("-p ipv6-icmp -m icmp6 --icmpv6-type 128"),
        "{}",
        out.filter
    );
    let out2 = out.clone();
    let (applier, r) = in_ns(&node, move || async move {
        let mut a = PolicyApplier::new();
        let r = a.apply(Family::V6, &out2, true);
        (a, r)
    });
    assert!(r.errors.is_empty(), "{r:?}\n{}", out.filter);
    let rules = node.sh_ok("ip6tables-save -t filter");
    assert!(rules.contains("brl-pi-gnp/v6"), "{rules}");
    let sets = node.sh_ok("ipset list -n");
    assert!(sets.contains("brl6-"), "{sets}");
    let mut applier = applier;
    let r = in_ns(&node, move || async move { applier.remove(Family::V6) });
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(!node.sh_ok("ip6tables-save -t filter").contains("brl-"));
}
