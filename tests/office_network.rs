//! The office-network story: service IPs reachable from a network outside the cluster,
//! with the client's own address kept, advertised only where the Service's endpoint is.
//!
//! ```text
//!   office host 192.168.1.10 --- BIRD "office router" (AS 65000, 192.168.1.1 / 10.<i>.0.1)
//!                                    |  switch 10.<i>.0.0/24
//!                      node-1 10.<i>.0.2              node-2 10.<i>.0.3     (AS 64512, mesh)
//!                      block 10.65.0.0/26             block 10.65.0.64/26
//!                      pod p1 (brindle-cni)           pod p2 (brindle-cni)
//! ```
//!
//! The Service `office/web` has cluster IP 10.96.0.10 and external IP 192.0.2.10
//! (BGPConfiguration: `serviceClusterIPs: 10.96.0.0/12`, `serviceExternalIPs:
//! 192.0.2.0/24`), port 80 → 8080, and one endpoint. The test stands in for
//! kube-proxy: it writes in each node's namespace (and only there) the iptables rules
//! kube-proxy would write for the Service — DNAT of the service addresses to the local
//! endpoint; for `externalTrafficPolicy: Local` on a node without a local endpoint, a
//! drop of external traffic — and never a masquerade. The pods run a tiny TCP server
//! (a thread of this test inside the pod's namespace) that answers with the source
//! address it sees.
//!
//! A second test does the BGP side in Kubernetes mode: the same Service and its
//! EndpointSlice in the API stand-in, edited there, the route following within the
//! same limit.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AS: u32 = 64512;
const ROUTER_AS: u32 = 65000;
const POOL: &str = "10.65.0.0/16";
const BLOCK_1: &str = "10.65.0.0/26";
const BLOCK_2: &str = "10.65.0.64/26";
const OFFICE_ROUTER: &str = "192.168.1.1";
const OFFICE_HOST: &str = "192.168.1.10";
const CLUSTER_RANGE: &str = "10.96.0.0/12";
const EXTERNAL_RANGE: &str = "192.0.2.0/24";
const CLUSTER_IP: &str = "10.96.0.10";
const EXTERNAL_IP: &str = "192.0.2.10";
const SERVICE_PORT: u16 = 80;
const POD_PORT: u16 = 8080;
const CNI: &str = env!("CARGO_BIN_EXE_brindle-cni");
/// The reaction asked for is one second from the change to BGP; allowed with a margin
/// for a loaded test machine.
const REACTION_LIMIT: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// Namespaces from threads
// ---------------------------------------------------------------------------------------------

/// Moves the calling thread into the named network namespace (sockets it opens then
/// belong there). Only ever called on threads this test spawns for that purpose.
fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("open netns {name}: {e}"));
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {name}: {}", std::io::Error::last_os_error());
}

