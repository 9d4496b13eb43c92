//! The per-pod kernel state, over rtnetlink: the veth pair, the pod's addresses and routes,
//! the host route and sysctls.
//!
//! Netlink sockets and `/proc/sys/net` follow the calling thread's network namespace. The
//! host side is the namespace the plugin was started in (the runtime calls it in the host
//! namespace); the pod side runs on a dedicated thread that `setns`es into `CNI_NETNS`
//! ([`in_netns`]). Each side gets its own current-thread tokio runtime and netlink socket.

use super::error::{code, CniError, Result};
use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// MAC address of every host-side veth (as Calico).
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pod's IPv4 next hop; the host answers ARP for it by proxy ARP.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pod's IPv6 next hop: the EUI-64 link-local address of [`HOST_MAC`].
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
/// Route protocol of the host routes to pods (Brindle's; felix adopts these routes).
pub const ROUTE_PROTOCOL: u8 = 80;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `f` with a netlink handle in the calling thread's network namespace.
pub fn with_netlink<T, F, Fut>(f: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(code::INTERNAL, format!("cannot start a tokio runtime: {e}")))?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| CniError::netlink(format!("cannot open a netlink socket: {e}")))?;
        tokio::spawn(conn);
        f(handle).await
    })
}

/// Opens a network namespace file (`/var/run/netns/x`, `/proc/<pid>/ns/net`).
pub fn open_netns(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| {
        CniError::new(
            code::NETNS,
            format!(
                "cannot open the pod's network namespace {}: {e}",
                path.display()
            ),
        )
    })
}

/// Runs `f` on a dedicated thread that has entered the network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: File,
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let joined = std::thread::Builder::new()
        .name("brindle-cni-netns".into())
        .spawn(move || {
            // SAFETY: setns on a namespace fd we own; only this thread changes namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(CniError::new(
                    code::NETNS,
                    format!(
                        "cannot enter the pod's network namespace: {}",
                        std::io::Error::last_os_error()
                    ),
                ));
            }
            drop(ns);
            f()
        })
        .map_err(|e| CniError::new(code::INTERNAL, format!("cannot start a thread: {e}")))?
        .join();
    joined.unwrap_or_else(|_| {
        Err(CniError::new(
            code::INTERNAL,
            format!("internal error while {what} (thread panicked)"),
        ))
    })
}

fn nl_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

async fn timed<T, Fut>(what: &str, fut: Fut) -> Result<T>
where
    Fut: Future<Output = std::result::Result<T, rtnetlink::Error>>,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CniError::netlink(format!("{what}: {e}"))
            .with_details(format!("errno {:?}", nl_errno(&e)))),
        Err(_) => Err(CniError::new(
            code::TRY_AGAIN,
            format!(
                "{what}: no answer from the kernel within {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn timed_errno<T, Fut>(what: &str, fut: Fut) -> Result<std::result::Result<T, i32>>
where
    Fut: Future<Output = std::result::Result<T, rtnetlink::Error>>,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(Ok(v)),
        Ok(Err(e)) => match nl_errno(&e) {
            Some(errno) => Ok(Err(errno)),
            None => Err(CniError::netlink(format!("{what}: {e}"))),
        },
        Err(_) => Err(CniError::new(
            code::TRY_AGAIN,
            format!(
                "{what}: no answer from the kernel within {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// What we need to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub up: bool,
    pub mtu: Option<u32>,
    pub is_veth: bool,
}

impl Link {
    fn from_message(m: &LinkMessage) -> Link {
        let mut l = Link {
            index: m.header.index,
            name: String::new(),
            mac: Vec::new(),
            up: m.header.flags.contains(LinkFlags::Up),
            mtu: None,
            is_veth: false,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::Address(mac) => l.mac = mac.clone(),
                LinkAttribute::Mtu(mtu) => l.mtu = Some(*mtu),
                LinkAttribute::LinkInfo(infos) => {
                    l.is_veth = infos
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)))
                }
                _ => {}
            }
        }
        l
    }
}

/// The link named `name`, if any.
pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<Link>> {
    let what = format!("looking up link {name}");
    let r = timed_errno(&what, async {
        h.link().get().match_name(name).execute().try_next().await
    })
    .await?;
    match r {
        Ok(Some(m)) => Ok(Some(Link::from_message(&m))),
        Ok(None) => Ok(None),
        Err(e) if e == libc::ENODEV => Ok(None),
        Err(e) => Err(CniError::netlink(format!(
            "{what}: {}",
            std::io::Error::from_raw_os_error(e)
        ))),
    }
}

/// Deletes a link; a link already gone is fine.
pub async fn delete_link(h: &Handle, index: u32, name: &str) -> Result<()> {
    let what = format!("deleting link {name}");
    match timed_errno(&what, h.link().del(index).execute()).await? {
        Ok(()) => Ok(()),
        Err(e) if e == libc::ENODEV => Ok(()),
        Err(e) => Err(CniError::netlink(format!(
            "{what}: {}",
            std::io::Error::from_raw_os_error(e)
        ))),
    }
}

/// Creates the veth pair: `host` here, `peer` directly inside the namespace `ns`.
pub async fn create_veth(h: &Handle, host: &str, peer: &str, ns: &File, mtu: u32) -> Result<()> {
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer)
        .mtu(mtu)
        .append_extra_attribute(LinkAttribute::NetNsFd(ns.as_raw_fd()))
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host)
        .mtu(mtu)
        .address(HOST_MAC.to_vec())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    let what = format!("creating veth {host} (peer {peer} in the pod)");
    match timed_errno(&what, h.link().add(msg).execute()).await? {
        Ok(()) => Ok(()),
        Err(e) if e == libc::EEXIST => Err(CniError::netlink(format!(
            "{what}: an interface named {peer} already exists in the pod's network namespace (or {host} on the host)"
        ))),
        Err(e) => Err(CniError::netlink(format!(
            "{what}: {}",
            std::io::Error::from_raw_os_error(e)
        ))),
    }
}

