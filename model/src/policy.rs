//! Network policy objects as data (the policy compiler in `policies/` consumes them):
//! Calico `NetworkPolicy` / `GlobalNetworkPolicy` and Kubernetes `NetworkPolicy`.

use crate::selector::Selector;
use serde::Serialize;

/// A Calico `NetworkPolicy` (namespaced) or `GlobalNetworkPolicy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalicoPolicy {
    /// `None` for a GlobalNetworkPolicy.
    pub namespace: Option<String>,
    pub name: String,
    /// `spec.tier` (default `default`).
    pub tier: String,
    /// `spec.order`; `None` sorts last.
    pub order: Option<f64>,
    pub selector: Selector,
    /// The spec as written (rules are compiled from it by the policy issue's compiler).
    pub spec: serde_json::Value,
}

/// A Kubernetes `networking.k8s.io/v1` NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubeNetworkPolicy {
    pub namespace: String,
    pub name: String,
    /// The spec as written.
    pub spec: serde_json::Value,
}
