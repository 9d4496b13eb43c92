//! Decoding of Calico and Kubernetes network policies into [`crate::policy`], validated
//! as Calico validates them (`libcalico-go/lib/validator/v3` plus the CEL rules of the
//! `projectcalico.org/v3` CRDs) and as the Kubernetes API server validates a
//! `networking.k8s.io/v1` NetworkPolicy (`pkg/apis/networking/validation`).
//!
//! Both are strict on structure in files: an unknown field is an error with a "did you
//! mean" hint. A Kubernetes NetworkPolicy read from the API (a JSON tree, whose lines are
//! 0) was validated by the API server, so there a field Brindle does not know (a newer
//! API's) is accepted with a warning instead.

use super::fields::{enum_value, network, selector as parse_selector, string_list};
use super::yaml::{Field, Fields, Value};
use super::Meta;
use crate::error::ConfigError;
use crate::policy::*;
use crate::selector::Selector;
use crate::values::parse_cidr;
use ipnetwork::IpNetwork;

// ---------------------------------------------------------------------------------------
// Calico
// ---------------------------------------------------------------------------------------

/// `NetworkPolicySpec` fields.
const NP_SPEC: &[&str] = &[
    "tier",
    "order",
    "selector",
    "types",
    "ingress",
    "egress",
    "serviceAccountSelector",
    "performanceHints",
];
/// `GlobalNetworkPolicySpec` fields: those of `NetworkPolicySpec` plus [`GNP_ONLY`].
const GNP_SPEC: &[&str] = &[
    "tier",
    "order",
    "selector",
    "types",
    "ingress",
    "egress",
    "serviceAccountSelector",
    "performanceHints",
    "namespaceSelector",
    "doNotTrack",
    "preDNAT",
    "applyOnForward",
];
const GNP_ONLY: &[&str] = &[
    "namespaceSelector",
    "doNotTrack",
    "preDNAT",
    "applyOnForward",
];
const RULE_KEYS: &[&str] = &[
    "action",
    "ipVersion",
    "protocol",
    "notProtocol",
    "icmp",
    "notICMP",
    "source",
    "destination",
    "http",
    "metadata",
];
const ENTITY_KEYS: &[&str] = &[
    "nets",
    "notNets",
    "selector",
    "notSelector",
    "namespaceSelector",
    "ports",
    "notPorts",
    "serviceAccounts",
    "services",
];
const POLICY_TYPES: [(&str, PolicyType); 2] = [
    ("Ingress", PolicyType::Ingress),
    ("Egress", PolicyType::Egress),
];
/// Limits from the CRD schemas.
const MAX_SELECTOR_LEN: usize = 1024;
const MAX_RULES: usize = 1024;
const MAX_NETS: usize = 256;
const MAX_PORTS: usize = 50;
const MAX_HTTP_ITEMS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

pub(crate) fn decode_calico_policy(
    meta: &Meta,
    spec: &Field,
    global: bool,
) -> Result<CalicoPolicy, ConfigError> {
    if !global {
        if let Some((key, line)) = first_present_key(spec, GNP_ONLY) {
            return Err(spec.ctx.err(
                &join(&spec.path, key),
                line,
                format!("{key} is only valid in a GlobalNetworkPolicy (a NetworkPolicy applies to endpoints of its own namespace)"),
            ));
        }
    }
    let s = spec.map(if global { GNP_SPEC } else { NP_SPEC })?;
    validate_policy_name(spec, &meta.name, global)?;

    let tier = s
        .opt("tier", |f| {
            let t = f.string()?;
            if t.is_empty() {
                return Ok(None);
            }
            if !dns_label_ok(&t) {
                return Err(f.err(format!(
                    "{t:?} is not a valid tier name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
                )));
            }
            Ok(Some(t))
        })?
        .flatten()
        .unwrap_or_else(|| DEFAULT_TIER.to_string());
    let order = s.opt("order", |f| order(&f))?;
    let selector = s
        .opt("selector", |f| opt_selector(&f))?
        .flatten()
        .unwrap_or_else(Selector::all);
    let types = s.opt("types", |f| policy_types(&f, true))?;
    let ingress = s
        .opt("ingress", |f| rules(&f, Direction::Ingress, global))?
        .unwrap_or_default();
    let egress = s
        .opt("egress", |f| rules(&f, Direction::Egress, global))?
        .unwrap_or_default();
    let service_account_selector = s
        .opt("serviceAccountSelector", |f| opt_selector(&f))?
        .flatten();
    let namespace_selector = s.opt("namespaceSelector", |f| opt_selector(&f))?.flatten();
    let flag = |name: &str| -> Result<bool, ConfigError> {
        Ok(s.opt(name, |f| f.bool())?.unwrap_or(false))
    };
    let do_not_track = flag("doNotTrack")?;
    let pre_dnat = flag("preDNAT")?;
    let apply_on_forward = flag("applyOnForward")?;
    if let Some(f) = s.get("performanceHints") {
        let mut seen = Vec::new();
        for item in f.seq()? {
            enum_value(&item, &[("AssumeNeededOnEveryNode", ())])?;
            let text = item.str()?;
            if seen.contains(&text) {
                return Err(item.err(format!("{text:?} is listed more than once")));
            }
            seen.push(text);
        }
        if !seen.is_empty() {
            // Hints never change what a policy enforces.
            spec.ctx.ignored(&f.path, f.node.line);
        }
    }

    // GlobalNetworkPolicySpec's CEL rules.
    let spec_err = |name: &str, message: String| at(&s, spec, name, message);
    if do_not_track && pre_dnat {
        return Err(spec_err(
            "preDNAT",
            "preDNAT and doNotTrack cannot both be true".into(),
        ));
    }
    if pre_dnat && !egress.is_empty() {
        return Err(spec_err(
            "egress",
            "a preDNAT policy cannot have egress rules".into(),
        ));
    }
    if pre_dnat
        && types
            .as_ref()
            .is_some_and(|t| t.contains(&PolicyType::Egress))
    {
        return Err(spec_err(
            "types",
            "a preDNAT policy cannot have type Egress".into(),
        ));
    }
    for (name, set) in [("doNotTrack", do_not_track), ("preDNAT", pre_dnat)] {
        if set && !apply_on_forward {
            return Err(spec_err(
                name,
                format!("{name} requires applyOnForward: true"),
            ));
        }
    }

    Ok(CalicoPolicy {
        namespace: if global { None } else { meta.namespace.clone() },
        name: meta.name.clone(),
        tier,
        order,
        selector,
        types,
        ingress,
        egress,
        service_account_selector,
        namespace_selector,
        do_not_track,
        pre_dnat,
        apply_on_forward,
    })
}

