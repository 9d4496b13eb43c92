//! `brindlectl`'s logic: the status-socket client and every output format, kept here
//! (not in the binary) so it can be unit-tested.
//!
//! Tables follow calicoctl: `node status` uses boxed tables as olekukonko/tablewriter
//! v0.0.5 draws them (released calicoctl; centred headers, cells wrapped at 30
//! columns), `get` uses Go's tabwriter (minimum width 5, padding 3) with the columns of
//! calicoctl's `resourcemgr/*.go`. `ipam` ([`ipam`]) follows calicoctl's `ipam` commands.

pub mod ipam;
pub mod policy;

use crate::status::NodeStatus;
use brindle_bgp::status::{PeerStatus, RoutesStatus, SessionState};
use brindle_bgp::types::PeerKey;
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

/// Display width of a cell (one column per character: cells here are ASCII).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// olekukonko/tablewriter's `WrapWords`: breaks `words` into lines of at most `lim`
/// columns with minimal raggedness (sum of squared slack; a line longer than `lim`, only
/// possible for a single long word, costs a penalty of 100000 more).
fn wrap_words(words: &[&str], lim: usize) -> Vec<String> {
    let n = words.len();
    let lim = lim as i64;
    // length[i][j]: words i..=j joined by single spaces
    let mut length = vec![vec![0i64; n]; n];
    for i in 0..n {
        length[i][i] = width(words[i]) as i64;
        for j in i + 1..n {
            length[i][j] = length[i][j - 1] + 1 + width(words[j]) as i64;
        }
    }
    let mut nbrk = vec![0usize; n];
    let mut cost = vec![i64::from(i32::MAX); n];
    for i in (0..n).rev() {
        if length[i][n - 1] <= lim {
            cost[i] = 0;
            nbrk[i] = n;
        } else {
            for j in i + 1..n {
                let d = lim - length[i][j - 1];
                let mut c = d * d + cost[j];
                if length[i][j - 1] > lim {
                    c += 100_000;
                }
                if c < cost[i] {
                    cost[i] = c;
                    nbrk[i] = j;
                }
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..nbrk[i]].join(" "));
        i = nbrk[i];
    }
    lines
}

/// tablewriter v0.0.5's `parseDimension` with its defaults (auto-wrap at 30 columns,
/// reflow): the cell's lines and the width it needs.
fn wrap_cell(cell: &str) -> (Vec<String>, usize) {
    const MAX_WIDTH: usize = 30;
    let raw: Vec<&str> = cell.split('\n').collect();
    let max = raw
        .iter()
        .map(|l| width(l))
        .max()
        .unwrap_or(0)
        .min(MAX_WIDTH);
    let para = raw.join(" ");
    // WrapString: split on single spaces; a word longer than the limit widens it
    let words: Vec<&str> = para.split(' ').collect();
    let lim = words.iter().map(|w| width(w)).fold(max, usize::max);
    let lines = wrap_words(&words, lim);
    let w = lines.iter().map(|l| width(l)).fold(max, usize::max);
    (lines, w)
}

/// tablewriter's test for right-aligning a cell ("decimal" numbers such as `65000`).
fn is_decimal(s: &str) -> bool {
    static DECIMAL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$").expect("valid")
    });
    DECIMAL.is_match(s.trim())
}

/// A boxed table as calicoctl's `node status` prints it (olekukonko/tablewriter v0.0.5
/// defaults, as in released calicoctl): headers centred, cells wrapped at 30 columns on
/// word boundaries (a wrapped cell makes its column 30 wide), numbers right-aligned,
/// other cells left-aligned, one space of padding.
pub fn boxed_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| wrap_cell(h).1).collect();
    let cells: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| {
            (0..headers.len())
                .map(|i| {
                    let (lines, w) = wrap_cell(row.get(i).map(String::as_str).unwrap_or(""));
                    widths[i] = widths[i].max(w);
                    lines
                })
                .collect()
        })
        .collect();
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
    for row in &cells {
        let height = row.iter().map(Vec::len).max().unwrap_or(1);
        for x in 0..height {
            out.push('|');
            for (lines, w) in row.iter().zip(&widths) {
                let cell = lines.get(x).map(String::as_str).unwrap_or("");
                let pad = " ".repeat(w - width(cell));
                if is_decimal(cell) {
                    out.push_str(&format!(" {pad}{cell} |"));
                } else {
                    out.push_str(&format!(" {cell}{pad} |"));
                }
            }
            out.push('\n');
        }
    }
    out.push_str(&rule);
    out
}

