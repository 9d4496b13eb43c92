//! Sharing of equal values that are decoded again and again: the label set of every pod
//! of one ReplicaSet or DaemonSet is the same map, so the pods of a cluster hold a few
//! thousand distinct maps, not one each (memory: ~0.9 KB per pod at 5 labels).
//!
//! Likewise for short strings that repeat across objects ([`string`]: namespaces, node
//! names, service accounts, phases, port names and protocols).
//!
//! A process-wide memo, invisible in results: [`labels`] and [`string`] return a shared
//! copy of an equal value seen before, else keep the new one. Values no longer used by
//! anyone are dropped from the memo whenever it has doubled since the last sweep.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

/// A label set (shared).
pub type Labels = Arc<BTreeMap<String, String>>;

struct Memo<T: ?Sized> {
    set: HashSet<Arc<T>>,
    sweep_at: usize,
}

impl<T: ?Sized + Eq + std::hash::Hash> Memo<T> {
    fn new() -> Self {
        Memo {
            set: HashSet::new(),
            sweep_at: 1024,
        }
    }

    /// Sweeps unused values when the memo has doubled, then keeps `v`.
    fn keep(&mut self, v: Arc<T>) -> Arc<T> {
        if self.set.len() >= self.sweep_at {
            self.set.retain(|l| Arc::strong_count(l) > 1);
            self.sweep_at = (self.set.len() * 2).max(1024);
        }
        self.set.insert(v.clone());
        v
    }
}

static LABELS: LazyLock<Mutex<Memo<BTreeMap<String, String>>>> =
    LazyLock::new(|| Mutex::new(Memo::new()));
static STRINGS: LazyLock<Mutex<Memo<str>>> = LazyLock::new(|| Mutex::new(Memo::new()));

/// The shared copy of `s`.
pub fn string(s: &str) -> Arc<str> {
    let mut memo = STRINGS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = memo.set.get(s) {
        return shared.clone();
    }
    memo.keep(Arc::from(s))
}

/// The shared copy of `map`.
pub fn labels(map: BTreeMap<String, String>) -> Labels {
    if map.is_empty() {
        static EMPTY: LazyLock<Labels> = LazyLock::new(|| Arc::new(BTreeMap::new()));
        return EMPTY.clone();
    }
    let mut memo = LABELS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = memo.set.get(&map) {
        return shared.clone();
    }
    memo.keep(Arc::new(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_maps_are_shared_and_unused_ones_swept() {
        let m = |v: &str| BTreeMap::from([("app".to_string(), v.to_string())]);
        let a = labels(m("intern-test-a"));
        let b = labels(m("intern-test-a"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &labels(m("intern-test-b"))));
        // many distinct maps, dropped at once: the memo does not keep them for ever
        for i in 0..5000 {
            drop(labels(m(&format!("intern-test-{i}"))));
        }
        let len = LABELS.lock().unwrap().set.len();
        assert!(len < 4100, "{len}");
        assert!(Arc::ptr_eq(&a, &labels(m("intern-test-a"))));
        let s = string("intern-test-ns");
        assert!(Arc::ptr_eq(&s, &string("intern-test-ns")));
        assert_eq!(&*s, "intern-test-ns");
    }
}
