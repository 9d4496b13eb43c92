//! Decoding of the Kubernetes kinds (Pod, Namespace, Service, EndpointSlice, and the
//! Node as the Kubernetes backend sees it). Lenient by design: only the fields Brindle
//! uses are read, through small serde views of the API's JSON; everything else is the
//! API's business. A field of the wrong type is an error naming it.

use super::yaml::{Ctx, Node};
use super::{Meta, Object, Resource};
use crate::error::ConfigError;
use crate::intern;
use crate::kind::Kind;
use crate::kubernetes::*;
use ipnetwork::IpNetwork;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

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
    ip_families: Vec<String>,
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
    address_type: Option<String>,
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
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(deserialize_with = "nullable_map")]
    labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "calico_annotations")]
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
    // collected from a filter: the capacity would be 4 (memory: one per pod and endpoint)
    v.shrink_to_fit();
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

/// The metadata the Kubernetes kinds use, however they were read.
struct MetaParts<'a> {
    namespace: String,
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    terminating: bool,
}

fn pod(m: &MetaParts, spec: PodSpecView, status: PodStatusView) -> Pod {
    let mut pod_ips = ips(status.pod_ips.iter().map(|i| i.ip.as_str()));
    if pod_ips.is_empty() {
        pod_ips = ips(status.pod_ip.iter());
    }
    if pod_ips.is_empty() {
        // Calico's CNI annotations, before the kubelet reports status.
        if let Some(a) = m
            .annotations
            .get("cni.projectcalico.org/podIPs")
            .or_else(|| m.annotations.get("cni.projectcalico.org/podIP"))
        {
            pod_ips = ips(a.split(',').map(|s| s.split('/').next().unwrap_or("")));
        }
    }
    let mut ports: Vec<ContainerPort> = spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .flat_map(|c| &c.ports)
        .filter_map(|p| {
            Some(ContainerPort {
                name: intern::string(p.name.as_deref().filter(|n| !n.is_empty())?),
                port: p.container_port,
                protocol: intern::string(p.protocol.as_deref().unwrap_or("TCP")),
            })
        })
        .collect();
    ports.shrink_to_fit();
    Pod {
        namespace: intern::string(&m.namespace),
        name: m.name.to_string(),
        labels: intern::labels(m.labels.clone()),
        node_name: spec
            .node_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(intern::string),
        host_network: spec.host_network,
        service_account: intern::string(
            spec.service_account_name
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or("default"),
        ),
        ips: pod_ips,
        phase: intern::string(status.phase.as_deref().unwrap_or("Pending")),
        terminating: m.terminating,
        ports,
    }
}

fn namespace(m: &MetaParts) -> Namespace {
    let mut labels = m.labels.clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| m.name.to_string());
    Namespace {
        name: m.name.to_string(),
        labels,
    }
}

fn service_account(m: &MetaParts) -> ServiceAccount {
    ServiceAccount {
        namespace: m.namespace.to_string(),
        name: m.name.to_string(),
        labels: m.labels.clone(),
    }
}

fn service(m: &MetaParts, v: ServiceView) -> Service {
    let mut cluster = v.spec.cluster_ips;
    if cluster.is_empty() {
        cluster.extend(v.spec.cluster_ip);
    }
    let lb = ips(v
        .status
        .load_balancer
        .ingress
        .iter()
        .filter_map(|i| i.ip.as_deref()));
    let cluster_ips = ips(cluster);
    let mut ip_families: Vec<String> = v
        .spec
        .ip_families
        .into_iter()
        .filter(|f| !f.is_empty())
        .collect();
    if ip_families.is_empty() {
        // the API server's defaulting, for objects written by hand
        for ip in &cluster_ips {
            let f = ip_family(ip).to_string();
            if !ip_families.contains(&f) {
                ip_families.push(f);
            }
        }
    }
    Service {
        namespace: m.namespace.clone(),
        name: m.name.to_string(),
        service_type: v
            .spec
            .service_type
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "ClusterIP".into()),
        cluster_ips,
        ip_families,
        external_ips: ips(v.spec.external_ips),
        load_balancer_ips: lb,
        spec_load_balancer_ip: ips(v.spec.load_balancer_ip.iter()).first().copied(),
        external_traffic_policy: match v.spec.external_traffic_policy.as_deref() {
            None | Some("") => None,
            Some(p) => Some(policy(Some(p))),
        },
        internal_traffic_policy: policy(v.spec.internal_traffic_policy.as_deref()),
    }
}

