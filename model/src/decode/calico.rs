//! Decoding of the Calico kinds from the YAML/JSON tree: per-field validation, Calico's
//! defaults, and errors that name the file, resource, field and line.

use super::yaml::{Ctx, Field, Fields, Node, Value};
use crate::calico::*;
use crate::error::{closest, ConfigError};
use crate::selector::Selector;
use crate::values::{parse_cidr, parse_go_duration, parse_network, parse_peer_ip, Community};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Calico kinds that exist but that Brindle's file mode does not implement (yet).
const UNSUPPORTED_KINDS: &[&str] = &[
    "BGPFilter",
    "FelixConfiguration",
    "GlobalNetworkPolicy",
    "NetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
    "Tier",
    "GlobalNetworkSet",
    "NetworkSet",
    "HostEndpoint",
    "WorkloadEndpoint",
    "Profile",
    "IPReservation",
    "IPAMConfiguration",
    "IPAMBlock",
    "IPAMHandle",
    "KubeControllersConfiguration",
    "ClusterInformation",
    "CalicoNodeStatus",
];

/// A decoded resource.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resource {
    BgpConfiguration(BgpConfiguration),
    Node(NodeSpec),
    BgpPeer(BgpPeerSpec),
    IpPool(IpPoolSpec),
    BlockAffinity(BlockAffinitySpec),
}

/// One resource as it appeared in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResource {
    pub kind: Kind,
    pub name: String,
    /// Line of the resource's first key.
    pub line: u64,
    /// The resource exactly as written, as JSON (for `brindlectl get -o json|yaml`).
    pub json: serde_json::Value,
}

/// A decoded resource plus what cross-resource validation needs.
pub(crate) struct Decoded {
    pub raw: RawResource,
    pub resource: Resource,
    /// `Kind/name` for error messages.
    pub label: String,
    /// Lines of some fields (`"spec.cidr"` → line), for cross-resource errors.
    pub lines: HashMap<&'static str, u64>,
}

fn peek<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
        _ => None,
    }
}

fn peek_str<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    match peek(node, key).map(|n| &n.value) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

/// Decodes one YAML document (a resource or a `List`) into `out`.
pub(crate) fn decode_document(
    file: &str,
    node: &Node,
    out: &mut Vec<Decoded>,
) -> Result<(), ConfigError> {
    decode_inner(file, node, None, out)
}

