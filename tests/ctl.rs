//! End-to-end tests of the `brindlectl` binary.

use brindle::status::{DatastoreStatus, NodeStatus};
use brindle_bgp::status::{PeerStatus, PeerType, SessionState, SpeakerStatus};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;

fn brindlectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brindlectl"))
        .args(args)
        .env_remove("BRINDLE_STATUS_SOCKET")
        .env_remove("BRINDLE_CONFIG")
        .output()
        .expect("run brindlectl")
}

fn canned_status() -> NodeStatus {
    let now = chrono::Local::now();
    let bgp = SpeakerStatus {
        node_name: "node-a".into(),
        router_id: Some("10.0.0.1".parse().unwrap()),
        as_number: 64512,
        listen: vec!["0.0.0.0:179".into()],
        peers: vec![PeerStatus {
            peer_address: "172.17.8.102".parse().unwrap(),
            peer_port: 179,
            peer_type: PeerType::NodeMesh,
            peer_type_name: "node-to-node mesh".into(),
            name: "Mesh_172_17_8_102".into(),
            as_number: 64512,
            local_as_number: 64512,
            state: SessionState::Established,
            since: now.to_rfc3339(),
            info: "Established".into(),
            last_error: None,
            prefixes_received: 3,
            prefixes_accepted: 3,
            prefixes_advertised: 2,
            messages_in: 10,
            messages_out: 11,
            updates_in: 4,
            updates_out: 3,
            session_resets: 0,
            hold_time: Some(90),
            remote_router_id: Some("172.17.8.102".parse().unwrap()),
            import_errors: Default::default(),
        }],
        unconfigured_connections: 0,
    };
    NodeStatus {
        bgp,
        ..NodeStatus::default()
    }
}

/// Serves `reply` to `connections` clients on a Unix socket at `path`, checking that each
/// sends `status\n`.
fn serve(path: &Path, reply: String, connections: usize) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("bind");
    thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).expect("read request");
            assert_eq!(line, "status\n");
            let mut stream = reader.into_inner();
            stream.write_all(reply.as_bytes()).expect("reply");
        }
    })
}

#[test]
fn node_status_without_agent_is_one_line_and_exit_1() {
    let out = brindlectl(&["node", "status", "--socket", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "brindlectl: cannot reach brindle-node at /nonexistent: no such file or directory (is brindle-node running?)\n"
    );
}

#[test]
fn node_status_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.sock");
    // A socket file nobody listens on any more.
    drop(UnixListener::bind(&path).unwrap());
    let out = brindlectl(&["node", "status", "--socket", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "brindlectl: cannot reach brindle-node at {}: connection refused (is brindle-node running?)\n",
            path.display()
        )
    );
}

#[test]
fn node_status_json_and_table_from_a_live_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.sock");
    let status = canned_status();
    let server = serve(&path, serde_json::to_string(&status).unwrap(), 3);
    let sock = path.to_str().unwrap();

    let out = brindlectl(&["node", "status", "--socket", sock, "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: NodeStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed, status);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"peerAddress\": \"172.17.8.102\""), "{text}");
    assert!(text.contains("\"prefixesReceived\": 3"), "{text}");

    let out = brindlectl(&["node", "status", "--socket", sock]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let since = chrono::DateTime::parse_from_rfc3339(&status.bgp.peers[0].since)
        .unwrap()
        .with_timezone(&chrono::Local)
        .format("%H:%M:%S")
        .to_string();
    let expected = format!(
        "Brindle process is running.\n\
         \n\
         IPv4 BGP status\n\
         +--------------+-------------------+-------+----------+-------------+\n\
         | PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |\n\
         +--------------+-------------------+-------+----------+-------------+\n\
         | 172.17.8.102 | node-to-node mesh | up    | {since} | Established |\n\
         +--------------+-------------------+-------+----------+-------------+\n\
         \n\
         IPv6 BGP status\n\
         No IPv6 peers found.\n"
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);

    let out = brindlectl(&["node", "status", "--socket", sock, "-o", "yaml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("peerAddress: \"172.17.8.102\""), "{yaml}");
    let back: NodeStatus = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, status);
    server.join().unwrap();
}

