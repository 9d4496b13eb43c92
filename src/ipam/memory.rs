//! An in-memory [`Store`] with the same compare-and-swap rules as the others, for heavy
//! tests. Objects are kept as their Calico JSON `spec`, so every read is a deep copy and
//! the format is exercised. Conflicts can be injected: every `n`-th write is refused as
//! if another writer had got there first.

use super::objects::IpamObject;
use super::store::{Store, StoreError, StoreResult, Versioned};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct Inner {
    revision: u64,
    objects: BTreeMap<(&'static str, String), (u64, serde_json::Value)>,
}

/// See the module doc.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    conflict_every: AtomicU64,
    writes: AtomicU64,
    injected: AtomicU64,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Refuse every `n`-th write (create, update or delete) with a conflict; 0 = never.
    pub fn inject_conflict_every(&self, n: u64) {
        self.conflict_every.store(n, Ordering::SeqCst);
    }

    /// How many conflicts were injected.
    pub fn injected_conflicts(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn inject(&self, what: &str) -> StoreResult<()> {
        let n = self.conflict_every.load(Ordering::SeqCst);
        let w = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 0 && w.is_multiple_of(n) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Conflict(format!("{what} (injected)")));
        }
        Ok(())
    }
}

fn key<T: IpamObject>(name: &str) -> (&'static str, String) {
    (T::KIND, name.to_string())
}

fn decode<T: IpamObject>(
    name: &str,
    rev: u64,
    spec: &serde_json::Value,
) -> StoreResult<Versioned<T>> {
    let value = T::from_spec(spec.clone())
        .map_err(|e| StoreError::Other(format!("{}/{name}: {e}", T::KIND)))?;
    Ok(Versioned {
        value,
        revision: rev.to_string(),
    })
}

impl Store for MemoryStore {
    async fn get<T: IpamObject>(&self, name: &str) -> StoreResult<Versioned<T>> {
        let g = self.lock();
        match g.objects.get(&key::<T>(name)) {
            Some((rev, spec)) => {
                let v = decode::<T>(name, *rev, spec)?;
                if v.value.is_deleted() {
                    return Err(StoreError::NotFound(format!("{}/{name}", T::KIND)));
                }
                Ok(v)
            }
            None => Err(StoreError::NotFound(format!("{}/{name}", T::KIND))),
        }
    }

    async fn list<T: IpamObject>(&self) -> StoreResult<Vec<Versioned<T>>> {
        let g = self.lock();
        let mut out = Vec::new();
        for ((kind, name), (rev, spec)) in &g.objects {
            if *kind == T::KIND {
                let v = decode::<T>(name, *rev, spec)?;
                if !v.value.is_deleted() {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    async fn create<T: IpamObject>(&self, value: T) -> StoreResult<Versioned<T>> {
        let name = value.name();
        self.inject(&format!("{}/{name}", T::KIND))?;
        let mut g = self.lock();
        let k = key::<T>(&name);
        if g.objects.contains_key(&k) {
            return Err(StoreError::AlreadyExists(format!("{}/{name}", T::KIND)));
        }
        g.revision += 1;
        let rev = g.revision;
        g.objects.insert(k, (rev, value.to_spec(false)));
        Ok(Versioned {
            value,
            revision: rev.to_string(),
        })
    }

    async fn update<T: IpamObject>(&self, obj: Versioned<T>) -> StoreResult<Versioned<T>> {
        let name = obj.value.name();
        self.inject(&format!("{}/{name}", T::KIND))?;
        let mut g = self.lock();
        let k = key::<T>(&name);
        match g.objects.get(&k) {
            None => return Err(StoreError::NotFound(format!("{}/{name}", T::KIND))),
            Some((rev, _)) if rev.to_string() != obj.revision => {
                return Err(StoreError::Conflict(format!("{}/{name}", T::KIND)))
            }
            Some(_) => {}
        }
        g.revision += 1;
        let rev = g.revision;
        g.objects.insert(k, (rev, obj.value.to_spec(false)));
        Ok(Versioned {
            value: obj.value,
            revision: rev.to_string(),
        })
    }

    async fn delete<T: IpamObject>(&self, obj: Versioned<T>) -> StoreResult<()> {
        let name = obj.value.name();
        self.inject(&format!("{}/{name}", T::KIND))?;
        let mut g = self.lock();
        let k = key::<T>(&name);
        match g.objects.get(&k) {
            None => Err(StoreError::NotFound(format!("{}/{name}", T::KIND))),
            Some((rev, _)) if rev.to_string() != obj.revision => {
                Err(StoreError::Conflict(format!("{}/{name}", T::KIND)))
            }
            Some(_) => {
                g.objects.remove(&k);
                Ok(())
            }
        }
    }
}
