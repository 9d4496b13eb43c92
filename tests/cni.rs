//! `brindle-cni` invoked directly, as a runtime would: `CNI_*` in the environment, the
//! network configuration on stdin. Needs root and `ip` (iproute2) and `ping`.
//!
//! Every test makes its own "host" namespace (the plugin runs in it through
//! `ip netns exec`, so it is the plugin's own namespace) and pod namespaces, named
//! `cn<pid>x<n>`, deleted by name in Drop guards, also when the test fails. Nothing is
//! changed in the machine's own namespace.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_brindle-cni");
static NEXT_NS: AtomicUsize = AtomicUsize::new(0);

/// A network namespace deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!(
            "cn{}x{}",
            std::process::id(),
            NEXT_NS.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside the namespace; panics on failure.
    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn try_exec(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        try_sh(&full)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip"];
        full.extend_from_slice(args);
        self.exec(&full)
    }

    /// `ip -j ARGS`, parsed.
    fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.ip(&full);
        if out.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {out}"))
    }

    fn link(&self, name: &str) -> Option<Value> {
        self.ip_json(&["-d", "link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    fn links(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// Routes as one-line `ip route` text.
    fn routes(&self, v6: bool) -> Vec<String> {
        let fam = if v6 { "-6" } else { "-4" };
        self.ip(&[fam, "route", "show"])
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn sysctl(&self, key: &str) -> String {
        self.exec(&["cat", &format!("/proc/sys/net/{key}")])
            .trim()
            .to_string()
    }

    /// Makes this namespace look like a node: an uplink with the default route (proxy ARP
    /// answers only for destinations routed out another interface), an address on `lo`,
    /// forwarding on.
    fn make_host(&self) {
        self.ip(&[
            "link", "add", "upl0", "type", "veth", "peer", "name", "upl1",
        ]);
        self.ip(&["link", "set", "upl0", "up"]);
        self.ip(&["link", "set", "upl1", "up"]);
        self.ip(&["route", "add", "default", "dev", "upl0"]);
        self.ip(&["addr", "add", "10.250.0.1/32", "dev", "lo"]);
        self.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
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

fn try_sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const HDR: &str = "apiVersion: projectcalico.org/v3\n";

/// The Calico resources of the tests: node-a, a pool, node-a's block (and IPv6 ones).
fn cluster_yaml(block: &str, pool_block_size: u8, v6: bool) -> String {
    let mut y = format!(
        "{HDR}kind: Node\nmetadata:\n  name: node-a\nspec:\n  bgp:\n    ipv4Address: 10.250.0.1/24\n{}---\n\
         {HDR}kind: IPPool\nmetadata:\n  name: pool-v4\nspec:\n  cidr: 10.66.0.0/16\n  blockSize: {pool_block_size}\n---\n\
         {HDR}kind: BlockAffinity\nmetadata:\n  name: node-a-v4\nspec:\n  node: node-a\n  cidr: {block}\n  state: confirmed\n",
        if v6 { "    ipv6Address: fd00:250::1/64\n" } else { "" }
    );
    if v6 {
        y.push_str(&format!(
            "---\n{HDR}kind: IPPool\nmetadata:\n  name: pool-v6\nspec:\n  cidr: fd00:66::/48\n  blockSize: 122\n---\n\
             {HDR}kind: BlockAffinity\nmetadata:\n  name: node-a-v6\nspec:\n  node: node-a\n  cidr: fd00:66::/122\n"
        ));
    }
    y
}

/// One test's world: a temp dir with the Calico file and the state dir, a host namespace.
struct Fixture {
    dir: tempfile::TempDir,
    host: Netns,
    cni_version: String,
}

struct Reply {
    code: i32,
    stdout: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "plugin failed: {}", self.stdout);
        self
    }
}

impl Fixture {
    fn new(yaml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.yaml"), yaml).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        Fixture {
            dir,
            host: Netns::new(),
            cni_version: "1.0.0".into(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn conf(&self) -> String {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": "k8s-pod-network",
            "type": "brindle-cni",
            "nodename": "node-a",
            "stateDir": self.state(),
            "config": self.dir.path().join("cluster.yaml"),
            "log_level": "debug",
        })
        .to_string()
    }

    /// Runs the plugin in the host namespace.
    fn run(&self, vars: &[(&str, &str)], stdin: &str) -> Reply {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host.name, BIN])
            .env_remove("CNI_COMMAND")
            .env_remove("CNI_CONTAINERID")
            .env_remove("CNI_NETNS")
            .env_remove("CNI_IFNAME")
            .env_remove("CNI_ARGS")
            .env("CNI_PATH", Path::new(BIN).parent().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn brindle-cni");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "brindle-cni panicked: {stderr}"
        );
        Reply {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }

    fn cmd(&self, command: &str, id: &str, pod: &Netns, pod_name: &str) -> Reply {
        let netns = pod.path();
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod_name}");
        self.run(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", &netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", &args),
            ],
            &self.conf(),
        )
    }

    /// The addresses allocated in the node's IPAM store (its blocks' files).
    fn allocations(&self) -> BTreeSet<String> {
        use brindle::ipam::IpamObject;
        let Ok(rd) = std::fs::read_dir(self.state().join("calico-ipam/IPAMBlock")) else {
            return BTreeSet::new();
        };
        let mut out = BTreeSet::new();
        for e in rd.filter_map(|e| e.ok()) {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            let b = brindle::ipam::Block::from_spec(v["spec"].clone()).unwrap();
            out.extend(b.in_use().map(|(ip, _)| ip.to_string()));
        }
        out
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state().join("cni.log")).unwrap_or_default()
    }
}

