//! `brindlectl`'s logic: the status-socket client and every output format, kept here
//! (not in the binary) so it can be unit-tested.
//!
//! Tables follow calicoctl: `node status` uses boxed tables with centred headers
//! (olekukonko/tablewriter style), `get` uses plain columns (Go tabwriter, padding 3).

use brindle_bgp::status::{RoutesStatus, SessionState, SpeakerStatus};
use brindle_model::{ClusterConfig, Kind, RawResource, API_VERSION};
use chrono::{DateTime, Local};
use std::fmt;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where brindle-node serves its status, unless `BRINDLE_STATUS_SOCKET` or `--socket` says otherwise.
pub const DEFAULT_STATUS_SOCKET: &str = "/var/run/brindle/status.sock";
/// The resource file, unless `BRINDLE_CONFIG` or `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/brindle/brindle.yaml";

/// A failure talking to brindle-node. `Display` is one line without a trailing newline.
#[derive(Debug)]
pub enum CtlError {
    /// The socket is missing, refuses connections, or is not accessible.
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    /// The connection broke while talking.
    Io {
        socket: PathBuf,
        source: std::io::Error,
    },
    /// The reply was not the expected JSON document.
    BadReply { socket: PathBuf, message: String },
}

/// `io::Error`'s text without the "(os error N)" suffix, starting lowercase.
fn short_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file or directory".into(),
        ConnectionRefused => "connection refused".into(),
        PermissionDenied => "permission denied".into(),
        TimedOut | WouldBlock => "timed out".into(),
        _ => {
            let s = e.to_string();
            let s = match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
            let mut c = s.chars();
            match c.next() {
                Some(first) => first.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Unreachable { socket, source } => {
                let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
                    "(are you root?)"
                } else {
                    "(is brindle-node running?)"
                };
                write!(
                    f,
                    "cannot reach brindle-node at {}: {} {hint}",
                    socket.display(),
                    short_io(source)
                )
            }
            CtlError::Io { socket, source } => write!(
                f,
                "error talking to brindle-node at {}: {}",
                socket.display(),
                short_io(source)
            ),
            CtlError::BadReply { socket, message } => write!(
                f,
                "invalid reply from brindle-node at {}: {message}",
                socket.display()
            ),
        }
    }
}

impl std::error::Error for CtlError {}

/// Sends one request line on the status socket and returns the whole reply.
pub fn request(socket: &Path, request: &str, timeout: Duration) -> Result<String, CtlError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| CtlError::Unreachable {
        socket: socket.to_path_buf(),
        source,
    })?;
    let io_err = |source| CtlError::Io {
        socket: socket.to_path_buf(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(io_err)?;
    // Half-close so a server reading to EOF also works; ignore failures (the server may
    // already have answered and closed).
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(io_err)?;
    Ok(reply)
}

/// Requests and decodes a JSON document of type `T`.
pub fn fetch<T: serde::de::DeserializeOwned>(
    socket: &Path,
    req: &str,
    timeout: Duration,
) -> Result<T, CtlError> {
    let reply = request(socket, req, timeout)?;
    if reply.trim().is_empty() {
        return Err(CtlError::BadReply {
            socket: socket.to_path_buf(),
            message: "empty reply".into(),
        });
    }
    serde_json::from_str(&reply).map_err(|e| {
        // A server-side error document (`{"error": "..."}`) is shown as is.
        let message = serde_json::from_str::<serde_json::Value>(&reply)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| e.to_string());
        CtlError::BadReply {
            socket: socket.to_path_buf(),
            message,
        }
    })
}

/// A boxed table as calicoctl's `node status` prints it: centred headers, left-aligned
/// cells, one space of padding.
pub fn boxed_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let rule: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in headers.iter().zip(&widths) {
        let gap = w - width(h);
        let left = gap / 2;
        out.push_str(&format!(
            " {}{h}{} |",
            " ".repeat(left),
            " ".repeat(gap - left)
        ));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            out.push_str(&format!(" {cell}{} |", " ".repeat(w - width(cell))));
        }
        out.push('\n');
    }
    out.push_str(&rule);
    out
}

/// Plain columns as calicoctl's `get` prints them (Go tabwriter: minimum width 5,
/// padding 3); trailing spaces are trimmed.
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            line.push_str(cell);
            line.push_str(&" ".repeat((w + 3).max(5) - width(cell)));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// calicoctl's SINCE column: the time of day when `since` is today (local time), else the date.
