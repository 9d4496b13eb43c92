//! Network policies load through `brindle_model::parse` as typed data: real examples from
//! the Kubernetes and Calico documentation (`testdata/policy/`), Calico's and the API
//! server's defaults, and the rejections a hand-written policy can run into.

use brindle_model::policy::*;
use brindle_model::{parse, ClusterConfig, Selector};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;

fn load(name: &str) -> ClusterConfig {
    let path = format!("{}/testdata/policy/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse(name, &text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse("p.yaml", text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_err(text: &str, want: &str) {
    let e = err(text);
    assert!(e.contains(want), "\n got: {e}\nwant: {want}\nyaml:\n{text}");
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: Vec::new(),
    }
}

fn sel(s: &str) -> Option<Selector> {
    Some(Selector::parse(s).unwrap())
}

const KNP: &str =
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: ns}\n";
const GNP: &str =
    "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\n";
const CNP: &str =
    "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: ns}\n";

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

#[test]
fn kubernetes_docs_test_network_policy() {
    let c = load("k8s-test-network-policy.yaml");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.kubernetes_network_policies.len(), 1);
    let p = &c.kubernetes_network_policies[0];
    assert_eq!(
        (p.namespace.as_str(), p.name.as_str()),
        ("default", "test-network-policy")
    );
    assert_eq!(p.pod_selector, match_labels(&[("role", "db")]));
    assert_eq!(
        p.policy_types,
        Some(vec![PolicyType::Ingress, PolicyType::Egress])
    );
    assert_eq!(
        p.effective_types(),
        PolicyTypes {
            ingress: true,
            egress: true
        }
    );
    let ingress = p.ingress.as_ref().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        ingress[0].peers,
        Some(vec![
            KubePeer::IpBlock(IpBlock {
                cidr: net("172.17.0.0/16"),
                except: vec![net("172.17.1.0/24")],
            }),
            KubePeer::Selectors {
                pod_selector: None,
                namespace_selector: Some(match_labels(&[("project", "myproject")])),
            },
            KubePeer::Selectors {
                pod_selector: Some(match_labels(&[("role", "frontend")])),
                namespace_selector: None,
            },
        ])
    );
    assert_eq!(
        ingress[0].ports,
        Some(vec![KubePort {
            protocol: Protocol::Tcp,
            port: Some(KubePortValue::Number(6379)),
            end_port: None,
        }])
    );
    let egress = p.egress_rules();
    assert_eq!(
        egress[0].peer_list(),
        &[KubePeer::IpBlock(IpBlock {
            cidr: net("10.0.0.0/24"),
            except: vec![],
        })]
    );
    assert_eq!(egress[0].port_list()[0].range(), Some((5978, 5978)));
    // The object as written stays available.
    assert_eq!(
        c.resources[0].json["spec"]["ingress"][0]["ports"][0]["port"],
        6379
    );
}

