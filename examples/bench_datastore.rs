//! Benchmark (not a test): time to "datastore in sync" and memory of `brindle-node`
//! against a Kubernetes API (the stand-in, `brindle-kube-standin`) holding a large
//! cluster: 5,000 Nodes, 100,000 Pods, 2,000 Services (+ their EndpointSlices),
//! 500 NetworkPolicies and Calico's CRDs (at `--scale 1`; `--scale 0.1` is 1/10).
//!
//! Run it through `scripts/bench-datastore.sh`, which builds it and runs it inside a
//! network namespace of its own with only loopback up. Subcommands:
//!
//! - `run`: generates the objects, loads them into an in-process stand-in listening on
//!   127.0.0.1, measures the stand-in alone (every kind listed in pages of 500 over
//!   HTTPS, as kube-rs' watcher lists, bodies discarded), then starts the given
//!   `brindle-node` binary `--reps` times and measures, per run: wall time from spawn to
//!   the "datastore in sync" log line, peak RSS (VmHWM) and RSS at sync and after
//!   `--steady` seconds, CPU time (utime+stime) at both points.
//! - `profile`: the agent's decode pipeline in this process, stage by stage, on the
//!   same list pages (fetched from the stand-in): kube-rs JSON → `DynamicObject`,
//!   `serde_json::to_value`, Brindle's `decode` (to_v3 + `decode_json`), `Cache::apply`,
//!   `Cache::snapshot` (`ClusterConfig::from_shared_lenient`), `node_plan`,
//!   `base_model` — time and heap bytes (a counting allocator) of each — plus prototypes
//!   of alternatives (typed "slim" list decoding, objects without their raw JSON).
//!
//! The harness never sends a packet anywhere but 127.0.0.1 of its namespace: the agent's
//! BGP configuration disables the node-to-node mesh and there are no BGPPeers.

#![recursion_limit = "512"]
#![allow(clippy::type_complexity)] // a benchmark harness: tuples of figures are clearer than named types here

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use brindle::datastore::cache::Cache;
use brindle::datastore::kubernetes::{api_resource, decode, CalicoGroup};
use brindle::datastore::{Event, AGENT_KINDS};
use brindle_kube_standin::{Config, StandIn};
use brindle_model::Kind;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Heap accounting (profile mode): live bytes and a resettable high-water mark.

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}
fn reset_peak() -> usize {
    let l = live();
    PEAK.store(l, Ordering::Relaxed);
    l
}
fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}
fn mb(b: usize) -> f64 {
    b as f64 / 1e6
}
fn smb(b: isize) -> f64 {
    b as f64 / 1e6
}

// ---------------------------------------------------------------------------------------
// Command line.

#[derive(Parser)]
#[command(about = "brindle-node datastore benchmark (time to in-sync, RSS)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// 1 = 5,000 nodes, 100,000 pods, 2,000 services, 500 network policies.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Directory for the kubeconfig, logs and the agent's state.
    #[arg(long)]
    work: PathBuf,
    /// Calico CRD manifests to load (a directory of YAML files).
    #[arg(long, default_value = "examples/kubernetes/crds")]
    crds: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Stand-in alone, then the real brindle-node process.
    Run {
        #[command(flatten)]
        common: Common,
        /// The brindle-node binary (release build).
        #[arg(long)]
        agent: PathBuf,
        /// Agent runs (each a fresh process).
        #[arg(long, default_value_t = 3)]
        reps: u32,
        /// Seconds to keep the agent running after sync before the steady RSS sample.
        #[arg(long, default_value_t = 10.0)]
        steady: f64,
        /// Give up on a run after this many seconds without sync.
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
        /// Kill a run whose RSS exceeds this (MB).
        #[arg(long, default_value_t = 12_000)]
        rss_limit_mb: u64,
        /// Extra environment for the agent (KEY=VALUE, repeatable), e.g.
        /// MALLOC_ARENA_MAX=2.
        #[arg(long = "agent-env")]
        agent_env: Vec<String>,
        /// Stand-in alone: list repetitions.
        #[arg(long, default_value_t = 3)]
        list_reps: u32,
        /// Profile each agent run with `perf record` (attached from spawn to sync) into
        /// FILE.<run>; flat profile (release builds have no frame pointers).
        #[arg(long)]
        perf: Option<PathBuf>,
    },
    /// Prints one generated object of each kind (JSON), and the average sizes.
    Sample {
        #[arg(long, default_value_t = 0.1)]
        scale: f64,
    },
    /// The agent's pipeline in-process, stage by stage, and prototypes of alternatives.
    Profile {
        #[command(flatten)]
        common: Common,
        /// Also time the cross-object checks, `node_plan` and `base_model` with the Nodes,
        /// BlockAffinities and pool of this scale (no pods: cheap at scale 1).
        #[arg(long, default_value_t = 1.0)]
        checks_scale: f64,
    },
}

// ---------------------------------------------------------------------------------------
// Object generator. Deterministic; shapes follow what a real API server returns
// (server-set uid/resourceVersion/creationTimestamp come from the stand-in).

#[derive(Clone, Copy, Debug)]
struct Scale {
    nodes: usize,
    pods: usize,
    services: usize,
    policies: usize,
    namespaces: usize,
}

impl Scale {
    fn of(s: f64) -> Scale {
        let n = |x: f64| ((x * s).round() as usize).max(1);
        Scale {
            nodes: n(5000.0),
            pods: n(100_000.0),
            services: n(2000.0),
            policies: n(500.0),
            namespaces: n(100.0).max(2),
        }
    }
}

const APPS: &[&str] = &[
    "web",
    "api",
    "cart",
    "checkout",
    "search",
    "auth",
    "billing",
    "catalog",
    "orders",
    "payments",
    "inventory",
    "notify",
    "reports",
    "gateway",
    "worker",
    "cache",
];
const ZONES: &[&str] = &["eu-west-1a", "eu-west-1b", "eu-west-1c"];
const TS: &str = "2025-03-14T09:26:53Z";

