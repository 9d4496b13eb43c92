//! Routing information bases and the decision process, sans-IO.
//!
//! - Adj-RIB-In per peer: paths accepted after import checks (AS loop, ORIGINATOR_ID /
//!   CLUSTER_LIST loop, missing next hop).
//! - Local routes: prefixes this node originates (its pod blocks, service CIDRs) with
//!   their communities.
//! - Loc-RIB: per prefix the best path (RFC 4271 §9.1.2) and the equal-cost paths that
//!   may share the forwarding entry (ECMP), recomputed only for prefixes marked dirty.
//! - Adj-RIB-Out per peer ([`AdjRibOut`]): what was last sent, so a change produces only
//!   the difference, packed as few UPDATEs as possible (prefixes grouped by attributes).
//!
//! Export policy: local routes go to every peer. Learned routes are re-advertised only to
//! peers with `export_learned` (off by default: a Kubernetes node announces only what it
//! owns, which avoids the "mesh nodes re-advertise everyone's blocks to the ToR" failure),
//! never back to their source. An iBGP route goes to an iBGP peer only when this node is a
//! route reflector (RFC 4456: it has a cluster ID): a client's route to every peer, a
//! non-client's to the clients, with ORIGINATOR_ID set once and the cluster ID prepended
//! to CLUSTER_LIST; reflection does not need `export_learned`.
//! The next hop follows the peer's [`NextHopMode`] as BIRD's `next hop self` / `next hop
//! keep` do under Calico.
//!
//! Every per-peer table is keyed by [`PeerKey`] (address and port): two sessions to one
//! address on different ports are two peers.

use crate::types::{Afi, Origin, PathAttrs, PeerKey, Prefix};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// A prefix this node originates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalRoute {
    pub communities: Vec<u32>,
    pub large_communities: Vec<(u32, u32, u32)>,
}

/// A path learned from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The session the path was learned from.
    pub peer: PeerKey,
    pub ebgp: bool,
    /// Learned from a route reflector client of ours (RFC 4456).
    pub from_client: bool,
    pub remote_id: Ipv4Addr,
    pub attrs: Arc<PathAttrs>,
}

impl Path {
    fn local_pref(&self) -> u32 {
        self.attrs.local_pref.unwrap_or(100)
    }
    fn origin(&self) -> u8 {
        self.attrs.origin.unwrap_or(Origin::Incomplete) as u8
    }
    fn id(&self) -> u32 {
        u32::from(self.attrs.originator_id.unwrap_or(self.remote_id))
    }
}

/// RFC 4271 §9.1.2.2 tie-breaking; `Less` means `a` is better.
pub fn compare(a: &Path, b: &Path) -> Ordering {
    b.local_pref()
        .cmp(&a.local_pref())
        .then(a.attrs.as_path_len().cmp(&b.attrs.as_path_len()))
        .then(a.origin().cmp(&b.origin()))
        .then_with(|| {
            if a.attrs.first_as() == b.attrs.first_as() {
                a.attrs.med.unwrap_or(0).cmp(&b.attrs.med.unwrap_or(0))
            } else {
                Ordering::Equal
            }
        })
        .then(b.ebgp.cmp(&a.ebgp))
        .then(a.id().cmp(&b.id()))
        .then(a.attrs.cluster_list.len().cmp(&b.attrs.cluster_list.len()))
        .then(a.peer.cmp(&b.peer))
}

/// Paths equal up to the IGP-metric step may share the forwarding entry (multipath).
fn multipath_equal(a: &Path, b: &Path) -> bool {
    a.local_pref() == b.local_pref()
        && a.attrs.as_path_len() == b.attrs.as_path_len()
        && a.origin() == b.origin()
        && a.attrs.med.unwrap_or(0) == b.attrs.med.unwrap_or(0)
        && a.ebgp == b.ebgp
}

/// The Loc-RIB entry for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Best {
    Local(LocalRoute),
    /// Best path first, then the other multipath members.
    Learned(Vec<Path>),
}

/// A change of a learned route's forwarding next hops, for the dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibChange {
    pub prefix: Prefix,
    /// Empty: no learned route any more (withdrawn, or a local route took over).
    pub next_hops: Vec<IpAddr>,
}

/// The import outcome of one UPDATE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    pub accepted: usize,
    pub rejected: usize,
    pub withdrawn: usize,
}

/// The peer a path comes from (import side).
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub key: PeerKey,
    pub ebgp: bool,
    pub remote_id: Ipv4Addr,
    /// Our AS on this session (a BGPPeer's `localASNumber`, else the node's): the AS
    /// looked for in the AS_PATH, as BIRD checks the protocol's `local as`.
    pub local_as: u32,
    /// BIRD's `allow local as N` (Calico's `numAllowedLocalASNumbers`): a path with our
    /// AS in it up to this many times is accepted instead of rejected as a loop. 0: none.
    pub allow_local_as: u32,
    /// The peer is one of our route reflector clients.
    pub rr_client: bool,
}

impl PeerInfo {
    /// A peer with the default loop check (no occurrence of `local_as` allowed).
    pub fn new(key: PeerKey, ebgp: bool, remote_id: Ipv4Addr, local_as: u32) -> Self {
        PeerInfo {
            key,
            ebgp,
            remote_id,
            local_as,
            allow_local_as: 0,
            rr_client: false,
        }
    }
}

