//! The in-memory object store: objects, the resourceVersion counter, the event history.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::obj::{FieldNames, Obj};
use crate::patch;
use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

/// (group, plural): objects are shared by all versions of a resource.
pub(crate) type ResKey = (String, String);
/// (namespace or `""`, name), in the order lists return them.
pub(crate) type ObjKey = (String, String);

/// The kind of a change, as watch events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
}

impl EventType {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write, as kept in the history that watches replay.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub res: ResKey,
    pub ns: String,
    pub etype: EventType,
    /// The object after the write (for DELETED: its last state, with the deletion's rv).
    pub obj: Arc<Obj>,
    /// The object before the write (MODIFIED only), to turn selector transitions into
    /// ADDED/DELETED as the real watch does.
    pub old: Option<Arc<Obj>>,
}

impl Event {
    /// What the event holds, for the history's byte budget.
    fn size(&self) -> usize {
        self.obj.size() + self.old.as_ref().map_or(0, |o| o.size())
    }
}

/// What watch streams wait on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Signal {
    pub rv: u64,
    /// Bumped by `compact()`: open watches end with a 410 ERROR event.
    pub expire_epoch: u64,
    /// Bumped by `close_watches()`: open watches end cleanly.
    pub close_epoch: u64,
}

/// How a write is made.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WriteOpts {
    /// Through the HTTP API (status subresource rules, create-time status reset,
    /// namespace must exist, no resourceVersion on create); else the direct store API,
    /// which writes whole objects.
    pub api: bool,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
}

