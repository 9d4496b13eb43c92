//! # brindle-kube-standin: a Kubernetes API stand-in for Brindle's tests
//!
//! No Kubernetes API server can run on the test machines, so Brindle's Kubernetes layer
//! (kube-rs client, `kube::runtime::watcher`) is tested against this: an in-memory
//! object store served over HTTPS (self-signed CA, bearer token, a kubeconfig), with the
//! API semantics a watcher/controller client relies on, and knobs to inject faults.
//! It runs in-process ([`StandIn::start`]) or as the `kube-standin` binary, which also
//! serves a control socket for shell-driven tests (see [`control`]).
//!
//! ## What it is
//! - Storage: each object as its serialized JSON (resourceVersion included) plus the
//!   few fields the store reads without parsing it (resourceVersion, labels, the
//!   type's selectable fields), keyed by (group, plural, namespace, name) and shared by
//!   every served version of a resource (the `apiVersion` is spliced in as the object
//!   is written out). List pages and watch events are written from the stored bytes;
//!   a write (update, patch, delete) parses the object it changes.
//!   [`StandIn::create_many`] and [`StandIn::load_json_file`] load many objects under
//!   one lock. One global, monotonically increasing `resourceVersion`
//!   counter (etcd's revision) stamped on every write; `uid`, `creationTimestamp` and
//!   `generation` (bumped when anything outside `metadata`/`status` changes) are set by
//!   the server. A no-op write stores nothing and bumps nothing, as in Kubernetes.
//! - A bounded event history ([`Config::history_limit`] events holding at most
//!   [`Config::history_bytes`] of objects); watches replay it. A watch from a
//!   resourceVersion older than it gets 410 `Expired`; so does a continue token of it,
//!   with a fresh continue token in the Status (`metadata.continue`, to go on with an
//!   inconsistent list), as the real API answers.
//!   [`StandIn::compact`] drops it, so every resourceVersion handed out so far is too
//!   old: watches from it and continue tokens of it get 410 `Expired`.
//! - Resources: core v1 `nodes`, `pods`, `namespaces`, `services`, `secrets`,
//!   `serviceaccounts`, `configmaps`, `endpoints`; `discovery.k8s.io/v1`
//!   `endpointslices`; `networking.k8s.io/v1` `networkpolicies`;
//!   `coordination.k8s.io/v1` `leases`; `apiextensions.k8s.io/v1`
//!   `customresourcedefinitions`: creating a CRD (over HTTP, from YAML, or with
//!   [`StandIn::register_crd`]) serves its resource at every served version, marks it
//!   Established, and deleting it deletes the resource and all its objects.
//! - Verbs, at the real paths (`/api/v1/nodes`, `/api/v1/namespaces/{ns}/pods/{name}`,
//!   `/apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/status]]`):
//!   - list: `labelSelector` (`k=v`, `k==v`, `k!=v`, `k in (..)`, `k notin (..)`, `k`,
//!     `!k`, `k>n`, `k<n`), `fieldSelector` (`=`, `==`, `!=` on `metadata.name`,
//!     `metadata.namespace` and per-type fields such as `spec.nodeName` for pods; other
//!     fields are 400 as in Kubernetes), `limit` + `continue` (tokens expire with the
//!     history: 410). `Accept: ...;as=PartialObjectMetadataList` is honoured.
//!   - watch (`watch=1|true`): newline-delimited JSON events, chunked; from
//!     `resourceVersion` N: the events after N; unset/`""`/`"0"`: synthetic ADDED for
//!     every existing object first; N older than the history: one ERROR event with a
//!     410 `Expired` Status, then the end (as the real API). Selector transitions turn
//!     into ADDED/DELETED. `allowWatchBookmarks=true`: BOOKMARK events every
//!     [`Config::bookmark_interval`] and right before the timeout. The stream ends after
//!     min(`timeoutSeconds`, [`Config::watch_timeout`]). `sendInitialEvents=true`
//!     (streaming lists) ends the initial events with the `k8s.io/initial-events-end`
//!     bookmark.
//!   - get (404 `NotFound` Status), create (201; 409 `AlreadyExists`; `generateName`;
//!     the namespace must exist), update (PUT; a stale `metadata.resourceVersion` or
//!     `uid` is 409 `Conflict` worded as Kubernetes words it; without one the update is
//!     unconditional), patch (merge, JSON patch RFC 6902 with add/remove/replace/move/
//!     copy/test, strategic merge with the usual merge keys — 415 on custom resources as
//!     in Kubernetes —, apply), delete (200 with the object, or a Success Status for
//!     custom resources; `preconditions.uid`/`resourceVersion` honoured with 409;
//!     finalizers: `deletionTimestamp` is set, 202, and the object goes when the last
//!     finalizer is removed; a namespace's objects go with it), deletecollection,
//!     `dryRun=All`.
//!   - `/status`: for types with the subresource, writes to the main resource keep the
//!     old status; writes to `/status` keep the old spec (built-ins: metadata such as
//!     annotations may change too, as for `nodes/status`; custom resources: only status).
//! - Discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}`,
//!   `/apis/{group}/{version}`, and aggregated discovery (apidiscovery.k8s.io/v2) when
//!   asked for by `Accept`.
//! - Validation of object metadata as `ValidateObjectMeta`: names (RFC 1123 subdomain;
//!   label for namespaces; DNS-1035 for services), label keys and values, annotation
//!   keys and total size: 422 `Invalid`.
//! - Auth: every request but `/version` and `/healthz|livez|readyz` needs
//!   `Authorization: Bearer <token>`; a wrong token is 401 everywhere.
//! - Faults: [`StandIn::set_unavailable`] (listener closed, every connection dropped,
//!   the same port rebound afterwards), [`StandIn::compact`],
//!   [`StandIn::close_watches`], [`StandIn::inject_conflict_next`],
//!   [`StandIn::inject_error`], [`StandIn::set_latency`]; counters of requests per verb
//!   and resource.
//!
//! ## Use
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use brindle_kube_standin::{Config, PatchType, StandIn};
//! use serde_json::json;
//! use std::time::Duration;
//!
//! let api = StandIn::start(Config {
//!     listen: "127.0.0.1:0".parse()?,
//!     watch_timeout: Duration::from_secs(3),
//!     bookmark_interval: Duration::from_millis(500),
//!     ..Config::default()
//! })?;
//! api.write_kubeconfig("/tmp/kubeconfig")?; // KUBECONFIG for brindle-node
//! api.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: calico-system\n")?;
//! api.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))?;
//! let labels = json!({"metadata": {"labels": {"a": "b"}}});
//! api.patch("v1", "Node", None, "n1", PatchType::Merge, &labels)?;
//! api.set_unavailable(true); // outage: refused connections, broken watches
//! api.set_unavailable(false);
//! api.compact(); // open watches get 410 and their watchers relist
//! assert_eq!(api.request_count_for("list", "nodes"), 0);
//! # Ok(())
//! # }
//! ```
//!
//! ## What it is NOT
//! Not a real API server: no admission (webhooks, defaulting of built-in fields such as
//! a Service's clusterIP or a Pod's restartPolicy, quota), no validation against
//! OpenAPI/CRD schemas (any spec is stored), no conversion webhooks, no RBAC (one token,
//! all powers), no server-side apply (an apply patch is approximated as "create, or
//! merge patch", with no field managers, ownership or apply conflicts), no
//! `managedFields`, no garbage collection by owner references, no graceful pod
//! deletion (no kubelet: pods go at once unless they carry finalizers), no namespace
//! `Terminating` phase (objects go at once), no protobuf, no HTTP/2, no
//! `resourceVersionMatch=Exact` snapshots (lists always show the present; a continued
//! list reports its first page's resourceVersion, which stays consistent for a watch
//! started from it), no watch cache lag, no `Table` output, no events API, no
//! priority-and-fairness. Strategic merge patch only knows a fixed table of merge keys.

