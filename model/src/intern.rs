//! Sharing of equal values that are decoded again and again: the label set of every pod
//! of one ReplicaSet or DaemonSet is the same map, so the pods of a cluster hold a few
//! thousand distinct maps, not one each (memory: ~0.9 KB per pod at 5 labels).
//!
//! A process-wide memo, invisible in results: [`labels`] returns a shared copy of an
//! equal map seen before, else keeps the new one. Maps no longer used by anyone are
//! dropped from the memo whenever it has doubled since the last sweep.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

/// A label set (shared).
pub type Labels = Arc<BTreeMap<String, String>>;

struct Memo {
    set: HashSet<Labels>,
    sweep_at: usize,
}

static LABELS: LazyLock<Mutex<Memo>> = LazyLock::new(|| {
    Mutex::new(Memo {
        set: HashSet::new(),
        sweep_at: 1024,
    })
});

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
    if memo.set.len() >= memo.sweep_at {
        memo.set.retain(|l| Arc::strong_count(l) > 1);
        memo.sweep_at = (memo.set.len() * 2).max(1024);
    }
    let shared = Arc::new(map);
    memo.set.insert(shared.clone());
    shared
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
    }
}
