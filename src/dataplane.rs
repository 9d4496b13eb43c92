//! The agent's side of the dataplane: builds felix's [`Model`] from the cluster
//! configuration, the CNI plugin's endpoint records and the routes BGP learned.
//!
//! Tunnel addresses follow one convention every node can compute for every other node
//! without talking to it: a node's IPIP (VXLAN) tunnel address is `ipv4IPIPTunnelAddr` when
//! set, else the first address of its first active block in an IPIP (VXLAN) pool. The CNI
//! plugin never hands out a block's first address, so it is free for this.

use crate::calc::NodePlan;
use brindle_felix::endpoint::EndpointRecord;
use brindle_felix::model::{EncapMode, LocalEndpoint, Model, Pool, RemoteNode};
use brindle_model::{ClusterConfig, EncapMode as CfgEncap, IpPoolSpec};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

fn encap(m: CfgEncap) -> EncapMode {
    match m {
        CfgEncap::Never => EncapMode::Never,
        CfgEncap::Always => EncapMode::Always,
        CfgEncap::CrossSubnet => EncapMode::CrossSubnet,
    }
}

fn pool(p: &IpPoolSpec) -> Pool {
    Pool {
        cidr: p.cidr,
        block_size: p.block_size,
        ipip_mode: encap(p.ipip_mode),
        vxlan_mode: encap(p.vxlan_mode),
        nat_outgoing: p.nat_outgoing,
        disabled: p.disabled,
    }
}

fn active_blocks(cfg: &ClusterConfig, node: &str) -> Vec<IpNetwork> {
    let mut v: Vec<IpNetwork> = cfg
        .block_affinities
        .iter()
        .filter(|b| b.node == node && b.is_active())
        .map(|b| b.cidr)
        .collect();
    v.sort_by_key(|n| (n.ip(), n.prefix()));
    v.dedup();
    v
}

/// First address of the node's first block in a pool with the given encapsulation.
fn tunnel_addr(cfg: &ClusterConfig, blocks: &[IpNetwork], ipip: bool) -> Option<Ipv4Addr> {
    blocks.iter().find_map(|b| {
        let IpAddr::V4(a) = b.network() else {
            return None;
        };
        let p = cfg.pool_for(b)?;
        let mode = if ipip { p.ipip_mode } else { p.vxlan_mode };
        (mode != CfgEncap::Never && !p.disabled).then_some(a)
    })
}

/// The static part of the model (everything but endpoints and learned routes).
pub fn base_model(cfg: &ClusterConfig, plan: &NodePlan) -> Model {
    let own = active_blocks(cfg, &plan.node_name);
    let me = cfg.node(&plan.node_name);
    let remote_nodes = cfg
        .nodes
        .iter()
        .filter(|n| n.name != plan.node_name)
        .map(|n| {
            let blocks = active_blocks(cfg, &n.name);
            RemoteNode {
                name: n.name.clone(),
                ipv4: n.ipv4_address,
                ipv6: n.ipv6_address,
                ipip_tunnel_addr: n
                    .ipv4_ipip_tunnel_addr
                    .or_else(|| tunnel_addr(cfg, &blocks, true)),
                vxlan_tunnel_addr: tunnel_addr(cfg, &blocks, false),
                vxlan_mac: None,
                blocks,
            }
        })
        .collect();
    Model {
        node_name: plan.node_name.clone(),
        node_ipv4: plan.ipv4_address,
        node_ipv6: plan.ipv6_address,
        pools: cfg.ip_pools.iter().map(pool).collect(),
        ipip_tunnel_addr: me
            .and_then(|n| n.ipv4_ipip_tunnel_addr)
            .or_else(|| tunnel_addr(cfg, &own, true)),
        vxlan_tunnel_addr: tunnel_addr(cfg, &own, false),
        own_blocks: own,
        endpoints: pod_endpoints(cfg, &plan.node_name),
        remote_nodes,
        learned: BTreeMap::new(),
        routes_incomplete: false,
        policy: None,
    }
}

