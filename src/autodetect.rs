//! Node BGP address autodetection, with calico-node's rules and syntax.
//!
//! calico-node finds the node's BGP address (stored in CIDR form, `10.0.1.5/24`, in the
//! node's `projectcalico.org/IPv4Address` / `IPv6Address`) from the `IP` / `IP6` and
//! `IP_AUTODETECTION_METHOD` / `IP6_AUTODETECTION_METHOD` environment variables. This
//! module does the same in Brindle's own code. References are to Calico's
//! `node/pkg/lifecycle/startup/startup.go` (`configureIPsAndSubnets`, `parseIPEnvironment`,
//! `validateIP`) and `node/pkg/lifecycle/startup/autodetection/*.go`.
//!
//! # When to detect: [`autodetect`]
//!
//! `IP` (IPv4), as `configureIPsAndSubnets`; an unset variable is the same as an empty one
//! (Go's `os.Getenv`) and the values are compared exactly (case-sensitive, untrimmed):
//!
//! 1. `IP=autodetect`, **or `IP` unset and the node has no IPv4 address yet**: detect with
//!    `IP_AUTODETECTION_METHOD` (unset = `first-found`). On success the detected address
//!    replaces any existing one. If detection finds nothing and the node already has an
//!    address, that address is kept (with a warning); if it has none, it is an error
//!    ("failed to autodetect an IPv4 address"). An unrecognised method is always an
//!    error (Calico terminates); a recognised method with a bad argument (an invalid
//!    regex or CIDR) counts as "detection found nothing" (Calico logs and returns nil).
//! 2. `IP=none`: no detection; the existing address, if any, is kept, otherwise the node
//!    has no IPv4 address.
//! 3. `IP` unset and the node already has an address: kept as it is (no re-detection).
//! 4. `IP=<literal>`: an address or CIDR. A bare IPv4 address is first looked up on the
//!    host's interfaces (`GetLocalCIDR`): if an interface holds it, that interface's
//!    prefix length is used (`10.0.1.5` on a /24 gives `10.0.1.5/24`); if not, it becomes
//!    a /32. A CIDR is taken as given. A value that is not an IPv4 address/CIDR is an
//!    error (`parseIPEnvironment` terminates).
//!
//! `IP6` (IPv6) differs in two ways: IPv6 is **only detected when `IP6=autodetect`** (an
//! unset `IP6` keeps whatever the node has, possibly nothing), and a bare IPv6 literal is
//! **not** looked up on the interfaces: `IP6=2001:db8::5` becomes `2001:db8::5/128`
//! (startup.go calls `parseIPEnvironment` directly for IPv6; give a CIDR to get a prefix).
//!
//! Kept and literal addresses are checked against the host's addresses (`validateIP`);
//! an address not found only produces a warning.
//!
//! # How to detect: [`Method`] and [`select`]
//!
//! * `first-found` (or empty): every interface except those whose name matches
//!   [`DEFAULT_INTERFACES_TO_EXCLUDE`]; the first global-unicast address of the family.
//! * `interface=RE[,RE...]`: only interfaces whose name matches one of the regexes; **no**
//!   default exclusions (so `interface=lo` can pick an address on `lo`).
//! * `skip-interface=RE[,RE...]`: like `first-found` with the regexes added to the
//!   default exclusions.
//! * `cidr=CIDR[,CIDR...]`: the first global-unicast address inside one of the CIDRs, on
//!   any interface (no default exclusions).
//! * `can-reach=DEST` (an IP address or a host name): the source address the kernel picks
//!   to reach `DEST:80` over UDP ([`reach_source`]: a UDP `connect`, no packet sent), then
//!   the interface address equal to it, for its prefix length.
//! * `kubernetes-internal-ip` (Calico accepts any string starting with it): the Kubernetes
//!   Node's first `InternalIP` of the family, with the prefix length of the host interface
//!   that holds it; if no interface holds it, detection fails.
//!
//! Regex lists are split on commas with surrounding whitespace dropped (Calico's
//! `\s*,\s*`); a regex matches anywhere in the name unless anchored (`eth0` also matches
//! `veth0abc`; write `^eth0$`). Regex syntax is RE2 in Calico and Rust's `regex` here
//! (the same for the usual patterns).
//!
//! "Global unicast" is Go's `IP.IsGlobalUnicast`: not unspecified, loopback, multicast,
//! link-local (169.254/16, fe80::/10) or 255.255.255.255; private (RFC 1918) and ULA
//! addresses qualify. Interfaces that are down are **not** skipped, like Calico.
//!
//! Order: Calico walks Go's `net.Interfaces()` (ascending ifindex) **backwards**, so the
//! interface with the highest ifindex is considered first; within an interface, addresses
//! are taken in the kernel's order (the primary IPv4 address first). [`select`] does the
//! same using [`Interface::index`].
//!
//! [`host_interfaces`] lists links and addresses over rtnetlink as Calico does (addresses
//! grouped by ifindex, so an IPv4 alias labelled `eth0:1` belongs to `eth0`; a
//! point-to-point address with a distinct peer is reported as local/32 or /128).

use ipnetwork::IpNetwork;
use regex::Regex;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;
use tracing::{info, warn};

/// Calico's `DEFAULT_INTERFACES_TO_EXCLUDE` (`autodetection_linux.go`) followed by
/// Brindle's own devices. Used by `first-found` and `skip-interface=`.
pub const DEFAULT_INTERFACES_TO_EXCLUDE: &[&str] = &[
    // Calico's list, in Calico's order.
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^podman.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo",
    "^br-.*",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    r"^vxlan\.calico.*",
    r"^vxlan-v6\.calico.*",
    r"^wireguard\.cali.*",
    r"^wg-v6\.cali.*",
    "^nodelocaldns.*",
    // Brindle's devices (`tunl0` is already covered by `^tunl.*`; listed explicitly so
    // it stays excluded whatever happens to the Calico part).
    r"^vxlan\.brindle.*",
    "^tunl0$",
];

/// The IP family being detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// 4 or 6.
    pub fn version(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn matches(self, ip: IpAddr) -> bool {
        Family::of(ip) == self
    }

    fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IPv{}", self.version())
    }
}

/// A host interface and its addresses, each with the interface's real prefix length
/// (`10.0.1.5/24`: the address is the host's, not the network's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The kernel's ifindex; the highest is considered first (as Calico).
    pub index: u32,
    pub name: String,
    pub addrs: Vec<IpNetwork>,
    /// `IFF_UP`. Informational only: Calico does not skip interfaces that are down.
    pub up: bool,
}

