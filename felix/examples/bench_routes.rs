//! Route-programming benchmark: Brindle's `Dataplane::apply` against a hand-written
//! batched-netlink baseline and `ip -batch`, on the same namespace setup, in one run.
//!
//! Run (root, release build): `sudo ./scripts/bench-routes.sh`, or directly
//! `cargo run --release -p brindle-felix --example bench_routes -- [--sizes 10000,100000]
//! [--reps 3] [--ifaces 100] [--batch 128] [--unclaimed-max N] [--ns NAME]` (`--batch`:
//! messages per send of the direct baseline; `--unclaimed-max`: largest N for the
//! unclaimed-route applies, which are quadratic in N today).
//!
//! Setup: a network namespace `NAME` (default `bench<pid>`) with `--ifaces` veths
//! `cali<11 hex>` (up), their peers in a second namespace `NAMEp`; both are deleted when
//! the program ends (Drop guards, also on panic). The root namespace is never touched:
//! all Rust-side netlink work runs on a dedicated thread that `setns()`es into `NAME`
//! and builds its own current-thread tokio runtime; `ip` runs as `ip -n NAME`.
//!
//! Workload: N routes `10.64.0.0 + i /32 dev cali<k> scope link proto 80`, interface `k`
//! holding the contiguous block of N/ifaces addresses (the Model: `ifaces` endpoints with
//! N/ifaces IPs each, no MAC, no pools). Each repetition runs, per N, the three methods
//! in a rotating order; between methods the routes are flushed (`ip route flush proto
//! 80`) and every count is verified with a protocol-filtered strict-check dump.
//!
//! Measured: Brindle `apply` empty → N, a no-op `apply` over N, the endpoints removed
//! while their veths stay (two applies within the default `unclaimed_route_grace`, then
//! one with grace 0, which removes all N), `Dataplane::cleanup` (delete all N); the direct baseline's add/delete; `ip -batch` add/delete; the pieces
//! of a no-op apply (felix's public `calc::desired`, `routes::parse_route`,
//! `routes::plan`, `sysctl::reconcile`, and a strict dump); the first apply on fresh
//! interfaces (sysctl writes) and the fixed cost of an apply with 0 routes; process
//! memory of Brindle's and the baseline's add, each in a fresh process (`--probe`); and
//! how many extra applies `Dataplane::run` makes after the initial one.

use brindle_felix::calc;
use brindle_felix::model::{LocalEndpoint, Model};
use brindle_felix::routes;
use brindle_felix::sysctl;
use brindle_felix::{Dataplane, DataplaneConfig, ROUTE_PROTOCOL};
use futures::StreamExt;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_proto::sys::protocols::NETLINK_ROUTE;
use netlink_proto::sys::{AsyncSocket, SocketAddr};
use netlink_proto::ConnectionHandle;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Messages per send of the direct baseline (`--batch`; felix uses 128).
static BATCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(128);
const RCVBUF: libc::c_int = 8 << 20;
const BASE: u32 = 0x0A40_0000; // 10.64.0.0

// ---------------------------------------------------------------- namespaces

