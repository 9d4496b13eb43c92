//! Links: reads the node's interfaces and reconciles Brindle's tunnel devices; the link
//! and address requests [`crate::podnet`] makes for a pod's veth.
//!
//! * `tunl0` (IPIP): the kernel's fallback device, which exists in every namespace once
//!   the `ipip` module is loaded. When wanted and missing, Brindle asks for an `ipip`
//!   link named `tunl0` (this loads the module; `EEXIST` then means it appeared). It is
//!   set up with MTU host − 20 and exactly one IPv4 address, `<tunnel addr>/32` (other
//!   IPv4 addresses are removed, as Calico does). When not wanted it is left alone
//!   (other software may use the fallback device); [`crate::dataplane::cleanup`] removes
//!   its addresses and sets it down.
//! * `vxlan.brindle`: Brindle's own device (VNI 4096, UDP 4789, local = node IP,
//!   learning off, MAC from the node name). Recreated when its parameters differ, MTU
//!   host − 50, one IPv4 address `<tunnel addr>/32`; deleted when not wanted.

use crate::calc::{
    Desired, LinkSummary, Mac, IPIP_IFACE, IPIP_OVERHEAD, VXLAN_IFACE, VXLAN_OVERHEAD,
};
use crate::nl::{errno, Netlink, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use ipnetwork::IpNetwork;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkIpIp, LinkUnspec, LinkVxlan};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// VXLAN parameters of an existing device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanParams {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<Ipv4Addr>,
    pub learning: Option<bool>,
}

/// A link as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub up: bool,
    pub kind: Option<String>,
    pub mac: Option<Mac>,
    pub vxlan: Option<VxlanParams>,
}

impl Link {
    /// The MAC as `aa:bb:cc:dd:ee:ff` (empty when the link has none).
    pub fn mac_string(&self) -> String {
        self.mac.map(|m| m.to_string()).unwrap_or_default()
    }

    pub fn summary(&self) -> LinkSummary {
        LinkSummary {
            name: self.name.clone(),
            mtu: self.mtu,
            up: self.up,
            kind: self.kind.clone(),
        }
    }
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Other(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_link(m: &LinkMessage) -> Option<Link> {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        kind: None,
        mac: None,
        vxlan: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(b) if b.len() == 6 => {
                l.mac = Some(Mac(b[..6].try_into().expect("6 bytes")))
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(kind_name(k)),
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            let mut p = VxlanParams::default();
                            for x in v {
                                match x {
                                    InfoVxlan::Id(id) => p.vni = Some(*id),
                                    InfoVxlan::Port(port) => p.port = Some(*port),
                                    InfoVxlan::Local(a) => p.local = Some(*a),
                                    InfoVxlan::Learning(b) => p.learning = Some(*b),
                                    _ => {}
                                }
                            }
                            l.vxlan = Some(p);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (!l.name.is_empty()).then_some(l)
}

pub(crate) async fn dump_links(nl: &Netlink) -> io::Result<Vec<Link>> {
    let msgs = nl
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => parse_link(l),
            _ => None,
        })
        .collect())
}

/// The link named `name` (`ENODEV` when there is none).
pub(crate) async fn get_link(nl: &Netlink, name: &str) -> io::Result<Option<Link>> {
    let mut req = LinkMessage::default();
    req.attributes.push(LinkAttribute::IfName(name.to_string()));
    let msgs = nl.get(RouteNetlinkMessage::GetLink(req)).await?;
    Ok(msgs.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => parse_link(l),
        _ => None,
    }))
}

/// The `RTM_DELLINK` message of the link at `index`.
pub(crate) fn delete_message(index: u32) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    RouteNetlinkMessage::DelLink(m)
}

/// An address message's interface index and address (`IFA_LOCAL`, else `IFA_ADDRESS`).
fn parse_address(a: &AddressMessage) -> Option<(u32, IpNetwork)> {
    let find = |local: bool| {
        a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    let ip = find(true).or_else(|| find(false))?;
    Some((
        a.header.index,
        IpNetwork::new(ip, a.header.prefix_len).ok()?,
    ))
}

/// The addresses of one family, of the interface `index` or of all.
pub(crate) async fn dump_addresses(
    nl: &Netlink,
    family: AddressFamily,
    index: Option<u32>,
) -> io::Result<Vec<(u32, IpNetwork)>> {
    let mut req = AddressMessage::default();
    req.header.family = family;
    req.header.index = index.unwrap_or(0);
    let msgs = nl.dump(RouteNetlinkMessage::GetAddress(req)).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => parse_address(a),
            _ => None,
        })
        // the kernel filters on a strict-check socket; check again in case it did not
        .filter(|(i, _)| index.is_none_or(|want| *i == want))
        .collect())
}