#[derive(Debug)]
pub struct Rib {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub cluster_id: Option<Ipv4Addr>,
    local: BTreeMap<Prefix, LocalRoute>,
    adj_in: HashMap<PeerKey, BTreeMap<Prefix, Path>>,
    /// Prefixes received but rejected by import checks, per peer.
    rejected: HashMap<PeerKey, BTreeSet<Prefix>>,
    /// RFC 4724: routes of a restarting peer kept until it refreshes them or gives up.
    stale: HashMap<PeerKey, BTreeSet<Prefix>>,
    best: BTreeMap<Prefix, Best>,
    dirty: BTreeSet<Prefix>,
    /// The next [`Rib::recompute`] reports every dirty prefix as changed.
    force_export: bool,
}

impl Rib {
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        Rib {
            local_as,
            router_id,
            cluster_id: None,
            local: BTreeMap::new(),
            adj_in: HashMap::new(),
            rejected: HashMap::new(),
            stale: HashMap::new(),
            best: BTreeMap::new(),
            dirty: BTreeSet::new(),
            force_export: false,
        }
    }

    pub fn originate(&mut self, prefix: Prefix, route: LocalRoute) {
        if self.local.get(&prefix) != Some(&route) {
            self.local.insert(prefix, route);
            self.dirty.insert(prefix);
        }
    }

    pub fn withdraw_local(&mut self, prefix: &Prefix) {
        if self.local.remove(prefix).is_some() {
            self.dirty.insert(*prefix);
        }
    }

    pub fn local_routes(&self) -> &BTreeMap<Prefix, LocalRoute> {
        &self.local
    }

    /// Import checks: AS loop (RFC 4271 §9.1.2: our AS on the session in the AS_PATH more
    /// than the peer's `allow_local_as` times, as BIRD's `allow local as`), ORIGINATOR_ID /
    /// CLUSTER_LIST loop (RFC 4456 §8), a next hop to forward to.
    fn import_check(&self, peer: &PeerInfo, a: &PathAttrs) -> bool {
        if a.count_as(peer.local_as) > peer.allow_local_as as usize {
            return false;
        }
        if a.originator_id == Some(self.router_id) {
            return false;
        }
        if a.cluster_list
            .contains(&self.cluster_id.unwrap_or(self.router_id))
        {
            return false;
        }
        a.next_hop.is_some()
    }

    /// Applies a received UPDATE to the peer's Adj-RIB-In.
    pub fn peer_update(
        &mut self,
        peer: &PeerInfo,
        withdrawn: &[Prefix],
        announced: &[Prefix],
        attrs: Option<&PathAttrs>,
    ) -> ImportStats {
        let mut st = ImportStats::default();
        if let Some(st) = self.stale.get_mut(&peer.key) {
            for p in withdrawn.iter().chain(announced.iter()) {
                st.remove(p);
            }
        }
        let rib_in = self.adj_in.entry(peer.key).or_default();
        let rejected = self.rejected.entry(peer.key).or_default();
        for p in withdrawn.iter() {
            rejected.remove(p);
            if rib_in.remove(p).is_some() {
                st.withdrawn += 1;
                self.dirty.insert(*p);
            }
        }
        if let Some(a) = attrs {
            let ok = self.import_check(peer, a);
            let shared = Arc::new(a.clone());
            let rib_in = self.adj_in.entry(peer.key).or_default();
            let rejected = self.rejected.entry(peer.key).or_default();
            for p in announced {
                if ok {
                    rejected.remove(p);
                    let path = Path {
                        peer: peer.key,
                        ebgp: peer.ebgp,
                        from_client: peer.rr_client && !peer.ebgp,
                        remote_id: peer.remote_id,
                        attrs: shared.clone(),
                    };
                    if rib_in.get(p) != Some(&path) {
                        rib_in.insert(*p, path);
                        self.dirty.insert(*p);
                    }
                    st.accepted += 1;
                } else {
                    rejected.insert(*p);
                    if rib_in.remove(p).is_some() {
                        self.dirty.insert(*p);
                    }
                    st.rejected += 1;
                }
            }
        }
        st
    }

    /// The peer went down: forget everything it sent.
    pub fn peer_down(&mut self, peer: &PeerKey) {
        if let Some(m) = self.adj_in.remove(peer) {
            self.dirty.extend(m.into_keys());
        }
        self.rejected.remove(peer);
        self.stale.remove(peer);
    }

    /// The peer went down gracefully (RFC 4724): keep its routes of these families, as
    /// stale, until it refreshes them ([`Rib::sweep_stale`] after its End-of-RIB) or its
    /// restart time runs out. Forwarding does not change meanwhile.
    pub fn peer_stale(&mut self, peer: &PeerKey, afis: &[Afi]) -> usize {
        let Some(m) = self.adj_in.get(peer) else {
            return 0;
        };
        let mut keep: BTreeSet<Prefix> = BTreeSet::new();
        let mut drop: Vec<Prefix> = Vec::new();
        for p in m.keys() {
            if afis.contains(&p.afi()) {
                keep.insert(*p);
            } else {
                drop.push(*p);
            }
        }
        if let Some(m) = self.adj_in.get_mut(peer) {
            for p in &drop {
                m.remove(p);
            }
        }
        self.dirty.extend(drop);
        self.rejected.remove(peer);
        let n = keep.len();
        self.stale.entry(*peer).or_default().extend(keep);
        n
    }

    /// Removes the peer's routes that are still stale (of one family, or all).
    pub fn sweep_stale(&mut self, peer: &PeerKey, afi: Option<Afi>) -> usize {
        let Some(st) = self.stale.get_mut(peer) else {
            return 0;
        };
        let gone: Vec<Prefix> = st
            .iter()
            .filter(|p| afi.is_none_or(|a| p.afi() == a))
            .copied()
            .collect();
        for p in &gone {
            st.remove(p);
        }
        if st.is_empty() {
            self.stale.remove(peer);
        }
        if let Some(m) = self.adj_in.get_mut(peer) {
            for p in &gone {
                if m.remove(p).is_some() {
                    self.dirty.insert(*p);
                }
            }
        }
        gone.len()
    }

    /// Number of stale routes kept for a peer.
    pub fn stale_count(&self, peer: &PeerKey) -> usize {
        self.stale.get(peer).map_or(0, |s| s.len())
    }

    /// (received, accepted) prefix counts for a peer.
    pub fn peer_counts(&self, peer: &PeerKey) -> (u64, u64) {
        let acc = self.adj_in.get(peer).map_or(0, |m| m.len()) as u64;
        let rej = self.rejected.get(peer).map_or(0, |m| m.len()) as u64;
        (acc + rej, acc)
    }

    /// Every known prefix is to be decided and exported again (an export rule that
    /// applies to all, such as the cluster ID, changed).
    pub fn mark_all_dirty(&mut self) {
        let all: Vec<Prefix> = self.best.keys().copied().collect();
        self.dirty.extend(all);
        self.force_export = true;
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Runs the decision process for every dirty prefix. Returns the prefixes whose
    /// Loc-RIB entry changed (for Adj-RIB-Out) and the forwarding changes.
    pub fn recompute(&mut self) -> (Vec<Prefix>, Vec<FibChange>) {
        let mut changed = Vec::new();
        let mut fib = Vec::new();
        let force_export = std::mem::take(&mut self.force_export);
        for p in std::mem::take(&mut self.dirty) {
            let new = if let Some(l) = self.local.get(&p) {
                Some(Best::Local(l.clone()))
            } else {
                let mut paths: Vec<Path> = self
                    .adj_in
                    .values()
                    .filter_map(|m| m.get(&p))
                    .cloned()
                    .collect();
                if paths.is_empty() {
                    None
                } else {
                    paths.sort_by(compare);
                    let best = paths[0].clone();
                    let mut set = vec![best.clone()];
                    set.extend(
                        paths
                            .into_iter()
                            .skip(1)
                            .filter(|x| multipath_equal(&best, x)),
                    );
                    Some(Best::Learned(set))
                }
            };
            let old = self.best.get(&p);
            if old == new.as_ref() {
                if force_export {
                    changed.push(p);
                }
                continue;
            }
            let hops = |b: Option<&Best>| -> Vec<IpAddr> {
                match b {
                    Some(Best::Learned(v)) => {
                        let mut h: Vec<IpAddr> =
                            v.iter().filter_map(|x| x.attrs.next_hop).collect();
                        h.sort();
                        h.dedup();
                        h
                    }
                    _ => Vec::new(),
                }
            };
            let (oh, nh) = (hops(old), hops(new.as_ref()));
            if oh != nh {
                fib.push(FibChange {
                    prefix: p,
                    next_hops: nh,
                });
            }
            match new {
                Some(b) => self.best.insert(p, b),
                None => self.best.remove(&p),
            };
            changed.push(p);
        }
        (changed, fib)
    }

    pub fn best(&self) -> &BTreeMap<Prefix, Best> {
        &self.best
    }

    /// The attributes to send `prefix` with to `peer`, or None if it is not exported.
    pub fn export(&self, prefix: &Prefix, peer: &ExportPeer) -> Option<PathAttrs> {
        if !peer.afis.contains(&prefix.afi()) {
            return None;
        }
        let next_hop_self = match prefix.afi() {
            Afi::Ipv4 => peer.next_hop_v4,
            Afi::Ipv6 => peer.next_hop_v6,
        }?;
        match self.best.get(prefix)? {
            Best::Local(l) => {
                let mut a = PathAttrs {
                    origin: Some(Origin::Igp),
                    next_hop: Some(next_hop_self),
                    communities: l.communities.clone(),
                    large_communities: l.large_communities.clone(),
                    ..Default::default()
                };
                if peer.ebgp {
                    a.prepend(peer.local_as);
                } else {
                    a.local_pref = Some(100);
                }
                Some(a)
            }
            Best::Learned(paths) => {
                let best = &paths[0];
                if best.peer == peer.key {
                    return None;
                }
                let reflected = !best.ebgp && !peer.ebgp;
                if reflected {
                    // RFC 4456 §6: only a route reflector passes an iBGP route to an iBGP
                    // peer: a client's route to every peer, a non-client's to clients.
                    self.cluster_id?;
                    if !(best.from_client || peer.rr_client) {
                        return None;
                    }
                    if best.attrs.originator_id == Some(peer.remote_id)
                        && peer.remote_id != Ipv4Addr::UNSPECIFIED
                    {
                        return None; // the originator would drop it (RFC 4456 §8)
                    }
                } else if !peer.export_learned {
                    return None;
                }
                let mut a = (*best.attrs).clone();
                if reflected {
                    // RFC 4456 §8: ORIGINATOR_ID once, our CLUSTER_ID prepended.
                    a.originator_id.get_or_insert(best.remote_id);
                    a.cluster_list
                        .insert(0, self.cluster_id.unwrap_or(self.router_id));
                }
                if peer.ebgp {
                    if a.contains_as(peer.remote_as) {
                        return None; // the peer would drop it anyway
                    }
                    a.prepend(peer.local_as);
                    a.local_pref = None;
                    a.med = None;
                    a.originator_id = None;
                    a.cluster_list.clear();
                } else {
                    a.local_pref = Some(a.local_pref.unwrap_or(100));
                }
                if !peer
                    .next_hop_mode
                    .keeps(peer.ebgp, prefix.afi(), a.next_hop)
                {
                    a.next_hop = Some(next_hop_self);
                    a.next_hop_local = None;
                }
                Some(a)
            }
        }
    }
}