fn decode_inner(
    file: &str,
    node: &Node,
    list_item: Option<(&str, &str, String)>,
    out: &mut Vec<Decoded>,
) -> Result<(), ConfigError> {
    let kind_text = peek_str(node, "kind").or_else(|| {
        list_item
            .as_ref()
            .and_then(|(list_kind, _, _)| list_kind.strip_suffix("List"))
            .filter(|k| !k.is_empty())
    });
    let name = peek(node, "metadata").and_then(|m| peek_str(m, "name"));
    let label = match (kind_text, name, &list_item) {
        (Some(k), Some(n), _) => format!("{k}/{n}"),
        (Some(k), None, _) => k.to_string(),
        (None, _, Some((_, _, path))) => path.clone(),
        (None, _, None) => "resource".to_string(),
    };
    let ctx = Ctx {
        file,
        resource: Some(label.clone()),
    };
    if !matches!(node.value, Value::Map(_)) {
        return Err(ctx.err(
            "",
            node.line,
            format!(
                "expected a resource (a mapping with apiVersion, kind, metadata, spec), found {}",
                node.value.type_name()
            ),
        ));
    }

    // apiVersion
    let api_field = Fields::new(
        &ctx,
        "",
        node,
        &["apiVersion", "kind", "metadata", "spec", "status", "items"],
    )?;
    let api_version = match api_field.get("apiVersion") {
        Some(f) => f.string()?,
        None => match &list_item {
            Some((_, v, _)) => v.to_string(),
            None => {
                return Err(ctx.err(
                    "apiVersion",
                    node.line,
                    format!("required field is missing (use apiVersion: {API_VERSION})"),
                ))
            }
        },
    };
    if api_version != API_VERSION {
        let hint = if api_version.starts_with("crd.projectcalico.org") {
            format!("; this is Calico's CRD storage form, write the resource as calicoctl shows it with apiVersion: {API_VERSION}")
        } else {
            format!("; use {API_VERSION}")
        };
        return Err(ctx.err(
            "apiVersion",
            api_field.line_of("apiVersion"),
            format!("unsupported apiVersion {api_version:?}{hint}"),
        ));
    }

    // kind
    let kind_text = match (api_field.get("kind"), kind_text) {
        (Some(f), _) => f.string()?,
        (None, Some(k)) => k.to_string(),
        (None, None) => return Err(ctx.err("kind", node.line, "required field is missing")),
    };
    if kind_text == "List" || (kind_text.ends_with("List") && list_item.is_none()) {
        let list = Fields::new(&ctx, "", node, &["apiVersion", "kind", "metadata", "items"])?;
        let Some(items) = list.get("items") else {
            return Ok(());
        };
        for item in items.seq()? {
            decode_inner(
                file,
                item.node,
                Some((
                    &kind_text,
                    &api_version,
                    format!("{kind_text} {}", item.path),
                )),
                out,
            )?;
        }
        return Ok(());
    }
    let Some(kind) = Kind::from_calico(&kind_text) else {
        let line = api_field.line_of("kind");
        if UNSUPPORTED_KINDS.contains(&kind_text.as_str()) {
            return Err(ctx.err("kind", line, format!(
                "kind {kind_text} is not supported by Brindle (supported: BGPConfiguration, Node, BGPPeer, IPPool, BlockAffinity)"
            )));
        }
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        let message = match closest(&kind_text, &names) {
            Some(k) => format!("unknown kind {kind_text:?}; did you mean {k}?"),
            None => format!(
                "unknown kind {kind_text:?} (supported: BGPConfiguration, Node, BGPPeer, IPPool, BlockAffinity)"
            ),
        };
        return Err(ctx.err("kind", line, message));
    };
    let top = Fields::new(
        &ctx,
        "",
        node,
        &["apiVersion", "kind", "metadata", "spec", "status"],
    )?;
    let meta_field = top.required("metadata")?;
    let meta = meta_field.map(&[
        "name",
        "labels",
        "annotations",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
    ])?;
    let name_field = meta.required("name")?;
    let name = name_field.string()?;
    validate_name(kind, &name).map_err(|m| name_field.err(m))?;
    let labels = meta.opt("labels", |f| f.string_map())?.unwrap_or_default();
    if let Some(f) = meta.get("annotations") {
        f.string_map()?;
    }

    let mut lines = HashMap::new();
    lines.insert("metadata.name", name_field.node.line);
    let spec_node_owned;
    let spec_field = match top.get("spec") {
        Some(f) => f,
        None => {
            spec_node_owned = Node {
                value: Value::Map(Vec::new()),
                line: node.line,
            };
            Field {
                ctx: &ctx,
                path: "spec".to_string(),
                node: &spec_node_owned,
            }
        }
    };
    let resource = match kind {
        Kind::BgpConfiguration => Resource::BgpConfiguration(decode_bgp_configuration(
            name.clone(),
            &spec_field,
            &mut lines,
        )?),
        Kind::Node => Resource::Node(decode_node(name.clone(), labels, &spec_field, &mut lines)?),
        Kind::BgpPeer => Resource::BgpPeer(decode_bgp_peer(name.clone(), &spec_field, &mut lines)?),
        Kind::IpPool => Resource::IpPool(decode_ip_pool(name.clone(), &spec_field, &mut lines)?),
        Kind::BlockAffinity => Resource::BlockAffinity(decode_block_affinity(
            name.clone(),
            &spec_field,
            &mut lines,
        )?),
    };
    let mut json = node.value.to_json();
    if let (Some(obj), Some(_)) = (json.as_object_mut(), &list_item) {
        obj.entry("apiVersion")
            .or_insert_with(|| API_VERSION.into());
        obj.entry("kind").or_insert_with(|| kind.as_str().into());
    }
    out.push(Decoded {
        raw: RawResource {
            kind,
            name,
            line: node.line,
            json,
        },
        resource,
        label,
        lines,
    });
    Ok(())
}

