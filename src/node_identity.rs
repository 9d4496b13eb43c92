//! This node's BGP addresses in Kubernetes mode, as calico-node's startup sets them:
//! `IP` / `IP_AUTODETECTION_METHOD` (and `IP6` / `IP6_AUTODETECTION_METHOD`) decide
//! between an address given literally, autodetection ([`crate::autodetect`]) and the
//! address the Node already has; the result is written to the Node's
//! `projectcalico.org/IPv4Address` / `IPv6Address` annotations in CIDR form, so every
//! other node (calico-node or brindle-node) builds its mesh from it.

use crate::autodetect::{self, Family};
use crate::datastore::{Datastore, WriteError};
use brindle_model::kubernetes::node_annotations;
use brindle_model::ClusterConfig;
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use tracing::{info, warn};

/// The annotations to write for `node` (empty: nothing to change).
pub fn decide(
    cfg: &ClusterConfig,
    node: &str,
    env: &dyn Fn(&str) -> Option<String>,
    interfaces: &[autodetect::Interface],
) -> Result<BTreeMap<String, Option<String>>, String> {
    let me = cfg.node(node);
    let internal_ips = me.map(|n| n.internal_ips.clone()).unwrap_or_default();
    let mut out = BTreeMap::new();
    let families = [
        (
            Family::V4,
            "IP",
            "IP_AUTODETECTION_METHOD",
            node_annotations::IPV4_ADDRESS,
            me.and_then(|n| n.ipv4_address).map(IpNetwork::V4),
        ),
        (
            Family::V6,
            "IP6",
            "IP6_AUTODETECTION_METHOD",
            node_annotations::IPV6_ADDRESS,
            me.and_then(|n| n.ipv6_address).map(IpNetwork::V6),
        ),
    ];
    for (family, ip_var, method_var, annotation, existing) in families {
        let ip = env(ip_var);
        let method = env(method_var);
        let detected = autodetect::autodetect(
            ip.as_deref(),
            method.as_deref(),
            family,
            existing,
            interfaces,
            &internal_ips,
        )?;
        if detected != existing {
            if let Some(net) = detected {
                out.insert(annotation.to_string(), Some(net.to_string()));
            }
        }
    }
    Ok(out)
}

/// Decides and writes this node's addresses; true when the Node was changed (its watch
/// event will bring the new addresses).
pub async fn ensure(ds: &Datastore, cfg: &ClusterConfig, node: &str) -> Result<bool, String> {
    let interfaces = tokio::task::spawn_blocking(autodetect::host_interfaces)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot list the host's interfaces: {e}"))?;
    let env = |k: &str| std::env::var(k).ok();
    let changes = decide(cfg, node, &env, &interfaces)?;
    if changes.is_empty() {
        return Ok(false);
    }
    for (k, v) in &changes {
        info!(node, annotation = %k, value = ?v, "setting this node's BGP address");
    }
    match ds.patch_node_annotations(node, &changes).await {
        Ok(()) => Ok(true),
        Err(WriteError::Unsupported(why)) => {
            warn!("{why}");
            Ok(false)
        }
        Err(e) => Err(format!("cannot write the Node's annotations: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodetect::Interface;

    fn iface(index: u32, name: &str, addrs: &[&str]) -> Interface {
        Interface {
            index,
            name: name.into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            up: true,
        }
    }

    #[test]
    fn autodetected_address_is_written_in_cidr_form_and_kept_when_unchanged() {
        let cfg = brindle_model::parse(
            "t.yaml",
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: w1}\nspec: {bgp: {asNumber: 65001}}\n",
        )
        .unwrap();
        let ifaces = [
            iface(1, "lo", &["127.0.0.1/8"]),
            iface(2, "eth0", &["10.0.0.5/24", "fe80::1/64"]),
            iface(3, "cali1234", &["169.254.1.1/32"]),
        ];
        let env = |k: &str| (k == "IP").then(|| "autodetect".to_string());
        let got = decide(&cfg, "w1", &env, &ifaces).unwrap();
        assert_eq!(
            got.get(node_annotations::IPV4_ADDRESS),
            Some(&Some("10.0.0.5/24".to_string()))
        );
        assert!(
            !got.contains_key(node_annotations::IPV6_ADDRESS),
            "IP6 unset: not detected"
        );

        let cfg = brindle_model::parse(
            "t.yaml",
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: w1}\nspec: {bgp: {ipv4Address: 10.0.0.5/24}}\n",
        )
        .unwrap();
        assert!(decide(&cfg, "w1", &env, &ifaces).unwrap().is_empty());
    }
}
