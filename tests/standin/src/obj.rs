//! A stored object: its serialized JSON (resourceVersion included) plus the few fields
//! the store reads without parsing it (labels, name, namespace, the selectable fields). Lists and watch events
//! are written from the bytes; a write parses them back into a `Value` when it needs to.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::selector::{field_value, FieldSelector, LabelSelector};

/// The field paths a type's objects index, in [`Obj::fields`] order: `metadata.name`,
/// `metadata.namespace`, then the type's selectable fields.
pub(crate) type FieldNames = Arc<[Box<str>]>;

/// One stored object (at its storage version).
#[derive(Debug)]
pub(crate) struct Obj {
    /// The object's JSON without its `apiVersion` (`{"kind":...}`), which is spliced in
    /// when the object is written out, so that every served version shares the bytes.
    /// `metadata.resourceVersion` is in it.
    body: Box<str>,
    /// `metadata.labels`, sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
    /// The paths of `values`.
    names: FieldNames,
    /// The string forms of the indexed fields, NUL-separated.
    values: Box<str>,
}

/// Writes a JSON string literal (with escapes).
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Infallible for a Vec and a str.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl Obj {
    /// Serializes `obj` (which must be a JSON object with `apiVersion` and `kind`) and
    /// indexes it; `obj` is left as it was.
    pub fn new(obj: &mut Value, names: &FieldNames) -> Obj {
        let mut labels: Vec<(Box<str>, Box<str>)> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
                    .collect()
            })
            .unwrap_or_default();
        labels.sort();
        let mut values = String::new();
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                values.push('\u{0}');
            }
            values.push_str(&field_value(obj, n));
        }
        let body = match obj.as_object_mut() {
            Some(m) => {
                let av = m.remove("apiVersion");
                let body = serde_json::to_string(&*m).unwrap_or_else(|_| "{}".into());
                if let Some(av) = av {
                    m.insert("apiVersion".into(), av);
                }
                body
            }
            None => "{}".into(),
        };
        Obj {
            body: body.into_boxed_str(),
            labels: labels.into_boxed_slice(),
            names: names.clone(),
            values: values.into_boxed_str(),
        }
    }

    /// The bytes held (the JSON, labels and indexed values).
    pub fn size(&self) -> usize {
        self.body.len()
            + self.values.len()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Appends the object's JSON as served at `api_version`.
    pub fn write(&self, out: &mut Vec<u8>, api_version: &str) {
        out.extend_from_slice(b"{\"apiVersion\":");
        push_json_str(out, api_version);
        let rest = &self.body[1..];
        if rest != "}" {
            out.push(b',');
        }
        out.extend_from_slice(rest.as_bytes());
    }

    /// Appends the object's `metadata` (as in a `PartialObjectMetadata`).
    pub fn write_metadata(&self, out: &mut Vec<u8>) {
        #[derive(serde::Deserialize)]
        struct Meta<'a> {
            #[serde(borrow)]
            metadata: Option<&'a serde_json::value::RawValue>,
        }
        match serde_json::from_str::<Meta>(&self.body) {
            Ok(Meta { metadata: Some(m) }) => out.extend_from_slice(m.get().as_bytes()),
            _ => out.extend_from_slice(b"{}"),
        }
    }

    /// Appends the object as a `PartialObjectMetadata`.
    pub fn write_partial(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"PartialObjectMetadata\",\"metadata\":",
        );
        self.write_metadata(out);
        out.push(b'}');
    }

    /// The object, parsed, as served at `api_version`.
    pub fn to_value(&self, api_version: &str) -> Value {
        let mut v: Value = serde_json::from_str(&self.body).unwrap_or_else(|_| json!({}));
        if let Value::Object(m) = &mut v {
            m.insert("apiVersion".into(), json!(api_version));
        }
        v
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// A field's string form (`""` when absent): indexed ones without parsing.
    pub fn field(&self, path: &str) -> Cow<'_, str> {
        match self.names.iter().position(|n| **n == *path) {
            Some(i) => Cow::Borrowed(self.values.split('\u{0}').nth(i).unwrap_or("")),
            None => Cow::Owned(field_value(&self.to_value(""), path)),
        }
    }

    /// Whether the object matches both selectors.
    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        labels.matches_with(|k| self.label(k)) && fields.matches_with(|p| self.field(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> FieldNames {
        ["metadata.name", "metadata.namespace", "spec.nodeName"]
            .into_iter()
            .map(Box::from)
            .collect()
    }

    #[test]
    fn bytes_and_index() {
        let mut v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a", "resourceVersion": "7", "labels": {"b": "2", "a": "1"}}, "spec": {"nodeName": "n1", "hostNetwork": true}});
        let before = v.clone();
        let o = Obj::new(&mut v, &names());
        assert_eq!(v, before);
        let mut out = Vec::new();
        o.write(&mut out, "v1");
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), before);
        assert_eq!(o.to_value("v2")["apiVersion"], "v2");
        assert_eq!(o.label("a"), Some("1"));
        assert_eq!(o.label("c"), None);
        assert_eq!(o.field("spec.nodeName"), "n1");
        assert_eq!(o.field("metadata.namespace"), "a");
        assert_eq!(o.field("spec.hostNetwork"), "true"); // not indexed: parsed
        let mut m = Vec::new();
        o.write_partial(&mut m);
        let m: Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(m["kind"], "PartialObjectMetadata");
        assert_eq!(m["metadata"], before["metadata"]);
        let l = LabelSelector::parse("a=1,b in (2,3)").unwrap();
        let f = FieldSelector::parse("spec.nodeName=n1").unwrap();
        assert!(o.matches(&l, &f));
        assert!(!o.matches(&l, &FieldSelector::parse("spec.nodeName!=n1").unwrap()));
    }
}
