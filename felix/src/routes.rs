//! Routes: reads Brindle's routes (main table, protocol [`crate::calc::ROUTE_PROTOCOL`],
//! dumped through a strict-check socket so the kernel filters), diffs them against the
//! desired routes ([`plan`], pure) and applies the difference in batches.
//!
//! Ownership: only routes with Brindle's protocol are replaced or deleted. A desired
//! route whose key (destination, table, metric) is held by another protocol's route is
//! created with `NLM_F_EXCL`, so the kernel refuses with `EEXIST` and the foreign route
//! stays; that is reported as a [`crate::calc::WarningCode::ForeignRoute`] warning.
//! Metrics: IPv4 0, IPv6 1024 (the kernel defaults). Routes through an interface that
//! does not exist yet (a pod veth the CNI plugin has not created, tunl0 on a kernel
//! without IPIP) are *pending*: skipped now, retried on the next link event.
//!
//! [`route_message`] is also what [`crate::podnet`] sends for a pod's routes: the host
//! route the CNI plugin makes is the one this reconciler wants, and adopts as it is.

use crate::calc::{NextHop, RouteTarget};
use crate::nl::{errno, Netlink, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use ipnetwork::IpNetwork;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;

pub const MAIN_TABLE: u32 = 254;
/// The IPv6 metric the kernel gives a route added without one.
pub const IPV6_DEFAULT_METRIC: u32 = 1024;

/// One next hop of a kernel route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelHop {
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub onlink: bool,
}

/// A route as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub dst: IpNetwork,
    pub table: u32,
    pub protocol: u8,
    pub priority: u32,
    pub tos: u8,
    pub scope: u8,
    /// `RTN_*`: 1 unicast, 6 blackhole, …
    pub kind: u8,
    pub hops: Vec<KernelHop>,
}

impl KernelRoute {
    /// The interface of a route with one next hop.
    pub fn oif(&self) -> Option<u32> {
        match &self.hops[..] {
            [h] => h.oif,
            _ => None,
        }
    }

    /// The gateway of a route with one next hop.
    pub fn gateway(&self) -> Option<IpAddr> {
        match &self.hops[..] {
            [h] => h.gateway,
            _ => None,
        }
    }
}

const RTN_UNICAST: u8 = 1;
const RTN_BLACKHOLE: u8 = 6;
const RT_SCOPE_LINK: u8 = 253;

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// Parses a route message; `None` for families and shapes Brindle does not handle.
pub fn parse_route(m: &RouteMessage) -> Option<KernelRoute> {
    let h = &m.header;
    let v6 = match h.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut dst = None;
    let mut table = u32::from(h.table);
    let mut priority = 0;
    let mut single = KernelHop {
        gateway: None,
        oif: None,
        onlink: h.flags.contains(RouteFlags::Onlink),
    };
    let mut multi = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = addr(d),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => priority = *p,
            RouteAttribute::Gateway(g) => single.gateway = addr(g),
            RouteAttribute::Oif(o) => single.oif = Some(*o),
            RouteAttribute::MultiPath(hops) => {
                multi = Some(
                    hops.iter()
                        .map(|nh| KernelHop {
                            gateway: nh.attributes.iter().find_map(|a| match a {
                                RouteAttribute::Gateway(g) => addr(g),
                                _ => None,
                            }),
                            oif: (nh.interface_index != 0).then_some(nh.interface_index),
                            onlink: nh.flags.contains(RouteNextHopFlags::Onlink),
                        })
                        .collect(),
                )
            }
            _ => {}
        }
    }
    let dst = dst.unwrap_or(if v6 {
        IpAddr::V6(0.into())
    } else {
        IpAddr::V4(0.into())
    });
    let dst = IpNetwork::new(dst, h.destination_prefix_length).ok()?;
    Some(KernelRoute {
        dst,
        table,
        protocol: u8::from(h.protocol),
        priority,
        tos: h.tos,
        scope: u8::from(h.scope),
        kind: u8::from(h.kind),
        hops: multi.unwrap_or_else(|| vec![single]),
    })
}

/// The metric Brindle uses for a destination.
pub fn metric_for(dst: &IpNetwork) -> u32 {
    if dst.is_ipv6() {
        IPV6_DEFAULT_METRIC
    } else {
        0
    }
}

