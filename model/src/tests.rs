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
            format!("{HDR}kind: BGPPeer\nmetadata: {{name: p}}\nspec:\n  peerIP: 10.0.0.1\n  asNumber: 1\n  password:\n    secretKeyRef: {{name: s, key: k}}\n"),
            "BGPPeer/p: spec.password.secretKeyRef: Kubernetes secrets are not available in file mode; put the password itself in spec.password.value instead (line 8)",
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
            format!("{HDR}kind: Node\nmetadata: {{name: n}}\nspec:\n  bgp:\n    ipv4Address: 10.0.0.1\n"),
            "Node/n: spec.bgp.ipv4Address: \"10.0.0.1\" must be a CIDR that includes the node's prefix length, e.g. \"10.0.0.1/24\"",
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
        &format!("{HDR}kind: FelixConfiguration\nmetadata: {{name: default}}\nspec: {{logSeverityScreen: Info}}\n"),
    )
    .unwrap();
    assert!(c.resources.is_empty());
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("ignored: kind FelixConfiguration"),
        "{}",
        c.warnings[0]
    );
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
"#;
    let c = parse("t.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.namespaces[0].labels["kubernetes.io/metadata.name"],
        "shop"
    );
    let pod = &c.pods[0];
    assert_eq!(pod.ips, vec![ip("10.65.0.7")]);
    assert!(pod.is_workload());
    assert_eq!(pod.ports[0].name, "http");
    assert_eq!(pod.service_account, "default");
    let svc = &c.services[0];
    assert_eq!(svc.cluster_ips, vec![ip("10.96.0.10")]);
    assert_eq!(svc.load_balancer_ips, vec![ip("198.51.100.7")]);
    assert_eq!(
        svc.external_traffic_policy,
        crate::kubernetes::TrafficPolicy::Local
    );
    let slice = &c.endpoint_slices[0];
    assert_eq!(slice.service_name.as_deref(), Some("web"));
    assert!(slice.endpoints[0].ready && !slice.endpoints[1].ready);
    assert_eq!(c.kubernetes_network_policies[0].namespace, "shop");
    assert_eq!(c.resources[1].key(), "shop/web-0");
}