/// An autodetection method (`IP_AUTODETECTION_METHOD` / `IP6_AUTODETECTION_METHOD`).
#[derive(Debug, Clone)]
pub enum Method {
    /// `first-found` (also the empty string).
    FirstFound,
    /// `interface=RE[,RE...]`.
    Interface(Vec<Regex>),
    /// `skip-interface=RE[,RE...]`.
    SkipInterface(Vec<Regex>),
    /// `cidr=CIDR[,CIDR...]`.
    Cidr(Vec<IpNetwork>),
    /// `can-reach=DEST`, an IP address or a host name.
    CanReach(String),
    /// `kubernetes-internal-ip`.
    KubernetesInternalIp,
}

const FIRST_FOUND: &str = "first-found";
const CAN_REACH: &str = "can-reach=";
const INTERFACE: &str = "interface=";
const SKIP_INTERFACE: &str = "skip-interface=";
const CIDR: &str = "cidr=";
const K8S_INTERNAL_IP: &str = "kubernetes-internal-ip";

/// Why a method string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ParseError {
    /// Not a method at all: calico-node terminates.
    Unknown(String),
    /// A known method with a bad argument: calico-node treats it as "nothing detected".
    BadArgument(String),
}

impl ParseError {
    fn message(self) -> String {
        match self {
            ParseError::Unknown(m) | ParseError::BadArgument(m) => m,
        }
    }
}

impl Method {
    /// Parses Calico's syntax. Recognised exactly as calico-node does (by prefix, in
    /// Calico's order; no trimming): `""`/`first-found`, `interface=`, `cidr=`,
    /// `can-reach=`, `skip-interface=`, and anything starting with
    /// `kubernetes-internal-ip`.
    pub fn parse(s: &str) -> Result<Method, String> {
        Method::parse_inner(s).map_err(ParseError::message)
    }

