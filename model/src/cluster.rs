//! [`ClusterConfig`]: one consistent view of the cluster's resources (a snapshot), checked
//! against each other, plus the effective per-node BGP configuration.
//!
//! [`parse`] / [`load`] read a multi-document YAML file of resources (optionally wrapped in
//! `kind: List` or `kind: <Kind>List` documents as `calicoctl get -o yaml` prints them),
//! validate each field and the resources against each other, and return a
//! [`ClusterConfig`].
//!
//! Every error is a [`ConfigError`] naming the file, the resource (`Kind/name`), the field
//! path and the line. Unknown fields are rejected with a "did you mean" hint.

use crate::calico::*;
use crate::decode::{self, Decoded, Object, RawResource, Resource};
use crate::error::ConfigError;
use crate::selector::Selector;
use crate::values::{net_contains, nets_overlap, Community};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// Default AS number (Calico's).
pub const DEFAULT_AS_NUMBER: u32 = 64512;
/// Default BGP port.
pub const DEFAULT_LISTEN_PORT: u16 = 179;

/// Everything read from one resource file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterConfig {
    /// The file label used in error messages.
    pub file: String,
    pub bgp_configurations: Vec<BgpConfiguration>,
    pub nodes: Vec<std::sync::Arc<NodeSpec>>,
    pub bgp_peers: Vec<BgpPeerSpec>,
    pub ip_pools: Vec<IpPoolSpec>,
    pub block_affinities: Vec<BlockAffinitySpec>,
    /// `IPAMConfiguration/default`, if present.
    pub ipam_config: Option<IpamConfigSpec>,
    pub network_policies: Vec<crate::policy::CalicoPolicy>,
    pub global_network_policies: Vec<crate::policy::CalicoPolicy>,
    pub pods: Vec<std::sync::Arc<crate::kubernetes::Pod>>,
    pub namespaces: Vec<std::sync::Arc<crate::kubernetes::Namespace>>,
    pub service_accounts: Vec<std::sync::Arc<crate::kubernetes::ServiceAccount>>,
    pub services: Vec<std::sync::Arc<crate::kubernetes::Service>>,
    pub endpoint_slices: Vec<std::sync::Arc<crate::kubernetes::EndpointSlice>>,
    pub kubernetes_network_policies: Vec<crate::policy::KubeNetworkPolicy>,
    pub host_endpoints: Vec<HostEndpointSpec>,
    /// GlobalNetworkSets and NetworkSets.
    pub network_sets: Vec<NetworkSetSpec>,
    pub felix_configurations: Vec<FelixConfigurationSpec>,
    /// Every resource as written, in file order (objects kept without their JSON, such
    /// as Kubernetes objects from the API, are left out).
    pub resources: Vec<RawResource>,
    /// Suspicious but accepted things (block outside every pool, peer for an unknown node...),
    /// formatted like [`ConfigError`]s.
    pub warnings: Vec<String>,
}

/// The BGP configuration in force for one node: `default` overlaid with `node.<name>`,
/// with Calico's defaults for anything unset.
///
/// As in Calico's confd, a `node.<name>` configuration only overrides `listenPort`,
/// `logSeverityScreen`, `communities` and `prefixAdvertisements`; every other field
/// (`asNumber`, `nodeToNodeMeshEnabled`, `nodeMeshPassword`, `nodeMeshMaxRestartTime`,
/// `bindMode`, `ignoredInterfaces`, the service IPs) is read from `default` only
/// (`updateBGPConfigCache` in confd's `client.go`; the API documents them as "only valid
/// on the global default BGPConfiguration").
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveBgpConfig {
    /// `default`'s `asNumber` (a `node.<name>` one is ignored, as by Calico).
    pub as_number: u32,
    pub node_to_node_mesh_enabled: bool,
    /// [`Self::configured_listen_port`], else 179.
    pub listen_port: u16,
    /// `listenPort` as written in `node.<name>`, else in `default`; `None` when neither
    /// sets it. Calico then gives BIRD no port (179) and leaves `_port_<port>` out of
    /// the protocol names of peerings towards this node.
    pub configured_listen_port: Option<u16>,
    pub log_severity_screen: String,
    /// Merged by name (node-specific definitions win).
    pub communities: Vec<NamedCommunity>,
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    pub service_cluster_ips: Vec<IpNetwork>,
    pub service_external_ips: Vec<IpNetwork>,
    pub service_load_balancer_ips: Vec<IpNetwork>,
    /// `serviceLoadBalancerAggregation` (default `Enabled`).
    pub service_load_balancer_aggregation: ServiceLoadBalancerAggregation,
    pub node_mesh_password: Option<String>,
    pub node_mesh_max_restart_time: Option<Duration>,
    pub bind_mode: BindMode,
    pub ignored_interfaces: Vec<String>,
}

