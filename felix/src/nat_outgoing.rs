//! `natOutgoing`, as Felix renders it (`felix/rules/nat.go`): traffic from an IP pool
//! with `natOutgoing: true` to a destination outside every pool is masqueraded on the
//! node where it leaves; pod → pod (any pool) keeps its source. The jump is appended to
//! the nat table's `POSTROUTING`, after kube-proxy's, as Felix does. Pure rendering; the
//! [`crate::policy_apply::PolicyApplier`] applies it like the policy chains.

use crate::model::Pool;
use crate::policy_render::{ipset_name, Family, IpsetDef, Rendered};
use std::collections::BTreeMap;

/// The sets: the pools to masquerade from, and every pool.
pub const MASQ_SET: &str = "nat-masq-pools";
pub const ALL_SET: &str = "nat-all-pools";

/// The nat table for one family, or None when no pool of the family has natOutgoing.
pub fn render(pools: &[Pool], family: Family) -> Option<Rendered> {
    let v4 = family == Family::V4;
    let fam: Vec<&Pool> = pools.iter().filter(|p| p.cidr.is_ipv4() == v4).collect();
    let masq: Vec<String> = fam
        .iter()
        .filter(|p| p.nat_outgoing && !p.disabled)
        .map(|p| p.cidr.to_string())
        .collect();
    if masq.is_empty() {
        return None;
    }
    let all: Vec<String> = fam.iter().map(|p| p.cidr.to_string()).collect();
    let (m, a) = (ipset_name(family, MASQ_SET), ipset_name(family, ALL_SET));
    let rule = format!(
        "-m comment --comment \"brl:natout\" -m set --match-set {m} src -m set ! --match-set {a} dst -j MASQUERADE --random-fully"
    );
    let filter = format!(
        "*nat\n:brl-POSTROUTING - [0:0]\n:brl-nat-outgoing - [0:0]\n-A brl-POSTROUTING -m comment --comment \"brl:natjump\" -j brl-nat-outgoing\n-A brl-nat-outgoing {rule}\nCOMMIT\n"
    );
    Some(Rendered {
        table: "nat",
        filter,
        chains: BTreeMap::from([
            ("brl-POSTROUTING".to_string(), vec!["natjump".to_string()]),
            ("brl-nat-outgoing".to_string(), vec!["natout".to_string()]),
        ]),
        rules: BTreeMap::from([
            (
                "brl-POSTROUTING".to_string(),
                vec![
                    "-A brl-POSTROUTING -m comment --comment \"brl:natjump\" -j brl-nat-outgoing"
                        .to_string(),
                ],
            ),
            (
                "brl-nat-outgoing".to_string(),
                vec![format!("-A brl-nat-outgoing {rule}")],
            ),
        ]),
        origins: BTreeMap::new(),
        ipsets: vec![
            IpsetDef {
                name: m,
                kind: "hash:net",
                members: masq,
            },
            IpsetDef {
                name: a,
                kind: "hash:net",
                members: all,
            },
        ],
        hooks: vec![("POSTROUTING".into(), "brl-POSTROUTING".into())],
        hooks_last: true,
        set_prefixes: vec!["nat-"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EncapMode;

    fn pool(cidr: &str, nat: bool) -> Pool {
        Pool {
            cidr: cidr.parse().unwrap(),
            block_size: 26,
            ipip_mode: EncapMode::Never,
            vxlan_mode: EncapMode::Never,
            nat_outgoing: nat,
            disabled: false,
        }
    }

    #[test]
    fn masquerades_natoutgoing_pools_to_outside_all_pools() {
        let pools = [
            pool("10.65.0.0/16", true),
            pool("10.66.0.0/16", false),
            pool("fd65::/48", false),
        ];
        let r = render(&pools, Family::V4).unwrap();
        assert!(r.filter.contains("-m set --match-set brl4-nat-masq-pools src -m set ! --match-set brl4-nat-all-pools dst -j MASQUERADE"), "{}", r.filter);
        assert_eq!(r.ipsets[0].members, vec!["10.65.0.0/16"]);
        assert_eq!(r.ipsets[1].members, vec!["10.65.0.0/16", "10.66.0.0/16"]);
        assert!(
            render(&pools, Family::V6).is_none(),
            "no IPv6 pool has natOutgoing"
        );
        assert!(render(&[pool("10.65.0.0/16", false)], Family::V4).is_none());
    }
}
