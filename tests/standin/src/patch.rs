//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a small strategic merge patch.

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch in place: objects merge recursively, `null` deletes,
/// anything else (arrays included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Lists that Kubernetes' strategic merge patch merges by a key rather than replacing,
/// by dotted path from the object's root (array items add no segment). `None` as key:
/// a list of scalars merged as a set.
const MERGE_KEYS: &[(&str, Option<&str>)] = &[
    ("metadata.finalizers", None),
    ("metadata.ownerReferences", Some("uid")),
    ("status.conditions", Some("type")),
    ("status.addresses", Some("type")),
    ("status.podIPs", Some("ip")),
    ("spec.podCIDRs", None),
    ("spec.containers", Some("name")),
    ("spec.initContainers", Some("name")),
    ("spec.containers.ports", Some("containerPort")),
    ("spec.containers.env", Some("name")),
    ("spec.containers.volumeMounts", Some("mountPath")),
    ("spec.volumes", Some("name")),
    ("spec.ports", Some("port")),
    ("spec.tolerations", None),
];

fn merge_key(path: &str) -> Option<Option<&'static str>> {
    MERGE_KEYS.iter().find(|(p, _)| *p == path).map(|(_, k)| *k)
}

/// Applies a strategic merge patch: a merge patch, except that the lists in
/// [`MERGE_KEYS`] merge by their key (an item `{"<key>": x, "$patch": "delete"}` removes
/// one), `$deleteFromPrimitiveList/<field>` removes scalars, and other `$` directives
/// (`$setElementOrder`, `$retainKeys`) are ignored.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    smp(target, patch, "");
}

fn smp(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut v = patch.clone();
        strip_directives(&mut v);
        *target = v;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(del)) = (t.get_mut(field), v) {
                items.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let sub = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (merge_key(&sub), v) {
            (Some(key), Value::Array(items)) => {
                let cur = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                if let Value::Array(cur) = cur {
                    merge_list(cur, items, key, &sub);
                }
            }
            _ => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                if v.is_object() {
                    smp(slot, v, &sub);
                } else {
                    *slot = v.clone();
                }
            }
        }
    }
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: Option<&str>, path: &str) {
    for item in items {
        match key {
            None => {
                if !cur.contains(item) {
                    cur.push(item.clone());
                }
            }
            Some(key) => {
                let Some(id) = item.get(key) else {
                    cur.push(item.clone());
                    continue;
                };
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                let pos = cur.iter().position(|c| c.get(key) == Some(id));
                match (pos, delete) {
                    (Some(i), true) => {
                        cur.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => smp(&mut cur[i], item, path),
                    (None, false) => {
                        let mut v = item.clone();
                        strip_directives(&mut v);
                        cur.push(v);
                    }
                }
            }
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(ptr: &str) -> Result<Vec<String>, String> {
    if ptr.is_empty() {
        return Ok(Vec::new());
    }
    let rest = ptr
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {ptr:?}"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn index(tok: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    let i: usize = tok
        .parse()
        .map_err(|_| format!("invalid array index {tok:?}"))?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(format!("array index {i} out of bounds"));
    }
    Ok(i)
}

fn parent<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("path segment {t:?} not found"))?,
            Value::Array(a) => {
                let i = index(t, a.len(), false)?;
                &mut a[i]
            }
            _ => return Err(format!("path segment {t:?} is not in a container")),
        };
    }
    Ok(cur)
}

fn get_ptr(doc: &Value, ptr: &str) -> Result<Value, String> {
    doc.pointer(ptr)
        .cloned()
        .ok_or_else(|| format!("path {ptr:?} not found"))
}

fn add(doc: &mut Value, ptr: &str, value: Value) -> Result<(), String> {
    let toks = split_pointer(ptr)?;
    let Some((last, init)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, init)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = index(last, a.len(), true)?;
            a.insert(i, value);
        }
        _ => return Err(format!("cannot add at {ptr:?}")),
    }
    Ok(())
}

fn remove(doc: &mut Value, ptr: &str) -> Result<Value, String> {
    let toks = split_pointer(ptr)?;
    let Some((last, init)) = toks.split_last() else {
        return Err("cannot remove the root".into());
    };
    match parent(doc, init)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("path {ptr:?} not found")),
        Value::Array(a) => {
            let i = index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("path {ptr:?} not found")),
    }
}

/// Applies an RFC 6902 JSON patch (`add`, `remove`, `replace`, `move`, `copy`, `test`).
/// All or nothing: on error the document is not changed.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut out = doc.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("operation without \"op\"")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("operation without \"path\"")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or("operation without \"value\"")
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or("operation without \"from\"")
        };
        match name {
            "add" => add(&mut out, path, value()?)?,
            "remove" => {
                remove(&mut out, path)?;
            }
            "replace" => {
                let v = value()?;
                let slot = out
                    .pointer_mut(path)
                    .ok_or_else(|| format!("path {path:?} not found"))?;
                *slot = v;
            }
            "move" => {
                let v = remove(&mut out, from()?)?;
                add(&mut out, path, v)?;
            }
            "copy" => {
                let v = get_ptr(&out, from()?)?;
                add(&mut out, path, v)?;
            }
            "test" => {
                if get_ptr(&out, path)? != value()? {
                    return Err(format!("test failed at {path:?}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic() {
        let mut t = json!({
            "metadata": {"finalizers": ["a"]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}
        });
        strategic_merge_patch(
            &mut t,
            &json!({
                "metadata": {"finalizers": ["b"]},
                "status": {
                    "conditions": [
                        {"type": "NetworkUnavailable", "status": "False"},
                        {"type": "X", "$patch": "delete"},
                        {"type": "Ready", "reason": "ok"}
                    ],
                    "$setElementOrder/conditions": []
                }
            }),
        );
        assert_eq!(
            t,
            json!({
                "metadata": {"finalizers": ["a", "b"]},
                "status": {"conditions": [
                    {"type": "Ready", "status": "True", "reason": "ok"},
                    {"type": "NetworkUnavailable", "status": "False"}
                ]}
            })
        );
    }

    #[test]
    fn json_patch_ops() {
        let d = json!({"metadata": {"annotations": {"a/b": "1"}}, "l": [1, 2]});
        let out = json_patch(
            &d,
            &json!([
                {"op": "test", "path": "/metadata/annotations/a~1b", "value": "1"},
                {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
                {"op": "add", "path": "/l/-", "value": 3},
                {"op": "add", "path": "/l/0", "value": 0},
                {"op": "remove", "path": "/l/1"},
                {"op": "copy", "from": "/l", "path": "/m"},
                {"op": "move", "from": "/m", "path": "/n"}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"annotations": {"a/b": "2"}}, "l": [0, 2, 3], "n": [0, 2, 3]})
        );
        assert!(json_patch(&d, &json!([{"op": "test", "path": "/l/0", "value": 9}])).is_err());
        assert!(json_patch(&d, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&d, &json!({"op": "add"})).is_err());
    }
}
