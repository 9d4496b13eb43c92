//! Benchmark (not a test): CNI ADD latency, from the runtime's call of `brindle-cni ADD`
//! to the pod answering a ping from a host on the router's LAN.
//!
//! Run it as root through `scripts/bench-cni.sh`, which builds the release binaries and
//! this example. Topology (network namespaces `<prefix>-<role>`, created here and deleted
//! at the end, also on panic; nothing is configured in the root namespace):
//!
//! ```text
//!   LAN host 192.168.1.10 --- BIRD router (AS 65000, 192.168.1.1 / 10.90.0.1)
//!                                |  switch 10.90.0.0/24
//!              node-a 10.90.0.2        node-b 10.90.0.3        [api 10.90.0.4: the stand-in]
//!              brindle-node (AS 64512, mesh, both peer with the router)
//!              pods <prefix>-p<n>: brindle-cni ADD run in the node's namespace
//! ```
//!
//! Modes: `file` (the agents and the plugin read one Calico resource file; each node has
//! two confirmed /26 BlockAffinities, advertised before the first pod) and `kubernetes`
//! (the agents `--datastore kubernetes --kubeconfig`, the plugin `datastore_type:
//! kubernetes`, against the API stand-in `brindle-kube-standin` run in this process
//! inside the `api` namespace; one IPPool, no affinity at the start: the first pods of a
//! node claim its blocks, which the agent then advertises; every Pod object is created in
//! the stand-in before the run). Per mode: `--pods` pods one at a time, deleted, then
//! `--pods` more with `--concurrency` workers; pods alternate between the two nodes.
//!
//! Per pod: its network namespace is made first (the runtime's job, not timed); t0 =
//! just before the plugin process is spawned (directly, `setns` into the node's
//! namespace in `pre_exec`, no `ip netns exec`); the call ends when the plugin exits
//! (its result names the address); from then an ICMP echo request goes to the address
//! every millisecond from the LAN host (a raw socket opened inside its namespace) until
//! the first reply. Reported: the call's duration, t0 → first reply ("reachable"), and
//! the difference (call end → reachable: routes towards the pod, BGP included). A worker
//! starts its next pod when its pod answered. After each phase the pods are deleted
//! (DEL, then their namespaces) and the harness waits `--settle` seconds, so that the
//! kernel's background teardown of 200 namespaces does not overlap the next phase.
//!
//! Floor (`--floor`, in the file-mode topology): the same per pod with `ip -batch`
//! instead of the plugin: `ip -n NODE -batch` (veth with the pod end in the pod's
//! namespace, host route) and `ip -n POD -batch` (address, link up, the 169.254.1.1
//! gateway with a permanent neighbour entry instead of proxy ARP), addresses from
//! 10.99.0.0/16, which the router routes to node-a statically (no BGP, no IPAM, no
//! sysctls, no agent); the node finds the pod's MAC by ARP. A second floor adds a
//! permanent neighbour entry for the pod on the node in the same batch (what the agent
//! programs for every pod after the plugin has told it). `--skip-cni` runs the floors
//! alone.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use brindle_kube_standin::{Config, StandIn};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser, Clone)]
#[command(about = "CNI ADD latency to reachable-from-the-LAN")]
struct Cli {
    /// Directory with brindle-node and brindle-cni (release build).
    #[arg(long)]
    bin: PathBuf,
    /// Namespace name prefix (unique per run; the script passes `brc<pid>`).
    #[arg(long)]
    prefix: String,
    /// Work directory (configs, logs, state).
    #[arg(long)]
    work: PathBuf,
    /// Pods per phase.
    #[arg(long, default_value_t = 200)]
    pods: usize,
    /// Workers of the concurrent phase.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Modes, comma-separated: file, kubernetes.
    #[arg(long, default_value = "file,kubernetes")]
    modes: String,
    /// Also the `ip -batch` floor.
    #[arg(long)]
    floor: bool,
    /// Skip the plugin's phases (with --floor: the floor alone).
    #[arg(long)]
    skip_cni: bool,
    /// Seconds to wait after a phase's namespaces are deleted (the kernel tears network
    /// namespaces down in the background; without a pause that work overlaps the next
    /// phase).
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Calico CRD manifests for the stand-in.
    #[arg(long, default_value = "examples/kubernetes/crds")]
    crds: PathBuf,
}

