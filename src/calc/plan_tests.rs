use super::*;
use brindle_bgp::status::PeerType;
use brindle_model::*;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

const HDR: &str = "apiVersion: projectcalico.org/v3\n";

/// A realistic cluster exercising every kind and most fields.
const FULL: &str = include_str!("../../model/testdata/full-cluster.yaml");

fn full() -> ClusterConfig {
    parse("cluster.yaml", FULL).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn std_comm(a: u32, n: u32) -> Community {
    Community::Standard((a << 16) | n)
}

#[test]
fn mesh_passive_side_is_the_lower_address_as_a_string() {
    let c = full();
    let a = node_plan(&c, "node-a").unwrap();
    let mesh_b = a
        .peers
        .iter()
        .find(|p| p.address == ip("10.0.0.2"))
        .unwrap();
    assert_eq!(mesh_b.peer_type, PeerType::NodeMesh);
    assert_eq!(mesh_b.name, "Mesh_10_0_0_2");
    assert!(
        mesh_b.passive,
        "\"10.0.0.2\" > \"10.0.0.1\": node-a waits (Calico's rule)"
    );
    assert_eq!(mesh_b.remote_as, 65010);
    assert_eq!(mesh_b.local_as, 64512);
    assert_eq!(mesh_b.password.as_deref(), Some("mesh-secret"));
    assert_eq!(mesh_b.max_restart_time, Some(Duration::from_secs(120)));
    assert_eq!(mesh_b.source_address, Some(ip("10.0.0.1")));

    let b = node_plan(&c, "node-b").unwrap();
    let mesh_a = b
        .peers
        .iter()
        .find(|p| p.address == ip("10.0.0.1"))
        .unwrap();
    assert!(
        !mesh_a.passive,
        "node-b has the greater address: it connects"
    );
    assert_eq!(mesh_a.remote_as, 64512);
    assert_eq!(b.local_as, 65010);
    let mesh_a6 = b.peers.iter().find(|p| p.address == ip("fd00::1")).unwrap();
    assert!(!mesh_a6.passive);
    assert_eq!(mesh_a6.name, "Mesh_fd00__1");
}

#[test]
fn node_plan_peers_and_overrides() {
    let c = full();
    let a = node_plan(&c, "node-a").unwrap();
    let names: Vec<&str> = a.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Mesh_10_0_0_2",
            "Node_10_0_0_253",
            "Mesh_10_0_1_3",
            "Mesh_fd00__2",
            "Global_fd00__fe"
        ]
    );
    // node-c has a node-specific listenPort: the mesh peers it on that port.
    let mesh_c = a.peers.iter().find(|p| p.name == "Mesh_10_0_1_3").unwrap();
    assert_eq!(mesh_c.port, 1790);
    let tor = a
        .peers
        .iter()
        .find(|p| p.name == "Node_10_0_0_253")
        .unwrap();
    assert_eq!(tor.peer_type, PeerType::NodeSpecific);
    assert_eq!(tor.port, 1179);
    assert_eq!(tor.remote_as, 65001);
    assert_eq!(tor.local_as, 64600);
    assert_eq!(tor.password.as_deref(), Some("tor-secret"));
    assert!(tor.keep_original_next_hop);
    assert_eq!(tor.ttl_security, Some(1));
    assert_eq!(tor.max_restart_time, Some(Duration::from_secs(300)));
    assert_eq!(tor.num_allowed_local_as_numbers, Some(2));
    assert!(!tor.passive);
    let edge = a
        .peers
        .iter()
        .find(|p| p.name == "Global_fd00__fe")
        .unwrap();
    assert_eq!(edge.peer_type, PeerType::Global);
    assert_eq!(edge.source_address, None, "sourceAddress: None");

    // node-b is in rack r2: no ToR peer; node-c has no IPv6: no IPv6 mesh.
    let b = node_plan(&c, "node-b").unwrap();
    assert!(b.peers.iter().all(|p| p.name != "Node_10_0_0_253"));
    let cc = node_plan(&c, "node-c").unwrap();
    assert_eq!(cc.listen_port, 1790);
    assert_eq!(cc.router_id, Ipv4Addr::new(10, 0, 1, 3));
    let names: Vec<&str> = cc.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Mesh_10_0_0_1",
            "Mesh_10_0_0_2",
            "Node_10_0_0_253",
            "Global_fd00__fe"
        ]
    );
    let edge = cc
        .peers
        .iter()
        .find(|p| p.name == "Global_fd00__fe")
        .unwrap();
    assert_eq!(edge.source_address, None);

    // node-specific BGPConfiguration overrides the default for that node only.
    assert_eq!(c.bgp_config_for("node-c").log_severity_screen, "Debug");
    assert_eq!(c.bgp_config_for("node-a").log_severity_screen, "Info");
    assert_eq!(c.bgp_config_for("node-a").listen_port, 179);
    assert_eq!(
        c.bgp_config_for("node-c").as_number,
        64512,
        "inherited from default"
    );
}

