//! `brindlectl ipam show|check|release`, in calicoctl's formats
//! (`calicoctl/commands/ipam/*.go`): `show` as go-pretty's default table (left-aligned
//! headers, numbers right-aligned, counts as Go's `%.5g (%.f%%)`), `show --ip` and
//! `check` as calicoctl's text. The objects come from the Kubernetes CRDs or the file
//! store ([`Source`]); everything else here is pure.

use crate::ipam::file::FileStore;
use crate::ipam::kubernetes::KubeStore;
use crate::ipam::report::{self, Check, PodAddresses, Usage};
use crate::ipam::{Affinity, Block, Handle, Ipam, IpamSettings, Store};
use brindle_model::IpPoolSpec;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Go's `%.5g` of a count.
pub fn go_g5(n: u128) -> String {
    if n < 100_000 {
        return n.to_string();
    }
    let f = n as f64;
    let exp = f.log10().floor() as i32;
    let mut mant = f / 10f64.powi(exp);
    // 5 significant digits, rounded; a carry (9.99995 → 10) moves the exponent.
    mant = (mant * 10_000.0).round() / 10_000.0;
    let (mant, exp) = if mant >= 10.0 {
        (mant / 10.0, exp + 1)
    } else {
        (mant, exp)
    };
    let mut m = format!("{mant:.4}");
    while m.ends_with('0') {
        m.pop();
    }
    if m.ends_with('.') {
        m.pop();
    }
    format!("{m}e+{exp:02}")
}

fn with_percent(n: u128, capacity: u128) -> String {
    let pct = if capacity == 0 {
        0.0
    } else {
        100.0 * n as f64 / capacity as f64
    };
    format!("{} ({pct:.0}%)", go_g5(n))
}

/// go-pretty's default style: `+---+` rules, headers left-aligned, the columns in
/// `right` right-aligned.
pub fn pretty_table(headers: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let line = |cells: &[String], align: bool| {
        let mut s = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = " ".repeat(w - c.chars().count());
            if align && right.contains(&i) {
                s.push_str(&format!(" {pad}{c} |"));
            } else {
                s.push_str(&format!(" {c}{pad} |"));
            }
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push_str(&line(
        &headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        false,
    ));
    out.push_str(&rule);
    for r in rows {
        out.push_str(&line(r, true));
    }
    out.push_str(&rule);
    out
}

/// `ipam show [--show-blocks]`.
pub fn render_usage(usage: &[Usage]) -> String {
    let rows: Vec<Vec<String>> = usage
        .iter()
        .map(|u| {
            vec![
                u.grouping.clone(),
                u.cidr.to_string(),
                go_g5(u.total),
                with_percent(u.in_use, u.total),
                with_percent(0, u.total),
                with_percent(u.total - u.in_use, u.total),
            ]
        })
        .collect();
    pretty_table(
        &[
            "GROUPING",
            "CIDR",
            "IPS TOTAL",
            "IPS IN USE",
            "IPS RESERVED",
            "IPS FREE",
        ],
        &rows,
        &[2, 3, 4, 5],
    )
}

/// `ipam show --ip IP`.
pub fn render_ip(ip: IpAddr, holder: Option<&report::Holder>) -> String {
    let Some(h) = holder else {
        return format!("{ip} is not assigned\n");
    };
    let mut out = format!("IP {ip} is in use\n");
    match &h.handle {
        Some(id) => out.push_str(&format!("Handle ID: {id}\n")),
        None => out.push_str("Handle ID: <none>\n"),
    }
    if h.attributes.is_empty() {
        out.push_str("No Active Owner attributes defined\n");
    } else {
        out.push_str("Active Owner Attributes:\n");
        for (k, v) in &h.attributes {
            out.push_str(&format!("  {k}: {v}\n"));
        }
    }
    out
}

/// `ipam check`, worded as calicoctl's report.
pub fn render_check(c: &Check, blocks: &[Block], pools: &[IpPoolSpec], pods: usize) -> String {
    let mut out =
        String::from("Checking IPAM for inconsistencies...\n\nLoading all IPAM blocks...\n");
    out.push_str(&format!("Found {} IPAM blocks.\n", blocks.len()));
    for b in blocks {
        out.push_str(&format!(
            " IPAM block {} affinity={}:\n",
            b.cidr,
            b.affinity.as_deref().unwrap_or("<none>")
        ));
    }
    out.push_str(&format!(
        "IPAM blocks record {} allocations.\n\n",
        c.allocations
    ));
    out.push_str("Loading all IPAM pools...\n");
    for p in pools.iter().filter(|p| !p.disabled) {
        out.push_str(&format!("  {}\n", p.cidr));
    }
    out.push_str(&format!(
        "Found {} active IP pools.\n\nLoading all workload endpoints.\nFound {pods} workload IPs.\n\n",
        pools.iter().filter(|p| !p.disabled).count()
    ));
    out.push_str("Scanning for IPs that are allocated but not actually in use...\n");
    for l in &c.leaked {
        out.push_str(&format!("  {l}\n"));
    }
    out.push_str(&format!(
        "Found {} IPs that are allocated in IPAM but not actually in use.\n",
        c.leaked.len()
    ));
    out.push_str(
        "Scanning for IPs that are in use by a workload or node but not allocated in IPAM...\n",
    );
    for l in &c.pods_without_allocation {
        out.push_str(&format!("  {l}\n"));
    }
    out.push_str(&format!(
        "Found {} in-use IPs that are in active IP pools but have no corresponding IPAM allocation.\n\n",
        c.pods_without_allocation.len()
    ));
    out.push_str("Scanning for blocks whose node does not exist...\n");
    for l in &c.blocks_without_node {
        out.push_str(&format!("  {l}\n"));
    }
    out.push_str(&format!(
        "Found {} blocks affine to nodes that do not exist.\n\n",
        c.blocks_without_node.len()
    ));
    out.push_str("Checking blocks, handles and affinities agree...\n");
    for l in &c.inconsistencies {
        out.push_str(&format!("  {l}\n"));
    }
    let problems = c.leaked.len()
        + c.pods_without_allocation.len()
        + c.blocks_without_node.len()
        + c.inconsistencies.len();
    out.push_str(&format!(
        "Found {} inconsistencies.\nCheck complete; found {problems} problems.\n",
        c.inconsistencies.len()
    ));
    out
}

/// Where the IPAM objects are.
pub enum Source {
    File(FileStore),
    Kube(KubeStore),
}

/// Everything `ipam show`/`check` reads.
pub struct Snapshot {
    pub blocks: Vec<Block>,
    pub handles: Vec<Handle>,
    pub affinities: Vec<Affinity>,
}

async fn values<S: Store, T: crate::ipam::IpamObject>(s: &S) -> Result<Vec<T>, String> {
    Ok(s.list::<T>()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|v| v.value)
        .collect())
}