/// A network namespace created by the benchmark, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: &str) -> Netns {
        sh_ok("ip", &["netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        sh_ok("ip", &["-n", name, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn sh_ok(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn iface_name(k: usize) -> String {
    format!("cali{k:011x}")
}

// ---------------------------------------------------------------- workload

struct Workload {
    n: usize,
    /// (destination, interface number)
    routes: Vec<(Ipv4Addr, usize)>,
    model: Model,
    add_file: PathBuf,
    del_file: PathBuf,
}

/// The routes and the Model; with `tmp`, also the `ip -batch` files.
fn workload(n: usize, ifaces: usize, tmp: Option<&Path>) -> Workload {
    let per = n.div_ceil(ifaces);
    let routes: Vec<(Ipv4Addr, usize)> = (0..n)
        .map(|i| (Ipv4Addr::from(BASE + i as u32), i / per))
        .collect();
    let mut eps: BTreeMap<usize, Vec<ipnetwork::IpNetwork>> = BTreeMap::new();
    for (ip, k) in &routes {
        eps.entry(*k)
            .or_default()
            .push(ipnetwork::IpNetwork::new((*ip).into(), 32).unwrap());
    }
    let model = Model {
        node_name: "bench".into(),
        endpoints: eps
            .into_iter()
            .map(|(k, ips)| LocalEndpoint {
                iface: iface_name(k),
                ips,
                mac: None,
            })
            .collect(),
        ..Default::default()
    };
    let mut add = String::with_capacity(n * 64);
    let mut del = String::with_capacity(n * 64);
    for (ip, k) in routes.iter().filter(|_| tmp.is_some()) {
        let dev = iface_name(*k);
        let _ = writeln!(
            add,
            "route add {ip}/32 dev {dev} scope link proto {ROUTE_PROTOCOL}"
        );
        let _ = writeln!(
            del,
            "route del {ip}/32 dev {dev} scope link proto {ROUTE_PROTOCOL}"
        );
    }
    let tmp = tmp.unwrap_or(Path::new("/nonexistent"));
    let add_file = tmp.join(format!("add-{n}.batch"));
    let del_file = tmp.join(format!("del-{n}.batch"));
    if !add.is_empty() {
        std::fs::write(&add_file, add).unwrap();
        std::fs::write(&del_file, del).unwrap();
    }
    Workload {
        n,
        routes,
        model,
        add_file,
        del_file,
    }
}

// ---------------------------------------------------------------- direct netlink

/// The baseline: one netlink-proto connection (strict checking, 8 MiB receive buffer),
/// batches of 128 messages per send, one batch in flight.
struct Direct {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    _task: tokio::task::JoinHandle<()>,
}

fn raise_rcvbuf(fd: &impl AsRawFd) {
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a valid fd and a c_int value.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&RCVBUF as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

impl Direct {
    fn open() -> Direct {
        let (mut conn, handle, _) =
            netlink_proto::new_connection::<RouteNetlinkMessage>(NETLINK_ROUTE).expect("netlink");
        conn.set_forward_ack(true);
        let sock = conn.socket_mut().socket_mut();
        sock.set_netlink_get_strict_chk(true).expect("strict check");
        let _ = sock.set_cap_ack(true);
        raise_rcvbuf(sock);
        Direct {
            handle,
            _task: tokio::spawn(conn),
        }
    }

    /// Sends `msgs` in batches of [`BATCH`] messages; returns the number of error answers.
    async fn batch(&self, msgs: Vec<NetlinkMessage<RouteNetlinkMessage>>) -> usize {
        let mut errors = 0;
        let mut it = msgs.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<_> = it
                .by_ref()
                .take(BATCH.load(std::sync::atomic::Ordering::Relaxed))
                .collect();
            let mut s = self
                .handle
                .request_batch(chunk, SocketAddr::new(0, 0))
                .expect("request_batch");
            let collect = async {
                while let Some(m) = s.next().await {
                    if let NetlinkPayload::Error(e) = m.payload {
                        if e.code.is_some() {
                            errors += 1;
                        }
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(10), collect)
                .await
                .expect("batch timed out");
        }
        errors
    }

    async fn add(&self, routes: &[(Ipv4Addr, usize)], ifindex: &[u32]) -> usize {
        let msgs = routes
            .iter()
            .map(|(ip, k)| {
                let mut m = route_header(*ip);
                m.header.scope = RouteScope::Link;
                m.header.kind = RouteType::Unicast;
                m.attributes.push(RouteAttribute::Oif(ifindex[*k]));
                let mut nl = NetlinkMessage::from(RouteNetlinkMessage::NewRoute(m));
                nl.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
                nl
            })
            .collect();
        self.batch(msgs).await
    }

    async fn del(&self, routes: &[(Ipv4Addr, usize)]) -> usize {
        let msgs = routes
            .iter()
            .map(|(ip, _)| {
                let mut m = route_header(*ip);
                m.header.scope = RouteScope::NoWhere;
                let mut nl = NetlinkMessage::from(RouteNetlinkMessage::DelRoute(m));
                nl.header.flags = NLM_F_REQUEST | NLM_F_ACK;
                nl
            })
            .collect();
        self.batch(msgs).await
    }

    /// Protocol-filtered dump of the main table (the kernel filters: strict socket).
    async fn dump_own(&self) -> Vec<RouteMessage> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        req.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
        req.header.table = RouteHeader::RT_TABLE_MAIN;
        let mut nl = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(req));
        nl.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut s = self
            .handle
            .request(nl, SocketAddr::new(0, 0))
            .expect("dump");
        let mut out = Vec::new();
        let collect = async {
            while let Some(m) = s.next().await {
                match m.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => out.push(r),
                    NetlinkPayload::Error(e) if e.code.is_some() => panic!("dump: {e:?}"),
                    NetlinkPayload::Overrun(_) => panic!("dump overrun"),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), collect)
            .await
            .expect("dump timed out");
        out
    }

    /// Number of Brindle-protocol routes in the main table.
    async fn count(&self) -> usize {
        self.dump_own()
            .await
            .iter()
            .filter(|r| u8::from(r.header.protocol) == ROUTE_PROTOCOL)
            .count()
    }
}

fn route_header(ip: Ipv4Addr) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = 32;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(ip)));
    m
}