/// Calico's policy name rules: a GlobalNetworkPolicy is `label` or `label.label`; a
/// NetworkPolicy also that, or `knp.default.<name>` / `ossg.default.<name>`.
fn validate_policy_name(spec: &Field, name: &str, global: bool) -> Result<(), ConfigError> {
    let labels: Vec<&str> = name.split('.').collect();
    let simple = labels.len() <= 2 && labels.iter().all(|l| dns_label_ok(l));
    let translated = !global
        && ["knp.default.", "ossg.default."].iter().any(|p| {
            name.strip_prefix(p)
                .is_some_and(|rest| dns_subdomain_error(rest).is_none())
        });
    if simple || translated {
        return Ok(());
    }
    let kind = if global {
        "GlobalNetworkPolicy"
    } else {
        "NetworkPolicy"
    };
    Err(spec.ctx.err(
        "metadata.name",
        0,
        format!("{name:?} is not a valid {kind} name (lowercase letters, digits and '-', with at most one '.')"),
    ))
}

fn order(f: &Field) -> Result<f64, ConfigError> {
    match &f.node.value {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(x) if x.is_finite() => Ok(*x),
        Value::Float(_) => Err(f.err("order must be a finite number")),
        other => Err(f.err(format!("expected a number, found {}", other.type_name()))),
    }
}

/// `types` (Calico: non-empty, no repeats) or `policyTypes` (Kubernetes: at most two).
fn policy_types(f: &Field, calico: bool) -> Result<Vec<PolicyType>, ConfigError> {
    let items = f.seq()?;
    let mut out = Vec::new();
    for item in &items {
        let t = enum_value(item, &POLICY_TYPES)?;
        if calico && out.contains(&t) {
            return Err(item.err(format!("{t:?} is listed more than once")));
        }
        out.push(t);
    }
    if calico && out.is_empty() {
        return Err(f.err(
            "types must not be empty: list Ingress and/or Egress, or leave it out to default it from the rules",
        ));
    }
    if !calico && out.len() > 2 {
        return Err(f.err("may not specify more than two policyTypes"));
    }
    Ok(out)
}

fn rules(f: &Field, dir: Direction, global: bool) -> Result<Vec<Rule>, ConfigError> {
    let items = f.seq()?;
    if items.len() > MAX_RULES {
        return Err(f.err(format!("at most {MAX_RULES} rules are allowed")));
    }
    items.iter().map(|item| rule(item, dir, global)).collect()
}

/// What the entity rules of one rule are checked against.
struct RuleCheck {
    dir: Direction,
    global: bool,
    protocol: Option<Protocol>,
    ip_version: Option<IpVersion>,
    /// CIDR families seen so far in the rule (a rule is IPv4 or IPv6, not both).
    seen_v4: bool,
    seen_v6: bool,
}

