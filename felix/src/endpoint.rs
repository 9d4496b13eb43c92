//! Endpoint records: how the CNI plugin tells the node agent about a pod interface, and
//! the state-directory layout both share.
//!
//! ```text
//! <stateDir>/endpoints/<containerID>-<ifname>.json   one EndpointRecord per pod interface
//! <stateDir>/ipam/                                    address allocations (CNI plugin)
//! <stateDir>/mtu                                      pod MTU, written by the agent
//! ```
//! Records are written atomically (temporary file + rename) so a reader never sees half a file.

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// One pod interface, as created by `brindle-cni ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRecord {
    pub container_id: String,
    /// Interface name inside the pod (`CNI_IFNAME`, usually eth0).
    pub ifname: String,
    pub namespace: String,
    pub pod: String,
    /// Host-side veth name (`cali` + 11 hex chars of SHA-1 of `"<namespace>.<pod>"`).
    pub host_iface: String,
    /// MAC of the pod-side interface.
    pub mac: String,
    /// The pod's addresses, as /32 or /128.
    pub ips: Vec<IpNetwork>,
    /// The pod's network namespace path (`CNI_NETNS`).
    pub netns: String,
}

pub fn endpoints_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("endpoints")
}

pub fn record_path(state_dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    endpoints_dir(state_dir).join(format!("{container_id}-{ifname}.json"))
}

pub fn mtu_path(state_dir: &Path) -> PathBuf {
    state_dir.join("mtu")
}

/// Writes `data` to `path` atomically.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

impl EndpointRecord {
    pub fn write(&self, state_dir: &Path) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(
            &record_path(state_dir, &self.container_id, &self.ifname),
            &data,
        )
    }
}

/// Reads every record; unreadable files are returned as errors next to the good ones, so
/// one bad file never hides the others.
pub fn read_all(state_dir: &Path) -> (Vec<EndpointRecord>, Vec<(PathBuf, String)>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let Ok(rd) = std::fs::read_dir(endpoints_dir(state_dir)) else {
        return (ok, bad);
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<EndpointRecord>(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => ok.push(r),
            Err(e) => bad.push((p, e)),
        }
    }
    (ok, bad)
}

/// Reads the pod MTU the agent computed (None when the agent has not written it yet).
pub fn read_mtu(state_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(mtu_path(state_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_files_are_reported() {
        let dir = std::env::temp_dir().join(format!("brindle-ep-{}", std::process::id()));
        let r = EndpointRecord {
            container_id: "abc".into(),
            ifname: "eth0".into(),
            namespace: "default".into(),
            pod: "web-0".into(),
            host_iface: "cali1234567890a".into(),
            mac: "02:00:00:00:00:01".into(),
            ips: vec!["10.65.0.5/32".parse().unwrap()],
            netns: "/var/run/netns/x".into(),
        };
        r.write(&dir).unwrap();
        std::fs::write(endpoints_dir(&dir).join("broken-eth0.json"), b"{").unwrap();
        let (ok, bad) = read_all(&dir);
        assert_eq!(ok, vec![r]);
        assert_eq!(bad.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
