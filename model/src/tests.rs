use super::*;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

const HDR: &str = "apiVersion: projectcalico.org/v3\n";

/// A realistic cluster exercising every kind and most fields.
const FULL: &str = include_str!("../testdata/full-cluster.yaml");

fn full() -> ClusterConfig {
    parse("cluster.yaml", FULL).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ConfigError {
    match parse("cluster.yaml", text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn parses_full_example() {
    let c = full();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.bgp_configurations.len(), 2);
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.bgp_peers.len(), 2);
    assert_eq!(c.ip_pools.len(), 3);
    assert_eq!(c.block_affinities.len(), 5);
    assert_eq!(c.resources.len(), 15);
    assert_eq!(c.resources[0].kind, Kind::BgpConfiguration);
    assert_eq!(c.resources[0].line, 3);

    let d = c.bgp_configuration("default").unwrap();
    assert_eq!(d.as_number, Some(64512));
    assert_eq!(d.node_mesh_password.as_deref(), Some("mesh-secret"));
    assert_eq!(d.node_mesh_max_restart_time, Some(Duration::from_secs(120)));
    assert_eq!(d.bind_mode, Some(BindMode::NodeIP));
    assert_eq!(
        d.ignored_interfaces.as_deref(),
        Some(&["docker0".to_string(), "kube-ipvs*".to_string()][..])
    );
    assert_eq!(
        d.communities.as_ref().unwrap()[1].value,
        Community::Large(4200000000, 1, 2)
    );

    let a = c.node("node-a").unwrap();
    assert_eq!(a.ipv4_address.unwrap().to_string(), "10.0.0.1/24");
    assert_eq!(a.ipv4_address.unwrap().prefix(), 24);
    assert_eq!(a.ipv4_ipip_tunnel_addr, Some(Ipv4Addr::new(10, 65, 0, 1)));
    assert_eq!(a.labels["kubernetes.io/os"], "linux");
    assert_eq!(c.node_as_number(a), (64512, true));
    assert_eq!(c.node_as_number(c.node("node-b").unwrap()), (65010, false));

    let tor = &c.bgp_peers[0];
    assert_eq!(tor.peer_ip, Some(ip("10.0.0.253")));
    assert_eq!(tor.peer_port, Some(1179));
    assert!(!tor.is_global());
    assert_eq!(tor.ttl_security, Some(1));
    assert_eq!(tor.keepalive_time, Some(Duration::from_secs(10)));
    let edge = &c.bgp_peers[1];
    assert!(edge.is_global(), "nodeSelector all() is global");
    assert_eq!(edge.peer_ip, Some(ip("fd00::fe")));
    assert_eq!(edge.source_address, SourceAddress::None);

    let p4 = &c.ip_pools[0];
    assert_eq!(p4.ipip_mode, EncapMode::CrossSubnet);
    assert_eq!(p4.vxlan_mode, EncapMode::Never);
    assert!(p4.nat_outgoing);
    assert_eq!(c.ip_pools[1].block_size, 26);
    assert_eq!(c.ip_pools[2].block_size, 122);
    assert_eq!(c.ip_pools[2].vxlan_mode, EncapMode::Always);
    assert_eq!(c.block_affinities[3].state, AffinityState::PendingDeletion);

    // raw JSON keeps the resource as written
    assert_eq!(c.resources[5].json["spec"]["peerIP"], "10.0.0.253:1179");
}

#[test]
fn error_bad_peer_ip_names_everything() {
    let text = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: rack1-tor\nspec:\n  peerIP: 10.0.0.300\n  asNumber: 65000\n";
    let e = err(text);
    assert_eq!(
        e.to_string(),
        "cluster.yaml: BGPPeer/rack1-tor: spec.peerIP: \"10.0.0.300\" is not an IP address (line 6)"
    );
    assert_eq!(e.resource(), Some("BGPPeer/rack1-tor"));
    assert_eq!(e.field(), Some("spec.peerIP"));
    assert_eq!(e.line(), Some(6));
}

#[test]
fn error_unknown_field_hint() {
    let text = format!(
        "{HDR}kind: BGPPeer\nmetadata:\n  name: p\nspec:\n  peerIP: 10.0.0.1\n  asnumber: 65000\n"
    );
    let e = err(&text);
    assert_eq!(
        e.to_string(),
        "cluster.yaml: BGPPeer/p: spec.asnumber: unknown field; did you mean asNumber? (line 7)"
    );
    let text = format!(
        "{HDR}kind: Node\nmetadata:\n  name: n\nspec:\n  bgp:\n    ipv4Adress: 10.0.0.1/24\n"
    );
    assert!(err(&text)
        .to_string()
        .contains("Node/n: spec.bgp.ipv4Adress: unknown field; did you mean ipv4Address?"));
    let text = format!("{HDR}kind: Node\nmetadata:\n  name: n\n  lables: {{a: b}}\n");
    assert!(err(&text)
        .to_string()
        .contains("metadata.lables: unknown field; did you mean labels?"));
    let text = format!("{HDR}kind: Node\nmetadata:\n  name: n\nspce: {{}}\n");
    assert!(err(&text)
        .to_string()
        .contains("Node/n: spce: unknown field; did you mean spec?"));
    let text = format!(
        "{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec:\n  cidr: 10.0.0.0/16\n  totallyWrong: 1\n"
    );
    let s = err(&text).to_string();
    assert!(
        s.contains("spec.totallyWrong: unknown field (valid fields: cidr, blockSize"),
        "{s}"
    );
}

#[test]
fn error_cases_name_file_resource_field() {
    // (yaml, expected substring)
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 10.0.0.1, asNumber: 0}}\n"),
            "BGPPeer/p: spec.asNumber: AS number must be between 1 and 4294967295 (line 4)",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 10.0.0.1, asNumber: 4294967296}}\n"),
            "BGPPeer/p: spec.asNumber: AS number must be between 1 and 4294967295",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 10.0.0.1}}\n"),
            "BGPPeer/p: spec.asNumber: required when peerIP is set",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{asNumber: 1}}\n"),
            "BGPPeer/p: spec: a BGPPeer needs either peerIP (with asNumber) or peerSelector",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 10.0.0.1, asNumber: 1, peerSelector: all()}}\n"),
            "BGPPeer/p: spec.peerSelector: peerIP and peerSelector cannot both be set",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{node: a, nodeSelector: all(), peerIP: 10.0.0.1, asNumber: 1}}\n"),
            "BGPPeer/p: spec.nodeSelector: node and nodeSelector cannot both be set",
        ),
        (
            // Calico accepts a secretKeyRef (see calico_password_secret_key_ref_is_kept); its key is required.
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec:\n  peerIP: 10.0.0.1\n  asNumber: 1\n  password:\n    secretKeyRef: {{name: s}}\n"),
            "BGPPeer/p: spec.password.secretKeyRef.key: required field is missing (line 8)",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 10.0.0.1, asNumber: 1, maxRestartTime: 120}}\n"),
            "BGPPeer/p: spec.maxRestartTime: expected a duration string with a unit (e.g. \"120s\")",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 10.0.0.1, asNumber: 1, keepaliveTime: 5parsecs}}\n"),
            "BGPPeer/p: spec.keepaliveTime: \"5parsecs\" is not a duration",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 10.0.0.1, asNumber: 1, ttlSecurity: 300}}\n"),
            "BGPPeer/p: spec.ttlSecurity: 300 is out of range (0..=255)",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerSelector: \"rack = 'x'\"}}\n"),
            "BGPPeer/p: spec.peerSelector: invalid selector \"rack = 'x'\": use '==' to compare labels",
        ),
        (
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 10.0.0.1, asNumber: 1, sourceAddress: UseNodeIp}}\n"),
            "BGPPeer/p: spec.sourceAddress: \"UseNodeIp\" is not one of UseNodeIP, None; did you mean UseNodeIP?",
        ),
        (
            // Calico accepts a bare address (see calico_node_bare_address_is_a_host_address).
            format!("{HDR}kind: Node\nmetadata: {{name: n}}\nspec:\n  bgp:\n    ipv4Address: 10.0.0.1/33\n"),
            "Node/n: spec.bgp.ipv4Address: \"10.0.0.1/33\" is not a CIDR",
        ),
        (
            format!("{HDR}kind: Node\nmetadata: {{name: n}}\nspec:\n  bgp:\n    ipv4Address: fd00::1/64\n"),
            "Node/n: spec.bgp.ipv4Address: \"fd00::1/64\" is an IPv6 CIDR; put it in spec.bgp.ipv6Address",
        ),
        (
            format!("{HDR}kind: Node\nmetadata: {{name: n}}\nspec: {{bgp: {{asNumber: many}}}}\n"),
            "Node/n: spec.bgp.asNumber: \"many\" is not an AS number",
        ),
        (
            format!("{HDR}kind: Node\nmetadata: {{name: N_1}}\n"),
            "Node/N_1: metadata.name: \"N_1\" is not a valid name",
        ),
        (
            format!("{HDR}kind: Node\nmetadata: {{labels: {{a: b}}}}\n"),
            "cluster.yaml: Node: metadata.name: required field is missing",
        ),
        (
            format!("{HDR}kind: Node\nmetadata: {{name: n, labels: {{rack: [1]}}}}\n"),
            "Node/n: metadata.labels.rack: expected a string, found a list",
        ),
        (
            format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.65.1.0/16}}\n"),
            "IPPool/p: spec.cidr: \"10.65.1.0/16\" has host bits set; did you mean \"10.65.0.0/16\"?",
        ),
        (
            format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.65.0.0/16, blockSize: 33}}\n"),
            "IPPool/p: spec.blockSize: 33 is out of range (20..=32)",
        ),
        (
            format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.65.0.0/16, ipipMode: always}}\n"),
            "IPPool/p: spec.ipipMode: \"always\" is not one of Never, Always, CrossSubnet; did you mean Always?",
        ),
        (
            format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.65.0.0/16, ipipMode: Always, vxlanMode: Always}}\n"),
            "IPPool/p: spec.vxlanMode: ipipMode and vxlanMode cannot both be enabled",
        ),
        (
            format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 'fd00::/48', ipipMode: Always}}\n"),
            "IPPool/p: spec.ipipMode: IPIP is not supported for IPv6 pools",
        ),
        (
            format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.65.0.0/16}}\n---\n{HDR}kind: IPPool\nmetadata: {{name: q}}\nspec: {{cidr: 10.65.128.0/17}}\n"),
            "IPPool/q: spec.cidr: 10.65.128.0/17 overlaps 10.65.0.0/16 of IPPool/p (defined at line 1) (line 9)",
        ),
        (
            format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.65.0.0/16}}\n---\n{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.66.0.0/16}}\n"),
            "IPPool/p: metadata.name: duplicate IPPool name \"p\" (first defined at line 1) (line 8)",
        ),
        (
            format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.65.0.0/16}}\n---\n{HDR}kind: BlockAffinity\nmetadata: {{name: b}}\nspec: {{node: n, cidr: 10.66.0.0/26}}\n"),
            "BlockAffinity/b: spec.cidr: 10.66.0.0/26 is not inside any IPPool (10.65.0.0/16) (line 9)",
        ),
        (
            format!("{HDR}kind: BlockAffinity\nmetadata: {{name: b1}}\nspec: {{node: n1, cidr: 10.66.0.0/26}}\n---\n{HDR}kind: BlockAffinity\nmetadata: {{name: b2}}\nspec: {{node: n2, cidr: 10.66.0.0/26}}\n"),
            "BlockAffinity/b2: spec.cidr: 10.66.0.0/26 overlaps 10.66.0.0/26 owned by node \"n1\"",
        ),
        (
            format!("{HDR}kind: Node\nmetadata: {{name: a}}\nspec: {{bgp: {{ipv4Address: 10.0.0.1/24}}}}\n---\n{HDR}kind: Node\nmetadata: {{name: b}}\nspec: {{bgp: {{ipv4Address: 10.0.0.1/24}}}}\n"),
            "Node/b: spec.bgp.ipv4Address: 10.0.0.1 is also the address of Node/a",
        ),
        (
            format!("{HDR}kind: BGPConfiguration\nmetadata: {{name: global}}\n"),
            "BGPConfiguration/global: metadata.name: BGPConfiguration \"global\" would never be used",
        ),
        (
            format!("{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n  communities:\n    - name: c\n      value: 70000:1\n"),
            "BGPConfiguration/default: spec.communities[0].value: \"70000:1\" is not a community",
        ),
        (
            format!("{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n  prefixAdvertisements:\n    - cidr: 10.0.0.0/8\n      communities: [nope]\n"),
            "BGPConfiguration/default: spec.prefixAdvertisements: community \"nope\" (for 10.0.0.0/8) is neither defined",
        ),
        (
            format!("{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: maybe}}\n"),
            "BGPConfiguration/default: spec.nodeToNodeMeshEnabled: expected true or false, found a string",
        ),
        (
            format!("{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{serviceClusterIPs: [{{cidr: 10.96.0.1}}]}}\n"),
            "BGPConfiguration/default: spec.serviceClusterIPs[0].cidr: \"10.96.0.1\" is not a CIDR: add the prefix length (e.g. \"10.96.0.1/32\")",
        ),
        (
            format!("{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{listenPort: 70000}}\n"),
            "BGPConfiguration/default: spec.listenPort: 70000 is out of range (1..=65535)",
        ),
        (
            format!("{HDR}kind: BgpPeer\nmetadata: {{name: p}}\n"),
            "cluster.yaml: BgpPeer/p: kind: unknown kind \"BgpPeer\"; did you mean BGPPeer? (line 2)",
        ),
        (
            format!("{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec: {{selektor: all()}}\n"),
            "GlobalNetworkPolicy/p: spec.selektor: unknown field; did you mean selector?",
        ),
        (
            "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata: {name: p}\n".to_string(),
            "IPPool/p: apiVersion: unsupported apiVersion \"crd.projectcalico.org/v1\"; this is Calico's CRD storage form",
        ),
        (
            "kind: IPPool\nmetadata: {name: p}\n".to_string(),
            "IPPool/p: apiVersion: required field is missing (use apiVersion: projectcalico.org/v3)",
        ),
        (
            "- a\n- b\n".to_string(),
            "cluster.yaml: resource: expected a resource (a mapping with apiVersion, kind, metadata, spec), found a list",
        ),
    ];
    for (yaml, want) in cases {
        let e = err(&yaml).to_string();
        assert!(e.contains(want), "\n got: {e}\nwant: {want}\nyaml:\n{yaml}");
        assert!(e.starts_with("cluster.yaml: "), "{e}");
    }
}

