//! Host endpoints and failsafe ports on a real kernel (in namespaces this test creates
//! and deletes): a "host" namespace with `eth0` (192.0.2.1) on a veth to a "peer"
//! namespace (192.0.2.254). A Calico HostEndpoint on `eth0` and a GlobalNetworkPolicy
//! that allows only TCP 8080 inbound: 8080 connects, 9090 does not, the failsafe port
//! TCP 22 still does; with the inbound failsafe list empty, 22 is blocked. Under a
//! deny-all egress policy the host still reaches the peer on the outbound failsafe
//! port TCP 179, and not on another port. Every iptables command runs inside the test
//! namespace.

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