/// splitmix64: deterministic pseudo-random text.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
fn hex(seed: u64, len: usize) -> String {
    let mut s = String::with_capacity(len);
    let mut i = 0u64;
    while s.len() < len {
        s.push_str(&format!(
            "{:016x}",
            mix(seed.wrapping_mul(31).wrapping_add(i))
        ));
        i += 1;
    }
    s.truncate(len);
    s
}
fn alnum(seed: u64, len: usize) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|i| A[(mix(seed ^ ((i as u64 + 1) * 0x51)) % A.len() as u64) as usize] as char)
        .collect()
}
fn uid(seed: u64) -> String {
    let h = hex(seed ^ 0xabcdef, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}
fn node_ip(i: usize) -> String {
    format!("172.20.{}.{}", i / 250, i % 250 + 1)
}
/// Node i's /26 block in 10.128.0.0/12.
fn block_base(i: usize) -> u32 {
    u32::from(std::net::Ipv4Addr::new(10, 128, 0, 0)) + 64 * i as u32
}
fn ip4(v: u32) -> String {
    std::net::Ipv4Addr::from(v).to_string()
}

fn deployment(sc: &Scale, d: usize) -> (String, String, String) {
    let app = format!("{}-{d:04}", APPS[d % APPS.len()]);
    let ns = format!("team-{:03}", d % sc.namespaces);
    let rs_hash = alnum(d as u64 * 7 + 3, 10);
    (app, ns, rs_hash)
}

fn pod_ip(sc: &Scale, p: usize) -> (usize, String) {
    let node = p % sc.nodes;
    let slot = p / sc.nodes; // < 62 at every scale here
    (node, ip4(block_base(node) + 1 + slot as u32))
}

fn pod_name(sc: &Scale, p: usize) -> String {
    let d = p % sc.services;
    let (app, _, rs) = deployment(sc, d);
    format!("{app}-{rs}-{}", alnum(p as u64 * 13 + 1, 5))
}

fn pod(sc: &Scale, p: usize) -> Value {
    let d = p % sc.services;
    let (app, ns, rs) = deployment(sc, d);
    let name = pod_name(sc, p);
    let (node, ip) = pod_ip(sc, p);
    let cid = hex(p as u64 * 17 + 5, 64);
    let image = format!(
        "registry.example.com/shop/{}:1.{}.{}",
        APPS[d % APPS.len()],
        d % 7,
        p % 3
    );
    let token_vol = format!("kube-api-access-{}", alnum(p as u64 * 3 + 11, 5));
    let with_sidecar = d.is_multiple_of(10);
    let mut containers = vec![json!({
        "name": "app",
        "image": image,
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
        ],
        "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
        "volumeMounts": [
            {"name": token_vol, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    })];
    let mut statuses = vec![json!({
        "name": "app",
        "state": {"running": {"startedAt": TS}},
        "lastState": {},
        "ready": true,
        "restartCount": 0,
        "image": image,
        "imageID": format!("registry.example.com/shop/{}@sha256:{}", APPS[d % APPS.len()], hex(d as u64, 64)),
        "containerID": format!("containerd://{}", hex(p as u64 * 19 + 7, 64)),
        "started": true
    })];
    if with_sidecar {
        containers.push(json!({
            "name": "log-shipper",
            "image": "registry.example.com/infra/fluent-bit:3.0.4",
            "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "10m", "memory": "32Mi"}},
            "volumeMounts": [{"name": token_vol, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"
        }));
        statuses.push(json!({
            "name": "log-shipper",
            "state": {"running": {"startedAt": TS}},
            "lastState": {},
            "ready": true,
            "restartCount": 0,
            "image": "registry.example.com/infra/fluent-bit:3.0.4",
            "imageID": format!("registry.example.com/infra/fluent-bit@sha256:{}", hex(99, 64)),
            "containerID": format!("containerd://{}", hex(p as u64 * 23 + 9, 64)),
            "started": true
        }));
    }
    let conds = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": format!("{app}-{rs}-"),
            "namespace": ns,
            "labels": {
                "app": app,
                "app.kubernetes.io/name": APPS[d % APPS.len()],
                "app.kubernetes.io/part-of": "shop",
                "pod-template-hash": rs,
                "tier": if d.is_multiple_of(3) { "frontend" } else { "backend" }
            },
            "annotations": {
                "cni.projectcalico.org/containerID": cid,
                "cni.projectcalico.org/podIP": format!("{ip}/32"),
                "cni.projectcalico.org/podIPs": format!("{ip}/32")
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-{rs}"),
                "uid": uid(d as u64 + 1_000_000), "controller": true, "blockOwnerDeletion": true
            }],
            "managedFields": [
                {
                    "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": TS, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:app.kubernetes.io/name": {}, "f:app.kubernetes.io/part-of": {}, "f:pod-template-hash": {}, "f:tier": {}}, "f:ownerReferences": {".": {}, format!("k:{{\"uid\":\"{}\"}}", uid(d as u64 + 1_000_000)): {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}, "f:ports": {}, "f:resources": {}, "f:volumeMounts": {}}},
                            "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:serviceAccountName": {}, "f:volumes": {}}}
                },
                {
                    "manager": "calico", "operation": "Update", "apiVersion": "v1", "time": TS, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:cni.projectcalico.org/containerID": {}, "f:cni.projectcalico.org/podIP": {}, "f:cni.projectcalico.org/podIPs": {}}}},
                    "subresource": "status"
                },
                {
                    "manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": TS, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}, format!("k:{{\"ip\":\"{ip}\"}}"): {".": {}, "f:ip": {}}}, "f:startTime": {}}},
                    "subresource": "status"
                }
            ]
        },
        "spec": {
            "volumes": [
                {"name": token_vol, "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ], "defaultMode": 420}}
            ],
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": app,
            "serviceAccount": app,
            "nodeName": node_name(node),
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {
            "phase": "Running",
            "conditions": conds.iter().map(|c| json!({"type": c, "status": "True", "lastTransitionTime": TS})).collect::<Vec<_>>(),
            "hostIP": node_ip(node),
            "hostIPs": [{"ip": node_ip(node)}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": TS,
            "containerStatuses": statuses,
            "qosClass": "Burstable"
        }
    })
}

