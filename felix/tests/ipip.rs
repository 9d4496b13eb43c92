//! IPIP (tunl0) kernel test. **Slow** when the host kernel lacks IPIP: the test then
//! re-runs itself inside a QEMU VM with Debian's kernel through
//! `../shared/vm/run-in-vm.sh -H` beside the checkout (override with `BRINDLE_VM_RUNNER`), ~30–90 s under
//! TCG, and asserts that the run inside the VM passed. It never passes silently: a
//! missing runner, a VM failure or a VM kernel without IPIP all fail the test.
//!
//! Scenarios (one VM boot):
//! 1. tunl0 configured by felix: up, `<tunnel addr>/32`, MTU host − 20; IPIP Always
//!    routes `via <nodeIP> dev tunl0 onlink`; pod → pod across two nodes through the
//!    tunnel (tunl0 rx counters move); pod MTU 1480.
//! 2. CrossSubnet: the same-subnet node is routed natively (no tunnel traffic), a node
//!    in another subnet through tunl0.
//! 3. rp_filter (like `/work/shared/vm/tests/rpfilter-tunl0.sh`): a client outside the
//!    cluster sends IPIP to the node, which decapsulates on tunl0 and forwards to a pod;
//!    the return route leaves by another interface. Dropped with tunl0 strict (Calico
//!    leaves it at the default), delivered after felix sets it loose, still delivered
//!    with `conf.all.rp_filter` 1 or 2 (loose wins the kernel's numeric max). Without a
//!    tunnel address (loose cannot work, felix sets 0) and `all=1`: dropped under
//!    `ReportOnly` (with a warning), delivered after felix normalises `all` (other
//!    interfaces keep their effective strictness).

mod common;

use brindle_felix::calc::WarningCode;
use brindle_felix::dataplane::{ApplyReport, Dataplane, DataplaneConfig};
use brindle_felix::model::{EncapMode, LocalEndpoint, Model, Pool};
use brindle_felix::RpFilterPolicy;
use common::*;
use std::process::Command;
use std::time::Instant;

const TEST_NAME: &str = "ipip_tunl0_cross_subnet_and_rp_filter_slow";
const IN_VM: &str = "BRINDLE_FELIX_IN_VM";
const PASS: &str = "IPIP-SCENARIOS: PASS";

/// Whether this kernel can create IPIP devices (tried in a scratch namespace).
fn kernel_has_ipip() -> bool {
    let ns = Netns::new();
    let (ok, out) = ns.try_ip("link add fxprobe type ipip local 192.0.2.1 remote 192.0.2.2");
    if ok {
        return true;
    }
    assert!(
        out.contains("Unknown device type") || out.contains("not supported"),
        "unexpected answer probing for ipip: {out}"
    );
    false
}

#[test]
fn ipip_tunl0_cross_subnet_and_rp_filter_slow() {
    if kernel_has_ipip() {
        let t = Instant::now();
        scenarios();
        println!("{PASS} ({:.1?} in this kernel)", t.elapsed());
        return;
    }
    assert!(
        std::env::var_os(IN_VM).is_none(),
        "running inside the VM, but its kernel has no IPIP either"
    );
    // the project's checkout has `shared/` beside it (CI and developers alike)
    let beside = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vm/run-in-vm.sh");
    let runner = std::env::var("BRINDLE_VM_RUNNER").unwrap_or_else(|_| {
        if std::path::Path::new(beside).exists() {
            beside.to_string()
        } else {
            "/work/shared/vm/run-in-vm.sh".into()
        }
    });
    assert!(
        std::path::Path::new(&runner).exists(),
        "this kernel has no IPIP and the VM runner {runner} is missing: cannot test IPIP"
    );
    let exe = std::env::current_exe().unwrap();
    let cmd = format!(
        "{} {TEST_NAME} --exact --nocapture --test-threads=1",
        exe.display()
    );
    eprintln!("no IPIP in this kernel: re-running in a VM: {runner} -H -c '{cmd}'");
    let t = Instant::now();
    let out = Command::new(&runner)
        .args(["-H", "-t", "400", "-e", &format!("{IN_VM}=1"), "-c", &cmd])
        .output()
        .expect("run the VM runner");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "--- VM stdout ---\n{stdout}\n--- VM stderr ---\n{stderr}\n--- VM run took {:.1?}",
        t.elapsed()
    );
    assert!(
        out.status.success(),
        "the VM run failed ({:?}); see its output above",
        out.status.code()
    );
    assert!(
        stdout.contains(PASS),
        "the VM run did not report {PASS:?}; see its output above"
    );
}