/// A TCP server in a pod: answers each connection with `<pod> <peer address>\n`.
struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(pod: &Pod) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, name, flag) = (pod.ns.name.clone(), pod.name.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            enter_netns(&ns);
            let l = TcpListener::bind(("0.0.0.0", POD_PORT)).expect("bind in pod");
            l.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = writeln!(s, "{name} {peer}");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("pod server listening");
        Server {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A TCP connection from the office host: the server's answer, or why there is none.
fn connect_from(office: &Netns, ip: &str, port: u16) -> Result<String, String> {
    let ns = office.name.clone();
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    std::thread::spawn(move || {
        enter_netns(&ns);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let local = s.local_addr().map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(&mut s)
            .read_line(&mut line)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        Ok(format!("{} (client {local})", line.trim()))
    })
    .join()
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

struct Pod {
    name: String,
    ip: String,
    ns: Netns,
}

/// Fields drop in declaration order: servers and daemons first, then the namespaces.
struct Office {
    servers: Vec<Server>,
    node_1: BrindleNode,
    node_2: BrindleNode,
    bird: Bird,
    /// p1 on node-1, p2 on node-2.
    pods: Vec<Pod>,
    host: Netns,
    /// members: [router, node-1, node-2] on the switch.
    lan: Lan,
    i: u8,
}

/// Where the Service's one endpoint is, and its policy.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Endpoint<'a> {
    node: &'a str,
    ip: &'a str,
    policy: &'a str,
}

/// The cluster's resources; with `service`, the Service and its EndpointSlice.
fn cluster_yaml(i: u8, service: Option<Endpoint<'_>>) -> String {
    let base = CalicoConfig::new(AS, true)
        .node("node-1", &format!("10.{i}.0.2/24"), None)
        .node("node-2", &format!("10.{i}.0.3/24"), None)
        .peer("office-router", &format!("10.{i}.0.1"), ROUTER_AS, None)
        .pool("pods-v4", POOL, 26)
        .affinity("node-1", BLOCK_1)
        .affinity("node-2", BLOCK_2)
        .service_cluster_ip(CLUSTER_RANGE)
        .to_yaml();
    let cluster_ips = format!("  serviceClusterIPs:\n    - cidr: {CLUSTER_RANGE}\n");
    assert!(base.contains(&cluster_ips), "{base}");
    let mut y = base.replace(
        &cluster_ips,
        &format!("{cluster_ips}  serviceExternalIPs:\n    - cidr: {EXTERNAL_RANGE}\n"),
    );
    if let Some(e) = service {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: office}}\n\
             spec:\n  type: ClusterIP\n  clusterIP: {CLUSTER_IP}\n  clusterIPs: [{CLUSTER_IP}]\n  \
             ipFamilies: [IPv4]\n  externalIPs: [{EXTERNAL_IP}]\n  externalTrafficPolicy: {}\n  \
             ports: [{{port: {SERVICE_PORT}, targetPort: {POD_PORT}, protocol: TCP}}]\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: web-x1, namespace: office, labels: {{kubernetes.io/service-name: web}}}}\n\
             addressType: IPv4\nendpoints:\n  - addresses: [{}]\n    nodeName: {}\n    \
             conditions: {{ready: true}}\nports: [{{port: {POD_PORT}, protocol: TCP}}]\n",
            e.policy, e.ip, e.node
        ));
    }
    y
}