// ---------------------------------------------------------------- helpers

fn ip_ns(ns: &str, args: &[&str]) -> Duration {
    let mut a = vec!["-n", ns];
    a.extend_from_slice(args);
    let t = Instant::now();
    sh_ok("ip", &a);
    t.elapsed()
}

fn flush(ns: &str) {
    ip_ns(
        ns,
        &["route", "flush", "proto", &ROUTE_PROTOCOL.to_string()],
    );
}

/// (VmRSS, VmHWM) of the process in KiB.
fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0).
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated name; the ioctl socket follows this thread's netns.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(i != 0, "no interface {name} in the benchmark namespace");
    i
}

// ---------------------------------------------------------------- results

#[derive(Default)]
struct Results {
    /// (N, metric) -> samples in seconds (or KiB for memory rows, ms for breakdowns)
    samples: BTreeMap<(usize, String), Vec<f64>>,
    notes: Vec<String>,
}

impl Results {
    fn push(&mut self, n: usize, metric: &str, v: f64) {
        self.samples
            .entry((n, metric.to_string()))
            .or_default()
            .push(v);
    }
    fn get(&self, n: usize, metric: &str) -> Option<&Vec<f64>> {
        self.samples.get(&(n, metric.to_string()))
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)))
}

// ---------------------------------------------------------------- the benchmark

