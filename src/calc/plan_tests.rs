use super::*;
use brindle_bgp::status::PeerType;
use brindle_model::*;
use std::collections::BTreeMap;
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
    // Calico names a peering with a port `<prefix>_<ip>_port_<port>`; `nodeSelector:
    // all()` is node specific in confd (only a BGPPeer without node/nodeSelector is
    // global).
    assert_eq!(
        names,
        [
            "Mesh_10_0_0_2",
            "Node_10_0_0_253_port_1179",
            "Mesh_10_0_1_3",
            "Mesh_fd00__2",
            "Node_fd00__fe_port_179"
        ]
    );
    // bindMode: NodeIP in the default BGPConfiguration.
    assert_eq!(a.listen_addresses, [ip("10.0.0.1"), ip("fd00::1")]);
    // node-c has a node-specific listenPort: the mesh peers it on that port.
    let mesh_c = a.peers.iter().find(|p| p.name == "Mesh_10_0_1_3").unwrap();
    assert_eq!(mesh_c.port, 1790);
    // the mesh never has a port in its names, even with listenPort: 179 written.
    let mesh_b = a.peers.iter().find(|p| p.name == "Mesh_10_0_0_2").unwrap();
    assert_eq!(mesh_b.port, 179);
    assert_eq!(mesh_b.bgp_peer, None);
    let tor = a
        .peers
        .iter()
        .find(|p| p.name == "Node_10_0_0_253_port_1179")
        .unwrap();
    assert_eq!(tor.peer_type, PeerType::NodeSpecific);
    assert_eq!(tor.port, 1179);
    assert_eq!(tor.remote_as, 65001);
    assert_eq!(tor.local_as, 64600);
    assert_eq!(tor.password.as_deref(), Some("tor-secret"));
    // keepOriginalNextHop towards an eBGP peer.
    assert!(tor.keep_original_next_hop);
    assert_eq!(tor.next_hop_mode, NextHopMode::Keep);
    assert_eq!(tor.ttl_security, Some(1));
    assert_eq!(tor.max_restart_time, Some(Duration::from_secs(300)));
    assert_eq!(tor.keepalive_time, Some(Duration::from_secs(10)));
    assert_eq!(tor.num_allowed_local_as_numbers, Some(2));
    assert_eq!(tor.bgp_peer.as_deref(), Some("rack1-tor"));
    assert!(!tor.passive);
    assert!(!tor.reverse);
    let edge = a
        .peers
        .iter()
        .find(|p| p.name == "Node_fd00__fe_port_179")
        .unwrap();
    assert_eq!(edge.peer_type, PeerType::NodeSpecific);
    assert_eq!(edge.source_address, None, "sourceAddress: None");

    // node-b is in rack r2: no ToR peer.
    let b = node_plan(&c, "node-b").unwrap();
    assert!(b.peers.iter().all(|p| p.address != ip("10.0.0.253")));
    // node-c has no IPv6 address: confd renders no IPv6 BIRD configuration at all, so
    // neither the IPv6 mesh nor the IPv6 BGPPeer.
    let cc = node_plan(&c, "node-c").unwrap();
    assert_eq!(cc.listen_port, 1790);
    assert_eq!(cc.listen_addresses, [ip("10.0.1.3")]);
    assert_eq!(cc.router_id, Ipv4Addr::new(10, 0, 1, 3));
    let names: Vec<&str> = cc.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Mesh_10_0_0_1",
            "Mesh_10_0_0_2",
            "Node_10_0_0_253_port_1179"
        ]
    );

    // node-specific BGPConfiguration overrides the default for that node only.
    assert_eq!(c.bgp_config_for("node-c").log_severity_screen, "Debug");
    assert_eq!(c.bgp_config_for("node-a").log_severity_screen, "Info");
    assert_eq!(c.bgp_config_for("node-a").listen_port, 179);
    assert_eq!(c.bgp_config_for("node-a").configured_listen_port, Some(179));
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
            // serviceExternalIPs and serviceLoadBalancerIPs ranges, from every node
            ("192.0.2.0/24".to_string(), vec![]),
            ("198.51.100.0/24".to_string(), vec![]),
        ]
    );
    assert_eq!(a.services.advertise.len(), 3);
    assert_eq!(a.services.kernel_reject.len(), 3);
    assert_eq!(a.pools.len(), 3);
}