/// What happens to the next hop of a route sent to a peer: Calico's `nextHopMode`, done
/// as Calico's BIRD configuration does it (nothing for `Auto`, `next hop self;` for
/// `Self`, `next hop keep;` for `Keep`; BIRD 2's `bgp_use_next_hop`).
///
/// Locally originated routes (blocks, service CIDRs: blackholes without a gateway) always
/// carry our own address, in every mode, as BIRD's `bgp_use_gateway` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum NextHopMode {
    /// BIRD's default: a learned route keeps its next hop towards iBGP peers (when it
    /// has one of the route's family) and gets ours towards eBGP peers. (BIRD also keeps
    /// it between single-hop eBGP peers on one interface; Brindle does not know
    /// interfaces, and Calico's sessions are all `multihop`, so it is ours there.)
    #[default]
    Auto,
    /// `next hop self`: always our address.
    SelfHop,
    /// `next hop keep`: never rewritten, towards eBGP peers too.
    Keep,
}

impl NextHopMode {
    /// True when a learned route of family `afi` with next hop `original` is sent with
    /// that next hop unchanged, false when it gets ours.
    pub fn keeps(self, ebgp: bool, afi: Afi, original: Option<IpAddr>) -> bool {
        match self {
            NextHopMode::SelfHop => false,
            NextHopMode::Keep => original.is_some(),
            NextHopMode::Auto => {
                !ebgp && original.is_some_and(|nh| !nh.is_unspecified() && Afi::of(&nh) == afi)
            }
        }
    }
}

