//! Decoding of Calico and Kubernetes network policies.

use super::yaml::Field;
use super::Meta;
use crate::error::ConfigError;
use crate::policy::{CalicoPolicy, KubeNetworkPolicy};
use crate::selector::Selector;

pub(crate) fn decode_calico_policy(
    meta: &Meta,
    spec: &Field,
    global: bool,
) -> Result<CalicoPolicy, ConfigError> {
    let s = spec.map_ignoring(
        &["tier", "order", "selector"],
        &[
            "ingress",
            "egress",
            "types",
            "namespaceSelector",
            "serviceAccountSelector",
            "doNotTrack",
            "preDNAT",
            "applyOnForward",
            "performanceHints",
        ],
    )?;
    let selector = s
        .opt("selector", |f| super::fields::selector(&f))?
        .unwrap_or_else(Selector::all);
    let order = s.opt("order", |f| match &f.node.value {
        super::yaml::Value::Int(i) => Ok(*i as f64),
        super::yaml::Value::Float(x) => Ok(*x),
        _ => Err(f.err("expected a number")),
    })?;
    Ok(CalicoPolicy {
        namespace: if global { None } else { meta.namespace.clone() },
        name: meta.name.clone(),
        tier: s
            .opt("tier", |f| f.string())?
            .unwrap_or_else(|| "default".into()),
        order,
        selector,
        spec: spec.node.value.to_json(),
    })
}

pub(crate) fn decode_kube_policy(
    meta: &Meta,
    spec: &Field,
) -> Result<KubeNetworkPolicy, ConfigError> {
    Ok(KubeNetworkPolicy {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone(),
        spec: spec.node.value.to_json(),
    })
}
