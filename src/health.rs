//! `/metrics` (Prometheus text), `/liveness` and `/readiness` for the node agent.
//!
//! Readiness follows calico-node: at start every configured BGP peer must be Established;
//! once that has happened, one Established peer is enough. A node with no peers is ready.
//! Metrics are rendered from snapshots at scrape time (BGP status from the speaker,
//! dataplane counters from [`DataplaneMetrics`]).
//!
//! The HTTP server is bounded ([`HttpLimits`]): a request head must arrive within a few
//! seconds (axum's `serve` sets no timer, so hyper's `header_read_timeout` is inert
//! there; the limit is enforced on the connection instead), a keep-alive connection
//! that stays idle is closed, a client that does not take its answer is dropped, and
//! only so many connections are served at once (the others wait in the listen backlog).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use brindle_bgp::speaker::Speaker;
use brindle_bgp::status::{SessionState, SpeakerStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Counters the dataplane updates; read at scrape time.
#[derive(Debug, Default)]
pub struct DataplaneMetrics {
    pub routes_programmed: AtomicU64,
    pub local_endpoints: AtomicU64,
    pub applies: AtomicU64,
    pub resyncs: AtomicU64,
    pub errors: AtomicU64,
    /// Duration of the last apply, in microseconds.
    pub last_apply_micros: AtomicU64,
    /// The dataplane thread stopped with an error (liveness fails).
    pub stopped: std::sync::atomic::AtomicBool,
    /// Per policy rule (`<policy> <direction> rule <n>`): the kernel's packets and bytes.
    pub policy_counters: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

/// `<policy> <direction> rule <n>` → the metric labels.
fn policy_labels(origin: &str) -> Vec<(String, String)> {
    for dir in ["ingress", "egress"] {
        if let Some((policy, rule)) = origin.split_once(&format!(" {dir} rule ")) {
            return vec![
                ("policy".into(), policy.to_string()),
                ("direction".into(), dir.to_string()),
                ("rule".into(), rule.to_string()),
            ];
        }
    }
    vec![("policy".into(), origin.to_string())]
}

/// What the endpoints read. The server starts before the datastore is in sync, so the
/// speaker is there only once the agent has its first plan.
#[derive(Clone)]
pub struct Sources {
    pub speaker: Arc<std::sync::OnceLock<Speaker>>,
    pub dataplane: Arc<DataplaneMetrics>,
    pub datastore: crate::status::SharedDatastoreStatus,
}

#[derive(Clone)]
struct AppState {
    src: Sources,
    was_ready: Arc<Mutex<bool>>,
}

/// Readiness as far as the datastore decides it: not ready before every kind is in sync,
/// nor while the datastore is unreachable (the agent then keeps forwarding and every BGP
/// session, on the last state it read).
pub fn datastore_readiness(d: Option<&crate::status::DatastoreStatus>) -> Result<(), String> {
    match d {
        None => Err("datastore not started".into()),
        Some(d) if !d.connected => Err(format!(
            "datastore {} unreachable ({}); forwarding and BGP sessions are kept on the last state read",
            d.backend,
            d.last_error.as_deref().unwrap_or("no answer")
        )),
        Some(d) if !d.in_sync => Err(format!("datastore {}: not in sync yet", d.backend)),
        Some(_) => Ok(()),
    }
}

/// Readiness verdict from a status snapshot; `was_ready` remembers that the node was
/// fully up once.
pub fn readiness(status: &SpeakerStatus, was_ready: &mut bool) -> Result<String, String> {
    let down: Vec<String> = status
        .peers
        .iter()
        .filter(|p| p.state != SessionState::Established)
        // `10.0.0.5`, or `10.0.0.5:1790` for one of several sessions to an address
        .map(|p| brindle_bgp::types::PeerKey::new(p.peer_address, p.peer_port).to_string())
        .collect();
    let up = status.peers.len() - down.len();
    if status.peers.is_empty() || down.is_empty() {
        *was_ready = true;
        return Ok(format!("ready: {up} BGP peers Established"));
    }
    if *was_ready && up > 0 {
        return Ok(format!(
            "ready: {up} BGP peers Established; not established: {}",
            down.join(", ")
        ));
    }
    Err(format!("BGP not established with {}", down.join(", ")))
}

/// Renders the metrics text.
pub fn render(status: &SpeakerStatus, dp: &DataplaneMetrics) -> String {
    let mut reg = Registry::default();
    let labels = |p: &brindle_bgp::status::PeerStatus| {
        vec![
            ("peer".to_string(), p.peer_address.to_string()),
            ("name".to_string(), p.name.clone()),
        ]
    };
    let established = Family::<Vec<(String, String)>, Gauge>::default();
    let state = Family::<Vec<(String, String)>, Gauge>::default();
    let rx = Family::<Vec<(String, String)>, Gauge>::default();
    let adv = Family::<Vec<(String, String)>, Gauge>::default();
    let upd_in = Family::<Vec<(String, String)>, Counter>::default();
    let upd_out = Family::<Vec<(String, String)>, Counter>::default();
    let resets = Family::<Vec<(String, String)>, Counter>::default();
    let import_errors = Family::<Vec<(String, String)>, Counter>::default();
    for p in &status.peers {
        let l = labels(p);
        established
            .get_or_create(&l)
            .set((p.state == SessionState::Established) as i64);
        state.get_or_create(&l).set(p.state as i64);
        rx.get_or_create(&l).set(p.prefixes_received as i64);
        adv.get_or_create(&l).set(p.prefixes_advertised as i64);
        upd_in.get_or_create(&l).inc_by(p.updates_in);
        upd_out.get_or_create(&l).inc_by(p.updates_out);
        resets.get_or_create(&l).inc_by(p.session_resets);
        let e = &p.import_errors;
        for (kind, n) in [
            ("attribute_discarded", e.attributes_discarded),
            ("treated_as_withdraw", e.treated_as_withdraw),
            ("own_next_hop", e.own_next_hop),
        ] {
            let mut l = l.clone();
            l.push(("kind".to_string(), kind.to_string()));
            import_errors.get_or_create(&l).inc_by(n);
        }
    }
    reg.register(
        "brindle_bgp_peer_established",
        "1 when the BGP session is Established",
        established,
    );
    reg.register(
        "brindle_bgp_peer_state",
        "RFC 4271 state: 0 Idle, 1 Connect, 2 Active, 3 OpenSent, 4 OpenConfirm, 5 Established",
        state,
    );
    reg.register(
        "brindle_bgp_prefixes_received",
        "Prefixes received from the peer",
        rx,
    );
    reg.register(
        "brindle_bgp_prefixes_advertised",
        "Prefixes advertised to the peer",
        adv,
    );
    reg.register(
        "brindle_bgp_updates_received",
        "UPDATE messages received",
        upd_in,
    );
    reg.register("brindle_bgp_updates_sent", "UPDATE messages sent", upd_out);
    reg.register(
        "brindle_bgp_session_resets",
        "Established sessions that went down",
        resets,
    );
    reg.register(
        "brindle_bgp_import_errors",
        "Malformed or unusable input from the peer: attributes discarded and UPDATEs treated as withdraw (RFC 7606), routes whose NEXT_HOP is this node's own address (RFC 4271 6.3)",
        import_errors,
    );
    let unconfigured = Counter::<u64>::default();
    unconfigured.inc_by(status.unconfigured_connections);
    reg.register(
        "brindle_bgp_unconfigured_connections",
        "BGP connections from addresses that are not configured peers (closed)",
        unconfigured,
    );
    let g = |v: &AtomicU64| {
        let x = Gauge::<i64>::default();
        x.set(v.load(Ordering::Relaxed) as i64);
        x
    };
    let c = |v: &AtomicU64| {
        let x = Counter::<u64>::default();
        x.inc_by(v.load(Ordering::Relaxed));
        x
    };
    reg.register(
        "brindle_felix_routes_programmed",
        "Routes Brindle owns in the kernel",
        g(&dp.routes_programmed),
    );
    reg.register(
        "brindle_felix_active_local_endpoints",
        "Local pod interfaces",
        g(&dp.local_endpoints),
    );
    reg.register("brindle_felix_applies", "Dataplane applies", c(&dp.applies));
    reg.register(
        "brindle_felix_resyncs",
        "Periodic full resyncs",
        c(&dp.resyncs),
    );
    reg.register("brindle_felix_errors", "Dataplane errors", c(&dp.errors));
    let packets = Family::<Vec<(String, String)>, Counter>::default();
    let bytes = Family::<Vec<(String, String)>, Counter>::default();
    for (origin, (p, b)) in dp
        .policy_counters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        let l = policy_labels(origin);
        packets.get_or_create(&l).inc_by(*p);
        bytes.get_or_create(&l).inc_by(*b);
    }
    reg.register(
        "brindle_policy_packets",
        "Packets matched by each network policy rule (the kernel's counters, read every 10 s)",
        packets,
    );
    reg.register(
        "brindle_policy_bytes",
        "Bytes matched by each network policy rule",
        bytes,
    );
    let secs = Gauge::<f64, AtomicU64>::default();
    secs.set(dp.last_apply_micros.load(Ordering::Relaxed) as f64 / 1e6);
    reg.register(
        "brindle_felix_apply_duration_seconds",
        "Duration of the last dataplane apply",
        secs,
    );
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let st = match s.src.speaker.get() {
        Some(sp) => sp.status().await.unwrap_or_default(),
        None => SpeakerStatus::default(),
    };
    (
        [("content-type", "text/plain; version=0.0.4")],
        render(&st, &s.src.dataplane),
    )
}

async fn liveness(State(s): State<AppState>) -> impl IntoResponse {
    if s.src.dataplane.stopped.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "dataplane stopped (see the log)\n".to_string(),
        );
    }
    // Still syncing (a large cluster, an unreachable API): alive; readiness says why
    // the node is not ready.
    let Some(speaker) = s.src.speaker.get() else {
        return (StatusCode::OK, "live (starting)\n".to_string());
    };
    match speaker.status().await {
        Some(_) => (StatusCode::OK, "live\n".to_string()),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "BGP speaker not responding\n".to_string(),
        ),
    }
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let ds = crate::status::snapshot(&s.src.datastore);
    if let Err(why) = datastore_readiness(ds.as_ref()) {
        return (StatusCode::SERVICE_UNAVAILABLE, why + "\n");
    }
    let Some(speaker) = s.src.speaker.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for this node's configuration (see the log)\n".to_string(),
        );
    };
    let Some(st) = speaker.status().await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "BGP speaker not responding\n".to_string(),
        );
    };
    let mut was = s.was_ready.lock().unwrap_or_else(|e| e.into_inner());
    match readiness(&st, &mut was) {
        Ok(t) => (StatusCode::OK, t + "\n"),
        Err(t) => (StatusCode::SERVICE_UNAVAILABLE, t + "\n"),
    }
}