/// Whether the kernel route already is what `want` asks for.
pub fn matches(want: &RouteTarget, have: &KernelRoute, ifindex: &HashMap<String, u32>) -> bool {
    match want {
        RouteTarget::Blackhole => have.kind == RTN_BLACKHOLE,
        RouteTarget::Device(i) => {
            have.kind == RTN_UNICAST
                && have.hops.len() == 1
                && have.hops[0].gateway.is_none()
                && have.hops[0].oif.is_some()
                && have.hops[0].oif == ifindex.get(i).copied()
                && (have.dst.is_ipv6() || have.scope == RT_SCOPE_LINK)
        }
        RouteTarget::Gateways(hops) => {
            have.kind == RTN_UNICAST
                && have.hops.len() == hops.len()
                && hops.iter().all(|w| {
                    have.hops.iter().any(|h| {
                        h.gateway == Some(w.gateway)
                            && h.onlink == w.onlink
                            && match &w.iface {
                                Some(i) => h.oif.is_some() && h.oif == ifindex.get(i).copied(),
                                None => true,
                            }
                    })
                })
        }
    }
}

/// What to change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutePlan {
    /// New routes (`NLM_F_CREATE | NLM_F_EXCL`).
    pub add: Vec<(IpNetwork, RouteTarget)>,
    /// Own routes to rewrite in place (`NLM_F_REPLACE`).
    pub replace: Vec<(IpNetwork, RouteTarget)>,
    /// Own routes to delete (stale, or duplicates at another metric).
    pub delete: Vec<KernelRoute>,
    /// Desired routes whose interface does not exist.
    pub pending: Vec<IpNetwork>,
    /// Desired routes already in place.
    pub in_place: usize,
    /// Host routes out of pod interfaces that no endpoint claims: not deleted here; the
    /// caller deletes them once they stay unclaimed for a grace period (the CNI plugin
    /// makes a pod's route moments before the agent reads the pod's record).
    pub unclaimed: Vec<KernelRoute>,
}

/// Diffs desired routes against Brindle's kernel routes (`own`: already filtered to
/// Brindle's protocol and the main table). Pure.
pub fn plan(
    desired: &BTreeMap<IpNetwork, RouteTarget>,
    own: &[KernelRoute],
    ifindex: &HashMap<String, u32>,
    keep_undesired: bool,
) -> RoutePlan {
    let mut by_dst: BTreeMap<IpNetwork, Vec<&KernelRoute>> = BTreeMap::new();
    for r in own {
        by_dst.entry(r.dst).or_default().push(r);
    }
    let mut p = RoutePlan::default();
    for (dst, want) in desired {
        let have = by_dst.remove(dst).unwrap_or_default();
        if want.ifaces().iter().any(|i| !ifindex.contains_key(*i)) {
            p.pending.push(*dst);
            p.delete.extend(have.into_iter().cloned());
            continue;
        }
        let metric = metric_for(dst);
        if let Some(keep) = have
            .iter()
            .position(|h| h.priority == metric && h.tos == 0 && matches(want, h, ifindex))
        {
            p.in_place += 1;
            p.delete.extend(
                have.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != keep)
                    .map(|(_, h)| (*h).clone()),
            );
            continue;
        }
        if let Some(slot) = have.iter().position(|h| h.priority == metric && h.tos == 0) {
            p.replace.push((*dst, want.clone()));
            p.delete.extend(
                have.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != slot)
                    .map(|(_, h)| (*h).clone()),
            );
        } else {
            p.add.push((*dst, want.clone()));
            p.delete.extend(have.into_iter().cloned());
        }
    }
    // A host route out of an existing pod interface that no endpoint claims is usually the
    // CNI plugin's, made moments before the agent read the pod's record: set it apart.
    let endpoint_ifs: std::collections::HashSet<u32> = ifindex
        .iter()
        .filter(|(n, _)| n.starts_with(crate::calc::ENDPOINT_IFACE_PREFIX))
        .map(|(_, i)| *i)
        .collect();
    let known_ifs: std::collections::HashSet<u32> = ifindex.values().copied().collect();
    for (_, rest) in by_dst {
        for r in rest {
            if keep_undesired {
                continue;
            }
            if is_unclaimed_endpoint_route(r, &endpoint_ifs, &known_ifs) {
                p.unclaimed.push(r.clone());
                continue;
            }
            p.delete.push(r.clone());
        }
    }
    p
}

