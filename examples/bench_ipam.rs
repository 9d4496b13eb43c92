//! Benchmark (not a test): allocation throughput of Brindle's IPAM (`brindle::ipam`,
//! Calico's algorithm) under contention.
//!
//! Run it through `scripts/bench-ipam.sh` (release build). Workload per scenario:
//! `--nodes` simulated nodes × `--workers` concurrent workers per node; each worker does
//! `--ops` allocations (`Ipam::auto_assign`, one IPv4 address, its own handle
//! `k8s-pod-network.<node>-<worker>-<i>`) and keeps at most `--window` addresses: past that
//! it releases its oldest (`Ipam::release_by_handle`), so allocations and releases
//! interleave and the blocks stay partly full, as on a node with pod churn. At the end
//! every worker releases what it still holds. Every allocation and release is timed.
//!
//! Scenarios (rows of the table):
//! - `memory, multi-thread`: [`MemoryStore`] on a multi-thread tokio runtime (one worker
//!   thread per CPU), every worker a task; with `--conflicts` also the same with every
//!   `n`-th write refused (`MemoryStore::inject_conflict_every`).
//! - `memory, current-thread`: the same tasks on a current-thread runtime. `MemoryStore`
//!   never suspends, so the tasks run one after another: no contention, the baseline.
//! - `file`: [`FileStore`] (file mode: one JSON file per object, `flock`, every write
//!   `fsync`ed and renamed), one directory shared by every worker, each worker an OS
//!   thread with its own store instance and current-thread runtime (as concurrent CNI
//!   processes on nodes sharing a directory); the same number of allocations with 1
//!   thread, with one thread per node, and with every worker.
//!
//! Reported per scenario: allocations/s (allocations only, wall time of the whole run
//! including the releases), p50/p99/max per-allocation and per-release latency,
//! conflicts returned by the store (real compare-and-swap losses plus injected ones;
//! the allocator retried each), peak RSS (VmHWM, reset before each scenario through
//! `/proc/self/clear_refs`). After each scenario the store is checked: no address was
//! held by two workers at once, and nothing is left allocated (0 leaks).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brindle::ipam::file::FileStore;
use brindle::ipam::objects::IpamObject;
use brindle::ipam::store::StoreResult;
use brindle::ipam::{Block, Ipam, IpamSettings, MemoryStore, Request, Store, Versioned};
use brindle_model::{AllowedUse, AssignmentMode, EncapMode, IpPoolSpec, Selector};
use clap::Parser;

#[derive(Parser, Clone)]
#[command(about = "IPAM allocation throughput under contention")]
struct Cli {
    /// Simulated nodes.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Concurrent workers per node.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Allocations per worker (memory store).
    #[arg(long, default_value_t = 1000)]
    ops: usize,
    /// Allocations per worker (file store; the same total again with 1 thread and with
    /// one thread per node).
    #[arg(long, default_value_t = 50)]
    file_ops: usize,
    /// Addresses a worker keeps before releasing its oldest.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Injected conflict rates to run besides 0 (every n-th write refused), comma-separated.
    #[arg(long, default_value = "7")]
    conflicts: String,
    /// Pool CIDR and block size.
    #[arg(long, default_value = "10.64.0.0/16")]
    pool: String,
    #[arg(long, default_value_t = 26)]
    block_size: u8,
    /// Directory for the file store (a fresh subdirectory per run is made in it).
    #[arg(long, default_value = "/tmp")]
    work: std::path::PathBuf,
    /// Repetitions of each scenario.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Skip the file store.
    #[arg(long)]
    no_file: bool,
}

fn pool(cidr: &str, block_size: u8) -> IpPoolSpec {
    IpPoolSpec {
        name: "bench".into(),
        cidr: cidr.parse().expect("pool CIDR"),
        block_size,
        ipip_mode: EncapMode::Never,
        vxlan_mode: EncapMode::Never,
        nat_outgoing: false,
        disabled: false,
        disable_bgp_export: false,
        node_selector: Selector::parse("all()").expect("all()"),
        allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
        assignment_mode: AssignmentMode::Automatic,
        namespace_selector: None,
    }
}

