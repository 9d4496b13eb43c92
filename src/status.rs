//! The node status document: what `brindlectl node status` shows and the status socket
//! serves. It is the agent's (not the BGP crate's): the speaker's sessions, the
//! dataplane's last apply and the datastore's connection, each filled by its owner.

use brindle_bgp::status::SpeakerStatus;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Requests understood on the status socket: one line, one JSON document back, then
/// close. `status`: a [`NodeStatus`].
pub const STATUS_REQUEST: &str = "status";
/// `routes`: a [`NodeRoutes`].
pub const ROUTES_REQUEST: &str = "routes";

/// The document served for `routes`: the speaker's routes (`routes`, at the top level)
/// and why each service route is advertised (`services`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeRoutes {
    #[serde(flatten)]
    pub bgp: brindle_bgp::status::RoutesStatus,
    /// Absent from an agent that predates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<crate::calc::services::ServiceRoutes>,
}

/// The whole node status document. The speaker's fields are at the top level
/// (`nodeName`, `peers`...), next to `dataplane` and `datastore`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(flatten)]
    pub bgp: SpeakerStatus,
    /// Filled when the agent runs the dataplane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<DataplaneStatus>,
    /// Filled by the agent from its datastore's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<DatastoreStatus>,
}

/// The dataplane's last apply, as part of the node status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneStatus {
    pub routes_programmed: u64,
    pub local_endpoints: u64,
    pub host_mtu: u32,
    pub pod_mtu: u32,
    /// RFC 3339 time of the last apply.
    pub last_apply: String,
    pub last_apply_millis: f64,
    /// Conditions that will drop traffic (e.g. rp_filter), worded for operators.
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    /// The kernel's counters of each network policy programmed on this node, summed over
    /// its rules per direction (read every 10 s). Absent without policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_counters: Vec<PolicyCounter>,
}

/// One policy's kernel counters in one direction on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCounter {
    /// The policy as `brindlectl policy explain` names it (`NetworkPolicy shop/db`,
    /// `GlobalNetworkPolicy deny-all`, `KubernetesNetworkPolicy shop/web`).
    pub policy: String,
    /// `ingress` or `egress`.
    pub direction: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Sums per-rule counters (`<policy> <direction> rule <n>` → packets, bytes) per policy
/// and direction.
pub fn policy_counters<'a>(
    rules: impl IntoIterator<Item = (&'a String, &'a (u64, u64))>,
) -> Vec<PolicyCounter> {
    let mut sums: std::collections::BTreeMap<(String, String), (u64, u64)> = Default::default();
    for (origin, (p, b)) in rules {
        let Some((policy, direction)) = ["ingress", "egress"].iter().find_map(|d| {
            origin
                .split_once(&format!(" {d} rule "))
                .map(|(policy, _)| (policy.to_string(), d.to_string()))
        }) else {
            continue;
        };
        let e = sums.entry((policy, direction)).or_default();
        e.0 += p;
        e.1 += b;
    }
    sums.into_iter()
        .map(|((policy, direction), (packets, bytes))| PolicyCounter {
            policy,
            direction,
            packets,
            bytes,
        })
        .collect()
}

/// Where the agent's objects come from and how that is going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreStatus {
    /// The backend's name ("file /etc/brindle/brindle.yaml", "kubernetes").
    pub backend: String,
    /// The backend is reachable (a file is readable, the API server answers).
    pub connected: bool,
    /// Every kind the agent needs has been listed and is being watched.
    pub in_sync: bool,
    /// The last connection error, kept after a reconnect until the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl DatastoreStatus {
    /// A backend just started: connected until it reports otherwise (as the agent
    /// assumes; the file backend never reports a connection change), not in sync.
    pub fn new(backend: impl Into<String>) -> Self {
        DatastoreStatus {
            backend: backend.into(),
            connected: true,
            in_sync: false,
            last_error: None,
        }
    }

    /// A connection change (`Event::Connection`): `None` is connected, `Some(reason)` not.
    pub fn connection(&mut self, error: Option<&str>) {
        self.connected = error.is_none();
        if let Some(e) = error {
            self.last_error = Some(e.to_string());
        }
    }
}

/// What the dataplane thread reports back to the agent (see [`crate::dataplane`]).
pub type SharedDataplaneStatus = Arc<Mutex<Option<DataplaneStatus>>>;

/// What the agent reports about its datastore; like [`crate::dataplane::SharedStatus`].
pub type SharedDatastoreStatus = Arc<Mutex<Option<DatastoreStatus>>>;

/// The service routes of the plan in force, set by the agent.
pub type SharedServiceStatus = Arc<Mutex<Option<crate::calc::services::ServiceRoutes>>>;

/// Updates a shared status in place (a poisoned lock is taken over: the value is plain
/// data).
pub fn update<T: Default>(shared: &Arc<Mutex<Option<T>>>, f: impl FnOnce(&mut T)) {
    let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(T::default));
}

/// A copy of a shared status.
pub fn snapshot<T: Clone>(shared: &Arc<Mutex<Option<T>>>) -> Option<T> {
    shared.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_keeps_the_speaker_fields_at_the_top() {
        let mut doc = NodeStatus::default();
        doc.bgp.node_name = "node-a".into();
        doc.bgp.unconfigured_connections = 3;
        let ds = SharedDatastoreStatus::default();
        update(&ds, |d| *d = DatastoreStatus::new("kubernetes"));
        assert!(snapshot(&ds).unwrap().connected);
        update(&ds, |d| d.connection(Some("connection refused")));
        assert!(!snapshot(&ds).unwrap().connected);
        update(&ds, |d| d.connection(None));
        update(&ds, |d| d.in_sync = true);
        doc.datastore = snapshot(&ds);
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["nodeName"], "node-a");
        assert_eq!(v["unconfiguredConnections"], 3);
        assert!(v.get("dataplane").is_none());
        assert_eq!(
            v["datastore"],
            serde_json::json!({"backend": "kubernetes", "connected": true, "inSync": true, "lastError": "connection refused"})
        );
        let back: NodeStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
        // a document without the newer fields still reads
        let old: NodeStatus = serde_json::from_str(
            r#"{"nodeName":"n","routerId":null,"asNumber":1,"listen":[],"peers":[]}"#,
        )
        .unwrap();
        assert_eq!(old.bgp.node_name, "n");
        assert_eq!(old.datastore, None);
        let yaml = serde_saphyr::to_string(&doc).unwrap();
        let again: NodeStatus = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(again, doc, "{yaml}");
    }
}
