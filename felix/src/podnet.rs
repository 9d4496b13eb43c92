//! A pod's network as the CNI plugin creates it (Calico's layout), over the same netlink
//! plumbing and message builders as the reconcilers:
//!
//! * a veth pair: the host end `cali…` with MAC [`HOST_MAC`] and no address, the peer
//!   created directly inside the pod's namespace ([`Handle::create_veth`]);
//! * the pod end up, with the pod's /32 and /128 (IPv6 without duplicate address
//!   detection), `169.254.1.1 dev eth0 scope link` and `default via 169.254.1.1`, IPv6
//!   `default via fe80::ecee:eeff:feee:eeee` ([`Handle::configure_pod_side`]);
//! * the host routes `<podIP>/32 dev caliX scope link proto 80`, built by
//!   [`routes::route_message`] for the same [`RouteTarget`] the route reconciler wants for
//!   a local endpoint, so the agent adopts them as they are ([`Handle::add_host_routes`]).
//!
//! A [`Handle`] is one netlink socket (strict checking, a timeout on every request) in
//! the calling thread's namespace; [`crate::netns`] runs work in the pod's namespace. The
//! sysctls of both ends are [`crate::sysctl::HOST_IFACE`] and
//! [`crate::sysctl::POD_IFACE`].

use crate::calc::{host_net, Mac, NextHop, RouteTarget, ROUTE_PROTOCOL};
use crate::links::{self, Link};
use crate::nl::{errno, Netlink, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use crate::routes::{self, KernelRoute, MAIN_TABLE};
use ipnetwork::IpNetwork;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

/// MAC address of every host-side veth (as Calico).
pub const HOST_MAC: Mac = Mac([0xee; 6]);
/// The pod's IPv4 next hop; the host answers ARP for it by proxy ARP.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pod's IPv6 next hop: the EUI-64 link-local address of [`HOST_MAC`].
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
/// Route protocol of the routes inside the pod (`boot`, what `ip route add` uses).
pub const POD_ROUTE_PROTOCOL: u8 = 3;
/// Timeout of every request of a [`Handle`] opened by [`crate::netns::with_netlink`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong while setting up or reading a pod's network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the network namespace {}: {source}", path.display())]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot enter the network namespace: {0}")]
    EnterNetns(#[source] io::Error),
    /// A netlink request failed ([`Error::errno`]) or got no answer ([`Error::timed_out`]).
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A link that was just created or configured is not there.
    #[error("{0}")]
    Missing(String),
    /// No thread or runtime could be started, or the thread panicked.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The kernel's errno of a refused netlink request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { source, .. } => errno(source),
            _ => None,
        }
    }

    /// A netlink request got no answer in time.
    pub fn timed_out(&self) -> bool {
        matches!(self, Error::Netlink { source, .. } if source.kind() == io::ErrorKind::TimedOut)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn failed(what: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Netlink { what, source }
}

/// `Ok` for a request that succeeded or failed with one of `fine` (already gone).
fn tolerate(r: io::Result<()>, fine: &[i32], what: impl FnOnce() -> String) -> Result<()> {
    match r {
        Err(e) if !errno(&e).is_some_and(|n| fine.contains(&n)) => Err(failed(what())(e)),
        _ => Ok(()),
    }
}

/// The routes inside a pod with addresses `ips`: `(destination, gateway)`, all through
/// the pod's interface.
pub fn pod_routes(ips: &[IpAddr]) -> Vec<(IpNetwork, Option<IpAddr>)> {
    let mut out = Vec::new();
    if ips.iter().any(IpAddr::is_ipv4) {
        let gw = IpAddr::V4(GATEWAY_V4);
        out.push((host_net(gw), None));
        out.push((
            IpNetwork::new(Ipv4Addr::UNSPECIFIED.into(), 0).expect("valid"),
            Some(gw),
        ));
    }
    if ips.iter().any(IpAddr::is_ipv6) {
        out.push((
            IpNetwork::new(Ipv6Addr::UNSPECIFIED.into(), 0).expect("valid"),
            Some(IpAddr::V6(GATEWAY_V6)),
        ));
    }
    out
}

/// `dev <link> [via gateway]` as the reconciler's [`RouteTarget`].
fn target(link: &Link, gateway: Option<IpAddr>) -> RouteTarget {
    match gateway {
        None => RouteTarget::Device(link.name.clone()),
        Some(g) => RouteTarget::Gateways(vec![NextHop {
            gateway: g,
            iface: Some(link.name.clone()),
            onlink: false,
        }]),
    }
}

/// The message of `dst dev <link> [via gateway]`: [`routes::route_message`], the
/// reconciler's builder.
fn route_to(
    link: &Link,
    dst: IpNetwork,
    gateway: Option<IpAddr>,
    protocol: u8,
) -> netlink_packet_route::route::RouteMessage {
    let ifindex = HashMap::from([(link.name.clone(), link.index)]);
    routes::route_message(&dst, &target(link, gateway), protocol, &ifindex)
}

/// A netlink socket in the calling thread's network namespace.
pub struct Handle {
    nl: Netlink,
}

impl Handle {
    /// Opens the socket; needs a tokio runtime. Every request times out after `timeout`.
    pub fn open(timeout: Duration) -> Result<Handle> {
        let nl = Netlink::open(timeout).map_err(failed("cannot open a netlink socket".into()))?;
        Ok(Handle { nl })
    }

    /// The link named `name`, if any.
    pub async fn link(&self, name: &str) -> Result<Option<Link>> {
        match links::get_link(&self.nl, name).await {
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            r => r.map_err(failed(format!("looking up link {name}"))),
        }
    }

    /// Deletes a link; a link already gone is fine.
    pub async fn delete_link(&self, link: &Link) -> Result<()> {
        let r = self.nl.exec(links::delete_message(link.index), 0).await;
        tolerate(r, &[libc::ENODEV], || {
            format!("deleting link {}", link.name)
        })
    }

    /// Creates the veth pair: `host` here (MAC [`HOST_MAC`], MTU `mtu`), `peer` directly
    /// inside the namespace `ns`. Returns the host end.
    pub async fn create_veth(&self, host: &str, peer: &str, ns: &File, mtu: u32) -> Result<Link> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer)
            .mtu(mtu)
            .append_extra_attribute(LinkAttribute::NetNsFd(ns.as_raw_fd()))
            .build();
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host)
            .mtu(mtu)
            .address(HOST_MAC.0.to_vec())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        let what = format!("creating veth {host} (peer {peer} in the pod)");
        match self
            .nl
            .exec(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                return Err(failed(what)(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("an interface named {peer} already exists in the pod's network namespace (or {host} on the host)"),
                )))
            }
            Err(e) => return Err(failed(what)(e)),
        }
        self.link(host)
            .await?
            .ok_or_else(|| Error::Missing(format!("{host} vanished right after creation")))
    }

    pub async fn set_up(&self, link: &Link) -> Result<()> {
        let msg = LinkUnspec::new_with_index(link.index).up().build();
        self.nl
            .exec(RouteNetlinkMessage::SetLink(msg), 0)
            .await
            .map_err(failed(format!("setting {} up", link.name)))
    }

    /// Adds `addr` to a link (IPv6: without duplicate address detection); already there
    /// is fine.
    pub async fn add_address(&self, link: &Link, addr: IpNetwork) -> Result<()> {
        links::add_address(&self.nl, link.index, addr, addr.is_ipv6())
            .await
            .map_err(failed(format!("adding {addr} to {}", link.name)))
    }

    /// The addresses of a link, both families.
    pub async fn addresses(&self, link: &Link) -> Result<Vec<IpNetwork>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let got = links::dump_addresses(&self.nl, family, Some(link.index))
                .await
                .map_err(failed("listing addresses".into()))?;
            out.extend(got.into_iter().map(|(_, a)| a));
        }
        Ok(out)
    }

    /// The routes of the main table, of one family.
    pub async fn main_routes(&self, ipv6: bool) -> Result<Vec<KernelRoute>> {
        let family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        routes::dump(&self.nl, family, None, Some(MAIN_TABLE))
            .await
            .map_err(failed("listing routes".into()))
    }

    /// `dst dev <link> [via gateway] proto <protocol>` in the main table (IPv4 without a
    /// gateway: scope link), replacing any route with the same key.
    pub async fn replace_route(
        &self,
        link: &Link,
        dst: IpNetwork,
        gateway: Option<IpAddr>,
        protocol: u8,
    ) -> Result<()> {
        let msg = route_to(link, dst, gateway, protocol);
        let what = match gateway {
            Some(g) => format!("adding route {dst} via {g} dev {}", link.name),
            None => format!("adding route {dst} dev {}", link.name),
        };
        self.nl
            .exec(
                RouteNetlinkMessage::NewRoute(msg),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(failed(what))
    }

    /// Deletes the main-table routes to `dst` that leave through `link`; none is fine.
    pub async fn delete_routes(&self, link: &Link, dst: IpNetwork) -> Result<()> {
        for r in self.main_routes(dst.is_ipv6()).await? {
            if r.dst != dst || r.oif() != Some(link.index) {
                continue;
            }
            let msg = RouteNetlinkMessage::DelRoute(routes::delete_message(&r));
            let res = self.nl.exec(msg, 0).await;
            tolerate(res, &[libc::ESRCH, libc::ENOENT], || {
                format!("deleting route {dst}")
            })?;
        }
        Ok(())
    }

    /// Configures the pod end `ifname` (run it in the pod's namespace): up, the pod's
    /// addresses, [`pod_routes`]. Returns the link.
    pub async fn configure_pod_side(&self, ifname: &str, ips: &[IpAddr]) -> Result<Link> {
        let link = self.link(ifname).await?.ok_or_else(|| {
            Error::Missing(format!("{ifname} is missing in the pod after creation"))
        })?;
        self.set_up(&link).await?;
        for ip in ips {
            self.add_address(&link, host_net(*ip)).await?;
        }
        for (dst, gateway) in pod_routes(ips) {
            self.replace_route(&link, dst, gateway, POD_ROUTE_PROTOCOL)
                .await?;
        }
        Ok(link)
    }

    /// The pod's permanent neighbour entries on the host veth, as the reconciler writes
    /// them for a local endpoint: the first packet to the pod then needs no ARP (which
    /// can miss on a veth just brought up and cost the kernel's 1 s retry).
    pub async fn add_pod_neighbours(
        &self,
        host: &Link,
        ips: &[IpAddr],
        mac: crate::calc::Mac,
    ) -> Result<()> {
        let msgs = ips
            .iter()
            .map(|ip| {
                (
                    netlink_packet_route::RouteNetlinkMessage::NewNeighbour(
                        crate::neigh::neigh_msg(host.index, *ip, Some(mac), ROUTE_PROTOCOL),
                    ),
                    crate::nl::NLM_F_CREATE | crate::nl::NLM_F_REPLACE,
                )
            })
            .collect();
        for (ip, r) in ips.iter().zip(self.nl.batch(msgs).await) {
            r.map_err(failed(format!("neighbour {ip} on {}", host.name)))?;
        }
        Ok(())
    }

    /// The host routes to a pod: `<ip>/32|/128 dev <host> scope link proto 80`, the route
    /// the reconciler wants for a local endpoint.
    pub async fn add_host_routes(&self, host: &Link, ips: &[IpAddr]) -> Result<()> {
        for ip in ips {
            self.replace_route(host, host_net(*ip), None, ROUTE_PROTOCOL)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants() {
        assert_eq!(HOST_MAC.to_string(), "ee:ee:ee:ee:ee:ee");
        assert_eq!(GATEWAY_V6.to_string(), "fe80::ecee:eeff:feee:eeee");
    }

    #[test]
    fn pod_routes_per_family() {
        let v4: IpAddr = "10.65.0.5".parse().unwrap();
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let show = |ips: &[IpAddr]| {
            pod_routes(ips)
                .iter()
                .map(|(d, g)| format!("{d} {g:?}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            show(&[v4]),
            ["169.254.1.1/32 None", "0.0.0.0/0 Some(169.254.1.1)"]
        );
        assert_eq!(show(&[v6]), ["::/0 Some(fe80::ecee:eeff:feee:eeee)"]);
        assert_eq!(show(&[v4, v6]).len(), 3);
    }

    #[test]
    fn host_route_is_the_reconcilers_endpoint_route() {
        // what add_host_routes sends, parsed back, is in place for the route reconciler
        let link = Link {
            index: 7,
            name: "cali1".into(),
            mtu: 1500,
            up: true,
            kind: Some("veth".into()),
            mac: Some(HOST_MAC),
            vxlan: None,
        };
        let ifindex = HashMap::from([("cali1".to_string(), 7)]);
        for ip in ["10.65.0.5", "fd00::5"] {
            let dst = host_net(ip.parse().unwrap());
            let r = routes::parse_route(&route_to(&link, dst, None, ROUTE_PROTOCOL)).unwrap();
            let want = RouteTarget::Device("cali1".into());
            let p = routes::plan(&[(dst, want)].into(), &[r], &ifindex, false);
            assert_eq!(p.in_place, 1, "{ip}: {p:?}");
            assert!(p.add.is_empty() && p.replace.is_empty() && p.delete.is_empty());
        }
        // the pod's routes: scope link to the gateway, then the default route through it
        let pod = Link {
            name: "eth0".into(),
            index: 2,
            ..link
        };
        let ifindex = HashMap::from([("eth0".to_string(), 2)]);
        for (dst, gw) in pod_routes(&["10.65.0.5".parse().unwrap(), "fd00::5".parse().unwrap()]) {
            let r = routes::parse_route(&route_to(&pod, dst, gw, POD_ROUTE_PROTOCOL)).unwrap();
            assert_eq!(
                (r.dst, r.gateway(), r.oif(), r.protocol),
                (dst, gw, Some(2), 3)
            );
            let want = target(&pod, gw);
            assert!(routes::matches(&want, &r, &ifindex), "{dst}: {r:?}");
        }
    }
}
