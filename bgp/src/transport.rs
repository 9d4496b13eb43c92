//! Socket layer of the BGP speaker: the thin I/O shell underneath the driver.
//!
//! This module owns everything the kernel needs to know about a BGP TCP connection and
//! nothing else (no BGP messages, no FSM, no timers other than the connect timeout):
//!
//! * **Outgoing connections** ([`connect`]): a `socket2` socket that gets its TCP-MD5 key
//!   and TTL/GTSM options *before* `connect(2)` (so the very first SYN is signed and
//!   carries the right TTL), is optionally bound to a source address (port 0), has
//!   `TCP_NODELAY` set, and is connected non-blockingly under a timeout.
//! * **Listening** ([`Listener`]): one tokio listener per bound address (typically
//!   `0.0.0.0:179` and `[::]:179`), `SO_REUSEADDR`, backlog 128; [`Listener::accept`]
//!   returns whichever connection arrives first.
//! * **TCP-MD5 (RFC 2385)** ([`set_md5`], [`Listener::set_md5`]): Linux `TCP_MD5SIG`.
//! * **TTL handling** ([`TtlMode`], [`apply_ttl`]): directly connected eBGP (TTL 1),
//!   multihop (TTL n) and RFC 5082 GTSM (send with 255, require >= 256 - hops).
//!
//! # Platform
//!
//! Linux only. `socket2` has no API for `TCP_MD5SIG`, `IP_MINTTL` or
//! `IPV6_MINHOPCOUNT`, so those are set with `libc::setsockopt` directly (the
//! `struct tcp_md5sig` layout is declared here because `libc` does not export it).
//!
//! # Address families and IPv4-mapped addresses
//!
//! When both an IPv4 and an IPv6 address are bound, the IPv6 socket gets
//! `IPV6_V6ONLY=1` so the two can share the port. A lone IPv6 wildcard (`[::]`) or an
//! explicit IPv4-mapped address (`[::ffff:a.b.c.d]`) is bound *dual-stack*
//! (`IPV6_V6ONLY=0`): IPv4 peers then arrive as `::ffff:a.b.c.d`. [`Listener::accept`]
//! reports peer and local addresses [`normalize`]d (IPv4-mapped -> IPv4), MD5 keys for
//! IPv4 peers are installed on such sockets in the v4-mapped form (the kernel stores
//! them as IPv4 keys), and [`apply_ttl`] uses the IPv4 (`SOL_IP`) options for
//! IPv4-mapped connections, since those packets travel through the IPv4 stack.
//!
//! # GTSM on a shared listener
//!
//! `IP_MINTTL` / `IPV6_MINHOPCOUNT` are per socket and inherited by accepted sockets.
//! A listener is shared by all peers, and only some of them may use GTSM, so the
//! listener gets **no** minimum TTL; the driver calls [`apply_ttl`] on each accepted
//! socket once it knows the peer. Consequence: the handshake of an inbound connection
//! is not TTL-protected, only the segments after it (which includes the peer's OPEN;
//! use MD5 as well for protection of the handshake). The listener's *outgoing* TTL is
//! however set to 255 so that SYN-ACKs pass a remote GTSM check (which would drop a
//! SYN-ACK sent with the default TTL of 64); this is harmless for non-GTSM peers.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Backlog used for every listening socket.
pub const LISTEN_BACKLOG: i32 = 128;

/// Maximum TCP-MD5 key length accepted by Linux (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `IPV6_MINHOPCOUNT` (Linux, since 2.6.35); `libc` has it, kept local for clarity.
const IPV6_MINHOPCOUNT: libc::c_int = 73;

/// TTL policy of a BGP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TtlMode {
    /// Directly connected eBGP: outgoing TTL 1 (BIRD/FRR default for eBGP).
    Direct,
    /// iBGP or eBGP multihop: outgoing TTL = n (iBGP uses 64 or the OS default).
    /// `Multihop(0)` is rejected with `InvalidInput`.
    Multihop(u8),
    /// RFC 5082 GTSM: send with TTL 255, and accept only packets with TTL >= 256 - hops
    /// (IP_MINTTL for IPv4, IPV6_MINHOPCOUNT for IPv6). `hops: 0` is treated as 1.
    Gtsm { hops: u8 },
}