#[test]
fn kubernetes_docs_default_policies() {
    let c = load("k8s-defaults.yaml");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let by_name = |n: &str| {
        c.kubernetes_network_policies
            .iter()
            .find(|p| p.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let types = |ingress, egress| PolicyTypes { ingress, egress };

    let deny_in = by_name("default-deny-ingress");
    assert_eq!(deny_in.namespace, "default");
    assert!(deny_in.pod_selector.is_empty());
    assert_eq!(deny_in.ingress, None, "no ingress rules: nothing allowed");
    assert_eq!(deny_in.effective_types(), types(true, false));

    let allow_in = by_name("allow-all-ingress");
    let rules = allow_in.ingress.as_ref().unwrap();
    assert_eq!(rules, &vec![KubeRule::default()]);
    assert!(rules[0].all_peers() && rules[0].all_ports());

    assert_eq!(
        by_name("default-deny-egress").effective_types(),
        types(false, true)
    );
    let allow_out = by_name("allow-all-egress");
    assert_eq!(
        allow_out.egress.as_deref(),
        Some(&[KubeRule::default()][..])
    );
    assert_eq!(allow_out.ingress, None);
    assert_eq!(
        by_name("default-deny-all").effective_types(),
        types(true, true)
    );

    // Absent policyTypes: Ingress, plus Egress because there is an egress rule.
    let p = by_name("no-policy-types");
    assert_eq!(p.policy_types, None);
    assert_eq!(p.effective_types(), types(true, true));
    assert_eq!(
        p.ingress,
        Some(vec![]),
        "`ingress: []` is kept apart from absent"
    );
    let e = &p.egress.as_ref().unwrap()[0];
    assert_eq!(
        (e.peers.as_deref(), e.ports.as_deref()),
        (Some(&[][..]), Some(&[][..]))
    );
    assert!(
        e.all_peers() && e.all_ports(),
        "empty to/ports match everything"
    );
}

#[test]
fn kubernetes_policy_types_defaulting() {
    let types = |spec: &str| {
        let c = parse("t.yaml", &format!("{KNP}spec: {spec}\n")).unwrap_or_else(|e| panic!("{e}"));
        let p = &c.kubernetes_network_policies[0];
        (p.policy_types.clone(), p.effective_types())
    };
    let t = |ingress, egress| PolicyTypes { ingress, egress };
    assert_eq!(types("{}"), (None, t(true, false)));
    assert_eq!(
        types("{egress: []}"),
        (None, t(true, false)),
        "no egress rule"
    );
    assert_eq!(types("{egress: [{}]}"), (None, t(true, true)));
    // The API server defaults an empty list like an absent one.
    assert_eq!(
        types("{policyTypes: [], egress: [{}]}"),
        (Some(vec![]), t(true, true))
    );
    assert_eq!(
        types("{policyTypes: [Egress], ingress: [{}]}"),
        (Some(vec![PolicyType::Egress]), t(false, true))
    );
}

#[test]
fn kubernetes_peer_selectors_and_versus_or() {
    let c = load("k8s-peers.yaml");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let p = &c.kubernetes_network_policies;
    // One peer with both selectors: role=client pods in namespaces of user alice.
    assert_eq!(
        p[0].ingress_rules()[0].peer_list(),
        &[KubePeer::Selectors {
            pod_selector: Some(match_labels(&[("role", "client")])),
            namespace_selector: Some(match_labels(&[("user", "alice")])),
        }]
    );
    // Two peers: all pods of alice's namespaces, or role=client pods of this namespace.
    assert_eq!(
        p[1].ingress_rules()[0].peer_list(),
        &[
            KubePeer::Selectors {
                pod_selector: None,
                namespace_selector: Some(match_labels(&[("user", "alice")])),
            },
            KubePeer::Selectors {
                pod_selector: Some(match_labels(&[("role", "client")])),
                namespace_selector: None,
            },
        ]
    );

    let dns = &p[2];
    let exprs = &dns.pod_selector.match_expressions;
    assert_eq!(exprs.len(), 3);
    assert_eq!(
        exprs[0],
        LabelSelectorRequirement {
            key: "tier".into(),
            operator: LabelSelectorOperator::In,
            values: vec!["web".into(), "api".into()],
        }
    );
    assert_eq!(exprs[2].operator, LabelSelectorOperator::DoesNotExist);
    assert!(exprs[2].values.is_empty());
    assert!(dns
        .pod_selector
        .matches(&labels(&[("tier", "web"), ("environment", "prod")])));
    assert!(
        dns.pod_selector.matches(&labels(&[("tier", "api")])),
        "NotIn matches a missing label"
    );
    assert!(!dns
        .pod_selector
        .matches(&labels(&[("tier", "web"), ("environment", "dev")])));
    assert!(!dns.pod_selector.matches(&labels(&[("tier", "db")])));
    assert!(!dns
        .pod_selector
        .matches(&labels(&[("tier", "web"), ("legacy", "")])));

    let KubePeer::Selectors {
        pod_selector,
        namespace_selector,
    } = &dns.ingress_rules()[0].peer_list()[0]
    else {
        panic!()
    };
    assert_eq!(
        namespace_selector.as_ref(),
        Some(&LabelSelector::default()),
        "present but empty: all namespaces"
    );
    assert!(pod_selector
        .as_ref()
        .unwrap()
        .matches(&labels(&[("app.kubernetes.io/name", "x")])));
    assert_eq!(
        dns.ingress_rules()[0].port_list(),
        &[KubePort {
            protocol: Protocol::Tcp,
            port: Some(KubePortValue::Named("metrics".into())),
            end_port: None,
        }]
    );
    assert_eq!(dns.ingress_rules()[0].port_list()[0].range(), None);
    let egress = &dns.egress_rules()[0];
    assert_eq!(
        egress
            .port_list()
            .iter()
            .map(|p| p.protocol)
            .collect::<Vec<_>>(),
        vec![Protocol::Udp, Protocol::Tcp]
    );
    let KubePeer::Selectors {
        namespace_selector: Some(ns),
        ..
    } = &egress.peer_list()[0]
    else {
        panic!()
    };
    assert!(ns.matches(&labels(&[("kubernetes.io/metadata.name", "kube-system")])));
}

#[test]
fn kubernetes_end_port() {
    let c = load("k8s-end-port.yaml");
    let p = &c.kubernetes_network_policies[0];
    assert_eq!(
        p.effective_types(),
        PolicyTypes {
            ingress: false,
            egress: true
        }
    );
    let port = &p.egress_rules()[0].port_list()[0];
    assert_eq!(
        port,
        &KubePort {
            protocol: Protocol::Tcp,
            port: Some(KubePortValue::Number(32000)),
            end_port: Some(32768),
        }
    );
    assert_eq!(port.range(), Some((32000, 32768)));
}

#[test]
fn label_selector_semantics() {
    let everything = LabelSelector::default();
    assert!(everything.matches(&BTreeMap::new()));
    assert!(everything.matches(&labels(&[("a", "b")])));
    let s = LabelSelector {
        match_labels: labels(&[("app", "web")]),
        match_expressions: vec![LabelSelectorRequirement {
            key: "zone".into(),
            operator: LabelSelectorOperator::Exists,
            values: vec![],
        }],
    };
    assert!(s.matches(&labels(&[("app", "web"), ("zone", "")])));
    assert!(
        !s.matches(&labels(&[("app", "web")])),
        "matchLabels AND matchExpressions"
    );
    assert!(!s.matches(&labels(&[("zone", "a")])));
    assert!(!s.matches(&labels(&[("app", "db"), ("zone", "a")])));
}

#[test]
fn kubernetes_host_bits_are_cleared_as_the_api_allows_them() {
    let c = parse(
        "t.yaml",
        &format!("{KNP}spec:\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.1.2.3/16, except: [10.1.200.1/24]}}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.kubernetes_network_policies[0].ingress_rules()[0].peer_list()[0],
        KubePeer::IpBlock(IpBlock {
            cidr: net("10.1.0.0/16"),
            except: vec![net("10.1.200.0/24")],
        })
    );
}

#[test]
fn kubernetes_rejections() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{KNP}spec:\n  podselector: {{}}\n"),
            "NetworkPolicy/ns/p: spec.podselector: unknown field; did you mean podSelector? (line 5)",
        ),
        (
            format!("{KNP}spec:\n  podSelector:\n    matchLabel: {{app: web}}\n"),
            "spec.podSelector.matchLabel: unknown field; did you mean matchLabels?",
        ),
        (
            format!("{KNP}spec:\n  ingress:\n  - from:\n    - podSelectr: {{}}\n"),
            "spec.ingress[0].from[0].podSelectr: unknown field; did you mean podSelector?",
        ),
        (
            format!("{KNP}spec:\n  ingress:\n  - to: []\n"),
            "spec.ingress[0].to: unknown field; to is for egress rules, ingress rules list their peers in from",
        ),
        (
            format!("{KNP}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: tier, operator: In}}\n"),
            "spec.podSelector.matchExpressions[0]: values must be non-empty when operator is In (line 7)",
        ),
        (
            format!("{KNP}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: tier, operator: NotIn, values: []}}\n"),
            "spec.podSelector.matchExpressions[0].values: values must be non-empty when operator is NotIn",
        ),
        (
            format!("{KNP}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: tier, operator: Exists, values: [a]}}\n"),
            "matchExpressions[0].values: values must be empty when operator is Exists",
        ),
        (
            format!("{KNP}spec:\n  podSelector:\n    matchExpressions:\n    - {{key: tier, operator: in, values: [a]}}\n"),
            "matchExpressions[0].operator: \"in\" is not one of In, NotIn, Exists, DoesNotExist; did you mean In?",
        ),
        (
            format!("{KNP}spec:\n  podSelector:\n    matchLabels: {{\"bad key\": x}}\n"),
            "spec.podSelector.matchLabels.bad key: \"bad key\" is not a valid label key",
        ),
        (
            format!("{KNP}spec:\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.0.0.0/8}}\n      podSelector: {{}}\n"),
            "spec.ingress[0].from[0].ipBlock: ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
        ),
        (
            format!("{KNP}spec:\n  ingress:\n  - from:\n    - {{}}\n"),
            "spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - to:\n    - ipBlock: {{cidr: 10.0.0.1}}\n"),
            "spec.egress[0].to[0].ipBlock.cidr: \"10.0.0.1\" is not a CIDR: add the prefix length",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - to:\n    - ipBlock: {{cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}\n"),
            "spec.egress[0].to[0].ipBlock.except[0]: 10.1.0.0/24 is not a strict subset of cidr 10.0.0.0/16",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - to:\n    - ipBlock: {{cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}\n"),
            "is not a strict subset of cidr 10.0.0.0/16",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - ports:\n    - {{protocol: ICMP}}\n"),
            "spec.egress[0].ports[0].protocol: a Kubernetes NetworkPolicy cannot match ICMP",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - ports:\n    - {{protocol: tcp, port: 80}}\n"),
            "spec.egress[0].ports[0].protocol: \"tcp\" is not one of TCP, UDP, SCTP; did you mean TCP?",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - ports:\n    - {{port: http, endPort: 90}}\n"),
            "spec.egress[0].ports[0].endPort: endPort cannot be used with a named port",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - ports:\n    - {{endPort: 90}}\n"),
            "spec.egress[0].ports[0].endPort: endPort requires port",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - ports:\n    - {{port: 100, endPort: 90}}\n"),
            "endPort 90 must be equal to or greater than port 100",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - ports:\n    - {{port: \"8080\"}}\n"),
            "spec.egress[0].ports[0].port: \"8080\" is a string, which names a port; write a port number unquoted",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - ports:\n    - {{port: Web_Port}}\n"),
            "spec.egress[0].ports[0].port: \"Web_Port\" is not a valid port name",
        ),
        (
            format!("{KNP}spec:\n  egress:\n  - ports:\n    - {{port: 0}}\n"),
            "port 0 is out of range (1..=65535)",
        ),
        (
            format!("{KNP}spec:\n  policyTypes: [Ingress, Egres]\n"),
            "spec.policyTypes[1]: \"Egres\" is not one of Ingress, Egress; did you mean Egress?",
        ),
        (
            format!("{KNP}spec:\n  policyTypes: [Ingress, Egress, Ingress]\n"),
            "spec.policyTypes: may not specify more than two policyTypes",
        ),
    ];
    for (yaml, want) in cases {
        assert_err(&yaml, want);
    }
}

#[test]
fn kubernetes_policy_from_the_api_accepts_unknown_fields_with_a_warning() {
    let json = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"a": "b"}}}], "futureField": true}]
        }
    });
    let o = brindle_model::decode::decode_json("api", &json)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap();
    let brindle_model::decode::Resource::KubernetesNetworkPolicy(p) = &o.resource else {
        panic!("{:?}", o.resource)
    };
    assert_eq!(p.ingress_rules()[0].peer_list().len(), 1);
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(
        o.warnings[0].contains("spec.ingress[0].futureField"),
        "{}",
        o.warnings[0]
    );
    // Values are still checked.
    let mut bad = json.clone();
    bad["spec"]["ingress"][0]["from"][0] = serde_json::json!({});
    assert!(brindle_model::decode::decode_json("api", &bad).is_err());
}

