//! Sysctls, read and written directly under `/proc/sys` (paths like
//! `net/ipv4/conf/<if>/rp_filter`; interface names may contain dots, which the `sysctl`
//! notation cannot express). `/proc/sys/net` follows the network namespace of the calling
//! thread. The root directory is a parameter so the logic is testable on a plain
//! directory.
//!
//! The sysctls of a pod's two interfaces are tabled here, once: [`HOST_IFACE`] (the
//! host-side veth: what the reconciler keeps, and the part the CNI plugin sets when it
//! creates the veth) and [`POD_IFACE`] (the pod end, set by the CNI plugin).

use crate::calc::{is_brindle_iface, RpFilterObserved, ENDPOINT_RP_FILTER};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The real root.
pub const PROC_SYS: &str = "/proc/sys";

pub fn read(root: &Path, key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(root.join(key))?.trim().to_string())
}

pub fn write(root: &Path, key: &str, value: &str) -> io::Result<()> {
    std::fs::write(root.join(key), value.as_bytes())
}

/// Who sets a per-interface sysctl, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetBy {
    /// The reconciler, for every local endpoint.
    Felix,
    /// The reconciler, and the CNI plugin when it creates the interface (the pod must
    /// work before the agent has read its record).
    FelixAndCni,
    /// Only the CNI plugin, for a pod with an IPv6 address.
    CniIpv6,
    /// Like [`SetBy::CniIpv6`], but a failure is only a warning.
    CniIpv6BestEffort,
}

/// One sysctl of a pod interface: `net/<ipv4|ipv6>/<dir>/<iface>/<name> = value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceSysctl {
    pub ipv6: bool,
    /// `conf` or `neigh`.
    pub dir: &'static str,
    pub name: &'static str,
    pub value: u8,
    pub set_by: SetBy,
}

impl IfaceSysctl {
    /// The key under `/proc/sys` for `iface`.
    pub fn key(&self, iface: &str) -> String {
        let family = if self.ipv6 { "ipv6" } else { "ipv4" };
        format!("net/{family}/{}/{iface}/{}", self.dir, self.name)
    }

    pub fn by_felix(&self) -> bool {
        matches!(self.set_by, SetBy::Felix | SetBy::FelixAndCni)
    }

    /// Whether the CNI plugin sets it when it creates the interface of a pod that has
    /// (`pod_ipv6`) or has not an IPv6 address.
    pub fn by_cni(&self, pod_ipv6: bool) -> bool {
        match self.set_by {
            SetBy::Felix => false,
            SetBy::FelixAndCni => true,
            SetBy::CniIpv6 | SetBy::CniIpv6BestEffort => pod_ipv6,
        }
    }
}

const fn entry(
    ipv6: bool,
    dir: &'static str,
    name: &'static str,
    value: u8,
    set_by: SetBy,
) -> IfaceSysctl {
    IfaceSysctl {
        ipv6,
        dir,
        name,
        value,
        set_by,
    }
}

/// The sysctls of a pod's host-side veth (Calico's), in the order they are written.
pub const HOST_IFACE: &[IfaceSysctl] = &[
    // proxy ARP answers the pod's ARP for 169.254.1.1
    entry(false, "conf", "proxy_arp", 1, SetBy::FelixAndCni),
    entry(false, "conf", "forwarding", 1, SetBy::FelixAndCni),
    entry(false, "conf", "route_localnet", 1, SetBy::Felix),
    // strict: a pod may only source its own addresses
    entry(false, "conf", "rp_filter", ENDPOINT_RP_FILTER, SetBy::Felix),
    entry(false, "neigh", "proxy_delay", 0, SetBy::FelixAndCni),
    entry(true, "conf", "accept_ra", 0, SetBy::FelixAndCni),
    entry(true, "conf", "proxy_ndp", 1, SetBy::Felix),
    entry(true, "conf", "forwarding", 1, SetBy::Felix),
    // the pod's IPv6 next hop is this end's EUI-64 link-local address: usable at once
    entry(true, "conf", "accept_dad", 0, SetBy::CniIpv6BestEffort),
    entry(true, "conf", "addr_gen_mode", 0, SetBy::CniIpv6BestEffort),
];

/// The sysctls of the pod end (`CNI_IFNAME`, inside the pod).
pub const POD_IFACE: &[IfaceSysctl] = &[entry(true, "conf", "accept_dad", 0, SetBy::CniIpv6)];

/// A sysctl that could not be written.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub value: String,
    pub source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot set {} to {}: {}",
            self.path.display(),
            self.value,
            self.source
        )
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Writes the entries of `table` the CNI plugin sets when it creates `iface`
/// ([`IfaceSysctl::by_cni`]), in order. A missing IPv6 key (IPv6 disabled) is skipped.
/// Returns the failures of best-effort entries; any other failure stops.
pub fn write_at_add(
    root: &Path,
    table: &[IfaceSysctl],
    iface: &str,
    pod_ipv6: bool,
) -> Result<Vec<WriteError>, WriteError> {
    let mut warnings = Vec::new();
    for s in table.iter().filter(|s| s.by_cni(pod_ipv6)) {
        let key = s.key(iface);
        let value = s.value.to_string();
        match write(root, &key, &value) {
            Ok(()) => {}
            Err(e) if s.ipv6 && e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                let e = WriteError {
                    path: root.join(&key),
                    value,
                    source,
                };
                if s.set_by == SetBy::CniIpv6BestEffort {
                    warnings.push(e);
                } else {
                    return Err(e);
                }
            }
        }
    }
    Ok(warnings)
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

