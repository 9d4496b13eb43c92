//! End to end: the whole node — BGP speaker, dataplane (felix) and CNI plugin — in the
//! topology of `examples/lab/run.sh`, with real traffic.
//!
//! ```text
//!   LAN host 192.168.1.10 --- BIRD "home router" (AS 65000, 192.168.1.1 / 10.<i>.0.1)
//!                                  |  switch 10.<i>.0.0/24
//!                      node-a 10.<i>.0.2            node-b 10.<i>.0.3      (AS 64512, mesh)
//!                      block 10.65.0.0/26           block 10.65.0.64/26
//!                      pods pa1 pa2                 pods pb1 pb2           (created by brindle-cni)
//! ```
//!
//! BIRD installs the BGP routes in its kernel table (so the LAN reaches the pods) and
//! exports the LAN to the nodes; the nodes' default route is the router. Pods are created
//! by running `brindle-cni ADD` inside the node's namespace, as a kubelet would. Every
//! namespace (pods included) and daemon is owned by a Drop guard of the harness.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const AS: u32 = 64512;
const ROUTER_AS: u32 = 65000;
const POOL: &str = "10.65.0.0/16";
const BLOCK_A: &str = "10.65.0.0/26";
const BLOCK_B: &str = "10.65.0.64/26";
const LAN_NET: &str = "192.168.1.0/24";
const LAN_ROUTER: &str = "192.168.1.1";
const LAN_HOST: &str = "192.168.1.10";
const CNI: &str = env!("CARGO_BIN_EXE_brindle-cni");

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

/// A pod: its own namespace (deleted on drop) with `eth0` made by brindle-cni.
struct Pod {
    name: String,
    ip: String,
    ns: Netns,
}

/// The topology. Fields drop in declaration order: daemons first, then pods, then the
/// namespaces they ran in.
struct Lab {
    node_a: BrindleNode,
    node_b: BrindleNode,
    bird: Bird,
    /// pa1, pa2 on node-a; pb1, pb2 on node-b.
    pods: Vec<Pod>,
    host: Netns,
    /// members: [router, node-a, node-b] on the switch.
    lan: Lan,
    yaml: String,
    started: Instant,
}

fn cluster_yaml(i: u8, vxlan: bool) -> String {
    let y = CalicoConfig::new(AS, true)
        .node("node-a", &format!("10.{i}.0.2/24"), None)
        .node("node-b", &format!("10.{i}.0.3/24"), None)
        .peer("home-router", &format!("10.{i}.0.1"), ROUTER_AS, None)
        .pool("pods-v4", POOL, 26)
        .affinity("node-a", BLOCK_A)
        .affinity("node-b", BLOCK_B)
        .to_yaml();
    if vxlan {
        assert!(y.contains("vxlanMode: Never"));
        y.replace("vxlanMode: Never", "vxlanMode: Always")
    } else {
        y
    }
}

