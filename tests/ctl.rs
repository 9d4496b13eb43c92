//! End-to-end tests of the `brindlectl` binary.

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

fn canned_status() -> SpeakerStatus {
    let now = chrono::Local::now();
    SpeakerStatus {
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
        }],
        dataplane: None,
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
    let parsed: SpeakerStatus = serde_json::from_slice(&out.stdout).unwrap();
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
    let since = chrono::DateTime::parse_from_rfc3339(&status.peers[0].since)
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
    let back: SpeakerStatus = serde_saphyr::from_str(&yaml).unwrap();
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
        text.starts_with("NAME     ASN       IPV4          IPV6\n"),
        "{text}"
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
