//! Calico NetworkPolicy / GlobalNetworkPolicy semantics through the compiler and the
//! evaluator, mixed with Kubernetes NetworkPolicies in the default tier as Calico orders
//! them.

use brindle_policies::evaluate::Step;
use brindle_policies::world::NamedPort;
use brindle_policies::{calico, evaluate, kubernetes, Endpoint, Flow, Program, World};
use std::collections::BTreeMap;
use std::net::IpAddr;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// shop (team=blue): web (app=web, .1, sa frontend), db (app=db, .2, port "pg" 5432);
/// tools (team=red): probe (app=probe, .3); monitoring (no labels): prom (.4).
fn world() -> World {
    let mut w = World::default();
    w.add_namespace("shop", labels(&[("team", "blue")]));
    w.add_namespace("tools", labels(&[("team", "red")]));
    w.add_namespace("monitoring", BTreeMap::new());
    let ep =
        |ns: &str, name: &str, l: &[(&str, &str)], ip: &str, sa: &str, ports: Vec<NamedPort>| {
            Endpoint {
                namespace: ns.into(),
                name: name.into(),
                labels: std::sync::Arc::new(labels(l)),
                ips: vec![ip.parse().unwrap()],
                named_ports: ports,
                service_account: sa.into(),
                host: None,
            }
        };
    w.add_endpoint(ep(
        "shop",
        "web",
        &[("app", "web")],
        "10.1.0.1",
        "frontend",
        vec![],
    ));
    w.add_endpoint(ep(
        "shop",
        "db",
        &[("app", "db")],
        "10.1.0.2",
        "default",
        vec![NamedPort {
            name: "pg".into(),
            protocol: TCP,
            port: 5432,
        }],
    ));
    w.add_endpoint(ep(
        "tools",
        "probe",
        &[("app", "probe")],
        "10.1.0.3",
        "default",
        vec![],
    ));
    w.add_endpoint(ep(
        "monitoring",
        "prom",
        &[("app", "prom")],
        "10.1.0.4",
        "default",
        vec![],
    ));
    w
}

const WEB: &str = "10.1.0.1";
const DB: &str = "10.1.0.2";
const PROBE: &str = "10.1.0.3";
const PROM: &str = "10.1.0.4";

fn program(yaml: &str) -> Program {
    let cfg = brindle_model::parse("p.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let mut v: Vec<_> = cfg
        .network_policies
        .iter()
        .chain(cfg.global_network_policies.iter())
        .map(|p| {
            let (pol, warnings) = calico::compile(p);
            assert!(warnings.is_empty(), "{warnings:?}");
            pol
        })
        .collect();
    v.extend(
        cfg.kubernetes_network_policies
            .iter()
            .map(kubernetes::compile),
    );
    Program::new(v)
}

fn flow(src: &str, dst: &str, protocol: u8, port: u16) -> Flow {
    Flow {
        src: src.parse::<IpAddr>().unwrap(),
        dst: dst.parse().unwrap(),
        protocol,
        port: Some(port),
        src_port: None,
    }
}

fn allowed(p: &Program, w: &World, src: &str, dst: &str, protocol: u8, port: u16) -> bool {
    evaluate(p, w, &flow(src, dst, protocol, port)).allowed
}

const HDR: &str = "apiVersion: projectcalico.org/v3\n";

#[test]
fn a_calico_deny_before_a_kubernetes_allow() {
    // Calico order 100 denies probe → db; the Kubernetes policy (order 1000) allows all
    // ingress to db.
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: no-probe, namespace: shop}}\nspec:\n  order: 100\n  selector: app == 'db'\n  ingress:\n    - action: Deny\n      source: {{namespaceSelector: team == 'red'}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-all, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: db}}}}\n  ingress: [{{}}]\n"
    ));
    let w = world();
    let d = evaluate(&p, &w, &flow(PROBE, DB, TCP, 5432));
    assert!(!d.allowed);
    assert!(
        matches!(&d.ingress, Step::Rule { policy, .. } if policy.name == "no-probe"),
        "{d:?}"
    );
    let d = evaluate(&p, &w, &flow(WEB, DB, TCP, 5432));
    assert!(d.allowed);
    assert!(
        matches!(&d.ingress, Step::Rule { policy, .. } if policy.name == "allow-all"),
        "{d:?}"
    );
}

