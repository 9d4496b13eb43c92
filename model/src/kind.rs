//! The kinds of object Brindle reads, with their API group/version: Calico's own
//! (`projectcalico.org/v3`, stored as `crd.projectcalico.org/v1` CRDs in Kubernetes) and
//! the Kubernetes objects the agent uses.

use serde::Serialize;
use std::fmt;

/// Calico's user-facing API version (what calicoctl reads and writes).
pub const API_VERSION: &str = "projectcalico.org/v3";
/// Calico's CRD storage group/version in Kubernetes mode.
pub const CRD_API_VERSION: &str = "crd.projectcalico.org/v1";

/// The object kinds Brindle understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    BgpConfiguration,
    Node,
    BgpPeer,
    IpPool,
    BlockAffinity,
    IpamConfig,
    /// Calico `NetworkPolicy` (namespaced).
    NetworkPolicy,
    GlobalNetworkPolicy,
    HostEndpoint,
    /// Calico `GlobalNetworkSet`.
    GlobalNetworkSet,
    /// Calico `NetworkSet` (namespaced).
    NetworkSet,
    FelixConfiguration,
    /// Kubernetes `v1` Pod.
    Pod,
    /// Kubernetes `v1` Namespace.
    Namespace,
    /// Kubernetes `v1` ServiceAccount (its labels are policy's `pcsa.` labels).
    ServiceAccount,
    /// Kubernetes `v1` Service.
    Service,
    /// Kubernetes `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// Kubernetes `networking.k8s.io/v1` NetworkPolicy.
    KubernetesNetworkPolicy,
}

impl Kind {
    pub const ALL: [Kind; 18] = [
        Kind::BgpConfiguration,
        Kind::Node,
        Kind::BgpPeer,
        Kind::IpPool,
        Kind::BlockAffinity,
        Kind::IpamConfig,
        Kind::NetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::HostEndpoint,
        Kind::GlobalNetworkSet,
        Kind::NetworkSet,
        Kind::FelixConfiguration,
        Kind::Pod,
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::KubernetesNetworkPolicy,
    ];

    /// The `kind:` spelling (`BGPPeer`, `IPAMConfiguration`, `NetworkPolicy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BgpConfiguration => "BGPConfiguration",
            Kind::Node => "Node",
            Kind::BgpPeer => "BGPPeer",
            Kind::IpPool => "IPPool",
            Kind::BlockAffinity => "BlockAffinity",
            Kind::IpamConfig => "IPAMConfiguration",
            Kind::NetworkPolicy | Kind::KubernetesNetworkPolicy => "NetworkPolicy",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::HostEndpoint => "HostEndpoint",
            Kind::GlobalNetworkSet => "GlobalNetworkSet",
            Kind::NetworkSet => "NetworkSet",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::Pod => "Pod",
            Kind::Namespace => "Namespace",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
        }
    }

    /// The `apiVersion:` of the kind in files and on the API.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Pod | Kind::Namespace | Kind::ServiceAccount | Kind::Service => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::KubernetesNetworkPolicy => "networking.k8s.io/v1",
            _ => API_VERSION,
        }
    }

    /// A unique, readable label (`BGPPeer`, `k8s NetworkPolicy`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::KubernetesNetworkPolicy => "networking.k8s.io/NetworkPolicy",
            k => k.as_str(),
        }
    }

    /// Whether objects of the kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            Kind::NetworkPolicy
                | Kind::NetworkSet
                | Kind::Pod
                | Kind::ServiceAccount
                | Kind::Service
                | Kind::EndpointSlice
                | Kind::KubernetesNetworkPolicy
        )
    }

    /// Whether the kind is one of Calico's (`projectcalico.org/v3`).
    pub fn is_calico(self) -> bool {
        self.api_version() == API_VERSION
    }

    /// The kind for an `apiVersion` and `kind` pair. Calico's CRD storage group
    /// (`crd.projectcalico.org/v1`, where IPAMConfiguration is called `IPAMConfig`) maps
    /// to the same kinds.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        let api_version = if api_version == CRD_API_VERSION {
            API_VERSION
        } else {
            api_version
        };
        let kind = if api_version == API_VERSION && kind == "IPAMConfig" {
            "IPAMConfiguration"
        } else {
            kind
        };
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.as_str() == kind)
    }

    /// A Calico kind by its `kind:` spelling.
    pub fn from_calico(s: &str) -> Option<Kind> {
        Kind::from_type(API_VERSION, s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_type() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_type(k.api_version(), k.as_str()), Some(k));
        }
        assert_eq!(
            Kind::from_type(CRD_API_VERSION, "IPAMConfig"),
            Some(Kind::IpamConfig)
        );
        assert_eq!(
            Kind::from_type("networking.k8s.io/v1", "NetworkPolicy"),
            Some(Kind::KubernetesNetworkPolicy)
        );
        assert_eq!(Kind::from_type("v1", "BGPPeer"), None);
    }
}
