//! Test harness for interop tests: network namespaces, veth links, real BGP daemons
//! (BIRD 2, FRR, GoBGP) and brindle-node, each torn down by PID/name on drop.
//!
//! Rules followed here (shared test machine):
//! - every namespace is created by the test (`b<pid>x<counter><role>`) and deleted on drop;
//! - nothing is ever configured in the root namespace (links are created with `ip -n`);
//! - every daemon runs in the foreground as a child of the test, gets PR_SET_PDEATHSIG,
//!   and is stopped by PID (SIGTERM, then SIGKILL) and reaped on drop;
//! - every wait is bounded and panics with a dump of every router involved.
//!
//! Each test binary includes this module with `mod common;` and uses a subset of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Default bound for a session to come up / a route to converge.
pub const CONVERGE: Duration = Duration::from_secs(45);
/// Poll interval of every wait.
pub const POLL: Duration = Duration::from_millis(250);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique across the parallel tests of this machine: `b<pid>x<n><role>`.
pub fn unique_name(role: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("b{}x{}{}", std::process::id(), n, role)
}

fn unique_number() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

/// Absolute path of a required program; panics with an actionable message when it is missing.
/// Looks in PATH and in the sbin / FRR directories (a test runner's PATH may lack sbin).
pub fn require_bin(name: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/sbin",
        "/sbin",
        "/usr/bin",
        "/bin",
        "/usr/lib/frr",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for d in dirs {
        let p = d.join(name);
        if let Ok(md) = fs::metadata(&p) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return p;
            }
        }
    }
    panic!(
        "{name} not found: run the README test command (it installs {package}); \
         interop tests need the real daemon and never skip"
    );
}

fn ip_bin() -> PathBuf {
    require_bin("ip", "iproute2")
}

/// Bound of every one-shot command (CLI queries, `ip`): a hung daemon must not hang a test.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// Run a command, return its output (never panics on a non-zero status). Killed after
/// [`CMD_TIMEOUT`]; a timed-out command returns a failed status with "timed out" in stderr.
fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, CMD_TIMEOUT)
}

fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                timed_out = true;
                break child
                    .wait()
                    .unwrap_or(std::process::ExitStatus::from_raw(9));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let mut stderr = t_err.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n<{cmd:?} timed out after {timeout:?}>").as_bytes());
        return Output {
            status: std::process::ExitStatus::from_raw(9),
            stdout,
            stderr,
        };
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Run a command and panic (with its stderr) unless it succeeds; returns stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    if !out.status.success() {
        panic!(
            "command failed ({}): {:?}\nstdout: {}\nstderr: {}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        s.push_str(&err);
    }
    s
}

/// The last `n` lines of a file ("" if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// A per-daemon temp dir. Its path is printed (shown with a failing test's output); with
/// `BRINDLE_KEEP_TEST_DIRS=1` it is kept after the test for post-mortem reading.
pub fn test_dir(prefix: &str) -> tempfile::TempDir {
    let mut d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    if std::env::var_os("BRINDLE_KEEP_TEST_DIRS").is_some() {
        d.disable_cleanup(true);
    }
    eprintln!("{prefix} files: {}", d.path().display());
    d
}

// ---------------------------------------------------------------------------------------------
// Waiting and dumping
// ---------------------------------------------------------------------------------------------

/// Something that can describe its state when a wait fails, and say whether it died.
pub trait Dump {
    fn dump(&self) -> String;
    /// `Some(reason)` when the process behind this object has exited (fail fast).
    fn dead(&self) -> Option<String> {
        None
    }
}

fn dump_all(dumps: &[&dyn Dump]) -> String {
    let mut s = String::new();
    for d in dumps {
        let _ = writeln!(s, "{}\n", d.dump());
    }
    s
}

fn check_alive(what: &str, dumps: &[&dyn Dump]) {
    for d in dumps {
        if let Some(reason) = d.dead() {
            panic!("while waiting for {what}: {reason}\n\n{}", dump_all(dumps));
        }
    }
}

