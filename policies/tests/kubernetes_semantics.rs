//! Kubernetes NetworkPolicy semantics, on the examples of the Kubernetes documentation
//! (concepts/services-networking/network-policies) and the edge cases of the API's
//! definition, through the compiler and the evaluator.

use brindle_policies::kubernetes::compile;
use brindle_policies::world::NamedPort;
use brindle_policies::{evaluate, Endpoint, Flow, Program, World};
use std::collections::BTreeMap;
use std::net::IpAddr;

const TCP: u8 = 6;
const UDP: u8 = 17;

fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// default: db (role=db, 10.0.0.1), frontend (role=frontend, .2), other (.3);
/// myproject (project=myproject): web (.4); prod (no labels): api (.5).
fn world() -> World {
    let mut w = World::default();
    w.add_namespace("default", BTreeMap::new());
    w.add_namespace("myproject", labels(&[("project", "myproject")]));
    w.add_namespace("prod", BTreeMap::new());
    let ep = |ns: &str, name: &str, l: &[(&str, &str)], ip: &str, ports: Vec<NamedPort>| Endpoint {
        namespace: ns.into(),
        name: name.into(),
        labels: std::sync::Arc::new(labels(l)),
        ips: vec![ip.parse().unwrap()],
        named_ports: ports,
        service_account: "default".into(),
        host: None,
    };
    w.add_endpoint(ep(
        "default",
        "db",
        &[("role", "db")],
        "10.0.0.1",
        vec![NamedPort {
            name: "pg".into(),
            protocol: TCP,
            port: 5432,
        }],
    ));
    w.add_endpoint(ep(
        "default",
        "frontend",
        &[("role", "frontend")],
        "10.0.0.2",
        vec![],
    ));
    w.add_endpoint(ep("default", "other", &[], "10.0.0.3", vec![]));
    w.add_endpoint(ep(
        "myproject",
        "web",
        &[("app", "web")],
        "10.0.0.4",
        vec![NamedPort {
            name: "http".into(),
            protocol: TCP,
            port: 8080,
        }],
    ));
    w.add_endpoint(ep("prod", "api", &[("app", "api")], "10.0.0.5", vec![]));
    w
}

fn program(yaml: &str) -> Program {
    let cfg = brindle_model::parse("np.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    Program::new(
        cfg.kubernetes_network_policies
            .iter()
            .map(compile)
            .collect(),
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn allowed(p: &Program, w: &World, src: &str, dst: &str, proto: u8, port: u16) -> bool {
    evaluate(
        p,
        w,
        &Flow {
            src: ip(src),
            dst: ip(dst),
            protocol: proto,
            port: Some(port),
            src_port: None,
        },
    )
    .allowed
}

const DB: &str = "10.0.0.1";
const FRONTEND: &str = "10.0.0.2";
const OTHER: &str = "10.0.0.3";
const WEB: &str = "10.0.0.4";
const API: &str = "10.0.0.5";
const OUTSIDE: &str = "172.17.1.9";

#[test]
fn no_policy_allows_everything() {
    let w = world();
    let p = Program::default();
    assert!(allowed(&p, &w, OTHER, DB, TCP, 1));
    let d = evaluate(
        &p,
        &w,
        &Flow {
            src: ip(OUTSIDE),
            dst: ip(DB),
            protocol: TCP,
            port: Some(1),
            src_port: None,
        },
    );
    assert!(d.allowed);
    assert_eq!(d.egress, brindle_policies::evaluate::Step::NotAnEndpoint);
    assert_eq!(d.ingress, brindle_policies::evaluate::Step::NotIsolated);
}

/// The documentation's `test-network-policy`.
#[test]
fn the_documentation_example() {
    let p = program(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
      ports:
        - protocol: TCP
          port: 6379
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 5978
"#,
    );
    let w = world();
    assert!(allowed(&p, &w, FRONTEND, DB, TCP, 6379));
    assert!(
        allowed(&p, &w, WEB, DB, TCP, 6379),
        "any pod of a namespace labelled project=myproject"
    );
    assert!(allowed(&p, &w, "172.17.2.3", DB, TCP, 6379));
    assert!(!allowed(&p, &w, OUTSIDE, DB, TCP, 6379), "in the except");
    assert!(!allowed(&p, &w, OTHER, DB, TCP, 6379), "not frontend");
    assert!(!allowed(&p, &w, FRONTEND, DB, TCP, 6380), "other port");
    assert!(!allowed(&p, &w, FRONTEND, DB, UDP, 6379), "other protocol");
    assert!(
        !allowed(&p, &w, API, DB, TCP, 6379),
        "prod is not myproject"
    );
    // Egress from db: only 10.0.0.0/24 on 5978.
    assert!(allowed(&p, &w, DB, OTHER, TCP, 5978));
    assert!(!allowed(&p, &w, DB, OTHER, TCP, 80));
    assert!(!allowed(&p, &w, DB, "8.8.8.8", TCP, 5978));
    // Pods the policy does not select are not isolated.
    assert!(allowed(&p, &w, OTHER, FRONTEND, TCP, 1));
    let d = evaluate(
        &p,
        &w,
        &Flow {
            src: ip(OTHER),
            dst: ip(DB),
            protocol: TCP,
            port: Some(6379),
            src_port: None,
        },
    );
    match &d.ingress {
        brindle_policies::evaluate::Step::EndOfTier { policies, .. } => {
            assert_eq!(policies[0].name, "test-network-policy")
        }
        other => panic!("{other:?}"),
    }
    let d = evaluate(
        &p,
        &w,
        &Flow {
            src: ip(FRONTEND),
            dst: ip(DB),
            protocol: TCP,
            port: Some(6379),
            src_port: None,
        },
    );
    assert!(
        matches!(
            d.ingress,
            brindle_policies::evaluate::Step::Rule { rule: 0, .. }
        ),
        "{d:?}"
    );
}

#[test]
fn and_within_a_peer_or_between_peers() {
    // One peer with both selectors: frontend pods of myproject only (there are none).
    let and = program(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {project: myproject}}
          podSelector: {matchLabels: {app: web}}
"#,
    );
    // Two peers: myproject's pods, or default's frontend.
    let or = program(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: or, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {project: myproject}}
        - podSelector: {matchLabels: {role: frontend}}
"#,
    );
    let w = world();
    assert!(allowed(&and, &w, WEB, DB, TCP, 1));
    assert!(
        !allowed(&and, &w, FRONTEND, DB, TCP, 1),
        "frontend is not in myproject"
    );
    assert!(allowed(&or, &w, WEB, DB, TCP, 1));
    assert!(allowed(&or, &w, FRONTEND, DB, TCP, 1));
    assert!(!allowed(&or, &w, API, DB, TCP, 1));
}