#[test]
fn node_specific_configuration_overrides_only_what_calico_reads() {
    // confd reads listenPort, logSeverityScreen and prefixAdvertisements from
    // `node.<name>`; asNumber, nodeToNodeMeshEnabled, bindMode and the mesh password
    // only from `default` (client.go updateBGPConfigCache).
    let text = format!(
        "{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n  serviceClusterIPs: [{{cidr: 10.96.0.0/12}}]\n  communities: [{{name: c1, value: '1:1'}}]\n  prefixAdvertisements: [{{cidr: 10.96.0.0/12, communities: [c1]}}]\n---\n\
         {HDR}kind: BGPConfiguration\nmetadata: {{name: node.n1}}\nspec:\n  listenPort: 1179\n  asNumber: 65100\n  nodeToNodeMeshEnabled: false\n  bindMode: NodeIP\n  communities: [{{name: c1, value: '2:2'}}]\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n1}}\nspec: {{bgp: {{ipv4Address: 10.0.0.1/24}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n2}}\nspec: {{bgp: {{ipv4Address: 10.0.0.2/24}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n3}}\nspec: {{bgp: {{ipv4Address: 10.0.0.3/24}}}}\n"
    );
    let c = parse("o.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let n1 = node_plan(&c, "n1").unwrap();
    assert_eq!(n1.listen_port, 1179);
    assert_eq!(n1.local_as, 64512, "asNumber of node.n1 is ignored");
    assert!(
        n1.listen_addresses.is_empty(),
        "bindMode of node.n1 is ignored"
    );
    let names: Vec<&str> = n1.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["Mesh_10_0_0_2", "Mesh_10_0_0_3"],
        "nodeToNodeMeshEnabled of node.n1 is ignored"
    );
    assert_eq!(n1.advertise[0].communities, vec![std_comm(2, 2)]);
    let n2 = node_plan(&c, "n2").unwrap();
    assert_eq!(n2.listen_port, 179);
    assert_eq!(n2.local_as, 64512);
    let names: Vec<(&str, u16)> = n2.peers.iter().map(|p| (p.name.as_str(), p.port)).collect();
    assert_eq!(names, [("Mesh_10_0_0_1", 1179), ("Mesh_10_0_0_3", 179)]);
    assert_eq!(n2.advertise[0].communities, vec![std_comm(1, 1)]);
    assert_eq!(c.node_as_number(c.node("n1").unwrap()), (64512, true));
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
    // `nodeSelector: all()` makes node-specific peerings in confd.
    assert_eq!(
        got,
        [
            ("Node_10_0_0_11", false),
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
            ("Node_10_0_0_10", PeerType::NodeSpecific),
            ("Node_10_0_0_11", PeerType::NodeSpecific),
            ("Mesh_10_0_0_22", PeerType::NodeMesh)
        ]
    );
    assert!(w1.peers.iter().all(|p| !p.route_reflector_client));
    // peerSelector peerings always dial; the mesh keeps the string rule.
    assert!(w1.peers[..2].iter().all(|p| !p.passive));
    assert!(w1.peers[2].passive, "\"10.0.0.22\" > \"10.0.0.21\"");
}

#[test]
fn dedup_prefers_global_then_node_specific_then_mesh() {
    // confd emits the global peerings first and drops a node-specific one with the same
    // (IP, port) (client.go updatePeersV1 `emit`); we keep one session per (address,
    // port), the mesh last.
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
    assert_eq!(n1.peers[0].name, "Global_10_0_0_2");
    assert_eq!(n1.peers[0].remote_as, 65001);
    assert_eq!(n1.peers[0].bgp_peer.as_deref(), Some("global"));
    // a global peerIP that is a cluster node: passive when greater as a string.
    assert!(n1.peers[0].passive);
    let n2 = node_plan(&c, "n2").unwrap();
    let names: Vec<&str> = n2.peers.iter().map(|p| p.name.as_str()).collect();
    // n1 skipped the global peer at its own address; for n2 that global peer
    // replaces the mesh session to n1.
    assert_eq!(names, ["Global_10_0_0_1"]);
    assert_eq!(n2.peers[0].remote_as, 65001);
    assert!(!n2.peers[0].passive);
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
    assert!(e.contains("CALICO_ROUTER_ID=hash"), "{e}");
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

fn cluster(text: &str) -> ClusterConfig {
    parse("t.yaml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn names(plan: &NodePlan) -> Vec<&str> {
    plan.peers.iter().map(|p| p.name.as_str()).collect()
}

fn peer<'p>(plan: &'p NodePlan, name: &str) -> &'p PeerPlan {
    plan.peers
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{}: no peer {name} in {:?}", plan.node_name, names(plan)))
}