/// Poll `cond` every [`POLL`] until it holds; panics after `timeout` with every dump.
/// Also panics early when one of the dumped daemons has exited.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    dumps: &[&dyn Dump],
    mut cond: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        check_alive(what, dumps);
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n\n{}",
                dump_all(dumps)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Poll for `duration` and panic as soon as `bad` holds (a negative assertion, e.g.
/// "never Established with a wrong password").
pub fn assert_never(
    what: &str,
    duration: Duration,
    dumps: &[&dyn Dump],
    mut bad: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < duration {
        if bad() {
            panic!(
                "{what} happened after {:?}\n\n{}",
                start.elapsed(),
                dump_all(dumps)
            );
        }
        check_alive(what, dumps);
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child process stopped by PID on drop: SIGCONT+SIGTERM, up to 5 s, then SIGKILL; always reaped.
pub struct Daemon {
    pub name: String,
    pub pid: i32,
    child: Mutex<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Spawn `cmd` with stdout+stderr appended to `log`; the child gets SIGKILL if the
    /// test thread that spawned it dies.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Daemon {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Daemon {
            name: name.to_string(),
            pid: child.id() as i32,
            child: Mutex::new(child),
            log: log.to_path_buf(),
        }
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    pub fn signal(&self, sig: i32) {
        if self.exited().is_none() {
            unsafe {
                libc::kill(self.pid, sig);
            }
        }
    }

    pub fn dead_reason(&self) -> Option<String> {
        self.exited().map(|st| {
            format!(
                "{} (pid {}) exited: {st}; log tail:\n{}",
                self.name,
                self.pid,
                tail(&self.log, 40)
            )
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut child = match self.child.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
            libc::kill(self.pid, libc::SIGCONT);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------------------------

static REAP: Once = Once::new();

/// Delete namespaces left by an earlier harness process that was killed before its drops ran
/// (name `b<pid>x<n><role>` whose pid no longer exists). Only our own naming pattern is touched.
fn reap_stale_namespaces() {
    REAP.call_once(|| {
        let out = run(Command::new(ip_bin()).args(["netns", "list"]));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix('b') else {
                continue;
            };
            let Some((pid, tail)) = rest.split_once('x') else {
                continue;
            };
            let well_formed = !pid.is_empty()
                && pid.bytes().all(|c| c.is_ascii_digit())
                && tail.bytes().next().is_some_and(|c| c.is_ascii_digit())
                && tail.bytes().all(|c| c.is_ascii_alphanumeric());
            if !well_formed || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            // Only if nothing runs inside it any more.
            let pids = run(Command::new(ip_bin()).args(["netns", "pids", name]));
            if String::from_utf8_lossy(&pids.stdout).trim().is_empty() {
                let _ = run(Command::new(ip_bin()).args(["netns", "delete", name]));
            }
        }
    });
}

/// A network namespace created for one test; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Create `b<pid>x<n><role>` with `lo` up.
    pub fn new(role: &str) -> Netns {
        reap_stale_namespaces();
        let name = unique_name(role);
        run_ok(Command::new(ip_bin()).args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME prog` as a Command to add arguments to.
    pub fn command(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(ip_bin());
        c.args(["netns", "exec", &self.name]).arg(prog);
        c
    }

    /// Run `args` inside the namespace; returns its Output whatever the status.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut c = self.command(args[0]);
        c.args(&args[1..]);
        run(&mut c)
    }

    /// Run `args` inside the namespace; panics unless it succeeds; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let mut c = self.command(args[0]);
        c.args(&args[1..]);
        run_ok(&mut c)
    }

    /// Start a long-running process inside the namespace (stdout+stderr to `log`).
    pub fn spawn(&self, name: &str, args: &[&str], log: &Path) -> Daemon {
        let mut c = self.command(args[0]);
        c.args(&args[1..]);
        Daemon::spawn(name, c, log)
    }

    /// `ip -n NAME ARGS...`, panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        run_ok(Command::new(ip_bin()).arg("-n").arg(&self.name).args(args))
    }

    /// `sysctl -w key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec_ok(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// Add an address (`10.1.0.1/24` or `fd00:1::1/64`; IPv6 gets `nodad`).
    pub fn add_addr(&self, ifname: &str, cidr: &str) {
        if cidr.contains(':') {
            self.ip(&["-6", "addr", "add", cidr, "dev", ifname, "nodad"]);
        } else {
            self.ip(&["addr", "add", cidr, "dev", ifname]);
        }
    }

    pub fn link_up(&self, ifname: &str) {
        self.ip(&["link", "set", ifname, "up"]);
    }

    /// `ip route` + `ip -6 route` in the namespace (for dumps and FIB checks).
    pub fn routes_text(&self) -> String {
        let v4 = run(Command::new(ip_bin()).args(["-n", &self.name, "route"]));
        let v6 = run(Command::new(ip_bin()).args(["-n", &self.name, "-6", "route"]));
        format!("{}{}", output_text(&v4), output_text(&v6))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new(ip_bin()).args(["netns", "delete", &self.name]));
    }
}

/// A veth pair between two namespaces (created with `ip -n`, never in the root namespace), both ends up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    assert!(
        a_if.len() <= 15 && b_if.len() <= 15,
        "interface names must be at most 15 chars"
    );
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.link_up(a_if);
    b.link_up(b_if);
}

/// Two namespaces on one veth link: `node` (10.<i>.0.1/24, fd00:<i>::1/64 on eth0) and
/// `router` (10.<i>.0.2/24, fd00:<i>::2/64 on eth0). Namespaces isolate, so `i` only needs
/// to be distinct within one topology.
pub struct P2p {
    pub node: Netns,
    pub router: Netns,
    pub i: u8,
}

impl P2p {
    pub fn new(i: u8) -> P2p {
        let node = Netns::new("n");
        let router = Netns::new("r");
        veth(&node, "eth0", &router, "eth0");
        node.add_addr("eth0", &format!("10.{i}.0.1/24"));
        node.add_addr("eth0", &format!("fd00:{i}::1/64"));
        router.add_addr("eth0", &format!("10.{i}.0.2/24"));
        router.add_addr("eth0", &format!("fd00:{i}::2/64"));
        P2p { node, router, i }
    }
    pub fn node_v4(&self) -> String {
        format!("10.{}.0.1", self.i)
    }
    pub fn node_v6(&self) -> String {
        format!("fd00:{}::1", self.i)
    }
    pub fn router_v4(&self) -> String {
        format!("10.{}.0.2", self.i)
    }
    pub fn router_v6(&self) -> String {
        format!("fd00:{}::2", self.i)
    }
}

/// A bridge ("switch") namespace with `n` member namespaces, member k (1-based) having
/// 10.<i>.0.<k>/24 and fd00:<i>::<k>/64 on eth0.
pub struct Lan {
    pub switch: Netns,
    pub members: Vec<Netns>,
    pub i: u8,
}

impl Lan {
    pub fn new(i: u8, roles: &[&str]) -> Lan {
        let switch = Netns::new("s");
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.link_up("br0");
        let mut members = Vec::new();
        for (k, role) in roles.iter().enumerate() {
            let ns = Netns::new(role);
            let port = format!("p{}", k + 1);
            veth(&switch, &port, &ns, "eth0");
            switch.ip(&["link", "set", &port, "master", "br0"]);
            ns.add_addr("eth0", &format!("10.{i}.0.{}/24", k + 1));
            ns.add_addr("eth0", &format!("fd00:{i}::{}/64", k + 1));
            members.push(ns);
        }
        Lan { switch, members, i }
    }
    pub fn v4(&self, k: usize) -> String {
        format!("10.{}.0.{}", self.i, k)
    }
    pub fn v6(&self, k: usize) -> String {
        format!("fd00:{}::{}", self.i, k)
    }
}

// ---------------------------------------------------------------------------------------------
// BIRD 2
// ---------------------------------------------------------------------------------------------

/// BIRD 2 running in the foreground (`bird -f`) in a namespace; queried with `birdc -s`.
pub struct Bird {
    daemon: Daemon,
    pub ns_name: String,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub conf: PathBuf,
    router_id: String,
}

impl Bird {
    /// Write `bird.conf` = header (log file, router id, `protocol device`) + `body`, check it
    /// with `bird -p`, start BIRD and wait until its control socket answers.
    pub fn start(ns: &Netns, router_id: &str, body: &str) -> Bird {
        let bird = require_bin("bird", "bird2");
        require_bin("birdc", "bird2");
        let dir = test_dir("bird");
        let sock = dir.path().join("bird.ctl");
        let conf = dir.path().join("bird.conf");
        let log = dir.path().join("bird.out");
        write_bird_conf(&conf, dir.path(), router_id, body);
        let pid = dir.path().join("bird.pid");
        let daemon = ns.spawn(
            "bird",
            &[
                bird.to_str().unwrap(),
                "-f",
                "-c",
                conf.to_str().unwrap(),
                "-s",
                sock.to_str().unwrap(),
                "-P",
                pid.to_str().unwrap(),
            ],
            &log,
        );
        let b = Bird {
            daemon,
            ns_name: ns.name.clone(),
            sock,
            conf,
            router_id: router_id.to_string(),
            dir,
        };
        wait_until(
            "BIRD control socket",
            Duration::from_secs(10),
            &[&b],
            || b.cmd("show status").contains("Daemon is up and running"),
        );
        b
    }

    /// Replace the body of the config and `birdc configure`.
    pub fn reconfigure(&self, body: &str) {
        write_bird_conf(&self.conf, self.dir.path(), &self.router_id, body);
        let out = self.cmd("configure");
        assert!(
            out.contains("Reconfigured") || out.contains("Reconfiguration in progress"),
            "birdc configure failed: {out}"
        );
    }

    /// `birdc -s SOCK <cmd>` (stdout+stderr).
    pub fn cmd(&self, cmd: &str) -> String {
        let mut c = Command::new(require_bin("birdc", "bird2"));
        c.arg("-s").arg(&self.sock).args(cmd.split_whitespace());
        output_text(&run(&mut c))
    }

    /// `show protocols all NAME`.
    pub fn protocol_all(&self, name: &str) -> String {
        self.cmd(&format!("show protocols all {name}"))
    }

    /// The `BGP state:` of a BGP protocol ("Established", "Active", "Connect", ...).
    pub fn protocol_state(&self, name: &str) -> Option<String> {
        self.protocol_all(name).lines().find_map(|l| {
            l.trim()
                .strip_prefix("BGP state:")
                .map(|s| s.trim().to_string())
        })
    }

    /// The `Last error:` line of a protocol, if any.
    pub fn last_error(&self, name: &str) -> Option<String> {
        self.protocol_all(name).lines().find_map(|l| {
            l.trim()
                .strip_prefix("Last error:")
                .map(|s| s.trim().to_string())
        })
    }

    pub fn established(&self, name: &str) -> bool {
        self.protocol_state(name).as_deref() == Some("Established")
    }

    /// `(imported, exported)` from the first channel's `Routes:` line of a protocol.
    pub fn route_counts(&self, name: &str) -> Option<(u64, u64)> {
        let text = self.protocol_all(name);
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Routes:"))?;
        // "1 imported, 2 exported, 1 preferred"
        let mut imported = None;
        let mut exported = None;
        for part in line.split(',') {
            let mut it = part.split_whitespace();
            let n = it.next()?.parse::<u64>().ok()?;
            match it.next() {
                Some("imported") => imported = Some(n),
                Some("exported") => exported = Some(n),
                _ => {}
            }
        }
        Some((imported?, exported?))
    }

    /// Prefixes in every table (`show route` parsed: the first token of unindented lines).
    pub fn routes(&self) -> Vec<String> {
        parse_bird_routes(&self.cmd("show route"))
    }

    /// Prefixes in one table (`show route table T`).
    pub fn routes_in(&self, table: &str) -> Vec<String> {
        parse_bird_routes(&self.cmd(&format!("show route table {table}")))
    }

    pub fn has_route(&self, prefix: &str) -> bool {
        self.routes().iter().any(|p| p == prefix)
    }

    /// `show route PREFIX all` in every table (attributes such as `BGP.community: (65000,100)`).
    pub fn route_all(&self, prefix: &str) -> String {
        self.cmd(&format!("show route {prefix} all"))
    }

    /// SIGSTOP the daemon (it is SIGCONTed on drop anyway).
    pub fn freeze(&self) {
        self.daemon.signal(libc::SIGSTOP);
    }
    pub fn thaw(&self) {
        self.daemon.signal(libc::SIGCONT);
    }
    pub fn pid(&self) -> i32 {
        self.daemon.pid
    }
}

fn write_bird_conf(conf: &Path, dir: &Path, router_id: &str, body: &str) {
    let text = format!(
        "log \"{}\" all;\nrouter id {router_id};\nprotocol device {{ scan time 2; }}\n{body}\n",
        dir.join("bird.log").display(),
    );
    fs::write(conf, &text).expect("write bird.conf");
    let out = run(Command::new(require_bin("bird", "bird2"))
        .args(["-p", "-c"])
        .arg(conf));
    assert!(
        out.status.success(),
        "bird.conf does not parse: {}\n--- bird.conf ---\n{text}",
        output_text(&out)
    );
}

/// Parse BIRD's `show route` output into prefixes (deduplicated, in order).
pub fn parse_bird_routes(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let Some(tok) = line.split_whitespace().next() else {
            continue;
        };
        if tok.contains('/')
            && tok
                .split('/')
                .next()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .is_ok()
            && !out.iter().any(|p| p == tok)
        {
            out.push(tok.to_string());
        }
    }
    out
}

impl Dump for Bird {
    fn dump(&self) -> String {
        format!(
            "=== BIRD in {} (pid {}) ===\n--- show protocols all ---\n{}\n--- show route all ---\n{}\n--- bird.log tail ---\n{}\n--- stderr ---\n{}",
            self.ns_name,
            self.daemon.pid,
            self.cmd("show protocols all"),
            self.cmd("show route all"),
            tail(&self.dir.path().join("bird.log"), 40),
            tail(&self.daemon.log, 20),
        )
    }
    fn dead(&self) -> Option<String> {
        self.daemon.dead_reason()
    }
}

/// BIRD config for one BGP session with fast reconnect timers. `channels` is e.g.
/// `ipv4 { import all; export all; };`, `extra` more protocol options (`hold time 6;`,
/// `password "x";`). iBGP sessions get `direct;` (BIRD treats iBGP as multihop with recursive
/// next hops otherwise; every topology here is on one link).
pub fn bird_bgp(
    name: &str,
    local_as: u32,
    neighbor: &str,
    neighbor_as: u32,
    extra: &str,
    channels: &str,
) -> String {
    let direct = if local_as == neighbor_as {
        "direct;"
    } else {
        ""
    };
    format!(
        "protocol bgp {name} {{\n  local as {local_as};\n  neighbor {neighbor} as {neighbor_as};\n  {direct}\n  \
         connect delay time 1;\n  connect retry time 2;\n  error wait time 1, 5;\n  {extra}\n  {channels}\n}}\n"
    )
}

// ---------------------------------------------------------------------------------------------
// FRR
// ---------------------------------------------------------------------------------------------

/// FRR zebra + bgpd (foreground, `-u root -g frrvty -P 0`) in a namespace, queried with vtysh.
pub struct Frr {
    zebra: Daemon,
    bgpd: Daemon,
    pub ns_name: String,
    pub dir: tempfile::TempDir,
}

impl Frr {
    /// `bgp_body` is the `router bgp ...` section; the harness adds `frr defaults traditional`,
    /// hostname and logging. Remember `no bgp ebgp-requires-policy` and
    /// `no bgp network import-check` (see [`frr_router_bgp`]).
    pub fn start(ns: &Netns, bgp_body: &str) -> Frr {
        let zebra_bin = require_bin("zebra", "frr");
        let bgpd_bin = require_bin("bgpd", "frr");
        require_bin("vtysh", "frr");
        let dir = test_dir("frr");
        // frrvty group members need to reach the vty sockets in this directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let d = dir.path();
        let zconf = d.join("zebra.conf");
        let bconf = d.join("bgpd.conf");
        fs::write(
            &zconf,
            format!("hostname {}\nlog file {}/zebra.log\n", ns.name, d.display()),
        )
        .unwrap();
        fs::write(
            &bconf,
            format!(
                "frr defaults traditional\nhostname {}\nlog file {}/bgpd.log debugging\n!\n{}\n",
                ns.name,
                d.display(),
                bgp_body
            ),
        )
        .unwrap();
        fs::write(d.join("vtysh.conf"), "").unwrap();
        let zserv = d.join("zserv.api");
        let common = |conf: &Path, pid: &str| -> Vec<String> {
            vec![
                "-u".into(),
                "root".into(),
                "-g".into(),
                "frrvty".into(),
                "-P".into(),
                "0".into(),
                "-f".into(),
                conf.display().to_string(),
                "-i".into(),
                d.join(pid).display().to_string(),
                "-z".into(),
                zserv.display().to_string(),
                "--vty_socket".into(),
                d.display().to_string(),
            ]
        };
        let mut zc = ns.command(&zebra_bin);
        zc.args(common(&zconf, "zebra.pid"));
        let zebra = Daemon::spawn("zebra", zc, &d.join("zebra.out"));
        // bgpd retries its zebra connection, but starting it after zserv.api exists is quicker.
        let start = Instant::now();
        while !zserv.exists() && start.elapsed() < Duration::from_secs(10) {
            if let Some(r) = zebra.dead_reason() {
                panic!("{r}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut bc = ns.command(&bgpd_bin);
        bc.args(common(&bconf, "bgpd.pid"));
        let bgpd = Daemon::spawn("bgpd", bc, &d.join("bgpd.out"));
        let frr = Frr {
            zebra,
            bgpd,
            ns_name: ns.name.clone(),
            dir,
        };
        wait_until("FRR bgpd vty", Duration::from_secs(15), &[&frr], || {
            frr.vtysh_json("show bgp summary json").is_some()
        });
        frr
    }

    fn vtysh_cmd(&self) -> Command {
        let mut c = Command::new(require_bin("vtysh", "frr"));
        c.arg("--vty_socket")
            .arg(self.dir.path())
            .arg("--config_dir")
            .arg(self.dir.path());
        c
    }

    /// `vtysh -c CMD` (stdout+stderr).
    pub fn vtysh(&self, cmd: &str) -> String {
        let mut c = self.vtysh_cmd();
        c.args(["-c", cmd]);
        output_text(&run(&mut c))
    }

    /// `vtysh -c CMD` parsed as JSON (None if it does not parse).
    pub fn vtysh_json(&self, cmd: &str) -> Option<Value> {
        let mut c = self.vtysh_cmd();
        c.args(["-c", cmd]);
        let out = run(&mut c);
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Run configuration lines: `configure terminal`, then each line, e.g.
    /// `["router bgp 65000", "address-family ipv4 unicast", "no network 192.0.2.0/24"]`.
    pub fn configure(&self, lines: &[&str]) {
        let mut c = self.vtysh_cmd();
        c.args(["-c", "configure terminal"]);
        for l in lines {
            c.args(["-c", l]);
        }
        let out = run(&mut c);
        let text = output_text(&out);
        assert!(
            out.status.success() && !text.contains("% "),
            "vtysh configure {lines:?} failed: {text}"
        );
    }

    pub fn summary(&self) -> Value {
        self.vtysh_json("show bgp summary json")
            .unwrap_or(Value::Null)
    }

    /// `bgpState` of a neighbor from `show bgp neighbors ADDR json` ("Established", "Active", ...).
    pub fn neighbor_state(&self, addr: &str) -> Option<String> {
        let v = self.vtysh_json(&format!("show bgp neighbors {addr} json"))?;
        v.get(addr)?.get("bgpState")?.as_str().map(str::to_string)
    }

    pub fn neighbor(&self, addr: &str) -> Option<Value> {
        let v = self.vtysh_json(&format!("show bgp neighbors {addr} json"))?;
        v.get(addr).cloned()
    }

    pub fn established(&self, addr: &str) -> bool {
        self.neighbor_state(addr).as_deref() == Some("Established")
    }

    /// `show bgp ipv4 unicast json` / `show bgp ipv6 unicast json`.
    pub fn rib(&self, v6: bool) -> Value {
        let fam = if v6 { "ipv6" } else { "ipv4" };
        self.vtysh_json(&format!("show bgp {fam} unicast json"))
            .unwrap_or(Value::Null)
    }

    /// The paths FRR holds for a prefix (the `routes[prefix]` array), if any.
    pub fn route(&self, prefix: &str) -> Option<Value> {
        let rib = self.rib(prefix.contains(':'));
        rib.get("routes")?.get(prefix).cloned()
    }

    pub fn has_route(&self, prefix: &str) -> bool {
        self.route(prefix).is_some()
    }
}

impl Dump for Frr {
    fn dump(&self) -> String {
        format!(
            "=== FRR in {} (zebra {}, bgpd {}) ===\n--- show bgp summary ---\n{}\n--- show bgp neighbors ---\n{}\n--- show bgp ipv4 unicast ---\n{}\n--- show bgp ipv6 unicast ---\n{}\n--- bgpd.log tail ---\n{}",
            self.ns_name,
            self.zebra.pid,
            self.bgpd.pid,
            self.vtysh("show bgp summary"),
            self.vtysh("show bgp neighbors"),
            self.vtysh("show bgp ipv4 unicast"),
            self.vtysh("show bgp ipv6 unicast"),
            tail(&self.dir.path().join("bgpd.log"), 40),
        )
    }
    fn dead(&self) -> Option<String> {
        self.zebra.dead_reason().or_else(|| self.bgpd.dead_reason())
    }
}

/// A `router bgp` section with the settings tests need (no RFC 8212 policy requirement,
/// `network` without an IGP route, fast connect retry), plus `neighbors`
/// `(address, remote_as)` and `networks` (each activated in its address family; IPv6
/// neighbors carry only IPv6 unicast, IPv4 neighbors only IPv4 unicast).
pub fn frr_router_bgp(
    asn: u32,
    router_id: &str,
    neighbors: &[(&str, u32)],
    networks: &[&str],
    extra_neighbor_lines: &[&str],
) -> String {
    let mut s = format!(
        "router bgp {asn}\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n"
    );
    for (addr, ras) in neighbors {
        let _ = writeln!(s, " neighbor {addr} remote-as {ras}");
        let _ = writeln!(s, " neighbor {addr} timers connect 2");
        let _ = writeln!(s, " neighbor {addr} advertisement-interval 0");
    }
    for l in extra_neighbor_lines {
        let _ = writeln!(s, " {l}");
    }
    for (fam, v6) in [("ipv4", false), ("ipv6", true)] {
        let _ = writeln!(s, " address-family {fam} unicast");
        for (addr, _) in neighbors.iter().filter(|(a, _)| a.contains(':') == v6) {
            let _ = writeln!(s, "  neighbor {addr} activate");
        }
        for n in networks.iter().filter(|n| n.contains(':') == v6) {
            let _ = writeln!(s, "  network {n}");
        }
        let _ = writeln!(s, " exit-address-family");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// GoBGP
// ---------------------------------------------------------------------------------------------

/// gobgpd (foreground) in a namespace with its gRPC API on 127.0.0.1:<unique port> of that namespace.
pub struct GoBgp {
    daemon: Daemon,
    pub ns_name: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl GoBgp {
    /// Start gobgpd with `toml` as its config (see [`gobgp_toml`]).
    pub fn start(ns: &Netns, toml: &str) -> GoBgp {
        let gobgpd = require_bin("gobgpd", "gobgpd");
        require_bin("gobgp", "gobgpd");
        let dir = test_dir("gobgp");
        let conf = dir.path().join("gobgpd.toml");
        fs::write(&conf, toml).unwrap();
        let port = 50051 + (unique_number() % 10000) as u16;
        let api = format!("127.0.0.1:{port}");
        let daemon = ns.spawn(
            "gobgpd",
            &[
                gobgpd.to_str().unwrap(),
                "-f",
                conf.to_str().unwrap(),
                "-t",
                "toml",
                "--api-hosts",
                &api,
                "--pprof-disable",
                "-p",
                "-l",
                "debug",
            ],
            &dir.path().join("gobgpd.log"),
        );
        let g = GoBgp {
            daemon,
            ns_name: ns.name.clone(),
            dir,
            port,
        };
        wait_until("gobgpd API", Duration::from_secs(15), &[&g], || {
            let out = g.cli_output(&["global"]);
            out.status.success()
        });
        g
    }

    fn cli_output(&self, args: &[&str]) -> Output {
        let mut c = Command::new(ip_bin());
        c.args(["netns", "exec", &self.ns_name])
            .arg(require_bin("gobgp", "gobgpd"))
            .args(["-u", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args);
        run(&mut c)
    }

    /// `gobgp -p PORT ARGS...` (stdout+stderr).
    pub fn cli(&self, args: &[&str]) -> String {
        output_text(&self.cli_output(args))
    }

    /// Same, panicking on failure.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "gobgp {args:?} failed: {}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `gobgp neighbor ADDR -j`.
    pub fn neighbor(&self, addr: &str) -> Option<Value> {
        let out = self.cli_output(&["neighbor", addr, "-j"]);
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The session state as GoBGP names it ("established", "active", "idle", ...).
    pub fn neighbor_state(&self, addr: &str) -> Option<String> {
        let v = self.neighbor(addr)?;
        let st = v.get("state")?.get("session_state")?;
        match st {
            Value::String(s) => Some(s.to_lowercase()),
            Value::Number(n) => Some(
                match n.as_u64()? {
                    1 => "idle",
                    2 => "connect",
                    3 => "active",
                    4 => "opensent",
                    5 => "openconfirm",
                    6 => "established",
                    _ => "unknown",
                }
                .to_string(),
            ),
            _ => None,
        }
    }

    pub fn established(&self, addr: &str) -> bool {
        self.neighbor_state(addr).as_deref() == Some("established")
    }

    /// `gobgp global rib -a ipv4|ipv6 -j`: `{prefix: [paths]}`.
    pub fn rib(&self, v6: bool) -> Value {
        let fam = if v6 { "ipv6" } else { "ipv4" };
        let out = self.cli_output(&["global", "rib", "-a", fam, "-j"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn route(&self, prefix: &str) -> Option<Value> {
        self.rib(prefix.contains(':')).get(prefix).cloned()
    }

    pub fn has_route(&self, prefix: &str) -> bool {
        self.route(prefix).is_some()
    }

    fn fam(prefix: &str) -> &'static str {
        if prefix.contains(':') {
            "ipv6"
        } else {
            "ipv4"
        }
    }

    /// `gobgp global rib add -a FAM PREFIX [extra...]` (e.g. `["community", "65000:1"]`).
    pub fn add_route(&self, prefix: &str, extra: &[&str]) {
        let mut args = vec!["global", "rib", "add", "-a", Self::fam(prefix), prefix];
        args.extend_from_slice(extra);
        self.cli_ok(&args);
    }

    pub fn del_route(&self, prefix: &str) {
        self.cli_ok(&["global", "rib", "del", "-a", Self::fam(prefix), prefix]);
    }
}

impl Dump for GoBgp {
    fn dump(&self) -> String {
        format!(
            "=== GoBGP in {} (pid {}, api port {}) ===\n--- gobgp neighbor ---\n{}\n--- gobgp global rib -a ipv4 ---\n{}\n--- gobgp global rib -a ipv6 ---\n{}\n--- gobgpd.log tail ---\n{}",
            self.ns_name,
            self.daemon.pid,
            self.port,
            self.cli(&["neighbor"]),
            self.cli(&["global", "rib", "-a", "ipv4"]),
            self.cli(&["global", "rib", "-a", "ipv6"]),
            tail(&self.daemon.log, 40),
        )
    }
    fn dead(&self) -> Option<String> {
        self.daemon.dead_reason()
    }
}

/// A gobgpd TOML config: global AS / router id, and neighbors `(address, peer_as)`.
/// IPv6 neighbors get the ipv6-unicast AFI-SAFI, IPv4 ones ipv4-unicast.
pub fn gobgp_toml(asn: u32, router_id: &str, neighbors: &[(&str, u32)]) -> String {
    let mut s =
        format!("[global.config]\n  as = {asn}\n  router-id = \"{router_id}\"\n  port = 179\n\n");
    for (addr, peer_as) in neighbors {
        let fam = if addr.contains(':') {
            "ipv6-unicast"
        } else {
            "ipv4-unicast"
        };
        let _ = write!(
            s,
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{addr}\"\n    peer-as = {peer_as}\n  \
             [neighbors.timers.config]\n    connect-retry = 2\n    idle-hold-time-after-reset = 1\n  \
             [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{fam}\"\n\n"
        );
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Calico YAML for brindle-node
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct BgpConfiguration {
    pub as_number: u32,
    pub mesh: bool,
    pub listen_port: Option<u16>,
    pub service_cluster_ips: Vec<String>,
    /// `(name, value)`, value like "65000:100".
    pub communities: Vec<(String, String)>,
    /// `(cidr, communities)`; each community a name from `communities` or a literal value.
    pub prefix_advertisements: Vec<(String, Vec<String>)>,
}

impl Default for BgpConfiguration {
    fn default() -> Self {
        BgpConfiguration {
            as_number: 64512,
            mesh: false,
            listen_port: None,
            service_cluster_ips: vec![],
            communities: vec![],
            prefix_advertisements: vec![],
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeRes {
    pub name: String,
    /// "10.1.0.1/24"
    pub ipv4: Option<String>,
    /// "fd00:1::1/64"
    pub ipv6: Option<String>,
    pub as_number: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct BgpPeerRes {
    pub name: String,
    pub peer_ip: String,
    pub as_number: u32,
    /// None: a global peer (every node).
    pub node: Option<String>,
    pub password: Option<String>,
    pub ttl_security: Option<u8>,
}

#[derive(Clone, Debug)]
pub struct IpPoolRes {
    pub name: String,
    pub cidr: String,
    pub block_size: u8,
}

#[derive(Clone, Debug)]
pub struct BlockAffinityRes {
    pub node: String,
    pub cidr: String,
}

/// The set of Calico resources brindle-node reads from its config file.
#[derive(Clone, Debug, Default)]
pub struct CalicoConfig {
    pub bgp: BgpConfiguration,
    pub nodes: Vec<NodeRes>,
    pub peers: Vec<BgpPeerRes>,
    pub pools: Vec<IpPoolRes>,
    pub affinities: Vec<BlockAffinityRes>,
}

fn q(s: &str) -> String {
    format!("\"{s}\"")
}

impl CalicoConfig {
    pub fn new(as_number: u32, mesh: bool) -> Self {
        CalicoConfig {
            bgp: BgpConfiguration {
                as_number,
                mesh,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub fn node(mut self, name: &str, ipv4: &str, ipv6: Option<&str>) -> Self {
        self.nodes.push(NodeRes {
            name: name.into(),
            ipv4: Some(ipv4.into()),
            ipv6: ipv6.map(Into::into),
            as_number: None,
        });
        self
    }

    pub fn peer(mut self, name: &str, peer_ip: &str, as_number: u32, node: Option<&str>) -> Self {
        self.peers.push(BgpPeerRes {
            name: name.into(),
            peer_ip: peer_ip.into(),
            as_number,
            node: node.map(Into::into),
            password: None,
            ttl_security: None,
        });
        self
    }

    pub fn peer_with_password(
        mut self,
        name: &str,
        peer_ip: &str,
        as_number: u32,
        node: Option<&str>,
        password: &str,
    ) -> Self {
        self = self.peer(name, peer_ip, as_number, node);
        self.peers.last_mut().unwrap().password = Some(password.into());
        self
    }

    pub fn pool(mut self, name: &str, cidr: &str, block_size: u8) -> Self {
        self.pools.push(IpPoolRes {
            name: name.into(),
            cidr: cidr.into(),
            block_size,
        });
        self
    }

    pub fn affinity(mut self, node: &str, cidr: &str) -> Self {
        self.affinities.push(BlockAffinityRes {
            node: node.into(),
            cidr: cidr.into(),
        });
        self
    }

    pub fn service_cluster_ip(mut self, cidr: &str) -> Self {
        self.bgp.service_cluster_ips.push(cidr.into());
        self
    }

    pub fn community(mut self, name: &str, value: &str) -> Self {
        self.bgp.communities.push((name.into(), value.into()));
        self
    }

    pub fn prefix_advertisement(mut self, cidr: &str, communities: &[&str]) -> Self {
        self.bgp.prefix_advertisements.push((
            cidr.into(),
            communities.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }

    /// Multi-document YAML (`---` separated), `apiVersion: projectcalico.org/v3` throughout.
    pub fn to_yaml(&self) -> String {
        let mut docs: Vec<String> = Vec::new();
        let b = &self.bgp;
        let mut s = String::from(
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n",
        );
        let _ = writeln!(s, "  asNumber: {}", b.as_number);
        let _ = writeln!(s, "  nodeToNodeMeshEnabled: {}", b.mesh);
        if let Some(p) = b.listen_port {
            let _ = writeln!(s, "  listenPort: {p}");
        }
        if !b.service_cluster_ips.is_empty() {
            s.push_str("  serviceClusterIPs:\n");
            for c in &b.service_cluster_ips {
                let _ = writeln!(s, "    - cidr: {c}");
            }
        }
        if !b.communities.is_empty() {
            s.push_str("  communities:\n");
            for (n, v) in &b.communities {
                let _ = writeln!(s, "    - name: {n}\n      value: {}", q(v));
            }
        }
        if !b.prefix_advertisements.is_empty() {
            s.push_str("  prefixAdvertisements:\n");
            for (c, comms) in &b.prefix_advertisements {
                let _ = writeln!(s, "    - cidr: {c}\n      communities:");
                for cm in comms {
                    let _ = writeln!(s, "        - {}", q(cm));
                }
            }
        }
        docs.push(s);
        for n in &self.nodes {
            let mut s = format!(
                "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {}\nspec:\n  bgp:\n",
                n.name
            );
            if let Some(a) = &n.ipv4 {
                let _ = writeln!(s, "    ipv4Address: {a}");
            }
            if let Some(a) = &n.ipv6 {
                let _ = writeln!(s, "    ipv6Address: {}", q(a));
            }
            if let Some(a) = n.as_number {
                let _ = writeln!(s, "    asNumber: {a}");
            }
            docs.push(s);
        }
        for p in &self.peers {
            let mut s = format!(
                "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: {}\nspec:\n  peerIP: {}\n  asNumber: {}\n",
                p.name,
                q(&p.peer_ip),
                p.as_number
            );
            if let Some(n) = &p.node {
                let _ = writeln!(s, "  node: {n}");
            }
            if let Some(pw) = &p.password {
                let _ = writeln!(s, "  password:\n    value: {}", q(pw));
            }
            if let Some(t) = p.ttl_security {
                let _ = writeln!(s, "  ttlSecurity: {t}");
            }
            docs.push(s);
        }
        for p in &self.pools {
            docs.push(format!(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {}\nspec:\n  cidr: {}\n  blockSize: {}\n  ipipMode: Never\n  vxlanMode: Never\n  natOutgoing: false\n  nodeSelector: all()\n",
                p.name,
                q(&p.cidr),
                p.block_size
            ));
        }
        for a in &self.affinities {
            let name = format!("{}-{}", a.node, a.cidr.replace(['.', ':', '/'], "-"));
            docs.push(format!(
                "apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata:\n  name: {name}\nspec:\n  state: confirmed\n  node: {}\n  cidr: {}\n  deleted: \"false\"\n",
                a.node,
                q(&a.cidr)
            ));
        }
        docs.join("---\n")
    }
}

// ---------------------------------------------------------------------------------------------
// brindle-node
// ---------------------------------------------------------------------------------------------

/// brindle-node running in a namespace with its config, state, status socket and log in a temp dir.
pub struct BrindleNode {
    daemon: Daemon,
    pub ns_name: String,
    pub node_name: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    /// `--listen-address` values and extra arguments, kept for [`BrindleNode::restart`].
    listen: Vec<String>,
    extra_args: Vec<String>,
}

impl BrindleNode {
    /// Write `yaml` to DIR/config.yaml and start
    /// `brindle-node --config .. --node-name NAME --state-dir DIR/state --status-socket DIR/status.sock
    ///  --listen-address A [--listen-address B]` with RUST_LOG=debug, output to DIR/node.log.
    pub fn start(ns: &Netns, node_name: &str, yaml: &str, listen: &[&str]) -> BrindleNode {
        Self::start_with_args(ns, node_name, yaml, listen, &[])
    }

    /// [`BrindleNode::start`] with extra command-line arguments (e.g. `--cleanup`).
    pub fn start_with_args(
        ns: &Netns,
        node_name: &str,
        yaml: &str,
        listen: &[&str],
        extra_args: &[&str],
    ) -> BrindleNode {
        let dir = test_dir("brindle");
        let config = dir.path().join("config.yaml");
        let socket = dir.path().join("status.sock");
        let state = dir.path().join("state");
        fs::create_dir_all(&state).unwrap();
        fs::write(&config, yaml).unwrap();
        let listen: Vec<String> = listen.iter().map(|s| s.to_string()).collect();
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let daemon = Self::spawn_daemon(
            &ns.name,
            node_name,
            &config,
            &state,
            &socket,
            &listen,
            &extra_args,
            &dir.path().join("node.log"),
        );
        let n = BrindleNode {
            daemon,
            ns_name: ns.name.clone(),
            node_name: node_name.to_string(),
            dir,
            config,
            socket,
            listen,
            extra_args,
        };
        n.wait_status_socket();
        n
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_daemon(
        ns_name: &str,
        node_name: &str,
        config: &Path,
        state: &Path,
        socket: &Path,
        listen: &[String],
        extra_args: &[String],
        log: &Path,
    ) -> Daemon {
        let mut c = Command::new(ip_bin());
        c.args(["netns", "exec", ns_name])
            .arg(env!("CARGO_BIN_EXE_brindle-node"))
            .arg("--config")
            .arg(config)
            .args(["--node-name", node_name])
            .arg("--state-dir")
            .arg(state)
            .arg("--status-socket")
            .arg(socket);
        for a in listen {
            c.args(["--listen-address", a]);
        }
        c.args(extra_args);
        c.env("RUST_LOG", "debug");
        Daemon::spawn("brindle-node", c, log)
    }

    fn wait_status_socket(&self) {
        wait_until(
            "brindle-node status socket",
            Duration::from_secs(15),
            &[self],
            || self.try_status().is_ok(),
        );
    }

    /// The `--state-dir` (DIR/state): the CNI plugin's `stateDir` for pods of this node.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The PID of the running brindle-node.
    pub fn pid(&self) -> i32 {
        self.daemon.pid
    }

    /// `Some(status)` once the brindle-node process has exited.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.daemon.exited()
    }

    /// SIGTERM the agent and wait (up to `timeout`) for it to exit; panics if it does not.
    pub fn terminate(&self, timeout: Duration) -> std::process::ExitStatus {
        self.daemon.signal(libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(st) = self.daemon.exited() {
                return st;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "brindle-node {} (pid {}) did not exit within {timeout:?} of SIGTERM\n{}",
                    self.node_name,
                    self.daemon.pid,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the agent again (after [`BrindleNode::terminate`]) with the same config file,
    /// state dir, socket, listen addresses and extra arguments; the log is appended to.
    /// Waits for the status socket.
    pub fn restart(&mut self) {
        assert!(
            self.daemon.exited().is_some(),
            "restart: brindle-node {} is still running",
            self.node_name
        );
        self.daemon = Self::spawn_daemon(
            &self.ns_name,
            &self.node_name,
            &self.config,
            &self.state_dir(),
            &self.socket,
            &self.listen,
            &self.extra_args,
            &self.dir.path().join("node.log"),
        );
        self.wait_status_socket();
    }

    /// Atomically replace the config file (write + rename); the agent watches it and reloads.
    pub fn rewrite_config(&self, yaml: &str) {
        let tmp = self.dir.path().join("config.yaml.tmp");
        fs::write(&tmp, yaml).unwrap();
        fs::rename(&tmp, &self.config).unwrap();
    }

    fn ctl(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_brindlectl"));
        c.args(args);
        run(&mut c)
    }

    /// `brindlectl node status --socket S -o json`.
    pub fn try_status(&self) -> Result<Value, String> {
        let s = self.socket.to_str().unwrap();
        let out = self.ctl(&["node", "status", "--socket", s, "-o", "json"]);
        if !out.status.success() {
            return Err(output_text(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", output_text(&out)))
    }

    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("brindlectl node status failed: {e}\n\n{}", self.dump()))
    }

    /// `brindlectl node status --socket S` (table output).
    pub fn status_table(&self) -> String {
        let s = self.socket.to_str().unwrap();
        let out = self.ctl(&["node", "status", "--socket", s]);
        assert!(
            out.status.success(),
            "brindlectl node status failed: {}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `brindlectl node routes --socket S -o json`.
    pub fn try_routes(&self) -> Result<Value, String> {
        let s = self.socket.to_str().unwrap();
        let out = self.ctl(&["node", "routes", "--socket", s, "-o", "json"]);
        if !out.status.success() {
            return Err(output_text(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", output_text(&out)))
    }

    pub fn routes(&self) -> Value {
        self.try_routes()
            .unwrap_or_else(|e| panic!("brindlectl node routes failed: {e}\n\n{}", self.dump()))
    }

    /// Every route entry for `prefix` in `brindlectl node routes`.
    pub fn route_entries(&self, prefix: &str) -> Vec<Value> {
        let Ok(v) = self.try_routes() else {
            return vec![];
        };
        v.get("routes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|r| r.get("prefix").and_then(Value::as_str) == Some(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A learned (not local) route for `prefix`, if any.
    pub fn learned_route(&self, prefix: &str) -> Option<Value> {
        self.route_entries(prefix)
            .into_iter()
            .find(|r| r.get("local").and_then(Value::as_bool) != Some(true))
    }

    pub fn has_learned_route(&self, prefix: &str) -> bool {
        self.learned_route(prefix).is_some()
    }

    /// The `peers` entry for `addr` (compared as parsed IP addresses).
    pub fn peer(&self, addr: &str) -> Option<Value> {
        let want: std::net::IpAddr = addr.parse().expect("peer address");
        let st = self.try_status().ok()?;
        st.get("peers")?
            .as_array()?
            .iter()
            .find(|p| {
                p.get("peerAddress")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                    == Some(want)
            })
            .cloned()
    }

    pub fn peer_state(&self, addr: &str) -> Option<String> {
        self.peer(addr)?.get("state")?.as_str().map(str::to_string)
    }

    pub fn established(&self, addr: &str) -> bool {
        self.peer_state(addr).as_deref() == Some("Established")
    }

    /// Wait until the peer is Established (dumps `others` on failure as well).
    pub fn wait_established(&self, addr: &str, others: &[&dyn Dump]) {
        let mut dumps: Vec<&dyn Dump> = vec![self];
        dumps.extend_from_slice(others);
        wait_until(
            &format!("brindle-node {} peer {addr} Established", self.node_name),
            CONVERGE,
            &dumps,
            || self.established(addr),
        );
    }

    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.daemon.log, n)
    }
}

impl Dump for BrindleNode {
    fn dump(&self) -> String {
        let status = match self.try_status() {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap(),
            Err(e) => format!("<status failed: {e}>"),
        };
        let routes = match self.try_routes() {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap(),
            Err(e) => format!("<routes failed: {e}>"),
        };
        format!(
            "=== brindle-node {} in {} (pid {}) ===\n--- status ---\n{status}\n--- routes ---\n{routes}\n--- node.log tail ---\n{}",
            self.node_name,
            self.ns_name,
            self.daemon.pid,
            self.log_tail(60)
        )
    }
    fn dead(&self) -> Option<String> {
        self.daemon.dead_reason()
    }
}

/// A `Dump` of a namespace's kernel routes (handy to add to the dumps of a failing wait).
impl Dump for Netns {
    fn dump(&self) -> String {
        format!(
            "=== kernel routes in {} ===\n{}",
            self.name,
            self.routes_text()
        )
    }
}

/// A string field of a JSON object ("" when absent).
pub fn jstr<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An integer field of a JSON object (None when absent).
pub fn ju64(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

// ---------------------------------------------------------------------------------------------
// The API stand-in, in a namespace of its own
// ---------------------------------------------------------------------------------------------

/// Starts the stand-in listening on `ip:port` inside `ns`: a helper thread enters the
/// namespace (setns affects only the calling thread) and starts it there, so the server's
/// runtime threads, spawned from that thread, bind (and rebind after an outage) in `ns`.
/// The test thread stays in its own namespace.
pub fn start_api_in(ns: &Netns, ip: &str, port: u16) -> brindle_kube_standin::StandIn {
    let path = std::path::PathBuf::from(format!("/run/netns/{}", ns.name));
    let listen = std::net::SocketAddr::new(ip.parse::<std::net::IpAddr>().unwrap(), port);
    std::thread::Builder::new()
        .name("standin-setns".into())
        .spawn(move || {
            let f = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "setns {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            brindle_kube_standin::StandIn::start(brindle_kube_standin::Config {
                listen,
                ..brindle_kube_standin::Config::default()
            })
            .unwrap_or_else(|e| panic!("starting the API stand-in on {listen}: {e:#}"))
        })
        .unwrap()
        .join()
        .unwrap_or_else(|_| panic!("the API stand-in did not start"))
}