fn node(i: usize) -> Value {
    let name = node_name(i);
    let ip = node_ip(i);
    let zone = ZONES[i % ZONES.len()];
    let images: Vec<Value> = (0..12)
        .map(|k| {
            let repo = format!("registry.example.com/{}/{}", if k < 4 { "infra" } else { "shop" }, APPS[(i + k) % APPS.len()]);
            json!({"names": [format!("{repo}@sha256:{}", hex(k as u64 * 1000 + 7, 64)), format!("{repo}:1.{k}.0")], "sizeBytes": 20_000_000 + k * 1_234_567})
        })
        .collect();
    let cond = |t: &str, reason: &str, msg: &str, status: &str| json!({"type": t, "status": status, "lastHeartbeatTime": TS, "lastTransitionTime": TS, "reason": reason, "message": msg});
    let resources = json!({"cpu": "8", "ephemeral-storage": "101430960Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "32386544Ki", "pods": "110"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/instance-type": "m5.2xlarge",
                "beta.kubernetes.io/os": "linux",
                "failure-domain.beta.kubernetes.io/region": "eu-west-1",
                "failure-domain.beta.kubernetes.io/zone": zone,
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/worker": "",
                "node.kubernetes.io/instance-type": "m5.2xlarge",
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": zone
            },
            "annotations": {
                "csi.volume.kubernetes.io/nodeid": format!("{{\"ebs.csi.aws.com\":\"i-{}\"}}", hex(i as u64, 17)),
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "projectcalico.org/IPv4Address": format!("{ip}/16"),
                "projectcalico.org/IPv4VXLANTunnelAddr": ip4(block_base(i)),
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"
            },
            "managedFields": [
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": TS, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:volumes.kubernetes.io/controller-managed-attach-detach": {}}, "f:labels": {".": {}, "f:beta.kubernetes.io/arch": {}, "f:beta.kubernetes.io/os": {}, "f:kubernetes.io/arch": {}, "f:kubernetes.io/hostname": {}, "f:kubernetes.io/os": {}}}}},
                {"manager": "calico-node", "operation": "Update", "apiVersion": "v1", "time": TS, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:projectcalico.org/IPv4Address": {}, "f:projectcalico.org/IPv4VXLANTunnelAddr": {}}}, "f:status": {"f:conditions": {"k:{\"type\":\"NetworkUnavailable\"}": {".": {}, "f:lastHeartbeatTime": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}}}},
                 "subresource": "status"},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": TS, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:status": {"f:allocatable": {"f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}}, "f:capacity": {"f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}}, "f:conditions": {"k:{\"type\":\"DiskPressure\"}": {"f:lastHeartbeatTime": {}}, "k:{\"type\":\"MemoryPressure\"}": {"f:lastHeartbeatTime": {}}, "k:{\"type\":\"PIDPressure\"}": {"f:lastHeartbeatTime": {}}, "k:{\"type\":\"Ready\"}": {"f:lastHeartbeatTime": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}}}, "f:images": {}, "f:nodeInfo": {"f:bootID": {}, "f:kernelVersion": {}}}},
                 "subresource": "status"}
            ]
        },
        "spec": {"providerID": format!("aws:///{zone}/i-{}", hex(i as u64, 17))},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("NetworkUnavailable", "CalicoIsUp", "Calico is running on this node", "False"),
                cond("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", "False"),
                cond("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", "False"),
                cond("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available", "False"),
                cond("Ready", "KubeletReady", "kubelet is posting ready status", "True")
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hex(i as u64 + 5, 32), "systemUUID": uid(i as u64 + 77), "bootID": uid(i as u64 + 99),
                "kernelVersion": "6.1.0-28-cloud-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.24", "kubeletVersion": "v1.31.4", "kubeProxyVersion": "v1.31.4",
                "operatingSystem": "linux", "architecture": "amd64"
            },
            "images": images
        }
    })
}

fn namespace(sc: &Scale, n: usize) -> Value {
    let _ = sc;
    let name = format!("team-{n:03}");
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, "team": format!("t{n}"), "environment": "production"}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

fn service_ip(d: usize) -> String {
    format!("10.96.{}.{}", d / 250, d % 250 + 1)
}

fn service(sc: &Scale, d: usize) -> Value {
    let (app, ns, _) = deployment(sc, d);
    let lb = d.is_multiple_of(10);
    let spec = json!({
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}, {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9090}],
        "selector": {"app": app},
        "clusterIP": service_ip(d),
        "clusterIPs": [service_ip(d)],
        "type": if lb { "LoadBalancer" } else { "ClusterIP" },
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
        "externalTrafficPolicy": if lb { "Local" } else { "Cluster" }
    });
    let last_applied = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns, "labels": {"app": app}}, "spec": {"ports": spec["ports"], "selector": spec["selector"], "type": spec["type"]}}).to_string();
    let mut spec = spec;
    if !lb {
        spec.as_object_mut()
            .unwrap()
            .remove("externalTrafficPolicy");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": app, "namespace": ns,
            "labels": {"app": app, "app.kubernetes.io/part-of": "shop"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": TS, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}, "f:labels": {".": {}, "f:app": {}, "f:app.kubernetes.io/part-of": {}}}, "f:spec": {"f:internalTrafficPolicy": {}, "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}, "k:{\"port\":9090,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}}, "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}}}]
        },
        "spec": spec,
        "status": if lb { json!({"loadBalancer": {"ingress": [{"ip": format!("192.0.2.{}", d / 10 % 250 + 1), "ipMode": "VIP"}]}}) } else { json!({"loadBalancer": {}}) }
    })
}

fn endpoint_slice(sc: &Scale, d: usize) -> Value {
    let (app, ns, _) = deployment(sc, d);
    // the pods of deployment d: p ≡ d (mod services)
    let endpoints: Vec<Value> = (d..sc.pods)
        .step_by(sc.services)
        .map(|p| {
            let (node, ip) = pod_ip(sc, p);
            json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false},
                   "targetRef": {"kind": "Pod", "namespace": ns, "name": pod_name(sc, p), "uid": uid(p as u64)},
                   "nodeName": node_name(node), "zone": ZONES[node % ZONES.len()]})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{app}-{}", alnum(d as u64 * 5 + 2, 5)),
            "generateName": format!("{app}-"),
            "namespace": ns,
            "labels": {"app": app, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io", "kubernetes.io/service-name": app},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": TS},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": app, "uid": uid(d as u64 + 5_000_000), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "discovery.k8s.io/v1", "time": TS, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:addressType": {}, "f:endpoints": {}, "f:metadata": {"f:annotations": {".": {}, "f:endpoints.kubernetes.io/last-change-trigger-time": {}}, "f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:endpointslice.kubernetes.io/managed-by": {}, "f:kubernetes.io/service-name": {}}, "f:ownerReferences": {}}, "f:ports": {}}}]
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}, {"name": "metrics", "protocol": "TCP", "port": 9090}]
    })
}