fn validate_name(kind: Kind, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.len() > 253 {
        return Err("name is longer than 253 characters".into());
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ok_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok_chars || !ok_ends {
        return Err(format!(
            "{name:?} is not a valid name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        ));
    }
    if kind == Kind::BgpConfiguration && name != "default" && !name.starts_with("node.") {
        return Err(format!(
            "BGPConfiguration {name:?} would never be used: name it \"default\" (cluster-wide) or \"node.<nodename>\" (one node)"
        ));
    }
    Ok(())
}

/// An AS number: 1..=4294967295, as an integer, a numeric string or asdot ("1.10").
pub(crate) fn as_number(f: &Field) -> Result<u32, ConfigError> {
    let range = || f.err("AS number must be between 1 and 4294967295");
    let v: i128 = match &f.node.value {
        Value::Int(i) => *i,
        Value::Float(_) => {
            return Err(
                f.err("AS number must be an integer (asdot notation must be quoted: \"1.10\")")
            )
        }
        Value::Str(s) => {
            let s = s.trim();
            if let Some((hi, lo)) = s.split_once('.') {
                let hi: u16 = hi
                    .parse()
                    .map_err(|_| f.err(format!("{s:?} is not an AS number")))?;
                let lo: u16 = lo
                    .parse()
                    .map_err(|_| f.err(format!("{s:?} is not an AS number")))?;
                (i128::from(hi) << 16) | i128::from(lo)
            } else {
                s.parse()
                    .map_err(|_| f.err(format!("{s:?} is not an AS number")))?
            }
        }
        other => {
            return Err(f.err(format!(
                "expected an AS number, found {}",
                other.type_name()
            )))
        }
    };
    if !(1..=4_294_967_295).contains(&v) {
        return Err(range());
    }
    Ok(v as u32)
}

fn port(f: &Field) -> Result<u16, ConfigError> {
    Ok(f.int(1, 65535)? as u16)
}

fn duration(f: &Field) -> Result<Duration, ConfigError> {
    match &f.node.value {
        Value::Str(s) => parse_go_duration(s).map_err(|m| f.err(m)),
        Value::Int(i) => Err(f.err(format!(
            "expected a duration string with a unit (e.g. \"{i}s\"), found a bare number"
        ))),
        other => Err(f.err(format!(
            "expected a duration like \"120s\", found {}",
            other.type_name()
        ))),
    }
}

fn network(f: &Field) -> Result<IpNetwork, ConfigError> {
    parse_network(f.str()?).map_err(|m| f.err(m))
}

fn ipv4(f: &Field) -> Result<Ipv4Addr, ConfigError> {
    let s = f.str()?;
    s.trim()
        .parse::<Ipv4Addr>()
        .map_err(|_| f.err(format!("{s:?} is not an IPv4 address")))
}

fn selector(f: &Field) -> Result<Selector, ConfigError> {
    let s = f.str()?;
    Selector::parse(s).map_err(|m| f.err(format!("invalid selector {s:?}: {m}")))
}

fn enum_value<T: Copy>(f: &Field, options: &[(&'static str, T)]) -> Result<T, ConfigError> {
    let s = f.str()?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
        return Ok(*v);
    }
    let names: Vec<&str> = options
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !n.is_empty())
        .collect();
    let hint = match closest(s, &names) {
        Some(n) => format!("; did you mean {n}?"),
        None => String::new(),
    };
    Err(f.err(format!("{s:?} is not one of {}{hint}", names.join(", "))))
}

fn string_list(f: &Field) -> Result<Vec<String>, ConfigError> {
    f.seq()?.iter().map(|i| i.string()).collect()
}

/// A password: `{value: "..."}` in file mode; `secretKeyRef` is explained away.
fn password(f: &Field) -> Result<String, ConfigError> {
    let m = f.map(&["value", "secretKeyRef"])?;
    if let Some(r) = m.get("secretKeyRef") {
        return Err(r.err(format!(
            "Kubernetes secrets are not available in file mode; put the password itself in {}.value instead",
            f.path
        )));
    }
    let v = m.required("value")?;
    let s = v.string()?;
    if s.is_empty() {
        return Err(v.err("password must not be empty"));
    }
    if s.len() > 80 {
        return Err(v.err("password is longer than 80 bytes (the TCP-MD5 key limit)"));
    }
    Ok(s)
}

fn cidr_list(f: &Field) -> Result<Vec<IpNetwork>, ConfigError> {
    f.seq()?
        .iter()
        .map(|item| {
            let m = item.map(&["cidr"])?;
            network(&m.required("cidr")?)
        })
        .collect()
}

fn decode_bgp_configuration(
    name: String,
    spec: &Field,
    _lines: &mut HashMap<&'static str, u64>,
) -> Result<BgpConfiguration, ConfigError> {
    let s = spec.map(&[
        "asNumber",
        "nodeToNodeMeshEnabled",
        "listenPort",
        "logSeverityScreen",
        "communities",
        "prefixAdvertisements",
        "serviceClusterIPs",
        "serviceExternalIPs",
        "serviceLoadBalancerIPs",
        "nodeMeshPassword",
        "nodeMeshMaxRestartTime",
        "bindMode",
        "ignoredInterfaces",
    ])?;
    let communities = s.opt("communities", |f| {
        let mut out: Vec<NamedCommunity> = Vec::new();
        for item in f.seq()? {
            let m = item.map(&["name", "value"])?;
            let name_f = m.required("name")?;
            let name = name_f.string()?;
            if name.is_empty() {
                return Err(name_f.err("community name must not be empty"));
            }
            if Community::looks_literal(&name) {
                return Err(name_f.err(format!(
                    "community name {name:?} looks like a community value; names must not"
                )));
            }
            if out.iter().any(|c| c.name == name) {
                return Err(name_f.err(format!("duplicate community name {name:?}")));
            }
            let value_f = m.required("value")?;
            let value = Community::parse(value_f.str()?).map_err(|e| value_f.err(e))?;
            out.push(NamedCommunity { name, value });
        }
        Ok(out)
    })?;
    let prefix_advertisements = s.opt("prefixAdvertisements", |f| {
        let mut out = Vec::new();
        for item in f.seq()? {
            let m = item.map(&["cidr", "communities"])?;
            let cidr = network(&m.required("cidr")?)?;
            let mut comms = Vec::new();
            if let Some(cf) = m.get("communities") {
                for c in cf.seq()? {
                    let text = c.string()?;
                    if Community::looks_literal(&text) {
                        Community::parse(&text).map_err(|e| c.err(e))?;
                    }
                    comms.push(text);
                }
            }
            out.push(PrefixAdvertisement {
                cidr,
                communities: comms,
            });
        }
        Ok(out)
    })?;
    let log_severity_screen = s.opt("logSeverityScreen", |f| {
        enum_value(
            &f,
            &[
                ("Trace", "Trace"),
                ("Debug", "Debug"),
                ("Info", "Info"),
                ("Warning", "Warning"),
                ("Error", "Error"),
                ("Fatal", "Fatal"),
            ],
        )
        .map(str::to_string)
    })?;
    Ok(BgpConfiguration {
        name,
        as_number: s.opt("asNumber", |f| as_number(&f))?,
        node_to_node_mesh_enabled: s.opt("nodeToNodeMeshEnabled", |f| f.bool())?,
        listen_port: s.opt("listenPort", |f| port(&f))?,
        log_severity_screen,
        communities,
        prefix_advertisements,
        service_cluster_ips: s.opt("serviceClusterIPs", |f| cidr_list(&f))?,
        service_external_ips: s.opt("serviceExternalIPs", |f| cidr_list(&f))?,
        service_load_balancer_ips: s.opt("serviceLoadBalancerIPs", |f| cidr_list(&f))?,
        node_mesh_password: s.opt("nodeMeshPassword", |f| password(&f))?,
        node_mesh_max_restart_time: s.opt("nodeMeshMaxRestartTime", |f| duration(&f))?,
        bind_mode: s.opt("bindMode", |f| {
            enum_value(
                &f,
                &[("None", BindMode::None), ("NodeIP", BindMode::NodeIP)],
            )
        })?,
        ignored_interfaces: s.opt("ignoredInterfaces", |f| string_list(&f))?,
    })
}

fn decode_node(
    name: String,
    labels: BTreeMap<String, String>,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<NodeSpec, ConfigError> {
    let s = spec.map(&[
        "bgp",
        "addresses",
        "orchRefs",
        "ipv4VXLANTunnelAddr",
        "ipv6VXLANTunnelAddr",
        "vxlanTunnelMACAddr",
        "vxlanTunnelMACAddrV6",
        "wireguard",
    ])?;
    let mut node = NodeSpec {
        name,
        labels,
        ..NodeSpec::default()
    };
    let Some(bgp_f) = s.get("bgp") else {
        return Ok(node);
    };
    let b = bgp_f.map(&[
        "asNumber",
        "ipv4Address",
        "ipv6Address",
        "ipv4IPIPTunnelAddr",
        "routeReflectorClusterID",
        "routerID",
    ])?;
    node.as_number = b.opt("asNumber", |f| as_number(&f))?;
    if let Some(f) = b.get("ipv4Address") {
        lines.insert("spec.bgp.ipv4Address", f.node.line);
        let s = f.str()?;
        if !s.contains('/') && s.trim().parse::<Ipv4Addr>().is_ok() {
            return Err(f.err(format!(
                "{s:?} must be a CIDR that includes the node's prefix length, e.g. \"{}/24\" (the prefix decides which nodes are in the same subnet)",
                s.trim()
            )));
        }
        match parse_cidr(s).map_err(|m| f.err(m))? {
            IpNetwork::V4(n) => node.ipv4_address = Some(n),
            IpNetwork::V6(_) => {
                return Err(f.err(format!(
                    "{s:?} is an IPv6 CIDR; put it in spec.bgp.ipv6Address"
                )))
            }
        }
    }
    if let Some(f) = b.get("ipv6Address") {
        lines.insert("spec.bgp.ipv6Address", f.node.line);
        let s = f.str()?;
        if !s.contains('/') && s.trim().parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(f.err(format!(
                "{s:?} must be a CIDR that includes the node's prefix length, e.g. \"{}/64\"",
                s.trim()
            )));
        }
        match parse_cidr(s).map_err(|m| f.err(m))? {
            IpNetwork::V6(n) => node.ipv6_address = Some(n),
            IpNetwork::V4(_) => {
                return Err(f.err(format!(
                    "{s:?} is an IPv4 CIDR; put it in spec.bgp.ipv4Address"
                )))
            }
        }
    }
    node.ipv4_ipip_tunnel_addr = b.opt("ipv4IPIPTunnelAddr", |f| ipv4(&f))?;
    node.route_reflector_cluster_id = b.opt("routeReflectorClusterID", |f| ipv4(&f))?;
    node.router_id = b.opt("routerID", |f| ipv4(&f))?;
    Ok(node)
}

fn decode_bgp_peer(
    name: String,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<BgpPeerSpec, ConfigError> {
    let s = spec.map(&[
        "node",
        "nodeSelector",
        "peerIP",
        "peerSelector",
        "asNumber",
        "localASNumber",
        "password",
        "keepOriginalNextHop",
        "nextHopMode",
        "ttlSecurity",
        "maxRestartTime",
        "sourceAddress",
        "keepaliveTime",
        "numAllowedLocalASNumbers",
        "reachableBy",
        "filters",
    ])?;
    let mut p = BgpPeerSpec {
        name,
        ..BgpPeerSpec::default()
    };
    if let Some(f) = s.get("node") {
        lines.insert("spec.node", f.node.line);
        p.node = Some(f.string()?).filter(|n| !n.is_empty());
    }
    p.node_selector = s
        .opt("nodeSelector", |f| selector(&f))?
        .filter(|sel| !sel.as_str().trim().is_empty());
    if p.node.is_some() && p.node_selector.is_some() {
        return Err(s
            .required("nodeSelector")?
            .err("node and nodeSelector cannot both be set"));
    }
    if let Some(f) = s.get("peerIP") {
        let (ip, port) = parse_peer_ip(f.str()?).map_err(|m| f.err(m))?;
        p.peer_ip = Some(ip);
        p.peer_port = port;
    }
    p.peer_selector = s
        .opt("peerSelector", |f| selector(&f))?
        .filter(|sel| !sel.as_str().trim().is_empty());
    p.as_number = s.opt("asNumber", |f| as_number(&f))?;
    match (p.peer_ip.is_some(), p.peer_selector.is_some()) {
        (true, true) => {
            return Err(s
                .required("peerSelector")?
                .err("peerIP and peerSelector cannot both be set"))
        }
        (false, false) => {
            return Err(spec.err("a BGPPeer needs either peerIP (with asNumber) or peerSelector"))
        }
        (true, false) if p.as_number.is_none() => {
            return Err(spec.ctx.err(
                &format!("{}.asNumber", spec.path),
                s.line_of("peerIP"),
                "required when peerIP is set (the peer's AS number)",
            ))
        }
        (false, true) if p.as_number.is_some() => {
            return Err(s.required("asNumber")?.err(
                "asNumber cannot be used with peerSelector (each selected node's own AS number is used)",
            ))
        }
        _ => {}
    }
    p.local_as_number = s.opt("localASNumber", |f| as_number(&f))?;
    p.password = s.opt("password", |f| password(&f))?;
    p.keep_original_next_hop = s.opt("keepOriginalNextHop", |f| f.bool())?.unwrap_or(false);
    if let Some(f) = s.get("nextHopMode") {
        #[derive(Clone, Copy, PartialEq)]
        enum NextHop {
            Auto,
            SelfHop,
            Keep,
        }
        let mode = enum_value(
            &f,
            &[
                ("Auto", NextHop::Auto),
                ("Self", NextHop::SelfHop),
                ("Keep", NextHop::Keep),
            ],
        )?;
        if mode != NextHop::Keep && p.keep_original_next_hop {
            return Err(
                f.err("conflicts with keepOriginalNextHop: true (use nextHopMode: Keep alone)")
            );
        }
        if mode == NextHop::SelfHop {
            return Err(f.err("nextHopMode Self is not supported yet"));
        }
        p.keep_original_next_hop = mode == NextHop::Keep;
    }
    p.ttl_security = s
        .opt("ttlSecurity", |f| f.int(0, 255).map(|v| v as u8))?
        .filter(|v| *v > 0);
    p.max_restart_time = s.opt("maxRestartTime", |f| duration(&f))?;
    p.source_address = s
        .opt("sourceAddress", |f| {
            enum_value(
                &f,
                &[
                    ("UseNodeIP", SourceAddress::UseNodeIP),
                    ("None", SourceAddress::None),
                ],
            )
        })?
        .unwrap_or_default();
    p.keepalive_time = s.opt("keepaliveTime", |f| duration(&f))?;
    p.num_allowed_local_as_numbers = s.opt("numAllowedLocalASNumbers", |f| {
        f.int(0, 10).map(|v| v as u32)
    })?;
    p.reachable_by = s.opt("reachableBy", |f| {
        let t = f.str()?;
        t.trim()
            .parse::<IpAddr>()
            .map_err(|_| f.err(format!("{t:?} is not an IP address")))
    })?;
    if let Some(f) = s.get("filters") {
        if !f.seq()?.is_empty() {
            return Err(f.err("BGPFilter is not supported by Brindle yet; remove filters"));
        }
    }
    Ok(p)
}

fn decode_ip_pool(
    name: String,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<IpPoolSpec, ConfigError> {
    let s = spec.map(&[
        "cidr",
        "blockSize",
        "ipipMode",
        "vxlanMode",
        "natOutgoing",
        "disabled",
        "disableBGPExport",
        "nodeSelector",
        "allowedUses",
    ])?;
    let cidr_f = s.required("cidr")?;
    lines.insert("spec.cidr", cidr_f.node.line);
    let cidr = network(&cidr_f)?;
    let (min, max, default) = if cidr.is_ipv4() {
        (20, 32, 26)
    } else {
        (116, 128, 122)
    };
    let block_size = match s.get("blockSize") {
        Some(f) => {
            let v = f.int(min, max)? as u8;
            if v < cidr.prefix() {
                return Err(f.err(format!(
                    "blockSize {v} is larger than the pool itself (/{}); use a blockSize of at least {}",
                    cidr.prefix(),
                    cidr.prefix()
                )));
            }
            v
        }
        None => default.max(cidr.prefix()),
    };
    let modes = [
        ("Never", EncapMode::Never),
        ("Always", EncapMode::Always),
        ("CrossSubnet", EncapMode::CrossSubnet),
        ("", EncapMode::Never),
    ];
    let ipip_mode = s
        .opt("ipipMode", |f| enum_value(&f, &modes))?
        .unwrap_or_default();
    let vxlan_mode = s
        .opt("vxlanMode", |f| enum_value(&f, &modes))?
        .unwrap_or_default();
    if cidr.is_ipv6() && ipip_mode != EncapMode::Never {
        return Err(s
            .required("ipipMode")?
            .err("IPIP is not supported for IPv6 pools; use Never"));
    }
    if ipip_mode != EncapMode::Never && vxlan_mode != EncapMode::Never {
        return Err(s
            .required("vxlanMode")?
            .err("ipipMode and vxlanMode cannot both be enabled"));
    }
    let allowed_uses = s
        .opt("allowedUses", |f| {
            f.seq()?
                .iter()
                .map(|i| {
                    enum_value(
                        i,
                        &[
                            ("Workload", AllowedUse::Workload),
                            ("Tunnel", AllowedUse::Tunnel),
                            ("LoadBalancer", AllowedUse::LoadBalancer),
                        ],
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        })?
        .unwrap_or_else(|| vec![AllowedUse::Workload, AllowedUse::Tunnel]);
    Ok(IpPoolSpec {
        name,
        cidr,
        block_size,
        ipip_mode,
        vxlan_mode,
        nat_outgoing: s.opt("natOutgoing", |f| f.bool())?.unwrap_or(false),
        disabled: s.opt("disabled", |f| f.bool())?.unwrap_or(false),
        disable_bgp_export: s.opt("disableBGPExport", |f| f.bool())?.unwrap_or(false),
        node_selector: s
            .opt("nodeSelector", |f| selector(&f))?
            .unwrap_or_else(Selector::all),
        allowed_uses,
    })
}

fn decode_block_affinity(
    name: String,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<BlockAffinitySpec, ConfigError> {
    let s = spec.map(&["node", "cidr", "state", "deleted", "type"])?;
    let node_f = s.required("node")?;
    lines.insert("spec.node", node_f.node.line);
    let node = node_f.string()?;
    let cidr_f = s.required("cidr")?;
    lines.insert("spec.cidr", cidr_f.node.line);
    let cidr = network(&cidr_f)?;
    let state = s
        .opt("state", |f| {
            enum_value(
                &f,
                &[
                    ("confirmed", AffinityState::Confirmed),
                    ("pending", AffinityState::Pending),
                    ("pendingDeletion", AffinityState::PendingDeletion),
                    ("", AffinityState::Confirmed),
                ],
            )
        })?
        .unwrap_or_default();
    // Calico stores `deleted` as a string ("false"); accept a boolean too.
    let deleted = s.opt("deleted", |f| f.bool())?.unwrap_or(false);
    Ok(BlockAffinitySpec {
        name,
        node,
        cidr,
        state,
        deleted,
    })
}