// ---------------------------------------------------------------------------------------
// Calico
// ---------------------------------------------------------------------------------------

#[test]
fn calico_reference_samples() {
    let c = load("calico-reference.yaml");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let np = &c.network_policies[0];
    let gnp = &c.global_network_policies[0];
    assert_eq!(np.namespace.as_deref(), Some("production"));
    assert!(!np.is_global() && gnp.is_global());
    for p in [np, gnp] {
        assert_eq!(p.name, "allow-tcp-6379");
        assert_eq!(p.tier, "default");
        assert_eq!(p.order, None);
        assert_eq!(p.selector.as_str(), "role == 'database'");
        assert_eq!(p.types, Some(vec![PolicyType::Ingress, PolicyType::Egress]));
        let r = &p.ingress[0];
        assert_eq!(r.action, Action::Allow);
        assert_eq!(r.protocol, Some(Protocol::Tcp));
        assert_eq!(
            r.annotations,
            labels(&[("from", "frontend"), ("to", "database")])
        );
        assert_eq!(r.source.selector, sel("role == 'frontend'"));
        assert_eq!(r.destination.ports, vec![Port::Number(6379)]);
        assert!(r.destination.selector.is_none());
        let allow_all = &p.egress[0];
        assert_eq!(allow_all.action, Action::Allow);
        assert!(allow_all.source.is_empty() && allow_all.destination.is_empty());
        assert!(allow_all.protocol.is_none() && allow_all.annotations.is_empty());
    }
}

