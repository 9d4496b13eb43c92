//! `host_interfaces()` and autodetection against a real kernel, in a network namespace
//! of the test's own (`adt-<pid>`), deleted when the test ends (also on failure). The
//! root namespace is never changed: links are created with `ip -n NS`, and the code under
//! test runs on a thread that has `setns`ed into the namespace.
//!
//! Needs root and `ip`; skipped (passes with a message) otherwise.

use brindle::autodetect::{
    autodetect, host_interfaces, reach_source, select, Family, Interface, Method,
};
use ipnetwork::IpNetwork;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::Command;

struct Netns(String);

impl Netns {
    fn ip(&self, args: &str) {
        let mut a = vec!["-n", self.0.as_str()];
        a.extend(args.split_whitespace());
        let out = Command::new("ip").args(&a).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            a.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `f` on a fresh thread that has entered this namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a namespace fd we own; it changes only this thread, which
            // exits when `f` returns.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if !(root && ip) {
        eprintln!("skipping: needs root and iproute2");
    }
    root && ip
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn find<'a>(ifs: &'a [Interface], name: &str) -> &'a Interface {
    ifs.iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{name} not listed: {ifs:?}"))
}

#[test]
fn autodetect_in_netns() {
    if !usable() {
        return;
    }
    let name = format!("adt-{}", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .expect("ip netns add");
    assert!(
        out.status.success(),
        "ip netns add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = Netns(name);

    ns.ip("link set lo up");
    // The uplink: a veth pair inside the namespace (both ends), up.
    ns.ip("link add adt0 type veth peer name adt1");
    ns.ip("addr add 10.77.0.2/24 dev adt0");
    // A keepalived-style VIP with an alias label: listed under adt0, after the primary.
    ns.ip("addr add 10.77.0.100/32 dev adt0 label adt0:vip");
    ns.ip("addr add 2001:db8:77::2/64 dev adt0 nodad");
    ns.ip("addr add 192.168.77.1/30 dev adt1");
    ns.ip("addr add 2001:db8:78::1/64 dev adt1 nodad");
    ns.ip("link set adt0 up");
    ns.ip("link set adt1 up");
    // Created last (highest ifindexes) but excluded by the default list (docker0 down,
    // its peer vethd0 too). Veth pairs stand in for dummies (not every kernel has them).
    ns.ip("link add docker0 type veth peer name vethd0");
    ns.ip("addr add 172.17.0.1/16 dev docker0");
    // Brindle's own tunnel device name, up, with a routable address.
    ns.ip("link add vxlan.brindle type veth peer name vethb0");
    ns.ip("addr add 192.168.200.1/32 dev vxlan.brindle");
    ns.ip("link set vxlan.brindle up");
    ns.ip("link set vethb0 up");

    let ifs = ns.run(|| host_interfaces().expect("host_interfaces"));

    // Exactly the namespace's links, in ifindex order.
    let mut names: Vec<&str> = ifs.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "adt0",
            "adt1",
            "docker0",
            "lo",
            "vethb0",
            "vethd0",
            "vxlan.brindle"
        ],
        "{ifs:?}"
    );
    assert_eq!(ifs[0].name, "lo");
    assert!(ifs.windows(2).all(|w| w[0].index < w[1].index), "{ifs:?}");

    let lo = find(&ifs, "lo");
    assert!(lo.up);
    assert!(lo.addrs.contains(&net("127.0.0.1/8")), "{lo:?}");
    assert!(lo.addrs.contains(&net("::1/128")), "{lo:?}");

    let adt0 = find(&ifs, "adt0");
    assert!(adt0.up);
    let v4: Vec<IpNetwork> = adt0.addrs.iter().copied().filter(|a| a.is_ipv4()).collect();
    assert_eq!(
        v4,
        vec![net("10.77.0.2/24"), net("10.77.0.100/32")],
        "{adt0:?}"
    );
    assert!(adt0.addrs.contains(&net("2001:db8:77::2/64")), "{adt0:?}");
    assert!(
        adt0.addrs
            .iter()
            .any(|a| matches!(a.ip(), IpAddr::V6(v6) if v6.segments()[0] == 0xfe80)),
        "link-local listed: {adt0:?}"
    );
    assert!(
        !ifs.iter().any(|i| i.name.contains(':')),
        "no alias pseudo-interfaces"
    );

    let docker = find(&ifs, "docker0");
    assert!(!docker.up);
    assert_eq!(docker.addrs, vec![net("172.17.0.1/16")]);

    // Selection over the real listing. adt0 and adt1 were created together; whichever
    // has the higher ifindex wins first-found (Calico's order).
    let (hi, lo_if) = if find(&ifs, "adt0").index > find(&ifs, "adt1").index {
        ("adt0", "adt1")
    } else {
        ("adt1", "adt0")
    };
    let first4 = |n: &str| {
        if n == "adt0" {
            net("10.77.0.2/24")
        } else {
            net("192.168.77.1/30")
        }
    };
    let first6 = |n: &str| {
        if n == "adt0" {
            net("2001:db8:77::2/64")
        } else {
            net("2001:db8:78::1/64")
        }
    };
    let m = |s: &str| Method::parse(s).unwrap();
    assert_eq!(
        select(&m("first-found"), Family::V4, &ifs, &[]).unwrap(),
        first4(hi)
    );
    assert_eq!(
        select(&m("first-found"), Family::V6, &ifs, &[]).unwrap(),
        first6(hi)
    );
    assert_eq!(
        select(&m(&format!("skip-interface={hi}")), Family::V4, &ifs, &[]).unwrap(),
        first4(lo_if)
    );
    assert_eq!(
        select(&m("interface=^adt0$"), Family::V4, &ifs, &[]).unwrap(),
        net("10.77.0.2/24")
    );
    assert_eq!(
        select(&m("interface=docker.*"), Family::V4, &ifs, &[]).unwrap(),
        net("172.17.0.1/16")
    );
    assert_eq!(
        select(&m("cidr=192.168.0.0/16"), Family::V4, &ifs, &[]).unwrap(),
        net("192.168.200.1/32")
    );
    assert_eq!(
        select(&m("cidr=192.168.77.0/24"), Family::V4, &ifs, &[]).unwrap(),
        net("192.168.77.1/30")
    );
    let e = select(&m("skip-interface=adt.*"), Family::V4, &ifs, &[]).unwrap_err();
    assert!(
        e.contains("no valid host interfaces found") && e.contains("docker0#"),
        "{e}"
    );
    assert_eq!(
        select(
            &Method::KubernetesInternalIp,
            Family::V4,
            &ifs,
            &["10.77.0.2".parse().unwrap()]
        )
        .unwrap(),
        net("10.77.0.2/24")
    );
    assert_eq!(
        autodetect(Some("10.77.0.100"), None, Family::V4, None, &ifs, &[]).unwrap(),
        Some(net("10.77.0.100/32"))
    );
    assert_eq!(
        autodetect(Some("192.168.77.1"), None, Family::V4, None, &ifs, &[]).unwrap(),
        Some(net("192.168.77.1/30"))
    );

    // can-reach: the kernel's source address, in the namespace (UDP connect only).
    let reach = ns.run(|| {
        (
            reach_source("10.77.0.9", Family::V4),
            reach_source("192.168.77.2", Family::V4),
            reach_source("2001:db8:78::9", Family::V6),
            reach_source("8.8.8.8", Family::V4),
        )
    });
    assert_eq!(reach.0.unwrap(), "10.77.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(reach.1.unwrap(), "192.168.77.1".parse::<IpAddr>().unwrap());
    assert_eq!(
        reach.2.unwrap(),
        "2001:db8:78::1".parse::<IpAddr>().unwrap()
    );
    // No default route in the namespace.
    let e = reach.3.unwrap_err();
    assert!(e.contains("8.8.8.8:80"), "{e}");

    // The whole can-reach path, I/O included, inside the namespace.
    let got = ns.run(|| {
        let ifs = host_interfaces().unwrap();
        autodetect(
            Some("autodetect"),
            Some("can-reach=192.168.77.2"),
            Family::V4,
            None,
            &ifs,
            &[],
        )
    });
    assert_eq!(got.unwrap(), Some(net("192.168.77.1/30")));
}