struct Opts {
    sizes: Vec<usize>,
    reps: usize,
    ifaces: usize,
    ns: String,
    /// Internal: measure memory of one method in a fresh process, in the existing `ns`.
    probe: Option<String>,
    probe_n: usize,
    /// Largest N for the unclaimed-route measurement.
    unclaimed_max: usize,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        sizes: vec![10_000, 100_000],
        reps: 3,
        ifaces: 100,
        ns: format!("bench{}", std::process::id()),
        probe: None,
        probe_n: 0,
        unclaimed_max: usize::MAX,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--sizes" => {
                o.sizes = val()
                    .split(',')
                    .map(|s| s.trim().parse().expect("--sizes N,N,..."))
                    .collect()
            }
            "--reps" => o.reps = val().parse().expect("--reps N"),
            "--ifaces" => o.ifaces = val().parse().expect("--ifaces N"),
            "--ns" => o.ns = val(),
            "--batch" => BATCH.store(
                val().parse().expect("--batch N"),
                std::sync::atomic::Ordering::Relaxed,
            ),
            "--probe" => o.probe = Some(val()),
            "--unclaimed-max" => o.unclaimed_max = val().parse().expect("--unclaimed-max N"),
            "--probe-n" => o.probe_n = val().parse().expect("--probe-n N"),
            "-h" | "--help" => {
                println!(
                    "bench_routes [--sizes 10000,100000] [--reps 3] [--ifaces 100] [--batch 128] [--unclaimed-max N] [--ns NAME]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(o.ifaces >= 1 && o.ifaces <= 4096, "--ifaces 1..4096");
    assert!(o.ns.len() <= 30, "--ns name too long");
    o
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench_routes: needs root (network namespaces)");
        std::process::exit(2);
    }
    let o = parse_args();
    if let Some(kind) = &o.probe {
        probe(&o, kind);
        return;
    }
    let t_all = Instant::now();
    let tmp = std::env::temp_dir().join(format!("brindle-bench-{}", o.ns));
    std::fs::create_dir_all(&tmp).unwrap();
    struct RmDir(PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _tmp_guard = RmDir(tmp.clone());

    let node = Netns::create(&o.ns);
    let peer = Netns::create(&format!("{}p", o.ns));

    // veths: cali* in the node namespace (up), peers in the peer namespace (up)
    let mut nb = String::new();
    let mut pb = String::new();
    for k in 0..o.ifaces {
        let _ = writeln!(
            nb,
            "link add {} type veth peer name p{k} netns {}",
            iface_name(k),
            peer.name
        );
        let _ = writeln!(nb, "link set {} up", iface_name(k));
        let _ = writeln!(pb, "link set p{k} up");
    }
    std::fs::write(tmp.join("links.batch"), nb).unwrap();
    std::fs::write(tmp.join("peer.batch"), pb).unwrap();
    let t = Instant::now();
    sh_ok(
        "ip",
        &[
            "-n",
            &node.name,
            "-batch",
            tmp.join("links.batch").to_str().unwrap(),
        ],
    );
    sh_ok(
        "ip",
        &[
            "-n",
            &peer.name,
            "-batch",
            tmp.join("peer.batch").to_str().unwrap(),
        ],
    );
    eprintln!(
        "setup: namespaces {} / {}, {} veth pairs in {:.2} s",
        node.name,
        peer.name,
        o.ifaces,
        t.elapsed().as_secs_f64()
    );

    // let IPv6 duplicate address detection on the new links finish (its address events
    // would otherwise wake the run-loop measurement)
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10)
        && !sh_ok("ip", &["-n", &node.name, "-6", "addr", "show", "tentative"])
            .trim()
            .is_empty()
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "setup: IPv6 DAD settled after {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let workloads: Vec<Workload> = o
        .sizes
        .iter()
        .map(|&n| workload(n, o.ifaces, Some(&tmp)))
        .collect();

    let ns = node.name.clone();
    let reps = o.reps;
    let ifaces = o.ifaces;
    let unclaimed_max = o.unclaimed_max;
    let res = std::thread::spawn(move || {
        enter(&ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(&ns, reps, ifaces, unclaimed_max, &workloads))
    })
    .join();
    let res = match res {
        Ok(r) => r,
        Err(p) => {
            drop(peer);
            drop(node);
            std::panic::resume_unwind(p);
        }
    };
    let mut res = res;
    // memory, each sample in a fresh process (the allocator keeps freed memory, so a
    // long-running benchmark process says little)
    let exe = std::env::current_exe().expect("current_exe");
    for rep in 0..o.reps {
        for &n in &o.sizes {
            for kind in ["brindle", "direct"] {
                let out = sh_ok(
                    exe.to_str().unwrap(),
                    &[
                        "--ns",
                        &o.ns,
                        "--ifaces",
                        &o.ifaces.to_string(),
                        "--probe",
                        kind,
                        "--probe-n",
                        &n.to_string(),
                        "--batch",
                        &BATCH.load(std::sync::atomic::Ordering::Relaxed).to_string(),
                    ],
                );
                let v: Vec<f64> = out
                    .lines()
                    .find_map(|l| l.strip_prefix("rss "))
                    .expect("probe output")
                    .split_whitespace()
                    .map(|x| x.parse().unwrap())
                    .collect();
                res.push(n, &format!("{kind}_rss_before_kib"), v[0]);
                res.push(n, &format!("{kind}_rss_peak_kib"), v[1]);
                res.push(n, &format!("{kind}_rss_after_kib"), v[2]);
            }
        }
        eprintln!("memory probes rep {}/{} done", rep + 1, o.reps);
    }
    print_report(&o, &res);
    eprintln!(
        "total benchmark wall time {:.1} s",
        t_all.elapsed().as_secs_f64()
    );
}