/// Returns the memory the allocator holds free to the system. glibc keeps what a large
/// refused document took in its free lists (about 30 MB after a YAML alias bomb is
/// refused): call this after a configuration was refused or a large one replaced.
pub fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Tunes glibc's malloc for a process that holds many small objects for long and
/// passes large buffers (list pages of several MB) through once, each setting unless its
/// `MALLOC_*` environment variable says otherwise:
/// - one arena for all threads (`MALLOC_ARENA_MAX`): by default each thread that
///   allocates gets an arena of its own (up to 8 per core), and what the tokio workers
///   decode during the initial list of a large cluster is spread over several heaps,
///   each with its own free space;
/// - a fixed mmap threshold of 256 KiB (`MALLOC_MMAP_THRESHOLD_`): glibc raises its
///   threshold to the size of each large block freed, after which list pages are carved
///   from the heap between long-lived objects and their space stays there.
///
/// Measured in BENCHMARKS.md ("Kubernetes datastore"). Call before any thread is started.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets an allocator parameter
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
            }
        }
    }
}

/// Bounds on the HTTP endpoints' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time for a request head (request line and headers), from the connection's start
    /// or from the first byte of a later request on it.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A client that takes no bytes of its answer for this long is dropped.
    pub write_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_connections: 32,
        }
    }
}