#[test]
fn default_deny_allow_all_and_policy_types_defaulting() {
    let w = world();
    let deny_ingress = program(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d, namespace: default}\nspec: {podSelector: {}}\n",
    );
    assert!(!allowed(&deny_ingress, &w, WEB, DB, TCP, 1));
    assert!(
        !allowed(&deny_ingress, &w, OTHER, DB, TCP, 1),
        "same namespace too"
    );
    assert!(
        allowed(&deny_ingress, &w, DB, WEB, TCP, 1),
        "egress is not isolated (no Egress type)"
    );
    assert!(
        allowed(&deny_ingress, &w, WEB, API, TCP, 1),
        "other namespaces untouched"
    );
    let allow_all = program(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d, namespace: default}\nspec: {podSelector: {}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: default}\nspec:\n  podSelector: {}\n  ingress: [{}]\n",
    );
    assert!(
        allowed(&allow_all, &w, WEB, DB, TCP, 1),
        "policies are ORed: allow-all wins"
    );
    // Egress rules without policyTypes: Ingress and Egress.
    let egress = program(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: e, namespace: default}\nspec:\n  podSelector: {matchLabels: {role: db}}\n  egress: [{to: [{podSelector: {matchLabels: {role: frontend}}}]}]\n",
    );
    assert!(allowed(&egress, &w, DB, FRONTEND, TCP, 1));
    assert!(!allowed(&egress, &w, DB, OTHER, TCP, 1));
    assert!(
        !allowed(&egress, &w, FRONTEND, DB, TCP, 1),
        "Ingress defaulted on, no ingress rules"
    );
    // Egress only.
    let egress_only = program(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: e, namespace: default}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n",
    );
    assert!(!allowed(&egress_only, &w, DB, FRONTEND, TCP, 1));
    assert!(
        allowed(&egress_only, &w, WEB, DB, TCP, 1),
        "ingress to default is not isolated"
    );
}

#[test]
fn ports_ranges_named_ports_and_protocol_only() {
    let w = world();
    let p = program(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: default}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
    - ports:
        - {protocol: TCP, port: 32000, endPort: 32768}
        - {port: pg}
        - {protocol: UDP}
"#,
    );
    assert!(allowed(&p, &w, OTHER, DB, TCP, 32000));
    assert!(allowed(&p, &w, OTHER, DB, TCP, 32768));
    assert!(!allowed(&p, &w, OTHER, DB, TCP, 32769));
    assert!(
        allowed(&p, &w, OTHER, DB, TCP, 5432),
        "named port pg of the destination pod"
    );
    assert!(!allowed(&p, &w, OTHER, DB, TCP, 5433));
    assert!(allowed(&p, &w, OTHER, DB, UDP, 9), "UDP, any port");
    // Egress with a named port resolves on the destination (web's http = 8080).
    let e = program(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: e, namespace: default}
spec:
  podSelector: {matchLabels: {role: frontend}}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {}}]
      ports: [{port: http}]
"#,
    );
    assert!(allowed(&e, &w, FRONTEND, WEB, TCP, 8080));
    assert!(!allowed(&e, &w, FRONTEND, WEB, TCP, 80));
    assert!(
        !allowed(&e, &w, FRONTEND, API, TCP, 8080),
        "api has no port named http"
    );
    assert!(
        !allowed(&e, &w, FRONTEND, OUTSIDE, TCP, 8080),
        "namespaceSelector {{}} is pods only"
    );
}

#[test]
fn namespaces_match_by_their_name_label() {
    let w = world();
    let p = program(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-prod, namespace: default}
spec:
  podSelector: {}
  ingress:
    - from:
        - namespaceSelector:
            matchExpressions:
              - {key: kubernetes.io/metadata.name, operator: In, values: [prod]}
"#,
    );
    assert!(allowed(&p, &w, API, DB, TCP, 1));
    assert!(!allowed(&p, &w, WEB, DB, TCP, 1));
}
