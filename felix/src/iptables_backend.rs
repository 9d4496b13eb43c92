//! Which iptables the host uses (legacy or nf_tables), decided as Felix decides it
//! (`felix/environment/feature_detect_linux.go`), so that Brindle's rules land where
//! kube-proxy's are: nf_tables if its mangle table has kube-proxy's or the kubelet's hint
//! chains (`KUBE-IPTABLES-HINT`, `KUBE-KUBELET-CANARY`), else legacy if its mangle has
//! them, else the backend with more rules, a tie going to legacy — except when neither
//! has any rule at all: then the host's default `iptables` (what its admin's `iptables`
//! commands show). An explicit choice (`BRINDLE_IPTABLES_BACKEND=legacy|nft`, like
//! Felix's `iptablesBackend`) wins.

use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Legacy,
    Nft,
}

const HINTS: [&str; 2] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

/// The decision, from the two backends' `-save` outputs of the mangle table and of
/// every table (None: that backend's tools are missing or failed).
pub fn decide(
    nft_mangle: Option<&str>,
    legacy_mangle: Option<&str>,
    nft_all: Option<&str>,
    legacy_all: Option<&str>,
) -> Option<Backend> {
    let hinted = |t: Option<&str>| t.is_some_and(|t| HINTS.iter().any(|h| t.contains(h)));
    if hinted(nft_mangle) {
        return Some(Backend::Nft);
    }
    if hinted(legacy_mangle) {
        return Some(Backend::Legacy);
    }
    let rules =
        |t: Option<&str>| t.map_or(0, |t| t.lines().filter(|l| l.starts_with("-A ")).count());
    match (nft_all, legacy_all) {
        (Some(_), None) => Some(Backend::Nft),
        (None, Some(_)) => Some(Backend::Legacy),
        (None, None) => None,
        (n, l) if rules(n) == 0 && rules(l) == 0 => None,
        (n, l) if rules(n) > rules(l) => Some(Backend::Nft),
        _ => Some(Backend::Legacy),
    }
}

fn save(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Detects the backend in the calling thread's namespace (explicit choice first). When
/// neither `iptables-nft-save` nor `iptables-legacy-save` exists, `None`: use `iptables`.
pub fn detect() -> Option<Backend> {
    match std::env::var("BRINDLE_IPTABLES_BACKEND")
        .ok()
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("legacy") => return Some(Backend::Legacy),
        Some("nft") | Some("nftables") => return Some(Backend::Nft),
        _ => {}
    }
    let nft_all = save("iptables-nft-save", &[]);
    let legacy_all = save("iptables-legacy-save", &[]);
    if nft_all.is_none() && legacy_all.is_none() {
        return None;
    }
    let nft_mangle = save("iptables-nft-save", &["-t", "mangle"]);
    let legacy_mangle = save("iptables-legacy-save", &["-t", "mangle"]);
    decide(
        nft_mangle.as_deref(),
        legacy_mangle.as_deref(),
        nft_all.as_deref(),
        legacy_all.as_deref(),
    )
}

/// The tool names for a backend: `(iptables, -restore, -save)` for IPv4 or IPv6.
pub fn tools(backend: Option<Backend>, v6: bool) -> (String, String, String) {
    let base = if v6 { "ip6tables" } else { "iptables" };
    let suffix = match backend {
        Some(Backend::Legacy) => "-legacy",
        Some(Backend::Nft) => "-nft",
        None => "",
    };
    (
        format!("{base}{suffix}"),
        format!("{base}{suffix}-restore"),
        format!("{base}{suffix}-save"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felixs_order_of_decision() {
        let hint = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
        let empty = "*mangle\nCOMMIT\n";
        assert_eq!(
            decide(Some(hint), Some(empty), Some(""), Some("")),
            Some(Backend::Nft)
        );
        assert_eq!(
            decide(Some(empty), Some(hint), Some(""), Some("")),
            Some(Backend::Legacy)
        );
        assert_eq!(
            decide(Some(hint), Some(hint), Some(""), Some("")),
            Some(Backend::Nft),
            "nft's hint first"
        );
        let many = "-A A -j X\n-A B -j Y\n";
        assert_eq!(
            decide(Some(empty), Some(empty), Some(many), Some("-A A -j X\n")),
            Some(Backend::Nft)
        );
        assert_eq!(
            decide(Some(empty), Some(empty), Some("-A A\n"), Some("-A B\n")),
            Some(Backend::Legacy),
            "a tie is legacy"
        );
        assert_eq!(
            decide(None, None, Some(""), None),
            Some(Backend::Nft),
            "only nft's tools"
        );
        assert_eq!(
            tools(Some(Backend::Legacy), true).1,
            "ip6tables-legacy-restore"
        );
        assert_eq!(tools(None, false).2, "iptables-save");
    }
}
