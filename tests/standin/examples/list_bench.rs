//! Micro-benchmark of the stand-in (not a test): loads N pods (`StandIn::create_many`)
//! and lists them over HTTPS in pages of 500, as kube-rs' watcher lists, bodies read
//! and discarded; prints the load and list times and the process's RSS.
//!
//! ```sh
//! cargo run --release -p brindle-kube-standin --example list_bench -- 100000
//! ```
//! Arguments: `[PODS (default 100000)] [LIST REPETITIONS (default 3)]`.

use std::time::Instant;

use brindle_kube_standin::{Config, StandIn};
use serde_json::{json, Value};

/// A pod of about 2.5 KB of JSON, shaped as a real one (labels, annotations, owner,
/// two containers, status with conditions).
fn pod(i: usize) -> Value {
    let ns = format!("ns-{}", i % 50);
    let app = format!("app-{}", i % 400);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{app}-{:08x}-{i}", i.wrapping_mul(2_654_435_761) as u32),
            "namespace": ns,
            "labels": {"app": app, "pod-template-hash": format!("{:x}", i % 400 * 7919), "tier": "backend"},
            "annotations": {
                "cni.projectcalico.org/podIP": format!("10.{}.{}.{}/32", 128 + i / 65536 % 16, i / 256 % 256, i % 256),
                "cni.projectcalico.org/containerID": format!("{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-rs"), "uid": "0c7e1f7a-3f3b-4a5e-9f69-2f0d3b1c6a11", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "nodeName": format!("node-{:05}", i / 20),
            "serviceAccountName": "default",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "containers": [
                {"name": "app", "image": format!("registry.example.com/{app}:1.2.3"), "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                 "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"},
                {"name": "sidecar", "image": "registry.example.com/proxy:2.0.1", "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"},
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": format!("10.{}.{}.{}", 128 + i / 65536 % 16, i / 256 % 256, i % 256),
            "hostIP": format!("172.20.{}.{}", i / 20 / 256 % 256, i / 20 % 256),
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": format!("registry.example.com/{app}:1.2.3"), "state": {"running": {"startedAt": "2026-01-01T00:00:04Z"}}},
                {"name": "sidecar", "ready": true, "restartCount": 0, "image": "registry.example.com/proxy:2.0.1", "state": {"running": {"startedAt": "2026-01-01T00:00:04Z"}}},
            ],
        },
    })
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The list's `metadata.continue` (the list metadata comes before the items).
fn continue_of(page: &[u8]) -> Option<String> {
    let head = &page[..page.len().min(4096)];
    let head = String::from_utf8_lossy(head);
    let meta = &head[head.find("\"metadata\":{")?..];
    let meta = &meta[..meta.find('}')?];
    let k = meta.find("\"continue\":\"")? + "\"continue\":\"".len();
    let end = meta[k..].find('"')?;
    Some(meta[k..k + end].to_string())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let reps: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let api = StandIn::start(Config::default())?;
    let rss0 = rss_mib();
    let namespaces: Vec<Value> = (0..50)
        .map(|i| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{i}")}}))
        .collect();
    api.create_many(namespaces)?;
    let mut load = std::time::Duration::ZERO;
    let mut json_bytes = 0;
    const CHUNK: usize = 1_000;
    for start in (0..n).step_by(CHUNK) {
        let objs: Vec<Value> = (start..n.min(start + CHUNK)).map(pod).collect();
        json_bytes += objs
            .iter()
            .map(|o| serde_json::to_vec(o).map_or(0, |v| v.len()))
            .sum::<usize>();
        let t = Instant::now();
        api.create_many(objs)?;
        load += t.elapsed();
    }
    // The generator's freed memory back to the system, so that RSS is the store's.
    #[cfg(target_os = "linux")]
    unsafe {
        libc_malloc_trim();
    }
    let rss_loaded = rss_mib();
    println!(
        "{n} pods ({:.0} MB of JSON) loaded with create_many in {:.2} s; RSS {:.0} MiB before, {:.0} MiB after ({:.0} bytes/pod)",
        json_bytes as f64 / 1e6,
        load.as_secs_f64(),
        rss0,
        rss_loaded,
        (rss_loaded - rss0) * 1048576.0 / n.max(1) as f64
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::from_yaml(&api.kubeconfig_yaml())?;
        let cfg = kube::Config::from_custom_kubeconfig(
            kc,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(cfg)?;
        let mut peak = rss_loaded;
        for rep in 0..reps {
            let t = Instant::now();
            let (mut pages, mut bytes, mut cont) = (0usize, 0usize, None::<String>);
            loop {
                let mut uri = "/api/v1/pods?limit=500".to_string();
                if let Some(c) = &cont {
                    uri.push_str("&continue=");
                    uri.push_str(c);
                }
                let req = http::Request::get(uri).body(Vec::new())?;
                let body = client.request_text(req).await?;
                pages += 1;
                bytes += body.len();
                cont = continue_of(body.as_bytes());
                peak = peak.max(rss_mib());
                if cont.is_none() {
                    break;
                }
            }
            println!(
                "list {}: {pages} pages, {:.0} MB in {:.2} s ({:.0} pods/s); RSS {:.0} MiB (peak seen {:.0} MiB)",
                rep + 1,
                bytes as f64 / 1e6,
                t.elapsed().as_secs_f64(),
                n as f64 / t.elapsed().as_secs_f64(),
                rss_mib(),
                peak
            );
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

#[cfg(target_os = "linux")]
unsafe fn libc_malloc_trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    malloc_trim(0);
}
