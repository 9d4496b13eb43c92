//! `brindle-cni` in Kubernetes mode end to end: three nodes running `brindle-node
//! --datastore kubernetes` (with the dataplane) against the API stand-in, one IPPool and
//! no BlockAffinity at the start. 90 pods (30 per node) are added concurrently, as kubelets
//! would, with Kubernetes CNI args: every pod gets a distinct address, each node claims its
//! own block in Calico's CRDs (the agents advertise them over the mesh), the pods'
//! annotations say what Calico's CNI writes, and every pod reaches pods on every node.
//! A pod asking for a pool by annotation gets it; DEL gives the addresses back.
//!
//! Topology (all in namespaces this test creates):
//!
//! ```text
//!   api (stand-in, 10.71.0.1)   node-1 (.2)   node-2 (.3)   node-3 (.4)   on one switch
//!                               30 pods each, pool 10.72.0.0/16 (blocks /26)
//! ```

mod common;

use brindle_kube_standin::StandIn;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CNI: &str = env!("CARGO_BIN_EXE_brindle-cni");
const CRD: &str = "crd.projectcalico.org/v1";
const NET: u8 = 71;
const AS: u32 = 64512;
const PODS_PER_NODE: usize = 30;

fn load(api: &StandIn, lan: &Lan) {
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
    let mut objs = vec![
        json!({"apiVersion": CRD, "kind": "BGPConfiguration", "metadata": {"name": "default"},
               "spec": {"asNumber": AS, "nodeToNodeMeshEnabled": true}}),
        json!({"apiVersion": CRD, "kind": "IPPool", "metadata": {"name": "pods"},
               "spec": {"cidr": "10.72.0.0/16", "blockSize": 26, "ipipMode": "Never",
                        "vxlanMode": "Never", "nodeSelector": "all()"}}),
        json!({"apiVersion": CRD, "kind": "IPPool", "metadata": {"name": "special"},
               "spec": {"cidr": "10.73.0.0/24", "blockSize": 28, "ipipMode": "Never",
                        "vxlanMode": "Never", "nodeSelector": "all()", "assignmentMode": "Manual"}}),
    ];
    for k in 1..=3 {
        objs.push(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{k}"),
                "labels": {"kubernetes.io/hostname": format!("node-{k}")},
                "annotations": {"projectcalico.org/IPv4Address": format!("{}/24", lan.v4(k + 1)),
                                "projectcalico.org/ASNumber": AS.to_string()}},
            "status": {"addresses": [{"type": "InternalIP", "address": lan.v4(k + 1)}]}}));
        for i in 0..PODS_PER_NODE {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p{k}-{i}"), "namespace": "default"},
                "spec": {"nodeName": format!("node-{k}"), "containers": [{"name": "c", "image": "x"}]}});
            if k == 1 && i == 0 {
                pod["metadata"]["annotations"] =
                    json!({"cni.projectcalico.org/ipv4pools": "[\"special\"]"});
            }
            objs.push(pod);
        }
    }
    for o in objs {
        api.create(o).unwrap();
    }
}

struct Pod {
    node: usize,
    name: String,
    ns: Netns,
    ip: Option<String>,
}

fn cni(node_ns: &str, conf: &str, command: &str, pod: &Pod) -> (i32, String, String) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node_ns, CNI])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("ctr-{}", pod.name))
        .env("CNI_NETNS", format!("/run/netns/{}", pod.ns.name))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", Path::new(CNI).parent().unwrap())
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID=ctr-{}",
                pod.name, pod.name
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ping(from: &Netns, to: &str) -> bool {
    from.exec(&["ping", "-n", "-q", "-c", "1", "-W", "1", to])
        .status
        .success()
}