impl TtlMode {
    /// TTL / hop limit put on outgoing packets.
    pub fn send_ttl(&self) -> u8 {
        match *self {
            TtlMode::Direct => 1,
            TtlMode::Multihop(n) => n,
            TtlMode::Gtsm { .. } => 255,
        }
    }

    /// Minimum TTL / hop limit required on incoming packets (0 = no check).
    pub fn min_ttl(&self) -> u8 {
        match *self {
            TtlMode::Gtsm { hops } => {
                // 256 - hops, with hops clamped to 1..=255 -> 1..=255.
                (256u16 - u16::from(hops.max(1))) as u8
            }
            _ => 0,
        }
    }

    fn validate(&self) -> io::Result<()> {
        if let TtlMode::Multihop(0) = self {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TTL mode Multihop(0): TTL must be 1..=255",
            ));
        }
        Ok(())
    }
}

/// Everything needed to open an outgoing BGP connection.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Remote address (normally port 179). IPv4-mapped IPv6 is normalised to IPv4.
    pub peer: SocketAddr,
    /// Local address to bind (port 0) before connecting; must be of the peer's family.
    pub source: Option<IpAddr>,
    /// TCP-MD5 key (RFC 2385), at most 80 bytes. `None` or empty = no MD5.
    pub md5_key: Option<Vec<u8>>,
    /// TTL policy, applied before the SYN is sent.
    pub ttl: TtlMode,
    /// Upper bound for the whole connect (SYN retransmissions included).
    pub timeout: Duration,
}

impl ConnectOptions {
    /// Options with no source, no MD5 and a 30 s timeout.
    pub fn new(peer: SocketAddr, ttl: TtlMode) -> Self {
        ConnectOptions {
            peer,
            source: None,
            md5_key: None,
            ttl,
            timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ConnectOptions {
    // Hand-written so the MD5 key never ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("peer", &self.peer)
            .field("source", &self.source)
            .field("md5_key", &self.md5_key.as_ref().map(|_| "<redacted>"))
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Adds context to an error while keeping its kind and the error itself (so that
/// [`os_error`] still finds the errno).
fn ctx(e: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(
        e.kind(),
        Context {
            what: what.to_string(),
            source: e,
        },
    )
}

/// An error with what was being done: "connect to 10.0.0.2:179: Connection refused ...".
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The errno behind an error of this module, through any added context; `None` for
/// errors that did not come from the kernel (e.g. a connect that timed out here).
pub fn os_error(e: &io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Context>())
        .and_then(|c| os_error(&c.source))
}

/// Peer address normalised: IPv4-mapped IPv6 -> IPv4.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(normalize_ip(addr.ip()), addr.port())
}

fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

// ---------------------------------------------------------------------------------------
// Raw socket options
// ---------------------------------------------------------------------------------------

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `val` is a valid c_int living for the duration of the call and the length
    // passed matches its size; an invalid fd only produces EBADF.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&val as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val`/`len` are valid for writes and `len` holds the buffer size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(val)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Address family of a socket (`SO_DOMAIN`).
fn socket_domain(fd: RawFd) -> io::Result<libc::c_int> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// Linux `struct tcp_md5sig` (include/uapi/linux/tcp.h); not exported by `libc`.
#[repr(C)]
struct TcpMd5Sig {
    tcpm_addr: libc::sockaddr_storage,
    tcpm_flags: u8,
    tcpm_prefixlen: u8,
    tcpm_keylen: u16,
    tcpm_ifindex: libc::c_int,
    tcpm_key: [u8; MD5_MAX_KEY_LEN],
}

fn sockaddr_storage_for(ip: IpAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    match ip {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.octets()),
            };
        }
        IpAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.octets(),
            };
        }
    }
    ss
}

