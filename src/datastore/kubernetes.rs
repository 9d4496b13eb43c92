//! The Kubernetes backend: Calico's own storage on the API server, read and written
//! exactly as calico-node does, so that Brindle finds on a Calico cluster every
//! BGPConfiguration, BGPPeer, IPPool and node address as Calico left them.
//!
//! - Calico's resources are CRDs in `crd.projectcalico.org/v1` (the same `spec` as
//!   `projectcalico.org/v3`; v3 metadata such as labels in the annotation
//!   `projectcalico.org/metadata`), or `projectcalico.org/v3` CRDs on clusters set up
//!   that way by recent Calico versions. Which one is detected as Calico does
//!   (`libcalico-go/lib/backend/k8s/discovery.go`): `CALICO_API_GROUP` if set, else
//!   v1 when the API has `crd.projectcalico.org`, v3 when it has only `projectcalico.org`.
//! - A node's BGP settings are annotations on its Kubernetes Node
//!   (`projectcalico.org/IPv4Address`, `ASNumber`, …), translated by
//!   [`brindle_model::kubernetes::node_from_kubernetes`] into Calico's Node.
//! - Pods, Namespaces, Services, EndpointSlices and NetworkPolicies are watched as the
//!   API has them.
//!
//! One kube-runtime watcher per kind (list, then watch from the list's resourceVersion,
//! relist on `410 Gone`, back-off on errors) feeds the seam's events. While the API is
//! unreachable nothing is withdrawn: the last state stays in force, the agent keeps
//! forwarding and every BGP session, and the watchers reconnect with back-off and
//! relist. An object that does not decode is reported with its kind, namespace, name
//! and field and skipped; the rest keeps working.

use super::slim::{
    EndpointSliceKind, NamespaceKind, NodeKind, PodKind, ServiceAccountKind, ServiceKind, Slim,
    SlimKind,
};
use super::{Event, Stored, WriteError};
use brindle_model::decode::kubernetes::{from_api_json, API_JSON_KINDS};
use brindle_model::{Kind, Resource, API_VERSION, CRD_API_VERSION};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

/// Annotation holding a v3 resource's metadata on its v1 CRD object.
const METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

/// Which storage Calico's resources use on this cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalicoGroup {
    /// `crd.projectcalico.org/v1` (calico-node's default storage).
    CrdV1,
    /// `projectcalico.org/v3` CRDs.
    V3,
}

impl CalicoGroup {
    pub fn group(self) -> &'static str {
        match self {
            CalicoGroup::CrdV1 => "crd.projectcalico.org",
            CalicoGroup::V3 => "projectcalico.org",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            CalicoGroup::CrdV1 => "v1",
            CalicoGroup::V3 => "v3",
        }
    }
}

/// The API resource a kind is stored as.
pub fn api_resource(kind: Kind, group: CalicoGroup) -> ApiResource {
    let core =
        |api_version: &str, group: &str, version: &str, kind: &str, plural: &str| ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
    let calico = |kind: &str, plural: &str| {
        let (g, v) = (group.group(), group.version());
        ApiResource {
            group: g.into(),
            version: v.into(),
            api_version: format!("{g}/{v}"),
            kind: kind.into(),
            plural: plural.into(),
        }
    };
    match kind {
        Kind::Node => core("v1", "", "v1", "Node", "nodes"),
        Kind::Pod => core("v1", "", "v1", "Pod", "pods"),
        Kind::Namespace => core("v1", "", "v1", "Namespace", "namespaces"),
        Kind::ServiceAccount => core("v1", "", "v1", "ServiceAccount", "serviceaccounts"),
        Kind::Service => core("v1", "", "v1", "Service", "services"),
        Kind::EndpointSlice => core(
            "discovery.k8s.io/v1",
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
        ),
        Kind::KubernetesNetworkPolicy => core(
            "networking.k8s.io/v1",
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
        ),
        Kind::BgpConfiguration => calico("BGPConfiguration", "bgpconfigurations"),
        Kind::BgpPeer => calico("BGPPeer", "bgppeers"),
        Kind::IpPool => calico("IPPool", "ippools"),
        Kind::BlockAffinity => calico("BlockAffinity", "blockaffinities"),
        Kind::IpamConfig => match group {
            CalicoGroup::CrdV1 => calico("IPAMConfig", "ipamconfigs"),
            CalicoGroup::V3 => calico("IPAMConfiguration", "ipamconfigurations"),
        },
        Kind::NetworkPolicy => calico("NetworkPolicy", "networkpolicies"),
        Kind::GlobalNetworkPolicy => calico("GlobalNetworkPolicy", "globalnetworkpolicies"),
        Kind::HostEndpoint => calico("HostEndpoint", "hostendpoints"),
        Kind::GlobalNetworkSet => calico("GlobalNetworkSet", "globalnetworksets"),
        Kind::NetworkSet => calico("NetworkSet", "networksets"),
        Kind::FelixConfiguration => calico("FelixConfiguration", "felixconfigurations"),
    }
}

