//! Sysctls, read and written directly under `/proc/sys` (paths like
//! `net/ipv4/conf/<if>/rp_filter`; interface names may contain dots, which the `sysctl`
//! notation cannot express). `/proc/sys/net` follows the network namespace of the calling
//! thread. The root directory is a parameter so the logic is testable on a plain
//! directory.

use crate::calc::{is_brindle_iface, RpFilterObserved};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// The real root.
pub const PROC_SYS: &str = "/proc/sys";

pub fn read(root: &Path, key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(root.join(key))?.trim().to_string())
}

pub fn write(root: &Path, key: &str, value: &str) -> io::Result<()> {
    std::fs::write(root.join(key), value.as_bytes())
}

/// Result of [`reconcile`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysctlOutcome {
    /// Keys written (they differed).
    pub written: Vec<String>,
    /// Keys skipped because their interface does not exist (yet).
    pub pending: Vec<String>,
    /// Keys absent although their interface exists (IPv6 disabled on it): skipped.
    pub absent: Vec<String>,
    pub errors: Vec<String>,
}

/// The interface a key is about (`net/ipv4/conf/<if>/…`, `net/ipv4/neigh/<if>/…`), unless
/// it is `all`/`default`.
pub fn key_iface(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.split('/').collect();
    (parts.len() == 5
        && (parts[2] == "conf" || parts[2] == "neigh")
        && parts[3] != "all"
        && parts[3] != "default")
        .then(|| parts[3])
}

/// Writes `pairs` in order, each only if the current value differs. A missing key of an
/// interface for which `iface_exists` is false is *pending*; of an existing interface,
/// *absent* (e.g. IPv6 disabled on it); any other missing key is an error.
pub fn reconcile<'a>(
    root: &Path,
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    iface_exists: impl Fn(&str) -> bool,
) -> SysctlOutcome {
    let mut out = SysctlOutcome::default();
    for (k, v) in pairs {
        match read(root, k) {
            Ok(cur) if cur == *v => {}
            Ok(_) => match write(root, k, v) {
                Ok(()) => out.written.push(k.clone()),
                Err(e) => out.errors.push(format!("write {k}={v}: {e}")),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound && key_iface(k).is_some() => {
                if key_iface(k).is_some_and(&iface_exists) {
                    out.absent.push(k.clone())
                } else {
                    out.pending.push(k.clone())
                }
            }
            Err(e) => out.errors.push(format!("read {k}: {e}")),
        }
    }
    out
}

/// Reads `conf/{all,default,<every other interface>}/rp_filter` (IPv4).
pub fn observe_rp_filter(root: &Path) -> io::Result<RpFilterObserved> {
    let conf = root.join("net/ipv4/conf");
    let val = |name: &str| -> io::Result<u8> {
        read(&conf, &format!("{name}/rp_filter"))?
            .parse()
            .map_err(io::Error::other)
    };
    let mut o = RpFilterObserved {
        all: val("all")?,
        default: val("default")?,
        others: BTreeMap::new(),
    };
    for e in std::fs::read_dir(&conf)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name == "all" || name == "default" || is_brindle_iface(&name) {
            continue;
        }
        // an interface can vanish between listing and reading
        if let Ok(v) = val(&name) {
            o.others.insert(name, v);
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A directory tree imitating `/proc/sys` for tests.
    pub fn fake_root(dir: &Path, values: &[(&str, &str)]) -> io::Result<PathBuf> {
        for (k, v) in values {
            let p = dir.join(k);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(p, v)?;
        }
        Ok(dir.to_path_buf())
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("brindle-sysctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn reconcile_writes_only_differences_and_skips_missing_interfaces() {
        let d = tmp("rec");
        let root = fake_root(
            &d,
            &[
                ("net/ipv4/ip_forward", "0\n"),
                ("net/ipv4/conf/cali1/proxy_arp", "1\n"),
                ("net/ipv4/conf/cali1/rp_filter", "2\n"),
            ],
        )
        .unwrap();
        let want: BTreeMap<String, String> = [
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/cali1/proxy_arp", "1"),
            ("net/ipv4/conf/cali1/rp_filter", "1"),
            ("net/ipv4/conf/cali2/rp_filter", "1"),
            ("net/ipv6/conf/all/forwarding", "1"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let out = reconcile(&root, &want, |i| i == "cali1");
        assert_eq!(
            out.written,
            vec![
                "net/ipv4/conf/cali1/rp_filter".to_string(),
                "net/ipv4/ip_forward".to_string()
            ]
        );
        assert_eq!(
            out.pending,
            vec!["net/ipv4/conf/cali2/rp_filter".to_string()]
        );
        assert_eq!(
            out.errors.len(),
            1,
            "a missing global key is an error: {:?}",
            out.errors
        );
        assert_eq!(read(&root, "net/ipv4/ip_forward").unwrap(), "1");
        let again = reconcile(
            &root,
            want.iter().filter(|(k, _)| !k.contains("ipv6")),
            |_| true,
        );
        assert_eq!(
            again.absent,
            vec!["net/ipv4/conf/cali2/rp_filter".to_string()]
        );
        assert!(again.written.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn observe_rp_filter_skips_brindle_interfaces() {
        let d = tmp("obs");
        let root = fake_root(
            &d,
            &[
                ("net/ipv4/conf/all/rp_filter", "1"),
                ("net/ipv4/conf/default/rp_filter", "2"),
                ("net/ipv4/conf/eth0/rp_filter", "0"),
                ("net/ipv4/conf/cali1/rp_filter", "1"),
                ("net/ipv4/conf/tunl0/rp_filter", "0"),
            ],
        )
        .unwrap();
        let o = observe_rp_filter(&root).unwrap();
        assert_eq!(
            o,
            RpFilterObserved {
                all: 1,
                default: 2,
                others: [("eth0".to_string(), 0)].into_iter().collect()
            }
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
