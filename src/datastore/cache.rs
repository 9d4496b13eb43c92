//! Folds datastore [`Event`]s into one consistent [`ClusterConfig`] snapshot. Pure: no
//! I/O, no clocks, the same snapshot whatever the order of events within a sync.
//!
//! Objects are kept per (kind, namespace, name). A `Restart` of a kind opens a new
//! generation: at its `InSync`, objects of the kind not re-applied are removed. The
//! snapshot is checked across objects leniently: an object that conflicts with the
//! others (an overlapping pool, a block claimed twice) is left out and reported, and the
//! rest stays in force.

use super::Event;
use brindle_model::kubernetes::Pod;
use brindle_model::{ClusterConfig, ConfigError, Kind, Object, Resource};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An object held, ordered by (kind, namespace, name) read from the object itself: the
/// cache keeps no second copy of the names (memory: 100,000 pods).
#[derive(Debug)]
struct Entry {
    held: Held,
    /// The generation of the event that applied it.
    seen: u64,
}

#[derive(Debug)]
enum Held {
    Object(Box<Object>),
    /// A pod from the API is kept as its model alone: its `Object` wrapper would only
    /// repeat its namespace and name (three more strings) and has nothing else (no
    /// warnings, no JSON).
    Pod(Arc<Pod>),
}

impl Entry {
    fn new(o: Box<Object>, seen: u64) -> Entry {
        if let Resource::Pod(p) = &o.resource {
            if o.warnings.is_empty()
                && o.raw.json.is_null()
                && o.raw.namespace.as_deref() == Some(&*p.namespace)
                && o.raw.name == p.name
            {
                return Entry {
                    held: Held::Pod(p.clone()),
                    seen,
                };
            }
        }
        Entry {
            held: Held::Object(o),
            seen,
        }
    }

    fn kind(&self) -> Kind {
        match &self.held {
            Held::Object(o) => o.raw.kind,
            Held::Pod(_) => Kind::Pod,
        }
    }

    /// Whether `o` is what this entry holds (its model and its JSON).
    fn same_as(&self, o: &Object) -> bool {
        match &self.held {
            Held::Object(old) => old.resource == o.resource && old.raw.json == o.raw.json,
            Held::Pod(old) => {
                matches!(&o.resource, Resource::Pod(p) if p == old) && o.raw.json.is_null()
            }
        }
    }

    fn pod(&self) -> Option<&Arc<Pod>> {
        match &self.held {
            Held::Pod(p) => Some(p),
            Held::Object(o) => match &o.resource {
                Resource::Pod(p) => Some(p),
                _ => None,
            },
        }
    }
}

/// What orders entries: (kind, namespace, name).
trait Keyed {
    fn key(&self) -> (Kind, Option<&str>, &str);
}

impl Keyed for Entry {
    fn key(&self) -> (Kind, Option<&str>, &str) {
        match &self.held {
            Held::Object(o) => (o.raw.kind, o.raw.namespace.as_deref(), o.raw.name.as_str()),
            Held::Pod(p) => (Kind::Pod, Some(&*p.namespace), p.name.as_str()),
        }
    }
}

/// A key to look an entry up by.
struct Lookup<'a>(Kind, Option<&'a str>, &'a str);

impl Keyed for Lookup<'_> {
    fn key(&self) -> (Kind, Option<&str>, &str) {
        (self.0, self.1, self.2)
    }
}

impl<'a> Borrow<dyn Keyed + 'a> for Entry {
    fn borrow(&self) -> &(dyn Keyed + 'a) {
        self
    }
}

impl PartialEq for dyn Keyed + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for dyn Keyed + '_ {}
impl PartialOrd for dyn Keyed + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for dyn Keyed + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// What one event changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The set of objects changed.
    pub changed: bool,
    /// A kind became in sync for the first time.
    pub first_sync: Option<Kind>,
}