#[test]
fn calico_global_policy_rules() {
    let c = load("calico-global-rules.yaml");
    let p = &c.global_network_policies[0];
    assert_eq!(p.name, "frontend-access");
    assert_eq!(p.order, Some(100.0));
    assert_eq!(p.selector.as_str(), "app == 'frontend' && has(tier)");
    assert!(p
        .selector
        .matches(&labels(&[("app", "frontend"), ("tier", "1")])));
    assert_eq!(p.namespace_selector, sel("environment == 'production'"));
    assert_eq!(p.service_account_selector, None);
    assert!(!p.do_not_track && !p.pre_dnat && !p.apply_on_forward);

    let [log, lb, sa, global, pass] = &p.ingress[..] else {
        panic!("{:?}", p.ingress)
    };
    assert_eq!(log.action, Action::Log);
    assert_eq!(log.source.not_nets, vec![net("10.0.0.0/8")]);

    assert_eq!(
        lb.source.nets,
        vec![net("192.168.0.0/16"), net("172.16.0.0/12")]
    );
    assert_eq!(
        lb.source.namespace_selector,
        Some(NamespaceMatch::Selector(
            Selector::parse("team in {'web', 'edge'}").unwrap()
        ))
    );
    assert_eq!(lb.source.selector, sel("role == 'lb'"));
    assert_eq!(
        lb.destination.ports,
        vec![
            Port::Number(8080),
            Port::Range(6040, 6050),
            Port::Named("http".into())
        ]
    );
    assert_eq!(lb.destination.ports[1].range(), Some((6040, 6050)));
    assert_eq!(lb.destination.not_ports, vec![Port::Number(8081)]);

    assert_eq!(sa.protocol, Some(Protocol::Udp));
    assert_eq!(
        sa.source.service_accounts,
        Some(ServiceAccountMatch {
            names: vec!["api-service".into(), "user-auth-service".into()],
            selector: sel("app == 'web-frontend'"),
        })
    );
    assert_eq!(
        sa.destination.ports,
        vec![Port::Named("dns".into()), Port::Number(53)]
    );

    assert_eq!(
        global.source.namespace_selector,
        Some(NamespaceMatch::Global)
    );
    assert_eq!(global.protocol, None, "named ports need no protocol");
    assert_eq!(
        global.destination.ports,
        vec![Port::Named("metrics".into())]
    );

    assert_eq!(pass.action, Action::Pass);
    assert_eq!(pass.source.not_selector, sel("trusted == 'true'"));

    let [ping, unreachable, v6, sctp, dns, not_nets] = &p.egress[..] else {
        panic!("{:?}", p.egress)
    };
    assert_eq!(ping.protocol, Some(Protocol::Icmp));
    assert_eq!(
        ping.icmp,
        Some(IcmpMatch {
            icmp_type: Some(8),
            code: None
        })
    );
    assert_eq!(
        unreachable.icmp,
        Some(IcmpMatch {
            icmp_type: Some(3),
            code: Some(1)
        })
    );
    assert_eq!(v6.protocol, Some(Protocol::IcmpV6));
    assert_eq!(v6.ip_version, Some(IpVersion::V6));
    assert_eq!(v6.icmp, None);
    assert_eq!(
        v6.not_icmp,
        Some(IcmpMatch {
            icmp_type: Some(128),
            code: None
        })
    );
    assert_eq!(sctp.action, Action::Deny);
    assert_eq!(
        sctp.protocol,
        Some(Protocol::Number(132)),
        "a number stays a number"
    );
    assert_eq!(sctp.protocol.unwrap().number(), Protocol::Sctp.number());
    assert!(sctp.protocol.unwrap().supports_ports());
    assert_eq!(sctp.not_protocol, Some(Protocol::UdpLite));
    assert_eq!(sctp.destination.nets, vec![net("fd00:1::/64")]);
    assert_eq!(sctp.destination.ports, vec![Port::Range(1, 1023)]);
    assert_eq!(
        dns.destination.services,
        Some(ServiceMatch {
            name: "kube-dns".into(),
            namespace: Some("kube-system".into()),
        })
    );
    assert_eq!(not_nets.ip_version, Some(IpVersion::V4));
    assert_eq!(not_nets.destination.not_nets, vec![net("1.2.3.0/24")]);

    let block = &c.global_network_policies[1];
    assert_eq!(block.order, Some(200.0));
    assert!(block.selector.is_all());
    assert_eq!(
        block.ingress.iter().map(|r| r.protocol).collect::<Vec<_>>(),
        vec![Some(Protocol::Icmp), Some(Protocol::IcmpV6)]
    );

    let tiered = &c.global_network_policies[2];
    assert_eq!(tiered.tier, "security");
    assert_eq!(tiered.order, Some(1.5));
    assert_eq!(tiered.unprefixed_name(), "pass-to-next-tier");
    assert_eq!(tiered.ingress[0].action, Action::Pass);
    assert_eq!(
        tiered.effective_types(),
        PolicyTypes {
            ingress: true,
            egress: true
        }
    );
    // performanceHints never change enforcement: accepted with one warning.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains(
            "GlobalNetworkPolicy/security.pass-to-next-tier: ignored: spec.performanceHints"
        ),
        "{}",
        c.warnings[0]
    );

    let pre_dnat = &c.global_network_policies[3];
    assert!(pre_dnat.pre_dnat && pre_dnat.apply_on_forward && !pre_dnat.do_not_track);
    assert_eq!(pre_dnat.order, Some(10.0));
    assert_eq!(pre_dnat.selector.as_str(), "has(host-endpoint)");
    assert_eq!(pre_dnat.ingress[0].source.nets.len(), 2);
    assert_eq!(pre_dnat.types, None);
    assert_eq!(
        pre_dnat.effective_types(),
        PolicyTypes {
            ingress: true,
            egress: false
        }
    );

    let untracked = &c.global_network_policies[4];
    assert!(untracked.do_not_track && untracked.apply_on_forward);
    assert_eq!(untracked.egress[0].source.ports, vec![Port::Number(12211)]);
    assert_eq!(
        untracked.effective_types(),
        PolicyTypes {
            ingress: true,
            egress: true
        }
    );
}