/// Go's `text/tabwriter` as calicoctl's `get` uses it (`NewWriter(os.Stdout, 5, 1, 3,
/// ' ', 0)`, every cell tab-terminated): each column is as wide as its widest cell plus
/// 3, at least 5, and every cell, the last one included, is padded to it.
pub fn tabwriter(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            out.push_str(cell);
            out.push_str(&" ".repeat((w + 3).max(5) - width(cell)));
        }
        out.push('\n');
    }
    out
}

/// [`tabwriter`] columns without the trailing spaces (Brindle's own tables).
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    tabwriter(headers, rows)
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
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

/// The PEER ADDRESS cell as calicoctl prints it. calicoctl reads it back from BIRD's
/// protocol name (`Node_10_0_0_5_port_1790`), every `_` after the type becoming `.` (IPv4)
/// or `:` (IPv6): a session on a port other than 179 shows as `10.0.0.5.port.1790` /
/// `fd00::5:port:1790`, which is also what tells two sessions to one address apart.
fn calicoctl_peer_address(p: &PeerStatus) -> String {
    if p.peer_port == PeerKey::DEFAULT_PORT {
        return p.peer_address.to_string();
    }
    let sep = if p.peer_address.is_ipv4() { '.' } else { ':' };
    format!("{}{sep}port{sep}{}", p.peer_address, p.peer_port)
}