const AS: u32 = 64512;
const ROUTER_AS: u32 = 65000;
const NET: &str = "10.90.0";
const LAN_ROUTER: &str = "192.168.1.1";
const LAN_HOST: &str = "192.168.1.10";
const FILE_POOL: &str = "10.65.0.0/16";
const FILE_BLOCKS: [[&str; 2]; 2] = [
    ["10.65.0.0/26", "10.65.0.64/26"],
    ["10.65.1.0/26", "10.65.1.64/26"],
];
const KUBE_POOL: &str = "10.72.0.0/16";
const FLOOR_NET: &str = "10.99.0.0/16";
const CRD: &str = "crd.projectcalico.org/v1";
const NODES: [&str; 2] = ["node-a", "node-b"];

// ---------------------------------------------------------------------------------------
// Processes and namespaces (every one owned by a guard; stopped by PID / deleted by name).

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> anyhow::Result<Netns> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }
    fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }
    fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args))
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }
    fn sysctl(&self, kv: &str) -> anyhow::Result<()> {
        self.exec(&["sysctl", "-q", "-w", kv]).map(|_| ())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `f` on a thread inside namespace `ns` (setns on that thread only).
fn in_netns<T: Send + 'static>(
    ns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let file = fs::File::open(ns).with_context(|| format!("open {}", ns.display()))?;
    std::thread::spawn(move || {
        // SAFETY: setns on this helper thread only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(anyhow::anyhow!(
                "setns: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

/// A daemon in a namespace: SIGTERM then SIGKILL by PID on drop; SIGKILL if we die.
struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(
        name: &str,
        ns: &Netns,
        args: &[&str],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> anyhow::Result<Daemon> {
        let out = fs::File::create(&log)?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, v) in env {
            c.env(k, v);
        }
        // SAFETY: async-signal-safe prctl only.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = c.spawn().with_context(|| format!("start {name}"))?;
        Ok(Daemon {
            name: name.into(),
            child,
            log,
        })
    }
    fn check(&mut self) -> anyhow::Result<()> {
        if let Some(st) = self.child.try_wait()? {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            bail!(
                "{} exited ({st}):\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child by PID.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        if f()? {
            return Ok(t.elapsed());
        }
        if t.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// The ICMP prober: a raw socket opened in the LAN host's namespace; one thread sends an
// echo request every millisecond to every pending target and records the first reply.

struct Target {
    ip: Ipv4Addr,
    seq: u16,
    done: mpsc::Sender<Instant>,
}

struct Prober {
    pending: Arc<Mutex<Vec<Target>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    next_seq: AtomicUsize,
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += u32::from(w);
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

impl Prober {
    fn start(host_ns: &Netns) -> anyhow::Result<Prober> {
        let fd = in_netns(&host_ns.path(), || {
            // SAFETY: plain socket(2).
            unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_ICMP,
                )
            }
        })?;
        if fd < 0 {
            bail!("raw ICMP socket: {}", std::io::Error::last_os_error());
        }
        let pending: Arc<Mutex<Vec<Target>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let ident = (std::process::id() & 0xffff) as u16;
        let (p, s) = (pending.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let mut next_send = Instant::now();
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= next_send {
                    let targets: Vec<(Ipv4Addr, u16)> =
                        p.lock().unwrap().iter().map(|t| (t.ip, t.seq)).collect();
                    for (ip, seq) in targets {
                        let mut pkt = [0u8; 16];
                        pkt[0] = 8; // echo request
                        pkt[4..6].copy_from_slice(&ident.to_be_bytes());
                        pkt[6..8].copy_from_slice(&seq.to_be_bytes());
                        let c = checksum(&pkt);
                        pkt[2..4].copy_from_slice(&c.to_be_bytes());
                        let sa = libc::sockaddr_in {
                            sin_family: libc::AF_INET as libc::sa_family_t,
                            sin_port: 0,
                            sin_addr: libc::in_addr {
                                s_addr: u32::from(ip).to_be(),
                            },
                            sin_zero: [0; 8],
                        };
                        // SAFETY: valid buffer and address for sendto(2).
                        unsafe {
                            libc::sendto(
                                fd,
                                pkt.as_ptr().cast(),
                                pkt.len(),
                                libc::MSG_DONTWAIT,
                                (&sa as *const libc::sockaddr_in).cast(),
                                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                            );
                        }
                    }
                    next_send = Instant::now() + Duration::from_millis(1);
                }
                // Replies, waiting at most until the next send.
                let wait = next_send.saturating_duration_since(Instant::now());
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe {
                    libc::poll(&mut pfd, 1, (wait.as_micros() as u32).div_ceil(1000) as i32)
                };
                if r <= 0 {
                    continue;
                }
                loop {
                    // SAFETY: valid buffer for recv(2).
                    let n = unsafe {
                        libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
                    };
                    if n <= 0 {
                        break;
                    }
                    let now = Instant::now();
                    let b = &buf[..n as usize];
                    let ihl = usize::from(b[0] & 0x0f) * 4;
                    if b.len() < ihl + 8 || b[ihl] != 0 {
                        continue;
                    }
                    let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
                    let id = u16::from_be_bytes([b[ihl + 4], b[ihl + 5]]);
                    let seq = u16::from_be_bytes([b[ihl + 6], b[ihl + 7]]);
                    if id != ident {
                        continue;
                    }
                    let mut g = p.lock().unwrap();
                    if let Some(i) = g.iter().position(|t| t.ip == src && t.seq == seq) {
                        let t = g.swap_remove(i);
                        let _ = t.done.send(now);
                    }
                }
            }
            // SAFETY: our descriptor.
            unsafe { libc::close(fd) };
        });
        Ok(Prober {
            pending,
            stop,
            thread: Some(thread),
            next_seq: AtomicUsize::new(1),
        })
    }

    /// Probes `ip` until it answers; the receiver gets the time of the first reply.
    fn watch(&self, ip: Ipv4Addr) -> mpsc::Receiver<Instant> {
        let (tx, rx) = mpsc::channel();
        let seq = (self.next_seq.fetch_add(1, Ordering::Relaxed) % 65_535 + 1) as u16;
        self.pending
            .lock()
            .unwrap()
            .push(Target { ip, seq, done: tx });
        rx
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The topology.

struct Lab {
    // Drop order: daemons, stand-in, then namespaces.
    agents: Vec<Daemon>,
    bird: Daemon,
    api: Option<StandIn>,
    prober: Prober,
    kube_confs: Option<PathBuf>,
    state: Vec<PathBuf>,
    config: PathBuf,
    _host: Netns,
    router: Netns,
    nodes: Vec<Netns>,
    _api_ns: Option<Netns>,
    _switch: Netns,
    birdc: (PathBuf, PathBuf),
}

fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> anyhow::Result<()> {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

fn file_yaml() -> String {
    let mut docs = vec![format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  asNumber: {AS}\n  nodeToNodeMeshEnabled: true\n"
    )];
    for (k, n) in NODES.iter().enumerate() {
        docs.push(format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {n}\nspec:\n  bgp:\n    ipv4Address: {NET}.{}/24\n",
            k + 2
        ));
    }
    docs.push(format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: router\nspec:\n  peerIP: \"{NET}.1\"\n  asNumber: {ROUTER_AS}\n"
    ));
    docs.push(format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pods\nspec:\n  cidr: \"{FILE_POOL}\"\n  blockSize: 26\n  ipipMode: Never\n  vxlanMode: Never\n  natOutgoing: false\n  nodeSelector: all()\n"
    ));
    for (k, n) in NODES.iter().enumerate() {
        for b in FILE_BLOCKS[k] {
            docs.push(format!(
                "apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata:\n  name: {n}-{}\nspec:\n  state: confirmed\n  node: {n}\n  cidr: \"{b}\"\n  deleted: \"false\"\n",
                b.replace(['.', '/'], "-")
            ));
        }
    }
    docs.join("---\n")
}

fn kube_objects(cli: &Cli) -> Vec<Value> {
    let mut objs = vec![
        json!({"apiVersion": CRD, "kind": "BGPConfiguration", "metadata": {"name": "default"},
               "spec": {"asNumber": AS, "nodeToNodeMeshEnabled": true}}),
        json!({"apiVersion": CRD, "kind": "IPPool", "metadata": {"name": "pods"},
               "spec": {"cidr": KUBE_POOL, "blockSize": 26, "ipipMode": "Never",
                        "vxlanMode": "Never", "nodeSelector": "all()"}}),
        json!({"apiVersion": CRD, "kind": "BGPPeer", "metadata": {"name": "router"},
               "spec": {"peerIP": format!("{NET}.1"), "asNumber": ROUTER_AS}}),
    ];
    for (k, n) in NODES.iter().enumerate() {
        let ip = format!("{NET}.{}", k + 2);
        objs.push(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n},
                "annotations": {"projectcalico.org/IPv4Address": format!("{ip}/24"),
                                "projectcalico.org/ASNumber": AS.to_string()}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}));
    }
    for phase in ["seq", "conc"] {
        for i in 0..cli.pods {
            objs.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name(phase, i), "namespace": "default"},
                "spec": {"nodeName": NODES[i % 2], "containers": [{"name": "c", "image": "x"}]}}));
        }
    }
    objs
}

