//! The network-policy truth table (issue 8): two brindle-node agents in file mode on one
//! LAN, three namespaces × three labelled pods made by `brindle-cni ADD`, each pod with
//! TCP and UDP listeners on ports 80 and 5432. For every policy set (Kubernetes
//! NetworkPolicy, Calico NetworkPolicy and GlobalNetworkPolicy; updates and deletions
//! between sets) every (source pod, destination pod, port, protocol) is probed with real
//! connections and compared with an oracle written here, from the structures the YAML is
//! rendered from (not brindle_policies), and with brindle_policies' evaluator.
//!
//! ```text
//!   node-a 10.61.0.1 (block 10.65.0.0/26)   a1 a3 b2 c1 c3
//!   node-b 10.61.0.2 (block 10.65.0.64/26)  a2 b1 b3 c2          (BGP mesh, one switch)
//! ```

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const AS: u32 = 64512;
const POOL: &str = "10.65.0.0/16";
const BLOCK_A: &str = "10.65.0.0/26";
const BLOCK_B: &str = "10.65.0.64/26";
const CNI: &str = env!("CARGO_BIN_EXE_brindle-cni");
const PORTS: [u16; 2] = [80, 5432];
/// Denied TCP connects and UDP requests give up after this.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Sockets inside a namespace
// ---------------------------------------------------------------------------------------------

/// Moves the calling thread into network namespace `ns` (only this thread).
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
}

/// TCP and UDP listeners on [`PORTS`] in one pod; stopped (and closed) on drop.
struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Listeners {
    fn start(ns: &str) -> Listeners {
        let (tcp, udp) = in_ns(ns, || {
            let any = Ipv4Addr::UNSPECIFIED;
            let tcp: Vec<TcpListener> = PORTS
                .iter()
                .map(|p| TcpListener::bind((any, *p)).unwrap())
                .collect();
            let udp: Vec<UdpSocket> = PORTS
                .iter()
                .map(|p| UdpSocket::bind((any, *p)).unwrap())
                .collect();
            (tcp, udp)
        })
        .join()
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for l in tcp {
            let stop = stop.clone();
            l.set_nonblocking(true).unwrap();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => drop(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        for u in udp {
            let stop = stop.clone();
            u.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = u.recv_from(&mut buf) {
                        let _ = u.send_to(&buf[..n], from);
                    }
                }
            }));
        }
        Listeners { stop, threads }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
    fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// One real connection from inside `ns` (the calling thread must be in it). UDP binds
