//! Direct store operations (no HTTP), shared by the library API and the control socket.

use anyhow::Context as _;
use serde_json::Value;

use crate::error::ApiError;
use crate::server::Shared;
use crate::store::{PatchType, Preconditions, WriteOpts};

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
    let rank = |v: &Value| match v.get("kind").and_then(Value::as_str) {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        _ => 2,
    };
    out.sort_by_key(rank);
    Ok(out)
}

impl Shared {
    pub fn create_obj(&self, obj: Value) -> Result<Value, ApiError> {
        let mut store = self.store();
        let rt = store.type_of(&obj)?;
        let ns = ns_of(&obj);
        store.create(&rt, ns.as_deref(), obj, DIRECT)
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
            .map(|p| p.items)
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