impl Lab {
    /// Builds the topology, starts BIRD and both nodes (node-a with `a_extra` arguments),
    /// waits for the sessions and the routes, then creates two pods per node.
    fn new(i: u8, vxlan: bool, a_extra: &[&str]) -> Lab {
        let started = Instant::now();
        let lan = Lan::new(i, &["r", "na", "nb"]);
        let router = &lan.members[0];
        let host = Netns::new("h");
        veth(router, "eth-lan", &host, "eth0");
        router.add_addr("eth-lan", &format!("{LAN_ROUTER}/24"));
        host.add_addr("eth0", &format!("{LAN_HOST}/24"));
        host.ip(&["route", "add", "default", "via", LAN_ROUTER]);
        router.sysctl("net.ipv4.ip_forward", "1");
        // The home router is the nodes' default gateway (also what makes proxy ARP for
        // 169.254.1.1 answer the pods: the kernel answers for destinations routed elsewhere).
        for ns in &lan.members[1..] {
            ns.ip(&["route", "add", "default", "via", &lan.v4(1)]);
        }

        let channels = "ipv4 { import all; export all; };";
        let body = format!(
            "protocol direct lan4 {{ ipv4; interface \"eth-lan\"; }}\n\
             protocol kernel {{ ipv4 {{ export where source = RTS_BGP; }}; merge paths on; }}\n\
             {}{}",
            bird_bgp("node_a", ROUTER_AS, &lan.v4(2), AS, "", channels),
            bird_bgp("node_b", ROUTER_AS, &lan.v4(3), AS, "", channels),
        );
        let bird = Bird::start(router, &lan.v4(1), &body);

        let yaml = cluster_yaml(i, vxlan);
        let node_a =
            BrindleNode::start_with_args(&lan.members[1], "node-a", &yaml, &[&lan.v4(2)], a_extra);
        let node_b = BrindleNode::start(&lan.members[2], "node-b", &yaml, &[&lan.v4(3)]);
        let mut lab = Lab {
            node_a,
            node_b,
            bird,
            pods: Vec::new(),
            host,
            lan,
            yaml,
            started,
        };
        lab.wait_converged("initial convergence");

        // Like a kubelet: pods once the agent has written the pod MTU for the plugin.
        for node in [&lab.node_a, &lab.node_b] {
            let mtu = node.state_dir().join("mtu");
            wait_until(
                &format!("{} writes {}", node.node_name, mtu.display()),
                Duration::from_secs(15),
                &[node],
                || std::fs::metadata(&mtu).is_ok_and(|m| m.len() > 0),
            );
        }
        for (node, name) in [('a', "pa1"), ('a', "pa2"), ('b', "pb1"), ('b', "pb2")] {
            let pod = lab.add_pod(node, name);
            lab.pods.push(pod);
        }
        // The agents pick the endpoint records up on their next poll (500 ms); until then
        // a pod's host route may come and go, so wait for both agents to know their pods.
        for (node, ns, pods) in [
            (&lab.node_a, lab.ns_a(), ["pa1", "pa2"]),
            (&lab.node_b, lab.ns_b(), ["pb1", "pb2"]),
        ] {
            let dumps = lab.dumps();
            wait_until(
                &format!("{} programs its 2 pods", node.node_name),
                Duration::from_secs(15),
                &dumps,
                || {
                    dataplane_status(node).is_some_and(|d| ju64(&d, "localEndpoints") == Some(2))
                        && pods
                            .iter()
                            .all(|p| has_route(ns, &format!("{}/32", lab.pod(p).ip), true))
                },
            );
        }
        eprintln!(
            "lab {i} ready after {:?}: {}",
            lab.started.elapsed(),
            lab.pods
                .iter()
                .map(|p| format!("{}={}", p.name, p.ip))
                .collect::<Vec<_>>()
                .join(" ")
        );
        lab
    }

    fn router(&self) -> &Netns {
        &self.lan.members[0]
    }
    fn ns_a(&self) -> &Netns {
        &self.lan.members[1]
    }
    fn ns_b(&self) -> &Netns {
        &self.lan.members[2]
    }
    fn router_ip(&self) -> String {
        self.lan.v4(1)
    }
    fn a_ip(&self) -> String {
        self.lan.v4(2)
    }
    fn b_ip(&self) -> String {
        self.lan.v4(3)
    }

    fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    fn dumps(&self) -> Vec<&dyn Dump> {
        vec![
            &self.node_a,
            &self.node_b,
            &self.bird,
            self.ns_a(),
            self.ns_b(),
            self.router(),
        ]
    }

    /// Sessions up everywhere, BIRD has both blocks, each node's kernel has the other's block.
    fn wait_converged(&self, what: &str) {
        let (a, b, r) = (self.a_ip(), self.b_ip(), self.router_ip());
        let took = wait_until(what, CONVERGE, &self.dumps(), || {
            self.node_a.established(&b)
                && self.node_a.established(&r)
                && self.node_b.established(&a)
                && self.node_b.established(&r)
                && self.bird.established("node_a")
                && self.bird.established("node_b")
                && self.bird.has_route(BLOCK_A)
                && self.bird.has_route(BLOCK_B)
                && has_route(self.ns_a(), BLOCK_B, true)
                && has_route(self.ns_b(), BLOCK_A, true)
        });
        eprintln!("{what}: {took:?}");
    }