#[test]
fn calico_namespaced_policies() {
    let c = load("calico-namespaced.yaml");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let p = &c.network_policies;
    assert_eq!(p.len(), 5);
    assert!(p
        .iter()
        .all(|p| p.namespace_selector.is_none() && !p.is_global()));

    let blue = &p[0];
    assert_eq!(blue.namespace.as_deref(), Some("production"));
    assert_eq!(
        blue.ingress[0].source.namespace_selector,
        Some(NamespaceMatch::Selector(
            Selector::parse("shape == 'circle'").unwrap()
        ))
    );
    assert_eq!(blue.types, None);
    assert_eq!(
        blue.effective_types(),
        PolicyTypes {
            ingress: true,
            egress: false
        }
    );

    let web = &p[1];
    assert_eq!(web.selector.as_str(), "app == \"db\"");
    assert_eq!(web.service_account_selector, sel("role == 'database'"));
    assert_eq!(
        web.ingress[0].source.service_accounts,
        Some(ServiceAccountMatch {
            names: vec![],
            selector: sel("app == \"web-frontend\""),
        })
    );

    let dns = &p[2];
    assert!(dns.selector.is_all());
    assert_eq!(
        dns.effective_types(),
        PolicyTypes {
            ingress: false,
            egress: true
        }
    );
    assert_eq!(
        dns.egress[0]
            .destination
            .services
            .as_ref()
            .unwrap()
            .namespace
            .as_deref(),
        Some("kube-system")
    );

    let svc = &p[3];
    let r = &svc.ingress[0];
    assert_eq!(
        r.source.services,
        Some(ServiceMatch {
            name: "frontend-service".into(),
            namespace: None,
        })
    );
    assert_eq!(r.destination.ports, vec![Port::Number(8080)]);
    assert_eq!(
        r.http,
        Some(HttpMatch {
            methods: vec!["GET".into()],
            paths: vec![
                HttpPath::Exact("/healthz".into()),
                HttpPath::Prefix("/api/".into())
            ],
        })
    );

    let legacy = &p[4];
    assert_eq!(legacy.name, "default.legacy-name");
    assert_eq!(legacy.unprefixed_name(), "legacy-name");
    assert_eq!(legacy.order, Some(5.0));
    assert_eq!(
        legacy.effective_types(),
        PolicyTypes {
            ingress: false,
            egress: true
        }
    );
}