fn network_policy(sc: &Scale, k: usize) -> Value {
    let d = k % sc.services;
    let (app, ns, _) = deployment(sc, d);
    let spec = if k.is_multiple_of(5) {
        json!({"podSelector": {}, "policyTypes": ["Ingress"]})
    } else {
        json!({
            "podSelector": {"matchLabels": {"app": app}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"podSelector": {"matchLabels": {"tier": "frontend"}}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                    {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [app.clone(), "gateway-0013".to_string()]}]}, "namespaceSelector": {"matchLabels": {"environment": "production"}}}
                ],
                "ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": "metrics"}]
            }],
            "egress": [
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}}], "ports": [{"protocol": "TCP", "port": 5432}]},
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
            ]
        })
    };
    let name = if k.is_multiple_of(5) {
        format!("default-deny-{k}")
    } else {
        format!("allow-{app}-{k}")
    };
    let last_applied = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}).to_string();
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name, "namespace": ns,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "networking.k8s.io/v1", "time": TS, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}, "f:spec": {"f:egress": {}, "f:ingress": {}, "f:podSelector": {}, "f:policyTypes": {}}}}]
        },
        "spec": spec
    })
}

fn calico_objects(sc: &Scale) -> Vec<Value> {
    let mut v = vec![
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration", "metadata": {"name": "default"},
               "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": false, "logSeverityScreen": "Info"}}),
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
               "spec": {"cidr": "10.128.0.0/12", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "CrossSubnet", "natOutgoing": true, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"]}}),
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMConfig", "metadata": {"name": "default"},
               "spec": {"strictAffinity": false, "autoAllocateBlocks": true, "maxBlocksPerHost": 0}}),
    ];
    for i in 0..sc.nodes {
        let b = ip4(block_base(i));
        v.push(json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity",
            "metadata": {"name": format!("{}-{}-26", node_name(i), b.replace('.', "-"))},
            "spec": {"state": "confirmed", "node": node_name(i), "cidr": format!("{b}/26"), "deleted": "false"}}));
    }
    v
}

/// Every object, kinds in the order they are loaded.
fn generate(sc: &Scale) -> Vec<(&'static str, Vec<Value>)> {
    let mut out = Vec::new();
    generate_chunks(sc, usize::MAX, |kind, objs| {
        out.push((kind, objs));
        Ok(())
    })
    .expect("collecting cannot fail");
    out
}

