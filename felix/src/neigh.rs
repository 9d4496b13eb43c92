//! Neighbour entries and VXLAN forwarding entries.
//!
//! * Permanent ARP/NDP entries (pod IP → pod MAC on its cali interface; remote VTEP
//!   tunnel address → VTEP MAC on `vxlan.brindle`) are tagged with
//!   `NDA_PROTOCOL` = [`crate::calc::ROUTE_PROTOCOL`]. Only tagged entries are ever
//!   deleted; a desired entry is written with `NLM_F_REPLACE`, which also turns a
//!   kernel-learned entry for the same address into Brindle's permanent one.
//! * FDB entries (`bridge fdb` on `vxlan.brindle`: VTEP MAC → remote node IP): the device
//!   is Brindle's, so every entry on it that is not desired is removed.

use crate::calc::{FdbEntry, Mac, Neighbour};
use crate::nl::{errno, Netlink, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// A neighbour entry as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelNeighbour {
    pub family: AddressFamily,
    pub ifindex: u32,
    pub ip: Option<IpAddr>,
    pub mac: Option<Mac>,
    pub permanent: bool,
    pub protocol: Option<u8>,
    pub flags: NeighbourFlags,
}

fn parse(m: &NeighbourMessage) -> KernelNeighbour {
    let mut n = KernelNeighbour {
        family: m.header.family,
        ifindex: m.header.ifindex,
        ip: None,
        mac: None,
        permanent: m.header.state == NeighbourState::Permanent,
        protocol: None,
        flags: m.header.flags,
    };
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                n.ip = Some(IpAddr::V4(*v))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                n.ip = Some(IpAddr::V6(*v))
            }
            // AF_BRIDGE (FDB) entries: the packet crate cannot know the address family
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) if b.len() == 4 => {
                n.ip = Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) if b.len() == 16 => {
                n.ip = Some(IpAddr::V6(
                    <[u8; 16]>::try_from(b.as_slice()).expect("16 bytes").into(),
                ))
            }
            NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                n.mac = Some(Mac(b[..6].try_into().expect("6 bytes")))
            }
            NeighbourAttribute::Protocol(p) => n.protocol = Some(u8::from(*p)),
            _ => {}
        }
    }
    n
}

async fn dump(nl: &Netlink, family: AddressFamily) -> io::Result<Vec<KernelNeighbour>> {
    let mut req = NeighbourMessage::default();
    req.header.family = family;
    let msgs = nl.dump(RouteNetlinkMessage::GetNeighbour(req)).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => Some(parse(n)),
            _ => None,
        })
        .collect())
}

fn dest(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v) => NeighbourAddress::Inet(v),
        IpAddr::V6(v) => NeighbourAddress::Inet6(v),
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

pub(crate) fn neigh_msg(
    ifindex: u32,
    ip: IpAddr,
    mac: Option<Mac>,
    protocol: u8,
) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(ip);
    m.header.ifindex = ifindex;
    m.attributes.push(NeighbourAttribute::Destination(dest(ip)));
    if let Some(mac) = mac {
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        m.attributes
            .push(NeighbourAttribute::Protocol(RouteProtocol::from(protocol)));
    }
    m
}

fn fdb_msg(ifindex: u32, mac: Mac, dst: Ipv4Addr, add: bool) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = ifindex;
    m.header.flags = NeighbourFlags::Own;
    if add {
        m.header.state = NeighbourState::Permanent;
    }
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
    m
}

/// What to change in the neighbour table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighbourPlan {
    /// (ifindex, ip, mac) to write.
    pub put: Vec<(u32, IpAddr, Mac)>,
    /// (ifindex, ip) to delete.
    pub delete: Vec<(u32, IpAddr)>,
    pub pending: usize,
}

/// Diffs desired entries against the kernel's. Pure.
pub fn plan_neighbours(
    desired: &BTreeSet<Neighbour>,
    kernel: &[KernelNeighbour],
    protocol: u8,
    ifindex: &HashMap<String, u32>,
) -> NeighbourPlan {
    let have: BTreeMap<(u32, IpAddr), &KernelNeighbour> = kernel
        .iter()
        .filter(|n| !n.flags.contains(NeighbourFlags::Proxy))
        .filter_map(|n| n.ip.map(|ip| ((n.ifindex, ip), n)))
        .collect();
    let mut p = NeighbourPlan::default();
    let mut wanted = BTreeSet::new();
    for d in desired {
        let Some(&idx) = ifindex.get(&d.iface) else {
            p.pending += 1;
            continue;
        };
        wanted.insert((idx, d.ip));
        match have.get(&(idx, d.ip)) {
            Some(k) if k.permanent && k.mac == Some(d.mac) && k.protocol == Some(protocol) => {}
            _ => p.put.push((idx, d.ip, d.mac)),
        }
    }
    for ((idx, ip), k) in &have {
        if k.protocol == Some(protocol) && !wanted.contains(&(*idx, *ip)) {
            p.delete.push((*idx, *ip));
        }
    }
    p
}

/// What to change in a VXLAN device's FDB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdbPlan {
    pub put: Vec<(Mac, Ipv4Addr)>,
    pub delete: Vec<(Mac, Ipv4Addr)>,
}