/// The v3 form of an object as stored (`crd.projectcalico.org/v1` → `projectcalico.org/v3`
/// with the metadata from its annotation); other objects get their `apiVersion` and
/// `kind` (list items lack them).
pub fn to_v3(kind: Kind, ar: &ApiResource, mut v: serde_json::Value) -> serde_json::Value {
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    if !kind.is_calico() {
        obj.insert("apiVersion".into(), ar.api_version.clone().into());
        obj.insert("kind".into(), ar.kind.clone().into());
        return v;
    }
    obj.insert("apiVersion".into(), API_VERSION.into());
    obj.insert("kind".into(), kind.as_str().into());
    if ar.api_version == CRD_API_VERSION {
        if let Some(meta) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            let stored: Option<serde_json::Value> = meta
                .get("annotations")
                .and_then(|a| a.get(METADATA_ANNOTATION))
                .and_then(|s| s.as_str())
                .and_then(|s| serde_json::from_str(s).ok());
            if let Some(annotations) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                annotations.remove(METADATA_ANNOTATION);
            }
            if let Some(serde_json::Value::Object(stored)) = stored {
                for key in ["labels", "annotations"] {
                    if let Some(value) = stored.get(key) {
                        meta.insert(key.into(), value.clone());
                    }
                }
            }
        }
    }
    v
}

/// Decodes one object from the API into the seam's event.
fn label_of(kind: Kind, value: &serde_json::Value) -> String {
    let m = value.get("metadata");
    let name = m
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("?");
    match m.and_then(|m| m.get("namespace")).and_then(|n| n.as_str()) {
        Some(ns) => format!("{}/{ns}/{name}", kind.as_str()),
        None => format!("{}/{name}", kind.as_str()),
    }
}

/// Decodes one object from the API into the seam's event.
pub fn decode(kind: Kind, ar: &ApiResource, value: serde_json::Value) -> Event {
    let label = |v: &serde_json::Value| label_of(kind, v);
    if API_JSON_KINDS.contains(&kind) {
        // as the watchers decode them (module `slim`), here from a JSON value
        return match from_api_json(kind, &value.to_string()) {
            Ok((o, _)) => Event::Apply(Box::new(o)),
            Err(e) => Event::Invalid {
                kind: Some(kind),
                label: e.label,
                error: e.message,
            },
        };
    }
    let v3 = to_v3(kind, ar, value);
    let source = format!("{}/{}", ar.api_version, ar.plural);
    match brindle_model::decode_json(&source, &v3) {
        Ok(Some(mut o)) => {
            if !kind.is_calico() {
                // Kubernetes NetworkPolicies: only the decoded fields are kept (memory).
                // Calico objects keep their JSON for `brindlectl get`.
                o.raw.json = serde_json::Value::Null;
            }
            Event::Apply(Box::new(o))
        }
        Ok(None) => Event::Warnings(vec![format!("{}: skipped", label(&v3))]),
        Err(e) => Event::Invalid {
            kind: Some(kind),
            label: label(&v3),
            error: e.to_string(),
        },
    }
}

