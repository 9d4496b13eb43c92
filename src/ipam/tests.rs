//! The allocator against the in-memory store: claims, borrowing, release, a migrated
//! cluster's Calico objects, and concurrency with injected conflicts.

use super::*;
use brindle_model::{AllowedUse, AssignmentMode, EncapMode, IpPoolSpec, Selector};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

pub(crate) fn pool(name: &str, cidr: &str, block_size: u8) -> IpPoolSpec {
    IpPoolSpec {
        name: name.into(),
        cidr: cidr.parse().unwrap(),
        block_size,
        ipip_mode: EncapMode::Never,
        vxlan_mode: EncapMode::Never,
        nat_outgoing: false,
        disabled: false,
        disable_bgp_export: false,
        node_selector: Selector::parse("all()").unwrap(),
        allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
        assignment_mode: AssignmentMode::Automatic,
        namespace_selector: None,
    }
}

fn req(node: &str, handle: &str) -> Request {
    Request {
        handle: handle.into(),
        node: node.into(),
        owner: BTreeMap::from([("node".to_string(), node.to_string())]),
        num_v4: 1,
        ..Request::default()
    }
}

/// [`report::consistency`] over everything in the store.
pub(crate) async fn check_consistent<S: Store>(store: &S) -> Vec<String> {
    let values = |v: Vec<Versioned<_>>| v.into_iter().map(|v| v.value).collect::<Vec<_>>();
    let blocks: Vec<Block> = values(store.list::<Block>().await.unwrap());
    let handles: Vec<Handle> = store
        .list::<Handle>()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    let affinities: Vec<Affinity> = store
        .list::<Affinity>()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    report::consistency(&blocks, &handles, &affinities)
}

#[tokio::test]
async fn claims_a_block_per_node_and_reuses_it() {
    let ipam = Ipam::new(
        MemoryStore::new(),
        vec![pool("p", "10.65.0.0/24", 28)],
        IpamSettings::default(),
    );
    let a1 = ipam.auto_assign(&req("n1", "h1")).await.unwrap();
    let a2 = ipam.auto_assign(&req("n1", "h2")).await.unwrap();
    let b1 = ipam.auto_assign(&req("n2", "h3")).await.unwrap();
    let block = |a: &Assigned| IpNetwork::new(a.v4[0].ip(), 28).unwrap().network();
    assert_eq!(block(&a1), block(&a2), "one node, one block");
    assert_ne!(block(&a1), block(&b1), "two nodes, two blocks");
    assert_eq!(a1.v4[0].prefix(), 32);
    assert_eq!(ipam.ips_by_handle("h2").await.unwrap(), vec![a2.v4[0].ip()]);
    assert!(check_consistent(&ipam.store).await.is_empty());
    // Release is idempotent.
    assert_eq!(ipam.release_by_handle("h1").await.unwrap(), 1);
    assert_eq!(ipam.release_by_handle("h1").await.unwrap(), 0);
    assert!(ipam
        .store
        .list::<Handle>()
        .await
        .unwrap()
        .iter()
        .all(|h| h.value.handle_id != "h1"));
    // The affine block stays, empty addresses and all.
    assert_eq!(ipam.store.list::<Block>().await.unwrap().len(), 2);
    assert!(check_consistent(&ipam.store).await.is_empty());
}