pub fn format_since(since: &str, now: DateTime<Local>) -> String {
    match DateTime::parse_from_rfc3339(since) {
        Ok(t) => {
            let local = t.with_timezone(&Local);
            if local.date_naive() == now.date_naive() {
                local.format("%H:%M:%S").to_string()
            } else {
                local.format("%Y-%m-%d").to_string()
            }
        }
        Err(_) => since.to_string(),
    }
}

/// `brindlectl node status` as a table, exactly in calicoctl's layout.
pub fn render_status_table(status: &SpeakerStatus, now: DateTime<Local>) -> String {
    let mut out = String::from("Brindle process is running.\n");
    for (family, v4) in [("IPv4", true), ("IPv6", false)] {
        out.push_str(&format!("\n{family} BGP status\n"));
        let rows: Vec<Vec<String>> = status
            .peers
            .iter()
            .filter(|p| p.peer_address.is_ipv4() == v4)
            .map(|p| {
                vec![
                    p.peer_address.to_string(),
                    p.peer_type.calico_name().to_string(),
                    if p.state == SessionState::Established {
                        "up"
                    } else {
                        "start"
                    }
                    .to_string(),
                    format_since(&p.since, now),
                    p.info.clone(),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str(&format!("No {family} peers found.\n"));
        } else {
            out.push_str(&boxed_table(
                &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                &rows,
            ));
        }
    }
    if let Some(d) = &status.dataplane {
        out.push_str(&format!(
            "\nDataplane: {} routes programmed, {} local endpoints, host MTU {}, pod MTU {}, last apply {} ({:.1} ms)\n",
            d.routes_programmed,
            d.local_endpoints,
            d.host_mtu,
            d.pod_mtu,
            format_since(&d.last_apply, now),
            d.last_apply_millis
        ));
        for w in &d.warnings {
            out.push_str(&format!("WARNING: {w}\n"));
        }
        for e in &d.errors {
            out.push_str(&format!("ERROR: {e}\n"));
        }
    }
    out
}

/// `brindlectl node routes` as tables, one per address family.
pub fn render_routes_table(routes: &RoutesStatus) -> String {
    let mut out = String::new();
    for (family, v4) in [("IPv4", true), ("IPv6", false)] {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{family} routes\n"));
        let rows: Vec<Vec<String>> = routes
            .routes
            .iter()
            .filter(|r| r.prefix.contains(':') != v4)
            .map(|r| {
                vec![
                    r.prefix.clone(),
                    r.next_hop.clone(),
                    match (r.local, r.peer_address) {
                        (true, _) | (false, None) => "local".to_string(),
                        (false, Some(a)) => a.to_string(),
                    },
                    r.as_path
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                    r.communities.join(" "),
                    if r.best { "*" } else { "" }.to_string(),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str(&format!("No {family} routes found.\n"));
        } else {
            out.push_str(&boxed_table(
                &[
                    "PREFIX",
                    "NEXT HOP",
                    "FROM",
                    "AS PATH",
                    "COMMUNITIES",
                    "BEST",
                ],
                &rows,
            ));
        }
    }
    out
}

/// Serialises to YAML with serde-saphyr.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

/// Table layouts of `brindlectl get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// calicoctl's default ("ps") columns.
    Narrow,
    /// `-o wide`.
    Wide,
}

/// `brindlectl get <kind>` as columns. `names` filters by name (empty: all).
pub fn render_get_table(
    cfg: &ClusterConfig,
    kind: Kind,
    names: &[String],
    layout: Layout,
) -> String {
    let wanted = |n: &str| names.is_empty() || names.iter().any(|x| x == n);
    let wide = layout == Layout::Wide;
    match kind {
        Kind::BgpPeer => {
            let rows: Vec<Vec<String>> = cfg
                .bgp_peers
                .iter()
                .filter(|p| wanted(&p.name))
                .map(|p| {
                    let peer = match (p.peer_ip, &p.peer_selector) {
                        (Some(ip), _) => match (ip, p.peer_port) {
                            (IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
                            (ip, Some(port)) => format!("{ip}:{port}"),
                            (ip, None) => ip.to_string(),
                        },
                        (None, Some(sel)) => sel.as_str().to_string(),
                        (None, None) => String::new(),
                    };
                    let node = match (&p.node, &p.node_selector) {
                        (Some(n), _) => n.clone(),
                        (None, Some(sel)) => sel.as_str().to_string(),
                        (None, None) => "(global)".to_string(),
                    };
                    let asn = match p.as_number {
                        Some(a) => a.to_string(),
                        None => "(node AS)".to_string(),
                    };
                    vec![p.name.clone(), peer, node, asn]
                })
                .collect();
            columns(&["NAME", "PEERIP", "NODE", "ASN"], &rows)
        }
        Kind::Node => {
            let nodes = cfg.nodes.iter().filter(|n| wanted(&n.name));
            if wide {
                let rows: Vec<Vec<String>> = nodes
                    .map(|n| {
                        let (asn, inherited) = cfg.node_as_number(n);
                        vec![
                            n.name.clone(),
                            if inherited {
                                format!("({asn})")
                            } else {
                                asn.to_string()
                            },
                            n.ipv4_address.map(|a| a.to_string()).unwrap_or_default(),
                            n.ipv6_address.map(|a| a.to_string()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                columns(&["NAME", "ASN", "IPV4", "IPV6"], &rows)
            } else {
                let rows: Vec<Vec<String>> = nodes.map(|n| vec![n.name.clone()]).collect();
                columns(&["NAME"], &rows)
            }
        }
        Kind::IpPool => {
            let pools = cfg.ip_pools.iter().filter(|p| wanted(&p.name));
            if wide {
                let rows: Vec<Vec<String>> = pools
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.cidr.to_string(),
                            p.nat_outgoing.to_string(),
                            p.ipip_mode.to_string(),
                            p.vxlan_mode.to_string(),
                            p.disabled.to_string(),
                            p.disable_bgp_export.to_string(),
                            p.node_selector.as_str().to_string(),
                        ]
                    })
                    .collect();
                columns(
                    &[
                        "NAME",
                        "CIDR",
                        "NAT",
                        "IPIPMODE",
                        "VXLANMODE",
                        "DISABLED",
                        "DISABLEBGPEXPORT",
                        "SELECTOR",
                    ],
                    &rows,
                )
            } else {
                let rows: Vec<Vec<String>> = pools
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.cidr.to_string(),
                            p.node_selector.as_str().to_string(),
                        ]
                    })
                    .collect();
                columns(&["NAME", "CIDR", "SELECTOR"], &rows)
            }
        }
        Kind::BlockAffinity => {
            let blocks = cfg.block_affinities.iter().filter(|b| wanted(&b.name));
            if wide {
                let rows: Vec<Vec<String>> = blocks
                    .map(|b| {
                        vec![
                            b.name.clone(),
                            b.node.clone(),
                            b.cidr.to_string(),
                            b.state.as_str().to_string(),
                            b.deleted.to_string(),
                        ]
                    })
                    .collect();
                columns(&["NAME", "NODE", "CIDR", "STATE", "DELETED"], &rows)
            } else {
                let rows: Vec<Vec<String>> = blocks
                    .map(|b| vec![b.name.clone(), b.node.clone(), b.cidr.to_string()])
                    .collect();
                columns(&["NAME", "NODE", "CIDR"], &rows)
            }
        }
        Kind::BgpConfiguration => {
            let rows: Vec<Vec<String>> = cfg
                .bgp_configurations
                .iter()
                .filter(|c| wanted(&c.name))
                .map(|c| {
                    let opt = |v: Option<String>| v.unwrap_or_default();
                    vec![
                        c.name.clone(),
                        opt(c.log_severity_screen.clone()),
                        opt(c.node_to_node_mesh_enabled.map(|b| b.to_string())),
                        opt(c.as_number.map(|a| a.to_string())),
                    ]
                })
                .collect();
            columns(&["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"], &rows)
        }
        other => {
            let rows: Vec<Vec<String>> = cfg
                .resources
                .iter()
                .filter(|r| r.kind == other && wanted(&r.name))
                .map(|r| match &r.namespace {
                    Some(ns) => vec![ns.clone(), r.name.clone()],
                    None => vec![r.name.clone()],
                })
                .collect();
            if other.namespaced() {
                columns(&["NAMESPACE", "NAME"], &rows)
            } else {
                columns(&["NAME"], &rows)
            }
        }
    }
}

/// `brindlectl get <kind> -o json|yaml`: the resources as written, as a `<Kind>List`
/// (or the single resource when exactly one name was asked for), like calicoctl.
pub fn get_document(cfg: &ClusterConfig, kind: Kind, names: &[String]) -> serde_json::Value {
    let items: Vec<&RawResource> = cfg
        .resources
        .iter()
        .filter(|r| r.kind == kind && (names.is_empty() || names.contains(&r.name)))
        .collect();
    if names.len() == 1 && items.len() == 1 {
        return items[0].json.clone();
    }
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": format!("{}List", kind.as_str()),
        "metadata": {},
        "items": items.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
    })
}