fn request(node: &str, handle: &str) -> Request {
    Request {
        handle: handle.into(),
        node: node.into(),
        owner: [("node".to_string(), node.to_string())].into(),
        num_v4: 1,
        ..Request::default()
    }
}

// ---------------------------------------------------------------------------------------
// A store wrapper counting what the store answered.

struct Counted<S> {
    inner: S,
    conflicts: AtomicU64,
    writes: AtomicU64,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Counted {
            inner,
            conflicts: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }
    fn count<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        if let Err(e) = &r {
            if e.is_conflict() {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
}

impl<S: Store> Store for Counted<S> {
    async fn get<T: IpamObject>(&self, name: &str) -> StoreResult<Versioned<T>> {
        self.inner.get(name).await
    }
    async fn list<T: IpamObject>(&self) -> StoreResult<Vec<Versioned<T>>> {
        self.inner.list().await
    }
    async fn create<T: IpamObject>(&self, value: T) -> StoreResult<Versioned<T>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.count(self.inner.create(value).await)
    }
    async fn update<T: IpamObject>(&self, obj: Versioned<T>) -> StoreResult<Versioned<T>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.count(self.inner.update(obj).await)
    }
    async fn delete<T: IpamObject>(&self, obj: Versioned<T>) -> StoreResult<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.count(self.inner.delete(obj).await)
    }
}

// ---------------------------------------------------------------------------------------
// The workload.

/// Who holds which address now: a second holder is a duplicate.
#[derive(Default)]
struct Holders {
    map: Mutex<HashMap<IpAddr, String>>,
    duplicates: AtomicU64,
}

