//! Calico HostEndpoint semantics (normal policy) through the compiler, the resolver and
//! the evaluator: default deny but for failsafe ports, `projectcalico-default-allow`,
//! GlobalNetworkPolicy selectors select host endpoints and namespaced policies never
//! do, and `expectedIPs` are the host endpoint's addresses in other policies' rule
//! selectors.

use brindle_model::resolved::{Failsafe, TierRef};
use brindle_policies::evaluate::Step;
use brindle_policies::resolve::{add_host_endpoints, resolve};
use brindle_policies::{evaluate, evaluate_with, program_of, world_of, FailsafePorts, Flow};

const HDR: &str = "apiVersion: projectcalico.org/v3\n";
const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {nodeName: n1}\nstatus: {phase: Running, podIP: 10.1.0.2}\n---\n";

fn hep(name: &str, node: &str, iface: &str, ip: &str, extra: &str) -> String {
    format!("{HDR}kind: HostEndpoint\nmetadata: {{name: {name}, labels: {{role: node}}}}\nspec: {{node: {node}, interfaceName: '{iface}', expectedIPs: [{ip}]{extra}}}\n---\n")
}

fn flow(src: &str, dst: &str, protocol: u8, port: u16) -> Flow {
    Flow {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        protocol,
        port: Some(port),
        src_port: None,
    }
}

const OUTSIDE: &str = "192.0.2.254";
const HOST: &str = "192.0.2.1";

fn load(yaml: &str) -> (brindle_policies::Program, brindle_policies::World) {
    let cfg = brindle_model::parse("t.yaml", yaml).unwrap();
    let (program, warnings) = program_of(&cfg);
    assert!(warnings.is_empty(), "{warnings:?}");
    (program, world_of(&cfg))
}

#[test]
fn a_host_endpoint_is_default_deny_but_for_failsafe_ports() {
    let (p, w) = load(&format!("{PODS}{}", hep("h", "n1", "eth0", HOST, "")));
    let d = evaluate(&p, &w, &flow(OUTSIDE, HOST, 6, 9090));
    assert!(!d.allowed);
    assert_eq!(
        d.ingress,
        Step::HostEndpointDefaultDeny { policies: vec![] }
    );
    assert_eq!(d.egress, Step::NotAnEndpoint);
    let d = evaluate(&p, &w, &flow(OUTSIDE, HOST, 6, 22));
    assert!(d.allowed);
    assert_eq!(
        d.ingress,
        Step::Failsafe {
            port: "tcp:22".into()
        }
    );
    // Outbound: DNS is a failsafe, 8080 is not.
    assert!(evaluate(&p, &w, &flow(HOST, OUTSIDE, 17, 53)).allowed);
    let d = evaluate(&p, &w, &flow(HOST, OUTSIDE, 6, 8080));
    assert!(!d.allowed && matches!(d.egress, Step::HostEndpointDefaultDeny { .. }));
    // No failsafe ports: 22 is closed too.
    let none = FailsafePorts {
        inbound: vec![],
        outbound: vec![],
    };
    assert!(!evaluate_with(&p, &w, &flow(OUTSIDE, HOST, 6, 22), &none).allowed);
    // A failsafe port with a net: only from that net.
    let from_net = FailsafePorts {
        inbound: vec![Failsafe {
            protocol: 6,
            port: 22,
            net: Some("10.0.0.0/8".parse().unwrap()),
        }],
        outbound: vec![],
    };
    assert!(evaluate_with(&p, &w, &flow("10.9.9.9", HOST, 6, 22), &from_net).allowed);
    assert!(!evaluate_with(&p, &w, &flow(OUTSIDE, HOST, 6, 22), &from_net).allowed);
    // A pod's traffic to the host endpoint is policed there like any other.
    assert!(!evaluate(&p, &w, &flow("10.1.0.2", HOST, 6, 9090)).allowed);
}