#[test]
fn selectors_scope_to_the_policys_namespace_unless_a_namespace_selector_says() {
    let w = world();
    // app == 'probe' in a shop policy means shop's probes: there are none.
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: app == 'db'\n  ingress:\n    - action: Allow\n      source: {{selector: app == 'probe'}}\n"
    ));
    assert!(!allowed(&p, &w, PROBE, DB, TCP, 1));
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: app == 'db'\n  ingress:\n    - action: Allow\n      source: {{selector: app == 'probe', namespaceSelector: all()}}\n"
    ));
    assert!(allowed(&p, &w, PROBE, DB, TCP, 1));
    assert!(!allowed(&p, &w, WEB, DB, TCP, 1));
    // A GlobalNetworkPolicy's selectors see every namespace; the special labels work.
    let p = program(&format!(
        "{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  selector: projectcalico.org/namespace == 'shop'\n  ingress:\n    - action: Allow\n      source: {{selector: app == 'prom'}}\n"
    ));
    assert!(allowed(&p, &w, PROM, DB, TCP, 1));
    assert!(allowed(&p, &w, PROM, WEB, TCP, 1));
    assert!(!allowed(&p, &w, PROBE, WEB, TCP, 1));
    assert!(allowed(&p, &w, WEB, PROBE, TCP, 1), "tools is not selected");
    // global() in a rule: host endpoints and network sets only, never a pod.
    let p = program(&format!(
        "{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  selector: all()\n  ingress:\n    - action: Allow\n      source: {{namespaceSelector: global()}}\n"
    ));
    assert!(!allowed(&p, &w, PROM, DB, TCP, 1));
}

#[test]
fn policy_namespace_and_service_account_selectors() {
    let w = world();
    let p = program(&format!(
        "{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  namespaceSelector: team == 'blue'\n  serviceAccountSelector: projectcalico.org/name == 'frontend'\n  ingress: [{{action: Deny}}]\n  types: [Ingress]\n"
    ));
    assert!(
        !allowed(&p, &w, PROM, WEB, TCP, 1),
        "web: shop is blue and its account is frontend"
    );
    assert!(allowed(&p, &w, PROM, DB, TCP, 1), "db's account is default");
    assert!(allowed(&p, &w, WEB, PROBE, TCP, 1), "tools is red");
}

#[test]
fn nets_ports_protocols_icmp_and_negations() {
    let w = world();
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: app == 'db'\n  ingress:\n\
         \x20   - action: Allow\n      protocol: TCP\n      source: {{nets: [10.1.0.0/24], notNets: [10.1.0.3/32]}}\n      destination: {{ports: [pg, '6000:6010'], notPorts: [6005]}}\n\
         \x20   - action: Allow\n      protocol: ICMP\n      icmp: {{type: 8}}\n\
         \x20   - action: Allow\n      notProtocol: TCP\n      source: {{selector: app == 'web'}}\n"
    ));
    assert!(allowed(&p, &w, WEB, DB, TCP, 5432), "named port pg");
    assert!(allowed(&p, &w, WEB, DB, TCP, 6004));
    assert!(!allowed(&p, &w, WEB, DB, TCP, 6005), "notPorts");
    assert!(!allowed(&p, &w, PROBE, DB, TCP, 5432), "notNets");
    assert!(!allowed(&p, &w, WEB, DB, TCP, 22));
    assert!(allowed(&p, &w, PROBE, DB, ICMP, 8), "echo request");
    assert!(!allowed(&p, &w, PROBE, DB, ICMP, 0));
    assert!(allowed(&p, &w, WEB, DB, UDP, 53), "not TCP, from web");
    assert!(!allowed(&p, &w, PROBE, DB, UDP, 53));
}

#[test]
fn source_ports_and_not_source_ports() {
    let w = world();
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: app == 'db'\n  ingress:\n\
         \x20   - action: Allow\n      protocol: UDP\n      source: {{ports: ['1000:1999'], notPorts: [1500]}}\n      destination: {{ports: [53]}}\n"
    ));
    let with_sport = |sport: Option<u16>| {
        evaluate(
            &p,
            &w,
            &Flow {
                src_port: sport,
                ..flow(WEB, DB, UDP, 53)
            },
        )
        .allowed
    };
    assert!(with_sport(Some(1000)));
    assert!(with_sport(Some(1999)));
    assert!(!with_sport(Some(1500)), "notPorts on the source");
    assert!(!with_sport(Some(2000)));
    assert!(
        !with_sport(None),
        "an unknown source port matches no source-port rule"
    );
}

#[test]
fn rule_service_accounts_by_name_and_by_their_labels() {
    let mut w = world();
    w.add_service_account("shop", "frontend", labels(&[("role", "edge")]));
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: app == 'db'\n  ingress:\n\
         \x20   - action: Allow\n      source: {{serviceAccounts: {{names: [frontend, billing]}}}}\n"
    ));
    assert!(allowed(&p, &w, WEB, DB, TCP, 5432), "web runs as frontend");
    assert!(
        !allowed(&p, &w, PROBE, DB, TCP, 5432),
        "probe runs as default"
    );
    let p = program(&format!(
        "{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  selector: app == 'db'\n  ingress:\n\
         \x20   - action: Allow\n      source: {{selector: app == 'web', serviceAccounts: {{selector: role == 'edge'}}}}\n"
    ));
    assert!(
        allowed(&p, &w, WEB, DB, TCP, 1),
        "frontend is labelled role=edge"
    );
    let mut w2 = world();
    w2.add_service_account("shop", "frontend", labels(&[("role", "inside")]));
    assert!(
        !allowed(&p, &w2, WEB, DB, TCP, 1),
        "relabelled service account"
    );
}

