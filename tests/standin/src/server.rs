//! The HTTPS front: routing, auth, discovery, the verbs, watch streams, fault injection.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::obj::Obj;
use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, PatchType, Preconditions, Store, WriteOpts};

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 3 * 1024 * 1024;

/// An injected failure: the next `count` requests matching `verb` and `resource`
/// (`None` = any) answer `code`.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub code: u16,
    pub count: u32,
}

/// Server settings the handlers read.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub token: String,
    pub watch_timeout: Duration,
    pub bookmark_interval: Duration,
    pub server_address: String,
}

/// State shared by the server tasks and the control API.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub settings: Settings,
    pub stats: Mutex<BTreeMap<(String, String), u64>>,
    pub faults: Mutex<Vec<Fault>>,
    pub latency_ms: AtomicU64,
    pub unauthorized: AtomicU64,
    pub active_watches: AtomicUsize,
    /// Wanted availability (the listener supervisor follows it).
    pub available: watch::Sender<bool>,
    /// Availability the supervisor has put in place.
    pub listening: Mutex<bool>,
    pub listening_cv: Condvar,
    /// Bumped by each control-socket `stop`/`start`, so that a timed `stop` only ends
    /// its own outage.
    pub outage_gen: AtomicU64,
}

/// Locks, shrugging off poisoning (a panicked holder leaves consistent enough data).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Asks for (un)availability and waits (up to 5 s) until the listener follows.
    pub fn set_available(&self, up: bool) {
        self.available.send_replace(up);
        let mut g = lock(&self.listening);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while *g != up {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                tracing::warn!(up, "listener did not follow the availability change in 5 s");
                break;
            }
            g = self
                .listening_cv
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn set_listening(&self, up: bool) {
        *lock(&self.listening) = up;
        self.listening_cv.notify_all();
    }

    fn count(&self, verb: &str, resource: &str) {
        *lock(&self.stats)
            .entry((verb.to_string(), resource.to_string()))
            .or_insert(0) += 1;
    }

    fn take_fault(&self, verb: &str, resource: &str) -> Option<u16> {
        let mut faults = lock(&self.faults);
        let f = faults.iter_mut().find(|f| {
            f.count > 0
                && f.verb.as_deref().is_none_or(|v| v == verb)
                && f.resource.as_deref().is_none_or(|r| r == resource)
        })?;
        f.count -= 1;
        let code = f.code;
        faults.retain(|f| f.count > 0);
        Some(code)
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// Binds the first listener (so that start-up fails early on a taken address).
pub(crate) fn bind_first(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind(addr)
}

/// Accepts connections while available; on unavailability drops the listener and every
/// connection (clients see refused connections and broken streams), then rebinds the
/// same address when available again.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    tls: TlsAcceptor,
    first: TcpListener,
    shutdown: CancellationToken,
) {
    let addr = match first.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("listener address: {e}");
            return;
        }
    };
    let mut avail = shared.available.subscribe();
    let mut listener = Some(first);
    loop {
        if !*avail.borrow_and_update() {
            shared.set_listening(false);
            tokio::select! {
                _ = avail.changed() => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("rebinding {addr}: {e}; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            },
        };
        shared.set_listening(true);
        let conns = CancellationToken::new();
        let tracker = TaskTracker::new();
        loop {
            tokio::select! {
                r = l.accept() => match r {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        tracker.spawn(serve_conn(shared.clone(), tls.clone(), tcp, peer, conns.child_token()));
                    }
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = avail.changed() => {
                    if !*avail.borrow() {
                        break;
                    }
                }
                _ = shutdown.cancelled() => {
                    conns.cancel();
                    return;
                }
            }
        }
        drop(l);
        conns.cancel();
        tracker.close();
        tracker.wait().await;
        // Watch tasks notice their dropped streams asynchronously: let them finish, so
        // that on return from `set_unavailable(true)` no watch is counted as open.
        let settle = Instant::now() + Duration::from_secs(1);
        while shared.active_watches.load(Ordering::Relaxed) > 0 && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tracing::info!("unavailable: listener closed, connections dropped");
    }
}

async fn serve_conn(
    shared: Arc<Shared>,
    tls: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    cancel: CancellationToken,
) {
    let stream = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake: {e}");
                return;
            }
            Err(_) => return,
        },
        _ = cancel.cancelled() => return,
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // Idle keep-alive connections stay open, as with the real API server.
        .header_read_timeout(None)
        .serve_connection(io, svc);
    tokio::select! {
        r = conn => if let Err(e) = r { tracing::debug!(%peer, "connection: {e}") },
        _ = cancel.cancelled() => {}
    }
}

