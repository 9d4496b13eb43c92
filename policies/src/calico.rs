//! Calico `NetworkPolicy` (namespaced) and `GlobalNetworkPolicy`, as Felix renders them
//! (`felix/rules/policy.go`, `felix/calc`): the policy's `selector` (within its
//! namespace for a NetworkPolicy) with `namespaceSelector` and `serviceAccountSelector`;
//! rules in order with Allow, Deny, Pass and Log; `protocol`/`notProtocol`,
//! `icmp`/`notICMP`, `ipVersion`; per side `selector`/`notSelector` (the policy's
//! namespace unless the rule's `namespaceSelector` says otherwise; every namespace for a
//! GlobalNetworkPolicy), `namespaceSelector` (`global()`: no pod), `nets`/`notNets`,
//! `ports`/`notPorts` (numbers, ranges, named ports of that side's endpoint).
//!
//! A GlobalNetworkPolicy's `selector` also selects host endpoints (normal policy: what
//! the host receives and sends on the endpoint's interface; see [`crate::world`]).
//!
//! Not compiled yet (reported, the rule kept without it): `serviceAccounts` and
//! `services` in rules, `http`, source ports; `doNotTrack`, `preDNAT`,
//! `applyOnForward`.

use crate::ir::{
    Action, Applies, Match, Policy, PolicyId, PolicyKind, PortMatch, Rule, SetDef, Side,
};
use brindle_model::policy::{self as m, CalicoPolicy, EntityRule, Port};

fn action(a: m::Action) -> Action {
    match a {
        m::Action::Allow => Action::Allow,
        m::Action::Deny => Action::Deny,
        m::Action::Pass => Action::Pass,
        m::Action::Log => Action::Log,
    }
}

fn port(p: &Port, protocol: u8) -> PortMatch {
    match p {
        Port::Number(n) => PortMatch::Range {
            protocol,
            first: *n,
            last: *n,
        },
        Port::Range(a, b) => PortMatch::Range {
            protocol,
            first: *a,
            last: *b,
        },
        Port::Named(name) => PortMatch::Named {
            protocol,
            name: name.clone(),
        },
    }
}

fn side(
    e: &EntityRule,
    namespace: &Option<String>,
    protocol: u8,
    what: &str,
    warnings: &mut Vec<String>,
) -> Side {
    let scope = |selector: Option<brindle_model::Selector>| SetDef::Calico {
        namespace: namespace.clone(),
        selector,
        namespace_selector: e.namespace_selector.clone(),
    };
    let mut s = Side {
        nets: e.nets.clone(),
        not_nets: e.not_nets.clone(),
        ports: e.ports.iter().map(|p| port(p, protocol)).collect(),
        not_ports: e.not_ports.iter().map(|p| port(p, protocol)).collect(),
        ..Side::default()
    };
    if e.selector.is_some() || e.namespace_selector.is_some() {
        s.sets.push(scope(e.selector.clone()));
    }
    if let Some(n) = &e.not_selector {
        s.not_sets.push(scope(Some(n.clone())));
    }
    if e.service_accounts.is_some() {
        warnings.push(format!("{what}.serviceAccounts is not enforced yet"));
    }
    if e.services.is_some() {
        warnings.push(format!("{what}.services is not enforced yet"));
    }
    s
}

fn rule(
    r: &m::Rule,
    index: usize,
    namespace: &Option<String>,
    dir: &str,
    warnings: &mut Vec<String>,
) -> Rule {
    // Ports need a protocol (Calico's validator); TCP otherwise.
    let protocol = r.protocol.map(|p| p.number()).unwrap_or(6);
    let what = format!("{dir}[{index}]");
    if r.http.is_some() {
        warnings.push(format!("{what}.http is not enforced yet"));
    }
    let mut source = side(
        &r.source,
        namespace,
        protocol,
        &format!("{what}.source"),
        warnings,
    );
    if !source.ports.is_empty() || !source.not_ports.is_empty() {
        warnings.push(format!("{what}.source.ports are not enforced yet"));
        source.ports.clear();
        source.not_ports.clear();
    }
    Rule {
        matches: Match {
            ip_version: r.ip_version.map(|v| v.number()),
            protocol: r.protocol.map(|p| p.number()),
            not_protocol: r.not_protocol.map(|p| p.number()),
            icmp: r.icmp.map(|i| (i.icmp_type, i.code)),
            not_icmp: r.not_icmp.map(|i| (i.icmp_type, i.code)),
            source,
            destination: side(
                &r.destination,
                namespace,
                protocol,
                &format!("{what}.destination"),
                warnings,
            ),
        },
        action: action(r.action),
        source_index: index,
    }
}

/// Compiles one Calico policy; the warnings name what is not enforced yet.
pub fn compile(p: &CalicoPolicy) -> (Policy, Vec<String>) {
    let mut warnings = Vec::new();
    let types = p.effective_types();
    let kind = if p.is_global() {
        PolicyKind::GlobalNetworkPolicy
    } else {
        PolicyKind::NetworkPolicy
    };
    let policy = Policy {
        id: PolicyId {
            kind,
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        },
        tier: p.tier.clone(),
        order: p.order,
        applies: Applies::Calico {
            namespace: p.namespace.clone(),
            selector: p.selector.clone(),
            namespace_selector: p.namespace_selector.clone(),
            service_account_selector: p.service_account_selector.clone(),
        },
        ingress_type: types.ingress,
        egress_type: types.egress,
        ingress: p
            .ingress
            .iter()
            .enumerate()
            .map(|(i, r)| rule(r, i, &p.namespace, "ingress", &mut warnings))
            .collect(),
        egress: p
            .egress
            .iter()
            .enumerate()
            .map(|(i, r)| rule(r, i, &p.namespace, "egress", &mut warnings))
            .collect(),
    };
    (policy, warnings)
}