    /// `brindle-cni ADD` run inside the node's namespace; returns the pod with its IPv4 address.
    fn add_pod(&self, node: char, name: &str) -> Pod {
        let (ns, agent) = match node {
            'a' => (self.ns_a(), &self.node_a),
            _ => (self.ns_b(), &self.node_b),
        };
        let pod_ns = Netns::new("p");
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "brindle",
            "type": "brindle-cni",
            "nodename": agent.node_name,
            "stateDir": agent.state_dir(),
            "config": agent.config,
        })
        .to_string();
        let mut cmd = ns.command(CNI);
        cmd.env_remove("CNI_COMMAND")
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("e2e-{}", pod_ns.name))
            .env("CNI_NETNS", format!("/run/netns/{}", pod_ns.name))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", Path::new(CNI).parent().unwrap())
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e;K8S_POD_NAME={name}"),
            );
        let (code, stdout, stderr) = run_with_stdin(cmd, &conf, Duration::from_secs(20));
        assert_eq!(
            code, 0,
            "brindle-cni ADD {name} on node-{node} failed ({code}):\nstdout: {stdout}\nstderr: {stderr}"
        );
        let res: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("brindle-cni ADD output is not JSON ({e}): {stdout}"));
        let addr = res["ips"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no ips[0].address in {res}"));
        let ip = addr.split('/').next().unwrap().to_string();
        Pod {
            name: name.to_string(),
            ip,
            ns: pod_ns,
        }
    }
}

