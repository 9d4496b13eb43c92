//! Decoding of the Calico kinds from the YAML/JSON tree: per-field validation, Calico's
//! defaults, and errors that name the file, resource, field and line.

use super::yaml::Field;
use crate::calico::*;
use crate::error::ConfigError;
use crate::selector::Selector;
use crate::values::{parse_cidr, parse_peer_ip, Community};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use super::fields::*;

pub(crate) fn decode_bgp_configuration(
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

pub(crate) fn decode_node(
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

pub(crate) fn decode_bgp_peer(
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

pub(crate) fn decode_ip_pool(
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
    Ok(BlockAffinitySpec {
        name,
        node,
        cidr,
        state,
        deleted,
    })
}

pub(crate) fn decode_ipam_config(
    name: String,
    spec: &Field,
) -> Result<IpamConfigSpec, ConfigError> {
    let s = spec.map_ignoring(
        &["strictAffinity", "autoAllocateBlocks", "maxBlocksPerHost"],
        &["kubeVirtVMAddressPersistence"],
    )?;
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
