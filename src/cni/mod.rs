//! `brindle-cni`: Brindle's CNI plugin (CNI spec 1.0: ADD, DEL, CHECK, VERSION; also the
//! 1.1 STATUS and GC).
//!
//! Per pod interface it builds Calico's dataplane: a veth pair with the host end named
//! `cali` + 11 hex chars of SHA-1(`"<namespace>.<pod>"`), MAC `ee:ee:ee:ee:ee:ee` and no
//! address; the pod end (`CNI_IFNAME`) carries the pod's /32 (and /128) from the node's
//! own block, a `169.254.1.1 dev eth0 scope link` route and `default via 169.254.1.1`
//! (IPv6: `default via fe80::ecee:eeff:feee:eeee`); the host routes `<podIP>/32 dev caliX
//! scope link proto 80` and answers ARP for 169.254.1.1 by proxy ARP. The kernel work is
//! felix's ([`brindle_felix::podnet`], [`brindle_felix::netns`], the sysctl tables of
//! [`brindle_felix::sysctl`]); [`dataplane`] maps its errors to CNI errors. The endpoint
//! is then recorded for the node agent (`brindle_felix::endpoint`).
//!
//! Network configuration (stdin):
//! ```json
//! {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "brindle-cni",
//!  "nodename": "node-a", "stateDir": "/var/lib/brindle",
//!  "config": "/etc/brindle/cluster.yaml", "mtu": 1440, "log_level": "info"}
//! ```
//! `config` is the Calico resource file (file mode): the node's blocks are its confirmed
//! `BlockAffinity` resources. With `"datastore_type": "kubernetes"` and
//! `"kubernetes": {"kubeconfig": PATH}` (as Calico's CNI configuration has them) the
//! plugin uses the cluster: Calico's IPAM objects, IPPools and pod annotations.
//! Addresses come from Calico's IPAM ([`crate::ipam`]) through [`addresses`], one handle
//! per container (`<name>.<containerID>`).
//! The log goes to `<stateDir>/cni.log`; stdout carries only the result or the CNI error.

pub mod addresses;
pub mod conf;
pub mod dataplane;
pub mod error;
pub mod legacy_ipam;
pub mod log;
pub mod result;

use addresses::Addresses;
use brindle_felix::calc::host_net;
use brindle_felix::endpoint::{self, EndpointRecord};
use brindle_felix::links::Link;
use brindle_felix::netns::{self, in_netns, with_netlink};
use brindle_felix::podnet::{GATEWAY_V4, GATEWAY_V6, HOST_MAC};
use brindle_felix::sysctl::{self, PROC_SYS};
use brindle_felix::ROUTE_PROTOCOL;
use conf::{CniEnv, Command, NetConf, DEFAULT_VERSION, SUPPORTED_VERSIONS};
pub use error::{code, CniError, Result};
use log::Logger;
use sha1::{Digest, Sha1};
use std::net::IpAddr;
use std::path::Path;

/// The pod MTU when neither the configuration nor the agent says.
pub const DEFAULT_MTU: u32 = 1500;

/// Host-side veth name of a pod: `cali` + the first 11 hex characters of
/// SHA-1(`"<namespace>.<pod>"`), as Calico names it.
pub fn host_veth_name(namespace: &str, pod: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    format!("cali{}", &hex::encode(digest)[..11])
}

/// What the plugin prints and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

/// Runs one invocation: `get` reads the environment, `stdin` is the network configuration.
pub fn run(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let version = conf::sniff_version(stdin).unwrap_or_else(|| DEFAULT_VERSION.to_string());
    match dispatch(get, stdin) {
        Ok(stdout) => Outcome {
            stdout,
            exit_code: 0,
        },
        Err(e) => Outcome {
            stdout: e.to_json(&version),
            exit_code: 1,
        },
    }
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).ok()
}

