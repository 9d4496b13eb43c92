//! Service IP advertisement: which service addresses this node originates over BGP, and
//! why, decided as Calico's confd does it (`confd/pkg/backends/calico/routes.go`, the
//! route generator, and `client.go`'s `updateGlobalRoutes`).
//!
//! From the default BGPConfiguration:
//!
//! - every `serviceClusterIPs` CIDR, every `serviceExternalIPs` CIDR that is not a
//!   single address (/32, /128), and — with `serviceLoadBalancerAggregation: Enabled`,
//!   the default — every `serviceLoadBalancerIPs` CIDR that is not a single address, are
//!   advertised from every node ([`RouteSource::Range`]). The same CIDRs are "reject"
//!   ranges: routes learned inside them are not programmed into the kernel (BIRD's
//!   `calico_kernel_programming` filter), so a node never forwards service traffic to
//!   another node by a learned route ([`ServiceRoutes::kernel_reject`]).
//! - per Service ([`RouteSource::Service`]), a /32 (/128) for each address Calico
//!   advertises: its cluster IPs when any `serviceClusterIPs` is configured, its
//!   `externalIPs` inside a `serviceExternalIPs` CIDR, its `status.loadBalancer.ingress`
//!   IPs inside a `serviceLoadBalancerIPs` CIDR. The node advertises them when
//!   `advertiseThisService` says so:
//!   - only `ClusterIP`, `NodePort` and `LoadBalancer` services with a cluster IP;
//!   - `externalTrafficPolicy: Cluster` with a load-balancer IP (`spec.loadBalancerIP` or
//!     an ingress IP) inside a single-address `serviceLoadBalancerIPs` entry (type
//!     `LoadBalancer`), or an external IP inside a single-address `serviceExternalIPs`
//!     entry: from every node, endpoints or not (those /32s are not in the ranges
//!     advertised from every node);
//!   - otherwise, a policy other than `Local` (`Cluster` or unset) with aggregation
//!     enabled: nothing per Service (the ranges cover it);
//!   - otherwise the EndpointSlices of the Service whose `addressType` is one of its
//!     `ipFamilies`: `Local` needs a ready endpoint (`ready` unset counts as ready) on
//!     this node; any other policy a ready endpoint anywhere.
//! - a node labelled `node.kubernetes.io/exclude-from-external-load-balancers=true`
//!   advertises none of it (it still rejects the ranges).
//!
//! Calico reacts to events and keeps reference counts; this computes the state its
//! full resync (`resyncKnownRoutes`) reaches, from the objects alone. One difference on
//! purpose: a Service whose EndpointSlices are all deleted keeps its routes in Calico
//! until the next resync (`setRouteForSvc` returns early, and the delete handler looks
//! the routes up under the slice's key); here it has none, so the routes are withdrawn
//! as soon as the last slice goes.

use brindle_model::kubernetes::{EndpointSlice, Service, TrafficPolicy, EXCLUDE_FROM_LB_LABEL};
use brindle_model::{EffectiveBgpConfig, ServiceLoadBalancerAggregation};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// At most this many endpoints are named as the reason for one route.
pub const MAX_ENDPOINTS_SHOWN: usize = 4;

/// The BGPConfiguration field a range comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RangeField {
    #[serde(rename = "serviceClusterIPs")]
    ClusterIps,
    #[serde(rename = "serviceExternalIPs")]
    ExternalIps,
    #[serde(rename = "serviceLoadBalancerIPs")]
    LoadBalancerIps,
}

impl RangeField {
    pub fn as_str(self) -> &'static str {
        match self {
            RangeField::ClusterIps => "serviceClusterIPs",
            RangeField::ExternalIps => "serviceExternalIPs",
            RangeField::LoadBalancerIps => "serviceLoadBalancerIPs",
        }
    }
}

/// Which of a Service's addresses a route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AddressKind {
    #[serde(rename = "clusterIP")]
    ClusterIp,
    #[serde(rename = "externalIP")]
    ExternalIp,
    #[serde(rename = "loadBalancerIP")]
    LoadBalancerIp,
}

impl AddressKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::ClusterIp => "clusterIP",
            AddressKind::ExternalIp => "externalIP",
            AddressKind::LoadBalancerIp => "loadBalancerIP",
        }
    }
}

/// An endpoint that justifies a route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRef {
    /// The EndpointSlice.
    pub slice: String,
    pub addresses: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Why the node advertises a Service's address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Basis {
    /// `externalTrafficPolicy: Local` and ready endpoints on this node.
    LocalEndpoints {
        endpoints: Vec<EndpointRef>,
        /// Further such endpoints, not listed.
        more: usize,
    },
    /// Not `Local`, aggregation disabled, and ready endpoints (on any node).
    ReadyEndpoints {
        endpoints: Vec<EndpointRef>,
        more: usize,
    },
    /// `Cluster`, and an address inside a single-address entry of this range field:
    /// advertised from every node.
    SingleAddress { field: RangeField },
}