fn rule(f: &Field, dir: Direction, global: bool) -> Result<Rule, ConfigError> {
    let m = f.map(RULE_KEYS)?;
    let action = enum_value(&m.required("action")?, &Action::ALL)?;
    let ip_version = m.opt("ipVersion", |f| match f.int(i128::MIN, i128::MAX)? {
        4 => Ok(IpVersion::V4),
        6 => Ok(IpVersion::V6),
        v => Err(f.err(format!("{v} is not an IP version (use 4 or 6)"))),
    })?;
    let protocol = m.opt("protocol", |f| decode_protocol(&f))?;
    let not_protocol = m.opt("notProtocol", |f| decode_protocol(&f))?;
    for p in [protocol, not_protocol].into_iter().flatten() {
        let need = match p.number() {
            1 => IpVersion::V4,
            58 => IpVersion::V6,
            _ => continue,
        };
        if ip_version.is_some_and(|v| v != need) {
            return Err(at(
                &m,
                f,
                "ipVersion",
                format!("protocol {p} requires ipVersion {}", need.number()),
            ));
        }
    }
    let icmp = m.opt("icmp", |f| decode_icmp(&f))?;
    let not_icmp = m.opt("notICMP", |f| decode_icmp(&f))?;
    if icmp.is_some() && !protocol.is_some_and(Protocol::is_icmp) {
        let found = match protocol {
            Some(p) => format!("protocol is {p}"),
            None => "protocol is not set".to_string(),
        };
        return Err(at(
            &m,
            f,
            "icmp",
            format!("icmp requires protocol ICMP or ICMPv6 ({found})"),
        ));
    }
    let mut check = RuleCheck {
        dir,
        global,
        protocol,
        ip_version,
        seen_v4: false,
        seen_v6: false,
    };
    let source = m
        .opt("source", |f| entity(&f, Side::Source, &mut check))?
        .unwrap_or_default();
    let destination = m
        .opt("destination", |f| entity(&f, Side::Destination, &mut check))?
        .unwrap_or_default();
    let http = match m.get("http") {
        None => None,
        Some(h) => {
            if action != Action::Allow {
                return Err(h.err("http is only valid on Allow rules"));
            }
            if protocol.is_some_and(|p| p.number() != 6) {
                return Err(h.err("rules with http must have protocol TCP or no protocol"));
            }
            if dir == Direction::Egress {
                return Err(h.err("http is not allowed in egress rules"));
            }
            Some(decode_http(&h)?)
        }
    };
    let annotations = m
        .opt("metadata", |f| {
            let mm = f.map(&["annotations"])?;
            let Some(a) = mm.get("annotations") else {
                return Ok(Default::default());
            };
            let map = a.string_map()?;
            let keys = Fields::lenient(a.ctx, &a.path, a.node)?;
            for k in map.keys() {
                if let Some(why) = qualified_name_error(&k.to_ascii_lowercase()) {
                    return Err(a.ctx.err(
                        &join(&a.path, k),
                        keys.line_of(k),
                        format!("{k:?} is not a valid annotation key: {why}"),
                    ));
                }
            }
            Ok(map)
        })?
        .unwrap_or_default();
    Ok(Rule {
        action,
        ip_version,
        protocol,
        not_protocol,
        icmp,
        not_icmp,
        source,
        destination,
        http,
        annotations,
    })
}

/// A protocol name (exact case) or number 1..=255 (also as a numeric string).
fn decode_protocol(f: &Field) -> Result<Protocol, ConfigError> {
    let number = |v: i128| {
        if (1..=255).contains(&v) {
            Ok(Protocol::Number(v as u8))
        } else {
            Err(f.err(format!("protocol number {v} is out of range (1..=255)")))
        }
    };
    match &f.node.value {
        Value::Int(i) => number(*i),
        Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            number(s.parse::<i128>().unwrap_or(i128::MAX))
        }
        Value::Str(s) => {
            if let Some((_, p)) = Protocol::NAMES.iter().find(|(n, _)| n == s) {
                return Ok(*p);
            }
            let names: Vec<&str> = Protocol::NAMES.iter().map(|(n, _)| *n).collect();
            let hint = match crate::error::closest(s, &names) {
                Some(n) => format!("; did you mean {n}?"),
                None => String::new(),
            };
            Err(f.err(format!(
                "{s:?} is not a protocol (one of {} or a number 1..=255){hint}",
                names.join(", ")
            )))
        }
        other => Err(f.err(format!(
            "expected a protocol name or number, found {}",
            other.type_name()
        ))),
    }
}

fn decode_icmp(f: &Field) -> Result<IcmpMatch, ConfigError> {
    let m = f.map(&["type", "code"])?;
    let icmp_type = m.opt("type", |f| Ok(f.int(0, 254)? as u8))?;
    let code = m.opt("code", |f| Ok(f.int(0, 255)? as u8))?;
    if code.is_some() && icmp_type.is_none() {
        return Err(at(&m, f, "code", "an ICMP code needs an ICMP type".into()));
    }
    Ok(IcmpMatch { icmp_type, code })
}

