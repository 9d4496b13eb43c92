//! Policy programming benchmark (BENCHMARKS.md "Network policy"): in a network namespace
//! it creates (and deletes), N endpoints in 50 namespaces and P Kubernetes
//! NetworkPolicies (each a pod selector, two peers, two ports): the time to compile,
//! resolve and render, the full apply (ipsets + iptables-restore) against one
//! `iptables-restore` of the same final text measured in the same run (the limit), and
//! then incremental changes (one pod added, one policy changed, one label changed):
//! time and chains rewritten. Run as root:
//!
//! ```text
//! cargo build --release -p brindle-felix --example bench_policy
//! sudo target/release/examples/bench_policy --endpoints 1000 --policies 500
//! ```

use brindle_felix::policy_apply::PolicyApplier;
use brindle_felix::policy_render::{render, Family};
use brindle_policies::resolve::resolve;
use std::os::fd::AsRawFd;

use std::process::Command;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cluster(
    endpoints: usize,
    policies: usize,
    extra_label: Option<usize>,
) -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut v = Vec::new();
    for i in 0..endpoints {
        let role = if extra_label == Some(i) {
            "changed"
        } else {
            ["web", "api", "db", "cache"][i % 4]
        };
        v.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i}"), "namespace": format!("ns{}", i % 50),
                         "labels": {"role": role, "shard": format!("s{}", i % 20)}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256)}}));
    }
    for j in 0..policies {
        let ns = j % 50;
        let target = ["api", "db", "cache"][j % 3];
        v.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("np{j}"), "namespace": format!("ns{ns}")},
            "spec": {"podSelector": {"matchLabels": {"role": target}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "web"}}},
                                           {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": format!("ns{}", (ns + 1) % 50)}}}],
                                  "ports": [{"port": 5000 + j}, {"port": "http"}]}]}}));
    }
    v
}

struct Run {
    compile: Duration,
    apply: Duration,
    chains: usize,
}

fn program_for(
    objects: &[serde_json::Value],
    endpoints: usize,
) -> (brindle_felix::policy_render::Rendered, Duration) {
    let t = Instant::now();
    let decoded: Vec<brindle_model::Object> = objects
        .iter()
        .filter_map(|o| brindle_model::decode_json("bench", o).expect("bench object decodes"))
        .collect();
    let cfg = brindle_model::ClusterConfig::from_objects("bench", decoded)
        .expect("bench cluster is valid");
    let (program, _) = brindle_policies::program_of(&cfg);
    let world = brindle_policies::world_of(&cfg);
    let local: Vec<(String, std::net::IpAddr)> = world
        .endpoints
        .iter()
        .take(endpoints)
        .enumerate()
        .map(|(i, e)| (format!("cali{i:011x}"), e.ips[0]))
        .collect();
    let out = render(&resolve(&program, &world, &local), Family::V4);
    (out, t.elapsed())
}

fn apply(a: &mut PolicyApplier, objects: &[serde_json::Value], endpoints: usize) -> Run {
    let (out, compile) = program_for(objects, endpoints);
    let t = Instant::now();
    let r = a.apply(Family::V4, &out, false);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    Run {
        compile,
        apply: t.elapsed(),
        chains: r.chains_written,
    }
}

fn main() {
    let endpoints = arg("--endpoints", 1000);
    let policies = arg("--policies", 500);
    let ns = format!("brlbench{}", std::process::id());
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns on this (the main) thread; every tool run inherits the namespace.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    let result = std::panic::catch_unwind(|| bench(endpoints, policies));
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn bench(endpoints: usize, policies: usize) {
    let base = cluster(endpoints, policies, None);
    let (out, _) = program_for(&base, endpoints);
    let rules = out.filter.lines().filter(|l| l.starts_with("-A ")).count();
    println!(
        "{endpoints} endpoints, {policies} policies: {} chains, {rules} rules, {} ipsets",
        out.chains.len(),
        out.ipsets.len()
    );

    // The limit: one iptables-restore of the same final text, the sets already there
    // (an apply creates them; its chains are then removed, its sets kept).
    let mut a = PolicyApplier::new();
    let first = apply(&mut a, &base, endpoints);
    let r = a.remove_table(Family::V4, "filter", &[]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let file = std::env::temp_dir().join(format!("brl-bench-{}.rules", std::process::id()));
    std::fs::write(&file, &out.filter).unwrap();
    let t = Instant::now();
    let st = Command::new("sh")
        .args([
            "-c",
            &format!("iptables-restore --noflush < {}", file.display()),
        ])
        .status()
        .unwrap();
    let bare = t.elapsed();
    assert!(st.success());
    let _ = std::fs::remove_file(&file);
    a.remove(Family::V4);

    let mut a = PolicyApplier::new();
    let full = apply(&mut a, &base, endpoints);
    println!(
        "full program: compile+resolve+render {:.1} ms, apply {:.1} ms ({} chains); one iptables-restore of the same text {:.1} ms; apply / restore = {:.2}x (first run, cold: {:.1} ms)",
        full.compile.as_secs_f64() * 1e3,
        full.apply.as_secs_f64() * 1e3,
        full.chains,
        bare.as_secs_f64() * 1e3,
        full.apply.as_secs_f64() / bare.as_secs_f64(),
        first.apply.as_secs_f64() * 1e3
    );
    let same = apply(&mut a, &base, endpoints);
    println!(
        "re-apply unchanged: {:.1} ms, {} chains written",
        same.apply.as_secs_f64() * 1e3,
        same.chains
    );
    // One pod added.
    let mut added = base.clone();
    added.push(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "extra", "namespace": "ns0", "labels": {"role": "db"}},
        "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "podIP": "10.99.0.1"}}));
    let r = apply(&mut a, &added, endpoints + 1);
    println!(
        "one pod added: compile {:.1} ms + apply {:.1} ms, {} chains written",
        r.compile.as_secs_f64() * 1e3,
        r.apply.as_secs_f64() * 1e3,
        r.chains
    );
    // One policy changed (a port).
    let mut changed = base.clone();
    let np0 = changed
        .iter_mut()
        .find(|o| o["kind"] == "NetworkPolicy")
        .unwrap();
    np0["spec"]["ingress"][0]["ports"][0]["port"] = serde_json::json!(4999);
    let r = apply(&mut a, &changed, endpoints);
    println!(
        "one policy changed: compile {:.1} ms + apply {:.1} ms, {} chains written",
        r.compile.as_secs_f64() * 1e3,
        r.apply.as_secs_f64() * 1e3,
        r.chains
    );
    // One label changed.
    let relabel = cluster(endpoints, policies, Some(1));
    let r = apply(&mut a, &relabel, endpoints);
    println!(
        "one label changed: compile {:.1} ms + apply {:.1} ms, {} chains written",
        r.compile.as_secs_f64() * 1e3,
        r.apply.as_secs_f64() * 1e3,
        r.chains
    );
    a.remove(Family::V4);
}