/// The objects seen so far.
#[derive(Debug, Default)]
pub struct Cache {
    objects: BTreeSet<Entry>,
    /// Kinds that reached `InSync` at least once.
    synced: BTreeSet<Kind>,
    /// Kinds in a relist: the generation it started.
    relisting: BTreeMap<Kind, u64>,
    generation: u64,
    /// Warnings already reported (each once).
    reported: BTreeSet<String>,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Applies one event (an applied object is kept as it is, not copied).
    pub fn apply(&mut self, event: Event) -> Applied {
        self.generation += 1;
        let g = self.generation;
        match event {
            Event::Restart(kind) => {
                self.relisting.insert(kind, g);
                Applied::default()
            }
            Event::Apply(o) => {
                let key = Lookup(o.raw.kind, o.raw.namespace.as_deref(), &o.raw.name);
                let changed = self
                    .objects
                    .get(&key as &dyn Keyed)
                    .is_none_or(|old| !old.same_as(&o));
                self.objects.replace(Entry::new(o, g));
                Applied {
                    changed,
                    first_sync: None,
                }
            }
            Event::Delete {
                kind,
                namespace,
                name,
            } => Applied {
                changed: self
                    .objects
                    .remove(&Lookup(kind, namespace.as_deref(), &name) as &dyn Keyed),
                first_sync: None,
            },
            Event::InSync(kind) => {
                let mut changed = false;
                if let Some(start) = self.relisting.remove(&kind) {
                    let before = self.objects.len();
                    self.objects.retain(|e| e.kind() != kind || e.seen > start);
                    changed = self.objects.len() != before;
                }
                let first = self.synced.insert(kind);
                Applied {
                    changed,
                    first_sync: first.then_some(kind),
                }
            }
            Event::Invalid { .. } | Event::Connection(_) | Event::Warnings(_) => Applied::default(),
        }
    }

    /// Whether every kind in `kinds` has been in sync once.
    pub fn in_sync(&self, kinds: &[Kind]) -> bool {
        kinds.iter().all(|k| self.synced.contains(k))
    }