impl Holders {
    fn take(&self, ip: IpAddr, h: &str) {
        if let Some(other) = self.map.lock().unwrap().insert(ip, h.to_string()) {
            eprintln!("DUPLICATE: {ip} held by {other} and {h}");
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn give(&self, ip: IpAddr) {
        self.map.lock().unwrap().remove(&ip);
    }
}

#[derive(Default)]
struct Samples {
    alloc: Vec<Duration>,
    release: Vec<Duration>,
}

/// One worker: `ops` allocations, releasing its oldest past `window`, then everything.
async fn worker<S: Store>(
    ipam: &Ipam<S>,
    holders: &Holders,
    node: usize,
    w: usize,
    ops: usize,
    window: usize,
) -> Samples {
    let node_name = format!("node-{node}");
    let mut held: VecDeque<(String, IpAddr)> = VecDeque::new();
    let mut s = Samples::default();
    for i in 0..ops {
        let handle = format!("k8s-pod-network.{node}-{w}-{i}");
        let t = Instant::now();
        let got = ipam
            .auto_assign(&request(&node_name, &handle))
            .await
            .unwrap_or_else(|e| panic!("assign {handle}: {e}"));
        s.alloc.push(t.elapsed());
        let ip = got.v4[0].ip();
        holders.take(ip, &handle);
        held.push_back((handle, ip));
        if held.len() > window {
            let (h, ip) = held.pop_front().unwrap();
            release(ipam, holders, &h, ip, &mut s).await;
        }
    }
    while let Some((h, ip)) = held.pop_front() {
        release(ipam, holders, &h, ip, &mut s).await;
    }
    s
}

async fn release<S: Store>(
    ipam: &Ipam<S>,
    holders: &Holders,
    h: &str,
    ip: IpAddr,
    s: &mut Samples,
) {
    holders.give(ip);
    let t = Instant::now();
    let n = ipam.release_by_handle(h).await.expect("release");
    s.release.push(t.elapsed());
    assert_eq!(n, 1, "release {h}");
}

// ---------------------------------------------------------------------------------------
// Measurement helpers.

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    let u = d.as_secs_f64() * 1e6;
    if u >= 10_000.0 {
        format!("{:.1} ms", u / 1000.0)
    } else if u >= 1000.0 {
        format!("{:.2} ms", u / 1000.0)
    } else {
        format!("{u:.0} µs")
    }
}

struct Outcome {
    wall: Duration,
    samples: Samples,
    conflicts: u64,
    injected: u64,
    writes: u64,
    blocks: usize,
    left: usize,
    duplicates: u64,
    hwm_kb: u64,
}

fn row(name: &str, allocations: usize, outs: &[Outcome]) {
    // The repetition with the median wall time is shown; the allocation rate of every
    // repetition too.
    let mut idx: Vec<usize> = (0..outs.len()).collect();
    idx.sort_by_key(|&i| outs[i].wall);
    let o = &outs[idx[idx.len() / 2]];
    let allocs = allocations as f64;
    let rates: Vec<String> = outs
        .iter()
        .map(|o| format!("{:.0}", allocs / o.wall.as_secs_f64()))
        .collect();
    let mut a = o.samples.alloc.clone();
    a.sort();
    let mut r = o.samples.release.clone();
    r.sort();
    println!(
        "| {name} | {} | **{:.0}** ({}) | {} / {} / {} | {} / {} | {} ({} injected) | {:.2} | {} | {} | {} | {:.1} |",
        allocs as u64,
        allocs / o.wall.as_secs_f64(),
        rates.join(", "),
        us(pct(&a, 0.5)),
        us(pct(&a, 0.99)),
        us(*a.last().unwrap_or(&Duration::ZERO)),
        us(pct(&r, 0.5)),
        us(pct(&r, 0.99)),
        o.conflicts,
        o.injected,
        (o.writes as f64) / allocs,
        o.blocks,
        o.duplicates,
        o.left,
        o.hwm_kb as f64 / 1024.0,
    );
}

async fn finish<S: Store>(
    ipam: &Ipam<Counted<S>>,
    holders: &Holders,
    wall: Duration,
    samples: Samples,
    injected: u64,
) -> Outcome {
    let blocks = ipam.store.inner.list::<Block>().await.expect("list blocks");
    let left = blocks.iter().map(|b| b.value.in_use().count()).sum();
    Outcome {
        wall,
        samples,
        conflicts: ipam.store.conflicts.load(Ordering::Relaxed),
        injected,
        writes: ipam.store.writes.load(Ordering::Relaxed),
        blocks: blocks.len(),
        left,
        duplicates: holders.duplicates.load(Ordering::Relaxed),
        hwm_kb: status_kb("VmHWM:"),
    }
}

fn run_memory(cli: &Cli, multi: bool, conflict_every: u64) -> Outcome {
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread().build()
    }
    .expect("runtime");
    reset_hwm();
    rt.block_on(async {
        let store = MemoryStore::new();
        store.inject_conflict_every(conflict_every);
        let ipam = Arc::new(Ipam::new(
            Counted::new(store),
            vec![pool(&cli.pool, cli.block_size)],
            IpamSettings::default(),
        ));
        let holders = Arc::new(Holders::default());
        let t = Instant::now();
        let mut tasks = Vec::new();
        for n in 0..cli.nodes {
            for w in 0..cli.workers {
                let (ipam, holders) = (ipam.clone(), holders.clone());
                let (ops, window) = (cli.ops, cli.window);
                tasks.push(tokio::spawn(async move {
                    worker(&ipam, &holders, n, w, ops, window).await
                }));
            }
        }
        let mut all = Samples::default();
        for t in tasks {
            let s = t.await.expect("worker");
            all.alloc.extend(s.alloc);
            all.release.extend(s.release);
        }
        let wall = t.elapsed();
        let injected = ipam.store.inner.injected_conflicts();
        finish(&ipam, &holders, wall, all, injected).await
    })
}