/// Checks that every session between two cluster nodes is configured at both ends
/// consistently (address, port = the other's listen port, AS numbers) and returns,
/// per pair of nodes and address family, how many of the two ends dial.
fn active_sides(c: &ClusterConfig) -> BTreeMap<(String, String, bool), usize> {
    let plans: Vec<NodePlan> = c
        .nodes
        .iter()
        .map(|n| node_plan(c, &n.name).unwrap())
        .collect();
    let owner = |addr: IpAddr| {
        plans.iter().find(|p| {
            p.ipv4_address.map(|a| IpAddr::V4(a.ip())) == Some(addr)
                || p.ipv6_address.map(|a| IpAddr::V6(a.ip())) == Some(addr)
        })
    };
    let own_ip = |p: &NodePlan, v4: bool| {
        if v4 {
            p.ipv4_address.map(|a| IpAddr::V4(a.ip()))
        } else {
            p.ipv6_address.map(|a| IpAddr::V6(a.ip()))
        }
    };
    let mut out = BTreeMap::new();
    for a in &plans {
        for pa in &a.peers {
            let Some(b) = owner(pa.address) else {
                continue; // not a cluster node
            };
            let v4 = pa.address.is_ipv4();
            let a_ip = own_ip(a, v4).unwrap();
            let pb = b
                .peers
                .iter()
                .find(|q| q.address == a_ip && q.port == a.listen_port)
                .unwrap_or_else(|| {
                    panic!(
                        "{} has {} but {} has no session to {a_ip}:{}: {:?}",
                        a.node_name,
                        pa.name,
                        b.node_name,
                        a.listen_port,
                        names(b)
                    )
                });
            assert_eq!(pa.port, b.listen_port, "{} {}", a.node_name, pa.name);
            assert_eq!(pa.remote_as, pb.local_as, "{} {}", a.node_name, pa.name);
            assert_eq!(pb.remote_as, pa.local_as, "{} {}", b.node_name, pb.name);
            let active = usize::from(!pa.passive) + usize::from(!pb.passive);
            let key = if a.node_name < b.node_name {
                (a.node_name.clone(), b.node_name.clone(), v4)
            } else {
                (b.node_name.clone(), a.node_name.clone(), v4)
            };
            out.insert(key, active);
        }
    }
    out
}