impl Office {
    fn new(i: u8) -> Office {
        let started = Instant::now();
        let lan = Lan::new(i, &["r", "na", "nb"]);
        let router = &lan.members[0];
        let host = Netns::new("o");
        veth(router, "eth-office", &host, "eth0");
        router.add_addr("eth-office", &format!("{OFFICE_ROUTER}/24"));
        host.add_addr("eth0", &format!("{OFFICE_HOST}/24"));
        host.ip(&["route", "add", "default", "via", OFFICE_ROUTER]);
        router.sysctl("net.ipv4.ip_forward", "1");
        for ns in &lan.members[1..] {
            ns.ip(&["route", "add", "default", "via", &lan.v4(1)]);
        }
        let channels = "ipv4 { import all; export all; };";
        let body = format!(
            "protocol direct office4 {{ ipv4; interface \"eth-office\"; }}\n\
             protocol kernel {{ ipv4 {{ export where source = RTS_BGP; }}; merge paths on; }}\n\
             {}{}",
            bird_bgp("node_1", ROUTER_AS, &lan.v4(2), AS, "", channels),
            bird_bgp("node_2", ROUTER_AS, &lan.v4(3), AS, "", channels),
        );
        let bird = Bird::start(router, &lan.v4(1), &body);
        let yaml = cluster_yaml(i, None);
        let node_1 = BrindleNode::start(&lan.members[1], "node-1", &yaml, &[&lan.v4(2)]);
        let node_2 = BrindleNode::start(&lan.members[2], "node-2", &yaml, &[&lan.v4(3)]);
        let mut o = Office {
            servers: Vec::new(),
            node_1,
            node_2,
            bird,
            pods: Vec::new(),
            host,
            lan,
            i,
        };
        let took = wait_until("sessions and blocks", CONVERGE, &o.dumps(), || {
            o.bird.established("node_1")
                && o.bird.established("node_2")
                && o.node_1.established(&o.lan.v4(3))
                && o.node_2.established(&o.lan.v4(2))
                && o.bird.has_route(BLOCK_1)
                && o.bird.has_route(BLOCK_2)
        });
        eprintln!("office {i}: sessions and blocks after {took:?}");
        for node in [&o.node_1, &o.node_2] {
            let mtu = node.state_dir().join("mtu");
            wait_until(
                &format!("{} writes {}", node.node_name, mtu.display()),
                Duration::from_secs(15),
                &[node],
                || std::fs::metadata(&mtu).is_ok_and(|m| m.len() > 0),
            );
        }
        for (node, name) in [(1, "p1"), (2, "p2")] {
            let pod = o.add_pod(node, name);
            o.pods.push(pod);
        }
        for (node, ns, pod) in [(&o.node_1, o.ns(1), "p1"), (&o.node_2, o.ns(2), "p2")] {
            let route = format!("{}/32", o.pod(pod).ip);
            wait_until(
                &format!("{} programs {pod}", node.node_name),
                Duration::from_secs(15),
                &o.dumps(),
                || {
                    !ns.ip(&["route", "show", &route, "proto", "80"])
                        .trim()
                        .is_empty()
                },
            );
        }
        let servers: Vec<Server> = o.pods.iter().map(Server::start).collect();
        o.servers = servers;
        for k in [1, 2] {
            o.ns(k)
                .exec_ok(&["iptables", "-t", "nat", "-N", "TEST-KUBE-PROXY"]);
            o.ns(k).exec_ok(&[
                "iptables",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-j",
                "TEST-KUBE-PROXY",
            ]);
            o.ns(k).exec_ok(&["iptables", "-N", "TEST-KUBE-PROXY"]);
            o.ns(k)
                .exec_ok(&["iptables", "-A", "FORWARD", "-j", "TEST-KUBE-PROXY"]);
            // counts the replies to the office that leave by this node
            o.ns(k).exec_ok(&[
                "iptables",
                "-A",
                "FORWARD",
                "-o",
                "eth0",
                "-d",
                OFFICE_HOST,
                "-p",
                "tcp",
                "--sport",
                &POD_PORT.to_string(),
                "-m",
                "comment",
                "--comment",
                "test-replies",
            ]);
        }
        eprintln!(
            "office {i} ready after {:?}: p1={} p2={}",
            started.elapsed(),
            o.pod("p1").ip,
            o.pod("p2").ip
        );
        o
    }

    fn router(&self) -> &Netns {
        &self.lan.members[0]
    }

    /// Node k's namespace (1 or 2).
    fn ns(&self, k: usize) -> &Netns {
        &self.lan.members[k]
    }

    fn node(&self, k: usize) -> &BrindleNode {
        if k == 1 {
            &self.node_1
        } else {
            &self.node_2
        }
    }

    fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    fn dumps(&self) -> Vec<&dyn Dump> {
        vec![
            &self.node_1,
            &self.node_2,
            &self.bird,
            self.ns(1),
            self.ns(2),
            self.router(),
        ]
    }