#[test]
fn network_sets_join_rule_selectors() {
    let mut w = world();
    let cfg = brindle_model::parse(
        "sets.yaml",
        &format!(
            "{HDR}kind: GlobalNetworkSet\nmetadata: {{name: office, labels: {{zone: office}}}}\nspec: {{nets: [192.0.2.0/24, 198.51.100.7]}}\n---\n\
             {HDR}kind: NetworkSet\nmetadata: {{name: partners, namespace: shop, labels: {{zone: partner}}}}\nspec: {{nets: [203.0.113.0/25]}}\n---\n\
             {HDR}kind: NetworkSet\nmetadata: {{name: elsewhere, namespace: tools, labels: {{zone: partner}}}}\nspec: {{nets: [203.0.113.128/25]}}\n"
        ),
    )
    .unwrap();
    w.network_sets = cfg.network_sets.clone();
    assert_eq!(
        w.network_sets[0].nets[1].to_string(),
        "198.51.100.7/32",
        "a bare address is a /32"
    );
    // A namespaced policy's selector: the NetworkSets of its namespace, never a
    // GlobalNetworkSet (unless namespaceSelector: global()).
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: app == 'db'\n  ingress:\n\
         \x20   - action: Allow\n      source: {{selector: has(zone)}}\n"
    ));
    assert!(
        allowed(&p, &w, "203.0.113.5", DB, TCP, 5432),
        "shop/partners"
    );
    assert!(
        !allowed(&p, &w, "203.0.113.200", DB, TCP, 5432),
        "tools/elsewhere"
    );
    assert!(
        !allowed(&p, &w, "192.0.2.9", DB, TCP, 5432),
        "office is global"
    );
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: app == 'db'\n  ingress:\n\
         \x20   - action: Allow\n      source: {{namespaceSelector: global(), selector: zone == 'office'}}\n"
    ));
    assert!(
        allowed(&p, &w, "192.0.2.9", DB, TCP, 5432),
        "global() selects office"
    );
    assert!(allowed(&p, &w, "198.51.100.7", DB, TCP, 5432));
    assert!(!allowed(&p, &w, "198.51.100.8", DB, TCP, 5432));
    // A GlobalNetworkPolicy's selector: every network set; namespaceSelector narrows
    // to the namespaced ones it selects.
    let p = program(&format!(
        "{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  selector: app == 'db'\n  ingress:\n\
         \x20   - action: Deny\n      source: {{namespaceSelector: team == 'red', selector: has(zone)}}\n\
         \x20   - action: Allow\n      source: {{selector: has(zone)}}\n"
    ));
    assert!(allowed(&p, &w, "192.0.2.9", DB, TCP, 1));
    assert!(allowed(&p, &w, "203.0.113.5", DB, TCP, 1));
    assert!(
        !allowed(&p, &w, "203.0.113.200", DB, TCP, 1),
        "tools is red"
    );
    // Resolved: the nets are the set's members.
    let r =
        brindle_policies::resolve::resolve(&p, &w, &[("calidb".to_string(), DB.parse().unwrap())]);
    let all: Vec<String> = r
        .sets
        .values()
        .flat_map(|m| match m {
            brindle_policies::resolve::Members::Nets(n) => {
                n.iter().map(|x| x.to_string()).collect()
            }
            _ => vec![],
        })
        .collect();
    for net in [
        "192.0.2.0/24",
        "198.51.100.7/32",
        "203.0.113.0/25",
        "203.0.113.128/25",
    ] {
        assert!(all.contains(&net.to_string()), "{net} in {all:?}");
    }
}

#[test]
fn pass_goes_to_the_profile_and_log_goes_on() {
    let w = world();
    let p = program(&format!(
        "{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: a-pass}}\nspec:\n  order: 1\n  selector: all()\n  ingress: [{{action: Log}}, {{action: Pass, source: {{selector: app == 'prom'}}}}]\n---\n\
         {HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: b-deny}}\nspec:\n  order: 2\n  selector: all()\n  ingress: [{{action: Deny}}]\n"
    ));
    let d = evaluate(&p, &w, &flow(PROM, DB, TCP, 1));
    assert!(d.allowed);
    assert_eq!(d.ingress, Step::Passed);
    let d = evaluate(&p, &w, &flow(WEB, DB, TCP, 1));
    assert!(!d.allowed);
    assert!(matches!(&d.ingress, Step::Rule { policy, .. } if policy.name == "b-deny"));
}

#[test]
fn egress_is_decided_at_the_source() {
    let w = world();
    let p = program(&format!(
        "{HDR}kind: NetworkPolicy\nmetadata: {{name: e, namespace: shop}}\nspec:\n  selector: app == 'web'\n  types: [Egress]\n  egress:\n    - action: Allow\n      protocol: TCP\n      destination: {{selector: app == 'db', ports: [pg]}}\n"
    ));
    assert!(allowed(&p, &w, WEB, DB, TCP, 5432));
    assert!(!allowed(&p, &w, WEB, DB, TCP, 80));
    assert!(!allowed(&p, &w, WEB, PROM, TCP, 5432));
    let d = evaluate(&p, &w, &flow(WEB, PROM, TCP, 5432));
    assert!(
        matches!(d.egress, Step::EndOfTier { .. }) && d.ingress == Step::NotIsolated,
        "{d:?}"
    );
}
