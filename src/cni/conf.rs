//! Inputs of one plugin invocation: the `CNI_*` environment and the network
//! configuration read from stdin.

use super::error::{code, CniError, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// CNI versions this plugin accepts and can produce results for.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The version used when the configuration does not say (VERSION with empty stdin).
pub const DEFAULT_VERSION: &str = "1.0.0";

/// Default node-agent state directory (same as `brindle-node --state-dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/brindle";

/// The operation requested by `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::env(format!(
                    "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// The `CNI_*` environment variables of an ADD, DEL or CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// `CNI_NETNS`; may be empty on DEL (the namespace is already gone).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`, parsed (`K=V;K=V`).
    pub args: BTreeMap<String, String>,
}

/// Reads the command only (VERSION, STATUS and GC need nothing else).
pub fn command_from(get: &dyn Fn(&str) -> Option<String>) -> Result<Command> {
    match get("CNI_COMMAND") {
        Some(c) if !c.is_empty() => Command::parse(&c),
        _ => Err(CniError::env(
            "CNI_COMMAND is not set (expected ADD, DEL, CHECK or VERSION)",
        )),
    }
}

/// A container ID as the spec allows: alphanumerics plus `_ . -`, not empty. It is used
/// in file names, so anything else (a `/` in particular) is refused.
fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A Linux interface name: 1-15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

/// Parses `CNI_ARGS` (`IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=y`).
pub fn parse_cni_args(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(CniError::env(format!(
                "CNI_ARGS: {part:?} is not KEY=VALUE (CNI_ARGS={s:?})"
            )));
        };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

impl CniEnv {
    /// Reads the environment of an ADD, DEL or CHECK through `get`.
    pub fn from(command: Command, get: &dyn Fn(&str) -> Option<String>) -> Result<CniEnv> {
        let var = |name: &str| get(name).unwrap_or_default();
        let container_id = var("CNI_CONTAINERID");
        if container_id.is_empty() {
            return Err(CniError::env("CNI_CONTAINERID is not set"));
        }
        if !valid_container_id(&container_id) {
            return Err(CniError::env(format!(
                "CNI_CONTAINERID {container_id:?} is invalid: it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
            )));
        }
        let ifname = var("CNI_IFNAME");
        if ifname.is_empty() {
            return Err(CniError::env("CNI_IFNAME is not set"));
        }
        if !valid_ifname(&ifname) {
            return Err(CniError::env(format!(
                "CNI_IFNAME {ifname:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
            )));
        }
        let netns = var("CNI_NETNS");
        if netns.is_empty() && command != Command::Del {
            return Err(CniError::env(format!(
                "CNI_NETNS is not set ({} needs the pod's network namespace)",
                command.as_str()
            )));
        }
        let args = parse_cni_args(&var("CNI_ARGS"))?;
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }

    /// The pod's Kubernetes namespace (`K8S_POD_NAMESPACE`, else `default`).
    pub fn pod_namespace(&self) -> String {
        self.args
            .get("K8S_POD_NAMESPACE")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "default".to_string())
    }

    /// The pod's name (`K8S_POD_NAME`, else the container ID, as for `ctr run`).
    pub fn pod_name(&self) -> String {
        self.args
            .get("K8S_POD_NAME")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| self.container_id.clone())
    }
}

/// Log verbosity of `<stateDir>/cni.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s.to_ascii_lowercase().as_str() {
            "error" | "fatal" | "panic" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" | "trace" => LogLevel::Debug,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Warn => "WARN",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
        }
    }
}

/// `datastore_type` of Calico's CNI configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreConf {
    /// The Calico resource file (`config`) and the node's state directory.
    File,
    /// `"datastore_type": "kubernetes"` with `kubernetes.kubeconfig` (the file the
    /// DaemonSet's init container writes, as Calico's `calico-kubeconfig`).
    Kubernetes { kubeconfig: PathBuf },
}

/// The network configuration (stdin), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    /// The node this pod runs on (`nodename`, else the host name).
    pub nodename: String,
    /// The node agent's state directory (`stateDir`, else /var/lib/brindle).
    pub state_dir: PathBuf,
    /// Path of the Calico resource file (`config`): file mode.
    pub config: PathBuf,
    /// Where IPAM and the cluster's resources live.
    pub datastore: DatastoreConf,
    /// `ipam.assign_ipv4` / `ipam.assign_ipv6` as Calico's CNI reads them (None: one
    /// address of each family a pool exists for).
    pub assign_ipv4: Option<bool>,
    pub assign_ipv6: Option<bool>,
    /// Pod MTU (`mtu`); None: read `<stateDir>/mtu`, else 1500.
    pub mtu: Option<u32>,
    pub log_level: LogLevel,
    /// `prevResult` (CHECK, and DEL in chains), as given.
    pub prev_result: Option<serde_json::Value>,
    /// GC: `cni.dev/valid-attachments` as (container ID, ifname).
    pub valid_attachments: Option<Vec<(String, String)>>,
}