/// Local endpoints from the datastore's Pods of this node (Kubernetes mode; file-mode
/// Pod documents too), as Felix derives workload endpoints from Pods: a scheduled,
/// non-host-network pod with an address, on the veth Calico's CNI names
/// `cali<sha1(namespace.pod)>`. So pods created by another CNI plugin run (Calico's, before
/// a migration) keep their routes; the CNI records of [`endpoints`] take precedence.
pub fn pod_endpoints(cfg: &ClusterConfig, node: &str) -> Vec<LocalEndpoint> {
    let mut v: Vec<LocalEndpoint> = cfg
        .pods
        .iter()
        .filter(|p| p.node_name.as_deref() == Some(node) && p.is_workload() && !p.terminating)
        .map(|p| LocalEndpoint {
            iface: crate::cni::host_veth_name(&p.namespace, &p.name),
            ips: p
                .ips
                .iter()
                .map(|ip| {
                    IpNetwork::new(*ip, if ip.is_ipv4() { 32 } else { 128 }).expect("host prefix")
                })
                .collect(),
            mac: None,
        })
        .collect();
    v.sort_by(|a, b| a.iface.cmp(&b.iface));
    v
}

/// Local endpoints from the CNI plugin's records.
pub fn endpoints(records: &[EndpointRecord]) -> Vec<LocalEndpoint> {
    let mut v: Vec<LocalEndpoint> = records
        .iter()
        .map(|r| LocalEndpoint {
            iface: r.host_iface.clone(),
            ips: r.ips.clone(),
            mac: Some(r.mac.clone()),
        })
        .collect();
    v.sort_by(|a, b| a.iface.cmp(&b.iface));
    v
}

/// What the dataplane thread reports back to the agent.
pub type SharedStatus = crate::status::SharedDataplaneStatus;

/// Converts an apply report into the status document and the metrics.
pub fn record_report(
    r: &brindle_felix::ApplyReport,
    status: &SharedStatus,
    m: &crate::health::DataplaneMetrics,
) {
    use std::sync::atomic::Ordering::Relaxed;
    if r.counters_only {
        // The counter tick: only the counters are new.
        if let Some(c) = &r.policy_counters {
            let mut rules = m.policy_counters.lock().unwrap_or_else(|e| e.into_inner());
            *rules = c.iter().map(|(o, p, b)| (o.clone(), (*p, *b))).collect();
            let sums = crate::status::policy_counters(rules.iter());
            if let Some(s) = status.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                s.policy_counters = sums;
            }
        }
        m.errors.fetch_add(r.errors.len() as u64, Relaxed);
        return;
    }
    m.routes_programmed
        .store(r.routes_programmed as u64, Relaxed);
    m.local_endpoints.store(r.local_endpoints as u64, Relaxed);
    m.applies.fetch_add(1, Relaxed);
    if r.resync {
        m.resyncs.fetch_add(1, Relaxed);
    }
    m.errors.fetch_add(r.errors.len() as u64, Relaxed);
    m.last_apply_micros
        .store(r.duration.as_micros() as u64, Relaxed);
    // Counters are read every 10 s (the counter tick above): an apply keeps the last sums,
    // or clears them when policy is gone.
    let counters = match &r.policy_counters {
        Some(c) => {
            let mut rules = m.policy_counters.lock().unwrap_or_else(|e| e.into_inner());
            *rules = c.iter().map(|(o, p, b)| (o.clone(), (*p, *b))).collect();
            crate::status::policy_counters(rules.iter())
        }
        None => status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.policy_counters.clone())
            .unwrap_or_default(),
    };
    let s = crate::status::DataplaneStatus {
        routes_programmed: r.routes_programmed as u64,
        local_endpoints: r.local_endpoints as u64,
        host_mtu: r.host_mtu,
        pod_mtu: r.pod_mtu,
        last_apply: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        last_apply_millis: r.duration.as_secs_f64() * 1000.0,
        warnings: r.warnings.iter().map(|w| w.to_string()).collect(),
        errors: r.errors.clone(),
        policy_counters: counters,
    };
    *status.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
}