impl Default for EffectiveBgpConfig {
    fn default() -> Self {
        EffectiveBgpConfig {
            as_number: DEFAULT_AS_NUMBER,
            node_to_node_mesh_enabled: true,
            listen_port: DEFAULT_LISTEN_PORT,
            configured_listen_port: None,
            log_severity_screen: "Info".to_string(),
            communities: Vec::new(),
            prefix_advertisements: Vec::new(),
            service_cluster_ips: Vec::new(),
            service_external_ips: Vec::new(),
            service_load_balancer_ips: Vec::new(),
            service_load_balancer_aggregation: ServiceLoadBalancerAggregation::Enabled,
            node_mesh_password: None,
            node_mesh_max_restart_time: None,
            bind_mode: BindMode::None,
            ignored_interfaces: Vec::new(),
        }
    }
}

impl EffectiveBgpConfig {
    /// Applies `c`: every field it sets when it is `default` (`global`), only the ones
    /// Calico reads from a `node.<name>` configuration otherwise.
    fn overlay(&mut self, c: &BgpConfiguration, global: bool) {
        if let Some(v) = c.listen_port {
            self.listen_port = v;
            self.configured_listen_port = Some(v);
        }
        if let Some(v) = &c.log_severity_screen {
            self.log_severity_screen = v.clone();
        }
        for nc in c.communities.iter().flatten() {
            match self.communities.iter_mut().find(|x| x.name == nc.name) {
                Some(existing) => existing.value = nc.value,
                None => self.communities.push(nc.clone()),
            }
        }
        if let Some(v) = &c.prefix_advertisements {
            self.prefix_advertisements = v.clone();
        }
        if !global {
            return;
        }
        if let Some(v) = c.as_number {
            self.as_number = v;
        }
        if let Some(v) = c.node_to_node_mesh_enabled {
            self.node_to_node_mesh_enabled = v;
        }
        if let Some(v) = &c.service_cluster_ips {
            self.service_cluster_ips = v.clone();
        }
        if let Some(v) = &c.service_external_ips {
            self.service_external_ips = v.clone();
        }
        if let Some(v) = &c.service_load_balancer_ips {
            self.service_load_balancer_ips = v.clone();
        }
        if let Some(v) = c.service_load_balancer_aggregation {
            self.service_load_balancer_aggregation = v;
        }
        if let Some(v) = &c.node_mesh_password {
            self.node_mesh_password = Some(v.clone());
        }
        if let Some(v) = c.node_mesh_max_restart_time {
            self.node_mesh_max_restart_time = Some(v);
        }
        if let Some(v) = c.bind_mode {
            self.bind_mode = v;
        }
        if let Some(v) = &c.ignored_interfaces {
            self.ignored_interfaces = v.clone();
        }
    }

    /// Resolves a community name (or literal value) from `prefixAdvertisements`.
    pub fn resolve_community(&self, text: &str) -> Option<Community> {
        if Community::looks_literal(text) {
            return Community::parse(text).ok();
        }
        self.communities
            .iter()
            .find(|c| c.name == text)
            .map(|c| c.value)
    }
}

/// Reads, parses and validates the resource file at `path`.
pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let label = path.display().to_string();
    parse(&label, &text)
}

/// Parses and validates resource YAML; `file_label` is used in error messages.
pub fn parse(file_label: &str, text: &str) -> Result<ClusterConfig, ConfigError> {
    let (decoded, mut warnings) = decode_all(file_label, text)?;
    let mut cfg = ClusterConfig::from_objects(file_label, decoded)?;
    warnings.append(&mut cfg.warnings);
    cfg.warnings = warnings;
    Ok(cfg)
}