/// Kubernetes' name of an address's family (`IPFamily`, EndpointSlice `addressType`).
fn ip_family(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

fn endpoint_slice(m: &MetaParts, v: SliceView) -> EndpointSlice {
    let first = v
        .endpoints
        .iter()
        .flat_map(|e| &e.addresses)
        .find_map(|a| a.trim().parse::<IpAddr>().ok());
    let address_type = v
        .address_type
        .filter(|t| !t.is_empty())
        .or_else(|| first.map(|ip| ip_family(&ip).to_string()));
    let mut endpoints = v
        .endpoints
        .into_iter()
        .map(|e| SliceEndpoint {
            addresses: ips(e.addresses),
            ready: e.conditions.ready.unwrap_or(true),
            node_name: e.node_name.as_deref().map(intern::string),
        })
        .collect::<Vec<_>>();
    // collected in place: without this the list keeps the capacity serde grew it to
    endpoints.shrink_to_fit();
    EndpointSlice {
        namespace: m.namespace.clone(),
        name: m.name.to_string(),
        service_name: m.labels.get(SERVICE_NAME_LABEL).cloned(),
        address_type,
        endpoints,
    }
}

/// Decodes a Pod, Namespace, Service or EndpointSlice (`node` is the whole object).
pub(crate) fn decode(
    kind: Kind,
    meta: &Meta,
    node: &Node,
    ctx: &Ctx,
) -> Result<Resource, ConfigError> {
    let m = MetaParts {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: &meta.name,
        labels: &meta.labels,
        annotations: &meta.annotations,
        terminating: crate::decode::yaml::has_key(node, &["metadata", "deletionTimestamp"]),
    };
    Ok(match kind {
        Kind::Pod => {
            let v: PodView = view(ctx, node, kind)?;
            Resource::Pod(Arc::new(pod(&m, v.spec, v.status)))
        }
        Kind::Namespace => Resource::Namespace(Arc::new(namespace(&m))),
        Kind::ServiceAccount => Resource::ServiceAccount(Arc::new(service_account(&m))),
        Kind::Service => Resource::Service(Arc::new(service(&m, view(ctx, node, kind)?))),
        Kind::EndpointSlice => {
            Resource::EndpointSlice(Arc::new(endpoint_slice(&m, view(ctx, node, kind)?)))
        }
        other => unreachable!("{other} is not decoded here"),
    })
}

// --- Straight from the API's JSON -------------------------------------------------------

/// The metadata of an object from the API, as far as Brindle reads it. Of the
/// annotations only Calico's (`*projectcalico.org/*`) are kept: the others (for example
/// `kubectl.kubernetes.io/last-applied-configuration`) can be large and are never used.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct ApiMeta {
    pub name: String,
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    #[serde(deserialize_with = "nullable_map")]
    labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "calico_annotations")]
    annotations: BTreeMap<String, String>,
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

fn nullable_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

fn calico_annotations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if k.contains("projectcalico.org/") {
                    out.insert(k.into_owned(), map.next_value::<String>()?);
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    d.deserialize_option(V)
}