/// Runs `cmd` with `stdin` written to it; killed after `timeout`. (exit code, stdout, stderr)
fn run_with_stdin(mut cmd: Command, stdin: &str, timeout: Duration) -> (i32, String, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status.code().unwrap_or(-1),
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// One ping (`ping -c1 -W<w>`) from a namespace.
fn ping_w(from: &Netns, to: &str, wait_s: u32) -> bool {
    from.exec(&["ping", "-c1", &format!("-W{wait_s}"), to])
        .status
        .success()
}

fn ping(from: &Netns, to: &str) -> bool {
    ping_w(from, to, 2)
}

/// `ip route show PREFIX [proto 80]` in `ns` (one line per route; empty if none).
fn route_show(ns: &Netns, prefix: &str, brindle_only: bool) -> String {
    let mut args = vec!["route", "show", prefix];
    if brindle_only {
        args.extend(["proto", "80"]);
    }
    ns.ip(&args)
}

fn has_route(ns: &Netns, prefix: &str, brindle_only: bool) -> bool {
    !route_show(ns, prefix, brindle_only).trim().is_empty()
}

/// Every route Brindle owns (proto 80), IPv4 and IPv6, as text.
fn brindle_routes(ns: &Netns) -> String {
    let v4 = ns.ip(&["route", "show", "proto", "80"]);
    let v6 = ns.ip(&["-6", "route", "show", "proto", "80"]);
    format!("{v4}{v6}")
}

/// The lab's pings: LAN host -> every pod, pod -> pod across nodes both ways, pods -> LAN.
fn wait_all_pings(lab: &Lab, what: &str) {
    let dumps = lab.dumps();
    let mut pairs: Vec<(&Netns, String, String)> = Vec::new();
    for p in &lab.pods {
        pairs.push((&lab.host, p.ip.clone(), format!("LAN -> {}", p.name)));
    }
    for (from, to) in [
        ("pa1", "pb1"),
        ("pb2", "pa2"),
        ("pa2", "pb2"),
        ("pb1", "pa1"),
    ] {
        pairs.push((
            &lab.pod(from).ns,
            lab.pod(to).ip.clone(),
            format!("{from} -> {to}"),
        ));
    }
    for p in ["pa1", "pb1"] {
        pairs.push((&lab.pod(p).ns, LAN_HOST.to_string(), format!("{p} -> LAN")));
    }
    for (from, to, label) in &pairs {
        let took = wait_until(
            &format!("{what}: ping {label} ({to})"),
            CONVERGE,
            &dumps,
            || ping(from, to),
        );
        eprintln!("{what}: {label} ({to}) ok after {took:?}");
    }
}

fn dataplane_status(node: &BrindleNode) -> Option<Value> {
    node.try_status().ok()?.get("dataplane").cloned()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn lan_and_pods_reach_each_other_over_bgp_routes() {
    let lab = Lab::new(41, false, &[]);
    let dumps = lab.dumps();

    wait_all_pings(&lab, "native");
    // Same node, for good measure.
    assert!(ping(&lab.pod("pa1").ns, &lab.pod("pa2").ip));

    // node-a's kernel: node-b's block via node-b (Brindle's protocol), its own a blackhole.
    let b = route_show(lab.ns_a(), BLOCK_B, true);
    assert!(
        b.contains(&format!("via {}", lab.b_ip())),
        "node-a's route to {BLOCK_B}: {b:?}\n{}",
        lab.ns_a().dump()
    );
    let bh = lab.ns_a().ip(&["route", "show", "type", "blackhole"]);
    assert!(
        bh.lines()
            .any(|l| l.contains(BLOCK_A) && l.contains("proto 80")),
        "no proto 80 blackhole for {BLOCK_A} on node-a: {bh:?}\n{}",
        lab.ns_a().dump()
    );
    // The LAN came from BIRD over BGP.
    assert!(
        route_show(lab.ns_a(), LAN_NET, true).contains(&format!("via {}", lab.router_ip())),
        "{}",
        lab.ns_a().dump()
    );

    // brindlectl node status -o json: the dataplane object.
    wait_until(
        "node-a status: dataplane localEndpoints 2, routesProgrammed > 0",
        Duration::from_secs(10),
        &dumps,
        || {
            dataplane_status(&lab.node_a).is_some_and(|d| {
                ju64(&d, "localEndpoints") == Some(2)
                    && ju64(&d, "routesProgrammed").is_some_and(|n| n > 0)
            })
        },
    );
    let d = dataplane_status(&lab.node_a).unwrap();
    eprintln!("node-a dataplane status: {d}");
    assert!(d["errors"].as_array().is_some_and(|e| e.is_empty()), "{d}");
    eprintln!("total {:?}", lab.started.elapsed());
}

#[test]
fn hand_deleted_route_comes_back() {
    let lab = Lab::new(42, false, &[]);
    let dumps = lab.dumps();
    let pa1 = lab.pod("pa1");
    let pb1 = lab.pod("pb1");
    wait_until("pb1 -> pa1", CONVERGE, &dumps, || ping(&pb1.ns, &pa1.ip));
    wait_until("LAN -> pa1", CONVERGE, &dumps, || ping(&lab.host, &pa1.ip));

    let pod_route = format!("{}/32", pa1.ip);
    let before_pod = route_show(lab.ns_a(), &pod_route, false);
    let before_block = route_show(lab.ns_b(), BLOCK_A, false);
    assert!(!before_pod.trim().is_empty() && !before_block.trim().is_empty());

    lab.ns_a().ip(&["route", "del", &pod_route]);
    lab.ns_b().ip(&["route", "del", BLOCK_A]);
    let t0 = Instant::now();
    let mut pod_back = None;
    let mut block_back = None;
    wait_until(
        "both hand-deleted routes are back",
        Duration::from_secs(5),
        &dumps,
        || {
            if pod_back.is_none() && has_route(lab.ns_a(), &pod_route, false) {
                pod_back = Some(t0.elapsed());
            }
            if block_back.is_none() && has_route(lab.ns_b(), BLOCK_A, true) {
                block_back = Some(t0.elapsed());
            }
            pod_back.is_some() && block_back.is_some()
        },
    );
    eprintln!(
        "node-a {pod_route} back after {:?}; node-b {BLOCK_A} back after {:?}",
        pod_back.unwrap(),
        block_back.unwrap()
    );
    assert_eq!(
        route_show(lab.ns_a(), &pod_route, false),
        before_pod,
        "node-a's pod route differs after repair"
    );
    assert_eq!(
        route_show(lab.ns_b(), BLOCK_A, false),
        before_block,
        "node-b's route to node-a's block differs after repair"
    );
    wait_until(
        "pb1 -> pa1 after repair",
        Duration::from_secs(10),
        &dumps,
        || ping(&pb1.ns, &pa1.ip),
    );
    wait_until(
        "LAN -> pa1 after repair",
        Duration::from_secs(10),
        &dumps,
        || ping(&lab.host, &pa1.ip),
    );
    eprintln!("total {:?}", lab.started.elapsed());
}

/// `ip -ts monitor route` in a namespace, its output in a file. Markers (blackhole routes
/// 198.18.0.N/32, `proto static`, never Brindle's) split the output into phases.
struct RouteMonitor {
    daemon: Daemon,
    label: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl RouteMonitor {
    /// Starts the monitor and waits until it prints route events.
    fn start(ns: &Netns, label: &str) -> RouteMonitor {
        let dir = test_dir("ipmon");
        let log = dir.path().join("monitor.log");
        let daemon = ns.spawn("ip monitor route", &["ip", "-ts", "monitor", "route"], &log);
        let m = RouteMonitor {
            daemon,
            label: label.to_string(),
            log,
            _dir: dir,
        };
        // Subscribed once a probe route shows up (the first probes may predate the socket).
        let start = Instant::now();
        for k in 1..=250u8 {
            let probe = format!("198.18.1.{k}");
            ns.ip(&[
                "route",
                "add",
                "blackhole",
                &format!("{probe}/32"),
                "proto",
                "static",
            ]);
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(200) {
                if m.text().contains(&format!("{probe} ")) {
                    return m;
                }
                if let Some(r) = m.daemon.dead_reason() {
                    panic!("{r}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ip monitor route in {label} printed nothing"
            );
        }
        unreachable!()
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Adds marker `n` (1..=9) in `ns` and waits until this monitor printed it.
    fn mark(&self, ns: &Netns, n: u8) {
        let marker = format!("198.18.0.{n}");
        ns.ip(&[
            "route",
            "add",
            "blackhole",
            &format!("{marker}/32"),
            "proto",
            "static",
        ]);
        let start = Instant::now();
        while !self.text().contains(&format!("{marker} ")) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "ip monitor in {} did not print marker {marker}:\n{}",
                self.label,
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `Deleted` events containing `needle`, each with the number of the last marker seen.
    fn deletions(&self, needle: &str) -> Vec<(u8, String)> {
        let mut phase = 0u8;
        let mut out = Vec::new();
        for line in self.text().lines() {
            if let Some(n) = (1..=9u8).find(|n| line.contains(&format!("198.18.0.{n} "))) {
                phase = n;
                continue;
            }
            if line.contains("Deleted ") && line.contains(needle) {
                out.push((phase, line.trim().to_string()));
            }
        }
        out
    }
}

/// Phases of the restart test, by marker number.
fn restart_phase(marker: u8) -> &'static str {
    match marker {
        0 => "before SIGTERM",
        1 => "between SIGTERM and exit",
        2 => "downtime (agent stopped)",
        _ => "restart and after",
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn agent_restart_keeps_forwarding() {
    let mut lab = Lab::new(43, false, &[]);
    let (a_ip, b_ip, r_ip) = (lab.a_ip(), lab.b_ip(), lab.router_ip());
    let pa1_ip = lab.pod("pa1").ip.clone();
    let pb1_ip = lab.pod("pb1").ip.clone();
    {
        let dumps = lab.dumps();
        let pa1 = &lab.pod("pa1").ns;
        wait_until("pa1 -> pb1", CONVERGE, &dumps, || ping(pa1, &pb1_ip));
        wait_until("LAN -> pa1", CONVERGE, &dumps, || ping(&lab.host, &pa1_ip));
    }
    // Every route change on node-a, node-b and the router, to catch even a brief removal.
    let mon_a = RouteMonitor::start(lab.ns_a(), "node-a");
    let mon_b = RouteMonitor::start(lab.ns_b(), "node-b");
    let mon_r = RouteMonitor::start(lab.router(), "router");

    let stop = AtomicBool::new(false);
    // (ms since t0, what failed)
    let lost: Mutex<Vec<(u128, &'static str)>> = Mutex::new(Vec::new());
    let rounds = std::sync::atomic::AtomicU32::new(0);
    let t0 = Instant::now();
    let (mut down_at, mut up_at, mut established_at) = (0u128, 0u128, 0u128);
    let mut exit_ms = 0u128;
    // Disjoint borrows: the checker pings from the LAN host and pa1; the test thread
    // stops and restarts node-a.
    let Lab {
        node_a,
        node_b,
        bird,
        pods,
        host,
        lan,
        ..
    } = &mut lab;
    let (node_b, bird, pods, host, lan) = (&*node_b, &*bird, &*pods, &*host, &*lan);
    let (ns_a, ns_b, router) = (&lan.members[1], &lan.members[2], &lan.members[0]);
    let pa1_ns = &pods.iter().find(|p| p.name == "pa1").unwrap().ns;
    let marks = |n: u8| {
        mon_a.mark(ns_a, n);
        mon_b.mark(ns_b, n);
        mon_r.mark(router, n);
    };
    std::thread::scope(|s| {
        let _stop_guard = StopOnDrop(&stop);
        let (stop, lost, rounds, pa1_ip, pb1_ip) = (&stop, &lost, &rounds, &pa1_ip, &pb1_ip);
        // Every 200 ms: pa1 -> pb1 (across nodes) and LAN -> pa1 (through BIRD's route).
        s.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let round = Instant::now();
                let ms = t0.elapsed().as_millis();
                let a = ping_w(pa1_ns, pb1_ip, 1);
                let l = ping_w(host, pa1_ip, 1);
                {
                    let mut v = lost.lock().unwrap();
                    if !a {
                        v.push((ms, "pa1 -> pb1"));
                    }
                    if !l {
                        v.push((ms, "LAN -> pa1"));
                    }
                }
                rounds.fetch_add(1, Ordering::SeqCst);
                if let Some(rest) = Duration::from_millis(200).checked_sub(round.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
        });
        let wait_rounds = |n: u32| {
            let target = rounds.load(Ordering::SeqCst) + n;
            let start = Instant::now();
            while rounds.load(Ordering::SeqCst) < target
                && start.elapsed() < Duration::from_secs(15)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        };

        wait_rounds(5);
        marks(1);
        down_at = t0.elapsed().as_millis();
        let st = node_a.terminate(Duration::from_secs(10));
        exit_ms = t0.elapsed().as_millis() - down_at;
        assert!(
            st.success(),
            "brindle-node exited with {st}\n{}",
            node_a.log_tail(40)
        );
        marks(2);
        // The downtime: 3 s with the agent stopped.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            assert!(node_a.exited().is_some());
            std::thread::sleep(Duration::from_millis(50));
        }
        marks(3);
        up_at = t0.elapsed().as_millis();
        node_a.restart();
        let dumps: [&dyn Dump; 5] = [&*node_a, node_b, bird, ns_a, ns_b];
        wait_until(
            "restarted node-a Established with node-b and BIRD",
            CONVERGE,
            &dumps,
            || {
                node_a.established(&b_ip)
                    && node_a.established(&r_ip)
                    && node_b.established(&a_ip)
                    && bird.established("node_a")
            },
        );
        established_at = t0.elapsed().as_millis();
        // Keep checking a while after the restart (3 s).
        wait_rounds(15);
    });

    let lost = lost.into_inner().unwrap();
    let rounds = rounds.into_inner();
    let phase = |ms: u128| {
        if ms < down_at {
            "before SIGTERM"
        } else if ms < up_at {
            "downtime"
        } else if ms < established_at {
            "restarting"
        } else {
            "after"
        }
    };
    let lost_pods = lost.iter().filter(|l| l.1 == "pa1 -> pb1").count();
    let lost_lan = lost.iter().filter(|l| l.1 == "LAN -> pa1").count();
    let lost_text = lost
        .iter()
        .map(|(ms, what)| format!("  t={ms} ms ({}) {what}", phase(*ms)))
        .collect::<Vec<_>>()
        .join("\n");
    let mut problems = Vec::new();
    for (mon, needle, what) in [
        (&mon_a, "proto 80", "node-a removed a Brindle route"),
        (&mon_b, "proto 80", "node-b removed a Brindle route"),
        (
            &mon_r,
            "proto bird",
            "BIRD removed a BGP route from the router's kernel",
        ),
    ] {
        for (m, line) in mon.deletions(needle) {
            if m >= 1 {
                problems.push(format!("{what} ({}): {line}", restart_phase(m)));
            }
        }
    }
    if lost_pods > 2 || lost_lan > 2 {
        problems.push(format!(
            "too many lost pings: pa1->pb1 {lost_pods}, LAN->pa1 {lost_lan}"
        ));
    }
    let report = format!(
        "restart timeline: SIGTERM t={down_at} ms (exited after {exit_ms} ms), started again t={up_at} ms, \
         all Established t={established_at} ms; {rounds} rounds of 2 pings every 200 ms; \
         lost pa1->pb1 {lost_pods}, LAN->pa1 {lost_lan}\nlost pings:\n{lost_text}"
    );
    eprintln!("{report}");
    if !problems.is_empty() {
        panic!(
            "across the agent restart:\n  {}\n\n{report}\n\n--- ip monitor route, node-a ---\n{}\n--- node-b ---\n{}\n--- router ---\n{}\n\n{}",
            problems.join("\n  "),
            mon_a.text(),
            mon_b.text(),
            mon_r.text(),
            lab.dumps()
                .iter()
                .map(|d| d.dump())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // And it all still works.
    wait_all_pings(&lab, "after restart");
    eprintln!("total {:?}", lab.started.elapsed());
}

#[test]
fn vxlan_mode_pod_to_pod() {
    let lab = Lab::new(44, true, &[]);
    let dumps = lab.dumps();
    wait_until(
        "node-a routes node-b's block through vxlan.brindle",
        CONVERGE,
        &dumps,
        || route_show(lab.ns_a(), BLOCK_B, true).contains("vxlan.brindle"),
    );
    wait_until(
        "node-b routes node-a's block through vxlan.brindle",
        CONVERGE,
        &dumps,
        || route_show(lab.ns_b(), BLOCK_A, true).contains("vxlan.brindle"),
    );
    eprintln!(
        "node-a: {}node-b: {}",
        route_show(lab.ns_a(), BLOCK_B, true),
        route_show(lab.ns_b(), BLOCK_A, true)
    );
    for (from, to) in [("pa1", "pb1"), ("pb2", "pa2")] {
        let took = wait_until(
            &format!("{from} -> {to} over VXLAN"),
            CONVERGE,
            &dumps,
            || ping(&lab.pod(from).ns, &lab.pod(to).ip),
        );
        eprintln!("{from} -> {to} over VXLAN after {took:?}");
    }
    eprintln!("total {:?}", lab.started.elapsed());
}

#[test]
fn cleanup_flag_removes_routes() {
    let lab = Lab::new(45, false, &["--cleanup"]);
    let dumps = lab.dumps();
    let pa1 = lab.pod("pa1");
    let pod_route = format!("{}/32", pa1.ip);
    wait_until(
        "node-a programmed the pod, node-b's block and its blackhole",
        CONVERGE,
        &dumps,
        || {
            has_route(lab.ns_a(), &pod_route, true)
                && has_route(lab.ns_a(), BLOCK_B, true)
                && has_route(lab.ns_a(), LAN_NET, true)
                && lab
                    .ns_a()
                    .ip(&["route", "show", "type", "blackhole", "proto", "80"])
                    .contains(BLOCK_A)
        },
    );
    let before = brindle_routes(lab.ns_a());
    eprintln!("node-a proto 80 routes before SIGTERM:\n{before}");
    let st = lab.node_a.terminate(Duration::from_secs(10));
    assert!(
        st.success(),
        "brindle-node --cleanup exited with {st}\n{}",
        lab.node_a.log_tail(40)
    );
    let left = brindle_routes(lab.ns_a());
    assert!(
        left.trim().is_empty(),
        "proto 80 routes left after --cleanup shutdown:\n{left}\n--- log ---\n{}",
        lab.node_a.log_tail(30)
    );
    assert!(
        lab.node_a.log_tail(20).contains("cleaned up"),
        "{}",
        lab.node_a.log_tail(20)
    );
    // node-b (no --cleanup) is untouched.
    assert!(has_route(
        lab.ns_b(),
        &format!("{}/32", lab.pod("pb1").ip),
        true
    ));
    eprintln!("total {:?}", lab.started.elapsed());
}

#[test]
fn bad_config_reload_keeps_dataplane() {
    let lab = Lab::new(46, false, &[]);
    let dumps = lab.dumps();
    let (pa1, pb1) = (lab.pod("pa1"), lab.pod("pb1"));
    wait_until("pa1 -> pb1", CONVERGE, &dumps, || ping(&pa1.ns, &pb1.ip));
    wait_until("LAN -> pb1", CONVERGE, &dumps, || ping(&lab.host, &pb1.ip));
    wait_until(
        "node-a dataplane sees both its pods",
        Duration::from_secs(10),
        &dumps,
        || dataplane_status(&lab.node_a).is_some_and(|d| ju64(&d, "localEndpoints") == Some(2)),
    );
    let routes_before = brindle_routes(lab.ns_a());
    let programmed_before = ju64(&dataplane_status(&lab.node_a).unwrap(), "routesProgrammed");

    let peer_doc = "kind: BGPPeer\nmetadata:\n  name: home-router\nspec:\n";
    assert!(lab.yaml.contains(peer_doc), "{}", lab.yaml);
    let bad = lab
        .yaml
        .replace(peer_doc, &format!("{peer_doc}  bogusField: true\n"));
    lab.node_a.rewrite_config(&bad);
    let took = wait_until(
        "node-a logs the failed reload",
        Duration::from_secs(10),
        &dumps,
        || {
            lab.node_a
                .log_tail(200)
                .contains("configuration reload failed")
        },
    );
    let line = lab
        .node_a
        .log_tail(200)
        .lines()
        .rev()
        .find(|l| l.contains("configuration reload failed"))
        .unwrap()
        .to_string();
    eprintln!("reload failure logged after {took:?}: {line}");
    let file = lab.node_a.config.display().to_string();
    for want in [
        file.as_str(),
        "BGPPeer/home-router",
        "spec.bogusField",
        "unknown field",
    ] {
        assert!(line.contains(want), "log line lacks {want:?}: {line}");
    }

    // Nothing changes for a while: the agent lives (assert_never checks it), routes stay.
    assert_never(
        "node-a's kernel routes changed after a bad reload",
        Duration::from_secs(3),
        &dumps,
        || brindle_routes(lab.ns_a()) != routes_before,
    );
    let st = lab.node_a.status();
    assert!(
        lab.node_a.established(&lab.b_ip()) && lab.node_a.established(&lab.router_ip()),
        "{st}"
    );
    assert_eq!(
        ju64(&st["dataplane"], "routesProgrammed"),
        programmed_before,
        "{st}"
    );
    assert!(ping(&pa1.ns, &pb1.ip), "pa1 -> pb1 after a bad reload");
    assert!(ping(&lab.host, &pa1.ip), "LAN -> pa1 after a bad reload");
    assert!(ping(&pb1.ns, &pa1.ip), "pb1 -> pa1 after a bad reload");
    assert!(lab.node_a.status_table().contains("Established"));
    eprintln!("total {:?}", lab.started.elapsed());
}

/// Network policy in file mode, end to end: the pods as Pod documents in the nodes'
/// file, a Kubernetes NetworkPolicy that lets only pa2 reach pb1 (on node-b): pa1 and
/// the LAN are cut off, pa2 still gets through, `brindlectl policy explain` names the
/// policy; the policy removed, traffic flows again and node-b has no policy chains left.
#[test]
fn network_policy_blocks_and_reopens_in_file_mode() {
    let lab = Lab::new(47, false, &[]);
    let dumps = lab.dumps();
    let (pa1, pa2, pb1) = (lab.pod("pa1"), lab.pod("pa2"), lab.pod("pb1"));
    wait_until("pa1 -> pb1", CONVERGE, &dumps, || ping(&pa1.ns, &pb1.ip));
    let mut docs = String::new();
    for (name, node) in [
        ("pa1", "node-a"),
        ("pa2", "node-a"),
        ("pb1", "node-b"),
        ("pb2", "node-b"),
    ] {
        docs.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: e2e, labels: {{app: {name}}}}}\nspec: {{nodeName: {node}}}\nstatus: {{phase: Running, podIP: {}}}\n",
            lab.pod(name).ip
        ));
    }
    docs.push_str(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-pa2, namespace: e2e}\nspec:\n  podSelector: {matchLabels: {app: pb1}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: pa2}}}]}]\n",
    );
    let with_policy = format!("{}\n{docs}", lab.yaml.trim_end());
    let t0 = Instant::now();
    lab.node_a.rewrite_config(&with_policy);
    lab.node_b.rewrite_config(&with_policy);
    wait_until("pa1 is cut off from pb1", CONVERGE, &dumps, || {
        !ping_w(&pa1.ns, &pb1.ip, 1)
    });
    eprintln!(
        "figure: the policy enforced {:?} after the file was written",
        t0.elapsed()
    );
    assert!(ping(&pa2.ns, &pb1.ip), "pa2 is allowed");
    assert!(!ping_w(&lab.host, &pb1.ip, 1), "the LAN is not allowed");
    assert!(ping(&pa1.ns, &pa2.ip), "pa2 is not isolated");
    assert!(ping(&pb1.ns, &pa1.ip), "pb1's egress is not isolated");
    let ctl = Command::new(env!("CARGO_BIN_EXE_brindlectl"))
        .args([
            "policy", "explain", "--from", "e2e/pa1", "--to", "e2e/pb1", "--port", "icmp/8",
            "--config",
        ])
        .arg(&lab.node_b.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ctl.stdout);
    assert!(
        text.contains("DENIED") && text.contains("KubernetesNetworkPolicy e2e/only-pa2"),
        "{text}{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    let rules = lab.ns_b().exec_ok(&["iptables-save", "-t", "filter"]);
    assert!(rules.contains(":brl-pi-knp/e2e/only-pa2"), "{rules}");
    // The policy removed: open again, chains gone.
    lab.node_a.rewrite_config(&lab.yaml);
    lab.node_b.rewrite_config(&lab.yaml);
    wait_until("pa1 reaches pb1 again", CONVERGE, &dumps, || {
        ping(&pa1.ns, &pb1.ip)
    });
    wait_until(
        "node-b's policy chains are removed",
        Duration::from_secs(10),
        &dumps,
        || {
            !lab.ns_b()
                .exec_ok(&["iptables-save", "-t", "filter"])
                .contains("brl-")
        },
    );
    assert!(ping(&lab.host, &pb1.ip));
}
