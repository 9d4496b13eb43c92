//! File-mode IPAM: addresses from the node's own blocks, persisted in the state directory.
//!
//! ```text
//! <stateDir>/ipam/lock            flock(LOCK_EX) around every read-modify-write
//! <stateDir>/ipam/<address>       one file per allocated address, e.g. ipam/10.66.0.1,
//!                                 containing {"containerId","ifname","namespace","pod"}
//! ```
//! The set of used addresses is the set of file names, so a damaged file can never make
//! an address look free. Allocations are keyed by container ID + interface name: an ADD
//! repeated for the same pair gets the same address back, DEL releases every address of
//! the pair. Addresses are handed out lowest first; the network address of a block and
//! its last address are never handed out (blocks of /31, /32, /127, /128 excepted).

use super::error::{code, CniError, Result};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub container_id: String,
    pub ifname: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub pod: String,
}

impl Owner {
    fn same_handle(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && self.ifname == ifname
    }
}

/// One allocated address (owner None: the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub owner: Option<Owner>,
}

/// Where one family's addresses come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    /// The node's blocks of this family, in order of preference.
    pub blocks: Vec<IpNetwork>,
    /// Addresses never handed out (e.g. the node's tunnel address).
    pub reserved: Vec<IpAddr>,
}

/// The allocator of one state directory.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    lock_timeout: Duration,
}

/// Holds the exclusive lock until dropped (closing the file releases the flock).
pub struct Lock {
    _file: File,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CniError {
    CniError::io(format!("IPAM: cannot {what} {}: {e}", path.display()))
}

/// The usable range of `block` as (first, last) offsets from the network address.
fn usable_offsets(prefix: u8, bits: u8) -> (u128, u128) {
    let host_bits = u32::from(bits - prefix.min(bits));
    let last = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    if host_bits <= 1 {
        (0, last)
    } else {
        (1, last - 1)
    }
}

fn nth(block: &IpNetwork, off: u128) -> IpAddr {
    match block {
        IpNetwork::V4(n) => IpAddr::V4(Ipv4Addr::from(
            u32::from(n.network()).wrapping_add(off as u32),
        )),
        IpNetwork::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(off))),
    }
}

/// Number of addresses this allocator may hand out from `block`.
pub fn usable_count(block: &IpNetwork) -> u128 {
    let bits = if block.is_ipv4() { 32 } else { 128 };
    let (lo, hi) = usable_offsets(block.prefix(), bits);
    hi - lo + 1
}

impl Ipam {
    pub fn new(state_dir: &Path) -> Ipam {
        Ipam {
            dir: state_dir.join("ipam"),
            lock_timeout: Duration::from_secs(30),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the exclusive lock, waiting up to the lock timeout (then: try again later).
    pub fn lock(&self) -> Result<Lock> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("create", &self.dir, e))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        let start = Instant::now();
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Lock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(io_err("lock", &path, e));
            }
            if start.elapsed() >= self.lock_timeout {
                return Err(CniError::new(
                    code::TRY_AGAIN,
                    format!(
                        "IPAM: {} has been locked by another brindle-cni for {} s",
                        path.display(),
                        self.lock_timeout.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every allocation (call with the lock held for a consistent view).
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

    fn path_of(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    fn write(&self, ip: IpAddr, owner: &Owner) -> Result<()> {
        let path = self.path_of(ip);
        let data = serde_json::to_vec(owner).map_err(|e| CniError::io(e.to_string()))?;
        brindle_felix::endpoint::write_atomic(&path, &data).map_err(|e| io_err("write", &path, e))
    }

    fn remove(&self, ip: IpAddr) -> Result<()> {
        let path = self.path_of(ip);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path, e)),
        }
    }

    /// The addresses held by container ID + ifname.
    pub fn lookup(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let _lock = self.lock()?;
        Ok(self
            .list()?
            .into_iter()
            .filter(|a| {
                a.owner
                    .as_ref()
                    .is_some_and(|o| o.same_handle(container_id, ifname))
            })
            .map(|a| a.ip)
            .collect())
    }

    /// One address per non-empty source (IPv4 first, then IPv6), for `owner`. Repeating
    /// the call for the same container ID + ifname returns the same addresses.
    pub fn allocate(&self, owner: &Owner, node: &str, sources: &[Source]) -> Result<Vec<IpAddr>> {
        let _lock = self.lock()?;
        let existing = self.list()?;
        let mut used: HashSet<IpAddr> = existing.iter().map(|a| a.ip).collect();
        let mine: Vec<IpAddr> = existing
            .iter()
            .filter(|a| {
                a.owner
                    .as_ref()
                    .is_some_and(|o| o.same_handle(&owner.container_id, &owner.ifname))
            })
            .map(|a| a.ip)
            .collect();
        let mut out = Vec::new();
        let mut written = Vec::new();
        for src in sources.iter().filter(|s| !s.blocks.is_empty()) {
            let v4 = src.blocks[0].is_ipv4();
            // An earlier allocation of this handle still inside one of the blocks: reuse it.
            if let Some(ip) = mine
                .iter()
                .copied()
                .find(|ip| ip.is_ipv4() == v4 && src.blocks.iter().any(|b| b.contains(*ip)))
            {
                out.push(ip);
                continue;
            }
            let bits = if v4 { 32 } else { 128 };
            let mut found = None;
            'blocks: for block in &src.blocks {
                let (lo, hi) = usable_offsets(block.prefix(), bits);
                let mut off = lo;
                loop {
                    let ip = nth(block, off);
                    if !used.contains(&ip) && !src.reserved.contains(&ip) {
                        found = Some(ip);
                        break 'blocks;
                    }
                    if off == hi {
                        break;
                    }
                    off += 1;
                }
            }
            let Some(ip) = found else {
                for ip in written {
                    let _ = self.remove(ip);
                }
                let total: u128 = src.blocks.iter().map(usable_count).sum();
                let blocks: Vec<String> = src.blocks.iter().map(|b| b.to_string()).collect();
                return Err(CniError::new(
                    code::IPAM_EXHAUSTED,
                    format!(
                        "no free IPv{} address for node {node:?}: its block{} {} {} full ({total} usable addresses, all allocated)",
                        if v4 { 4 } else { 6 },
                        if blocks.len() == 1 { "" } else { "s" },
                        blocks.join(", "),
                        if blocks.len() == 1 { "is" } else { "are" },
                    ),
                )
                .with_details(format!(
                    "add a BlockAffinity giving node {node:?} another block, or delete pods; allocations are in {}",
                    self.dir.display()
                )));
            };
            if let Err(e) = self.write(ip, owner) {
                for ip in written {
                    let _ = self.remove(ip);
                }
                return Err(e);
            }
            used.insert(ip);
            written.push(ip);
            out.push(ip);
        }
        // Addresses of this handle outside the current blocks (block moved away): release.
        for ip in mine {
            if !out.contains(&ip) {
                self.remove(ip)?;
            }
        }
        Ok(out)
    }

    /// Releases every address of container ID + ifname; returns them (empty: none held).
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let _lock = self.lock()?;
        let mut out = Vec::new();
        for a in self.list()? {
            if a.owner
                .as_ref()
                .is_some_and(|o| o.same_handle(container_id, ifname))
            {
                self.remove(a.ip)?;
                out.push(a.ip);
            }
        }
        Ok(out)
    }

