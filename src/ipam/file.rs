//! The IPAM [`Store`] of file mode: one JSON file per object under a directory,
//! compare-and-swap under an exclusive `flock`, so that every CNI process and the agent
//! on a node (or several nodes sharing the directory) keep the same rules as the API:
//!
//! ```text
//! <dir>/lock                        flock(LOCK_EX) around each operation
//! <dir>/revision                    the last revision handed out (one counter for all)
//! <dir>/<Kind>/<name>.json          {"revision": N, "spec": {...Calico's spec...}}
//! ```
//!
//! A write goes to a temporary file renamed over the old one, so a crash leaves the old
//! or the new object, never half of one. A file that cannot be read is reported, never
//! taken as absent (an unreadable block must not look free).

use super::objects::IpamObject;
use super::store::{Store, StoreError, StoreResult, Versioned};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// See the module doc.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    lock_timeout: Duration,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    revision: u64,
    spec: serde_json::Value,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Other(format!("IPAM store: cannot {what} {}: {e}", path.display()))
}

/// Object names are Kubernetes names (lower-case, digits, `-`, `.`); anything else is
/// refused rather than turned into a path.
fn safe_name(name: &str) -> StoreResult<&str> {
    if name.is_empty()
        || name.len() > 253
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(StoreError::Other(format!(
            "{name:?} is not a valid object name"
        )));
    }
    Ok(name)
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore {
            dir: dir.into(),
            lock_timeout: Duration::from_secs(30),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> StoreResult<crate::flock::Exclusive> {
        crate::flock::Exclusive::acquire(&self.dir.join("lock"), self.lock_timeout)
            .map_err(|e| StoreError::Other(format!("IPAM store: {e}")))
    }

    fn path<T: IpamObject>(&self, name: &str) -> StoreResult<PathBuf> {
        Ok(self
            .dir
            .join(T::KIND)
            .join(format!("{}.json", safe_name(name)?)))
    }

    fn read_stored(path: &Path) -> StoreResult<Option<Stored>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                StoreError::Other(format!("IPAM store: {} is damaged: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", path, e)),
        }
    }

    fn next_revision(&self) -> StoreResult<u64> {
        let path = self.dir.join("revision");
        let cur = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("read", &path, e)),
        };
        let next = cur + 1;
        write_atomic(&path, next.to_string().as_bytes())?;
        Ok(next)
    }

    fn write<T: IpamObject>(&self, path: &Path, value: &T) -> StoreResult<u64> {
        let revision = self.next_revision()?;
        let body = serde_json::to_vec(&Stored {
            revision,
            spec: value.to_spec(false),
        })
        .map_err(|e| StoreError::Other(e.to_string()))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
        }
        write_atomic(path, &body)?;
        Ok(revision)
    }

    fn decode<T: IpamObject>(path: &Path, s: Stored) -> StoreResult<Versioned<T>> {
        let value = T::from_spec(s.spec)
            .map_err(|e| StoreError::Other(format!("IPAM store: {}: {e}", path.display())))?;
        Ok(Versioned {
            value,
            revision: s.revision.to_string(),
        })
    }

    /// Checks the revision a write carries against the stored one.
    fn check<T: IpamObject>(&self, path: &Path, name: &str, revision: &str) -> StoreResult<()> {
        match Self::read_stored(path)? {
            None => Err(StoreError::NotFound(format!("{}/{name}", T::KIND))),
            Some(s) if s.revision.to_string() != revision => {
                Err(StoreError::Conflict(format!("{}/{name}", T::KIND)))
            }
            Some(_) => Ok(()),
        }
    }
}

fn write_atomic(path: &Path, body: &[u8]) -> StoreResult<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    f.write_all(body).map_err(|e| io("write", &tmp, e))?;
    f.sync_data().map_err(|e| io("sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", path, e))
}

