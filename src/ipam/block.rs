//! An allocation block in Calico's format (`IPAMBlock.spec`), and the pure operations on
//! it: assign, release, cooldown, garbage collection. No I/O and no clock: the time is
//! passed in. Follows `libcalico-go/lib/ipam/ipam_block.go`:
//!
//! - `allocations[ordinal]` is `null` (free) or an index into `attributes`;
//! - `unallocated` lists the free ordinals in the order they are handed out (FIFO: a
//!   released address goes to the back, so it is the last to be reused);
//! - every allocation records the block's `sequenceNumber` at that time; a release that
//!   names a sequence number only succeeds if it matches, so a stale release can never
//!   free an address that was released and handed out again;
//! - a released address first points at an attribute with only `releasedAt` (cooldown)
//!   and returns to `unallocated` after `ipCooldownSeconds`.
//!
//! Fields Brindle does not know are kept (`extra`) and written back unchanged.

use chrono::{DateTime, SecondsFormat, Utc};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The handle Calico uses for addresses reserved for Windows networking.
pub const WINDOWS_RESERVED_HANDLE: &str = "windows-reserved-ipam-handle";

fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Metadata of one allocation (`spec.attributes[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attribute {
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// The owner (`node`, `pod`, `namespace`, `timestamp`, `type`); Calico's JSON name.
    #[serde(rename = "secondary", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "alternateOwnerAttrs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub alternate_owner: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "releasedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at: Option<String>,
}

/// `IPAMBlock.spec`, field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub cidr: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub allocations: Vec<Option<usize>>,
    #[serde(default, deserialize_with = "null_default")]
    pub unallocated: Vec<usize>,
    #[serde(default, deserialize_with = "null_default")]
    pub attributes: Vec<Attribute>,
    #[serde(default, deserialize_with = "null_default")]
    pub sequence_number: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub deleted: bool,
    /// Deprecated in Calico (IPAMConfig's is used); kept as written.
    #[serde(rename = "strictAffinity", default, deserialize_with = "null_default")]
    pub deprecated_strict_affinity: bool,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Why a block operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("{0} is not in block {1}")]
    NotInBlock(IpAddr, IpNetwork),
    #[error("{0} is already assigned")]
    AlreadyAssigned(IpAddr),
    #[error("block {0} is malformed: {1}")]
    Malformed(IpNetwork, String),
    /// A release named a sequence number or handle that no longer holds the address.
    #[error("{ip}: {what}")]
    Stale { ip: IpAddr, what: String },
}

/// `affinity` for a host: `host:<node>`.
pub fn host_affinity(node: &str) -> String {
    format!("host:{node}")
}

/// Calico's `metav1.Time` text (RFC 3339, seconds).
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The number of addresses in a network (saturating at `usize::MAX`, never reached by
/// a valid block size).
fn size_of(net: &IpNetwork) -> usize {
    let host_bits = u32::from(if net.is_ipv4() { 32 } else { 128 } - net.prefix());
    if host_bits >= usize::BITS {
        usize::MAX
    } else {
        1usize << host_bits
    }
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn u128_to_ip(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((v as u32).into())
    } else {
        IpAddr::V6(v.into())
    }
}

impl Block {
    /// A new, empty block (every ordinal free, in order). `sequence` seeds the sequence
    /// number: Calico uses the creation time in nanoseconds so that a block deleted and
    /// created again never repeats one.
    pub fn new(cidr: IpNetwork, sequence: u64) -> Block {
        let cidr = IpNetwork::new(cidr.network(), cidr.prefix()).unwrap_or(cidr);
        let n = size_of(&cidr);
        Block {
            cidr,
            affinity: None,
            affinity_claim_time: None,
            allocations: vec![None; n],
            unallocated: (0..n).collect(),
            attributes: Vec::new(),
            sequence_number: sequence,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
            deprecated_strict_affinity: false,
            extra: BTreeMap::new(),
        }
    }

    /// Checks the invariants a block read from the datastore must hold before it is
    /// changed (a damaged block is never written back).
    pub fn validate(&self) -> Result<(), BlockError> {
        let bad = |m: String| Err(BlockError::Malformed(self.cidr, m));
        let n = size_of(&self.cidr);
        if self.allocations.len() != n {
            return bad(format!(
                "{} allocations for {n} addresses",
                self.allocations.len()
            ));
        }
        let mut seen = vec![false; n];
        for &o in &self.unallocated {
            if o >= n {
                return bad(format!("unallocated ordinal {o} out of range"));
            }
            if seen[o] {
                return bad(format!("ordinal {o} listed twice as unallocated"));
            }
            if self.allocations[o].is_some() {
                return bad(format!("ordinal {o} is both allocated and unallocated"));
            }
            seen[o] = true;
        }
        for (o, a) in self.allocations.iter().enumerate() {
            match a {
                Some(i) if *i >= self.attributes.len() => {
                    return bad(format!("ordinal {o} points at missing attribute {i}"))
                }
                None if !seen[o] => {
                    // Calico tolerates this (an ordinal neither free nor allocated is
                    // simply never handed out); so do we, but it is worth knowing.
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn num_addresses(&self) -> usize {
        self.allocations.len()
    }

    pub fn ordinal_to_ip(&self, ordinal: usize) -> IpAddr {
        u128_to_ip(
            ip_to_u128(self.cidr.network()) + ordinal as u128,
            self.cidr.is_ipv4(),
        )
    }

    pub fn ip_to_ordinal(&self, ip: IpAddr) -> Result<usize, BlockError> {
        if !self.cidr.contains(ip) || ip.is_ipv4() != self.cidr.is_ipv4() {
            return Err(BlockError::NotInBlock(ip, self.cidr));
        }
        Ok((ip_to_u128(ip) - ip_to_u128(self.cidr.network())) as usize)
    }

    /// The node this block is affine to (`host:<node>`), if any.
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    pub fn sequence_for(&self, ordinal: usize) -> u64 {
        self.sequence_number_for_allocation
            .get(&ordinal.to_string())
            .copied()
            .unwrap_or(0)
    }

    fn set_sequence_for(&mut self, ordinal: usize) {
        self.sequence_number_for_allocation
            .insert(ordinal.to_string(), self.sequence_number);
    }

    fn find_or_add_attribute(
        &mut self,
        handle: Option<&str>,
        owner: Option<&BTreeMap<String, String>>,
    ) -> usize {
        let attr = Attribute {
            handle_id: handle.map(str::to_string),
            owner: owner.cloned(),
            ..Attribute::default()
        };
        if let Some(i) = self.attributes.iter().position(|a| *a == attr) {
            return i;
        }
        self.attributes.push(attr);
        self.attributes.len() - 1
    }

    /// Takes up to `num` free addresses, first in `unallocated` order, skipping those
    /// `reserved` says are off limits.
    pub fn auto_assign(
        &mut self,
        num: usize,
        handle: Option<&str>,
        owner: Option<&BTreeMap<String, String>>,
        reserved: &dyn Fn(IpAddr) -> bool,
    ) -> Vec<IpAddr> {
        let mut ips = Vec::new();
        let mut keep = Vec::with_capacity(self.unallocated.len());
        let mut attr = None;
        let free = std::mem::take(&mut self.unallocated);
        for (idx, &ordinal) in free.iter().enumerate() {
            if ips.len() >= num {
                keep.extend_from_slice(&free[idx..]);
                break;
            }
            let ip = self.ordinal_to_ip(ordinal);
            if reserved(ip) {
                keep.push(ordinal);
                continue;
            }
            let a = *attr.get_or_insert_with(|| self.find_or_add_attribute(handle, owner));
            self.allocations[ordinal] = Some(a);
            self.set_sequence_for(ordinal);
            ips.push(ip);
        }
        self.unallocated = keep;
        ips
    }

    /// Assigns one given address.
    pub fn assign(
        &mut self,
        ip: IpAddr,
        handle: Option<&str>,
        owner: Option<&BTreeMap<String, String>>,
    ) -> Result<(), BlockError> {
        let ordinal = self.ip_to_ordinal(ip)?;
        if self.allocations[ordinal].is_some() {
            return Err(BlockError::AlreadyAssigned(ip));
        }
        let a = self.find_or_add_attribute(handle, owner);
        self.allocations[ordinal] = Some(a);
        self.set_sequence_for(ordinal);
        self.unallocated.retain(|&o| o != ordinal);
        Ok(())
    }

    /// The attribute of an allocated address that is not in cooldown.
    pub fn attribute_of(&self, ip: IpAddr) -> Option<&Attribute> {
        let o = self.ip_to_ordinal(ip).ok()?;
        let a = self.attributes.get(self.allocations[o]?)?;
        (a.released_at.is_none()).then_some(a)
    }

    /// Every allocated address not in cooldown, with its attribute.
    pub fn in_use(&self) -> impl Iterator<Item = (IpAddr, &Attribute)> + '_ {
        self.allocations.iter().enumerate().filter_map(|(o, a)| {
            let attr = self.attributes.get((*a)?)?;
            attr.released_at
                .is_none()
                .then(|| (self.ordinal_to_ip(o), attr))
        })
    }

    fn add_cooldown_attribute(&mut self, now: DateTime<Utc>) -> usize {
        self.attributes.push(Attribute {
            released_at: Some(time_text(now)),
            ..Attribute::default()
        });
        self.attributes.len() - 1
    }

    /// Releases addresses. Each may name the sequence number and handle the caller
    /// believes hold it; a mismatch fails the whole request (nothing changes). Returns
    /// the addresses that were not allocated, and the count released per handle.
    pub fn release(
        &mut self,
        requests: &[(IpAddr, Option<u64>, Option<&str>)],
        now: DateTime<Utc>,
        cooldown_secs: i64,
    ) -> Result<(Vec<IpAddr>, BTreeMap<String, usize>), BlockError> {
        let mut unallocated = Vec::new();
        let mut by_handle: BTreeMap<String, usize> = BTreeMap::new();
        let mut ordinals = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for &(ip, seq, handle) in requests {
            if !seen.insert(ip) {
                continue;
            }
            let o = self.ip_to_ordinal(ip)?;
            if let Some(s) = seq {
                if s != self.sequence_for(o) {
                    return Err(BlockError::Stale {
                        ip,
                        what: format!(
                            "sequence number {s} is stale (now {})",
                            self.sequence_for(o)
                        ),
                    });
                }
            }
            let attr = match self.allocations[o].and_then(|i| self.attributes.get(i)) {
                Some(a) if a.released_at.is_none() => a,
                _ => {
                    unallocated.push(ip);
                    continue;
                }
            };
            let h = attr.handle_id.as_deref().map(sanitize_handle).unwrap_or("");
            if let Some(want) = handle {
                if !want.is_empty() && want != h {
                    return Err(BlockError::Stale {
                        ip,
                        what: format!("held by handle {h:?}, not {want:?}"),
                    });
                }
            }
            if !h.is_empty() {
                *by_handle.entry(h.to_string()).or_default() += 1;
            }
            ordinals.push(o);
        }
        if !ordinals.is_empty() {
            let cool = self.add_cooldown_attribute(now);
            for o in ordinals {
                self.allocations[o] = Some(cool);
                self.set_sequence_for(o);
            }
            self.garbage_collect(now, cooldown_secs);
        }
        Ok((unallocated, by_handle))
    }

    /// Releases every address of `handle` (only those allocated at `sequence`, if
    /// given). Returns how many.
    pub fn release_by_handle(
        &mut self,
        handle: &str,
        sequence: Option<u64>,
        now: DateTime<Utc>,
        cooldown_secs: i64,
    ) -> usize {
        let idx: Vec<usize> = self
            .attributes
            .iter()
            .enumerate()
            .filter(|(_, a)| a.handle_id.as_deref().map(sanitize_handle) == Some(handle))
            .map(|(i, _)| i)
            .collect();
        if idx.is_empty() {
            return 0;
        }
        let mut cool = None;
        let mut count = 0;
        for o in 0..self.allocations.len() {
            let Some(a) = self.allocations[o] else {
                continue;
            };
            if idx.contains(&a) && sequence.is_none_or(|s| s == self.sequence_for(o)) {
                let c = match cool {
                    Some(c) => c,
                    None => *cool.insert(self.add_cooldown_attribute(now)),
                };
                self.allocations[o] = Some(c);
                count += 1;
            }
        }
        self.garbage_collect(now, cooldown_secs);
        count
    }

    /// Moves addresses whose cooldown is over back to `unallocated` and drops unused
    /// attributes. Returns whether anything changed.
    pub fn garbage_collect(&mut self, now: DateTime<Utc>, cooldown_secs: i64) -> bool {
        let mut changed = false;
        let mut used = vec![false; self.attributes.len()];
        let limit = now - chrono::Duration::seconds(cooldown_secs.max(0));
        for o in 0..self.allocations.len() {
            let Some(a) = self.allocations[o] else {
                continue;
            };
            let Some(attr) = self.attributes.get(a) else {
                continue;
            };
            let free = match &attr.released_at {
                None => false,
                Some(_) if cooldown_secs <= 0 => true,
                // An unreadable time: treat the cooldown as over, as Go's zero time is.
                Some(t) => parse_time(t).is_none_or(|t| t < limit),
            };
            if free {
                self.allocations[o] = None;
                self.unallocated.push(o);
                self.sequence_number_for_allocation.remove(&o.to_string());
                changed = true;
            } else {
                used[a] = true;
            }
        }
        if used.iter().any(|u| !u) {
            let mut map = vec![None; self.attributes.len()];
            let mut kept = Vec::new();
            for (i, a) in std::mem::take(&mut self.attributes).into_iter().enumerate() {
                if used[i] {
                    map[i] = Some(kept.len());
                    kept.push(a);
                }
            }
            self.attributes = kept;
            for a in self.allocations.iter_mut().flatten() {
                if let Some(n) = map.get(*a).copied().flatten() {
                    *a = n;
                }
            }
            changed = true;
        }
        changed
    }

    /// No address is in use (Windows' reserved addresses aside).
    pub fn is_empty(&self) -> bool {
        self.allocations.iter().flatten().all(|&a| {
            self.attributes
                .get(a)
                .and_then(|a| a.handle_id.as_deref())
                .is_some_and(|h| h.eq_ignore_ascii_case(WINDOWS_RESERVED_HANDLE))
        })
    }

    /// Free addresses that `reserved` does not exclude.
    pub fn num_free(&self, reserved: &dyn Fn(IpAddr) -> bool) -> usize {
        self.unallocated
            .iter()
            .filter(|&&o| !reserved(self.ordinal_to_ip(o)))
            .count()
    }

    /// The addresses held by `handle`.
    pub fn ips_by_handle(&self, handle: &str) -> Vec<IpAddr> {
        self.in_use()
            .filter(|(_, a)| a.handle_id.as_deref().map(sanitize_handle) == Some(handle))
            .map(|(ip, _)| ip)
            .collect()
    }

    /// The claim time, if readable.
    pub fn claim_time(&self) -> Option<DateTime<Utc>> {
        parse_time(self.affinity_claim_time.as_deref()?)
    }
}

/// Calico strips a `\r` and what follows (host-local migration wrote such handles).
pub fn sanitize_handle(h: &str) -> &str {
    h.split('\r').next().unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }
    fn none(_: IpAddr) -> bool {
        false
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn assigns_in_order_and_reuses_released_last() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), 7);
        let got = b.auto_assign(2, Some("h1"), None, &none);
        assert_eq!(got, vec![ip("10.0.0.0"), ip("10.0.0.1")]);
        assert_eq!(b.sequence_for(0), 7);
        let (un, by) = b.release(&[(ip("10.0.0.0"), None, None)], t(0), 0).unwrap();
        assert!(un.is_empty());
        assert_eq!(by.get("h1"), Some(&1));
        // FIFO: the released ordinal goes to the back.
        assert_eq!(b.unallocated, vec![2, 3, 0]);
        assert_eq!(
            b.auto_assign(3, Some("h2"), None, &none),
            vec![ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.0")]
        );
        assert!(b.auto_assign(1, Some("h3"), None, &none).is_empty());
        b.validate().unwrap();
    }

    #[test]
    fn stale_sequence_or_handle_releases_nothing() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), 1);
        b.auto_assign(1, Some("a"), None, &none);
        let seq = b.sequence_for(0);
        b.release(&[(ip("10.0.0.0"), Some(seq), Some("a"))], t(0), 0)
            .unwrap();
        b.sequence_number += 1; // the store bumps it on each write
        b.unallocated.retain(|&o| o != 0);
        b.unallocated.insert(0, 0);
        b.auto_assign(1, Some("b"), None, &none);
        // A late release by the first owner, with the old sequence number, fails...
        let e = b.release(&[(ip("10.0.0.0"), Some(seq), None)], t(1), 0);
        assert!(matches!(e, Err(BlockError::Stale { .. })), "{e:?}");
        // ... and naming the wrong handle fails too.
        let e = b.release(&[(ip("10.0.0.0"), None, Some("a"))], t(1), 0);
        assert!(matches!(e, Err(BlockError::Stale { .. })), "{e:?}");
        assert_eq!(b.ips_by_handle("b"), vec![ip("10.0.0.0")]);
    }

    #[test]
    fn cooldown_holds_an_address_until_it_expires() {
        let mut b = Block::new("10.0.0.0/31".parse().unwrap(), 1);
        b.auto_assign(2, Some("a"), None, &none);
        assert_eq!(b.release_by_handle("a", None, t(0), 30), 2);
        assert!(b.unallocated.is_empty());
        assert!(b.attribute_of(ip("10.0.0.0")).is_none());
        // As in Calico, addresses in cooldown keep the block from being empty.
        assert!(!b.is_empty());
        assert!(!b.garbage_collect(t(10), 30));
        assert!(b.garbage_collect(t(31), 30));
        assert_eq!(b.unallocated, vec![0, 1]);
        assert!(b.attributes.is_empty());
        assert!(b.is_empty());
    }

    #[test]
    fn reserved_addresses_are_skipped_and_assign_is_exact() {
        let mut b = Block::new("fd00::/126".parse().unwrap(), 1);
        let r = |a: IpAddr| a == ip("fd00::");
        assert_eq!(b.num_free(&r), 3);
        assert_eq!(b.auto_assign(1, None, None, &r), vec![ip("fd00::1")]);
        b.assign(ip("fd00::3"), Some("x"), None).unwrap();
        assert_eq!(
            b.assign(ip("fd00::3"), Some("x"), None),
            Err(BlockError::AlreadyAssigned(ip("fd00::3")))
        );
        assert!(b.assign(ip("fd00::9"), None, None).is_err());
        assert_eq!(b.unallocated, vec![0, 2]);
    }

    #[test]
    fn reads_and_writes_calicos_json() {
        // As Calico writes it (crd.projectcalico.org/v1 IPAMBlock spec).
        let text = r#"{"affinity":"host:worker-1","affinityClaimTime":"2024-05-01T10:00:00Z",
            "allocations":[0,null,1,null],"attributes":[
              {"handle_id":"k8s-pod-network.abc","secondary":{"namespace":"default","node":"worker-1","pod":"web","timestamp":"2024-05-01 10:00:01 +0000 UTC"}},
              {"handle_id":"ipip-tunnel-addr-worker-1","secondary":{"node":"worker-1","type":"ipipTunnelAddress"}}],
            "cidr":"10.244.0.0/30","deleted":false,"sequenceNumber":1714557600000000000,
            "sequenceNumberForAllocation":{"0":1714557600000000000,"2":1714557600000000001},
            "strictAffinity":false,"unallocated":[1,3],"futureField":{"x":1}}"#;
        let b: Block = serde_json::from_str(text).unwrap();
        b.validate().unwrap();
        assert_eq!(b.host(), Some("worker-1"));
        assert_eq!(
            b.ips_by_handle("k8s-pod-network.abc"),
            vec![ip("10.244.0.0")]
        );
        let back = serde_json::to_value(&b).unwrap();
        let orig: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, orig);
        // Go's nil slices and maps.
        let b: Block = serde_json::from_str(
            r#"{"cidr":"10.0.0.0/31","allocations":[null,null],"unallocated":[0,1],"attributes":null,"sequenceNumberForAllocation":null}"#,
        )
        .unwrap();
        b.validate().unwrap();
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), 1);
        b.unallocated.push(9);
        assert!(b.validate().is_err());
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), 1);
        b.allocations[1] = Some(5);
        b.unallocated.retain(|&o| o != 1);
        assert!(b.validate().is_err());
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), 1);
        b.allocations.pop();
        assert!(b.validate().is_err());
    }
}