#[tokio::test]
async fn dual_stack_and_reserved_and_pool_choice() {
    let mut manual = pool("manual", "10.99.0.0/24", 26);
    manual.assignment_mode = AssignmentMode::Manual;
    let mut other_nodes = pool("zone-b", "10.98.0.0/24", 26);
    other_nodes.node_selector = Selector::parse("zone == 'b'").unwrap();
    let pools = vec![
        manual,
        other_nodes,
        pool("v4", "10.65.0.0/24", 30),
        pool("v6", "fd00:65::/120", 126),
    ];
    let ipam = Ipam::new(MemoryStore::new(), pools, IpamSettings::default());
    let mut r = req("n1", "h1");
    r.num_v6 = 1;
    let first = ipam.auto_assign(&r).await.unwrap();
    let mut r2 = req("n1", "h2");
    r2.reserved = vec![first.v4[0].ip()];
    let got = ipam.auto_assign(&r2).await.unwrap();
    assert!(
        first.v4[0].ip().to_string().starts_with("10.65."),
        "{first:?}"
    );
    assert!(first.v6[0].ip().is_ipv6());
    assert_ne!(got.v4[0], first.v4[0]);
    // Asked for by name, the manual pool is used.
    let mut r3 = req("n1", "h3");
    r3.pools = vec!["10.99.0.0/24".parse().unwrap()];
    let m = ipam.auto_assign(&r3).await.unwrap();
    assert!(m.v4[0].ip().to_string().starts_with("10.99."), "{m:?}");
    // A pool that does not exist: an error that says what to do.
    let mut r4 = req("n1", "h4");
    r4.pools = vec!["10.1.0.0/16".parse().unwrap()];
    let e = ipam.auto_assign(&r4).await.unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    // No IPv6 pool for this node: the IPv4 address taken is given back.
    let ipam = Ipam::new(
        MemoryStore::new(),
        vec![pool("v4", "10.65.0.0/24", 30)],
        IpamSettings::default(),
    );
    let mut r = req("n1", "h5");
    r.num_v6 = 1;
    let e = ipam.auto_assign(&r).await.unwrap_err().to_string();
    assert!(e.contains("no enabled IPv6 IPPool"), "{e}");
    assert!(ipam.ips_by_handle("h5").await.unwrap().is_empty());
}

#[tokio::test]
async fn borrows_when_blocks_run_out_unless_strict() {
    // Two blocks of four addresses; three nodes.
    let pools = vec![pool("p", "10.65.0.0/29", 30)];
    let ipam = Ipam::new(MemoryStore::new(), pools.clone(), IpamSettings::default());
    ipam.auto_assign(&req("n1", "a")).await.unwrap();
    ipam.auto_assign(&req("n2", "b")).await.unwrap();
    let c = ipam.auto_assign(&req("n3", "c")).await.unwrap();
    let blocks = ipam.store.list::<Block>().await.unwrap();
    assert_eq!(blocks.len(), 2, "no third block exists");
    let holder = blocks
        .iter()
        .find(|b| b.value.cidr.contains(c.v4[0].ip()))
        .unwrap();
    assert_ne!(
        holder.value.host(),
        Some("n3"),
        "borrowed, the block stays its owner's"
    );
    assert!(check_consistent(&ipam.store).await.is_empty());

    let strict = IpamSettings {
        strict_affinity: true,
        ..IpamSettings::default()
    };
    let ipam = Ipam::new(MemoryStore::new(), pools, strict);
    ipam.auto_assign(&req("n1", "a")).await.unwrap();
    ipam.auto_assign(&req("n2", "b")).await.unwrap();
    let e = ipam
        .auto_assign(&req("n3", "c"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("strictAffinity"), "{e}");
}

#[tokio::test]
async fn block_limit_and_reclaiming_empty_blocks() {
    let settings = IpamSettings {
        max_blocks_per_host: 1,
        strict_affinity: true,
        ..IpamSettings::default()
    };
    let ipam = Ipam::new(
        MemoryStore::new(),
        vec![pool("p", "10.65.0.0/29", 31)],
        settings,
    );
    ipam.auto_assign(&req("n1", "a")).await.unwrap();
    ipam.auto_assign(&req("n1", "b")).await.unwrap();
    let e = ipam.auto_assign(&req("n1", "c")).await.unwrap_err();
    assert!(matches!(e, IpamError::BlockLimit { .. }), "{e}");

    // Four /31 blocks, all claimed by n1..n4; n1 frees its block. A minute later n5
    // may reclaim it (not before).
    let now = Arc::new(std::sync::Mutex::new(chrono::Utc::now()));
    let clock_now = now.clone();
    let strict = IpamSettings {
        strict_affinity: true,
        ..IpamSettings::default()
    };
    let ipam = Ipam::new(
        MemoryStore::new(),
        vec![pool("p", "10.65.0.0/29", 31)],
        strict,
    )
    .with_clock(Arc::new(move || *clock_now.lock().unwrap()));
    for n in 1..=4 {
        ipam.auto_assign(&req(&format!("n{n}"), &format!("h{n}")))
            .await
            .unwrap();
    }
    ipam.release_by_handle("h1").await.unwrap();
    assert!(ipam.auto_assign(&req("n5", "h5")).await.is_err());
    *now.lock().unwrap() += chrono::Duration::seconds(61);
    let got = ipam.auto_assign(&req("n5", "h5")).await.unwrap();
    let blocks = ipam.store.list::<Block>().await.unwrap();
    let b = blocks
        .iter()
        .find(|b| b.value.cidr.contains(got.v4[0].ip()))
        .unwrap();
    assert_eq!(b.value.host(), Some("n5"));
    assert!(
        check_consistent(&ipam.store).await.is_empty(),
        "{:?}",
        check_consistent(&ipam.store).await
    );
}

#[tokio::test]
async fn release_host_gives_blocks_back() {
    let ipam = Ipam::new(
        MemoryStore::new(),
        vec![pool("p", "10.65.0.0/24", 28)],
        IpamSettings::default(),
    );
    let a = ipam.auto_assign(&req("gone", "a")).await.unwrap();
    ipam.auto_assign(&req("gone", "b")).await.unwrap();
    ipam.release_by_handle("b").await.unwrap();
    assert_eq!(ipam.release_host("gone").await.unwrap(), 1);
    assert!(ipam.store.list::<Affinity>().await.unwrap().is_empty());
    // The block still holds "a" (not yet garbage collected), now affine to nobody.
    let blocks = ipam.store.list::<Block>().await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].value.affinity, None);
    // Releasing the last address deletes the unowned block.
    assert_eq!(
        ipam.release_ips(&[a.v4[0].ip()]).await.unwrap(),
        Vec::<IpAddr>::new()
    );
    assert!(ipam.store.list::<Block>().await.unwrap().is_empty());
    assert!(ipam.store.list::<Handle>().await.unwrap().is_empty());
}