fn key_of(kind: Kind, meta: &kube::api::ObjectMeta) -> Event {
    Event::Delete {
        kind,
        namespace: if kind.namespaced() {
            meta.namespace.clone()
        } else {
            None
        },
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// Builds a client from a kubeconfig file, else in-cluster / `KUBECONFIG`.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            anyhow::anyhow!("no Kubernetes configuration (in-cluster or KUBECONFIG): {e}")
        })?,
    };
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(330));
    Client::try_from(config).map_err(|e| anyhow::anyhow!("Kubernetes client: {e}"))
}

/// Which Calico storage the cluster has (retried until the API answers).
pub async fn detect_group(client: &Client) -> Result<CalicoGroup, String> {
    if let Ok(v) = std::env::var("CALICO_API_GROUP") {
        return match v.trim() {
            "projectcalico.org/v3" | "projectcalico.org" => Ok(CalicoGroup::V3),
            "crd.projectcalico.org/v1" | "crd.projectcalico.org" | "" => Ok(CalicoGroup::CrdV1),
            other => Err(format!("CALICO_API_GROUP={other:?} is neither crd.projectcalico.org/v1 nor projectcalico.org/v3")),
        };
    }
    let groups = client
        .list_api_groups()
        .await
        .map_err(|e| format!("API discovery failed: {e}"))?;
    let has = |g: &str| groups.groups.iter().any(|x| x.name == g);
    if has("crd.projectcalico.org") {
        Ok(CalicoGroup::CrdV1)
    } else if has("projectcalico.org") {
        Ok(CalicoGroup::V3)
    } else {
        Err("the API has no Calico CRDs (neither crd.projectcalico.org nor projectcalico.org): install examples/kubernetes/crds".into())
    }
}