/// Where one advertised prefix comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "source")]
pub enum RouteSource {
    /// A range of the default BGPConfiguration, advertised from every node.
    Range { field: RangeField },
    /// An address of a Service.
    Service {
        /// `namespace/name`.
        service: String,
        address: AddressKind,
        /// `externalTrafficPolicy` (`Cluster`, `Local`, or empty when unset).
        policy: String,
        basis: Basis,
    },
}

/// One service prefix this node advertises, with every reason for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRoute {
    pub prefix: IpNetwork,
    pub sources: Vec<RouteSource>,
}

/// What the node does with service addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRoutes {
    /// Sorted by prefix.
    pub advertise: Vec<ServiceRoute>,
    /// Learned routes inside these are not programmed into the kernel.
    pub kernel_reject: Vec<IpNetwork>,
    /// The node carries the exclude-from-external-load-balancers label.
    pub excluded: bool,
}

/// The inputs: the effective BGP configuration of the node (its service fields come
/// from `default` only), this node's name and labels, and the cluster's Services and
/// EndpointSlices.
pub struct Inputs<'a> {
    pub config: &'a EffectiveBgpConfig,
    pub node_name: &'a str,
    pub node_labels: &'a BTreeMap<String, String>,
    pub services: &'a [Arc<Service>],
    pub endpoint_slices: &'a [Arc<EndpointSlice>],
}

fn is_single(n: &IpNetwork) -> bool {
    match n {
        IpNetwork::V4(v) => v.prefix() == 32,
        IpNetwork::V6(v) => v.prefix() == 128,
    }
}

fn host(ip: IpAddr) -> IpNetwork {
    match ip {
        IpAddr::V4(a) => IpNetwork::V4(Ipv4Network::from(a)),
        IpAddr::V6(a) => IpNetwork::V6(Ipv6Network::from(a)),
    }
}

/// Go's `IPNet.Contains`, which never matches across families (an IPv4 address is not
/// in an IPv6 network).
fn in_any(nets: &[IpNetwork], ip: IpAddr) -> bool {
    nets.iter()
        .any(|n| n.is_ipv4() == ip.is_ipv4() && n.contains(ip))
}

/// Calico's `isSingle{External,LoadBalancer}IP`: inside an entry that is one address.
fn in_single(nets: &[IpNetwork], ip: IpAddr) -> bool {
    nets.iter()
        .any(|n| is_single(n) && n.is_ipv4() == ip.is_ipv4() && n.contains(ip))
}

fn policy_text(p: Option<TrafficPolicy>) -> &'static str {
    match p {
        Some(TrafficPolicy::Cluster) => "Cluster",
        Some(TrafficPolicy::Local) => "Local",
        None => "",
    }
}

/// `ExcludeServiceAdvertisement`: the label's value is exactly `true`.
pub fn excluded(labels: &BTreeMap<String, String>) -> bool {
    labels.get(EXCLUDE_FROM_LB_LABEL).map(String::as_str) == Some("true")
}

/// The ranges advertised from every node (and rejected from the kernel), with their field.
fn global_ranges(cfg: &EffectiveBgpConfig) -> Vec<(IpNetwork, RangeField)> {
    let mut v: Vec<(IpNetwork, RangeField)> = Vec::new();
    v.extend(
        cfg.service_cluster_ips
            .iter()
            .map(|n| (*n, RangeField::ClusterIps)),
    );
    v.extend(
        cfg.service_external_ips
            .iter()
            .filter(|n| !is_single(n))
            .map(|n| (*n, RangeField::ExternalIps)),
    );
    if cfg.service_load_balancer_aggregation == ServiceLoadBalancerAggregation::Enabled {
        v.extend(
            cfg.service_load_balancer_ips
                .iter()
                .filter(|n| !is_single(n))
                .map(|n| (*n, RangeField::LoadBalancerIps)),
        );
    }
    v
}