/// Names asked for that do not exist (for a calicoctl-like "resource does not exist" error).
pub fn missing_names(cfg: &ClusterConfig, kind: Kind, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            !cfg.resources
                .iter()
                .any(|r| r.kind == kind && &r.name == *n)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_bgp::status::{PeerStatus, PeerType, RouteStatus};
    use chrono::TimeZone;

    fn peer(addr: &str, ty: PeerType, state: SessionState, since: &str, info: &str) -> PeerStatus {
        PeerStatus {
            peer_address: addr.parse().unwrap(),
            peer_port: 179,
            peer_type: ty,
            peer_type_name: ty.calico_name().to_string(),
            name: String::new(),
            as_number: 64512,
            local_as_number: 64512,
            state,
            since: since.to_string(),
            info: info.to_string(),
            last_error: None,
            prefixes_received: 0,
            prefixes_accepted: 0,
            prefixes_advertised: 0,
            messages_in: 0,
            messages_out: 0,
            updates_in: 0,
            updates_out: 0,
            session_resets: 0,
            hold_time: None,
            remote_router_id: None,
        }
    }

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
    }

    #[test]
    fn status_table_matches_calicoctl() {
        let now = local(2024, 5, 1, 23, 45, 0);
        let since = local(2024, 5, 1, 23, 30, 4).to_rfc3339();
        let status = SpeakerStatus {
            peers: vec![peer(
                "172.17.8.102",
                PeerType::NodeMesh,
                SessionState::Established,
                &since,
                "Established",
            )],
            ..SpeakerStatus::default()
        };
        let expected = "\
Brindle process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established |
+--------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.
";
        assert_eq!(render_status_table(&status, now), expected);
    }

    #[test]
    fn status_table_states_dates_and_ipv6() {
        let now = local(2024, 5, 1, 12, 0, 0);
        let old = local(2024, 4, 28, 8, 0, 0).to_rfc3339();
        let status = SpeakerStatus {
            peers: vec![
                peer(
                    "10.0.0.254",
                    PeerType::Global,
                    SessionState::Active,
                    &old,
                    "Active Socket: Host is unreachable",
                ),
                peer(
                    "fd00::2",
                    PeerType::NodeSpecific,
                    SessionState::Established,
                    &old,
                    "Established",
                ),
            ],
            ..SpeakerStatus::default()
        };
        let out = render_status_table(&status, now);
        assert!(
            out.contains("| 10.0.0.254   | global    | start | 2024-04-28 | Active Socket: Host is unreachable |"),
            "{out}"
        );
        assert!(
            out.contains("| fd00::2      | node specific | up    | 2024-04-28 | Established |"),
            "{out}"
        );
        assert!(!out.contains("No IPv6 peers found."));
        let empty = render_status_table(&SpeakerStatus::default(), now);
        assert!(empty.contains(
            "IPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\nNo IPv6 peers found.\n"
        ));
        assert_eq!(format_since("garbage", now), "garbage");
    }

    #[test]
    fn boxed_table_centring() {
        let t = boxed_table(&["AB", "C"], &[vec!["abcde".into(), "x".into()]]);
        // gap 3 in the first column: 1 left, 2 right (as tablewriter).
        assert_eq!(
            t,
            "+-------+---+\n|  AB   | C |\n+-------+---+\n| abcde | x |\n+-------+---+\n"
        );
    }

    #[test]
    fn routes_table() {
        let routes = RoutesStatus {
            routes: vec![
                RouteStatus {
                    prefix: "10.65.0.64/26".into(),
                    next_hop: "10.0.0.2".into(),
                    peer_address: Some("10.0.0.2".parse().unwrap()),
                    as_path: vec![],
                    local_pref: Some(100),
                    med: None,
                    communities: vec!["64512:100".into()],
                    best: true,
                    local: false,
                },
                RouteStatus {
                    prefix: "10.65.0.0/26".into(),
                    next_hop: String::new(),
                    peer_address: None,
                    as_path: vec![],
                    local_pref: None,
                    med: None,
                    communities: vec![],
                    best: true,
                    local: true,
                },
            ],
        };
        let out = render_routes_table(&routes);
        assert!(out.starts_with("IPv4 routes\n+"), "{out}");
        assert!(
            out.contains("| 10.65.0.64/26 | 10.0.0.2 | 10.0.0.2 |         | 64512:100   | *    |"),
            "{out}"
        );
        assert!(
            out.contains("| 10.65.0.0/26  |          | local    |"),
            "{out}"
        );
        assert!(
            out.ends_with("\nIPv6 routes\nNo IPv6 routes found.\n"),
            "{out}"
        );
    }

    fn example() -> ClusterConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/calico-basic.yaml");
        brindle_model::load(&path).unwrap()
    }

    #[test]
    fn get_tables() {
        let cfg = example();
        assert_eq!(
            render_get_table(&cfg, Kind::BgpPeer, &[], Layout::Narrow),
            "NAME          PEERIP       NODE       ASN\nhome-router   10.0.0.254   (global)   65000\n"
        );
        assert_eq!(
            render_get_table(&cfg, Kind::Node, &[], Layout::Narrow),
            "NAME\nnode-a\nnode-b\n"
        );
        assert_eq!(
            render_get_table(&cfg, Kind::Node, &[], Layout::Wide),
            "NAME     ASN       IPV4          IPV6\n\
             node-a   (64512)   10.0.0.1/24   fd00:10::1/64\n\
             node-b   (64512)   10.0.0.2/24   fd00:10::2/64\n"
        );
        assert_eq!(
            render_get_table(&cfg, Kind::IpPool, &[], Layout::Narrow),
            "NAME                  CIDR           SELECTOR\ndefault-ipv4-ippool   10.65.0.0/16   all()\n"
        );
        assert_eq!(
            render_get_table(&cfg, Kind::IpPool, &[], Layout::Wide),
            "NAME                  CIDR           NAT    IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR\n\
             default-ipv4-ippool   10.65.0.0/16   true   Never      Never       false      false              all()\n"
        );
        let blocks = render_get_table(
            &cfg,
            Kind::BlockAffinity,
            &["node-b-10-65-0-64-26".into()],
            Layout::Narrow,
        );
        assert_eq!(
            blocks,
            "NAME                   NODE     CIDR\nnode-b-10-65-0-64-26   node-b   10.65.0.64/26\n"
        );
        let wide = render_get_table(&cfg, Kind::BlockAffinity, &[], Layout::Wide);
        assert!(wide.contains("confirmed   false"), "{wide}");
        let conf = render_get_table(&cfg, Kind::BgpConfiguration, &[], Layout::Narrow);
        assert_eq!(conf, "NAME      LOGSEVERITY   MESHENABLED   ASNUMBER\ndefault   Info          true          64512\n");
    }

    #[test]
    fn get_peers_with_selectors_and_ports() {
        let text = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: a}\nspec: {nodeSelector: \"rack == 'r1'\", peerIP: '[fd00::1]:1790', asNumber: 65000}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: b}\nspec: {node: n1, peerSelector: has(rr)}\n";
        let cfg = brindle_model::parse("t.yaml", text).unwrap();
        let out = render_get_table(&cfg, Kind::BgpPeer, &[], Layout::Narrow);
        assert_eq!(
            out,
            "NAME   PEERIP           NODE           ASN\n\
             a      [fd00::1]:1790   rack == 'r1'   65000\n\
             b      has(rr)          n1             (node AS)\n"
        );
    }

    #[test]
    fn get_documents() {
        let cfg = example();
        let list = get_document(&cfg, Kind::Node, &[]);
        assert_eq!(list["kind"], "NodeList");
        assert_eq!(list["apiVersion"], "projectcalico.org/v3");
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        assert_eq!(
            list["items"][0]["spec"]["bgp"]["ipv4Address"],
            "10.0.0.1/24"
        );
        let one = get_document(&cfg, Kind::Node, &["node-b".into()]);
        assert_eq!(one["metadata"]["name"], "node-b");
        assert_eq!(one["kind"], "Node");
        let yaml = to_yaml(&one).unwrap();
        assert!(yaml.contains("ipv4Address: 10.0.0.2/24"), "{yaml}");
        let back = brindle_model::parse("again.yaml", &yaml).unwrap();
        assert_eq!(back.nodes[0], cfg.nodes[1]);
        assert_eq!(
            missing_names(&cfg, Kind::Node, &["node-b".into(), "zz".into()]),
            vec!["zz"]
        );
    }

    #[test]
    fn unreachable_error_text() {
        let e = request(
            Path::new("/nonexistent/status.sock"),
            "status",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot reach brindle-node at /nonexistent/status.sock: no such file or directory (is brindle-node running?)"
        );
    }
}