/// A TCP listener that hands out at most `max_connections` connections at once, each
/// wrapped in a [`BoundedConn`].
pub struct BoundedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    limits: HttpLimits,
}

impl BoundedListener {
    pub fn new(inner: TcpListener, limits: HttpLimits) -> Self {
        BoundedListener {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedConn, SocketAddr) {
        // a free slot first: until then, new connections wait in the kernel's backlog
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => return (BoundedConn::new(stream, slot, self.limits), addr),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics/health accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One HTTP/1 connection with deadlines: reading fails with `TimedOut` when a request
/// head takes longer than the header timeout or the connection is idle for longer than
/// the idle timeout; writing fails when the client takes nothing for the write timeout.
/// The end of a head is found by its empty line (GET requests carry no body here).
pub struct BoundedConn {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    limits: HttpLimits,
    /// In a request head (else idle between requests).
    in_head: bool,
    /// Line ends seen in a row (a `\r` does not count, so `\r\n\r\n` and `\n\n` both end a head).
    line_ends: u8,
    read_deadline: Pin<Box<Sleep>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl BoundedConn {
    fn new(io: TcpStream, slot: OwnedSemaphorePermit, limits: HttpLimits) -> Self {
        BoundedConn {
            io,
            _slot: slot,
            limits,
            in_head: true,
            line_ends: 0,
            read_deadline: Box::pin(tokio::time::sleep(limits.header_read_timeout)),
            write_deadline: None,
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.in_head {
                // the first byte of the next request: its head has the header timeout
                self.in_head = true;
                self.line_ends = 0;
                self.read_deadline
                    .as_mut()
                    .reset(Instant::now() + self.limits.header_read_timeout);
            }
            match b {
                b'\n' => {
                    self.line_ends += 1;
                    if self.line_ends == 2 {
                        self.in_head = false;
                        self.read_deadline
                            .as_mut()
                            .reset(Instant::now() + self.limits.idle_timeout);
                    }
                }
                b'\r' => {}
                _ => self.line_ends = 0,
            }
        }
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string())
}

impl AsyncRead for BoundedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = buf.filled()[before..].to_vec();
                self.scan(&new);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.read_deadline.as_mut().poll(cx) {
                Poll::Ready(()) if self.in_head => {
                    Poll::Ready(Err(timed_out("request head not received in time")))
                }
                Poll::Ready(()) => Poll::Ready(Err(timed_out("idle connection"))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for BoundedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => {
                let limit = self.limits.write_timeout;
                let d = self
                    .write_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match d.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("client takes no answer"))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.write_deadline = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves the endpoints on `addr` until the process ends, with the default [`HttpLimits`].
pub async fn serve(addr: SocketAddr, src: Sources) -> std::io::Result<()> {
    let l = TcpListener::bind(addr).await?;
    serve_on(l, src, HttpLimits::default()).await
}

/// [`serve`] on a bound listener with other limits.
pub async fn serve_on(
    listener: TcpListener,
    src: Sources,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let state = AppState {
        src,
        was_ready: Arc::new(Mutex::new(false)),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/liveness", get(liveness))
        .route("/readiness", get(ready))
        .with_state(state);
    axum::serve(BoundedListener::new(listener, limits), app).await
}

#[cfg(test)]
mod tests {

    #[test]
    fn policy_rule_counters_as_metrics() {
        let dp = DataplaneMetrics::default();
        dp.policy_counters.lock().unwrap().insert(
            "KubernetesNetworkPolicy shop/db ingress rule 0".into(),
            (7, 420),
        );
        let text = render(&SpeakerStatus::default(), &dp);
        assert!(
            text.contains("brindle_policy_packets_total{policy=\"KubernetesNetworkPolicy shop/db\",direction=\"ingress\",rule=\"0\"} 7"),
            "{text}"
        );
        assert!(text.contains("brindle_policy_bytes_total{"), "{text}");
    }

    use super::*;
    use brindle_bgp::status::{PeerStatus, PeerType};

    fn peer(addr: &str, state: SessionState) -> PeerStatus {
        PeerStatus {
            peer_address: addr.parse().unwrap(),
            peer_port: 179,
            peer_type: PeerType::Global,
            peer_type_name: "global".into(),
            name: "Global_x".into(),
            as_number: 65000,
            local_as_number: 64512,
            state,
            since: String::new(),
            info: String::new(),
            last_error: None,
            prefixes_received: 3,
            prefixes_accepted: 3,
            prefixes_advertised: 2,
            messages_in: 0,
            messages_out: 0,
            updates_in: 4,
            updates_out: 5,
            session_resets: 1,
            hold_time: None,
            remote_router_id: None,
            import_errors: Default::default(),
        }
    }

    fn test_speaker() -> Speaker {
        Speaker::start(brindle_bgp::speaker::SpeakerConfig {
            node_name: "n".into(),
            router_id: "10.0.0.1".parse().unwrap(),
            local_as: 64512,
            listen: vec![],
            next_hop_v4: None,
            next_hop_v6: None,
            restarting: false,
        })
        .unwrap()
        .0
    }

    fn sources(speaker: Option<Speaker>, in_sync: bool) -> Sources {
        let src = Sources {
            speaker: Arc::default(),
            dataplane: Arc::new(DataplaneMetrics::default()),
            datastore: Arc::new(Mutex::new(Some(crate::status::DatastoreStatus {
                in_sync,
                ..crate::status::DatastoreStatus::new("kubernetes")
            }))),
        };
        if let Some(sp) = speaker {
            let _ = src.speaker.set(sp);
        }
        src
    }

    async fn http(limits: HttpLimits) -> SocketAddr {
        http_with(sources(Some(test_speaker()), true), limits).await
    }

    async fn http_with(src: Sources, limits: HttpLimits) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve_on(l, src, limits));
        addr
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::AsyncWriteExt;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        read_for(&mut c, Duration::from_secs(5)).await.0
    }

    #[tokio::test]
    async fn probes_answer_before_sync_and_readiness_follows_the_datastore() {
        let src = sources(None, false);
        let addr = http_with(src.clone(), HttpLimits::default()).await;
        let r = get(addr, "/readiness").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("not in sync yet"),
            "{r}"
        );
        let r = get(addr, "/liveness").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains("starting"),
            "{r}"
        );
        assert!(get(addr, "/metrics").await.starts_with("HTTP/1.1 200"));
        crate::status::update(&src.datastore, |d| d.in_sync = true);
        let r = get(addr, "/readiness").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("configuration"),
            "{r}"
        );
        let _ = src.speaker.set(test_speaker());
        let r = get(addr, "/readiness").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        crate::status::update(&src.datastore, |d| d.connection(Some("connection refused")));
        let r = get(addr, "/readiness").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("unreachable (connection refused)"),
            "{r}"
        );
        let r = get(addr, "/liveness").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        crate::status::update(&src.datastore, |d| d.connection(None));
        assert!(get(addr, "/readiness").await.starts_with("HTTP/1.1 200"));
    }

    /// Reads until the connection ends or `t` passes; the text and whether it ended.
    async fn read_for(c: &mut TcpStream, t: Duration) -> (String, bool) {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let end = Instant::now() + t;
        loop {
            match tokio::time::timeout_at(end, c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (String::from_utf8_lossy(&out).into(), false),
            }
        }
    }

    const GET: &[u8] = b"GET /liveness HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn slow_request_heads_and_idle_connections_are_closed() {
        use tokio::io::AsyncWriteExt;
        let limits = HttpLimits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(800),
            ..HttpLimits::default()
        };
        let addr = http(limits).await;
        // a head that never ends (slowloris): closed after the header timeout
        let started = Instant::now();
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /liveness HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let (text, closed) = read_for(&mut c, Duration::from_secs(5)).await;
        assert!(closed && !text.contains("200"), "{text}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // nothing at all: the same
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(read_for(&mut c, Duration::from_secs(5)).await.1);

        // a proper request is answered; the connection then stays for the idle timeout
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(GET).await.unwrap();
        let (text, closed) = read_for(&mut c, Duration::from_millis(500)).await;
        assert!(
            text.starts_with("HTTP/1.1 200 OK") && text.ends_with("live\n"),
            "{text}"
        );
        assert!(!closed, "kept alive");
        // a second request on it, then idle until closed
        c.write_all(GET).await.unwrap();
        let started = Instant::now();
        let (text, closed) = read_for(&mut c, Duration::from_secs(5)).await;
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(closed);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn concurrent_connections_are_capped() {
        use tokio::io::AsyncWriteExt;
        let limits = HttpLimits {
            max_connections: 2,
            ..HttpLimits::default()
        };
        let addr = http(limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(GET).await.unwrap();
            let (text, _) = read_for(&mut c, Duration::from_millis(300)).await;
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            held.push(c);
        }
        // a third one waits while two connections are open...
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(GET).await.unwrap();
        let (text, _) = read_for(&mut third, Duration::from_millis(500)).await;
        assert!(text.is_empty(), "{text}");
        // ...and is served as soon as one closes
        drop(held.pop());
        let (text, _) = read_for(&mut third, Duration::from_secs(2)).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }

    #[test]
    fn readiness_like_calico_node() {
        let mut was = false;
        let mut s = SpeakerStatus {
            peers: vec![
                peer("10.0.0.2", SessionState::Established),
                peer("10.0.0.3", SessionState::Active),
            ],
            ..Default::default()
        };
        let e = readiness(&s, &mut was).unwrap_err();
        assert!(e.contains("10.0.0.3"));
        s.peers[1].state = SessionState::Established;
        assert!(readiness(&s, &mut was).is_ok());
        s.peers[1].state = SessionState::Idle;
        assert!(
            readiness(&s, &mut was).is_ok(),
            "one Established peer is enough later"
        );
        s.peers[0].state = SessionState::Idle;
        assert!(readiness(&s, &mut was).is_err());
        assert!(readiness(&SpeakerStatus::default(), &mut false).is_ok());
    }

    #[test]
    fn metrics_text() {
        let s = SpeakerStatus {
            peers: vec![peer("10.0.0.2", SessionState::Established)],
            ..Default::default()
        };
        let dp = DataplaneMetrics::default();
        dp.routes_programmed.store(7, Ordering::Relaxed);
        let t = render(&s, &dp);
        assert!(
            t.contains("brindle_bgp_peer_established{peer=\"10.0.0.2\",name=\"Global_x\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("brindle_bgp_updates_received_total{peer=\"10.0.0.2\",name=\"Global_x\"} 4"),
            "{t}"
        );
        assert!(t.contains("brindle_felix_routes_programmed 7"), "{t}");
        assert!(
            t.contains("brindle_bgp_peer_state{peer=\"10.0.0.2\",name=\"Global_x\"} 5"),
            "{t}"
        );
    }
}