async fn run(
    ns: &str,
    reps: usize,
    ifaces: usize,
    unclaimed_max: usize,
    workloads: &[Workload],
) -> Results {
    let mut res = Results::default();
    let direct = Direct::open();
    let idx: Vec<u32> = (0..ifaces).map(|k| ifindex(&iface_name(k))).collect();
    let ifindex_map: HashMap<String, u32> = (0..ifaces).map(|k| (iface_name(k), idx[k])).collect();
    assert_eq!(direct.count().await, 0);

    // One-off part of Brindle's first apply on fresh interfaces: the per-interface
    // sysctls (8 per cali interface + ip_forward). Measured with 0 routes, the values
    // restored to the namespace's defaults before every sample.
    {
        let m = Model {
            node_name: "bench".into(),
            endpoints: (0..ifaces)
                .map(|k| LocalEndpoint {
                    iface: iface_name(k),
                    ips: vec![],
                    mac: None,
                })
                .collect(),
            ..Default::default()
        };
        let d = calc::desired(&m, ROUTE_PROTOCOL);
        let root = Path::new(sysctl::PROC_SYS);
        let orig: Vec<(String, String)> = d
            .sysctls
            .keys()
            .filter_map(|k| sysctl::read(root, k).ok().map(|v| (k.clone(), v)))
            .collect();
        for _ in 0..reps {
            for (k, v) in &orig {
                sysctl::write(root, k, v).unwrap();
            }
            let mut dp = Dataplane::new(DataplaneConfig::default()).expect("dataplane");
            let t = Instant::now();
            let r = dp.apply(&m).await;
            let s = t.elapsed().as_secs_f64();
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            res.push(0, "brindle_sysctl_first_apply", s);
            res.push(0, "brindle_sysctl_written", r.sysctls_written as f64);
        }
        // leave them set, as after the agent's first apply; what every later apply
        // costs with 0 routes (dumps, sysctl reads)
        let mut dp = Dataplane::new(DataplaneConfig::default()).expect("dataplane");
        for _ in 0..reps {
            let t = Instant::now();
            let r = dp.apply(&m).await;
            res.push(0, "brindle_fixed", t.elapsed().as_secs_f64());
            assert_eq!(r.changes(), 0);
        }
    }

    for rep in 0..reps {
        for w in workloads {
            let n = w.n;
            for step in 0..3 {
                let method = (rep + step) % 3;
                flush(ns);
                assert_eq!(direct.count().await, 0, "flush left routes");
                match method {
                    0 => brindle(&mut res, &direct, w, &ifindex_map, &idx, unclaimed_max).await,
                    1 => {
                        let t = Instant::now();
                        let errs = direct.add(&w.routes, &idx).await;
                        let add = t.elapsed().as_secs_f64();
                        assert_eq!(errs, 0, "direct add errors");
                        let t = Instant::now();
                        let c = direct.count().await;
                        res.push(n, "dump_ms", t.elapsed().as_secs_f64() * 1e3);
                        assert_eq!(c, n, "direct add: count");
                        let t = Instant::now();
                        let errs = direct.del(&w.routes).await;
                        let del = t.elapsed().as_secs_f64();
                        assert_eq!(errs, 0, "direct del errors");
                        assert_eq!(direct.count().await, 0, "direct del: count");
                        res.push(n, "direct_add", add);
                        res.push(n, "direct_del", del);
                    }
                    _ => {
                        let add = ip_ns(ns, &["-batch", w.add_file.to_str().unwrap()]);
                        assert_eq!(direct.count().await, n, "ip -batch add: count");
                        // `ip route flush proto 80` of N routes, for reference
                        let fl = ip_ns(
                            ns,
                            &["route", "flush", "proto", &ROUTE_PROTOCOL.to_string()],
                        );
                        assert_eq!(direct.count().await, 0, "flush: count");
                        let re = ip_ns(ns, &["-batch", w.add_file.to_str().unwrap()]);
                        assert_eq!(direct.count().await, n, "ip -batch re-add: count");
                        let del = ip_ns(ns, &["-batch", w.del_file.to_str().unwrap()]);
                        assert_eq!(direct.count().await, 0, "ip -batch del: count");
                        res.push(n, "ipbatch_add", add.as_secs_f64());
                        res.push(n, "ipbatch_add2", re.as_secs_f64());
                        res.push(n, "ipbatch_del", del.as_secs_f64());
                        res.push(n, "ip_flush", fl.as_secs_f64());
                    }
                }
            }
            flush(ns);
            run_loop_echo(&mut res, &direct, w).await;
            eprintln!("rep {}/{reps} N={n} done", rep + 1);
        }
    }
    flush(ns);
    res
}

/// `--probe KIND --probe-n N`: one method's process memory in a fresh process, in the
/// namespace the parent created. Prints `rss BEFORE PEAK AFTER` (KiB).
fn probe(o: &Opts, kind: &str) {
    let w = workload(o.probe_n, o.ifaces, None);
    let ns = o.ns.clone();
    let ifaces = o.ifaces;
    let kind = kind.to_string();
    let line = std::thread::spawn(move || {
        enter(&ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let direct = Direct::open();
            assert_eq!(direct.count().await, 0, "probe: namespace not empty");
            let idx: Vec<u32> = (0..ifaces).map(|k| ifindex(&iface_name(k))).collect();
            let mut dp = Dataplane::new(DataplaneConfig::default()).expect("dataplane");
            reset_hwm();
            let (before, _) = rss();
            match kind.as_str() {
                "brindle" => {
                    let r = dp.apply(&w.model).await;
                    assert!(r.errors.is_empty() && r.routes_added == w.n);
                }
                "direct" => assert_eq!(direct.add(&w.routes, &idx).await, 0),
                other => panic!("unknown probe {other}"),
            }
            let (after, peak) = rss();
            assert_eq!(direct.count().await, w.n);
            assert_eq!(direct.del(&w.routes).await, 0);
            assert_eq!(direct.count().await, 0);
            format!("rss {before} {peak} {after}")
        })
    })
    .join()
    .expect("probe thread");
    println!("{line}");
}

