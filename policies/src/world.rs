//! What policy is about: workload endpoints (a pod's addresses, labels, named ports,
//! namespace), host endpoints (a Calico HostEndpoint: its `expectedIPs`, labels and
//! named ports, in no namespace; see [`HostInfo`]), network sets (GlobalNetworkSet,
//! NetworkSet: labelled nets rule selectors select) and namespaces with their labels.
//! Built from the resource model; the
//! `kubernetes.io/metadata.name` label is set on every namespace, as the API server sets
//! it (so file mode behaves the same).

use brindle_model::kubernetes::{Namespace, Pod};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A container port with a name (a named port of its pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    /// IANA protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u8,
    pub port: u16,
}

/// A workload endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub namespace: String,
    pub name: String,
    /// Shared with the model's pod (interned, never copied per endpoint).
    pub labels: brindle_model::intern::Labels,
    pub ips: Vec<IpAddr>,
    pub named_ports: Vec<NamedPort>,
    /// `spec.serviceAccountName` (empty: none known).
    pub service_account: String,
    /// Set for a host endpoint (then `namespace` is empty and `ips` are its
    /// `expectedIPs`): selected only by GlobalNetworkPolicy selectors and by rule
    /// selectors of a GlobalNetworkPolicy or with `namespaceSelector: global()`, never
    /// by a namespaced NetworkPolicy nor a Kubernetes one.
    pub host: Option<HostInfo>,
}

/// What a host endpoint is beyond an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostInfo {
    /// `spec.node`.
    pub node: String,
    /// `spec.interfaceName`: an interface, `*` or empty.
    pub iface: String,
    /// `projectcalico-default-allow` among its profiles.
    pub profile_allows: bool,
}

impl Endpoint {
    pub fn is_host(&self) -> bool {
        self.host.is_some()
    }

    /// A host endpoint from its Calico resource.
    pub fn from_host_endpoint(h: &brindle_model::HostEndpointSpec) -> Endpoint {
        Endpoint {
            namespace: String::new(),
            name: h.name.clone(),
            labels: brindle_model::intern::labels(h.labels.clone()),
            ips: h.expected_ips.clone(),
            named_ports: h
                .ports
                .iter()
                .map(|p| NamedPort {
                    name: p.name.clone(),
                    protocol: p.protocol,
                    port: p.port,
                })
                .collect(),
            service_account: String::new(),
            host: Some(HostInfo {
                node: h.node.clone(),
                iface: h.interface_name.clone(),
                profile_allows: h.profile_allows(),
            }),
        }
    }
}

/// Endpoints and namespaces.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub endpoints: Vec<Endpoint>,
    /// Namespace name → labels (with [`NAMESPACE_NAME_LABEL`]).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// GlobalNetworkSets and NetworkSets: labelled nets that rule selectors select.
    pub network_sets: Vec<brindle_model::NetworkSetSpec>,
    /// (namespace, name) → labels of the service accounts that have any.
    pub service_accounts: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Address → index in `endpoints` (kept by [`World::add_endpoint`]).
    by_ip: std::collections::HashMap<IpAddr, usize>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A protocol name of a container port as a number (`TCP` when empty or unknown).
pub fn protocol_number(name: &str) -> u8 {
    match name.to_ascii_uppercase().as_str() {
        "UDP" => 17,
        "SCTP" => 132,
        _ => 6,
    }
}