#[test]
fn mixed_cluster_every_pair_has_exactly_one_active_side() {
    // Every node may run calico-node or brindle-node: each end is derived on its own,
    // and both must agree. Mesh (with 10.0.0.9 vs 10.0.0.10, IPv6, a node AS, a
    // node-specific listenPort) plus a global peerIP peering towards a node outside the
    // mesh (a route reflector) and its reverse peerings.
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeMeshPassword: {value: m}, nodeMeshMaxRestartTime: 90s}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.n10}
spec: {listenPort: 1790}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n9}
spec: {bgp: {ipv4Address: 10.0.0.9/24, ipv6Address: "fd00::9/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n10}
spec: {bgp: {ipv4Address: 10.0.0.10/24, ipv6Address: "fd00::10/64", asNumber: 65010}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n11}
spec: {bgp: {ipv4Address: 10.0.0.11/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n100}
spec: {bgp: {ipv4Address: 10.0.0.100/24, ipv6Address: "fd00::100/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr}
spec: {bgp: {ipv4Address: 10.0.0.50/24, routeReflectorClusterID: 1.0.0.1}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-rr}
spec: {peerIP: 10.0.0.50, asNumber: 64512}
"#,
    );
    let sides = active_sides(&c);
    let mesh_pairs = 6 + 3; // IPv4 among n9, n10, n11, n100; IPv6 among n9, n10, n100
    let rr_pairs = 4;
    assert_eq!(sides.len(), mesh_pairs + rr_pairs, "{sides:#?}");
    for ((a, b, _), active) in &sides {
        if a == "rr" || b == "rr" {
            continue;
        }
        assert_eq!(*active, 1, "{a}-{b}: {sides:#?}");
    }
    // Towards the RR: the global peerIP peering waits when "10.0.0.50" is greater as a
    // string; the RR's reverse peering (node specific) always dials. So n9 and the RR
    // both dial ("10.0.0.50" < "10.0.0.9"), the others leave it to the RR.
    let rr_sides: Vec<(&str, usize)> = sides
        .iter()
        .filter(|((_, b, _), _)| b == "rr")
        .map(|((a, _, _), n)| (a.as_str(), *n))
        .collect();
    assert_eq!(rr_sides, [("n10", 1), ("n100", 1), ("n11", 1), ("n9", 2)]);
    // The string rule: n10 waits for n9 ("10.0.0.9" > "10.0.0.10"), on IPv6 too
    // ("fd00::9" > "fd00::10").
    let n10 = node_plan(&c, "n10").unwrap();
    assert!(peer(&n10, "Mesh_10_0_0_9").passive);
    assert!(peer(&n10, "Mesh_fd00__9").passive);
    let n9 = node_plan(&c, "n9").unwrap();
    let m = peer(&n9, "Mesh_10_0_0_10");
    assert!(!m.passive);
    assert_eq!((m.port, m.remote_as), (1790, 65010));
    assert_eq!(m.password.as_deref(), Some("m"));
    assert_eq!(m.max_restart_time, Some(Duration::from_secs(90)));
    // Towards the RR: a global peering to a Calico node, passive as "10.0.0.50" is
    // greater than "10.0.0.100"; the RR's reverse peering dials and treats the iBGP
    // nodes as its clients.
    let n100 = node_plan(&c, "n100").unwrap();
    let to_rr = peer(&n100, "Global_10_0_0_50");
    assert!(to_rr.passive);
    assert!(!peer(&n9, "Global_10_0_0_50").passive);
    let rr = node_plan(&c, "rr").unwrap();
    assert_eq!(
        names(&rr),
        [
            "Node_10_0_0_9",
            "Node_10_0_0_10_port_1790",
            "Node_10_0_0_11",
            "Node_10_0_0_100"
        ]
    );
    let back = peer(&rr, "Node_10_0_0_100");
    assert!(back.reverse && !back.passive && back.route_reflector_client);
    assert_eq!(back.bgp_peer.as_deref(), Some("to-rr"));
    // n10 is in another AS: the RR's reverse peering uses it (node AS), n10's own
    // global peering says 64512: consistent, eBGP, so no RR client.
    let to_n10 = peer(&rr, "Node_10_0_0_10_port_1790");
    assert_eq!(to_n10.remote_as, 65010);
    assert!(!to_n10.route_reflector_client);
}

#[test]
fn peer_selector_sessions_on_each_nodes_listen_port_and_both_families() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: true}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.n2}
spec: {listenPort: 1790}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv4Address: 10.0.0.1/24, ipv6Address: "fd00::1/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n2, labels: {edge: "yes"}}
spec: {bgp: {ipv4Address: 10.0.0.2/24, ipv6Address: "fd00::2/64", asNumber: 65002}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n3, labels: {edge: "yes"}}
spec: {bgp: {ipv4Address: 10.0.0.3/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: edges}
spec:
  peerSelector: has(edge)
  password: {value: s}
  keepaliveTime: 20s
  maxRestartTime: 1m
  localASNumber: 65999
  numAllowedLocalASNumbers: 3
  nextHopMode: Self
  reversePeering: Manual
"#,
    );
    let n1 = node_plan(&c, "n1").unwrap();
    // One session per (address, port): the global peering replaces the mesh one.
    assert_eq!(
        names(&n1),
        [
            "Global_10_0_0_2_port_1790",
            "Global_10_0_0_3",
            "Global_fd00__2_port_1790"
        ]
    );
    for p in &n1.peers {
        assert_eq!(p.peer_type, PeerType::Global);
        // confd's nodeAsBGPPeers sets no CalicoNode: selected nodes are always dialled.
        assert!(!p.passive, "{}", p.name);
        assert_eq!(p.password.as_deref(), Some("s"));
        assert_eq!(p.keepalive_time, Some(Duration::from_secs(20)));
        assert_eq!(p.max_restart_time, Some(Duration::from_secs(60)));
        assert_eq!(p.next_hop_mode, NextHopMode::SelfHop);
        // nodeAsBGPPeers copies neither localASNumber nor numAllowedLocalASNumbers.
        assert_eq!(p.local_as, 64512);
        assert_eq!(p.num_allowed_local_as_numbers, None);
        assert_eq!(
            p.source_address,
            same_family_ip(c.node("n1").unwrap(), p.address)
        );
    }
    let to_n2 = peer(&n1, "Global_10_0_0_2_port_1790");
    assert_eq!((to_n2.port, to_n2.remote_as), (1790, 65002));
    assert_eq!(peer(&n1, "Global_10_0_0_3").port, 179);
    // n2 and n3 also get the global peering to each other (and skip themselves).
    let n3 = node_plan(&c, "n3").unwrap();
    assert_eq!(names(&n3), ["Mesh_10_0_0_1", "Global_10_0_0_2_port_1790"]);
}