#[test]
fn yaml_syntax_error_has_line() {
    let e =
        err("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n   name: a\n  labels: {}\n");
    assert!(matches!(e, ConfigError::Yaml { .. }), "{e:?}");
    assert_eq!(e.line(), Some(5));
    let e = err("apiVersion: x\napiVersion: y\n");
    assert!(e.to_string().contains("duplicate mapping key"), "{e}");
}

#[test]
fn load_reports_missing_file() {
    let e = load(Path::new("/nonexistent/brindle.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/brindle.yaml: cannot read: "),
        "{e}"
    );
}

#[test]
fn warnings_for_suspicious_but_valid_input() {
    let text = format!(
        "{HDR}kind: BlockAffinity\nmetadata: {{name: b}}\nspec: {{node: ghost, cidr: 10.66.0.0/26}}\n---\n\
         {HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{node: ghost2, peerIP: 10.0.0.1, asNumber: 1}}\n---\n\
         {HDR}kind: Node\nmetadata: {{name: n}}\nspec: {{bgp: {{ipv4Address: 10.0.0.5/32}}}}\n"
    );
    let c = parse("w.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let all = c.warnings.join("\n");
    assert!(
        all.contains("BlockAffinity/b: spec.node: there is no Node named \"ghost\""),
        "{all}"
    );
    assert!(all.contains("BlockAffinity/b: spec.cidr: 10.66.0.0/26 is not inside any IPPool (there is no IPv4 pool)"), "{all}");
    assert!(
        all.contains("BGPPeer/p: spec.node: there is no Node named \"ghost2\""),
        "{all}"
    );
    assert!(
        all.contains("Node/n: spec.bgp.ipv4Address: a /32 node address"),
        "{all}"
    );
}

#[test]
fn list_documents_are_unwrapped() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: BGPPeerList
metadata:
  resourceVersion: "123"
items:
  - apiVersion: projectcalico.org/v3
    kind: BGPPeer
    metadata:
      name: one
    spec:
      peerIP: 10.0.0.1
      asNumber: 65000
  - metadata:
      name: two
    spec:
      peerIP: 10.0.0.2
      asNumber: 65000
---
apiVersion: projectcalico.org/v3
kind: List
items:
  - apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: n}
    spec: {bgp: {ipv4Address: 10.0.0.9/24}}