fn full(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    full(
        code,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if e.code == 429 || e.code == 503 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k)
        .is_some_and(|v| v == "1" || v == "true" || v.is_empty())
}

/// A resource request, routed.
struct Target {
    rt: ResourceType,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    Version,
    Health,
    Api,
    CoreResources,
    Apis,
    Group(String),
    GroupResources(String, String),
    Resource(Box<Target>),
    NotFound,
}

fn route(store: &Store, path: &str) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["healthz"] | ["livez"] | ["readyz"] => return Route::Health,
        ["healthz" | "livez" | "readyz", _] => return Route::Health,
        ["api"] => return Route::Api,
        ["api", "v1"] => return Route::CoreResources,
        ["apis"] => return Route::Apis,
        ["apis", g] => return Route::Group(g.to_string()),
        ["apis", g, v] => return Route::GroupResources(g.to_string(), v.to_string()),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let find = |plural: &str| store.find(group, version, plural);
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|t| t.namespaced) => {
            let rt = find(plural).expect("checked");
            match tail {
                [] => Some((rt, Some(ns), None, None)),
                [name] => Some((rt, Some(ns), Some(*name), None)),
                [name, sub] => Some((rt, Some(ns), Some(*name), Some(*sub))),
                _ => None,
            }
        }
        [plural, tail @ ..] => find(plural).and_then(|rt| match tail {
            [] => Some((rt, None, None, None)),
            [name] if !rt.namespaced => Some((rt, None, Some(*name), None)),
            [name, sub] if !rt.namespaced => Some((rt, None, Some(*name), Some(*sub))),
            _ => None,
        }),
        [] => None,
    };
    match target {
        Some((rt, ns, name, sub)) => Route::Resource(Box::new(Target {
            rt,
            ns: ns.map(|s| s.to_string()),
            name: name.map(|s| s.to_string()),
            sub: sub.map(|s| s.to_string()),
        })),
        None => Route::NotFound,
    }
}

fn not_found_resource() -> ApiError {
    ApiError::new(404, "the server could not find the requested resource")
}

/// What the client asked the objects to look like (`Accept`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Full,
    Metadata,
}

fn shape_of(accept: &str) -> Shape {
    if accept.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Full
    }
}

/// Appends a stored object's JSON as asked for.
fn write_shaped(out: &mut Vec<u8>, shape: Shape, api_version: &str, obj: &Obj) {
    match shape {
        Shape::Full => obj.write(out, api_version),
        Shape::Metadata => obj.write_partial(out),
    }
}