fn entity(f: &Field, side: Side, check: &mut RuleCheck) -> Result<EntityRule, ConfigError> {
    let m = f.map(ENTITY_KEYS)?;
    let nets = m
        .opt("nets", |f| decode_nets(&f, false, check))?
        .unwrap_or_default();
    let not_nets = m
        .opt("notNets", |f| decode_nets(&f, true, check))?
        .unwrap_or_default();
    let selector = m.opt("selector", |f| opt_selector(&f))?.flatten();
    let not_selector = m.opt("notSelector", |f| opt_selector(&f))?.flatten();
    let namespace_selector = m
        .opt("namespaceSelector", |f| namespace_match(&f))?
        .flatten();
    let ports = m
        .opt("ports", |f| decode_ports(&f, check.protocol))?
        .unwrap_or_default();
    let not_ports = m
        .opt("notPorts", |f| decode_ports(&f, check.protocol))?
        .unwrap_or_default();
    let service_accounts = m.opt("serviceAccounts", |f| {
        let sa = f.map(&["names", "selector"])?;
        Ok(ServiceAccountMatch {
            names: sa.opt("names", |f| string_list(&f))?.unwrap_or_default(),
            selector: sa.opt("selector", |f| opt_selector(&f))?.flatten(),
        })
    })?;
    let services = m.opt("services", |f| decode_services(&f))?;
    if let (Some(svc), Some(sf)) = (&services, m.get("services")) {
        let others = [
            ("selector", selector.is_some()),
            ("notSelector", not_selector.is_some()),
            ("namespaceSelector", namespace_selector.is_some()),
            ("nets", !nets.is_empty()),
            ("notNets", !not_nets.is_empty()),
            ("serviceAccounts", service_accounts.is_some()),
        ];
        if let Some((other, _)) = others.iter().find(|(_, set)| *set) {
            return Err(sf.err(format!(
                "services cannot be combined with {other} in the same {}",
                side.name()
            )));
        }
        if side == Side::Destination && !(ports.is_empty() && not_ports.is_empty()) {
            return Err(sf.err(
                "ports and notPorts cannot be combined with services (the service's ports are matched)",
            ));
        }
        match (check.dir, side) {
            (Direction::Egress, Side::Source) => {
                return Err(sf.err("services are not allowed in the source of an egress rule"))
            }
            (Direction::Ingress, Side::Destination) => {
                return Err(sf.err("services are not allowed in the destination of an ingress rule"))
            }
            _ => {}
        }
        if check.global && svc.namespace.is_none() {
            return Err(sf.err("services in a GlobalNetworkPolicy must name a namespace"));
        }
    }
    Ok(EntityRule {
        nets,
        not_nets,
        selector,
        not_selector,
        namespace_selector,
        ports,
        not_ports,
        service_accounts,
        services,
    })
}

/// `nets` / `notNets`: network CIDRs, one IP family per rule, matching `ipVersion`.
fn decode_nets(
    f: &Field,
    negated: bool,
    check: &mut RuleCheck,
) -> Result<Vec<IpNetwork>, ConfigError> {
    let items = f.seq()?;
    if items.len() > MAX_NETS {
        return Err(f.err(format!("at most {MAX_NETS} CIDRs are allowed")));
    }
    let mut out = Vec::new();
    for item in &items {
        let net = network(item)?;
        if negated && net.prefix() == 0 {
            return Err(item.err(format!(
                "{net} in a negated match matches no traffic at all"
            )));
        }
        let (v4, family) = match net {
            IpNetwork::V4(_) => (true, IpVersion::V4),
            IpNetwork::V6(_) => (false, IpVersion::V6),
        };
        if let Some(v) = check.ip_version.filter(|v| *v != family) {
            return Err(item.err(format!(
                "{net} is an IPv{} CIDR but the rule has ipVersion {}",
                family.number(),
                v.number()
            )));
        }
        if (v4 && check.seen_v6) || (!v4 && check.seen_v4) {
            return Err(item.err(format!(
                "{net}: a rule cannot mix IPv4 and IPv6 CIDRs (write one rule per IP version)"
            )));
        }
        check.seen_v4 |= v4;
        check.seen_v6 |= !v4;
        out.push(net);
    }
    Ok(out)
}

/// `ports` / `notPorts`, checked against the rule's protocol as Calico does: no ports at
/// all with a protocol that has none; numeric ports only with a protocol set.
fn decode_ports(f: &Field, protocol: Option<Protocol>) -> Result<Vec<Port>, ConfigError> {
    let items = f.seq()?;
    if items.len() > MAX_PORTS {
        return Err(f.err(format!("at most {MAX_PORTS} ports are allowed")));
    }
    let ports = items
        .iter()
        .map(decode_port)
        .collect::<Result<Vec<_>, _>>()?;
    match protocol {
        Some(p) if !p.supports_ports() && !ports.is_empty() => Err(f.err(format!(
            "ports are only valid with protocol TCP, UDP or SCTP (the rule has protocol {p})"
        ))),
        None => match ports.iter().position(|p| p.range().is_some()) {
            Some(i) => Err(items[i].err(
                "a numeric port or port range needs the rule's protocol set to TCP, UDP or SCTP",
            )),
            None => Ok(ports),
        },
        _ => Ok(ports),
    }
}