fn apply(ns: &Netns, model: &Model, policy: RpFilterPolicy) -> ApplyReport {
    let model = model.clone();
    let r = in_ns(ns, move || async move {
        let mut dp = Dataplane::new(DataplaneConfig {
            rp_filter_policy: policy,
            ..Default::default()
        })
        .expect("dataplane");
        dp.apply(&model).await
    });
    assert!(r.errors.is_empty(), "apply in {}: {:#?}", ns.name, r.errors);
    r
}

/// A sysfs interface counter as seen from inside the namespace (`ip netns exec`
/// mounts the namespace's /sys).
fn counter(ns: &Netns, dev: &str, what: &str) -> u64 {
    ns.sh_ok(&format!("cat /sys/class/net/{dev}/statistics/{what}"))
        .trim()
        .parse()
        .unwrap()
}

fn pool(mode: EncapMode) -> Pool {
    Pool {
        cidr: "10.65.0.0/16".parse().unwrap(),
        block_size: 26,
        ipip_mode: mode,
        vxlan_mode: EncapMode::Never,
        nat_outgoing: false,
        disabled: false,
    }
}

fn scenarios() {
    let t0 = Instant::now();
    let phase = |name: &str| println!("[{:6.1?}] {name}", t0.elapsed());
    // ---- topology: nodes A and B (underlay 192.168.10.0/24), a pod on each ----
    let a = Netns::new();
    let b = Netns::new();
    a.ip(&format!(
        "link add eth0 type veth peer name eth0 netns {}",
        b.name
    ));
    a.ip("addr add 192.168.10.1/24 dev eth0");
    b.ip("addr add 192.168.10.2/24 dev eth0");
    a.ip("link set eth0 up");
    b.ip("link set eth0 up");
    a.ip("route add default via 192.168.10.2");
    b.ip("route add default via 192.168.10.1");
    for n in [&a, &b] {
        rp_baseline(n, 0, 0);
    }
    let pa = add_pod(&a, "cali00000000001", "10.65.1.5");
    let pb = add_pod(&b, "cali00000000002", "10.65.2.5");
    let ep = |p: &Pod| LocalEndpoint {
        iface: p.host_iface.clone(),
        ips: vec![format!("{}/32", p.ip).parse().unwrap()],
        mac: Some(p.mac.clone()),
    };
    let model = |name: &str,
                 ip: &str,
                 tun: &str,
                 block: &str,
                 pod: &Pod,
                 learned: &[(&str, &str)],
                 mode: EncapMode| Model {
        node_name: name.into(),
        node_ipv4: Some(ip.parse().unwrap()),
        pools: vec![pool(mode)],
        own_blocks: vec![block.parse().unwrap()],
        endpoints: vec![ep(pod)],
        learned: learned
            .iter()
            .map(|(p, nh)| (p.parse().unwrap(), vec![nh.parse().unwrap()]))
            .collect(),
        ipip_tunnel_addr: Some(tun.parse().unwrap()),
        ..Default::default()
    };

    phase("topology ready; 1. IPIP Always");
    let ma = model(
        "node-a",
        "192.168.10.1/24",
        "10.65.1.1",
        "10.65.1.0/26",
        &pa,
        &[
            ("10.65.2.0/26", "192.168.10.2"),
            ("10.65.3.0/26", "172.16.5.5"),
        ],
        EncapMode::Always,
    );
    let mb = model(
        "node-b",
        "192.168.10.2/24",
        "10.65.2.1",
        "10.65.2.0/26",
        &pb,
        &[("10.65.1.0/26", "192.168.10.1")],
        EncapMode::Always,
    );
    let ra = apply(&a, &ma, RpFilterPolicy::Normalize);
    apply(&b, &mb, RpFilterPolicy::Normalize);
    assert_eq!((ra.host_mtu, ra.pod_mtu), (1500, 1480));
    let tunl0 = a.ip("-d link show dev tunl0");
    println!("A tunl0: {}", tunl0.lines().next().unwrap_or_default());
    assert!(
        tunl0.contains("mtu 1480") && tunl0.contains(",UP"),
        "{tunl0}"
    );
    let addr = a.ip("-4 addr show dev tunl0");
    assert!(addr.contains("inet 10.65.1.1/32"), "{addr}");
    assert_eq!(a.sysctl("net/ipv4/conf/tunl0/rp_filter"), "2");
    let routes = a.own_routes();
    println!("A routes (Always):\n{routes}");
    assert!(
        routes.contains("10.65.2.0/26 via 192.168.10.2 dev tunl0 onlink"),
        "{routes}"
    );
    assert!(
        routes.contains("10.65.3.0/26 via 172.16.5.5 dev tunl0 onlink"),
        "{routes}"
    );
    let rx0 = counter(&b, "tunl0", "rx_packets");
    assert!(pa.ns.ping("10.65.2.5"), "pod a -> pod b through IPIP");
    assert!(pb.ns.ping("10.65.1.5"), "pod b -> pod a through IPIP");
    let rx1 = counter(&b, "tunl0", "rx_packets");
    println!("B tunl0 rx_packets +{} during the IPIP pings", rx1 - rx0);
    assert!(rx1 > rx0, "the pings must have gone through tunl0");
    // idempotent
    let again = apply(&a, &ma, RpFilterPolicy::Normalize);
    assert_eq!(again.changes(), 0, "{again:#?}");

    phase("2. CrossSubnet");
    let ma_cs = model(
        "node-a",
        "192.168.10.1/24",
        "10.65.1.1",
        "10.65.1.0/26",
        &pa,
        &[
            ("10.65.2.0/26", "192.168.10.2"),
            ("10.65.3.0/26", "172.16.5.5"),
        ],
        EncapMode::CrossSubnet,
    );
    let mb_cs = model(
        "node-b",
        "192.168.10.2/24",
        "10.65.2.1",
        "10.65.2.0/26",
        &pb,
        &[("10.65.1.0/26", "192.168.10.1")],
        EncapMode::CrossSubnet,
    );
    apply(&a, &ma_cs, RpFilterPolicy::Normalize);
    apply(&b, &mb_cs, RpFilterPolicy::Normalize);
    let routes = a.own_routes();
    println!("A routes (CrossSubnet):\n{routes}");
    assert!(
        routes.contains("10.65.2.0/26 via 192.168.10.2 dev eth0")
            && !routes.contains("10.65.2.0/26 via 192.168.10.2 dev tunl0"),
        "same subnet: native: {routes}"
    );
    assert!(
        routes.contains("10.65.3.0/26 via 172.16.5.5 dev tunl0 onlink"),
        "other subnet: tunnel: {routes}"
    );
    let rx0 = counter(&b, "tunl0", "rx_packets");
    assert!(pa.ns.ping("10.65.2.5"), "pod a -> pod b natively");
    let rx1 = counter(&b, "tunl0", "rx_packets");
    println!("B tunl0 rx_packets +{} during the native pings", rx1 - rx0);
    assert_eq!(rx1, rx0, "same-subnet traffic must not be encapsulated");

    // 3. rp_filter: external client S -> IPIP -> A's tunl0 -> pod a; reply via vA_e
    phase("3. rp_filter");
    let s = Netns::new();
    a.ip(&format!(
        "link add vA_u type veth peer name vS_u netns {}",
        s.name
    ));
    a.ip(&format!(
        "link add vA_e type veth peer name vS_e netns {}",
        s.name
    ));
    a.ip("addr add 192.168.20.2/24 dev vA_u");
    a.ip("addr add 172.16.0.1/24 dev vA_e");
    s.ip("addr add 192.168.20.1/24 dev vS_u");
    s.ip("addr add 172.16.0.10/24 dev vS_e");
    for (n, d) in [(&a, "vA_u"), (&a, "vA_e"), (&s, "vS_u"), (&s, "vS_e")] {
        n.ip(&format!("link set {d} up"));
    }
    rp_baseline(&s, 0, 0);
    for d in ["vA_u", "vA_e"] {
        a.set_sysctl(&format!("net/ipv4/conf/{d}/rp_filter"), "0");
    }
    s.ip("link add tunS type ipip local 192.168.20.1 remote 192.168.20.2");
    s.ip("link set tunS up");
    s.ip("route add 10.65.1.0/26 dev tunS src 172.16.0.10");
    let mut results = Vec::new();
    let mut trial = |label: &str, expect_ok: bool| {
        let all = a.sysctl("net/ipv4/conf/all/rp_filter");
        let tun = a.sysctl("net/ipv4/conf/tunl0/rp_filter");
        let d0 = rpf_drops(&a);
        let t0 = counter(&a, "tunl0", "rx_packets");
        let ok = s.sh("ping -c 1 -W 2 -I 172.16.0.10 10.65.1.5").0;
        let d1 = rpf_drops(&a);
        let t1 = counter(&a, "tunl0", "rx_packets");
        let line = format!(
            "all={all} tunl0={tun} ping={} tunl0_rx+{} IPReversePathFilter+{}  {label}",
            if ok { "ok" } else { "drop" },
            t1 - t0,
            d1 - d0
        );
        println!("{line}");
        results.push(line);
        assert!(t1 > t0, "{label}: the packets must reach tunl0");
        assert_eq!(ok, expect_ok, "{label}");
        if !expect_ok {
            assert!(
                d1 > d0,
                "{label}: the drop must be the reverse-path filter's"
            );
        }
    };
    println!("--- rp_filter on tunl0, client outside the cluster, asymmetric return path ---");
    // what Calico leaves: tunl0 at an inherited strict value
    a.set_sysctl("net/ipv4/conf/tunl0/rp_filter", "1");
    trial("before felix: tunl0 strict (Calico never writes it)", false);
    apply(&a, &ma_cs, RpFilterPolicy::Normalize);
    trial("after felix: tunl0 loose", true);
    // distributions' conf.all values: loose on tunl0 wins over strict all (numeric max)
    a.set_sysctl("net/ipv4/conf/all/rp_filter", "1");
    let r = apply(&a, &ma_cs, RpFilterPolicy::Normalize);
    assert_eq!(
        r.changes(),
        0,
        "nothing to normalise while tunl0 has its address: {r:#?}"
    );
    trial("all=1, tunl0 loose with address: max(1,2)=2", true);
    a.set_sysctl("net/ipv4/conf/all/rp_filter", "2");
    trial("all=2, tunl0 loose with address", true);
    // without a tunnel address loose mode cannot work: felix sets tunl0 to 0 and must
    // get conf.all out of the way
    a.set_sysctl("net/ipv4/conf/all/rp_filter", "1");
    let mut no_addr = ma_cs.clone();
    no_addr.ipip_tunnel_addr = None;
    let r = apply(&a, &no_addr, RpFilterPolicy::ReportOnly);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.code == WarningCode::RpFilter && w.message.contains("tunl0")),
        "{:#?}",
        r.warnings
    );
    assert!(
        !a.ip("-4 addr show dev tunl0").contains("inet "),
        "the address must be gone"
    );
    trial(
        "no tunnel address, all=1, felix ReportOnly: warned, dropped",
        false,
    );
    let r = apply(&a, &no_addr, RpFilterPolicy::Normalize);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.code == WarningCode::RpFilterNormalized),
        "{:#?}",
        r.warnings
    );
    trial(
        "no tunnel address, felix Normalize: all=0, others raised to 1",
        true,
    );
    assert_eq!(a.sysctl("net/ipv4/conf/all/rp_filter"), "0");
    assert_eq!(a.sysctl("net/ipv4/conf/default/rp_filter"), "1");
    for d in ["eth0", "vA_u", "vA_e", "lo"] {
        assert_eq!(
            a.sysctl(&format!("net/ipv4/conf/{d}/rp_filter")),
            "1",
            "{d} keeps its effective strictness"
        );
    }
    assert_eq!(a.sysctl("net/ipv4/conf/cali00000000001/rp_filter"), "1");
    assert_eq!(a.sysctl("net/ipv4/conf/tunl0/rp_filter"), "0");
    apply(&a, &ma_cs, RpFilterPolicy::Normalize);
    trial("address back: tunl0 loose again", true);
    println!("--- rp_filter trials ---\n{}", results.join("\n"));

    phase("cleanup");
    // cleanup: routes gone, tunl0 without address and down
    let c = in_ns(&a, || async { brindle_felix::cleanup().await.unwrap() });
    assert!(c.errors.is_empty(), "{c:#?}");
    assert_eq!(a.own_routes().trim(), "");
    assert!(!a.ip("-4 addr show dev tunl0").contains("inet "));
}
