//! Decoding of objects from YAML and JSON into the domain types of [`crate::calico`],
//! [`crate::policy`] and [`crate::kubernetes`]: a location-preserving tree ([`yaml`]),
//! readers for recurring value types ([`fields`]) and one decoder per kind.
//!
//! Calico kinds are strict: an unknown field is an error with a "did you mean" hint, a
//! valid Calico field Brindle does not implement is accepted with one warning naming it.
//! Kubernetes kinds are read leniently (only the fields Brindle uses; the API adds fields
//! with every release). Valid Calico kinds that Brindle does not use are skipped with a
//! warning.

pub(crate) mod calico;
pub(crate) mod fields;
pub mod kubernetes;
pub(crate) mod policy;
pub(crate) mod yaml;

use crate::calico::*;
use crate::error::{closest, ConfigError};
use crate::kind::{Kind, API_VERSION, CRD_API_VERSION};
use std::collections::{BTreeMap, HashMap};
use yaml::{Ctx, Field, Fields, Node, Value};

/// Calico kinds that exist but that Brindle does not use (yet): accepted and skipped.
const UNUSED_CALICO_KINDS: &[&str] = &[
    "BGPFilter",
    "StagedGlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
    "Tier",
    "WorkloadEndpoint",
    "Profile",
    "IPReservation",
    "IPAMBlock",
    "IPAMHandle",
    "KubeControllersConfiguration",
    "ClusterInformation",
    "CalicoNodeStatus",
];

/// Metadata keys of Kubernetes' ObjectMeta (all accepted; Brindle uses some).
const METADATA_KEYS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "generateName",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// A decoded object.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    // Boxed (or shared): an object is as large as its largest variant, and a cluster
    // has many objects.
    BgpConfiguration(Box<BgpConfiguration>),
    /// Shared with the snapshots (memory: a Node's labels are ~2 KB, 5,000 nodes).
    Node(std::sync::Arc<NodeSpec>),
    BgpPeer(Box<BgpPeerSpec>),
    IpPool(Box<IpPoolSpec>),
    BlockAffinity(Box<BlockAffinitySpec>),
    IpamConfig(Box<IpamConfigSpec>),
    NetworkPolicy(Box<crate::policy::CalicoPolicy>),
    GlobalNetworkPolicy(Box<crate::policy::CalicoPolicy>),
    Pod(std::sync::Arc<crate::kubernetes::Pod>),
    Namespace(std::sync::Arc<crate::kubernetes::Namespace>),
    ServiceAccount(std::sync::Arc<crate::kubernetes::ServiceAccount>),
    Service(std::sync::Arc<crate::kubernetes::Service>),
    EndpointSlice(std::sync::Arc<crate::kubernetes::EndpointSlice>),
    KubernetesNetworkPolicy(Box<crate::policy::KubeNetworkPolicy>),
    HostEndpoint(Box<HostEndpointSpec>),
    NetworkSet(Box<NetworkSetSpec>),
    FelixConfiguration(Box<FelixConfigurationSpec>),
}

/// One object as it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResource {
    pub kind: Kind,
    /// For namespaced kinds (`default` when the document names none).
    pub namespace: Option<String>,
    pub name: String,
    /// Line of the object's first key (0 for objects from the API).
    pub line: u64,
    /// The object exactly as written, as JSON (for `brindlectl get -o json|yaml`).
    pub json: serde_json::Value,
}

impl RawResource {
    /// `namespace/name` or `name`.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Metadata every decoder gets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A decoded object plus what cross-object validation needs.
#[derive(Debug, Clone)]
pub struct Object {
    pub raw: RawResource,
    pub resource: Resource,
    /// `Kind/name` (`Kind/namespace/name`) for messages.
    pub label: String,
    /// Valid fields accepted without effect ("ignored: …"), formatted like errors.
    pub warnings: Vec<String>,
    /// Lines of some fields (`"spec.cidr"` → line), for cross-object errors.
    pub(crate) lines: HashMap<&'static str, u64>,
}

impl Object {
    /// An object built by a translation rather than decoded (e.g. Calico's Node from a
    /// Kubernetes Node and its annotations).
    pub fn synthetic(
        kind: Kind,
        namespace: Option<String>,
        name: String,
        json: serde_json::Value,
        resource: Resource,
    ) -> Object {
        let label = match &namespace {
            Some(ns) => format!("{}/{ns}/{name}", kind.as_str()),
            None => format!("{}/{name}", kind.as_str()),
        };
        Object {
            raw: RawResource {
                kind,
                namespace,
                name,
                line: 0,
                json,
            },
            resource,
            label,
            warnings: Vec::new(),
            lines: HashMap::new(),
        }
    }
}

/// Formerly the crate-internal name of [`Object`].
pub(crate) type Decoded = Object;

fn peek<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
        _ => None,
    }
}