/// A port: `80`, `"80"`, `"1000:2000"` or a port name.
fn decode_port(f: &Field) -> Result<Port, ConfigError> {
    match &f.node.value {
        Value::Int(i) if (1..=65535).contains(i) => Ok(Port::Number(*i as u16)),
        Value::Int(i) => Err(f.err(format!("port {i} is out of range (1..=65535)"))),
        Value::Str(s) => parse_port(s).map_err(|m| f.err(m)),
        other => Err(f.err(format!(
            "expected a port number, a range \"min:max\" or a port name, found {}",
            other.type_name()
        ))),
    }
}

fn parse_port(s: &str) -> Result<Port, String> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let number = |t: &str| -> Result<u16, String> {
        match t.parse::<u32>() {
            Ok(n @ 1..=65535) => Ok(n as u16),
            _ => Err(format!("port {t} is out of range (1..=65535)")),
        }
    };
    if digits(s) {
        return Ok(Port::Number(number(s)?));
    }
    if let Some((a, b)) = s.split_once(':').filter(|(a, b)| digits(a) && digits(b)) {
        let (min, max) = (number(a)?, number(b)?);
        if min > max {
            return Err(format!(
                "port range {s:?}: the minimum {min} is greater than the maximum {max}"
            ));
        }
        return Ok(Port::Range(min, max));
    }
    match port_name_error(s) {
        None => Ok(Port::Named(s.to_string())),
        Some(why) => Err(format!(
            "{s:?} is not a port number, a range \"min:max\" or a valid port name ({why})"
        )),
    }
}

fn decode_services(f: &Field) -> Result<ServiceMatch, ConfigError> {
    let m = f.map(&["name", "namespace"])?;
    let name = m.opt("name", |f| f.string())?.unwrap_or_default();
    if name.is_empty() {
        return Err(at(
            &m,
            f,
            "name",
            "services must name a service (services.name)".into(),
        ));
    }
    if let Some(why) = dns_subdomain_error(&name) {
        return Err(at(
            &m,
            f,
            "name",
            format!("{name:?} is not a valid service name: {why}"),
        ));
    }
    let namespace = m
        .opt("namespace", |f| f.string())?
        .filter(|n| !n.is_empty());
    if let Some(why) = namespace.as_deref().and_then(dns_subdomain_error) {
        return Err(at(
            &m,
            f,
            "namespace",
            format!("not a valid namespace name: {why}"),
        ));
    }
    Ok(ServiceMatch { name, namespace })
}

fn decode_http(f: &Field) -> Result<HttpMatch, ConfigError> {
    let m = f.map(&["methods", "paths"])?;
    let methods = m
        .opt("methods", |f| {
            let methods = string_list(&f)?;
            if methods.len() > MAX_HTTP_ITEMS {
                return Err(f.err(format!("at most {MAX_HTTP_ITEMS} methods are allowed")));
            }
            for (i, m) in methods.iter().enumerate() {
                if methods[..i].contains(m) {
                    return Err(f.err(format!("method {m:?} is listed more than once")));
                }
            }
            Ok(methods)
        })?
        .unwrap_or_default();
    let paths = m
        .opt("paths", |f| {
            let items = f.seq()?;
            if items.len() > MAX_HTTP_ITEMS {
                return Err(f.err(format!("at most {MAX_HTTP_ITEMS} paths are allowed")));
            }
            let mut out = Vec::new();
            for item in &items {
                let p = item.map(&["exact", "prefix"])?;
                let get = |k: &str| -> Result<Option<String>, ConfigError> {
                    Ok(p.opt(k, |f| f.string())?.filter(|s| !s.is_empty()))
                };
                let path = match (get("exact")?, get("prefix")?) {
                    (Some(_), Some(_)) => {
                        return Err(item.err("set either exact or prefix, not both"))
                    }
                    (None, None) => return Err(item.err("set exact or prefix")),
                    (Some(e), None) => HttpPath::Exact(e),
                    (None, Some(pre)) => HttpPath::Prefix(pre),
                };
                let (HttpPath::Exact(v) | HttpPath::Prefix(v)) = &path;
                if !v.starts_with('/') || v.contains(['?', ' ', '#']) {
                    return Err(item.err(format!(
                        "invalid path {v:?} (it must start with '/' and contain no '?', '#' or space)"
                    )));
                }
                out.push(path);
            }
            Ok(out)
        })?
        .unwrap_or_default();
    Ok(HttpMatch { methods, paths })
}

/// The text of a selector field (a string of at most 1024 characters).
fn selector_text<'a>(f: &Field<'a>) -> Result<&'a str, ConfigError> {
    let s = f.str()?;
    if s.len() > MAX_SELECTOR_LEN {
        return Err(f.err(format!(
            "selector is longer than {MAX_SELECTOR_LEN} characters"
        )));
    }
    Ok(s)
}

