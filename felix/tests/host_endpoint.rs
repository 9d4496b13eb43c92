//! Host endpoints and failsafe ports on a real kernel (in namespaces this test creates
//! and deletes): a "host" namespace with `eth0` (192.0.2.1) on a veth to a "peer"
//! namespace (192.0.2.254). A Calico HostEndpoint on `eth0` and a GlobalNetworkPolicy
//! that allows only TCP 8080 inbound: 8080 connects, 9090 does not, the failsafe port
//! TCP 22 still does; with the inbound failsafe list empty, 22 is blocked. Under a
//! deny-all egress policy the host still reaches the peer on the outbound failsafe
//! port TCP 179, and not on another port. Every iptables command runs inside the test
//! namespace. A second test: the all-interfaces endpoint (`*`) with a local workload
//! (not policed as host traffic), outbound failsafe UDP 53, and the IPv6 rendering.

mod common;

use brindle_felix::policy_apply::PolicyApplier;
use brindle_felix::policy_render::{render, Family, Rendered};
use brindle_model::resolved::{Failsafe, DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND};
use brindle_policies::resolve::{add_host_endpoints, resolve};
use brindle_policies::{program_of, world_of};
use common::*;
use std::process::{Child, Command, Stdio};

const HOST_IP: &str = "192.0.2.1";
const PEER_IP: &str = "192.0.2.254";

const HEP: &str = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: n1-eth0, labels: {role: node}}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.1]}\n---\n\
    apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: web-in}\nspec:\n  selector: role == 'node'\n  types: [Ingress]\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]\n";

const DENY_EGRESS: &str = "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-out}\nspec:\n  selector: role == 'node'\n  types: [Egress]\n";

/// TCP listeners in a namespace (a python process, killed on drop).
struct Listeners(Child);

