//! Calico `NetworkPolicy` (namespaced) and `GlobalNetworkPolicy`, as Felix renders them
//! (`felix/rules/policy.go`, `felix/calc`): the policy's `selector` (within its
//! namespace for a NetworkPolicy) with `namespaceSelector` and `serviceAccountSelector`;
//! rules in order with Allow, Deny, Pass and Log; `protocol`/`notProtocol`,
//! `icmp`/`notICMP`, `ipVersion`; per side `selector`/`notSelector` (the policy's
//! namespace unless the rule's `namespaceSelector` says otherwise; every namespace for a
//! GlobalNetworkPolicy), `namespaceSelector` (`global()`: no pod), `nets`/`notNets`,
//! `ports`/`notPorts` (numbers, ranges, named ports of that side's endpoint; on either
//! side).
//!
//! `serviceAccounts` (names and a selector over the service account's labels) narrows
//! a side's endpoints as Calico's rule conversion does. A GlobalNetworkPolicy's
//! `selector` also selects host endpoints (normal policy: what the host receives and
//! sends on the endpoint's interface; see [`crate::world`]).
//!
//! Not compiled yet (reported, the rule kept without it): `services` in rules, `http`;
//! `doNotTrack`, `preDNAT`, `applyOnForward`.

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

/// `a && b`.
fn and(
    a: &brindle_model::Selector,
    b: &brindle_model::Selector,
) -> Option<brindle_model::Selector> {
    brindle_model::Selector::parse(&format!("({}) && ({})", a.as_str(), b.as_str())).ok()
}

/// A rule's `serviceAccounts` as a selector over the endpoint's labels (None: matches
/// every endpoint, as an empty match does).
fn service_account_selector(m: &m::ServiceAccountMatch) -> Option<brindle_model::Selector> {
    let by_labels = m.selector.as_ref().map(|s| s.with_label_prefix("pcsa."));
    let by_name = if m.names.is_empty() {
        None
    } else {
        let names: Vec<String> = m
            .names
            .iter()
            .map(|n| format!("'{}'", n.replace('\'', "")))
            .collect();
        brindle_model::Selector::parse(&format!(
            "projectcalico.org/serviceaccount in {{ {} }}",
            names.join(", ")
        ))
        .ok()
    };
    match (by_labels, by_name) {
        (Some(a), Some(b)) => and(&a, &b),
        (a, b) => a.or(b),
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
    // `serviceAccounts` ANDs with the selector, as Calico's rule conversion does
    // (`updateprocessors/rules.go`): the names as `projectcalico.org/serviceaccount in
    // {...}`, the selector over the service account's labels with the `pcsa.` prefix.
    let sa = e
        .service_accounts
        .as_ref()
        .and_then(service_account_selector);
    let selector = match (&e.selector, &sa) {
        (Some(a), Some(b)) => and(a, b),
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    if selector.is_some() || e.namespace_selector.is_some() {
        s.sets.push(scope(selector));
    }
    if let Some(n) = &e.not_selector {
        s.not_sets.push(scope(Some(n.clone())));
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
    let source = side(
        &r.source,
        namespace,
        protocol,
        &format!("{what}.source"),
        warnings,
    );
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