impl Source {
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        match self {
            Source::File(s) => Ok(Snapshot {
                blocks: values(s).await?,
                handles: values(s).await?,
                affinities: values(s).await?,
            }),
            Source::Kube(s) => Ok(Snapshot {
                blocks: values(s).await?,
                handles: values(s).await?,
                affinities: values(s).await?,
            }),
        }
    }

    /// `ipam release --ip`: the addresses that were not allocated.
    pub async fn release(
        &self,
        pools: &[IpPoolSpec],
        ips: &[IpAddr],
    ) -> Result<Vec<IpAddr>, String> {
        match self {
            Source::File(s) => Ipam::new(s.clone(), pools.to_vec(), IpamSettings::default())
                .release_ips(ips)
                .await
                .map_err(|e| e.to_string()),
            Source::Kube(s) => Ipam::new(s.clone(), pools.to_vec(), IpamSettings::default())
                .release_ips(ips)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// `ipam check` over a snapshot.
pub fn check(
    snap: &Snapshot,
    pods: &[PodAddresses],
    nodes: &BTreeSet<String>,
    pools: &[IpPoolSpec],
) -> Check {
    report::check(
        &snap.blocks,
        &snap.handles,
        &snap.affinities,
        pods,
        nodes,
        pools,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_as_go_prints_them() {
        assert_eq!(go_g5(64), "64");
        assert_eq!(go_g5(65536), "65536");
        assert_eq!(go_g5(100_000), "1e+05");
        assert_eq!(go_g5(1_048_576), "1.0486e+06");
        assert_eq!(go_g5(16_777_216), "1.6777e+07");
        assert_eq!(go_g5(999_999), "1e+06");
        assert_eq!(with_percent(5, 65536), "5 (0%)");
        assert_eq!(with_percent(65531, 65536), "65531 (100%)");
        assert_eq!(with_percent(32, 64), "32 (50%)");
    }

    #[test]
    fn show_table_as_calicoctl() {
        let usage = vec![
            Usage {
                grouping: "IP Pool".into(),
                cidr: "10.65.0.0/16".parse().unwrap(),
                total: 65536,
                in_use: 5,
                node: None,
            },
            Usage {
                grouping: "Block".into(),
                cidr: "10.65.0.0/26".parse().unwrap(),
                total: 64,
                in_use: 5,
                node: Some("node-a".into()),
            },
        ];
        assert_eq!(
            render_usage(&usage),
            "\
+----------+--------------+-----------+------------+--------------+--------------+
| GROUPING | CIDR         | IPS TOTAL | IPS IN USE | IPS RESERVED | IPS FREE     |
+----------+--------------+-----------+------------+--------------+--------------+
| IP Pool  | 10.65.0.0/16 |     65536 |     5 (0%) |       0 (0%) | 65531 (100%) |
| Block    | 10.65.0.0/26 |        64 |     5 (8%) |       0 (0%) |     59 (92%) |
+----------+--------------+-----------+------------+--------------+--------------+
"
        );
    }

    #[test]
    fn show_ip_as_calicoctl() {
        let h = report::Holder {
            ip: "10.65.0.3".parse().unwrap(),
            block: "10.65.0.0/26".parse().unwrap(),
            handle: Some("k8s-pod-network.abc".into()),
            attributes: [("namespace", "default"), ("node", "n1"), ("pod", "web")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert_eq!(
            render_ip(h.ip, Some(&h)),
            "IP 10.65.0.3 is in use\nHandle ID: k8s-pod-network.abc\nActive Owner Attributes:\n  namespace: default\n  node: n1\n  pod: web\n"
        );
        assert_eq!(render_ip(h.ip, None), "10.65.0.3 is not assigned\n");
    }
}