/// A host route straight out of a pod interface (or out of an interface newer than the
/// link dump of this apply: the CNI plugin may have made both in between).
fn is_unclaimed_endpoint_route(
    r: &KernelRoute,
    endpoint_ifs: &std::collections::HashSet<u32>,
    known_ifs: &std::collections::HashSet<u32>,
) -> bool {
    let host = r.dst.prefix() == if r.dst.is_ipv4() { 32 } else { 128 };
    host && r.kind == RTN_UNICAST
        && matches!(&r.hops[..], [h] if h.gateway.is_none()
            && h.oif.is_some_and(|i| endpoint_ifs.contains(&i) || !known_ifs.contains(&i)))
}

fn new_message(dst: &IpNetwork, protocol: u8) -> RouteMessage {
    let mut m = RouteMessage::default();
    let h = &mut m.header;
    h.address_family = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    h.destination_prefix_length = dst.prefix();
    h.table = RouteHeader::RT_TABLE_MAIN;
    h.protocol = RouteProtocol::from(protocol);
    m
}

fn hop_attr(gw: IpAddr) -> RouteAttribute {
    RouteAttribute::Gateway(RouteAddress::from(gw))
}

/// The `RTM_NEWROUTE` message for a desired route. Interfaces must resolve.
pub fn route_message(
    dst: &IpNetwork,
    want: &RouteTarget,
    protocol: u8,
    ifindex: &HashMap<String, u32>,
) -> RouteMessage {
    let mut m = new_message(dst, protocol);
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            dst.network(),
        )));
    if dst.is_ipv6() {
        m.attributes
            .push(RouteAttribute::Priority(IPV6_DEFAULT_METRIC));
    }
    let idx = |i: &str| ifindex.get(i).copied().unwrap_or(0);
    match want {
        RouteTarget::Blackhole => {
            m.header.kind = RouteType::BlackHole;
        }
        RouteTarget::Device(i) => {
            m.header.kind = RouteType::Unicast;
            m.header.scope = RouteScope::Link;
            m.attributes.push(RouteAttribute::Oif(idx(i)));
        }
        RouteTarget::Gateways(hops) if hops.len() == 1 => {
            let h: &NextHop = &hops[0];
            m.header.kind = RouteType::Unicast;
            m.attributes.push(hop_attr(h.gateway));
            if let Some(i) = &h.iface {
                m.attributes.push(RouteAttribute::Oif(idx(i)));
            }
            if h.onlink {
                m.header.flags |= RouteFlags::Onlink;
            }
        }
        RouteTarget::Gateways(hops) => {
            m.header.kind = RouteType::Unicast;
            let nhs = hops
                .iter()
                .map(|h| {
                    let mut nh = RouteNextHop::default();
                    if h.onlink {
                        nh.flags = RouteNextHopFlags::Onlink;
                    }
                    nh.interface_index = h.iface.as_deref().map(idx).unwrap_or(0);
                    nh.attributes = vec![hop_attr(h.gateway)];
                    nh
                })
                .collect();
            m.attributes.push(RouteAttribute::MultiPath(nhs));
        }
    }
    m
}

/// The `RTM_DELROUTE` message that deletes exactly this route (with its interface when it
/// has one next hop through one).
pub fn delete_message(r: &KernelRoute) -> RouteMessage {
    let mut m = new_message(&r.dst, r.protocol);
    m.header.tos = r.tos;
    m.header.scope = RouteScope::NoWhere;
    if r.table > 255 {
        m.header.table = RouteHeader::RT_TABLE_UNSPEC;
        m.attributes.push(RouteAttribute::Table(r.table));
    } else {
        m.header.table = r.table as u8;
    }
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            r.dst.network(),
        )));
    m.attributes.push(RouteAttribute::Priority(r.priority));
    if let Some(oif) = r.oif() {
        m.attributes.push(RouteAttribute::Oif(oif));
    }
    m
}