#[test]
fn calico_defaults() {
    let policy = |spec: &str| {
        let c = parse("t.yaml", &format!("{GNP}spec: {spec}\n")).unwrap_or_else(|e| panic!("{e}"));
        c.global_network_policies[0].clone()
    };
    let t = |ingress, egress| PolicyTypes { ingress, egress };
    let p = policy("{}");
    assert_eq!(p.tier, "default");
    assert!(p.selector.is_all());
    assert_eq!((p.order, p.types.clone()), (None, None));
    assert!(p.ingress.is_empty() && p.egress.is_empty());
    assert_eq!(p.effective_types(), t(true, false), "no rules: Ingress");
    assert_eq!(
        policy("{ingress: [{action: Deny}]}").effective_types(),
        t(true, false)
    );
    assert_eq!(
        policy("{egress: [{action: Deny}]}").effective_types(),
        t(false, true)
    );
    assert_eq!(
        policy("{ingress: [{action: Deny}], egress: [{action: Deny}]}").effective_types(),
        t(true, true)
    );
    assert_eq!(
        policy("{types: [Egress], ingress: [{action: Deny}]}").effective_types(),
        t(false, true)
    );
    let p = policy("{tier: '', selector: '', order: -3}");
    assert_eq!((p.tier.as_str(), p.order), ("default", Some(-3.0)));
    assert!(p.selector.is_all());
    // An empty entity selector is no selector at all, which is not `all()`.
    let p = policy("{ingress: [{action: Allow, source: {selector: '', namespaceSelector: ''}}, {action: Allow, source: {selector: all()}}]}");
    assert!(p.ingress[0].source.is_empty());
    assert_eq!(p.ingress[1].source.selector, Some(Selector::all()));
    // A protocol given as a numeric string is a number.
    let p = policy("{ingress: [{action: Allow, protocol: '17', destination: {ports: ['53']}}]}");
    assert_eq!(p.ingress[0].protocol, Some(Protocol::Number(17)));
    assert_eq!(p.ingress[0].destination.ports, vec![Port::Number(53)]);
}