fn veth_name(ns: &str, pod: &str) -> String {
    brindle::cni::host_veth_name(ns, pod)
}

fn ping(from: &Netns, to: &str) -> bool {
    let v6 = to.contains(':');
    let mut args = vec!["ping", "-c1", "-W2"];
    if v6 {
        args.push("-6");
    }
    args.push(to);
    // The first IPv6 attempt may race neighbour discovery: allow a few tries.
    for _ in 0..3 {
        if from.try_exec(&args).0 {
            return true;
        }
    }
    false
}

#[test]
fn add_check_del_round_trip() {
    let t0 = Instant::now();
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    f.host.make_host();
    let pod = Netns::new();
    let host_if = veth_name("default", "web-0");

    let r = f.cmd("ADD", "ctr-web-0", &pod, "web-0").ok();
    let res = r.json();
    assert_eq!(res["cniVersion"], "1.0.0");
    assert_eq!(res["interfaces"][0]["name"], host_if.as_str());
    assert_eq!(res["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert!(res["interfaces"][0].get("sandbox").is_none());
    assert_eq!(res["interfaces"][1]["name"], "eth0");
    assert_eq!(res["interfaces"][1]["sandbox"], pod.path().as_str());
    assert_eq!(res["ips"][0]["address"], "10.66.0.0/32", "{res}");
    assert_eq!(res["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(res["ips"][0]["interface"], 1);
    assert_eq!(res["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(res["dns"], serde_json::json!({}));
    let pod_mac = res["interfaces"][1]["mac"].as_str().unwrap().to_string();

    // Host side: the veth, its MAC, no address, up, the route, the sysctls.
    let hl = f.host.link(&host_if).expect("host veth exists");
    assert_eq!(hl["address"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(hl["linkinfo"]["info_kind"], "veth");
    assert_eq!(hl["mtu"], 1500);
    assert!(hl["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let addrs = f.host.ip_json(&["-4", "addr", "show", "dev", &host_if]);
    assert!(
        addrs
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["addr_info"].as_array().is_none_or(|i| i.is_empty())),
        "host veth has no IPv4 address: {addrs}"
    );
    let routes = f.host.routes(false);
    let want = format!("10.66.0.0 dev {host_if} proto 80 scope link");
    assert!(routes.contains(&want), "{want:?} not in {routes:?}");
    // The pod's permanent neighbour entry: the first packet needs no ARP.
    let neigh = f.host.ip(&["neigh", "show", "dev", &host_if]);
    assert!(
        neigh.contains("10.66.0.0 lladdr") && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    assert_eq!(
        f.host.sysctl(&format!("ipv4/conf/{host_if}/proxy_arp")),
        "1"
    );
    assert_eq!(
        f.host.sysctl(&format!("ipv4/conf/{host_if}/forwarding")),
        "1"
    );
    assert_eq!(
        f.host.sysctl(&format!("ipv4/neigh/{host_if}/proxy_delay")),
        "0"
    );
    assert_eq!(
        f.host.sysctl(&format!("ipv6/conf/{host_if}/accept_ra")),
        "0"
    );

    // Pod side.
    let pl = pod.link("eth0").expect("eth0 in the pod");
    assert_eq!(pl["address"], pod_mac.as_str());
    let addrs = pod.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    let ai = &addrs[0]["addr_info"][0];
    assert_eq!(
        (ai["local"].as_str(), ai["prefixlen"].as_u64()),
        (Some("10.66.0.0"), Some(32))
    );
    let routes = pod.routes(false);
    assert!(
        routes.contains(&"default via 169.254.1.1 dev eth0".to_string()),
        "{routes:?}"
    );
    assert!(
        routes.contains(&"169.254.1.1 dev eth0 scope link".to_string()),
        "{routes:?}"
    );

    // The endpoint record.
    let rec: Value = serde_json::from_slice(
        &std::fs::read(f.state().join("endpoints/ctr-web-0-eth0.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["containerId"], "ctr-web-0");
    assert_eq!(rec["ifname"], "eth0");
    assert_eq!(rec["namespace"], "default");
    assert_eq!(rec["pod"], "web-0");
    assert_eq!(rec["hostIface"], host_if.as_str());
    assert_eq!(rec["mac"], pod_mac.as_str());
    assert_eq!(rec["ips"], serde_json::json!(["10.66.0.0/32"]));
    assert_eq!(rec["netns"], pod.path().as_str());

    // Traffic: pod -> host address, through proxy ARP for 169.254.1.1.
    assert!(ping(&pod, "10.250.0.1"), "pod cannot ping the host");
    let neigh = pod.ip(&["neigh", "show", "169.254.1.1"]);
    assert!(neigh.contains("ee:ee:ee:ee:ee:ee"), "{neigh}");

    // CHECK passes, then fails once the host route is gone.
    f.cmd("CHECK", "ctr-web-0", &pod, "web-0").ok();
    f.host
        .ip(&["route", "del", "10.66.0.0/32", "dev", &host_if]);
    let r = f.cmd("CHECK", "ctr-web-0", &pod, "web-0");
    assert_eq!(r.code, 1);
    let e = r.json();
    assert_eq!(e["code"], 103, "{e}");
    assert!(
        e["msg"].as_str().unwrap().contains("no route 10.66.0.0/32"),
        "{e}"
    );

    // DEL twice, both fine; everything is gone.
    f.cmd("DEL", "ctr-web-0", &pod, "web-0").ok();
    assert_eq!(f.cmd("DEL", "ctr-web-0", &pod, "web-0").ok().stdout, "");
    assert!(f.host.link(&host_if).is_none());
    assert_eq!(pod.links(), vec!["lo".to_string()]);
    assert!(!f.state().join("endpoints/ctr-web-0-eth0.json").exists());
    assert!(f.allocations().is_empty());
    let r = f.cmd("CHECK", "ctr-web-0", &pod, "web-0");
    assert_eq!(r.json()["code"], 103);

    // As in Calico, a released address goes to the back of the block's free list: the
    // next pod gets the next address.
    let pod2 = Netns::new();
    let r = f.cmd("ADD", "ctr-web-1", &pod2, "web-1").ok();
    assert_eq!(r.json()["ips"][0]["address"], "10.66.0.1/32");
    assert!(ping(&pod2, "10.250.0.1"));
    f.cmd("DEL", "ctr-web-1", &pod2, "web-1").ok();
    assert!(f.log().contains("released 10.66.0.1"), "{}", f.log());
    eprintln!("add_check_del_round_trip: {:?}", t0.elapsed());
}

#[test]
fn add_is_idempotent_and_del_tolerates_missing_things() {
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    f.host.make_host();
    let pod = Netns::new();
    let a = f.cmd("ADD", "c1", &pod, "p1").ok().json();
    let b = f.cmd("ADD", "c1", &pod, "p1").ok().json();
    assert_eq!(a["ips"], b["ips"]);
    assert_eq!(f.allocations().len(), 1);
    assert!(ping(&pod, "10.250.0.1"));
    f.cmd("CHECK", "c1", &pod, "p1").ok();

    // DEL of a container never added, with a netns that does not exist, or none at all.
    for (id, netns) in [("never", "/run/netns/does-not-exist"), ("never2", "")] {
        let r = f.run(
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
            ],
            &f.conf(),
        );
        assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    }
    // The pod's namespace is gone (the veth went with it): DEL still cleans up.
    let path = pod.path();
    drop(pod);
    let r = f.run(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", &path),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1"),
        ],
        &f.conf(),
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(f.allocations().is_empty());
    assert!(f.host.link(&veth_name("default", "p1")).is_none());
}

#[test]
fn version_lists_supported_versions() {
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    for stdin in ["", r#"{"cniVersion":"1.0.0"}"#] {
        let r = f.run(&[("CNI_COMMAND", "VERSION")], stdin).ok();
        let v = r.json();
        assert_eq!(v["cniVersion"], "1.0.0");
        let got: Vec<&str> = v["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        for want in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
            assert!(got.contains(&want), "{got:?}");
        }
    }
}

#[test]
fn bad_config_and_env_give_cni_errors() {
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    let pod = Netns::new();
    let env = |cmd: &'static str| {
        vec![
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", "c1".to_string()),
            ("CNI_NETNS", pod.path()),
            ("CNI_IFNAME", "eth0".to_string()),
        ]
    };
    let run = |vars: Vec<(&str, String)>, stdin: &str| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        f.run(&vars, stdin)
    };
    let good: Value = serde_json::from_str(&f.conf()).unwrap();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        c.to_string()
    };
    type Env<'a> = Vec<(&'a str, String)>;
    let cases: Vec<(String, Env, u64, &str)> = vec![
        ("{not json".into(), env("ADD"), 6, "not valid JSON"),
        (with("config", Value::Null), env("ADD"), 4, "\"config\""),
        (with("name", Value::Null), env("ADD"), 4, "\"name\""),
        (
            with("mtu", serde_json::json!("big")),
            env("ADD"),
            4,
            "\"mtu\"",
        ),
        (
            with("config", serde_json::json!("/nonexistent/cluster.yaml")),
            env("ADD"),
            4,
            "cannot load the Calico resource file",
        ),
        (
            with("nodename", serde_json::json!("node-z")),
            env("ADD"),
            4,
            "node \"node-z\"",
        ),
        (
            with("cniVersion", serde_json::json!("2.0.0")),
            env("ADD"),
            1,
            "not supported",
        ),
        (
            f.conf(),
            env("ADD")
                .into_iter()
                .filter(|(k, _)| *k != "CNI_CONTAINERID")
                .collect(),
            7,
            "CNI_CONTAINERID",
        ),
        (
            f.conf(),
            env("ADD")
                .into_iter()
                .filter(|(k, _)| *k != "CNI_NETNS")
                .collect(),
            7,
            "CNI_NETNS",
        ),
        (f.conf(), env("FROB"), 7, "CNI_COMMAND"),
    ];
    for (stdin, vars, code, needle) in cases {
        let r = run(vars, &stdin);
        assert_eq!(r.code, 1, "{stdin}: {}", r.stdout);
        let e = r.json();
        assert_eq!(e["code"], code, "{stdin}: {e}");
        assert!(e["msg"].as_str().unwrap().contains(needle), "{stdin}: {e}");
        assert!(e.get("cniVersion").is_some(), "{e}");
    }
    // The pod namespace does not exist.
    let r = run(
        env("ADD")
            .into_iter()
            .map(|(k, v)| {
                if k == "CNI_NETNS" {
                    (k, "/run/netns/nope-nope".to_string())
                } else {
                    (k, v)
                }
            })
            .collect(),
        &f.conf(),
    );
    assert_eq!(r.json()["code"], 104, "{}", r.stdout);
    assert!(f.allocations().is_empty(), "a failed ADD keeps no address");
    assert!(f.log().contains("ERROR"), "errors are logged: {}", f.log());
}

#[test]
fn concurrent_adds_get_distinct_addresses() {
    let t0 = Instant::now();
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    let pods: Vec<Netns> = (0..20).map(|_| Netns::new()).collect();
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let f = &f;
                s.spawn(move || f.cmd("ADD", &format!("conc{i}"), pod, &format!("conc-{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs = BTreeSet::new();
    for r in replies {
        let r = r.ok();
        addrs.insert(r.json()["ips"][0]["address"].as_str().unwrap().to_string());
    }
    assert_eq!(addrs.len(), 20, "{addrs:?}");
    assert_eq!(f.allocations().len(), 20);
    for (i, pod) in pods.iter().enumerate() {
        assert!(f
            .host
            .link(&veth_name("default", &format!("conc-{i}")))
            .is_some());
        let a = pod.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
        let ip = format!("{}/32", a[0]["addr_info"][0]["local"].as_str().unwrap());
        assert!(addrs.contains(&ip));
    }
    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let f = &f;
            s.spawn(move || {
                f.cmd("DEL", &format!("conc{i}"), pod, &format!("conc-{i}"))
                    .ok()
            });
        }
    });
    assert!(f.allocations().is_empty());
    assert_eq!(f.host.links(), vec!["lo".to_string()]);
    eprintln!("concurrent_adds_get_distinct_addresses: {:?}", t0.elapsed());
}

#[test]
fn block_exhaustion_is_a_clear_error() {
    // A /30: as in Calico every address of a block is handed out, so four pods fit.
    let f = Fixture::new(&cluster_yaml("10.66.0.0/30", 30, false));
    let pods: Vec<Netns> = (0..5).map(|_| Netns::new()).collect();
    for (i, pod) in pods.iter().take(4).enumerate() {
        let r = f
            .cmd("ADD", &format!("x{i}"), pod, &format!("x{i}"))
            .ok()
            .json();
        assert_eq!(r["ips"][0]["address"], format!("10.66.0.{i}/32"));
    }
    let r = f.cmd("ADD", "x4", &pods[4], "x4");
    assert_eq!(r.code, 1);
    let e = r.json();
    assert_eq!(e["code"], 101, "{e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("no free IPv4 address")
            && msg.contains("node-a")
            && msg.contains("10.66.0.0/30"),
        "{msg}"
    );
    assert!(f.host.link(&veth_name("default", "x4")).is_none());
    assert_eq!(pods[4].links(), vec!["lo".to_string()]);
    assert_eq!(f.allocations().len(), 4);
    // Releasing one makes room.
    f.cmd("DEL", "x0", &pods[0], "x0").ok();
    let c = f.cmd("ADD", "x4", &pods[4], "x4").ok().json();
    assert_eq!(c["ips"][0]["address"], "10.66.0.0/32");
}

#[test]
fn dual_stack_pod() {
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, true));
    f.host.make_host();
    f.host
        .ip(&["-6", "addr", "add", "fd00:250::1/128", "dev", "lo"]);
    let pod = Netns::new();
    let host_if = veth_name("default", "ds");
    let res = f.cmd("ADD", "ds1", &pod, "ds").ok().json();
    assert_eq!(res["ips"][0]["address"], "10.66.0.0/32");
    assert_eq!(res["ips"][1]["address"], "fd00:66::/128");
    assert_eq!(res["ips"][1]["gateway"], "fe80::ecee:eeff:feee:eeee");
    let routes = pod.routes(true);
    assert!(
        routes
            .iter()
            .any(|r| r.starts_with("default via fe80::ecee:eeff:feee:eeee dev eth0")),
        "{routes:?}"
    );
    let host_routes = f.host.routes(true);
    assert!(
        host_routes
            .iter()
            .any(|r| r.starts_with(&format!("fd00:66:: dev {host_if} proto 80"))),
        "{host_routes:?}"
    );
    assert!(ping(&pod, "10.250.0.1"));
    assert!(
        ping(&pod, "fd00:250::1"),
        "pod cannot ping the host over IPv6"
    );
    f.cmd("CHECK", "ds1", &pod, "ds").ok();
    f.cmd("DEL", "ds1", &pod, "ds").ok();
    assert!(f.allocations().is_empty());
}

#[test]
fn old_result_versions_and_gc() {
    let mut f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    f.cni_version = "0.3.1".into();
    let p1 = Netns::new();
    let p2 = Netns::new();
    let r = f.cmd("ADD", "g1", &p1, "g1").ok().json();
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(r["ips"][0]["version"], "4");
    f.cmd("ADD", "g2", &p2, "g2").ok();
    f.cni_version = "1.1.0".into();
    f.run(&[("CNI_COMMAND", "STATUS")], &f.conf()).ok();
    // GC keeps g2 only.
    let mut conf: Value = serde_json::from_str(&f.conf()).unwrap();
    conf["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "g2", "ifname": "eth0"}]);
    f.run(&[("CNI_COMMAND", "GC")], &conf.to_string()).ok();
    assert!(f.host.link(&veth_name("default", "g1")).is_none());
    assert!(f.host.link(&veth_name("default", "g2")).is_some());
    assert_eq!(f.allocations(), BTreeSet::from(["10.66.0.1".to_string()]));
    assert!(!f.state().join("endpoints/g1-eth0.json").exists());
}

#[test]
fn mtu_comes_from_config_then_agent_file() {
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    std::fs::write(f.state().join("mtu"), "1440\n").unwrap();
    let p1 = Netns::new();
    f.cmd("ADD", "m1", &p1, "m1").ok();
    assert_eq!(
        f.host.link(&veth_name("default", "m1")).unwrap()["mtu"],
        1440
    );
    assert_eq!(p1.link("eth0").unwrap()["mtu"], 1440);
    // "mtu" in the network configuration wins.
    let mut conf: Value = serde_json::from_str(&f.conf()).unwrap();
    conf["mtu"] = serde_json::json!(1400);
    let p2 = Netns::new();
    let netns = p2.path();
    f.run(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "m2"),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf.to_string(),
    )
    .ok();
    assert_eq!(p2.link("eth0").unwrap()["mtu"], 1400);
    assert_eq!(
        f.host.link(&veth_name("default", "m2")).unwrap()["mtu"],
        1400
    );
}

#[test]
fn example_conflist_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cni/10-brindle.conflist");
    let list: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut plugin = list["plugins"][0].clone();
    assert_eq!(plugin["type"], "brindle-cni");
    // What a runtime hands the plugin: the entry plus the list's cniVersion and name.
    plugin["cniVersion"] = list["cniVersion"].clone();
    plugin["name"] = list["name"].clone();
    let conf = brindle::cni::conf::NetConf::parse(plugin.to_string().as_bytes(), &|| None)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(conf.nodename, "node-a");
    assert_eq!(conf.mtu, Some(1480));
}

#[test]
fn new_sandbox_of_a_pod_survives_the_old_sandbox_del() {
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    f.host.make_host();
    let old = Netns::new();
    let new = Netns::new();
    let host_if = veth_name("default", "db-0");
    let a = f.cmd("ADD", "sandbox-old", &old, "db-0").ok().json();
    // The runtime replaces the sandbox: same pod, same veth name, new container.
    let b = f.cmd("ADD", "sandbox-new", &new, "db-0").ok().json();
    assert_ne!(a["ips"][0]["address"], b["ips"][0]["address"]);
    assert_eq!(
        old.links(),
        vec!["lo".to_string()],
        "the old pod end went with the old veth"
    );
    // The old sandbox's DEL releases its address but leaves the new veth alone.
    f.cmd("DEL", "sandbox-old", &old, "db-0").ok();
    assert!(f.host.link(&host_if).is_some());
    f.cmd("CHECK", "sandbox-new", &new, "db-0").ok();
    assert!(ping(&new, "10.250.0.1"));
    assert_eq!(f.allocations().len(), 1);
    f.cmd("DEL", "sandbox-new", &new, "db-0").ok();
    assert!(f.host.link(&host_if).is_none());
    assert!(f.allocations().is_empty());
}

/// The race of two sandboxes of one pod: the replaced sandbox's DEL runs while the new
/// sandbox's ADD is between building the veth (same name) and recording it (held there
/// by the plugin's debug-build hook). The DEL must wait: the new sandbox keeps its veth,
/// its route and its one address.
#[test]
fn racing_sandboxes_of_one_pod_leave_the_new_one_intact() {
    let f = Fixture::new(&cluster_yaml("10.66.0.0/26", 26, false));
    f.host.make_host();
    let host_if = veth_name("default", "race-0");
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=race-0";
    for round in 0..3 {
        let old = Netns::new();
        let new = Netns::new();
        let old_id = format!("old-{round}");
        let new_id = format!("new-{round}");
        f.cmd("ADD", &old_id, &old, "race-0").ok();
        let (del, add) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                f.run(
                    &[
                        ("CNI_COMMAND", "ADD"),
                        ("CNI_CONTAINERID", &new_id),
                        ("CNI_NETNS", &new.path()),
                        ("CNI_IFNAME", "eth0"),
                        ("CNI_ARGS", args),
                        ("BRINDLE_CNI_TEST_HOLD_MS", "400"),
                    ],
                    &f.conf(),
                )
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            let d = s.spawn(|| f.cmd("DEL", &old_id, &old, "race-0"));
            (d.join().unwrap(), a.join().unwrap())
        });
        assert_eq!(del.code, 0, "round {round}: DEL {}", del.stdout);
        let add = add.ok().json();
        let ip = add["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        assert!(
            f.host.link(&host_if).is_some(),
            "round {round}: the new veth was deleted"
        );
        let routes = f.host.ip(&["route", "show"]);
        assert!(
            routes.contains(&format!("{ip} dev {host_if}")),
            "round {round}: no route to {ip} via {host_if}:\n{routes}"
        );
        f.cmd("CHECK", &new_id, &new, "race-0").ok();
        assert_eq!(
            f.allocations(),
            BTreeSet::from([ip.clone()]),
            "round {round}"
        );
        f.cmd("DEL", &new_id, &new, "race-0").ok();
        assert!(f.allocations().is_empty(), "round {round}");
    }
}
