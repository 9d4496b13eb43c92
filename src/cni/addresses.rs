//! The CNI plugin's addresses: [`crate::ipam`] (Calico's IPAM) on the store of the
//! configured datastore, driven from this short-lived process on a current-thread
//! runtime. One handle per container, named as Calico's CNI names it
//! (`<network name>.<containerID>`, e.g. `k8s-pod-network.<id>`), so that Calico's
//! tools and garbage collection recognise Brindle's allocations and the other way round.
//!
//! - **File mode**: the store is `<stateDir>/calico-ipam` (flock-guarded, see
//!   [`crate::ipam::file`]). A node's blocks are its confirmed `BlockAffinity`
//!   resources in the resource file: the store is not shared between nodes, so a node
//!   never claims or borrows a block on its own (`strictAffinity`, no
//!   `autoAllocateBlocks`). Allocations of the file IPAM of earlier versions
//!   (`<stateDir>/ipam/<address>`) are taken over on first use, so that no address is
//!   handed out twice across an upgrade.
//! - **Kubernetes mode** (`"datastore_type": "kubernetes"`): Calico's CRDs through the
//!   API ([`crate::ipam::kubernetes`]); the IPPools, `IPAMConfig`, the Node's labels and
//!   the pod's annotations are read from the API; blocks are claimed and borrowed as
//!   Calico does.

use super::conf::{CniEnv, DatastoreConf, NetConf};
use super::error::{code, CniError, Result};
use crate::ipam::file::FileStore;
use crate::ipam::kubernetes::KubeStore;
use crate::ipam::{Handle, Ipam, IpamError, IpamObject, IpamSettings, Request, Store, StoreError};
use brindle_model::IpPoolSpec;
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// Calico's pod annotations.
pub const ANN_IPV4_POOLS: &str = "cni.projectcalico.org/ipv4pools";
pub const ANN_IPV6_POOLS: &str = "cni.projectcalico.org/ipv6pools";
pub const ANN_IP_ADDRS: &str = "cni.projectcalico.org/ipAddrs";
pub const ANN_POD_IP: &str = "cni.projectcalico.org/podIP";
pub const ANN_POD_IPS: &str = "cni.projectcalico.org/podIPs";
pub const ANN_CONTAINER_ID: &str = "cni.projectcalico.org/containerID";

type Labels = BTreeMap<String, String>;

enum Backend {
    File(Ipam<FileStore>),
    Kube {
        ipam: Ipam<KubeStore>,
        client: kube::Client,
    },
}

/// What the plugin needs of IPAM for one call.
pub struct Addresses {
    rt: tokio::runtime::Runtime,
    backend: Backend,
    node: String,
    net_name: String,
    /// IPv4 and IPv6: whether to assign one.
    families: (bool, bool),
    /// Addresses never handed out (file mode: the node's own addresses).
    reserved: Vec<IpAddr>,
    node_labels: BTreeMap<String, String>,
}

fn ipam_error(e: IpamError) -> CniError {
    match &e {
        IpamError::Exhausted(_) | IpamError::BlockLimit { .. } => {
            CniError::new(code::IPAM_EXHAUSTED, format!("IPAM: {e}"))
        }
        IpamError::NoPool(_) => CniError::new(code::NO_BLOCK, format!("IPAM: {e}")),
        IpamError::Retries(_) => CniError::new(code::TRY_AGAIN, format!("IPAM: {e}")),
        IpamError::Store(StoreError::Other(m)) if m.contains("locked") => {
            CniError::new(code::TRY_AGAIN, format!("IPAM: {e}"))
        }
        _ => CniError::io(format!("IPAM: {e}")),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::io(format!("cannot start a runtime: {e}")))
}

fn usable(p: &IpPoolSpec) -> bool {
    !p.disabled
        && p.allowed_uses
            .contains(&brindle_model::AllowedUse::Workload)
}

impl Addresses {
    /// Opens the configured datastore's IPAM.
    pub fn open(conf: &NetConf) -> Result<Addresses> {
        let rt = runtime()?;
        match &conf.datastore {
            DatastoreConf::File => Self::open_file(conf, rt),
            DatastoreConf::Kubernetes { kubeconfig } => Self::open_kube(conf, kubeconfig, rt),
        }
    }

