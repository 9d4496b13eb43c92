//! A misbehaving peer (a raw BGP speaker in Python, `tests/data/raw_peer.py`) against a
//! running brindle-node: a malformed attribute is treat-as-withdraw with the session kept
//! (RFC 7606); a NEXT_HOP of the node's own is ignored and counted (RFC 4271 §6.3); a
//! CLUSTER_LIST from an eBGP peer is discarded (RFC 7606 §7.10); header and OPEN errors,
//! and an MP_REACH next hop of the wrong length (RFC 7606 §7.11) get the right
//! NOTIFICATION; the process survives all of it and keeps serving status.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn malformed_messages_get_the_right_answer_and_the_node_survives() {
    let t = P2p::new(71);
    let cfg = CalicoConfig::new(64512, false)
        .node("node-1", &format!("{}/24", t.node_v4()), None)
        .pool("pool-v4", "10.65.0.0/16", 26)
        .affinity("node-1", "10.65.0.0/26")
        .peer("raw", &t.router_v4(), 65000, None);
    let node = BrindleNode::start(&t.node, "node-1", &cfg.to_yaml(), &[&t.node_v4()]);
    let python = require_bin("python3", "python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/raw_peer.py");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &t.router.name])
        .arg(python)
        .args([script, &t.node_v4(), &t.router_v4()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the raw peer");
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut phase = |name: &str| -> String {
        writeln!(input, "{name}").unwrap();
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        eprintln!("raw peer, {name}: {}", line.trim());
        line.trim().to_string()
    };
    let dumps: [&dyn Dump; 1] = [&node];

    assert_eq!(phase("connect"), "ESTABLISHED", "{}", node.dump());
    wait_until("session Established", CONVERGE, &dumps, || {
        node.established(&t.router_v4())
    });
    assert_eq!(phase("good update"), "SENT good");
    wait_until("both routes learned", CONVERGE, &dumps, || {
        node.has_learned_route("192.0.2.0/24") && node.has_learned_route("198.51.100.0/24")
    });

    // RFC 7606: an invalid ORIGIN withdraws the prefix; the session stays up
    assert_eq!(phase("bad origin"), "STILL UP", "{}", node.dump());
    wait_until(
        "192.0.2.0/24 treated as withdrawn",
        CONVERGE,
        &dumps,
        || !node.has_learned_route("192.0.2.0/24"),
    );
    assert!(node.has_learned_route("198.51.100.0/24"));
    assert!(node.established(&t.router_v4()));

    // RFC 4271 §6.3: a route whose NEXT_HOP is the node's own address is not installed,
    // it is logged and counted; the session stays up
    assert_eq!(phase("own next hop"), "SENT own next hop");
    wait_until("the own next hop counted", CONVERGE, &dumps, || {
        node.peer(&t.router_v4())
            .is_some_and(|p| p["importErrors"]["ownNextHop"] == 1)
    });
    assert!(!node.has_learned_route("203.0.113.0/24"), "{}", node.dump());
    // RFC 7606 §7.10: a CLUSTER_LIST from an eBGP peer is discarded whatever its
    // length; the route is taken
    assert_eq!(phase("ebgp cluster list"), "SENT ebgp cluster list");
    wait_until(
        "the route with a discarded CLUSTER_LIST learned",
        CONVERGE,
        &dumps,
        || node.has_learned_route("203.0.113.128/25"),
    );
    assert!(node.peer(&t.router_v4()).is_some_and(|p| {
        p["importErrors"]["attributesDiscarded"] == 1 && p["importErrors"]["treatedAsWithdraw"] == 1
    }));
    assert!(node.established(&t.router_v4()));

    // header and OPEN errors: NOTIFICATION with the right code/subcode
    assert_eq!(phase("bad marker"), "NOTIFICATION 1 1");
    wait_until("lastError names the header error", CONVERGE, &dumps, || {
        node.peer(&t.router_v4()).is_some_and(|p| {
            p["lastError"]
                .as_str()
                .unwrap_or("")
                .contains("Connection Not Synchronized")
        })
    });
    assert!(
        !node.has_learned_route("198.51.100.0/24"),
        "routes of a reset session go"
    );
    assert_eq!(phase("hold time 1"), "NOTIFICATION 2 6");
    assert_eq!(phase("wrong AS"), "NOTIFICATION 2 2");
    assert_eq!(phase("bad length"), "NOTIFICATION 1 2");
    // RFC 7606 §7.11: an MP_REACH next hop of the wrong length: session reset with an
    // UPDATE Message Error / Optional Attribute Error
    assert_eq!(phase("mp reach v6 next hop"), "NOTIFICATION 3 9");

    // the process survived all of it and still answers
    assert!(
        node.exited().is_none(),
        "brindle-node exited\n{}",
        node.dump()
    );
    assert_eq!(node.status()["nodeName"], "node-1");
    drop(input);
    let _ = child.wait_timeout_or_kill(Duration::from_secs(5));
}

trait WaitTimeout {
    fn wait_timeout_or_kill(&mut self, d: Duration) -> Option<std::process::ExitStatus>;
}

impl WaitTimeout for std::process::Child {
    fn wait_timeout_or_kill(&mut self, d: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < d {
            if let Ok(Some(s)) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.kill();
        self.wait().ok()
    }
}