/// Every object, kinds in the order they are loaded, handed to `f` in chunks of at most
/// `chunk` objects of one kind (so that a loader never holds them all as values).
fn generate_chunks(
    sc: &Scale,
    chunk: usize,
    mut f: impl FnMut(&'static str, Vec<Value>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut ranged = |kind: &'static str, n: usize, g: &dyn Fn(usize) -> Value| {
        let mut start = 0;
        while start < n {
            let end = n.min(start.saturating_add(chunk));
            f(kind, (start..end).map(g).collect())?;
            start = end;
        }
        anyhow::Ok(())
    };
    ranged("Namespace", sc.namespaces, &|n| namespace(sc, n))?;
    let calico = calico_objects(sc);
    ranged("Calico", calico.len(), &|i| calico[i].clone())?;
    drop(calico);
    ranged("Node", sc.nodes, &node)?;
    ranged("Service", sc.services, &|d| service(sc, d))?;
    ranged("EndpointSlice", sc.services, &|d| endpoint_slice(sc, d))?;
    ranged("NetworkPolicy", sc.policies, &|k| network_policy(sc, k))?;
    ranged("Pod", sc.pods, &|p| pod(sc, p))
}

/// Returns the harness's freed memory (the generated objects) to the system, so that
/// the process's RSS is the stand-in's.
fn malloc_trim() {
    #[cfg(target_env = "gnu")]
    unsafe {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        malloc_trim(0);
    }
}

/// Starts the stand-in on 127.0.0.1 and loads the CRDs and every object. Returns it and
/// the (kind → count, bytes) of what was loaded.
fn start_loaded(
    c: &Common,
) -> anyhow::Result<(StandIn, BTreeMap<String, (usize, usize)>, Duration)> {
    let sc = Scale::of(c.scale);
    eprintln!("scale {}: {sc:?}", c.scale);
    let api = StandIn::start(Config {
        listen: "127.0.0.1:0".parse()?,
        ..Config::default()
    })?;
    let mut crds: Vec<PathBuf> = std::fs::read_dir(&c.crds)
        .with_context(|| format!("reading {}", c.crds.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    crds.sort();
    for f in &crds {
        api.load_file(f)?;
    }
    // Generated in chunks of 1,000 and put in with `create_many` (one lock per chunk);
    // the load time is create_many's alone (not the generator's).
    let mut load = Duration::ZERO;
    let mut sizes = BTreeMap::new();
    generate_chunks(&sc, 1_000, |kind, objs| {
        for o in &objs {
            let k = o["kind"].as_str().unwrap_or(kind).to_string();
            let bytes = serde_json::to_vec(o)?.len();
            let e = sizes.entry(k).or_insert((0usize, 0usize));
            e.0 += 1;
            e.1 += bytes;
        }
        let t = Instant::now();
        api.create_many(objs)?;
        load += t.elapsed();
        Ok(())
    })?;
    malloc_trim();
    eprintln!(
        "loaded {} objects in {:.1} s",
        sizes.values().map(|s| s.0).sum::<usize>(),
        load.as_secs_f64()
    );
    Ok((api, sizes, load))
}

fn print_sizes(sizes: &BTreeMap<String, (usize, usize)>) {
    println!("\n### Objects in the API\n");
    println!("| kind | objects | JSON total (MB) | average (bytes) |");
    println!("|---|---:|---:|---:|");
    let (mut n, mut b) = (0, 0);
    for (k, (c, s)) in sizes {
        println!("| {k} | {c} | {:.1} | {} |", mb(*s), s / c.max(&1));
        n += c;
        b += s;
    }
    println!("| **all** | {n} | {:.1} | {} |", mb(b), b / n.max(1));
}

// ---------------------------------------------------------------------------------------
// Stand-in alone: list every kind in pages of 500 (as kube-rs' watcher does), concurrently.

fn list_path(kind: Kind) -> String {
    let ar = api_resource(kind, CalicoGroup::CrdV1);
    if ar.group.is_empty() {
        format!("/api/{}/{}", ar.version, ar.plural)
    } else {
        format!("/apis/{}/{}/{}", ar.group, ar.version, ar.plural)
    }
}

fn continue_of(page: &str) -> Option<String> {
    // The list's metadata comes before the items (as a real server orders it): look in
    // the first `"metadata":{...}` only.
    if page.starts_with("{\"kind\":") {
        let meta = &page[page.find("\"metadata\":{")?..];
        let meta = &meta[..meta.find('}')?];
        let k = meta.find("\"continue\":\"")? + "\"continue\":\"".len();
        let end = meta[k..].find('"')?;
        return Some(meta[k..k + end].to_string());
    }
    // Keys sorted (an older stand-in): the list's metadata is the tail after the items.
    let tail_start = page
        .rfind("\"metadata\":{\"continue\":\"")
        .or_else(|| page.rfind("\"continue\":\""))?;
    let rest = &page[tail_start..];
    let k = rest.find("\"continue\":\"")? + "\"continue\":\"".len();
    let end = rest[k..].find('"')?;
    Some(rest[k..k + end].to_string())
}

async fn kube_client(api: &StandIn) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(&api.kubeconfig_yaml())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    Ok(kube::Client::try_from(cfg)?)
}

/// All list pages of `kind` (limit 500).
async fn list_pages(client: &kube::Client, kind: Kind) -> anyhow::Result<Vec<String>> {
    let path = list_path(kind);
    let mut pages = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let mut uri = format!("{path}?limit=500");
        if let Some(c) = &cont {
            uri.push_str("&continue=");
            uri.push_str(c);
        }
        let req = http::Request::get(uri).body(Vec::new())?;
        let text = client.request_text(req).await?;
        cont = continue_of(&text);
        pages.push(text);
        if cont.is_none() {
            return Ok(pages);
        }
    }
}

fn rusage_self() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct ListRun {
    wall: Duration,
    cpu: Duration,
    bytes: usize,
    pages: usize,
    per_kind: Vec<(Kind, Duration, usize)>,
}

async fn list_all(
    client: &kube::Client,
    keep: bool,
) -> anyhow::Result<(ListRun, Vec<(Kind, Vec<String>)>)> {
    let cpu0 = rusage_self();
    let t = Instant::now();
    let tasks: Vec<_> = AGENT_KINDS
        .iter()
        .map(|&k| {
            let client = client.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let pages = list_pages(&client, k).await?;
                anyhow::Ok((k, t.elapsed(), pages))
            })
        })
        .collect();
    let mut per_kind = Vec::new();
    let mut all = Vec::new();
    let (mut bytes, mut npages) = (0, 0);
    for task in tasks {
        let (k, d, pages) = task.await??;
        let b: usize = pages.iter().map(String::len).sum();
        bytes += b;
        npages += pages.len();
        per_kind.push((k, d, b));
        if keep {
            all.push((k, pages));
        }
    }
    Ok((
        ListRun {
            wall: t.elapsed(),
            cpu: rusage_self() - cpu0,
            bytes,
            pages: npages,
            per_kind,
        },
        all,
    ))
}

// ---------------------------------------------------------------------------------------
// The agent process.

fn proc_status(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn proc_cpu(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((ut + st) / ticks))
}

#[derive(Debug, Default, Clone)]
struct AgentRun {
    sync: Option<Duration>,
    sync_logged_after: Option<String>,
    groups_found: Option<Duration>,
    rss_at_sync_kb: u64,
    hwm_at_sync_kb: u64,
    cpu_at_sync: Duration,
    rss_steady_kb: u64,
    hwm_steady_kb: u64,
    cpu_steady: Duration,
    standin_cpu: Duration,
    objects: Option<String>,
    errors: usize,
    warnings: usize,
    failed: Option<String>,
}

fn field_of(line: &str, key: &str) -> Option<String> {
    let i = line.find(&format!("{key}="))? + key.len() + 1;
    Some(line[i..].split_whitespace().next()?.to_string())
}