/// A selector where absent and empty mean "no selector": `None` for `""`. `global()` is
/// refused (it is only valid in an entity rule's namespaceSelector).
fn opt_selector(f: &Field) -> Result<Option<Selector>, ConfigError> {
    let s = selector_text(f)?;
    if s.contains("global(") {
        return Err(f.err(
            "global() can only be used in the namespaceSelector of a rule's source or destination",
        ));
    }
    if s.trim().is_empty() {
        return Ok(None);
    }
    parse_selector(f).map(Some)
}

/// An entity rule's namespaceSelector: a selector, or `global()` alone.
fn namespace_match(f: &Field) -> Result<Option<NamespaceMatch>, ConfigError> {
    let s = selector_text(f)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    if s.contains("global(") {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if compact == "global()" {
            return Ok(Some(NamespaceMatch::Global));
        }
        return Err(f.err("global() cannot be combined with other selectors"));
    }
    parse_selector(f).map(|sel| Some(NamespaceMatch::Selector(sel)))
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

const KUBE_PROTOCOLS: [(&str, Protocol); 3] = [
    ("TCP", Protocol::Tcp),
    ("UDP", Protocol::Udp),
    ("SCTP", Protocol::Sctp),
];

pub(crate) fn decode_kube_policy(
    meta: &Meta,
    spec: &Field,
) -> Result<KubeNetworkPolicy, ConfigError> {
    // Objects from the API come as JSON trees without lines.
    let k = Kube {
        strict: spec.node.line > 0,
    };
    let s = k.map(spec, &["podSelector", "policyTypes", "ingress", "egress"])?;
    let pod_selector = s
        .opt("podSelector", |f| k.label_selector(&f))?
        .unwrap_or_default();
    let policy_types = s.opt("policyTypes", |f| policy_types(&f, false))?;
    let ingress = s.opt("ingress", |f| k.rules(&f, "from", "to"))?;
    let egress = s.opt("egress", |f| k.rules(&f, "to", "from"))?;
    Ok(KubeNetworkPolicy {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone(),
        pod_selector,
        policy_types,
        ingress,
        egress,
    })
}

struct Kube {
    /// Unknown fields are errors (files) rather than warnings (the API).
    strict: bool,
}

impl Kube {
    fn map<'a>(&self, f: &Field<'a>, known: &[&'static str]) -> Result<Fields<'a>, ConfigError> {
        if self.strict {
            return f.map(known);
        }
        let fields = Fields::lenient(f.ctx, &f.path, f.node)?;
        if let Value::Map(entries) = &f.node.value {
            for (key, value) in entries {
                if known.contains(&key.name.as_str()) || value.value == Value::Null {
                    continue;
                }
                let what = f.ctx.resource.as_deref().unwrap_or("resource");
                f.ctx.warnings.borrow_mut().push(format!(
                    "{}: {what}: ignored: {} (a NetworkPolicy field Brindle does not know)",
                    f.ctx.file,
                    join(&f.path, &key.name)
                ));
            }
        }
        Ok(fields)
    }

    fn rules(
        &self,
        f: &Field,
        peers_key: &'static str,
        other_key: &'static str,
    ) -> Result<Vec<KubeRule>, ConfigError> {
        let (this_dir, other_dir) = if peers_key == "from" {
            ("ingress", "egress")
        } else {
            ("egress", "ingress")
        };
        let mut out = Vec::new();
        for item in f.seq()? {
            if self.strict {
                if let Some((_, line)) = first_present_key(&item, &[other_key]) {
                    return Err(item.ctx.err(
                        &join(&item.path, other_key),
                        line,
                        format!("unknown field; {other_key} is for {other_dir} rules, {this_dir} rules list their peers in {peers_key}"),
                    ));
                }
            }
            let m = self.map(&item, &[peers_key, "ports"])?;
            let peers = m.opt(peers_key, |f| {
                f.seq()?.iter().map(|p| self.peer(p)).collect()
            })?;
            let ports = m.opt("ports", |f| f.seq()?.iter().map(|p| self.port(p)).collect())?;
            out.push(KubeRule { peers, ports });
        }
        Ok(out)
    }

    fn peer(&self, f: &Field) -> Result<KubePeer, ConfigError> {
        let m = self.map(f, &["podSelector", "namespaceSelector", "ipBlock"])?;
        let pod_selector = m.opt("podSelector", |f| self.label_selector(&f))?;
        let namespace_selector = m.opt("namespaceSelector", |f| self.label_selector(&f))?;
        let ip_block = m.opt("ipBlock", |f| self.ip_block(&f))?;
        match ip_block {
            Some(_) if pod_selector.is_some() || namespace_selector.is_some() => Err(at(
                &m,
                f,
                "ipBlock",
                "ipBlock cannot be combined with podSelector or namespaceSelector in one peer; make it a separate list item".into(),
            )),
            Some(b) => Ok(KubePeer::IpBlock(b)),
            None if pod_selector.is_none() && namespace_selector.is_none() => Err(f.err(
                "a peer needs podSelector, namespaceSelector or ipBlock",
            )),
            None => Ok(KubePeer::Selectors {
                pod_selector,
                namespace_selector,
            }),
        }
    }

    fn ip_block(&self, f: &Field) -> Result<IpBlock, ConfigError> {
        let m = self.map(f, &["cidr", "except"])?;
        let cidr = kube_cidr(&m.required("cidr")?)?;
        let except = m
            .opt("except", |f| {
                f.seq()?
                    .iter()
                    .map(|item| {
                        let e = kube_cidr(item)?;
                        let subset = e.is_ipv4() == cidr.is_ipv4()
                            && e.prefix() > cidr.prefix()
                            && cidr.contains(e.network());
                        if !subset {
                            return Err(
                                item.err(format!("{e} is not a strict subset of cidr {cidr}"))
                            );
                        }
                        Ok(e)
                    })
                    .collect()
            })?
            .unwrap_or_default();
        Ok(IpBlock { cidr, except })
    }

    fn port(&self, f: &Field) -> Result<KubePort, ConfigError> {
        let m = self.map(f, &["protocol", "port", "endPort"])?;
        let protocol = m
            .opt("protocol", |f| {
                if matches!(f.str()?, "ICMP" | "ICMPv6") {
                    return Err(f.err(
                        "a Kubernetes NetworkPolicy cannot match ICMP (TCP, UDP or SCTP only); use a Calico policy",
                    ));
                }
                enum_value(&f, &KUBE_PROTOCOLS)
            })?
            .unwrap_or(Protocol::Tcp);
        let port = m.opt("port", |f| match &f.node.value {
            Value::Int(i) if (1..=65535).contains(i) => Ok(KubePortValue::Number(*i as u16)),
            Value::Int(i) => Err(f.err(format!("port {i} is out of range (1..=65535)"))),
            Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Err(f.err(
                format!("{s:?} is a string, which names a port; write a port number unquoted"),
            )),
            Value::Str(s) => match port_name_error(s) {
                None => Ok(KubePortValue::Named(s.clone())),
                Some(why) => Err(f.err(format!("{s:?} is not a valid port name ({why})"))),
            },
            other => Err(f.err(format!(
                "expected a port number or name, found {}",
                other.type_name()
            ))),
        })?;
        let end_port = m.opt("endPort", |f| Ok(f.int(1, 65535)? as u16))?;
        if let Some(end) = end_port {
            let message = match &port {
                None => Some("endPort requires port".to_string()),
                Some(KubePortValue::Named(_)) => {
                    Some("endPort cannot be used with a named port".to_string())
                }
                Some(KubePortValue::Number(p)) if end < *p => Some(format!(
                    "endPort {end} must be equal to or greater than port {p}"
                )),
                Some(KubePortValue::Number(_)) => None,
            };
            if let Some(message) = message {
                return Err(at(&m, f, "endPort", message));
            }
        }
        Ok(KubePort {
            protocol,
            port,
            end_port,
        })
    }

    fn label_selector(&self, f: &Field) -> Result<LabelSelector, ConfigError> {
        let m = self.map(f, &["matchLabels", "matchExpressions"])?;
        let match_labels = m
            .opt("matchLabels", |f| {
                let labels = f.string_map()?;
                let lines = Fields::lenient(f.ctx, &f.path, f.node)?;
                for (k, v) in &labels {
                    let why = qualified_name_error(k)
                        .map(|w| format!("{k:?} is not a valid label key: {w}"))
                        .or_else(|| {
                            label_value_error(v)
                                .map(|w| format!("{v:?} is not a valid label value: {w}"))
                        });
                    if let Some(why) = why {
                        return Err(f.ctx.err(&join(&f.path, k), lines.line_of(k), why));
                    }
                }
                Ok(labels)
            })?
            .unwrap_or_default();
        let match_expressions = m
            .opt("matchExpressions", |f| {
                f.seq()?.iter().map(|e| self.requirement(e)).collect()
            })?
            .unwrap_or_default();
        Ok(LabelSelector {
            match_labels,
            match_expressions,
        })
    }

    fn requirement(&self, f: &Field) -> Result<LabelSelectorRequirement, ConfigError> {
        let m = self.map(f, &["key", "operator", "values"])?;
        let key_f = m.required("key")?;
        let key = key_f.string()?;
        if let Some(why) = qualified_name_error(&key) {
            return Err(key_f.err(format!("{key:?} is not a valid label key: {why}")));
        }
        let operator = enum_value(&m.required("operator")?, &LabelSelectorOperator::ALL)?;
        let values = m
            .opt("values", |f| {
                let values = string_list(&f)?;
                for (i, v) in values.iter().enumerate() {
                    if let Some(why) = label_value_error(v) {
                        return Err(f.ctx.err(
                            &format!("{}[{i}]", f.path),
                            f.node.line,
                            format!("{v:?} is not a valid label value: {why}"),
                        ));
                    }
                }
                Ok(values)
            })?
            .unwrap_or_default();
        match operator {
            LabelSelectorOperator::In | LabelSelectorOperator::NotIn if values.is_empty() => {
                Err(at(
                    &m,
                    f,
                    "values",
                    format!("values must be non-empty when operator is {operator:?}"),
                ))
            }
            LabelSelectorOperator::Exists | LabelSelectorOperator::DoesNotExist
                if !values.is_empty() =>
            {
                Err(at(
                    &m,
                    f,
                    "values",
                    format!("values must be empty when operator is {operator:?}"),
                ))
            }
            _ => Ok(LabelSelectorRequirement {
                key,
                operator,
                values,
            }),
        }
    }
}

/// A Kubernetes CIDR: host bits allowed (and cleared), a bare address refused.
fn kube_cidr(f: &Field) -> Result<IpNetwork, ConfigError> {
    let net = parse_cidr(f.str()?).map_err(|m| f.err(m))?;
    Ok(IpNetwork::new(net.network(), net.prefix()).expect("valid prefix"))
}

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// An error at field `name` of `m` (or at the mapping `parent` when it is absent).
fn at(m: &Fields, parent: &Field, name: &str, message: String) -> ConfigError {
    match m.get(name) {
        Some(f) => f.err(message),
        None => parent.err(message),
    }
}

/// The first of `keys` present (non-null) in the mapping `f`, with its line.
fn first_present_key(f: &Field, keys: &[&'static str]) -> Option<(&'static str, u64)> {
    let Value::Map(entries) = &f.node.value else {
        return None;
    };
    entries.iter().find_map(|(k, v)| {
        let key = keys.iter().find(|name| **name == k.name)?;
        (v.value != Value::Null).then_some((*key, k.line))
    })
}

/// A DNS-1123 label: 1..=63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn dns_label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Why `s` is not a DNS-1123 subdomain (dot-separated labels, at most 253 characters).
fn dns_subdomain_error(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if !s.split('.').all(dns_label_ok) {
        return Some("must consist of lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit".into());
    }
    None
}

/// The name part of a label key or a label value: `[A-Za-z0-9_.-]`, starting and ending
/// alphanumeric.
fn label_chars_ok(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Why `s` is not a Kubernetes qualified name (`[prefix/]name`).
fn qualified_name_error(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if name.is_empty() {
        return Some("the name part must not be empty".into());
    }
    if name.len() > 63 {
        return Some("the name part must be no more than 63 characters".into());
    }
    if !label_chars_ok(name) {
        return Some("the name part must consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into());
    }
    if let Some(p) = prefix {
        if let Some(why) = dns_subdomain_error(p) {
            return Some(format!("the prefix part {why}"));
        }
    }
    None
}

/// Why `v` is not a Kubernetes label value (empty is valid).
fn label_value_error(v: &str) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    if v.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    if !label_chars_ok(v) {
        return Some("must consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into());
    }
    None
}

/// Why `s` is not a Kubernetes port name (IANA service name).
fn port_name_error(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > 15 {
        return Some("a port name is at most 15 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("a port name consists of lowercase letters, digits and '-'".into());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some("a port name contains at least one letter".into());
    }
    if s.contains("--") || s.starts_with('-') || s.ends_with('-') {
        return Some("a port name has no '--' and does not start or end with '-'".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_syntax() {
        assert_eq!(parse_port("80"), Ok(Port::Number(80)));
        assert_eq!(parse_port("6040:6050"), Ok(Port::Range(6040, 6050)));
        assert_eq!(parse_port("80:80"), Ok(Port::Range(80, 80)));
        assert_eq!(parse_port("http"), Ok(Port::Named("http".into())));
        assert_eq!(parse_port("metrics-1"), Ok(Port::Named("metrics-1".into())));
        for bad in [
            "0",
            "65536",
            "9:1",
            "0:10",
            "HTTP",
            "a--b",
            "-a",
            "averyveryverylongname",
            "",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_rules() {
        assert!(qualified_name_error("app").is_none());
        assert!(qualified_name_error("kubernetes.io/metadata.name").is_none());
        assert!(qualified_name_error("Example.com/x").is_some());
        assert!(qualified_name_error("/x").is_some());
        assert!(qualified_name_error("a/b/c").is_some());
        assert!(qualified_name_error("-x").is_some());
        assert!(label_value_error("").is_none());
        assert!(label_value_error("v1.2_3").is_none());
        assert!(label_value_error("a b").is_some());
        assert!(dns_subdomain_error("kube-system").is_none());
        assert!(dns_subdomain_error("a..b").is_some());
        assert!(port_name_error("8080").is_some());
    }
}