#[test]
fn reverse_peering_auto_and_manual() {
    let text = |reverse: &str, as_number: u32| {
        format!(
            r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{nodeToNodeMeshEnabled: false}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: a1, labels: {{rack: r1}}}}
spec: {{bgp: {{ipv4Address: 10.0.0.1/24, ipv6Address: "fd00::1/64"}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: a2, labels: {{rack: r1}}}}
spec: {{bgp: {{ipv4Address: 10.0.0.2/24}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: a3, labels: {{rack: r2}}}}
spec: {{bgp: {{ipv4Address: 10.0.0.3/24, ipv6Address: "fd00::3/64"}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: r, labels: {{role: spine}}}}
spec: {{bgp: {{ipv4Address: 10.0.0.9/24, ipv6Address: "fd00::9/64"}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: x}}
spec: {{bgp: {{ipv4Address: 10.0.0.20/24, ipv6Address: "fd00::20/64", asNumber: 65020}}}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: rack1-to-spine}}
spec:
  nodeSelector: rack == 'r1'
  peerSelector: role == 'spine'
  password: {{value: p}}
  {reverse}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: a3-to-x}}
spec:
  node: a3
  peerIP: "fd00::20"
  asNumber: {as_number}
  {reverse}
"#
        )
    };
    // Auto (the default): the node matching peerSelector (r) peers back with the nodes
    // matching nodeSelector (a1, a2), over IPv4 and IPv6; the node at peerIP with that
    // AS (x) peers back with `node` (a3), over peerIP's family only.
    let c = cluster(&text("", 65020));
    let a1 = node_plan(&c, "a1").unwrap();
    assert_eq!(names(&a1), ["Node_10_0_0_9", "Node_fd00__9"]);
    assert!(a1.peers.iter().all(|p| !p.reverse));
    let r = node_plan(&c, "r").unwrap();
    assert_eq!(
        names(&r),
        ["Node_10_0_0_1", "Node_10_0_0_2", "Node_fd00__1"],
        "not a3 (rack r2)"
    );
    for p in &r.peers {
        assert!(p.reverse && !p.passive, "{}", p.name);
        assert_eq!(p.peer_type, PeerType::NodeSpecific);
        assert_eq!(p.bgp_peer.as_deref(), Some("rack1-to-spine"));
        assert_eq!(p.password.as_deref(), Some("p"), "the BGPPeer's settings");
    }
    let a3 = node_plan(&c, "a3").unwrap();
    assert_eq!(names(&a3), ["Node_fd00__20"]);
    let x = node_plan(&c, "x").unwrap();
    assert_eq!(names(&x), ["Node_fd00__3"], "IPv6 only, like peerIP");
    assert!(x.peers[0].reverse);
    assert_eq!((x.peers[0].remote_as, x.peers[0].local_as), (64512, 65020));
    let sides = active_sides(&c);
    assert_eq!(sides.len(), 4, "{sides:#?}");
    for (pair, active) in sides {
        assert_eq!(active, 2, "{pair:?}: node-specific peerings both dial");
    }

    // The reverse of a peerIP peering needs the AS to be the node's.
    let c = cluster(&text("", 65999));
    assert_eq!(names(&node_plan(&c, "a3").unwrap()), ["Node_fd00__20"]);
    assert!(node_plan(&c, "x").unwrap().peers.is_empty());

    // Manual: no reverse peerings at all.
    let c = cluster(&text("reversePeering: Manual", 65020));
    assert_eq!(
        names(&node_plan(&c, "a1").unwrap()),
        ["Node_10_0_0_9", "Node_fd00__9"]
    );
    assert_eq!(names(&node_plan(&c, "a3").unwrap()), ["Node_fd00__20"]);
    assert!(node_plan(&c, "r").unwrap().peers.is_empty());
    assert!(node_plan(&c, "x").unwrap().peers.is_empty());
}