/// Diffs desired FDB entries against the entries on the device. Pure.
pub fn plan_fdb(desired: &BTreeSet<(Mac, Ipv4Addr)>, kernel: &[(Mac, Ipv4Addr)]) -> FdbPlan {
    let have: BTreeSet<(Mac, Ipv4Addr)> = kernel.iter().copied().collect();
    FdbPlan {
        put: desired.difference(&have).copied().collect(),
        delete: have.difference(desired).copied().collect(),
    }
}

#[derive(Debug, Default)]
pub(crate) struct NeighOutcome {
    pub added: usize,
    pub removed: usize,
    pub fdb_added: usize,
    pub fdb_removed: usize,
    pub pending: usize,
    pub errors: Vec<String>,
}

/// The kernel's neighbour entries (IPv4 and IPv6) and, when `bridge`, its FDB.
pub(crate) async fn observe(
    nl: &Netlink,
    bridge: bool,
) -> io::Result<(Vec<KernelNeighbour>, Vec<KernelNeighbour>)> {
    let mut kernel = dump(nl, AddressFamily::Inet).await?;
    kernel.extend(dump(nl, AddressFamily::Inet6).await?);
    let fdb = if bridge {
        dump(nl, AddressFamily::Bridge).await?
    } else {
        Vec::new()
    };
    Ok((kernel, fdb))
}

/// What to change in the neighbour table and in each VXLAN device's FDB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighPlan {
    pub neighbours: NeighbourPlan,
    /// Per device (ifindex), the FDB changes.
    pub fdb: Vec<(u32, FdbPlan)>,
    /// FDB entries of devices that do not exist yet.
    pub fdb_pending: usize,
}

/// Whether the FDB must be read: desired entries, or a VXLAN device to empty.
pub fn needs_fdb(fdb: &BTreeSet<FdbEntry>, ifindex: &HashMap<String, u32>) -> bool {
    !fdb.is_empty() || ifindex.contains_key(crate::calc::VXLAN_IFACE)
}

/// Diffs the desired neighbours and FDB against the kernel's. Pure.
pub fn plan(
    protocol: u8,
    desired: &BTreeSet<Neighbour>,
    fdb: &BTreeSet<FdbEntry>,
    ifindex: &HashMap<String, u32>,
    kernel: &[KernelNeighbour],
    bridge: &[KernelNeighbour],
) -> NeighPlan {
    let mut out = NeighPlan {
        neighbours: plan_neighbours(desired, kernel, protocol, ifindex),
        ..Default::default()
    };
    if !needs_fdb(fdb, ifindex) {
        return out;
    }
    // FDB, per VXLAN device (there is at most one)
    let mut by_dev: BTreeMap<&str, BTreeSet<(Mac, Ipv4Addr)>> = BTreeMap::new();
    for f in fdb {
        by_dev
            .entry(f.iface.as_str())
            .or_default()
            .insert((f.mac, f.dst));
    }
    by_dev.entry(crate::calc::VXLAN_IFACE).or_default();
    for (dev, want) in by_dev {
        let Some(&idx) = ifindex.get(dev) else {
            out.fdb_pending += want.len();
            continue;
        };
        let have: Vec<(Mac, Ipv4Addr)> = bridge
            .iter()
            .filter(|n| n.ifindex == idx && n.flags.contains(NeighbourFlags::Own))
            .filter_map(|n| match (n.mac, n.ip) {
                (Some(m), Some(IpAddr::V4(ip))) if m.0 != [0; 6] => Some((m, ip)),
                _ => None,
            })
            .collect();
        out.fdb.push((idx, plan_fdb(&want, &have)));
    }
    out
}

