//! The ADD result printed on stdout, in the format of the requested `cniVersion`.

use ipnetwork::IpNetwork;
use serde_json::{json, Value};
use std::net::IpAddr;

/// One interface of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// The netns path for interfaces inside the pod; None for the host side.
    pub sandbox: Option<String>,
}

/// One address of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    /// Index into the interfaces list.
    pub interface: usize,
}

/// One route of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
}

/// The result of an ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
}

impl AddResult {
    /// The JSON document for `cni_version` (0.3.x and 0.4.0 carry `"version"` per address).
    pub fn to_json(&self, cni_version: &str) -> Value {
        let old = cni_version.starts_with("0.");
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({ "name": i.name, "mac": i.mac });
                if let Some(s) = &i.sandbox {
                    v["sandbox"] = json!(s);
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({
                    "address": ip.address.to_string(),
                    "interface": ip.interface,
                });
                if let Some(g) = ip.gateway {
                    v["gateway"] = json!(g.to_string());
                }
                if old {
                    v["version"] = json!(if ip.address.is_ipv4() { "4" } else { "6" });
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut v = json!({ "dst": r.dst.to_string() });
                if let Some(g) = r.gw {
                    v["gw"] = json!(g.to_string());
                }
                v
            })
            .collect();
        json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": {},
        })
    }
}

/// The addresses listed in a result document (`prevResult`), any version.
pub fn addresses_of(result: &Value) -> Vec<IpNetwork> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address")?.as_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let r = AddResult {
            interfaces: vec![
                Interface {
                    name: "cali0123456789a".into(),
                    mac: "ee:ee:ee:ee:ee:ee".into(),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    sandbox: Some("/var/run/netns/p".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.66.0.1/32".parse().unwrap(),
                gateway: Some("169.254.1.1".parse().unwrap()),
                interface: 1,
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("169.254.1.1".parse().unwrap()),
            }],
        };
        let v1 = r.to_json("1.0.0");
        assert_eq!(v1["ips"][0]["address"], "10.66.0.1/32");
        assert!(v1["ips"][0].get("version").is_none());
        assert_eq!(v1["interfaces"][1]["sandbox"], "/var/run/netns/p");
        assert!(v1["interfaces"][0].get("sandbox").is_none());
        assert_eq!(v1["dns"], json!({}));
        let v04 = r.to_json("0.4.0");
        assert_eq!(v04["ips"][0]["version"], "4");
        assert_eq!(
            addresses_of(&v04),
            vec!["10.66.0.1/32".parse::<IpNetwork>().unwrap()]
        );
    }
}