/// Appends a JSON string literal.
fn push_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn shaped(shape: Shape, obj: Value) -> Value {
    match shape {
        Shape::Full => obj,
        Shape::Metadata => json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let latency = shared.latency_ms.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = handle_inner(&shared, req).await;
    tracing::debug!("{method} {path} -> {}", resp.status().as_u16());
    resp
}

async fn handle_inner(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let header_str = |h: header::HeaderName| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header_str(header::ACCEPT);
    let content_type = header_str(header::CONTENT_TYPE);
    let auth = req.headers().get(header::AUTHORIZATION).cloned();

    let route = route(&shared.store(), &path);
    let public = matches!(route, Route::Version | Route::Health);
    let expected = format!("Bearer {}", shared.settings.token);
    let authorized = match &auth {
        Some(v) => v.as_bytes() == expected.as_bytes(),
        None => public,
    };
    if !authorized {
        shared.unauthorized.fetch_add(1, Ordering::Relaxed);
        shared.count("unauthorized", "");
        return error_response(&ApiError::new(401, "Unauthorized"));
    }

    let method = req.method().clone();
    let target = match route {
        Route::Version => {
            shared.count("get", "version");
            return json_response(200, &version());
        }
        Route::Health => return full(200, "text/plain; charset=utf-8", "ok"),
        Route::Api => {
            shared.count("get", "discovery");
            return discovery_api(shared, &accept);
        }
        Route::CoreResources => {
            shared.count("get", "discovery");
            return resource_list(shared, "", "v1");
        }
        Route::Apis => {
            shared.count("get", "discovery");
            return discovery_apis(shared, &accept);
        }
        Route::Group(g) => {
            shared.count("get", "discovery");
            return match group_entry(&shared.store(), &g) {
                Some(mut e) => {
                    e["kind"] = json!("APIGroup");
                    e["apiVersion"] = json!("v1");
                    json_response(200, &e)
                }
                None => error_response(&not_found_resource()),
            };
        }
        Route::GroupResources(g, v) => {
            shared.count("get", "discovery");
            return resource_list(shared, &g, &v);
        }
        Route::NotFound => return error_response(&not_found_resource()),
        Route::Resource(t) => *t,
    };

    let status_sub = match target.sub.as_deref() {
        None => false,
        Some("status") if target.rt.status_subresource => true,
        Some(_) => return error_response(&not_found_resource()),
    };
    let watch = truthy(&query, "watch");
    let verb = match (&method, target.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return error_response(&ApiError::new(
                405,
                format!(
                    "the server does not allow this method on the requested resource ({method})"
                ),
            ))
        }
    };
    // A namespaced resource without a namespace can only be listed/watched (all
    // namespaces); creating one needs the namespaced path.
    if target.rt.namespaced && target.ns.is_none() && !matches!(verb, "list" | "watch") {
        return error_response(&not_found_resource());
    }
    let plural = target.rt.plural.clone();
    shared.count(verb, &plural);
    let shape = shape_of(&accept);

    if let Some(code) = shared.take_fault(verb, &plural) {
        let e = ApiError::new(code, format!("injected failure ({code})"));
        let e = if code == 409 {
            ApiError::conflict(&target.rt, target.name.as_deref().unwrap_or(""))
        } else {
            e
        };
        if verb == "watch" && code == 410 {
            return watch_error_response(&e);
        }
        return error_response(&e);
    }

    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let opts = WriteOpts { api: true, dry_run };
    let ns = target.ns.as_deref();
    let rt = &target.rt;

    let selectors = || -> Result<(LabelSelector, FieldSelector), ApiError> {
        let l = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let f = FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        for field in f.fields() {
            if !rt.field_selectable(field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
        }
        Ok((l, f))
    };

    let result: Result<(u16, Value), ApiError> = match verb {
        "watch" => {
            return match selectors() {
                Ok((l, f)) => start_watch(shared.clone(), target, l, f, &query, shape),
                Err(e) => error_response(&e),
            }
        }
        "list" => {
            return match selectors().and_then(|(l, f)| list(shared, rt, ns, &l, &f, &query, shape))
            {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        }
        "get" => {
            let got = shared
                .store()
                .get_stored(rt, ns, target.name.as_deref().unwrap_or(""));
            return match got {
                Ok(o) => {
                    let mut out = Vec::with_capacity(o.size() + 64);
                    write_shaped(&mut out, shape, &rt.api_version(), &o);
                    full(200, "application/json", out)
                }
                Err(e) => error_response(&e),
            };
        }
        "create" => match read_body(req, &content_type).await {
            Ok(body) => shared.store().create(rt, ns, body, opts).map(|o| (201, o)),
            Err(e) => Err(e),
        },
        "update" => match read_body(req, &content_type).await {
            Ok(body) => shared
                .store()
                .update(
                    rt,
                    ns,
                    target.name.as_deref().unwrap_or(""),
                    body,
                    status_sub,
                    opts,
                )
                .map(|o| (200, o)),
            Err(e) => Err(e),
        },
        "patch" => {
            let manager = query.get("fieldManager").is_some_and(|m| !m.is_empty());
            patch(
                shared,
                req,
                &target,
                &content_type,
                status_sub,
                manager,
                opts,
            )
            .await
        }
        "delete" => match read_delete_options(req).await {
            Ok((pre, body_dry_run)) => {
                let opts = WriteOpts {
                    dry_run: opts.dry_run || body_dry_run,
                    ..opts
                };
                let name = target.name.as_deref().unwrap_or("");
                shared.store().delete(rt, ns, name, &pre, opts).map(|o| {
                    let pending = o.pointer("/metadata/deletionTimestamp").is_some();
                    if rt.custom && !pending {
                        // Custom resources answer a Status, built-ins the object.
                        let mut details = json!({"name": name, "group": rt.group, "kind": rt.plural});
                        if let Some(uid) = o.pointer("/metadata/uid") {
                            details["uid"] = uid.clone();
                        }
                        (200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}))
                    } else {
                        (if pending { 202 } else { 200 }, o)
                    }
                })
            }
            Err(e) => Err(e),
        },
        "deletecollection" => selectors().and_then(|(l, f)| {
            let items = shared.store().delete_collection(rt, ns, &l, &f, opts)?;
            let rv = shared.store().resource_version();
            Ok((
                200,
                json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
            ))
        }),
        _ => Err(not_found_resource()),
    };
    match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error_response(&e),
    }
}

