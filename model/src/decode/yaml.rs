//! A location-preserving YAML tree (parsed by serde-saphyr) and a small field reader on
//! top of it that knows the field path of everything it reads, rejects unknown fields
//! with a "did you mean" hint, and turns type mismatches into [`ConfigError`]s.

use crate::error::{closest, ConfigError};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter, Spanned};
use std::collections::BTreeMap;
use std::fmt;

/// One YAML node with the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub line: u64,
}

impl From<Spanned<Value>> for Node {
    fn from(s: Spanned<Value>) -> Self {
        Node {
            value: s.value,
            line: s.referenced.line(),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
                i128::try_from(v)
                    .map(Value::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element::<Spanned<Value>>()? {
                    items.push(item.into());
                }
                Ok(Value::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = a.next_key::<Spanned<Value>>()? {
                    let name = match key.value {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_string(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(serde::de::Error::custom(
                                "mapping keys must be plain scalars",
                            ))
                        }
                    };
                    let value = a.next_value::<Spanned<Value>>()?;
                    entries.push((
                        Key {
                            name,
                            line: key.referenced.line(),
                        },
                        value.into(),
                    ));
                }
                Ok(Value::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Plain-JSON form (for `brindlectl get -o json|yaml`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
                (Ok(v), _) => v.into(),
                (_, Ok(v)) => v.into(),
                _ => i.to_string().into(),
            },
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| f.to_string().into()),
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(|n| n.value.to_json()).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.clone(), v.value.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

impl Node {
    /// The tree of a JSON value (objects from the Kubernetes API); lines are 0 (unknown).
    pub fn from_json(v: &serde_json::Value) -> Node {
        let value = match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Value::Int(i.into()),
                (_, Some(u), _) => Value::Int(u.into()),
                (_, _, Some(f)) => Value::Float(f),
                _ => Value::Str(n.to_string()),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => {
                Value::Seq(items.iter().map(Node::from_json).collect())
            }
            serde_json::Value::Object(m) => Value::Map(
                m.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                name: k.clone(),
                                line: 0,
                            },
                            Node::from_json(v),
                        )
                    })
                    .collect(),
            ),
        };
        Node { value, line: 0 }
    }
}

/// Whether the mapping path `keys` exists (with a non-null value) under `node`.
pub(crate) fn has_key(node: &Node, keys: &[&str]) -> bool {
    let mut cur = node;
    for k in keys {
        match &cur.value {
            Value::Map(entries) => match entries.iter().find(|(key, _)| key.name == *k) {
                Some((_, v)) => cur = v,
                None => return false,
            },
            _ => return false,
        }
    }
    cur.value != Value::Null
}

/// Parses every YAML document in `text` (empty documents are skipped).
pub(crate) fn parse_documents(file: &str, text: &str) -> Result<Vec<Node>, ConfigError> {
    // YAML 1.2 core booleans only (`n`, `yes`, `off` stay strings), and `01` / `1_000`
    // stay strings too: names and label values are strings in Calico resources.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        // an alias bomb is refused after this much replay (default 1,000,000): measured
        // 8 ms and +1.8 MB instead of 379 ms and +23 MB
        alias_limits: serde_saphyr::alias_limits! { max_total_replayed_events: 10_000 },
    };
    match serde_saphyr::from_multiple_with_options::<Spanned<Value>>(text, options) {
        Ok(docs) => Ok(docs
            .into_iter()
            .map(Node::from)
            .filter(|n| n.value != Value::Null)
            .collect()),
        Err(e) => {
            let inner = e.without_snippet();
            // One line: control characters (newlines in parser messages) become spaces.
            let message: String = DefaultMessageFormatter
                .format_message(inner)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            Err(ConfigError::Yaml {
                file: file.to_string(),
                line: e.location().map(|l| l.line()).filter(|l| *l > 0),
                message,
            })
        }
    }
}

/// Where errors go: the file and the resource being decoded; and the warnings about
/// valid fields Brindle accepts but does not implement.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub resource: Option<String>,
    pub warnings: std::cell::RefCell<Vec<String>>,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str, resource: Option<String>) -> Self {
        Ctx {
            file,
            resource,
            warnings: Default::default(),
        }
    }

    /// Records that a valid field is accepted but has no effect.
    pub fn ignored(&self, path: &str, line: u64) {
        let at = if line > 0 {
            format!("{}:{line}", self.file)
        } else {
            self.file.to_string()
        };
        let what = self.resource.as_deref().unwrap_or("resource");
        self.warnings.borrow_mut().push(format!(
            "{at}: {what}: ignored: {path} (a valid Calico field that Brindle does not implement yet)"
        ));
    }

    pub fn err(&self, path: &str, line: u64, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(
            self.file,
            self.resource.clone(),
            (!path.is_empty()).then(|| path.to_string()),
            message,
            Some(line),
        )
    }
}