/// `brindlectl node status` as a table, exactly in calicoctl's layout, then one line
/// for the datastore and one for the dataplane when the agent reports them.
pub fn render_status_table(status: &NodeStatus, now: DateTime<Local>) -> String {
    let mut out = String::from("Brindle process is running.\n");
    for (family, v4) in [("IPv4", true), ("IPv6", false)] {
        out.push_str(&format!("\n{family} BGP status\n"));
        let rows: Vec<Vec<String>> = status
            .bgp
            .peers
            .iter()
            .filter(|p| p.peer_address.is_ipv4() == v4)
            .map(|p| {
                vec![
                    calicoctl_peer_address(p),
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
    if status.datastore.is_some() || status.dataplane.is_some() {
        out.push('\n');
    }
    if let Some(d) = &status.datastore {
        out.push_str(&format!(
            "Datastore: {}, {}, {}",
            d.backend,
            if d.connected {
                "connected"
            } else {
                "not connected"
            },
            if d.in_sync { "in sync" } else { "not in sync" },
        ));
        match &d.last_error {
            Some(e) if !d.connected || !d.in_sync => out.push_str(&format!(", last error: {e}\n")),
            _ => out.push('\n'),
        }
    }
    if let Some(d) = &status.dataplane {
        out.push_str(&format!(
            "Dataplane: {} routes programmed, {} local endpoints, host MTU {}, pod MTU {}, last apply {} ({:.1} ms)\n",
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
                        // `10.0.0.5`, or `10.0.0.5:1790` for a session on another port
                        (false, Some(a)) => {
                            PeerKey::new(a, r.peer_port.unwrap_or(PeerKey::DEFAULT_PORT))
                                .to_string()
                        }
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

/// `brindlectl node routes`: the route tables, then why each service route is
/// advertised (when the agent says).
pub fn render_node_routes(doc: &crate::status::NodeRoutes) -> String {
    let mut out = render_routes_table(&doc.bgp);
    if let Some(s) = &doc.services {
        out.push('\n');
        out.push_str(&render_service_routes_table(s));
    }
    out
}

/// One endpoint as `10.65.1.5 on node-2`.
fn endpoint_text(e: &crate::calc::services::EndpointRef) -> String {
    let addrs: Vec<String> = e.addresses.iter().map(|a| a.to_string()).collect();
    let addrs = if addrs.is_empty() {
        format!("({})", e.slice)
    } else {
        addrs.join(" ")
    };
    match &e.node {
        Some(n) => format!("{addrs} on {n}"),
        None => addrs,
    }
}

/// The service routes of `brindlectl node routes`: one row per reason (a prefix with
/// several reasons takes several rows, its prefix on the first).
pub fn render_service_routes_table(s: &crate::calc::services::ServiceRoutes) -> String {
    use crate::calc::services::{Basis, RouteSource};
    let mut out = String::from("Service routes\n");
    if s.excluded {
        out.push_str(&format!(
            "This node has the label {}=true: it advertises no service address.\n",
            brindle_model::kubernetes::EXCLUDE_FROM_LB_LABEL
        ));
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in &s.advertise {
        for (i, src) in r.sources.iter().enumerate() {
            let prefix = if i == 0 {
                r.prefix.to_string()
            } else {
                String::new()
            };
            rows.push(match src {
                RouteSource::Range { field } => vec![
                    prefix,
                    format!("{} range", field.as_str()),
                    String::new(),
                    "(every node)".to_string(),
                ],
                RouteSource::Service {
                    service,
                    address,
                    policy,
                    basis,
                } => {
                    let why = match basis {
                        Basis::LocalEndpoints { endpoints, more }
                        | Basis::ReadyEndpoints { endpoints, more } => {
                            let mut v: Vec<String> = endpoints.iter().map(endpoint_text).collect();
                            if *more > 0 {
                                v.push(format!("+{more} more"));
                            }
                            v.join(", ")
                        }
                        Basis::SingleAddress { field } => {
                            format!("(every node: single address in {})", field.as_str())
                        }
                    };
                    vec![
                        prefix,
                        format!("{service} {}", address.as_str()),
                        if policy.is_empty() { "-" } else { policy }.to_string(),
                        why,
                    ]
                }
            });
        }
    }
    if rows.is_empty() {
        out.push_str("No service routes advertised.\n");
    } else {
        out.push_str(&boxed_table(
            &["PREFIX", "SOURCE", "POLICY", "ENDPOINTS"],
            &rows,
        ));
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

/// The resource as written (for fields calicoctl prints as stored).
fn raw<'a>(cfg: &'a ClusterConfig, kind: Kind, name: &str) -> Option<&'a serde_json::Value> {
    cfg.resources
        .iter()
        .find(|r| r.kind == kind && r.name == name)
        .map(|r| &r.json)
}

/// `brindlectl get <kind>` as calicoctl prints it: the columns of calicoctl's
/// `resourcemgr/<kind>.go` (narrow or `-o wide`), its cell templates (`-` where they
/// print one for an unset field), through Go's tabwriter, then an empty line.
/// `names` filters by name (empty: all). BlockAffinity, which calicoctl does not list,
/// has Brindle's own columns.
pub fn render_get_table(
    cfg: &ClusterConfig,
    kind: Kind,
    names: &[String],
    layout: Layout,
) -> String {
    render_get_table_with(cfg, kind, names, layout, None)
}

/// [`render_get_table`], with this node's policy counters (from the agent's status) for
/// the PACKETS and BYTES columns `-o wide` adds to network policies after calicoctl's
/// (`-` when the agent did not answer or does not program the policy).
pub fn render_get_table_with(
    cfg: &ClusterConfig,
    kind: Kind,
    names: &[String],
    layout: Layout,
    counters: Option<&[crate::status::PolicyCounter]>,
) -> String {
    let wanted = |n: &str| names.is_empty() || names.iter().any(|x| x == n);
    let wide = layout == Layout::Wide;
    let (headers, rows): (Vec<&str>, Vec<Vec<String>>) = match kind {
        // resourcemgr/bgppeer.go: the same columns narrow and wide
        Kind::BgpPeer => {
            let rows = cfg
                .bgp_peers
                .iter()
                .filter(|p| wanted(&p.name))
                .map(|p| {
                    // {{.Spec.PeerIP}}: the address (and port) as stored, "" for a peerSelector
                    let peer = match (p.peer_ip, p.peer_port) {
                        (Some(IpAddr::V6(v6)), Some(port)) => format!("[{v6}]:{port}"),
                        (Some(ip), Some(port)) => format!("{ip}:{port}"),
                        (Some(ip), None) => ip.to_string(),
                        (None, _) => String::new(),
                    };
                    let node = match (&p.node, &p.node_selector) {
                        (Some(n), _) if !n.is_empty() => n.clone(),
                        (_, Some(sel)) if !sel.as_str().is_empty() => sel.as_str().to_string(),
                        _ => "(global)".to_string(),
                    };
                    // {{.Spec.ASNumber}} is not a pointer: 0 when unset
                    let asn = p.as_number.unwrap_or(0).to_string();
                    vec![p.name.clone(), peer, node, asn]
                })
                .collect();
            (vec!["NAME", "PEERIP", "NODE", "ASN"], rows)
        }
        // resourcemgr/node.go
        Kind::Node => {
            let nodes = cfg.nodes.iter().filter(|n| wanted(&n.name));
            if wide {
                let rows = nodes
                    .map(|n| {
                        // every column is empty for a node without spec.bgp
                        let has_bgp = raw(cfg, Kind::Node, &n.name)
                            .is_none_or(|j| j.pointer("/spec/bgp").is_some_and(|b| !b.is_null()));
                        let (asn, inherited) = cfg.node_as_number(n);
                        let cell = |v: Option<String>| {
                            if has_bgp {
                                v.unwrap_or_default()
                            } else {
                                String::new()
                            }
                        };
                        vec![
                            n.name.clone(),
                            cell(Some(if inherited {
                                format!("({asn})")
                            } else {
                                asn.to_string()
                            })),
                            cell(n.ipv4_address.map(|a| a.to_string())),
                            cell(n.ipv6_address.map(|a| a.to_string())),
                        ]
                    })
                    .collect();
                (vec!["NAME", "ASN", "IPV4", "IPV6"], rows)
            } else {
                (vec!["NAME"], nodes.map(|n| vec![n.name.clone()]).collect())
            }
        }
        // resourcemgr/ippool.go (pools as Calico stores them: nodeSelector defaults to
        // all(), assignmentMode to Automatic)
        Kind::IpPool => {
            let pools = cfg.ip_pools.iter().filter(|p| wanted(&p.name));
            if wide {
                let rows = pools
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
                            format!("{:?}", p.assignment_mode),
                        ]
                    })
                    .collect();
                let h = vec![
                    "NAME",
                    "CIDR",
                    "NAT",
                    "IPIPMODE",
                    "VXLANMODE",
                    "DISABLED",
                    "DISABLEBGPEXPORT",
                    "SELECTOR",
                    "ASSIGNMENTMODE",
                ];
                (h, rows)
            } else {
                let rows = pools
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.cidr.to_string(),
                            p.node_selector.as_str().to_string(),
                        ]
                    })
                    .collect();
                (vec!["NAME", "CIDR", "SELECTOR"], rows)
            }
        }
        // resourcemgr/ipamconfiguration.go
        Kind::IpamConfig => {
            let configs = cfg.ipam_config.iter().filter(|c| wanted(&c.name));
            let rows = configs
                .map(|c| {
                    let mut row = vec![
                        c.name.clone(),
                        c.strict_affinity.to_string(),
                        c.auto_allocate_blocks.to_string(),
                    ];
                    if wide {
                        row.push(c.max_blocks_per_host.to_string());
                    }
                    row
                })
                .collect();
            let mut h = vec!["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS"];
            if wide {
                h.push("MAXBLOCKSPERHOST");
            }
            (h, rows)
        }
        // not a calicoctl resource: Brindle's columns
        Kind::BlockAffinity => {
            let blocks = cfg.block_affinities.iter().filter(|b| wanted(&b.name));
            if wide {
                let rows = blocks
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
                (vec!["NAME", "NODE", "CIDR", "STATE", "DELETED"], rows)
            } else {
                let rows = blocks
                    .map(|b| vec![b.name.clone(), b.node.clone(), b.cidr.to_string()])
                    .collect();
                (vec!["NAME", "NODE", "CIDR"], rows)
            }
        }
        // resourcemgr/bgpconfig.go: "-" for an unset nodeToNodeMeshEnabled or asNumber
        Kind::BgpConfiguration => {
            let rows = cfg
                .bgp_configurations
                .iter()
                .filter(|c| wanted(&c.name))
                .map(|c| {
                    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
                    vec![
                        c.name.clone(),
                        c.log_severity_screen.clone().unwrap_or_default(),
                        dash(c.node_to_node_mesh_enabled.map(|b| b.to_string())),
                        dash(c.as_number.map(|a| a.to_string())),
                    ]
                })
                .collect();
            (vec!["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"], rows)
        }
        // resourcemgr/networkpolicy.go, globalnetworkpolicy.go (NAMESPACE as with -A)
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy => {
            let global = kind == Kind::GlobalNetworkPolicy;
            let list = if global {
                &cfg.global_network_policies
            } else {
                &cfg.network_policies
            };
            let rows = list
                .iter()
                .filter(|p| wanted(&p.name))
                .map(|p| {
                    let mut row = Vec::new();
                    if !global {
                        row.push(p.namespace.clone().unwrap_or_default());
                    }
                    row.push(p.name.clone());
                    row.push(p.tier.clone());
                    if wide {
                        row.push(p.order.map(|o| o.to_string()).unwrap_or_default());
                        row.push(p.selector.as_str().to_string());
                        let id = match &p.namespace {
                            Some(ns) => format!("NetworkPolicy {ns}/{}", p.name),
                            None => format!("GlobalNetworkPolicy {}", p.name),
                        };
                        let mine: Vec<_> = counters
                            .unwrap_or_default()
                            .iter()
                            .filter(|c| c.policy == id)
                            .collect();
                        if mine.is_empty() {
                            row.extend(["-".to_string(), "-".to_string()]);
                        } else {
                            row.push(mine.iter().map(|c| c.packets).sum::<u64>().to_string());
                            row.push(mine.iter().map(|c| c.bytes).sum::<u64>().to_string());
                        }
                    }
                    row
                })
                .collect();
            let mut headers = if global { vec![] } else { vec!["NAMESPACE"] };
            headers.extend(["NAME", "TIER"]);
            if wide {
                headers.extend(["ORDER", "SELECTOR", "PACKETS", "BYTES"]);
            }
            (headers, rows)
        }
        // resourcemgr/hostendpoint.go
        Kind::HostEndpoint => {
            let rows = cfg
                .host_endpoints
                .iter()
                .filter(|h| wanted(&h.name))
                .map(|h| {
                    let mut row = vec![h.name.clone(), h.node.clone()];
                    if wide {
                        row.push(h.interface_name.clone());
                        row.push(
                            h.expected_ips
                                .iter()
                                .map(|ip| ip.to_string())
                                .collect::<Vec<_>>()
                                .join(","),
                        );
                        row.push(h.profiles.join(","));
                    }
                    row
                })
                .collect();
            let mut headers = vec!["NAME", "NODE"];
            if wide {
                headers.extend(["INTERFACE", "IPS", "PROFILES"]);
            }
            (headers, rows)
        }
        other => {
            let rows = cfg
                .resources
                .iter()
                .filter(|r| r.kind == other && wanted(&r.name))
                .map(|r| match &r.namespace {
                    Some(ns) => vec![ns.clone(), r.name.clone()],
                    None => vec![r.name.clone()],
                })
                .collect();
            if other.namespaced() {
                (vec!["NAMESPACE", "NAME"], rows)
            } else {
                (vec!["NAME"], rows)
            }
        }
    };
    let mut out = tabwriter(&headers, &rows);
    out.push('\n');
    out
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
    use crate::status::{DataplaneStatus, DatastoreStatus};
    use brindle_bgp::status::{PeerStatus, PeerType, RouteStatus, SpeakerStatus};
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
            import_errors: Default::default(),
        }
    }

    fn node(peers: Vec<PeerStatus>) -> NodeStatus {
        NodeStatus {
            bgp: SpeakerStatus {
                peers,
                ..SpeakerStatus::default()
            },
            ..NodeStatus::default()
        }
    }

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
    }

    #[test]
    fn status_table_matches_calicoctl() {
        let now = local(2024, 5, 1, 23, 45, 0);
        let since = local(2024, 5, 1, 23, 30, 4).to_rfc3339();
        let status = node(vec![peer(
            "172.17.8.102",
            PeerType::NodeMesh,
            SessionState::Established,
            &since,
            "Established",
        )]);
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
        let status = node(vec![
            peer(
                "10.0.0.254",
                PeerType::Global,
                SessionState::Active,
                &old,
                "Active Socket: Host is unreachable",
            ),
            peer(
                "10.0.0.3",
                PeerType::NodeMesh,
                SessionState::Active,
                &old,
                "Passive",
            ),
            peer(
                "fd00::2",
                PeerType::NodeSpecific,
                SessionState::Established,
                &old,
                "Established",
            ),
        ]);
        let out = render_status_table(&status, now);
        // INFO longer than 30 columns wraps as tablewriter wraps it (the column is then 30 wide)
        let expected_v4 = "\
IPv4 BGP status
+--------------+-------------------+-------+------------+--------------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |              INFO              |
+--------------+-------------------+-------+------------+--------------------------------+
| 10.0.0.254   | global            | start | 2024-04-28 | Active Socket: Host is         |
|              |                   |       |            | unreachable                    |
| 10.0.0.3     | node-to-node mesh | start | 2024-04-28 | Passive                        |
+--------------+-------------------+-------+------------+--------------------------------+
";
        assert!(out.contains(expected_v4), "{out}");
        assert!(
            out.contains("| fd00::2      | node specific | up    | 2024-04-28 | Established |"),
            "{out}"
        );
        assert!(!out.contains("No IPv6 peers found."));
        let empty = render_status_table(&NodeStatus::default(), now);
        assert!(empty.contains(
            "IPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\nNo IPv6 peers found.\n"
        ));
        assert_eq!(format_since("garbage", now), "garbage");
    }

    #[test]
    fn sessions_to_one_address_on_two_ports_read_as_calicoctl() {
        let mut a = peer(
            "10.0.0.5",
            PeerType::Global,
            SessionState::Established,
            "",
            "",
        );
        let mut b = a.clone();
        b.peer_port = 1790;
        assert_eq!(calicoctl_peer_address(&a), "10.0.0.5");
        assert_eq!(calicoctl_peer_address(&b), "10.0.0.5.port.1790");
        a.peer_address = "fd00::5".parse().unwrap();
        a.peer_port = 1790;
        assert_eq!(calicoctl_peer_address(&a), "fd00::5:port:1790");
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
    fn cells_wrap_like_tablewriter() {
        // as in calicoctl node status output seen in the wild
        assert_eq!(
            wrap_cell("Active Socket: Connection refused"),
            (
                vec![
                    "Active Socket: Connection".to_string(),
                    "refused".to_string()
                ],
                30
            )
        );
        assert_eq!(
            wrap_cell("Connect Socket: Connection refused").0,
            vec!["Connect Socket: Connection", "refused"]
        );
        assert_eq!(
            wrap_cell("Established"),
            (vec!["Established".to_string()], 11)
        );
        assert_eq!(wrap_cell(""), (vec![String::new()], 0));
        // a word longer than 30 columns keeps its line and widens the column
        let long = "x".repeat(35);
        assert_eq!(
            wrap_cell(&format!("a {long}")),
            (vec!["a".to_string(), long], 35)
        );
        let t = boxed_table(
            &["N", "INFO"],
            &[vec![
                "65000".into(),
                "Idle BGP Error: Hold timer expired".into(),
            ]],
        );
        assert_eq!(
            t,
            "+-------+--------------------------------+\n\
             |   N   |              INFO              |\n\
             +-------+--------------------------------+\n\
             | 65000 | Idle BGP Error: Hold timer     |\n\
             |       | expired                        |\n\
             +-------+--------------------------------+\n"
        );
        assert!(
            is_decimal("65000")
                && is_decimal("1,234.5")
                && !is_decimal("10.0.0.1")
                && !is_decimal("")
        );
    }

    #[test]
    fn datastore_and_dataplane_lines() {
        let now = local(2024, 5, 1, 12, 0, 0);
        let mut status = node(vec![]);
        status.datastore = Some(DatastoreStatus {
            backend: "kubernetes".into(),
            connected: false,
            in_sync: true,
            last_error: Some("connection refused".into()),
        });
        status.dataplane = Some(DataplaneStatus {
            routes_programmed: 3,
            local_endpoints: 2,
            host_mtu: 1500,
            pod_mtu: 1500,
            last_apply: local(2024, 5, 1, 11, 59, 0).to_rfc3339(),
            last_apply_millis: 1.5,
            warnings: vec!["rp_filter".into()],
            errors: vec![],
            policy_counters: vec![],
        });
        let out = render_status_table(&status, now);
        assert!(
            out.ends_with(
                "No IPv6 peers found.\n\n\
                 Datastore: kubernetes, not connected, in sync, last error: connection refused\n\
                 Dataplane: 3 routes programmed, 2 local endpoints, host MTU 1500, pod MTU 1500, last apply 11:59:00 (1.5 ms)\n\
                 WARNING: rp_filter\n"
            ),
            "{out}"
        );
        let d = status.datastore.as_mut().unwrap();
        d.connected = true;
        status.dataplane = None;
        let out = render_status_table(&status, now);
        assert!(
            out.ends_with("No IPv6 peers found.\n\nDatastore: kubernetes, connected, in sync\n"),
            "{out}"
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
                    peer_port: Some(179),
                    as_path: vec![],
                    local_pref: Some(100),
                    med: None,
                    communities: vec!["64512:100".into()],
                    best: true,
                    local: false,
                    originator_id: None,
                    cluster_list: vec![],
                },
                RouteStatus {
                    prefix: "10.65.0.0/26".into(),
                    next_hop: String::new(),
                    peer_address: None,
                    peer_port: None,
                    as_path: vec![],
                    local_pref: None,
                    med: None,
                    communities: vec![],
                    best: true,
                    local: true,
                    originator_id: None,
                    cluster_list: vec![],
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

    #[test]
    fn service_routes_table_says_why() {
        use crate::calc::services::*;
        let routes = ServiceRoutes {
            advertise: vec![
                ServiceRoute {
                    prefix: "10.96.0.0/12".parse().unwrap(),
                    sources: vec![RouteSource::Range {
                        field: RangeField::ClusterIps,
                    }],
                },
                ServiceRoute {
                    prefix: "192.0.2.10/32".parse().unwrap(),
                    sources: vec![
                        RouteSource::Service {
                            service: "office/web".into(),
                            address: AddressKind::ExternalIp,
                            policy: "Local".into(),
                            basis: Basis::LocalEndpoints {
                                endpoints: vec![EndpointRef {
                                    slice: "web-1".into(),
                                    addresses: vec!["10.65.0.70".parse().unwrap()],
                                    node: Some("node-2".into()),
                                }],
                                more: 2,
                            },
                        },
                        RouteSource::Service {
                            service: "office/api".into(),
                            address: AddressKind::ExternalIp,
                            policy: "Cluster".into(),
                            basis: Basis::SingleAddress {
                                field: RangeField::ExternalIps,
                            },
                        },
                    ],
                },
            ],
            kernel_reject: vec![],
            excluded: false,
        };
        let out = render_service_routes_table(&routes);
        assert!(out.starts_with("Service routes\n+"), "{out}");
        assert!(
            out.contains("| 10.96.0.0/12  | serviceClusterIPs range"),
            "{out}"
        );
        assert!(
            out.contains("| 192.0.2.10/32 | office/web externalIP"),
            "{out}"
        );
        assert!(out.contains("10.65.0.70 on node-2, +2 more"), "{out}");
        assert!(
            out.contains("|               | office/api externalIP"),
            "{out}"
        );
        let none = render_service_routes_table(&ServiceRoutes {
            excluded: true,
            ..Default::default()
        });
        assert_eq!(
            none,
            "Service routes\nThis node has the label node.kubernetes.io/exclude-from-external-load-balancers=true: it advertises no service address.\nNo service routes advertised.\n"
        );
    }

    fn example() -> ClusterConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/calico-basic.yaml");
        brindle_model::load(&path).unwrap()
    }

    /// A table without the tabwriter's trailing padding (compared line by line).
    fn trimmed(t: &str) -> String {
        t.lines().map(|l| format!("{}\n", l.trim_end())).collect()
    }

    #[test]
    fn get_is_tabwriter_exact() {
        let cfg = example();
        // every cell is tab-terminated in calicoctl's template, so the last column is
        // padded too; an empty line follows the table
        assert_eq!(
            render_get_table(&cfg, Kind::BgpPeer, &[], Layout::Narrow),
            "NAME          PEERIP       NODE       ASN     \n\
             home-router   10.0.0.254   (global)   65000   \n\n"
        );
        assert_eq!(
            render_get_table(&cfg, Kind::Node, &[], Layout::Narrow),
            "NAME     \nnode-a   \nnode-b   \n\n"
        );
        assert_eq!(tabwriter(&["A"], &[vec!["".into()]]), "A    \n     \n");
    }

    #[test]
    fn get_host_endpoints_with_calicoctls_columns() {
        let cfg = brindle_model::parse(
            "h.yaml",
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: n1-eth0}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.1, 'fd00::1'], profiles: [projectcalico-default-allow]}\n",
        )
        .unwrap();
        let get = |l| trimmed(&render_get_table(&cfg, Kind::HostEndpoint, &[], l));
        assert_eq!(get(Layout::Narrow), "NAME      NODE\nn1-eth0   n1\n\n");
        assert_eq!(
            get(Layout::Wide),
            "NAME      NODE   INTERFACE   IPS                 PROFILES\n\
             n1-eth0   n1     eth0        192.0.2.1,fd00::1   projectcalico-default-allow\n\n"
        );
    }

    #[test]
    fn get_policies_with_calicoctls_columns() {
        let cfg = brindle_model::parse(
            "p.yaml",
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: allow-web, namespace: shop}\nspec: {order: 100, selector: app == 'db', ingress: [{action: Allow}]}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-all}\nspec: {selector: all(), types: [Ingress]}\n",
        )
        .unwrap();
        let get = |k, l| trimmed(&render_get_table(&cfg, k, &[], l));
        assert_eq!(
            get(Kind::NetworkPolicy, Layout::Narrow),
            "NAMESPACE   NAME        TIER\nshop        allow-web   default\n\n"
        );
        assert_eq!(
            get(Kind::GlobalNetworkPolicy, Layout::Wide),
            "NAME       TIER      ORDER   SELECTOR   PACKETS   BYTES\ndeny-all   default           all()      -         -\n\n"
        );
        let counters = [
            crate::status::PolicyCounter {
                policy: "NetworkPolicy shop/allow-web".into(),
                direction: "ingress".into(),
                packets: 7,
                bytes: 420,
            },
            crate::status::PolicyCounter {
                policy: "NetworkPolicy shop/allow-web".into(),
                direction: "egress".into(),
                packets: 1,
                bytes: 60,
            },
        ];
        assert_eq!(
            trimmed(&render_get_table_with(
                &cfg,
                Kind::NetworkPolicy,
                &[],
                Layout::Wide,
                Some(&counters)
            )),
            "NAMESPACE   NAME        TIER      ORDER   SELECTOR      PACKETS   BYTES\n\
             shop        allow-web   default   100     app == 'db'   8         480\n\n"
        );
    }

    #[test]
    fn policy_counters_sum_per_policy_and_direction() {
        let rules: std::collections::BTreeMap<String, (u64, u64)> = [
            ("NetworkPolicy shop/a ingress rule 0".to_string(), (2, 100)),
            ("NetworkPolicy shop/a ingress rule 1".to_string(), (3, 50)),
            ("NetworkPolicy shop/a egress rule 0".to_string(), (1, 10)),
            ("GlobalNetworkPolicy g ingress rule 0".to_string(), (0, 0)),
        ]
        .into();
        let c = crate::status::policy_counters(rules.iter());
        let flat: Vec<_> = c
            .iter()
            .map(|c| (c.policy.as_str(), c.direction.as_str(), c.packets, c.bytes))
            .collect();
        assert_eq!(
            flat,
            vec![
                ("GlobalNetworkPolicy g", "ingress", 0, 0),
                ("NetworkPolicy shop/a", "egress", 1, 10),
                ("NetworkPolicy shop/a", "ingress", 5, 150),
            ]
        );
    }

    #[test]
    fn get_tables() {
        let cfg = example();
        let get = |k, l| trimmed(&render_get_table(&cfg, k, &[], l));
        assert_eq!(
            get(Kind::BgpPeer, Layout::Wide),
            "NAME          PEERIP       NODE       ASN\nhome-router   10.0.0.254   (global)   65000\n\n"
        );
        assert_eq!(
            get(Kind::Node, Layout::Wide),
            "NAME     ASN       IPV4          IPV6\n\
             node-a   (64512)   10.0.0.1/24   fd00:10::1/64\n\
             node-b   (64512)   10.0.0.2/24   fd00:10::2/64\n\n"
        );
        assert_eq!(
            get(Kind::IpPool, Layout::Narrow),
            "NAME                  CIDR           SELECTOR\ndefault-ipv4-ippool   10.65.0.0/16   all()\n\n"
        );
        assert_eq!(
            get(Kind::IpPool, Layout::Wide),
            "NAME                  CIDR           NAT    IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR   ASSIGNMENTMODE\n\
             default-ipv4-ippool   10.65.0.0/16   true   Never      Never       false      false              all()      Automatic\n\n"
        );
        let blocks = trimmed(&render_get_table(
            &cfg,
            Kind::BlockAffinity,
            &["node-b-10-65-0-64-26".into()],
            Layout::Narrow,
        ));
        assert_eq!(
            blocks,
            "NAME                   NODE     CIDR\nnode-b-10-65-0-64-26   node-b   10.65.0.64/26\n\n"
        );
        let wide = get(Kind::BlockAffinity, Layout::Wide);
        assert!(wide.contains("confirmed   false"), "{wide}");
        assert_eq!(
            get(Kind::BgpConfiguration, Layout::Narrow),
            "NAME      LOGSEVERITY   MESHENABLED   ASNUMBER\ndefault   Info          true          64512\n\n"
        );
        assert_eq!(
            get(Kind::IpamConfig, Layout::Wide),
            "NAME   STRICTAFFINITY   AUTOALLOCATEBLOCKS   MAXBLOCKSPERHOST\n\n"
        );
    }

    #[test]
    fn get_unset_cells_as_calicoctl() {
        let text = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: a}\nspec: {nodeSelector: \"rack == 'r1'\", peerIP: '[fd00::1]:1790', asNumber: 65000}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: b}\nspec: {node: n1, peerSelector: has(rr)}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.0.0.1/24, asNumber: 65001}}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n2}\nspec: {}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {name: default}\nspec: {strictAffinity: true, maxBlocksPerHost: 4}\n";
        let cfg = brindle_model::parse("t.yaml", text).unwrap();
        let get = |k, l| trimmed(&render_get_table(&cfg, k, &[], l));
        // PEERIP is empty for a peerSelector; ASN is 0 when unset ({{.Spec.ASNumber}})
        assert_eq!(
            get(Kind::BgpPeer, Layout::Narrow),
            "NAME   PEERIP           NODE           ASN\n\
             a      [fd00::1]:1790   rack == 'r1'   65000\n\
             b                       n1             0\n\n"
        );
        assert_eq!(
            get(Kind::BgpConfiguration, Layout::Narrow),
            "NAME      LOGSEVERITY   MESHENABLED   ASNUMBER\ndefault                 -             -\n\n"
        );
        // a node without spec.bgp has empty cells; the default AS is 64512
        assert_eq!(
            get(Kind::Node, Layout::Wide),
            "NAME   ASN     IPV4          IPV6\nn1     65001   10.0.0.1/24\nn2\n\n"
        );
        assert_eq!(
            get(Kind::IpamConfig, Layout::Narrow),
            "NAME      STRICTAFFINITY   AUTOALLOCATEBLOCKS\ndefault   true             true\n\n"
        );
        assert_eq!(
            get(Kind::IpamConfig, Layout::Wide),
            "NAME      STRICTAFFINITY   AUTOALLOCATEBLOCKS   MAXBLOCKSPERHOST\ndefault   true             true                 4\n\n"
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