/// Every object of resource YAML, decoded, plus the warnings about documents skipped.
fn decode_all(file_label: &str, text: &str) -> Result<(Vec<Object>, Vec<String>), ConfigError> {
    let docs = decode::yaml::parse_documents(file_label, text)?;
    let mut decoded = Vec::new();
    let mut warnings = Vec::new();
    for doc in &docs {
        decode::decode_document(file_label, doc, &mut decoded, &mut warnings)?;
    }
    Ok((decoded, warnings))
}

/// The file at `path` as decoded objects, checked against each other as strictly as
/// [`load`] checks them (the first error fails the whole file). The warnings returned
/// are the file's own (skipped documents, cross-object checks); each object carries its
/// field warnings.
pub fn load_objects(path: &Path) -> Result<(Vec<Object>, Vec<String>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let label = path.display().to_string();
    let (objects, mut warnings) = decode_all(&label, &text)?;
    let refs: Vec<&Object> = objects.iter().collect();
    warnings.extend(validate(&label, &refs, false)?);
    Ok((objects, warnings))
}

impl ClusterConfig {
    /// A checked snapshot from decoded objects: the first cross-object error fails it.
    pub fn from_objects(label: &str, objects: Vec<Object>) -> Result<ClusterConfig, ConfigError> {
        let refs: Vec<&Object> = objects.iter().collect();
        let checks = validate(label, &refs, false)?;
        let warnings = object_warnings(&refs, checks);
        drop(refs);
        let mut cfg = ClusterConfig {
            file: label.to_string(),
            warnings,
            ..ClusterConfig::default()
        };
        for d in objects {
            // Objects kept without their JSON (Kubernetes objects from the API, Nodes
            // translated from annotations) have nothing to show as written.
            if !d.raw.json.is_null() {
                cfg.resources.push(d.raw);
            }
            cfg.push(d.resource);
        }
        Ok(cfg)
    }

    fn push(&mut self, resource: Resource) {
        let cfg = self;
        match resource {
            Resource::BgpConfiguration(r) => cfg.bgp_configurations.push(*r),
            Resource::Node(r) => cfg.nodes.push(r),
            Resource::BgpPeer(r) => cfg.bgp_peers.push(*r),
            Resource::IpPool(r) => cfg.ip_pools.push(*r),
            Resource::BlockAffinity(r) => cfg.block_affinities.push(*r),
            Resource::IpamConfig(r) => {
                if r.name == "default" {
                    cfg.ipam_config = Some(*r)
                }
            }
            Resource::NetworkPolicy(r) => cfg.network_policies.push(*r),
            Resource::GlobalNetworkPolicy(r) => cfg.global_network_policies.push(*r),
            Resource::Pod(r) => cfg.pods.push(r),
            Resource::Namespace(r) => cfg.namespaces.push(r),
            Resource::ServiceAccount(r) => cfg.service_accounts.push(r),
            Resource::Service(r) => cfg.services.push(r),
            Resource::EndpointSlice(r) => cfg.endpoint_slices.push(r),
            Resource::KubernetesNetworkPolicy(r) => cfg.kubernetes_network_policies.push(*r),
            Resource::HostEndpoint(r) => cfg.host_endpoints.push(*r),
            Resource::NetworkSet(r) => cfg.network_sets.push(*r),
            Resource::FelixConfiguration(r) => cfg.felix_configurations.push(*r),
        }
    }

    /// A snapshot from objects that come one by one from a datastore: an object that
    /// conflicts with others (an overlapping pool, a block claimed twice) is dropped
    /// with an error in `rejected` (the later one of a conflicting pair, in `objects`
    /// order), and the rest is kept.
    pub fn from_objects_lenient(
        label: &str,
        objects: Vec<Object>,
        rejected: &mut Vec<(String, ConfigError)>,
    ) -> ClusterConfig {
        let refs: Vec<&Object> = objects.iter().collect();
        ClusterConfig::from_shared_lenient(label, refs, false, rejected)
    }

