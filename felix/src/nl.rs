//! Netlink plumbing shared by the reconcilers and [`crate::podnet`]: one request socket per [`Netlink`] (strict
//! checking so the kernel filters dumps, an 8 MiB receive buffer), dumps, gets, and
//! batched requests of at most [`BATCH`] messages, each awaited with a timeout.
//!
//! The socket belongs to the network namespace of the thread that opened it; the
//! connection task is spawned on the current tokio runtime.

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_proto::sys::protocols::NETLINK_ROUTE;
use netlink_proto::sys::AsyncSocket;
use netlink_proto::ConnectionHandle;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::sys::SocketAddr;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Messages per batch: the default receive buffer loses ACKs at ~1024 (measured).
pub(crate) const BATCH: usize = 128;
const RCVBUF: libc::c_int = 8 << 20;

pub(crate) use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};

/// Raises a socket's receive buffer, past `rmem_max` when allowed (root).
pub(crate) fn raise_rcvbuf(fd: &impl AsRawFd, size: libc::c_int) {
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a valid fd and a c_int value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

pub(crate) struct Netlink {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    /// The request socket's port id: notifications of our own changes carry it.
    pub(crate) port: u32,
    timeout: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("netlink {what}: no answer in time"),
    )
}

impl Netlink {
    /// Opens the socket in the calling thread's network namespace. Needs a tokio runtime.
    pub(crate) fn open(timeout: Duration) -> io::Result<Self> {
        let (mut conn, handle, _unsolicited) =
            netlink_proto::new_connection::<RouteNetlinkMessage>(NETLINK_ROUTE)?;
        // ACKs are what maps a batch's answers to its messages
        conn.set_forward_ack(true);
        let sock = conn.socket_mut().socket_mut();
        sock.set_netlink_get_strict_chk(true)?;
        // errors need not echo the whole request
        let _ = sock.set_cap_ack(true);
        raise_rcvbuf(sock, RCVBUF);
        let mut addr = SocketAddr::new(0, 0);
        sock.get_address(&mut addr)?;
        let port = addr.port_number();
        let task = tokio::spawn(conn);
        Ok(Netlink {
            handle,
            port,
            timeout,
            task,
        })
    }

    /// A dump request (`NLM_F_DUMP`); returns every inner message.
    pub(crate) async fn dump(
        &self,
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.request(msg, NLM_F_DUMP, "dump").await
    }

    /// A request for one object (`RTM_GET*` by name or index); returns the answer.
    pub(crate) async fn get(
        &self,
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.request(msg, 0, "get").await
    }

    async fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        let mut stream = self
            .handle
            .request(req, SocketAddr::new(0, 0))
            .map_err(io::Error::other)?;
        let collect = async {
            let mut out = Vec::new();
            while let Some(m) = stream.next().await {
                match m.payload {
                    NetlinkPayload::InnerMessage(i) => out.push(i),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::Overrun(_) => {
                        return Err(io::Error::other(format!("netlink {what} overrun")))
                    }
                    _ => {}
                }
            }
            Ok(out)
        };
        tokio::time::timeout(self.timeout, collect)
            .await
            .map_err(|_| timed_out(what))?
    }

    /// Sends `msgs` (each with `NLM_F_REQUEST | NLM_F_ACK | flags`) in batches of at most
    /// [`BATCH`]; one result per message, in order.
    pub(crate) async fn batch(&self, msgs: Vec<(RouteNetlinkMessage, u16)>) -> Vec<io::Result<()>> {
        let mut results = Vec::with_capacity(msgs.len());
        let mut it = msgs.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<NetlinkMessage<RouteNetlinkMessage>> = it
                .by_ref()
                .take(BATCH)
                .map(|(m, flags)| {
                    let mut req = NetlinkMessage::from(m);
                    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
                    req
                })
                .collect();
            let n = chunk.len();
            let mut got: Vec<io::Result<()>> = Vec::with_capacity(n);
            match self.handle.request_batch(chunk, SocketAddr::new(0, 0)) {
                Err(e) => {
                    let msg = e.to_string();
                    got.extend((0..n).map(|_| Err(io::Error::other(msg.clone()))));
                }
                Ok(mut stream) => {
                    // The kernel answers the messages of one send in order, one ACK or
                    // error each, so the i-th answer belongs to the i-th message.
                    let collect = async {
                        while let Some(m) = stream.next().await {
                            if let NetlinkPayload::Error(e) = m.payload {
                                got.push(match e.code {
                                    None => Ok(()),
                                    Some(_) => Err(e.to_io()),
                                });
                            }
                        }
                    };
                    if tokio::time::timeout(self.timeout, collect).await.is_err() {
                        while got.len() < n {
                            got.push(Err(timed_out("request")));
                        }
                    }
                }
            }
            got.resize_with(n, || Err(io::Error::other("netlink: no answer")));
            results.extend(got);
        }
        results
    }

    /// One request with an ACK.
    pub(crate) async fn exec(&self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.batch(vec![(msg, flags)]).await.pop().unwrap_or(Ok(()))
    }
}

/// Errno of an error returned by [`Netlink`], if it came from the kernel.
pub(crate) fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().map(|c| c.abs())
}