    /// For DEL and GC: the store, even when the resource file or the API's pools cannot
    /// be read (releasing needs neither; allocations of the earlier file IPAM are then
    /// taken over by the next ADD).
    pub fn open_for_release(conf: &NetConf) -> Result<Addresses> {
        match Self::open(conf) {
            Ok(a) => Ok(a),
            Err(e) if conf.datastore == DatastoreConf::File => {
                tracing::debug!("opening IPAM fully: {e}; releasing with the store alone");
                Ok(Addresses {
                    rt: runtime()?,
                    backend: Backend::File(Ipam::new(
                        FileStore::new(conf.state_dir.join("calico-ipam")),
                        Vec::new(),
                        IpamSettings::default(),
                    )),
                    node: conf.nodename.clone(),
                    net_name: conf.name.clone(),
                    families: (false, false),
                    reserved: Vec::new(),
                    node_labels: BTreeMap::new(),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn open_file(conf: &NetConf, rt: tokio::runtime::Runtime) -> Result<Addresses> {
        let cfg = crate::datastore::file::read(&conf.config).map_err(|e| {
            CniError::config(format!(
                "cannot load the Calico resource file {}",
                conf.config.display()
            ))
            .with_details(e.to_string())
        })?;
        let plan = crate::calc::node_plan(&cfg, &conf.nodename).map_err(|e| {
            CniError::config(format!(
                "node {:?} is not usable in {}",
                conf.nodename,
                conf.config.display()
            ))
            .with_details(e.to_string())
        })?;
        let pools: Vec<IpPoolSpec> = cfg.ip_pools.clone();
        let blocks: Vec<IpNetwork> = plan
            .blocks
            .iter()
            .copied()
            .filter(|b| cfg.pool_for(b).is_none_or(usable))
            .collect();
        if blocks.is_empty() {
            return Err(CniError::new(
                code::NO_BLOCK,
                format!(
                    "node {:?} has no address block: {} has no confirmed BlockAffinity for it in an enabled IPPool for workloads",
                    conf.nodename,
                    conf.config.display()
                ),
            ));
        }
        let mut reserved = Vec::new();
        if let Some(n) = cfg.node(&conf.nodename) {
            reserved.extend(n.ipv4_address.map(|a| IpAddr::V4(a.ip())));
            reserved.extend(n.ipv4_ipip_tunnel_addr.map(IpAddr::V4));
            reserved.extend(n.ipv6_address.map(|a| IpAddr::V6(a.ip())));
        }
        // Pools for the blocks: the resource file's, or (a block outside every pool,
        // which validation allows for hand-written files) the block itself.
        let mut pools = pools;
        for b in &blocks {
            if !pools.iter().any(|p| p.cidr.contains(b.network())) {
                pools.push(IpPoolSpec {
                    name: format!("block-{b}"),
                    cidr: *b,
                    block_size: b.prefix(),
                    ..crate::ipam::allocator::default_pool(*b)
                });
            }
        }
        let settings = IpamSettings {
            strict_affinity: true,
            auto_allocate_blocks: false,
            ..IpamSettings::default()
        };
        let store = FileStore::new(conf.state_dir.join("calico-ipam"));
        let ipam = Ipam::new(store, pools, settings);
        let families = (
            conf.assign_ipv4.unwrap_or(true) && blocks.iter().any(|b| b.is_ipv4()),
            conf.assign_ipv6.unwrap_or(true) && blocks.iter().any(|b| b.is_ipv6()),
        );
        let a = Addresses {
            rt,
            backend: Backend::File(ipam),
            node: conf.nodename.clone(),
            net_name: conf.name.clone(),
            families,
            reserved,
            node_labels: BTreeMap::new(),
        };
        a.seed_file_affinities(&blocks)?;
        a.migrate_legacy(&conf.state_dir)?;
        Ok(a)
    }

    /// The resource file's affinities of this node, as confirmed affinities in the store
    /// (their blocks are created on first use).
    fn seed_file_affinities(&self, blocks: &[IpNetwork]) -> Result<()> {
        let Backend::File(ipam) = &self.backend else {
            return Ok(());
        };
        self.rt.block_on(async {
            let have = ipam
                .store
                .list::<crate::ipam::Affinity>()
                .await
                .map_err(|e| ipam_error(e.into()))?;
            for b in blocks {
                if have
                    .iter()
                    .any(|a| a.value.cidr == *b && a.value.node == self.node)
                {
                    continue;
                }
                let aff = crate::ipam::Affinity::host(
                    &self.node,
                    *b,
                    crate::ipam::AffinityState::Confirmed,
                );
                match ipam.store.create(aff).await {
                    Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(ipam_error(e.into())),
                }
            }
            Ok(())
        })
    }

    /// Takes over the allocations of the earlier file IPAM (`<stateDir>/ipam/<address>`).
    fn migrate_legacy(&self, state_dir: &Path) -> Result<()> {
        let old = super::legacy_ipam::LegacyIpam::new(state_dir);
        let allocations = old.list()?;
        if allocations.is_empty() {
            return Ok(());
        }
        let Backend::File(ipam) = &self.backend else {
            return Ok(());
        };
        self.rt.block_on(async {
            for a in &allocations {
                let (handle, owner) = match &a.owner {
                    Some(o) => (
                        self.handle(&o.container_id),
                        self.owner(&o.namespace, &o.pod),
                    ),
                    // Unreadable owner: keep the address taken under a handle of its own.
                    None => (
                        format!("{}.legacy-{}", self.net_name, a.ip),
                        self.owner("", ""),
                    ),
                };
                let req = Request {
                    handle,
                    node: self.node.clone(),
                    owner,
                    ..Request::default()
                };
                match ipam.assign_ip(a.ip, &req).await {
                    Ok(()) => {}
                    Err(IpamError::Block(crate::ipam::block::BlockError::AlreadyAssigned(_))) => {}
                    Err(e) => return Err(ipam_error(e)),
                }
            }
            Ok(())
        })?;
        old.retire()
    }

    fn open_kube(
        conf: &NetConf,
        kubeconfig: &Path,
        rt: tokio::runtime::Runtime,
    ) -> Result<Addresses> {
        let unreachable = |e: String| {
            CniError::new(
                code::TRY_AGAIN,
                format!(
                    "cannot reach the Kubernetes API with {}: {e}",
                    kubeconfig.display()
                ),
            )
        };
        let (client, group) = rt.block_on(async {
            let client = crate::datastore::kubernetes::client(Some(kubeconfig))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let group = crate::datastore::kubernetes::detect_group(&client)
                .await
                .map_err(unreachable)?;
            Ok::<_, CniError>((client, group))
        })?;
        let store = KubeStore::new(client.clone(), group);
        let (pools, settings, node_labels) = rt.block_on(async {
            let pools = crate::datastore::kubernetes::list_ip_pools(&client, group)
                .await
                .map_err(unreachable)?;
            let settings = match store.get::<IpamSettings>("default").await {
                Ok(s) => s.value,
                Err(StoreError::NotFound(_)) => IpamSettings::default(),
                Err(e) => return Err(unreachable(e.to_string())),
            };
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
            let labels = match nodes.get_opt(&conf.nodename).await {
                Ok(Some(n)) => n.metadata.labels.unwrap_or_default(),
                Ok(None) => BTreeMap::new(),
                Err(e) => return Err(unreachable(e.to_string())),
            };
            Ok((pools, settings, labels))
        })?;
        let v4 = pools.iter().any(|p| p.cidr.is_ipv4() && usable(p));
        let v6 = pools.iter().any(|p| p.cidr.is_ipv6() && usable(p));
        let families = (
            conf.assign_ipv4.unwrap_or(v4),
            conf.assign_ipv6.unwrap_or(v6),
        );
        Ok(Addresses {
            rt,
            backend: Backend::Kube {
                ipam: Ipam::new(store, pools, settings),
                client,
            },
            node: conf.nodename.clone(),
            net_name: conf.name.clone(),
            families,
            reserved: Vec::new(),
            node_labels,
        })
    }

    /// Calico's handle ID for a container.
    pub fn handle(&self, container_id: &str) -> String {
        format!("{}.{container_id}", self.net_name)
    }

    fn owner(&self, namespace: &str, pod: &str) -> BTreeMap<String, String> {
        let mut m = BTreeMap::from([
            ("node".to_string(), self.node.clone()),
            (
                "timestamp".to_string(),
                chrono::Utc::now()
                    .format("%Y-%m-%d %H:%M:%S%.9f +0000 UTC")
                    .to_string(),
            ),
        ]);
        if !pod.is_empty() {
            m.insert("namespace".into(), namespace.to_string());
            m.insert("pod".into(), pod.to_string());
        }
        m
    }

    /// The pod's annotations and its namespace's labels (Kubernetes mode).
    fn pod_context(&self, env: &CniEnv) -> Result<(Labels, Option<Labels>)> {
        let Backend::Kube { client, .. } = &self.backend else {
            return Ok((BTreeMap::new(), None));
        };
        let (ns, pod) = (env.pod_namespace(), env.pod_name());
        self.rt.block_on(async {
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(client.clone(), &ns);
            let annotations = match pods.get_opt(&pod).await {
                Ok(Some(p)) => p.metadata.annotations.unwrap_or_default(),
                Ok(None) => BTreeMap::new(),
                Err(e) => {
                    return Err(CniError::new(
                        code::TRY_AGAIN,
                        format!("reading pod {ns}/{pod}: {e}"),
                    ))
                }
            };
            let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                kube::Api::all(client.clone());
            let labels = match namespaces.get_opt(&ns).await {
                Ok(Some(n)) => Some(n.metadata.labels.unwrap_or_default()),
                _ => None,
            };
            Ok((annotations, labels))
        })
    }

    /// Assigns the pod's addresses: the ones its `ipAddrs` annotation names, else one per
    /// family from its `ipv4pools`/`ipv6pools`, else from the automatic pools.
    /// An ADD repeated for the same container gets the addresses it already holds.
    pub fn assign(&self, env: &CniEnv) -> Result<Vec<IpAddr>> {
        let held = self.lookup(&env.container_id)?;
        if !held.is_empty() {
            return Ok(held);
        }
        let (annotations, namespace_labels) = self.pod_context(env)?;
        let list = |key: &str| -> Result<Vec<String>> {
            match annotations.get(key) {
                None => Ok(Vec::new()),
                Some(v) => serde_json::from_str::<Vec<String>>(v).map_err(|e| {
                    CniError::config(format!(
                        "pod annotation {key}: {v:?} is not a JSON list of strings ({e}), e.g. '[\"default-ipv4-ippool\"]'"
                    ))
                }),
            }
        };
        let mut req = Request {
            handle: self.handle(&env.container_id),
            node: self.node.clone(),
            owner: self.owner(&env.pod_namespace(), &env.pod_name()),
            num_v4: usize::from(self.families.0),
            num_v6: usize::from(self.families.1),
            reserved: self.reserved.clone(),
            skip_tunnel_addresses: true,
            node_labels: self.node_labels.clone(),
            namespace_labels,
            ..Request::default()
        };
        let fixed: Vec<IpAddr> = list(ANN_IP_ADDRS)?
            .iter()
            .map(|s| {
                s.parse::<IpAddr>().map_err(|_| {
                    CniError::config(format!(
                        "pod annotation {ANN_IP_ADDRS}: {s:?} is not an IP address"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let mut pool_names = list(ANN_IPV4_POOLS)?;
        pool_names.extend(list(ANN_IPV6_POOLS)?);
        self.rt.block_on(async {
            if !fixed.is_empty() {
                for ip in &fixed {
                    let r = match &self.backend {
                        Backend::File(i) => i.assign_ip(*ip, &req).await,
                        Backend::Kube { ipam, .. } => ipam.assign_ip(*ip, &req).await,
                    };
                    if let Err(e) = r {
                        self.release_async(&req.handle).await.ok();
                        return Err(ipam_error(e));
                    }
                }
                return Ok(fixed.clone());
            }
            if !pool_names.is_empty() {
                let pools = match &self.backend {
                    Backend::File(i) => i.pools().to_vec(),
                    Backend::Kube { ipam, .. } => ipam.pools().to_vec(),
                };
                for name in &pool_names {
                    let p = pools
                        .iter()
                        .find(|p| &p.name == name || p.cidr.to_string() == *name)
                        .ok_or_else(|| {
                            CniError::config(format!(
                                "the pod asks for IPPool {name:?}, which does not exist"
                            ))
                        })?;
                    req.pools.push(p.cidr);
                }
                if !list(ANN_IPV4_POOLS)?.is_empty() {
                    req.num_v4 = 1;
                }
                if !list(ANN_IPV6_POOLS)?.is_empty() {
                    req.num_v6 = 1;
                }
            }
            if req.num_v4 + req.num_v6 == 0 {
                return Err(CniError::new(
                    code::NO_BLOCK,
                    format!(
                        "no IPPool for workloads exists for node {:?}: create an IPPool",
                        self.node
                    ),
                ));
            }
            let got = match &self.backend {
                Backend::File(i) => i.auto_assign(&req).await,
                Backend::Kube { ipam, .. } => ipam.auto_assign(&req).await,
            }
            .map_err(ipam_error)?;
            Ok(got.all().map(|n| n.ip()).collect())
        })
    }

    /// The addresses a container holds.
    pub fn lookup(&self, container_id: &str) -> Result<Vec<IpAddr>> {
        let h = self.handle(container_id);
        let mut ips = self
            .rt
            .block_on(async {
                match &self.backend {
                    Backend::File(i) => i.ips_by_handle(&h).await,
                    Backend::Kube { ipam, .. } => ipam.ips_by_handle(&h).await,
                }
            })
            .map_err(ipam_error)?;
        ips.sort_by_key(|ip| ip.is_ipv6());
        Ok(ips)
    }

    async fn release_async(&self, handle: &str) -> std::result::Result<usize, IpamError> {
        match &self.backend {
            Backend::File(i) => i.release_by_handle(handle).await,
            Backend::Kube { ipam, .. } => ipam.release_by_handle(handle).await,
        }
    }

    /// Releases a container's addresses; returns them.
    pub fn release(&self, container_id: &str) -> Result<Vec<IpAddr>> {
        let held = self.lookup(container_id)?;
        let h = self.handle(container_id);
        self.rt
            .block_on(self.release_async(&h))
            .map_err(ipam_error)?;
        Ok(held)
    }

    /// GC: releases the addresses of every container of this network and node that
    /// `keep` does not name. Returns the handles released.
    pub fn release_unless(&self, keep: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let prefix = format!("{}.", self.net_name);
        self.rt.block_on(async {
            let handles: Vec<Handle> = match &self.backend {
                Backend::File(i) => i.store.list::<Handle>().await,
                Backend::Kube { ipam, .. } => ipam.store.list::<Handle>().await,
            }
            .map_err(|e| ipam_error(e.into()))?
            .into_iter()
            .map(|h| h.value)
            .collect();
            let mut out = Vec::new();
            for h in handles {
                let Some(id) = h.handle_id.strip_prefix(&prefix) else {
                    continue;
                };
                if keep(id) || !self.holds_on_this_node(&h).await {
                    continue;
                }
                self.release_async(&h.handle_id).await.map_err(ipam_error)?;
                out.push(h.name());
            }
            Ok(out)
        })
    }

    /// Whether a handle's addresses were allocated by this node (GC must not release
    /// another node's pods).
    async fn holds_on_this_node(&self, h: &Handle) -> bool {
        let ips = match &self.backend {
            Backend::File(i) => i.ips_by_handle(&h.handle_id).await,
            Backend::Kube { ipam, .. } => ipam.ips_by_handle(&h.handle_id).await,
        };
        let Ok(ips) = ips else { return false };
        let blocks = match &self.backend {
            Backend::File(i) => i.store.list::<crate::ipam::Block>().await,
            Backend::Kube { ipam, .. } => ipam.store.list::<crate::ipam::Block>().await,
        };
        let Ok(blocks) = blocks else { return false };
        ips.iter().any(|ip| {
            blocks.iter().any(|b| {
                b.value
                    .attribute_of(*ip)
                    .and_then(|a| a.owner.as_ref())
                    .and_then(|o| o.get("node"))
                    == Some(&self.node)
            })
        })
    }

    /// Records the pod's addresses in its annotations, as Calico's CNI does (Kubernetes
    /// mode; through `pods/status`). Failure is logged by the caller, not fatal.
    pub fn annotate(&self, env: &CniEnv, ips: &[IpAddr]) -> Result<()> {
        let Backend::Kube { client, .. } = &self.backend else {
            return Ok(());
        };
        let nets: Vec<String> = ips
            .iter()
            .map(|ip| brindle_felix::calc::host_net(*ip).to_string())
            .collect();
        let patch = serde_json::json!({"metadata": {"annotations": {
            ANN_POD_IP: nets.first().cloned().unwrap_or_default(),
            ANN_POD_IPS: nets.join(","),
            ANN_CONTAINER_ID: env.container_id,
        }}});
        self.patch_pod(client, env, &patch)
    }

    /// DEL: blanks the annotations if they still name this container.
    pub fn clear_annotations(&self, env: &CniEnv) -> Result<()> {
        let Backend::Kube { client, .. } = &self.backend else {
            return Ok(());
        };
        let (annotations, _) = self.pod_context(env)?;
        if annotations.get(ANN_CONTAINER_ID).map(String::as_str) != Some(env.container_id.as_str())
        {
            return Ok(());
        }
        let patch =
            serde_json::json!({"metadata": {"annotations": {ANN_POD_IP: "", ANN_POD_IPS: ""}}});
        self.patch_pod(client, env, &patch)
    }

    fn patch_pod(
        &self,
        client: &kube::Client,
        env: &CniEnv,
        patch: &serde_json::Value,
    ) -> Result<()> {
        let (ns, pod) = (env.pod_namespace(), env.pod_name());
        self.rt.block_on(async {
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(client.clone(), &ns);
            match pods
                .patch_status(
                    &pod,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(patch),
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(CniError::io(format!("annotating pod {ns}/{pod}: {e}"))),
            }
        })
    }
}