    /// [`Self::from_objects_lenient`] from objects kept elsewhere (a datastore cache):
    /// nothing is copied but what the snapshot holds (Kubernetes objects are shared by
    /// `Arc`; the few Calico objects are cloned). `names_unique`: the caller guarantees
    /// that no two objects have the same kind, namespace and name (a cache keyed by
    /// them), so that check is skipped.
    pub fn from_shared_lenient(
        label: &str,
        mut objects: Vec<&Object>,
        names_unique: bool,
        rejected: &mut Vec<(String, ConfigError)>,
    ) -> ClusterConfig {
        let checks = loop {
            match validate(label, &objects, names_unique) {
                Ok(w) => break w,
                Err(e) => {
                    let culprit = e.resource().map(str::to_string);
                    let pos = culprit
                        .as_deref()
                        .and_then(|c| objects.iter().rposition(|o| o.label == c));
                    match pos {
                        Some(i) => {
                            let o = objects.remove(i);
                            rejected.push((o.label.clone(), e));
                        }
                        None => {
                            rejected.push((String::new(), e));
                            return ClusterConfig {
                                file: label.to_string(),
                                ..ClusterConfig::default()
                            };
                        }
                    }
                }
            }
        };
        let mut cfg = ClusterConfig {
            file: label.to_string(),
            warnings: object_warnings(&objects, checks),
            ..ClusterConfig::default()
        };
        for d in objects {
            if !d.raw.json.is_null() {
                cfg.resources.push(d.raw.clone());
            }
            cfg.push(d.resource.clone());
        }
        cfg
    }
}

/// Every object's own warnings, in order, then those of the cross-object checks.
fn object_warnings(objects: &[&Object], checks: Vec<String>) -> Vec<String> {
    let mut warnings: Vec<String> = objects
        .iter()
        .flat_map(|o| o.warnings.iter().cloned())
        .collect();
    warnings.extend(checks);
    warnings
}

fn err_at(file: &str, d: &Decoded, field: &'static str, message: String) -> ConfigError {
    ConfigError::invalid(
        file,
        Some(d.label.clone()),
        Some(field.to_string()),
        message,
        Some(d.lines.get(field).copied().unwrap_or(d.raw.line)),
    )
}