#[allow(clippy::too_many_arguments)]
fn run_agent(
    agent: &Path,
    kubeconfig: &Path,
    node: &str,
    dir: &Path,
    steady: Duration,
    timeout: Duration,
    rss_limit_kb: u64,
    env: &[String],
    perf: Option<&Path>,
) -> anyhow::Result<AgentRun> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let log_path = dir.join("agent.log");
    let mut cmd = Command::new(agent);
    cmd.args(["--datastore", "kubernetes", "--kubeconfig"])
        .arg(kubeconfig)
        .args([
            "--node-name",
            node,
            "--no-dataplane",
            "--http-address",
            "off",
            "--listen-address",
            "127.0.0.1",
        ])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--status-socket")
        .arg(dir.join("status.sock"))
        .env("NO_COLOR", "1")
        .env_remove("CALICO_API_GROUP")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for kv in env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    unsafe {
        use std::os::unix::process::CommandExt;
        // the agent dies with the harness, whatever happens to it
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let cpu_self0 = rusage_self();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let pid = child.id();
    let mut perf_child = match perf {
        Some(out) => Some(
            Command::new("perf")
                .args(["record", "-q", "-F", "999", "-o"])
                .arg(out)
                .args(["-p", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting perf")?,
        ),
        None => None,
    };
    let stderr = child.stderr.take().unwrap();
    let run = Arc::new(Mutex::new(AgentRun::default()));
    let synced = Arc::new(AtomicBool::new(false));
    let reader = {
        let run = run.clone();
        let synced = synced.clone();
        let mut log = std::fs::File::create(&log_path)?;
        std::thread::spawn(move || {
            use std::io::Write;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let now = start.elapsed();
                let _ = writeln!(log, "[{:9.3}] {line}", now.as_secs_f64());
                let mut r = run.lock().unwrap();
                if line.contains(" ERROR ") {
                    r.errors += 1;
                }
                if line.contains(" WARN ") {
                    r.warnings += 1;
                }
                if line.contains("Calico resources found") && r.groups_found.is_none() {
                    r.groups_found = Some(now);
                }
                if line.contains("datastore in sync") && r.sync.is_none() {
                    r.sync = Some(now);
                    r.sync_logged_after = field_of(&line, "after");
                    r.objects = field_of(&line, "objects");
                    // the samples right at the line
                    if let Some((rss, hwm)) = proc_status(pid) {
                        r.rss_at_sync_kb = rss;
                        r.hwm_at_sync_kb = hwm;
                    }
                    r.cpu_at_sync = proc_cpu(pid).unwrap_or_default();
                    synced.store(true, Ordering::SeqCst);
                }
            }
        })
    };
    // Wait for sync (or exit, timeout, RSS limit).
    let mut failed = None;
    let mut max_rss = 0;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(Some(st)) = child.try_wait() {
            failed = Some(format!("agent exited: {st}"));
            break;
        }
        if let Some((rss, _)) = proc_status(pid) {
            max_rss = max_rss.max(rss);
            if rss > rss_limit_kb {
                failed = Some(format!("RSS {rss} kB over the limit"));
                break;
            }
        }
        if synced.load(Ordering::SeqCst) {
            break;
        }
        if start.elapsed() > timeout {
            failed = Some(format!("no sync within {timeout:?}"));
            break;
        }
    }
    if let Some(mut p) = perf_child.take() {
        unsafe { libc::kill(p.id() as i32, libc::SIGINT) };
        let _ = p.wait();
    }
    if failed.is_none() {
        let t = Instant::now();
        while t.elapsed() < steady {
            std::thread::sleep(Duration::from_millis(100));
            if let Ok(Some(st)) = child.try_wait() {
                failed = Some(format!("agent exited after sync: {st}"));
                break;
            }
        }
    }
    let mut r = run.lock().unwrap().clone();
    if let Some((rss, hwm)) = proc_status(pid) {
        r.rss_steady_kb = rss;
        r.hwm_steady_kb = hwm;
    } else {
        r.hwm_steady_kb = max_rss;
    }
    r.cpu_steady = proc_cpu(pid).unwrap_or_default();
    r.standin_cpu = rusage_self() - cpu_self0; // the stand-in (and this harness's polling)
    r.failed = failed;
    // Stop it: SIGTERM, then SIGKILL after 5 s. By PID, the one we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let t = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if t.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = reader.join();
    let final_errors = run.lock().unwrap().errors;
    r.errors = final_errors;
    Ok(r)
}

fn stats(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = s[s.len() / 2];
    if s.len() == 1 {
        format!("{med:.2}")
    } else {
        format!("{med:.2} [{:.2}–{:.2}]", s[0], s[s.len() - 1])
    }
}

#[allow(clippy::too_many_arguments)]
fn cmd_run(
    c: Common,
    agent: PathBuf,
    reps: u32,
    steady: f64,
    timeout: f64,
    rss_limit_mb: u64,
    agent_env: Vec<String>,
    list_reps: u32,
    perf: Option<PathBuf>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&c.work)?;
    let (api, sizes, load) = start_loaded(&c)?;
    let kubeconfig = c.work.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let sc = Scale::of(c.scale);
    println!("## Datastore benchmark, scale {} ({} nodes, {} pods, {} services, {} network policies, {} namespaces)", c.scale, sc.nodes, sc.pods, sc.services, sc.policies, sc.namespaces);
    print_sizes(&sizes);
    println!(
        "\n(loaded into the stand-in in {:.1} s, in-process, `create_many` in chunks of 1,000)",
        load.as_secs_f64()
    );
    if let Some((rss, _)) = proc_status(std::process::id()) {
        println!(
            "stand-in process RSS with the objects (generator's memory trimmed): {:.0} MiB",
            rss as f64 / 1024.0
        );
    }

    // Stand-in alone.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut lists = Vec::new();
    rt.block_on(async {
        let client = kube_client(&api).await?;
        for _ in 0..list_reps {
            let (r, _) = list_all(&client, false).await?;
            lists.push(r);
        }
        anyhow::Ok(())
    })?;
    drop(rt);
    println!("\n### Stand-in alone: every kind listed (pages of 500, 13 kinds concurrently, HTTPS, bodies discarded)\n");
    let walls: Vec<f64> = lists.iter().map(|l| l.wall.as_secs_f64()).collect();
    let cpus: Vec<f64> = lists.iter().map(|l| l.cpu.as_secs_f64()).collect();
    let l0 = &lists[0];
    let objs: usize = sizes.values().map(|s| s.0).sum();
    println!("| what | value |");
    println!("|---|---|");
    println!("| wall time, all kinds (s) | {} |", stats(&walls));
    println!("| CPU time, server + client (s) | {} |", stats(&cpus));
    println!(
        "| pages / response bytes | {} / {:.1} MB |",
        l0.pages,
        mb(l0.bytes)
    );
    let best = walls.iter().cloned().fold(f64::MAX, f64::min);
    println!(
        "| throughput (best run) | {:.0} objects/s, {:.0} MB/s |",
        objs as f64 / best,
        mb(l0.bytes) / best
    );
    let mut slow: Vec<_> = l0.per_kind.clone();
    slow.sort_by_key(|(_, d, _)| std::cmp::Reverse(*d));
    let top: Vec<String> = slow
        .iter()
        .take(3)
        .map(|(k, d, b)| format!("{k} {:.2} s ({:.0} MB)", d.as_secs_f64(), mb(*b)))
        .collect();
    println!("| slowest kinds (first run) | {} |", top.join(", "));

    // The agent.
    let node = node_name(sc.nodes / 2);
    let mut runs = Vec::new();
    for i in 0..reps {
        eprintln!("agent run {}/{reps}", i + 1);
        let r = run_agent(
            &agent,
            &kubeconfig,
            &node,
            &c.work.join(format!("agent-{i}")),
            Duration::from_secs_f64(steady),
            Duration::from_secs_f64(timeout),
            rss_limit_mb * 1024,
            &agent_env,
            perf.as_ref()
                .map(|p| p.with_extension(format!("{i}")))
                .as_deref(),
        )?;
        eprintln!("  {r:?}");
        runs.push(r);
    }
    println!(
        "\n### brindle-node (release), {} runs, node {node}{}\n",
        runs.len(),
        if agent_env.is_empty() {
            String::new()
        } else {
            format!(", env {}", agent_env.join(" "))
        }
    );
    println!("| run | in sync after (s, from spawn) | agent's own `after` | Calico group found (s) | VmHWM at sync (MiB) | VmRSS at sync (MiB) | VmHWM +{steady:.0} s (MiB) | VmRSS +{steady:.0} s (MiB) | CPU to sync (s) | CPU +{steady:.0} s (s) | stand-in+harness CPU (s) | objects | ERROR/WARN lines | failed |");
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|");
    let k = |kb: u64| kb as f64 / 1024.0;
    for (i, r) in runs.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {}/{} | {} |",
            i + 1,
            r.sync.map_or("—".into(), |d| format!("{:.2}", d.as_secs_f64())),
            r.sync_logged_after.clone().unwrap_or_default(),
            r.groups_found.map_or("—".into(), |d| format!("{:.2}", d.as_secs_f64())),
            k(r.hwm_at_sync_kb),
            k(r.rss_at_sync_kb),
            k(r.hwm_steady_kb),
            k(r.rss_steady_kb),
            r.cpu_at_sync.as_secs_f64(),
            r.cpu_steady.as_secs_f64(),
            r.standin_cpu.as_secs_f64(),
            r.objects.clone().unwrap_or_default(),
            r.errors,
            r.warnings,
            r.failed.clone().unwrap_or_else(|| "no".into()),
        );
    }
    let ok: Vec<&AgentRun> = runs.iter().filter(|r| r.sync.is_some()).collect();
    let med = |f: &dyn Fn(&AgentRun) -> f64| stats(&ok.iter().map(|r| f(r)).collect::<Vec<_>>());
    println!("\nmedian [min–max]: in sync {} s; VmHWM {} MiB; steady VmRSS {} MiB; CPU to sync {} s; stand-in alone list {} s",
        med(&|r| r.sync.unwrap().as_secs_f64()),
        med(&|r| k(r.hwm_steady_kb)),
        med(&|r| k(r.rss_steady_kb)),
        med(&|r| r.cpu_at_sync.as_secs_f64()),
        stats(&walls));
    println!(
        "target: in sync ≤ 10 s, RSS ≤ 120 MB; agent logs in {}",
        c.work.display()
    );
    drop(api);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Profile: the agent's pipeline in-process.