impl ApiMeta {
    fn parts(&self) -> MetaParts<'_> {
        MetaParts {
            namespace: self.namespace.clone().unwrap_or_default(),
            name: &self.name,
            labels: &self.labels,
            annotations: &self.annotations,
            terminating: self.deletion_timestamp.is_some(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MetaOnly {
    metadata: ApiMeta,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiPod {
    metadata: ApiMeta,
    spec: PodSpecView,
    status: PodStatusView,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiService {
    metadata: ApiMeta,
    spec: ServiceSpecView,
    status: ServiceStatusView,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiSlice {
    metadata: ApiMeta,
    #[serde(rename = "addressType")]
    address_type: Option<String>,
    endpoints: Vec<SliceEndpointView>,
}

/// An object from the API that did not decode: what it was, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiDecodeError {
    /// `Kind/namespace/name` (as far as it could be read).
    pub label: String,
    /// The metadata, for the watch to carry on (empty when unreadable).
    pub name: String,
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    pub message: String,
}

/// The kinds [`from_api_json`] decodes.
pub const API_JSON_KINDS: &[Kind] = &[
    Kind::Node,
    Kind::Pod,
    Kind::Namespace,
    Kind::ServiceAccount,
    Kind::Service,
    Kind::EndpointSlice,
];

fn api_label(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{}/{ns}/{name}", kind.as_str()),
        None => format!("{}/{name}", kind.as_str()),
    }
}

/// Decodes one Kubernetes object (a Node, Pod, Namespace, Service or EndpointSlice; see
/// [`API_JSON_KINDS`]) straight from the API's JSON into Brindle's model, reading only
/// the fields Brindle uses: no JSON tree is built (a cluster has many pods). A Node
/// becomes Calico's Node through [`node_from_kubernetes`], its bad annotations as
/// warnings. Also returns the object's `resourceVersion`.
pub fn from_api_json(kind: Kind, json: &str) -> Result<(Object, Option<String>), ApiDecodeError> {
    let fail = |message: String| {
        let m = serde_json::from_str::<MetaOnly>(json)
            .map(|m| m.metadata)
            .unwrap_or_default();
        let ns = m.namespace.filter(|_| kind.namespaced());
        ApiDecodeError {
            label: api_label(kind, ns.as_deref(), &m.name),
            name: m.name,
            namespace: ns,
            resource_version: m.resource_version,
            message,
        }
    };
    let decoded = match kind {
        Kind::Pod => serde_json::from_str::<ApiPod>(json).map(|v| {
            (
                Resource::Pod(Arc::new(pod(&v.metadata.parts(), v.spec, v.status))),
                v.metadata,
            )
        }),
        Kind::Namespace => serde_json::from_str::<MetaOnly>(json).map(|v| {
            (
                Resource::Namespace(Arc::new(namespace(&v.metadata.parts()))),
                v.metadata,
            )
        }),
        Kind::ServiceAccount => serde_json::from_str::<MetaOnly>(json).map(|v| {
            (
                Resource::ServiceAccount(Arc::new(service_account(&v.metadata.parts()))),
                v.metadata,
            )
        }),
        Kind::Service => serde_json::from_str::<ApiService>(json).map(|v| {
            let r = service(
                &v.metadata.parts(),
                ServiceView {
                    spec: v.spec,
                    status: v.status,
                },
            );
            (Resource::Service(Arc::new(r)), v.metadata)
        }),
        Kind::EndpointSlice => serde_json::from_str::<ApiSlice>(json).map(|v| {
            let r = endpoint_slice(
                &v.metadata.parts(),
                SliceView {
                    address_type: v.address_type,
                    endpoints: v.endpoints,
                },
            );
            (Resource::EndpointSlice(Arc::new(r)), v.metadata)
        }),
        Kind::Node => {
            let mut n: NodeView = serde_json::from_str(json).map_err(|e| fail(e.to_string()))?;
            let rv = n.metadata.resource_version.take();
            let node = kube_node(n).map_err(fail)?;
            let (spec, errors) = node_from_kubernetes(&node);
            let name = spec.name.clone();
            let mut o = Object::synthetic(
                Kind::Node,
                None,
                name,
                serde_json::Value::Null,
                Resource::Node(Arc::new(spec)),
            );
            o.warnings = errors
                .into_iter()
                .map(|e| {
                    format!(
                        "Node/{}: metadata.annotations.{}: {}",
                        o.raw.name, e.annotation, e.message
                    )
                })
                .collect();
            return Ok((o, rv));
        }
        other => {
            return Err(fail(format!(
                "{other} is not decoded from the API's JSON here"
            )))
        }
    };
    let (resource, meta) = decoded.map_err(|e| fail(e.to_string()))?;
    if meta.name.is_empty() {
        return Err(fail("metadata.name is missing".into()));
    }
    let namespace = kind
        .namespaced()
        .then(|| meta.namespace.clone().unwrap_or_else(|| "default".into()));
    let o = Object::synthetic(
        kind,
        namespace,
        meta.name,
        serde_json::Value::Null,
        resource,
    );
    Ok((o, meta.resource_version))
}

/// The Kubernetes Node as Brindle reads it (from the API's JSON).
pub fn kube_node_from_json(v: &serde_json::Value) -> Result<KubeNode, String> {
    kube_node(NodeView::deserialize(v).map_err(|e| e.to_string())?)
}

fn kube_node(n: NodeView) -> Result<KubeNode, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"shop",
        "resourceVersion":"77","labels":{"app":"web"},"deletionTimestamp":"2026-01-01T00:00:00Z",
        "annotations":{"cni.projectcalico.org/containerID":"abc","cni.projectcalico.org/podIPs":"10.65.0.9/32",
            "kubectl.kubernetes.io/last-applied-configuration":"{\"x\":1}"}},
        "spec":{"nodeName":"n1","serviceAccountName":"shop-sa","containers":[{"name":"c",
            "ports":[{"name":"http","containerPort":8080},{"containerPort":9090},{"name":"dns","containerPort":53,"protocol":"UDP"}]}],
            "initContainers":[{"name":"i","ports":[{"name":"init","containerPort":1}]}]},
        "status":{"phase":"Running"}}"#;

    #[test]
    fn straight_from_json_equals_the_general_decoder() {
        let (o, rv) = from_api_json(Kind::Pod, POD).unwrap();
        assert_eq!(rv.as_deref(), Some("77"));
        let v: serde_json::Value = serde_json::from_str(POD).unwrap();
        let general = crate::decode_json("api", &v).unwrap().unwrap();
        assert_eq!(o.resource, general.resource);
        assert_eq!(o.label, "Pod/shop/web-1");
        let Resource::Pod(p) = &o.resource else {
            panic!()
        };
        assert!(p.terminating);
        assert_eq!(p.ips, vec!["10.65.0.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.ports.len(), 3);
        assert_eq!(&*p.service_account, "shop-sa");

        for (kind, json) in [
            (
                Kind::Namespace,
                r#"{"metadata":{"name":"shop","labels":{"team":"a"}}}"#,
            ),
            (
                Kind::Service,
                r#"{"metadata":{"name":"s","namespace":"shop"},"spec":{"type":"LoadBalancer","clusterIPs":["10.96.0.10"],
                    "externalIPs":["192.0.2.1"],"externalTrafficPolicy":"Local","ipFamilies":["IPv4"],"loadBalancerIP":"198.51.100.8"},
                    "status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.7"}]}}}"#,
            ),
            (
                Kind::EndpointSlice,
                r#"{"metadata":{"name":"s-x","namespace":"shop","labels":{"kubernetes.io/service-name":"s"}},"addressType":"IPv4",
                    "endpoints":[{"addresses":["10.65.0.9"],"nodeName":"n1","conditions":{"ready":false}}]}"#,
            ),
        ] {
            let (o, _) = from_api_json(kind, json).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
            let api_version = if kind == Kind::EndpointSlice {
                "discovery.k8s.io/v1"
            } else {
                "v1"
            };
            v["apiVersion"] = api_version.into();
            v["kind"] = kind.as_str().into();
            let general = crate::decode_json("api", &v).unwrap().unwrap();
            assert_eq!(o.resource, general.resource, "{kind}");
            assert_eq!(o.raw.namespace, general.raw.namespace, "{kind}");
        }
    }

    #[test]
    fn service_fields_calico_advertises_by() {
        let (o, _) = from_api_json(
            Kind::Service,
            r#"{"metadata":{"name":"s","namespace":"shop"},"spec":{"type":"LoadBalancer",
                "clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10","fd00:96::10"],"ipFamilies":["IPv4","IPv6"],
                "loadBalancerIP":"198.51.100.8","externalIPs":["192.0.2.1","nonsense"]},
                "status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.7"},{"hostname":"lb.example"}]}}}"#,
        )
        .unwrap();
        let Resource::Service(s) = &o.resource else {
            panic!()
        };
        assert_eq!(s.cluster_ips.len(), 2);
        assert_eq!(s.ip_families, ["IPv4", "IPv6"]);
        assert_eq!(s.external_ips, ["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            s.load_balancer_ips,
            ["198.51.100.7".parse::<IpAddr>().unwrap()],
            "status only"
        );
        assert_eq!(
            s.spec_load_balancer_ip,
            Some("198.51.100.8".parse().unwrap())
        );
        assert_eq!(s.external_traffic_policy, None, "unset is not Cluster");
        // a headless service has no cluster IP; families default from the cluster IPs
        let (o, _) = from_api_json(
            Kind::Service,
            r#"{"metadata":{"name":"h","namespace":"shop"},"spec":{"clusterIP":"None","externalTrafficPolicy":"Cluster"}}"#,
        )
        .unwrap();
        let Resource::Service(s) = &o.resource else {
            panic!()
        };
        assert!(s.cluster_ips.is_empty() && s.ip_families.is_empty());
        assert_eq!(s.service_type, "ClusterIP");
        assert_eq!(s.external_traffic_policy, Some(TrafficPolicy::Cluster));
        // a slice without addressType takes its first address's family
        let (o, _) = from_api_json(
            Kind::EndpointSlice,
            r#"{"metadata":{"name":"x","namespace":"shop"},"endpoints":[{"addresses":["fd00::9"]}]}"#,
        )
        .unwrap();
        let Resource::EndpointSlice(e) = &o.resource else {
            panic!()
        };
        assert_eq!(e.address_type.as_deref(), Some("IPv6"));
        assert!(e.endpoints[0].ready, "no conditions: ready");
    }

    #[test]
    fn bad_objects_name_themselves_and_keep_their_resource_version() {
        let e = from_api_json(
            Kind::Pod,
            r#"{"metadata":{"name":"p","namespace":"x","resourceVersion":"5"},"spec":{"hostNetwork":"yes"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.label, "Pod/x/p");
        assert_eq!(e.resource_version.as_deref(), Some("5"));
        assert!(
            e.message.contains("hostNetwork") || e.message.contains("boolean"),
            "{}",
            e.message
        );
        let e = from_api_json(Kind::Pod, r#"{"metadata":{"namespace":"x"}}"#).unwrap_err();
        assert!(e.message.contains("metadata.name"), "{}", e.message);
        let e = from_api_json(Kind::Node, r#"[1,2]"#).unwrap_err();
        assert_eq!(e.label, "Node/");
    }
}