/// Installs (or, with `None`/an empty key, removes) the TCP-MD5 key for `peer` on a
/// socket, using Linux `TCP_MD5SIG`.
///
/// Works on listening sockets (the key is inherited by sockets accepted from `peer`)
/// and on not-yet-connected sockets (must be set before `connect`). On an IPv6 socket
/// an IPv4 `peer` is installed as `::ffff:a.b.c.d`, which the kernel stores as an IPv4
/// key — that is what a dual-stack listener needs for IPv4 peers. An IPv6 peer on an
/// IPv4 socket is an `InvalidInput` error. Removing a key that is not installed is not
/// an error. Keys longer than 80 bytes are rejected with `InvalidInput`.
pub fn set_md5(sock: &impl AsRawFd, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    set_md5_fd(sock.as_raw_fd(), peer, key)
}

fn set_md5_fd(fd: RawFd, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let peer = normalize_ip(peer);
    let key = key.unwrap_or(&[]);
    let what = || format!("TCP_MD5SIG for {peer}");
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: key is {} bytes, maximum is {MD5_MAX_KEY_LEN}",
                what(),
                key.len()
            ),
        ));
    }
    let domain = socket_domain(fd).map_err(|e| ctx(e, what()))?;
    let addr = match (domain, peer) {
        (libc::AF_INET, IpAddr::V4(_)) | (libc::AF_INET6, IpAddr::V6(_)) => peer,
        (libc::AF_INET6, IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
        (libc::AF_INET, IpAddr::V6(_)) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: IPv6 peer on an IPv4 socket", what()),
            ))
        }
        (d, _) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: unsupported socket family {d}", what()),
            ))
        }
    };
    let mut sig = TcpMd5Sig {
        tcpm_addr: sockaddr_storage_for(addr),
        tcpm_flags: 0,
        tcpm_prefixlen: 0,
        tcpm_keylen: key.len() as u16,
        tcpm_ifindex: 0,
        tcpm_key: [0; MD5_MAX_KEY_LEN],
    };
    sig.tcpm_key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a fully initialised #[repr(C)] struct tcp_md5sig and the length
    // passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if key.is_empty() && e.raw_os_error() == Some(libc::ENOENT) {
        // Deleting a key that does not exist: idempotent removal.
        return Ok(());
    }
    Err(ctx(e, what()))
}

/// Which IP stack the packets of a socket go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    /// AF_INET socket.
    V4,
    /// AF_INET6 socket carrying IPv4 (v4-mapped peer).
    V6Mapped,
    /// AF_INET6 socket carrying IPv6.
    V6,
}

fn set_ttl_fd(fd: RawFd, stack: Stack, ttl: &TtlMode) -> io::Result<()> {
    ttl.validate()?;
    let send = libc::c_int::from(ttl.send_ttl());
    let min = libc::c_int::from(ttl.min_ttl());
    match stack {
        Stack::V4 | Stack::V6Mapped => {
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TTL, send)
                .map_err(|e| ctx(e, format!("IP_TTL {send}")))?;
            // Always written, so that switching away from GTSM clears the check.
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MINTTL, min)
                .map_err(|e| ctx(e, format!("IP_MINTTL {min}")))?;
        }
        Stack::V6 => {
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, send)
                .map_err(|e| ctx(e, format!("IPV6_UNICAST_HOPS {send}")))?;
            setsockopt_int(fd, libc::IPPROTO_IPV6, IPV6_MINHOPCOUNT, min)
                .map_err(|e| ctx(e, format!("IPV6_MINHOPCOUNT {min}")))?;
        }
    }
    Ok(())
}

/// Applies a [`TtlMode`] to an established (typically: accepted) connection.
///
/// Sets the outgoing TTL (`IP_TTL` / `IPV6_UNICAST_HOPS`) and the minimum incoming TTL
/// (`IP_MINTTL` / `IPV6_MINHOPCOUNT`; reset to 0 unless GTSM). IPv4 connections on an
/// IPv6 socket (v4-mapped peer) get the IPv4 options.
pub fn apply_ttl(stream: &TcpStream, ttl: &TtlMode) -> io::Result<()> {
    let peer = stream
        .peer_addr()
        .map_err(|e| ctx(e, "apply_ttl: peer_addr"))?;
    let stack = match peer {
        SocketAddr::V4(_) => Stack::V4,
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => Stack::V6Mapped,
        SocketAddr::V6(_) => Stack::V6,
    };
    set_ttl_fd(stream.as_raw_fd(), stack, ttl)
        .map_err(|e| ctx(e, format!("TTL {ttl:?} for {}", normalize(peer))))
}