/// What a sysctl key holds: its value, or why it could not be read (`NotFound`: the key
/// does not exist).
pub type Observed = BTreeMap<String, Result<String, (io::ErrorKind, String)>>;

/// Reads the current value of each key.
pub fn observe<'a>(root: &Path, keys: impl IntoIterator<Item = &'a String>) -> Observed {
    keys.into_iter()
        .map(|k| {
            (
                k.clone(),
                read(root, k).map_err(|e| (e.kind(), e.to_string())),
            )
        })
        .collect()
}

/// The writes that bring `observed` to `desired` (after `first`, writes already
/// planned, e.g. the rp_filter normalisation), in order; the keys of an interface that
/// does not exist are *pending*, of an existing one *absent*. Pure.
pub fn plan<'a>(
    first: &[(String, String)],
    desired: impl IntoIterator<Item = (&'a String, &'a String)>,
    observed: &Observed,
    iface_exists: impl Fn(&str) -> bool,
) -> SysctlPlan {
    let mut p = SysctlPlan {
        writes: first.to_vec(),
        ..Default::default()
    };
    let after_first: BTreeMap<&str, &str> = first
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in desired {
        let cur = match after_first.get(k.as_str()) {
            Some(w) => Ok(w.to_string()),
            None => observed
                .get(k)
                .cloned()
                .unwrap_or_else(|| Err((io::ErrorKind::Other, "not read".into()))),
        };
        match cur {
            Ok(cur) if cur == *v => {}
            Ok(_) => p.writes.push((k.clone(), v.clone())),
            Err((io::ErrorKind::NotFound, _)) if key_iface(k).is_some() => {
                if key_iface(k).is_some_and(&iface_exists) {
                    p.absent.push(k.clone())
                } else {
                    p.pending.push(k.clone())
                }
            }
            Err((_, e)) => p.errors.push(format!("read {k}: {e}")),
        }
    }
    p
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysctlPlan {
    /// `(key, value)` in the order to write.
    pub writes: Vec<(String, String)>,
    pub pending: Vec<String>,
    pub absent: Vec<String>,
    pub errors: Vec<String>,
}

/// Writes `pairs` in order, each only if the current value differs. A missing key of an
/// interface for which `iface_exists` is false is *pending*; of an existing interface,
/// *absent* (e.g. IPv6 disabled on it); any other missing key is an error.
pub fn reconcile<'a>(
    root: &Path,
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    iface_exists: impl Fn(&str) -> bool,
) -> SysctlOutcome {
    let pairs: Vec<(&String, &String)> = pairs.into_iter().collect();
    let observed = observe(root, pairs.iter().map(|(k, _)| *k));
    let p = plan(&[], pairs.iter().copied(), &observed, iface_exists);
    let mut out = SysctlOutcome {
        pending: p.pending,
        absent: p.absent,
        errors: p.errors,
        ..Default::default()
    };
    for (k, v) in p.writes {
        match write(root, &k, &v) {
            Ok(()) => out.written.push(k),
            Err(e) => out.errors.push(format!("write {k}={v}: {e}")),
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
    fn cni_writes_its_part_of_the_tables() {
        let d = tmp("add");
        // IPv4 keys of the veth exist; of IPv6 only accept_ra (the rest: disabled)
        let v4: Vec<(String, &str)> = HOST_IFACE
            .iter()
            .filter(|s| !s.ipv6 || s.name == "accept_ra")
            .map(|s| (s.key("cali1"), "9"))
            .collect();
        let v4: Vec<(&str, &str)> = v4.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let root = fake_root(&d, &v4).unwrap();
        assert!(write_at_add(&root, HOST_IFACE, "cali1", true)
            .unwrap()
            .is_empty());
        let got = |k: &str| read(&root, k).unwrap();
        assert_eq!(got("net/ipv4/conf/cali1/proxy_arp"), "1");
        assert_eq!(got("net/ipv4/conf/cali1/forwarding"), "1");
        assert_eq!(got("net/ipv4/neigh/cali1/proxy_delay"), "0");
        assert_eq!(got("net/ipv6/conf/cali1/accept_ra"), "0");
        // felix's own are left to felix
        assert_eq!(got("net/ipv4/conf/cali1/rp_filter"), "9");
        assert_eq!(got("net/ipv4/conf/cali1/route_localnet"), "9");
        // a missing IPv4 key is an error; a best-effort IPv6 one that fails is a warning
        let e = write_at_add(&root, HOST_IFACE, "cali2", false).unwrap_err();
        assert!(e.to_string().starts_with(&format!(
            "cannot set {}/net/ipv4/conf/cali2/proxy_arp to 1: ",
            root.display()
        )));
        // (the fake root took the first write of accept_dad as a new file)
        let dad = root.join("net/ipv6/conf/cali1/accept_dad");
        std::fs::remove_file(&dad).unwrap();
        std::fs::create_dir_all(&dad).unwrap();
        let w = write_at_add(&root, HOST_IFACE, "cali1", true).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(write_at_add(&root, POD_IFACE, "cali1", true).is_err());
        assert!(write_at_add(&root, POD_IFACE, "cali1", false)
            .unwrap()
            .is_empty());
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