fn peek_str<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    match peek(node, key).map(|n| &n.value) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

/// Decodes one YAML document (an object or a `List`) into `out`; skipped documents add
/// to `warnings`.
pub(crate) fn decode_document(
    file: &str,
    node: &Node,
    out: &mut Vec<Object>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    decode_inner(file, node, None, false, out, warnings)
}

/// Decodes one object from the Kubernetes API (JSON). Calico objects may be in their CRD
/// storage form (`crd.projectcalico.org/v1`). `None` for a valid kind Brindle skips.
pub fn decode_json(source: &str, value: &serde_json::Value) -> Result<Option<Object>, ConfigError> {
    let node = Node::from_json(value);
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    decode_inner(source, &node, None, true, &mut out, &mut warnings)?;
    Ok(out.pop())
}

fn decode_inner(
    file: &str,
    node: &Node,
    list_item: Option<(&str, &str, String)>,
    from_api: bool,
    out: &mut Vec<Object>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let kind_text = peek_str(node, "kind").or_else(|| {
        list_item
            .as_ref()
            .and_then(|(list_kind, _, _)| list_kind.strip_suffix("List"))
            .filter(|k| !k.is_empty())
    });
    let meta_node = peek(node, "metadata");
    let name = meta_node.and_then(|m| peek_str(m, "name"));
    let namespace = meta_node.and_then(|m| peek_str(m, "namespace"));
    let label = match (kind_text, namespace, name, &list_item) {
        (Some(k), Some(ns), Some(n), _) => format!("{k}/{ns}/{n}"),
        (Some(k), None, Some(n), _) => format!("{k}/{n}"),
        (Some(k), _, None, _) => k.to_string(),
        (None, _, _, Some((_, _, path))) => path.clone(),
        (None, _, _, None) => "resource".to_string(),
    };
    let ctx = Ctx::new(file, Some(label.clone()));
    if !matches!(node.value, Value::Map(_)) {
        return Err(ctx.err(
            "",
            node.line,
            format!(
                "expected a resource (a mapping with apiVersion, kind, metadata, spec), found {}",
                node.value.type_name()
            ),
        ));
    }
    let api_version = match peek_str(node, "apiVersion") {
        Some(v) => v.to_string(),
        None => match &list_item {
            Some((_, v, _)) => v.to_string(),
            None => {
                return Err(ctx.err(
                    "apiVersion",
                    node.line,
                    format!("required field is missing (use apiVersion: {API_VERSION})"),
                ))
            }
        },
    };
    let line_of = |key: &str| peek(node, key).map_or(node.line, |n| n.line);
    let kind_text = match (peek(node, "kind"), kind_text) {
        (Some(n), _) => match &n.value {
            Value::Str(s) => s.clone(),
            other => {
                return Err(ctx.err(
                    "kind",
                    n.line,
                    format!("expected a string, found {}", other.type_name()),
                ))
            }
        },
        (None, Some(k)) => k.to_string(),
        (None, None) => return Err(ctx.err("kind", node.line, "required field is missing")),
    };
    if kind_text == "List" || (kind_text.ends_with("List") && list_item.is_none()) {
        let list = Fields::new(&ctx, "", node, &["apiVersion", "kind", "metadata", "items"])?;
        let Some(items) = list.get("items") else {
            return Ok(());
        };
        for item in items.seq()? {
            decode_inner(
                file,
                item.node,
                Some((
                    &kind_text,
                    &api_version,
                    format!("{kind_text} {}", item.path),
                )),
                from_api,
                out,
                warnings,
            )?;
        }
        return Ok(());
    }
    let calico_group = api_version == API_VERSION || (from_api && api_version == CRD_API_VERSION);
    let kind = match Kind::from_type(&api_version, &kind_text) {
        Some(k) if k.is_calico() && !calico_group => None,
        other => other,
    };
    let Some(kind) = kind else {
        return unknown_kind(&ctx, &api_version, &kind_text, line_of, warnings);
    };

    let top_keys: &[&'static str] = match kind {
        Kind::EndpointSlice => &[
            "apiVersion",
            "kind",
            "metadata",
            "addressType",
            "endpoints",
            "ports",
        ],
        _ => &["apiVersion", "kind", "metadata", "spec", "status"],
    };
    let top = if kind.is_calico() {
        Fields::new(&ctx, "", node, top_keys)?
    } else {
        // Kubernetes objects: unknown top-level fields are the API's business.
        lenient_fields(&ctx, node)?
    };
    let meta_field = top.required("metadata")?;
    let meta_fields = if kind.is_calico() {
        meta_field.map(METADATA_KEYS)?
    } else {
        lenient_fields(&ctx, meta_field.node)?
    };
    let name_field = meta_fields.required("name")?;
    let name = name_field.string()?;
    validate_name(kind, &name).map_err(|m| name_field.err(m))?;
    let namespace = if kind.namespaced() {
        Some(
            meta_fields
                .opt("namespace", |f| f.string())?
                .unwrap_or_else(|| "default".to_string()),
        )
    } else {
        None
    };
    let labels = meta_fields
        .opt("labels", |f| f.string_map())?
        .unwrap_or_default();
    let annotations = meta_fields
        .opt("annotations", |f| f.string_map())?
        .unwrap_or_default();
    let meta = Meta {
        name: name.clone(),
        namespace: namespace.clone(),
        labels,
        annotations,
    };

    let mut lines = HashMap::new();
    lines.insert("metadata.name", name_field.node.line);
    let empty = Node {
        value: Value::Map(Vec::new()),
        line: node.line,
    };
    let spec_field = top.get("spec").unwrap_or(Field {
        ctx: &ctx,
        path: "spec".to_string(),
        node: &empty,
    });
    let resource =
        match kind {
            Kind::BgpConfiguration => Resource::BgpConfiguration(Box::new(
                calico::decode_bgp_configuration(name.clone(), &spec_field, &mut lines)?,
            )),
            Kind::Node => Resource::Node(std::sync::Arc::new(calico::decode_node(
                name.clone(),
                meta.labels.clone(),
                &spec_field,
                &mut lines,
            )?)),
            Kind::BgpPeer => Resource::BgpPeer(Box::new(calico::decode_bgp_peer(
                name.clone(),
                &spec_field,
                &mut lines,
            )?)),
            Kind::IpPool => Resource::IpPool(Box::new(calico::decode_ip_pool(
                name.clone(),
                &spec_field,
                &mut lines,
            )?)),
            Kind::BlockAffinity => Resource::BlockAffinity(Box::new(
                calico::decode_block_affinity(name.clone(), &spec_field, &mut lines)?,
            )),
            Kind::IpamConfig => Resource::IpamConfig(Box::new(calico::decode_ipam_config(
                name.clone(),
                &spec_field,
            )?)),
            Kind::NetworkPolicy => Resource::NetworkPolicy(Box::new(policy::decode_calico_policy(
                &meta,
                &spec_field,
                false,
            )?)),
            Kind::GlobalNetworkPolicy => Resource::GlobalNetworkPolicy(Box::new(
                policy::decode_calico_policy(&meta, &spec_field, true)?,
            )),
            Kind::KubernetesNetworkPolicy => Resource::KubernetesNetworkPolicy(Box::new(
                policy::decode_kube_policy(&meta, &spec_field)?,
            )),
            Kind::HostEndpoint => Resource::HostEndpoint(Box::new(calico::decode_host_endpoint(
                name.clone(),
                meta.labels.clone(),
                &spec_field,
                &mut lines,
            )?)),
            Kind::GlobalNetworkSet | Kind::NetworkSet => {
                Resource::NetworkSet(Box::new(calico::decode_network_set(
                    meta.namespace.clone().filter(|_| kind == Kind::NetworkSet),
                    name.clone(),
                    meta.labels.clone(),
                    &spec_field,
                )?))
            }
            Kind::FelixConfiguration => Resource::FelixConfiguration(Box::new(
                calico::decode_felix_configuration(name.clone(), &spec_field)?,
            )),
            Kind::Pod
            | Kind::Namespace
            | Kind::ServiceAccount
            | Kind::Service
            | Kind::EndpointSlice => kubernetes::decode(kind, &meta, node, &ctx)?,
        };
    let mut json = node.value.to_json();
    if let (Some(obj), Some(_)) = (json.as_object_mut(), &list_item) {
        obj.entry("apiVersion")
            .or_insert_with(|| kind.api_version().into());
        obj.entry("kind").or_insert_with(|| kind.as_str().into());
    }
    let object_warnings = ctx.warnings.take();
    out.push(Object {
        raw: RawResource {
            kind,
            namespace,
            name,
            line: node.line,
            json,
        },
        resource,
        label,
        warnings: object_warnings,
        lines,
    });
    Ok(())
}

