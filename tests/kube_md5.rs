//! A BGP session with TCP-MD5 whose password comes from a Kubernetes Secret
//! (`BGPPeer.spec.password.secretKeyRef`), end to end: `brindle-node --datastore
//! kubernetes` against the API stand-in and BIRD 2 requiring the password.
//!
//! ```text
//!   router (BIRD, 10.73.0.1, AS 65000, password "s3cr3t")   node-1 (10.73.0.2)   api (.3)
//! ```

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CRD: &str = "crd.projectcalico.org/v1";

#[test]
fn md5_password_from_a_secret() {
    let lan = Lan::new(73, &["r", "n", "api"]);
    let api = start_api_in(&lan.members[2], &lan.v4(3), 6443);
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&crds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        api.load_file(&f).unwrap();
    }
    for o in [
        json!({"apiVersion": CRD, "kind": "BGPConfiguration", "metadata": {"name": "default"},
               "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": false}}),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "bgp-secrets", "namespace": "kube-system"},
               // "s3cr3t"
               "data": {"router": "czNjcjN0"}}),
        json!({"apiVersion": CRD, "kind": "BGPPeer", "metadata": {"name": "router"},
               "spec": {"peerIP": lan.v4(1), "asNumber": 65000,
                        "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "router"}}}}),
        json!({"apiVersion": CRD, "kind": "IPPool", "metadata": {"name": "pods"},
               "spec": {"cidr": "10.74.0.0/16", "blockSize": 26, "nodeSelector": "all()"}}),
        json!({"apiVersion": CRD, "kind": "BlockAffinity", "metadata": {"name": "node-1-10-74-0-0-26"},
               "spec": {"state": "confirmed", "node": "node-1", "cidr": "10.74.0.0/26", "deleted": "false"}}),
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": "node-1",
                   "annotations": {"projectcalico.org/IPv4Address": format!("{}/24", lan.v4(2))}}}),
    ] {
        api.create(o).unwrap();
    }
    let kdir = test_dir("kube");
    let kubeconfig = kdir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let body = format!(
        "protocol kernel {{ ipv4 {{ import none; export none; }}; }}\n{}",
        bird_bgp(
            "node1",
            65000,
            &lan.v4(2),
            64512,
            "password \"s3cr3t\";",
            "ipv4 { import all; export none; };"
        )
    );
    let bird = Bird::start(&lan.members[0], &lan.v4(1), &body);
    let node = BrindleNode::start_with_args(
        &lan.members[1],
        "node-1",
        "# unused: --datastore kubernetes\n",
        &[&lan.v4(2)],
        &[
            "--datastore",
            "kubernetes",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--no-dataplane",
            "--http-address",
            "off",
        ],
    );
    let dumps: Vec<&dyn Dump> = vec![&bird, &node];
    wait_until(
        "the MD5 session is Established",
        Duration::from_secs(30),
        &dumps,
        || bird.established("node1"),
    );
    wait_until(
        "BIRD learns the node's block",
        Duration::from_secs(15),
        &dumps,
        || bird.cmd("show route 10.74.0.0/26").contains("10.74.0.0/26"),
    );
    // The agent read the Secret (and only that one).
    assert!(api.request_count_for("get", "secrets") >= 1);
    assert_eq!(
        api.request_count_for("list", "secrets"),
        0,
        "Secrets are never listed"
    );
}
