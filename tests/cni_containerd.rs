//! `brindle-cni` called by a real runtime: a private `containerd` and `ctr run --cni`, the
//! way a kubelet's runtime calls it (ADD when the task is created, DEL on `--rm`).
//!
//! Needs root and Debian's `containerd`, `runc`, `containernetworking-plugins` and
//! `busybox-static` (`apt-get install -y containerd runc containernetworking-plugins
//! busybox-static`). The test fails, loudly, when they are missing.
//!
//! Isolation:
//! - the "host" is a namespace of the test: containerd and ctr run in it through
//!   `nsenter --net` (not `ip netns exec`, which remounts /sys and hides the cgroup
//!   mounts runc needs);
//! - containerd gets its own `--config` (root, state, socket under a temp dir, CRI plugin
//!   off) and a private mount namespace with an overlay on /run, so its shim sockets do
//!   not land in the machine's /run/containerd;
//! - `ctr run --cni` reads `/etc/cni/net.d` and `/opt/cni/bin` and has no flag to change
//!   them, so ctr runs in a private mount namespace where /etc, /opt and /var/lib are
//!   overlays whose upper layers are in the temp dir: the conflist and the plugin
//!   symlinks written there exist for that ctr only, the machine's /etc/cni, /opt/cni
//!   and /var/lib/cni (libcni's cache) are never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_brindle-cni");

fn try_sh(args: &[&str]) -> (bool, String) {
    match Command::new(args[0]).args(&args[1..]).output() {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        }
        Err(e) => (false, format!("cannot run {args:?}: {e}")),
    }
}

fn sh(args: &[&str]) -> String {
    let (ok, out) = try_sh(args);
    assert!(ok, "{args:?} failed: {out}");
    out
}

/// A network namespace deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("cn{}x{tag}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        Netns { name }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip"];
        full.extend_from_slice(args);
        self.exec(&full)
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