/// IPv4 addresses by interface index.
pub(crate) async fn dump_v4_addrs(nl: &Netlink) -> io::Result<HashMap<u32, Vec<(Ipv4Addr, u8)>>> {
    let mut out: HashMap<u32, Vec<(Ipv4Addr, u8)>> = HashMap::new();
    for (index, a) in dump_addresses(nl, AddressFamily::Inet, None).await? {
        if let IpNetwork::V4(v) = a {
            out.entry(index).or_default().push((v.ip(), v.prefix()));
        }
    }
    Ok(out)
}

fn addr_msg(index: u32, addr: IpNetwork) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.prefix_len = addr.prefix();
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(addr.ip()));
    m.attributes.push(AddressAttribute::Address(addr.ip()));
    m
}

fn v4_net(ip: Ipv4Addr, prefix: u8) -> IpNetwork {
    IpNetwork::new(IpAddr::V4(ip), prefix).expect("prefix read from the kernel or /32")
}

/// Adds `addr` to the link at `index` (`nodad`: without duplicate address detection);
/// already there is fine.
pub(crate) async fn add_address(
    nl: &Netlink,
    index: u32,
    addr: IpNetwork,
    nodad: bool,
) -> io::Result<()> {
    let mut m = addr_msg(index, addr);
    if nodad {
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    nl.exec(
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .await
}

/// Outcome of a link reconciliation.
#[derive(Debug, Default)]
pub(crate) struct LinkOutcome {
    pub changes: usize,
    pub errors: Vec<String>,
}

fn vxlan_matches(l: &Link, want: &crate::calc::VxlanTunnel) -> bool {
    let Some(p) = &l.vxlan else { return false };
    l.kind.as_deref() == Some("vxlan")
        && p.vni == Some(want.vni)
        && p.port.is_none_or(|x| x == want.port)
        && p.local == Some(want.local)
        && p.learning != Some(true)
}

/// Sets MTU / up state of `link` to the wanted values.
async fn tune(nl: &Netlink, link: &Link, mtu: u32, mac: Option<Mac>, out: &mut LinkOutcome) {
    let mac_wrong = mac.is_some_and(|m| link.mac != Some(m));
    if link.mtu == mtu && link.up && !mac_wrong {
        return;
    }
    let mut b = LinkUnspec::new_with_index(link.index).mtu(mtu).up();
    if let Some(m) = mac.filter(|_| mac_wrong) {
        b = b.address(m.0.to_vec());
    }
    match nl.exec(RouteNetlinkMessage::SetLink(b.build()), 0).await {
        Ok(()) => out.changes += 1,
        Err(e) => out
            .errors
            .push(format!("set {} mtu {mtu} up: {e}", link.name)),
    }
}

/// Makes the link at `index` carry exactly `want` as its IPv4 address(es).
async fn set_addresses(
    nl: &Netlink,
    name: &str,
    index: u32,
    have: &[(Ipv4Addr, u8)],
    want: Option<Ipv4Addr>,
    out: &mut LinkOutcome,
) {
    let mut msgs = Vec::new();
    for (ip, p) in have {
        if Some(*ip) != want || *p != 32 {
            msgs.push((
                RouteNetlinkMessage::DelAddress(addr_msg(index, v4_net(*ip, *p))),
                0,
            ));
        }
    }
    if let Some(w) = want {
        if !have.contains(&(w, 32)) {
            msgs.push((
                RouteNetlinkMessage::NewAddress(addr_msg(index, v4_net(w, 32))),
                NLM_F_CREATE | NLM_F_REPLACE,
            ));
        }
    }
    for r in nl.batch(msgs).await {
        match r {
            Ok(()) => out.changes += 1,
            Err(e) => out.errors.push(format!("{name} address: {e}")),
        }
    }
}

/// Brings the tunnel devices to the desired state. Returns the links as they are
/// afterwards (re-read when anything changed).
pub(crate) async fn reconcile(
    nl: &Netlink,
    d: &Desired,
    host_mtu: u32,
    links: Vec<Link>,
    out: &mut LinkOutcome,
) -> io::Result<Vec<Link>> {
    let before = out.changes;
    let mut links = links;
    let find = |links: &[Link], name: &str| links.iter().find(|l| l.name == name).cloned();

    // IPIP
    if let Some(want) = &d.ipip {
        if find(&links, IPIP_IFACE).is_none() {
            let msg = LinkIpIp::new(IPIP_IFACE).build();
            match nl.exec(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL).await {
                Ok(()) => out.changes += 1,
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => out.errors.push("tunl0: this kernel has no IPIP support (ipip module missing); IPIP routes cannot be installed".to_string()),
                Err(e) => out.errors.push(format!("create tunl0: {e}")),
            }
            links = dump_links(nl).await?;
        }
        if let Some(t) = find(&links, IPIP_IFACE) {
            tune(nl, &t, host_mtu.saturating_sub(IPIP_OVERHEAD), None, out).await;
            let addrs = dump_v4_addrs(nl).await?;
            set_addresses(
                nl,
                IPIP_IFACE,
                t.index,
                addrs.get(&t.index).map(Vec::as_slice).unwrap_or(&[]),
                want.address,
                out,
            )
            .await;
        }
    }

    // VXLAN
    let existing = find(&links, VXLAN_IFACE);
    match (&d.vxlan, existing) {
        (None, Some(l)) => match nl.exec(delete_message(l.index), 0).await {
            Ok(()) => out.changes += 1,
            Err(e) => out.errors.push(format!("delete {VXLAN_IFACE}: {e}")),
        },
        (Some(want), existing) => {
            let mtu = host_mtu.saturating_sub(VXLAN_OVERHEAD);
            let mut existing = existing;
            if let Some(l) = existing.as_ref().filter(|l| !vxlan_matches(l, want)) {
                match nl.exec(delete_message(l.index), 0).await {
                    Ok(()) => out.changes += 1,
                    Err(e) => out
                        .errors
                        .push(format!("delete mismatching {VXLAN_IFACE}: {e}")),
                }
                existing = None;
            }
            if existing.is_none() {
                let msg = LinkVxlan::new(VXLAN_IFACE, want.vni)
                    .port(want.port)
                    .local(want.local)
                    .learning(false)
                    .mtu(mtu)
                    .address(want.mac.0.to_vec())
                    .up()
                    .build();
                match nl
                    .exec(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
                    .await
                {
                    Ok(()) => out.changes += 1,
                    Err(e) => out.errors.push(format!("create {VXLAN_IFACE}: {e}")),
                }
                links = dump_links(nl).await?;
            }
            if let Some(l) = find(&links, VXLAN_IFACE) {
                tune(nl, &l, mtu, Some(want.mac), out).await;
                let addrs = dump_v4_addrs(nl).await?;
                set_addresses(
                    nl,
                    VXLAN_IFACE,
                    l.index,
                    addrs.get(&l.index).map(Vec::as_slice).unwrap_or(&[]),
                    want.address,
                    out,
                )
                .await;
            }
        }
        (None, None) => {}
    }

    if out.changes != before {
        links = dump_links(nl).await?;
    }
    Ok(links)
}

/// Removes Brindle's link state: deletes `vxlan.brindle`, removes tunl0's IPv4
/// addresses and sets it down. Returns the number of changes.
pub(crate) async fn cleanup(nl: &Netlink, errors: &mut Vec<String>) -> io::Result<usize> {
    let links = dump_links(nl).await?;
    let mut changes = 0;
    if let Some(l) = links.iter().find(|l| l.name == VXLAN_IFACE) {
        match nl.exec(delete_message(l.index), 0).await {
            Ok(()) => changes += 1,
            Err(e) => errors.push(format!("delete {VXLAN_IFACE}: {e}")),
        }
    }
    if let Some(t) = links.iter().find(|l| l.name == IPIP_IFACE) {
        let addrs = dump_v4_addrs(nl).await?;
        let mut out = LinkOutcome::default();
        set_addresses(
            nl,
            IPIP_IFACE,
            t.index,
            addrs.get(&t.index).map(Vec::as_slice).unwrap_or(&[]),
            None,
            &mut out,
        )
        .await;
        if t.up {
            let msg = LinkUnspec::new_with_index(t.index).down().build();
            match nl.exec(RouteNetlinkMessage::SetLink(msg), 0).await {
                Ok(()) => out.changes += 1,
                Err(e) => out.errors.push(format!("set tunl0 down: {e}")),
            }
        }
        changes += out.changes;
        errors.extend(out.errors);
    }
    Ok(changes)
}