/// The peer routes are exported to.
#[derive(Debug, Clone)]
pub struct ExportPeer {
    pub key: PeerKey,
    pub ebgp: bool,
    pub local_as: u32,
    pub remote_as: u32,
    /// Families negotiated on the session.
    pub afis: Vec<Afi>,
    /// Next hop self for IPv4 / IPv6 routes (the session's local address, or the node's
    /// address of that family).
    pub next_hop_v4: Option<IpAddr>,
    pub next_hop_v6: Option<IpAddr>,
    pub export_learned: bool,
    pub next_hop_mode: NextHopMode,
    /// The peer is one of our route reflector clients.
    pub rr_client: bool,
    /// The peer's BGP identifier (unspecified: unknown).
    pub remote_id: Ipv4Addr,
}

/// What was advertised to one peer.
#[derive(Debug, Default)]
pub struct AdjRibOut {
    sent: BTreeMap<Prefix, Arc<PathAttrs>>,
}

/// Changes to send to a peer: withdrawals per family and announcements grouped by
/// attributes (each group is one family).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutDelta {
    pub withdraw: BTreeMap<Afi, Vec<Prefix>>,
    pub announce: Vec<(PathAttrs, Vec<Prefix>)>,
}

impl OutDelta {
    pub fn is_empty(&self) -> bool {
        self.withdraw.is_empty() && self.announce.is_empty()
    }
}