fn str_field<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    names: &[&str],
) -> Result<Option<&'a str>> {
    for name in names {
        match obj.get(*name) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) => return Ok(Some(s)),
            Some(other) => {
                return Err(CniError::config(format!(
                    "network configuration: \"{name}\" must be a string, not {other}"
                )))
            }
        }
    }
    Ok(None)
}

/// The `cniVersion` of a configuration that may not parse otherwise (for error replies).
pub fn sniff_version(stdin: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(stdin).ok()?;
    let s = v.get("cniVersion")?.as_str()?;
    SUPPORTED_VERSIONS.contains(&s).then(|| s.to_string())
}

/// Checks `cniVersion` only (VERSION reads nothing else).
pub fn check_version(v: &str) -> Result<()> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {v:?} is not supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

impl NetConf {
    /// Parses and validates the network configuration.
    pub fn parse(stdin: &[u8], hostname: &dyn Fn() -> Option<String>) -> Result<NetConf> {
        if stdin.iter().all(u8::is_ascii_whitespace) {
            return Err(CniError::config(
                "the network configuration on stdin is empty",
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("the network configuration on stdin is not valid JSON: {e}"),
            )
        })?;
        let serde_json::Value::Object(obj) = value else {
            return Err(CniError::config(
                "the network configuration must be a JSON object",
            ));
        };
        let cni_version = str_field(&obj, &["cniVersion"])?
            .ok_or_else(|| CniError::config("network configuration: \"cniVersion\" is missing"))?
            .to_string();
        check_version(&cni_version)?;
        let name = str_field(&obj, &["name"])?.unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(CniError::config(
                "network configuration: \"name\" is missing",
            ));
        }
        let plugin_type = str_field(&obj, &["type"])?.unwrap_or_default().to_string();
        let nodename = match str_field(&obj, &["nodename", "nodeName"])? {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => hostname().filter(|h| !h.is_empty()).ok_or_else(|| {
                CniError::config(
                    "network configuration: \"nodename\" is not set and the host name is unknown",
                )
            })?,
        };
        let state_dir = PathBuf::from(
            str_field(&obj, &["stateDir", "state_dir"])?
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_STATE_DIR),
        );
        if !state_dir.is_absolute() {
            return Err(CniError::config(format!(
                "network configuration: \"stateDir\" must be an absolute path, not {:?}",
                state_dir.display()
            )));
        }
        let datastore = match str_field(&obj, &["datastore_type"])? {
            None | Some("") | Some("file") => DatastoreConf::File,
            Some("kubernetes") => {
                let k = obj.get("kubernetes").and_then(|v| v.as_object());
                let kubeconfig = k
                    .and_then(|k| k.get("kubeconfig"))
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        CniError::config(
                            "network configuration: \"datastore_type\": \"kubernetes\" needs \"kubernetes\": {\"kubeconfig\": PATH} (the init container writes it)",
                        )
                    })?;
                DatastoreConf::Kubernetes {
                    kubeconfig: PathBuf::from(kubeconfig),
                }
            }
            Some(other) => {
                return Err(CniError::config(format!(
                    "network configuration: \"datastore_type\" {other:?} is not supported (kubernetes, or file with \"config\")"
                )))
            }
        };
        let config = match (str_field(&obj, &["config"])?, &datastore) {
            (Some(c), _) if !c.is_empty() => PathBuf::from(c),
            (_, DatastoreConf::Kubernetes { .. }) => PathBuf::new(),
            _ => {
                return Err(CniError::config(
                    "network configuration: \"config\" (the path of the Calico resource file with the Node, IPPool and BlockAffinity resources) is missing",
                ))
            }
        };
        let ipam = obj.get("ipam").and_then(|v| v.as_object());
        let flag = |name: &str| -> Result<Option<bool>> {
            match ipam.and_then(|i| i.get(name)) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
                Some(serde_json::Value::String(s)) => match s.as_str() {
                    "true" => Ok(Some(true)),
                    "false" => Ok(Some(false)),
                    _ => Err(CniError::config(format!(
                        "network configuration: \"ipam.{name}\" must be \"true\" or \"false\", not {s:?}"
                    ))),
                },
                Some(other) => Err(CniError::config(format!(
                    "network configuration: \"ipam.{name}\" must be \"true\" or \"false\", not {other}"
                ))),
            }
        };
        let assign_ipv4 = flag("assign_ipv4")?;
        let assign_ipv6 = flag("assign_ipv6")?;
        let mtu = match obj.get("mtu") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(m) if (68..=65535).contains(&m) => Some(m as u32),
                _ => {
                    return Err(CniError::config(format!(
                    "network configuration: \"mtu\" must be a number between 68 and 65535, not {v}"
                )))
                }
            },
        };
        let log_level = match str_field(&obj, &["log_level", "logLevel"])? {
            None => LogLevel::Info,
            Some(s) => LogLevel::parse(s).ok_or_else(|| {
                CniError::config(format!(
                    "network configuration: \"log_level\" {s:?} is not one of error, warn, info, debug"
                ))
            })?,
        };
        let prev_result = obj.get("prevResult").filter(|v| !v.is_null()).cloned();
        let valid_attachments = match obj.get("cni.dev/valid-attachments") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    let id = item.get("containerID").and_then(|v| v.as_str());
                    let ifname = item.get("ifname").and_then(|v| v.as_str());
                    match (id, ifname) {
                        (Some(id), Some(ifname)) => out.push((id.to_string(), ifname.to_string())),
                        _ => {
                            return Err(CniError::config(format!(
                                "network configuration: every \"cni.dev/valid-attachments\" entry needs \"containerID\" and \"ifname\", got {item}"
                            )))
                        }
                    }
                }
                Some(out)
            }
            Some(other) => {
                return Err(CniError::config(format!(
                    "network configuration: \"cni.dev/valid-attachments\" must be an array, not {other}"
                )))
            }
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            nodename,
            state_dir,
            config,
            datastore,
            assign_ipv4,
            assign_ipv6,
            mtu,
            log_level,
            prev_result,
            valid_attachments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn env_is_validated() {
        let e = CniEnv::from(
            Command::Add,
            &env(&[
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/var/run/netns/x"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=dns-0",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(e.pod_namespace(), "kube-system");
        assert_eq!(e.pod_name(), "dns-0");

        let e = CniEnv::from(
            Command::Del,
            &env(&[("CNI_CONTAINERID", "default-t1"), ("CNI_IFNAME", "eth0")]),
        )
        .unwrap();
        assert_eq!(
            (e.pod_namespace().as_str(), e.pod_name().as_str()),
            ("default", "default-t1")
        );

        for (vars, needle) in [
            (
                vec![("CNI_IFNAME", "eth0"), ("CNI_NETNS", "/x")],
                "CNI_CONTAINERID is not set",
            ),
            (
                vec![
                    ("CNI_CONTAINERID", "../etc"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "/x"),
                ],
                "is invalid",
            ),
            (
                vec![
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "eth0/x"),
                    ("CNI_NETNS", "/x"),
                ],
                "not a valid interface",
            ),
            (
                vec![("CNI_CONTAINERID", "a"), ("CNI_IFNAME", "eth0")],
                "CNI_NETNS is not set",
            ),
            (
                vec![
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "/x"),
                    ("CNI_ARGS", "junk"),
                ],
                "not KEY=VALUE",
            ),
        ] {
            let err = CniEnv::from(Command::Add, &env(&vars)).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV, "{err}");
            assert!(err.msg.contains(needle), "{err}");
        }
        assert_eq!(command_from(&env(&[])).unwrap_err().code, code::INVALID_ENV);
        assert_eq!(
            command_from(&env(&[("CNI_COMMAND", "ADDX")]))
                .unwrap_err()
                .code,
            code::INVALID_ENV
        );
    }

    #[test]
    fn netconf_is_validated() {
        let host = || Some("host-a".to_string());
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"k8s","type":"brindle-cni","stateDir":"/var/lib/b","config":"/etc/b.yaml","mtu":1440,"log_level":"debug"}"#,
            &host,
        )
        .unwrap();
        assert_eq!(c.nodename, "host-a");
        assert_eq!(c.mtu, Some(1440));
        assert_eq!(c.log_level, LogLevel::Debug);

        for (text, code_, needle) in [
            ("", code::INVALID_CONFIG, "empty"),
            ("{", code::DECODE_FAILURE, "not valid JSON"),
            (
                r#"{"name":"k","config":"/x"}"#,
                code::INVALID_CONFIG,
                "cniVersion",
            ),
            (
                r#"{"cniVersion":"9.9.9","name":"k","config":"/x"}"#,
                code::INCOMPATIBLE_VERSION,
                "not supported",
            ),
            (
                r#"{"cniVersion":"1.0.0","config":"/x"}"#,
                code::INVALID_CONFIG,
                "\"name\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"k"}"#,
                code::INVALID_CONFIG,
                "\"config\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"k","config":"/x","mtu":10}"#,
                code::INVALID_CONFIG,
                "\"mtu\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"k","config":"/x","stateDir":"rel"}"#,
                code::INVALID_CONFIG,
                "absolute",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"k","config":"/x","log_level":"loud"}"#,
                code::INVALID_CONFIG,
                "log_level",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"k","config":7}"#,
                code::INVALID_CONFIG,
                "must be a string",
            ),
        ] {
            let err = NetConf::parse(text.as_bytes(), &host).unwrap_err();
            assert_eq!(err.code, code_, "{text}: {err}");
            assert!(err.msg.contains(needle), "{text}: {err}");
        }
    }
}