/// Dumps routes of `protocol` (both families). `table`: `Some(t)` for one table,
/// `None` for all.
pub(crate) async fn dump_own(
    nl: &Netlink,
    protocol: u8,
    table: Option<u32>,
) -> io::Result<Vec<KernelRoute>> {
    let mut out = dump(nl, AddressFamily::Inet, Some(protocol), table).await?;
    out.extend(dump(nl, AddressFamily::Inet6, Some(protocol), table).await?);
    Ok(out)
}

/// Dumps the routes of one family; `protocol`, `table`: only those (`None`: any).
pub(crate) async fn dump(
    nl: &Netlink,
    family: AddressFamily,
    protocol: Option<u8>,
    table: Option<u32>,
) -> io::Result<Vec<KernelRoute>> {
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    req.header.protocol = RouteProtocol::from(protocol.unwrap_or(0));
    req.header.table = match table {
        Some(t) if t <= 255 => t as u8,
        _ => RouteHeader::RT_TABLE_UNSPEC,
    };
    let mut out = Vec::new();
    for m in nl.dump(RouteNetlinkMessage::GetRoute(req)).await? {
        let RouteNetlinkMessage::NewRoute(m) = m else {
            continue;
        };
        // the kernel filters on a strict-check socket; check again in case it did not
        if let Some(r) = parse_route(&m).filter(|r| {
            protocol.is_none_or(|p| r.protocol == p) && table.is_none_or(|t| r.table == t)
        }) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Counts of one route reconciliation.
#[derive(Debug, Default)]
pub(crate) struct RouteOutcome {
    pub added: usize,
    pub replaced: usize,
    pub removed: usize,
    pub pending: usize,
    pub programmed: usize,
    pub foreign: Vec<IpNetwork>,
    pub errors: Vec<String>,
}

/// Moves the unclaimed pod routes of `p` that have stayed unclaimed for `grace` (first
/// seen at the times in `seen`, kept up to date here) to its deletions. Pure: the time is
/// the caller's.
pub fn expire_unclaimed(
    p: &mut RoutePlan,
    seen: &mut HashMap<IpNetwork, std::time::Instant>,
    now: std::time::Instant,
    grace: std::time::Duration,
) {
    let unclaimed: std::collections::HashSet<IpNetwork> =
        p.unclaimed.iter().map(|r| r.dst).collect();
    seen.retain(|dst, _| unclaimed.contains(dst));
    for r in std::mem::take(&mut p.unclaimed) {
        let first = *seen.entry(r.dst).or_insert(now);
        if now.duration_since(first) >= grace {
            seen.remove(&r.dst);
            p.delete.push(r);
        }
    }
}

/// Applies a [`RoutePlan`] in two batches (deletions, then replacements and additions).
pub(crate) async fn apply_plan(
    nl: &Netlink,
    protocol: u8,
    p: &RoutePlan,
    ifindex: &HashMap<String, u32>,
) -> RouteOutcome {
    let mut out = RouteOutcome {
        pending: p.pending.len(),
        programmed: p.in_place,
        ..Default::default()
    };

    let dels: Vec<_> = p
        .delete
        .iter()
        .map(|r| (RouteNetlinkMessage::DelRoute(delete_message(r)), 0))
        .collect();
    for (r, res) in p.delete.iter().zip(nl.batch(dels).await) {
        match res {
            Ok(()) => out.removed += 1,
            Err(e) if errno(&e) == Some(libc::ESRCH) => out.removed += 1, // already gone
            Err(e) => out.errors.push(format!("delete route {}: {e}", r.dst)),
        }
    }

    let mut msgs = Vec::new();
    let mut what = Vec::new();
    for (dst, t) in &p.replace {
        msgs.push((
            RouteNetlinkMessage::NewRoute(route_message(dst, t, protocol, ifindex)),
            NLM_F_CREATE | NLM_F_REPLACE,
        ));
        what.push((dst, t, true));
    }
    for (dst, t) in &p.add {
        msgs.push((
            RouteNetlinkMessage::NewRoute(route_message(dst, t, protocol, ifindex)),
            NLM_F_CREATE | NLM_F_EXCL,
        ));
        what.push((dst, t, false));
    }
    for ((dst, t, replace), res) in what.into_iter().zip(nl.batch(msgs).await) {
        match res {
            Ok(()) => {
                out.programmed += 1;
                if replace {
                    out.replaced += 1
                } else {
                    out.added += 1
                }
            }
            Err(e) if !replace && errno(&e) == Some(libc::EEXIST) => out.foreign.push(*dst),
            // a pod veth that exists but is not up yet
            Err(e)
                if matches!(t, RouteTarget::Device(_))
                    && matches!(errno(&e), Some(libc::ENETDOWN) | Some(libc::ENODEV)) =>
            {
                out.pending += 1
            }
            Err(e) => out.errors.push(format!(
                "{} route {dst}: {e}",
                if replace { "replace" } else { "add" }
            )),
        }
    }
    out
}

/// Deletes every route of `protocol` in every table. Returns how many.
pub(crate) async fn cleanup(
    nl: &Netlink,
    protocol: u8,
    errors: &mut Vec<String>,
) -> io::Result<usize> {
    let own = dump_own(nl, protocol, None).await?;
    let msgs = own
        .iter()
        .map(|r| (RouteNetlinkMessage::DelRoute(delete_message(r)), 0))
        .collect();
    let mut n = 0;
    for (r, res) in own.iter().zip(nl.batch(msgs).await) {
        match res {
            Ok(()) => n += 1,
            Err(e) if errno(&e) == Some(libc::ESRCH) => n += 1,
            Err(e) => errors.push(format!("delete route {}: {e}", r.dst)),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn idx() -> HashMap<String, u32> {
        [("cali1", 10), ("tunl0", 3), ("eth0", 2)]
            .into_iter()
            .map(|(n, i)| (n.to_string(), i))
            .collect()
    }
    fn dev_route(dst: &str, oif: u32) -> KernelRoute {
        KernelRoute {
            dst: net(dst),
            table: 254,
            protocol: 80,
            priority: 0,
            tos: 0,
            scope: RT_SCOPE_LINK,
            kind: RTN_UNICAST,
            hops: vec![KernelHop {
                gateway: None,
                oif: Some(oif),
                onlink: false,
            }],
        }
    }

    #[test]
    fn matching_device_blackhole_and_gateway_routes() {
        let i = idx();
        assert!(matches(
            &RouteTarget::Device("cali1".into()),
            &dev_route("10.0.0.1/32", 10),
            &i
        ));
        assert!(!matches(
            &RouteTarget::Device("cali1".into()),
            &dev_route("10.0.0.1/32", 2),
            &i
        ));
        let mut wrong_scope = dev_route("10.0.0.1/32", 10);
        wrong_scope.scope = 0;
        assert!(!matches(
            &RouteTarget::Device("cali1".into()),
            &wrong_scope,
            &i
        ));
        let bh = KernelRoute {
            kind: RTN_BLACKHOLE,
            hops: vec![KernelHop {
                gateway: None,
                oif: None,
                onlink: false,
            }],
            ..dev_route("10.65.0.0/26", 0)
        };
        assert!(matches(&RouteTarget::Blackhole, &bh, &i));
        assert!(!matches(&RouteTarget::Device("cali1".into()), &bh, &i));
        // ECMP: order does not matter, oif only checked when asked for
        let ecmp = KernelRoute {
            hops: vec![
                KernelHop {
                    gateway: Some(ip("192.168.1.12")),
                    oif: Some(2),
                    onlink: false,
                },
                KernelHop {
                    gateway: Some(ip("192.168.1.11")),
                    oif: Some(2),
                    onlink: false,
                },
            ],
            scope: 0,
            ..dev_route("10.70.0.0/24", 0)
        };
        let want = RouteTarget::Gateways(vec![
            NextHop::via(ip("192.168.1.11")),
            NextHop::via(ip("192.168.1.12")),
        ]);
        assert!(matches(&want, &ecmp, &i));
        assert!(!matches(
            &RouteTarget::Gateways(vec![NextHop::via(ip("192.168.1.11"))]),
            &ecmp,
            &i
        ));
        let tun = KernelRoute {
            hops: vec![KernelHop {
                gateway: Some(ip("192.168.2.11")),
                oif: Some(3),
                onlink: true,
            }],
            scope: 0,
            ..dev_route("10.65.4.0/26", 0)
        };
        assert!(matches(
            &RouteTarget::Gateways(vec![NextHop::onlink(ip("192.168.2.11"), "tunl0")]),
            &tun,
            &i
        ));
        assert!(!matches(
            &RouteTarget::Gateways(vec![NextHop::via(ip("192.168.2.11"))]),
            &tun,
            &i
        ));
    }

    #[test]
    fn plan_adds_replaces_deletes_and_waits_for_interfaces() {
        let i = idx();
        let mut desired = BTreeMap::new();
        desired.insert(net("10.0.0.1/32"), RouteTarget::Device("cali1".into())); // in place
        desired.insert(net("10.0.0.2/32"), RouteTarget::Device("cali1".into())); // wrong oif -> replace
        desired.insert(net("10.0.0.3/32"), RouteTarget::Device("cali1".into())); // missing -> add
        desired.insert(net("10.0.0.4/32"), RouteTarget::Device("cali9".into())); // no iface -> pending
        desired.insert(net("10.65.0.0/26"), RouteTarget::Blackhole);
        let mut other_metric = dev_route("10.65.0.0/26", 0);
        other_metric.priority = 100;
        let own = vec![
            dev_route("10.0.0.1/32", 10),
            dev_route("10.0.0.2/32", 2),
            dev_route("10.0.0.4/32", 10),
            dev_route("10.0.0.9/32", 2),
            dev_route("10.0.0.10/32", 10), // made by the CNI plugin, record not read yet
            other_metric.clone(),
        ];
        let p = plan(&desired, &own, &i, false);
        // while the model is incomplete nothing is removed
        assert!(plan(&desired, &own, &i, true)
            .delete
            .iter()
            .all(|r| desired.contains_key(&r.dst)));
        assert_eq!(p.in_place, 1);
        assert_eq!(
            p.replace,
            vec![(net("10.0.0.2/32"), RouteTarget::Device("cali1".into()))]
        );
        assert_eq!(
            p.add,
            vec![
                (net("10.0.0.3/32"), RouteTarget::Device("cali1".into())),
                (net("10.65.0.0/26"), RouteTarget::Blackhole)
            ]
        );
        assert_eq!(p.pending, vec![net("10.0.0.4/32")]);
        assert_eq!(
            p.unclaimed.iter().map(|r| r.dst).collect::<Vec<_>>(),
            vec![net("10.0.0.10/32")]
        );
        let mut deleted: Vec<IpNetwork> = p.delete.iter().map(|r| r.dst).collect();
        deleted.sort();
        assert_eq!(
            deleted,
            vec![net("10.0.0.4/32"), net("10.0.0.9/32"), net("10.65.0.0/26")]
        );
        // nothing to do the second time
        let now = vec![dev_route("10.0.0.1/32", 10)];
        let mut d2 = BTreeMap::new();
        d2.insert(net("10.0.0.1/32"), RouteTarget::Device("cali1".into()));
        assert_eq!(
            plan(&d2, &now, &i, false),
            RoutePlan {
                in_place: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn messages_round_trip_through_the_parser() {
        let i = idx();
        for (dst, t) in [
            ("10.0.0.1/32", RouteTarget::Device("cali1".into())),
            ("10.65.0.0/26", RouteTarget::Blackhole),
            (
                "10.65.4.0/26",
                RouteTarget::Gateways(vec![NextHop::onlink(ip("192.168.2.11"), "tunl0")]),
            ),
            (
                "10.70.0.0/24",
                RouteTarget::Gateways(vec![
                    NextHop::onlink(ip("192.168.1.11"), "eth0"),
                    NextHop::onlink(ip("192.168.1.12"), "eth0"),
                ]),
            ),
            (
                "fd00::/64",
                RouteTarget::Gateways(vec![NextHop {
                    gateway: ip("fe80::1"),
                    iface: Some("eth0".into()),
                    onlink: false,
                }]),
            ),
        ] {
            let m = route_message(&net(dst), &t, 80, &i);
            let r = parse_route(&m).unwrap();
            assert_eq!(r.dst, net(dst));
            assert_eq!(r.protocol, 80);
            assert_eq!(r.table, 254);
            assert_eq!(r.priority, metric_for(&net(dst)));
            assert!(matches(&t, &r, &i), "{dst}: {r:?}");
            let d = delete_message(&r);
            assert_eq!(u8::from(d.header.protocol), 80);
        }
    }
}
