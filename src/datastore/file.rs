//! The file backend: a multi-document YAML file of Calico (`projectcalico.org/v3`) and
//! Kubernetes (`v1` Pod/Namespace/Service, `discovery.k8s.io/v1` EndpointSlice,
//! `networking.k8s.io/v1` NetworkPolicy) objects, so that everything a cluster has can
//! be expressed without a cluster.
//!
//! The first read must succeed (the agent refuses to start on a bad file). After that
//! the file is polled; each edit is read whole and checked strictly (a cross-object
//! error rejects the edit) and becomes a relist of every kind — `Restart`, `Apply`s,
//! `InSync` — so the cache drops what the edit removed. A bad edit is reported as an
//! `Invalid` event and the last good state stays in force.

use super::{Event, Stored};
use brindle_model::{ClusterConfig, Kind, Object};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::UnboundedSender;

/// Reads the file once, as the CNI plugin and `brindlectl` do.
pub fn read(path: &Path) -> Result<ClusterConfig, brindle_model::ConfigError> {
    brindle_model::load(path)
}

/// Fingerprint of the file, to notice edits (also replacement by rename).
fn file_stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Reads the file into objects (strict: the whole file or nothing), decoded once.
fn objects(path: &Path) -> Result<(Vec<Object>, Vec<String>), brindle_model::ConfigError> {
    brindle_model::load_objects(path)
}

/// Sends one whole read of the file as a relist of every kind.
fn send_all(tx: &UnboundedSender<Event>, objects: Vec<Object>, warnings: Vec<String>) {
    for k in Kind::ALL {
        let _ = tx.send(Event::Restart(k));
    }
    for o in objects {
        let _ = tx.send(Event::Apply(Box::new(o)));
    }
    if !warnings.is_empty() {
        let _ = tx.send(Event::Warnings(warnings));
    }
    for k in Kind::ALL {
        let _ = tx.send(Event::InSync(k));
    }
}

/// The file backend's side of writes: reads from the last good read.
pub struct FileWriter {
    last: Arc<Mutex<Vec<Object>>>,
}

impl FileWriter {
    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Stored> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.iter()
            .find(|o| {
                o.raw.kind == kind && o.raw.namespace.as_deref() == namespace && o.raw.name == name
            })
            .map(|o| Stored {
                json: o.raw.json.clone(),
                resource_version: String::new(),
            })
    }
}

/// Checks the first read now (an error is returned: the agent does not start on a bad
/// file), then polls the file on a task.
pub fn start(
    path: PathBuf,
    poll: Duration,
    tx: UnboundedSender<Event>,
) -> anyhow::Result<FileWriter> {
    let (objs, warnings) = objects(&path)?;
    let last = Arc::new(Mutex::new(objs.clone()));
    send_all(&tx, objs, warnings);
    let writer = FileWriter { last: last.clone() };
    tokio::spawn(async move {
        let mut stamp = file_stamp(&path);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let now = file_stamp(&path);
            if now == stamp {
                continue;
            }
            stamp = now;
            match objects(&path) {
                Ok((objs, warnings)) => {
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = objs.clone();
                    send_all(&tx, objs, warnings);
                }
                Err(e) => {
                    let _ = tx.send(Event::Invalid {
                        kind: None,
                        label: path.display().to_string(),
                        error: format!("{e}"),
                    });
                }
            }
        }
    });
    Ok(writer)
}
