//! The resource types served: built-ins and custom resources.

use serde_json::{json, Value};

/// One served resource at one group/version (`nodes` in `v1`, `ippools` in
/// `crd.projectcalico.org/v1`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: String,
    /// Served version (`v1`).
    pub version: String,
    /// Kind (`Node`).
    pub kind: String,
    /// Plural resource name (`nodes`), the URL segment.
    pub plural: String,
    /// Singular name (`node`).
    pub singular: String,
    /// Namespaced (`pods`) or cluster-scoped (`nodes`).
    pub namespaced: bool,
    /// Short names (`no`), for discovery and the control socket.
    pub short_names: Vec<String>,
    /// Whether the `/status` subresource exists (then the main resource ignores status
    /// changes and `/status` ignores the rest).
    pub status_subresource: bool,
    /// Defined by a CustomResourceDefinition (no strategic merge patch, status
    /// subresource writes only change status).
    pub custom: bool,
    /// The version objects are stored in; reads through another version only rewrite
    /// `apiVersion` (the "None" conversion strategy).
    pub storage_version: String,
    /// Fields allowed in field selectors besides `metadata.name` and `metadata.namespace`.
    pub selectable_fields: Vec<String>,
}

impl ResourceType {
    /// A custom resource type (as a CRD would define it): singular = lowercased kind,
    /// status subresource on.
    pub fn custom(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            short_names: Vec::new(),
            status_subresource: true,
            custom: true,
            storage_version: version.into(),
            selectable_fields: Vec::new(),
        }
    }

    fn builtin(
        group: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        short: &[&str],
        status: bool,
        fields: &[&str],
    ) -> Self {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            status_subresource: status,
            custom: false,
            storage_version: "v1".into(),
            selectable_fields: fields.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `apiVersion` of this group/version (`v1`, `crd.projectcalico.org/v1`).
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    /// `apiVersion` objects are stored with.
    pub fn storage_api_version(&self) -> String {
        api_version(&self.group, &self.storage_version)
    }

    /// `<plural>` for the core group, else `<plural>.<group>` (as in error messages).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether a field selector may use `field`.
    pub fn field_selectable(&self, field: &str) -> bool {
        matches!(field, "metadata.name" | "metadata.namespace")
            || self.selectable_fields.iter().any(|f| f == field)
    }

    /// Whether `name` (case-insensitive) names this type: kind, plural, singular, short
    /// name, or any of these qualified by `.group`.
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let (base, group) = match name.split_once('.') {
            Some((b, g)) => (b.to_string(), Some(g.to_string())),
            None => (name.clone(), None),
        };
        if let Some(g) = group {
            if g != self.group && g != format!("{}.{}", self.version, self.group) {
                return false;
            }
        }
        base == self.kind.to_ascii_lowercase()
            || base == self.plural
            || base == self.singular
            || self.short_names.contains(&base)
    }

    /// The APIResource entries of discovery (the resource and its status subresource).
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut v = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
            "storageVersionHash": "",
        })];
        if self.status_subresource {
            v.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        v
    }

    /// The APIResourceDiscovery entry of aggregated discovery (apidiscovery.k8s.io/v2).
    pub fn aggregated_entry(&self) -> Value {
        let gvk = json!({"group": self.group, "version": self.version, "kind": self.kind});
        let subresources: Vec<Value> = if self.status_subresource {
            vec![
                json!({"subresource": "status", "responseKind": gvk, "verbs": ["get", "patch", "update"]}),
            ]
        } else {
            Vec::new()
        };
        json!({
            "resource": self.plural,
            "responseKind": gvk,
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.singular,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
            "subresources": subresources,
        })
    }
}

/// `v1` for the core group, else `group/version`.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Splits an `apiVersion` into (group, version).
pub fn split_api_version(av: &str) -> (String, String) {
    match av.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), av.to_string()),
    }
}

/// The built-in resource types served.
pub fn builtins() -> Vec<ResourceType> {
    let b = ResourceType::builtin;
    vec![
        b(
            "",
            "Node",
            "nodes",
            false,
            &["no"],
            true,
            &["spec.unschedulable"],
        ),
        b(
            "",
            "Pod",
            "pods",
            true,
            &["po"],
            true,
            &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
        ),
        b(
            "",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            true,
            &["status.phase"],
        ),
        b(
            "",
            "Service",
            "services",
            true,
            &["svc"],
            true,
            &["spec.clusterIP", "spec.type"],
        ),
        b("", "Secret", "secrets", true, &[], false, &["type"]),
        b(
            "",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
            &[],
        ),
        b("", "ConfigMap", "configmaps", true, &["cm"], false, &[]),
        b("", "Endpoints", "endpoints", true, &["ep"], false, &[]),
        b(
            "discovery.k8s.io",
            "EndpointSlice",
            "endpointslices",
            true,
            &[],
            false,
            &[],
        ),
        b(
            "networking.k8s.io",
            "NetworkPolicy",
            "networkpolicies",
            true,
            &["netpol"],
            false,
            &[],
        ),
        b(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
            &[],
        ),
        b(
            "coordination.k8s.io",
            "Lease",
            "leases",
            true,
            &[],
            false,
            &[],
        ),
    ]
}

/// The resource types a CustomResourceDefinition object defines (one per served
/// version), or why it is invalid.
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let group = s(spec.get("group")).ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let plural = s(names.get("plural")).ok_or("spec.names.plural: Required value")?;
    let kind = s(names.get("kind")).ok_or("spec.names.kind: Required value")?;
    let singular = s(names.get("singular")).unwrap_or_else(|| kind.to_ascii_lowercase());
    let short_names: Vec<String> = names
        .get("shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let namespaced = match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => return Err("spec.scope: Unsupported value: must be Namespaced or Cluster".into()),
    };
    let expected = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name != expected {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or(
            "spec.versions: Invalid value: must have exactly one version marked as storage version",
        )?;
    let storage: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .collect();
    let storage_version = match storage.as_slice() {
        [one] => s(one.get("name")).ok_or("spec.versions[].name: Required value")?,
        _ if versions.len() == 1 => {
            s(versions[0].get("name")).ok_or("spec.versions[].name: Required value")?
        }
        _ => return Err(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
                .into(),
        ),
    };
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = s(v.get("name")).ok_or("spec.versions[].name: Required value")?;
        let selectable_fields = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceType {
            group: group.clone(),
            version,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: short_names.clone(),
            status_subresource: v.pointer("/subresources/status").is_some(),
            custom: true,
            storage_version: storage_version.clone(),
            selectable_fields,
        });
    }
    Ok(out)
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first,
/// then non-conforming names alphabetically. Lower sorts first.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = |s: &str| -> Option<(u8, i64, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (tag, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(tag) {
                let minor: i64 = n.parse().ok()?;
                return Some((rank, -major, -minor));
            }
        }
        None
    };
    match parse(v) {
        Some((r, a, b)) => (r, a, b, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        let mut v = vec!["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v10"];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(
            v,
            ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn crd_parse() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "ippools.crd.projectcalico.org"},
            "spec": {
                "group": "crd.projectcalico.org",
                "names": {"kind": "IPPool", "plural": "ippools", "listKind": "IPPoolList", "singular": "ippool"},
                "scope": "Cluster",
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {}}]
            }
        });
        let r = from_crd(&crd).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].qualified(), "ippools.crd.projectcalico.org");
        assert!(!r[0].namespaced && !r[0].status_subresource && r[0].custom);
        assert!(r[0].is_named("IPPool") && r[0].is_named("ippools.crd.projectcalico.org"));
        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("x");
        assert!(from_crd(&bad).is_err());
    }
}
