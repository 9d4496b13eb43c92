//! Decoding of the Calico kinds from the YAML/JSON tree: per-field validation, Calico's
//! defaults, and errors that name the file, resource, field and line.
//!
//! Each kind accepts the full field set of its Calico type (Calico 3.31 and later). A
//! field is either decoded into the domain type or, when Brindle does not implement it,
//! accepted with a warning naming it (its value is still checked the way Calico's
//! validator checks it). Everything else is an unknown field with a "did you mean" hint.

use super::fields::*;
use super::yaml::{Field, Fields};
use crate::calico::*;
use crate::error::ConfigError;
use crate::selector::Selector;
use crate::values::{parse_peer_ip, Community};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, HashMap};

/// BGPConfigurationSpec fields Brindle decodes.
const BGP_CONFIGURATION_FIELDS: &[&str] = &[
    "asNumber",
    "nodeToNodeMeshEnabled",
    "listenPort",
    "logSeverityScreen",
    "communities",
    "prefixAdvertisements",
    "serviceClusterIPs",
    "serviceExternalIPs",
    "serviceLoadBalancerIPs",
    "serviceLoadBalancerAggregation",
    "nodeMeshPassword",
    "nodeMeshMaxRestartTime",
    "bindMode",
    "ignoredInterfaces",
];

/// Valid BGPConfigurationSpec fields Brindle does not implement.
const BGP_CONFIGURATION_IGNORED: &[&str] = &[
    "localWorkloadPeeringIPV4",
    "localWorkloadPeeringIPV6",
    "programClusterRoutes",
    "ipv4NormalRoutePriority",
    "ipv6NormalRoutePriority",
];