async fn read_bytes(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::new(413, "the request entity is too large"))
            } else {
                Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )))
            }
        }
    }
}

/// Parses a JSON (or, by content type, YAML) body.
fn parse_body(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if content_type.contains("yaml") {
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            return Ok(v);
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
}

async fn read_body(req: Request<Incoming>, content_type: &str) -> Result<Value, ApiError> {
    let bytes = read_bytes(req).await?;
    parse_body(&bytes, content_type)
}

async fn read_delete_options(req: Request<Incoming>) -> Result<(Preconditions, bool), ApiError> {
    let bytes = read_bytes(req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((Preconditions::default(), false));
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let dry_run = v
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"));
    Ok((
        Preconditions {
            uid: s("/preconditions/uid"),
            resource_version: s("/preconditions/resourceVersion"),
        },
        dry_run,
    ))
}

async fn patch(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    target: &Target,
    content_type: &str,
    status: bool,
    field_manager: bool,
    opts: WriteOpts,
) -> Result<(u16, Value), ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let ptype = match media {
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        "application/json-patch+json" => PatchType::Json,
        "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
        other => {
            return Err(ApiError::new(
                415,
                format!("the body of the request was in an unknown format ({other:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"),
            ))
        }
    };
    if ptype == PatchType::Apply && !field_manager {
        return Err(ApiError::new(
            422,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let bytes = read_bytes(req).await?;
    let body = parse_body(
        &bytes,
        if ptype == PatchType::Apply {
            "yaml"
        } else {
            "json"
        },
    )?;
    let name = target.name.as_deref().unwrap_or("");
    let mut store = shared.store();
    let existed = store.get(&target.rt, target.ns.as_deref(), name).is_ok();
    store
        .patch(
            &target.rt,
            target.ns.as_deref(),
            name,
            ptype,
            &body,
            status,
            opts,
        )
        .map(|o| (if existed { 200 } else { 201 }, o))
}

fn list(
    shared: &Arc<Shared>,
    rt: &ResourceType,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
    query: &HashMap<String, String>,
    shape: Shape,
) -> Result<Response<Body>, ApiError> {
    let limit = match query.get("limit").filter(|s| !s.is_empty()) {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
        None => None,
    };
    let store = shared.store();
    if let Some(rv) = query
        .get("resourceVersion")
        .filter(|s| !s.is_empty() && *s != "0")
    {
        let n: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        if n > store.resource_version() {
            return Err(ApiError::new(
                504,
                format!(
                    "Too large resource version: {n}, current: {}",
                    store.resource_version()
                ),
            ));
        }
        if query
            .get("resourceVersionMatch")
            .is_some_and(|m| m == "Exact")
            && n < store.floor()
        {
            return Err(ApiError::expired(format!(
                "too old resource version: {n} ({})",
                store.floor()
            )));
        }
    }
    let page = store.list(
        rt,
        ns,
        labels,
        fields,
        limit,
        query.get("continue").map(String::as_str),
    )?;
    drop(store);
    // The page, written from the stored bytes (metadata before the items, as the real
    // API orders them).
    let (kind, api_version) = match shape {
        Shape::Full => (format!("{}List", rt.kind), rt.api_version()),
        Shape::Metadata => (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        ),
    };
    let item_av = rt.api_version();
    let size: usize = page.items.iter().map(|o| o.size() + 40).sum();
    let mut out = Vec::with_capacity(size + 512);
    out.extend_from_slice(b"{\"kind\":");
    push_str(&mut out, &kind);
    out.extend_from_slice(b",\"apiVersion\":");
    push_str(&mut out, &api_version);
    out.extend_from_slice(b",\"metadata\":{\"resourceVersion\":\"");
    out.extend_from_slice(page.resource_version.to_string().as_bytes());
    out.push(b'"');
    if let Some(c) = &page.continue_token {
        out.extend_from_slice(b",\"continue\":");
        push_str(&mut out, c);
    }
    if let Some(r) = page.remaining {
        out.extend_from_slice(b",\"remainingItemCount\":");
        out.extend_from_slice(r.to_string().as_bytes());
    }
    out.extend_from_slice(b"},\"items\":[");
    for (i, o) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_shaped(&mut out, shape, &item_av, o);
    }
    out.extend_from_slice(b"]}");
    Ok(full(200, "application/json", out))
}

/// One watch event line, `type` before `object` as the API server writes it (a
/// `json!` map would sort `object` first, and a client that reads the object as raw
/// JSON text, as Brindle's slim decoders do, needs the type first).
fn watch_line(etype: &str, obj: &Value) -> Bytes {
    let mut v = br#"{"type":"#.to_vec();
    let _ = serde_json::to_writer(&mut v, etype);
    v.extend_from_slice(br#","object":"#);
    let _ = serde_json::to_writer(&mut v, obj);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

fn watch_error_response(e: &ApiError) -> Response<Body> {
    full(200, "application/json", watch_line("ERROR", &e.to_status()))
}

/// Counts an open watch for as long as it lives.
struct WatchGuard(Arc<Shared>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.active_watches.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Watch output is sent in chunks of about this many bytes.
const WATCH_CHUNK: usize = 64 * 1024;

struct WatchSpec {
    rt: ResourceType,
    /// `rt.api_version()`.
    api_version: String,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    shape: Shape,
    bookmarks: bool,
    initial_events_end: bool,
}

impl WatchSpec {
    fn matches(&self, obj: &Obj) -> bool {
        obj.matches(&self.labels, &self.fields)
    }

    /// Appends one event line: the stored bytes as they are, or (`rv` set: a DELETED
    /// for an object leaving the selector, with the write's revision) re-serialized.
    fn line(&self, out: &mut Vec<u8>, etype: &str, obj: &Obj, rv: Option<u64>) {
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(etype.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        match rv {
            None => write_shaped(out, self.shape, &self.api_version, obj),
            Some(rv) => {
                let mut o = obj.to_value(&self.api_version);
                o["metadata"]["resourceVersion"] = json!(rv.to_string());
                let _ = serde_json::to_writer(&mut *out, &shaped(self.shape, o));
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// Appends the event this watcher sees for a write, if any (selector transitions
    /// become ADDED/DELETED, as in the real watch cache).
    fn translate(&self, out: &mut Vec<u8>, e: &Event) {
        if self.ns.as_deref().is_some_and(|ns| ns != e.ns) {
            return;
        }
        let now = self.matches(&e.obj);
        match e.etype {
            EventType::Added | EventType::Deleted => {
                if now {
                    self.line(out, e.etype.as_str(), &e.obj, None)
                }
            }
            EventType::Modified => {
                let before = e.old.as_deref().is_some_and(|o| self.matches(o));
                match (before, now, e.old.as_deref()) {
                    (true, true, _) => self.line(out, "MODIFIED", &e.obj, None),
                    (false, true, _) => self.line(out, "ADDED", &e.obj, None),
                    (true, false, Some(o)) => self.line(out, "DELETED", o, Some(e.rv)),
                    _ => {}
                }
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let (av, kind) = match self.shape {
            Shape::Full => (self.rt.api_version(), self.rt.kind.clone()),
            Shape::Metadata => (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            ),
        };
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        watch_line(
            "BOOKMARK",
            &json!({"apiVersion": av, "kind": kind, "metadata": meta}),
        )
    }
}

fn start_watch(
    shared: Arc<Shared>,
    target: Target,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &HashMap<String, String>,
    shape: Shape,
) -> Response<Body> {
    let start = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "invalid resource version: {rv}"
                )))
            }
        },
    };
    let mut timeout = shared.settings.watch_timeout;
    if let Some(t) = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
    {
        if t > 0 {
            timeout = timeout.min(Duration::from_secs(t));
        }
    }
    let bookmarks = truthy(query, "allowWatchBookmarks");
    let spec = WatchSpec {
        api_version: target.rt.api_version(),
        rt: target.rt,
        ns: target.ns,
        labels,
        fields,
        shape,
        bookmarks,
        initial_events_end: truthy(query, "sendInitialEvents") && bookmarks,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    shared.active_watches.fetch_add(1, Ordering::Relaxed);
    let guard = WatchGuard(shared.clone());
    tokio::spawn(async move {
        let _guard = guard;
        run_watch(&shared, spec, start, timeout, tx).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn run_watch(
    shared: &Arc<Shared>,
    spec: WatchSpec,
    start: Option<u64>,
    timeout: Duration,
    tx: mpsc::Sender<Bytes>,
) {
    let res = (spec.rt.group.clone(), spec.rt.plural.clone());
    let deadline = later(timeout);
    let interval = shared
        .settings
        .bookmark_interval
        .max(Duration::from_millis(50));
    let (mut sig, epochs, mut cursor, initial) = {
        let store = shared.store();
        let mut sig = store.subscribe();
        let epochs = *sig.borrow_and_update();
        match start {
            None => {
                let (objs, rv) = store.snapshot(&spec.rt, spec.ns.as_deref());
                (sig, epochs, rv, objs)
            }
            Some(n) => (sig, epochs, n, Vec::new()),
        }
    };
    // The initial events, written from the stored bytes outside the lock, in chunks.
    let mut out = Vec::new();
    for o in initial.iter().filter(|o| spec.matches(o)) {
        spec.line(&mut out, "ADDED", o, None);
        if out.len() >= WATCH_CHUNK
            && tx
                .send(Bytes::from(std::mem::take(&mut out)))
                .await
                .is_err()
        {
            return;
        }
    }
    drop(initial);
    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
        return;
    }
    if spec.initial_events_end && tx.send(spec.bookmark(cursor, true)).await.is_err() {
        return;
    }
    let too_old = |cursor: u64, floor: u64| {
        watch_line(
            "ERROR",
            &ApiError::expired(format!("too old resource version: {cursor} ({floor})")).to_status(),
        )
    };
    let mut next_bookmark = later(interval);
    loop {
        let s = *sig.borrow_and_update();
        if s.close_epoch != epochs.close_epoch {
            return;
        }
        let drained = shared.store().events_since(&res, cursor);
        let events = match drained {
            Ok((evs, to)) => {
                cursor = to;
                evs
            }
            Err(floor) => {
                let _ = tx.send(too_old(cursor, floor)).await;
                return;
            }
        };
        let mut out = Vec::new();
        for e in events {
            spec.translate(&mut out, &e);
            if out.len() >= WATCH_CHUNK
                && tx
                    .send(Bytes::from(std::mem::take(&mut out)))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
        if s.expire_epoch != epochs.expire_epoch {
            let floor = shared.store().floor();
            let _ = tx.send(too_old(cursor, floor)).await;
            return;
        }
        tokio::select! {
            r = sig.changed() => if r.is_err() { return },
            _ = tokio::time::sleep_until(next_bookmark) => {
                next_bookmark = later(interval);
                if spec.bookmarks && tx.send(spec.bookmark(cursor, false)).await.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                // As the real watch cache: a last bookmark right before the timeout.
                if spec.bookmarks {
                    let _ = tx.send(spec.bookmark(cursor, false)).await;
                }
                return;
            }
            _ = tx.closed() => return,
        }
    }
}

/// Now + `d`, saturating at a year (no overflow on absurd durations).
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(Duration::from_secs(365 * 86400)))
        .unwrap_or(now)
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "emulationMajor": "1",
        "emulationMinor": "37",
        "gitVersion": "v1.37.0-brindle-standin",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// Groups (not core) with their served versions, preferred first.
fn groups(store: &Store) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in store.types() {
        if t.group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) => {
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by_key(|v| resources::version_priority(v));
    }
    out
}

fn group_entry(store: &Store, group: &str) -> Option<Value> {
    let (g, vs) = groups(store).into_iter().find(|(g, _)| g == group)?;
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    Some(json!({"name": g, "versions": versions, "preferredVersion": versions[0]}))
}

fn wants_aggregated(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=APIGroupDiscoveryList"))
}

fn aggregated(store: &Store, core: bool) -> Value {
    let mut items = Vec::new();
    let gs: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        groups(store)
    };
    for (g, vs) in gs {
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| {
                let resources: Vec<Value> = store
                    .types()
                    .iter()
                    .filter(|t| t.group == g && t.version == *v)
                    .map(ResourceType::aggregated_entry)
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": g}, "versions": versions}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn aggregated_response(v: &Value) -> Response<Body> {
    full(
        200,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn discovery_api(shared: &Arc<Shared>, accept: &str) -> Response<Body> {
    if wants_aggregated(accept) {
        return aggregated_response(&aggregated(&shared.store(), true));
    }
    json_response(
        200,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": shared.settings.server_address}
            ],
        }),
    )
}

fn discovery_apis(shared: &Arc<Shared>, accept: &str) -> Response<Body> {
    let store = shared.store();
    if wants_aggregated(accept) {
        return aggregated_response(&aggregated(&store, false));
    }
    let groups: Vec<Value> = groups(&store)
        .iter()
        .filter_map(|(g, _)| group_entry(&store, g))
        .collect();
    json_response(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn resource_list(shared: &Arc<Shared>, group: &str, version: &str) -> Response<Body> {
    let store = shared.store();
    let resources: Vec<Value> = store
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(ResourceType::discovery_entries)
        .collect();
    if resources.is_empty() {
        return error_response(&not_found_resource());
    }
    json_response(
        200,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": resources::api_version(group, version),
            "resources": resources,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_routes() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1&x"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert!(truthy(&q, "watch") && truthy(&q, "x"));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        let s = Store::new(10);
        let r = |p: &str| match route(&s, p) {
            Route::Resource(t) => format!("{} {:?} {:?} {:?}", t.rt.plural, t.ns, t.name, t.sub),
            Route::NotFound => "404".into(),
            _ => "other".into(),
        };
        assert_eq!(r("/api/v1/nodes"), "nodes None None None");
        assert_eq!(
            r("/api/v1/nodes/n1/status"),
            "nodes None Some(\"n1\") Some(\"status\")"
        );
        assert_eq!(
            r("/api/v1/namespaces/default"),
            "namespaces None Some(\"default\") None"
        );
        assert_eq!(
            r("/api/v1/namespaces/kube-system/pods/p"),
            "pods Some(\"kube-system\") Some(\"p\") None"
        );
        assert_eq!(r("/api/v1/pods"), "pods None None None");
        assert_eq!(r("/api/v1/pods/p"), "404");
        assert_eq!(
            r("/apis/networking.k8s.io/v1/namespaces/a/networkpolicies"),
            "networkpolicies Some(\"a\") None None"
        );
        assert_eq!(r("/apis/nope/v1/things"), "404");
    }
}