/// Runs felix on its own thread (netlink sockets and /proc/sys follow the thread's
/// namespace; a dedicated current-thread runtime keeps that simple). Returns a sender
/// that stops it; the join handle's result says whether it ran.
pub fn spawn(
    state_dir: std::path::PathBuf,
    models: tokio::sync::watch::Receiver<Model>,
    status: SharedStatus,
    metrics: std::sync::Arc<crate::health::DataplaneMetrics>,
    cleanup_on_exit: bool,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<anyhow::Result<()>>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = metrics.clone();
    let h = std::thread::Builder::new()
        .name("felix".into())
        .spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(async move {
                let cfg = brindle_felix::DataplaneConfig {
                    state_dir: Some(state_dir),
                    ..Default::default()
                };
                let mut dp = brindle_felix::Dataplane::new(cfg)?;
                let mut last_warnings: Vec<String> = Vec::new();
                dp.run(
                    models,
                    |r| {
                        record_report(r, &status, &metrics);
                        for e in &r.errors {
                            tracing::error!(error = %e, "dataplane");
                        }
                        let w: Vec<String> = r.warnings.iter().map(|w| w.to_string()).collect();
                        if w != last_warnings {
                            for x in &w {
                                tracing::warn!(warning = %x, "dataplane");
                            }
                            last_warnings = w;
                        }
                        if r.changes() > 0 {
                            tracing::info!(
                                added = r.routes_added,
                                removed = r.routes_removed,
                                programmed = r.routes_programmed,
                                endpoints = r.local_endpoints,
                                ms = r.duration.as_secs_f64() * 1000.0,
                                resync = r.resync,
                                "dataplane applied"
                            );
                        }
                    },
                    async {
                        let _ = stop_rx.await;
                    },
                )
                .await?;
                if cleanup_on_exit {
                    let c = dp.cleanup().await?;
                    tracing::info!(
                        routes = c.routes_removed,
                        "dataplane cleaned up (--cleanup)"
                    );
                }
                Ok(())
            });
            if let Err(e) = &result {
                tracing::error!("dataplane stopped: {e:#}");
                stopped
                    .stopped
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            result
        })
        .expect("spawn felix thread");
    (stop_tx, h)
}

/// Assembles the model from its three sources and publishes it when it changes.
/// The cluster's compiled policy and the endpoints and namespaces it is about (None in
/// [`ModelAssembler`]: the cluster has no policy and this node no host endpoint), with
/// this node's name (its host endpoints are resolved too) and failsafe ports.
#[derive(Debug)]
pub struct PolicySource {
    pub program: brindle_policies::Program,
    pub world: std::sync::Arc<brindle_policies::World>,
    pub node: String,
    pub failsafe: brindle_policies::FailsafePorts,
}

/// `FELIX_FAILSAFEINBOUNDHOSTPORTS` / `FELIX_FAILSAFEOUTBOUNDHOSTPORTS`, read at start:
/// they win over FelixConfiguration, as Felix ranks its environment above the datastore.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailsafeEnv {
    pub inbound: Option<Vec<brindle_model::resolved::Failsafe>>,
    pub outbound: Option<Vec<brindle_model::resolved::Failsafe>>,
}

impl FailsafeEnv {
    /// From the two variables (`get` reads one); a bad value is an error naming it (Felix
    /// dies on it too).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<FailsafeEnv, String> {
        let one = |name: &str| {
            get(name)
                .map(|v| {
                    brindle_model::resolved::parse_port_list(&v).map_err(|e| format!("{name}: {e}"))
                })
                .transpose()
        };
        Ok(FailsafeEnv {
            inbound: one("FELIX_FAILSAFEINBOUNDHOSTPORTS")?,
            outbound: one("FELIX_FAILSAFEOUTBOUNDHOSTPORTS")?,
        })
    }
}

/// The policy of a snapshot for `node`, if it has any (a policy, or a host endpoint of
/// `node`: a host endpoint alone is default-deny); what is not enforced yet is logged.
pub fn policy_source(
    cfg: &ClusterConfig,
    node: &str,
    env: &FailsafeEnv,
) -> Option<std::sync::Arc<PolicySource>> {
    let has_host_endpoint = cfg.host_endpoints.iter().any(|h| h.node == node);
    if cfg.kubernetes_network_policies.is_empty()
        && cfg.network_policies.is_empty()
        && cfg.global_network_policies.is_empty()
        && !has_host_endpoint
    {
        return None;
    }
    let (program, warnings) = brindle_policies::program_of(cfg);
    for w in warnings {
        tracing::debug!("policy: {w}");
    }
    let (inbound, outbound) = cfg.failsafe_ports(node);
    let inbound = env.inbound.clone().unwrap_or(inbound);
    let outbound = env.outbound.clone().unwrap_or(outbound);
    Some(std::sync::Arc::new(PolicySource {
        program,
        world: std::sync::Arc::new(brindle_policies::world_of(cfg)),
        node: node.to_string(),
        failsafe: brindle_policies::FailsafePorts { inbound, outbound },
    }))
}