/// Every key of a mapping accepted (Kubernetes objects).
fn lenient_fields<'a>(ctx: &'a Ctx<'a>, node: &'a Node) -> Result<Fields<'a>, ConfigError> {
    Fields::lenient(ctx, "", node)
}

fn unknown_kind(
    ctx: &Ctx,
    api_version: &str,
    kind_text: &str,
    line_of: impl Fn(&str) -> u64,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let calico = api_version == API_VERSION || api_version == CRD_API_VERSION;
    if calico && UNUSED_CALICO_KINDS.contains(&kind_text) {
        let line = line_of("kind");
        warnings.push(
            ctx.err(
                "kind",
                line,
                format!(
                    "ignored: kind {kind_text} (a valid Calico kind that Brindle does not use yet)"
                ),
            )
            .to_string(),
        );
        return Ok(());
    }
    if api_version == CRD_API_VERSION {
        return Err(ctx.err(
            "apiVersion",
            line_of("apiVersion"),
            format!("unsupported apiVersion {api_version:?}; this is Calico's CRD storage form, write the resource as calicoctl shows it with apiVersion: {API_VERSION}"),
        ));
    }
    let same_group: Vec<&str> = Kind::ALL
        .iter()
        .filter(|k| k.api_version() == api_version)
        .map(|k| k.as_str())
        .collect();
    if !calico {
        // Another API's object (a ConfigMap, a Deployment...): not Brindle's to check,
        // unless the apiVersion is a misspelling of Calico's.
        let looks_calico =
            api_version.contains("calico") || closest(api_version, &[API_VERSION]).is_some();
        if looks_calico {
            return Err(ctx.err(
                "apiVersion",
                line_of("apiVersion"),
                format!("unsupported apiVersion {api_version:?}; did you mean {API_VERSION}?"),
            ));
        }
        warnings.push(
            ctx.err(
                "kind",
                line_of("kind"),
                format!("ignored: {api_version} {kind_text} (Brindle does not read this kind)"),
            )
            .to_string(),
        );
        return Ok(());
    }
    let message = match closest(kind_text, &same_group) {
        Some(k) => format!("unknown kind {kind_text:?}; did you mean {k}?"),
        None => format!(
            "unknown kind {kind_text:?} for {api_version} (supported: {})",
            same_group.join(", ")
        ),
    };
    Err(ctx.err("kind", line_of("kind"), message))
}
fn validate_name(kind: Kind, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.len() > 253 {
        return Err("name is longer than 253 characters".into());
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ok_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok_chars || !ok_ends {
        return Err(format!(
            "{name:?} is not a valid name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        ));
    }
    if kind == Kind::BgpConfiguration && name != "default" && !name.starts_with("node.") {
        return Err(format!(
            "BGPConfiguration {name:?} would never be used: name it \"default\" (cluster-wide) or \"node.<nodename>\" (one node)"
        ));
    }
    Ok(())
}
