//! Direct store operations (no HTTP), shared by the library API and the control socket.

use anyhow::Context as _;
use serde_json::Value;

use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::server::Shared;
use crate::store::{PatchType, Preconditions, Store, WriteOpts};

const DIRECT: WriteOpts = WriteOpts {
    api: false,
    dry_run: false,
};

fn ns_of(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Parses multi-document YAML (JSON is YAML too) into objects: empty documents are
/// skipped, `kind: List` documents expand to their items, and the result is ordered
/// CustomResourceDefinitions first, then Namespaces, then the rest (stable).
pub fn parse_objects(text: &str) -> anyhow::Result<Vec<Value>> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| anyhow::anyhow!("YAML: {e}"))?;
    let mut out = Vec::new();
    for d in docs {
        match d {
            Value::Null => {}
            Value::Object(_) if d.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(items) = d.get("items").and_then(Value::as_array) {
                    out.extend(items.iter().cloned());
                }
            }
            Value::Object(_) => out.push(d),
            other => anyhow::bail!("a YAML document is not an object: {other}"),
        }
    }
    out.sort_by_key(rank);
    Ok(out)
}

/// CustomResourceDefinitions first, then Namespaces, then the rest.
fn rank(v: &Value) -> u8 {
    match v.get("kind").and_then(Value::as_str) {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        _ => 2,
    }
}

/// Expands one JSON document into objects: an object, an array of them, or a
/// `kind: List` (nested arrays and lists too).
fn push_json_objects(out: &mut Vec<Value>, v: Value) -> anyhow::Result<()> {
    match v {
        Value::Array(items) => {
            for i in items {
                push_json_objects(out, i)?;
            }
        }
        Value::Object(mut m) => {
            if m.get("kind").and_then(Value::as_str) == Some("List") {
                if let Some(Value::Array(items)) = m.remove("items") {
                    for i in items {
                        push_json_objects(out, i)?;
                    }
                }
            } else {
                out.push(Value::Object(m));
            }
        }
        other => anyhow::bail!("a JSON document is not an object: {other}"),
    }
    Ok(())
}

/// Creates objects in a locked store, as [`Store::create`] through the direct API;
/// `n` counts those created, `last` caches the type of the previous one.
fn create_in(
    store: &mut Store,
    objs: Vec<Value>,
    n: &mut usize,
    last: &mut Option<(String, String, ResourceType)>,
) -> Result<(), ApiError> {
    let mut objs = objs;
    objs.sort_by_key(rank);
    for obj in objs {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if !matches!(last, Some((a, k, _)) if a == av && k == kind) {
            let rt = store.type_of(&obj)?;
            *last = Some((av.to_string(), kind.to_string(), rt));
        }
        let rt = &last.as_ref().expect("set above").2;
        let ns = ns_of(&obj);
        store.create(rt, ns.as_deref(), obj, DIRECT)?;
        *n += 1;
    }
    Ok(())
}

impl Shared {
    pub fn create_obj(&self, obj: Value) -> Result<Value, ApiError> {
        let mut store = self.store();
        let rt = store.type_of(&obj)?;
        let ns = ns_of(&obj);
        store.create(&rt, ns.as_deref(), obj, DIRECT)
    }

    /// Creates every object under one lock (CRDs first, then namespaces, then the rest
    /// in the given order), as [`Shared::create_obj`] does one; stops at the first error
    /// (the objects before it stay). `Err` tells how many were created.
    pub fn create_many(&self, objs: Vec<Value>) -> Result<usize, (usize, ApiError)> {
        let mut store = self.store();
        let mut n = 0;
        create_in(&mut store, objs, &mut n, &mut None).map_err(|e| (n, e))?;
        Ok(n)
    }

    /// Creates the objects of a JSON file under one lock: a sequence of documents (one
    /// object, array or `kind: List` each; e.g. one object per line), parsed and
    /// created one document at a time, so that a large file of one object per line
    /// never exists as parsed values all at once. Within a document, CRDs come first,
    /// then namespaces; across documents, the file's order (custom resources must come
    /// after their CRD).
    pub fn load_json_file(&self, path: &std::path::Path) -> anyhow::Result<usize> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut store = self.store();
        let (mut n, mut last) = (0, None);
        for (i, doc) in serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .enumerate()
        {
            let doc =
                doc.with_context(|| format!("{}: JSON document {}", path.display(), i + 1))?;
            let mut objs = Vec::new();
            push_json_objects(&mut objs, doc)
                .with_context(|| format!("{}: JSON document {}", path.display(), i + 1))?;
            create_in(&mut store, objs, &mut n, &mut last).map_err(|e| {
                anyhow::anyhow!(
                    "loading {}: object {} (document {}): {e}",
                    path.display(),
                    n + 1,
                    i + 1
                )
            })?;
        }
        Ok(n)
    }

    pub fn update_obj(&self, obj: Value) -> Result<Value, ApiError> {
        let mut store = self.store();
        let rt = store.type_of(&obj)?;
        let ns = ns_of(&obj);
        let name = name_of(&obj);
        store.update(&rt, ns.as_deref(), &name, obj, false, DIRECT)
    }

    pub fn apply_obj(&self, mut obj: Value) -> Result<Value, ApiError> {
        let mut store = self.store();
        let rt = store.type_of(&obj)?;
        let ns = ns_of(&obj);
        let name = name_of(&obj);
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("uid");
        }
        if store.get(&rt, ns.as_deref(), &name).is_ok() {
            store.update(&rt, ns.as_deref(), &name, obj, false, DIRECT)
        } else {
            store.create(&rt, ns.as_deref(), obj, DIRECT)
        }
    }

    pub fn apply_text(&self, text: &str) -> anyhow::Result<Vec<Value>> {
        parse_objects(text)?
            .into_iter()
            .map(|o| {
                let what = format!(
                    "{} {}",
                    o.get("kind").and_then(Value::as_str).unwrap_or("?"),
                    name_of(&o)
                );
                self.apply_obj(o).with_context(|| what)
            })
            .collect()
    }

    pub fn patch_obj(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let mut store = self.store();
        let rt = store.type_for(api_version, kind)?;
        store.patch(&rt, ns, name, ptype, patch, false, DIRECT)
    }

    pub fn delete_obj(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut store = self.store();
        let rt = store.type_for(api_version, kind)?;
        store.delete(&rt, ns, name, &Preconditions::default(), DIRECT)
    }

    pub fn get_obj(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let store = self.store();
        let rt = store.type_for(api_version, kind).ok()?;
        store.get(&rt, ns, name).ok()
    }

    pub fn list_objs(&self, api_version: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
        let store = self.store();
        let Ok(rt) = store.type_for(api_version, kind) else {
            return Vec::new();
        };
        store
            .list(
                &rt,
                ns,
                &Default::default(),
                &Default::default(),
                None,
                None,
            )
            .map(|p| {
                let av = rt.api_version();
                p.items.iter().map(|o| o.to_value(&av)).collect()
            })
            .unwrap_or_default()
    }

    /// Resolves a kind/plural/short name as the control socket takes it.
    pub fn resolve(&self, name: &str) -> Result<crate::ResourceType, ApiError> {
        self.store().resolve(name)
    }

    pub fn dump(&self) -> Vec<Value> {
        self.store().dump()
    }
}