/// The patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386)
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/json-patch+json` (RFC 6902)
    Json,
    /// `application/apply-patch+yaml`: approximated as "create, or merge patch".
    Apply,
}

/// Preconditions of a delete (DeleteOptions.preconditions).
#[derive(Debug, Clone, Default)]
pub(crate) struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// One page of a list.
#[derive(Debug)]
pub(crate) struct ListPage {
    pub items: Vec<Arc<Obj>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

pub(crate) struct Store {
    types: Vec<ResourceType>,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Arc<Obj>>>,
    /// The fields each resource's objects index (from its storage version's type).
    field_names: HashMap<ResKey, FieldNames>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Budget of the bytes the history's events hold ([`Event::size`]).
    history_bytes: usize,
    /// What the history's events hold now.
    history_size: usize,
    /// Every event with rv > floor is in `history`.
    floor: u64,
    signal: watch::Sender<Signal>,
    uid_seed: u64,
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn now_timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_u64(seed: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(seed);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QNAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `IsDNS1123Subdomain`: the regex and 253 characters in all; unlike a label, a part
/// between dots may be longer than 63 (Calico's IPAM handles `k8s-pod-network.<64 hex>`
/// rely on it).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// A qualified name (`prefix/name` or `name`), as label and annotation keys are.
fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || !is_dns_subdomain(p) {
            return Some(format!("prefix part {SUBDOMAIN_MSG}"));
        }
    }
    if name.is_empty() {
        return Some("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".into());
    }
    if !is_label_value(name) {
        return Some(QNAME_MSG.into());
    }
    None
}

/// Metadata validation (names, labels, annotations), as `ValidateObjectMeta` does.
fn validate_meta(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let mut causes: Vec<(String, String)> = Vec::new();
    let name = meta_str(obj, "name").unwrap_or("");
    let (ok, msg) = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => (is_dns_label(name), LABEL_MSG),
        ("", "services") => (
            is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
            DNS1035_MSG,
        ),
        _ => (is_dns_subdomain(name), SUBDOMAIN_MSG),
    };
    if !ok {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: {name:?}: {msg}"),
        ));
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        match labels.as_object() {
            Some(m) => {
                for (k, v) in m {
                    if let Some(e) = qualified_name_error(k) {
                        causes.push((
                            "metadata.labels".into(),
                            format!("Invalid value: {k:?}: {e}"),
                        ));
                    }
                    match v.as_str() {
                        Some(s) if is_label_value(s) => {}
                        Some(s) => causes.push((
                            "metadata.labels".into(),
                            format!("Invalid value: {s:?}: {LABEL_VALUE_MSG}"),
                        )),
                        None => causes.push((
                            "metadata.labels".into(),
                            format!("Invalid value: {v}: label values must be strings"),
                        )),
                    }
                }
            }
            None if labels.is_null() => {}
            None => causes.push((
                "metadata.labels".into(),
                "Invalid value: must be an object".into(),
            )),
        }
    }
    if let Some(ann) = obj.pointer("/metadata/annotations") {
        match ann.as_object() {
            Some(m) => {
                let mut total = 0;
                for (k, v) in m {
                    if let Some(e) = qualified_name_error(&k.to_ascii_lowercase()) {
                        causes.push((
                            "metadata.annotations".into(),
                            format!("Invalid value: {k:?}: {e}"),
                        ));
                    }
                    match v.as_str() {
                        Some(s) => total += k.len() + s.len(),
                        None => causes.push((
                            "metadata.annotations".into(),
                            format!("Invalid value: {v}: annotation values must be strings"),
                        )),
                    }
                }
                if total > 256 * 1024 {
                    causes.push((
                        "metadata.annotations".into(),
                        "Too long: must have at most 262144 bytes".into(),
                    ));
                }
            }
            None if ann.is_null() => {}
            None => causes.push((
                "metadata.annotations".into(),
                "Invalid value: must be an object".into(),
            )),
        }
    }
    if let Some(f) = obj.pointer("/metadata/finalizers") {
        if !f.is_null() && !f.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            causes.push((
                "metadata.finalizers".into(),
                "Invalid value: must be a list of strings".into(),
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, name, &causes))
    }
}

/// Everything but `metadata` and `status` (what bumps `metadata.generation`).
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    v
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let m = obj.as_object_mut().expect("object");
    let meta = m
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("object")
}

fn check_type(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        if av != rt.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if k != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
    }
    Ok(())
}

/// Encodes a continue token as the real API does (base64 JSON with `rv` and `start`).
/// `rv` -1 continues at the present revision (the fresh token of an expired one).
fn encode_continue(rv: i64, key: &ObjKey) -> String {
    let start = if key.0.is_empty() {
        format!("{}\u{0}", key.1)
    } else {
        format!("{}/{}\u{0}", key.0, key.1)
    };
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(i64, ObjKey), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v
        .get("rv")
        .and_then(Value::as_i64)
        .filter(|rv| *rv >= -1)
        .ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let start = start.trim_end_matches('\u{0}');
    let key = match start.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), start.to_string()),
    };
    Ok((rv, key))
}

impl Store {
    #[cfg(test)]
    pub fn new(history_limit: usize) -> Self {
        Self::with_budget(history_limit, usize::MAX)
    }

    /// A store whose history keeps at most `history_limit` events holding at most
    /// `history_bytes` bytes of objects (and always the newest event).
    pub fn with_budget(history_limit: usize, history_bytes: usize) -> Self {
        let (signal, _) = watch::channel(Signal::default());
        Store {
            types: resources::builtins(),
            objects: HashMap::new(),
            field_names: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            history_bytes,
            history_size: 0,
            floor: 0,
            signal,
            uid_seed: 0,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Signal> {
        self.signal.subscribe()
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The type served at group/version/plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The type for an object's `apiVersion` and `kind`.
    pub fn type_for(&self, api_version: &str, kind: &str) -> Result<ResourceType, ApiError> {
        let (g, v) = resources::split_api_version(api_version);
        self.types
            .iter()
            .find(|t| t.group == g && t.version == v && t.kind == kind)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    format!("no matches for kind \"{kind}\" in version \"{api_version}\""),
                )
            })
    }

    /// The type an object belongs to.
    pub fn type_of(&self, obj: &Value) -> Result<ResourceType, ApiError> {
        let av = obj.get("apiVersion").and_then(Value::as_str);
        let kind = obj.get("kind").and_then(Value::as_str);
        match (av, kind) {
            (Some(av), Some(kind)) => self.type_for(av, kind),
            _ => Err(ApiError::bad_request(
                "Object 'apiVersion' and 'kind' must be set",
            )),
        }
    }

    /// Resolves a kind, plural, singular or short name (optionally `.group`); built-in
    /// types win over custom ones, preferred versions over others.
    pub fn resolve(&self, name: &str) -> Result<ResourceType, ApiError> {
        let mut c: Vec<&ResourceType> = self.types.iter().filter(|t| t.is_named(name)).collect();
        c.sort_by_key(|t| (t.custom, resources::version_priority(&t.version)));
        c.first().map(|t| (*t).clone()).ok_or_else(|| {
            ApiError::new(
                404,
                format!("the server doesn't have a resource type \"{name}\""),
            )
        })
    }

    fn uid(&mut self) -> String {
        self.uid_seed += 1;
        let a = random_u64(self.uid_seed);
        let b = random_u64(a ^ self.uid_seed.rotate_left(32));
        let hex = format!("{a:016x}{b:016x}");
        // RFC 4122 version 4 layout.
        format!(
            "{}-{}-4{}-{}{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            ["8", "9", "a", "b"][(b >> 62) as usize],
            &hex[17..20],
            &hex[20..32]
        )
    }

    fn random_suffix(&mut self) -> String {
        const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.uid_seed += 1;
        let mut x = random_u64(self.uid_seed);
        (0..5)
            .map(|_| {
                let c = CHARS[(x % CHARS.len() as u64) as usize] as char;
                x /= CHARS.len() as u64;
                c
            })
            .collect()
    }

    /// The object as served at `rt`'s version.
    pub fn output(rt: &ResourceType, mut o: Value) -> Value {
        if let Value::Object(m) = &mut o {
            m.insert("apiVersion".into(), json!(rt.api_version()));
            m.insert("kind".into(), json!(rt.kind));
        }
        o
    }

    fn res_key(rt: &ResourceType) -> ResKey {
        (rt.group.clone(), rt.plural.clone())
    }

    fn obj_key(rt: &ResourceType, ns: Option<&str>, name: &str) -> ObjKey {
        let ns = if rt.namespaced { ns.unwrap_or("") } else { "" };
        (ns.to_string(), name.to_string())
    }

    fn lookup(&self, rt: &ResourceType, key: &ObjKey) -> Option<Arc<Obj>> {
        self.objects.get(&Self::res_key(rt))?.get(key).cloned()
    }

    /// The stored object and its parse (at the storage version), for a write.
    fn lookup_value(&self, rt: &ResourceType, key: &ObjKey) -> Option<(Arc<Obj>, Value)> {
        let o = self.lookup(rt, key)?;
        let v = o.to_value(&rt.storage_api_version());
        Some((o, v))
    }

    /// The fields the objects of `res` index: name, namespace and the selectable fields
    /// of the storage version's type.
    fn field_names(&mut self, res: &ResKey) -> FieldNames {
        if let Some(n) = self.field_names.get(res) {
            return n.clone();
        }
        let mut names: Vec<Box<str>> = vec!["metadata.name".into(), "metadata.namespace".into()];
        if let Some(t) = self
            .types
            .iter()
            .find(|t| t.group == res.0 && t.plural == res.1 && t.version == t.storage_version)
        {
            names.extend(t.selectable_fields.iter().map(|f| Box::from(f.as_str())));
        }
        let names: FieldNames = names.into();
        self.field_names.insert(res.clone(), names.clone());
        names
    }

    /// Records a write: bumps the revision, stamps it, stores, appends to the history.
    /// Returns the stored object and its `Value` (at the storage version).
    fn commit(
        &mut self,
        res: ResKey,
        key: ObjKey,
        etype: EventType,
        mut obj: Value,
        old: Option<Arc<Obj>>,
    ) -> (Arc<Obj>, Value) {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let names = self.field_names(&res);
        let stored = Arc::new(Obj::new(&mut obj, &names));
        let map = self.objects.entry(res.clone()).or_default();
        if etype == EventType::Deleted {
            map.remove(&key);
        } else {
            map.insert(key.clone(), stored.clone());
        }
        let event = Event {
            rv: self.rv,
            res,
            ns: key.0,
            etype,
            obj: stored.clone(),
            old,
        };
        self.history_size += event.size();
        self.history.push_back(Arc::new(event));
        while self.history.len() > self.history_limit
            || (self.history_size > self.history_bytes && self.history.len() > 1)
        {
            if let Some(e) = self.history.pop_front() {
                self.floor = e.rv;
                self.history_size -= e.size();
            }
        }
        let rv = self.rv;
        self.signal.send_modify(|s| s.rv = rv);
        (stored, obj)
    }

    /// Drops the whole history: every resourceVersion handed out so far becomes too old
    /// (watches from it and continue tokens of it get 410), and open watches end with a
    /// 410 `Expired` ERROR event, so that watchers relist.
    pub fn compact(&mut self) {
        // A revision of its own, so that even the newest resourceVersion a client has
        // seen is older than the compaction.
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
        self.history_size = 0;
        let rv = self.rv;
        self.signal.send_modify(|s| {
            s.rv = rv;
            s.expire_epoch += 1;
        });
    }

    /// Ends every open watch stream cleanly (as the server-side timeout does).
    pub fn close_watches(&self) {
        self.signal.send_modify(|s| s.close_epoch += 1);
    }

    /// Events of `res` after `after`, and the revision they bring the watcher to; `Err`
    /// with the oldest servable revision when `after` is older than the history.
    pub fn events_since(&self, res: &ResKey, after: u64) -> Result<(Vec<Arc<Event>>, u64), u64> {
        if after < self.floor {
            return Err(self.floor);
        }
        let start = self.history.partition_point(|e| e.rv <= after);
        let evs = self
            .history
            .range(start..)
            .filter(|e| e.res == *res)
            .cloned()
            .collect();
        Ok((evs, self.rv.max(after)))
    }

    /// All objects of a resource (in a namespace), for a watch's initial events.
    pub fn snapshot(&self, rt: &ResourceType, ns: Option<&str>) -> (Vec<Arc<Obj>>, u64) {
        let items = self
            .objects
            .get(&Self::res_key(rt))
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| ns.is_none_or(|ns| k.0 == ns))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, self.rv)
    }

    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.get_stored(rt, ns, name)
            .map(|o| o.to_value(&rt.api_version()))
    }

    /// The stored object (to be written out as it is).
    pub fn get_stored(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Obj>, ApiError> {
        self.lookup(rt, &Self::obj_key(rt, ns, name))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let (list_rv, start) = match continue_token.filter(|t| !t.is_empty()) {
            Some(t) => {
                let (rv, key) = decode_continue(t)?;
                match u64::try_from(rv) {
                    // -1: the fresh token of an expired one; the list goes on at the
                    // present revision (inconsistently, as the client was told).
                    Err(_) if rv == -1 => (self.rv, Some(key)),
                    Ok(rv) if rv >= self.floor => (rv, Some(key)),
                    _ => {
                        let mut e = ApiError::expired(
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                        );
                        e.list_continue = Some(encode_continue(-1, &key));
                        return Err(e);
                    }
                }
            }
            None => (self.rv, None),
        };
        // A page costs O(page): the walk starts after the continue key and stops at the
        // first item past the limit.
        let limit = limit.filter(|l| *l > 0);
        let empty = BTreeMap::new();
        let objects = self.objects.get(&Self::res_key(rt)).unwrap_or(&empty);
        let after = || match &start {
            Some(s) => objects.range::<ObjKey, _>((Bound::Excluded(s), Bound::Unbounded)),
            None => objects.range::<ObjKey, _>(..),
        };
        let mut walk = after()
            .filter(|(k, _)| ns.is_none_or(|ns| k.0 == ns))
            .filter(|(_, v)| v.matches(labels, fields));
        let mut matching: Vec<(&ObjKey, &Arc<Obj>)> = match limit {
            Some(l) => walk.by_ref().take(l).collect(),
            None => walk.by_ref().collect(),
        };
        let mut continue_token = None;
        let mut remaining = None;
        if limit.is_some() && walk.next().is_some() {
            let last = matching
                .last()
                .map(|(k, _)| (*k).clone())
                .unwrap_or_default();
            continue_token = Some(encode_continue(list_rv as i64, &last));
            if labels.is_empty() && fields.is_empty() {
                // counting is cheap next to matching and copying
                let past = |k: &ObjKey| ns.is_none_or(|ns| k.0 == ns);
                remaining = Some(
                    objects
                        .range::<ObjKey, _>((Bound::Excluded(&last), Bound::Unbounded))
                        .filter(|(k, _)| past(k))
                        .count(),
                );
            }
        }
        matching.shrink_to_fit();
        Ok(ListPage {
            items: matching.into_iter().map(|(_, v)| v.clone()).collect(),
            resource_version: list_rv,
            continue_token,
            remaining,
        })
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        opts: WriteOpts,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_type(rt, &obj)?;
        let rv_set = meta_str(&obj, "resourceVersion").is_some_and(|s| !s.is_empty());
        if rv_set && opts.api {
            return Err(ApiError::new(
                500,
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let body_ns = meta_str(&obj, "namespace").map(str::to_string);
        let ns: Option<String> = if rt.namespaced {
            let ns = match (ns, body_ns.as_deref()) {
                (Some(p), Some(b)) if !b.is_empty() && p != b => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                (Some(p), _) => p.to_string(),
                (None, Some(b)) if !b.is_empty() => b.to_string(),
                (None, _) => "default".to_string(),
            };
            Some(ns)
        } else {
            None
        };
        let mut name = meta_str(&obj, "name").unwrap_or("").to_string();
        if name.is_empty() {
            match meta_str(&obj, "generateName").filter(|g| !g.is_empty()) {
                Some(g) => name = format!("{g}{}", self.random_suffix()),
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        &[(
                            "metadata.name".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ))
                }
            }
        }
        let uid = self.uid();
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), json!(name));
            match &ns {
                Some(ns) => {
                    m.insert("namespace".into(), json!(ns));
                }
                None => {
                    m.remove("namespace");
                }
            }
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(now_timestamp()));
            m.insert("generation".into(), json!(1));
        }
        obj["apiVersion"] = json!(rt.storage_api_version());
        obj["kind"] = json!(rt.kind);
        validate_meta(rt, &obj)?;
        let key = Self::obj_key(rt, ns.as_deref(), &name);
        if self.lookup(rt, &key).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        if opts.api && rt.namespaced {
            let nsrt = self
                .find("", "v1", "namespaces")
                .expect("namespaces are built in");
            if self
                .lookup(&nsrt, &(String::new(), key.0.clone()))
                .is_none()
            {
                return Err(ApiError::not_found(&nsrt, &key.0));
            }
        }
        if opts.api {
            match (rt.group.as_str(), rt.plural.as_str()) {
                ("", "pods") => obj["status"] = json!({"phase": "Pending"}),
                ("", "nodes") => {}
                _ if rt.status_subresource => {
                    if let Value::Object(m) = &mut obj {
                        m.remove("status");
                    }
                }
                _ => {}
            }
        }
        if rt.group.is_empty()
            && rt.plural == "namespaces"
            && obj.pointer("/status/phase").is_none()
        {
            obj["status"] = json!({"phase": "Active"});
        }
        let crd_types = if Self::is_crd(rt) {
            let types = resources::from_crd(&obj).map_err(|e| {
                ApiError::invalid(
                    rt,
                    &name,
                    &[(e.split(':').next().unwrap_or("spec").to_string(), e.clone())],
                )
            })?;
            obj["status"] = crd_status(&obj);
            Some(types)
        } else {
            None
        };
        if opts.dry_run {
            return Ok(Self::output(rt, obj));
        }
        if let Some(types) = crd_types {
            self.register(types);
        }
        let (_, stored) = self.commit(Self::res_key(rt), key, EventType::Added, obj, None);
        Ok(Self::output(rt, stored))
    }

    /// The storage `apiVersion` of a resource's objects (as stored in their bytes
    /// before: the stored JSON keeps no `apiVersion`).
    fn storage_api_version_of(&self, res: &ResKey) -> String {
        self.types
            .iter()
            .find(|t| t.group == res.0 && t.plural == res.1)
            .map(|t| t.storage_api_version())
            .unwrap_or_else(|| resources::api_version(&res.0, "v1"))
    }

    fn is_crd(rt: &ResourceType) -> bool {
        rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
    }

    /// Registers resource types (replacing those of the same group and plural).
    fn register(&mut self, types: Vec<ResourceType>) {
        for t in &types {
            self.types
                .retain(|x| !(x.group == t.group && x.plural == t.plural));
            self.field_names
                .remove(&(t.group.clone(), t.plural.clone()));
        }
        self.types.extend(types);
    }

    /// Drops a CRD's types and every object of them.
    fn unregister(&mut self, crd: &Value) {
        let Ok(types) = resources::from_crd(crd) else {
            return;
        };
        let Some(t) = types.first().cloned() else {
            return;
        };
        let res = Self::res_key(&t);
        let keys: Vec<ObjKey> = self
            .objects
            .get(&res)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let av = t.storage_api_version();
        for k in keys {
            if let Some(old) = self.objects.get(&res).and_then(|m| m.get(&k)).cloned() {
                self.commit(res.clone(), k, EventType::Deleted, old.to_value(&av), None);
            }
        }
        self.types
            .retain(|x| !(x.group == t.group && x.plural == t.plural));
        self.field_names.remove(&res);
    }

    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        status: bool,
        opts: WriteOpts,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_type(rt, &obj)?;
        if let Some(n) = meta_str(&obj, "name").filter(|n| !n.is_empty()) {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        if rt.namespaced {
            if let (Some(p), Some(b)) = (ns, meta_str(&obj, "namespace")) {
                if !b.is_empty() && p != b {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        }
        let ns = if rt.namespaced {
            ns.or(meta_str(&obj, "namespace"))
                .or(Some("default"))
                .map(str::to_string)
        } else {
            None
        };
        let key = Self::obj_key(rt, ns.as_deref(), name);
        let (old_obj, old) = self
            .lookup_value(rt, &key)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if let Some(rv) = meta_str(&obj, "resourceVersion").filter(|s| !s.is_empty()) {
            if Some(rv) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(rt, name));
            }
        }
        if let Some(uid) = meta_str(&obj, "uid").filter(|s| !s.is_empty()) {
            let cur = meta_str(&old, "uid").unwrap_or("");
            if uid != cur {
                return Err(ApiError::conflict_because(
                    rt,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {cur}"),
                ));
            }
        }
        self.finish_update(rt, key, (old_obj, old), obj, status, opts)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        body: &Value,
        status: bool,
        opts: WriteOpts,
    ) -> Result<Value, ApiError> {
        let key = Self::obj_key(rt, ns.or(Some("default")), name);
        let (old_obj, old) = match self.lookup_value(rt, &key) {
            Some(o) => o,
            None if ptype == PatchType::Apply && !status => {
                let mut obj = body.clone();
                meta_mut(&mut obj).insert("name".into(), json!(name));
                return self.create(rt, ns, obj, opts);
            }
            None => return Err(ApiError::not_found(rt, name)),
        };
        let mut new = old.clone();
        match ptype {
            PatchType::Merge | PatchType::Apply => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                patch::merge_patch(&mut new, body);
            }
            PatchType::Strategic => {
                if rt.custom {
                    return Err(ApiError::new(
                        415,
                        "strategic merge patch is not supported for custom resources; use a merge patch or a JSON patch",
                    ));
                }
                if !body.is_object() {
                    return Err(ApiError::bad_request(
                        "a strategic merge patch must be a JSON object",
                    ));
                }
                patch::strategic_merge_patch(&mut new, body);
            }
            PatchType::Json => {
                new = patch::json_patch(&new, body).map_err(|e| {
                    ApiError::new(
                        422,
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
            }
        }
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        if let Some(rv) = meta_str(&new, "resourceVersion") {
            if Some(rv) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(rt, name));
            }
        }
        if let Some(uid) = meta_str(&new, "uid").filter(|u| Some(*u) != meta_str(&old, "uid")) {
            let cur = meta_str(&old, "uid").unwrap_or("");
            return Err(ApiError::conflict_because(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {cur}"
                ),
            ));
        }
        self.finish_update(rt, key, (old_obj, old), new, status, opts)
    }

    /// The common end of update and patch: subresource rules, server-owned metadata,
    /// validation, generation, finalizer-completed deletes, no-op detection.
    fn finish_update(
        &mut self,
        rt: &ResourceType,
        key: ObjKey,
        (old_obj, old): (Arc<Obj>, Value),
        mut new: Value,
        status: bool,
        opts: WriteOpts,
    ) -> Result<Value, ApiError> {
        if status {
            if rt.custom {
                let st = new.get("status").cloned();
                new = old.clone();
                match st {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Value::Object(m) = &mut new {
                            m.remove("status");
                        }
                    }
                }
            } else if let (Value::Object(n), Value::Object(o)) = (&mut new, &old) {
                n.retain(|k, _| {
                    matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                });
                for (k, v) in o {
                    if !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind") {
                        n.insert(k.clone(), v.clone());
                    }
                }
            }
        } else if opts.api && rt.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Value::Object(m) = &mut new {
                        m.remove("status");
                    }
                }
            }
        }
        {
            let om = old
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let m = meta_mut(&mut new);
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match om.get(f) {
                    Some(v) => m.insert(f.to_string(), v.clone()),
                    None => m.remove(f),
                };
            }
        }
        new["apiVersion"] = json!(rt.storage_api_version());
        new["kind"] = json!(rt.kind);
        let name = key.1.clone();
        validate_meta(rt, &new)?;
        if spec_part(&new) != spec_part(&old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        let crd_types = if Self::is_crd(rt) {
            let types = resources::from_crd(&new)
                .map_err(|e| ApiError::invalid(rt, &name, &[("spec".into(), e.clone())]))?;
            if !status {
                new["status"] = crd_status(&new);
            }
            Some(types)
        } else {
            None
        };
        let finalizers_done = new.pointer("/metadata/deletionTimestamp").is_some()
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty());
        if new == old && !finalizers_done {
            return Ok(Self::output(rt, old));
        }
        if opts.dry_run {
            return Ok(Self::output(rt, new));
        }
        let res = Self::res_key(rt);
        if finalizers_done {
            let (_, stored) = self.commit(res, key, EventType::Deleted, new, None);
            self.after_delete(rt, &stored);
            return Ok(Self::output(rt, stored));
        }
        if let Some(types) = crd_types {
            self.register(types);
        }
        let (_, stored) = self.commit(res, key, EventType::Modified, new, Some(old_obj));
        Ok(Self::output(rt, stored))
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        pre: &Preconditions,
        opts: WriteOpts,
    ) -> Result<Value, ApiError> {
        let key = Self::obj_key(rt, ns.or(Some("default")), name);
        let (old_obj, old) = self
            .lookup_value(rt, &key)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if let Some(uid) = pre.uid.as_deref() {
            let cur = meta_str(&old, "uid").unwrap_or("");
            if uid != cur {
                return Err(ApiError::conflict_because(
                    rt,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {cur}"),
                ));
            }
        }
        if let Some(rv) = pre.resource_version.as_deref() {
            let cur = meta_str(&old, "resourceVersion").unwrap_or("");
            if rv != cur {
                return Err(ApiError::conflict_because(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {cur}"
                    ),
                ));
            }
        }
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let res = Self::res_key(rt);
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() || opts.dry_run {
                return Ok(Self::output(rt, old));
            }
            let mut new = old;
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(now_timestamp()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            let (_, stored) = self.commit(res, key, EventType::Modified, new, Some(old_obj));
            return Ok(Self::output(rt, stored));
        }
        if opts.dry_run {
            return Ok(Self::output(rt, old));
        }
        let (_, stored) = self.commit(res, key, EventType::Deleted, old, None);
        self.after_delete(rt, &stored);
        Ok(Self::output(rt, stored))
    }

    /// Cascades: a deleted CRD takes its resources along, a deleted namespace its
    /// objects.
    fn after_delete(&mut self, rt: &ResourceType, obj: &Value) {
        if Self::is_crd(rt) {
            self.unregister(obj);
        } else if rt.group.is_empty() && rt.plural == "namespaces" {
            let ns = meta_str(obj, "name").unwrap_or("").to_string();
            let mut doomed: Vec<(ResKey, ObjKey, Arc<Obj>)> = Vec::new();
            for (res, m) in &self.objects {
                for (k, v) in m {
                    if !k.0.is_empty() && k.0 == ns {
                        doomed.push((res.clone(), k.clone(), v.clone()));
                    }
                }
            }
            for (res, k, v) in doomed {
                let av = self.storage_api_version_of(&res);
                self.commit(res, k, EventType::Deleted, v.to_value(&av), None);
            }
        }
    }

    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: WriteOpts,
    ) -> Result<Vec<Value>, ApiError> {
        let names: Vec<ObjKey> = self
            .objects
            .get(&Self::res_key(rt))
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| ns.is_none_or(|ns| k.0 == ns))
                    .filter(|(_, v)| v.matches(labels, fields))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for (ns, name) in names {
            let ns = (!ns.is_empty()).then_some(ns);
            out.push(self.delete(rt, ns.as_deref(), &name, &Preconditions::default(), opts)?);
        }
        Ok(out)
    }

    /// Every stored object, types in registration order, objects in key order.
    pub fn dump(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in &self.types {
            let res = Self::res_key(t);
            if t.version != t.storage_version || !seen.insert(res.clone()) {
                continue;
            }
            if let Some(m) = self.objects.get(&res) {
                let av = t.storage_api_version();
                out.extend(m.values().map(|v| v.to_value(&av)));
            }
        }
        out
    }
}

/// The status a CRD gets once "established".
fn crd_status(crd: &Value) -> Value {
    let now = now_timestamp();
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    }

    #[test]
    fn create_update_conflict_delete() {
        let mut s = Store::new(100);
        let rt = s.find("", "v1", "nodes").unwrap();
        let api = WriteOpts {
            api: true,
            dry_run: false,
        };
        let n = s.create(&rt, None, node("n1"), api).unwrap();
        assert_eq!(n["metadata"]["resourceVersion"], "1");
        assert_eq!(n["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert_eq!(s.create(&rt, None, node("n1"), api).unwrap_err().code, 409);
        let mut stale = n.clone();
        stale["metadata"]["labels"] = json!({"a": "b"});
        let up = s
            .update(&rt, None, "n1", stale.clone(), false, api)
            .unwrap();
        assert_eq!(up["metadata"]["resourceVersion"], "2");
        let e = s.update(&rt, None, "n1", stale, false, api).unwrap_err();
        assert_eq!(e.reason, "Conflict");
        assert!(e
            .message
            .contains("Operation cannot be fulfilled on nodes \"n1\""));
        // No-op update: no new revision.
        let same = s.update(&rt, None, "n1", up.clone(), false, api).unwrap();
        assert_eq!(same["metadata"]["resourceVersion"], "2");
        let d = s
            .delete(&rt, None, "n1", &Preconditions::default(), api)
            .unwrap();
        assert_eq!(d["metadata"]["resourceVersion"], "3");
        assert_eq!(s.get(&rt, None, "n1").unwrap_err().code, 404);
        let (evs, cur) = s.events_since(&("".into(), "nodes".into()), 0).unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(cur, 3);
    }

    #[test]
    fn validation_and_pagination() {
        let mut s = Store::new(2);
        let rt = s.find("", "v1", "nodes").unwrap();
        let api = WriteOpts {
            api: true,
            dry_run: false,
        };
        let bad = json!({"metadata": {"name": "Bad_Name", "labels": {"x": "not ok!"}}});
        let e = s.create(&rt, None, bad, api).unwrap_err();
        assert_eq!(e.code, 422);
        for i in 0..5 {
            s.create(&rt, None, node(&format!("n{i}")), api).unwrap();
        }
        assert_eq!(s.floor(), 3);
        assert!(s.events_since(&("".into(), "nodes".into()), 2).is_err());
        let all = LabelSelector::default();
        let f = FieldSelector::default();
        let p1 = s.list(&rt, None, &all, &f, Some(2), None).unwrap();
        assert_eq!(p1.items.len(), 2);
        let tok = p1.continue_token.unwrap();
        let p2 = s.list(&rt, None, &all, &f, Some(2), Some(&tok)).unwrap();
        assert_eq!(p2.items[0].to_value("v1")["metadata"]["name"], "n2");
        assert_eq!(p2.resource_version, 5);
        s.compact();
        let e = s
            .list(&rt, None, &all, &f, Some(2), Some(&tok))
            .unwrap_err();
        assert_eq!(e.code, 410);
        // The 410 carries a fresh token that goes on after the same key, at the present.
        let fresh = e.list_continue.clone().expect("a fresh continue token");
        assert_eq!(e.to_status()["metadata"]["continue"], fresh.as_str());
        let p3 = s.list(&rt, None, &all, &f, Some(2), Some(&fresh)).unwrap();
        assert_eq!(p3.items[0].to_value("v1")["metadata"]["name"], "n2");
        assert_eq!(p3.resource_version, s.resource_version());
    }

    #[test]
    fn finalizers_and_status_rules() {
        let mut s = Store::new(100);
        let rt = s.find("", "v1", "pods").unwrap();
        let nsrt = s.find("", "v1", "namespaces").unwrap();
        let api = WriteOpts {
            api: true,
            dry_run: false,
        };
        let pod = json!({"metadata": {"name": "p", "finalizers": ["x"]}, "spec": {"nodeName": "n"}, "status": {"podIP": "1.2.3.4"}});
        assert_eq!(
            s.create(&rt, Some("default"), pod.clone(), api)
                .unwrap_err()
                .code,
            404
        );
        s.create(&nsrt, None, json!({"metadata": {"name": "default"}}), api)
            .unwrap();
        let p = s.create(&rt, Some("default"), pod, api).unwrap();
        assert_eq!(p["status"], json!({"phase": "Pending"}));
        let p = s
            .patch(
                &rt,
                Some("default"),
                "p",
                PatchType::Merge,
                &json!({"status": {"podIP": "1.1.1.1"}, "spec": {"nodeName": "m"}}),
                true,
                api,
            )
            .unwrap();
        assert_eq!(p["status"]["podIP"], "1.1.1.1");
        assert_eq!(p["spec"]["nodeName"], "n");
        let d = s
            .delete(&rt, Some("default"), "p", &Preconditions::default(), api)
            .unwrap();
        assert!(d["metadata"]["deletionTimestamp"].is_string());
        s.patch(
            &rt,
            Some("default"),
            "p",
            PatchType::Json,
            &json!([{"op": "remove", "path": "/metadata/finalizers"}]),
            false,
            api,
        )
        .unwrap();
        assert_eq!(s.get(&rt, Some("default"), "p").unwrap_err().code, 404);
    }
}
