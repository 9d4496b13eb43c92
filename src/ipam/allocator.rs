//! Calico's IPAM algorithm (`libcalico-go/lib/ipam/ipam.go`,
//! `ipam_block_reader_writer.go`) over any [`Store`]:
//!
//! 1. The node's own blocks first (its affinities in the chosen pools).
//! 2. Else a new block: the first free block-sized CIDR of the pool, walked from a
//!    start derived from the node's name (so concurrent requests on one node tend to
//!    pick the same block, and nodes spread out); claimed in two phases: affinity
//!    written `pending`, block created (the create is the lock: whoever creates it owns
//!    it), affinity `confirmed`. A block that exists but is empty and was claimed over a
//!    minute ago may be reclaimed from another node.
//! 3. Else, unless `strictAffinity`, an address borrowed from another node's block (that
//!    /32 is then routed to this node; the block stays the other node's).
//!
//! Each address is taken by rewriting its block at the revision read (conflict: read
//! again and retry, up to 100 times), after the handle (`IPAMHandle`) has been counted
//! up; a failed block write counts the handle back down. Release does the reverse.
//! `maxBlocksPerHost` (0 = 20) bounds the blocks a node claims.

use super::block::{host_affinity, time_text, Block, BlockError};
use super::objects::{
    affinity_name, cidr_to_name, Affinity, AffinityState, Handle, IpamObject, IpamSettings,
};
use super::store::{Store, StoreError, Versioned};
use brindle_model::{AllowedUse, AssignmentMode, IpPoolSpec};
use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Calico's `datastoreRetries`.
pub const RETRIES: usize = 100;
/// Calico's `EmptyBlockMinReclaimAge`.
pub const EMPTY_BLOCK_MIN_RECLAIM_SECS: i64 = 60;
/// Calico's default for `maxBlocksPerHost: 0`.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("{0}")]
    NoPool(String),
    #[error("{0}")]
    Exhausted(String),
    #[error("node {node:?} already has {have} blocks and maxBlocksPerHost is {max}: raise IPAMConfig maxBlocksPerHost or free addresses")]
    BlockLimit {
        node: String,
        have: usize,
        max: usize,
    },
    #[error("IPAM datastore: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Block(#[from] BlockError),
    #[error("gave up after {RETRIES} conflicting writes ({0}): too many concurrent IPAM requests")]
    Retries(String),
}

pub type Result<T> = std::result::Result<T, IpamError>;

/// One assignment request (one pod interface).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `k8s-pod-network.<containerID>` for a pod, as Calico's CNI.
    pub handle: String,
    pub node: String,
    /// Stored as the allocation's `secondary` attributes (`node`, `pod`, `namespace`,
    /// `timestamp`).
    pub owner: BTreeMap<String, String>,
    pub num_v4: usize,
    pub num_v6: usize,
    /// Pools asked for by the pod (`cni.projectcalico.org/ipv4pools`); empty: automatic.
    pub pools: Vec<IpNetwork>,
    /// Addresses never handed out (e.g. the node's own).
    pub reserved: Vec<IpAddr>,
    /// Never hand out the first address of a block in a pool with IPIP or VXLAN: Brindle's
    /// dataplane uses it as the block owner's tunnel address when the node has none of its
    /// own (what calico-node allocates from IPAM as `ipip-tunnel-addr-<node>`).
    pub skip_tunnel_addresses: bool,
    pub node_labels: BTreeMap<String, String>,
    /// The pod's namespace labels, for `IPPool.namespaceSelector` (None: not checked).
    pub namespace_labels: Option<BTreeMap<String, String>>,
}

/// What [`Ipam::auto_assign`] gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assigned {
    pub v4: Vec<IpNetwork>,
    pub v6: Vec<IpNetwork>,
}

impl Assigned {
    pub fn all(&self) -> impl Iterator<Item = &IpNetwork> {
        self.v4.iter().chain(self.v6.iter())
    }
}

pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The allocator: a store, the pools and the settings.
pub struct Ipam<S> {
    pub store: S,
    pools: Vec<IpPoolSpec>,
    settings: IpamSettings,
    clock: Clock,
}

enum Claim {
    Conflict,
    Lost,
    Failed(IpamError),
}

impl From<StoreError> for Claim {
    /// A conflict, or an object deleted under us (another process lost a claim and
    /// removed its pending affinity, or released a block): read again and retry.
    fn from(e: StoreError) -> Claim {
        if e.is_conflict() || matches!(e, StoreError::NotFound(_)) {
            Claim::Conflict
        } else {
            Claim::Failed(e.into())
        }
    }
}

/// FNV-1 32-bit, the hash Calico seeds a node's block order with.
fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h
}