/// Brindle's run loop: after the initial apply of N routes, does the kernel's echo of
/// its own changes trigger further applies? Counts applies within 1.5 s of the first.
async fn run_loop_echo(res: &mut Results, direct: &Direct, w: &Workload) {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    let n = w.n;
    let (_tx, rx) = tokio::sync::watch::channel(w.model.clone());
    let mut dp = Dataplane::new(DataplaneConfig::default()).expect("dataplane");
    let first: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
    let reports: Rc<RefCell<Vec<(usize, usize, f64)>>> = Rc::new(RefCell::new(Vec::new()));
    let (f2, r2) = (first.clone(), reports.clone());
    let on_report = move |r: &brindle_felix::ApplyReport| {
        if f2.get().is_none() {
            f2.set(Some(Instant::now()));
        }
        r2.borrow_mut()
            .push((r.changes(), r.routes_programmed, r.duration.as_secs_f64()));
    };
    let shutdown = async {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if first
                .get()
                .is_some_and(|t| t.elapsed() > Duration::from_millis(1500))
            {
                break;
            }
        }
    };
    dp.run(rx, on_report, shutdown).await.expect("run");
    let reps = reports.borrow().clone();
    assert_eq!(reps[0].0, n, "run loop: first apply");
    assert_eq!(direct.count().await, n);
    let extra = &reps[1..];
    res.push(n, "echo_applies", extra.len() as f64);
    res.push(n, "echo_apply_s", extra.iter().map(|r| r.2).sum::<f64>());
    res.push(
        n,
        "echo_changes",
        extra.iter().map(|r| r.0 as f64).sum::<f64>(),
    );
}