/// One value at a known path.
#[derive(Clone)]
pub(crate) struct Field<'a> {
    pub ctx: &'a Ctx<'a>,
    pub path: String,
    pub node: &'a Node,
}

impl<'a> Field<'a> {
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        self.ctx.err(&self.path, self.node.line, message)
    }

    fn expected(&self, what: &str) -> ConfigError {
        let hint = match &self.node.value {
            Value::Int(i) if what == "a string" => format!(" (quote it: \"{i}\")"),
            Value::Bool(b) if what == "a string" => format!(" (quote it: \"{b}\")"),
            _ => String::new(),
        };
        self.err(format!(
            "expected {what}, found {}{hint}",
            self.node.value.type_name()
        ))
    }

    /// A string exactly as written (no scalar conversion).
    pub fn str(&self) -> Result<&'a str, ConfigError> {
        match &self.node.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.expected("a string")),
        }
    }

    /// A string field read the way Kubernetes tools read YAML (`sigs.k8s.io/yaml`): an
    /// unquoted scalar where a string is expected (`true`, `65000`, `1.5`) is its text.
    pub fn string(&self) -> Result<String, ConfigError> {
        match &self.node.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            _ => Err(self.expected("a string")),
        }
    }

    pub fn bool(&self) -> Result<bool, ConfigError> {
        match &self.node.value {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) if s == "true" || s == "false" => Ok(s == "true"),
            _ => Err(self.expected("true or false")),
        }
    }

    /// An integer in `min..=max`.
    pub fn int(&self, min: i128, max: i128) -> Result<i128, ConfigError> {
        let v = match &self.node.value {
            Value::Int(i) => *i,
            Value::Str(s) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| self.err(format!("{s:?} is not an integer")))?,
            _ => return Err(self.expected("an integer")),
        };
        if v < min || v > max {
            return Err(self.err(format!("{v} is out of range ({min}..={max})")));
        }
        Ok(v)
    }

    pub fn seq(&self) -> Result<Vec<Field<'a>>, ConfigError> {
        match &self.node.value {
            Value::Seq(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, node)| Field {
                    ctx: self.ctx,
                    path: format!("{}[{i}]", self.path),
                    node,
                })
                .collect()),
            _ => Err(self.expected("a list")),
        }
    }

    pub fn map(&self, known: &[&'static str]) -> Result<Fields<'a>, ConfigError> {
        Fields::new(self.ctx, &self.path, self.node, known)
    }

    /// Like [`Field::map`], also accepting the valid fields in `ignored` (each present one
    /// is reported once as a warning naming it).
    pub fn map_ignoring(
        &self,
        known: &[&'static str],
        ignored: &[&'static str],
    ) -> Result<Fields<'a>, ConfigError> {
        Fields::with_ignored(self.ctx, &self.path, self.node, known, ignored)
    }

    /// A mapping of string to string (labels, annotations).
    pub fn string_map(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let Value::Map(entries) = &self.node.value else {
            return Err(self.expected("a mapping"));
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let path = format!("{}.{}", self.path, k.name);
            let f = Field {
                ctx: self.ctx,
                path,
                node: v,
            };
            let value = match &v.value {
                Value::Null => String::new(),
                _ => f.string()?,
            };
            out.insert(k.name.clone(), value);
        }
        Ok(out)
    }
}

/// The fields of one mapping, checked against the list of known field names.
pub(crate) struct Fields<'a> {
    ctx: &'a Ctx<'a>,
    path: String,
    entries: &'a [(Key, Node)],
    paths: Vec<String>,
    pub line: u64,
}

impl<'a> Fields<'a> {
    /// Fails on a non-mapping node or on any key not in `known` (with a hint).
    pub fn new(
        ctx: &'a Ctx<'a>,
        path: &str,
        node: &'a Node,
        known: &[&'static str],
    ) -> Result<Self, ConfigError> {
        Self::with_ignored(ctx, path, node, known, &[])
    }

    /// Accepts every key (objects whose schema belongs to someone else: Kubernetes').
    pub fn lenient(ctx: &'a Ctx<'a>, path: &str, node: &'a Node) -> Result<Self, ConfigError> {
        Self::check(ctx, path, node, None, &[])
    }

    /// Fails on any key in neither `known` nor `ignored` (with a hint from both lists);
    /// a key in `ignored` is accepted and reported as a warning.
    pub fn with_ignored(
        ctx: &'a Ctx<'a>,
        path: &str,
        node: &'a Node,
        known: &[&'static str],
        ignored: &[&'static str],
    ) -> Result<Self, ConfigError> {
        Self::check(ctx, path, node, Some(known), ignored)
    }

    fn check(
        ctx: &'a Ctx<'a>,
        path: &str,
        node: &'a Node,
        known: Option<&[&'static str]>,
        ignored: &[&'static str],
    ) -> Result<Self, ConfigError> {
        let entries: &[(Key, Node)] = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => &[],
            other => {
                return Err(ctx.err(
                    path,
                    node.line,
                    format!("expected a mapping, found {}", other.type_name()),
                ))
            }
        };
        let join = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        for (key, value) in entries {
            let Some(known) = known else {
                break;
            };
            if known.contains(&key.name.as_str()) {
                continue;
            }
            if ignored.contains(&key.name.as_str()) {
                if value.value != Value::Null {
                    ctx.ignored(&join(&key.name), key.line);
                }
                continue;
            }
            let all: Vec<&str> = known.iter().chain(ignored).copied().collect();
            let message = match closest(&key.name, &all) {
                Some(hint) => format!("unknown field; did you mean {hint}?"),
                None => format!("unknown field (valid fields: {})", all.join(", ")),
            };
            return Err(ctx.err(&join(&key.name), key.line, message));
        }
        Ok(Fields {
            ctx,
            path: path.to_string(),
            entries,
            paths: entries.iter().map(|(k, _)| join(&k.name)).collect(),
            line: node.line,
        })
    }

    /// The field `name`, unless absent or null.
    pub fn get(&self, name: &str) -> Option<Field<'a>> {
        self.entries
            .iter()
            .zip(&self.paths)
            .find(|((k, _), _)| k.name == name)
            .filter(|((_, v), _)| v.value != Value::Null)
            .map(|((_, node), path)| Field {
                ctx: self.ctx,
                path: path.clone(),
                node,
            })
    }

    /// The field `name`, or an error saying it is required.
    pub fn required(&self, name: &str) -> Result<Field<'a>, ConfigError> {
        self.get(name).ok_or_else(|| {
            let path = if self.path.is_empty() {
                name.to_string()
            } else {
                format!("{}.{name}", self.path)
            };
            self.ctx.err(&path, self.line, "required field is missing")
        })
    }

    /// Shorthand: an optional field mapped through `f`.
    pub fn opt<T>(
        &self,
        name: &str,
        f: impl FnOnce(Field<'a>) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(name).map(f).transpose()
    }

    /// The line of field `name` (or of the mapping when absent).
    pub fn line_of(&self, name: &str) -> u64 {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map_or(self.line, |(_, v)| v.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_keeps_lines_and_types() {
        let docs = parse_documents(
            "t.yaml",
            "# c\n---\na: 1\nb:\n  - x\n  - true\n---\n# empty\n---\nc: \"s\"\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        let Value::Map(m) = &docs[0].value else {
            panic!()
        };
        assert_eq!(m[0].0.name, "a");
        assert_eq!(m[0].0.line, 3);
        assert_eq!(m[0].1.value, Value::Int(1));
        let Value::Seq(items) = &m[1].1.value else {
            panic!()
        };
        assert_eq!(items[1].line, 6);
        assert_eq!(items[1].value, Value::Bool(true));
        assert_eq!(docs[1].line, 10);
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse_documents("t.yaml", "a: 1\nb:\n   c: 1\n  d: 2\n").unwrap_err();
        assert_eq!(e.line(), Some(4));
        assert!(e.to_string().starts_with("t.yaml: invalid YAML: "), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn unknown_field_hint() {
        let docs = parse_documents("t.yaml", "spec:\n  asnumber: 1\n").unwrap();
        let ctx = Ctx::new("t.yaml", Some("X/y".into()));
        let top = Fields::new(&ctx, "", &docs[0], &["spec"]).unwrap();
        let spec = top.get("spec").unwrap();
        let e = spec.map(&["asNumber", "peerIP"]).err().unwrap();
        assert_eq!(
            e.to_string(),
            "t.yaml: X/y: spec.asnumber: unknown field; did you mean asNumber? (line 2)"
        );
    }
}