/// Calico's log levels (`logSeverityScreen` is matched case-insensitively).
const LOG_LEVELS: &[&str] = &["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];

pub(crate) fn decode_bgp_configuration(
    name: String,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<BgpConfiguration, ConfigError> {
    let s = spec.map_ignoring(BGP_CONFIGURATION_FIELDS, BGP_CONFIGURATION_IGNORED)?;
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
            if !is_calico_name(&name) {
                return Err(name_f.err(format!(
                    "{name:?} is not a valid community name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
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
    // Calico: `^(?i)(Trace|Debug|Info|Warning|Error|Fatal)?$`, empty meaning the default.
    let log_severity_screen = s
        .opt("logSeverityScreen", |f| {
            let text = f.str()?;
            if text.is_empty() {
                return Ok(None);
            }
            match LOG_LEVELS.iter().find(|l| l.eq_ignore_ascii_case(text)) {
                Some(level) => Ok(Some(level.to_string())),
                None => Err(f.err(format!("{text:?} is not one of {}", LOG_LEVELS.join(", ")))),
            }
        })?
        .flatten();
    // `listenPort` is a Go uint16 with omitempty: 0 means unset.
    let listen_port = s.opt("listenPort", |f| match f.int(0, 0) {
        Ok(_) => Ok(None),
        Err(_) => port(&f).map(Some),
    })?;
    let mesh_source = s.opt("nodeMeshPassword", |f| {
        lines.insert("spec.nodeMeshPassword", f.node.line);
        password(&f)
    })?;
    let node_mesh_max_restart_time = s.opt("nodeMeshMaxRestartTime", |f| duration(&f))?;
    let node_to_node_mesh_enabled = s.opt("nodeToNodeMeshEnabled", |f| f.bool())?;
    if node_to_node_mesh_enabled == Some(false) {
        for field in ["nodeMeshPassword", "nodeMeshMaxRestartTime"] {
            if let Some(f) = s.get(field) {
                return Err(f.err(format!(
                    "{field} cannot be set when nodeToNodeMeshEnabled is false"
                )));
            }
        }
    }
    let ignored_interfaces = s.opt("ignoredInterfaces", |f| {
        let mut out = Vec::new();
        for item in f.seq()? {
            let name = item.string()?;
            // Calico: `^[a-zA-Z0-9_.*-]{1,15}$`, and not `*` alone.
            let ok = (1..=15).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.*-".contains(c))
                && name != "*";
            if !ok {
                return Err(item.err(format!(
                    "{name:?} is not an interface name or pattern (1 to 15 of letters, digits, '_', '.', '-' and '*'; not \"*\" alone)"
                )));
            }
            out.push(name);
        }
        Ok(out)
    })?;
    // Accepted without effect: check the values as Calico does.
    s.opt("localWorkloadPeeringIPV4", |f| ipv4(&f))?;
    s.opt("localWorkloadPeeringIPV6", |f| ipv6(&f))?;
    s.opt("programClusterRoutes", |f| {
        enum_value(
            &f,
            &[
                ("Enabled", ()),
                ("Disabled", ()),
                ("EnabledIPIPOnly", ()),
                ("EnabledNoEncapOnly", ()),
            ],
        )
    })?;
    for field in ["ipv4NormalRoutePriority", "ipv6NormalRoutePriority"] {
        s.opt(field, |f| f.int(1, 2_147_483_646))?;
    }
    Ok(BgpConfiguration {
        name,
        as_number: s.opt("asNumber", |f| as_number(&f))?,
        node_to_node_mesh_enabled,
        listen_port: listen_port.flatten(),
        log_severity_screen,
        communities,
        prefix_advertisements,
        service_cluster_ips: s.opt("serviceClusterIPs", |f| cidr_list(&f))?,
        service_external_ips: s.opt("serviceExternalIPs", |f| cidr_list(&f))?,
        service_load_balancer_ips: s.opt("serviceLoadBalancerIPs", |f| cidr_list(&f))?,
        service_load_balancer_aggregation: s.opt("serviceLoadBalancerAggregation", |f| {
            enum_value(
                &f,
                &[
                    ("Enabled", ServiceLoadBalancerAggregation::Enabled),
                    ("Disabled", ServiceLoadBalancerAggregation::Disabled),
                ],
            )
        })?,
        node_mesh_password: mesh_source
            .as_ref()
            .and_then(|p| p.value())
            .map(str::to_string),
        node_mesh_password_source: mesh_source,
        node_mesh_max_restart_time,
        bind_mode: s.opt("bindMode", |f| {
            enum_value(
                &f,
                &[("None", BindMode::None), ("NodeIP", BindMode::NodeIP)],
            )
        })?,
        ignored_interfaces,
    })
}

/// NodeSpec fields Brindle decodes.
const NODE_FIELDS: &[&str] = &["bgp", "ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr"];

/// Valid NodeSpec fields Brindle does not implement.
const NODE_IGNORED: &[&str] = &[
    "addresses",
    "orchRefs",
    "ipv6VXLANTunnelAddr",
    "vxlanTunnelMACAddrV6",
    "wireguard",
    "interfaces",
];

/// NodeBGPSpec fields (all decoded; `routerID` is a Brindle extension).
const NODE_BGP_FIELDS: &[&str] = &[
    "asNumber",
    "ipv4Address",
    "ipv6Address",
    "ipv4IPIPTunnelAddr",
    "routeReflectorClusterID",
    "routerID",
];

pub(crate) fn decode_node(
    name: String,
    labels: BTreeMap<String, String>,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<NodeSpec, ConfigError> {
    let s = spec.map_ignoring(NODE_FIELDS, NODE_IGNORED)?;
    let mut node = NodeSpec {
        name,
        labels,
        ..NodeSpec::default()
    };
    node.ipv4_vxlan_tunnel_addr = s.opt("ipv4VXLANTunnelAddr", |f| ipv4(&f))?;
    node.vxlan_tunnel_mac_addr = s.opt("vxlanTunnelMACAddr", |f| mac(&f))?;
    check_node_ignored_fields(&s)?;
    let Some(bgp_f) = s.get("bgp") else {
        return Ok(node);
    };
    let b = bgp_f.map(NODE_BGP_FIELDS)?;
    node.as_number = b.opt("asNumber", |f| as_number(&f))?;
    if let Some(f) = b.get("ipv4Address") {
        lines.insert("spec.bgp.ipv4Address", f.node.line);
        // Calico's `cidrv4`: a CIDR (host bits are the node's address) or a bare address,
        // taken as /32 (the /32 warning then says what that does to CrossSubnet).
        match ip_or_cidr(&f)? {
            IpNetwork::V4(n) => node.ipv4_address = Some(n),
            IpNetwork::V6(_) => {
                return Err(f.err(format!(
                    "{:?} is an IPv6 CIDR; put it in spec.bgp.ipv6Address",
                    f.str()?
                )))
            }
        }
    }
    if let Some(f) = b.get("ipv6Address") {
        lines.insert("spec.bgp.ipv6Address", f.node.line);
        match ip_or_cidr(&f)? {
            IpNetwork::V6(n) => {
                if n.prefix() == 128 {
                    warn(
                        &f,
                        "a /128 node address (a bare address is taken as /128) puts every other node in a different subnet (CrossSubnet will always encapsulate); use the interface's real prefix length",
                    );
                }
                node.ipv6_address = Some(n)
            }
            IpNetwork::V4(_) => {
                return Err(f.err(format!(
                    "{:?} is an IPv4 CIDR; put it in spec.bgp.ipv4Address",
                    f.str()?
                )))
            }
        }
    }
    node.ipv4_ipip_tunnel_addr = b.opt("ipv4IPIPTunnelAddr", |f| ipv4(&f))?;
    node.route_reflector_cluster_id = b.opt("routeReflectorClusterID", |f| ipv4(&f))?;
    node.router_id = b.opt("routerID", |f| ipv4(&f))?;
    // Calico's validator: "Spec.BGP should not be empty".
    if node.as_number.is_none()
        && node.ipv4_address.is_none()
        && node.ipv6_address.is_none()
        && node.ipv4_ipip_tunnel_addr.is_none()
        && node.route_reflector_cluster_id.is_none()
        && node.router_id.is_none()
    {
        return Err(
            bgp_f.err("must not be empty (set ipv4Address and/or ipv6Address, or remove spec.bgp)")
        );
    }
    Ok(node)
}

/// The Node fields Brindle accepts without effect, checked as Calico checks them.
fn check_node_ignored_fields(s: &Fields) -> Result<(), ConfigError> {
    s.opt("ipv6VXLANTunnelAddr", |f| ipv6(&f))?;
    s.opt("vxlanTunnelMACAddrV6", |f| mac(&f))?;
    if let Some(f) = s.get("orchRefs") {
        for item in f.seq()? {
            let m = item.map(&["nodeName", "orchestrator"])?;
            m.opt("nodeName", |f| f.string())?;
            m.opt("orchestrator", |f| f.string())?;
        }
    }
    if let Some(f) = s.get("wireguard") {
        let m = f.map(&["interfaceIPv4Address", "interfaceIPv6Address"])?;
        m.opt("interfaceIPv4Address", |f| ipv4(&f))?;
        m.opt("interfaceIPv6Address", |f| ipv6(&f))?;
    }
    if let Some(f) = s.get("addresses") {
        for item in f.seq()? {
            let m = item.map(&["address", "type"])?;
            // As calico-node writes them: `10.0.0.1/24` (CalicoNodeIP) or `10.0.0.1`.
            ip_or_cidr(&m.required("address")?)?;
            m.opt("type", |f| {
                enum_value(
                    &f,
                    &[("CalicoNodeIP", ()), ("InternalIP", ()), ("ExternalIP", ())],
                )
            })?;
        }
    }
    if let Some(f) = s.get("interfaces") {
        for item in f.seq()? {
            let m = item.map(&["name", "addresses"])?;
            // Calico checks `name`, but calico-node reports names such as
            // `docker_gwbridge` that the check refuses: accepted as written.
            m.opt("name", |f| f.string())?;
            m.opt("addresses", |f| string_list(&f))?;
        }
    }
    Ok(())
}

/// BGPPeerSpec fields Brindle decodes.
const BGP_PEER_FIELDS: &[&str] = &[
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
    "reversePeering",
];

/// Valid BGPPeerSpec fields Brindle does not implement (decoded all the same, for the
/// work that will).
const BGP_PEER_IGNORED: &[&str] = &["filters", "localWorkloadSelector"];

pub(crate) fn decode_bgp_peer(
    name: String,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<BgpPeerSpec, ConfigError> {
    let s = spec.map_ignoring(BGP_PEER_FIELDS, BGP_PEER_IGNORED)?;
    let mut p = BgpPeerSpec {
        name,
        ..BgpPeerSpec::default()
    };
    if let Some(f) = s.get("node") {
        lines.insert("spec.node", f.node.line);
        let node = f.string()?;
        if !node.is_empty() {
            p.node = Some(calico_name(&f, "node")?);
        }
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
    p.local_workload_selector = s
        .opt("localWorkloadSelector", |f| selector(&f))?
        .filter(|sel| !sel.as_str().trim().is_empty());
    p.as_number = s.opt("asNumber", |f| as_number(&f))?;
    if p.local_workload_selector.is_some() {
        for field in ["peerIP", "peerSelector"] {
            if let Some(f) = s.get(field) {
                return Err(f.err(format!(
                    "{field} must be empty when localWorkloadSelector is set"
                )));
            }
        }
        if p.as_number.is_none() {
            return Err(spec.ctx.err(
                &format!("{}.asNumber", spec.path),
                s.line_of("localWorkloadSelector"),
                "required when localWorkloadSelector is set (the workloads' AS number)",
            ));
        }
    }
    match (p.peer_ip.is_some(), p.peer_selector.is_some()) {
        (true, true) => {
            return Err(s
                .required("peerSelector")?
                .err("peerIP and peerSelector cannot both be set"))
        }
        (false, false) if p.local_workload_selector.is_none() => {
            return Err(spec.err(
                "a BGPPeer needs either peerIP (with asNumber) or peerSelector (or localWorkloadSelector with asNumber)",
            ))
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
    p.password_source = s.opt("password", |f| {
        lines.insert("spec.password", f.node.line);
        password(&f)
    })?;
    p.password = p
        .password_source
        .as_ref()
        .and_then(|src| src.value())
        .map(str::to_string);
    p.keep_original_next_hop = s.opt("keepOriginalNextHop", |f| f.bool())?.unwrap_or(false);
    if let Some(f) = s.get("nextHopMode") {
        let mode = enum_value(
            &f,
            &[
                ("Auto", NextHopMode::Auto),
                ("Self", NextHopMode::SelfHop),
                ("Keep", NextHopMode::Keep),
            ],
        )?;
        if p.keep_original_next_hop {
            return Err(f.err(
                "keepOriginalNextHop and nextHopMode cannot both be set; keepOriginalNextHop is deprecated, use nextHopMode alone",
            ));
        }
        p.next_hop_mode = Some(mode);
        p.keep_original_next_hop = mode == NextHopMode::Keep;
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
    // A Go *int32 that Calico does not bound.
    p.num_allowed_local_as_numbers = s.opt("numAllowedLocalASNumbers", |f| {
        f.int(0, i128::from(i32::MAX)).map(|v| v as u32)
    })?;
    if let Some(f) = s.get("reachableBy") {
        let gateway = ip(&f)?;
        match p.peer_ip {
            None => return Err(f.err("reachableBy must be empty when peerIP is empty")),
            Some(peer) if peer.is_ipv4() != gateway.is_ipv4() => {
                return Err(f.err(format!(
                    "{gateway} and peerIP {peer} are of different address families"
                )))
            }
            Some(_) => p.reachable_by = Some(gateway),
        }
    }
    p.reverse_peering = s
        .opt("reversePeering", |f| {
            enum_value(
                &f,
                &[
                    ("Auto", ReversePeering::Auto),
                    ("Manual", ReversePeering::Manual),
                ],
            )
        })?
        .unwrap_or_default();
    p.filters = s
        .opt("filters", |f| {
            f.seq()?
                .iter()
                .map(|item| calico_name(item, "BGPFilter"))
                .collect::<Result<Vec<_>, _>>()
        })?
        .unwrap_or_default();
    Ok(p)
}

/// IPPoolSpec fields Brindle decodes (`ipip` and `nat-outgoing` are Calico's APIv1
/// leftovers, valid only unset).
const IP_POOL_FIELDS: &[&str] = &[
    "cidr",
    "blockSize",
    "ipipMode",
    "vxlanMode",
    "natOutgoing",
    "disabled",
    "disableBGPExport",
    "nodeSelector",
    "allowedUses",
    "assignmentMode",
    "ipip",
    "nat-outgoing",
];

/// Valid IPPoolSpec fields Brindle does not implement (decoded all the same).
const IP_POOL_IGNORED: &[&str] = &["namespaceSelector"];

pub(crate) fn decode_ip_pool(
    name: String,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<IpPoolSpec, ConfigError> {
    let s = spec.map_ignoring(IP_POOL_FIELDS, IP_POOL_IGNORED)?;
    let cidr_f = s.required("cidr")?;
    lines.insert("spec.cidr", cidr_f.node.line);
    let cidr = network(&cidr_f)?;
    let link_local: IpNetwork = if cidr.is_ipv4() {
        "169.254.0.0/16".parse().expect("valid")
    } else {
        "fe80::/10".parse().expect("valid")
    };
    if crate::values::nets_overlap(&cidr, &link_local) {
        return Err(cidr_f.err(format!(
            "{cidr} overlaps the link-local range {link_local}, which cannot be used for pods"
        )));
    }
    let disabled = s.opt("disabled", |f| f.bool())?.unwrap_or(false);
    let (min, max, default) = if cidr.is_ipv4() {
        (20, 32, 26)
    } else {
        (116, 128, 122)
    };
    // 0 (or unset) is Calico's default block size.
    let block_size = match s.get("blockSize") {
        Some(f) if f.int(0, 0).is_err() => {
            let v = f.int(min, max)? as u8;
            if v < cidr.prefix() && !disabled {
                return Err(f.err(format!(
                    "blockSize {v} is larger than the pool itself (/{}); use a blockSize of at least {}",
                    cidr.prefix(),
                    cidr.prefix()
                )));
            }
            v
        }
        _ => {
            if default < cidr.prefix() && !disabled {
                return Err(cidr_f.err(format!(
                    "a /{} pool is smaller than the default block size (/{default}); set blockSize to at least {}",
                    cidr.prefix(),
                    cidr.prefix()
                )));
            }
            default
        }
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
    if let Some(f) = s.get("ipip") {
        return Err(f.err(
            "is Calico's APIv1 form and must not be set; use ipipMode (Never, Always or CrossSubnet)",
        ));
    }
    if s.opt("nat-outgoing", |f| f.bool())? == Some(true) {
        return Err(s
            .required("nat-outgoing")?
            .err("is Calico's APIv1 form and must not be true; use natOutgoing"));
    }
    // Empty or unset: Calico's default, [Workload, Tunnel]. A set: duplicates collapse.
    let mut allowed_uses: Vec<AllowedUse> = Vec::new();
    if let Some(f) = s.get("allowedUses") {
        for item in f.seq()? {
            let u = enum_value(
                &item,
                &[
                    ("Workload", AllowedUse::Workload),
                    ("Tunnel", AllowedUse::Tunnel),
                    ("LoadBalancer", AllowedUse::LoadBalancer),
                ],
            )?;
            if !allowed_uses.contains(&u) {
                allowed_uses.push(u);
            }
        }
    }
    if allowed_uses.is_empty() {
        allowed_uses = vec![AllowedUse::Workload, AllowedUse::Tunnel];
    }
    let pool_selector = |field: &str| -> Result<Option<Selector>, ConfigError> {
        s.opt(field, |f| {
            if f.str()?.contains("global(") {
                return Err(f.err(format!(
                    "global() is not valid in an IPPool {field}; use all()"
                )));
            }
            selector(&f)
        })
        .map(|sel| sel.filter(|sel| !sel.as_str().trim().is_empty()))
    };
    let node_selector = pool_selector("nodeSelector")?.unwrap_or_else(Selector::all);
    let namespace_selector = pool_selector("namespaceSelector")?;
    let disable_bgp_export = s.opt("disableBGPExport", |f| f.bool())?.unwrap_or(false);
    if allowed_uses.contains(&AllowedUse::Tunnel) && namespace_selector.is_some() {
        return Err(s.required("namespaceSelector")?.err(
            "cannot be set on a pool with allowedUses Tunnel (tunnel addresses belong to no namespace)",
        ));
    }
    if allowed_uses.contains(&AllowedUse::LoadBalancer) {
        let uses = s.required("allowedUses")?;
        if allowed_uses.len() > 1 {
            return Err(uses.err("LoadBalancer cannot be combined with Workload or Tunnel"));
        }
        if ipip_mode != EncapMode::Never || vxlan_mode != EncapMode::Never {
            return Err(uses.err("a LoadBalancer pool cannot have IPIP or VXLAN enabled"));
        }
        if disable_bgp_export {
            return Err(s
                .required("disableBGPExport")?
                .err("a LoadBalancer pool cannot disable BGP export"));
        }
        if node_selector.as_str().trim() != "all()" {
            return Err(s
                .required("nodeSelector")?
                .err("a LoadBalancer pool must have nodeSelector all()"));
        }
    }
    let assignment_mode = s
        .opt("assignmentMode", |f| {
            let mode = enum_value(
                &f,
                &[
                    ("Automatic", AssignmentMode::Automatic),
                    ("Manual", AssignmentMode::Manual),
                ],
            )?;
            if mode == AssignmentMode::Manual {
                warn(
                    &f,
                    "Manual is not implemented yet: Brindle assigns addresses from this pool like from any other",
                );
            }
            Ok(mode)
        })?
        .unwrap_or_default();
    Ok(IpPoolSpec {
        name,
        cidr,
        block_size,
        ipip_mode,
        vxlan_mode,
        nat_outgoing: s.opt("natOutgoing", |f| f.bool())?.unwrap_or(false),
        disabled,
        disable_bgp_export,
        node_selector,
        allowed_uses,
        assignment_mode,
        namespace_selector,
    })
}

pub(crate) fn decode_block_affinity(
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
    // `host` (Calico's default) is what Brindle does; other types are not implemented.
    let affinity_type = s
        .opt("type", |f| {
            let t = f.string()?;
            if !t.is_empty() && t != "host" {
                ignored(&f);
            }
            Ok(t)
        })?
        .filter(|t| !t.is_empty());
    Ok(BlockAffinitySpec {
        name,
        node,
        cidr,
        state,
        deleted,
        affinity_type,
    })
}

pub(crate) fn decode_ipam_config(
    name: String,
    spec: &Field,
) -> Result<IpamConfigSpec, ConfigError> {
    let s = spec.map_ignoring(
        &["strictAffinity", "autoAllocateBlocks", "maxBlocksPerHost"],
        &["kubeVirtVMAddressPersistence", "ipCooldownSeconds"],
    )?;
    if name != "default" {
        return Err(spec.ctx.err(
            "metadata.name",
            0,
            format!("an IPAMConfiguration must be named \"default\", not {name:?}"),
        ));
    }
    s.opt("kubeVirtVMAddressPersistence", |f| {
        enum_value(&f, &[("Enabled", ()), ("Disabled", ())])
    })?;
    s.opt("ipCooldownSeconds", |f| f.int(0, 1200))?;
    let d = IpamConfigSpec::default();
    Ok(IpamConfigSpec {
        name,
        strict_affinity: s
            .opt("strictAffinity", |f| f.bool())?
            .unwrap_or(d.strict_affinity),
        auto_allocate_blocks: s
            .opt("autoAllocateBlocks", |f| f.bool())?
            .unwrap_or(d.auto_allocate_blocks),
        max_blocks_per_host: s
            .opt("maxBlocksPerHost", |f| f.int(0, i128::from(i32::MAX)))?
            .map_or(0, |v| v as u32),
    })
}

/// GlobalNetworkSetSpec / NetworkSetSpec fields (all decoded).
const NETWORK_SET_FIELDS: &[&str] = &["nets"];

pub(crate) fn decode_network_set(
    namespace: Option<String>,
    name: String,
    labels: BTreeMap<String, String>,
    spec: &Field,
) -> Result<NetworkSetSpec, ConfigError> {
    let s = spec.map(NETWORK_SET_FIELDS)?;
    let mut nets = Vec::new();
    if let Some(f) = s.get("nets") {
        for item in f.seq()? {
            let n = ip_or_cidr(&item)?;
            // Felix masks the host bits.
            let masked = IpNetwork::new(n.network(), n.prefix()).expect("same prefix");
            if !nets.contains(&masked) {
                nets.push(masked);
            }
        }
    }
    Ok(NetworkSetSpec {
        namespace,
        name,
        labels,
        nets,
    })
}

/// HostEndpointSpec fields (all decoded).
const HOST_ENDPOINT_FIELDS: &[&str] =
    &["node", "interfaceName", "expectedIPs", "profiles", "ports"];

pub(crate) fn decode_host_endpoint(
    name: String,
    labels: BTreeMap<String, String>,
    spec: &Field,
    lines: &mut HashMap<&'static str, u64>,
) -> Result<HostEndpointSpec, ConfigError> {
    let s = spec.map(HOST_ENDPOINT_FIELDS)?;
    let mut h = HostEndpointSpec {
        name,
        labels,
        ..HostEndpointSpec::default()
    };
    if let Some(f) = s.get("node") {
        lines.insert("spec.node", f.node.line);
        let node = f.string()?;
        if !node.is_empty() {
            h.node = calico_name(&f, "node")?;
        }
    }
    if let Some(f) = s.get("interfaceName") {
        let name = f.string()?;
        // Calico's `interface`: `^[a-zA-Z0-9_.*-]{1,15}$` (or empty).
        let ok = name.len() <= 15
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.*-".contains(c));
        if !ok {
            return Err(f.err(format!(
                "{name:?} is not an interface name (up to 15 of letters, digits, '_', '.', '-'), nor \"*\" (all interfaces)"
            )));
        }
        if name.starts_with("cali") && name != "*" {
            warn(
                &f,
                "a workload interface: a host endpoint cannot protect a workload's interface (Calico: only external interfaces), so this one polices nothing",
            );
        }
        h.interface_name = name;
    }
    if let Some(f) = s.get("expectedIPs") {
        for item in f.seq()? {
            h.expected_ips.push(ip(&item)?);
        }
    }
    if h.interface_name.is_empty() {
        if h.expected_ips.is_empty() {
            return Err(spec.err(
                "a HostEndpoint needs interfaceName (an interface, or \"*\" for all) or expectedIPs",
            ));
        }
        warn(
            spec,
            "no interfaceName: Brindle does not look for the interface holding expectedIPs, so this host endpoint polices no traffic (its expectedIPs still count in other policies' selectors); set interfaceName",
        );
    }
    if h.node.is_empty() {
        warn(
            spec,
            "no node: this host endpoint is on no node and polices nothing",
        );
    }
    if let Some(f) = s.get("profiles") {
        for item in f.seq()? {
            h.profiles.push(calico_name(&item, "profile")?);
        }
    }
    if let Some(f) = s.get("ports") {
        for item in f.seq()? {
            let m = item.map(&["name", "protocol", "port"])?;
            let name_f = m.required("name")?;
            let name = name_f.string()?;
            if name.is_empty() || name.len() > 128 {
                return Err(name_f.err("a port name must be 1 to 128 characters"));
            }
            let protocol = match m.get("protocol") {
                Some(pf) => proto_port_protocol(&pf)?,
                None => 6,
            };
            let port = port(&m.required("port")?)?;
            h.ports.push(EndpointPort {
                name,
                protocol,
                port,
            });
        }
    }
    Ok(h)
}

/// A protocol of a port: TCP, UDP or SCTP (any case), or its number.
fn proto_port_protocol(f: &Field) -> Result<u8, ConfigError> {
    if let Ok(n) = f.int(0, 255) {
        return match n {
            6 | 17 | 132 => Ok(n as u8),
            _ => Err(f.err(format!("protocol {n} has no ports; use TCP, UDP or SCTP"))),
        };
    }
    let s = f.str()?;
    match s.to_ascii_uppercase().as_str() {
        "TCP" => Ok(6),
        "UDP" => Ok(17),
        "SCTP" => Ok(132),
        _ => Err(f.err(format!("{s:?} is not one of TCP, UDP, SCTP"))),
    }
}

/// FelixConfigurationSpec fields Brindle decodes.
const FELIX_CONFIGURATION_FIELDS: &[&str] =
    &["failsafeInboundHostPorts", "failsafeOutboundHostPorts"];

/// Valid FelixConfigurationSpec fields Brindle does not implement (every other json tag
/// of Calico's `FelixConfigurationSpec`, and those removed since 3.23 that older
/// clusters' objects still carry).
const FELIX_CONFIGURATION_IGNORED: &[&str] = &[
    "bpfKubeProxyEndpointSlicesEnabled",
    "bpfKubeProxyHealtzPort",
    "iptablesLockFilePath",
    "iptablesLockTimeout",
    "nodeSelector",
    "useInternalDataplaneDriver",
    "dataplaneDriver",
    "dataplaneWatchdogTimeout",
    "ipv6Support",
    "routeRefreshInterval",
    "interfaceRefreshInterval",
    "iptablesRefreshInterval",
    "iptablesPostWriteCheckInterval",
    "iptablesLockProbeInterval",
    "featureDetectOverride",
    "featureGates",
    "ipsetsRefreshInterval",
    "maxIpsetSize",
    "iptablesBackend",
    "xdpRefreshInterval",
    "netlinkTimeout",
    "metadataAddr",
    "metadataPort",
    "openstackRegion",
    "interfacePrefix",
    "interfaceExclude",
    "chainInsertMode",
    "defaultEndpointToHostAction",
    "iptablesFilterAllowAction",
    "iptablesMangleAllowAction",
    "iptablesFilterDenyAction",
    "logPrefix",
    "logActionRateLimit",
    "logActionRateLimitBurst",
    "logFilePath",
    "logSeverityFile",
    "logSeverityScreen",
    "logSeveritySys",
    "logDebugFilenameRegex",
    "ipipEnabled",
    "ipipMTU",
    "vxlanEnabled",
    "vxlanMTU",
    "vxlanMTUV6",
    "vxlanPort",
    "vxlanVNI",
    "allowVXLANPacketsFromWorkloads",
    "allowIPIPPacketsFromWorkloads",
    "reportingInterval",
    "reportingTTL",
    "endpointReportingEnabled",
    "endpointReportingDelay",
    "endpointStatusPathPrefix",
    "iptablesMarkMask",
    "disableConntrackInvalidCheck",
    "healthEnabled",
    "healthHost",
    "healthPort",
    "healthTimeoutOverrides",
    "prometheusMetricsEnabled",
    "prometheusMetricsHost",
    "prometheusMetricsPort",
    "prometheusGoMetricsEnabled",
    "prometheusProcessMetricsEnabled",
    "prometheusWireGuardMetricsEnabled",
    "prometheusMetricsCAFile",
    "prometheusMetricsCertFile",
    "prometheusMetricsKeyFile",
    "prometheusMetricsClientAuth",
    "kubeNodePortRanges",
    "policySyncPathPrefix",
    "usageReportingEnabled",
    "usageReportingInitialDelay",
    "usageReportingInterval",
    "natPortRange",
    "natOutgoingAddress",
    "natOutgoingExclusions",
    "deviceRouteSourceAddress",
    "deviceRouteSourceAddressIPv6",
    "deviceRouteProtocol",
    "removeExternalRoutes",
    "programClusterRoutes",
    "ipForwarding",
    "externalNodesList",
    "debugMemoryProfilePath",
    "debugDisableLogDropping",
    "debugSimulateCalcGraphHangAfter",
    "debugSimulateDataplaneHangAfter",
    "debugSimulateDataplaneApplyDelay",
    "debugHost",
    "debugPort",
    "iptablesNATOutgoingInterfaceFilter",
    "sidecarAccelerationEnabled",
    "xdpEnabled",
    "genericXDPEnabled",
    "nftablesMode",
    "nftablesFlowTableOffload",
    "nftablesFlowTableDataIfacePattern",
    "nftablesRefreshInterval",
    "nftablesFilterAllowAction",
    "nftablesMangleAllowAction",
    "nftablesFilterDenyAction",
    "nftablesMarkMask",
    "bpfEnabled",
    "bpfOverlayHostSourceIP",
    "bpfDisableUnprivileged",
    "bpfJITHardening",
    "bpfLogLevel",
    "bpfConntrackLogLevel",
    "bpfConntrackMode",
    "bpfConntrackTimeouts",
    "bpfIPFragTimeout",
    "bpfLogFilters",
    "bpfCTLBLogFilter",
    "bpfDataIfacePattern",
    "bpfL3IfacePattern",
    "bpfConnectTimeLoadBalancingEnabled",
    "bpfConnectTimeLoadBalancing",
    "bpfHostNetworkedNATWithoutCTLB",
    "bpfExternalServiceMode",
    "bpfDSROptoutCIDRs",
    "bpfExtToServiceConnmark",
    "bpfKubeProxyIptablesCleanupEnabled",
    "bpfKubeProxyMinSyncPeriod",
    "bpfKubeProxyHealthzPort",
    "bpfPSNATPorts",
    "bpfMapSizeNATFrontend",
    "bpfMapSizeNATBackend",
    "bpfMapSizeNATAffinity",
    "bpfMapSizeRoute",
    "bpfMapSizeConntrack",
    "bpfMapSizePerCpuConntrack",
    "bpfMapSizeConntrackScaling",
    "bpfMapSizeConntrackCleanupQueue",
    "bpfMapSizeIPSets",
    "bpfMapSizeIfState",
    "bpfHostConntrackBypass",
    "bpfIPFragmentReassemblyEnabled",
    "bpfEnforceRPF",
    "bpfPolicyDebugEnabled",
    "bpfForceTrackPacketsFromIfaces",
    "bpfDisableGROForIfaces",
    "bpfExcludeCIDRsFromNAT",
    "bpfExportBufferSizeMB",
    "istioAmbientMode",
    "istioDSCPMark",
    "cgroupV2Path",
    "flowLogsPolicyEvaluationMode",
    "bpfRedirectToPeer",
    "bpfAttachType",
    "flowLogsFlushInterval",
    "flowLogsCollectorDebugTrace",
    "flowLogsGoldmaneServer",
    "flowLogsLocalReporter",
    "bpfProfiling",
    "routeSource",
    "routeTableRanges",
    "routeTableRange",
    "routeSyncDisabled",
    "ipv4NormalRoutePriority",
    "ipv4ElevatedRoutePriority",
    "ipv6NormalRoutePriority",
    "ipv6ElevatedRoutePriority",
    "liveMigrationRouteConvergenceTime",
    "wireguardEnabled",
    "wireguardEnabledV6",
    "wireguardThreadingEnabled",
    "wireguardListeningPort",
    "wireguardListeningPortV6",
    "wireguardRoutingRulePriority",
    "wireguardInterfaceName",
    "wireguardInterfaceNameV6",
    "wireguardMTU",
    "wireguardMTUV6",
    "wireguardHostEncryptionEnabled",
    "wireguardKeepAlive",
    "awsSrcDstCheck",
    "serviceLoopPrevention",
    "workloadSourceSpoofing",
    "mtuIfacePattern",
    "floatingIPs",
    "localSubnetL2Reachability",
    "localSubnetL2ReachabilityRefreshInterval",
    "windowsManageFirewallRules",
    "goGCThreshold",
    "goMemoryLimitMB",
    "goMaxProcs",
    "requireMTUFile",
    "bpfMaglevMaxEndpointsPerService",
    "bpfMaglevMaxServices",
];

pub(crate) fn decode_felix_configuration(
    name: String,
    spec: &Field,
) -> Result<FelixConfigurationSpec, ConfigError> {
    let s = spec.map_ignoring(FELIX_CONFIGURATION_FIELDS, FELIX_CONFIGURATION_IGNORED)?;
    if name != "default" && !name.starts_with("node.") {
        warn(
            spec,
            format!("FelixConfiguration {name:?} is never used: Felix reads \"default\" and \"node.<nodename>\""),
        );
    }
    let list = |field: &str| {
        s.opt(field, |f| {
            let mut out = Vec::new();
            for item in f.seq()? {
                let m = item.map(&["protocol", "port", "net"])?;
                let protocol = match m.get("protocol") {
                    Some(pf) => proto_port_protocol(&pf)?,
                    None => 6,
                };
                // A Go uint16 without omitempty: 0 is a port Calico accepts (and
                // matches nothing); Brindle requires a real one.
                let port = port(&m.required("port")?)?;
                let net = match m.get("net") {
                    Some(nf) if !nf.str()?.is_empty() => Some(ip_or_cidr(&nf)?),
                    _ => None,
                };
                out.push(crate::resolved::Failsafe {
                    protocol,
                    port,
                    net,
                });
            }
            Ok(out)
        })
    };
    Ok(FelixConfigurationSpec {
        name,
        failsafe_inbound_host_ports: list("failsafeInboundHostPorts")?,
        failsafe_outbound_host_ports: list("failsafeOutboundHostPorts")?,
    })
}