impl AdjRibOut {
    pub fn len(&self) -> usize {
        self.sent.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
    pub fn clear(&mut self) {
        self.sent.clear();
    }

    /// Brings the Adj-RIB-Out up to date for `prefixes` (all when `None`).
    pub fn sync(&mut self, rib: &Rib, peer: &ExportPeer, prefixes: Option<&[Prefix]>) -> OutDelta {
        let all: Vec<Prefix>;
        let list: &[Prefix] = match prefixes {
            Some(p) => p,
            None => {
                let mut s: BTreeSet<Prefix> = rib.best().keys().copied().collect();
                s.extend(self.sent.keys().copied());
                all = s.into_iter().collect();
                &all
            }
        };
        let mut d = OutDelta::default();
        let mut groups: HashMap<(Afi, Arc<PathAttrs>), Vec<Prefix>> = HashMap::new();
        let mut order: Vec<(Afi, Arc<PathAttrs>)> = Vec::new();
        for p in list {
            match rib.export(p, peer) {
                Some(a) => {
                    if self.sent.get(p).is_some_and(|s| **s == a) {
                        continue;
                    }
                    let a = Arc::new(a);
                    self.sent.insert(*p, a.clone());
                    let key = (p.afi(), a);
                    let e = groups.entry(key.clone()).or_default();
                    if e.is_empty() {
                        order.push(key);
                    }
                    e.push(*p);
                }
                None => {
                    if self.sent.remove(p).is_some() {
                        d.withdraw.entry(p.afi()).or_default().push(*p);
                    }
                }
            }
        }
        for k in order {
            if let Some(v) = groups.remove(&k) {
                d.announce.push(((*k.1).clone(), v));
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AsSegment, SegmentKind};

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }
    fn key(a: &str) -> PeerKey {
        PeerKey::from(a.parse::<IpAddr>().unwrap())
    }
    fn peer(a: &str, ebgp: bool) -> PeerInfo {
        PeerInfo::new(key(a), ebgp, a.parse().unwrap(), 64512)
    }
    fn attrs(path: &[u32], nh: &str) -> PathAttrs {
        PathAttrs {
            origin: Some(Origin::Igp),
            as_path: if path.is_empty() {
                vec![]
            } else {
                vec![AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: path.to_vec(),
                }]
            },
            next_hop: Some(nh.parse().unwrap()),
            ..Default::default()
        }
    }
    fn export_peer(a: &str, ebgp: bool) -> ExportPeer {
        ExportPeer {
            key: key(a),
            ebgp,
            local_as: 64512,
            remote_as: if ebgp { 65000 } else { 64512 },
            afis: vec![Afi::Ipv4, Afi::Ipv6],
            next_hop_v4: Some("10.0.0.1".parse().unwrap()),
            next_hop_v6: Some("fd00::1".parse().unwrap()),
            export_learned: false,
            next_hop_mode: NextHopMode::Auto,
            rr_client: false,
            remote_id: a.parse().unwrap(),
        }
    }

    #[test]
    fn best_path_prefers_shorter_as_path_then_ebgp() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        r.peer_update(
            &peer("10.0.0.2", true),
            &[],
            &[p("192.0.2.0/24")],
            Some(&attrs(&[65000, 65001], "10.0.0.2")),
        );
        r.peer_update(
            &peer("10.0.0.3", true),
            &[],
            &[p("192.0.2.0/24")],
            Some(&attrs(&[65002], "10.0.0.3")),
        );
        let (changed, fib) = r.recompute();
        assert_eq!(changed, vec![p("192.0.2.0/24")]);
        assert_eq!(
            fib,
            vec![FibChange {
                prefix: p("192.0.2.0/24"),
                next_hops: vec!["10.0.0.3".parse().unwrap()]
            }]
        );
        let mut a = attrs(&[65003], "10.0.0.4");
        a.local_pref = Some(200);
        r.peer_update(
            &peer("10.0.0.4", false),
            &[],
            &[p("192.0.2.0/24")],
            Some(&a),
        );
        let (_, fib) = r.recompute();
        assert_eq!(
            fib[0].next_hops,
            vec!["10.0.0.4".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn ecmp_for_equal_paths() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        r.peer_update(
            &peer("10.0.0.2", false),
            &[],
            &[p("10.65.0.0/26")],
            Some(&attrs(&[], "10.0.0.2")),
        );
        r.peer_update(
            &peer("10.0.0.3", false),
            &[],
            &[p("10.65.0.0/26")],
            Some(&attrs(&[], "10.0.0.3")),
        );
        let (_, fib) = r.recompute();
        assert_eq!(fib.last().unwrap().next_hops.len(), 2);
        // one withdraws: back to a single next hop
        r.peer_update(&peer("10.0.0.3", false), &[p("10.65.0.0/26")], &[], None);
        let (_, fib) = r.recompute();
        assert_eq!(
            fib,
            vec![FibChange {
                prefix: p("10.65.0.0/26"),
                next_hops: vec!["10.0.0.2".parse().unwrap()]
            }]
        );
        r.peer_down(&key("10.0.0.2"));
        let (_, fib) = r.recompute();
        assert_eq!(
            fib,
            vec![FibChange {
                prefix: p("10.65.0.0/26"),
                next_hops: vec![]
            }]
        );
    }

    #[test]
    fn graceful_restart_keeps_stale_routes_until_end_of_rib() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        let pe = peer("10.0.0.2", false);
        r.peer_update(
            &pe,
            &[],
            &[p("10.65.0.64/26"), p("10.65.1.0/26")],
            Some(&attrs(&[], "10.0.0.2")),
        );
        r.recompute();
        assert_eq!(r.peer_stale(&pe.key, &[Afi::Ipv4]), 2);
        let (changed, fib) = r.recompute();
        assert!(
            changed.is_empty() && fib.is_empty(),
            "forwarding unchanged while the peer restarts"
        );
        // the peer comes back and re-announces one of the two
        r.peer_update(
            &pe,
            &[],
            &[p("10.65.0.64/26")],
            Some(&attrs(&[], "10.0.0.2")),
        );
        assert_eq!(r.stale_count(&pe.key), 1);
        // End-of-RIB: what was not refreshed goes
        assert_eq!(r.sweep_stale(&pe.key, Some(Afi::Ipv4)), 1);
        let (_, fib) = r.recompute();
        assert_eq!(
            fib,
            vec![FibChange {
                prefix: p("10.65.1.0/26"),
                next_hops: vec![]
            }]
        );
        assert_eq!(r.stale_count(&pe.key), 0);
    }

    #[test]
    fn as_loop_and_originator_rejected() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        let st = r.peer_update(
            &peer("10.0.0.2", true),
            &[],
            &[p("192.0.2.0/24")],
            Some(&attrs(&[65000, 64512], "10.0.0.2")),
        );
        assert_eq!((st.accepted, st.rejected), (0, 1));
        let mut a = attrs(&[], "10.0.0.2");
        a.originator_id = Some("10.0.0.1".parse().unwrap());
        r.peer_update(
            &peer("10.0.0.2", false),
            &[],
            &[p("192.0.3.0/24")],
            Some(&a),
        );
        assert_eq!(r.peer_counts(&key("10.0.0.2")), (2, 0));
        assert!(r.recompute().0.is_empty());
    }

