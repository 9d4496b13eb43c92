//! The rendered policy chains and ipsets applied to a real kernel (in a network
//! namespace this test creates): `iptables-restore` and `ipset` accept them, and they
//! enforce. Node namespace with three pods (web, db, other) on `cali*` veths; a Calico
//! GlobalNetworkPolicy lets only web ping db. (The applier with drift repair is not
//! written yet; this test applies the text itself.)

mod common;

use brindle_felix::policy_render::{render, Family};
use brindle_policies::resolve::resolve;
use brindle_policies::{program_of, world_of};
use common::*;

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
    for s in &out.ipsets {
        node.sh_ok(&format!("ipset create {} {} family inet", s.name, s.kind));
        for m in &s.members {
            node.sh_ok(&format!("ipset add {} {m}", s.name));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("filter.rules");
    std::fs::write(&file, &out.filter).unwrap();
    node.sh_ok(&format!("iptables-restore --noflush < {}", file.display()));
    // Before the hooks everything passes.
    assert!(pods[2].ns.ping("10.1.0.2"));
    for (chain, target) in &out.hooks {
        node.sh_ok(&format!("iptables -I {chain} 1 -j {target}"));
    }
    assert!(pods[0].ns.ping("10.1.0.2"), "web may ping db");
    assert!(!pods[2].ns.ping("10.1.0.2"), "other may not");
    assert!(pods[2].ns.ping("10.1.0.1"), "web is not isolated");
    assert!(
        pods[1].ns.ping("10.1.0.3"),
        "db's egress is not isolated; the reply returns"
    );
    // The rules counted: the policy chain's accept matched.
    let (_, counters) = node.sh("iptables -L -v -n -x");
    assert!(counters.contains("brl-"), "{counters}");
}