#[test]
fn node_plan_advertisements_and_communities() {
    let c = full();
    let a = node_plan(&c, "node-a").unwrap();
    // 10.70.0.0/26 is in a disableBGPExport pool; 10.65.2.0/26 is pendingDeletion.
    assert_eq!(
        a.blocks,
        ["10.65.0.0/26", "10.65.1.0/26", "10.70.0.0/26"]
            .iter()
            .map(|s| s.parse::<IpNetwork>().unwrap())
            .collect::<Vec<_>>()
    );
    let adv: Vec<(String, Vec<String>)> = a
        .advertise
        .iter()
        .map(|x| {
            (
                x.prefix.to_string(),
                x.communities.iter().map(|c| c.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        adv,
        vec![
            // longest match: 10.65.0.0/24 wins over 10.65.0.0/16
            (
                "10.65.0.0/26".to_string(),
                vec!["4200000000:1:2".to_string(), "65000:7".to_string()]
            ),
            ("10.65.1.0/26".to_string(), vec!["64512:100".to_string()]),
            ("10.96.0.0/12".to_string(), vec![]),
        ]
    );
    assert_eq!(a.pools.len(), 3);
}

#[test]
fn node_specific_configuration_override() {
    let text = format!(
        "{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n  serviceClusterIPs: [{{cidr: 10.96.0.0/12}}]\n  communities: [{{name: c1, value: '1:1'}}]\n  prefixAdvertisements: [{{cidr: 10.96.0.0/12, communities: [c1]}}]\n---\n\
         {HDR}kind: BGPConfiguration\nmetadata: {{name: node.n1}}\nspec:\n  listenPort: 1179\n  asNumber: 65100\n  nodeToNodeMeshEnabled: false\n  communities: [{{name: c1, value: '2:2'}}]\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n1}}\nspec: {{bgp: {{ipv4Address: 10.0.0.1/24}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n2}}\nspec: {{bgp: {{ipv4Address: 10.0.0.2/24}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n3}}\nspec: {{bgp: {{ipv4Address: 10.0.0.3/24}}}}\n"
    );
    let c = parse("o.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let n1 = node_plan(&c, "n1").unwrap();
    assert_eq!(n1.listen_port, 1179);
    assert_eq!(n1.local_as, 65100);
    assert!(n1.peers.is_empty(), "mesh disabled for n1: {:?}", n1.peers);
    assert_eq!(n1.advertise[0].communities, vec![std_comm(2, 2)]);
    let n2 = node_plan(&c, "n2").unwrap();
    assert_eq!(n2.listen_port, 179);
    assert_eq!(n2.local_as, 64512);
    let names: Vec<&str> = n2.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Mesh_10_0_0_3"], "n1 left the mesh");
    assert_eq!(n2.advertise[0].communities, vec![std_comm(1, 1)]);
}

#[test]
fn route_reflectors_and_peer_selectors() {
    let text = format!(
        "{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: true}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: rr1, labels: {{route-reflector: 'true'}}}}\nspec: {{bgp: {{ipv4Address: 10.0.0.10/24, routeReflectorClusterID: 224.0.0.1}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: rr2, labels: {{route-reflector: 'true'}}}}\nspec: {{bgp: {{ipv4Address: 10.0.0.11/24, routeReflectorClusterID: 224.0.0.1}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: w1}}\nspec: {{bgp: {{ipv4Address: 10.0.0.21/24}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: w2}}\nspec: {{bgp: {{ipv4Address: 10.0.0.22/24}}}}\n---\n\
         {HDR}kind: BGPPeer\nmetadata: {{name: peer-with-rrs}}\nspec:\n  nodeSelector: all()\n  peerSelector: route-reflector == 'true'\n---\n\
         {HDR}kind: BGPPeer\nmetadata: {{name: rrs-to-clients}}\nspec:\n  nodeSelector: has(route-reflector)\n  peerSelector: \"!has(route-reflector)\"\n"
    );
    let c = parse("rr.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let rr1 = node_plan(&c, "rr1").unwrap();
    let got: Vec<(&str, bool)> = rr1
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.route_reflector_client))
        .collect();
    // RRs are not in the mesh; rr2 is the same cluster (not a client); w1/w2 are clients.
    assert_eq!(
        got,
        [
            ("Global_10_0_0_11", false),
            ("Node_10_0_0_21", true),
            ("Node_10_0_0_22", true)
        ]
    );
    assert_eq!(
        rr1.route_reflector_cluster_id,
        Some(Ipv4Addr::new(224, 0, 0, 1))
    );
    let w1 = node_plan(&c, "w1").unwrap();
    let got: Vec<(&str, PeerType)> = w1
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.peer_type))
        .collect();
    assert_eq!(
        got,
        [
            ("Global_10_0_0_10", PeerType::Global),
            ("Global_10_0_0_11", PeerType::Global),
            ("Mesh_10_0_0_22", PeerType::NodeMesh)
        ]
    );
    assert!(w1.peers.iter().all(|p| !p.route_reflector_client));
}

#[test]
fn dedup_prefers_node_specific_then_global_then_mesh() {
    let text = format!(
        "{HDR}kind: Node\nmetadata: {{name: n1}}\nspec: {{bgp: {{ipv4Address: 10.0.0.1/24}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n2}}\nspec: {{bgp: {{ipv4Address: 10.0.0.2/24}}}}\n---\n\
         {HDR}kind: BGPPeer\nmetadata: {{name: node-specific}}\nspec: {{node: n1, peerIP: 10.0.0.2, asNumber: 65002}}\n---\n\
         {HDR}kind: BGPPeer\nmetadata: {{name: global}}\nspec: {{peerIP: 10.0.0.2, asNumber: 65001}}\n---\n\
         {HDR}kind: BGPPeer\nmetadata: {{name: self}}\nspec: {{peerIP: 10.0.0.1, asNumber: 65001}}\n"
    );
    let c = parse("d.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let n1 = node_plan(&c, "n1").unwrap();
    assert_eq!(n1.peers.len(), 1, "{:?}", n1.peers);
    assert_eq!(n1.peers[0].name, "Node_10_0_0_2");
    assert_eq!(n1.peers[0].remote_as, 65002);
    let n2 = node_plan(&c, "n2").unwrap();
    let names: Vec<&str> = n2.peers.iter().map(|p| p.name.as_str()).collect();
    // n1 skipped the global peer at its own address; for n2 that global peer
    // replaces the mesh session to n1.
    assert_eq!(names, ["Global_10_0_0_1"]);
    assert_eq!(n2.peers[0].remote_as, 65001);
}

#[test]
fn plan_errors() {
    let c = full();
    let e = node_plan(&c, "node-z").unwrap_err();
    let s = e.to_string();
    assert!(
        s.starts_with("cluster.yaml: Node/node-z: no Node named \"node-z\""),
        "{s}"
    );
    assert!(s.contains("node-a, node-b, node-c"), "{s}");
    let text = format!("{HDR}kind: Node\nmetadata: {{name: v6only}}\nspec: {{bgp: {{ipv6Address: 'fd00::1/64'}}}}\n");
    let c = parse("v6.yaml", &text).unwrap();
    let e = node_plan(&c, "v6only").unwrap_err().to_string();
    assert!(e.contains("routerID"), "{e}");
    let text = format!(
        "{HDR}kind: Node\nmetadata: {{name: v6only}}\nspec: {{bgp: {{ipv6Address: 'fd00::1/64', routerID: 1.2.3.4}}}}\n"
    );
    let c = parse("v6.yaml", &text).unwrap();
    assert_eq!(
        node_plan(&c, "v6only").unwrap().router_id,
        Ipv4Addr::new(1, 2, 3, 4)
    );
}

#[test]
fn loads_the_shipped_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/calico-basic.yaml");
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.nodes.len(), 2);
    let plan = node_plan(&c, "node-a").unwrap();
    assert_eq!(plan.router_id, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(plan.local_as, 64512);
    let names: Vec<&str> = plan.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["Mesh_10_0_0_2", "Global_10_0_0_254", "Mesh_fd00_10__2"]
    );
    let router = &plan.peers[1];
    assert_eq!(router.remote_as, 65000);
    assert_eq!(router.password.as_deref(), Some("change-me"));
    assert_eq!(router.source_address, Some(ip("10.0.0.1")));
    assert_eq!(
        plan.advertise,
        vec![
            Advertisement {
                prefix: "10.65.0.0/26".parse().unwrap(),
                communities: vec![std_comm(64512, 100)],
            },
            Advertisement {
                prefix: "10.96.0.0/12".parse().unwrap(),
                communities: vec![],
            },
        ]
    );
    assert_eq!(
        plan.blocks,
        vec!["10.65.0.0/26".parse::<IpNetwork>().unwrap()]
    );
    let b = node_plan(&c, "node-b").unwrap();
    assert_eq!(
        b.blocks,
        vec!["10.65.0.64/26".parse::<IpNetwork>().unwrap()]
    );
}

#[test]
fn mesh_passive_rule_compares_strings_not_numbers() {
    // Calico's confd: `if peerIP > currentNodeIP { passive }` on the strings, so
    // 10.0.0.10 waits for nothing from 10.0.0.9 ("10.0.0.9" > "10.0.0.10").
    let text = r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n9}
spec: {bgp: {ipv4Address: 10.0.0.9/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n10}
spec: {bgp: {ipv4Address: 10.0.0.10/24}}
"#;
    let c = parse("t.yaml", text).unwrap();
    let n10 = node_plan(&c, "n10").unwrap();
    assert!(n10.peers[0].passive, "n10 waits for n9");
    let n9 = node_plan(&c, "n9").unwrap();
    assert!(!n9.peers[0].passive, "n9 dials n10");
}