/// Loads a `kubectl get -o json` List of Calico IPAM objects into a store.
pub(crate) async fn load_calico_list<S: Store>(store: &S, text: &str) {
    let list: serde_json::Value = serde_json::from_str(text).unwrap();
    for item in list["items"].as_array().unwrap() {
        super::import(store, item).await.unwrap();
    }
}

#[tokio::test]
async fn a_migrated_clusters_addresses_stay_allocated() {
    let store = MemoryStore::new();
    load_calico_list(&store, include_str!("testdata/calico-ipam.json")).await;
    assert!(
        check_consistent(&store).await.is_empty(),
        "{:?}",
        check_consistent(&store).await
    );
    let ipam = Ipam::new(
        store,
        vec![pool("default-ipv4-ippool", "10.244.0.0/28", 30)],
        IpamSettings::default(),
    );
    let taken: BTreeSet<IpAddr> = [
        "10.244.0.0",
        "10.244.0.1",
        "10.244.0.2",
        "10.244.0.4",
        "10.244.0.9",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    // worker-1's block has one address left: 10.244.0.3.
    let a = ipam
        .auto_assign(&req("worker-1", "k8s-pod-network.new1"))
        .await
        .unwrap();
    assert_eq!(a.v4[0].ip().to_string(), "10.244.0.3");
    // Then worker-1 claims the one free block (10.244.0.12/30), never 10.244.0.8/30
    // (it exists, unaffine) or worker-2's.
    let mut got = Vec::new();
    for i in 0..4 {
        let a = ipam
            .auto_assign(&req("worker-1", &format!("k8s-pod-network.x{i}")))
            .await
            .unwrap();
        got.push(a.v4[0].ip());
    }
    assert!(
        got.iter()
            .all(|ip| ip.to_string().starts_with("10.244.0.1") && !taken.contains(ip)),
        "{got:?}"
    );
    // Pool full of blocks: worker-1 borrows, first from worker-2's, never a taken one.
    let b = ipam
        .auto_assign(&req("worker-1", "k8s-pod-network.borrow"))
        .await
        .unwrap();
    assert!(!taken.contains(&b.v4[0].ip()), "{b:?}");
    // The migrated pods' handles release what Calico allocated.
    assert_eq!(
        ipam.release_by_handle(
            "k8s-pod-network.3b2d1f0a9c8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e"
        )
        .await
        .unwrap(),
        1
    );
    assert!(
        check_consistent(&ipam.store).await.is_empty(),
        "{:?}",
        check_consistent(&ipam.store).await
    );
}

/// Eight nodes, each with five concurrent workers: 8 × 200 allocations and 8 × 40
/// releases interleaved, on 22 blocks of 64 for 1,280 live addresses, so that nodes race
/// for blocks and, once all are claimed, borrow; every 7th write is refused as a
/// conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_nodes_never_share_or_leak_an_address() {
    let store = MemoryStore::new();
    store.inject_conflict_every(7);
    // 22 blocks of 64 (1,408 addresses) in four pools for 1,280 live addresses: each
    // node needs three blocks, so at least two nodes must borrow.
    let pools = vec![
        pool("a", "10.65.0.0/23", 26),
        pool("b", "10.65.2.0/23", 26),
        pool("c", "10.65.4.0/24", 26),
        pool("d", "10.65.5.0/25", 26),
    ];
    let ipam = Arc::new(Ipam::new(store, pools, IpamSettings::default()));
    let mut tasks = Vec::new();
    for n in 0..8 {
        for w in 0..5 {
            let ipam = ipam.clone();
            tasks.push(tokio::spawn(async move {
                let node = format!("node-{n}");
                let mut held: HashMap<String, IpAddr> = HashMap::new();
                let mut released = 0;
                for i in 0..40 {
                    let handle = format!("k8s-pod-network.{n}-{w}-{i}");
                    let got = ipam
                        .auto_assign(&req(&node, &handle))
                        .await
                        .expect("assign");
                    held.insert(handle, got.v4[0].ip());
                    if i % 5 == 4 {
                        // Release one of ours, then allocate again later.
                        let h = format!("k8s-pod-network.{n}-{w}-{}", i - 2);
                        assert_eq!(ipam.release_by_handle(&h).await.expect("release"), 1);
                        held.remove(&h);
                        released += 1;
                    }
                }
                (held, released)
            }));
        }
    }
    let mut all: HashMap<IpAddr, String> = HashMap::new();
    let mut live = 0;
    for t in tasks {
        let (held, _) = t.await.unwrap();
        for (h, ip) in held {
            live += 1;
            if let Some(other) = all.insert(ip, h.clone()) {
                panic!("{ip} held by both {other} and {h}");
            }
        }
    }
    assert_eq!(live, 8 * 5 * 32);
    assert!(
        ipam.store.injected_conflicts() > 100,
        "{}",
        ipam.store.injected_conflicts()
    );
    // The store agrees with what the workers think they hold.
    let mut stored: HashMap<IpAddr, String> = HashMap::new();
    let mut borrowed = 0;
    for b in ipam.store.list::<Block>().await.unwrap() {
        for (ip, a) in b.value.in_use() {
            stored.insert(ip, a.handle_id.clone().unwrap());
            let node = a.owner.as_ref().and_then(|o| o.get("node")).cloned();
            if node.as_deref() != b.value.host() {
                borrowed += 1;
            }
        }
    }
    let blocks: Vec<(String, Option<String>, usize)> = ipam
        .store
        .list::<Block>()
        .await
        .unwrap()
        .iter()
        .map(|b| {
            (
                b.value.cidr.to_string(),
                b.value.host().map(str::to_string),
                b.value.in_use().count(),
            )
        })
        .collect();
    assert!(
        borrowed > 0,
        "the test is meant to make nodes borrow: {blocks:?}"
    );
    assert_eq!(stored, all, "leaked or lost addresses");
    let problems = check_consistent(&ipam.store).await;
    assert!(problems.is_empty(), "{problems:?}");
    // Release everything: no address, handle or pending claim is left.
    for h in all.values() {
        assert_eq!(ipam.release_by_handle(h).await.unwrap(), 1, "{h}");
    }
    assert!(ipam.store.list::<Handle>().await.unwrap().is_empty());
    for b in ipam.store.list::<Block>().await.unwrap() {
        assert!(b.value.is_empty(), "{} still holds addresses", b.value.cidr);
        assert!(
            b.value.host().is_some(),
            "an unowned empty block {} was left",
            b.value.cidr
        );
    }
    assert!(check_consistent(&ipam.store).await.is_empty());
}