    #[test]
    fn local_routes_exported_with_prepend_and_next_hop_self() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        r.originate(
            p("10.65.0.0/26"),
            LocalRoute {
                communities: vec![(64512 << 16) | 100],
                ..Default::default()
            },
        );
        r.originate(p("fd00:65::/122"), LocalRoute::default());
        r.recompute();
        let e = r
            .export(&p("10.65.0.0/26"), &export_peer("10.0.0.254", true))
            .unwrap();
        assert_eq!(e.as_path_flat(), vec![64512]);
        assert_eq!(e.next_hop, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(e.local_pref, None);
        assert_eq!(e.communities, vec![(64512 << 16) | 100]);
        let i = r
            .export(&p("10.65.0.0/26"), &export_peer("10.0.0.2", false))
            .unwrap();
        assert!(i.as_path.is_empty());
        assert_eq!(i.local_pref, Some(100));
        let v6 = r
            .export(&p("fd00:65::/122"), &export_peer("10.0.0.2", false))
            .unwrap();
        assert_eq!(v6.next_hop, Some("fd00::1".parse().unwrap()));
        let mut only4 = export_peer("10.0.0.2", false);
        only4.afis = vec![Afi::Ipv4];
        assert!(r.export(&p("fd00:65::/122"), &only4).is_none());
    }