/// Cross-resource checks. Returns warnings; errors for what is clearly wrong.
fn validate(
    file: &str,
    decoded: &[&Decoded],
    names_unique: bool,
) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();

    // Duplicate names per kind.
    let mut seen: HashMap<(Kind, Option<&str>, &str), &Decoded> = HashMap::new();
    for &d in decoded.iter().filter(|_| !names_unique) {
        let key = (d.raw.kind, d.raw.namespace.as_deref(), d.raw.name.as_str());
        if let Some(first) = seen.insert(key, d) {
            return Err(err_at(
                file,
                d,
                "metadata.name",
                format!(
                    "duplicate {} name {:?} (first defined at line {})",
                    d.raw.kind, d.raw.name, first.raw.line
                ),
            ));
        }
    }

    let nodes: Vec<(&Decoded, &NodeSpec)> = decoded
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::Node(n) => Some((*d, &**n)),
            _ => None,
        })
        .collect();
    let node_names: HashSet<&str> = nodes.iter().map(|(_, n)| n.name.as_str()).collect();
    let node_exists = |name: &str| node_names.contains(name);

    // Node addresses must be unique (of two, the later one is wrong).
    let mut addresses: HashMap<std::net::IpAddr, &Decoded> = HashMap::new();
    for (d, n) in &nodes {
        for (address, field) in [
            (
                n.ipv4_address.map(|a| a.ip().into()),
                "spec.bgp.ipv4Address",
            ),
            (
                n.ipv6_address.map(|a| a.ip().into()),
                "spec.bgp.ipv6Address",
            ),
        ] {
            let Some(a): Option<std::net::IpAddr> = address else {
                continue;
            };
            if let Some(od) = addresses.get(&a) {
                return Err(err_at(
                    file,
                    d,
                    field,
                    format!(
                        "{} is also the address of {} (defined at line {})",
                        a, od.label, od.raw.line
                    ),
                ));
            }
        }
        if let Some(a) = n.ipv4_address {
            addresses.insert(a.ip().into(), d);
        }
        if let Some(a) = n.ipv6_address {
            addresses.insert(a.ip().into(), d);
        }
        if n.ipv4_address.is_some_and(|a| a.prefix() == 32) {
            warnings.push(
                err_at(file, d, "spec.bgp.ipv4Address", "a /32 node address puts every other node in a different subnet (CrossSubnet will always encapsulate); use the interface's real prefix length".into())
                    .to_string(),
            );
        }
    }

    // BGP configurations: community names used by prefixAdvertisements must exist.
    let default_cfg = decoded.iter().find_map(|d| match &d.resource {
        Resource::BgpConfiguration(c) if c.name == "default" => Some(&**c),
        _ => None,
    });
    for d in decoded {
        let Resource::BgpConfiguration(c) = &d.resource else {
            continue;
        };
        if let Some(node) = c.node_name() {
            if !node_exists(node) {
                warnings.push(
                    err_at(
                        file,
                        d,
                        "metadata.name",
                        format!("there is no Node named {node:?} in this file"),
                    )
                    .to_string(),
                );
            }
        }
        for pa in c.prefix_advertisements.iter().flatten() {
            for name in &pa.communities {
                if Community::looks_literal(name) {
                    continue;
                }
                let defined = |cfg: Option<&BgpConfiguration>| {
                    cfg.and_then(|c| c.communities.as_ref())
                        .is_some_and(|cs| cs.iter().any(|x| &x.name == name))
                };
                if !defined(Some(c)) && !defined(default_cfg) {
                    return Err(ConfigError::invalid(
                        file,
                        Some(d.label.clone()),
                        Some("spec.prefixAdvertisements".into()),
                        format!(
                            "community {name:?} (for {}) is neither defined in spec.communities nor a literal value like \"65000:100\"",
                            pa.cidr
                        ),
                        Some(d.raw.line),
                    ));
                }
            }
        }
    }

    // BGP peers for unknown nodes.
    for d in decoded {
        if let Resource::BgpPeer(p) = &d.resource {
            if let Some(node) = &p.node {
                if !node_exists(node) {
                    warnings.push(
                        err_at(
                            file,
                            d,
                            "spec.node",
                            format!("there is no Node named {node:?} in this file"),
                        )
                        .to_string(),
                    );
                }
            }
        }
    }

    // IP pools must not overlap.
    let pools: Vec<(&Decoded, &IpPoolSpec)> = decoded
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::IpPool(p) => Some((*d, &**p)),
            _ => None,
        })
        .collect();
    for (i, (d, p)) in pools.iter().enumerate() {
        for (od, o) in &pools[..i] {
            if nets_overlap(&p.cidr, &o.cidr) {
                return Err(err_at(
                    file,
                    d,
                    "spec.cidr",
                    format!(
                        "{} overlaps {} of {} (defined at line {})",
                        p.cidr, o.cidr, od.label, od.raw.line
                    ),
                ));
            }
        }
    }

    // Block affinities: inside a pool, not claimed twice.
    let blocks: Vec<(&Decoded, &BlockAffinitySpec)> = decoded
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::BlockAffinity(b) => Some((*d, &**b)),
            _ => None,
        })
        .collect();
    // active blocks seen so far, by (family, first address, prefix length)
    let mut claimed: BTreeMap<(bool, u128, u8), (&Decoded, &BlockAffinitySpec)> = BTreeMap::new();
    for (d, b) in &blocks {
        if !node_exists(&b.node) {
            warnings.push(
                err_at(
                    file,
                    d,
                    "spec.node",
                    format!("there is no Node named {:?} in this file", b.node),
                )
                .to_string(),
            );
        }
        let same_family: Vec<&IpPoolSpec> = pools
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| p.cidr.is_ipv4() == b.cidr.is_ipv4())
            .collect();
        match same_family.iter().find(|p| net_contains(&p.cidr, &b.cidr)) {
            Some(pool) => {
                if pool.block_size != b.cidr.prefix() {
                    warnings.push(
                        err_at(
                            file,
                            d,
                            "spec.cidr",
                            format!(
                                "{} is a /{} but IPPool/{} has blockSize {}",
                                b.cidr,
                                b.cidr.prefix(),
                                pool.name,
                                pool.block_size
                            ),
                        )
                        .to_string(),
                    );
                }
            }
            None if same_family.is_empty() => warnings.push(
                err_at(
                    file,
                    d,
                    "spec.cidr",
                    format!(
                        "{} is not inside any IPPool (there is no IPv{} pool)",
                        b.cidr,
                        if b.cidr.is_ipv4() { 4 } else { 6 }
                    ),
                )
                .to_string(),
            ),
            None => {
                let list: Vec<String> = same_family.iter().map(|p| p.cidr.to_string()).collect();
                return Err(err_at(
                    file,
                    d,
                    "spec.cidr",
                    format!("{} is not inside any IPPool ({})", b.cidr, list.join(", ")),
                ));
            }
        }
        if !b.is_active() {
            continue;
        }
        let key = net_key(&b.cidr);
        let found = earlier_overlapping(&claimed, &b.cidr);
        claimed.entry(key).or_insert((d, b));
        if let Some((od, o)) = found {
            let what = if o.node == b.node {
                format!(
                    "{} overlaps {} of the same node (defined at line {})",
                    b.cidr, od.label, od.raw.line
                )
            } else {
                format!(
                    "{} overlaps {} owned by node {:?} ({}, defined at line {})",
                    b.cidr, o.cidr, o.node, od.label, od.raw.line
                )
            };
            return Err(err_at(file, d, "spec.cidr", what));
        }
    }
    Ok(warnings)
}