#[test]
fn calico_rejections() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    destinaton: {{}}\n"),
            "GlobalNetworkPolicy/p: spec.ingress[0].destinaton: unknown field; did you mean destination? (line 7)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    source: {{notNet: [10.0.0.0/8]}}\n"),
            "spec.ingress[0].source.notNet: unknown field; did you mean notNets?",
        ),
        (
            format!("{GNP}spec:\n  egres: []\n"),
            "spec.egres: unknown field; did you mean egress?",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    icmp: {{tpye: 8}}\n    protocol: ICMP\n"),
            "spec.ingress[0].icmp.tpye: unknown field; did you mean type?",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: ICMP\n    destination:\n      ports: [80]\n"),
            "spec.ingress[0].destination.ports: ports are only valid with protocol TCP, UDP or SCTP (the rule has protocol ICMP) (line 9)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: ICMPv6\n    source:\n      ports: [http]\n"),
            "spec.ingress[0].source.ports: ports are only valid with protocol TCP, UDP or SCTP (the rule has protocol ICMPv6)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    destination:\n      ports: [http, 80]\n"),
            "spec.ingress[0].destination.ports[1]: a numeric port or port range needs the rule's protocol set to TCP, UDP or SCTP",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: allow\n"),
            "spec.ingress[0].action: \"allow\" is not one of Allow, Deny, Log, Pass; did you mean Allow? (line 6)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Reject\n"),
            "spec.ingress[0].action: \"Reject\" is not one of Allow, Deny, Log, Pass",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - protocol: TCP\n"),
            "spec.ingress[0].action: required field is missing",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    icmp: {{type: 8}}\n"),
            "spec.ingress[0].icmp: icmp requires protocol ICMP or ICMPv6 (protocol is not set)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    icmp: {{type: 8}}\n"),
            "icmp requires protocol ICMP or ICMPv6 (protocol is TCP)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: ICMP\n    icmp: {{code: 1}}\n"),
            "spec.ingress[0].icmp.code: an ICMP code needs an ICMP type",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: ICMP\n    icmp: {{type: 255}}\n"),
            "spec.ingress[0].icmp.type: 255 is out of range (0..=254)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: ICMP\n    ipVersion: 6\n"),
            "spec.ingress[0].ipVersion: protocol ICMP requires ipVersion 4",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    ipVersion: 5\n"),
            "spec.ingress[0].ipVersion: 5 is not an IP version (use 4 or 6)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: tcp\n"),
            "spec.ingress[0].protocol: \"tcp\" is not a protocol (one of TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1..=255); did you mean TCP?",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: 0\n"),
            "spec.ingress[0].protocol: protocol number 0 is out of range (1..=255)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {{ports: ['90:80']}}\n"),
            "spec.ingress[0].destination.ports[0]: port range \"90:80\": the minimum 90 is greater than the maximum 80",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {{ports: [70000]}}\n"),
            "port 70000 is out of range (1..=65535)",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    source: {{nets: [10.0.0.1]}}\n"),
            "spec.ingress[0].source.nets[0]: \"10.0.0.1\" is not a CIDR: add the prefix length (e.g. \"10.0.0.1/32\")",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    source: {{nets: [10.0.0.1/8]}}\n"),
            "\"10.0.0.1/8\" has host bits set; did you mean \"10.0.0.0/8\"?",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    source: {{nets: [10.0.0.0/8]}}\n    destination: {{nets: ['fd00::/8']}}\n"),
            "spec.ingress[0].destination.nets[0]: fd00::/8: a rule cannot mix IPv4 and IPv6 CIDRs",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    ipVersion: 6\n    source: {{nets: [10.0.0.0/8]}}\n"),
            "spec.ingress[0].source.nets[0]: 10.0.0.0/8 is an IPv4 CIDR but the rule has ipVersion 6",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Deny\n    source: {{notNets: [0.0.0.0/0]}}\n"),
            "spec.ingress[0].source.notNets[0]: 0.0.0.0/0 in a negated match matches no traffic at all",
        ),
        (
            format!("{GNP}spec:\n  types: []\n"),
            "spec.types: types must not be empty",
        ),
        (
            format!("{GNP}spec:\n  types: [Ingress, Ingress]\n"),
            "spec.types[1]: Ingress is listed more than once",
        ),
        (
            format!("{GNP}spec:\n  order: high\n"),
            "spec.order: expected a number, found a string",
        ),
        (
            format!("{GNP}spec:\n  tier: Security\n"),
            "spec.tier: \"Security\" is not a valid tier name",
        ),
        (
            format!("{GNP}spec:\n  selector: \"role = 'db'\"\n"),
            "spec.selector: invalid selector \"role = 'db'\"",
        ),
        (
            format!("{GNP}spec:\n  selector: global()\n"),
            "spec.selector: global() can only be used in the namespaceSelector of a rule's source or destination",
        ),
        (
            format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    source: {{namespaceSelector: global() && a == 'b'}}\n"),
            "spec.ingress[0].source.namespaceSelector: global() cannot be combined with other selectors",
        ),
        (
            format!("{GNP}spec:\n  preDNAT: true\n  ingress: [{{action: Deny}}]\n"),
            "spec.preDNAT: preDNAT requires applyOnForward: true",
        ),
        (
            format!("{GNP}spec:\n  doNotTrack: true\n  applyOnForward: false\n"),
            "spec.doNotTrack: doNotTrack requires applyOnForward: true",
        ),
        (
            format!("{GNP}spec:\n  preDNAT: true\n  doNotTrack: true\n  applyOnForward: true\n"),
            "spec.preDNAT: preDNAT and doNotTrack cannot both be true",
        ),
        (
            format!("{GNP}spec:\n  preDNAT: true\n  applyOnForward: true\n  egress: [{{action: Allow}}]\n"),
            "spec.egress: a preDNAT policy cannot have egress rules",
        ),
        (
            format!("{CNP}spec:\n  doNotTrack: true\n"),
            "NetworkPolicy/ns/p: spec.doNotTrack: doNotTrack is only valid in a GlobalNetworkPolicy",
        ),
        (
            format!("{CNP}spec:\n  namespaceSelector: all()\n"),
            "spec.namespaceSelector: namespaceSelector is only valid in a GlobalNetworkPolicy",
        ),
        (
            format!("{GNP}spec:\n  egress:\n  - action: Allow\n    destination:\n      services: {{name: kube-dns}}\n"),
            "spec.egress[0].destination.services: services in a GlobalNetworkPolicy must name a namespace",
        ),
        (
            format!("{CNP}spec:\n  egress:\n  - action: Allow\n    source:\n      services: {{name: web}}\n"),
            "spec.egress[0].source.services: services are not allowed in the source of an egress rule",
        ),
        (
            format!("{CNP}spec:\n  egress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      services: {{name: web}}\n      ports: [80]\n"),
            "spec.egress[0].destination.services: ports and notPorts cannot be combined with services",
        ),
        (
            format!("{CNP}spec:\n  egress:\n  - action: Allow\n    destination:\n      services: {{name: web}}\n      selector: all()\n"),
            "services cannot be combined with selector in the same destination",
        ),
        (
            format!("{CNP}spec:\n  egress:\n  - action: Allow\n    destination:\n      services: {{namespace: x}}\n"),
            "spec.egress[0].destination.services: services must name a service",
        ),
        (
            format!("{CNP}spec:\n  ingress:\n  - action: Deny\n    http: {{methods: [GET]}}\n"),
            "spec.ingress[0].http: http is only valid on Allow rules",
        ),
        (
            format!("{CNP}spec:\n  egress:\n  - action: Allow\n    http: {{methods: [GET]}}\n"),
            "spec.egress[0].http: http is not allowed in egress rules",
        ),
        (
            format!("{CNP}spec:\n  ingress:\n  - action: Allow\n    http: {{paths: [{{exact: /a, prefix: /b}}]}}\n"),
            "spec.ingress[0].http.paths[0]: set either exact or prefix, not both",
        ),
        (
            format!("{GNP}spec:\n  performanceHints: [AssumeNeeded]\n"),
            "spec.performanceHints[0]: \"AssumeNeeded\" is not one of AssumeNeededOnEveryNode",
        ),
        (
            format!("{GNP}spec:\n  stagedAction: Set\n"),
            "spec.stagedAction: unknown field",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a.b.c}\n".to_string(),
            "GlobalNetworkPolicy/a.b.c: metadata.name: \"a.b.c\" is not a valid GlobalNetworkPolicy name",
        ),
    ];
    for (yaml, want) in cases {
        assert_err(&yaml, want);
    }
}

#[test]
fn calico_rule_annotations_and_serialization() {
    let c = parse(
        "t.yaml",
        &format!("{GNP}spec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    metadata: {{annotations: {{owner: team-a}}}}\n    destination: {{ports: [80, '1:2', http]}}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let json = serde_json::to_value(&c.global_network_policies[0]).unwrap();
    assert_eq!(json["ingress"][0]["annotations"]["owner"], "team-a");
    assert_eq!(json["ingress"][0]["protocol"], "TCP");
    assert_eq!(
        json["ingress"][0]["destination"]["ports"],
        serde_json::json!([80, "1:2", "http"])
    );
    assert_eq!(json["selector"], "all()");
}