    #[test]
    fn learned_routes_split_horizon_and_export_switch() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        r.peer_update(
            &peer("10.0.0.2", false),
            &[],
            &[p("10.65.0.64/26")],
            Some(&attrs(&[], "10.0.0.2")),
        );
        r.peer_update(
            &peer("10.0.0.254", true),
            &[],
            &[p("0.0.0.0/0")],
            Some(&attrs(&[65000], "10.0.0.254")),
        );
        r.recompute();
        let mut ibgp = export_peer("10.0.0.3", false);
        let mut ebgp = export_peer("10.0.0.250", true);
        ebgp.remote_as = 65100;
        // default: nothing learned is re-advertised
        assert!(r.export(&p("10.65.0.64/26"), &ebgp).is_none());
        ibgp.export_learned = true;
        ebgp.export_learned = true;
        // iBGP -> iBGP never (split horizon)
        assert!(r.export(&p("10.65.0.64/26"), &ibgp).is_none());
        // iBGP -> eBGP with prepend
        assert_eq!(
            r.export(&p("10.65.0.64/26"), &ebgp).unwrap().as_path_flat(),
            vec![64512]
        );
        // eBGP -> iBGP: the next hop is kept (BIRD's default), or ours with `Self`
        assert_eq!(
            r.export(&p("0.0.0.0/0"), &ibgp).unwrap().next_hop,
            Some("10.0.0.254".parse().unwrap())
        );
        ibgp.next_hop_mode = NextHopMode::SelfHop;
        let a = r.export(&p("0.0.0.0/0"), &ibgp).unwrap();
        assert_eq!(a.next_hop, Some("10.0.0.1".parse().unwrap()));
        // never back to the source
        let mut src = export_peer("10.0.0.254", true);
        src.export_learned = true;
        assert!(r.export(&p("0.0.0.0/0"), &src).is_none());
    }

    #[test]
    fn adj_rib_out_sends_only_differences_grouped() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        for s in ["10.65.0.0/26", "10.65.1.0/26", "10.96.0.0/12"] {
            r.originate(p(s), LocalRoute::default());
        }
        r.recompute();
        let peer = export_peer("10.0.0.254", true);
        let mut out = AdjRibOut::default();
        let d = out.sync(&r, &peer, None);
        assert_eq!(d.announce.len(), 1);
        assert_eq!(d.announce[0].1.len(), 3);
        assert!(out.sync(&r, &peer, None).is_empty());
        r.withdraw_local(&p("10.65.1.0/26"));
        r.originate(
            p("10.96.0.0/12"),
            LocalRoute {
                communities: vec![1],
                ..Default::default()
            },
        );
        let (changed, _) = r.recompute();
        let d = out.sync(&r, &peer, Some(&changed));
        assert_eq!(
            d.withdraw.get(&Afi::Ipv4).unwrap(),
            &vec![p("10.65.1.0/26")]
        );
        assert_eq!(d.announce.len(), 1);
        assert_eq!(d.announce[0].0.communities, vec![1]);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn sessions_to_one_address_on_two_ports_are_two_peers() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        let a = PeerInfo::new(key("10.0.0.5"), true, "10.0.0.5".parse().unwrap(), 64512);
        let b = PeerInfo::new(
            PeerKey::new("10.0.0.5".parse().unwrap(), 1790),
            true,
            "10.0.0.6".parse().unwrap(),
            64512,
        );
        r.peer_update(
            &a,
            &[],
            &[p("192.0.2.0/24")],
            Some(&attrs(&[65001], "10.0.0.5")),
        );
        r.peer_update(
            &b,
            &[],
            &[p("192.0.2.0/24"), p("198.51.100.0/24")],
            Some(&attrs(&[65002], "10.0.0.5")),
        );
        r.recompute();
        assert_eq!(r.peer_counts(&a.key), (1, 1));
        assert_eq!(r.peer_counts(&b.key), (2, 2));
        let Some(Best::Learned(paths)) = r.best().get(&p("192.0.2.0/24")) else {
            panic!("no learned route")
        };
        let mut from: Vec<PeerKey> = paths.iter().map(|x| x.peer).collect();
        from.sort();
        assert_eq!(from, vec![a.key, b.key], "both sessions' paths");
        // one session goes down: the other's routes stay
        r.peer_down(&b.key);
        r.recompute();
        assert_eq!(r.peer_counts(&a.key), (1, 1));
        assert_eq!(r.peer_counts(&b.key), (0, 0));
        assert!(r.best().contains_key(&p("192.0.2.0/24")));
        assert!(!r.best().contains_key(&p("198.51.100.0/24")));
        // stale handling is per session too
        assert_eq!(r.peer_stale(&a.key, &[Afi::Ipv4]), 1);
        assert_eq!(r.stale_count(&b.key), 0);
        assert_eq!(r.sweep_stale(&b.key, None), 0);
        assert_eq!(r.stale_count(&a.key), 1);
        // a learned route is not sent back to its session, but to the other one on
        // the same address (another speaker) it is
        r.peer_update(
            &a,
            &[],
            &[p("192.0.2.0/24")],
            Some(&attrs(&[65001], "10.0.0.5")),
        );
        r.recompute();
        let mut to_a = export_peer("10.0.0.5", true);
        to_a.export_learned = true;
        to_a.remote_as = 65001;
        let mut to_b = to_a.clone();
        to_b.key = b.key;
        to_b.remote_as = 65002;
        assert!(r.export(&p("192.0.2.0/24"), &to_a).is_none());
        assert!(r.export(&p("192.0.2.0/24"), &to_b).is_some());
    }

    #[test]
    fn allow_local_as_accepts_our_as_up_to_n_times() {
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        let mut pe = peer("10.0.0.2", true);
        let once = attrs(&[65000, 64512], "10.0.0.2");
        let twice = attrs(&[65000, 64512, 65001, 64512], "10.0.0.2");
        // default: a loop
        let st = r.peer_update(&pe, &[], &[p("192.0.2.0/24")], Some(&once));
        assert_eq!((st.accepted, st.rejected), (0, 1));
        // allow local as 1: once is fine, twice is not
        pe.allow_local_as = 1;
        let st = r.peer_update(&pe, &[], &[p("192.0.2.0/24")], Some(&once));
        assert_eq!((st.accepted, st.rejected), (1, 0));
        let st = r.peer_update(&pe, &[], &[p("192.0.3.0/24")], Some(&twice));
        assert_eq!((st.accepted, st.rejected), (0, 1));
        assert_eq!(r.peer_counts(&pe.key), (2, 1));
        pe.allow_local_as = 2;
        let st = r.peer_update(&pe, &[], &[p("192.0.3.0/24")], Some(&twice));
        assert_eq!((st.accepted, st.rejected), (1, 0));
        r.recompute();
        assert!(r.best().contains_key(&p("192.0.2.0/24")));
        assert!(r.best().contains_key(&p("192.0.3.0/24")));
        // an AS_SET counts too
        let mut set = attrs(&[65000], "10.0.0.2");
        set.as_path.push(AsSegment {
            kind: SegmentKind::Set,
            asns: vec![64512, 65005],
        });
        pe.allow_local_as = 0;
        let st = r.peer_update(&pe, &[], &[p("192.0.4.0/24")], Some(&set));
        assert_eq!(st.rejected, 1);
        // other peers keep the strict check
        let other = peer("10.0.0.3", true);
        let st = r.peer_update(&other, &[], &[p("192.0.2.0/24")], Some(&once));
        assert_eq!(st.rejected, 1);
    }

    #[test]
    fn loop_check_uses_the_sessions_local_as() {
        // a BGPPeer with localASNumber 65100: BIRD looks for 65100, as `local as 65100`
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        let pe = PeerInfo::new(key("10.0.0.2"), true, "10.0.0.2".parse().unwrap(), 65100);
        let st = r.peer_update(
            &pe,
            &[],
            &[p("192.0.2.0/24")],
            Some(&attrs(&[65000, 65100], "10.0.0.2")),
        );
        assert_eq!(st.rejected, 1);
        let st = r.peer_update(
            &pe,
            &[],
            &[p("192.0.3.0/24")],
            Some(&attrs(&[65000, 64512], "10.0.0.2")),
        );
        assert_eq!(st.accepted, 1);
    }

    #[test]
    fn next_hop_modes_as_calico_bird_config() {
        use NextHopMode::*;
        let mut r = Rib::new(64512, "10.0.0.1".parse().unwrap());
        // learned over eBGP from 10.0.0.254 and over iBGP from 10.0.0.2
        r.peer_update(
            &peer("10.0.0.254", true),
            &[],
            &[p("0.0.0.0/0")],
            Some(&attrs(&[65000], "10.0.0.254")),
        );
        r.peer_update(
            &peer("10.0.0.2", false),
            &[],
            &[p("10.65.0.64/26")],
            Some(&attrs(&[], "10.0.0.2")),
        );
        r.originate(p("10.65.0.0/26"), LocalRoute::default());
        r.recompute();
        let us: IpAddr = "10.0.0.1".parse().unwrap();
        let nh = |r: &Rib, pfx: &str, ebgp: bool, mode: NextHopMode| {
            let mut e = export_peer(if ebgp { "10.0.0.250" } else { "10.0.0.3" }, ebgp);
            e.remote_as = if ebgp { 65100 } else { 64512 };
            e.export_learned = true;
            e.next_hop_mode = mode;
            r.export(&p(pfx), &e).map(|a| a.next_hop.unwrap())
        };
        let orig = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // (prefix, towards eBGP, mode) -> next hop; None: not exported (iBGP split horizon)
        let cases: &[(&str, bool, NextHopMode, Option<IpAddr>)] = &[
            // Auto: BIRD's default, keep towards iBGP, self towards eBGP
            ("0.0.0.0/0", false, Auto, orig("10.0.0.254")),
            ("10.65.0.64/26", true, Auto, Some(us)),
            // Self: `next hop self;`
            ("0.0.0.0/0", false, SelfHop, Some(us)),
            ("10.65.0.64/26", true, SelfHop, Some(us)),
            // Keep: `next hop keep;`, towards eBGP too
            ("0.0.0.0/0", false, Keep, orig("10.0.0.254")),
            ("10.65.0.64/26", true, Keep, orig("10.0.0.2")),
            ("10.65.0.64/26", false, Keep, None),
        ];
        for (pfx, ebgp, mode, want) in cases {
            assert_eq!(
                nh(&r, pfx, *ebgp, *mode),
                *want,
                "{pfx} ebgp={ebgp} {mode:?}"
            );
        }
        // our own routes carry our address whatever the mode
        for mode in [Auto, SelfHop, Keep] {
            for ebgp in [false, true] {
                assert_eq!(nh(&r, "10.65.0.0/26", ebgp, mode), Some(us), "{mode:?}");
            }
        }
        // Auto towards iBGP: a next hop of the other family is not usable, ours goes
        assert!(!Auto.keeps(false, Afi::Ipv4, orig("fd00::2")));
        assert!(!Auto.keeps(false, Afi::Ipv4, orig("0.0.0.0")));
        assert!(Keep.keeps(true, Afi::Ipv4, orig("fd00::2")));
    }

    fn client(a: &str) -> PeerInfo {
        let mut i = peer(a, false);
        i.rr_client = true;
        i
    }

    #[test]
    fn route_reflector_reflects_per_rfc_4456() {
        let mut r = Rib::new(64512, "10.0.0.10".parse().unwrap());
        let (c1, c2, n1) = ("10.0.0.1", "10.0.0.2", "10.0.0.20");
        let cp = |a: &str| ExportPeer {
            rr_client: true,
            ..export_peer(a, false)
        };
        // not a reflector yet: no iBGP route goes to an iBGP peer
        r.peer_update(
            &client(c1),
            &[],
            &[p("10.65.1.0/26")],
            Some(&attrs(&[], c1)),
        );
        r.peer_update(
            &peer(n1, false),
            &[],
            &[p("10.65.2.0/26")],
            Some(&attrs(&[], n1)),
        );
        r.recompute();
        assert!(r.export(&p("10.65.1.0/26"), &cp(c2)).is_none());
        r.cluster_id = Some("1.1.1.1".parse().unwrap());
        r.mark_all_dirty();
        let (changed, fib) = r.recompute();
        assert_eq!(changed.len(), 2, "every prefix is exported again");
        assert!(fib.is_empty());
        // a client's route: to the other clients and to non-clients, with ORIGINATOR_ID
        // (the client's identifier) and our cluster ID; never back to the client
        for to in [cp(c2), export_peer(n1, false)] {
            let a = r.export(&p("10.65.1.0/26"), &to).expect("reflected");
            assert_eq!(a.originator_id, Some(c1.parse().unwrap()));
            assert_eq!(a.cluster_list, vec!["1.1.1.1".parse::<Ipv4Addr>().unwrap()]);
            assert_eq!(a.next_hop, Some(c1.parse().unwrap()), "next hop unchanged");
        }
        assert!(r.export(&p("10.65.1.0/26"), &cp(c1)).is_none());
        // a non-client's route: to clients only
        assert!(r.export(&p("10.65.2.0/26"), &cp(c2)).is_some());
        assert!(r
            .export(&p("10.65.2.0/26"), &export_peer("10.0.0.21", false))
            .is_none());
        // an ORIGINATOR_ID already there is kept; CLUSTER_LIST grows at the front; a
        // route is not sent to the peer that originated it
        let mut a = attrs(&[], "10.0.0.3");
        a.originator_id = Some("10.0.0.3".parse().unwrap());
        a.cluster_list = vec!["2.2.2.2".parse().unwrap()];
        r.peer_update(&peer(n1, false), &[], &[p("10.65.3.0/26")], Some(&a));
        r.recompute();
        let e = r.export(&p("10.65.3.0/26"), &cp(c2)).unwrap();
        assert_eq!(e.originator_id, Some("10.0.0.3".parse().unwrap()));
        assert_eq!(
            e.cluster_list,
            vec![
                "1.1.1.1".parse::<Ipv4Addr>().unwrap(),
                "2.2.2.2".parse().unwrap()
            ]
        );
        assert!(r.export(&p("10.65.3.0/26"), &cp("10.0.0.3")).is_none());
        // a route that already went through our cluster is a loop: dropped on import
        let mut looped = attrs(&[], c2);
        looped.cluster_list = vec!["1.1.1.1".parse().unwrap()];
        let st = r.peer_update(&client(c2), &[], &[p("10.65.4.0/26")], Some(&looped));
        assert_eq!((st.accepted, st.rejected), (0, 1));
        // eBGP peers still need export_learned for iBGP-learned routes
        assert!(r
            .export(&p("10.65.1.0/26"), &export_peer("10.0.0.254", true))
            .is_none());
    }
}