pub async fn set_up(h: &Handle, link: &Link) -> Result<()> {
    timed(
        &format!("setting {} up", link.name),
        h.link()
            .change(LinkUnspec::new_with_index(link.index).up().build())
            .execute(),
    )
    .await
}

/// Adds `ip/prefix` to a link (IPv6: without duplicate address detection); already there is fine.
pub async fn add_address(h: &Handle, link: &Link, ip: IpAddr, prefix: u8) -> Result<()> {
    let mut req = h.address().add(link.index, ip, prefix).replace();
    if ip.is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    timed(
        &format!("adding {ip}/{prefix} to {}", link.name),
        req.execute(),
    )
    .await
}

/// The addresses of a link (`ip/prefix`).
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<IpNetwork>> {
    let msgs: Vec<AddressMessage> = timed(
        "listing addresses",
        h.address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect(),
    )
    .await?;
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| m.header.index == index) {
        let local = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = local.or(addr) {
            if let Ok(n) = IpNetwork::new(ip, m.header.prefix_len) {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// A route as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub protocol: u8,
    pub scope: RouteScope,
    pub table: u32,
}

fn route_from_message(m: &RouteMessage) -> Option<Route> {
    let v4 = m.header.address_family == netlink_packet_route::AddressFamily::Inet;
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut table = u32::from(m.header.table);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(IpAddr::V4(*ip)),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => dst = Some(IpAddr::V6(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(IpAddr::V4(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => gateway = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    let dst = dst.unwrap_or(if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    Some(Route {
        dst: IpNetwork::new(dst, m.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        protocol: u8::from(m.header.protocol),
        scope: m.header.scope,
        table,
    })
}

/// The routes of the main table, of one family.
pub async fn main_routes(h: &Handle, v4: bool) -> Result<Vec<Route>> {
    let query = if v4 {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    };
    let msgs: Vec<RouteMessage> = timed(
        "listing routes",
        h.route().get(query).execute().try_collect(),
    )
    .await?;
    Ok(msgs
        .iter()
        .filter_map(route_from_message)
        .filter(|r| r.table == u32::from(RouteHeader::RT_TABLE_MAIN))
        .collect())
}

/// `dst dev <link> [via gw]` in the main table, replacing any route to the same
/// destination.
pub async fn replace_route(
    h: &Handle,
    dst: IpNetwork,
    gateway: Option<IpAddr>,
    link: &Link,
    protocol: u8,
) -> Result<()> {
    let scope = if gateway.is_none() && dst.is_ipv4() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    let msg = match (dst, gateway) {
        (IpNetwork::V4(d), gw) => {
            let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(d.network(), d.prefix())
                .output_interface(link.index)
                .protocol(RouteProtocol::from(protocol))
                .scope(scope);
            if let Some(IpAddr::V4(g)) = gw {
                b = b.gateway(g);
            }
            b.build()
        }
        (IpNetwork::V6(d), gw) => {
            let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(d.network(), d.prefix())
                .output_interface(link.index)
                .protocol(RouteProtocol::from(protocol))
                .scope(scope);
            if let Some(IpAddr::V6(g)) = gw {
                b = b.gateway(g);
            }
            b.build()
        }
    };
    let what = match gateway {
        Some(g) => format!("adding route {dst} via {g} dev {}", link.name),
        None => format!("adding route {dst} dev {}", link.name),
    };
    timed(&what, h.route().add(msg).replace().execute()).await
}

/// Deletes the main-table routes to `dst` that leave through `oif`; none is fine.
pub async fn delete_routes(h: &Handle, dst: IpNetwork, oif: u32) -> Result<()> {
    for r in main_routes(h, dst.is_ipv4()).await? {
        if r.dst != dst || r.oif != Some(oif) {
            continue;
        }
        let mut b = match dst {
            IpNetwork::V4(d) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(d.network(), d.prefix())
                .build(),
            IpNetwork::V6(d) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(d.network(), d.prefix())
                .build(),
        };
        b.header.protocol = RouteProtocol::from(r.protocol);
        b.header.scope = r.scope;
        b.attributes.push(RouteAttribute::Oif(oif));
        match timed_errno("deleting route", h.route().del(b).execute()).await? {
            Ok(()) => {}
            Err(e) if e == libc::ESRCH || e == libc::ENOENT => {}
            Err(e) => {
                return Err(CniError::netlink(format!(
                    "deleting route {dst}: {}",
                    std::io::Error::from_raw_os_error(e)
                )))
            }
        }
    }
    Ok(())
}

/// Writes a sysctl under `/proc/sys/net` (of the calling thread's namespace).
/// `optional`: a missing file (IPv6 disabled) is not an error.
pub fn write_sysctl(rel: &str, value: &str, optional: bool) -> Result<()> {
    let path = Path::new("/proc/sys/net").join(rel);
    match std::fs::write(&path, value) {
        Ok(()) => Ok(()),
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io(format!(
            "cannot set {} to {value}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants() {
        assert_eq!(format_mac(&HOST_MAC), "ee:ee:ee:ee:ee:ee");
        assert_eq!(GATEWAY_V6.to_string(), "fe80::ecee:eeff:feee:eeee");
    }
}