"#;
    let c = parse("l.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.bgp_peers.len(), 2);
    assert_eq!(c.bgp_peers[1].name, "two");
    assert_eq!(c.resources[1].json["kind"], "BGPPeer");
    assert_eq!(c.nodes.len(), 1);
    let bad = "apiVersion: projectcalico.org/v3\nkind: List\nitems:\n  - apiVersion: projectcalico.org/v3\n    kind: Node\n    metadata: {name: n}\n    spec: {bgp: {ipv4Address: nope}}\n";
    let e = parse("l.yaml", bad).unwrap_err().to_string();
    assert!(
        e.contains("Node/n: spec.bgp.ipv4Address: \"nope\" is not a CIDR (line 7)"),
        "{e}"
    );
}

#[test]
fn empty_file_is_an_empty_config() {
    let c = parse("e.yaml", "# nothing yet\n").unwrap();
    assert!(c.nodes.is_empty() && c.resources.is_empty());
    assert_eq!(c.bgp_config_for("x"), EffectiveBgpConfig::default());
}

#[test]
fn unquoted_scalars_read_as_strings_like_kubernetes_tools() {
    // sigs.k8s.io/yaml: a bool or number where a string is expected is its text.
    let c = parse(
        "t.yaml",
        &format!(
            "{HDR}kind: Node\nmetadata: {{name: n, labels: {{rack: 1, edge: true, zone: 1.5}}}}\n"
        ),
    )
    .unwrap();
    let l = &c.nodes[0].labels;
    assert_eq!(
        (l["rack"].as_str(), l["edge"].as_str(), l["zone"].as_str()),
        ("1", "true", "1.5")
    );
}

#[test]
fn valid_calico_kinds_brindle_does_not_use_are_skipped_with_a_warning() {
    let c = parse(
        "t.yaml",
        &format!("{HDR}kind: Tier\nmetadata: {{name: security}}\nspec: {{order: 100}}\n"),
    )
    .unwrap();
    assert!(c.resources.is_empty());
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("ignored: kind Tier"),
        "{}",
        c.warnings[0]
    );
}