#[test]
fn reverse_peering_of_a_peer_ip_and_explicit_peerings_win() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: a}
spec: {bgp: {ipv4Address: 10.0.0.1/24, ipv6Address: "fd00::1/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: b}
spec: {bgp: {ipv4Address: 10.0.0.2/24, ipv6Address: "fd00::2/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: c}
spec: {bgp: {ipv4Address: 10.0.0.3/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: a-to-b}
spec: {node: a, peerIP: 10.0.0.2, asNumber: 64512, keepaliveTime: 5s}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: c-to-b}
spec: {node: c, peerIP: 10.0.0.2, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: b-to-c}
spec: {node: b, peerIP: 10.0.0.3, asNumber: 64512, password: {value: own}}
"#,
    );
    let b = node_plan(&c, "b").unwrap();
    assert_eq!(names(&b), ["Node_10_0_0_1", "Node_10_0_0_3"], "IPv4 only");
    let to_a = peer(&b, "Node_10_0_0_1");
    assert!(to_a.reverse);
    assert_eq!(to_a.bgp_peer.as_deref(), Some("a-to-b"));
    assert_eq!(to_a.keepalive_time, Some(Duration::from_secs(5)));
    // b's own BGPPeer to c is emitted before c-to-b's reverse peering and wins.
    let to_c = peer(&b, "Node_10_0_0_3");
    assert!(!to_c.reverse);
    assert_eq!(to_c.bgp_peer.as_deref(), Some("b-to-c"));
    assert_eq!(to_c.password.as_deref(), Some("own"));
    // node-specific peerings never wait, even towards a Calico node.
    let a = node_plan(&c, "a").unwrap();
    assert_eq!(names(&a), ["Node_10_0_0_2"]);
    assert!(!a.peers[0].passive);
}

#[test]
fn peer_ip_of_a_node_is_dialled_on_its_listen_port() {
    let text = |listen: &str, peer_as: u32, peer_ip: &str| {
        format!(
            r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{nodeToNodeMeshEnabled: false{listen}}}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: node.n2}}
spec: {{listenPort: 1790}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: n1}}
spec: {{bgp: {{ipv4Address: 10.0.0.1/24}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: n2}}
spec: {{bgp: {{ipv4Address: 10.0.0.2/24}}}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: p}}
spec: {{node: n1, peerIP: "{peer_ip}", asNumber: {peer_as}}}
"#
        )
    };
    // No port in peerIP: the node's listenPort (node.n2), in the name too.
    let c = cluster(&text("", 64512, "10.0.0.2"));
    let n1 = node_plan(&c, "n1").unwrap();
    assert_eq!(names(&n1), ["Node_10_0_0_2_port_1790"]);
    assert_eq!(n1.peers[0].port, 1790);
    // and n2 peers back (its listen port is the one dialled).
    let n2 = node_plan(&c, "n2").unwrap();
    assert_eq!(names(&n2), ["Node_10_0_0_1"]);
    assert!(n2.peers[0].reverse);
    assert_eq!(n2.peers[0].port, 179);
    // Another AS than the node's: not that node (confd's nodesWithIPPortAndAS), no port.
    let c = cluster(&text("", 65000, "10.0.0.2"));
    let n1 = node_plan(&c, "n1").unwrap();
    assert_eq!(names(&n1), ["Node_10_0_0_2"]);
    assert_eq!(n1.peers[0].port, 179);
    assert!(node_plan(&c, "n2").unwrap().peers.is_empty());
    // An explicit port is used as written; the reverse peering needs it to be the
    // node's listen port...
    let c = cluster(&text("", 64512, "10.0.0.2:1790"));
    assert_eq!(
        names(&node_plan(&c, "n1").unwrap()),
        ["Node_10_0_0_2_port_1790"]
    );
    assert_eq!(names(&node_plan(&c, "n2").unwrap()), ["Node_10_0_0_1"]);
    let c = cluster(&text("", 64512, "10.0.0.2:1791"));
    assert!(node_plan(&c, "n2").unwrap().peers.is_empty());
    // ...and, as in confd, a global listenPort that differs excludes the node even
    // when its own listenPort matches.
    let c = cluster(&text(", listenPort: 179", 64512, "10.0.0.2:1790"));
    assert!(node_plan(&c, "n2").unwrap().peers.is_empty());
    // With a global listenPort, a node without its own uses that one.
    let c = cluster(&text(", listenPort: 1179", 64512, "10.0.0.2"));
    assert_eq!(
        names(&node_plan(&c, "n1").unwrap()),
        ["Node_10_0_0_2_port_1790"]
    );
    let n2 = node_plan(&c, "n2").unwrap();
    assert_eq!(names(&n2), ["Node_10_0_0_1_port_1179"]);
    assert_eq!(n2.peers[0].port, 1179);
}

#[test]
fn global_peer_ip_of_a_node_waits_when_greater_as_a_string() {
    // Global peerIP peerings towards cluster nodes (CalicoNode): passive when the
    // peer's IP is greater as a string, so "10.0.0.9" waits for nothing from
    // "10.0.0.10"; the reverse peering each node would get is dropped because a global
    // peering with the same (IP, port) exists.
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n9}
spec: {bgp: {ipv4Address: 10.0.0.9/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n10}
spec: {bgp: {ipv4Address: 10.0.0.10/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-n9}
spec: {peerIP: 10.0.0.9, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-n10}
spec: {peerIP: 10.0.0.10, asNumber: 64512}
"#,
    );
    let n10 = node_plan(&c, "n10").unwrap();
    assert_eq!(names(&n10), ["Global_10_0_0_9"]);
    assert!(n10.peers[0].passive, "\"10.0.0.9\" > \"10.0.0.10\"");
    let n9 = node_plan(&c, "n9").unwrap();
    assert_eq!(names(&n9), ["Global_10_0_0_10"]);
    assert!(!n9.peers[0].passive);
    assert!(!n9.peers[0].reverse);
    let sides = active_sides(&c);
    assert_eq!(sides.values().collect::<Vec<_>>(), [&1]);
}

#[test]
fn several_sessions_to_one_address_on_different_ports() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: a}
spec: {peerIP: "192.0.2.1:179", asNumber: 65000}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: b}
spec: {peerIP: "192.0.2.1:1179", asNumber: 65001}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: c}
spec: {peerIP: 192.0.2.1, asNumber: 65002}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: d}
spec: {node: n1, peerIP: "192.0.2.1:2179", asNumber: 65003}
"#,
    );
    let n1 = node_plan(&c, "n1").unwrap();
    let got: Vec<(&str, u16, u32)> = n1
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.port, p.remote_as))
        .collect();
    // `c` (no port) is 179 too: one session per address and port, the first BGPPeer
    // wins (confd would render both protocols to 192.0.2.1:179).
    assert_eq!(
        got,
        [
            ("Global_192_0_2_1_port_179", 179, 65000),
            ("Global_192_0_2_1_port_1179", 1179, 65001),
            ("Node_192_0_2_1_port_2179", 2179, 65003),
        ]
    );
}