// ---------------------------------------------------------------------------------------
// Outgoing connections
// ---------------------------------------------------------------------------------------

/// Opens an outgoing BGP connection.
///
/// The socket gets its MD5 key and TTL options before `connect(2)`, is bound to
/// `source` (port 0) if given, has `TCP_NODELAY` set, and is connected
/// non-blockingly. Fails with `TimedOut` if the connection is not established within
/// `opts.timeout` (with a wrong/missing MD5 key the peer silently drops the SYNs, so
/// that is the symptom), or with the kernel error (e.g. `ConnectionRefused`).
pub async fn connect(opts: &ConnectOptions) -> io::Result<TcpStream> {
    let peer = normalize(opts.peer);
    let what = format!("connect to {peer}");
    let socket = prepare_connect_socket(opts, peer).map_err(|e| ctx(e, &what))?;
    let std_stream: std::net::TcpStream = socket.into();
    let tsock = TcpSocket::from_std_stream(std_stream);
    match tokio::time::timeout(opts.timeout, tsock.connect(peer)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ctx(e, &what)),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: timed out after {:?}", opts.timeout),
        )),
    }
}

fn prepare_connect_socket(opts: &ConnectOptions, peer: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| ctx(e, "socket"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| ctx(e, "O_NONBLOCK"))?;
    let fd = socket.as_raw_fd();
    if let Some(key) = opts.md5_key.as_deref().filter(|k| !k.is_empty()) {
        set_md5_fd(fd, peer.ip(), Some(key))?;
    }
    let stack = if peer.is_ipv4() { Stack::V4 } else { Stack::V6 };
    set_ttl_fd(fd, stack, &opts.ttl)?;
    socket
        .set_nodelay(true)
        .map_err(|e| ctx(e, "TCP_NODELAY"))?;
    if let Some(src) = opts.source {
        let src = normalize_ip(src);
        if src.is_ipv4() != peer.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("source address {src} is not of the peer's address family"),
            ));
        }
        socket
            .bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .map_err(|e| ctx(e, format!("bind source {src}")))?;
    }
    Ok(socket)
}

// ---------------------------------------------------------------------------------------
// Listening
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct ListenSocket {
    listener: TcpListener,
    local: SocketAddr,
    /// Accepts IPv4 peers (AF_INET, or AF_INET6 with IPV6_V6ONLY=0).
    accepts_v4: bool,
    /// Accepts IPv6 peers.
    accepts_v6: bool,
}

/// The passive side: one or more listening sockets (e.g. `0.0.0.0:179` + `[::]:179`).
#[derive(Debug)]
pub struct Listener {
    sockets: Vec<ListenSocket>,
    /// Rotates the first socket polled in `accept`, so no family can starve another.
    next: AtomicUsize,
}