fn net_u128(n: &IpNetwork) -> u128 {
    match n.network() {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The block-sized CIDRs of a pool, starting at a point derived from `host`, wrapping
/// around: each block once.
pub fn pool_blocks(pool: &IpPoolSpec, host: &str) -> impl Iterator<Item = IpNetwork> {
    let bits: u8 = if pool.cidr.is_ipv4() { 32 } else { 128 };
    let size = pool.block_size.clamp(pool.cidr.prefix(), bits);
    let span = u32::from(size - pool.cidr.prefix());
    let count: u128 = if span >= 127 {
        u128::MAX
    } else {
        1u128 << span
    };
    let step_bits = u32::from(bits - size);
    let base = net_u128(&pool.cidr);
    let start = u128::from(fnv32(host)) % count;
    let v4 = pool.cidr.is_ipv4();
    (0..count).map(move |i| {
        let idx = (start + i) % count;
        let addr = base + (idx << step_bits);
        let ip = if v4 {
            IpAddr::V4((addr as u32).into())
        } else {
            IpAddr::V6(addr.into())
        };
        IpNetwork::new(ip, size).expect("prefix within range")
    })
}

/// A pool with Calico's defaults for a CIDR (block size as the CIDR's when smaller).
pub fn default_pool(cidr: IpNetwork) -> IpPoolSpec {
    IpPoolSpec {
        name: cidr.to_string(),
        cidr,
        block_size: if cidr.is_ipv4() {
            26.max(cidr.prefix())
        } else {
            122.max(cidr.prefix())
        },
        ipip_mode: brindle_model::EncapMode::Never,
        vxlan_mode: brindle_model::EncapMode::Never,
        nat_outgoing: false,
        disabled: false,
        disable_bgp_export: false,
        node_selector: brindle_model::Selector::parse("all()").expect("all() parses"),
        allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
        assignment_mode: AssignmentMode::Automatic,
        namespace_selector: None,
    }
}

fn block_cidr_for(ip: IpAddr, pool: &IpPoolSpec) -> Option<IpNetwork> {
    let bits: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let size = pool.block_size.min(bits);
    let n = IpNetwork::new(ip, size).ok()?;
    IpNetwork::new(n.network(), size).ok()
}

impl<S: Store> Ipam<S> {
    pub fn new(store: S, pools: Vec<IpPoolSpec>, settings: IpamSettings) -> Ipam<S> {
        Ipam {
            store,
            pools,
            settings,
            clock: Arc::new(Utc::now),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn pools(&self) -> &[IpPoolSpec] {
        &self.pools
    }

    pub fn settings(&self) -> &IpamSettings {
        &self.settings
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn cooldown(&self) -> i64 {
        self.settings.ip_cooldown_seconds
    }

    fn max_blocks(&self) -> usize {
        match self.settings.max_blocks_per_host {
            0 => DEFAULT_MAX_BLOCKS_PER_HOST,
            n => n,
        }
    }

    /// The pool a block or address belongs to.
    pub fn pool_for(&self, ip: IpAddr) -> Option<&IpPoolSpec> {
        self.pools.iter().find(|p| p.cidr.contains(ip))
    }

    /// The first address of a block in a pool with IPIP or VXLAN.
    fn is_tunnel_address(&self, ip: IpAddr) -> bool {
        self.pool_for(ip).is_some_and(|p| {
            (p.ipip_mode != brindle_model::EncapMode::Never
                || p.vxlan_mode != brindle_model::EncapMode::Never)
                && block_cidr_for(ip, p).is_some_and(|b| b.network() == ip)
        })
    }

    /// The pools a request may use for one family, in order (Calico's
    /// `determinePools`).
    fn choose_pools(&self, req: &Request, v4: bool) -> Result<Vec<IpPoolSpec>> {
        let family = if v4 { "IPv4" } else { "IPv6" };
        let usable = |p: &IpPoolSpec| {
            p.cidr.is_ipv4() == v4
                && !p.disabled
                && p.allowed_uses.contains(&AllowedUse::Workload)
                && match (&p.namespace_selector, &req.namespace_labels) {
                    (Some(sel), Some(labels)) => sel.matches(labels),
                    _ => true,
                }
        };
        let requested: Vec<&IpNetwork> = req.pools.iter().filter(|n| n.is_ipv4() == v4).collect();
        if !requested.is_empty() {
            let mut out = Vec::new();
            for net in requested {
                match self.pools.iter().find(|p| p.cidr == *net || p.name == net.to_string()) {
                    Some(p) if usable(p) => out.push(p.clone()),
                    Some(p) => {
                        return Err(IpamError::NoPool(format!(
                            "the requested {family} pool {} ({}) is disabled or not for workloads",
                            p.name, p.cidr
                        )))
                    }
                    None => {
                        return Err(IpamError::NoPool(format!(
                            "the requested {family} pool {net} does not exist: create the IPPool or fix the pod's cni.projectcalico.org annotation"
                        )))
                    }
                }
            }
            return Ok(out);
        }
        let mut out: Vec<IpPoolSpec> = self
            .pools
            .iter()
            .filter(|p| {
                usable(p)
                    && p.assignment_mode == AssignmentMode::Automatic
                    && p.node_selector.matches(&req.node_labels)
            })
            .cloned()
            .collect();
        out.sort_by_key(|p| (net_u128(&p.cidr), p.cidr.prefix()));
        if out.is_empty() {
            return Err(IpamError::NoPool(format!(
                "no enabled {family} IPPool for workloads matches node {:?}: create one or check the pools' nodeSelector, disabled and allowedUses",
                req.node
            )));
        }
        Ok(out)
    }

    /// Assigns addresses for a request: `num_v4` IPv4 then `num_v6` IPv6. On failure,
    /// whatever this call took is given back.
    pub async fn auto_assign(&self, req: &Request) -> Result<Assigned> {
        let mut out = Assigned::default();
        let r = async {
            if req.num_v4 > 0 {
                out.v4 = self.assign_family(req, true, req.num_v4).await?;
            }
            if req.num_v6 > 0 {
                out.v6 = self.assign_family(req, false, req.num_v6).await?;
            }
            Ok::<_, IpamError>(())
        }
        .await;
        match r {
            Ok(()) => Ok(out),
            Err(e) => {
                if out.all().next().is_some() {
                    if let Err(re) = self.release_by_handle(&req.handle).await {
                        warn!(handle = %req.handle, "giving back addresses after a failed assignment: {re}");
                    }
                }
                Err(e)
            }
        }
    }

    async fn affine_blocks(&self, node: &str, pools: &[IpPoolSpec]) -> Result<Vec<IpNetwork>> {
        let mut out: Vec<IpNetwork> = self
            .store
            .list::<Affinity>()
            .await?
            .into_iter()
            .map(|a| a.value)
            .filter(|a| a.node == node && a.affinity_type == "host")
            .filter(|a| pools.iter().any(|p| p.cidr.contains(a.cidr.network())))
            .map(|a| a.cidr)
            .collect();
        out.sort_by_key(|c| (net_u128(c), c.prefix()));
        Ok(out)
    }

    async fn assign_family(&self, req: &Request, v4: bool, num: usize) -> Result<Vec<IpNetwork>> {
        let pools = self.choose_pools(req, v4)?;
        let reserved = |ip: IpAddr| {
            req.reserved.contains(&ip) || (req.skip_tunnel_addresses && self.is_tunnel_address(ip))
        };
        let affine = self.affine_blocks(&req.node, &pools).await?;
        let mut remaining: VecDeque<IpNetwork> = affine.clone().into();
        let mut owned = remaining.len();
        let max = self.max_blocks();
        let mut ips: Vec<IpNetwork> = Vec::new();
        let mut rounds = 0;
        while ips.len() < num {
            rounds += 1;
            if rounds > RETRIES * 4 {
                return Err(IpamError::Retries("finding a block with space".into()));
            }
            let found = self
                .find_or_claim_block(req, &pools, &mut remaining, owned < max, &reserved)
                .await;
            let (mut block, newly) = match found {
                Ok(Some(b)) => b,
                Ok(None) => break, // no free block: try borrowing
                Err(IpamError::BlockLimit { .. }) => {
                    return Err(IpamError::BlockLimit {
                        node: req.node.clone(),
                        have: owned,
                        max,
                    })
                }
                Err(e) => return Err(e),
            };
            if newly {
                owned += 1;
            }
            for _ in 0..RETRIES {
                match self
                    .assign_from_block(
                        &block,
                        num - ips.len(),
                        req,
                        self.settings.strict_affinity,
                        &reserved,
                    )
                    .await
                {
                    Ok(got) => {
                        ips.extend(got);
                        break;
                    }
                    Err(IpamError::Store(e)) if e.is_conflict() => {
                        block = match self
                            .store
                            .get::<Block>(&cidr_to_name(&block.value.cidr))
                            .await
                        {
                            Ok(b) => b,
                            Err(e) => {
                                warn!(
                                    "re-reading block {} after a conflict: {e}",
                                    block.value.cidr
                                );
                                break;
                            }
                        };
                    }
                    Err(e) => {
                        warn!("assigning from block {}: {e}", block.value.cidr);
                        break;
                    }
                }
            }
        }
        if ips.len() < num && !self.settings.strict_affinity {
            'pools: for pool in &pools {
                for cidr in pool_blocks(pool, &req.node) {
                    if ips.len() >= num {
                        break 'pools;
                    }
                    for _ in 0..RETRIES {
                        let b = match self.store.get::<Block>(&cidr_to_name(&cidr)).await {
                            Ok(b) => b,
                            Err(StoreError::NotFound(_)) => break,
                            Err(e) => return Err(e.into()),
                        };
                        if b.value.num_free(&reserved) == 0 {
                            break;
                        }
                        match self
                            .assign_from_block(&b, num - ips.len(), req, false, &reserved)
                            .await
                        {
                            Ok(got) => {
                                if !got.is_empty() {
                                    info!(block = %cidr, node = %req.node, "borrowed {} address(es) from another node's block", got.len());
                                }
                                ips.extend(got);
                                break;
                            }
                            Err(IpamError::Store(e)) if e.is_conflict() => continue,
                            Err(e) => {
                                warn!("borrowing from block {cidr}: {e}");
                                break;
                            }
                        }
                    }
                }
            }
        }
        if ips.len() < num {
            let family = if v4 { "IPv4" } else { "IPv6" };
            let names: Vec<String> = pools
                .iter()
                .map(|p| format!("{} ({})", p.name, p.cidr))
                .collect();
            let got = ips.len();
            // Give back a partial assignment of this family.
            if got > 0 {
                let _ = self
                    .release_ips(&ips.iter().map(|n| n.ip()).collect::<Vec<_>>())
                    .await;
            }
            return Err(IpamError::Exhausted(format!(
                "no free {family} address for node {:?} (its blocks: {}) in {}{}: add an IPPool, free addresses (brindlectl ipam check) or allow borrowing (IPAMConfig strictAffinity: false)",
                req.node,
                if affine.is_empty() { "none".to_string() } else { affine.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ") },
                names.join(", "),
                if self.settings.strict_affinity {
                    " with strictAffinity"
                } else {
                    ""
                }
            )));
        }
        Ok(ips)
    }

    /// Assigns one given address (Calico's `AssignIP`: the pod annotation
    /// `cni.projectcalico.org/ipAddrs`, and state migrated from the old file IPAM). The
    /// block is claimed for the node if it does not exist yet. Assigning an address the
    /// same handle already holds succeeds.
    pub async fn assign_ip(&self, ip: IpAddr, req: &Request) -> Result<()> {
        let pool = self.pool_for(ip).ok_or_else(|| {
            IpamError::NoPool(format!(
                "{ip} is not in any IPPool: create one or ask for another address"
            ))
        })?;
        let cidr = block_cidr_for(ip, pool)
            .ok_or_else(|| IpamError::NoPool(format!("{ip}: the pool's block size is invalid")))?;
        let ours = host_affinity(&req.node);
        for _ in 0..RETRIES {
            let block = match self.store.get::<Block>(&cidr_to_name(&cidr)).await {
                Ok(b) => b,
                Err(StoreError::NotFound(_)) => {
                    let pending = match self.pending_affinity(&req.node, cidr).await {
                        Ok(a) => a,
                        Err(e) if e.is_conflict() || matches!(e, StoreError::NotFound(_)) => {
                            continue
                        }
                        Err(e) => return Err(e.into()),
                    };
                    match self.block_from_affinity(pending, &req.node).await {
                        Ok(b) => b,
                        Err(Claim::Conflict) | Err(Claim::Lost) => continue,
                        Err(Claim::Failed(e)) => return Err(e),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            if self.settings.strict_affinity
                && block.value.affinity.as_deref() != Some(ours.as_str())
            {
                return Err(IpamError::Exhausted(format!(
                    "{ip} is in block {cidr}, which is not {:?}'s, and strictAffinity forbids borrowing",
                    req.node
                )));
            }
            let mut b = block.value.clone();
            b.garbage_collect(self.now(), self.cooldown());
            if let Some(a) = b.attribute_of(ip) {
                if a.handle_id.as_deref() == Some(req.handle.as_str()) {
                    return Ok(());
                }
                return Err(IpamError::Block(BlockError::AlreadyAssigned(ip)));
            }
            b.assign(ip, Some(&req.handle), Some(&req.owner))?;
            self.increment_handle(&req.handle, &cidr, 1).await?;
            match self
                .update_block(Versioned {
                    value: b,
                    revision: block.revision.clone(),
                })
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if let Err(de) = self.decrement_handle(&req.handle, &cidr, 1).await {
                        warn!(handle = %req.handle, "counting the handle back down: {de}");
                    }
                    if !e.is_conflict() {
                        return Err(e.into());
                    }
                }
            }
        }
        Err(IpamError::Retries(format!("assigning {ip}")))
    }

    /// Takes up to `num` addresses from one block and writes it back at the revision
    /// read.
    async fn assign_from_block(
        &self,
        block: &Versioned<Block>,
        num: usize,
        req: &Request,
        affinity_check: bool,
        reserved: &(dyn Fn(IpAddr) -> bool + Sync),
    ) -> Result<Vec<IpNetwork>> {
        let mut b = block.value.clone();
        let ours = host_affinity(&req.node);
        if affinity_check && b.affinity.as_deref() != Some(ours.as_str()) {
            return Err(IpamError::Exhausted(format!(
                "block {} is not affine to {:?} and strictAffinity forbids borrowing",
                b.cidr, req.node
            )));
        }
        b.garbage_collect(self.now(), self.cooldown());
        let ips = b.auto_assign(num, Some(&req.handle), Some(&req.owner), reserved);
        if ips.is_empty() {
            return Ok(Vec::new());
        }
        self.increment_handle(&req.handle, &b.cidr, ips.len())
            .await?;
        let cidr = b.cidr;
        if let Err(e) = self
            .update_block(Versioned {
                value: b,
                revision: block.revision.clone(),
            })
            .await
        {
            if let Err(de) = self.decrement_handle(&req.handle, &cidr, ips.len()).await {
                warn!(handle = %req.handle, "counting the handle back down: {de}");
            }
            return Err(e.into());
        }
        let bits = if cidr.is_ipv4() { 32 } else { 128 };
        Ok(ips
            .into_iter()
            .map(|ip| IpNetwork::new(ip, bits).expect("host prefix"))
            .collect())
    }

    /// Writes a block, bumping its sequence number as Calico does on every write.
    async fn update_block(
        &self,
        mut b: Versioned<Block>,
    ) -> std::result::Result<Versioned<Block>, StoreError> {
        b.value.sequence_number = b.value.sequence_number.wrapping_add(1);
        self.store.update(b).await
    }

    async fn find_or_claim_block(
        &self,
        req: &Request,
        pools: &[IpPoolSpec],
        remaining: &mut VecDeque<IpNetwork>,
        allow_new: bool,
        reserved: &(dyn Fn(IpAddr) -> bool + Sync),
    ) -> Result<Option<(Versioned<Block>, bool)>> {
        while let Some(cidr) = remaining.pop_front() {
            for _ in 0..RETRIES {
                let aff = match self
                    .store
                    .get::<Affinity>(&affinity_name(&req.node, &cidr))
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        debug!("affinity for {cidr}: {e}");
                        break;
                    }
                };
                match self.block_from_affinity(aff, &req.node).await {
                    Ok(b) => {
                        if b.value.num_free(reserved) >= 1 {
                            return Ok(Some((b, false)));
                        }
                        break;
                    }
                    Err(Claim::Conflict) => continue,
                    Err(Claim::Lost) => break,
                    Err(Claim::Failed(e)) => {
                        warn!("block {cidr} of node {:?}: {e}", req.node);
                        break;
                    }
                }
            }
        }
        if !allow_new {
            return Err(IpamError::BlockLimit {
                node: req.node.clone(),
                have: 0,
                max: 0,
            });
        }
        if !self.settings.auto_allocate_blocks {
            return Ok(None);
        }
        for _ in 0..RETRIES {
            let Some(subnet) = self.find_usable_block(req, pools, reserved).await? else {
                return Ok(None);
            };
            for _ in 0..RETRIES {
                let pending = match self.pending_affinity(&req.node, subnet).await {
                    Ok(a) => a,
                    Err(e) if e.is_conflict() || matches!(e, StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                match self.block_from_affinity(pending, &req.node).await {
                    Ok(b) => {
                        if b.value.num_free(reserved) >= 1 {
                            info!(node = %req.node, block = %subnet, "claimed block");
                            return Ok(Some((b, true)));
                        }
                        break;
                    }
                    Err(Claim::Conflict) => continue,
                    Err(Claim::Lost) => break,
                    Err(Claim::Failed(e)) => return Err(e),
                }
            }
        }
        Err(IpamError::Retries("claiming a block".into()))
    }

    /// The first block-sized CIDR in the pools with no block, or this node's block with
    /// room, or an empty block claimed over a minute ago (reclaimed).
    async fn find_usable_block(
        &self,
        req: &Request,
        pools: &[IpPoolSpec],
        reserved: &(dyn Fn(IpAddr) -> bool + Sync),
    ) -> Result<Option<IpNetwork>> {
        let now = self.now();
        let ours = host_affinity(&req.node);
        let existing: HashMap<IpNetwork, Versioned<Block>> = self
            .store
            .list::<Block>()
            .await?
            .into_iter()
            .map(|mut b| {
                b.value.garbage_collect(now, self.cooldown());
                (b.value.cidr, b)
            })
            .collect();
        let mut empty = Vec::new();
        for pool in pools {
            let blocks = pool_blocks(pool, &req.node);
            // A pool with more blocks than this can never be full of existing ones:
            // the first few candidates suffice.
            for subnet in blocks.take(existing.len() + 1) {
                match existing.get(&subnet) {
                    None => return Ok(Some(subnet)),
                    Some(b)
                        if b.value.affinity.as_deref() == Some(ours.as_str())
                            && b.value.num_free(reserved) > 0 =>
                    {
                        return Ok(Some(subnet))
                    }
                    Some(b) if b.value.is_empty() && b.value.num_free(reserved) > 0 => {
                        empty.push(b.clone())
                    }
                    Some(_) => {}
                }
            }
        }
        for b in empty {
            let age = b
                .value
                .claim_time()
                .map(|t| (now - t).num_seconds())
                .unwrap_or(i64::MAX);
            if age < EMPTY_BLOCK_MIN_RECLAIM_SECS {
                continue;
            }
            let Some(host) = b.value.host().map(str::to_string) else {
                continue;
            };
            match self
                .release_block_affinity(&host, b.value.cidr, true, Some(b.value.sequence_number))
                .await
            {
                Ok(()) => {
                    info!(block = %b.value.cidr, from = %host, "reclaimed an empty block");
                    return Ok(Some(b.value.cidr));
                }
                Err(e) => debug!("reclaiming {}: {e}", b.value.cidr),
            }
        }
        Ok(None)
    }

    async fn pending_affinity(
        &self,
        node: &str,
        cidr: IpNetwork,
    ) -> std::result::Result<Versioned<Affinity>, StoreError> {
        match self
            .store
            .create(Affinity::host(node, cidr, AffinityState::Pending))
            .await
        {
            Ok(a) => Ok(a),
            Err(StoreError::AlreadyExists(_)) => {
                let mut a = self
                    .store
                    .get::<Affinity>(&affinity_name(node, &cidr))
                    .await?;
                if a.value.state != AffinityState::Confirmed {
                    a.value.state = AffinityState::Pending;
                    return self.store.update(a).await;
                }
                Ok(a)
            }
            Err(e) => Err(e),
        }
    }

    /// The block an affinity refers to, creating (claiming) it if it does not exist and
    /// confirming the affinity; a stale affinity (the block is someone else's) is
    /// deleted.
    async fn block_from_affinity(
        &self,
        mut aff: Versioned<Affinity>,
        node: &str,
    ) -> std::result::Result<Versioned<Block>, Claim> {
        let cidr = aff.value.cidr;
        let ours = host_affinity(node);
        match self.store.get::<Block>(&cidr_to_name(&cidr)).await {
            Err(StoreError::NotFound(_)) => {
                aff.value.state = AffinityState::Pending;
                let aff = self.store.update(aff).await?;
                let mut block =
                    Block::new(cidr, self.now().timestamp_nanos_opt().unwrap_or(0) as u64);
                block.affinity = Some(ours.clone());
                block.affinity_claim_time = Some(time_text(self.now()));
                match self.store.create(block).await {
                    Ok(b) => {
                        self.confirm_affinity(aff).await?;
                        Ok(b)
                    }
                    Err(StoreError::AlreadyExists(_)) => {
                        let b = self.store.get::<Block>(&cidr_to_name(&cidr)).await?;
                        if b.value.affinity.as_deref() == Some(ours.as_str()) {
                            self.confirm_affinity(aff).await?;
                            return Ok(b);
                        }
                        debug!(block = %cidr, "another node created the block first");
                        if let Err(e) = self.store.delete(aff).await {
                            debug!("deleting our pending affinity for {cidr}: {e}");
                        }
                        Err(Claim::Lost)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
            Ok(b) => {
                if b.value.affinity.as_deref() != Some(ours.as_str()) {
                    warn!(block = %cidr, node, "affinity is stale (the block is {:?}'s): deleting it", b.value.affinity);
                    if let Err(e) = self.store.delete(aff).await {
                        debug!("deleting stale affinity for {cidr}: {e}");
                    }
                    return Err(Claim::Lost);
                }
                if aff.value.state != AffinityState::Confirmed {
                    aff.value.state = AffinityState::Pending;
                    let mut aff = self.store.update(aff).await?;
                    let b = self.update_block(b).await?;
                    aff.value.state = AffinityState::Confirmed;
                    self.store.update(aff).await?;
                    return Ok(b);
                }
                Ok(b)
            }
        }
    }

    async fn confirm_affinity(
        &self,
        mut aff: Versioned<Affinity>,
    ) -> std::result::Result<(), Claim> {
        aff.value.state = AffinityState::Confirmed;
        let name = affinity_name(&aff.value.node, &aff.value.cidr);
        match self.store.update(aff).await {
            Ok(_) => Ok(()),
            Err(e) => match self.store.get::<Affinity>(&name).await {
                Ok(a) if a.value.state == AffinityState::Confirmed => Ok(()),
                _ => Err(e.into()),
            },
        }
    }

    /// Gives up `host`'s affinity to a block: an empty block is deleted, a block in use
    /// loses its affinity (its addresses stay allocated).
    pub async fn release_block_affinity(
        &self,
        host: &str,
        cidr: IpNetwork,
        require_empty: bool,
        required_sequence: Option<u64>,
    ) -> Result<()> {
        let mut aff = self
            .store
            .get::<Affinity>(&affinity_name(host, &cidr))
            .await?;
        let mut b = self.store.get::<Block>(&cidr_to_name(&cidr)).await?;
        b.value.garbage_collect(self.now(), self.cooldown());
        if let Some(s) = required_sequence {
            if s != b.value.sequence_number {
                return Err(StoreError::Conflict(format!(
                    "block {cidr} changed since it was read"
                ))
                .into());
            }
        }
        if b.value.affinity.as_deref() != Some(host_affinity(host).as_str()) {
            let _ = self.store.delete(aff).await;
            return Err(IpamError::Exhausted(format!(
                "block {cidr} is not {host:?}'s"
            )));
        }
        if require_empty && !b.value.is_empty() {
            return Err(IpamError::Exhausted(format!("block {cidr} is not empty")));
        }
        aff.value.state = AffinityState::PendingDeletion;
        let aff = self.store.update(aff).await?;
        if b.value.is_empty() {
            match self.store.delete(b).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            b.value.affinity = None;
            b.value.affinity_claim_time = None;
            self.update_block(b).await?;
        }
        match self.store.delete(aff).await {
            Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A node left the cluster: every block affinity it holds is given up.
    pub async fn release_host(&self, host: &str) -> Result<usize> {
        let mut n = 0;
        for a in self.store.list::<Affinity>().await? {
            if a.value.node == host {
                for _ in 0..RETRIES {
                    match self
                        .release_block_affinity(host, a.value.cidr, false, None)
                        .await
                    {
                        Ok(()) => {
                            n += 1;
                            break;
                        }
                        Err(IpamError::Store(e)) if e.is_conflict() => continue,
                        Err(IpamError::Store(StoreError::NotFound(_))) => {
                            // The block is gone: drop the affinity alone.
                            if let Ok(a) = self
                                .store
                                .get::<Affinity>(&affinity_name(host, &a.value.cidr))
                                .await
                            {
                                let _ = self.store.delete(a).await;
                            }
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(n)
    }

    async fn increment_handle(&self, id: &str, cidr: &IpNetwork, n: usize) -> Result<()> {
        let name = Handle::new(id).name();
        for _ in 0..RETRIES {
            let r = match self.store.get::<Handle>(&name).await {
                Ok(mut h) => {
                    h.value.increment(cidr, n);
                    self.store.update(h).await.map(|_| ())
                }
                Err(StoreError::NotFound(_)) => {
                    let mut h = Handle::new(id);
                    h.increment(cidr, n);
                    self.store.create(h).await.map(|_| ())
                }
                Err(e) => return Err(e.into()),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.is_conflict() || matches!(e, StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Retries(format!("updating handle {id}")))
    }

    async fn decrement_handle(&self, id: &str, cidr: &IpNetwork, n: usize) -> Result<()> {
        let name = Handle::new(id).name();
        for _ in 0..RETRIES {
            let mut h = match self.store.get::<Handle>(&name).await {
                Ok(h) => h,
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if let Err(e) = h.value.decrement(cidr, n) {
                warn!("{e}");
                h.value.block.remove(&cidr.to_string());
            }
            let r = if h.value.is_empty() {
                self.store.delete(h).await
            } else {
                self.store.update(h).await.map(|_| ())
            };
            match r {
                Ok(()) | Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Retries(format!("updating handle {id}")))
    }

    /// The addresses a handle holds.
    pub async fn ips_by_handle(&self, id: &str) -> Result<Vec<IpAddr>> {
        let h = match self.store.get::<Handle>(&Handle::new(id).name()).await {
            Ok(h) => h,
            Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for cidr in h.value.block.keys() {
            let Ok(net) = cidr.parse::<IpNetwork>() else {
                continue;
            };
            match self.store.get::<Block>(&cidr_to_name(&net)).await {
                Ok(b) => out.extend(b.value.ips_by_handle(id)),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Releases every address of a handle. Returns how many were released (0: the
    /// handle holds none, which is not an error: DEL may be repeated).
    pub async fn release_by_handle(&self, id: &str) -> Result<usize> {
        let h = match self.store.get::<Handle>(&Handle::new(id).name()).await {
            Ok(h) => h,
            Err(StoreError::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut total = 0;
        for cidr in h.value.block.keys() {
            let Ok(net) = cidr.parse::<IpNetwork>() else {
                continue;
            };
            total += self.release_handle_in_block(id, net).await?;
        }
        Ok(total)
    }

    async fn release_handle_in_block(&self, id: &str, cidr: IpNetwork) -> Result<usize> {
        for _ in 0..RETRIES {
            let mut b = match self.store.get::<Block>(&cidr_to_name(&cidr)).await {
                Ok(b) => b,
                Err(StoreError::NotFound(_)) => {
                    self.decrement_handle(id, &cidr, usize::MAX).await.ok();
                    return Ok(0);
                }
                Err(e) => return Err(e.into()),
            };
            let n = b
                .value
                .release_by_handle(id, None, self.now(), self.cooldown());
            if n == 0 {
                // Nothing held here any more; make the handle agree.
                self.decrement_handle(id, &cidr, usize::MAX).await.ok();
                return Ok(0);
            }
            let r = if b.value.is_empty() && b.value.affinity.is_none() {
                self.store.delete(b).await
            } else {
                self.update_block(b).await.map(|_| ())
            };
            match r {
                Ok(()) | Err(StoreError::NotFound(_)) => {
                    if let Err(e) = self.decrement_handle(id, &cidr, n).await {
                        warn!(handle = id, "counting the handle down: {e}");
                    }
                    return Ok(n);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Retries(format!(
            "releasing handle {id} in {cidr}"
        )))
    }

    /// Releases one address only if it is still allocated at `sequence` to `handle` (garbage
    /// collection: never frees an address handed out again meanwhile). Ok(false): it no
    /// longer is.
    pub async fn release_checked(
        &self,
        ip: IpAddr,
        sequence: u64,
        handle: Option<&str>,
    ) -> Result<bool> {
        let Some(cidr) = self.pool_for(ip).and_then(|p| block_cidr_for(ip, p)) else {
            return Ok(false);
        };
        for _ in 0..RETRIES {
            let mut b = match self.store.get::<Block>(&cidr_to_name(&cidr)).await {
                Ok(b) => b,
                Err(StoreError::NotFound(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let (unalloc, by_handle) =
                match b
                    .value
                    .release(&[(ip, Some(sequence), handle)], self.now(), self.cooldown())
                {
                    Ok(r) => r,
                    Err(BlockError::Stale { .. }) => return Ok(false),
                    Err(e) => return Err(e.into()),
                };
            if !unalloc.is_empty() {
                return Ok(false);
            }
            let r = if b.value.is_empty() && b.value.affinity.is_none() {
                self.store.delete(b).await
            } else {
                self.update_block(b).await.map(|_| ())
            };
            match r {
                Ok(()) | Err(StoreError::NotFound(_)) => {
                    for (h, n) in by_handle {
                        if let Err(e) = self.decrement_handle(&h, &cidr, n).await {
                            warn!(handle = %h, "counting the handle down: {e}");
                        }
                    }
                    return Ok(true);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Retries(format!("releasing {ip}")))
    }

    /// Releases single addresses, whoever holds them (`brindlectl ipam release`).
    /// Returns the addresses that were not allocated.
    pub async fn release_ips(&self, ips: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let mut not_allocated = Vec::new();
        let mut by_block: BTreeMap<IpNetwork, Vec<IpAddr>> = BTreeMap::new();
        for &ip in ips {
            match self.pool_for(ip).and_then(|p| block_cidr_for(ip, p)) {
                Some(c) => by_block.entry(c).or_default().push(ip),
                None => {
                    // Outside every pool: search the blocks that exist.
                    let found = self
                        .store
                        .list::<Block>()
                        .await?
                        .into_iter()
                        .find(|b| b.value.cidr.contains(ip));
                    match found {
                        Some(b) => by_block.entry(b.value.cidr).or_default().push(ip),
                        None => not_allocated.push(ip),
                    }
                }
            }
        }
        for (cidr, ips) in by_block {
            let mut done = false;
            for _ in 0..RETRIES {
                let mut b = match self.store.get::<Block>(&cidr_to_name(&cidr)).await {
                    Ok(b) => b,
                    Err(StoreError::NotFound(_)) => {
                        not_allocated.extend(&ips);
                        done = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                let reqs: Vec<(IpAddr, Option<u64>, Option<&str>)> =
                    ips.iter().map(|&i| (i, None, None)).collect();
                let (unalloc, by_handle) = b.value.release(&reqs, self.now(), self.cooldown())?;
                if by_handle.is_empty() && unalloc.len() == ips.len() {
                    not_allocated.extend(unalloc);
                    done = true;
                    break;
                }
                let r = if b.value.is_empty() && b.value.affinity.is_none() {
                    self.store.delete(b).await
                } else {
                    self.update_block(b).await.map(|_| ())
                };
                match r {
                    Ok(()) | Err(StoreError::NotFound(_)) => {
                        not_allocated.extend(unalloc);
                        for (h, n) in by_handle {
                            if let Err(e) = self.decrement_handle(&h, &cidr, n).await {
                                warn!(handle = %h, "counting the handle down: {e}");
                            }
                        }
                        done = true;
                        break;
                    }
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if !done {
                return Err(IpamError::Retries(format!("releasing addresses in {cidr}")));
            }
        }
        Ok(not_allocated)
    }
}