#[test]
fn socket_from_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_brindlectl"))
        .args(["node", "status"])
        .env("BRINDLE_STATUS_SOCKET", "/nonexistent/env.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("/nonexistent/env.sock"));
}

#[test]
fn get_from_the_example_file_and_config_errors() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/calico-basic.yaml");
    let out = brindlectl(&["get", "nodes", "--config", example, "-o", "wide"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("NAME     ASN       IPV4          IPV6            \n"),
        "{text:?}"
    );
    assert!(
        text.ends_with("\n\n"),
        "an empty line after the table, as calicoctl"
    );
    assert!(
        text.contains("node-a   (64512)   10.0.0.1/24   fd00:10::1/64"),
        "{text}"
    );

    let out = brindlectl(&["get", "bgppeers", "--config", example]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("home-router   10.0.0.254   (global)   65000"),
        "{text}"
    );

    let out = brindlectl(&["get", "ippools", "--config", example, "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["kind"], "IPPoolList");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: rack1-tor\nspec:\n  peerIP: 10.0.0.300\n  asNumber: 65000\n",
    )
    .unwrap();
    let out = brindlectl(&["get", "bgppeers", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "brindlectl: {}: BGPPeer/rack1-tor: spec.peerIP: \"10.0.0.300\" is not an IP address (line 6)\n",
            bad.display()
        )
    );
}

/// The canned document with a peer that is not up, and the datastore's line.
#[test]
fn node_status_of_a_peer_not_up_as_calicoctl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.sock");
    let mut status = canned_status();
    let p = &mut status.bgp.peers[0];
    p.state = SessionState::Active;
    p.info = "Active Socket: Connection refused".into();
    p.since = chrono::Local::now().to_rfc3339();
    status.datastore = Some(DatastoreStatus {
        backend: "kubernetes".into(),
        connected: true,
        in_sync: true,
        last_error: None,
    });
    let server = serve(&path, serde_json::to_string(&status).unwrap(), 1);
    let out = brindlectl(&["node", "status", "--socket", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let since = chrono::DateTime::parse_from_rfc3339(&status.bgp.peers[0].since)
        .unwrap()
        .with_timezone(&chrono::Local)
        .format("%H:%M:%S")
        .to_string();
    // as calicoctl prints BIRD's "Active        Socket: Connection refused"
    let expected = format!(
        "+--------------+-------------------+-------+----------+--------------------------------+\n\
         | PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |              INFO              |\n\
         +--------------+-------------------+-------+----------+--------------------------------+\n\
         | 172.17.8.102 | node-to-node mesh | start | {since} | Active Socket: Connection      |\n\
         |              |                   |       |          | refused                        |\n\
         +--------------+-------------------+-------+----------+--------------------------------+\n"
    );
    assert!(text.contains(&expected), "{text}");
    assert!(
        text.ends_with("No IPv6 peers found.\n\nDatastore: kubernetes, connected, in sync\n"),
        "{text}"
    );
    server.join().unwrap();
}

#[test]
fn get_wide_columns_of_calicoctl() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/calico-basic.yaml");
    let out = brindlectl(&["get", "ippools", "--config", example, "-o", "wide"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CIDR",
            "NAT",
            "IPIPMODE",
            "VXLANMODE",
            "DISABLED",
            "DISABLEBGPEXPORT",
            "SELECTOR",
            "ASSIGNMENTMODE"
        ]
    );
    let out = brindlectl(&[
        "get",
        "bgpconfigurations",
        "--config",
        example,
        "-o",
        "wide",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("NAME      LOGSEVERITY   MESHENABLED   ASNUMBER   \n"),
        "{text:?}"
    );
    let out = brindlectl(&["get", "ipamconfigs", "--config", example, "-o", "wide"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const NODE_OK: &str = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: good}\nspec: {bgp: {ipv4Address: 10.0.0.1/24}}\n";
const NODE_NO_ID: &str = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: noid}\nspec: {bgp: {ipv6Address: 'fd00::1/64'}}\n";

#[test]
fn validate_fails_where_the_agent_would_refuse_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", NODE_OK);
    let out = brindlectl(&["validate", "--config", good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(": OK (1 resources: 1 nodes"), "{text}");
    assert!(
        text.contains("Node good: router ID 10.0.0.1, AS 64512, port 179, 0 BGP peers"),
        "{text}"
    );

    // the file reads, but one node has no router ID: brindle-node would not start there,
    // so the file fails without --node too
    let bad = write(
        dir.path(),
        "bad.yaml",
        &format!("{NODE_OK}---\n{NODE_NO_ID}"),
    );
    let out = brindlectl(&["validate", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("node noid: brindle-node would not start:")
            && err.contains("no BGP router ID"),
        "{err}"
    );
    let out = brindlectl(&[
        "validate",
        "--config",
        bad.to_str().unwrap(),
        "--node",
        "good",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = brindlectl(&[
        "validate",
        "--config",
        bad.to_str().unwrap(),
        "--node",
        "zz",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("no Node named \"zz\""));
}

/// A "billion laughs": nine levels of nine aliases, 9^9 strings once expanded.
fn alias_bomb() -> String {
    let mut t = String::from(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: bomb\n  labels:\n",
    );
    t.push_str(
        "    a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..=9 {
        let p = format!("*a{}", i - 1);
        t.push_str(&format!("    a{i}: &a{i} [{}]\n", vec![p; 9].join(",")));
    }
    t.push_str("spec: {peerIP: 10.0.0.1, asNumber: 65000}\n");
    t
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Run alone in a child process (see the next test): parses the bomb and reports time
/// and memory.
#[test]
fn alias_bomb_child() {
    if std::env::var_os("BRINDLE_ALIAS_BOMB_CHILD").is_none() {
        return;
    }
    let text = alias_bomb();
    let before = rss_kib();
    let started = std::time::Instant::now();
    let r = brindle_model::parse("bomb.yaml", &text);
    let took = started.elapsed();
    let after = rss_kib();
    // what the agent does after refusing a configuration
    brindle::health::give_back_memory();
    let trimmed = rss_kib();
    let mut peak = 0i64;
    // SAFETY: getrusage fills the struct it is given
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0 {
            peak = u.ru_maxrss;
        }
    }
    println!(
        "BOMB ok={} millis={} before_kib={before} after_kib={after} trimmed_kib={trimmed} peak_kib={peak} error={:?}",
        r.is_ok(),
        took.as_millis(),
        r.err().map(|e| e.to_string())
    );
}

#[test]
fn yaml_alias_bomb_is_refused_quickly_and_its_memory_given_back() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "alias_bomb_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BRINDLE_ALIAS_BOMB_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find_map(|l| l.find("BOMB ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("{text}"));
    eprintln!("{line}");
    let field = |k: &str| -> i64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(line.starts_with("BOMB ok=false"), "{line}");
    assert!(field("millis") < 10_000, "{line}");
    let (before, trimmed, peak) = (field("before_kib"), field("trimmed_kib"), field("peak_kib"));
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB: {line}");
    // freed, and given back to the system once the allocator is asked to
    assert!(
        trimmed - before < 16 * 1024,
        "memory kept after the refusal: {line}"
    );

    // and brindlectl validate refuses the file
    let dir = tempfile::tempdir().unwrap();
    let bomb = write(dir.path(), "bomb.yaml", &alias_bomb());
    let started = std::time::Instant::now();
    let out = brindlectl(&["validate", "--config", bomb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
}
