//! The Kubernetes objects Brindle reads, as domain types holding only the fields it uses
//! (memory: a cluster has many pods): Pods (workload endpoints), Namespaces (policy
//! labels), Services and EndpointSlices (service advertisement). Kubernetes NetworkPolicy
//! is in [`crate::policy`]. Kubernetes Nodes are translated to Calico's [`NodeSpec`]
//! by [`node_from_kubernetes`], as Calico's Kubernetes backend does.

use crate::calico::NodeSpec;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Label the API server sets on every Namespace (Brindle sets it in file mode too).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Label of an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Node label that keeps a node from advertising load-balancer service IPs.
pub const EXCLUDE_FROM_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Annotations Calico keeps on a Kubernetes Node (`libcalico-go/lib/backend/k8s/resources/node.go`).
pub mod node_annotations {
    pub const IPV4_ADDRESS: &str = "projectcalico.org/IPv4Address";
    pub const IPV6_ADDRESS: &str = "projectcalico.org/IPv6Address";
    pub const AS_NUMBER: &str = "projectcalico.org/ASNumber";
    pub const RR_CLUSTER_ID: &str = "projectcalico.org/RouteReflectorClusterID";
    pub const IPIP_TUNNEL_ADDR: &str = "projectcalico.org/IPv4IPIPTunnelAddr";
    pub const VXLAN_TUNNEL_ADDR: &str = "projectcalico.org/IPv4VXLANTunnelAddr";
    pub const VXLAN_TUNNEL_MAC: &str = "projectcalico.org/VXLANTunnelMACAddr";
    pub const VXLAN6_TUNNEL_ADDR: &str = "projectcalico.org/IPv6VXLANTunnelAddr";
    pub const LABELS: &str = "projectcalico.org/labels";
}

/// A named container port (for named ports in policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerPort {
    pub name: Arc<str>,
    pub port: u16,
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: Arc<str>,
}

/// A Pod: a workload endpoint when it is scheduled, not host-networked and has an IP.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pod {
    pub namespace: Arc<str>,
    pub name: String,
    /// Shared with every pod that has the same labels ([`crate::intern`]).
    pub labels: crate::intern::Labels,
    pub node_name: Option<Arc<str>>,
    pub host_network: bool,
    pub service_account: Arc<str>,
    /// `status.podIPs` (or `podIP`), else Calico's CNI annotations.
    pub ips: Vec<IpAddr>,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    pub phase: Arc<str>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    pub ports: Vec<ContainerPort>,
}

impl Pod {
    /// Calico's rule (`K/conversion/workload_endpoint_default.go`): a scheduled,
    /// non-host-network pod that has an IP and has not finished.
    pub fn is_workload(&self) -> bool {
        self.node_name.is_some()
            && !self.host_network
            && !self.ips.is_empty()
            && &*self.phase != "Succeeded"
            && &*self.phase != "Failed"
    }
}

