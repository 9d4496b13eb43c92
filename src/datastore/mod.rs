//! The datastore seam: where the cluster's objects come from, and where Brindle writes.
//!
//! A backend ([`file`] or [`kubernetes`]) turns its source into one stream of [`Event`]s
//! with the semantics of kube-runtime's watcher, per kind: `Restart` (a list begins),
//! `Apply`s, `InSync` (the list is complete), then `Apply` / `Delete` changes; a relist
//! (after a `410 Gone`, a reconnect, a file edit) is again `Restart` … `InSync`, and
//! objects of the kind not re-applied in between are gone. Everything downstream — the
//! [`cache::Cache`] that folds events into a checked [`ClusterConfig`] snapshot, the BGP
//! plan, the dataplane model — is shared and never knows which backend runs.
//!
//! Writes (node annotations now; IPAM blocks next) go through [`Datastore`] with
//! compare-and-swap semantics: an update names the resourceVersion it read and fails
//! with [`WriteError::Conflict`] when the object changed meanwhile.
//!
//! [`ClusterConfig`]: brindle_model::ClusterConfig

pub mod cache;
pub mod file;
pub mod kubernetes;
pub mod slim;

use brindle_model::{Kind, Object};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// One change from a backend.
#[derive(Debug, Clone)]
pub enum Event {
    /// A full list of `kind` begins: objects not applied before the next `InSync` are gone.
    Restart(Kind),
    /// An object was listed, added or changed.
    Apply(Box<Object>),
    /// An object was deleted.
    Delete {
        kind: Kind,
        namespace: Option<String>,
        name: String,
    },
    /// Every object of `kind` has been listed.
    InSync(Kind),
    /// An object from the source could not be decoded: logged by the receiver, skipped.
    /// The previous version of the object (if any) stays.
    Invalid {
        kind: Option<Kind>,
        /// `Kind/namespace/name` as far as known.
        label: String,
        error: String,
    },
    /// The backend lost (Some(reason)) or regained (None) its connection to the source.
    /// Nothing is withdrawn while disconnected: the last state stays in force.
    Connection(Option<String>),
    /// Valid objects the backend skips entirely (unused Calico kinds), already formatted.
    Warnings(Vec<String>),
}

/// Which backend to run.
#[derive(Debug, Clone)]
pub enum DatastoreConfig {
    /// A multi-document YAML file of Calico and Kubernetes objects.
    File {
        path: PathBuf,
        /// How often the file is checked for changes.
        poll: std::time::Duration,
    },
    /// The Kubernetes API (in-cluster, or from a kubeconfig).
    Kubernetes {
        kubeconfig: Option<PathBuf>,
        /// This node's name (its Kubernetes Node receives the BGP annotations).
        node_name: String,
    },
}

impl DatastoreConfig {
    /// `file` or `kubernetes` (for logs and status).
    pub fn name(&self) -> &'static str {
        match self {
            DatastoreConfig::File { .. } => "file",
            DatastoreConfig::Kubernetes { .. } => "kubernetes",
        }
    }
}

/// A write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The object changed since it was read (HTTP 409): read again and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend does not store this (file mode: the file is the user's).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}

/// An object as stored, with the version a compare-and-swap update must name.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub json: serde_json::Value,
    pub resource_version: String,
}

/// The running backend: its events, and its writer.
pub struct Datastore {
    backend: Backend,
}

enum Backend {
    File(file::FileWriter),
    Kubernetes(kubernetes::KubeWriter),
}

/// The kinds the agent needs in sync before it applies anything that deletes state.
pub const AGENT_KINDS: &[Kind] = &[
    Kind::BgpConfiguration,
    Kind::Node,
    Kind::BgpPeer,
    Kind::IpPool,
    Kind::BlockAffinity,
    Kind::IpamConfig,
    Kind::Pod,
    Kind::Namespace,
    Kind::ServiceAccount,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::KubernetesNetworkPolicy,
    Kind::NetworkPolicy,
    Kind::GlobalNetworkPolicy,
    Kind::HostEndpoint,
    Kind::GlobalNetworkSet,
    Kind::NetworkSet,
    Kind::FelixConfiguration,
];

impl Datastore {
    /// Starts the backend on the current tokio runtime; events arrive on the receiver.
    pub async fn start(
        config: &DatastoreConfig,
    ) -> anyhow::Result<(Datastore, mpsc::UnboundedReceiver<Event>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let backend = match config {
            DatastoreConfig::File { path, poll } => {
                Backend::File(file::start(path.clone(), *poll, tx)?)
            }
            DatastoreConfig::Kubernetes {
                kubeconfig,
                node_name,
            } => Backend::Kubernetes(
                kubernetes::start(kubeconfig.clone(), node_name.clone(), AGENT_KINDS, tx).await?,
            ),
        };
        Ok((Datastore { backend }, rx))
    }

    /// Kubernetes mode: the IPAM store on Calico's CRDs.
    pub fn ipam_store(&self) -> Option<crate::ipam::kubernetes::KubeStore> {
        match &self.backend {
            Backend::File(_) => None,
            Backend::Kubernetes(k) => k
                .client_and_group()
                .map(|(c, g)| crate::ipam::kubernetes::KubeStore::new(c, g)),
        }
    }

    /// Sets (Some) or removes (None) annotations on this node's Kubernetes Node, as
    /// calico-node writes `projectcalico.org/IPv4Address` and friends.
    pub async fn patch_node_annotations(
        &self,
        node: &str,
        annotations: &BTreeMap<String, Option<String>>,
    ) -> Result<(), WriteError> {
        match &self.backend {
            Backend::File(_) => Err(WriteError::Unsupported(
                "file mode: node addresses come from the file".into(),
            )),
            Backend::Kubernetes(k) => k.patch_node_annotations(node, annotations).await,
        }
    }

    /// Reads one object as stored (for a compare-and-swap update).
    pub async fn get(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Stored>, WriteError> {
        match &self.backend {
            Backend::File(f) => Ok(f.get(kind, namespace, name)),
            Backend::Kubernetes(k) => k.get(kind, namespace, name).await,
        }
    }

    /// Replaces an object if it is still at `stored.resource_version`; returns the new
    /// version. [`WriteError::Conflict`] when it changed meanwhile.
    pub async fn compare_and_swap(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        json: serde_json::Value,
        resource_version: &str,
    ) -> Result<String, WriteError> {
        match &self.backend {
            Backend::File(_) => Err(WriteError::Unsupported(
                "file mode: the resource file is the user's and is never rewritten".into(),
            )),
            Backend::Kubernetes(k) => {
                k.compare_and_swap(kind, namespace, name, json, resource_version)
                    .await
            }
        }
    }

    /// Creates an object; [`WriteError::Conflict`] if it exists.
    pub async fn create(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        json: serde_json::Value,
    ) -> Result<String, WriteError> {
        match &self.backend {
            Backend::File(_) => Err(WriteError::Unsupported(
                "file mode: the resource file is the user's and is never rewritten".into(),
            )),
            Backend::Kubernetes(k) => k.create(kind, namespace, json).await,
        }
    }
}