    /// The kinds in `kinds` not in sync yet.
    pub fn missing(&self, kinds: &[Kind]) -> Vec<Kind> {
        kinds
            .iter()
            .copied()
            .filter(|k| !self.synced.contains(k))
            .collect()
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The snapshot: every object held, checked against each other. Objects left out
    /// by the check are returned with their errors.
    pub fn snapshot(&self, label: &str) -> (ClusterConfig, Vec<(String, ConfigError)>) {
        // Calico objects first, in a stable order, so that of two conflicting objects
        // the same one is always left out.
        let objects: Vec<&Object> = self
            .objects
            .iter()
            .filter_map(|e| match &e.held {
                Held::Object(o) => Some(&**o),
                Held::Pod(_) => None,
            })
            .collect();
        let mut rejected = Vec::new();
        // the cache holds one object per (kind, namespace, name): names are unique
        let mut cfg = ClusterConfig::from_shared_lenient(label, objects, true, &mut rejected);
        // Pods are never left out by the checks: every pod, in key order, however held
        // (unless the whole snapshot failed).
        if !rejected.iter().any(|(l, _)| l.is_empty()) {
            cfg.pods = self
                .objects
                .iter()
                .filter_map(|e| e.pod().cloned())
                .collect();
        }
        (cfg, rejected)
    }

    /// Warnings of `cfg` not reported before (each warning is logged once).
    pub fn new_warnings(&mut self, cfg: &ClusterConfig) -> Vec<String> {
        cfg.warnings
            .iter()
            .filter(|w| self.reported.insert((*w).clone()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(text: &str) -> Vec<Object> {
        let cfg = brindle_model::parse("t.yaml", text).unwrap();
        // re-decode each raw resource as an API object would arrive
        cfg.resources
            .iter()
            .map(|r| brindle_model::decode_json("api", &r.json).unwrap().unwrap())
            .collect()
    }

    const POOLS: &str = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: a}
spec: {cidr: 10.65.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: b}
spec: {cidr: 10.66.0.0/16}
"#;

    #[test]
    fn relist_removes_what_is_gone_and_sync_is_explicit() {
        let objs = objects(POOLS);
        let mut c = Cache::new();
        c.apply(Event::Restart(Kind::IpPool));
        for o in &objs {
            assert!(c.apply(Event::Apply(Box::new(o.clone()))).changed);
        }
        assert!(!c.in_sync(&[Kind::IpPool]));
        let a = c.apply(Event::InSync(Kind::IpPool));
        assert_eq!(a.first_sync, Some(Kind::IpPool));
        assert!(c.in_sync(&[Kind::IpPool]));
        assert_eq!(c.snapshot("t").0.ip_pools.len(), 2);

        // same object again: no change
        assert!(!c.apply(Event::Apply(Box::new(objs[0].clone()))).changed);

        // relist (e.g. after 410 Gone) that no longer has pool b
        c.apply(Event::Restart(Kind::IpPool));
        c.apply(Event::Apply(Box::new(objs[0].clone())));
        let a = c.apply(Event::InSync(Kind::IpPool));
        assert!(a.changed);
        assert_eq!(a.first_sync, None);
        let pools = c.snapshot("t").0.ip_pools;
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].name, "a");
    }

    #[test]
    fn a_conflicting_object_is_left_out_and_the_rest_stays() {
        let mut objs = objects(POOLS);
        let overlap = objects(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: c}\nspec: {cidr: 10.65.128.0/17}\n",
        );
        objs.extend(overlap);
        let mut c = Cache::new();
        for o in objs {
            c.apply(Event::Apply(Box::new(o)));
        }
        let (cfg, rejected) = c.snapshot("t");
        let names: Vec<&str> = cfg.ip_pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, "IPPool/c");
        assert!(
            rejected[0].1.to_string().contains("overlaps"),
            "{}",
            rejected[0].1
        );
    }

    fn api_pod(ns: &str, name: &str, ip: &str) -> Box<Object> {
        let json = format!(
            r#"{{"metadata":{{"name":"{name}","namespace":"{ns}","labels":{{"app":"web"}}}},
               "spec":{{"nodeName":"n1"}},"status":{{"phase":"Running","podIP":"{ip}"}}}}"#
        );
        let (o, _) = brindle_model::decode::kubernetes::from_api_json(Kind::Pod, &json).unwrap();
        Box::new(o)
    }

    #[test]
    fn pods_held_bare_keep_key_order_changes_and_deletes() {
        let mut c = Cache::new();
        // "a-b" sorts after "a" as a namespace (tuple order), before it as "a-b/..." text
        for (ns, name) in [("a-b", "x"), ("a", "z"), ("a", "y")] {
            assert!(
                c.apply(Event::Apply(api_pod(ns, name, "10.65.0.1")))
                    .changed
            );
        }
        assert!(matches!(c.objects.first().unwrap().held, Held::Pod(_)));
        let names = |c: &Cache| -> Vec<String> {
            c.snapshot("t")
                .0
                .pods
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect()
        };
        assert_eq!(names(&c), ["a/y", "a/z", "a-b/x"]);
        assert!(
            !c.apply(Event::Apply(api_pod("a", "y", "10.65.0.1")))
                .changed
        );
        assert!(
            c.apply(Event::Apply(api_pod("a", "y", "10.65.0.2")))
                .changed
        );
        assert_eq!(c.len(), 3);
        let delete = |ns: &str, name: &str| Event::Delete {
            kind: Kind::Pod,
            namespace: Some(ns.into()),
            name: name.into(),
        };
        assert!(c.apply(delete("a", "z")).changed);
        assert!(!c.apply(delete("a", "z")).changed);
        assert_eq!(names(&c), ["a/y", "a-b/x"]);
        // a relist that no longer has a-b/x
        c.apply(Event::Restart(Kind::Pod));
        c.apply(Event::Apply(api_pod("a", "y", "10.65.0.2")));
        assert!(c.apply(Event::InSync(Kind::Pod)).changed);
        assert_eq!(names(&c), ["a/y"]);
    }

    #[test]
    fn delete_and_warnings_once() {
        let objs = objects(POOLS);
        let mut c = Cache::new();
        for o in &objs {
            c.apply(Event::Apply(Box::new(o.clone())));
        }
        assert!(
            c.apply(Event::Delete {
                kind: Kind::IpPool,
                namespace: None,
                name: "b".into()
            })
            .changed
        );
        assert_eq!(c.len(), 1);
        let mut cfg = c.snapshot("t").0;
        cfg.warnings = vec!["w1".into()];
        assert_eq!(c.new_warnings(&cfg), vec!["w1".to_string()]);
        assert!(c.new_warnings(&cfg).is_empty());
    }
}