    fn parse_inner(s: &str) -> Result<Method, ParseError> {
        if s.is_empty() || s == FIRST_FOUND {
            Ok(Method::FirstFound)
        } else if let Some(rest) = s.strip_prefix(INTERFACE) {
            Ok(Method::Interface(compile_regexes(s, rest)?))
        } else if let Some(rest) = s.strip_prefix(CIDR) {
            let cidrs = split_list(rest)
                .into_iter()
                .map(|c| {
                    parse_cidr_strict(c).ok_or_else(|| {
                        ParseError::BadArgument(format!(
                            "invalid CIDR {c:?} in IP autodetection method {s:?}"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Method::Cidr(cidrs))
        } else if let Some(rest) = s.strip_prefix(CAN_REACH) {
            if rest.is_empty() {
                return Err(ParseError::BadArgument(format!(
                    "IP autodetection method {s:?} has no destination"
                )));
            }
            Ok(Method::CanReach(rest.to_string()))
        } else if let Some(rest) = s.strip_prefix(SKIP_INTERFACE) {
            Ok(Method::SkipInterface(compile_regexes(s, rest)?))
        } else if s.starts_with(K8S_INTERNAL_IP) {
            Ok(Method::KubernetesInternalIp)
        } else {
            Err(ParseError::Unknown(format!(
                "invalid IP autodetection method {s:?} (expected first-found, interface=REGEX, \
                 skip-interface=REGEX, cidr=CIDR, can-reach=DEST or kubernetes-internal-ip)"
            )))
        }
    }
}

impl fmt::Display for Method {
    /// Calico's syntax; parses back to the same method.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn join<T: fmt::Display>(v: &[T]) -> String {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
        match self {
            Method::FirstFound => f.write_str(FIRST_FOUND),
            Method::Interface(r) => write!(f, "{INTERFACE}{}", join(r)),
            Method::SkipInterface(r) => write!(f, "{SKIP_INTERFACE}{}", join(r)),
            Method::Cidr(c) => write!(f, "{CIDR}{}", join(c)),
            Method::CanReach(d) => write!(f, "{CAN_REACH}{d}"),
            Method::KubernetesInternalIp => f.write_str(K8S_INTERNAL_IP),
        }
    }
}

/// Go's `\s` (RE2: `[\t\n\f\r ]`).
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// Splits like Go's `regexp.MustCompile(`\s*,\s*`).Split(s, -1)`: whitespace next to a
/// comma is dropped, leading/trailing whitespace of the whole string is kept.
fn split_list(s: &str) -> Vec<&str> {
    let parts: Vec<&str> = s.split(',').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut p = *p;
            if i > 0 {
                p = p.trim_start_matches(is_go_space);
            }
            if i < last {
                p = p.trim_end_matches(is_go_space);
            }
            p
        })
        .collect()
}

fn compile_regexes(method: &str, list: &str) -> Result<Vec<Regex>, ParseError> {
    split_list(list)
        .into_iter()
        .map(|r| {
            Regex::new(r).map_err(|e| {
                ParseError::BadArgument(format!(
                    "invalid interface regex {r:?} in IP autodetection method {method:?}: {e}"
                ))
            })
        })
        .collect()
}

/// `ADDR/PREFIX` with a decimal prefix, as Go's `net.ParseCIDR` (no bare address, no
/// netmask form). The address keeps its host bits.
fn parse_cidr_strict(s: &str) -> Option<IpNetwork> {
    let (addr, prefix) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    IpNetwork::new(addr, prefix).ok()
}

/// An address or a CIDR (Calico's `ParseCIDROrIP`): a bare address gets /32 or /128.
fn parse_cidr_or_ip(s: &str) -> Option<IpNetwork> {
    if s.contains('/') {
        parse_cidr_strict(s)
    } else {
        s.parse::<IpAddr>().ok().map(IpNetwork::from)
    }
}

/// Go's `net.IP.IsGlobalUnicast`.
pub fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_global_unicast(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_global_unicast(v4);
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn v4_global_unicast(v4: Ipv4Addr) -> bool {
    !(v4.is_broadcast()
        || v4.is_unspecified()
        || v4.is_loopback()
        || v4.is_multicast()
        || v4.is_link_local())
}

/// The interfaces in the order Calico considers them: highest ifindex first (Calico walks
/// `net.Interfaces()`, sorted by ifindex, backwards).
fn calico_order(interfaces: &[Interface]) -> Vec<&Interface> {
    let mut v: Vec<&Interface> = interfaces.iter().collect();
    v.sort_by_key(|i| i.index);
    v.reverse();
    v
}

/// Calico's `GetLocalCIDR` / the interface match of `ReachDestination`: the address `ip`
/// with the prefix length of the host interface that holds it (all interfaces, no
/// exclusions). `None` if no interface holds it.
pub fn local_cidr(ip: IpAddr, interfaces: &[Interface]) -> Option<IpNetwork> {
    calico_order(interfaces)
        .into_iter()
        .flat_map(|i| i.addrs.iter())
        .find(|a| a.ip() == ip)
        .copied()
}

/// "eth0#2[10.0.1.5/24] lo#1[127.0.0.1/8](excluded)": for error messages.
fn describe(
    family: Family,
    interfaces: &[Interface],
    excluded: impl Fn(&Interface) -> bool,
) -> String {
    if interfaces.is_empty() {
        return "none".to_string();
    }
    calico_order(interfaces)
        .into_iter()
        .map(|i| {
            let addrs: Vec<String> = i
                .addrs
                .iter()
                .filter(|a| family.matches(a.ip()))
                .map(|a| a.to_string())
                .collect();
            format!(
                "{}#{}[{}]{}{}",
                i.name,
                i.index,
                addrs.join(" "),
                if i.up { "" } else { "(down)" },
                if excluded(i) { "(excluded)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Calico's `FilteredEnumeration`: the first global-unicast address of `family` (inside
/// one of `cidrs`, if any) on the interfaces that match `include` (all, if empty) and
/// none of `exclude`.
fn filtered(
    method: &Method,
    family: Family,
    interfaces: &[Interface],
    include: &[Regex],
    exclude: &[Regex],
    cidrs: &[IpNetwork],
) -> Result<IpNetwork, String> {
    let wanted = |i: &Interface| {
        (include.is_empty() || include.iter().any(|r| r.is_match(&i.name)))
            && !exclude.iter().any(|r| r.is_match(&i.name))
    };
    let candidates: Vec<&Interface> = calico_order(interfaces)
        .into_iter()
        .filter(|i| wanted(i))
        .collect();
    let seen = || describe(family, interfaces, |i| !wanted(i));
    if candidates.is_empty() {
        return Err(format!(
            "{method}: no valid host interfaces found (interfaces seen: {})",
            seen()
        ));
    }
    for iface in candidates {
        for a in &iface.addrs {
            let ip = a.ip();
            if family.matches(ip)
                && is_global_unicast(ip)
                && (cidrs.is_empty() || cidrs.iter().any(|c| c.contains(ip)))
            {
                info!(method = %method, interface = %iface.name, address = %a, "autodetected {family} address");
                return Ok(*a);
            }
        }
    }
    Err(format!(
        "{method}: no valid {family} addresses found on the host interfaces (interfaces seen: {})",
        seen()
    ))
}

/// Selects the node's address of `family` with `method`. `interfaces` is the host's
/// (see [`host_interfaces`]); `k8s_internal_ips` are the Kubernetes Node's `InternalIP`
/// addresses in `status.addresses` order (only `kubernetes-internal-ip` uses them).
/// `can-reach=` does I/O ([`reach_source`]); every other method is pure.
pub fn select(
    method: &Method,
    family: Family,
    interfaces: &[Interface],
    k8s_internal_ips: &[IpAddr],
) -> Result<IpNetwork, String> {
    select_with(method, family, interfaces, k8s_internal_ips, reach_source)
}

/// [`select`] with the `can-reach=` probe supplied by the caller (`reach(dest, family)`
/// returns the local source address the kernel would use to reach `dest`).
pub fn select_with(
    method: &Method,
    family: Family,
    interfaces: &[Interface],
    k8s_internal_ips: &[IpAddr],
    reach: impl FnOnce(&str, Family) -> Result<IpAddr, String>,
) -> Result<IpNetwork, String> {
    match method {
        Method::FirstFound => filtered(method, family, interfaces, &[], &default_excludes(), &[]),
        Method::Interface(include) => filtered(method, family, interfaces, include, &[], &[]),
        Method::SkipInterface(skip) => {
            let mut exclude = default_excludes();
            exclude.extend(skip.iter().cloned());
            filtered(method, family, interfaces, &[], &exclude, &[])
        }
        Method::Cidr(cidrs) => filtered(method, family, interfaces, &[], &[], cidrs),
        Method::CanReach(dest) => {
            let src = reach(dest, family).map_err(|e| format!("{method}: {e}"))?;
            match local_cidr(src, interfaces) {
                Some(c) => {
                    info!(method = %method, address = %c, "autodetected {family} address by connecting to {dest}");
                    Ok(c)
                }
                None => Err(format!(
                    "{method}: the {family} source address to reach {dest}, {src}, does not \
                     match any address on the host interfaces (interfaces seen: {})",
                    describe(family, interfaces, |_| false)
                )),
            }
        }
        Method::KubernetesInternalIp => {
            // Calico uses the first InternalIP of the family only.
            let Some(ip) = k8s_internal_ips
                .iter()
                .copied()
                .find(|ip| family.matches(*ip))
            else {
                return Err(format!(
                    "{method}: the Kubernetes Node has no {family} InternalIP (InternalIPs: {:?})",
                    k8s_internal_ips
                ));
            };
            match local_cidr(ip, interfaces) {
                Some(c) => {
                    info!(method = %method, address = %c, "autodetected {family} address from the Node's InternalIP");
                    Ok(c)
                }
                None => Err(format!(
                    "{method}: the Node's InternalIP {ip} is not assigned to any host interface, \
                     so its prefix length is unknown (interfaces seen: {})",
                    describe(family, interfaces, |_| false)
                )),
            }
        }
    }
}

/// [`DEFAULT_INTERFACES_TO_EXCLUDE`] compiled.
pub fn default_excludes() -> Vec<Regex> {
    DEFAULT_INTERFACES_TO_EXCLUDE
        .iter()
        .map(|r| Regex::new(r).expect("default exclusion regexes are valid"))
        .collect()
}

/// The local address the kernel would use as source to reach `dest` (an IP address or a
/// host name, resolved with the system resolver) on UDP port 80, as Calico's
/// `ReachDestination`: a UDP socket is `connect`ed, which only selects a route and a
/// source address; no packet is sent.
pub fn reach_source(dest: &str, family: Family) -> Result<IpAddr, String> {
    let addrs: Vec<SocketAddr> = (dest, 80u16)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {dest}: {e}"))?
        .filter(|a| family.matches(a.ip()))
        .collect();
    if addrs.is_empty() {
        return Err(format!("{dest} has no {family} address"));
    }
    let mut last = String::new();
    for a in addrs {
        let attempt = UdpSocket::bind(SocketAddr::new(family.unspecified(), 0))
            .and_then(|s| s.connect(a).and_then(|()| s.local_addr()));
        match attempt {
            Ok(local) => return Ok(local.ip()),
            Err(e) => last = format!("cannot connect a UDP socket to {a}: {e}"),
        }
    }
    Err(last)
}

/// Warns when `net`'s address is on none of the host's interfaces (Calico's `validateIP`).
fn validate(net: &IpNetwork, interfaces: &[Interface]) {
    if local_cidr(net.ip(), interfaces).is_none() {
        warn!(address = %net, "unable to confirm that the node address is assigned to this host");
    }
}

/// calico-node's decision for one family (see the module doc): what the node's BGP
/// address of `family` should be. `ip_env` is `IP` / `IP6`, `method_env` is
/// `IP_AUTODETECTION_METHOD` / `IP6_AUTODETECTION_METHOD` (unset and empty are the same),
/// `existing` the address already on the node (`projectcalico.org/IPv4Address` /
/// `IPv6Address`). `Ok(None)`: the node has no address of this family.
pub fn autodetect(
    ip_env: Option<&str>,
    method_env: Option<&str>,
    family: Family,
    existing: Option<IpNetwork>,
    interfaces: &[Interface],
    k8s_internal_ips: &[IpAddr],
) -> Result<Option<IpNetwork>, String> {
    autodetect_with(
        ip_env,
        method_env,
        family,
        existing,
        interfaces,
        k8s_internal_ips,
        reach_source,
    )
}

/// [`autodetect`] with the `can-reach=` probe supplied by the caller (see [`select_with`]).
pub fn autodetect_with(
    ip_env: Option<&str>,
    method_env: Option<&str>,
    family: Family,
    existing: Option<IpNetwork>,
    interfaces: &[Interface],
    k8s_internal_ips: &[IpAddr],
    reach: impl FnOnce(&str, Family) -> Result<IpAddr, String>,
) -> Result<Option<IpNetwork>, String> {
    let ip_env = ip_env.unwrap_or("");
    let var = match family {
        Family::V4 => "IP",
        Family::V6 => "IP6",
    };
    // IPv4 is detected when asked or when there is nothing yet; IPv6 only when asked.
    let detect =
        ip_env == "autodetect" || (family == Family::V4 && ip_env.is_empty() && existing.is_none());
    if detect {
        let detected = match Method::parse_inner(method_env.unwrap_or("")) {
            Ok(m) => select_with(&m, family, interfaces, k8s_internal_ips, reach),
            Err(ParseError::Unknown(e)) => return Err(e),
            Err(ParseError::BadArgument(e)) => Err(e),
        };
        return match (detected, existing) {
            (Ok(net), _) => Ok(Some(net)),
            (Err(e), Some(old)) => {
                warn!(error = %e, address = %old, "autodetection of the {family} address failed, keeping the existing value");
                validate(&old, interfaces);
                Ok(Some(old))
            }
            (Err(e), None) => Err(format!("failed to autodetect an {family} address: {e}")),
        };
    }
    if ip_env == "none" || ip_env.is_empty() {
        // `none`, or unset with an existing address (and any unset IP6): keep it.
        if let Some(old) = existing {
            validate(&old, interfaces);
        }
        return Ok(existing);
    }
    // A literal address or CIDR. For IPv4 a bare address takes the prefix length of the
    // interface that holds it (GetLocalCIDR); IPv6 literals are parsed as given.
    let value = match family {
        Family::V4 if !ip_env.contains('/') => match ip_env.parse::<Ipv4Addr>() {
            Ok(v4) => local_cidr(IpAddr::V4(v4), interfaces).map(|c| c.to_string()),
            Err(_) => None,
        },
        _ => None,
    }
    .unwrap_or_else(|| ip_env.to_string());
    let net = parse_cidr_or_ip(&value)
        .filter(|n| family.matches(n.ip()) && n.prefix() <= family.bits())
        .ok_or_else(|| {
            format!("environment does not contain a valid {family} address: {var}={ip_env}")
        })?;
    info!(address = %net, "using the {family} address from the environment ({var}={ip_env})");
    validate(&net, interfaces);
    Ok(Some(net))
}

/// The host's interfaces and addresses, over rtnetlink, in the calling thread's network
/// namespace: links (ifindex, name, `IFF_UP`) and every IPv4 and IPv6 address grouped by
/// ifindex, in ascending ifindex order. The netlink work runs on a short-lived thread with
/// its own runtime, so this may be called from inside or outside a tokio runtime (from
/// async code, prefer `spawn_blocking`); the thread inherits the caller's namespace.
pub fn host_interfaces() -> std::io::Result<Vec<Interface>> {
    std::thread::Builder::new()
        .name("brindle-ifaces".into())
        .spawn(dump_interfaces)?
        .join()
        .map_err(|_| std::io::Error::other("interface listing thread panicked"))?
}

const NETLINK_TIMEOUT: Duration = Duration::from_secs(10);

fn dump_interfaces() -> std::io::Result<Vec<Interface>> {
    use futures::TryStreamExt;
    use netlink_packet_route::address::AddressAttribute;
    use netlink_packet_route::link::{LinkAttribute, LinkFlags};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let nl = |what: &str, e: rtnetlink::Error| std::io::Error::other(format!("{what}: {e}"));
        let links: Vec<_> = tokio::time::timeout(
            NETLINK_TIMEOUT,
            handle.link().get().execute().try_collect::<Vec<_>>(),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "link dump timed out"))?
        .map_err(|e| nl("link dump", e))?;
        let addrs: Vec<_> = tokio::time::timeout(
            NETLINK_TIMEOUT,
            handle.address().get().execute().try_collect::<Vec<_>>(),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "address dump timed out"))?
        .map_err(|e| nl("address dump", e))?;

        let mut out: Vec<Interface> = links
            .iter()
            .map(|l| Interface {
                index: l.header.index,
                name: l
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
                addrs: Vec::new(),
                up: l.header.flags.contains(LinkFlags::Up),
            })
            .collect();
        out.sort_by_key(|i| i.index);

        for m in &addrs {
            let mut local = None;
            let mut address = None;
            for a in &m.attributes {
                match a {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    _ => {}
                }
            }
            // As vishvananda/netlink (Calico): IFA_LOCAL is the local address; for IPv4
            // IFA_ADDRESS equals it unless it is the peer of a point-to-point address,
            // in which case the local address is reported as a host address.
            let net = match (local, address) {
                (Some(l), Some(a)) if l.is_ipv4() && l == a => {
                    IpNetwork::new(a, m.header.prefix_len).ok()
                }
                (Some(l), _) => IpNetwork::new(l, if l.is_ipv4() { 32 } else { 128 }).ok(),
                (None, Some(a)) => IpNetwork::new(a, m.header.prefix_len).ok(),
                (None, None) => None,
            };
            if let (Some(net), Ok(pos)) =
                (net, out.binary_search_by_key(&m.header.index, |i| i.index))
            {
                out[pos].addrs.push(net);
            }
        }
        Ok(out)
    })
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

    fn iface(index: u32, name: &str, addrs: &[&str]) -> Interface {
        Interface {
            index,
            name: name.to_string(),
            addrs: addrs.iter().map(|a| net(a)).collect(),
            up: true,
        }
    }

    /// A typical node: lo, the uplink, docker, a Calico/Brindle tunnel, a pod veth.
    fn node() -> Vec<Interface> {
        vec![
            iface(1, "lo", &["127.0.0.1/8", "::1/128"]),
            iface(
                2,
                "eth0",
                &["10.0.1.5/24", "2001:db8:1::5/64", "fe80::1/64"],
            ),
            iface(3, "docker0", &["172.17.0.1/16"]),
            iface(4, "tunl0", &["192.168.10.1/32"]),
            iface(5, "vxlan.brindle", &["192.168.10.2/32"]),
            iface(6, "cali1234567890", &["fe80::ecee:eeff:feee:eeee/64"]),
        ]
    }

    fn sel(method: &str, family: Family, ifs: &[Interface]) -> Result<IpNetwork, String> {
        let m = Method::parse(method).unwrap();
        select_with(&m, family, ifs, &[], |_, _| panic!("no can-reach here"))
    }

    #[test]
    fn autodetect_parse_methods() {
        for (s, canonical) in [
            ("", "first-found"),
            ("first-found", "first-found"),
            ("interface=eth0", "interface=eth0"),
            (
                "interface=eth.*, ens.* ,\tbond0",
                "interface=eth.*,ens.*,bond0",
            ),
            (
                "skip-interface=enp0s3,  wlan.*",
                "skip-interface=enp0s3,wlan.*",
            ),
            ("cidr=10.0.1.0/24", "cidr=10.0.1.0/24"),
            ("cidr=10.0.1.0/24 , fd00::/8", "cidr=10.0.1.0/24,fd00::/8"),
            ("can-reach=8.8.8.8", "can-reach=8.8.8.8"),
            ("can-reach=www.google.com", "can-reach=www.google.com"),
            (
                "can-reach=2001:4860:4860::8888",
                "can-reach=2001:4860:4860::8888",
            ),
            ("kubernetes-internal-ip", "kubernetes-internal-ip"),
            // Calico matches this one by prefix.
            ("kubernetes-internal-ipv4", "kubernetes-internal-ip"),
        ] {
            let m = Method::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(m.to_string(), canonical, "{s}");
            assert_eq!(Method::parse(canonical).unwrap().to_string(), canonical);
        }
        assert!(
            matches!(Method::parse("interface=a,b").unwrap(), Method::Interface(v) if v.len() == 2)
        );
        assert!(
            matches!(Method::parse("cidr=10.0.0.0/8").unwrap(), Method::Cidr(v) if v == vec![net("10.0.0.0/8")])
        );
    }

    #[test]
    fn autodetect_parse_errors() {
        for s in [
            "first-found ",
            "First-Found",
            "eth0",
            "interface",
            "can-reach",
            "skip-interface",
            "cidr",
            "bogus=1",
        ] {
            let e = Method::parse_inner(s).unwrap_err();
            assert!(matches!(e, ParseError::Unknown(_)), "{s}: {e:?}");
            assert!(e.message().contains("invalid IP autodetection method"));
        }
        for s in [
            "interface=eth(",
            "skip-interface=ok,[bad",
            "cidr=10.0.0.1",
            "cidr=10.0.0.0/33",
            "cidr=10.0.0.0/255.0.0.0",
            "cidr=10.0.0.0/+8",
            "cidr=",
            "cidr=10.0.0.0/8,,",
            "can-reach=",
        ] {
            let e = Method::parse_inner(s).unwrap_err();
            assert!(matches!(e, ParseError::BadArgument(_)), "{s}: {e:?}");
        }
        assert!(Method::parse("cidr=nonsense")
            .unwrap_err()
            .contains("\"nonsense\""));
    }

    #[test]
    fn autodetect_split_like_go() {
        assert_eq!(split_list("a"), vec!["a"]);
        assert_eq!(split_list(""), vec![""]);
        assert_eq!(split_list("a , b"), vec!["a", "b"]);
        assert_eq!(split_list("a  , ,b"), vec!["a", "", "b"]);
        // Whitespace not next to a comma is kept, as Go's Split.
        assert_eq!(split_list(" a,b "), vec![" a", "b "]);
    }

    #[test]
    fn autodetect_first_found_table() {
        let n = node();
        for (family, want) in [
            (Family::V4, "10.0.1.5/24"),
            (Family::V6, "2001:db8:1::5/64"),
        ] {
            assert_eq!(sel("first-found", family, &n).unwrap(), net(want));
            assert_eq!(sel("", family, &n).unwrap(), net(want));
        }
    }

    #[test]
    fn autodetect_prefix_length_is_the_interface_one() {
        for (addr, want) in [
            ("10.0.1.5/24", "10.0.1.5/24"),
            ("10.0.1.5/16", "10.0.1.5/16"),
            ("10.0.1.5/32", "10.0.1.5/32"),
            ("10.0.1.5/31", "10.0.1.5/31"),
        ] {
            let n = vec![iface(2, "ens3", &[addr])];
            let got = sel("first-found", Family::V4, &n).unwrap();
            assert_eq!(got, net(want));
            assert_eq!(got.to_string(), want, "host bits and prefix kept");
        }
    }

    #[test]
    fn autodetect_first_found_highest_ifindex_first() {
        // Calico walks net.Interfaces() backwards: eth1 (index 3) wins over eth0 (2),
        // whatever the slice order.
        let a = vec![
            iface(2, "eth0", &["10.0.1.5/24"]),
            iface(3, "eth1", &["10.0.2.5/24"]),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(
            sel("first-found", Family::V4, &a).unwrap(),
            net("10.0.2.5/24")
        );
        assert_eq!(
            sel("first-found", Family::V4, &b).unwrap(),
            net("10.0.2.5/24")
        );
        // Within an interface, the kernel's (primary first) order.
        let c = vec![iface(2, "eth0", &["10.0.1.5/24", "10.0.1.100/32"])];
        assert_eq!(
            sel("first-found", Family::V4, &c).unwrap(),
            net("10.0.1.5/24")
        );
    }

    #[test]
    fn autodetect_skips_non_global_unicast() {
        let n = vec![iface(
            2,
            "eth0",
            &[
                "169.254.3.4/16",
                "127.0.0.2/8",
                "0.0.0.0/0",
                "224.0.0.1/4",
                "255.255.255.255/32",
                "fe80::1/64",
                "::1/128",
                "ff02::1/16",
                "::/0",
                "10.9.9.9/24",
                "fd00::9/64",
            ],
        )];
        assert_eq!(
            sel("first-found", Family::V4, &n).unwrap(),
            net("10.9.9.9/24")
        );
        // ULA is global unicast for Go.
        assert_eq!(
            sel("first-found", Family::V6, &n).unwrap(),
            net("fd00::9/64")
        );
        // IPv6 with only link-local: nothing.
        let ll = vec![iface(2, "eth0", &["10.0.1.5/24", "fe80::1/64"])];
        let e = sel("first-found", Family::V6, &ll).unwrap_err();
        assert!(e.contains("no valid IPv6 addresses"), "{e}");
        assert!(e.contains("eth0#2[fe80::1/64]"), "{e}");
        assert!(is_global_unicast(ip("192.168.1.1")));
        assert!(is_global_unicast(ip("100.64.0.1")));
        assert!(!is_global_unicast(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn autodetect_lo_is_skipped_by_first_found() {
        // A routable address on lo (a common BGP/anycast setup) is not picked by
        // first-found (^lo is excluded) but is by interface=lo.
        let n = vec![
            iface(1, "lo", &["127.0.0.1/8", "10.255.0.1/32"]),
            iface(2, "eth0", &["10.0.1.5/24"]),
        ];
        assert_eq!(
            sel("first-found", Family::V4, &n).unwrap(),
            net("10.0.1.5/24")
        );
        assert_eq!(
            sel("interface=lo", Family::V4, &n).unwrap(),
            net("10.255.0.1/32")
        );
        let only_lo = vec![iface(1, "lo", &["127.0.0.1/8", "10.255.0.1/32"])];
        let e = sel("first-found", Family::V4, &only_lo).unwrap_err();
        assert!(
            e.starts_with("first-found: no valid host interfaces found"),
            "{e}"
        );
        assert!(
            e.contains("lo#1[127.0.0.1/8 10.255.0.1/32](excluded)"),
            "{e}"
        );
    }

    #[test]
    fn autodetect_default_exclusions() {
        let excluded = [
            "docker0",
            "cbr0",
            "dummy0",
            "podman1",
            "virbr0",
            "lxcbr0",
            "veth1234",
            "lo",
            "lonely", // ^lo matches any name starting with "lo", as in Calico
            "br-1234deadbeef",
            "cali12345",
            "tunl0",
            "flannel.1",
            "kube-ipvs0",
            "cni0",
            "vxlan.calico",
            "vxlan-v6.calico",
            "wireguard.cali",
            "wg-v6.cali",
            "nodelocaldns",
            "vxlan.brindle",
        ];
        let kept = [
            "eth0",
            "ens3",
            "enp0s31f6",
            "bond0",
            "bond0.100",
            "br0",
            "ibmvetha", // "veth" not at the start (a Calico test case)
            "wlan0",
            "vxlan0",
        ];
        let ex = default_excludes();
        for name in excluded {
            assert!(
                ex.iter().any(|r| r.is_match(name)),
                "{name} should be excluded"
            );
        }
        for name in kept {
            assert!(
                !ex.iter().any(|r| r.is_match(name)),
                "{name} should be kept"
            );
        }
        // Every Calico entry is present, in order, at the start of the list.
        let calico = [
            "^docker.*",
            "^cbr.*",
            "^dummy.*",
            "^podman.*",
            "^virbr.*",
            "^lxcbr.*",
            "^veth.*",
            "^lo",
            "^br-.*",
            "^cali.*",
            "^tunl.*",
            "^flannel.*",
            "^kube-ipvs.*",
            "^cni.*",
            r"^vxlan\.calico.*",
            r"^vxlan-v6\.calico.*",
            r"^wireguard\.cali.*",
            r"^wg-v6\.cali.*",
            "^nodelocaldns.*",
        ];
        assert_eq!(&DEFAULT_INTERFACES_TO_EXCLUDE[..calico.len()], &calico);

        // Each excluded interface alone: first-found finds nothing on it.
        for name in excluded {
            let n = vec![iface(7, name, &["10.1.1.1/24"])];
            let e = sel("first-found", Family::V4, &n).unwrap_err();
            assert!(e.contains("no valid host interfaces found"), "{name}: {e}");
        }
    }

    #[test]
    fn autodetect_interface_regex_lists() {
        let n = vec![
            iface(1, "lo", &["127.0.0.1/8"]),
            iface(2, "eth0", &["10.0.1.5/24"]),
            iface(3, "ens4", &["10.0.2.5/24"]),
            iface(4, "bond0", &["10.0.3.5/24"]),
            iface(5, "docker0", &["172.17.0.1/16"]),
            iface(6, "veth0abc", &["10.0.4.5/24"]),
        ];
        let cases: &[(&str, Option<&str>)] = &[
            // Unanchored (as Calico): "eth0" also matches veth0abc, whose ifindex is higher.
            ("interface=eth0", Some("10.0.4.5/24")),
            ("interface=eth", Some("10.0.4.5/24")),
            ("interface=^eth0$", Some("10.0.1.5/24")),
            ("interface=^eth0", Some("10.0.1.5/24")),
            ("interface=^eth.*,^ens.*", Some("10.0.2.5/24")),
            ("interface=^eth.*, ^bond.*", Some("10.0.3.5/24")),
            // interface= applies no default exclusions.
            ("interface=docker0", Some("172.17.0.1/16")),
            ("interface=nothing", None),
            ("skip-interface=bond.*", Some("10.0.2.5/24")),
            ("skip-interface=bond.*,ens.*", Some("10.0.1.5/24")),
            ("skip-interface=bond0, ens4 ,eth0", None),
            // skip-interface= keeps the default exclusions (veth, docker, lo).
            ("skip-interface=^ens.*,^bond.*", Some("10.0.1.5/24")),
            ("first-found", Some("10.0.3.5/24")),
        ];
        for (m, want) in cases {
            match (sel(m, Family::V4, &n), want) {
                (Ok(got), Some(w)) => assert_eq!(got, net(w), "{m}"),
                (Err(e), None) => {
                    assert!(
                        e.starts_with(&Method::parse(m).unwrap().to_string()),
                        "{m}: {e}"
                    );
                    assert!(e.contains("no valid host interfaces found"), "{m}: {e}");
                    assert!(e.contains("eth0#2[10.0.1.5/24]"), "lists what it saw: {e}");
                }
                (got, want) => panic!("{m}: got {got:?}, want {want:?}"),
            }
        }
        // Interface matched but no address of the family.
        let e = sel("interface=eth0", Family::V6, &n).unwrap_err();
        assert!(
            e.contains("interface=eth0: no valid IPv6 addresses found"),
            "{e}"
        );
        assert!(e.contains("docker0#5[](excluded)"), "{e}");
    }

    #[test]
    fn autodetect_cidr_method() {
        let n = node();
        let cases: &[(&str, Family, Option<&str>)] = &[
            ("cidr=10.0.1.0/24", Family::V4, Some("10.0.1.5/24")),
            ("cidr=10.0.0.0/8", Family::V4, Some("10.0.1.5/24")),
            // Host bits in the filter are fine (masked).
            ("cidr=10.0.1.77/24", Family::V4, Some("10.0.1.5/24")),
            // No default exclusions: docker0 and tunl0 can be selected.
            ("cidr=172.16.0.0/12", Family::V4, Some("172.17.0.1/16")),
            ("cidr=192.168.10.1/32", Family::V4, Some("192.168.10.1/32")),
            (
                "cidr=172.16.0.0/12,10.0.0.0/8",
                Family::V4,
                Some("172.17.0.1/16"),
            ),
            ("cidr=10.99.0.0/16", Family::V4, None),
            ("cidr=2001:db8::/32", Family::V6, Some("2001:db8:1::5/64")),
            // link-local never qualifies, even when asked for.
            ("cidr=fe80::/10", Family::V6, None),
            // A CIDR of the other family matches nothing.
            ("cidr=10.0.0.0/8", Family::V6, None),
            ("cidr=127.0.0.0/8", Family::V4, None),
        ];
        for (m, family, want) in cases {
            match (sel(m, *family, &n), want) {
                (Ok(got), Some(w)) => assert_eq!(got, net(w), "{m}"),
                (Err(e), None) => {
                    assert!(e.contains("no valid IPv"), "{m}: {e}");
                    assert!(e.starts_with("cidr="), "{m}: {e}");
                }
                (got, want) => panic!("{m} {family}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn autodetect_can_reach_method() {
        let n = node();
        let m = Method::parse("can-reach=8.8.8.8").unwrap();
        let got = select_with(&m, Family::V4, &n, &[], |dest, fam| {
            assert_eq!((dest, fam), ("8.8.8.8", Family::V4));
            Ok(ip("10.0.1.5"))
        });
        assert_eq!(got.unwrap(), net("10.0.1.5/24"));
        // The source can be on an interface the default list excludes (no exclusions).
        let got = select_with(&m, Family::V4, &n, &[], |_, _| Ok(ip("192.168.10.1")));
        assert_eq!(got.unwrap(), net("192.168.10.1/32"));
        let m6 = Method::parse("can-reach=2001:4860:4860::8888").unwrap();
        let got = select_with(&m6, Family::V6, &n, &[], |_, _| Ok(ip("2001:db8:1::5")));
        assert_eq!(got.unwrap(), net("2001:db8:1::5/64"));
        // Source not on any interface.
        let e = select_with(&m, Family::V4, &n, &[], |_, _| Ok(ip("10.9.9.9"))).unwrap_err();
        assert!(e.starts_with("can-reach=8.8.8.8: "), "{e}");
        assert!(
            e.contains("10.9.9.9") && e.contains("eth0#2[10.0.1.5/24]"),
            "{e}"
        );
        // Probe failure.
        let e = select_with(&m, Family::V4, &n, &[], |_, _| {
            Err("network is unreachable".into())
        })
        .unwrap_err();
        assert_eq!(e, "can-reach=8.8.8.8: network is unreachable");
    }

    #[test]
    fn autodetect_reach_source_loopback() {
        // Real UDP connects to loopback (no packet is sent); works in any namespace with lo.
        assert_eq!(
            reach_source("127.0.0.1", Family::V4).unwrap(),
            ip("127.0.0.1")
        );
        assert_eq!(
            reach_source("localhost", Family::V4).unwrap(),
            ip("127.0.0.1")
        );
        let e = reach_source("127.0.0.1", Family::V6).unwrap_err();
        assert!(e.contains("no IPv6 address"), "{e}");
        let e = reach_source("no-such-host.invalid", Family::V4).unwrap_err();
        assert!(e.contains("cannot resolve no-such-host.invalid"), "{e}");
    }

    #[test]
    fn autodetect_kubernetes_internal_ip() {
        let n = node();
        let m = Method::KubernetesInternalIp;
        let k8s = [ip("10.0.1.5"), ip("2001:db8:1::5")];
        assert_eq!(
            select(&m, Family::V4, &n, &k8s).unwrap(),
            net("10.0.1.5/24")
        );
        assert_eq!(
            select(&m, Family::V6, &n, &k8s).unwrap(),
            net("2001:db8:1::5/64")
        );
        // Prefix from the interface, whichever it is (no exclusions).
        assert_eq!(
            select(&m, Family::V4, &n, &[ip("172.17.0.1")]).unwrap(),
            net("172.17.0.1/16")
        );
        // Only the first InternalIP of the family counts (as Calico).
        let e = select(&m, Family::V4, &n, &[ip("10.7.7.7"), ip("10.0.1.5")]).unwrap_err();
        assert!(
            e.contains("InternalIP 10.7.7.7 is not assigned to any host interface"),
            "{e}"
        );
        assert!(e.starts_with("kubernetes-internal-ip: "), "{e}");
        assert!(e.contains("eth0#2[10.0.1.5/24]"), "{e}");
        let e = select(&m, Family::V6, &n, &[ip("10.0.1.5")]).unwrap_err();
        assert!(e.contains("no IPv6 InternalIP"), "{e}");
        let e = select(&m, Family::V4, &n, &[]).unwrap_err();
        assert!(e.contains("no IPv4 InternalIP"), "{e}");
    }

    #[test]
    fn autodetect_local_cidr() {
        let n = node();
        assert_eq!(local_cidr(ip("10.0.1.5"), &n), Some(net("10.0.1.5/24")));
        assert_eq!(local_cidr(ip("127.0.0.1"), &n), Some(net("127.0.0.1/8")));
        assert_eq!(local_cidr(ip("fe80::1"), &n), Some(net("fe80::1/64")));
        assert_eq!(local_cidr(ip("10.0.1.6"), &n), None);
    }

    fn ad(
        ip_env: Option<&str>,
        method: Option<&str>,
        family: Family,
        existing: Option<&str>,
        ifs: &[Interface],
    ) -> Result<Option<IpNetwork>, String> {
        autodetect_with(
            ip_env,
            method,
            family,
            existing.map(net),
            ifs,
            &[],
            |_, _| Ok(ip("10.0.1.5")),
        )
    }

    #[test]
    fn autodetect_decision_ipv4() {
        let n = node();
        let empty: Vec<Interface> = vec![iface(1, "lo", &["127.0.0.1/8"])];
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a [Interface],
            Result<Option<&'a str>, &'a str>,
        );
        let cases: &[Case] = &[
            // Unset and no address yet: detect.
            (None, None, None, &n, Ok(Some("10.0.1.5/24"))),
            (Some(""), Some(""), None, &n, Ok(Some("10.0.1.5/24"))),
            (None, Some("cidr=172.16.0.0/12"), None, &n, Ok(Some("172.17.0.1/16"))),
            (None, Some("can-reach=8.8.8.8"), None, &n, Ok(Some("10.0.1.5/24"))),
            // Unset with an existing address: kept, no detection (even a bad method).
            (None, Some("bogus"), Some("10.0.9.9/24"), &n, Ok(Some("10.0.9.9/24"))),
            // autodetect: detection replaces the existing address.
            (Some("autodetect"), None, Some("10.0.9.9/24"), &n, Ok(Some("10.0.1.5/24"))),
            (Some("autodetect"), Some("interface=docker0"), None, &n, Ok(Some("172.17.0.1/16"))),
            // autodetect finding nothing: keep the existing one, else fail.
            (Some("autodetect"), None, Some("10.0.9.9/24"), &empty, Ok(Some("10.0.9.9/24"))),
            (Some("autodetect"), None, None, &empty, Err("failed to autodetect an IPv4 address: first-found: no valid host interfaces found")),
            (None, None, None, &empty, Err("failed to autodetect an IPv4 address")),
            // Bad argument of a known method: like "nothing found".
            (Some("autodetect"), Some("interface=eth("), Some("10.0.9.9/24"), &n, Ok(Some("10.0.9.9/24"))),
            (Some("autodetect"), Some("cidr=10.0.0.1"), None, &n, Err("failed to autodetect an IPv4 address: invalid CIDR")),
            // Unknown method: always an error, even with an existing address.
            (Some("autodetect"), Some("bogus"), Some("10.0.9.9/24"), &n, Err("invalid IP autodetection method \"bogus\"")),
            // none: keep whatever is there.
            (Some("none"), None, None, &n, Ok(None)),
            (Some("none"), Some("bogus"), Some("10.0.9.9/24"), &n, Ok(Some("10.0.9.9/24"))),
            // Literal: prefix taken from the interface that holds it.
            (Some("10.0.1.5"), None, None, &n, Ok(Some("10.0.1.5/24"))),
            (Some("10.0.1.5"), None, Some("10.0.9.9/24"), &n, Ok(Some("10.0.1.5/24"))),
            (Some("172.17.0.1"), None, None, &n, Ok(Some("172.17.0.1/16"))),
            // Literal not on the host: /32 (warning only).
            (Some("10.0.1.77"), None, None, &n, Ok(Some("10.0.1.77/32"))),
            // A CIDR is taken as given.
            (Some("10.0.1.5/16"), None, None, &n, Ok(Some("10.0.1.5/16"))),
            // Invalid literals.
            (Some("2001:db8:1::5"), None, None, &n, Err("environment does not contain a valid IPv4 address: IP=2001:db8:1::5")),
            (Some("10.0.1.5/33"), None, None, &n, Err("valid IPv4 address")),
            (Some("Autodetect"), None, None, &n, Err("valid IPv4 address")),
            (Some("10.0.1.5/255.255.255.0"), None, None, &n, Err("valid IPv4 address")),
        ];
        for (i, (ip_env, method, existing, ifs, want)) in cases.iter().enumerate() {
            let got = ad(*ip_env, *method, Family::V4, *existing, ifs);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(
                    g,
                    w.map(net),
                    "case {i}: {ip_env:?} {method:?} {existing:?}"
                ),
                (Err(e), Err(w)) => assert!(e.contains(w), "case {i}: {e:?} should contain {w:?}"),
                (got, want) => panic!(
                    "case {i}: {ip_env:?} {method:?} {existing:?}: got {got:?}, want {want:?}"
                ),
            }
        }
    }

    #[test]
    fn autodetect_decision_ipv6() {
        let n = node();
        let v4only = vec![iface(2, "eth0", &["10.0.1.5/24", "fe80::1/64"])];
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a [Interface],
            Result<Option<&'a str>, &'a str>,
        );
        let cases: &[Case] = &[
            // IPv6 is never detected unless asked for.
            (None, None, None, &n, Ok(None)),
            (Some(""), Some("first-found"), None, &n, Ok(None)),
            (None, None, Some("2001:db8:9::9/64"), &n, Ok(Some("2001:db8:9::9/64"))),
            // autodetect.
            (Some("autodetect"), None, None, &n, Ok(Some("2001:db8:1::5/64"))),
            (Some("autodetect"), Some("cidr=2001:db8::/32"), Some("2001:db8:9::9/64"), &n, Ok(Some("2001:db8:1::5/64"))),
            (Some("autodetect"), None, Some("2001:db8:9::9/64"), &v4only, Ok(Some("2001:db8:9::9/64"))),
            (Some("autodetect"), None, None, &v4only, Err("failed to autodetect an IPv6 address: first-found: no valid IPv6 addresses found on the host interfaces (interfaces seen: eth0#2[fe80::1/64])")),
            // none.
            (Some("none"), None, None, &n, Ok(None)),
            (Some("none"), None, Some("2001:db8:9::9/64"), &n, Ok(Some("2001:db8:9::9/64"))),
            // Literal: not looked up on the interfaces (startup.go), so a bare address is /128.
            (Some("2001:db8:1::5"), None, None, &n, Ok(Some("2001:db8:1::5/128"))),
            (Some("2001:db8:1::5/64"), None, None, &n, Ok(Some("2001:db8:1::5/64"))),
            (Some("10.0.1.5"), None, None, &n, Err("environment does not contain a valid IPv6 address: IP6=10.0.1.5")),
        ];
        for (i, (ip_env, method, existing, ifs, want)) in cases.iter().enumerate() {
            let got = ad(*ip_env, *method, Family::V6, *existing, ifs);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(
                    g,
                    w.map(net),
                    "case {i}: {ip_env:?} {method:?} {existing:?}"
                ),
                (Err(e), Err(w)) => assert!(e.contains(w), "case {i}: {e:?} should contain {w:?}"),
                (got, want) => panic!(
                    "case {i}: {ip_env:?} {method:?} {existing:?}: got {got:?}, want {want:?}"
                ),
            }
        }
    }

    #[test]
    fn autodetect_kubernetes_internal_ip_via_autodetect() {
        let n = node();
        let got = autodetect(
            Some("autodetect"),
            Some("kubernetes-internal-ip"),
            Family::V4,
            None,
            &n,
            &[ip("10.0.1.5")],
        );
        assert_eq!(got.unwrap(), Some(net("10.0.1.5/24")));
    }

    #[test]
    fn autodetect_host_interfaces_smoke() {
        // Whatever namespace the tests run in has lo with 127.0.0.1/8.
        let ifs = host_interfaces().unwrap();
        let lo = ifs.iter().find(|i| i.name == "lo").expect("lo listed");
        assert_eq!(lo.index, 1);
        if lo.up {
            assert!(lo.addrs.contains(&net("127.0.0.1/8")), "{lo:?}");
        }
        assert!(ifs.windows(2).all(|w| w[0].index < w[1].index));
    }
}
