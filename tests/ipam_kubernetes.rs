//! IPAM on Calico's CRDs through the API stand-in (in-process, on 127.0.0.1): the
//! objects are written as Calico writes them, a migrated cluster's allocations are
//! respected, and concurrent nodes with injected 409s never share or leak an address.

use brindle::datastore::kubernetes::{self, CalicoGroup};
use brindle::ipam::kubernetes::KubeStore;
use brindle::ipam::{report, Affinity, Block, Handle, Ipam, IpamSettings, Request, Store};
use brindle_kube_standin::{Config, StandIn};
use brindle_model::{AllowedUse, AssignmentMode, EncapMode, IpPoolSpec, Selector};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

fn standin() -> StandIn {
    let api = StandIn::start(Config::default()).unwrap();
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/crds");
    for f in [
        "ipamblocks.yaml",
        "blockaffinities.yaml",
        "ipamhandles.yaml",
        "ipamconfigs.yaml",
        "ippools.yaml",
    ] {
        api.load_file(crds.join(f)).unwrap();
    }
    api
}

async fn store(api: &StandIn, dir: &Path) -> KubeStore {
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let client = kubernetes::client(Some(&kubeconfig)).await.unwrap();
    KubeStore::new(client, CalicoGroup::CrdV1)
}

fn pool(cidr: &str, block_size: u8) -> IpPoolSpec {
    IpPoolSpec {
        name: format!("pool-{block_size}"),
        cidr: cidr.parse().unwrap(),
        block_size,
        ipip_mode: EncapMode::Never,
        vxlan_mode: EncapMode::Never,
        nat_outgoing: false,
        disabled: false,
        disable_bgp_export: false,
        node_selector: Selector::parse("all()").unwrap(),
        allowed_uses: vec![AllowedUse::Workload],
        assignment_mode: AssignmentMode::Automatic,
        namespace_selector: None,
    }
}

fn req(node: &str, handle: &str) -> Request {
    Request {
        handle: handle.into(),
        node: node.into(),
        owner: BTreeMap::from([
            ("node".to_string(), node.to_string()),
            ("namespace".to_string(), "default".to_string()),
            ("pod".to_string(), handle.to_string()),
        ]),
        num_v4: 1,
        ..Request::default()
    }
}