fn run_file(cli: &Cli, nodes: usize, workers: usize, ops: usize, rep: usize) -> Outcome {
    let dir = cli
        .work
        .join(format!("bench-ipam-{}-{rep}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    reset_hwm();
    let holders = Arc::new(Holders::default());
    let counters: Arc<Mutex<(u64, u64)>> = Arc::default();
    let pools = vec![pool(&cli.pool, cli.block_size)];
    let t = Instant::now();
    let mut threads = Vec::new();
    for n in 0..nodes {
        for w in 0..workers {
            let (holders, counters, pools, dir) = (
                holders.clone(),
                counters.clone(),
                pools.clone(),
                dir.clone(),
            );
            let window = cli.window;
            threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let ipam = Ipam::new(
                        Counted::new(FileStore::new(&dir)),
                        pools,
                        IpamSettings::default(),
                    );
                    let s = worker(&ipam, &holders, n, w, ops, window).await;
                    let mut c = counters.lock().unwrap();
                    c.0 += ipam.store.conflicts.load(Ordering::Relaxed);
                    c.1 += ipam.store.writes.load(Ordering::Relaxed);
                    s
                })
            }));
        }
    }
    let mut all = Samples::default();
    for t in threads {
        let s = t.join().expect("worker");
        all.alloc.extend(s.alloc);
        all.release.extend(s.release);
    }
    let wall = t.elapsed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut o = rt.block_on(async {
        let ipam = Ipam::new(
            Counted::new(FileStore::new(&dir)),
            pools,
            IpamSettings::default(),
        );
        finish(&ipam, &holders, wall, all, 0).await
    });
    let c = counters.lock().unwrap();
    (o.conflicts, o.writes) = (c.0, c.1);
    let _ = std::fs::remove_dir_all(&dir);
    o
}

fn main() {
    let cli = Cli::parse();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut rates: Vec<u64> = vec![0];
    for c in cli.conflicts.split(',').filter(|s| !s.is_empty()) {
        rates.push(c.trim().parse().expect("--conflicts: numbers"));
    }
    println!(
        "{} nodes × {} workers; {} allocations per worker ({} with the file store), window {}; pool {} /{} blocks; {cpus} CPUs; {} repetitions (the median one shown; allocations/s of each in parentheses)\n",
        cli.nodes, cli.workers, cli.ops, cli.file_ops, cli.window, cli.pool, cli.block_size, cli.reps
    );
    println!("| store, runtime | conflicts injected | allocations | allocations/s | allocation p50 / p99 / max | release p50 / p99 | store conflicts retried | store writes per allocation (with its release) | blocks | duplicates | left allocated | VmHWM (MiB) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut failed = false;
    let mut check = |outs: &[Outcome]| {
        for o in outs {
            if o.duplicates > 0 || o.left > 0 {
                failed = true;
            }
        }
    };
    for (multi, label) in [
        (true, "memory, multi-thread"),
        (false, "memory, current-thread"),
    ] {
        for &every in &rates {
            if !multi && every != 0 {
                continue;
            }
            let outs: Vec<Outcome> = (0..cli.reps)
                .map(|_| run_memory(&cli, multi, every))
                .collect();
            let inj = if every == 0 {
                "none".to_string()
            } else {
                format!("every {every}th write")
            };
            row(
                &format!("{label} | {inj}"),
                cli.nodes * cli.workers * cli.ops,
                &outs,
            );
            check(&outs);
        }
    }
    if !cli.no_file {
        // The same number of allocations with 1 thread, one per node, and all workers.
        let total = cli.nodes * cli.workers * cli.file_ops;
        let mut configs = vec![(1, 1), (cli.nodes, 1), (cli.nodes, cli.workers)];
        configs.dedup();
        for (nodes, workers) in configs {
            let ops = total / (nodes * workers);
            let outs: Vec<Outcome> = (0..cli.reps)
                .map(|r| run_file(&cli, nodes, workers, ops, r))
                .collect();
            row(
                &format!(
                    "file (flock, fsync), {nodes} node(s) × {workers} = {} thread(s), a store instance each | none",
                    nodes * workers
                ),
                nodes * workers * ops,
                &outs,
            );
            check(&outs);
        }
    }
    if failed {
        eprintln!("FAILED: duplicates or leaks (see the table)");
        std::process::exit(1);
    }
}