/// `sport` so that a probe never reuses a conntrack entry of an earlier set.
fn probe_here(dst: Ipv4Addr, port: u16, proto: Proto, sport: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((dst, port));
    match proto {
        Proto::Tcp => TcpStream::connect_timeout(&addr, timeout).is_ok(),
        Proto::Udp => {
            let s = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, sport)) {
                Ok(s) => s,
                Err(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap(),
            };
            s.set_read_timeout(Some(timeout)).unwrap();
            if s.send_to(b"probe", addr).is_err() {
                return false;
            }
            let mut buf = [0u8; 16];
            matches!(s.recv_from(&mut buf), Ok((5, _)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The world: namespaces and pods
// ---------------------------------------------------------------------------------------------

type Labels = BTreeMap<String, String>;

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct NsInfo {
    name: &'static str,
    labels: Labels,
}

/// A pod as the oracle sees it.
#[derive(Clone)]
struct PodInfo {
    name: String,
    ns: &'static str,
    node: &'static str,
    ip: Ipv4Addr,
    labels: Labels,
    /// (name, protocol, port) of its container ports.
    named: Vec<(&'static str, Proto, u16)>,
}

fn ns_infos() -> Vec<NsInfo> {
    [
        ("a", "red", "prod"),
        ("b", "blue", "prod"),
        ("c", "red", "dev"),
    ]
    .iter()
    .map(|(n, team, env)| {
        let mut l = labels(&[("team", team), ("env", env)]);
        l.insert("kubernetes.io/metadata.name".into(), n.to_string());
        NsInfo { name: n, labels: l }
    })
    .collect()
}

/// Container ports by app: the same name means a different port on some pods.
fn named_ports(app: &str) -> Vec<(&'static str, Proto, u16)> {
    match app {
        "web" => vec![
            ("http", Proto::Tcp, 80),
            ("alt", Proto::Tcp, 5432),
            ("echo", Proto::Udp, 80),
        ],
        "api" => vec![
            ("http", Proto::Tcp, 5432),
            ("alt", Proto::Tcp, 80),
            ("echo", Proto::Udp, 80),
        ],
        _ => vec![
            ("http", Proto::Tcp, 80),
            ("pg", Proto::Tcp, 5432),
            ("echo", Proto::Udp, 5432),
        ],
    }
}

fn pod_docs(nss: &[NsInfo], pods: &[PodInfo]) -> String {
    let mut s = String::new();
    for n in nss {
        let mut l = n.labels.clone();
        l.remove("kubernetes.io/metadata.name");
        let d = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": n.name, "labels": l}});
        s.push_str(&format!("---\n{d}\n"));
    }
    for p in pods {
        let ports: Vec<Value> = p
            .named
            .iter()
            .map(|(n, pr, port)| json!({"name": n, "containerPort": port, "protocol": pr.name()}))
            .collect();
        let d = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.ns, "labels": p.labels},
            "spec": {"nodeName": p.node, "containers": [{"name": "main", "image": "x", "ports": ports}]},
            "status": {"phase": "Running", "podIP": p.ip.to_string()}});
        s.push_str(&format!("---\n{d}\n"));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Policies: the structures the YAML is written from, and the oracle on them
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    In,
    Out,
}

fn dir_name(d: Dir) -> &'static str {
    match d {
        Dir::In => "Ingress",
        Dir::Out => "Egress",
    }
}

/// A Kubernetes label selector.
#[derive(Clone, Default)]
struct Ls {
    ml: Vec<(&'static str, &'static str)>,
    /// (key, operator, values)
    ex: Vec<(&'static str, &'static str, Vec<&'static str>)>,
}

fn ls(ml: &[(&'static str, &'static str)]) -> Ls {
    Ls {
        ml: ml.to_vec(),
        ex: vec![],
    }
}

fn lsx(key: &'static str, op: &'static str, vals: &[&'static str]) -> Ls {
    Ls {
        ml: vec![],
        ex: vec![(key, op, vals.to_vec())],
    }
}

impl Ls {
    fn matches(&self, l: &Labels) -> bool {
        self.ml
            .iter()
            .all(|(k, v)| l.get(*k).map(|s| s.as_str()) == Some(*v))
            && self.ex.iter().all(|(k, op, vals)| {
                let got = l.get(*k);
                match *op {
                    "In" => got.is_some_and(|g| vals.contains(&g.as_str())),
                    "NotIn" => !got.is_some_and(|g| vals.contains(&g.as_str())),
                    "Exists" => got.is_some(),
                    "DoesNotExist" => got.is_none(),
                    _ => panic!("operator {op}"),
                }
            })
    }
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if !self.ml.is_empty() {
            let ml: serde_json::Map<String, Value> = self
                .ml
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            m.insert("matchLabels".into(), Value::Object(ml));
        }
        if !self.ex.is_empty() {
            let ex: Vec<Value> = self
                .ex
                .iter()
                .map(|(k, op, vals)| {
                    if vals.is_empty() {
                        json!({"key": k, "operator": op})
                    } else {
                        json!({"key": k, "operator": op, "values": vals})
                    }
                })
                .collect();
            m.insert("matchExpressions".into(), Value::Array(ex));
        }
        Value::Object(m)
    }
}

#[derive(Clone)]
enum KPeer {
    Sel { pod: Option<Ls>, ns: Option<Ls> },
    Block { cidr: String, except: Vec<String> },
}

#[derive(Clone, Copy)]
enum PortRef {
    Num(u16),
    Name(&'static str),
}

#[derive(Clone)]
struct KPort {
    proto: Option<Proto>,
    port: Option<PortRef>,
    end: Option<u16>,
}

#[derive(Clone)]
struct KRule {
    /// None: the field is absent (every peer).
    peers: Option<Vec<KPeer>>,
    /// None: absent (every port).
    ports: Option<Vec<KPort>>,
}

#[derive(Clone)]
struct Knp {
    name: &'static str,
    ns: &'static str,
    sel: Ls,
    types: Option<Vec<Dir>>,
    ingress: Option<Vec<KRule>>,
    egress: Option<Vec<KRule>>,
}

/// A Calico selector (rendered to Calico's expression language).
#[derive(Clone)]
enum CSel {
    All,
    Eq(&'static str, &'static str),
    Ne(&'static str, &'static str),
    Has(&'static str),
    NotHas(&'static str),
    In(&'static str, Vec<&'static str>),
    And(Vec<CSel>),
    Or(Vec<CSel>),
}

impl CSel {
    fn matches(&self, l: &Labels) -> bool {
        let get = |k: &str| l.get(k).map(|s| s.as_str());
        match self {
            CSel::All => true,
            CSel::Eq(k, v) => get(k) == Some(*v),
            CSel::Ne(k, v) => get(k) != Some(*v),
            CSel::Has(k) => get(k).is_some(),
            CSel::NotHas(k) => get(k).is_none(),
            CSel::In(k, vs) => get(k).is_some_and(|g| vs.contains(&g)),
            CSel::And(v) => v.iter().all(|s| s.matches(l)),
            CSel::Or(v) => v.iter().any(|s| s.matches(l)),
        }
    }
    fn text(&self) -> String {
        match self {
            CSel::All => "all()".into(),
            CSel::Eq(k, v) => format!("{k} == '{v}'"),
            CSel::Ne(k, v) => format!("{k} != '{v}'"),
            CSel::Has(k) => format!("has({k})"),
            CSel::NotHas(k) => format!("!has({k})"),
            CSel::In(k, vs) => format!(
                "{k} in {{{}}}",
                vs.iter()
                    .map(|v| format!("'{v}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            CSel::And(v) => v
                .iter()
                .map(|s| format!("({})", s.text()))
                .collect::<Vec<_>>()
                .join(" && "),
            CSel::Or(v) => v
                .iter()
                .map(|s| format!("({})", s.text()))
                .collect::<Vec<_>>()
                .join(" || "),
        }
    }
}

#[derive(Clone, Copy)]
enum CPort {
    Num(u16),
    Range(u16, u16),
    Name(&'static str),
}

#[derive(Clone, Default)]
struct CEnt {
    sel: Option<CSel>,
    ns_sel: Option<CSel>,
    nets: Vec<String>,
    not_nets: Vec<String>,
    ports: Vec<CPort>,
    not_ports: Vec<CPort>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Act {
    Allow,
    Deny,
    Pass,
}

#[derive(Clone)]
struct CRule {
    action: Act,
    proto: Option<Proto>,
    not_proto: Option<Proto>,
    src: CEnt,
    dst: CEnt,
}

#[derive(Clone)]
struct Cnp {
    /// None: a GlobalNetworkPolicy.
    ns: Option<&'static str>,
    name: &'static str,
    order: Option<f64>,
    sel: CSel,
    types: Vec<Dir>,
    ingress: Vec<CRule>,
    egress: Vec<CRule>,
}

#[derive(Clone)]
enum Pol {
    K(Knp),
    C(Cnp),
}

fn proto_opt(p: Option<Proto>) -> Value {
    p.map(|p| json!(p.name())).unwrap_or(Value::Null)
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

fn kpeer_json(p: &KPeer) -> Value {
    match p {
        KPeer::Sel { pod, ns } => json!({
            "podSelector": pod.as_ref().map(|s| s.to_json()),
            "namespaceSelector": ns.as_ref().map(|s| s.to_json()),
        }),
        KPeer::Block { cidr, except } => {
            if except.is_empty() {
                json!({"ipBlock": {"cidr": cidr}})
            } else {
                json!({"ipBlock": {"cidr": cidr, "except": except}})
            }
        }
    }
}

fn krule_json(r: &KRule, d: Dir) -> Value {
    let key = if d == Dir::In { "from" } else { "to" };
    let mut m = serde_json::Map::new();
    if let Some(p) = &r.peers {
        m.insert(key.into(), Value::Array(p.iter().map(kpeer_json).collect()));
    }
    if let Some(ps) = &r.ports {
        let ps: Vec<Value> = ps
            .iter()
            .map(|p| {
                json!({
                    "protocol": proto_opt(p.proto),
                    "port": match p.port {
                        Some(PortRef::Num(n)) => json!(n),
                        Some(PortRef::Name(n)) => json!(n),
                        None => Value::Null,
                    },
                    "endPort": p.end,
                })
            })
            .collect();
        m.insert("ports".into(), Value::Array(ps));
    }
    Value::Object(m)
}

fn cport_json(p: &CPort) -> Value {
    match p {
        CPort::Num(n) => json!(n),
        CPort::Range(a, b) => json!(format!("{a}:{b}")),
        CPort::Name(n) => json!(n),
    }
}

fn cent_json(e: &CEnt) -> Value {
    let list = |v: &Vec<String>| {
        if v.is_empty() {
            Value::Null
        } else {
            json!(v)
        }
    };
    let ports = |v: &Vec<CPort>| {
        if v.is_empty() {
            Value::Null
        } else {
            Value::Array(v.iter().map(cport_json).collect())
        }
    };
    json!({
        "selector": e.sel.as_ref().map(|s| s.text()),
        "namespaceSelector": e.ns_sel.as_ref().map(|s| s.text()),
        "nets": list(&e.nets),
        "notNets": list(&e.not_nets),
        "ports": ports(&e.ports),
        "notPorts": ports(&e.not_ports),
    })
}

fn crule_json(r: &CRule) -> Value {
    json!({
        "action": format!("{:?}", r.action),
        "protocol": proto_opt(r.proto),
        "notProtocol": proto_opt(r.not_proto),
        "source": cent_json(&r.src),
        "destination": cent_json(&r.dst),
    })
}

fn pol_json(p: &Pol) -> Value {
    let v = match p {
        Pol::K(k) => {
            let mut spec = serde_json::Map::new();
            spec.insert("podSelector".into(), k.sel.to_json());
            if let Some(t) = &k.types {
                spec.insert(
                    "policyTypes".into(),
                    json!(t.iter().map(|d| dir_name(*d)).collect::<Vec<_>>()),
                );
            }
            if let Some(rs) = &k.ingress {
                let rs: Vec<Value> = rs.iter().map(|r| krule_json(r, Dir::In)).collect();
                spec.insert("ingress".into(), Value::Array(rs));
            }
            if let Some(rs) = &k.egress {
                let rs: Vec<Value> = rs.iter().map(|r| krule_json(r, Dir::Out)).collect();
                spec.insert("egress".into(), Value::Array(rs));
            }
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": k.name, "namespace": k.ns}, "spec": spec})
        }
        Pol::C(c) => {
            let kind = if c.ns.is_some() {
                "NetworkPolicy"
            } else {
                "GlobalNetworkPolicy"
            };
            json!({"apiVersion": "projectcalico.org/v3", "kind": kind,
            "metadata": {"name": c.name, "namespace": c.ns},
            "spec": {
                "order": c.order,
                "selector": c.sel.text(),
                "types": c.types.iter().map(|d| dir_name(*d)).collect::<Vec<_>>(),
                "ingress": c.ingress.iter().map(crule_json).collect::<Vec<_>>(),
                "egress": c.egress.iter().map(crule_json).collect::<Vec<_>>(),
            }})
        }
    };
    strip_nulls(v)
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let net: Ipv4Addr = net.parse().unwrap();
    let len: u32 = len.parse().unwrap();
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// The oracle's view of one flow.
struct Oracle<'a> {
    nss: &'a [NsInfo],
    pods: &'a [PodInfo],
}

struct Cell<'a> {
    src: &'a PodInfo,
    dst: &'a PodInfo,
    port: u16,
    proto: Proto,
}

impl Oracle<'_> {
    fn ns_labels(&self, ns: &str) -> &Labels {
        &self.nss.iter().find(|n| n.name == ns).unwrap().labels
    }

    fn allowed(&self, pols: &[Pol], c: &Cell) -> bool {
        self.direction(pols, c, Dir::Out) && self.direction(pols, c, Dir::In)
    }

    /// Calico's default tier with the Kubernetes policies in it at order 1000: policies in
    /// (order, name) order; the first matching Allow/Deny decides, Pass leaves the tier
    /// (the namespace profile allows); selected but undecided: dropped; not selected:
    /// allowed.
    fn direction(&self, pols: &[Pol], c: &Cell, d: Dir) -> bool {
        let me = if d == Dir::In { c.dst } else { c.src };
        let mut ordered: Vec<(f64, String, &Pol)> = pols
            .iter()
            .map(|p| match p {
                Pol::K(k) => (1000.0, format!("knp.default.{}", k.name), p),
                Pol::C(cp) => (cp.order.unwrap_or(f64::INFINITY), cp.name.to_string(), p),
            })
            .collect();
        ordered.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
        let mut selected = false;
        for (_, _, p) in ordered {
            match p {
                Pol::K(k) => {
                    if !self.k_applies(k, me, d) {
                        continue;
                    }
                    selected = true;
                    let rules = if d == Dir::In { &k.ingress } else { &k.egress };
                    if rules.iter().flatten().any(|r| self.k_rule(k, r, c, d)) {
                        return true;
                    }
                }
                Pol::C(cp) => {
                    if !cp.types.contains(&d) {
                        continue;
                    }
                    if cp.ns.is_some_and(|n| n != me.ns) || !cp.sel.matches(&me.labels) {
                        continue;
                    }
                    selected = true;
                    let rules = if d == Dir::In {
                        &cp.ingress
                    } else {
                        &cp.egress
                    };
                    for r in rules {
                        if self.c_rule(cp, r, c) {
                            match r.action {
                                Act::Allow => return true,
                                Act::Deny => return false,
                                Act::Pass => return true,
                            }
                        }
                    }
                }
            }
        }
        !selected
    }

    fn k_types(k: &Knp) -> Vec<Dir> {
        match &k.types {
            Some(t) => t.clone(),
            None => {
                let mut t = vec![Dir::In];
                if k.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                    t.push(Dir::Out);
                }
                t
            }
        }
    }

    fn k_applies(&self, k: &Knp, me: &PodInfo, d: Dir) -> bool {
        Self::k_types(k).contains(&d) && me.ns == k.ns && k.sel.matches(&me.labels)
    }

    fn k_rule(&self, k: &Knp, r: &KRule, c: &Cell, d: Dir) -> bool {
        let peer = if d == Dir::In { c.src } else { c.dst };
        let peer_ok = match &r.peers {
            None => true,
            Some(ps) if ps.is_empty() => true,
            Some(ps) => ps.iter().any(|p| match p {
                KPeer::Sel { pod, ns } => {
                    let ns_ok = match ns {
                        None => peer.ns == k.ns,
                        Some(s) => s.matches(self.ns_labels(peer.ns)),
                    };
                    ns_ok && pod.as_ref().is_none_or(|s| s.matches(&peer.labels))
                }
                KPeer::Block { cidr, except } => {
                    in_cidr(peer.ip, cidr) && !except.iter().any(|e| in_cidr(peer.ip, e))
                }
            }),
        };
        let port_ok =
            match &r.ports {
                None => true,
                Some(ps) if ps.is_empty() => true,
                Some(ps) => ps.iter().any(|p| {
                    let proto = p.proto.unwrap_or(Proto::Tcp);
                    proto == c.proto
                        && match p.port {
                            None => true,
                            Some(PortRef::Num(n)) => match p.end {
                                Some(e) => n <= c.port && c.port <= e,
                                None => n == c.port,
                            },
                            Some(PortRef::Name(name)) => c.dst.named.iter().any(|(n, pr, port)| {
                                *n == name && *pr == c.proto && *port == c.port
                            }),
                        }
                }),
            };
        peer_ok && port_ok
    }

    /// Whether the entity matches `who` (the source or destination of the flow); ports
    /// checked only for the destination.
    fn c_ent(&self, cp: &Cnp, e: &CEnt, who: &PodInfo, c: &Cell, is_dst: bool) -> bool {
        if e.sel.is_some() || e.ns_sel.is_some() {
            let ns_ok = match (&e.ns_sel, cp.ns) {
                (Some(s), _) => s.matches(self.ns_labels(who.ns)),
                (None, Some(n)) => who.ns == n,
                (None, None) => true,
            };
            if !ns_ok || !e.sel.as_ref().is_none_or(|s| s.matches(&who.labels)) {
                return false;
            }
        }
        if !e.nets.is_empty() && !e.nets.iter().any(|n| in_cidr(who.ip, n)) {
            return false;
        }
        if e.not_nets.iter().any(|n| in_cidr(who.ip, n)) {
            return false;
        }
        if is_dst {
            let port_match = |p: &CPort| match *p {
                CPort::Num(n) => n == c.port,
                CPort::Range(a, b) => a <= c.port && c.port <= b,
                CPort::Name(name) => c
                    .dst
                    .named
                    .iter()
                    .any(|(n, pr, port)| *n == name && *pr == c.proto && *port == c.port),
            };
            if !e.ports.is_empty() && !e.ports.iter().any(port_match) {
                return false;
            }
            if e.not_ports.iter().any(port_match) {
                return false;
            }
        }
        true
    }

    fn c_rule(&self, cp: &Cnp, r: &CRule, c: &Cell) -> bool {
        r.proto.is_none_or(|p| p == c.proto)
            && r.not_proto != Some(c.proto)
            && self.c_ent(cp, &r.src, c.src, c, false)
            && self.c_ent(cp, &r.dst, c.dst, c, true)
    }
}

// ---------------------------------------------------------------------------------------------
// The policy sets
// ---------------------------------------------------------------------------------------------

fn kport(proto: Option<Proto>, port: Option<PortRef>, end: Option<u16>) -> KPort {
    KPort { proto, port, end }
}

fn kpod(pod: Option<Ls>, ns: Option<Ls>) -> KPeer {
    KPeer::Sel { pod, ns }
}

fn knp(name: &'static str, ns: &'static str, sel: Ls, types: &[Dir]) -> Knp {
    Knp {
        name,
        ns,
        sel,
        types: Some(types.to_vec()),
        ingress: None,
        egress: None,
    }
}

fn cnp(ns: Option<&'static str>, name: &'static str, order: Option<f64>, sel: CSel) -> Cnp {
    Cnp {
        ns,
        name,
        order,
        sel,
        types: vec![],
        ingress: vec![],
        egress: vec![],
    }
}

fn crule(action: Act) -> CRule {
    CRule {
        action,
        proto: None,
        not_proto: None,
        src: CEnt::default(),
        dst: CEnt::default(),
    }
}

fn csel_src(action: Act, sel: Option<CSel>, ns_sel: Option<CSel>) -> CRule {
    let mut r = crule(action);
    r.src.sel = sel;
    r.src.ns_sel = ns_sel;
    r
}

/// The policy sets, each the complete list of policies of that step (so a policy that is
/// in one set and changed or missing in the next is updated or deleted).
fn policy_sets(pods: &[PodInfo]) -> Vec<(&'static str, Vec<Pol>)> {
    use Dir::*;
    let ip_of = |n: &str| pods.iter().find(|p| p.name == n).unwrap().ip.to_string();
    let mut sets: Vec<(&'static str, Vec<Pol>)> = Vec::new();

    // --- Kubernetes NetworkPolicy ---
    let deny_a = knp("deny-all", "a", Ls::default(), &[In]);
    sets.push((
        "k8s default-deny ingress in a",
        vec![Pol::K(deny_a.clone())],
    ));

    let mut allow_same_ns = knp("same-ns", "a", Ls::default(), &[In]);
    allow_same_ns.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(Some(Ls::default()), None)]),
        ports: None,
    }]);
    sets.push((
        "k8s + allow from own namespace",
        vec![Pol::K(deny_a.clone()), Pol::K(allow_same_ns.clone())],
    ));

    let mut web_from_front = knp("web", "b", ls(&[("app", "web")]), &[In]);
    web_from_front.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(
            Some(ls(&[("tier", "front")])),
            Some(Ls::default()),
        )]),
        ports: Some(vec![kport(Some(Proto::Tcp), Some(PortRef::Num(80)), None)]),
    }]);
    sets.push((
        "k8s web in b from every front pod, TCP 80 (a's deny-all deleted)",
        vec![
            Pol::K(allow_same_ns.clone()),
            Pol::K(web_from_front.clone()),
        ],
    ));

    // peer AND vs OR
    let mut and_peer = knp("and-peer", "c", ls(&[("app", "db")]), &[In]);
    and_peer.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(
            Some(ls(&[("app", "api")])),
            Some(ls(&[("team", "red")])),
        )]),
        ports: None,
    }]);
    sets.push((
        "k8s peer pod AND namespace selector",
        vec![Pol::K(and_peer)],
    ));

    let mut or_peer = knp("and-peer", "c", ls(&[("app", "db")]), &[In]);
    or_peer.ingress = Some(vec![KRule {
        peers: Some(vec![
            kpod(Some(ls(&[("app", "api")])), None),
            kpod(None, Some(ls(&[("team", "blue")]))),
        ]),
        ports: None,
    }]);
    sets.push((
        "k8s same policy updated: two peers ORed",
        vec![Pol::K(or_peer.clone())],
    ));

    let mut exprs = knp("exprs", "a", lsx("app", "In", &["web", "api"]), &[In]);
    exprs.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(
            Some(lsx("tier", "NotIn", &["front"])),
            Some(lsx("env", "Exists", &[])),
        )]),
        ports: Some(vec![kport(None, Some(PortRef::Num(5432)), None)]),
    }]);
    sets.push((
        "k8s matchExpressions In/NotIn/Exists, TCP 5432 by default protocol",
        vec![Pol::K(or_peer.clone()), Pol::K(exprs.clone())],
    ));

    let mut block = knp("block", "b", Ls::default(), &[In]);
    block.ingress = Some(vec![KRule {
        peers: Some(vec![KPeer::Block {
            cidr: POOL.into(),
            except: vec![BLOCK_B.into(), format!("{}/32", ip_of("a1"))],
        }]),
        ports: None,
    }]);
    sets.push((
        "k8s ipBlock pool except node-b's block and a1",
        vec![Pol::K(block.clone())],
    ));

    let mut udp_range = knp("udp-range", "c", Ls::default(), &[In]);
    udp_range.ingress = Some(vec![KRule {
        peers: None,
        ports: Some(vec![kport(
            Some(Proto::Udp),
            Some(PortRef::Num(5000)),
            Some(6000),
        )]),
    }]);
    sets.push((
        "k8s ports UDP 5000-6000 (endPort) from anywhere",
        vec![Pol::K(block.clone()), Pol::K(udp_range.clone())],
    ));

    let mut range2 = udp_range.clone();
    range2.ingress = Some(vec![KRule {
        peers: Some(vec![]),
        ports: Some(vec![
            kport(Some(Proto::Tcp), Some(PortRef::Num(1)), Some(100)),
            kport(Some(Proto::Udp), None, None),
        ]),
    }]);
    sets.push((
        "k8s udp-range updated: TCP 1-100, every UDP, empty from",
        vec![Pol::K(range2)],
    ));

    let mut named = knp("named", "a", Ls::default(), &[In]);
    named.ingress = Some(vec![KRule {
        peers: None,
        ports: Some(vec![kport(
            Some(Proto::Tcp),
            Some(PortRef::Name("http")),
            None,
        )]),
    }]);
    sets.push((
        "k8s named port http (80 on web/db, 5432 on api)",
        vec![Pol::K(named.clone())],
    ));

    let mut named_udp = knp("named", "a", Ls::default(), &[In]);
    named_udp.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(None, Some(ls(&[("env", "prod")])))]),
        ports: Some(vec![
            kport(Some(Proto::Udp), Some(PortRef::Name("echo")), None),
            kport(Some(Proto::Tcp), Some(PortRef::Name("alt")), None),
        ]),
    }]);
    sets.push((
        "k8s named ports echo/UDP and alt/TCP from prod namespaces",
        vec![Pol::K(named_udp)],
    ));

    let egress_deny = knp("egress-deny", "b", Ls::default(), &[Out]);
    sets.push((
        "k8s default-deny egress in b",
        vec![Pol::K(egress_deny.clone())],
    ));

    let mut egress_some = knp("egress-some", "b", ls(&[("tier", "front")]), &[Out]);
    egress_some.egress = Some(vec![KRule {
        peers: Some(vec![kpod(
            None,
            Some(ls(&[("kubernetes.io/metadata.name", "c")])),
        )]),
        ports: Some(vec![kport(Some(Proto::Udp), Some(PortRef::Num(80)), None)]),
    }]);
    sets.push((
        "k8s egress: b's front pods to ns c UDP 80, the rest of b denied",
        vec![Pol::K(egress_deny.clone()), Pol::K(egress_some.clone())],
    ));

    let mut egress_named = knp("egress-named", "c", Ls::default(), &[Out]);
    egress_named.egress = Some(vec![KRule {
        peers: Some(vec![kpod(None, Some(Ls::default()))]),
        ports: Some(vec![kport(
            Some(Proto::Tcp),
            Some(PortRef::Name("http")),
            None,
        )]),
    }]);
    sets.push((
        "k8s egress named port http from c, b's egress-deny deleted",
        vec![Pol::K(egress_some.clone()), Pol::K(egress_named)],
    ));

    let mut both = knp("both", "c", ls(&[("tier", "back")]), &[In, Out]);
    both.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(Some(ls(&[("tier", "front")])), None)]),
        ports: None,
    }]);
    both.egress = Some(vec![KRule {
        peers: Some(vec![KPeer::Block {
            cidr: BLOCK_A.into(),
            except: vec![],
        }]),
        ports: None,
    }]);
    sets.push(("k8s ingress+egress on c's back pod", vec![Pol::K(both)]));

    let mut defaulted = Knp {
        name: "defaulted",
        ns: "a",
        sel: ls(&[("app", "db")]),
        types: None,
        ingress: None,
        egress: Some(vec![KRule {
            peers: Some(vec![kpod(Some(Ls::default()), None)]),
            ports: None,
        }]),
    };
    sets.push((
        "k8s policyTypes defaulted (Ingress + Egress with egress rules)",
        vec![Pol::K(defaulted.clone())],
    ));
    defaulted.egress = None;
    defaulted.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(None, Some(ls(&[("team", "blue")])))]),
        ports: None,
    }]);
    sets.push((
        "k8s policyTypes defaulted to Ingress only",
        vec![Pol::K(defaulted)],
    ));

    let mut allow_all = knp("allow-all", "a", Ls::default(), &[In, Out]);
    allow_all.ingress = Some(vec![KRule {
        peers: None,
        ports: None,
    }]);
    allow_all.egress = Some(vec![KRule {
        peers: None,
        ports: None,
    }]);
    sets.push((
        "k8s allow-all next to default-deny in a",
        vec![Pol::K(deny_a.clone()), Pol::K(allow_all)],
    ));

    // --- Calico ---
    let mut gdeny = cnp(None, "deny-c-to-a", Some(10.0), CSel::All);
    gdeny.types = vec![In];
    gdeny.ingress = vec![
        csel_src(Act::Deny, None, Some(CSel::Eq("env", "dev"))),
        crule(Act::Allow),
    ];
    sets.push((
        "calico GNP: deny from dev namespace, allow the rest",
        vec![Pol::C(gdeny.clone())],
    ));

    let mut pass = cnp(None, "pass-front", Some(5.0), CSel::Has("app"));
    pass.types = vec![In];
    pass.ingress = vec![csel_src(Act::Pass, Some(CSel::Eq("tier", "front")), None)];
    sets.push((
        "calico Pass (order 5) before the GNP deny (order 10) and a k8s deny-all",
        vec![
            Pol::C(gdeny.clone()),
            Pol::C(pass.clone()),
            Pol::K(deny_a.clone()),
        ],
    ));

    let mut pass_late = pass.clone();
    pass_late.order = Some(20.0);
    sets.push((
        "calico Pass moved to order 20 (after the deny)",
        vec![
            Pol::C(gdeny.clone()),
            Pol::C(pass_late),
            Pol::K(deny_a.clone()),
        ],
    ));

    let mut ns_pol = cnp(Some("b"), "b-db", Some(100.0), CSel::Eq("app", "db"));
    ns_pol.types = vec![In];
    let mut r = csel_src(Act::Allow, Some(CSel::In("app", vec!["web", "api"])), None);
    r.proto = Some(Proto::Tcp);
    r.dst.ports = vec![CPort::Num(5432)];
    ns_pol.ingress = vec![r];
    sets.push((
        "calico NetworkPolicy in b: db from same-namespace web/api on TCP 5432",
        vec![Pol::C(ns_pol.clone())],
    ));

    let mut ns_pol2 = ns_pol.clone();
    let mut r = csel_src(Act::Allow, None, Some(CSel::Eq("team", "red")));
    r.proto = Some(Proto::Udp);
    r.dst.ports = vec![CPort::Range(5000, 5500)];
    ns_pol2.ingress.push(r);
    sets.push((
        "calico b-db updated: + UDP 5000:5500 from red namespaces",
        vec![Pol::C(ns_pol2.clone())],
    ));

    let mut nets = cnp(None, "nets", Some(50.0), CSel::Eq("tier", "back"));
    nets.types = vec![In];
    let mut r = crule(Act::Allow);
    r.src.nets = vec![BLOCK_A.into()];
    r.src.not_nets = vec![format!("{}/32", ip_of("c1"))];
    nets.ingress = vec![r];
    sets.push((
        "calico GNP nets/notNets on back pods",
        vec![Pol::C(ns_pol2.clone()), Pol::C(nets.clone())],
    ));

    let mut notports = cnp(None, "notports", Some(50.0), CSel::Eq("tier", "back"));
    notports.types = vec![In];
    let mut r = crule(Act::Deny);
    r.proto = Some(Proto::Tcp);
    r.dst.not_ports = vec![CPort::Num(80)];
    let mut r2 = crule(Act::Allow);
    r2.not_proto = Some(Proto::Tcp);
    r2.src.sel = Some(CSel::NotHas("missing"));
    let mut r3 = crule(Act::Allow);
    r3.src.sel = Some(CSel::Ne("app", "db"));
    notports.ingress = vec![r, r2, r3];
    sets.push((
        "calico notPorts, notProtocol, !has, != (nets deleted)",
        vec![Pol::C(notports)],
    ));

    let mut named_c = cnp(Some("c"), "named", Some(200.0), CSel::All);
    named_c.types = vec![In];
    let mut r = crule(Act::Allow);
    r.proto = Some(Proto::Tcp);
    r.dst.ports = vec![CPort::Name("http")];
    let mut r2 = crule(Act::Allow);
    r2.proto = Some(Proto::Udp);
    r2.dst.ports = vec![CPort::Name("echo")];
    named_c.ingress = vec![r, r2];
    sets.push((
        "calico named ports in c (TCP http, UDP echo)",
        vec![Pol::C(named_c)],
    ));

    let mut egress_c = cnp(None, "egress", Some(30.0), CSel::Eq("app", "web"));
    egress_c.types = vec![Out];
    let mut r = crule(Act::Deny);
    r.dst.sel = Some(CSel::Eq("app", "db"));
    r.dst.ns_sel = Some(CSel::Ne("team", "blue"));
    let mut r2 = crule(Act::Allow);
    r2.proto = Some(Proto::Tcp);
    let mut r3 = crule(Act::Allow);
    r3.proto = Some(Proto::Udp);
    r3.dst.nets = vec![BLOCK_B.into()];
    egress_c.egress = vec![r, r2, r3];
    sets.push((
        "calico GNP egress: web deny to non-blue db, TCP anywhere, UDP to node-b",
        vec![Pol::C(egress_c.clone())],
    ));

    let mut mixed = knp("allow-front", "a", Ls::default(), &[In]);
    mixed.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(
            Some(ls(&[("tier", "front")])),
            Some(Ls::default()),
        )]),
        ports: None,
    }]);
    let mut early_deny = cnp(Some("a"), "early-deny", Some(500.0), CSel::All);
    early_deny.types = vec![In];
    early_deny.ingress = vec![csel_src(Act::Deny, None, Some(CSel::Eq("team", "blue")))];
    let mut late_allow = cnp(None, "late-allow", Some(2000.0), CSel::All);
    late_allow.types = vec![In];
    late_allow.ingress = vec![csel_src(Act::Allow, Some(CSel::Eq("app", "db")), None)];
    sets.push((
        "mixed: Calico deny (500) < k8s allow (1000) < Calico allow (2000)",
        vec![
            Pol::C(egress_c.clone()),
            Pol::K(mixed.clone()),
            Pol::C(early_deny.clone()),
            Pol::C(late_allow.clone()),
        ],
    ));

    let mut late_allow_no_order = late_allow.clone();
    late_allow_no_order.order = None;
    late_allow_no_order.ingress = vec![csel_src(
        Act::Allow,
        Some(CSel::Or(vec![
            CSel::Eq("app", "db"),
            CSel::Eq("app", "api"),
        ])),
        None,
    )];
    let mut pass_to_profile = cnp(Some("a"), "pass-c", Some(1.0), CSel::All);
    pass_to_profile.types = vec![In];
    pass_to_profile.ingress = vec![csel_src(
        Act::Pass,
        Some(CSel::And(vec![CSel::Eq("tier", "data"), CSel::Has("app")])),
        Some(CSel::All),
    )];
    sets.push((
        "mixed updated: late allow without order, Pass to profile, egress GNP deleted",
        vec![
            Pol::K(mixed.clone()),
            Pol::C(early_deny.clone()),
            Pol::C(late_allow_no_order),
            Pol::C(pass_to_profile),
        ],
    ));

    let mut gdeny_all = cnp(None, "default-deny", Some(3000.0), CSel::All);
    gdeny_all.types = vec![In, Out];
    let mut allow_dns_like = cnp(None, "allow-udp", Some(100.0), CSel::All);
    allow_dns_like.types = vec![Out, In];
    let mut r = crule(Act::Allow);
    r.proto = Some(Proto::Udp);
    r.dst.ports = vec![CPort::Num(5432)];
    allow_dns_like.egress = vec![r.clone()];
    allow_dns_like.ingress = vec![r];
    sets.push((
        "calico global default-deny both ways, UDP 5432 allowed",
        vec![Pol::C(gdeny_all.clone()), Pol::C(allow_dns_like.clone())],
    ));

    let mut k_allow = knp("b-in", "b", Ls::default(), &[In, Out]);
    k_allow.ingress = Some(vec![KRule {
        peers: None,
        ports: Some(vec![kport(Some(Proto::Tcp), Some(PortRef::Num(80)), None)]),
    }]);
    k_allow.egress = Some(vec![KRule {
        peers: None,
        ports: None,
    }]);
    let mut k_allow_a = knp("a-out", "a", Ls::default(), &[Out]);
    k_allow_a.egress = Some(vec![KRule {
        peers: Some(vec![kpod(None, Some(ls(&[("env", "prod")])))]),
        ports: Some(vec![kport(Some(Proto::Tcp), None, None)]),
    }]);
    sets.push((
        "global default-deny with k8s allows before it",
        vec![
            Pol::C(gdeny_all.clone()),
            Pol::C(allow_dns_like.clone()),
            Pol::K(k_allow),
            Pol::K(k_allow_a),
        ],
    ));

    sets.push((
        "everything but the global default-deny deleted",
        vec![Pol::C(gdeny_all)],
    ));

    let mut ns_gnp = cnp(None, "ns-sel", Some(10.0), CSel::Eq("tier", "data"));
    ns_gnp.types = vec![In];
    ns_gnp.ingress = vec![
        csel_src(
            Act::Allow,
            Some(CSel::Eq("tier", "back")),
            Some(CSel::In("env", vec!["prod"])),
        ),
        csel_src(Act::Deny, Some(CSel::All), None),
        crule(Act::Allow),
    ];
    sets.push((
        "calico GNP namespaceSelector on rules, deny every pod else",
        vec![Pol::C(ns_gnp)],
    ));

    // Labels change under unchanged policies (the test writes the relabelled Namespace
    // and Pod documents for titles starting with "relabelled:").
    let mut red_data = cnp(None, "red-to-data", Some(10.0), CSel::Eq("tier", "data"));
    red_data.types = vec![In];
    red_data.ingress = vec![csel_src(Act::Allow, None, Some(CSel::Eq("team", "red")))];
    let mut back_only = knp("back-only", "b", ls(&[("app", "db")]), &[In]);
    back_only.ingress = Some(vec![KRule {
        peers: Some(vec![kpod(
            Some(ls(&[("tier", "back")])),
            Some(Ls::default()),
        )]),
        ports: None,
    }]);
    let relabel = vec![Pol::C(red_data), Pol::K(back_only)];
    sets.push((
        "namespace- and pod-label policies (red namespaces to data pods, back pods to b's db)",
        relabel.clone(),
    ));
    sets.push((
        "relabelled: namespace c blue, pod b1 a back pod (same policies)",
        relabel.clone(),
    ));
    sets.push(("labels restored (same policies)", relabel));
    sets.push(("no policy at all again", vec![]));
    sets
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