/// A network as an ordered key: (IPv4?, first address, prefix length).
fn net_key(n: &IpNetwork) -> (bool, u128, u8) {
    let start = match n.network() {
        std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
        std::net::IpAddr::V6(a) => u128::from(a),
    };
    (n.is_ipv4(), start, n.prefix())
}

/// One network in `claimed` that overlaps `n`: one containing it (a lookup per shorter
/// prefix length) or one inside it (a range of first addresses). O(bits · log n).
fn earlier_overlapping<T: Copy>(
    claimed: &BTreeMap<(bool, u128, u8), T>,
    n: &IpNetwork,
) -> Option<T> {
    let (v4, start, prefix) = net_key(n);
    let bits: u8 = if v4 { 32 } else { 128 };
    let mask = |p: u8| -> u128 {
        if p == 0 {
            0
        } else {
            (u128::MAX << (bits - p)) & (u128::MAX >> (128 - u32::from(bits)))
        }
    };
    for p in 0..=prefix {
        if let Some(t) = claimed.get(&(v4, start & mask(p), p)) {
            return Some(*t);
        }
    }
    let end = start | (!mask(prefix) & (u128::MAX >> (128 - u32::from(bits))));
    claimed
        .range((v4, start, prefix)..=(v4, end, u8::MAX))
        .next()
        .map(|(_, t)| *t)
}

impl ClusterConfig {
    /// The failsafe ports in force on `node` (inbound, outbound): each list from
    /// `FelixConfiguration/node.<node>` if it sets it, else from `default`, else
    /// Calico's defaults; an explicit empty list means none (as Felix).
    pub fn failsafe_ports(
        &self,
        node: &str,
    ) -> (
        Vec<crate::resolved::Failsafe>,
        Vec<crate::resolved::Failsafe>,
    ) {
        let per_node = format!("node.{node}");
        let find = |name: &str| self.felix_configurations.iter().find(|c| c.name == name);
        let (n, d) = (find(&per_node), find("default"));
        let pick = |get: fn(&FelixConfigurationSpec) -> &Option<Vec<crate::resolved::Failsafe>>,
                    default: &[crate::resolved::Failsafe]| {
            n.and_then(|c| get(c).clone())
                .or_else(|| d.and_then(|c| get(c).clone()))
                .unwrap_or_else(|| default.to_vec())
        };
        (
            pick(
                |c| &c.failsafe_inbound_host_ports,
                crate::resolved::DEFAULT_FAILSAFE_INBOUND,
            ),
            pick(
                |c| &c.failsafe_outbound_host_ports,
                crate::resolved::DEFAULT_FAILSAFE_OUTBOUND,
            ),
        )
    }
}