async fn brindle(
    res: &mut Results,
    direct: &Direct,
    w: &Workload,
    ifindex_map: &HashMap<String, u32>,
    idx: &[u32],
    unclaimed_max: usize,
) {
    let n = w.n;
    let mut dp = Dataplane::new(DataplaneConfig::default()).expect("dataplane");

    let t = Instant::now();
    let r = dp.apply(&w.model).await;
    let add = t.elapsed().as_secs_f64();
    assert!(r.errors.is_empty(), "brindle add: {:?}", r.errors);
    assert_eq!(r.routes_added, n, "brindle add: routes_added");
    assert_eq!(r.pending, 0);
    assert_eq!(direct.count().await, n, "brindle add: count");
    res.push(n, "brindle_add", add);
    res.push(n, "brindle_add_sysctls_written", r.sysctls_written as f64);

    let t = Instant::now();
    let r = dp.apply(&w.model).await;
    let noop = t.elapsed().as_secs_f64();
    assert!(r.errors.is_empty(), "brindle no-op: {:?}", r.errors);
    assert_eq!(r.changes(), 0, "brindle no-op changed something");
    assert_eq!(r.routes_programmed, n);
    res.push(n, "brindle_noop", noop);

    // pieces of the no-op apply, measured separately with felix's public functions
    let t = Instant::now();
    let d = calc::desired(&w.model, ROUTE_PROTOCOL);
    res.push(n, "calc_desired_ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let raw = direct.dump_own().await;
    res.push(n, "dump_ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let own: Vec<_> = raw.iter().filter_map(routes::parse_route).collect();
    res.push(n, "parse_ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let p = routes::plan(&d.routes, &own, ifindex_map, false);
    res.push(n, "plan_ms", t.elapsed().as_secs_f64() * 1e3);
    assert_eq!(p.in_place, n);
    let t = Instant::now();
    let so = sysctl::reconcile(Path::new(sysctl::PROC_SYS), &d.sysctls, |_| true);
    res.push(n, "sysctl_read_pass_ms", t.elapsed().as_secs_f64() * 1e3);
    assert!(so.written.is_empty());
    drop((raw, own, p, d));

    // Removal: every endpoint leaves the model while its veth still exists. felix takes a
    // host route out of an existing cali interface that no endpoint claims for the CNI
    // plugin's (made before the agent read the pod's record) and deletes it only once it
    // stayed unclaimed for `unclaimed_route_grace` (default 5 s).
    let empty = Model {
        node_name: "bench".into(),
        ..Default::default()
    };
    if n <= unclaimed_max {
        // (a) default grace: two applies within the grace period, deleting nothing
        for metric in ["brindle_unclaimed_1st", "brindle_unclaimed_2nd"] {
            let t = Instant::now();
            let r = dp.apply(&empty).await;
            res.push(n, metric, t.elapsed().as_secs_f64());
            assert!(r.errors.is_empty(), "brindle unclaimed: {:?}", r.errors);
            assert_eq!(
                r.routes_removed, 0,
                "brindle unclaimed: removed within grace"
            );
        }
        assert_eq!(direct.count().await, n, "brindle unclaimed: count");
    }
    // (b) grace 0: one apply removes them all
    let mut dp0 = Dataplane::new(DataplaneConfig {
        unclaimed_route_grace: Duration::ZERO,
        ..Default::default()
    })
    .expect("dataplane");
    let t = Instant::now();
    let r = dp0.apply(&empty).await;
    let del = t.elapsed().as_secs_f64();
    assert!(r.errors.is_empty(), "brindle remove: {:?}", r.errors);
    assert_eq!(r.routes_removed, n, "brindle remove: routes_removed");
    assert_eq!(direct.count().await, 0, "brindle remove: count");
    res.push(n, "brindle_del", del);

    // (c) `Dataplane::cleanup` (dump, delete everything of protocol 80); the routes are
    // put back with the direct baseline first (not timed)
    assert_eq!(direct.add(&w.routes, idx).await, 0);
    let t = Instant::now();
    let r = dp.cleanup().await.expect("cleanup");
    let del = t.elapsed().as_secs_f64();
    assert!(r.errors.is_empty(), "brindle cleanup: {:?}", r.errors);
    assert_eq!(r.routes_removed, n, "brindle cleanup: routes_removed");
    assert_eq!(direct.count().await, 0, "brindle cleanup: count");
    res.push(n, "brindle_cleanup", del);
}

// ---------------------------------------------------------------- report

fn print_report(o: &Opts, res: &Results) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "\n# bench_routes: kernel {}, {} CPUs, {} cali veths, {} repetitions (median [min–max])\n",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.ifaces,
        o.reps
    );
    if let Some(v) = res.get(0, "brindle_sysctl_first_apply") {
        let (a, b) = min_max(v);
        let w = res
            .get(0, "brindle_sysctl_written")
            .map_or(0.0, |v| median(v));
        println!(
            "Brindle first apply on {} fresh interfaces, 0 routes ({} sysctl writes): {:.1} ms [{:.1}–{:.1}]\n",
            o.ifaces,
            w,
            median(v) * 1e3,
            a * 1e3,
            b * 1e3
        );
    }
    if let Some(v) = res.get(0, "brindle_fixed") {
        let (a, b) = min_max(v);
        println!(
            "Brindle apply with {} interfaces, 0 routes, nothing to change (fixed cost of every apply): {:.1} ms [{:.1}–{:.1}]\n",
            o.ifaces,
            median(v) * 1e3,
            a * 1e3,
            b * 1e3
        );
    }
    println!("| N | method | operation | wall time s | routes/s | Brindle ÷ this (time) |");
    println!("|---:|---|---|---|---:|---|");
    let direct_label = format!(
        "direct netlink ({}/send)",
        BATCH.load(std::sync::atomic::Ordering::Relaxed)
    );
    for &n in &o.sizes {
        // `refs`: (label, Brindle metric) the row is compared with
        let row = |metric: &str, method: &str, op: &str, refs: &[(&str, &str)]| {
            let Some(v) = res.get(n, metric) else { return };
            let (a, b) = min_max(v);
            let med = median(v);
            let ratio: Vec<String> = refs
                .iter()
                .filter_map(|(label, r)| res.get(n, r).map(|br| (label, br)))
                .map(|(label, brindle)| {
                    // ratio of medians, and the range of the per-repetition ratios
                    let per: Vec<f64> = brindle.iter().zip(v).map(|(x, y)| x / y).collect();
                    let (ra, rb) = min_max(&per);
                    format!("{label}{:.2} [{:.2}–{:.2}]", median(brindle) / med, ra, rb)
                })
                .collect();
            let ratio = ratio.join("; ");
            let rate = if op.contains("no-op") || op.contains("unclaimed") {
                String::from("—")
            } else {
                format!("{:.0}k", n as f64 / med / 1e3)
            };
            println!("| {n} | {method} | {op} | {med:.3} [{a:.3}–{b:.3}] | {rate} | {ratio} |");
        };
        let add = [("", "brindle_add")];
        let del = [("apply ", "brindle_del"), ("cleanup ", "brindle_cleanup")];
        row("brindle_add", "Brindle `apply`", "empty → N", &[]);
        row("direct_add", &direct_label, "add N", &add);
        row("ipbatch_add", "`ip -batch`", "add N", &add);
        row(
            "ipbatch_add2",
            "`ip -batch` (2nd add in the same step)",
            "add N",
            &add,
        );
        row("brindle_noop", "Brindle `apply`", "no-op over N", &[]);
        row(
            "brindle_unclaimed_1st",
            "Brindle `apply`",
            "endpoints removed, veths stay: 1st apply (N unclaimed, kept for the grace period)",
            &[],
        );
        row(
            "brindle_unclaimed_2nd",
            "Brindle `apply`",
            "endpoints removed, veths stay: 2nd apply within the grace period (N unclaimed)",
            &[],
        );
        row(
            "brindle_del",
            "Brindle `apply`, `unclaimed_route_grace` 0",
            "endpoints removed, veths stay → 0",
            &[],
        );
        row(
            "brindle_cleanup",
            "Brindle `Dataplane::cleanup`",
            "delete all N (dump + delete)",
            &[],
        );
        row("direct_del", &direct_label, "delete N", &del);
        row("ipbatch_del", "`ip -batch`", "delete N", &del);
        row("ip_flush", "`ip route flush proto 80`", "delete N", &del);
    }
    println!("\nPieces (median [min–max], ms): what a no-op apply consists of");
    println!("| N | calc::desired | strict dump (proto 80) | parse_route | routes::plan | sysctl read pass |");
    println!("|---:|---|---|---|---|---|");
    for &n in &o.sizes {
        let f = |m: &str| {
            res.get(n, m).map_or(String::from("—"), |v| {
                let (a, b) = min_max(v);
                format!("{:.1} [{:.1}–{:.1}]", median(v), a, b)
            })
        };
        println!(
            "| {n} | {} | {} | {} | {} | {} |",
            f("calc_desired_ms"),
            f("dump_ms"),
            f("parse_ms"),
            f("plan_ms"),
            f("sysctl_read_pass_ms")
        );
    }
    println!(
        "\nProcess memory, each sample a fresh process (KiB; peak = VmHWM, reset just before the add):"
    );
    println!(
        "| N | method | VmRSS before add | peak during add | VmRSS after add | peak − before |"
    );
    println!("|---:|---|---|---|---|---|");
    for &n in &o.sizes {
        for (kind, label) in [("brindle", "Brindle `apply`"), ("direct", "direct netlink")] {
            let f = |m: &str| {
                res.get(n, &format!("{kind}_{m}"))
                    .map_or(String::from("—"), |v| {
                        let (a, b) = min_max(v);
                        format!("{:.0} [{:.0}–{:.0}]", median(v), a, b)
                    })
            };
            let delta = match (
                res.get(n, &format!("{kind}_rss_peak_kib")),
                res.get(n, &format!("{kind}_rss_before_kib")),
            ) {
                (Some(p), Some(b)) => {
                    let d: Vec<f64> = p.iter().zip(b).map(|(p, b)| p - b).collect();
                    let (a, c) = min_max(&d);
                    format!("{:.0} [{:.0}–{:.0}]", median(&d), a, c)
                }
                _ => String::from("—"),
            };
            println!(
                "| {n} | {label} | {} | {} | {} | {delta} |",
                f("rss_before_kib"),
                f("rss_peak_kib"),
                f("rss_after_kib"),
            );
        }
    }
    println!("\nBrindle's run loop (`Dataplane::run`): applies triggered within 1.5 s after the initial apply of N routes, by the kernel's notifications of Brindle's own changes");
    println!("| N | extra applies | their total time s | changes they made |");
    println!("|---:|---|---|---|");
    for &n in &o.sizes {
        let f = |m: &str, prec: usize| {
            res.get(n, m).map_or(String::from("—"), |v| {
                let (a, b) = min_max(v);
                format!("{:.p$} [{:.p$}–{:.p$}]", median(v), a, b, p = prec)
            })
        };
        println!(
            "| {n} | {} | {} | {} |",
            f("echo_applies", 0),
            f("echo_apply_s", 3),
            f("echo_changes", 0)
        );
    }
    for n in &res.notes {
        println!("note: {n}");
    }
}