/// A Namespace and its labels (with `kubernetes.io/metadata.name` always present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A ServiceAccount and its labels (Calico's `pcsa.` profile labels of its pods).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// `spec.externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// A Service: the addresses Calico may advertise for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`, `ExternalName`.
    pub service_type: String,
    /// `spec.clusterIPs` (or `clusterIP`), without `None`.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ipFamilies` (`IPv4`, `IPv6`); when the object has none (a hand-written
    /// file), the families of the cluster IPs, as the API server defaults it.
    pub ip_families: Vec<String>,
    /// `spec.externalIPs` that are addresses.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`: the addresses Calico advertises.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerIP` (deprecated): Calico only looks at it to decide whether a
    /// `Cluster` service has a single-address load-balancer IP.
    pub spec_load_balancer_ip: Option<IpAddr>,
    /// `spec.externalTrafficPolicy`; `None` when unset (the API server leaves it unset
    /// on `ClusterIP` services, and Calico treats unset apart from `Cluster`).
    pub external_traffic_policy: Option<TrafficPolicy>,
    pub internal_traffic_policy: TrafficPolicy,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SliceEndpoint {
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready`; Kubernetes: nil means ready.
    pub ready: bool,
    /// Shared with every endpoint on the same node ([`crate::intern`]).
    pub node_name: Option<Arc<str>>,
}

/// An EndpointSlice of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// From the `kubernetes.io/service-name` label.
    pub service_name: Option<String>,
    /// `addressType` (`IPv4`, `IPv6`, `FQDN`); when the object has none (a
    /// hand-written file), the family of its first address.
    pub address_type: Option<String>,
    pub endpoints: Vec<SliceEndpoint>,
}

/// What Brindle reads from a Kubernetes Node (labels, annotations, addresses).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KubeNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `status.addresses` of type `InternalIP`.
    pub internal_ips: Vec<IpAddr>,
    /// `spec.podCIDRs` (host-local IPAM clusters).
    pub pod_cidrs: Vec<IpNetwork>,
}

/// A problem with one annotation: the node is still used, without that value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError {
    pub annotation: &'static str,
    pub message: String,
}

/// Calico's Node from a Kubernetes Node: BGP settings from the `projectcalico.org/`
/// annotations; labels are the Kubernetes labels over Calico's own
/// (`projectcalico.org/labels`), as `K/resources/node.go` merges them.
pub fn node_from_kubernetes(n: &KubeNode) -> (NodeSpec, Vec<AnnotationError>) {
    use node_annotations as a;
    let mut errors = Vec::new();
    let mut bad = |annotation: &'static str, message: String| {
        errors.push(AnnotationError {
            annotation,
            message,
        })
    };
    let get = |k: &str| {
        n.annotations
            .get(k)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    };
    let mut labels = BTreeMap::new();
    if let Some(text) = get(a::LABELS) {
        match serde_json::from_str::<BTreeMap<String, String>>(text) {
            Ok(l) => labels = l,
            Err(e) => bad(a::LABELS, format!("not a JSON object of strings: {e}")),
        }
    }
    labels.extend(n.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let ipv4_address = get(a::IPV4_ADDRESS).and_then(|t| match parse_node_net(t) {
        Ok(IpNetwork::V4(v)) => Some(v),
        Ok(_) => {
            bad(a::IPV4_ADDRESS, format!("{t:?} is not an IPv4 address"));
            None
        }
        Err(e) => {
            bad(a::IPV4_ADDRESS, e);
            None
        }
    });
    let ipv6_address: Option<Ipv6Network> =
        get(a::IPV6_ADDRESS).and_then(|t| match parse_node_net(t) {
            Ok(IpNetwork::V6(v)) => Some(v),
            Ok(_) => {
                bad(a::IPV6_ADDRESS, format!("{t:?} is not an IPv6 address"));
                None
            }
            Err(e) => {
                bad(a::IPV6_ADDRESS, e);
                None
            }
        });
    let as_number = get(a::AS_NUMBER).and_then(|t| match crate::values::parse_as_number(t) {
        Ok(v) => Some(v),
        Err(e) => {
            bad(a::AS_NUMBER, e);
            None
        }
    });
    let mut v4 = |key: &'static str| -> Option<Ipv4Addr> {
        let t = get(key)?;
        match t.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                bad(key, format!("{t:?} is not an IPv4 address"));
                None
            }
        }
    };
    let route_reflector_cluster_id = v4(a::RR_CLUSTER_ID);
    let ipv4_ipip_tunnel_addr = v4(a::IPIP_TUNNEL_ADDR);
    let ipv4_vxlan_tunnel_addr = v4(a::VXLAN_TUNNEL_ADDR);
    let spec = NodeSpec {
        name: n.name.clone(),
        labels,
        as_number,
        ipv4_address,
        ipv6_address,
        route_reflector_cluster_id,
        ipv4_ipip_tunnel_addr,
        ipv4_vxlan_tunnel_addr,
        vxlan_tunnel_mac_addr: get(a::VXLAN_TUNNEL_MAC).map(str::to_string),
        router_id: None,
        internal_ips: n.internal_ips.clone(),
    };
    (spec, errors)
}

/// A node address annotation: CIDR form (`10.0.0.1/24`); a bare address is taken as a
/// host address (Calico accepts both).
fn parse_node_net(t: &str) -> Result<IpNetwork, String> {
    if t.contains('/') {
        t.parse::<IpNetwork>()
            .map_err(|e| format!("{t:?} is not an address in CIDR form: {e}"))
    } else {
        let ip: IpAddr = t
            .parse()
            .map_err(|_| format!("{t:?} is not an IP address"))?;
        Ok(match ip {
            IpAddr::V4(v) => IpNetwork::V4(Ipv4Network::new(v, 32).expect("/32")),
            IpAddr::V6(v) => IpNetwork::V6(Ipv6Network::new(v, 128).expect("/128")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_node_from_annotations() {
        let mut n = KubeNode {
            name: "w1".into(),
            ..Default::default()
        };
        n.labels
            .insert("kubernetes.io/hostname".into(), "w1".into());
        n.labels.insert("rack".into(), "k8s".into());
        for (k, v) in [
            (node_annotations::IPV4_ADDRESS, "10.0.0.5/24"),
            (node_annotations::IPV6_ADDRESS, "fd00::5/64"),
            (node_annotations::AS_NUMBER, "65001"),
            (node_annotations::RR_CLUSTER_ID, "224.0.0.1"),
            (node_annotations::IPIP_TUNNEL_ADDR, "10.244.1.0"),
            (
                node_annotations::LABELS,
                r#"{"rack":"calico","route-reflector":"true"}"#,
            ),
        ] {
            n.annotations.insert(k.into(), v.into());
        }
        let (spec, errors) = node_from_kubernetes(&n);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(spec.ipv4_address.unwrap().to_string(), "10.0.0.5/24");
        assert_eq!(spec.ipv6_address.unwrap().prefix(), 64);
        assert_eq!(spec.as_number, Some(65001));
        assert_eq!(
            spec.route_reflector_cluster_id,
            Some(Ipv4Addr::new(224, 0, 0, 1))
        );
        assert_eq!(
            spec.ipv4_ipip_tunnel_addr,
            Some(Ipv4Addr::new(10, 244, 1, 0))
        );
        assert_eq!(spec.labels["rack"], "k8s", "Kubernetes labels win");
        assert_eq!(spec.labels["route-reflector"], "true");
    }

    #[test]
    fn bad_annotations_are_reported_and_skipped() {
        let mut n = KubeNode {
            name: "w1".into(),
            ..Default::default()
        };
        n.annotations.insert(
            node_annotations::IPV4_ADDRESS.into(),
            "10.0.0.300/24".into(),
        );
        n.annotations
            .insert(node_annotations::AS_NUMBER.into(), "sixty".into());
        let (spec, errors) = node_from_kubernetes(&n);
        assert_eq!(spec.ipv4_address, None);
        assert_eq!(spec.as_number, None);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].annotation, node_annotations::IPV4_ADDRESS);
    }
}