#[test]
fn the_default_allow_profile_allows_what_no_policy_decides() {
    let yaml = format!(
        "{}{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: no-telnet}}\nspec:\n  selector: role == 'node'\n  types: [Ingress]\n  ingress: [{{action: Deny, protocol: TCP, destination: {{ports: [23]}}}}, {{action: Pass}}]\n",
        hep("h", "n1", "eth0", HOST, ", profiles: [projectcalico-default-allow]")
    );
    let (p, w) = load(&yaml);
    let d = evaluate(&p, &w, &flow(OUTSIDE, HOST, 6, 9090));
    assert!(d.allowed);
    assert_eq!(d.ingress, Step::ProfileAllowed, "passed on to the profile");
    assert!(!evaluate(&p, &w, &flow(OUTSIDE, HOST, 6, 23)).allowed);
    assert_eq!(
        evaluate(&p, &w, &flow(HOST, OUTSIDE, 6, 8080)).egress,
        Step::ProfileAllowed,
        "no egress policy"
    );
}

#[test]
fn global_policy_selects_host_endpoints_namespaced_policy_never_does() {
    let yaml = format!(
        "{PODS}{}{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: web}}\nspec:\n  selector: role == 'node'\n  types: [Ingress]\n  ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [8080]}}}}]\n---\n\
         {HDR}kind: NetworkPolicy\nmetadata: {{name: all, namespace: shop}}\nspec:\n  selector: all()\n  ingress: [{{action: Allow}}]\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: all, namespace: shop}}\nspec: {{podSelector: {{}}, ingress: [{{}}]}}\n",
        hep("h", "n1", "eth0", HOST, "")
    );
    let (p, w) = load(&yaml);
    let d = evaluate(&p, &w, &flow(OUTSIDE, HOST, 6, 8080));
    assert!(
        matches!(&d.ingress, Step::Rule { policy, rule: 0, .. } if policy.name == "web"),
        "{d:?}"
    );
    let d = evaluate(&p, &w, &flow(OUTSIDE, HOST, 6, 9090));
    assert!(
        matches!(&d.ingress, Step::EndOfTier { policies, .. } if policies.len() == 1 && policies[0].name == "web"),
        "only the GlobalNetworkPolicy selects it: {d:?}"
    );
    // Resolved for n1: the host endpoint with the GlobalNetworkPolicy only, the
    // failsafe ports with it; n2 has no host endpoint and no failsafe ports.
    let mut r = resolve(&p, &w, &[("calidb".into(), "10.1.0.2".parse().unwrap())]);
    let inbound = [Failsafe::new(6, 22)];
    add_host_endpoints(&mut r, &p, &w, "n1", &inbound, &[]);
    assert_eq!(r.host_endpoints.len(), 1);
    let h = &r.host_endpoints[0];
    assert_eq!((h.name.as_str(), h.iface.as_str()), ("h", "eth0"));
    assert_eq!(
        h.ingress,
        vec![TierRef {
            name: "default".into(),
            policies: vec!["gnp/web".into()]
        }]
    );
    assert!(h.egress.is_empty() && !h.profile_allows);
    assert_eq!(r.failsafe_inbound, inbound.to_vec());
    assert_eq!(r.endpoints.len(), 1, "the workload stays a workload");
    let mut r2 = resolve(&p, &w, &[]);
    add_host_endpoints(&mut r2, &p, &w, "n2", &inbound, &[]);
    assert!(r2.host_endpoints.is_empty() && r2.failsafe_inbound.is_empty());
}