#[test]
fn host_endpoints_decode_with_calicos_full_field_set() {
    let c = parse(
        "t.yaml",
        &format!(
            "{HDR}kind: HostEndpoint\nmetadata: {{name: n1-eth0, labels: {{role: node}}}}\nspec:\n  node: n1\n  interfaceName: eth0\n  expectedIPs: [192.0.2.1, 'fd00::1']\n  profiles: [projectcalico-default-allow]\n  ports: [{{name: web, protocol: TCP, port: 8080}}, {{name: dns, protocol: udp, port: 53}}]\n\
             ---\n{HDR}kind: HostEndpoint\nmetadata: {{name: all}}\nspec: {{node: n1, interfaceName: '*'}}\n"
        ),
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let h = &c.host_endpoints[0];
    assert_eq!(
        (
            h.node.as_str(),
            h.interface_name.as_str(),
            h.expected_ips.len()
        ),
        ("n1", "eth0", 2)
    );
    assert!(h.profile_allows());
    assert_eq!(h.labels["role"], "node");
    assert_eq!(
        h.ports[1],
        EndpointPort {
            name: "dns".into(),
            protocol: 17,
            port: 53
        }
    );
    assert_eq!(c.host_endpoints[1].interface_name, "*");
    assert!(!c.host_endpoints[1].profile_allows());
    // Misspelt: rejected with a hint.
    let e = parse(
        "t.yaml",
        &format!("{HDR}kind: HostEndpoint\nmetadata: {{name: h}}\nspec: {{node: n1, interfaceNme: eth0}}\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("did you mean interfaceName?"), "{e}");
    // Neither an interface nor addresses: what would it be?
    let e = parse(
        "t.yaml",
        &format!("{HDR}kind: HostEndpoint\nmetadata: {{name: h}}\nspec: {{node: n1}}\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs interfaceName"), "{e}");
    let e = parse(
        "t.yaml",
        &format!("{HDR}kind: HostEndpoint\nmetadata: {{name: h}}\nspec: {{node: n1, interfaceName: eth0, expectedIPs: [10.0.0.300]}}\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not an IP address"), "{e}");
    // Only expectedIPs: accepted, with a warning that it polices nothing.
    let c = parse(
        "t.yaml",
        &format!("{HDR}kind: HostEndpoint\nmetadata: {{name: h}}\nspec: {{node: n1, expectedIPs: [10.0.0.1]}}\n"),
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("no interfaceName"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn felix_configuration_failsafe_ports_and_unimplemented_fields() {
    use crate::resolved::{Failsafe, DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND};
    let c = parse(
        "t.yaml",
        &format!(
            "{HDR}kind: FelixConfiguration\nmetadata: {{name: default}}\nspec:\n  logSeverityScreen: Info\n  bpfEnabled: false\n  failsafeInboundHostPorts: [{{protocol: TCP, port: 22}}, {{protocol: tcp, port: 443, net: 10.0.0.0/8}}]\n\
             ---\n{HDR}kind: FelixConfiguration\nmetadata: {{name: node.n2}}\nspec: {{failsafeInboundHostPorts: [], failsafeOutboundHostPorts: [{{protocol: UDP, port: 53}}]}}\n"
        ),
    )
    .unwrap();
    // One warning per unimplemented field, naming it.
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("ignored: spec.logSeverityScreen"),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings[1].contains("ignored: spec.bpfEnabled"),
        "{:?}",
        c.warnings
    );
    let ssh = Failsafe::new(6, 22);
    let https = Failsafe {
        protocol: 6,
        port: 443,
        net: Some("10.0.0.0/8".parse().unwrap()),
    };
    // n1 has no node configuration: default's inbound, Calico's outbound.
    assert_eq!(
        c.failsafe_ports("n1"),
        (vec![ssh, https], DEFAULT_FAILSAFE_OUTBOUND.to_vec())
    );
    // n2's own lists win, an empty one meaning none.
    assert_eq!(
        c.failsafe_ports("n2"),
        (vec![], vec![Failsafe::new(17, 53)])
    );
    assert_eq!(https.label(), "tcp:10.0.0.0/8:443");
    // Nothing at all: Calico's defaults.
    let empty = parse("t.yaml", "").unwrap();
    assert_eq!(
        empty.failsafe_ports("n1"),
        (
            DEFAULT_FAILSAFE_INBOUND.to_vec(),
            DEFAULT_FAILSAFE_OUTBOUND.to_vec()
        )
    );
    // What the Calico operator writes (and a field removed in Calico 3.31): loads, one
    // warning per field.
    let c = parse(
        "t.yaml",
        &format!("{HDR}kind: FelixConfiguration\nmetadata: {{name: default}}\nspec:\n  bpfConnectTimeLoadBalancing: TCP\n  bpfHostNetworkedNATWithoutCTLB: Enabled\n  bpfLogLevel: ''\n  floatingIPs: Disabled\n  healthPort: 9099\n  logSeverityScreen: Info\n  reportingInterval: 0s\n  vxlanVNI: 4096\n  iptablesLockTimeout: 0s\n"),
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 9, "{:?}", c.warnings);
    assert_eq!(c.felix_configurations.len(), 1);
    // A misspelt field: rejected with a hint; a bad protocol too.
    let e = parse(
        "t.yaml",
        &format!("{HDR}kind: FelixConfiguration\nmetadata: {{name: default}}\nspec: {{failsafeInboundHostPort: []}}\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("did you mean failsafeInboundHostPorts?"), "{e}");
    let e = parse(
        "t.yaml",
        &format!("{HDR}kind: FelixConfiguration\nmetadata: {{name: default}}\nspec: {{failsafeOutboundHostPorts: [{{protocol: ICMP, port: 1}}]}}\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not one of TCP, UDP, SCTP"), "{e}");
}

#[test]
fn kubernetes_objects_load_in_file_mode() {
    let text = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels: {app: web}
  annotations: {cni.projectcalico.org/podIP: 10.65.0.7/32}
spec:
  nodeName: node-a
  containers:
  - name: web
    image: nginx
    ports: [{name: http, containerPort: 8080}]
status: {phase: Running}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  externalTrafficPolicy: Local
  externalIPs: [192.0.2.10]
status: {loadBalancer: {ingress: [{ip: 198.51.100.7}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: [10.65.0.7]
  nodeName: node-a
- addresses: [10.65.0.70]
  conditions: {ready: false}
  nodeName: node-b
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: frontend, namespace: shop, labels: {role: edge}}
automountServiceAccountToken: false
"#;
    let c = parse("t.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.namespaces[0].labels["kubernetes.io/metadata.name"],
        "shop"
    );
    let pod = &c.pods[0];
    assert_eq!(pod.ips, vec![ip("10.65.0.7")]);
    assert!(pod.is_workload());
    assert_eq!(&*pod.ports[0].name, "http");
    assert_eq!(&*pod.service_account, "default");
    let svc = &c.services[0];
    assert_eq!(svc.cluster_ips, vec![ip("10.96.0.10")]);
    assert_eq!(svc.load_balancer_ips, vec![ip("198.51.100.7")]);
    assert_eq!(svc.spec_load_balancer_ip, None);
    assert_eq!(svc.ip_families, ["IPv4"], "defaulted from the cluster IPs");
    assert_eq!(
        svc.external_traffic_policy,
        Some(crate::kubernetes::TrafficPolicy::Local)
    );
    let slice = &c.endpoint_slices[0];
    assert_eq!(slice.address_type.as_deref(), Some("IPv4"));
    assert_eq!(slice.service_name.as_deref(), Some("web"));
    assert!(slice.endpoints[0].ready && !slice.endpoints[1].ready);
    assert_eq!(c.kubernetes_network_policies[0].namespace, "shop");
    assert_eq!(c.resources[1].key(), "shop/web-0");
    let sa = &c.service_accounts[0];
    assert_eq!((&*sa.namespace, &*sa.name), ("shop", "frontend"));
    assert_eq!(sa.labels["role"], "edge");
}

// ---------------------------------------------------------------------------------------------
// Calico fidelity: the full field set of each Calico kind (Calico 3.31+), fixtures in
// testdata/calico/ written as users and calicoctl write them.
// ---------------------------------------------------------------------------------------------

const CALICO_BGP_CONFIGURATION: &str = include_str!("../testdata/calico/bgpconfiguration.yaml");
const CALICO_BGP_PEERS: &str = include_str!("../testdata/calico/bgppeer.yaml");
const CALICO_IP_POOLS: &str = include_str!("../testdata/calico/ippool.yaml");
const CALICO_NODE: &str = include_str!("../testdata/calico/node.yaml");
const CALICO_IPAM: &str = include_str!("../testdata/calico/ipam.yaml");

fn load_ok(label: &str, text: &str) -> ClusterConfig {
    parse(label, text).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts that exactly one warning says `path` of `resource` is ignored.
fn assert_ignored_once(c: &ClusterConfig, resource: &str, path: &str) {
    let needle = format!(
        "{resource}: ignored: {path} (a valid Calico field that Brindle does not implement yet)"
    );
    let n = c.warnings.iter().filter(|w| w.contains(&needle)).count();
    assert_eq!(n, 1, "{needle}\n{:#?}", c.warnings);
}

fn count_warnings(c: &ClusterConfig, needle: &str) -> usize {
    c.warnings.iter().filter(|w| w.contains(needle)).count()
}

fn nets(v: &Option<Vec<ipnetwork::IpNetwork>>) -> Vec<String> {
    v.iter().flatten().map(|n| n.to_string()).collect()
}

fn secret(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
        optional: false,
    }
}

#[test]
fn calico_bgp_configuration_with_every_field_loads() {
    let c = load_ok("bgpconfig.yaml", CALICO_BGP_CONFIGURATION);
    let d = c.bgp_configuration("default").unwrap();
    // logSeverityScreen is case-insensitive in Calico; kept in Calico's spelling.
    assert_eq!(d.log_severity_screen.as_deref(), Some("Info"));
    assert_eq!(d.node_to_node_mesh_enabled, Some(true));
    assert_eq!(d.as_number, Some(63400));
    assert_eq!(d.listen_port, Some(178));
    assert_eq!(d.bind_mode, Some(BindMode::NodeIP));
    assert_eq!(
        nets(&d.service_cluster_ips),
        ["10.96.0.0/12", "fd00:96::/112"]
    );
    assert_eq!(
        nets(&d.service_external_ips),
        ["104.244.42.129/32", "172.217.3.0/24"]
    );
    assert_eq!(nets(&d.service_load_balancer_ips), ["192.0.2.0/24"]);
    assert_eq!(
        d.service_load_balancer_aggregation,
        Some(ServiceLoadBalancerAggregation::Disabled)
    );
    let comms = d.communities.as_ref().unwrap();
    assert_eq!(comms[0].name, "bgp-large-community");
    assert_eq!(comms[0].value, Community::Large(63400, 300, 100));
    assert_eq!(comms[1].value, Community::Standard((65535 << 16) | 65281));
    let pas = d.prefix_advertisements.as_ref().unwrap();
    assert_eq!(pas[0].cidr.to_string(), "172.218.4.0/26");
    assert_eq!(pas[0].communities, ["bgp-large-community", "63400:120"]);
    assert_eq!(
        d.node_mesh_password_source,
        Some(PasswordSource::SecretKeyRef(secret(
            "bgp-secrets",
            "mesh-password"
        )))
    );
    assert_eq!(d.node_mesh_password, None, "a Secret is not resolved here");
    assert_eq!(
        d.unresolved_mesh_password(),
        Some(&secret("bgp-secrets", "mesh-password"))
    );
    assert_eq!(d.node_mesh_max_restart_time, Some(Duration::from_secs(150)));
    assert_eq!(
        d.ignored_interfaces.as_deref(),
        Some(&["iface-1".to_string(), "kube-ipvs*".to_string()][..])
    );
    let eff = c.bgp_config_for("worker-1");
    assert_eq!(eff.as_number, 63400);
    assert_eq!(eff.listen_port, 178);
    assert_eq!(eff.node_mesh_password, None);

    for path in [
        "spec.localWorkloadPeeringIPV4",
        "spec.localWorkloadPeeringIPV6",
        "spec.programClusterRoutes",
        "spec.ipv4NormalRoutePriority",
        "spec.ipv6NormalRoutePriority",
    ] {
        assert_ignored_once(&c, "BGPConfiguration/default", path);
    }
    assert_eq!(
        count_warnings(
            &c,
            "BGPConfiguration/default: spec.nodeMeshPassword.secretKeyRef: Brindle does not read Kubernetes Secrets yet: these sessions have no password"
        ),
        1,
        "{:#?}",
        c.warnings
    );
    assert_eq!(c.warnings.len(), 6, "{:#?}", c.warnings);
}

#[test]
fn calico_bgp_peers_with_every_field_load() {
    let c = load_ok("bgppeer.yaml", CALICO_BGP_PEERS);
    assert_eq!(c.bgp_peers.len(), 4);

    let tor = &c.bgp_peers[0];
    assert_eq!(tor.name, "rack1-tor");
    assert_eq!(
        tor.node_selector.as_ref().map(|s| s.as_str()),
        Some("rack == 'rack-1'")
    );
    assert_eq!(tor.peer_ip, Some(ip("192.20.30.40")));
    assert_eq!(tor.peer_port, Some(1179));
    assert_eq!(tor.as_number, Some(64567));
    assert_eq!(tor.local_as_number, Some(64600));
    assert_eq!(
        tor.password_source,
        Some(PasswordSource::SecretKeyRef(secret(
            "bgp-secrets",
            "rr-password"
        )))
    );
    assert_eq!(tor.password, None);
    assert_eq!(
        tor.unresolved_password(),
        Some(&secret("bgp-secrets", "rr-password"))
    );
    assert_eq!(tor.source_address, SourceAddress::UseNodeIP);
    assert_eq!(tor.next_hop_mode, Some(NextHopMode::SelfHop));
    assert!(!tor.keep_original_next_hop);
    assert_eq!(tor.effective_next_hop_mode(), NextHopMode::SelfHop);
    assert_eq!(tor.max_restart_time, Some(Duration::from_secs(15)));
    assert_eq!(tor.keepalive_time, Some(Duration::from_secs(20)));
    assert_eq!(tor.num_allowed_local_as_numbers, Some(1));
    assert_eq!(tor.ttl_security, Some(1));
    assert_eq!(tor.reachable_by, Some(ip("192.20.30.1")));
    assert_eq!(tor.filters, ["export-pods-only", "import-default-route"]);
    assert_eq!(tor.reverse_peering, ReversePeering::Auto);

    let rr = &c.bgp_peers[1];
    assert_eq!(
        rr.peer_selector.as_ref().map(|s| s.as_str()),
        Some("has(route-reflector)")
    );
    assert_eq!(rr.as_number, None);
    assert_eq!(rr.reverse_peering, ReversePeering::Manual);
    assert_eq!(rr.next_hop_mode, Some(NextHopMode::Keep));
    assert!(rr.keep_original_next_hop);

    let edge = &c.bgp_peers[2];
    assert_eq!(edge.node.as_deref(), Some("worker-1"));
    assert_eq!(edge.peer_ip, Some(ip("2001:db8::1")));
    assert_eq!(edge.peer_port, None);
    assert!(edge.keep_original_next_hop);
    assert_eq!(edge.next_hop_mode, None);
    assert_eq!(edge.effective_next_hop_mode(), NextHopMode::Keep);
    assert_eq!(edge.source_address, SourceAddress::None);
    assert!(edge.filters.is_empty());

    let vms = &c.bgp_peers[3];
    assert_eq!(
        vms.local_workload_selector.as_ref().map(|s| s.as_str()),
        Some("color == 'red'")
    );
    assert_eq!(vms.as_number, Some(65401));
    assert!(vms.peer_ip.is_none() && vms.peer_selector.is_none());
    assert!(vms.is_global());

    assert_ignored_once(&c, "BGPPeer/rack1-tor", "spec.filters");
    assert_ignored_once(&c, "BGPPeer/kubevirt-vms", "spec.localWorkloadSelector");
    assert_eq!(
        count_warnings(
            &c,
            "BGPPeer/rack1-tor: spec.password.secretKeyRef: Brindle does not read Kubernetes Secrets yet"
        ),
        1
    );
    assert_eq!(
        count_warnings(
            &c,
            "BGPPeer/worker-1-edge: spec.node: there is no Node named \"worker-1\""
        ),
        1
    );
    assert_eq!(c.warnings.len(), 4, "{:#?}", c.warnings);
}

#[test]
fn calico_ip_pools_with_every_field_load() {
    let c = load_ok("ippool.yaml", CALICO_IP_POOLS);
    assert_eq!(c.ip_pools.len(), 3);
    let prod = &c.ip_pools[0];
    assert_eq!(prod.cidr.to_string(), "10.1.0.0/16");
    assert_eq!(prod.block_size, 24);
    assert_eq!(prod.ipip_mode, EncapMode::CrossSubnet);
    assert_eq!(prod.vxlan_mode, EncapMode::Never);
    assert!(prod.nat_outgoing && !prod.disabled && !prod.disable_bgp_export);
    assert!(prod.node_selector.is_all());
    assert_eq!(
        prod.namespace_selector.as_ref().map(|s| s.as_str()),
        Some("environment == 'production'")
    );
    assert_eq!(prod.allowed_uses, [AllowedUse::Workload]);
    assert_eq!(prod.assignment_mode, AssignmentMode::Automatic);
    // status (Calico 3.32+) is kept as written
    assert_eq!(
        c.resources[0].json["status"]["conditions"][0]["type"],
        "Allocatable"
    );

    let v6 = &c.ip_pools[1];
    assert_eq!(v6.block_size, 122);
    assert_eq!(v6.vxlan_mode, EncapMode::CrossSubnet);
    assert_eq!(v6.allowed_uses, [AllowedUse::Workload, AllowedUse::Tunnel]);
    assert_eq!(v6.namespace_selector, None);

    let lb = &c.ip_pools[2];
    assert_eq!(lb.allowed_uses, [AllowedUse::LoadBalancer]);
    assert_eq!(lb.assignment_mode, AssignmentMode::Manual);
    assert_eq!(lb.block_size, 26);

    assert_ignored_once(&c, "IPPool/production-pods", "spec.namespaceSelector");
    assert_eq!(
        count_warnings(
            &c,
            "IPPool/loadbalancer-ips: spec.assignmentMode: Manual is not implemented yet"
        ),
        1
    );
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
}

#[test]
fn calico_node_as_calicoctl_prints_it_loads() {
    let c = load_ok("node.yaml", CALICO_NODE);
    let n = c.node("worker-1").unwrap();
    assert_eq!(n.labels["rack"], "rack-1");
    assert_eq!(n.as_number, Some(64512));
    assert_eq!(n.ipv4_address.unwrap().to_string(), "192.168.10.21/24");
    assert_eq!(n.ipv6_address.unwrap().to_string(), "fd00:10::21/64");
    assert_eq!(n.ipv4_ipip_tunnel_addr, Some(Ipv4Addr::new(10, 1, 135, 0)));
    assert_eq!(
        n.route_reflector_cluster_id,
        Some(Ipv4Addr::new(224, 0, 0, 1))
    );
    assert_eq!(n.ipv4_vxlan_tunnel_addr, Some(Ipv4Addr::new(10, 1, 135, 1)));
    assert_eq!(
        n.vxlan_tunnel_mac_addr.as_deref(),
        Some("66:cf:23:df:22:07")
    );
    assert_eq!(n.router_id, None);
    for path in [
        "spec.addresses",
        "spec.orchRefs",
        "spec.ipv6VXLANTunnelAddr",
        "spec.vxlanTunnelMACAddrV6",
        "spec.wireguard",
        "spec.interfaces",
    ] {
        assert_ignored_once(&c, "Node/worker-1", path);
    }
    assert_eq!(c.warnings.len(), 6, "{:#?}", c.warnings);
    // status is calico-node's: kept as written, not decoded
    assert_eq!(
        c.resources[0].json["status"]["podCIDRs"][0],
        "10.244.1.0/24"
    );
}

#[test]
fn calico_ipam_configuration_and_block_affinity_load() {
    let c = load_ok("ipam.yaml", CALICO_IPAM);
    let ipam = c.ipam_config.as_ref().unwrap();
    assert!(ipam.strict_affinity);
    assert!(!ipam.auto_allocate_blocks);
    assert_eq!(ipam.max_blocks_per_host, 4);
    assert_ignored_once(
        &c,
        "IPAMConfiguration/default",
        "spec.kubeVirtVMAddressPersistence",
    );
    assert_ignored_once(&c, "IPAMConfiguration/default", "spec.ipCooldownSeconds");
    let b = &c.block_affinities[0];
    assert_eq!(b.cidr.to_string(), "10.1.135.0/24");
    assert_eq!(b.state, AffinityState::Confirmed);
    assert!(!b.deleted && b.is_active());
    assert_eq!(b.affinity_type.as_deref(), Some("host"));
    // (+ no Node, no pool in this file)
    assert_eq!(c.warnings.len(), 4, "{:#?}", c.warnings);
}

#[test]
fn calico_fixtures_load_together_as_one_cluster() {
    let all = [
        CALICO_BGP_CONFIGURATION,
        CALICO_BGP_PEERS,
        CALICO_IP_POOLS,
        CALICO_NODE,
        CALICO_IPAM,
    ]
    .join("---\n");
    let c = load_ok("cluster.yaml", &all);
    assert_eq!(c.resources.len(), 1 + 4 + 3 + 1 + 2);
    // Only the ignored fields, the unresolved secrets and the Manual pool are reported.
    assert_eq!(c.warnings.len(), 6 + 3 + 2 + 6 + 2, "{:#?}", c.warnings);
    assert_eq!(count_warnings(&c, "there is no Node"), 0);
    assert_eq!(count_warnings(&c, "is not inside any IPPool"), 0);
    assert_eq!(
        c.node_as_number(c.node("worker-1").unwrap()),
        (64512, false)
    );
}

#[test]
fn calico_misspelt_fields_are_rejected_with_a_hint() {
    // (fixture, field as written, misspelling, expected error)
    let cases = [
        (
            CALICO_BGP_CONFIGURATION,
            "serviceLoadBalancerAggregation:",
            "serviceLoadBalancerAgregation:",
            "BGPConfiguration/default: spec.serviceLoadBalancerAgregation: unknown field; did you mean serviceLoadBalancerAggregation?",
        ),
        (
            CALICO_BGP_CONFIGURATION,
            "programClusterRoutes:",
            "programClusterRoute:",
            "BGPConfiguration/default: spec.programClusterRoute: unknown field; did you mean programClusterRoutes?",
        ),
        (
            CALICO_BGP_CONFIGURATION,
            "      key: mesh-password",
            "      kee: mesh-password",
            "BGPConfiguration/default: spec.nodeMeshPassword.secretKeyRef.kee: unknown field; did you mean key?",
        ),
        (
            CALICO_BGP_PEERS,
            "nextHopMode: Self",
            "nextHopMod: Self",
            "BGPPeer/rack1-tor: spec.nextHopMod: unknown field; did you mean nextHopMode?",
        ),
        (
            CALICO_BGP_PEERS,
            "reversePeering: Manual",
            "reversePeer: Manual",
            "BGPPeer/peer-with-route-reflectors: spec.reversePeer: unknown field; did you mean reversePeering?",
        ),
        (
            CALICO_BGP_PEERS,
            "localWorkloadSelector:",
            "localWorkloadSelecter:",
            "BGPPeer/kubevirt-vms: spec.localWorkloadSelecter: unknown field; did you mean localWorkloadSelector?",
        ),
        (
            CALICO_IP_POOLS,
            "assignmentMode: Manual",
            "assignmentmode: Manual",
            "IPPool/loadbalancer-ips: spec.assignmentmode: unknown field; did you mean assignmentMode?",
        ),
        (
            CALICO_IP_POOLS,
            "namespaceSelector:",
            "namespaceSelectors:",
            "IPPool/production-pods: spec.namespaceSelectors: unknown field; did you mean namespaceSelector?",
        ),
        (
            CALICO_NODE,
            "orchRefs:",
            "orchRef:",
            "Node/worker-1: spec.orchRef: unknown field; did you mean orchRefs?",
        ),
        (
            CALICO_NODE,
            "orchestrator: k8s",
            "orchestrater: k8s",
            "Node/worker-1: spec.orchRefs[0].orchestrater: unknown field; did you mean orchestrator?",
        ),
        (
            CALICO_NODE,
            "interfaceIPv4Address:",
            "interfaceIPv4Adress:",
            "Node/worker-1: spec.wireguard.interfaceIPv4Adress: unknown field; did you mean interfaceIPv4Address?",
        ),
        (
            CALICO_NODE,
            "ipv4IPIPTunnelAddr:",
            "ipv4IpipTunnelAddress:",
            "Node/worker-1: spec.bgp.ipv4IpipTunnelAddress: unknown field; did you mean ipv4IPIPTunnelAddr?",
        ),
        (
            CALICO_IPAM,
            "ipCooldownSeconds:",
            "ipCoolDownSecond:",
            "IPAMConfiguration/default: spec.ipCoolDownSecond: unknown field; did you mean ipCooldownSeconds?",
        ),
        (
            CALICO_IPAM,
            "  type: host",
            "  typ: host",
            "BlockAffinity/worker-1-10-1-135-0-24: spec.typ: unknown field; did you mean type?",
        ),
    ];
    for (fixture, good, bad, want) in cases {
        assert_eq!(fixture.matches(good).count(), 1, "{good:?} is not unique");
        let text = fixture.replacen(good, bad, 1);
        let e = err(&text).to_string();
        assert!(e.contains(want), "\n got: {e}\nwant: {want}");
        assert!(e.ends_with(')'), "names the line: {e}");
    }
}

#[test]
fn calico_values_are_validated_like_calico() {
    let peer = |spec: &str| format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec:\n{spec}");
    let conf = |spec: &str| {
        format!("{HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n{spec}")
    };
    let pool = |spec: &str| format!("{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec:\n{spec}");
    let node = |spec: &str| format!("{HDR}kind: Node\nmetadata: {{name: n}}\nspec:\n{spec}");
    let cases: Vec<(String, &str)> = vec![
        // BGPConfiguration
        (
            conf("  logSeverityScreen: Verbose\n"),
            "BGPConfiguration/default: spec.logSeverityScreen: \"Verbose\" is not one of Trace, Debug, Info, Warning, Error, Fatal (line 5)",
        ),
        (
            conf("  serviceLoadBalancerAggregation: enabled\n"),
            "spec.serviceLoadBalancerAggregation: \"enabled\" is not one of Enabled, Disabled; did you mean Enabled?",
        ),
        (
            conf("  ignoredInterfaces: [\"*\"]\n"),
            "spec.ignoredInterfaces[0]: \"*\" is not an interface name or pattern",
        ),
        (
            conf("  ignoredInterfaces: [a-very-long-interface-name]\n"),
            "spec.ignoredInterfaces[0]: \"a-very-long-interface-name\" is not an interface name or pattern",
        ),
        (
            conf("  nodeToNodeMeshEnabled: false\n  nodeMeshPassword: {value: x}\n"),
            "BGPConfiguration/default: spec.nodeMeshPassword: nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false (line 6)",
        ),
        (
            conf("  nodeToNodeMeshEnabled: false\n  nodeMeshMaxRestartTime: 30s\n"),
            "spec.nodeMeshMaxRestartTime: nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false",
        ),
        (
            conf("  localWorkloadPeeringIPV4: fe80::1\n"),
            "spec.localWorkloadPeeringIPV4: \"fe80::1\" is not an IPv4 address",
        ),
        (
            conf("  localWorkloadPeeringIPV6: 169.254.0.1\n"),
            "spec.localWorkloadPeeringIPV6: \"169.254.0.1\" is not an IPv6 address",
        ),
        (
            conf("  programClusterRoutes: EnabledIpipOnly\n"),
            "spec.programClusterRoutes: \"EnabledIpipOnly\" is not one of Enabled, Disabled, EnabledIPIPOnly, EnabledNoEncapOnly; did you mean EnabledIPIPOnly?",
        ),
        (
            conf("  ipv4NormalRoutePriority: 0\n"),
            "spec.ipv4NormalRoutePriority: 0 is out of range (1..=2147483646)",
        ),
        (
            conf("  communities: [{name: Pods, value: '1:1'}]\n  prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [Pods]}]\n"),
            "spec.communities[0].name: \"Pods\" is not a valid community name",
        ),
        (
            conf("  nodeMeshPassword: {}\n"),
            "spec.nodeMeshPassword: needs secretKeyRef (a key of a Kubernetes Secret) or, in file mode, value (the password itself)",
        ),
        (
            conf("  nodeMeshPassword: {value: x, secretKeyRef: {name: s, key: k}}\n"),
            "spec.nodeMeshPassword.secretKeyRef: set either spec.nodeMeshPassword.value or spec.nodeMeshPassword.secretKeyRef, not both",
        ),
        // BGPPeer
        (
            peer("  peerIP: 10.0.0.1\n  asNumber: 1\n  keepOriginalNextHop: true\n  nextHopMode: Keep\n"),
            "BGPPeer/p: spec.nextHopMode: keepOriginalNextHop and nextHopMode cannot both be set; keepOriginalNextHop is deprecated, use nextHopMode alone (line 8)",
        ),
        (
            peer("  peerIP: 10.0.0.1\n  asNumber: 1\n  nextHopMode: self\n"),
            "spec.nextHopMode: \"self\" is not one of Auto, Self, Keep; did you mean Self?",
        ),
        (
            peer("  peerSelector: all()\n  reversePeering: Automatic\n"),
            "spec.reversePeering: \"Automatic\" is not one of Auto, Manual",
        ),
        (
            peer("  peerSelector: all()\n  reachableBy: 10.0.0.1\n"),
            "BGPPeer/p: spec.reachableBy: reachableBy must be empty when peerIP is empty",
        ),
        (
            peer("  peerIP: 10.0.0.1\n  asNumber: 1\n  reachableBy: fd00::1\n"),
            "spec.reachableBy: fd00::1 and peerIP 10.0.0.1 are of different address families",
        ),
        (
            peer("  peerIP: 10.0.0.1\n  asNumber: 1\n  reachableBy: gateway\n"),
            "spec.reachableBy: \"gateway\" is not an IP address",
        ),
        (
            peer("  localWorkloadSelector: all()\n  peerIP: 10.0.0.1\n  asNumber: 1\n"),
            "BGPPeer/p: spec.peerIP: peerIP must be empty when localWorkloadSelector is set",
        ),
        (
            peer("  localWorkloadSelector: all()\n  peerSelector: all()\n"),
            "spec.peerSelector: peerSelector must be empty when localWorkloadSelector is set",
        ),
        (
            peer("  localWorkloadSelector: all()\n"),
            "BGPPeer/p: spec.asNumber: required when localWorkloadSelector is set",
        ),
        (
            peer("  peerSelector: all()\n  filters: [Export_All]\n"),
            "spec.filters[0]: \"Export_All\" is not a valid BGPFilter name",
        ),
        (
            peer("  node: Worker_1\n  peerIP: 10.0.0.1\n  asNumber: 1\n"),
            "spec.node: \"Worker_1\" is not a valid node name",
        ),
        (
            peer("  peerSelector: all()\n  numAllowedLocalASNumbers: -1\n"),
            "spec.numAllowedLocalASNumbers: -1 is out of range (0..=2147483647)",
        ),
        (
            peer("  peerIP: 10.0.0.1\n  asNumber: 1\n  password: {secretKeyRef: {name: s, key: k, optionl: true}}\n"),
            "spec.password.secretKeyRef.optionl: unknown field; did you mean optional?",
        ),
        // IPPool
        (
            pool("  cidr: 169.254.0.0/20\n"),
            "IPPool/p: spec.cidr: 169.254.0.0/20 overlaps the link-local range 169.254.0.0/16",
        ),
        (
            pool("  cidr: 'fe80::/64'\n"),
            "spec.cidr: fe80::/64 overlaps the link-local range fe80::/10",
        ),
        (
            pool("  cidr: 10.0.0.0/28\n"),
            "IPPool/p: spec.cidr: a /28 pool is smaller than the default block size (/26); set blockSize to at least 28 (line 5)",
        ),
        (
            pool("  cidr: 'fd00::/124'\n  blockSize: 0\n"),
            "spec.cidr: a /124 pool is smaller than the default block size (/122)",
        ),
        (
            pool("  cidr: 10.0.0.0/28\n  blockSize: 26\n"),
            "spec.blockSize: blockSize 26 is larger than the pool itself (/28)",
        ),
        (
            pool("  cidr: 'fd00::/48'\n  blockSize: 112\n"),
            "spec.blockSize: 112 is out of range (116..=128)",
        ),
        (
            pool("  cidr: 192.0.2.0/24\n  allowedUses: [LoadBalancer, Workload]\n"),
            "spec.allowedUses: LoadBalancer cannot be combined with Workload or Tunnel",
        ),
        (
            pool("  cidr: 192.0.2.0/24\n  allowedUses: [LoadBalancer]\n  vxlanMode: Always\n"),
            "spec.allowedUses: a LoadBalancer pool cannot have IPIP or VXLAN enabled",
        ),
        (
            pool("  cidr: 192.0.2.0/24\n  allowedUses: [LoadBalancer]\n  disableBGPExport: true\n"),
            "spec.disableBGPExport: a LoadBalancer pool cannot disable BGP export",
        ),
        (
            pool("  cidr: 192.0.2.0/24\n  allowedUses: [LoadBalancer]\n  nodeSelector: rack == 'a'\n"),
            "spec.nodeSelector: a LoadBalancer pool must have nodeSelector all()",
        ),
        (
            pool("  cidr: 10.0.0.0/16\n  namespaceSelector: all()\n"),
            "IPPool/p: spec.namespaceSelector: cannot be set on a pool with allowedUses Tunnel",
        ),
        (
            pool("  cidr: 10.0.0.0/16\n  nodeSelector: global()\n"),
            "spec.nodeSelector: global() is not valid in an IPPool nodeSelector; use all()",
        ),
        (
            pool("  cidr: 10.0.0.0/16\n  allowedUses: [Workload]\n  namespaceSelector: \"global() && has(x)\"\n"),
            "spec.namespaceSelector: global() is not valid in an IPPool namespaceSelector",
        ),
        (
            pool("  cidr: 10.0.0.0/16\n  allowedUses: [Workloads]\n"),
            "spec.allowedUses[0]: \"Workloads\" is not one of Workload, Tunnel, LoadBalancer; did you mean Workload?",
        ),
        (
            pool("  cidr: 10.0.0.0/16\n  assignmentMode: Auto\n"),
            "spec.assignmentMode: \"Auto\" is not one of Automatic, Manual",
        ),
        (
            pool("  cidr: 10.0.0.0/16\n  ipip: {enabled: true, mode: always}\n"),
            "IPPool/p: spec.ipip: is Calico's APIv1 form and must not be set; use ipipMode",
        ),
        (
            pool("  cidr: 10.0.0.0/16\n  nat-outgoing: true\n"),
            "spec.nat-outgoing: is Calico's APIv1 form and must not be true; use natOutgoing",
        ),
        // Node
        (
            node("  bgp: {}\n"),
            "Node/n: spec.bgp: must not be empty (set ipv4Address and/or ipv6Address, or remove spec.bgp)",
        ),
        (
            node("  vxlanTunnelMACAddr: 66:cf:23:df:22\n"),
            "spec.vxlanTunnelMACAddr: \"66:cf:23:df:22\" is not a MAC address",
        ),
        (
            node("  ipv4VXLANTunnelAddr: fd00::1\n"),
            "spec.ipv4VXLANTunnelAddr: \"fd00::1\" is not an IPv4 address",
        ),
        (
            node("  ipv6VXLANTunnelAddr: 10.0.0.1\n"),
            "spec.ipv6VXLANTunnelAddr: \"10.0.0.1\" is not an IPv6 address",
        ),
        (
            node("  addresses: [{address: 10.0.0.1, type: NodeIP}]\n"),
            "spec.addresses[0].type: \"NodeIP\" is not one of CalicoNodeIP, InternalIP, ExternalIP",
        ),
        (
            node("  addresses: [{type: InternalIP}]\n"),
            "spec.addresses[0].address: required field is missing",
        ),
        (
            node("  wireguard: {interfaceIPv4Address: 10.0.0.300}\n"),
            "spec.wireguard.interfaceIPv4Address: \"10.0.0.300\" is not an IPv4 address",
        ),
        (
            node("  interfaceName: eth0\n"),
            "Node/n: spec.interfaceName: unknown field; did you mean interfaces?",
        ),
        // IPAMConfiguration
        (
            format!("{HDR}kind: IPAMConfiguration\nmetadata: {{name: cluster}}\nspec: {{strictAffinity: true}}\n"),
            "IPAMConfiguration/cluster: metadata.name: an IPAMConfiguration must be named \"default\", not \"cluster\"",
        ),
        (
            format!("{HDR}kind: IPAMConfiguration\nmetadata: {{name: default}}\nspec: {{ipCooldownSeconds: 1201}}\n"),
            "spec.ipCooldownSeconds: 1201 is out of range (0..=1200)",
        ),
        (
            format!("{HDR}kind: IPAMConfiguration\nmetadata: {{name: default}}\nspec: {{kubeVirtVMAddressPersistence: enabled}}\n"),
            "spec.kubeVirtVMAddressPersistence: \"enabled\" is not one of Enabled, Disabled; did you mean Enabled?",
        ),
    ];
    for (yaml, want) in cases {
        let e = err(&yaml).to_string();
        assert!(e.contains(want), "\n got: {e}\nwant: {want}\nyaml:\n{yaml}");
    }
}

#[test]
fn calico_defaults_and_optional_fields_are_calicos() {
    let c = load_ok(
        "d.yaml",
        &format!(
            "{HDR}kind: IPPool\nmetadata: {{name: a}}\nspec: {{cidr: 10.0.0.0/16, blockSize: 0, allowedUses: [], nodeSelector: ''}}\n---\n\
             {HDR}kind: IPPool\nmetadata: {{name: b}}\nspec: {{cidr: 10.1.0.0/28, disabled: true}}\n---\n\
             {HDR}kind: IPPool\nmetadata: {{name: c}}\nspec: {{cidr: 10.2.0.0/16, allowedUses: [Tunnel, Workload, Tunnel], nat-outgoing: false}}\n---\n\
             {HDR}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{listenPort: 0, logSeverityScreen: ''}}\n---\n\
             {HDR}kind: BGPConfiguration\nmetadata: {{name: node.x}}\nspec: {{logSeverityScreen: WARNING}}\n---\n\
             {HDR}kind: Node\nmetadata: {{name: x}}\n"
        ),
    );
    let a = &c.ip_pools[0];
    assert_eq!(a.block_size, 26, "blockSize 0 is Calico's default");
    assert_eq!(a.allowed_uses, [AllowedUse::Workload, AllowedUse::Tunnel]);
    assert_eq!(a.node_selector.as_str(), "all()");
    assert_eq!(a.assignment_mode, AssignmentMode::Automatic);
    assert_eq!(a.namespace_selector, None);
    // A disabled pool may be smaller than its block size (Calico's rule).
    assert_eq!(c.ip_pools[1].block_size, 26);
    assert_eq!(
        c.ip_pools[2].allowed_uses,
        [AllowedUse::Tunnel, AllowedUse::Workload]
    );
    let d = c.bgp_configuration("default").unwrap();
    assert_eq!(d.listen_port, None, "listenPort 0 is unset (omitempty)");
    assert_eq!(d.log_severity_screen, None);
    assert_eq!(d.service_load_balancer_aggregation, None);
    assert_eq!(c.bgp_config_for("y").listen_port, 179);
    assert_eq!(c.bgp_config_for("y").log_severity_screen, "Info");
    assert_eq!(c.bgp_config_for("x").log_severity_screen, "Warning");
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);

    // BGPPeer: every optional field unset.
    let c = load_ok(
        "p.yaml",
        &format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerSelector: all()}}\n"),
    );
    let p = &c.bgp_peers[0];
    assert_eq!(p.next_hop_mode, None);
    assert_eq!(p.effective_next_hop_mode(), NextHopMode::Auto);
    assert_eq!(p.reverse_peering, ReversePeering::Auto);
    assert!(p.filters.is_empty() && p.password_source.is_none());
    assert_eq!(p.unresolved_password(), None);
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);

    // BlockAffinity: `deleted` as Calico's string or a boolean; `type` optional.
    let c = load_ok(
        "b.yaml",
        &format!(
            "{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.0.0.0/16}}\n---\n\
             {HDR}kind: Node\nmetadata: {{name: n}}\n---\n\
             {HDR}kind: BlockAffinity\nmetadata: {{name: a}}\nspec: {{node: n, cidr: 10.0.0.0/26, state: confirmed, deleted: 'true'}}\n---\n\
             {HDR}kind: BlockAffinity\nmetadata: {{name: b}}\nspec: {{node: n, cidr: 10.0.0.64/26, deleted: false}}\n"
        ),
    );
    assert!(c.block_affinities[0].deleted && !c.block_affinities[0].is_active());
    assert!(c.block_affinities[1].is_active());
    assert_eq!(c.block_affinities[1].affinity_type, None);
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
}

#[test]
fn calico_password_secret_key_ref_is_kept() {
    let c = load_ok(
        "s.yaml",
        &format!(
            "{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec:\n  peerIP: 10.0.0.1\n  asNumber: 65000\n  password:\n    secretKeyRef: {{name: bgp, key: tor, optional: true}}\n---\n\
             {HDR}kind: BGPPeer\nmetadata: {{name: q}}\nspec:\n  peerIP: 10.0.0.2\n  asNumber: 65000\n  password:\n    secretKeyRef: {{key: tor}}\n---\n\
             {HDR}kind: BGPPeer\nmetadata: {{name: r}}\nspec:\n  peerIP: 10.0.0.3\n  asNumber: 65000\n  password: {{value: s3cret}}\n"
        ),
    );
    let p = &c.bgp_peers[0];
    let want = SecretKeyRef {
        name: "bgp".into(),
        key: "tor".into(),
        optional: true,
    };
    assert_eq!(
        p.password_source,
        Some(PasswordSource::SecretKeyRef(want.clone()))
    );
    assert_eq!(p.password, None);
    assert_eq!(p.unresolved_password(), Some(&want));
    // Resolving is the caller's: filling `password` makes it the one in force.
    let mut resolved = p.clone();
    resolved.password = Some("from-the-secret".into());
    assert_eq!(resolved.unresolved_password(), None);
    assert_eq!(c.bgp_peers[1].unresolved_password().unwrap().name, "");
    let r = &c.bgp_peers[2];
    assert_eq!(r.password.as_deref(), Some("s3cret"));
    assert_eq!(
        r.password_source.as_ref().and_then(|s| s.value()),
        Some("s3cret")
    );
    assert_eq!(r.unresolved_password(), None);
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
    assert!(
        c.warnings[0].contains("BGPPeer/p: spec.password.secretKeyRef: Brindle does not read Kubernetes Secrets yet: these sessions have no password (not the one in Secret \"bgp\", key \"tor\")"),
        "{}",
        c.warnings[0]
    );
    assert!(
        c.warnings[1].contains("BGPPeer/q: spec.password.secretKeyRef: secretKeyRef has no name"),
        "{}",
        c.warnings[1]
    );
}

#[test]
fn calico_node_bare_address_is_a_host_address() {
    // Calico's validator (`cidrv4` / `cidrv6`) accepts an address without a prefix length.
    let c = load_ok(
        "n.yaml",
        &format!(
            "{HDR}kind: Node\nmetadata: {{name: a}}\nspec: {{bgp: {{ipv4Address: 10.0.0.1}}}}\n---\n\
             {HDR}kind: Node\nmetadata: {{name: b}}\nspec: {{bgp: {{ipv6Address: 'fd00::2'}}}}\n---\n\
             {HDR}kind: Node\nmetadata: {{name: c}}\nspec: {{bgp: {{ipv4Address: 10.0.0.3/24, ipv6Address: 'fd00::3/64'}}}}\n"
        ),
    );
    let a = c.node("a").unwrap().ipv4_address.unwrap();
    assert_eq!((a.ip(), a.prefix()), (Ipv4Addr::new(10, 0, 0, 1), 32));
    let b = c.node("b").unwrap().ipv6_address.unwrap();
    assert_eq!(
        (b.ip().to_string(), b.prefix()),
        ("fd00::2".to_string(), 128)
    );
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
    assert_eq!(
        count_warnings(
            &c,
            "Node/a: spec.bgp.ipv4Address: a /32 node address puts every other node in a different subnet (CrossSubnet will always encapsulate)"
        ),
        1
    );
    assert_eq!(
        count_warnings(
            &c,
            "Node/b: spec.bgp.ipv6Address: a /128 node address (a bare address is taken as /128) puts every other node in a different subnet (CrossSubnet will always encapsulate)"
        ),
        1
    );
}

#[test]
fn calico_fields_without_effect_warn_only_for_values_brindle_does_not_implement() {
    let c = load_ok(
        "w.yaml",
        &format!(
            "{HDR}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 10.0.0.0/16}}\n---\n\
             {HDR}kind: Node\nmetadata: {{name: n}}\n---\n\
             {HDR}kind: BlockAffinity\nmetadata: {{name: a}}\nspec: {{node: n, cidr: 10.0.0.0/26, type: virtual}}\n---\n\
             {HDR}kind: BlockAffinity\nmetadata: {{name: b}}\nspec: {{node: n, cidr: 10.0.0.64/26, type: host}}\n---\n\
             {HDR}kind: BGPPeer\nmetadata: {{name: s}}\nspec: {{peerIP: 10.0.0.1, asNumber: 1, nextHopMode: Self, reversePeering: Manual}}\n"
        ),
    );
    assert_ignored_once(&c, "BlockAffinity/a", "spec.type");
    assert_eq!(
        c.block_affinities[0].affinity_type.as_deref(),
        Some("virtual")
    );
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
}

#[test]
fn calico_objects_from_the_api_decode_the_same() {
    // The CRD storage form (crd.projectcalico.org/v1) carries the same fields.
    let v = serde_json::json!({
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {"name": "tor", "resourceVersion": "7"},
        "spec": {
            "peerIP": "10.0.0.1",
            "asNumber": 65000,
            "password": {"secretKeyRef": {"name": "bgp", "key": "tor"}},
            "nextHopMode": "Keep",
            "reversePeering": "Manual",
            "filters": ["f1"]
        }
    });
    let o = decode_json("api", &v).unwrap().unwrap();
    let Resource::BgpPeer(p) = &o.resource else {
        panic!("{:?}", o.resource)
    };
    assert_eq!(p.next_hop_mode, Some(NextHopMode::Keep));
    assert_eq!(p.reverse_peering, ReversePeering::Manual);
    assert_eq!(p.filters, ["f1"]);
    assert_eq!(p.unresolved_password().map(|s| s.key.as_str()), Some("tor"));
    assert_eq!(o.warnings.len(), 2, "{:#?}", o.warnings);
}

#[test]
fn network_sets_load_and_a_misspelt_field_is_rejected() {
    let c = parse(
        "n.yaml",
        &format!("{HDR}kind: NetworkSet\nmetadata: {{name: partners, namespace: shop, labels: {{zone: partner}}}}\nspec: {{nets: [203.0.113.9/25]}}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let n = &c.network_sets[0];
    assert_eq!(n.namespace.as_deref(), Some("shop"));
    assert_eq!(
        n.nets[0].to_string(),
        "203.0.113.0/25",
        "masked as Felix does"
    );
    let e = parse(
        "n.yaml",
        &format!("{HDR}kind: GlobalNetworkSet\nmetadata: {{name: office}}\nspec: {{net: [192.0.2.0/24]}}\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nets"), "{e}");
}