#[test]
fn pool_blocks_cover_the_pool_once() {
    let p = pool("c", "10.65.3.0/25", 26);
    let got: Vec<String> = allocator::pool_blocks(&p, "node-3")
        .map(|n| n.to_string())
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["10.65.3.0/26", "10.65.3.64/26"], "{got:?}");
    let p = pool("v6", "fd00::/120", 122);
    assert_eq!(allocator::pool_blocks(&p, "x").count(), 4);
}

/// The file store shared by separate store instances (each its own lock descriptor, as
/// separate CNI processes have): 4 nodes × 2 workers × 20 allocations with releases on
/// 10 blocks of 16 for 128 live addresses, so that nodes race for blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_instances_never_share_or_leak_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let pools = vec![
        pool("a", "10.66.0.0/25", 28),
        pool("b", "10.66.0.128/27", 28),
    ];
    let mut tasks = Vec::new();
    for n in 0..4 {
        for w in 0..2 {
            let ipam = Ipam::new(
                file::FileStore::new(dir.path()),
                pools.clone(),
                IpamSettings::default(),
            );
            tasks.push(tokio::spawn(async move {
                let node = format!("node-{n}");
                let mut held: HashMap<String, IpAddr> = HashMap::new();
                for i in 0..20 {
                    let handle = format!("k8s-pod-network.{n}-{w}-{i}");
                    let got = ipam
                        .auto_assign(&req(&node, &handle))
                        .await
                        .expect("assign");
                    held.insert(handle, got.v4[0].ip());
                    if i % 5 == 4 {
                        let h = format!("k8s-pod-network.{n}-{w}-{}", i - 1);
                        assert_eq!(ipam.release_by_handle(&h).await.expect("release"), 1);
                        held.remove(&h);
                    }
                }
                held
            }));
        }
    }
    let mut all: HashMap<IpAddr, String> = HashMap::new();
    for t in tasks {
        for (h, ip) in t.await.unwrap() {
            if let Some(other) = all.insert(ip, h.clone()) {
                panic!("{ip} held by both {other} and {h}");
            }
        }
    }
    assert_eq!(all.len(), 4 * 2 * 16);
    let store = file::FileStore::new(dir.path());
    let mut stored: HashMap<IpAddr, String> = HashMap::new();
    for b in store.list::<Block>().await.unwrap() {
        for (ip, a) in b.value.in_use() {
            stored.insert(ip, a.handle_id.clone().unwrap());
        }
    }
    assert_eq!(stored, all, "leaked or lost addresses");
    let problems = check_consistent(&store).await;
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn assign_ip_claims_the_block_and_is_idempotent() {
    let ipam = Ipam::new(
        MemoryStore::new(),
        vec![pool("p", "10.65.0.0/24", 28)],
        IpamSettings::default(),
    );
    let ip: IpAddr = "10.65.0.37".parse().unwrap();
    ipam.assign_ip(ip, &req("n1", "h1")).await.unwrap();
    ipam.assign_ip(ip, &req("n1", "h1")).await.unwrap();
    let e = ipam.assign_ip(ip, &req("n1", "h2")).await.unwrap_err();
    assert!(e.to_string().contains("already assigned"), "{e}");
    let blocks = ipam.store.list::<Block>().await.unwrap();
    assert_eq!(blocks[0].value.cidr.to_string(), "10.65.0.32/28");
    assert_eq!(blocks[0].value.host(), Some("n1"));
    // The next automatic assignment uses the same block, not 10.65.0.37.
    let a = ipam.auto_assign(&req("n1", "h3")).await.unwrap();
    assert_eq!(a.v4[0].ip().to_string(), "10.65.0.32");
    assert!(ipam
        .assign_ip("10.1.0.1".parse().unwrap(), &req("n1", "h4"))
        .await
        .is_err());
    assert!(check_consistent(&ipam.store).await.is_empty());
}

#[tokio::test]
async fn tunnel_addresses_of_encapsulated_pools_are_skipped() {
    let mut vx = pool("vx", "10.65.0.0/24", 30);
    vx.vxlan_mode = brindle_model::EncapMode::Always;
    let ipam = Ipam::new(MemoryStore::new(), vec![vx], IpamSettings::default());
    let mut r = req("n1", "h1");
    r.skip_tunnel_addresses = true;
    let a = ipam.auto_assign(&r).await.unwrap();
    // The block's first address is the node's VXLAN tunnel address.
    let first = |ip: IpAddr| IpNetwork::new(ip, 30).unwrap().network() == ip;
    assert!(!first(a.v4[0].ip()), "{a:?}");
    // Without encapsulation (or without the flag) every address is handed out.
    let ipam = Ipam::new(
        MemoryStore::new(),
        vec![pool("p", "10.65.0.0/24", 30)],
        IpamSettings::default(),
    );
    let a = ipam.auto_assign(&r).await.unwrap();
    assert!(first(a.v4[0].ip()), "{a:?}");
}