#[test]
fn route_reflector_clients_as_build_peer_from_data() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr1, labels: {rr: "1"}}
spec: {bgp: {ipv4Address: 10.0.0.10/24, routeReflectorClusterID: 1.0.0.1}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr2, labels: {rr: "1"}}
spec: {bgp: {ipv4Address: 10.0.0.11/24, routeReflectorClusterID: 1.0.0.1}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr3, labels: {rr: "1"}}
spec: {bgp: {ipv4Address: 10.0.0.12/24, routeReflectorClusterID: 1.0.0.2}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: rrs}
spec: {node: rr1, peerSelector: has(rr), reversePeering: Manual}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: by-ip}
spec: {node: rr1, peerIP: "10.0.0.11:1179", asNumber: 64512, reversePeering: Manual}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: ebgp}
spec: {node: rr1, peerIP: 192.0.2.1, asNumber: 65000}
"#,
    );
    let rr1 = node_plan(&c, "rr1").unwrap();
    let got: Vec<(&str, bool)> = rr1
        .peers
        .iter()
        .map(|p| (p.name.as_str(), p.route_reflector_client))
        .collect();
    assert_eq!(
        got,
        [
            // same cluster ID: not a client
            ("Node_10_0_0_11", false),
            // a peerIP peering carries no cluster ID in confd: a client
            ("Node_10_0_0_11_port_1179", true),
            // another cluster ID: a client
            ("Node_10_0_0_12", true),
            // eBGP: never
            ("Node_192_0_2_1", false),
        ]
    );
}

#[test]
fn next_hop_modes() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: ibgp-legacy}
spec: {peerIP: 192.0.2.1, asNumber: 64512, keepOriginalNextHop: true}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: ebgp-legacy}
spec: {peerIP: 192.0.2.2, asNumber: 65000, keepOriginalNextHop: true}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: ibgp-keep}
spec: {peerIP: 192.0.2.3, asNumber: 64512, nextHopMode: Keep}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: self}
spec: {peerIP: 192.0.2.4, asNumber: 65000, nextHopMode: Self}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: local-as}
spec: {peerIP: 192.0.2.5, asNumber: 65100, localASNumber: 65100, keepOriginalNextHop: true}
"#,
    );
    let n1 = node_plan(&c, "n1").unwrap();
    let got: Vec<(NextHopMode, bool)> = n1
        .peers
        .iter()
        .map(|p| (p.next_hop_mode, p.keep_original_next_hop))
        .collect();
    assert_eq!(
        got,
        [
            (NextHopMode::Auto, false),
            (NextHopMode::Keep, true),
            (NextHopMode::Keep, true),
            (NextHopMode::SelfHop, false),
            // iBGP once localASNumber is taken into account
            (NextHopMode::Auto, false),
        ]
    );
    assert_eq!(n1.peers[4].local_as, 65100);
}

#[test]
fn router_id_override_and_hash() {
    // confd's own test vectors (template_funcs_test.go), the first with a first byte
    // above 223 (239 - 32).
    assert_eq!(
        hashed_router_id("Testrobin123"),
        Ipv4Addr::new(207, 94, 5, 27)
    );
    assert_eq!(
        hashed_router_id("nodeTest"),
        Ipv4Addr::new(109, 174, 215, 226)
    );

    assert_eq!(RouterIdOverride::parse(""), Ok(None));
    assert_eq!(
        RouterIdOverride::parse("hash"),
        Ok(Some(RouterIdOverride::Hash))
    );
    assert_eq!(
        RouterIdOverride::parse("1.2.3.4"),
        Ok(Some(RouterIdOverride::Address(Ipv4Addr::new(1, 2, 3, 4))))
    );
    let e = RouterIdOverride::parse("Hash").unwrap_err();
    assert!(e.contains("CALICO_ROUTER_ID"), "{e}");

    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: v6only}
spec: {bgp: {ipv6Address: "fd00::1/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: v4}
spec: {bgp: {ipv4Address: 10.0.0.1/24, routerID: 9.9.9.9}}
"#,
    );
    assert!(node_plan(&c, "v6only").is_err());
    let p = node_plan_with_router_id(&c, "v6only", Some(RouterIdOverride::Hash)).unwrap();
    assert_eq!(p.router_id, Ipv4Addr::new(55, 212, 56, 111));
    assert!(
        p.peers.is_empty(),
        "no family in common with v4: {:?}",
        names(&p)
    );
    assert_eq!(
        node_plan(&c, "v4").unwrap().router_id,
        Ipv4Addr::new(9, 9, 9, 9)
    );
    let fixed = RouterIdOverride::Address(Ipv4Addr::new(5, 5, 5, 5));
    assert_eq!(
        node_plan_with_router_id(&c, "v4", Some(fixed))
            .unwrap()
            .router_id,
        Ipv4Addr::new(5, 5, 5, 5),
        "the override wins"
    );
}