impl Store for FileStore {
    async fn get<T: IpamObject>(&self, name: &str) -> StoreResult<Versioned<T>> {
        let path = self.path::<T>(name)?;
        let _l = self.lock()?;
        match Self::read_stored(&path)? {
            None => Err(StoreError::NotFound(format!("{}/{name}", T::KIND))),
            Some(s) => {
                let v = Self::decode::<T>(&path, s)?;
                if v.value.is_deleted() {
                    return Err(StoreError::NotFound(format!("{}/{name}", T::KIND)));
                }
                Ok(v)
            }
        }
    }

    async fn list<T: IpamObject>(&self) -> StoreResult<Vec<Versioned<T>>> {
        let dir = self.dir.join(T::KIND);
        let _l = self.lock()?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &dir, e)),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            if let Some(s) = Self::read_stored(&p)? {
                let v = Self::decode::<T>(&p, s)?;
                if !v.value.is_deleted() {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    async fn create<T: IpamObject>(&self, value: T) -> StoreResult<Versioned<T>> {
        let name = value.name();
        let path = self.path::<T>(&name)?;
        let _l = self.lock()?;
        if Self::read_stored(&path)?.is_some() {
            return Err(StoreError::AlreadyExists(format!("{}/{name}", T::KIND)));
        }
        let revision = self.write(&path, &value)?;
        Ok(Versioned {
            value,
            revision: revision.to_string(),
        })
    }

    async fn update<T: IpamObject>(&self, obj: Versioned<T>) -> StoreResult<Versioned<T>> {
        let name = obj.value.name();
        let path = self.path::<T>(&name)?;
        let _l = self.lock()?;
        self.check::<T>(&path, &name, &obj.revision)?;
        let revision = self.write(&path, &obj.value)?;
        Ok(Versioned {
            value: obj.value,
            revision: revision.to_string(),
        })
    }

    async fn delete<T: IpamObject>(&self, obj: Versioned<T>) -> StoreResult<()> {
        let name = obj.value.name();
        let path = self.path::<T>(&name)?;
        let _l = self.lock()?;
        self.check::<T>(&path, &name, &obj.revision)?;
        std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::{Block, Handle};

    #[tokio::test]
    async fn compare_and_swap_rules() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::new(dir.path());
        let h = s.create(Handle::new("a")).await.unwrap();
        assert!(matches!(
            s.create(Handle::new("a")).await,
            Err(StoreError::AlreadyExists(_))
        ));
        let mut h2 = h.clone();
        h2.value.increment(&"10.0.0.0/26".parse().unwrap(), 1);
        let h3 = s.update(h2.clone()).await.unwrap();
        assert_ne!(h3.revision, h.revision);
        // The old revision no longer writes or deletes.
        assert!(matches!(
            s.update(h2.clone()).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.delete(h.clone()).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.get::<Handle>("a").await.unwrap(), h3);
        s.delete(h3).await.unwrap();
        assert!(matches!(
            s.get::<Handle>("a").await,
            Err(StoreError::NotFound(_))
        ));
        // Deleted and created again: a new revision, so a stale copy cannot write.
        let again = s.create(Handle::new("a")).await.unwrap();
        assert_ne!(again.revision, h.revision);
        assert!(matches!(s.update(h).await, Err(StoreError::Conflict(_))));
        // A damaged file is an error, never "absent".
        std::fs::write(dir.path().join("IPAMBlock/10-0-0-0-26.json"), "{").unwrap_or_else(|_| {
            std::fs::create_dir_all(dir.path().join("IPAMBlock")).unwrap();
            std::fs::write(dir.path().join("IPAMBlock/10-0-0-0-26.json"), "{").unwrap();
        });
        assert!(matches!(
            s.get::<Block>("10-0-0-0-26").await,
            Err(StoreError::Other(_))
        ));
        assert!(s.list::<Block>().await.is_err());
        assert!(s.get::<Block>("../etc").await.is_err());
    }
}