async fn problems<S: Store>(s: &S) -> Vec<String> {
    let b: Vec<Block> = s
        .list::<Block>()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    let h: Vec<Handle> = s
        .list::<Handle>()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    let a: Vec<Affinity> = s
        .list::<Affinity>()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    report::consistency(&b, &h, &a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_calicos_and_migrated_allocations_stay() {
    let api = standin();
    let dir = tempfile::tempdir().unwrap();
    let s = store(&api, dir.path()).await;
    let list: serde_json::Value =
        serde_json::from_str(include_str!("../src/ipam/testdata/calico-ipam.json")).unwrap();
    for item in list["items"].as_array().unwrap() {
        brindle::ipam::import(&s, item).await.unwrap();
    }
    let ipam = Ipam::new(s, vec![pool("10.244.0.0/28", 30)], IpamSettings::default());
    let a = ipam
        .auto_assign(&req("worker-1", "k8s-pod-network.c1"))
        .await
        .unwrap();
    assert_eq!(
        a.v4[0].ip().to_string(),
        "10.244.0.3",
        "the one free address of worker-1's block"
    );
    let b = ipam
        .auto_assign(&req("worker-1", "k8s-pod-network.c2"))
        .await
        .unwrap();
    assert!(
        b.v4[0].ip().to_string().starts_with("10.244.0.1"),
        "{b:?}: a new block, 10.244.0.12/30"
    );

    // As Calico writes them: the block's spec, the affinity's labels and string
    // `deleted` in crd.projectcalico.org/v1, the handle's name lower-cased.
    let blk = api
        .get(
            "crd.projectcalico.org/v1",
            "IPAMBlock",
            None,
            "10-244-0-12-30",
        )
        .unwrap();
    assert_eq!(blk["spec"]["affinity"], "host:worker-1");
    assert_eq!(blk["spec"]["cidr"], "10.244.0.12/30");
    assert!(blk["spec"]["allocations"].as_array().unwrap().len() == 4);
    let aff = api
        .get(
            "crd.projectcalico.org/v1",
            "BlockAffinity",
            None,
            "worker-1-10-244-0-12-30",
        )
        .unwrap();
    assert_eq!(aff["spec"]["state"], "confirmed");
    assert_eq!(aff["spec"]["deleted"], "false");
    assert_eq!(
        aff["metadata"]["labels"]["projectcalico.org/ip-version"],
        "4"
    );
    assert_eq!(
        aff["metadata"]["labels"]["projectcalico.org/hostname-hash"]
            .as_str()
            .unwrap()
            .len(),
        52
    );
    let h = api
        .get(
            "crd.projectcalico.org/v1",
            "IPAMHandle",
            None,
            "k8s-pod-network.c2",
        )
        .unwrap();
    assert_eq!(h["spec"]["block"]["10.244.0.12/30"], 1);

    // Release deletes the handle; the migrated pod's release frees Calico's address.
    assert_eq!(
        ipam.release_by_handle("k8s-pod-network.c2").await.unwrap(),
        1
    );
    assert!(api
        .get(
            "crd.projectcalico.org/v1",
            "IPAMHandle",
            None,
            "k8s-pod-network.c2"
        )
        .is_none());
    assert_eq!(
        ipam.release_by_handle("k8s-pod-network.aa11")
            .await
            .unwrap(),
        1
    );
    assert!(
        problems(&ipam.store).await.is_empty(),
        "{:?}",
        problems(&ipam.store).await
    );
}

/// 3 nodes × 2 workers × 15 allocations with releases, 409s injected on top of the
/// real conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_nodes_against_the_api() {
    let api = standin();
    let dir = tempfile::tempdir().unwrap();
    let s = store(&api, dir.path()).await;
    // 8 blocks of 16 for 3 nodes of 24 live addresses: they race for blocks.
    let ipam = Arc::new(Ipam::new(
        s,
        vec![pool("10.66.0.0/25", 28)],
        IpamSettings::default(),
    ));
    api.inject_conflict_next(5);
    let mut tasks = Vec::new();
    for n in 0..3 {
        for w in 0..2 {
            let ipam = ipam.clone();
            tasks.push(tokio::spawn(async move {
                let node = format!("node-{n}");
                let mut held = HashMap::new();
                for i in 0..15 {
                    let h = format!("k8s-pod-network.{n}-{w}-{i}");
                    let got = ipam.auto_assign(&req(&node, &h)).await.expect("assign");
                    held.insert(h, got.v4[0].ip());
                    if i % 5 == 4 {
                        let old = format!("k8s-pod-network.{n}-{w}-{}", i - 1);
                        assert_eq!(ipam.release_by_handle(&old).await.unwrap(), 1);
                        held.remove(&old);
                    }
                }
                held
            }));
        }
    }
    let mut all: HashMap<IpAddr, String> = HashMap::new();
    for t in tasks {
        for (h, ip) in t.await.unwrap() {
            assert!(all.insert(ip, h.clone()).is_none(), "{ip} handed out twice");
        }
    }
    assert_eq!(all.len(), 3 * 2 * 12);
    let mut stored = HashMap::new();
    for b in ipam.store.list::<Block>().await.unwrap() {
        for (ip, a) in b.value.in_use() {
            stored.insert(ip, a.handle_id.clone().unwrap());
        }
    }
    assert_eq!(stored, all, "leaked or lost addresses");
    assert!(
        problems(&ipam.store).await.is_empty(),
        "{:?}",
        problems(&ipam.store).await
    );
    for h in all.values() {
        ipam.release_by_handle(h).await.unwrap();
    }
    assert!(ipam.store.list::<Handle>().await.unwrap().is_empty());
}

/// `brindlectl ipam` against the API: show (pools, blocks, one address), check (a leaked
/// address of a pod that does not exist), release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brindlectl_ipam_show_check_release() {
    let api = standin();
    let dir = tempfile::tempdir().unwrap();
    let s = store(&api, dir.path()).await;
    api.create(
        serde_json::json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "pods"}, "spec": {"cidr": "10.244.0.0/28", "blockSize": 30}}),
    )
    .unwrap();
    api.create(
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}}),
    )
    .unwrap();
    api.create(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default"},
        "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"podIPs": [{"ip": "10.244.0.1"}]}}))
        .unwrap();
    let list: serde_json::Value =
        serde_json::from_str(include_str!("../src/ipam/testdata/calico-ipam.json")).unwrap();
    for item in list["items"].as_array().unwrap() {
        brindle::ipam::import(&s, item).await.unwrap();
    }
    let kubeconfig = dir.path().join("kubeconfig");
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_brindlectl"))
            .arg("ipam")
            .args(args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // `brindlectl get` reads the API too.
    let get = std::process::Command::new(env!("CARGO_BIN_EXE_brindlectl"))
        .args(["get", "ippools", "-o", "wide", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&get.stdout);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(out.starts_with("NAME   CIDR"), "{out}");
    assert!(out.contains("pods   10.244.0.0/28"), "{out}");
    let (ok, out, err) = ctl(&["show", "--show-blocks"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("| IP Pool  | 10.244.0.0/28 |        16 |    5 (31%) |"),
        "{out}"
    );
    assert!(
        out.contains("| Block    | 10.244.0.0/30 |         4 |    3 (75%) |"),
        "{out}"
    );
    let (_, out, _) = ctl(&["show", "--ip", "10.244.0.1"]);
    assert!(
        out.starts_with("IP 10.244.0.1 is in use\nHandle ID: k8s-pod-network.3b2d"),
        "{out}"
    );
    assert!(out.contains("  pod: web-0\n"), "{out}");
    let (_, out, _) = ctl(&["show", "--ip", "10.244.0.3"]);
    assert_eq!(out, "10.244.0.3 is not assigned\n");
    let (ok, out, err) = ctl(&["check"]);
    assert!(ok, "{err}");
    // coredns-1, web-1, batch-7 do not exist as pods; worker-2 is not a node.
    assert!(
        out.contains("Found 3 IPs that are allocated in IPAM but not actually in use."),
        "{out}"
    );
    assert!(
        out.contains("10.244.0.4/30 is affine to node worker-2, which does not exist"),
        "{out}"
    );
    let (ok, out, _) = ctl(&["check", "-o", "json"]);
    assert!(ok);
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["leaked"].as_array().unwrap().len(), 3);
    let (ok, out, err) = ctl(&["release", "--ip", "10.244.0.9"]);
    assert!(ok, "{err}");
    assert_eq!(out, "Successfully released IP address 10.244.0.9\n");
    let (ok, _, err) = ctl(&["release", "--ip", "10.244.0.9"]);
    assert!(!ok);
    assert!(
        err.contains("IP address 10.244.0.9 is not assigned"),
        "{err}"
    );
    // The unowned block held only that address: it is gone, and so is its handle.
    assert!(api
        .get(
            "crd.projectcalico.org/v1",
            "IPAMBlock",
            None,
            "10-244-0-8-30"
        )
        .is_none());
    assert!(api
        .get(
            "crd.projectcalico.org/v1",
            "IPAMHandle",
            None,
            "k8s-pod-network.bb22"
        )
        .is_none());
}