#[test]
fn ipv6_only_mesh() {
    let c = cluster(
        r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: a}
spec: {bgp: {ipv6Address: "fd00::a/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: b}
spec: {bgp: {ipv6Address: "fd00::b/64"}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: v4-router}
spec: {peerIP: 192.0.2.1, asNumber: 65000}
"#,
    );
    let a = node_plan_with_router_id(&c, "a", Some(RouterIdOverride::Hash)).unwrap();
    // No IPv4 address: no IPv4 BGP at all (confd: "IPv4 disabled on this node").
    assert_eq!(names(&a), ["Mesh_fd00__b"]);
    assert!(a.peers[0].passive, "\"fd00::b\" > \"fd00::a\"");
    assert_eq!(a.router_id, hashed_router_id("a"));
}

#[test]
fn service_addresses_are_advertised_with_their_communities() {
    let yaml = r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  serviceClusterIPs: [{cidr: 10.96.0.0/12}]
  serviceExternalIPs: [{cidr: 192.0.2.0/24}]
  communities: [{name: svc, value: "65000:80"}]
  prefixAdvertisements: [{cidr: 192.0.2.0/24, communities: [svc]}]
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-a, labels: {rack: a}}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node-b
  labels: {node.kubernetes.io/exclude-from-external-load-balancers: "true"}
spec: {bgp: {ipv4Address: 10.0.0.2/24}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  externalIPs: [192.0.2.10]
  externalTrafficPolicy: Local
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: [10.65.0.7]
  nodeName: node-a
- addresses: [10.65.0.8]
  nodeName: node-b
"#;
    let c = brindle_model::parse("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let a = node_plan(&c, "node-a").unwrap();
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
        [
            ("10.96.0.0/12".to_string(), vec![]),
            ("10.96.0.10/32".to_string(), vec![]),
            ("192.0.2.0/24".to_string(), vec!["65000:80".to_string()]),
            ("192.0.2.10/32".to_string(), vec!["65000:80".to_string()]),
        ]
    );
    // node-b has a ready local endpoint too, but the exclusion label
    let b = node_plan(&c, "node-b").unwrap();
    assert!(b.advertise.is_empty(), "{:?}", b.advertise);
    assert!(b.services.excluded);
    assert_eq!(b.services.kernel_reject.len(), 2);
}

#[test]
fn borrowed_pod_addresses_are_advertised_as_host_routes() {
    // n1 owns 10.65.0.0/26; its pod b borrowed 10.65.0.70 from n2's block, pod c is in
    // a pool with BGP export disabled, pod d is n2's.
    let text = format!(
        "{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.65.0.0/16}}\n---\n\
         {HDR}kind: IPPool\nmetadata: {{name: q}}\nspec: {{cidr: 10.66.0.0/16, disableBGPExport: true}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n1}}\nspec: {{bgp: {{ipv4Address: 10.0.0.1/24}}}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n2}}\nspec: {{bgp: {{ipv4Address: 10.0.0.2/24}}}}\n---\n\
         {HDR}kind: BlockAffinity\nmetadata: {{name: a}}\nspec: {{node: n1, cidr: 10.65.0.0/26}}\n---\n\
         {HDR}kind: BlockAffinity\nmetadata: {{name: b}}\nspec: {{node: n2, cidr: 10.65.0.64/26}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: a, namespace: default}}\nspec: {{nodeName: n1}}\nstatus: {{phase: Running, podIP: 10.65.0.3}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: b, namespace: default}}\nspec: {{nodeName: n1}}\nstatus: {{phase: Running, podIP: 10.65.0.70}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: c, namespace: default}}\nspec: {{nodeName: n1}}\nstatus: {{phase: Running, podIP: 10.66.0.9}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: d, namespace: default}}\nspec: {{nodeName: n2}}\nstatus: {{phase: Running, podIP: 10.65.0.71}}\n"
    );
    let c = parse("o.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let n1 = node_plan(&c, "n1").unwrap();
    let adv: Vec<String> = n1.advertise.iter().map(|a| a.prefix.to_string()).collect();
    assert_eq!(adv, ["10.65.0.0/26", "10.65.0.70/32"]);
    let n2 = node_plan(&c, "n2").unwrap();
    let adv: Vec<String> = n2.advertise.iter().map(|a| a.prefix.to_string()).collect();
    assert_eq!(adv, ["10.65.0.64/26"], "n2's own pod is inside its block");
}