#[test]
fn ninety_pods_on_three_nodes_get_distinct_routable_addresses() {
    let lan = Lan::new(NET, &["api", "n", "n", "n"]);
    let api = start_api_in(&lan.members[0], &lan.v4(1), 6443);
    load(&api, &lan);
    let kdir = test_dir("kube");
    let kubeconfig = kdir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let kc = kubeconfig.to_str().unwrap().to_string();
    // A node has a default route (proxy ARP answers for 169.254.1.1 only when the
    // kernel can route to it, as on every real host).
    for ns in &lan.members[1..] {
        ns.sysctl("net.ipv4.ip_forward", "1");
        ns.ip(&["route", "add", "default", "via", &lan.v4(1)]);
    }
    let nodes: Vec<BrindleNode> = (1..=3)
        .map(|k| {
            BrindleNode::start_with_args(
                &lan.members[k],
                &format!("node-{k}"),
                "# unused: --datastore kubernetes\n",
                &[&lan.v4(k + 1)],
                &[
                    "--datastore",
                    "kubernetes",
                    "--kubeconfig",
                    &kc,
                    "--http-address",
                    "off",
                    "--ipam-gc-interval",
                    "0.5",
                    "--ipam-gc-grace",
                    "1",
                ],
            )
        })
        .collect();
    let confs: Vec<String> = nodes
        .iter()
        .map(|n| {
            json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "brindle-cni",
                   "nodename": n.node_name, "stateDir": n.state_dir(),
                   "datastore_type": "kubernetes", "kubernetes": {"kubeconfig": kc},
                   "ipam": {"type": "calico-ipam"}, "log_level": "debug"})
            .to_string()
        })
        .collect();

    // 90 ADDs at once, as three kubelets would start their pods.
    let mut pods: Vec<Pod> = (1..=3)
        .flat_map(|k| {
            (0..PODS_PER_NODE).map(move |i| Pod {
                node: k,
                name: format!("p{k}-{i}"),
                ns: Netns::new("p"),
                ip: None,
            })
        })
        .collect();
    let t0 = Instant::now();
    let results: Vec<(i32, String, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .map(|p| {
                let node_ns = lan.members[p.node].name.clone();
                let conf = confs[p.node - 1].clone();
                s.spawn(move || cni(&node_ns, &conf, "ADD", p))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = t0.elapsed();
    for (p, (code, out, err)) in pods.iter_mut().zip(&results) {
        assert_eq!(*code, 0, "ADD {} failed: {out}\n{err}", p.name);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        p.ip = Some(
            v["ips"][0]["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    eprintln!("figure: 90 concurrent CNI ADDs (Kubernetes mode) done in {took:?}");
    let ips: BTreeSet<&String> = pods.iter().filter_map(|p| p.ip.as_ref()).collect();
    assert_eq!(ips.len(), 90, "addresses not distinct: {ips:?}");

    // The pod that asked for the manual pool got it; the rest the automatic one.
    for p in &pods {
        let ip = p.ip.as_deref().unwrap();
        if p.name == "p1-0" {
            assert!(ip.starts_with("10.73.0."), "{}: {ip}", p.name);
        } else {
            assert!(ip.starts_with("10.72."), "{}: {ip}", p.name);
        }
        // Calico's pod annotations.
        let o = api.get("v1", "Pod", Some("default"), &p.name).unwrap();
        let ann = &o["metadata"]["annotations"];
        assert_eq!(
            ann["cni.projectcalico.org/podIP"],
            format!("{ip}/32"),
            "{o}"
        );
        assert_eq!(
            ann["cni.projectcalico.org/containerID"],
            format!("ctr-{}", p.name)
        );
    }
    // Each node claimed its own block(s) of the automatic pool, in Calico's CRDs.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for b in api.list(CRD, "IPAMBlock", None) {
        owner.insert(
            b["spec"]["cidr"].as_str().unwrap().to_string(),
            b["spec"]["affinity"].as_str().unwrap_or("").to_string(),
        );
    }
    for p in &pods {
        let ip: IpAddr = p.ip.as_deref().unwrap().parse().unwrap();
        let block = owner
            .iter()
            .find(|(c, _)| c.parse::<ipnetwork::IpNetwork>().unwrap().contains(ip))
            .unwrap_or_else(|| panic!("no block holds {ip}: {owner:?}"));
        assert_eq!(block.1, &format!("host:node-{}", p.node), "{ip}");
    }
    let affinities = api.list(CRD, "BlockAffinity", None);
    assert!(affinities.len() >= 4, "{affinities:?}");
    assert!(affinities.iter().all(|a| a["spec"]["state"] == "confirmed"));

    // Every pod reaches a pod on every node (its own included), through the blocks the
    // agents learned from each other.
    let dumps: Vec<&dyn Dump> = nodes.iter().map(|n| n as &dyn Dump).collect();
    let targets: Vec<String> = (1..=3)
        .map(|k| {
            pods.iter()
                .find(|p| p.node == k && p.name != "p1-0")
                .unwrap()
                .ip
                .clone()
                .unwrap()
        })
        .collect();
    let failures = || -> Vec<String> {
        let mut f = Vec::new();
        for p in &pods {
            for t in &targets {
                if t != p.ip.as_ref().unwrap() && !ping(&p.ns, t) {
                    f.push(format!("{} ({}) -> {t}", p.name, p.ip.as_ref().unwrap()));
                }
            }
        }
        f
    };
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let f = failures();
        if f.is_empty() {
            break;
        }
        if Instant::now() > end {
            let routes: Vec<String> = lan.members[1..]
                .iter()
                .map(|n| format!("{}:\n{}", n.name, n.routes_text()))
                .collect();
            let p = &pods[2];
            let pod_view = format!(
                "{}\n{}\n{}",
                String::from_utf8_lossy(&p.ns.exec(&["ip", "addr"]).stdout),
                String::from_utf8_lossy(&p.ns.exec(&["ip", "route"]).stdout),
                String::from_utf8_lossy(&p.ns.exec(&["ip", "neigh"]).stdout)
            );
            let node = &lan.members[p.node];
            let node_view = format!(
                "{}\n{}",
                String::from_utf8_lossy(&node.exec(&["sh", "-c", "grep . /proc/sys/net/ipv4/conf/*/proxy_arp /proc/sys/net/ipv4/conf/*/rp_filter /proc/sys/net/ipv4/conf/*/forwarding /proc/sys/net/ipv4/ip_forward"]).stdout),
                String::from_utf8_lossy(&node.exec(&["iptables-save"]).stdout),
            );
            panic!(
                "pod {}: {pod_view}\nnode: {node_view}\n{} pings fail: {:?}\n{}\n{}",
                p.name,
                f.len(),
                &f[..f.len().min(10)],
                routes.join("\n"),
                dumps
                    .iter()
                    .map(|d| d.dump())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // Network policy from the API: only p1-1 may reach p2-0 (on node-2). Pods carry no
    // labels here, so the policy selects by name through a label the test adds.
    let p20 = pods.iter().find(|p| p.name == "p2-0").unwrap();
    let p11 = pods.iter().find(|p| p.name == "p1-1").unwrap();
    let p12 = pods.iter().find(|p| p.name == "p1-2").unwrap();
    for (name, app) in [("p2-0", "db"), ("p1-1", "web")] {
        api.patch(
            "v1",
            "Pod",
            Some("default"),
            name,
            brindle_kube_standin::PatchType::Merge,
            &json!({"metadata": {"labels": {"app": app}}}),
        )
        .unwrap();
    }
    api.create(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}}),
    )
    .unwrap();
    let db_ip = p20.ip.clone().unwrap();
    let t_pol = Instant::now();
    wait_until(
        "p1-2 is cut off from p2-0",
        Duration::from_secs(15),
        &dumps,
        || !ping(&p12.ns, &db_ip),
    );
    eprintln!(
        "figure: NetworkPolicy from the API enforced {:?} after it was created",
        t_pol.elapsed()
    );
    assert!(ping(&p11.ns, &db_ip), "p1-1 (app=web) is allowed");
    api.delete(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        Some("default"),
        "db",
    )
    .unwrap();
    wait_until(
        "p1-2 reaches p2-0 again",
        Duration::from_secs(15),
        &dumps,
        || ping(&p12.ns, &db_ip),
    );

    // A pod deleted from the API without a CNI DEL (a lost kubelet call): its node's
    // agent finds the leak and releases the address after the grace period.
    let leaked = pods.iter().find(|p| p.name == "p3-5").unwrap();
    let leaked_ip = leaked.ip.clone().unwrap();
    api.delete("v1", "Pod", Some("default"), "p3-5").unwrap();
    let handle = "k8s-pod-network.ctr-p3-5";
    let t_leak = Instant::now();
    wait_until(
        "node-3's agent releases the leaked address",
        Duration::from_secs(20),
        &dumps,
        || api.get(CRD, "IPAMHandle", None, handle).is_none(),
    );
    eprintln!(
        "figure: leaked address {leaked_ip} released {:?} after its pod was deleted (grace 1 s)",
        t_leak.elapsed()
    );
    let log = std::fs::read_to_string(nodes[2].dir.path().join("node.log")).unwrap_or_default();
    assert!(
        log.contains("IPAM GC: released a leaked address"),
        "{}",
        nodes[2].log_tail(30)
    );

    // DEL gives every address back and blanks the annotations.
    std::thread::scope(|s| {
        for p in &pods {
            let node_ns = lan.members[p.node].name.clone();
            let conf = confs[p.node - 1].clone();
            s.spawn(move || {
                let (code, out, err) = cni(&node_ns, &conf, "DEL", p);
                assert_eq!(code, 0, "DEL {}: {out}\n{err}", p.name);
            });
        }
    });
    let handles = api.list(CRD, "IPAMHandle", None);
    assert!(handles.is_empty(), "handles left: {handles:?}");
    for b in api.list(CRD, "IPAMBlock", None) {
        let used = b["spec"]["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| !a.is_null())
            .count();
        assert_eq!(used, 0, "{b}");
    }
    let o = api.get("v1", "Pod", Some("default"), "p2-3").unwrap();
    assert_eq!(
        o["metadata"]["annotations"]["cni.projectcalico.org/podIP"],
        ""
    );
    drop(nodes);
}