#[derive(Default)]
struct Stage {
    time: Duration,
    bytes: isize,
}

impl Stage {
    fn row(&self, name: &str, n: usize) {
        println!(
            "| {name} | {:.3} | {:.1} | {:.0} |",
            self.time.as_secs_f64(),
            smb(self.bytes),
            self.bytes as f64 / n.max(1) as f64
        );
    }
}

/// Heap bytes of a value built by `f` (and the value).
fn measured<T>(f: impl FnOnce() -> T) -> (T, Duration, isize) {
    let b = live() as isize;
    let t = Instant::now();
    let v = f();
    (v, t.elapsed(), live() as isize - b)
}

fn cmd_profile(c: Common) -> anyhow::Result<()> {
    let sc = Scale::of(c.scale);
    let (api, sizes, _) = start_loaded(&c)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (lr, pages) = rt.block_on(async {
        let client = kube_client(&api).await?;
        list_all(&client, true).await
    })?;
    drop(rt);
    drop(api);
    println!(
        "## Profile of the agent's pipeline, scale {} ({} nodes, {} pods)",
        c.scale, sc.nodes, sc.pods
    );
    print_sizes(&sizes);
    println!(
        "\nlist pages fetched: {} pages, {:.1} MB, {:.2} s",
        lr.pages,
        mb(lr.bytes),
        lr.wall.as_secs_f64()
    );
    let base = live();
    println!("heap before (the pages): {:.1} MB\n", mb(base));

    let n_objects: usize = sizes.values().map(|s| s.0).sum();
    let mut s_decode = Stage::default(); // page → events, as the watchers decode
    let mut s_cache = Stage::default(); // Cache::apply (keeps the Object)
                                        // kind → (objects, decode time, cache time, cache bytes)
    let mut per_kind: BTreeMap<String, (usize, Duration, Duration, isize)> = BTreeMap::new();
    let mut cache = Cache::new();
    let mut page_peak = 0usize;
    let mut invalid = 0;
    let all_start = Instant::now();
    reset_peak();
    for (kind, kpages) in &pages {
        cache.apply(Event::Restart(*kind));
        let e = per_kind.entry(kind.to_string()).or_default();
        for page in kpages {
            let (events, t, b) = measured(|| {
                brindle::datastore::kubernetes::decode_list_page(*kind, CalicoGroup::CrdV1, page)
            });
            let events = events?;
            s_decode.time += t;
            s_decode.bytes += b;
            e.1 += t;
            for ev in events {
                e.0 += 1;
                if !matches!(ev, Event::Apply(_)) {
                    invalid += 1;
                    if invalid <= 5 {
                        eprintln!("not applied: {ev:?}");
                    }
                }
                let (_, t, cb) = measured(|| cache.apply(ev));
                s_cache.time += t;
                s_cache.bytes += cb;
                e.2 += t;
                e.3 += cb;
            }
            page_peak = page_peak.max(peak() - base);
        }
        cache.apply(Event::InSync(*kind));
    }
    let pipeline_time = all_start.elapsed();
    let cache_bytes = s_decode.bytes + s_cache.bytes;
    println!("### Per stage, all objects ({n_objects}; {invalid} not applied)\n");
    println!("| stage | time (s) | bytes produced (MB) | bytes/object |");
    println!("|---|---:|---:|---:|");
    s_decode.row("1. list page → events, as the watchers decode (Kubernetes kinds straight into the model, `datastore::slim`; Calico kinds through `DynamicObject` + `decode_json`)", n_objects);
    s_cache.row("2. `Cache::apply` (keeps the event's `Object`)", n_objects);
    println!("\npipeline total (1–2, one thread, no HTTP): {:.2} s; peak heap above the pages during it: {:.1} MB", pipeline_time.as_secs_f64(), mb(page_peak));
    println!(
        "cache after all objects: {:.1} MB ({:.0} bytes/object)",
        smb(cache_bytes),
        cache_bytes as f64 / n_objects as f64
    );
    println!("\nper kind (time in s):\n");
    println!("| kind | objects | 1. decode | 2. cache |");
    println!("|---|---:|---:|---:|");
    for (k, (n, t1, t2, _)) in &per_kind {
        println!(
            "| {k} | {n} | {:.3} | {:.3} |",
            t1.as_secs_f64(),
            t2.as_secs_f64()
        );
    }

    // 3. the snapshot, as wait_for_plan takes it.
    let before = reset_peak();
    let t = Instant::now();
    let (cfg, rejected) = cache.snapshot("kubernetes");
    let t_snap = t.elapsed();
    let snap_peak = peak() - before;
    let snap_bytes = live() as isize - before as isize;
    println!("\n### After sync\n");
    println!("| step | time (s) | heap (MB) |");
    println!("|---|---:|---:|");
    println!("| 3. `Cache::snapshot` (objects borrowed from the cache, Kubernetes objects shared by `Arc`; `from_shared_lenient`), result kept | {:.3} | {:.1} kept (peak +{:.1}) |", t_snap.as_secs_f64(), smb(snap_bytes), mb(snap_peak));
    if !rejected.is_empty() {
        println!("\nrejected: {} (first: {:?})", rejected.len(), rejected[0]);
    }
    let node = node_name(sc.nodes / 2);
    let (plan, t_plan, _) = measured(|| brindle::calc::node_plan(&cfg, &node));
    let plan = plan?;
    println!("| 4. `node_plan` | {:.3} | — |", t_plan.as_secs_f64());
    let (model, t_model, b_model) = measured(|| brindle::dataplane::base_model(&cfg, &plan));
    println!(
        "| 5. `dataplane::base_model` | {:.3} | {:.1} |",
        t_model.as_secs_f64(),
        smb(b_model)
    );
    drop(model);
    println!(
        "\nheap held after sync: cache {:.1} MB + a snapshot {:.1} MB = {:.1} MB",
        smb(cache_bytes),
        smb(snap_bytes),
        smb(cache_bytes + snap_bytes)
    );
    Ok(())
}