impl ClusterConfig {
    /// The Node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name).map(|n| &**n)
    }

    /// The `BGPConfiguration` named `name` (`default`, `node.<x>`).
    pub fn bgp_configuration(&self, name: &str) -> Option<&BgpConfiguration> {
        self.bgp_configurations.iter().find(|c| c.name == name)
    }

    /// The BGP configuration in force for `node_name` (`default` overlaid with
    /// `node.<node_name>`, Calico defaults for the rest).
    pub fn bgp_config_for(&self, node_name: &str) -> EffectiveBgpConfig {
        let mut eff = EffectiveBgpConfig::default();
        if let Some(c) = self.bgp_configuration("default") {
            eff.overlay(c, true);
        }
        if let Some(c) = self.bgp_configuration(&format!("node.{node_name}")) {
            eff.overlay(c, false);
        }
        eff
    }

    /// The AS number of `node`, and whether it is inherited from the BGP configuration.
    pub fn node_as_number(&self, node: &NodeSpec) -> (u32, bool) {
        match node.as_number {
            Some(asn) => (asn, false),
            None => (self.bgp_config_for(&node.name).as_number, true),
        }
    }

    /// Nodes whose labels match `selector`.
    pub fn nodes_matching<'a>(
        &'a self,
        selector: &'a Selector,
    ) -> impl Iterator<Item = &'a NodeSpec> + 'a {
        self.nodes
            .iter()
            .map(|n| &**n)
            .filter(move |n| selector.matches(&n.labels))
    }

    /// The pool containing `net`, if any.
    pub fn pool_for(&self, net: &IpNetwork) -> Option<&IpPoolSpec> {
        self.ip_pools.iter().find(|p| net_contains(&p.cidr, net))
    }
}

#[cfg(test)]
mod overlap_tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn earlier_overlapping_finds_containing_contained_and_equal_networks() {
        let mut claimed = BTreeMap::new();
        for (i, n) in ["10.65.0.0/26", "10.65.1.0/24", "fd00::/120", "0.0.0.0/0"]
            .iter()
            .enumerate()
            .take(3)
        {
            claimed.insert(net_key(&net(n)), i);
        }
        let find = |s: &str| earlier_overlapping(&claimed, &net(s));
        assert_eq!(find("10.65.0.0/26"), Some(0), "equal");
        assert_eq!(find("10.65.0.32/27"), Some(0), "inside an earlier one");
        assert_eq!(find("10.65.0.0/16"), Some(0), "around earlier ones");
        assert_eq!(find("10.65.1.64/26"), Some(1));
        assert_eq!(find("10.65.0.64/26"), None, "the neighbour");
        assert_eq!(find("10.65.2.0/24"), None);
        assert_eq!(find("fd00::80/121"), Some(2));
        assert_eq!(find("fd00::100/120"), None);
        assert_eq!(find("::/0"), Some(2), "IPv6 never matches IPv4");
        assert_eq!(find("0.0.0.0/0"), Some(0));
        assert_eq!(find("10.0.0.0/32"), None);
        // against a naive pairwise check, on a grid of networks
        let all: Vec<IpNetwork> = (0..64u32)
            .flat_map(|i| {
                [24u8, 26, 27, 30].map(|p| {
                    let a = std::net::Ipv4Addr::from(0x0a41_0000 + i * 64);
                    IpNetwork::new(a.into(), p).unwrap()
                })
            })
            .map(|n| IpNetwork::new(n.network(), n.prefix()).unwrap())
            .collect();
        let mut claimed = BTreeMap::new();
        for (i, n) in all.iter().enumerate() {
            let naive = all[..i]
                .iter()
                .filter(|o| claimed.contains_key(&net_key(o)))
                .any(|o| nets_overlap(n, o));
            let fast = earlier_overlapping(&claimed, n).is_some();
            assert_eq!(naive, fast, "{n}");
            if !fast {
                claimed.insert(net_key(n), i);
            }
        }
    }
}