    /// `brindle-cni ADD` inside node k's namespace, as a kubelet would.
    fn add_pod(&self, k: usize, name: &str) -> Pod {
        let (ns, agent) = (self.ns(k), self.node(k));
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
        cmd.env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("office-{}", pod_ns.name))
            .env("CNI_NETNS", format!("/run/netns/{}", pod_ns.name))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", Path::new(CNI).parent().unwrap())
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=office;K8S_POD_NAME={name}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn brindle-cni");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        let out = wait_output(child, Duration::from_secs(20));
        assert!(
            out.status.success(),
            "brindle-cni ADD {name} on node-{k}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let res: Value = serde_json::from_slice(&out.stdout).expect("CNI result JSON");
        let ip = res["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("no ips[0].address in {res}"))
            .to_string();
        Pod {
            name: name.to_string(),
            ip,
            ns: pod_ns,
        }
    }

    /// What kube-proxy would write for the Service in node k's namespace: DNAT of both
    /// service addresses to the local endpoint; with `Local` and no local endpoint, the
    /// cluster IP still goes to the endpoint elsewhere (internal traffic is `Cluster`)
    /// and external traffic to the external IP is dropped. No masquerade anywhere
    /// (kube-proxy masquerades external traffic of `Cluster` services only; the
    /// `Cluster` part of this test checks routes, not traffic).
    fn kube_proxy(&self, k: usize, ep: Endpoint<'_>) {
        let ns = self.ns(k);
        ns.exec_ok(&["iptables", "-t", "nat", "-F", "TEST-KUBE-PROXY"]);
        ns.exec_ok(&["iptables", "-F", "TEST-KUBE-PROXY"]);
        let local = ep.node == self.node(k).node_name;
        let to = format!("{}:{POD_PORT}", ep.ip);
        let port = SERVICE_PORT.to_string();
        let dnat = |dst: &str| {
            ns.exec_ok(&[
                "iptables",
                "-t",
                "nat",
                "-A",
                "TEST-KUBE-PROXY",
                "-d",
                &format!("{dst}/32"),
                "-p",
                "tcp",
                "--dport",
                &port,
                "-j",
                "DNAT",
                "--to-destination",
                &to,
            ]);
        };
        dnat(CLUSTER_IP);
        if local || ep.policy != "Local" {
            dnat(EXTERNAL_IP);
        } else {
            ns.exec_ok(&[
                "iptables",
                "-A",
                "TEST-KUBE-PROXY",
                "-d",
                &format!("{EXTERNAL_IP}/32"),
                "-p",
                "tcp",
                "--dport",
                &port,
                "-j",
                "DROP",
            ]);
        }
    }

    /// Writes the Service (or none) to both nodes' files, kube-proxy's rules first.
    fn set_service(&self, ep: Option<Endpoint<'_>>) -> Instant {
        if let Some(ep) = ep {
            self.kube_proxy(1, ep);
            self.kube_proxy(2, ep);
        }
        let yaml = cluster_yaml(self.i, ep);
        let t0 = Instant::now();
        self.node_1.rewrite_config(&yaml);
        self.node_2.rewrite_config(&yaml);
        t0
    }

    fn learned_from(&self, prefix: &str) -> Vec<String> {
        learned_from(&self.bird, prefix)
    }

    fn wait_learned(&self, what: &str, prefix: &str, want: &[&str], t0: Instant) -> Duration {
        wait_learned(&self.bird, &self.dumps(), what, prefix, want, t0)
    }

    /// The `test-replies` counter of node k.
    fn replies_via(&self, k: usize) -> u64 {
        let out = self.ns(k).exec_ok(&["iptables", "-nvxL", "FORWARD"]);
        out.lines()
            .find(|l| l.contains("test-replies"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no counter in\n{out}"))
    }

    /// The office connects to `ip`: the answer must come from `pod`, which saw the
    /// office host's own address; returns the answer.
    fn assert_reaches(&self, ip: &str, pod: &str) -> String {
        let mut last = String::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            match connect_from(&self.host, ip, SERVICE_PORT) {
                Ok(answer) => {
                    let mut it = answer.split_whitespace();
                    let (who, seen) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                    assert_eq!(who, pod, "{ip} answered by the wrong pod: {answer}");
                    let seen: SocketAddr = seen.parse().unwrap_or_else(|_| panic!("{answer}"));
                    assert_eq!(
                        seen.ip().to_string(),
                        OFFICE_HOST,
                        "the pod must see the office host's own address: {answer}"
                    );
                    return answer;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "office cannot reach {ip}: {last}\n\n{}",
            self.dumps()
                .iter()
                .map(|d| d.dump())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// No SNAT or masquerade rule in either node (the source address is kept).
    fn assert_no_masquerade(&self) {
        for k in [1, 2] {
            let nat = self.ns(k).exec_ok(&["iptables", "-t", "nat", "-S"]);
            assert!(
                !nat.contains("MASQUERADE") && !nat.contains("SNAT"),
                "node-{k} nat table:\n{nat}"
            );
        }
    }

    /// `brindlectl node routes` (table) of node k.
    fn routes_table(&self, k: usize) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_brindlectl"))
            .args(["node", "routes", "--socket"])
            .arg(&self.node(k).socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The service prefixes node k advertises (from its routes document).
    fn service_prefixes(&self, k: usize) -> Vec<String> {
        let doc = self.node(k).routes();
        doc["services"]["advertise"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| jstr(r, "prefix").to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    }
}

fn wait_output(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
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
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("brindle-cni timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// The BIRD protocols (`node_1`, `node_2`) `prefix` is learned from, exactly.
fn learned_from(bird: &Bird, prefix: &str) -> Vec<String> {
    let text = bird.cmd(&format!("show route {prefix}"));
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.contains("unicast ["))
        .filter_map(|l| {
            let rest = l.split("unicast [").nth(1)?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Polls BIRD every 10 ms until `prefix` is learned from exactly `want`; the time since
/// `t0`. Panics with the dumps after [`CONVERGE`].
fn wait_learned(
    bird: &Bird,
    dumps: &[&dyn Dump],
    what: &str,
    prefix: &str,
    want: &[&str],
    t0: Instant,
) -> Duration {
    let deadline = t0 + CONVERGE;
    loop {
        if learned_from(bird, prefix) == want {
            return t0.elapsed();
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: {prefix} learned from {:?}, want {want:?}\n\n{}",
                learned_from(bird, prefix),
                dumps
                    .iter()
                    .map(|d| d.dump())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn host32(ip: &str) -> String {
    format!("{ip}/32")
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn office_reaches_a_local_service_on_its_endpoints_node_and_the_route_follows_the_endpoint() {
    let o = Office::new(47);
    let (p1, p2) = (o.pod("p1").ip.clone(), o.pod("p2").ip.clone());
    let (ext, cip) = (host32(EXTERNAL_IP), host32(CLUSTER_IP));

    // Before any Service: the ranges only, from both nodes.
    for range in [CLUSTER_RANGE, EXTERNAL_RANGE] {
        o.wait_learned(
            "ranges from every node",
            range,
            &["node_1", "node_2"],
            Instant::now(),
        );
    }
    assert!(o.learned_from(&ext).is_empty());

    // 1. Local, the endpoint on node-2: the /32s only from node-2.
    let on_2 = Endpoint {
        node: "node-2",
        ip: &p2,
        policy: "Local",
    };
    let t0 = o.set_service(Some(on_2));
    let took = o.wait_learned("Local service on node-2", &ext, &["node_2"], t0);
    o.wait_learned("Local service on node-2", &cip, &["node_2"], t0);
    eprintln!("Local service: BIRD learns {ext} from node-2 {took:?} after the file write");
    for range in [CLUSTER_RANGE, EXTERNAL_RANGE] {
        assert_eq!(o.learned_from(range), ["node_1", "node_2"], "{range}");
    }
    assert_eq!(o.service_prefixes(1), [CLUSTER_RANGE, EXTERNAL_RANGE]);
    let table = o.routes_table(2);
    eprintln!("node-2 `brindlectl node routes`:\n{table}");
    assert!(table.contains("office/web externalIP"), "{table}");
    assert!(table.contains("office/web clusterIP"), "{table}");
    assert!(table.contains(&format!("{p2} on node-2")), "{table}");
    assert!(table.contains("serviceExternalIPs range"), "{table}");

    // The office reaches the service; the pod sees the office's address; the reply
    // leaves by node-2, the way the request came (no masquerade, no other path).
    let before = (o.replies_via(1), o.replies_via(2));
    let answer = o.assert_reaches(EXTERNAL_IP, "p2");
    eprintln!("office -> {EXTERNAL_IP}:{SERVICE_PORT}: {answer}");
    let answer = o.assert_reaches(CLUSTER_IP, "p2");
    eprintln!("office -> {CLUSTER_IP}:{SERVICE_PORT}: {answer}");
    let after = (o.replies_via(1), o.replies_via(2));
    assert!(
        after.1 > before.1,
        "no reply left by node-2: {before:?} {after:?}"
    );
    assert_eq!(
        after.0, before.0,
        "a reply left by node-1: {before:?} {after:?}"
    );
    o.assert_no_masquerade();

    // 2. The endpoint moves to node-1: the route follows within the limit.
    let on_1 = Endpoint {
        node: "node-1",
        ip: &p1,
        policy: "Local",
    };
    let t0 = o.set_service(Some(on_1));
    let moved = o.wait_learned("endpoint moved to node-1", &ext, &["node_1"], t0);
    let moved_cip = o.wait_learned("endpoint moved to node-1", &cip, &["node_1"], t0);
    eprintln!(
        "endpoint moved: BIRD has {ext} from node-1 only {moved:?} after the file write ({cip}: {moved_cip:?}; limit {REACTION_LIMIT:?})"
    );
    assert!(
        moved <= REACTION_LIMIT && moved_cip <= REACTION_LIMIT,
        "the route took {moved:?} / {moved_cip:?} to follow the endpoint"
    );
    let before = (o.replies_via(1), o.replies_via(2));
    let answer = o.assert_reaches(EXTERNAL_IP, "p1");
    eprintln!("office -> {EXTERNAL_IP}:{SERVICE_PORT} after the move: {answer}");
    let after = (o.replies_via(1), o.replies_via(2));
    assert!(
        after.0 > before.0,
        "no reply left by node-1: {before:?} {after:?}"
    );
    assert_eq!(
        after.1, before.1,
        "a reply left by node-2: {before:?} {after:?}"
    );
    o.assert_no_masquerade();

    // 3. For contrast, Cluster: no per-node /32, the ranges from both nodes.
    let cluster = Endpoint {
        node: "node-1",
        ip: &p1,
        policy: "Cluster",
    };
    let t0 = o.set_service(Some(cluster));
    let gone = o.wait_learned("Cluster service", &ext, &[], t0);
    o.wait_learned("Cluster service", &cip, &[], t0);
    eprintln!("Cluster policy: {ext} withdrawn {gone:?} after the file write");
    assert!(gone <= REACTION_LIMIT, "withdrawal took {gone:?}");
    for range in [CLUSTER_RANGE, EXTERNAL_RANGE] {
        assert_eq!(o.learned_from(range), ["node_1", "node_2"], "{range}");
    }
    for k in [1, 2] {
        assert_eq!(
            o.service_prefixes(k),
            [CLUSTER_RANGE, EXTERNAL_RANGE],
            "node-{k}"
        );
    }
    // Back to Local on node-2, then the Service deleted: withdrawn as well.
    let t0 = o.set_service(Some(on_2));
    o.wait_learned("Local again", &ext, &["node_2"], t0);
    let t0 = o.set_service(None);
    let deleted = o.wait_learned("Service deleted", &ext, &[], t0);
    eprintln!("Service deleted: {ext} withdrawn {deleted:?} after the file write");
    assert!(deleted <= REACTION_LIMIT, "withdrawal took {deleted:?}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes mode
// ---------------------------------------------------------------------------------------------

fn endpoint_slice(node: &str, ip: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x1", "namespace": "office",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}}],
        "ports": [{"port": POD_PORT, "protocol": "TCP"}],
    })
}

#[test]
fn kubernetes_mode_the_route_follows_the_endpoint_slice() {
    let i = 48;
    let lan = Lan::new(i, &["r", "na", "nb", "api"]);
    let api_ip = lan.v4(4);
    let api = start_api_in(&lan.members[3], &api_ip, 6443);
    let kube_dir = test_dir("kube");
    let kubeconfig = kube_dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&crds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in &files {
        api.load_file(f).unwrap();
    }
    let crd = "crd.projectcalico.org/v1";
    let mut objs = vec![
        json!({"apiVersion": crd, "kind": "BGPConfiguration", "metadata": {"name": "default"},
               "spec": {"asNumber": AS, "nodeToNodeMeshEnabled": true,
                        "serviceClusterIPs": [{"cidr": CLUSTER_RANGE}],
                        "serviceExternalIPs": [{"cidr": EXTERNAL_RANGE}]}}),
        json!({"apiVersion": crd, "kind": "BGPPeer", "metadata": {"name": "office-router"},
               "spec": {"peerIP": lan.v4(1), "asNumber": ROUTER_AS}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "office"}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "office"},
               "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP],
                        "ipFamilies": ["IPv4"], "externalIPs": [EXTERNAL_IP],
                        "externalTrafficPolicy": "Local",
                        "ports": [{"port": SERVICE_PORT, "targetPort": POD_PORT, "protocol": "TCP"}]}}),
        endpoint_slice("node-2", "10.65.0.65", true),
    ];
    for (k, node) in ["node-1", "node-2"].iter().enumerate() {
        objs.push(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node},
                         "annotations": {"projectcalico.org/IPv4Address": format!("{}/24", lan.v4(k + 2)),
                                         "projectcalico.org/ASNumber": AS.to_string()}},
            "status": {"addresses": [{"type": "InternalIP", "address": lan.v4(k + 2)}]}}));
    }
    for o in objs {
        api.apply(o.clone())
            .unwrap_or_else(|e| panic!("applying {o}: {e}"));
    }
    let channels = "ipv4 { import all; export none; };";
    let body = format!(
        "{}{}",
        bird_bgp("node_1", ROUTER_AS, &lan.v4(2), AS, "", channels),
        bird_bgp("node_2", ROUTER_AS, &lan.v4(3), AS, "", channels),
    );
    let bird = Bird::start(&lan.members[0], &lan.v4(1), &body);
    let kc = kubeconfig.to_str().unwrap().to_string();
    let nodes: Vec<BrindleNode> = (0..2)
        .map(|k| {
            BrindleNode::start_with_args(
                &lan.members[k + 1],
                &format!("node-{}", k + 1),
                "# unused: --datastore kubernetes\n",
                &[&lan.v4(k + 2)],
                &[
                    "--datastore",
                    "kubernetes",
                    "--kubeconfig",
                    &kc,
                    "--no-dataplane",
                    "--http-address",
                    "off",
                ],
            )
        })
        .collect();
    let dumps: Vec<&dyn Dump> = vec![&nodes[0], &nodes[1], &bird];
    let ext = host32(EXTERNAL_IP);
    wait_learned(
        &bird,
        &dumps,
        "Local on node-2",
        &ext,
        &["node_2"],
        Instant::now(),
    );
    wait_learned(
        &bird,
        &dumps,
        "Local on node-2",
        &host32(CLUSTER_IP),
        &["node_2"],
        Instant::now(),
    );
    for range in [CLUSTER_RANGE, EXTERNAL_RANGE] {
        assert_eq!(learned_from(&bird, range), ["node_1", "node_2"], "{range}");
    }

    // The endpoint moves to node-1 (one EndpointSlice update).
    let t0 = Instant::now();
    api.apply(endpoint_slice("node-1", "10.65.0.1", true))
        .unwrap();
    let moved = wait_learned(&bird, &dumps, "moved to node-1", &ext, &["node_1"], t0);
    // Not ready: withdrawn everywhere.
    let t0 = Instant::now();
    api.apply(endpoint_slice("node-1", "10.65.0.1", false))
        .unwrap();
    let unready = wait_learned(&bird, &dumps, "endpoint not ready", &ext, &[], t0);
    // Ready again, then the EndpointSlice deleted: withdrawn.
    api.apply(endpoint_slice("node-1", "10.65.0.1", true))
        .unwrap();
    wait_learned(
        &bird,
        &dumps,
        "ready again",
        &ext,
        &["node_1"],
        Instant::now(),
    );
    let t0 = Instant::now();
    api.delete(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        Some("office"),
        "web-x1",
    )
    .unwrap();
    let deleted = wait_learned(&bird, &dumps, "slice deleted", &ext, &[], t0);
    eprintln!(
        "Kubernetes mode, from the API write to BIRD's route change: moved {moved:?}, not ready {unready:?}, slice deleted {deleted:?} (limit {REACTION_LIMIT:?})"
    );
    for (what, d) in [
        ("moved", moved),
        ("not ready", unready),
        ("deleted", deleted),
    ] {
        assert!(d <= REACTION_LIMIT, "{what}: {d:?}");
    }
}