fn pod_name(phase: &str, i: usize) -> String {
    format!("{phase}-{i:04}")
}

fn bird_conf(dir: &Path) -> String {
    let mut s = format!(
        "log \"{}\" all;\nrouter id {NET}.1;\nprotocol device {{ scan time 2; }}\n\
         protocol direct lan4 {{ ipv4; interface \"eth-lan\"; }}\n\
         protocol kernel {{ ipv4 {{ export where source = RTS_BGP; }}; merge paths on; }}\n",
        dir.join("bird.log").display()
    );
    for (k, n) in NODES.iter().enumerate() {
        let _ = write!(
            s,
            "protocol bgp {} {{\n  local as {ROUTER_AS};\n  neighbor {NET}.{} as {AS};\n  connect delay time 1;\n  connect retry time 2;\n  error wait time 1, 5;\n  ipv4 {{ import all; export all; }};\n}}\n",
            n.replace('-', "_"),
            k + 2
        );
    }
    s
}

impl Lab {
    fn new(cli: &Cli, kube: bool) -> anyhow::Result<Lab> {
        let mode = if kube { "k" } else { "f" };
        let dir = cli.work.join(if kube { "kubernetes" } else { "file" });
        fs::create_dir_all(&dir)?;
        let name = |role: &str| format!("{}-{mode}{role}", cli.prefix);
        let switch = Netns::new(name("s"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let router = Netns::new(name("r"))?;
        let mut nodes = Vec::new();
        for k in 0..2 {
            nodes.push(Netns::new(name(&format!("n{k}")))?);
        }
        let api_ns = if kube {
            Some(Netns::new(name("api"))?)
        } else {
            None
        };
        let mut members: Vec<&Netns> = vec![&router];
        members.extend(nodes.iter());
        members.extend(api_ns.iter());
        for (k, ns) in members.iter().enumerate() {
            let port = format!("p{}", k + 1);
            veth(&switch, &port, ns, "eth0")?;
            switch.ip(&["link", "set", &port, "master", "br0"])?;
            ns.ip(&["addr", "add", &format!("{NET}.{}/24", k + 1), "dev", "eth0"])?;
        }
        let host = Netns::new(name("h"))?;
        veth(&router, "eth-lan", &host, "eth0")?;
        router.ip(&["addr", "add", &format!("{LAN_ROUTER}/24"), "dev", "eth-lan"])?;
        host.ip(&["addr", "add", &format!("{LAN_HOST}/24"), "dev", "eth0"])?;
        host.ip(&["route", "add", "default", "via", LAN_ROUTER])?;
        router.sysctl("net.ipv4.ip_forward=1")?;
        for n in &nodes {
            n.sysctl("net.ipv4.ip_forward=1")?;
            n.ip(&["route", "add", "default", "via", &format!("{NET}.1")])?;
        }
        // The floor's addresses: routed to node-a statically.
        router.ip(&["route", "add", FLOOR_NET, "via", &format!("{NET}.2")])?;

        let bird_dir = dir.join("bird");
        fs::create_dir_all(&bird_dir)?;
        let conf = bird_dir.join("bird.conf");
        fs::write(&conf, bird_conf(&bird_dir))?;
        let sock = bird_dir.join("bird.ctl");
        let bird = Daemon::spawn(
            "bird",
            &router,
            &[
                "bird",
                "-f",
                "-c",
                conf.to_str().unwrap(),
                "-s",
                sock.to_str().unwrap(),
                "-P",
                bird_dir.join("bird.pid").to_str().unwrap(),
            ],
            &[],
            bird_dir.join("bird.out"),
        )?;

        let (api, kubeconfig) = if let Some(ns) = &api_ns {
            let listen = SocketAddr::new(format!("{NET}.4").parse::<IpAddr>()?, 6443);
            let api = in_netns(&ns.path(), move || {
                StandIn::start(Config {
                    listen,
                    ..Config::default()
                })
            })??;
            let mut files: Vec<PathBuf> = fs::read_dir(&cli.crds)
                .with_context(|| format!("{}", cli.crds.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            files.retain(|p| p.extension().is_some_and(|x| x == "yaml"));
            files.sort();
            for f in files {
                api.load_file(&f)?;
            }
            api.create_many(kube_objects(cli))?;
            let kc = dir.join("kubeconfig");
            api.write_kubeconfig(&kc)?;
            (Some(api), Some(kc))
        } else {
            (None, None)
        };

        let config = dir.join("cluster.yaml");
        fs::write(
            &config,
            if kube {
                "# unused: --datastore kubernetes\n".to_string()
            } else {
                file_yaml()
            },
        )?;
        let node_bin = cli.bin.join("brindle-node");
        let mut agents = Vec::new();
        let mut state = Vec::new();
        for (k, n) in NODES.iter().enumerate() {
            let st = dir.join(format!("{n}-state"));
            fs::create_dir_all(&st)?;
            let sock = dir.join(format!("{n}.sock"));
            let ip = format!("{NET}.{}", k + 2);
            let mut args: Vec<String> = vec![
                node_bin.display().to_string(),
                "--config".into(),
                config.display().to_string(),
                "--node-name".into(),
                n.to_string(),
                "--state-dir".into(),
                st.display().to_string(),
                "--status-socket".into(),
                sock.display().to_string(),
                "--listen-address".into(),
                ip,
                "--http-address".into(),
                "off".into(),
            ];
            if let Some(kc) = &kubeconfig {
                args.extend([
                    "--datastore".into(),
                    "kubernetes".into(),
                    "--kubeconfig".into(),
                    kc.display().to_string(),
                ]);
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            agents.push(Daemon::spawn(
                n,
                &nodes[k],
                &argv,
                &[("RUST_LOG", "info")],
                dir.join(format!("{n}.log")),
            )?);
            state.push(st);
        }
        let prober = Prober::start(&host)?;
        let mut lab = Lab {
            agents,
            bird,
            api,
            prober,
            kube_confs: kubeconfig,
            state,
            config,
            _host: host,
            router,
            nodes,
            _api_ns: api_ns,
            _switch: switch,
            birdc: (PathBuf::from("birdc"), sock),
        };
        let t = lab.wait_ready(kube)?;
        eprintln!(
            "[{}] topology ready after {t:?}",
            if kube { "kubernetes" } else { "file" }
        );
        Ok(lab)
    }

    fn birdc(&self, cmd: &str) -> String {
        Command::new(&self.birdc.0)
            .arg("-s")
            .arg(&self.birdc.1)
            .args(cmd.split_whitespace())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        self.bird.check()?;
        for a in &mut self.agents {
            a.check()?;
        }
        Ok(())
    }

    fn wait_ready(&mut self, kube: bool) -> anyhow::Result<Duration> {
        let state = self.state.clone();
        wait_for(
            "BGP sessions, advertised blocks and the agents' MTU files",
            Duration::from_secs(60),
            || {
                self.check_alive()?;
                let protos = self.birdc("show protocols");
                let est = NODES.iter().all(|n| {
                    protos
                        .lines()
                        .any(|l| l.starts_with(&n.replace('-', "_")) && l.contains("Established"))
                });
                let routes = self.router.ip(&["route", "show", "proto", "bird"])?;
                let blocks = kube || FILE_BLOCKS.iter().flatten().all(|b| routes.contains(b));
                let mtu = state
                    .iter()
                    .all(|s| fs::metadata(s.join("mtu")).is_ok_and(|m| m.len() > 0));
                Ok(est && blocks && mtu)
            },
        )
    }

    fn net_conf(&self, k: usize) -> String {
        let mut c = json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "brindle-cni",
            "nodename": NODES[k], "stateDir": self.state[k], "log_level": "info"});
        if let Some(kc) = &self.kube_confs {
            c["datastore_type"] = json!("kubernetes");
            c["kubernetes"] = json!({"kubeconfig": kc});
            c["ipam"] = json!({"type": "calico-ipam"});
        } else {
            c["config"] = json!(self.config);
        }
        c.to_string()
    }
}

// ---------------------------------------------------------------------------------------
// Pods.

struct Pod {
    name: String,
    node: usize,
    ns: Netns,
}

/// One sample: (call duration, t0 → reachable).
type Sample = (Duration, Duration);

/// Runs the plugin like a runtime: spawned directly, `setns` into the node's namespace.
fn cni_call(
    bin: &Path,
    node_ns: &fs::File,
    conf: &str,
    command: &str,
    pod: &Pod,
) -> anyhow::Result<String> {
    let mut cmd = Command::new(bin);
    let fd = node_ns.as_raw_fd();
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("ctr-{}", pod.name))
        .env("CNI_NETNS", format!("/run/netns/{}", pod.ns.name))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bin.parent().unwrap())
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID=ctr-{}",
                pod.name, pod.name
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setns(2) and prctl(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    child.stdin.take().unwrap().write_all(conf.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "brindle-cni {command} {} failed: {}{}",
            pod.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn result_ip(out: &str) -> anyhow::Result<Ipv4Addr> {
    let v: Value =
        serde_json::from_str(out.trim()).with_context(|| format!("CNI result {out:?}"))?;
    let a = v["ips"][0]["address"]
        .as_str()
        .context("no ips[0].address")?;
    Ok(a.split('/').next().unwrap().parse()?)
}

const REACH_TIMEOUT: Duration = Duration::from_secs(30);
/// A pod reachable this long after its call ended is listed.
const SLOW: Duration = Duration::from_millis(10);

/// The pods of one phase with `conc` workers; returns per-pod samples and the wall time.
fn phase(
    lab: &Lab,
    cli: &Cli,
    phase: &str,
    conc: usize,
    add: &(dyn Fn(&Pod, usize) -> anyhow::Result<Ipv4Addr> + Sync),
) -> anyhow::Result<(Vec<Sample>, Vec<Pod>, Duration)> {
    let next = AtomicUsize::new(0);
    let samples: Mutex<Vec<(usize, Sample)>> = Mutex::default();
    let pods: Mutex<Vec<Pod>> = Mutex::default();
    let err: Mutex<Option<anyhow::Error>> = Mutex::default();
    let t_all = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..conc {
            s.spawn(|| {
                let r = (|| -> anyhow::Result<()> {
                    loop {
                        if err.lock().unwrap().is_some() {
                            return Ok(());
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= cli.pods {
                            return Ok(());
                        }
                        let name = pod_name(phase, i);
                        let pod = Pod {
                            ns: Netns::new(format!("{}-p{}", cli.prefix, name))?,
                            name,
                            node: i % 2,
                        };
                        let t0 = Instant::now();
                        let ip = add(&pod, i);
                        let call = t0.elapsed();
                        let ip = match ip {
                            Ok(ip) => ip,
                            Err(e) => {
                                pods.lock().unwrap().push(pod);
                                return Err(e);
                            }
                        };
                        let rx = lab.prober.watch(ip);
                        let reached = rx.recv_timeout(REACH_TIMEOUT).with_context(|| {
                            format!(
                                "{} ({ip}) not reachable from the LAN within {REACH_TIMEOUT:?}",
                                pod.name
                            )
                        });
                        pods.lock().unwrap().push(pod);
                        samples.lock().unwrap().push((i, (call, reached? - t0)));
                    }
                })();
                if let Err(e) = r {
                    err.lock().unwrap().get_or_insert(e);
                }
            });
        }
    });
    let wall = t_all.elapsed();
    let pods = pods.into_inner().unwrap();
    if let Some(e) = err.into_inner().unwrap() {
        // The pods are deleted with their namespaces by the caller's drop.
        drop(pods);
        return Err(e);
    }
    let mut v = samples.into_inner().unwrap();
    v.sort_by_key(|x| x.0);
    Ok((v.into_iter().map(|x| x.1).collect(), pods, wall))
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn summary(label: &str, conc: usize, s: &[Sample], wall: Duration) -> String {
    let mut call: Vec<Duration> = s.iter().map(|x| x.0).collect();
    let mut reach: Vec<Duration> = s.iter().map(|x| x.1).collect();
    let mut after: Vec<Duration> = s.iter().map(|x| x.1.saturating_sub(x.0)).collect();
    let slow = after.iter().filter(|d| **d > SLOW).count();
    format!(
        "| {label} | {conc} | {} | {} / {} / {} | **{} / {}** / {} | {} / {} / {} | {slow} | {:.1} |",
        s.len(),
        ms(pct(&mut call, 0.5)),
        ms(pct(&mut call, 0.99)),
        ms(pct(&mut call, 1.0)),
        ms(pct(&mut reach, 0.5)),
        ms(pct(&mut reach, 0.99)),
        ms(pct(&mut reach, 1.0)),
        ms(pct(&mut after, 0.5)),
        ms(pct(&mut after, 0.99)),
        ms(pct(&mut after, 1.0)),
        s.len() as f64 / wall.as_secs_f64(),
    )
}

fn run_mode(
    cli: &Cli,
    kube: bool,
    rows: &mut Vec<String>,
    slow_detail: &mut Vec<String>,
) -> anyhow::Result<()> {
    let label = if kube {
        "Kubernetes (API stand-in)"
    } else {
        "file"
    };
    let mut lab = Lab::new(cli, kube)?;
    let cni = cli.bin.join("brindle-cni");
    let node_files: Vec<fs::File> = lab
        .nodes
        .iter()
        .map(|n| fs::File::open(n.path()))
        .collect::<Result<_, _>>()?;
    let confs: Vec<String> = (0..2).map(|k| lab.net_conf(k)).collect();
    let add = |pod: &Pod, _i: usize| -> anyhow::Result<Ipv4Addr> {
        result_ip(&cni_call(
            &cni,
            &node_files[pod.node],
            &confs[pod.node],
            "ADD",
            pod,
        )?)
    };
    let cni_phases: &[(&str, usize)] = if cli.skip_cni {
        &[]
    } else {
        &[("seq", 1), ("conc", cli.concurrency)]
    };
    for &(ph, conc) in cni_phases {
        eprintln!("[{label}] {} pods, {conc} at a time", cli.pods);
        let (s, pods, wall) = phase(&lab, cli, ph, conc, &add)?;
        lab.check_alive()?;
        rows.push(summary(label, conc, &s, wall));
        let slow: Vec<String> = s
            .iter()
            .enumerate()
            .filter(|(_, (c, r))| r.saturating_sub(*c) > SLOW)
            .map(|(i, (c, r))| {
                format!(
                    "{} on {} (call {} ms, reachable at {} ms)",
                    pod_name(ph, i),
                    NODES[i % 2],
                    ms(*c),
                    ms(*r)
                )
            })
            .collect();
        if !slow.is_empty() {
            slow_detail.push(format!(
                "{label}, {conc} at a time: reachable > {} ms after the call: {}",
                SLOW.as_millis(),
                slow.join("; ")
            ));
        }
        // DEL (not timed beyond its total), then the namespaces go.
        let t = Instant::now();
        std::thread::scope(|s| {
            for chunk in pods.chunks(pods.len().div_ceil(cli.concurrency.max(1)).max(1)) {
                let (cni, node_files, confs) = (&cni, &node_files, &confs);
                s.spawn(move || {
                    for p in chunk {
                        if let Err(e) = cni_call(cni, &node_files[p.node], &confs[p.node], "DEL", p)
                        {
                            eprintln!("{e}");
                        }
                    }
                });
            }
        });
        slow_detail.push(format!(
            "{label}: DEL of the {} pods of the {conc}-at-a-time phase, {} at a time: {} ms in all",
            pods.len(),
            cli.concurrency,
            ms(t.elapsed())
        ));
        drop(pods);
        std::thread::sleep(Duration::from_secs_f64(cli.settle));
    }
    if cli.floor && !kube {
        let node = &lab.nodes[0];
        for neigh in [false, true] {
            let add = |pod: &Pod, i: usize| -> anyhow::Result<Ipv4Addr> {
                let ip = Ipv4Addr::new(10, 99, (i / 250) as u8, (i % 250 + 1) as u8);
                let mac = format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256);
                let veth = format!("flr{i}");
                let mut host = format!(
                    "link add {veth} address ee:ee:ee:ee:ee:ee type veth peer name eth0 address {mac} netns {}\nlink set {veth} up\nroute add {ip}/32 dev {veth} scope link\n",
                    pod.ns.name
                );
                if neigh {
                    let _ = writeln!(host, "neigh add {ip} lladdr {mac} dev {veth} nud permanent");
                }
                let podside = format!(
                    "addr add {ip}/32 dev eth0\nlink set eth0 up\nroute add 169.254.1.1 dev eth0 scope link\nroute add default via 169.254.1.1 dev eth0\nneigh add 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent\n"
                );
                for (ns, text) in [(&node.name, host), (&pod.ns.name, podside)] {
                    let mut c = Command::new("ip")
                        .args(["-n", ns, "-batch", "-"])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()?;
                    c.stdin.take().unwrap().write_all(text.as_bytes())?;
                    let o = c.wait_with_output()?;
                    if !o.status.success() {
                        bail!("ip -batch: {}", String::from_utf8_lossy(&o.stderr));
                    }
                }
                Ok(ip)
            };
            let label = if neigh {
                "floor: `ip -batch` + permanent neighbour on the node"
            } else {
                "floor: `ip -batch` (2 processes), static route, ARP"
            };
            for (ph, conc) in [("fseq", 1), ("fconc", cli.concurrency)] {
                eprintln!("[{label}] {} pods, {conc} at a time", cli.pods);
                let (s, pods, wall) = phase(&lab, cli, ph, conc, &add)?;
                rows.push(summary(label, conc, &s, wall));
                let slow: Vec<String> = s
                    .iter()
                    .filter(|(c, r)| r.saturating_sub(*c) > SLOW)
                    .map(|(_, r)| ms(*r))
                    .collect();
                if !slow.is_empty() {
                    slow_detail.push(format!(
                        "{label}, {conc} at a time: reachable > {} ms after the call, at (ms): {}",
                        SLOW.as_millis(),
                        slow.join(", ")
                    ));
                }
                for i in 0..pods.len() {
                    let _ = node.ip(&["link", "del", &format!("flr{i}")]);
                }
                drop(pods);
                std::thread::sleep(Duration::from_secs_f64(cli.settle));
            }
        }
    }
    lab.check_alive()?;
    if kube {
        // How many blocks the nodes claimed (each one's first pod waited for BGP).
        let n = lab
            .api
            .as_ref()
            .map(|a| a.list(CRD, "IPAMBlock", None).len())
            .unwrap_or(0);
        slow_detail.push(format!("Kubernetes: {n} IPAMBlocks claimed by the end"));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    fs::create_dir_all(&cli.work)?;
    let mut rows = Vec::new();
    let mut detail = Vec::new();
    for m in cli.modes.split(',') {
        match m.trim() {
            "file" => run_mode(&cli, false, &mut rows, &mut detail)?,
            "kubernetes" => run_mode(&cli, true, &mut rows, &mut detail)?,
            other => bail!("unknown mode {other}"),
        }
    }
    println!("| datastore | at a time | pods | CNI call p50 / p99 / max (ms) | ADD → reachable from the LAN p50 / p99 / max (ms) | call end → reachable p50 / p99 / max (ms) | pods > 10 ms after the call | pods/s (wall, with namespace creation) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!("{r}");
    }
    if !detail.is_empty() {
        println!();
        for d in &detail {
            println!("- {d}");
        }
    }
    Ok(())
}