impl World {
    /// From the model's pods (workloads only) and namespaces. A pod's namespace that has
    /// no Namespace object still exists for policy, with only its name label.
    pub fn from_model<'a>(
        pods: impl IntoIterator<Item = &'a Pod>,
        namespaces: impl IntoIterator<Item = &'a Namespace>,
    ) -> World {
        let mut w = World::default();
        for n in namespaces {
            w.add_namespace(&n.name, n.labels.clone());
        }
        for p in pods.into_iter().filter(|p| p.is_workload()) {
            w.add_endpoint(Endpoint {
                namespace: p.namespace.to_string(),
                name: p.name.clone(),
                labels: p.labels.clone(),
                ips: p.ips.clone(),
                named_ports: p
                    .ports
                    .iter()
                    .filter(|c| !c.name.is_empty())
                    .map(|c| NamedPort {
                        name: c.name.to_string(),
                        protocol: protocol_number(&c.protocol),
                        port: c.port,
                    })
                    .collect(),
                service_account: p.service_account.to_string(),
                host: None,
            });
        }
        w
    }

    pub fn add_namespace(&mut self, name: &str, mut labels: BTreeMap<String, String>) {
        labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
        self.namespaces.insert(name.into(), labels);
    }

    pub fn add_endpoint(&mut self, e: Endpoint) {
        if !e.is_host() && !self.namespaces.contains_key(&e.namespace) {
            self.add_namespace(&e.namespace.clone(), BTreeMap::new());
        }
        for ip in &e.ips {
            self.by_ip.entry(*ip).or_insert(self.endpoints.len());
        }
        self.endpoints.push(e);
    }

    /// A service account's labels (the `pcsa.` labels of the pods that use it).
    pub fn add_service_account(
        &mut self,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
    ) {
        if !labels.is_empty() {
            self.service_accounts
                .insert((namespace.to_string(), name.to_string()), labels);
        }
    }

    /// The labels Calico selectors see on a network set: its own; a namespaced
    /// NetworkSet also has `projectcalico.org/namespace` and its namespace's `pcns.`
    /// labels (Felix's profile `kns.<namespace>`).
    pub fn network_set_labels(
        &self,
        n: &brindle_model::NetworkSetSpec,
    ) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        if let Some(ns) = &n.namespace {
            for (k, v) in self.namespace_labels(ns) {
                l.insert(format!("pcns.{k}"), v.clone());
            }
            l.insert("pcns.projectcalico.org/name".into(), ns.clone());
            l.insert("projectcalico.org/namespace".into(), ns.clone());
        }
        for (k, v) in &n.labels {
            l.insert(k.clone(), v.clone());
        }
        l
    }

    /// The labels of a namespace (empty if unknown).
    pub fn namespace_labels(&self, ns: &str) -> &BTreeMap<String, String> {
        self.namespaces.get(ns).unwrap_or(&NO_LABELS)
    }

    /// The labels Calico selectors see on an endpoint (Felix's label inheritance): its
    /// own, `projectcalico.org/namespace`, `orchestrator` and `serviceaccount`, and its
    /// profiles' — the namespace's labels as `pcns.<key>` with `pcns.projectcalico.org/name`,
    /// the service account's labels as `pcsa.<key>` with its name as
    /// `pcsa.projectcalico.org/name`. The endpoint's own labels win.
    pub fn calico_labels(&self, e: &Endpoint) -> BTreeMap<String, String> {
        if e.is_host() {
            // A host endpoint has its own labels only (no namespace, no profile labels).
            return e.labels.as_ref().clone();
        }
        let mut l = BTreeMap::new();
        for (k, v) in self.namespace_labels(&e.namespace) {
            l.insert(format!("pcns.{k}"), v.clone());
        }
        l.insert("pcns.projectcalico.org/name".into(), e.namespace.clone());
        if !e.service_account.is_empty() {
            if let Some(sa) = self
                .service_accounts
                .get(&(e.namespace.clone(), e.service_account.clone()))
            {
                for (k, v) in sa {
                    l.insert(format!("pcsa.{k}"), v.clone());
                }
            }
            l.insert(
                "pcsa.projectcalico.org/name".into(),
                e.service_account.clone(),
            );
            l.insert(
                "projectcalico.org/serviceaccount".into(),
                e.service_account.clone(),
            );
        }
        l.insert("projectcalico.org/namespace".into(), e.namespace.clone());
        l.insert("projectcalico.org/orchestrator".into(), "k8s".into());
        for (k, v) in e.labels.iter() {
            l.insert(k.clone(), v.clone());
        }
        l
    }

    /// The host endpoints of `node`.
    pub fn host_endpoints_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints
            .iter()
            .filter(move |e| e.host.as_ref().is_some_and(|h| h.node == node))
    }

    /// The endpoint holding `ip`.
    pub fn endpoint_at(&self, ip: IpAddr) -> Option<&Endpoint> {
        match self.by_ip.get(&ip) {
            Some(&i) => self.endpoints.get(i),
            // Endpoints pushed to `endpoints` directly (not through add_endpoint).
            None => self.endpoints.iter().find(|e| e.ips.contains(&ip)),
        }
    }
}
