//! Namespace harness for felix's kernel tests.
//!
//! * Every namespace is created here with a unique name `fx<pid>x<n>` and deleted by
//!   name when its guard drops (also when the test fails). Links are created with
//!   `ip -n NS ...` inside test namespaces only; the root namespace is never touched.
//! * Code under test runs in a namespace on a dedicated thread that `setns`es itself
//!   and then builds its own current-thread tokio runtime ([`in_ns`], [`spawn_in_ns`]).
#![allow(dead_code)]

use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by the test.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "fx{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns
    }

    /// `ip -n NAME <args>`; panics on failure.
    pub fn ip(&self, args: &str) -> String {
        let mut a = vec!["-n", &self.name];
        a.extend(args.split_whitespace());
        run_ok("ip", &a)
    }

    /// `ip -n NAME <args>`; (success, stdout+stderr).
    pub fn try_ip(&self, args: &str) -> (bool, String) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend(args.split_whitespace());
        run("ip", &a)
    }

    /// `ip netns exec NAME sh -c <cmd>`; (success, stdout+stderr).
    pub fn sh(&self, cmd: &str) -> (bool, String) {
        run("ip", &["netns", "exec", &self.name, "sh", "-c", cmd])
    }

    pub fn sh_ok(&self, cmd: &str) -> String {
        let (ok, out) = self.sh(cmd);
        assert!(ok, "in {}: {cmd}: {out}", self.name);
        out
    }

    pub fn sysctl(&self, key: &str) -> String {
        self.sh_ok(&format!("cat /proc/sys/{key}"))
            .trim()
            .to_string()
    }

    pub fn set_sysctl(&self, key: &str, value: &str) {
        self.sh_ok(&format!("echo {value} > /proc/sys/{key}"));
    }

    /// One ping; whether it was answered.
    pub fn ping(&self, dst: &str) -> bool {
        self.sh(&format!("ping -c 1 -W 2 {dst}")).0
    }

    /// Brindle's routes (`ip route show proto 80`, IPv4 and IPv6).
    pub fn own_routes(&self) -> String {
        let mut s = self.ip("route show proto 80");
        s.push_str(&self.ip("-6 route show proto 80"));
        s
    }

    /// The MAC of an interface in this namespace.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&format!("-br link show dev {dev}"));
        out.split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn run(prog: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

pub fn run_ok(prog: &str, args: &[&str]) -> String {
    let (ok, out) = run(prog, args);
    assert!(ok, "{prog} {}: {out}", args.join(" "));
    out
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` to completion on a fresh thread inside namespace `ns`, with its own
/// current-thread runtime.
pub fn in_ns<F, Fut, T>(ns: &Netns, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    spawn_in_ns(ns, f)
        .join()
        .expect("namespace thread panicked")
}

/// Like [`in_ns`] but returns the thread's handle.
pub fn spawn_in_ns<F, Fut, T>(ns: &Netns, f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let name = ns.name.clone();
    std::thread::spawn(move || {
        enter(&name);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(f())
    })
}

/// Polls `cond` every 100 ms for up to `limit`; the elapsed time when it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A pod: its own namespace, `eth0` with `ip/32`, `169.254.1.1` as gateway (answered by
/// proxy ARP on the node), and a host-side veth `host_iface` in `node`.
pub struct Pod {
    pub ns: Netns,
    pub host_iface: String,
    pub ip: String,
    pub mac: String,
}

pub fn add_pod(node: &Netns, host_iface: &str, ip: &str) -> Pod {
    let ns = Netns::new();
    node.ip(&format!(
        "link add {host_iface} type veth peer name eth0 netns {}",
        ns.name
    ));
    node.ip(&format!("link set {host_iface} up"));
    ns.ip("link set eth0 up");
    ns.ip(&format!("addr add {ip}/32 dev eth0"));
    ns.ip("route add 169.254.1.1 dev eth0 scope link");
    ns.ip("route add default via 169.254.1.1 dev eth0");
    let mac = ns.mac("eth0");
    Pod {
        ns,
        host_iface: host_iface.to_string(),
        ip: ip.to_string(),
        mac,
    }
}

/// Gives `node` an uplink `eth0` (`addr`/24) to a fresh "world" namespace (`gw`/24) and a
/// default route through it (proxy ARP for 169.254.1.1 needs a route to it). Returns
/// the world namespace.
pub fn add_uplink(node: &Netns, addr: &str, gw: &str) -> Netns {
    let world = Netns::new();
    node.ip(&format!(
        "link add eth0 type veth peer name up0 netns {}",
        world.name
    ));
    node.ip(&format!("addr add {addr}/24 dev eth0"));
    node.ip("link set eth0 up");
    world.ip(&format!("addr add {gw}/24 dev up0"));
    world.ip("link set up0 up");
    node.ip(&format!("route add default via {gw}"));
    world
}

/// The namespace's `TcpExtIPReversePathFilter` counter (packets dropped by rp_filter).
pub fn rpf_drops(ns: &Netns) -> u64 {
    let out = ns.sh_ok("nstat -az TcpExtIPReversePathFilter");
    out.lines()
        .find(|l| l.contains("IPReversePathFilter"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sets the rp_filter baseline of a namespace (`all` and `default`).
pub fn rp_baseline(ns: &Netns, all: u8, default: u8) {
    ns.set_sysctl("net/ipv4/conf/all/rp_filter", &all.to_string());
    ns.set_sysctl("net/ipv4/conf/default/rp_filter", &default.to_string());
}
