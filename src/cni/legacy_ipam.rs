//! The file IPAM of earlier Brindle versions, read once to hand its allocations over to
//! [`crate::ipam`] ([`super::addresses`]): one file per allocated address,
//! `<stateDir>/ipam/<address>`, holding `{"containerId","ifname","namespace","pod"}`.
//! After the hand-over the directory is renamed `ipam.migrated` (kept for inspection,
//! never read again).

use super::error::{CniError, Result};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Who held an address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub container_id: String,
    #[serde(default)]
    pub ifname: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub pod: String,
}

/// One allocated address (owner None: the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub owner: Option<Owner>,
}

pub struct LegacyIpam {
    dir: PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CniError {
    CniError::io(format!("IPAM: cannot {what} {}: {e}", path.display()))
}

impl LegacyIpam {
    pub fn new(state_dir: &Path) -> LegacyIpam {
        LegacyIpam {
            dir: state_dir.join("ipam"),
        }
    }

    /// Every allocation (none if the directory does not exist).
    pub fn list(&self) -> Result<Vec<Allocation>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| io_err("read", &self.dir, e))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let owner = std::fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Owner>(&b).ok());
            out.push(Allocation { ip, owner });
        }
        out.sort_by_key(|a| a.ip);
        Ok(out)
    }

    /// Renames the directory once its allocations are handed over.
    pub fn retire(&self) -> Result<()> {
        let to = self.dir.with_file_name("ipam.migrated");
        let _ = std::fs::remove_dir_all(&to);
        std::fs::rename(&self.dir, &to).map_err(|e| io_err("rename", &self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_old_allocations() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = dir.path().join("ipam");
        std::fs::create_dir_all(&ipam).unwrap();
        std::fs::write(ipam.join("lock"), "").unwrap();
        std::fs::write(
            ipam.join("10.66.0.1"),
            r#"{"containerId":"c1","ifname":"eth0","namespace":"default","pod":"p1"}"#,
        )
        .unwrap();
        std::fs::write(ipam.join("10.66.0.2"), "garbage").unwrap();
        let l = LegacyIpam::new(dir.path());
        let got = l.list().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].owner.as_ref().unwrap().container_id, "c1");
        assert_eq!(got[1].owner, None);
        l.retire().unwrap();
        assert!(l.list().unwrap().is_empty());
        assert!(dir.path().join("ipam.migrated/10.66.0.1").exists());
    }
}