/// The quadratic parts of the snapshot and the plan, with Calico objects and Nodes only.
fn cmd_checks(scale: f64) -> anyhow::Result<()> {
    let sc = Scale::of(scale);
    let mut objects = Vec::new();
    for v in calico_objects(&sc)
        .into_iter()
        .chain((0..sc.nodes).map(node))
    {
        let kind = match v["kind"].as_str().unwrap_or("") {
            "Node" => Kind::Node,
            "BGPConfiguration" => Kind::BgpConfiguration,
            "IPPool" => Kind::IpPool,
            "IPAMConfig" => Kind::IpamConfig,
            _ => Kind::BlockAffinity,
        };
        let ar = api_resource(kind, CalicoGroup::CrdV1);
        if let Event::Apply(o) = decode(kind, &ar, v) {
            objects.push(*o);
        }
    }
    let n = objects.len();
    let node = node_name(sc.nodes / 2);
    let mut times = Vec::new();
    for _ in 0..3 {
        let copy = objects.clone();
        let t = Instant::now();
        let mut rej = Vec::new();
        let cfg = brindle_model::ClusterConfig::from_objects_lenient("kubernetes", copy, &mut rej);
        let t_checks = t.elapsed();
        let t = Instant::now();
        let plan = brindle::calc::node_plan(&cfg, &node)?;
        let t_plan = t.elapsed();
        let t = Instant::now();
        let model = brindle::dataplane::base_model(&cfg, &plan);
        let t_model = t.elapsed();
        anyhow::ensure!(rej.is_empty(), "rejected: {rej:?}");
        anyhow::ensure!(model.remote_nodes.len() + 1 == sc.nodes);
        times.push((t_checks, t_plan, t_model));
    }
    let f = |i: usize| {
        stats(
            &times
                .iter()
                .map(|t| [t.0, t.1, t.2][i].as_secs_f64())
                .collect::<Vec<_>>(),
        )
    };
    println!("\n### Cross-object checks and plan with {} Nodes + {} BlockAffinities ({n} objects, no pods; 3 samples)\n", sc.nodes, sc.nodes);
    println!("| step | time (s) |");
    println!("|---|---:|");
    println!("| `from_objects_lenient` (validate: pairwise node addresses, pairwise blocks, `node_exists` scans) | {} |", f(0));
    println!("| `node_plan` | {} |", f(1));
    println!(
        "| `dataplane::base_model` (`active_blocks` per remote node) | {} |",
        f(2)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            common,
            agent,
            reps,
            steady,
            timeout,
            rss_limit_mb,
            agent_env,
            list_reps,
            perf,
        } => cmd_run(
            common,
            agent,
            reps,
            steady,
            timeout,
            rss_limit_mb,
            agent_env,
            list_reps,
            perf,
        ),
        Cmd::Profile {
            common,
            checks_scale,
        } => {
            cmd_profile(common)?;
            cmd_checks(checks_scale)
        }
        Cmd::Sample { scale } => {
            let sc = Scale::of(scale);
            for (kind, objs) in generate(&sc) {
                let total: usize = objs.iter().map(|o| o.to_string().len()).sum();
                let mut seen = std::collections::BTreeSet::new();
                for o in &objs {
                    let k = o["kind"].as_str().unwrap_or(kind).to_string();
                    if seen.insert(k.clone()) {
                        println!(
                            "# {k}: {} bytes\n{}",
                            o.to_string().len(),
                            serde_json::to_string_pretty(o)?
                        );
                    }
                }
                println!(
                    "# {kind}: {} objects, average {} bytes",
                    objs.len(),
                    total / objs.len().max(1)
                );
            }
            Ok(())
        }
    }
}