/// Applies a [`NeighPlan`] in batches.
pub(crate) async fn apply_plan(nl: &Netlink, protocol: u8, plan: &NeighPlan) -> NeighOutcome {
    let mut out = NeighOutcome::default();
    let p = &plan.neighbours;
    out.pending += p.pending + plan.fdb_pending;
    let dels: Vec<_> = p
        .delete
        .iter()
        .map(|(i, ip)| {
            (
                RouteNetlinkMessage::DelNeighbour(neigh_msg(*i, *ip, None, protocol)),
                0,
            )
        })
        .collect();
    for ((_, ip), r) in p.delete.iter().zip(nl.batch(dels).await) {
        match r {
            Ok(()) => out.removed += 1,
            Err(e) if errno(&e) == Some(libc::ENOENT) => out.removed += 1,
            Err(e) => out.errors.push(format!("delete neighbour {ip}: {e}")),
        }
    }
    let puts: Vec<_> = p
        .put
        .iter()
        .map(|(i, ip, mac)| {
            (
                RouteNetlinkMessage::NewNeighbour(neigh_msg(*i, *ip, Some(*mac), protocol)),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
        })
        .collect();
    for ((_, ip, mac), r) in p.put.iter().zip(nl.batch(puts).await) {
        match r {
            Ok(()) => out.added += 1,
            // The interface went away between reading the links and writing (a pod
            // being deleted): nothing to do, the next apply no longer wants it.
            Err(e) if errno(&e) == Some(libc::ENODEV) => {}
            Err(e) => out.errors.push(format!("neighbour {ip} lladdr {mac}: {e}")),
        }
    }

    for (idx, p) in &plan.fdb {
        let idx = *idx;
        let dels: Vec<_> = p
            .delete
            .iter()
            .map(|(m, ip)| {
                (
                    RouteNetlinkMessage::DelNeighbour(fdb_msg(idx, *m, *ip, false)),
                    0,
                )
            })
            .collect();
        for (r, res) in p.delete.iter().zip(nl.batch(dels).await) {
            match res {
                Ok(()) => out.fdb_removed += 1,
                Err(e) => out
                    .errors
                    .push(format!("delete fdb {} dst {}: {e}", r.0, r.1)),
            }
        }
        let puts: Vec<_> = p
            .put
            .iter()
            .map(|(m, ip)| {
                (
                    RouteNetlinkMessage::NewNeighbour(fdb_msg(idx, *m, *ip, true)),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            })
            .collect();
        for (r, res) in p.put.iter().zip(nl.batch(puts).await) {
            match res {
                Ok(()) => out.fdb_added += 1,
                Err(e) => out.errors.push(format!("fdb {} dst {}: {e}", r.0, r.1)),
            }
        }
    }
    out
}

/// Deletes every neighbour entry tagged with `protocol`. Returns how many.
pub(crate) async fn cleanup(
    nl: &Netlink,
    protocol: u8,
    errors: &mut Vec<String>,
) -> io::Result<usize> {
    let mut kernel = dump(nl, AddressFamily::Inet).await?;
    kernel.extend(dump(nl, AddressFamily::Inet6).await?);
    let ours: Vec<_> = kernel
        .iter()
        .filter(|n| n.protocol == Some(protocol))
        .filter_map(|n| n.ip.map(|ip| (n.ifindex, ip)))
        .collect();
    let msgs = ours
        .iter()
        .map(|(i, ip)| {
            (
                RouteNetlinkMessage::DelNeighbour(neigh_msg(*i, *ip, None, protocol)),
                0,
            )
        })
        .collect();
    let mut n = 0;
    for ((_, ip), r) in ours.iter().zip(nl.batch(msgs).await) {
        match r {
            Ok(()) => n += 1,
            Err(e) if errno(&e) == Some(libc::ENOENT) => n += 1,
            Err(e) => errors.push(format!("delete neighbour {ip}: {e}")),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(
        ifindex: u32,
        ip: &str,
        mac: u8,
        permanent: bool,
        protocol: Option<u8>,
    ) -> KernelNeighbour {
        KernelNeighbour {
            family: AddressFamily::Inet,
            ifindex,
            ip: Some(ip.parse().unwrap()),
            mac: Some(Mac([2, 0, 0, 0, 0, mac])),
            permanent,
            protocol,
            flags: NeighbourFlags::empty(),
        }
    }

    #[test]
    fn neighbour_plan_writes_missing_and_changed_and_deletes_only_own() {
        let ifindex: HashMap<String, u32> = [("cali1".to_string(), 7)].into_iter().collect();
        let n = |ip: &str, mac: u8| Neighbour {
            iface: "cali1".into(),
            ip: ip.parse().unwrap(),
            mac: Mac([2, 0, 0, 0, 0, mac]),
        };
        let desired: BTreeSet<_> = [
            n("10.0.0.1", 1),
            n("10.0.0.2", 2),
            n("10.0.0.3", 3),
            Neighbour {
                iface: "cali9".into(),
                ..n("10.0.0.4", 4)
            },
        ]
        .into_iter()
        .collect();
        let kernel = vec![
            k(7, "10.0.0.1", 1, true, Some(80)), // in place
            k(7, "10.0.0.2", 2, false, None),    // dynamic -> replace
            k(7, "10.0.0.8", 8, true, Some(80)), // stale own -> delete
            k(7, "10.0.0.9", 9, true, None),     // someone else's -> keep
            k(2, "192.168.1.1", 1, false, None), // host neighbour -> keep
        ];
        let p = plan_neighbours(&desired, &kernel, 80, &ifindex);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            p.put,
            vec![
                (7, ip("10.0.0.2"), Mac([2, 0, 0, 0, 0, 2])),
                (7, ip("10.0.0.3"), Mac([2, 0, 0, 0, 0, 3]))
            ]
        );
        assert_eq!(p.delete, vec![(7, ip("10.0.0.8"))]);
        assert_eq!(p.pending, 1);
    }

    #[test]
    fn fdb_plan() {
        let a = (Mac([2, 0, 0, 0, 0, 1]), "192.168.1.1".parse().unwrap());
        let b = (Mac([2, 0, 0, 0, 0, 2]), "192.168.1.2".parse().unwrap());
        let b_moved = (Mac([2, 0, 0, 0, 0, 2]), "192.168.1.3".parse().unwrap());
        let p = plan_fdb(&[a, b_moved].into_iter().collect(), &[a, b]);
        assert_eq!(
            p,
            FdbPlan {
                put: vec![b_moved],
                delete: vec![b]
            }
        );
    }
}