/// `advertiseThisService` with the endpoints that decided it; `None`: not advertised.
fn basis(inp: &Inputs<'_>, svc: &Service, slices: &[&EndpointSlice]) -> Option<Basis> {
    let cfg = inp.config;
    if !matches!(
        svc.service_type.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer"
    ) {
        return None;
    }
    if svc.cluster_ips.is_empty() {
        return None;
    }
    let policy = svc.external_traffic_policy;
    if policy == Some(TrafficPolicy::Cluster) {
        let lb_single = svc.service_type == "LoadBalancer"
            && svc
                .spec_load_balancer_ip
                .iter()
                .chain(&svc.load_balancer_ips)
                .any(|ip| in_single(&cfg.service_load_balancer_ips, *ip));
        if lb_single {
            return Some(Basis::SingleAddress {
                field: RangeField::LoadBalancerIps,
            });
        }
        if svc
            .external_ips
            .iter()
            .any(|ip| in_single(&cfg.service_external_ips, *ip))
        {
            return Some(Basis::SingleAddress {
                field: RangeField::ExternalIps,
            });
        }
    }
    let local = policy == Some(TrafficPolicy::Local);
    if !local && cfg.service_load_balancer_aggregation == ServiceLoadBalancerAggregation::Enabled {
        return None;
    }
    let mut found: Vec<EndpointRef> = Vec::new();
    for slice in slices {
        let family_ok = slice
            .address_type
            .as_ref()
            .is_some_and(|t| svc.ip_families.iter().any(|f| f == t));
        if !family_ok {
            continue;
        }
        for e in &slice.endpoints {
            if !e.ready {
                continue;
            }
            if local && e.node_name.as_deref() != Some(inp.node_name) {
                continue;
            }
            found.push(EndpointRef {
                slice: slice.name.clone(),
                addresses: e.addresses.clone(),
                node: e.node_name.as_deref().map(str::to_string),
            });
        }
    }
    if found.is_empty() {
        return None;
    }
    found.sort();
    let more = found.len().saturating_sub(MAX_ENDPOINTS_SHOWN);
    found.truncate(MAX_ENDPOINTS_SHOWN);
    Some(if local {
        Basis::LocalEndpoints {
            endpoints: found,
            more,
        }
    } else {
        Basis::ReadyEndpoints {
            endpoints: found,
            more,
        }
    })
}

/// `getAllRoutesForService`: the addresses to advertise for a Service, with their kind.
fn service_addresses(cfg: &EffectiveBgpConfig, svc: &Service) -> Vec<(IpAddr, AddressKind)> {
    let mut v = Vec::new();
    if !cfg.service_cluster_ips.is_empty() {
        v.extend(
            svc.cluster_ips
                .iter()
                .map(|ip| (*ip, AddressKind::ClusterIp)),
        );
    }
    v.extend(
        svc.external_ips
            .iter()
            .filter(|ip| in_any(&cfg.service_external_ips, **ip))
            .map(|ip| (*ip, AddressKind::ExternalIp)),
    );
    v.extend(
        svc.load_balancer_ips
            .iter()
            .filter(|ip| in_any(&cfg.service_load_balancer_ips, **ip))
            .map(|ip| (*ip, AddressKind::LoadBalancerIp)),
    );
    v
}

/// The service prefixes this node advertises and the ranges it keeps out of the kernel.
pub fn service_routes(inp: &Inputs<'_>) -> ServiceRoutes {
    let cfg = inp.config;
    let ranges = global_ranges(cfg);
    let mut kernel_reject: Vec<IpNetwork> = ranges.iter().map(|(n, _)| *n).collect();
    kernel_reject.sort();
    kernel_reject.dedup();
    let excluded = excluded(inp.node_labels);
    let mut out: BTreeMap<IpNetwork, BTreeSet<RouteSource>> = BTreeMap::new();
    if !excluded {
        for (net, field) in &ranges {
            out.entry(*net)
                .or_default()
                .insert(RouteSource::Range { field: *field });
        }
        // the slices of each Service (`kubernetes.io/service-name` in its namespace)
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for s in inp.endpoint_slices {
            if let Some(name) = s.service_name.as_deref() {
                by_service
                    .entry((s.namespace.as_str(), name))
                    .or_default()
                    .push(s);
            }
        }
        for svc in inp.services {
            let Some(slices) = by_service.get(&(svc.namespace.as_str(), svc.name.as_str())) else {
                continue;
            };
            let Some(basis) = basis(inp, svc, slices) else {
                continue;
            };
            for (ip, kind) in service_addresses(cfg, svc) {
                out.entry(host(ip))
                    .or_default()
                    .insert(RouteSource::Service {
                        service: format!("{}/{}", svc.namespace, svc.name),
                        address: kind,
                        policy: policy_text(svc.external_traffic_policy).to_string(),
                        basis: basis.clone(),
                    });
            }
        }
    }
    ServiceRoutes {
        advertise: out
            .into_iter()
            .map(|(prefix, sources)| ServiceRoute {
                prefix,
                sources: sources.into_iter().collect(),
            })
            .collect(),
        kernel_reject,
        excluded,
    }
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