mod control_impl;
mod error;
mod obj;
mod ops;
mod patch;
mod resources;
mod selector;
mod server;
mod store;
mod tls;

/// The control socket: a Unix-socket line protocol for tests in other processes.
pub mod control {
    pub use crate::control_impl::{request, HELP};
}

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use ops::parse_objects;
pub use resources::ResourceType;
pub use store::{EventType, PatchType};

use server::{lock, Fault, Settings, Shared};

/// How a stand-in is started.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one (kept across unavailability).
    /// Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The bearer token clients must present. Default `"standin-token"`.
    pub token: String,
    /// Extra subject alternative names for the server certificate (IPs or DNS names);
    /// the listen IP, `localhost`, `127.0.0.1` and `::1` are always in.
    pub sans: Vec<String>,
    /// Host to put in the kubeconfig's server URL; default the listen IP
    /// (`127.0.0.1` when listening on `0.0.0.0`).
    pub advertise: Option<String>,
    /// Server-side cap on a watch's duration (the client's `timeoutSeconds` is honoured
    /// when shorter). Default 30 minutes; a few seconds in tests exercise re-watching.
    pub watch_timeout: Duration,
    /// Interval of BOOKMARK events on watches that allow them. Default 60 s.
    pub bookmark_interval: Duration,
    /// Events kept for watches. Default 10,000.
    pub history_limit: usize,
    /// Budget of the watch history: the bytes of the objects its events hold (the
    /// newest event is always kept). Default 256 MiB.
    pub history_bytes: usize,
    /// Create `default`, `kube-system`, `kube-public` and `kube-node-lease` at start.
    /// Default true.
    pub default_namespaces: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            token: "standin-token".into(),
            sans: Vec::new(),
            advertise: None,
            watch_timeout: Duration::from_secs(1800),
            bookmark_interval: Duration::from_secs(60),
            history_limit: 10_000,
            history_bytes: 256 << 20,
            default_namespaces: true,
        }
    }
}

