//! Decoding of the Kubernetes kinds (Pod, Namespace, Service, EndpointSlice, and the
//! Node as the Kubernetes backend sees it). Lenient by design: only the fields Brindle
//! uses are read, through small serde views of the API's JSON; everything else is the
//! API's business. A field of the wrong type is an error naming it.

use super::yaml::{Ctx, Node};
use super::{Meta, Resource};
use crate::error::ConfigError;
use crate::kind::Kind;
use crate::kubernetes::*;
use ipnetwork::IpNetwork;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodView {
    spec: PodSpecView,
    status: PodStatusView,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodSpecView {
    node_name: Option<String>,
    host_network: bool,
    service_account_name: Option<String>,
    containers: Vec<ContainerView>,
    init_containers: Vec<ContainerView>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ContainerView {
    ports: Vec<PortView>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PortView {
    name: Option<String>,
    container_port: u16,
    protocol: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodStatusView {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Vec<IpView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IpView {
    ip: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ServiceView {
    spec: ServiceSpecView,
    status: ServiceStatusView,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ServiceSpecView {
    #[serde(rename = "type")]
    service_type: Option<String>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Vec<String>,
    #[serde(rename = "externalIPs")]
    external_ips: Vec<String>,
    #[serde(rename = "loadBalancerIP")]
    load_balancer_ip: Option<String>,
    external_traffic_policy: Option<String>,
    internal_traffic_policy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ServiceStatusView {
    load_balancer: LoadBalancerView,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoadBalancerView {
    ingress: Vec<LbIngressView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LbIngressView {
    ip: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SliceView {
    endpoints: Vec<SliceEndpointView>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SliceEndpointView {
    addresses: Vec<String>,
    conditions: ConditionsView,
    node_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConditionsView {
    ready: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct NodeView {
    metadata: NodeMetaView,
    spec: NodeSpecView,
    status: NodeStatusView,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeMetaView {
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct NodeSpecView {
    #[serde(rename = "podCIDRs")]
    pod_cidrs: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeStatusView {
    addresses: Vec<NodeAddressView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeAddressView {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

fn ips(list: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = list
        .into_iter()
        .filter_map(|s| s.as_ref().trim().parse().ok())
        .collect();
    v.dedup();
    v
}

fn policy(s: Option<&str>) -> TrafficPolicy {
    match s {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    }
}

fn view<T: for<'de> Deserialize<'de>>(
    ctx: &Ctx,
    node: &Node,
    kind: Kind,
) -> Result<T, ConfigError> {
    serde_json::from_value(node.value.to_json())
        .map_err(|e| ctx.err("", node.line, format!("not a valid {}: {e}", kind.label())))
}

/// Decodes a Pod, Namespace, Service or EndpointSlice (`node` is the whole object).
pub(crate) fn decode(
    kind: Kind,
    meta: &Meta,
    node: &Node,
    ctx: &Ctx,
) -> Result<Resource, ConfigError> {
    let namespace = meta.namespace.clone().unwrap_or_default();
    Ok(match kind {
        Kind::Pod => {
            let v: PodView = view(ctx, node, kind)?;
            let mut pod_ips = ips(v.status.pod_ips.iter().map(|i| i.ip.as_str()));
            if pod_ips.is_empty() {
                pod_ips = ips(v.status.pod_ip.iter());
            }
            if pod_ips.is_empty() {
                // Calico's CNI annotations, before the kubelet reports status.
                if let Some(a) = meta
                    .annotations
                    .get("cni.projectcalico.org/podIPs")
                    .or_else(|| meta.annotations.get("cni.projectcalico.org/podIP"))
                {
                    pod_ips = ips(a.split(',').map(|s| s.split('/').next().unwrap_or("")));
                }
            }
            let ports = v
                .spec
                .containers
                .iter()
                .chain(&v.spec.init_containers)
                .flat_map(|c| &c.ports)
                .filter_map(|p| {
                    Some(ContainerPort {
                        name: p.name.clone().filter(|n| !n.is_empty())?,
                        port: p.container_port,
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    })
                })
                .collect();
            Resource::Pod(Pod {
                namespace,
                name: meta.name.clone(),
                labels: meta.labels.clone(),
                node_name: v.spec.node_name.filter(|n| !n.is_empty()),
                host_network: v.spec.host_network,
                service_account: v
                    .spec
                    .service_account_name
                    .unwrap_or_else(|| "default".into()),
                ips: pod_ips,
                phase: v.status.phase.unwrap_or_else(|| "Pending".into()),
                terminating: crate::decode::yaml::has_key(node, &["metadata", "deletionTimestamp"]),
                ports,
                container_id: meta
                    .annotations
                    .get("cni.projectcalico.org/containerID")
                    .cloned(),
            })
        }
        Kind::Namespace => {
            let mut labels = meta.labels.clone();
            labels
                .entry(NAMESPACE_NAME_LABEL.to_string())
                .or_insert_with(|| meta.name.clone());
            Resource::Namespace(Namespace {
                name: meta.name.clone(),
                labels,
            })
        }
        Kind::Service => {
            let v: ServiceView = view(ctx, node, kind)?;
            let mut cluster = v.spec.cluster_ips.clone();
            if cluster.is_empty() {
                cluster.extend(v.spec.cluster_ip.clone());
            }
            let mut lb = ips(v
                .status
                .load_balancer
                .ingress
                .iter()
                .filter_map(|i| i.ip.as_deref()));
            lb.extend(ips(v.spec.load_balancer_ip.iter()));
            lb.dedup();
            Resource::Service(Service {
                namespace,
                name: meta.name.clone(),
                service_type: v.spec.service_type.unwrap_or_else(|| "ClusterIP".into()),
                cluster_ips: ips(cluster),
                external_ips: ips(v.spec.external_ips),
                load_balancer_ips: lb,
                external_traffic_policy: policy(v.spec.external_traffic_policy.as_deref()),
                internal_traffic_policy: policy(v.spec.internal_traffic_policy.as_deref()),
            })
        }
        Kind::EndpointSlice => {
            let v: SliceView = view(ctx, node, kind)?;
            Resource::EndpointSlice(EndpointSlice {
                namespace,
                name: meta.name.clone(),
                service_name: meta.labels.get(SERVICE_NAME_LABEL).cloned(),
                endpoints: v
                    .endpoints
                    .into_iter()
                    .map(|e| SliceEndpoint {
                        addresses: ips(e.addresses),
                        ready: e.conditions.ready.unwrap_or(true),
                        node_name: e.node_name,
                    })
                    .collect(),
            })
        }
        other => unreachable!("{other} is not decoded here"),
    })
}

/// The Kubernetes Node as Brindle reads it (from the API's JSON).
pub fn kube_node_from_json(v: &serde_json::Value) -> Result<KubeNode, String> {
    let n: NodeView = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    if n.metadata.name.is_empty() {
        return Err("metadata.name is missing".into());
    }
    Ok(KubeNode {
        name: n.metadata.name,
        labels: n.metadata.labels,
        annotations: n.metadata.annotations,
        internal_ips: ips(n
            .status
            .addresses
            .iter()
            .filter(|a| a.kind == "InternalIP")
            .map(|a| a.address.as_str())),
        pod_cidrs: n
            .spec
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNetwork>().ok())
            .collect(),
    })
}