/// See [`ModelAssembler::policy_cache`]. Holding the source's `Arc` keeps its identity
/// (compared with `Arc::ptr_eq`) from being reused by a newer source; the resolver
/// re-resolves only what a new source or endpoint list changed.
#[derive(Default)]
pub struct PolicyCache(
    std::cell::RefCell<Option<CachedResolution>>,
    std::cell::RefCell<brindle_policies::resolve::Resolver>,
);

/// A policy source, the local endpoints it was resolved for, and the result.
type CachedResolution = (
    std::sync::Arc<PolicySource>,
    Vec<(String, IpAddr)>,
    brindle_policies::resolve::Resolved,
);

pub struct ModelAssembler {
    pub base: Model,
    /// The policy to resolve for the local endpoints (None: no policy).
    pub policy: Option<std::sync::Arc<PolicySource>>,
    /// The last resolution (by policy source and local endpoints): a learned-route change
    /// must not re-resolve policy; a policy or endpoint change re-resolves only what it
    /// touches.
    pub policy_cache: PolicyCache,
    pub endpoints: Vec<LocalEndpoint>,
    pub learned: BTreeMap<IpNetwork, Vec<IpAddr>>,
    /// Learned routes inside these service ranges are not programmed (BIRD's
    /// `calico_kernel_programming` filter: `if net ~ <range> then reject`), so that
    /// service traffic is never sent on to the node that advertised the range.
    pub kernel_reject: Vec<IpNetwork>,
    /// BGP has not caught up since the start: keep routes the model lacks.
    pub routes_incomplete: bool,
}

impl ModelAssembler {
    pub fn model(&self) -> Model {
        let mut m = self.base.clone();
        // The Pods' endpoints (in `base`), each replaced by the CNI record of its veth.
        let mut eps: BTreeMap<String, LocalEndpoint> = std::mem::take(&mut m.endpoints)
            .into_iter()
            .map(|e| (e.iface.clone(), e))
            .collect();
        for e in &self.endpoints {
            eps.insert(e.iface.clone(), e.clone());
        }
        m.endpoints = eps.into_values().collect();
        m.policy = self.policy.as_ref().map(|p| {
            let local: Vec<(String, IpAddr)> = m
                .endpoints
                .iter()
                .filter_map(|e| {
                    let ip = e.ips.iter().find(|n| n.is_ipv4()).or(e.ips.first())?;
                    Some((e.iface.clone(), ip.ip()))
                })
                .collect();
            let mut cache = self.policy_cache.0.borrow_mut();
            if let Some((k, l, r)) = cache.as_ref() {
                if std::sync::Arc::ptr_eq(k, p) && *l == local {
                    return r.clone();
                }
            }
            let mut r = self
                .policy_cache
                .1
                .borrow_mut()
                .update(&p.program, &p.world, &local)
                .clone();
            brindle_policies::resolve::add_host_endpoints(
                &mut r,
                &p.program,
                &p.world,
                &p.node,
                &p.failsafe.inbound,
                &p.failsafe.outbound,
            );
            if !r.host_endpoints.is_empty() {
                r.ipip = m.ipip_tunnel_addr.is_some();
                r.vxlan = m.vxlan_tunnel_addr.is_some();
                r.tunnel_hosts = m
                    .remote_nodes
                    .iter()
                    .flat_map(|n| {
                        [
                            n.ipv4.map(|a| IpAddr::V4(a.ip())),
                            n.ipv6.map(|a| IpAddr::V6(a.ip())),
                        ]
                    })
                    .flatten()
                    .collect();
                r.tunnel_hosts.sort();
                r.tunnel_hosts.dedup();
            }
            *cache = Some((p.clone(), local, r.clone()));
            r
        });
        m.learned = self
            .learned
            .iter()
            .filter(|(p, _)| {
                !self
                    .kernel_reject
                    .iter()
                    .any(|r| brindle_model::values::net_contains(r, p))
            })
            .map(|(p, h)| (*p, h.clone()))
            .collect();
        m.routes_incomplete = self.routes_incomplete;
        m
    }