/// A running stand-in API server. It runs on a thread (and tokio runtime) of its own,
/// so it can be used from sync code and from any tokio runtime; dropping it stops it.
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    url: String,
    ca_pem: String,
    handle: tokio::runtime::Handle,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("url", &self.url).finish()
    }
}

fn host_for_url(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    }
}

impl StandIn {
    /// Generates the certificates, binds `config.listen` and starts serving.
    pub fn start(config: Config) -> anyhow::Result<StandIn> {
        let listen_ip = config.listen.ip();
        let advertise = match &config.advertise {
            Some(a) => a.clone(),
            None if listen_ip.is_unspecified() => match listen_ip {
                IpAddr::V4(_) => "127.0.0.1".into(),
                IpAddr::V6(_) => "::1".into(),
            },
            None => listen_ip.to_string(),
        };
        let mut sans = config.sans.clone();
        sans.push(listen_ip.to_string());
        sans.push(advertise.clone());
        let tls = tls::generate(&sans)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kube-standin")
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let handle = runtime.handle().clone();
        let first = {
            let _g = runtime.enter();
            server::bind_first(config.listen)
                .with_context(|| format!("binding {}", config.listen))?
        };
        let addr = first.local_addr()?;
        let url = format!("https://{}:{}", host_for_url(&advertise), addr.port());

        let (available, _) = tokio::sync::watch::channel(true);
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::with_budget(
                config.history_limit,
                config.history_bytes,
            )),
            settings: Settings {
                token: config.token.clone(),
                watch_timeout: config.watch_timeout,
                bookmark_interval: config.bookmark_interval,
                server_address: format!("{}:{}", host_for_url(&advertise), addr.port()),
            },
            stats: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            latency_ms: Default::default(),
            unauthorized: Default::default(),
            active_watches: Default::default(),
            available,
            listening: Mutex::new(true),
            listening_cv: Condvar::new(),
            outage_gen: Default::default(),
        });
        if config.default_namespaces {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                shared
                    .create_obj(serde_json::json!({
                        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
                    }))
                    .map_err(|e| anyhow::anyhow!("creating namespace {ns}: {e}"))?;
            }
        }
        let shutdown = CancellationToken::new();
        let thread = {
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("kube-standin".into())
                .spawn(move || {
                    runtime.block_on(server::supervise(shared, acceptor, first, shutdown));
                    runtime.shutdown_timeout(Duration::from_secs(1));
                })
                .context("spawning the server thread")?
        };
        Ok(StandIn {
            shared,
            addr,
            url,
            ca_pem: tls.ca_pem,
            handle,
            shutdown,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://host:port`, as in the kubeconfig.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.shared.settings.token
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig (context `standin`, namespace `default`) with the server URL, the
    /// CA data embedded and the token.
    pub fn kubeconfig_yaml(&self) -> String {
        tls::kubeconfig(&self.url, &self.ca_pem, self.token())
    }

    /// Writes [`StandIn::kubeconfig_yaml`] to `path` atomically (temp file + rename),
    /// so that a process waiting for the file never reads half of it.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        let tmp = path.with_extension("tmp-standin");
        std::fs::write(&tmp, self.kubeconfig_yaml())?;
        std::fs::rename(&tmp, path)
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write_ca(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, &self.ca_pem)
    }

    // ---- the store, directly (writes emit watch events) ----

    /// Creates an object (`apiVersion`/`kind`/`metadata.name` required; namespace from
    /// `metadata.namespace`, default `default`). Whole object, status included; the
    /// namespace need not exist. 409 if it exists.
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        self.shared.create_obj(obj)
    }

    /// Creates many objects under one lock (CRDs first, then namespaces, then the rest
    /// in the given order), each as [`StandIn::create`] does; the fast way to load a
    /// large cluster. Stops at the first error (the objects before it stay), telling
    /// which one. Returns how many were created.
    pub fn create_many(&self, objs: Vec<Value>) -> anyhow::Result<usize> {
        let n = objs.len();
        self.shared
            .create_many(objs)
            .map_err(|(i, e)| anyhow::anyhow!("creating object {} of {n}: {e}", i + 1))
    }

    /// [`StandIn::create_many`] of the objects of a JSON file: one object, an array, a
    /// `kind: List`, or a sequence of them (e.g. one object per line).
    pub fn load_json_file(&self, path: impl AsRef<Path>) -> anyhow::Result<usize> {
        self.shared.load_json_file(path.as_ref())
    }

    /// Replaces an object: 404 if missing, 409 if `metadata.resourceVersion` is set and
    /// stale. Whole object, status included.
    pub fn update(&self, obj: Value) -> Result<Value, ApiError> {
        self.shared.update_obj(obj)
    }

    /// Creates or replaces an object, ignoring any `resourceVersion`/`uid` in it.
    pub fn apply(&self, obj: Value) -> Result<Value, ApiError> {
        self.shared.apply_obj(obj)
    }

    /// Applies every object of a multi-document YAML text (CRDs first, then
    /// namespaces); returns them as stored.
    pub fn apply_yaml(&self, yaml: &str) -> anyhow::Result<Vec<Value>> {
        self.shared.apply_text(yaml)
    }

    /// [`StandIn::apply_yaml`] of a file.
    pub fn load_file(&self, path: impl AsRef<Path>) -> anyhow::Result<Vec<Value>> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        self.apply_yaml(&text)
            .with_context(|| format!("loading {}", path.display()))
    }

    /// Patches an object (whole object: status included).
    pub fn patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        self.shared
            .patch_obj(api_version, kind, namespace, name, patch_type, patch)
    }

    /// Deletes an object (finalizers are honoured: it then only gets a
    /// deletionTimestamp).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.shared.delete_obj(api_version, kind, namespace, name)
    }

    /// One object, if it exists.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.shared.get_obj(api_version, kind, namespace, name)
    }

    /// The objects of a kind (in a namespace, or all with `None`), in key order.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        self.shared.list_objs(api_version, kind, namespace)
    }

    /// Every stored object.
    pub fn dump(&self) -> Vec<Value> {
        self.shared.dump()
    }

    /// Registers a custom resource (as a minimal CRD with a status subresource and an
    /// open schema), so it is served and discoverable.
    pub fn register_crd(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> Result<Value, ApiError> {
        self.apply(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {
                "group": group,
                "names": {
                    "kind": kind,
                    "listKind": format!("{kind}List"),
                    "plural": plural,
                    "singular": kind.to_ascii_lowercase(),
                },
                "scope": if namespaced { "Namespaced" } else { "Cluster" },
                "versions": [{
                    "name": version,
                    "served": true,
                    "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                    "subresources": {"status": {}},
                }],
            },
        }))
    }

    /// The resource types served now.
    pub fn resource_types(&self) -> Vec<ResourceType> {
        self.shared.store().types().to_vec()
    }

    /// The current resourceVersion (revision).
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    // ---- faults ----

    /// Drops the event history: every resourceVersion handed out so far becomes too
    /// old (watches from it, and continue tokens of it, get 410 `Expired`), and open
    /// watches end with a 410 ERROR event, so that watchers relist.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Ends every open watch stream cleanly, as the server-side timeout does (watchers
    /// re-watch from their last resourceVersion).
    pub fn close_watches(&self) {
        self.shared.store().close_watches();
    }

    /// `true`: a real outage — the listener is closed (new connections are refused)
    /// and every open connection, watches included, is dropped. `false`: the same
    /// address is bound again. Returns once the listener follows.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.set_available(!unavailable);
    }

    /// Whether [`StandIn::set_unavailable`] is in force.
    pub fn is_unavailable(&self) -> bool {
        !*self.shared.available.borrow()
    }

    /// The next `n` update/patch requests (over HTTP) answer 409 `Conflict`.
    pub fn inject_conflict_next(&self, n: u32) {
        for verb in ["update", "patch"] {
            self.inject_error(Some(verb), None, 409, n);
        }
    }

    /// The next `count` HTTP requests of `verb` (`get`, `list`, `watch`, `create`,
    /// `update`, `patch`, `delete`, `deletecollection`; `None` = any) on `resource`
    /// (plural; `None` = any) answer `code` with a Status (429/503 with `Retry-After:
    /// 1`; a 410 on a watch comes as an ERROR event, as the real API sends it).
    pub fn inject_error(&self, verb: Option<&str>, resource: Option<&str>, code: u16, count: u32) {
        lock(&self.shared.faults).push(Fault {
            verb: verb.map(str::to_string),
            resource: resource.map(str::to_string),
            code,
            count,
        });
    }

    /// Forgets every injected error.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Delays every HTTP response by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    // ---- observation ----

    /// Requests of `verb` on any resource so far (`get`, `list`, `watch`, `create`,
    /// `update`, `patch`, `delete`, `deletecollection`; discovery is `get` of
    /// `discovery`, rejected tokens are `unauthorized`).
    pub fn request_count(&self, verb: &str) -> u64 {
        lock(&self.shared.stats)
            .iter()
            .filter(|((v, _), _)| v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests of `verb` on `resource` (plural) so far.
    pub fn request_count_for(&self, verb: &str, resource: &str) -> u64 {
        lock(&self.shared.stats)
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// All counters: (verb, resource) → requests.
    pub fn requests(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.shared.stats).clone()
    }

    /// Zeroes the counters.
    pub fn reset_counters(&self) {
        lock(&self.shared.stats).clear();
        self.shared.unauthorized.store(0, Ordering::Relaxed);
    }

    /// Requests rejected with 401.
    pub fn unauthorized_count(&self) -> u64 {
        self.shared.unauthorized.load(Ordering::Relaxed)
    }

    /// Watch streams open now.
    pub fn active_watches(&self) -> usize {
        self.shared.active_watches.load(Ordering::Relaxed)
    }

    /// Waits (async, polling) until at least `n` watches are open; false on timeout.
    pub async fn wait_for_watches(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.active_watches() >= n)
            .await
    }

    /// Waits (async, polling) until `verb` on `resource` was requested at least `n`
    /// times; false on timeout.
    pub async fn wait_for_requests(
        &self,
        verb: &str,
        resource: &str,
        n: u64,
        timeout: Duration,
    ) -> bool {
        self.wait_until(timeout, || self.request_count_for(verb, resource) >= n)
            .await
    }

    async fn wait_until(&self, timeout: Duration, cond: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now().checked_add(timeout);
        loop {
            if cond() {
                return true;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Serves the control socket (see [`control`]) at `path` on the stand-in's own
    /// runtime (a stale socket file is replaced).
    pub fn serve_control_socket(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        let path = path.as_ref().to_path_buf();
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("binding {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let shared = self.shared.clone();
        let shutdown = self.shutdown.clone();
        self.handle
            .spawn(control_impl::serve(shared, listener, shutdown));
        Ok(())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