/// Writes to the API.
/// Every object of `kinds`, listed once and decoded as the watchers decode them (bad
/// ones skipped with a warning): for one-shot tools (`brindlectl policy explain`).
pub async fn list_objects(
    client: &Client,
    group: CalicoGroup,
    kinds: &[Kind],
) -> Result<Vec<brindle_model::Object>, String> {
    let mut out = Vec::new();
    for kind in kinds {
        let ar = api_resource(*kind, group);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let mut lp = kube::api::ListParams::default().limit(500);
        loop {
            let page = api
                .list(&lp)
                .await
                .map_err(|e| format!("listing {}: {e}", ar.plural))?;
            for o in page.items {
                let v = serde_json::to_value(&o).unwrap_or_default();
                match decode(*kind, &ar, v) {
                    Event::Apply(obj) => out.push(*obj),
                    Event::Invalid { label, error, .. } => warn!("{label}: {error} (skipped)"),
                    _ => {}
                }
            }
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
    }
    Ok(out)
}

/// Every IPPool, decoded as the watchers decode it (a bad one is logged and skipped).
pub async fn list_ip_pools(
    client: &Client,
    group: CalicoGroup,
) -> Result<Vec<brindle_model::IpPoolSpec>, String> {
    let ar = api_resource(Kind::IpPool, group);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut pools = Vec::new();
    for o in list.items {
        let v = serde_json::to_value(&o).unwrap_or_default();
        match decode(Kind::IpPool, &ar, v) {
            Event::Apply(obj) => {
                if let brindle_model::Resource::IpPool(p) = &obj.resource {
                    pools.push((**p).clone());
                }
            }
            Event::Invalid { label, error, .. } => tracing::warn!("{label}: {error} (skipped)"),
            _ => {}
        }
    }
    Ok(pools)
}

pub struct KubeWriter {
    client: Client,
    group: Arc<std::sync::OnceLock<CalicoGroup>>,
}

/// An object to write, typed as the resource it is stored as.
fn typed_object(json: serde_json::Value, ar: &ApiResource) -> Result<DynamicObject, WriteError> {
    let mut obj: DynamicObject =
        serde_json::from_value(json).map_err(|e| WriteError::Other(e.to_string()))?;
    obj.types = Some(kube::api::TypeMeta {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
    });
    Ok(obj)
}

fn write_error(e: kube::Error) -> WriteError {
    match e {
        kube::Error::Api(s) if s.code == 409 => WriteError::Conflict(s.message.clone()),
        kube::Error::Api(s) if s.code == 404 => WriteError::NotFound(s.message.clone()),
        other => WriteError::Other(other.to_string()),
    }
}

impl KubeWriter {
    /// The client and the Calico group (once detected), for the IPAM store.
    pub fn client_and_group(&self) -> Option<(Client, CalicoGroup)> {
        self.group.get().map(|g| (self.client.clone(), *g))
    }

    fn api(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<(Api<DynamicObject>, ApiResource), WriteError> {
        let group = *self
            .group
            .get()
            .ok_or_else(|| WriteError::Other("the Calico API group is not known yet".into()))?;
        let ar = api_resource(kind, group);
        let api = match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        Ok((api, ar))
    }

    pub async fn patch_node_annotations(
        &self,
        node: &str,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<(), WriteError> {
        let ar = api_resource(Kind::Node, CalicoGroup::CrdV1);
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        // calico-node writes these through the status subresource (Nodes().UpdateStatus).
        api.patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    pub async fn get(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Stored>, WriteError> {
        let (api, _) = self.api(kind, namespace)?;
        match api.get_opt(name).await.map_err(write_error)? {
            None => Ok(None),
            Some(o) => {
                let resource_version = o.metadata.resource_version.clone().unwrap_or_default();
                Ok(Some(Stored {
                    json: serde_json::to_value(&o).map_err(|e| WriteError::Other(e.to_string()))?,
                    resource_version,
                }))
            }
        }
    }

    pub async fn compare_and_swap(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        json: serde_json::Value,
        resource_version: &str,
    ) -> Result<String, WriteError> {
        let (api, ar) = self.api(kind, namespace)?;
        let mut obj = typed_object(json, &ar)?;
        obj.metadata.resource_version = Some(resource_version.to_string());
        let done = api
            .replace(name, &PostParams::default(), &obj)
            .await
            .map_err(write_error)?;
        Ok(done.metadata.resource_version.unwrap_or_default())
    }

    pub async fn create(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        json: serde_json::Value,
    ) -> Result<String, WriteError> {
        let (api, ar) = self.api(kind, namespace)?;
        let obj = typed_object(json, &ar)?;
        let done = api
            .create(&PostParams::default(), &obj)
            .await
            .map_err(write_error)?;
        Ok(done.metadata.resource_version.unwrap_or_default())
    }
}

/// Connects and starts one watcher per kind; events go to `tx`.
pub async fn start(
    kubeconfig: Option<PathBuf>,
    node_name: String,
    kinds: &[Kind],
    tx: UnboundedSender<Event>,
) -> anyhow::Result<KubeWriter> {
    let client = client(kubeconfig.as_deref()).await?;
    let group = Arc::new(std::sync::OnceLock::new());
    let writer = KubeWriter {
        client: client.clone(),
        group: group.clone(),
    };
    let kinds = kinds.to_vec();
    info!(node = %node_name, "Kubernetes datastore: connecting");
    tokio::spawn(async move {
        // Which Calico storage: retried with back-off until the API answers.
        let mut delay = Duration::from_millis(250);
        let g = loop {
            match detect_group(&client).await {
                Ok(g) => break g,
                Err(e) => {
                    let _ = tx.send(Event::Connection(Some(e)));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        info!(
            group = g.group(),
            version = g.version(),
            "Calico resources found"
        );
        let _ = group.set(g);
        let _ = tx.send(Event::Connection(None));
        let health = Arc::new(Health::default());
        for kind in kinds {
            tokio::spawn(watch_kind(
                client.clone(),
                kind,
                g,
                tx.clone(),
                health.clone(),
            ));
        }
        probe_while_failing(client, tx, health).await;
    });
    Ok(writer)
}

/// Whether the API is reachable, as the watchers see it. A watcher that fails says so; a
/// watcher that recovers may resume its watch silently (no event until something
/// changes), so recovery is judged by a probe of the API instead.
#[derive(Default)]
struct Health {
    state: std::sync::Mutex<(bool, Option<std::time::Instant>)>, // (failing, last failure)
}

impl Health {
    fn failed(&self, tx: &UnboundedSender<Event>, reason: String) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = Some(std::time::Instant::now());
        if !s.0 {
            s.0 = true;
            let _ = tx.send(Event::Connection(Some(reason)));
        }
    }
}

/// While a watcher has failed: probe `/version` every second; once it answers and no
/// watcher failed for 3 s, the datastore is reachable again.
async fn probe_while_failing(client: Client, tx: UnboundedSender<Event>, health: Arc<Health>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        let quiet = {
            let s = health.state.lock().unwrap_or_else(|e| e.into_inner());
            s.0 && s.1.is_none_or(|t| t.elapsed() >= Duration::from_secs(3))
        };
        if quiet && client.apiserver_version().await.is_ok() {
            let mut s = health.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.1.is_none_or(|t| t.elapsed() >= Duration::from_secs(3)) {
                s.0 = false;
                let _ = tx.send(Event::Connection(None));
            }
        }
    }
}

/// Retry delays of a failed watch: 250 ms doubling to at most 4 s, with up to 25 %
/// jitter (so that thousands of nodes do not retry in step). kube-runtime's default
/// climbs to 30 s plus 100 % jitter and is reset only when a watch delivers an event,
/// so a quiet kind could resync a minute after the API came back (measured in the
/// end-to-end test: 32–46 s for all watches).
struct WatchBackoff {
    next: Duration,
    seed: u64,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(4);

    fn new(salt: u64) -> WatchBackoff {
        WatchBackoff {
            next: Self::FIRST,
            seed: u64::from(std::process::id()) << 8 ^ salt ^ 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        // xorshift: cheap jitter, no shared RNG
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let jitter = base.mul_f64((self.seed % 1000) as f64 / 4000.0);
        Some(base + jitter)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The namespace whose Secrets hold BGP passwords (`password.secretKeyRef`): the agent's
/// own, as calico-node's (`POD_NAMESPACE` from the downward API; default `kube-system`).
fn secrets_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kube-system".into())
}

/// Reads one key of a Secret (`Ok(None)`: no such Secret or key).
async fn read_secret(
    client: &Client,
    namespace: &str,
    r: &brindle_model::SecretKeyRef,
) -> Result<Option<String>, String> {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(&r.name).await {
        Ok(Some(s)) => {
            let from_data = s.data.as_ref().and_then(|d| d.get(&r.key)).map(|b| {
                String::from_utf8_lossy(&b.0)
                    .trim_end_matches('\n')
                    .to_string()
            });
            let from_string = s.string_data.as_ref().and_then(|d| d.get(&r.key)).cloned();
            Ok(from_data.or(from_string))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Fills BGP passwords given as `secretKeyRef` from their Secrets (Secrets are read only
/// when referenced). An unresolved reference leaves no password, with a warning.
async fn resolve_secrets(client: &Client, event: &mut Event) {
    let Event::Apply(o) = event else {
        return;
    };
    let ns = secrets_namespace();
    let (wanted, label) = match &o.resource {
        Resource::BgpPeer(p) => (p.unresolved_password().cloned(), o.label.clone()),
        Resource::BgpConfiguration(c) => (c.unresolved_mesh_password().cloned(), o.label.clone()),
        _ => return,
    };
    let Some(r) = wanted else {
        return;
    };
    match read_secret(client, &ns, &r).await {
        Ok(Some(v)) => match &mut o.resource {
            Resource::BgpPeer(p) => p.password = Some(v),
            Resource::BgpConfiguration(c) => c.node_mesh_password = Some(v),
            _ => {}
        },
        Ok(None) if r.optional => {}
        Ok(None) => o.warnings.push(format!(
            "{label}: password.secretKeyRef: Secret {ns}/{} has no key {:?}: the sessions have no password",
            r.name, r.key
        )),
        Err(e) => o.warnings.push(format!(
            "{label}: password.secretKeyRef: cannot read Secret {ns}/{}: {e}: the sessions have no password",
            r.name
        )),
    }
}

/// How often Secrets referenced by BGP passwords are read again.
const SECRET_REFRESH: Duration = Duration::from_secs(60);

/// An object type the watchers list and watch: how its events become the seam's.
trait Watched:
    kube::Resource<DynamicType = ApiResource>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + 'static
{
    /// The seam's event for an applied object, plus the object's JSON when it must be
    /// decoded again later (its password comes from a Secret that is re-read).
    fn applied(self, kind: Kind, ar: &ApiResource) -> (Event, Option<serde_json::Value>);
}

impl Watched for DynamicObject {
    fn applied(self, kind: Kind, ar: &ApiResource) -> (Event, Option<serde_json::Value>) {
        match serde_json::to_value(&self) {
            Ok(v) => {
                let e = decode(kind, ar, v.clone());
                let again = match &e {
                    Event::Apply(o) => match &o.resource {
                        Resource::BgpPeer(p) => p.unresolved_password().is_some(),
                        Resource::BgpConfiguration(c) => c.unresolved_mesh_password().is_some(),
                        _ => false,
                    },
                    _ => false,
                };
                (e, again.then_some(v))
            }
            Err(e) => (
                Event::Invalid {
                    kind: Some(kind),
                    label: format!("{kind}/{}", self.metadata.name.unwrap_or_default()),
                    error: e.to_string(),
                },
                None,
            ),
        }
    }
}

impl<K: SlimKind> Watched for Slim<K> {
    fn applied(self, kind: Kind, _: &ApiResource) -> (Event, Option<serde_json::Value>) {
        let e = match self.decoded {
            Ok(o) => Event::Apply(o),
            Err(e) => Event::Invalid {
                kind: Some(kind),
                label: e.label,
                error: e.message,
            },
        };
        (e, None)
    }
}

/// Decodes one list page of `kind` (the API's JSON) into the seam's events exactly as
/// the watchers do; for the datastore benchmark's profile.
pub fn decode_list_page(
    kind: Kind,
    group: CalicoGroup,
    page: &str,
) -> Result<Vec<Event>, serde_json::Error> {
    fn events<K: Watched>(
        kind: Kind,
        ar: &ApiResource,
        page: &str,
    ) -> Result<Vec<Event>, serde_json::Error> {
        let list: kube::core::ObjectList<K> = serde_json::from_str(page)?;
        Ok(list
            .items
            .into_iter()
            .map(|o| o.applied(kind, ar).0)
            .collect())
    }
    let ar = api_resource(kind, group);
    match kind {
        Kind::Pod => events::<Slim<PodKind>>(kind, &ar, page),
        Kind::Node => events::<Slim<NodeKind>>(kind, &ar, page),
        Kind::Namespace => events::<Slim<NamespaceKind>>(kind, &ar, page),
        Kind::ServiceAccount => events::<Slim<ServiceAccountKind>>(kind, &ar, page),
        Kind::Service => events::<Slim<ServiceKind>>(kind, &ar, page),
        Kind::EndpointSlice => events::<Slim<EndpointSliceKind>>(kind, &ar, page),
        _ => events::<DynamicObject>(kind, &ar, page),
    }
}

async fn watch_kind(
    client: Client,
    kind: Kind,
    group: CalicoGroup,
    tx: UnboundedSender<Event>,
    health: Arc<Health>,
) {
    // Kubernetes kinds are decoded straight from the JSON (module `slim`); Calico's
    // resources, few and strictly checked, through `DynamicObject` and `decode_json`.
    match kind {
        Kind::Pod => watch::<Slim<PodKind>>(client, kind, group, tx, health).await,
        Kind::Node => watch::<Slim<NodeKind>>(client, kind, group, tx, health).await,
        Kind::Namespace => watch::<Slim<NamespaceKind>>(client, kind, group, tx, health).await,
        Kind::ServiceAccount => {
            watch::<Slim<ServiceAccountKind>>(client, kind, group, tx, health).await
        }
        Kind::Service => watch::<Slim<ServiceKind>>(client, kind, group, tx, health).await,
        Kind::EndpointSlice => {
            watch::<Slim<EndpointSliceKind>>(client, kind, group, tx, health).await
        }
        _ => watch::<DynamicObject>(client, kind, group, tx, health).await,
    }
}

async fn watch<K: Watched>(
    client: Client,
    kind: Kind,
    group: CalicoGroup,
    tx: UnboundedSender<Event>,
    health: Arc<Health>,
) {
    let ar = api_resource(kind, group);
    let api: Api<K> = Api::all_with(client.clone(), &ar);
    // objects whose password comes from a Secret, as last received (re-read periodically)
    let mut secret_users: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut refresh = tokio::time::interval(SECRET_REFRESH);
    refresh.tick().await;
    let mut stream = watcher(api, watcher::Config::default().page_size(500))
        .backoff(WatchBackoff::new(kind as u64))
        .boxed();
    loop {
        let item = tokio::select! {
            item = stream.next() => match item {
                Some(item) => item,
                None => return,
            },
            _ = refresh.tick(), if !secret_users.is_empty() => {
                for v in secret_users.values() {
                    let mut e = decode(kind, &ar, v.clone());
                    resolve_secrets(&client, &mut e).await;
                    let _ = tx.send(e);
                }
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let event = match item {
            Ok(e) => e,
            Err(e) => {
                warn!(kind = %kind, error = %e, "watch failed; retrying with back-off (nothing is withdrawn meanwhile)");
                health.failed(&tx, format!("{kind} watch: {e}"));
                continue;
            }
        };
        let out = match event {
            watcher::Event::Init => Event::Restart(kind),
            watcher::Event::InitDone => Event::InSync(kind),
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let name = o.meta().name.clone().unwrap_or_default();
                let (mut e, again) = o.applied(kind, &ar);
                match again {
                    Some(v) => {
                        secret_users.insert(name, v);
                        resolve_secrets(&client, &mut e).await;
                    }
                    None => {
                        secret_users.remove(&name);
                    }
                }
                e
            }
            watcher::Event::Delete(o) => {
                secret_users.remove(o.meta().name.as_deref().unwrap_or_default());
                key_of(kind, o.meta())
            }
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_crd_objects_become_v3_with_their_stored_metadata() {
        let ar = api_resource(Kind::BgpPeer, CalicoGroup::CrdV1);
        let stored = serde_json::json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "BGPPeer",
            "metadata": {
                "name": "tor",
                "resourceVersion": "812",
                "uid": "0b7c1d7e-0000-0000-0000-000000000000",
                "annotations": {
                    "projectcalico.org/metadata": "{\"uid\":\"x\",\"creationTimestamp\":null,\"labels\":{\"role\":\"tor\"}}"
                }
            },
            "spec": {"peerIP": "10.0.0.254", "asNumber": 65000, "nodeSelector": "all()"}
        });
        let Event::Apply(o) = decode(Kind::BgpPeer, &ar, stored) else {
            panic!("not applied")
        };
        assert_eq!(o.raw.json["apiVersion"], API_VERSION);
        assert_eq!(o.raw.json["metadata"]["labels"]["role"], "tor");
        let Resource::BgpPeer(p) = o.resource else {
            panic!()
        };
        assert_eq!(p.as_number, Some(65000));
    }

    #[test]
    fn list_items_get_their_type_and_bad_objects_are_invalid() {
        let ar = api_resource(Kind::IpPool, CalicoGroup::CrdV1);
        let e = decode(
            Kind::IpPool,
            &ar,
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"cidr": "10.65.1.0/16"}}),
        );
        let Event::Invalid { label, error, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(label, "IPPool/p");
        assert!(error.contains("spec.cidr"), "{error}");
        let ar = api_resource(Kind::Namespace, CalicoGroup::CrdV1);
        let Event::Apply(o) = decode(
            Kind::Namespace,
            &ar,
            serde_json::json!({"metadata": {"name": "shop"}}),
        ) else {
            panic!()
        };
        assert_eq!(o.raw.kind, Kind::Namespace);
    }

    #[test]
    fn nodes_are_translated_from_annotations() {
        let ar = api_resource(Kind::Node, CalicoGroup::CrdV1);
        let n = serde_json::json!({
            "metadata": {"name": "w1", "labels": {"kubernetes.io/hostname": "w1"},
                "annotations": {"projectcalico.org/IPv4Address": "10.0.0.11/24", "projectcalico.org/ASNumber": "bad"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}]}
        });
        let Event::Apply(o) = decode(Kind::Node, &ar, n) else {
            panic!()
        };
        let Resource::Node(spec) = &o.resource else {
            panic!()
        };
        assert_eq!(spec.ipv4_address.unwrap().to_string(), "10.0.0.11/24");
        assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
        assert!(o.warnings[0].contains("projectcalico.org/ASNumber"));
    }
}