struct Pod {
    info: PodInfo,
    // Declaration order: listeners stop before the namespace is deleted.
    _listeners: Listeners,
    ns: Netns,
}

fn add_pod(
    node_ns: &Netns,
    agent: &BrindleNode,
    pod_ns_name: &str,
    name: &str,
) -> (Netns, Ipv4Addr) {
    let pod_ns = Netns::new("p");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "brindle",
        "type": "brindle-cni",
        "nodename": agent.node_name,
        "stateDir": agent.state_dir(),
        "config": agent.config,
    })
    .to_string();
    let mut cmd = node_ns.command(CNI);
    cmd.env_remove("CNI_COMMAND")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", format!("tt-{}", pod_ns.name))
        .env("CNI_NETNS", format!("/run/netns/{}", pod_ns.name))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", Path::new(CNI).parent().unwrap())
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={pod_ns_name};K8S_POD_NAME={name}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "brindle-cni ADD {name}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: Value = serde_json::from_str(stdout.trim()).unwrap();
    let addr = res["ips"][0]["address"].as_str().unwrap();
    (pod_ns, addr.split('/').next().unwrap().parse().unwrap())
}

type Key = (usize, usize, u16, Proto);

static ROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Probes every cell in parallel (one thread per cell, each in its source pod).
fn probe_all(pods: &[Pod], cells: &[Key], timeout: Duration) -> Vec<bool> {
    // Each round its own UDP source ports (wrapping after ~2,000 rounds, minutes later).
    let round = ROUND.fetch_add(1, Ordering::Relaxed) % 2000;
    let handles: Vec<JoinHandle<bool>> = cells
        .iter()
        .map(|&(s, d, port, proto)| {
            let dst = pods[d].info.ip;
            let pi = PORTS.iter().position(|p| *p == port).unwrap() as u16;
            let sport = 24000 + (round as u16) * 20 + d as u16 * 2 + pi;
            in_ns(&pods[s].ns.name, move || {
                probe_here(dst, port, proto, sport, timeout)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn policy_truth_table() {
    let started = Instant::now();
    let lan = Lan::new(61, &["na", "nb"]);
    let (ns_a, ns_b) = (&lan.members[0], &lan.members[1]);
    let yaml = CalicoConfig::new(AS, true)
        .node("node-a", &format!("{}/24", lan.v4(1)), None)
        .node("node-b", &format!("{}/24", lan.v4(2)), None)
        .pool("pods-v4", POOL, 26)
        .affinity("node-a", BLOCK_A)
        .affinity("node-b", BLOCK_B)
        .to_yaml();
    // A default route, as every node has one: proxy ARP answers the pods' 169.254.1.1
    // only for destinations routed elsewhere. (Nothing is on 10.61.0.254.)
    for ns in [ns_a, ns_b] {
        ns.ip(&["route", "add", "default", "via", "10.61.0.254"]);
    }
    let node_a = BrindleNode::start(ns_a, "node-a", &yaml, &[&lan.v4(1)]);
    let node_b = BrindleNode::start(ns_b, "node-b", &yaml, &[&lan.v4(2)]);
    let dumps: Vec<&dyn Dump> = vec![&node_a, &node_b];
    wait_until("the mesh is up", CONVERGE, &dumps, || {
        node_a.established(&lan.v4(2)) && node_b.established(&lan.v4(1))
    });
    for node in [&node_a, &node_b] {
        let mtu = node.state_dir().join("mtu");
        wait_until("pod MTU written", Duration::from_secs(15), &dumps, || {
            std::fs::metadata(&mtu).is_ok_and(|m| m.len() > 0)
        });
    }

    let nss = ns_infos();
    let layout = [
        ("a1", 'a'),
        ("a2", 'b'),
        ("a3", 'a'),
        ("b1", 'b'),
        ("b2", 'a'),
        ("b3", 'b'),
        ("c1", 'a'),
        ("c2", 'b'),
        ("c3", 'a'),
    ];
    let mut pods: Vec<Pod> = Vec::new();
    for (name, node) in layout {
        let (nns, agent, node_name) = match node {
            'a' => (ns_a, &node_a, "node-a"),
            _ => (ns_b, &node_b, "node-b"),
        };
        let pns: &'static str = match &name[..1] {
            "a" => "a",
            "b" => "b",
            _ => "c",
        };
        let (app, tier) = match &name[1..] {
            "1" => ("web", "front"),
            "2" => ("api", "back"),
            _ => ("db", "data"),
        };
        let (netns, ip) = add_pod(nns, agent, pns, name);
        let listeners = Listeners::start(&netns.name);
        pods.push(Pod {
            info: PodInfo {
                name: name.to_string(),
                ns: pns,
                node: node_name,
                ip,
                labels: labels(&[("app", app), ("tier", tier)]),
                named: named_ports(app),
            },
            _listeners: listeners,
            ns: netns,
        });
    }
    let infos: Vec<PodInfo> = pods.iter().map(|p| p.info.clone()).collect();
    eprintln!(
        "pods: {}",
        infos
            .iter()
            .map(|p| format!("{}/{}@{}={}", p.ns, p.name, p.node, p.ip))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let base = format!("{}\n{}", yaml.trim_end(), pod_docs(&nss, &infos));
    node_a.rewrite_config(&base);
    node_b.rewrite_config(&base);

    let mut cells: Vec<Key> = Vec::new();
    for s in 0..pods.len() {
        for d in 0..pods.len() {
            if s == d {
                continue;
            }
            for port in PORTS {
                for proto in [Proto::Tcp, Proto::Udp] {
                    cells.push((s, d, port, proto));
                }
            }
        }
    }
    // Every pod reaches every other before any policy.
    wait_until("every pod reaches every other", CONVERGE, &dumps, || {
        let got = probe_all(&pods, &cells, Duration::from_secs(1));
        let bad: Vec<String> = cells
            .iter()
            .zip(&got)
            .filter(|(_, ok)| !**ok)
            .map(|((s, d, port, proto), _)| format!("{s}->{d} {port}/{}", proto.name()))
            .collect();
        if !bad.is_empty() {
            eprintln!(
                "not yet: {} cells, e.g. {:?}",
                bad.len(),
                &bad[..bad.len().min(8)]
            );
        }
        bad.is_empty()
    });
    eprintln!("lab ready after {:?}", started.elapsed());

    // The relabelled world of the "relabelled:" sets: namespace c turns blue, b1 turns
    // from a front into a back pod (labels only: the same pods and addresses).
    let (nss_re, infos_re) = {
        let mut n = ns_infos();
        n[2].labels.insert("team".into(), "blue".into());
        let mut p = infos.clone();
        p[3].labels.insert("tier".into(), "back".into());
        (n, p)
    };
    let base_re = format!("{}\n{}", yaml.trim_end(), pod_docs(&nss_re, &infos_re));
    let sets = policy_sets(&infos);
    assert!(sets.len() >= 30, "{} sets", sets.len());
    let mut prev: Vec<bool> = vec![true; cells.len()];
    let mut report: Vec<String> = Vec::new();
    let (mut total_cells, mut first_pass_mismatches) = (0usize, 0usize);
    let mut slowest_apply = (Duration::ZERO, "");
    let mut failures: Vec<String> = Vec::new();
    for (i, (title, pols)) in sets.iter().enumerate() {
        let t_set = Instant::now();
        let relabelled = title.starts_with("relabelled:");
        let oracle = if relabelled {
            Oracle {
                nss: &nss_re,
                pods: &infos_re,
            }
        } else {
            Oracle {
                nss: &nss,
                pods: &infos,
            }
        };
        let cell = |k: &Key| Cell {
            src: &oracle.pods[k.0],
            dst: &oracle.pods[k.1],
            port: k.2,
            proto: k.3,
        };
        let mut text = if relabelled {
            base_re.clone()
        } else {
            base.clone()
        };
        for p in pols {
            text.push_str(&format!("---\n{}\n", pol_json(p)));
        }
        let want: Vec<bool> = cells
            .iter()
            .map(|k| oracle.allowed(pols, &cell(k)))
            .collect();
        // The evaluator on the same file.
        let cfg = brindle_model::parse("truth-table", &text)
            .unwrap_or_else(|e| panic!("set {i} ({title}) does not parse: {e}\n{text}"));
        let (program, _warnings) = brindle_policies::program_of(&cfg);
        let world = brindle_policies::world_of(&cfg);
        let evaluated: Vec<bool> = cells
            .iter()
            .map(|k| {
                let flow = brindle_policies::Flow {
                    src: oracle.pods[k.0].ip.into(),
                    dst: oracle.pods[k.1].ip.into(),
                    protocol: k.3.number(),
                    port: Some(k.2),
                    src_port: None,
                };
                brindle_policies::evaluate(&program, &world, &flow).allowed
            })
            .collect();

        let t_write = Instant::now();
        node_a.rewrite_config(&text);
        node_b.rewrite_config(&text);
        // Apply time: a cell whose verdict changes, polled until it flips.
        let canary = (0..cells.len()).find(|&c| want[c] != prev[c]);
        let apply = match canary {
            Some(c) => {
                let (s, d, port, proto) = cells[c];
                loop {
                    let got = probe_all(&pods, &[(s, d, port, proto)], PROBE_TIMEOUT)[0];
                    if got == want[c] || t_write.elapsed() > Duration::from_secs(5) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let took = t_write.elapsed();
                // The other node reads the file on its own poll: give it the same time.
                std::thread::sleep(Duration::from_millis(500));
                took
            }
            None => {
                std::thread::sleep(Duration::from_millis(1200));
                t_write.elapsed()
            }
        };
        if canary.is_some() && apply > slowest_apply.0 {
            slowest_apply = (apply, title);
        }
        let mut got = probe_all(&pods, &cells, PROBE_TIMEOUT);
        let first: Vec<usize> = (0..cells.len()).filter(|&c| got[c] != want[c]).collect();
        first_pass_mismatches += first.len();
        if !first.is_empty() {
            // Late or slow? Probe those cells again, later and with more patience.
            std::thread::sleep(Duration::from_millis(1500));
            let again: Vec<Key> = first.iter().map(|&c| cells[c]).collect();
            let re = probe_all(&pods, &again, Duration::from_secs(1));
            for (j, &c) in first.iter().enumerate() {
                got[c] = re[j];
            }
        }
        total_cells += cells.len();
        let mut diff = Vec::new();
        for c in 0..cells.len() {
            let (s, d, port, proto) = cells[c];
            if got[c] != want[c] || evaluated[c] != got[c] {
                diff.push(format!(
                    "  {}/{} -> {}/{} {}/{}: probe {} oracle {} evaluator {}",
                    infos[s].ns,
                    infos[s].name,
                    infos[d].ns,
                    infos[d].name,
                    port,
                    proto.name(),
                    got[c],
                    want[c],
                    evaluated[c]
                ));
            }
        }
        let allowed = got.iter().filter(|g| **g).count();
        let line = format!(
            "set {i:2} {:5.2}s apply {:5.2}s{} allowed {allowed:3}/{} first-pass mismatches {} final {}: {title}",
            t_set.elapsed().as_secs_f64(),
            apply.as_secs_f64(),
            if canary.is_some() { "" } else { "*" },
            cells.len(),
            first.len(),
            diff.len()
        );
        eprintln!("{line}");
        report.push(line);
        if !diff.is_empty() {
            failures.push(format!("set {i} ({title}):\n{}\n{text}", diff.join("\n")));
        }
        prev = want;
    }
    eprintln!(
        "figure: {} sets, {total_cells} cells probed, {} final mismatches, {first_pass_mismatches} first-pass mismatches, \
         slowest apply {:?} ({}), total {:?} (* = no verdict changed, fixed 1.2 s settle)",
        sets.len(),
        failures.len(),
        slowest_apply.0,
        slowest_apply.1,
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} sets with mismatches:\n{}",
        failures.len(),
        failures.join("\n\n")
    );

    // The kernel's counters reach `brindlectl get networkpolicy -o wide` (PACKETS, BYTES)
    // through the agent's status socket: a Calico policy on a1 (node-a) counts b1's
    // connections.
    let text = format!(
        "{base}---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: count-me, namespace: a}}\n\
         spec: {{selector: app == 'web', types: [Ingress], ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [80]}}}}]}}\n"
    );
    node_a.rewrite_config(&text);
    node_b.rewrite_config(&text);
    let (a1, b1) = (0, 3);
    wait_until("count-me allows b1 -> a1 80/tcp", CONVERGE, &dumps, || {
        probe_all(&pods, &[(b1, a1, 80, Proto::Tcp)], PROBE_TIMEOUT)[0]
            && !probe_all(&pods, &[(b1, a1, 5432, Proto::Tcp)], PROBE_TIMEOUT)[0]
    });
    let t_counters = Instant::now();
    let mut table = String::new();
    wait_until(
        "get networkpolicy -o wide shows count-me's packets (counters read every 10 s)",
        Duration::from_secs(25),
        &dumps,
        || {
            probe_all(&pods, &[(b1, a1, 80, Proto::Tcp)], PROBE_TIMEOUT);
            let out = Command::new(env!("CARGO_BIN_EXE_brindlectl"))
                .args(["get", "networkpolicy", "-o", "wide", "--config"])
                .arg(&node_a.config)
                .arg("--socket")
                .arg(&node_a.socket)
                .output()
                .unwrap();
            table = String::from_utf8_lossy(&out.stdout).to_string();
            table
                .lines()
                .find(|l| l.contains("count-me"))
                .and_then(|l| l.split_whitespace().nth_back(1).map(str::to_string))
                .and_then(|p| p.parse::<u64>().ok())
                .is_some_and(|packets| packets > 0)
        },
    );
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .trim_end()
            .ends_with("PACKETS   BYTES"),
        "{table}"
    );
    eprintln!(
        "figure: policy counters in get -o wide after {:?}:\n{table}",
        t_counters.elapsed()
    );
}