impl Listeners {
    fn start(ns: &Netns, ports: &[u16]) -> Listeners {
        let script = format!(
            "import socket, threading, time\n\
             def serve(p):\n    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    s.bind(('0.0.0.0', p)); s.listen(16)\n    while True:\n        c, _ = s.accept(); c.close()\n\
             for p in {ports:?}:\n    threading.Thread(target=serve, args=(p,), daemon=True).start()\n\
             while True: time.sleep(1)\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("python3");
        let l = Listeners(child);
        for p in ports {
            let ok = wait_for(std::time::Duration::from_secs(5), || {
                ns.sh(&format!("ss -ltn | grep -q ':{p} '")).0
            });
            assert!(ok.is_some(), "listener on {p} in {}", ns.name);
        }
        l
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a TCP connection from `from` to `ip:port` is established within 2 s.
fn connects(from: &Netns, ip: &str, port: u16) -> bool {
    from.sh(&format!(
        "python3 -c \"import socket; socket.create_connection(('{ip}', {port}), timeout=2).close()\""
    ))
    .0
}

fn rendered(yaml: &str, inbound: &[Failsafe], outbound: &[Failsafe]) -> Rendered {
    let cfg = brindle_model::parse("hep.yaml", yaml).unwrap();
    let (program, warnings) = program_of(&cfg);
    assert!(warnings.is_empty(), "{warnings:?}");
    let world = world_of(&cfg);
    let mut r = resolve(&program, &world, &[]);
    add_host_endpoints(&mut r, &program, &world, "n1", inbound, outbound);
    assert_eq!(r.host_endpoints.len(), 1, "{r:?}");
    render(&r, Family::V4)
}

fn apply(host: &Netns, a: PolicyApplier, out: &Rendered) -> PolicyApplier {
    let out = out.clone();
    let (a, r) = in_ns(host, move || async move {
        let mut a = a;
        let r = a.apply(Family::V4, &out, true);
        (a, r)
    });
    assert!(r.errors.is_empty(), "{r:?}");
    a
}

#[test]
fn host_endpoint_policy_and_failsafe_ports() {
    let host = Netns::new();
    let peer = add_uplink(&host, HOST_IP, PEER_IP);
    let _host_listeners = Listeners::start(&host, &[8080, 9090, 22]);
    let _peer_listeners = Listeners::start(&peer, &[179, 8081]);
    assert!(connects(&peer, HOST_IP, 9090), "open before any policy");

    // The host endpoint with an ingress policy for 8080, Calico's default failsafes.
    let out = rendered(HEP, DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND);
    let applier = apply(&host, PolicyApplier::new(), &out);
    let output = host.sh_ok("iptables -S OUTPUT");
    assert!(output.contains("-A OUTPUT -j brl-OUTPUT"), "{output}");
    assert!(connects(&peer, HOST_IP, 8080), "8080 is allowed");
    assert!(!connects(&peer, HOST_IP, 9090), "9090 is not");
    assert!(connects(&peer, HOST_IP, 22), "22 is a failsafe port");
    assert!(host.ping("127.0.0.1"), "lo is not policed");
    // No egress policy: the host endpoint is default-deny outbound, but for failsafes.
    assert!(
        connects(&host, PEER_IP, 179),
        "tcp:179 is an outbound failsafe"
    );
    assert!(!connects(&host, PEER_IP, 8081), "egress is default-deny");

    // The inbound failsafe list empty: nothing opens 22 any more.
    let out = rendered(HEP, &[], DEFAULT_FAILSAFE_OUTBOUND);
    let applier = apply(&host, applier, &out);
    assert!(!connects(&peer, HOST_IP, 22), "no failsafe: 22 is blocked");
    assert!(connects(&peer, HOST_IP, 8080), "8080 still allowed");

    // A deny-all egress policy: the outbound failsafe port still works.
    let yaml = format!("{HEP}{DENY_EGRESS}");
    let out = rendered(&yaml, DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND);
    let applier = apply(&host, applier, &out);
    assert!(
        connects(&host, PEER_IP, 179),
        "failsafe out under deny-all egress"
    );
    assert!(
        !connects(&host, PEER_IP, 8081),
        "denied by deny-out's end of tier"
    );
    assert!(
        connects(&peer, HOST_IP, 8080),
        "inbound replies pass the egress side"
    );

    // projectcalico-default-allow: what no policy decides is allowed.
    let yaml = HEP.replace(
        "expectedIPs: [192.0.2.1]}",
        "expectedIPs: [192.0.2.1], profiles: [projectcalico-default-allow]}",
    );
    let out = rendered(&yaml, &[], &[]);
    let applier = apply(&host, applier, &out);
    assert!(connects(&host, PEER_IP, 8081), "the profile allows egress");
    assert!(
        !connects(&peer, HOST_IP, 9090),
        "the ingress policy still ends its tier"
    );

    // The host endpoint deleted, the policy kept: host traffic is not policed any more
    // and OUTPUT's jump and the host endpoint chains are gone.
    let cfg = brindle_model::parse("p.yaml", HEP.split("---\n").nth(1).unwrap()).unwrap();
    let (program, _) = program_of(&cfg);
    let out = render(&resolve(&program, &world_of(&cfg), &[]), Family::V4);
    let applier = apply(&host, applier, &out);
    let output = host.sh_ok("iptables -S OUTPUT");
    assert!(!output.contains("brl-"), "{output}");
    assert!(!host.sh_ok("iptables-save -t filter").contains("brl-fh-"));
    assert!(
        connects(&peer, HOST_IP, 9090),
        "not a host endpoint any more"
    );

    // Removed: everything is open again.
    let mut applier = applier;
    let r = in_ns(&host, move || async move { applier.remove(Family::V4) });
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(!host.sh_ok("iptables-save -t filter").contains("brl-"));
    assert!(connects(&peer, HOST_IP, 9090));
}

/// A UDP echo server in a namespace on `port` (killed on drop).
fn udp_echo(ns: &Netns, port: u16) -> Listeners {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', {port}))\nwhile True:\n    d, a = s.recvfrom(512); s.sendto(d, a)\n"
    );
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3");
    let ok = wait_for(std::time::Duration::from_secs(5), || {
        ns.sh(&format!("ss -lun | grep -q ':{port} '")).0
    });
    assert!(ok.is_some(), "udp echo on {port}");
    Listeners(child)
}

/// Whether a UDP datagram from `from` to `ip:port` is answered within 2 s.
fn udp_answered(from: &Netns, ip: &str, port: u16) -> bool {
    from.sh(&format!(
        "python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b'x', ('{ip}', {port})); s.recvfrom(16)\""
    ))
    .0
}

/// The all-interfaces host endpoint (`interfaceName: "*"`) polices the uplink but not a
/// local workload's traffic to the host; outbound UDP 53 is a failsafe under a deny-all
/// egress policy, UDP 5353 is not; the IPv6 rendering (a failsafe with an IPv6 net) is
/// accepted by ip6tables.
#[test]
fn all_interfaces_host_endpoint_workloads_and_udp_failsafe() {
    let host = Netns::new();
    // Proxy ARP (the pod's gateway) answers only on a forwarding host.
    host.set_sysctl("net/ipv4/ip_forward", "1");
    let peer = add_uplink(&host, HOST_IP, PEER_IP);
    let pod = add_pod(&host, "calipod", "10.1.0.1");
    host.ip("route add 10.1.0.1/32 dev calipod scope link");
    host.set_sysctl("net/ipv4/conf/calipod/proxy_arp", "1");
    let _host_listeners = Listeners::start(&host, &[8080, 9090]);
    let _dns = udp_echo(&peer, 53);
    let _mdns = udp_echo(&peer, 5353);
    assert!(connects(&pod.ns, HOST_IP, 9090), "the pod reaches the host");
    let yaml = format!(
        "{}{DENY_EGRESS}---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: pod, namespace: shop}}\nspec: {{nodeName: n1}}\nstatus: {{phase: Running, podIP: 10.1.0.1}}\n",
        HEP.replace("interfaceName: eth0", "interfaceName: '*'")
    );
    let cfg = brindle_model::parse("hep.yaml", &yaml).unwrap();
    let (program, _) = program_of(&cfg);
    let world = world_of(&cfg);
    let local = vec![("calipod".to_string(), "10.1.0.1".parse().unwrap())];
    let mut r = resolve(&program, &world, &local);
    let inbound_v6 = Failsafe {
        protocol: 6,
        port: 22,
        net: Some("fd00::/8".parse().unwrap()),
    };
    let mut inbound = DEFAULT_FAILSAFE_INBOUND.to_vec();
    inbound.push(inbound_v6);
    add_host_endpoints(
        &mut r,
        &program,
        &world,
        "n1",
        &inbound,
        DEFAULT_FAILSAFE_OUTBOUND,
    );
    assert_eq!(r.host_endpoints[0].iface, "*");
    // The node uses IPIP and VXLAN with the peer (the rules must be accepted; the test
    // sends no encapsulated traffic).
    r.ipip = true;
    r.vxlan = true;
    r.tunnel_hosts = vec![PEER_IP.parse().unwrap(), "fd00::254".parse().unwrap()];
    let out = render(&r, Family::V4);
    assert!(
        out.filter.contains("-g brl-fh-any-interface-at-all"),
        "{}",
        out.filter
    );
    let applier = apply(&host, PolicyApplier::new(), &out);
    let sets = host.sh_ok("ipset list brl4-x:tunnel-hosts");
    assert!(sets.contains("192.0.2.254"), "{sets}");
    assert!(connects(&peer, HOST_IP, 8080));
    assert!(
        !connects(&peer, HOST_IP, 9090),
        "the * endpoint covers eth0"
    );
    let ok = connects(&pod.ns, HOST_IP, 9090);
    if !ok {
        eprintln!("{}", host.sh_ok("iptables-save -c -t filter"));
    }
    assert!(
        ok,
        "a workload's traffic to the host is not host endpoint traffic"
    );
    assert!(host.ping("127.0.0.1"), "lo is not policed");
    assert!(
        udp_answered(&host, PEER_IP, 53),
        "udp:53 is an outbound failsafe"
    );
    assert!(
        !udp_answered(&host, PEER_IP, 5353),
        "deny-out drops the rest"
    );

    // IPv6: ip6tables takes the same structure with the IPv6 failsafe net.
    let out6 = render(&r, Family::V6);
    assert!(out6.filter.contains("-s fd00::/8"), "{}", out6.filter);
    let (applier6, r6) = in_ns(&host, move || async move {
        let mut a = PolicyApplier::new();
        let rep = a.apply(Family::V6, &out6, true);
        (a, rep)
    });
    assert!(r6.errors.is_empty(), "{r6:?}");
    let v6 = host.sh_ok("ip6tables -S OUTPUT");
    assert!(v6.contains("-A OUTPUT -j brl-OUTPUT"), "{v6}");

    let (mut a4, mut a6) = (applier, applier6);
    let (r4, r6) = in_ns(&host, move || async move {
        (a4.remove(Family::V4), a6.remove(Family::V6))
    });
    assert!(
        r4.errors.is_empty() && r6.errors.is_empty(),
        "{r4:?} {r6:?}"
    );
    assert!(!host.sh_ok("iptables-save -t filter").contains("brl-"));
    assert!(!host.sh_ok("ip6tables-save -t filter").contains("brl-"));
    assert!(connects(&peer, HOST_IP, 9090));
}