/// The private containerd; killed (by its pid) on drop.
struct Containerd {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
    /// Containers to kill before stopping containerd if the test failed half-way.
    ids: Vec<String>,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let sock = self.sock.display().to_string();
        for id in &self.ids {
            for args in [
                vec![
                    "ctr",
                    "--address",
                    &sock,
                    "task",
                    "kill",
                    "-s",
                    "SIGKILL",
                    id,
                ],
                vec!["ctr", "--address", &sock, "task", "delete", "-f", id],
                vec!["ctr", "--address", &sock, "container", "delete", id],
            ] {
                let _ = Command::new(args[0])
                    .args(&args[1..])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_tools() {
    let mut missing = Vec::new();
    for (tool, package) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
    ] {
        if !try_sh(&["sh", "-c", &format!("command -v {tool}")]).0 {
            missing.push(format!("{tool} (package {package})"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        missing.push("/bin/busybox (package busybox-static)".into());
    }
    if !Path::new("/usr/lib/cni/loopback").exists() {
        missing.push("/usr/lib/cni (package containernetworking-plugins)".into());
    }
    assert!(
        missing.is_empty(),
        "cni_containerd needs a real container runtime; missing: {}. Install with: apt-get install -y containerd runc containernetworking-plugins busybox-static",
        missing.join(", ")
    );
}

fn overlay(dir: &Path, target: &str) -> String {
    let name = target.trim_start_matches('/').replace('/', "_");
    let upper = dir.join(format!("ov/{name}/upper"));
    let work = dir.join(format!("ov/{name}/work"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    format!(
        "mount -t overlay overlay -o lowerdir={target},upperdir={},workdir={} {target}\n",
        upper.display(),
        work.display()
    )
}

fn start_containerd(dir: &Path, host: &Netns) -> Containerd {
    let sock = dir.join("containerd.sock");
    let config = dir.join("containerd.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
            opt = dir.join("opt").display(),
        ),
    )
    .unwrap();
    let script = dir.join("containerd.sh");
    std::fs::write(
        &script,
        format!(
            "set -e\n{}exec containerd --config {}\n",
            overlay(dir, "/run"),
            config.display()
        ),
    )
    .unwrap();
    let log = dir.join("containerd.log");
    let child = Command::new("nsenter")
        .arg(format!("--net={}", host.path()))
        .args(["unshare", "-m", "--propagation", "private", "sh"])
        .arg(&script)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("containerd.stderr")).unwrap())
        .spawn()
        .expect("start containerd");
    let cd = Containerd {
        child,
        sock: sock.clone(),
        log: dir.join("containerd.stderr"),
        ids: Vec::new(),
    };
    let start = Instant::now();
    loop {
        if try_sh(&["ctr", "--address", &sock.display().to_string(), "version"]).0 {
            return cd;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "containerd did not come up: {}",
            std::fs::read_to_string(&cd.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctr_run_with_cni_uses_brindle() {
    let t0 = Instant::now();
    require_tools();
    let machine_files = [
        "/etc/cni/net.d/10-brindle.conflist",
        "/opt/cni/bin/brindle-cni",
    ];
    let existed: Vec<bool> = machine_files
        .iter()
        .map(|f| Path::new(f).exists())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let host = Netns::new("ctrd");
    host.ip(&["link", "set", "lo", "up"]);
    // The node's uplink carries the default route (proxy ARP needs a route out another
    // interface), an address on lo stands for the node's address, forwarding on.
    host.ip(&[
        "link", "add", "upl0", "type", "veth", "peer", "name", "upl1",
    ]);
    host.ip(&["link", "set", "upl0", "up"]);
    host.ip(&["link", "set", "upl1", "up"]);
    host.ip(&["route", "add", "default", "dev", "upl0"]);
    host.ip(&["addr", "add", "10.250.0.1/32", "dev", "lo"]);
    host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    // Calico resources and the node's state dir.
    let state = dir.join("brindle-state");
    std::fs::create_dir_all(&state).unwrap();
    let hdr = "apiVersion: projectcalico.org/v3\n";
    std::fs::write(
        dir.join("cluster.yaml"),
        format!(
            "{hdr}kind: Node\nmetadata:\n  name: node-a\nspec:\n  bgp:\n    ipv4Address: 10.250.0.1/24\n---\n\
             {hdr}kind: IPPool\nmetadata:\n  name: pool\nspec:\n  cidr: 10.66.0.0/16\n---\n\
             {hdr}kind: BlockAffinity\nmetadata:\n  name: node-a-10-66-0-0-26\nspec:\n  node: node-a\n  cidr: 10.66.0.0/26\n"
        ),
    )
    .unwrap();

    // The conflist and the plugin directory ctr will see as /etc/cni/net.d, /opt/cni/bin.
    let netd = dir.join("net.d");
    std::fs::create_dir_all(&netd).unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "brindle",
        "plugins": [{
            "type": "brindle-cni",
            "nodename": "node-a",
            "stateDir": state,
            "config": dir.join("cluster.yaml"),
            "log_level": "debug",
        }],
    });
    std::fs::write(netd.join("10-brindle.conflist"), conflist.to_string()).unwrap();

    // busybox-static rootfs.
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for l in ["sh", "ip", "ping", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(l)).unwrap();
    }
    for d in ["fifo", "runc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }

    let mut containerd = start_containerd(dir, &host);
    let id = format!("brindle-{}", std::process::id());
    containerd.ids.push(id.clone());
    let bin_dir = Path::new(BIN).parent().unwrap();
    let ctr_script = dir.join("ctr.sh");
    std::fs::write(
        &ctr_script,
        format!(
            "set -e\n{}{}{}\
             mkdir -p /etc/cni/net.d /opt/cni/bin\n\
             cp {netd}/* /etc/cni/net.d/\n\
             for f in /usr/lib/cni/*; do ln -sf \"$f\" /opt/cni/bin/; done\n\
             ln -sf {bin} /opt/cni/bin/brindle-cni\n\
             exec timeout 120 ctr --address {sock} run --rm --cni --fifo-dir {fifo} --runc-root {runc} \
             --rootfs {rootfs} {id} /bin/sh -c \
             'ip addr; ip route; if ping -c1 -W2 10.250.0.1; then echo PING_OK; fi; sleep 3'\n",
            overlay(dir, "/etc"),
            overlay(dir, "/opt"),
            overlay(dir, "/var/lib"),
            netd = netd.display(),
            bin = bin_dir.join("brindle-cni").display(),
            sock = containerd.sock.display(),
            fifo = dir.join("fifo").display(),
            runc = dir.join("runc").display(),
            rootfs = rootfs.display(),
        ),
    )
    .unwrap();
    let ctr = Command::new("nsenter")
        .arg(format!("--net={}", host.path()))
        .args(["unshare", "-m", "--propagation", "private", "sh"])
        .arg(&ctr_script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ctr");

    // While the container sleeps: the host side exists and the host reaches the pod.
    let start = Instant::now();
    let endpoints = state.join("endpoints");
    let record: serde_json::Value = loop {
        let found = std::fs::read_dir(&endpoints).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok())
                .find(|e| e.path().extension().is_some_and(|x| x == "json"))
        });
        if let Some(e) = found {
            if let Ok(r) = serde_json::from_slice(&std::fs::read(e.path()).unwrap()) {
                break r;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no endpoint record appeared; cni.log:\n{}",
            std::fs::read_to_string(state.join("cni.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(record["containerId"], format!("default-{id}"));
    assert_eq!(record["ips"], serde_json::json!(["10.66.0.0/32"]));
    let host_if = record["hostIface"].as_str().unwrap().to_string();
    assert_eq!(
        host_if,
        brindle::cni::host_veth_name("default", &format!("default-{id}"))
    );
    let link = host.ip(&["link", "show", &host_if]);
    assert!(link.contains("ee:ee:ee:ee:ee:ee"), "{link}");
    let routes = host.ip(&["route", "show", "proto", "80"]);
    assert!(
        routes.contains(&format!("10.66.0.0 dev {host_if}")),
        "{routes}"
    );
    let (pinged, out) = try_sh(&[
        "ip",
        "netns",
        "exec",
        &host.name,
        "ping",
        "-c1",
        "-W2",
        "10.66.0.0",
    ]);
    assert!(pinged, "the host cannot ping the pod: {out}");

    let out = ctr.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(state.join("cni.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "ctr run failed ({:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}\ncni.log:\n{log}",
        out.status
    );
    containerd.ids.clear();
    eprintln!("container output:\n{stdout}");
    assert!(
        stdout.contains("inet 10.66.0.0/32"),
        "the container has no address from the block:\n{stdout}"
    );
    assert!(
        stdout.contains("default via 169.254.1.1 dev eth0"),
        "no default route via 169.254.1.1:\n{stdout}"
    );
    assert!(stdout.contains("169.254.1.1 dev eth0"), "{stdout}");
    assert!(
        stdout.contains("PING_OK"),
        "ping from the container to the host failed:\n{stdout}"
    );

    // --rm ran DEL: veth, record and address are gone.
    assert!(
        !try_sh(&["ip", "netns", "exec", &host.name, "ip", "link", "show", &host_if]).0,
        "{host_if} still exists after ctr run --rm"
    );
    // The node's IPAM store (`<stateDir>/calico-ipam`): no block holds an address.
    let mut leftover: Vec<String> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(state.join("calico-ipam/IPAMBlock")) {
        use brindle::ipam::IpamObject;
        for e in rd.filter_map(|e| e.ok()) {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            let b = brindle::ipam::Block::from_spec(v["spec"].clone()).unwrap();
            leftover.extend(b.in_use().map(|(ip, _)| ip.to_string()));
        }
    }
    assert!(
        leftover.is_empty(),
        "addresses not released: {leftover:?}\n{log}"
    );
    assert_eq!(std::fs::read_dir(&endpoints).unwrap().count(), 0, "{log}");
    assert!(log.contains(&format!("ADD default-{id}/eth0")), "{log}");
    assert!(log.contains(&format!("DEL default-{id}/eth0")), "{log}");
    assert!(log.contains("released 10.66.0.0"), "{log}");
    drop(containerd);
    for (f, before) in machine_files.iter().zip(existed) {
        assert_eq!(
            Path::new(f).exists(),
            before,
            "{f}: the machine's CNI directories were written to"
        );
    }
    eprintln!("ctr_run_with_cni_uses_brindle: {:?}", t0.elapsed());
}