impl Listener {
    /// Bind every address (e.g. `0.0.0.0:179` and `[::]:179`), `SO_REUSEADDR`, backlog 128.
    ///
    /// IPv6 sockets get `IPV6_V6ONLY=1` so that they can coexist with IPv4 ones, except
    /// an IPv4-mapped address, or `[::]` when no IPv4 address is in `addrs`: those are
    /// bound dual-stack. Every socket's outgoing TTL is 255 (see the module docs).
    /// Must be called inside a tokio runtime.
    pub fn bind(addrs: &[SocketAddr]) -> io::Result<Listener> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "listener: no addresses to bind",
            ));
        }
        let any_v4 = addrs.iter().any(|a| a.is_ipv4());
        let mut sockets = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            sockets.push(
                Self::bind_one(addr, any_v4).map_err(|e| ctx(e, format!("listen on {addr}")))?,
            );
        }
        Ok(Listener {
            sockets,
            next: AtomicUsize::new(0),
        })
    }

    fn bind_one(addr: SocketAddr, any_v4: bool) -> io::Result<ListenSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| ctx(e, "socket"))?;
        socket
            .set_reuse_address(true)
            .map_err(|e| ctx(e, "SO_REUSEADDR"))?;
        let (accepts_v4, accepts_v6) = match addr {
            SocketAddr::V4(_) => (true, false),
            SocketAddr::V6(v6) => {
                let dual =
                    v6.ip().to_ipv4_mapped().is_some() || (v6.ip().is_unspecified() && !any_v4);
                socket
                    .set_only_v6(!dual)
                    .map_err(|e| ctx(e, "IPV6_V6ONLY"))?;
                (dual, v6.ip().to_ipv4_mapped().is_none())
            }
        };
        let fd = socket.as_raw_fd();
        if accepts_v4 {
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TTL, 255)
                .map_err(|e| ctx(e, "IP_TTL 255"))?;
        }
        if accepts_v6 {
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)
                .map_err(|e| ctx(e, "IPV6_UNICAST_HOPS 255"))?;
        }
        socket
            .set_nonblocking(true)
            .map_err(|e| ctx(e, "O_NONBLOCK"))?;
        socket
            .bind(&SockAddr::from(addr))
            .map_err(|e| ctx(e, "bind"))?;
        socket
            .listen(LISTEN_BACKLOG)
            .map_err(|e| ctx(e, "listen"))?;
        let std_listener: std::net::TcpListener = socket.into();
        let local = std_listener
            .local_addr()
            .map_err(|e| ctx(e, "getsockname"))?;
        let listener = TcpListener::from_std(std_listener)?;
        Ok(ListenSocket {
            listener,
            local,
            accepts_v4,
            accepts_v6,
        })
    }

    /// The bound addresses (with the actual ports if port 0 was requested), as the
    /// sockets report them (an IPv4-mapped bind stays IPv4-mapped here).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|s| s.local).collect()
    }

    /// Install or remove an MD5 key for a peer on every listening socket of the
    /// matching family (and for IPv4 peers also on an IPv6 dual-stack socket, as
    /// v4-mapped). Sockets that cannot receive connections from `peer` are skipped.
    /// Removing a key that is not installed is not an error.
    pub fn set_md5(&self, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
        let peer = normalize_ip(peer);
        for s in &self.sockets {
            let applies = if peer.is_ipv4() {
                s.accepts_v4
            } else {
                s.accepts_v6
            };
            if applies {
                set_md5_fd(s.listener.as_raw_fd(), peer, key)
                    .map_err(|e| ctx(e, format!("listener {}", s.local)))?;
            }
        }
        Ok(())
    }

    /// Accepts the next connection from whichever listening socket is ready.
    ///
    /// Returns the stream (with `TCP_NODELAY` set), the peer address and the local
    /// address, both [`normalize`]d. No minimum TTL is set on listeners (it cannot be
    /// per peer on a shared socket): call [`apply_ttl`] on the stream once the peer is
    /// identified. Cancel-safe.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr, SocketAddr)> {
        let n = self.sockets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let (stream, peer, on) = poll_fn(|cx| {
            for i in 0..n {
                let s = &self.sockets[(start + i) % n];
                if let Poll::Ready(r) = s.listener.poll_accept(cx) {
                    return Poll::Ready(match r {
                        Ok((stream, peer)) => Ok((stream, peer, s.local)),
                        Err(e) => Err(ctx(e, format!("accept on {}", s.local))),
                    });
                }
            }
            Poll::Pending
        })
        .await?;
        let peer = normalize(peer);
        let local = stream
            .local_addr()
            .map_err(|e| ctx(e, format!("getsockname of connection from {peer} on {on}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| ctx(e, format!("TCP_NODELAY for {peer}")))?;
        Ok((stream, peer, normalize(local)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    const KEY: &[u8] = b"brindle-secret";
    /// How long a connection that must NOT complete is given.
    const NO_CONNECT: Duration = Duration::from_secs(2);

    fn opts(peer: SocketAddr, ttl: TtlMode) -> ConnectOptions {
        ConnectOptions {
            timeout: Duration::from_secs(5),
            ..ConnectOptions::new(peer, ttl)
        }
    }

    fn port_of(l: &Listener, v4: bool) -> SocketAddr {
        *l.local_addrs().iter().find(|a| a.is_ipv4() == v4).unwrap()
    }

    /// Connects and accepts concurrently; returns (client, server, peer, local).
    async fn pair(
        l: &Listener,
        o: &ConnectOptions,
    ) -> (TcpStream, TcpStream, SocketAddr, SocketAddr) {
        let (c, a) = tokio::join!(connect(o), l.accept());
        let c = c.expect("connect");
        let (s, peer, local) = a.expect("accept");
        (c, s, peer, local)
    }

    async fn ping(c: &mut TcpStream, s: &mut TcpStream) {
        c.write_all(b"OPEN").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"OPEN");
        s.write_all(b"KEEP").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"KEEP");
    }

    fn get(s: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> i32 {
        getsockopt_int(s.as_raw_fd(), level, name).unwrap()
    }

    #[test]
    fn normalize_v4_mapped() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:179".parse().unwrap();
        assert_eq!(
            normalize(mapped),
            "127.0.0.1:179".parse::<SocketAddr>().unwrap()
        );
        let v6: SocketAddr = "[::1]:179".parse().unwrap();
        assert_eq!(normalize(v6), v6);
        let v4: SocketAddr = "127.0.0.1:179".parse().unwrap();
        assert_eq!(normalize(v4), v4);
    }

    #[test]
    fn ttl_mode_values() {
        assert_eq!(TtlMode::Direct.send_ttl(), 1);
        assert_eq!(TtlMode::Direct.min_ttl(), 0);
        assert_eq!(TtlMode::Multihop(5).send_ttl(), 5);
        assert_eq!(TtlMode::Gtsm { hops: 1 }.min_ttl(), 255);
        assert_eq!(TtlMode::Gtsm { hops: 0 }.min_ttl(), 255);
        assert_eq!(TtlMode::Gtsm { hops: 3 }.min_ttl(), 253);
        assert_eq!(TtlMode::Gtsm { hops: 255 }.min_ttl(), 1);
        assert_eq!(TtlMode::Gtsm { hops: 3 }.send_ttl(), 255);
    }

    #[test]
    fn debug_redacts_key() {
        let mut o = opts("127.0.0.1:179".parse().unwrap(), TtlMode::Direct);
        o.md5_key = Some(KEY.to_vec());
        let s = format!("{o:?}");
        assert!(!s.contains("brindle-secret"), "{s}");
        assert!(s.contains("redacted"), "{s}");
    }

    #[tokio::test]
    async fn connect_errors_keep_their_errno() {
        // a port nobody listens on: bind one, learn its number, close it
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = ConnectOptions::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            TtlMode::Multihop(64),
        );
        let e = connect(&opts).await.unwrap_err();
        assert_eq!(os_error(&e), Some(libc::ECONNREFUSED), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("connect to 127.0.0.1:{port}: ")),
            "{e}"
        );
        let timeout = io::Error::new(io::ErrorKind::TimedOut, "timed out here");
        assert_eq!(os_error(&timeout), None);
    }

    #[tokio::test]
    async fn listen_both_families_connect_accept() {
        let l =
            Listener::bind(&["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()]).unwrap();
        let addrs = l.local_addrs();
        assert_eq!(addrs.len(), 2);
        assert!(addrs.iter().all(|a| a.port() != 0));
        for v4 in [true, false] {
            let target = port_of(&l, v4);
            let (mut c, mut s, peer, local) = pair(&l, &opts(target, TtlMode::Multihop(64))).await;
            assert_eq!(peer, c.local_addr().unwrap());
            assert_eq!(local, target);
            assert_eq!(get(&c, libc::IPPROTO_TCP, libc::TCP_NODELAY), 1);
            assert_eq!(get(&s, libc::IPPROTO_TCP, libc::TCP_NODELAY), 1);
            ping(&mut c, &mut s).await;
        }
    }

    #[tokio::test]
    async fn v4_mapped_dual_stack_listener_normalizes() {
        // An IPv6 socket bound to ::ffff:127.0.0.1 is dual-stack and receives IPv4.
        let l = Listener::bind(&["[::ffff:127.0.0.1]:0".parse().unwrap()]).unwrap();
        let port = l.local_addrs()[0].port();
        let target = SocketAddr::new(V4, port);
        let (mut c, mut s, peer, local) = pair(&l, &opts(target, TtlMode::Direct)).await;
        assert_eq!(peer, c.local_addr().unwrap());
        assert!(peer.is_ipv4() && local.is_ipv4());
        assert_eq!(local, target);
        ping(&mut c, &mut s).await;
    }

    async fn md5_case(listen: SocketAddr, peer_ip: IpAddr) {
        let l = Listener::bind(&[listen]).unwrap();
        l.set_md5(peer_ip, Some(KEY)).unwrap();
        let target = SocketAddr::new(peer_ip, l.local_addrs()[0].port());

        // Matching key: connects and exchanges bytes.
        let mut o = opts(target, TtlMode::Multihop(64));
        o.md5_key = Some(KEY.to_vec());
        let (mut c, mut s, peer, _) = pair(&l, &o).await;
        assert_eq!(peer.ip(), peer_ip);
        ping(&mut c, &mut s).await;

        // Wrong key / no key: the SYNs are dropped, the connect must not succeed.
        for key in [Some(b"wrong-key".to_vec()), None] {
            let mut o = opts(target, TtlMode::Multihop(64));
            o.md5_key = key.clone();
            o.timeout = NO_CONNECT;
            let r = tokio::select! {
                r = connect(&o) => r.map(|_| ()),
                a = l.accept() => panic!("accepted a connection with key {key:?}: {a:?}"),
            };
            let e = r.expect_err("connect with wrong/no MD5 key succeeded");
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        }

        // Removing the key on the listener: an unsigned client gets in again;
        // removing twice is fine.
        l.set_md5(peer_ip, None).unwrap();
        l.set_md5(peer_ip, Some(&[])).unwrap();
        let (mut c, mut s, _, _) = pair(&l, &opts(target, TtlMode::Multihop(64))).await;
        ping(&mut c, &mut s).await;
    }

    #[tokio::test]
    async fn md5_ipv4() {
        md5_case("127.0.0.1:0".parse().unwrap(), V4).await;
    }

    #[tokio::test]
    async fn md5_ipv6() {
        md5_case("[::1]:0".parse().unwrap(), V6).await;
    }

    #[tokio::test]
    async fn md5_ipv4_on_dual_stack_socket() {
        // Key for an IPv4 peer installed (v4-mapped) on a dual-stack IPv6 socket.
        md5_case("[::ffff:127.0.0.1]:0".parse().unwrap(), V4).await;
    }

    #[tokio::test]
    async fn md5_skips_other_family_and_rejects_long_key() {
        let l =
            Listener::bind(&["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()]).unwrap();
        l.set_md5(V4, Some(KEY)).unwrap();
        l.set_md5(V6, Some(KEY)).unwrap();
        let e = l.set_md5(V4, Some(&[0u8; 81])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("TCP_MD5SIG for 127.0.0.1"), "{e}");
        l.set_md5(V4, Some(&[7u8; 80])).unwrap();
        // The free function refuses an IPv6 peer on an IPv4 socket.
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let e = set_md5(&s, V6, Some(KEY)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    fn check_ttl_v4(s: &impl AsRawFd, ttl: i32, min: i32) {
        assert_eq!(get(s, libc::IPPROTO_IP, libc::IP_TTL), ttl);
        assert_eq!(get(s, libc::IPPROTO_IP, libc::IP_MINTTL), min);
    }

    fn check_ttl_v6(s: &impl AsRawFd, hops: i32, min: i32) {
        assert_eq!(get(s, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS), hops);
        assert_eq!(get(s, libc::IPPROTO_IPV6, IPV6_MINHOPCOUNT), min);
    }

    #[tokio::test]
    async fn apply_ttl_sets_socket_options() {
        let l =
            Listener::bind(&["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()]).unwrap();
        for v4 in [true, false] {
            let target = port_of(&l, v4);
            let (c, s, _, _) = pair(&l, &opts(target, TtlMode::Gtsm { hops: 1 })).await;
            let check = |sock: &TcpStream, t: i32, m: i32| {
                if v4 {
                    check_ttl_v4(sock, t, m)
                } else {
                    check_ttl_v6(sock, t, m)
                }
            };
            // The connecting side got its options before connect.
            check(&c, 255, 255);
            // The accepted side inherits the listener's send TTL 255, but no min TTL.
            check(&s, 255, 0);
            apply_ttl(&s, &TtlMode::Gtsm { hops: 1 }).unwrap();
            check(&s, 255, 255);
            apply_ttl(&s, &TtlMode::Gtsm { hops: 2 }).unwrap();
            check(&s, 255, 254);
            apply_ttl(&s, &TtlMode::Direct).unwrap();
            check(&s, 1, 0);
            apply_ttl(&s, &TtlMode::Multihop(5)).unwrap();
            check(&s, 5, 0);
            let e = apply_ttl(&s, &TtlMode::Multihop(0)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[tokio::test]
    async fn apply_ttl_on_v4_mapped_uses_ipv4_options() {
        let l = Listener::bind(&["[::ffff:127.0.0.1]:0".parse().unwrap()]).unwrap();
        let target = SocketAddr::new(V4, l.local_addrs()[0].port());
        let (_c, s, _, _) = pair(&l, &opts(target, TtlMode::Direct)).await;
        apply_ttl(&s, &TtlMode::Gtsm { hops: 1 }).unwrap();
        check_ttl_v4(&s, 255, 255);
        apply_ttl(&s, &TtlMode::Multihop(5)).unwrap();
        check_ttl_v4(&s, 5, 0);
    }

    /// GTSM actually filters: after `apply_ttl(Gtsm{hops:1})` on the accepted side,
    /// data sent with TTL < 255 is dropped, data sent with 255 arrives.
    async fn gtsm_filters(listen: SocketAddr, peer_ip: IpAddr) {
        let l = Listener::bind(&[listen]).unwrap();
        let target = SocketAddr::new(peer_ip, l.local_addrs()[0].port());
        let mut buf = [0u8; 4];

        let (mut c, mut s, _, _) = pair(&l, &opts(target, TtlMode::Multihop(254))).await;
        apply_ttl(&s, &TtlMode::Gtsm { hops: 1 }).unwrap();
        c.write_all(b"OPEN").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(700), s.read_exact(&mut buf)).await;
        assert!(r.is_err(), "segment with TTL 254 was not dropped");

        let (mut c, mut s, _, _) = pair(&l, &opts(target, TtlMode::Gtsm { hops: 1 })).await;
        apply_ttl(&s, &TtlMode::Gtsm { hops: 1 }).unwrap();
        ping(&mut c, &mut s).await;
    }

    #[tokio::test]
    async fn gtsm_filters_ipv4() {
        gtsm_filters("127.0.0.1:0".parse().unwrap(), V4).await;
    }

    #[tokio::test]
    async fn gtsm_filters_ipv6() {
        gtsm_filters("[::1]:0".parse().unwrap(), V6).await;
    }

    #[tokio::test]
    async fn connect_with_source_address() {
        let l =
            Listener::bind(&["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()]).unwrap();
        for (v4, src) in [(true, V4), (false, V6)] {
            let mut o = opts(port_of(&l, v4), TtlMode::Direct);
            o.source = Some(src);
            let (c, _s, peer, _) = pair(&l, &o).await;
            assert_eq!(peer.ip(), src);
            assert_eq!(peer, c.local_addr().unwrap());
        }
        // Family mismatch is rejected up front.
        let mut o = opts(port_of(&l, true), TtlMode::Direct);
        o.source = Some(V6);
        let e = connect(&o).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[tokio::test]
    async fn connect_refused_is_quick() {
        for ip in [V4, V6] {
            // Grab an ephemeral port and release it, so nobody listens there.
            let port = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut o = opts(SocketAddr::new(ip, port), TtlMode::Direct);
            o.timeout = Duration::from_secs(10);
            let t0 = std::time::Instant::now();
            let e = connect(&o).await.unwrap_err();
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "took {:?}",
                t0.elapsed()
            );
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("connect to {}", SocketAddr::new(ip, port))),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn connect_timeout_is_honoured() {
        // A listener whose MD5 key the client lacks never answers: the timeout fires.
        let l = Listener::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
        l.set_md5(V4, Some(KEY)).unwrap();
        let mut o = opts(l.local_addrs()[0], TtlMode::Direct);
        o.timeout = Duration::from_millis(300);
        let t0 = std::time::Instant::now();
        let e = connect(&o).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn bind_rejects_empty() {
        assert_eq!(
            Listener::bind(&[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