    /// Applies a learned-route change from BGP.
    pub fn learned_change(&mut self, c: &brindle_bgp::rib::FibChange) {
        let net: IpNetwork = c.prefix.into();
        if c.next_hops.is_empty() {
            self.learned.remove(&net);
        } else {
            self.learned.insert(net, c.next_hops.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: a}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: b}
spec: {bgp: {ipv4Address: 10.0.1.2/24}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p}
spec: {cidr: 10.65.0.0/16, ipipMode: CrossSubnet}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: ba}
spec: {node: a, cidr: 10.65.0.0/26}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: bb}
spec: {node: b, cidr: 10.65.0.64/26}
"#;

    #[test]
    fn learned_routes_inside_service_ranges_are_not_programmed() {
        let cfg = brindle_model::parse("t.yaml", YAML).unwrap();
        let plan = crate::calc::node_plan(&cfg, "a").unwrap();
        let n = |s: &str| s.parse::<IpNetwork>().unwrap();
        let hop = vec!["10.0.1.2".parse::<IpAddr>().unwrap()];
        let mut asm = ModelAssembler {
            base: base_model(&cfg, &plan),
            endpoints: Vec::new(),
            learned: BTreeMap::new(),
            kernel_reject: vec![n("10.96.0.0/12"), n("fd00:96::/108")],
            routes_incomplete: false,
            policy: None,
            policy_cache: Default::default(),
        };
        for p in [
            "10.96.0.0/12",
            "10.96.0.10/32",
            "10.65.0.64/26",
            "10.112.0.0/24",
        ] {
            asm.learned.insert(n(p), hop.clone());
        }
        let m = asm.model();
        let kept: Vec<String> = m.learned.keys().map(|p| p.to_string()).collect();
        assert_eq!(kept, ["10.65.0.64/26", "10.112.0.0/24"]);
        assert_eq!(asm.learned.len(), 4, "kept for when the ranges change");
    }

    #[test]
    fn endpoints_from_this_nodes_pods_and_cni_records() {
        let yaml = format!(
            "{YAML}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: shop}}\nspec: {{nodeName: a}}\nstatus: {{phase: Running, podIP: 10.65.0.5}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: db, namespace: shop}}\nspec: {{nodeName: a}}\nstatus: {{phase: Running, podIP: 10.65.0.6}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: done, namespace: shop}}\nspec: {{nodeName: a}}\nstatus: {{phase: Succeeded, podIP: 10.65.0.7}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: hostnet, namespace: shop}}\nspec: {{nodeName: a, hostNetwork: true}}\nstatus: {{phase: Running, podIP: 10.0.0.1}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: other, namespace: shop}}\nspec: {{nodeName: b}}\nstatus: {{phase: Running, podIP: 10.65.0.70}}\n"
        );
        let cfg = brindle_model::parse("t.yaml", &yaml).unwrap();
        let plan = crate::calc::node_plan(&cfg, "a").unwrap();
        let base = base_model(&cfg, &plan);
        let names: Vec<&str> = base.endpoints.iter().map(|e| e.iface.as_str()).collect();
        let web = crate::cni::host_veth_name("shop", "web");
        let db = crate::cni::host_veth_name("shop", "db");
        let mut want = vec![web.as_str(), db.as_str()];
        want.sort();
        assert_eq!(names, want, "running pods of node a only");
        // A CNI record of web's veth (a newer sandbox, another address) wins.
        let asm = ModelAssembler {
            base,
            endpoints: vec![LocalEndpoint {
                iface: web.clone(),
                ips: vec!["10.65.0.9/32".parse().unwrap()],
                mac: Some("aa:bb:cc:dd:ee:ff".into()),
            }],
            learned: BTreeMap::new(),
            kernel_reject: Vec::new(),
            routes_incomplete: false,
            policy: None,
            policy_cache: Default::default(),
        };
        let m = asm.model();
        assert_eq!(m.endpoints.len(), 2);
        let w = m.endpoints.iter().find(|e| e.iface == web).unwrap();
        assert_eq!(w.ips, vec!["10.65.0.9/32".parse::<IpNetwork>().unwrap()]);
        let d = m.endpoints.iter().find(|e| e.iface == db).unwrap();
        assert_eq!(d.ips, vec!["10.65.0.6/32".parse::<IpNetwork>().unwrap()]);
        assert_eq!(d.mac, None);
    }

    #[test]
    fn model_from_config() {
        let cfg = brindle_model::parse("t.yaml", YAML).unwrap();
        let plan = crate::calc::node_plan(&cfg, "a").unwrap();
        let m = base_model(&cfg, &plan);
        assert_eq!(
            m.own_blocks,
            vec!["10.65.0.0/26".parse::<IpNetwork>().unwrap()]
        );
        assert_eq!(m.ipip_tunnel_addr, Some("10.65.0.0".parse().unwrap()));
        assert_eq!(m.vxlan_tunnel_addr, None);
        assert_eq!(m.pools[0].ipip_mode, EncapMode::CrossSubnet);
        assert_eq!(m.remote_nodes.len(), 1);
        assert_eq!(
            m.remote_nodes[0].ipip_tunnel_addr,
            Some("10.65.0.64".parse().unwrap())
        );
        assert_eq!(
            m.remote_nodes[0].blocks,
            vec!["10.65.0.64/26".parse::<IpNetwork>().unwrap()]
        );
    }

    #[test]
    fn a_host_endpoint_alone_turns_policy_on_for_its_node() {
        let yaml = format!(
            "{YAML}---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: a-eth0}}\nspec: {{node: a, interfaceName: eth0}}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {{name: node.a}}\nspec: {{failsafeInboundHostPorts: [{{protocol: TCP, port: 2222}}]}}\n"
        );
        let cfg = brindle_model::parse("t.yaml", &yaml).unwrap();
        assert!(policy_source(
            &brindle_model::parse("t.yaml", YAML).unwrap(),
            "a",
            &FailsafeEnv::default()
        )
        .is_none());
        assert!(
            policy_source(&cfg, "b", &FailsafeEnv::default()).is_none(),
            "not b's host endpoint"
        );
        let plan = crate::calc::node_plan(&cfg, "a").unwrap();
        let asm = ModelAssembler {
            base: base_model(&cfg, &plan),
            endpoints: Vec::new(),
            learned: BTreeMap::new(),
            kernel_reject: Vec::new(),
            routes_incomplete: false,
            policy: policy_source(&cfg, "a", &FailsafeEnv::default()),
            policy_cache: Default::default(),
        };
        let r = asm.model().policy.expect("policy on");
        assert_eq!(r.host_endpoints.len(), 1);
        assert_eq!(r.host_endpoints[0].iface, "eth0");
        assert!(!r.host_endpoints[0].profile_allows);
        assert_eq!(
            r.failsafe_inbound,
            vec![brindle_model::resolved::Failsafe::new(6, 2222)]
        );
        assert_eq!(
            r.failsafe_outbound,
            brindle_model::resolved::DEFAULT_FAILSAFE_OUTBOUND.to_vec()
        );
        // The environment outranks FelixConfiguration (as in Felix); "none" empties.
        let env = FailsafeEnv::read(|k| match k {
            "FELIX_FAILSAFEINBOUNDHOSTPORTS" => Some("tcp:22,udp:10.0.0.0/8:53".into()),
            "FELIX_FAILSAFEOUTBOUNDHOSTPORTS" => Some("none".into()),
            _ => None,
        })
        .unwrap();
        let with_env = ModelAssembler {
            base: base_model(&cfg, &plan),
            endpoints: Vec::new(),
            learned: BTreeMap::new(),
            kernel_reject: Vec::new(),
            routes_incomplete: false,
            policy: policy_source(&cfg, "a", &env),
            policy_cache: Default::default(),
        };
        let e = with_env.model().policy.expect("policy on");
        let labels: Vec<String> = e.failsafe_inbound.iter().map(|f| f.label()).collect();
        assert_eq!(labels, ["tcp:22", "udp:10.0.0.0/8:53"]);
        assert!(e.failsafe_outbound.is_empty());
        assert!(FailsafeEnv::read(|_| Some("tcp:ssh".into()))
            .unwrap_err()
            .starts_with("FELIX_FAILSAFEINBOUNDHOSTPORTS: "));
        // IPIP with b (CrossSubnet pool) is accepted before host endpoint policy.
        assert!(r.ipip && !r.vxlan);
        assert_eq!(r.tunnel_hosts, vec!["10.0.1.2".parse::<IpAddr>().unwrap()]);
    }
}