    /// GC: releases every readable allocation whose handle `keep` rejects.
    pub fn release_unless(&self, keep: &dyn Fn(&Owner) -> bool) -> Result<Vec<Allocation>> {
        let _lock = self.lock()?;
        let mut out = Vec::new();
        for a in self.list()? {
            if let Some(o) = &a.owner {
                if !keep(o) {
                    self.remove(a.ip)?;
                    out.push(a);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(id: &str) -> Owner {
        Owner {
            container_id: id.into(),
            ifname: "eth0".into(),
            namespace: "default".into(),
            pod: id.into(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("brindle-ipam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn usable_ranges() {
        assert_eq!(usable_offsets(26, 32), (1, 62));
        assert_eq!(usable_offsets(31, 32), (0, 1));
        assert_eq!(usable_offsets(32, 32), (0, 0));
        assert_eq!(usable_offsets(122, 128), (1, 62));
        assert_eq!(usable_offsets(0, 128), (1, u128::MAX - 1));
        assert_eq!(usable_count(&"10.0.0.0/26".parse().unwrap()), 62);
    }

    #[test]
    fn allocate_is_idempotent_skips_reserved_and_reports_exhaustion() {
        let dir = tmp("a");
        let ipam = Ipam::new(&dir);
        let src = vec![
            Source {
                blocks: vec!["10.9.0.0/29".parse().unwrap()],
                reserved: vec!["10.9.0.1".parse().unwrap()],
            },
            Source {
                blocks: vec!["fd00::/126".parse().unwrap()],
                reserved: vec![],
            },
        ];
        let a = ipam.allocate(&owner("a"), "n", &src).unwrap();
        assert_eq!(
            a,
            vec![
                "10.9.0.2".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        assert_eq!(ipam.allocate(&owner("a"), "n", &src).unwrap(), a);
        let b = ipam.allocate(&owner("b"), "n", &src).unwrap();
        assert_eq!(
            b,
            vec![
                "10.9.0.3".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
        // fd00::/126 has two usable addresses: the third pod fails and keeps nothing.
        let err = ipam.allocate(&owner("c"), "n", &src).unwrap_err();
        assert_eq!(err.code, code::IPAM_EXHAUSTED);
        assert!(err.msg.contains("fd00::/126 is full"), "{err}");
        assert!(ipam.lookup("c", "eth0").unwrap().is_empty());
        assert_eq!(ipam.release("a", "eth0").unwrap(), a);
        assert!(ipam.release("a", "eth0").unwrap().is_empty());
        assert_eq!(ipam.allocate(&owner("c"), "n", &src).unwrap(), a);
        // A damaged file still marks its address as used.
        std::fs::write(dir.join("ipam").join("10.9.0.4"), b"{").unwrap();
        assert_eq!(
            ipam.allocate(&owner("d"), "n", &src[..1]).unwrap(),
            vec!["10.9.0.5".parse::<IpAddr>().unwrap()]
        );
        let gone = ipam.release_unless(&|o| o.container_id == "b").unwrap();
        assert_eq!(gone.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