#[test]
fn expected_ips_are_the_host_endpoints_addresses_in_rule_selectors() {
    let yaml = format!(
        "{PODS}{}{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: from-nodes}}\nspec:\n  selector: app == 'db'\n  ingress: [{{action: Allow, source: {{selector: role == 'node'}}}}]\n---\n\
         {HDR}kind: NetworkPolicy\nmetadata: {{name: ns-scoped, namespace: shop}}\nspec:\n  order: 1\n  selector: app == 'db'\n  ingress:\n    - {{action: Allow, protocol: TCP, destination: {{ports: [5432]}}, source: {{selector: role == 'node'}}}}\n    - {{action: Allow, protocol: TCP, destination: {{ports: [5433]}}, source: {{selector: role == 'node', namespaceSelector: global()}}}}\n    - {{action: Deny, protocol: TCP}}\n",
        hep("h", "n1", "eth0", HOST, "")
    );
    let (p, w) = load(&yaml);
    // The namespaced policy's selector is in its namespace: the host is not in it.
    let d = evaluate(&p, &w, &flow(HOST, "10.1.0.2", 6, 5432));
    assert!(
        matches!(&d.ingress, Step::Rule { policy, rule: 2, .. } if policy.name == "ns-scoped"),
        "{d:?}"
    );
    // global(): host endpoints.
    let d = evaluate(&p, &w, &flow(HOST, "10.1.0.2", 6, 5433));
    assert!(
        matches!(&d.ingress, Step::Rule { policy, rule: 1, .. } if policy.name == "ns-scoped"),
        "{d:?}"
    );
    // The GlobalNetworkPolicy's rule selector matches the host endpoint's expectedIPs.
    let d = evaluate(&p, &w, &flow(HOST, "10.1.0.2", 17, 53));
    assert!(
        matches!(&d.ingress, Step::Rule { policy, rule: 0, .. } if policy.name == "from-nodes"),
        "{d:?}"
    );
    // ... and in the resolved sets (of a node where db is: the policy is active there).
    let r = resolve(
        &p,
        &w,
        &[("calidb".to_string(), "10.1.0.2".parse().unwrap())],
    );
    let rule = &r.policies["gnp/from-nodes"].ingress[0];
    let set = &r.sets[&rule.source.sets[0].set];
    assert_eq!(
        set,
        &brindle_model::resolved::Members::Nets(vec!["192.0.2.1/32".parse().unwrap()])
    );
    // The egress side (the host endpoint's own, default-deny) is what failsafe allows.
    assert!(matches!(
        evaluate(&p, &w, &flow(HOST, "10.1.0.2", 6, 5432)).egress,
        Step::HostEndpointDefaultDeny { .. }
    ));
}

#[test]
fn a_host_endpoint_without_an_interface_polices_nothing() {
    let yaml = format!(
        "{HDR}kind: HostEndpoint\nmetadata: {{name: h, labels: {{role: node}}}}\nspec: {{node: n1, expectedIPs: [{HOST}]}}\n"
    );
    let cfg = brindle_model::parse("t.yaml", &yaml).unwrap();
    let (p, _) = program_of(&cfg);
    let w = world_of(&cfg);
    assert_eq!(
        evaluate(&p, &w, &flow(OUTSIDE, HOST, 6, 9090)).ingress,
        Step::NotAnEndpoint
    );
    let mut r = resolve(&p, &w, &[]);
    add_host_endpoints(&mut r, &p, &w, "n1", &[], &[]);
    assert!(r.host_endpoints.is_empty());
}

#[test]
fn do_not_track_and_pre_dnat_policies_are_not_normal_policy() {
    let yaml = format!(
        "{}{HDR}kind: GlobalNetworkPolicy\nmetadata: {{name: untracked}}\nspec:\n  selector: role == 'node'\n  doNotTrack: true\n  applyOnForward: true\n  ingress: [{{action: Allow}}]\n",
        hep("h", "n1", "eth0", HOST, "")
    );
    let cfg = brindle_model::parse("t.yaml", &yaml).unwrap();
    let (p, warnings) = program_of(&cfg);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("doNotTrack"), "{warnings:?}");
    let w = world_of(&cfg);
    assert!(!evaluate(&p, &w, &flow(OUTSIDE, HOST, 6, 9090)).allowed);
}
