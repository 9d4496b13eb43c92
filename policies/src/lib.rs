//! Brindle's network policy compiler. It owns the meaning of policy: Kubernetes
//! `networking.k8s.io/v1` NetworkPolicy compiled ([`kubernetes`]) into a backend-neutral
//! program ([`ir`]: per policy, ordered ingress and egress rules of match → action, and
//! the address and named-port sets they reference, defined by what selects their
//! members), the endpoints and namespaces policy is about ([`world`]: workloads, and
//! Calico host endpoints, which only GlobalNetworkPolicy selects and which are
//! default-deny but for the failsafe ports), and an evaluator
//! ([`evaluate`]) that answers, on that same program, whether a flow is allowed and which
//! policy and rule decided; [`resolve`] turns it, for one node's endpoints, into named
//! sets with members and per-endpoint (and per host endpoint) tiers of policies, which
//! felix renders. Calico `NetworkPolicy`/`GlobalNetworkPolicy` compile into
//! the same form ([`calico`]: orders, Deny, Pass, Log, Calico selectors over the labels
//! Felix gives an endpoint). Pure: no I/O, no kernel; felix renders the program into
//! iptables and ipsets. Tiers other than `default` are ordered by name until Tier
//! objects are read.

pub mod calico;
pub mod evaluate;
pub mod ir;
pub mod kubernetes;
pub mod resolve;
pub mod world;

pub use evaluate::{evaluate, evaluate_with, Decision, FailsafePorts, Flow};
pub use ir::{Action, Direction, PolicyId, Program};
pub use world::{Endpoint, World};

/// Every policy of a cluster compiled (Calico policies first as written, then the
/// Kubernetes ones; [`Program::new`] orders them), with what is not enforced yet
/// (`doNotTrack` and `preDNAT` policies are left out).
pub fn program_of(cfg: &brindle_model::ClusterConfig) -> (Program, Vec<String>) {
    let mut warnings = Vec::new();
    let mut policies = Vec::new();
    for p in cfg
        .network_policies
        .iter()
        .chain(cfg.global_network_policies.iter())
    {
        if p.do_not_track || p.pre_dnat {
            // Calico applies these to host endpoints only, before conntrack or DNAT (raw
            // and mangle tables): never in the normal filter chains.
            warnings.push(format!(
                "GlobalNetworkPolicy {}: not enforced: {} policy is not implemented",
                p.name,
                if p.do_not_track {
                    "doNotTrack"
                } else {
                    "preDNAT"
                }
            ));
            continue;
        }
        let (pol, w) = calico::compile(p);
        warnings.extend(w.into_iter().map(|w| format!("{}: {w}", pol.id)));
        policies.push(pol);
    }
    policies.extend(
        cfg.kubernetes_network_policies
            .iter()
            .map(kubernetes::compile),
    );
    (Program::new(policies), warnings)
}

/// The endpoints (workloads, then host endpoints), namespaces, service accounts and
/// network sets of a cluster.
pub fn world_of(cfg: &brindle_model::ClusterConfig) -> World {
    let mut w = World::from_model(
        cfg.pods.iter().map(|p| &**p),
        cfg.namespaces.iter().map(|n| &**n),
    );
    for sa in &cfg.service_accounts {
        w.add_service_account(&sa.namespace, &sa.name, sa.labels.clone());
    }
    for h in &cfg.host_endpoints {
        w.add_endpoint(Endpoint::from_host_endpoint(h));
    }
    w.network_sets = cfg.network_sets.clone();
    w
}