fn dispatch(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<String> {
    let command = conf::command_from(get)?;
    if command == Command::Version {
        return Ok(version_reply(stdin));
    }
    let conf = NetConf::parse(stdin, &hostname)?;
    let mut log = Logger::open(
        &conf.state_dir,
        conf.log_level,
        command.as_str().to_string(),
    );
    let res = match command {
        Command::Add | Command::Del | Command::Check => {
            let env = match CniEnv::from(command, get) {
                Ok(env) => env,
                Err(e) => {
                    log.error(&e.to_string());
                    return Err(e);
                }
            };
            log.set_context(format!(
                "{} {}/{} ns={}/{}",
                command.as_str(),
                env.container_id,
                env.ifname,
                env.pod_namespace(),
                env.pod_name()
            ));
            log.debug(&format!(
                "netns={:?} nodename={} stateDir={} config={}",
                env.netns,
                conf.nodename,
                conf.state_dir.display(),
                conf.config.display()
            ));
            match command {
                Command::Add => cmd_add(&conf, &env, &log),
                Command::Del => cmd_del(&conf, &env, &log).map(|()| String::new()),
                _ => cmd_check(&conf, &env, &log).map(|()| String::new()),
            }
        }
        Command::Status => cmd_status(&conf).map(|()| String::new()),
        Command::Gc => cmd_gc(&conf, &log).map(|()| String::new()),
        Command::Version => Ok(version_reply(stdin)),
    };
    match &res {
        Ok(_) => log.info("ok"),
        Err(e) => log.error(&e.to_string()),
    }
    res
}

fn version_reply(stdin: &[u8]) -> String {
    let version = conf::sniff_version(stdin).unwrap_or_else(|| DEFAULT_VERSION.to_string());
    serde_json::json!({
        "cniVersion": version,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}

/// Reads the endpoint record of a container interface (None: none, or unreadable).
fn read_record(state_dir: &Path, id: &str, ifname: &str, log: &Logger) -> Option<EndpointRecord> {
    let path = endpoint::record_path(state_dir, id, ifname);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            log.warn(&format!(
                "ignoring unreadable endpoint record {}: {e}",
                path.display()
            ));
            None
        }
    }
}

fn remove_record(state_dir: &Path, id: &str, ifname: &str) -> Result<()> {
    let path = endpoint::record_path(state_dir, id, ifname);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

/// What ADD built.
struct Built {
    pod_mac: String,
}

/// Creates the veth pair and configures both ends. On failure the host end (and with it
/// the pod end) is removed again.
fn build_dataplane(
    host_iface: &str,
    env: &CniEnv,
    ips: &[IpAddr],
    mtu: u32,
    log: &Logger,
) -> Result<Built> {
    let ns = netns::open(Path::new(&env.netns))?;
    let ns_ref = &ns;
    let host = with_netlink(|h| async move {
        if let Some(old) = h.link(host_iface).await? {
            log.info(&format!(
                "{host_iface} already exists (index {}): deleting it first",
                old.index
            ));
            h.delete_link(&old).await?;
        }
        Ok::<_, CniError>(h.create_veth(host_iface, &env.ifname, ns_ref, mtu).await?)
    })?;
    log.debug(&format!(
        "created {host_iface} (index {}) mtu {mtu}",
        host.index
    ));
    let configured = configure(&host, ns, env, ips, log);
    if configured.is_err() {
        let _ = with_netlink(|h| async move { h.delete_link(&host).await });
    }
    configured
}

fn configure(
    host: &Link,
    ns: std::fs::File,
    env: &CniEnv,
    ips: &[IpAddr],
    log: &Logger,
) -> Result<Built> {
    // The host-side sysctls of the veth (felix sets them too; the pod must work before).
    let ipv6 = ips.iter().any(IpAddr::is_ipv6);
    let proc_sys = Path::new(PROC_SYS);
    for w in sysctl::write_at_add(proc_sys, sysctl::HOST_IFACE, &host.name, ipv6)? {
        log.warn(&w.to_string());
    }
    with_netlink(|h| async move { h.set_up(host).await })?;

    // Pod side, on a thread inside the pod's namespace.
    let ifname = env.ifname.clone();
    let pod_ips = ips.to_vec();
    let (pod_mac, warnings) = in_netns(ns, "configuring the pod side", move || {
        let warnings = sysctl::write_at_add(proc_sys, sysctl::POD_IFACE, &ifname, ipv6)?;
        let link = with_netlink(|h| async move { h.configure_pod_side(&ifname, &pod_ips).await })?;
        Ok::<_, CniError>((link.mac_string(), warnings))
    })?;
    for w in warnings {
        log.warn(&w.to_string());
    }

    // Host routes to the pod, and its neighbour entries (the agent writes them too).
    with_netlink(|h| async move { h.add_host_routes(host, ips).await })?;
    if let Some(mac) = brindle_felix::calc::Mac::parse(&pod_mac) {
        if let Err(e) = with_netlink(|h| async move { h.add_pod_neighbours(host, ips, mac).await })
        {
            log.warn(&format!(
                "writing the pod's neighbour entries (the agent will): {e}"
            ));
        }
    }
    Ok(Built { pod_mac })
}

/// Test hook (debug builds only): `BRINDLE_CNI_TEST_HOLD_MS` holds an ADD between
/// building the veth and recording the endpoint, the window a racing DEL of the pod's
/// previous sandbox must not fall into.
fn test_hold() {
    if cfg!(debug_assertions) {
        if let Some(ms) = std::env::var("BRINDLE_CNI_TEST_HOLD_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}

/// Serialises the ADDs and DELs of one pod's veth: two sandboxes of a pod (a replaced
/// sandbox's DEL racing the new one's ADD) share the veth name, and without this a DEL
/// that read the records before the new ADD wrote its own could delete the new veth.
fn pod_lock(state_dir: &Path, host_iface: &str) -> Result<crate::flock::Exclusive> {
    crate::flock::Exclusive::acquire(
        &state_dir.join("locks").join(host_iface),
        std::time::Duration::from_secs(60),
    )
    .map_err(|e| {
        CniError::new(
            code::TRY_AGAIN,
            format!("waiting for another ADD/DEL of this pod: {e}"),
        )
    })
}

fn cmd_add(conf: &NetConf, env: &CniEnv, log: &Logger) -> Result<String> {
    let namespace = env.pod_namespace();
    let pod = env.pod_name();
    let host_iface = host_veth_name(&namespace, &pod);
    let _pod_lock = pod_lock(&conf.state_dir, &host_iface)?;
    let addresses = Addresses::open(conf)?;
    let mtu = conf
        .mtu
        .or_else(|| endpoint::read_mtu(&conf.state_dir))
        .unwrap_or(DEFAULT_MTU);
    let ips = addresses.assign(env)?;
    log.info(&format!(
        "allocated {} for {host_iface}",
        ips.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let undo = |e: CniError| -> CniError {
        if let Err(re) = addresses.release(&env.container_id) {
            log.warn(&format!("releasing the addresses after a failed ADD: {re}"));
        }
        e
    };
    let built = build_dataplane(&host_iface, env, &ips, mtu, log).map_err(undo)?;
    test_hold();
    let record = EndpointRecord {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        namespace,
        pod,
        host_iface: host_iface.clone(),
        mac: built.pod_mac.clone(),
        ips: ips.iter().map(|ip| host_net(*ip)).collect(),
        netns: env.netns.clone(),
    };
    if let Err(e) = record.write(&conf.state_dir) {
        let _ = with_netlink(|h| async move {
            if let Some(l) = h.link(&host_iface).await? {
                h.delete_link(&l).await?;
            }
            Ok::<_, CniError>(())
        });
        return Err(undo(CniError::io(format!(
            "cannot write the endpoint record in {}: {e}",
            endpoint::endpoints_dir(&conf.state_dir).display()
        ))));
    }
    crate::endpoint_events::notify(&conf.state_dir, &env.container_id);
    if let Err(e) = addresses.annotate(env, &ips) {
        log.warn(&format!(
            "recording the addresses in the pod's annotations: {}",
            e.msg
        ));
    }
    let result = result::AddResult {
        interfaces: vec![
            result::Interface {
                name: host_iface,
                mac: HOST_MAC.to_string(),
                sandbox: None,
            },
            result::Interface {
                name: env.ifname.clone(),
                mac: built.pod_mac,
                sandbox: Some(env.netns.clone()),
            },
        ],
        ips: ips
            .iter()
            .map(|ip| result::IpConfig {
                address: host_net(*ip),
                gateway: Some(if ip.is_ipv4() {
                    IpAddr::V4(GATEWAY_V4)
                } else {
                    IpAddr::V6(GATEWAY_V6)
                }),
                interface: 1,
            })
            .collect(),
        routes: ips
            .iter()
            .map(|ip| {
                if ip.is_ipv4() {
                    result::Route {
                        dst: "0.0.0.0/0".parse().expect("valid"),
                        gw: Some(IpAddr::V4(GATEWAY_V4)),
                    }
                } else {
                    result::Route {
                        dst: "::/0".parse().expect("valid"),
                        gw: Some(IpAddr::V6(GATEWAY_V6)),
                    }
                }
            })
            .collect(),
    };
    Ok(result.to_json(&conf.cni_version).to_string())
}

/// Removes the host veth `host_iface` (the pod end goes with it) and the routes to `ips`
/// through it. A missing veth is fine.
fn remove_host_side(host_iface: &str, ips: &[IpAddr], log: &Logger) -> Result<()> {
    with_netlink(|h| async move {
        let Some(link) = h.link(host_iface).await? else {
            log.info(&format!("{host_iface} does not exist (already deleted)"));
            return Ok(());
        };
        for ip in ips {
            h.delete_routes(&link, host_net(*ip)).await?;
        }
        h.delete_link(&link).await?;
        log.info(&format!("deleted {host_iface}"));
        Ok::<_, CniError>(())
    })
}

/// Tears down one attachment: veth, routes, record, addresses. `fallback_iface` is the
/// name computed from CNI_ARGS, used when there is no record.
fn teardown(
    state_dir: &Path,
    addresses: &Addresses,
    id: &str,
    ifname: &str,
    fallback_iface: Option<String>,
    log: &Logger,
) -> Result<()> {
    let record = read_record(state_dir, id, ifname, log);
    let held = addresses.lookup(id)?;
    let host_iface = record
        .as_ref()
        .map(|r| r.host_iface.clone())
        .or(fallback_iface);
    if let Some(host_iface) = host_iface {
        // Only remove a veth this attachment owns: one its record names or, without a
        // record, one of a half-done ADD that holds addresses. A newer sandbox of the same
        // pod has the same veth name: leave its veth alone.
        let claimed_by_other = endpoint::read_all(state_dir)
            .0
            .iter()
            .any(|r| r.host_iface == host_iface && !(r.container_id == id && r.ifname == ifname));
        if claimed_by_other {
            log.info(&format!(
                "{host_iface} now belongs to another container: not deleting it"
            ));
        } else if record.is_some() || !held.is_empty() {
            let mut ips = held.clone();
            for n in record.iter().flat_map(|r| r.ips.iter()) {
                if !ips.contains(&n.ip()) {
                    ips.push(n.ip());
                }
            }
            remove_host_side(&host_iface, &ips, log)?;
        } else {
            log.info("unknown container: nothing to delete");
        }
    }
    remove_record(state_dir, id, ifname)?;
    crate::endpoint_events::notify(state_dir, id);
    let released = addresses.release(id)?;
    if !released.is_empty() {
        log.info(&format!(
            "released {}",
            released
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

fn cmd_del(conf: &NetConf, env: &CniEnv, log: &Logger) -> Result<()> {
    let fallback = host_veth_name(&env.pod_namespace(), &env.pod_name());
    let _pod_lock = pod_lock(&conf.state_dir, &fallback)?;
    let addresses = Addresses::open_for_release(conf)?;
    if let Err(e) = addresses.clear_annotations(env) {
        log.warn(&format!("clearing the pod's IPAM annotations: {}", e.msg));
    }
    teardown(
        &conf.state_dir,
        &addresses,
        &env.container_id,
        &env.ifname,
        Some(fallback),
        log,
    )
}

fn cmd_check(conf: &NetConf, env: &CniEnv, log: &Logger) -> Result<()> {
    let id = &env.container_id;
    let ifname = &env.ifname;
    let Some(record) = read_record(&conf.state_dir, id, ifname, log) else {
        return Err(CniError::check(format!(
            "no endpoint record for container {id} interface {ifname} ({} is missing)",
            endpoint::record_path(&conf.state_dir, id, ifname).display()
        )));
    };
    let ips: Vec<IpAddr> = record.ips.iter().map(|n| n.ip()).collect();
    let mut held = Addresses::open_for_release(conf)?.lookup(id)?;
    held.sort();
    let mut want = ips.clone();
    want.sort();
    if held != want {
        return Err(CniError::check(format!(
            "the IPAM allocations of container {id} ({held:?}) differ from its endpoint record ({want:?})"
        )));
    }
    if let Some(prev) = &conf.prev_result {
        let mut prev_ips: Vec<IpAddr> = result::addresses_of(prev).iter().map(|n| n.ip()).collect();
        prev_ips.sort();
        if !prev_ips.is_empty() && prev_ips != want {
            return Err(CniError::check(format!(
                "prevResult lists {prev_ips:?} but the pod has {want:?}"
            )));
        }
    }
    let host_iface = record.host_iface.clone();
    // Host side.
    with_netlink(|h| {
        let ips = ips.clone();
        let host_iface = host_iface.clone();
        async move {
            let Some(link) = h.link(&host_iface).await? else {
                return Err(CniError::check(format!(
                    "host veth {host_iface} does not exist"
                )));
            };
            if link.mac != Some(HOST_MAC) {
                return Err(CniError::check(format!(
                    "host veth {host_iface} has MAC {} instead of {HOST_MAC}",
                    link.mac_string()
                )));
            }
            if !link.up {
                return Err(CniError::check(format!("host veth {host_iface} is down")));
            }
            for ip in &ips {
                let routes = h.main_routes(ip.is_ipv6()).await?;
                let dst = host_net(*ip);
                if !routes.iter().any(|r| {
                    r.dst == dst && r.oif() == Some(link.index) && r.protocol == ROUTE_PROTOCOL
                }) {
                    return Err(CniError::check(format!(
                        "the host has no route {dst} dev {host_iface} proto {ROUTE_PROTOCOL}"
                    )));
                }
            }
            Ok(())
        }
    })?;
    // Pod side.
    let ns =
        netns::open(Path::new(&env.netns)).map_err(|e| CniError::check(CniError::from(e).msg))?;
    let ifname = ifname.clone();
    let pod_mac = record.mac.clone();
    in_netns(ns, "checking the pod side", move || {
        with_netlink(|h| async move {
            let Some(link) = h.link(&ifname).await? else {
                return Err(CniError::check(format!(
                    "{ifname} does not exist in the pod"
                )));
            };
            if !link.up {
                return Err(CniError::check(format!("{ifname} is down in the pod")));
            }
            if !pod_mac.is_empty() && link.mac_string() != pod_mac {
                return Err(CniError::check(format!(
                    "{ifname} has MAC {} but the record says {pod_mac}",
                    link.mac_string()
                )));
            }
            let addrs = h.addresses(&link).await?;
            for ip in &ips {
                if !addrs.contains(&host_net(*ip)) {
                    return Err(CniError::check(format!(
                        "{ifname} in the pod does not have {}",
                        host_net(*ip)
                    )));
                }
            }
            if ips.iter().any(IpAddr::is_ipv4) {
                let routes = h.main_routes(false).await?;
                let gw = IpAddr::V4(GATEWAY_V4);
                if !routes.iter().any(|r| {
                    r.dst == host_net(gw) && r.oif() == Some(link.index) && r.gateway().is_none()
                }) {
                    return Err(CniError::check(format!(
                        "the pod has no route {GATEWAY_V4} dev {ifname} scope link"
                    )));
                }
                if !routes.iter().any(|r| {
                    r.dst.prefix() == 0 && r.gateway() == Some(gw) && r.oif() == Some(link.index)
                }) {
                    return Err(CniError::check(format!(
                        "the pod has no route default via {GATEWAY_V4} dev {ifname}"
                    )));
                }
            }
            if ips.iter().any(IpAddr::is_ipv6) {
                let routes = h.main_routes(true).await?;
                if !routes.iter().any(|r| {
                    r.dst.prefix() == 0
                        && r.gateway() == Some(IpAddr::V6(GATEWAY_V6))
                        && r.oif() == Some(link.index)
                }) {
                    return Err(CniError::check(format!(
                        "the pod has no route default via {GATEWAY_V6} dev {ifname}"
                    )));
                }
            }
            Ok(())
        })
    })
}

fn cmd_status(conf: &NetConf) -> Result<()> {
    Addresses::open(conf).map(|_| ()).map_err(|e| {
        CniError::new(
            code::NOT_AVAILABLE,
            format!("brindle-cni cannot add pods: {}", e.msg),
        )
        .with_details(e.details)
    })
}

fn cmd_gc(conf: &NetConf, log: &Logger) -> Result<()> {
    let Some(valid) = &conf.valid_attachments else {
        return Err(CniError::config(
            "GC needs \"cni.dev/valid-attachments\" in the network configuration",
        ));
    };
    let keep = |id: &str, ifname: &str| valid.iter().any(|(v, i)| v == id && i == ifname);
    let addresses = Addresses::open_for_release(conf)?;
    let (records, _) = endpoint::read_all(&conf.state_dir);
    for r in records.iter().filter(|r| !keep(&r.container_id, &r.ifname)) {
        log.info(&format!(
            "GC: removing stale attachment {}/{}",
            r.container_id, r.ifname
        ));
        let _pod_lock = pod_lock(&conf.state_dir, &r.host_iface)?;
        teardown(
            &conf.state_dir,
            &addresses,
            &r.container_id,
            &r.ifname,
            None,
            log,
        )?;
    }
    let released = addresses.release_unless(&|id| valid.iter().any(|(v, _)| v == id))?;
    for h in released {
        log.info(&format!("GC: released the addresses of handle {h}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_match_calico() {
        // sha1("default.nginx") = c440f455693b...
        assert_eq!(host_veth_name("default", "nginx"), "calic440f455693");
        assert_eq!(
            host_veth_name("kube-system", "coredns-5d78c9869d-abcde"),
            "cali4d5f75c480c"
        );
        assert_eq!(host_veth_name("a", "b").len(), 15);
    }

    #[test]
    fn version_and_errors() {
        let env = |k: &str| (k == "CNI_COMMAND").then(|| "VERSION".to_string());
        let out = run(&env, b"");
        assert_eq!(out.exit_code, 0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["supportedVersions"][3], "1.0.0");
        let out = run(&env, br#"{"cniVersion":"0.4.0"}"#);
        assert!(out.stdout.contains("\"cniVersion\":\"0.4.0\""));

        let env = |k: &str| (k == "CNI_COMMAND").then(|| "ADD".to_string());
        let out = run(&env, br#"{"cniVersion":"0.3.1","name":"x"}"#);
        assert_eq!(out.exit_code, 1);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["code"], 4);
        assert_eq!(v["cniVersion"], "0.3.1");
    }
}
