//! `brindlectl policy explain`: the verdict on one flow and what decided it, from the
//! compiled policy program ([`brindle_policies`]), worded for an operator.

use brindle_policies::evaluate::{Decision, Step};
use brindle_policies::{Flow, World};
use std::net::IpAddr;

/// `NS/POD`, `hep/NAME` (a host endpoint's first `expectedIPs` address) or an IP
/// address, resolved on the world.
pub fn resolve(world: &World, what: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = what.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Some(name) = what
        .strip_prefix("hep/")
        .or_else(|| what.strip_prefix("hostendpoint/"))
    {
        let e = world
            .endpoints
            .iter()
            .find(|e| e.is_host() && e.name == name)
            .ok_or_else(|| format!("there is no HostEndpoint {name}"))?;
        return e.ips.first().copied().ok_or_else(|| {
            format!("HostEndpoint {name} has no expectedIPs: give its address instead")
        });
    }
    let (ns, pod) = what
        .split_once('/')
        .ok_or_else(|| format!("{what:?} is neither NAMESPACE/POD nor an IP address"))?;
    let e = world
        .endpoints
        .iter()
        .find(|e| !e.is_host() && e.namespace == ns && e.name == pod)
        .ok_or_else(|| {
            format!("there is no workload pod {ns}/{pod} (scheduled, with an address)")
        })?;
    e.ips
        .first()
        .copied()
        .ok_or_else(|| format!("pod {ns}/{pod} has no address"))
}

/// `N`, `N/tcp`, `N/udp`, `N/sctp`, `icmp`, `icmp/TYPE`: (protocol, port or ICMP type).
pub fn parse_port(s: &str) -> Result<(u8, Option<u16>), String> {
    let (a, b) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let proto = |p: &str| match p.to_ascii_lowercase().as_str() {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "sctp" => Ok(132),
        "icmp" => Ok(1),
        "icmpv6" => Ok(58),
        other => Err(format!(
            "unknown protocol {other:?} (tcp, udp, sctp, icmp, icmpv6)"
        )),
    };
    if let Ok(p) = proto(a) {
        if p == 1 || p == 58 {
            let t = b
                .map(|t| t.parse::<u16>().map_err(|_| format!("bad ICMP type {t:?}")))
                .transpose()?;
            return Ok((p, t));
        }
    }
    let port: u16 = a
        .parse()
        .map_err(|_| format!("{s:?}: expected PORT[/PROTOCOL], e.g. 5432/tcp, or icmp[/TYPE]"))?;
    Ok((b.map(proto).transpose()?.unwrap_or(6), Some(port)))
}

fn who(world: &World, ip: IpAddr) -> String {
    match world.endpoint_at(ip) {
        Some(e) if e.is_host() => format!("HostEndpoint {} ({ip})", e.name),
        Some(e) => format!("{}/{} ({ip})", e.namespace, e.name),
        None => ip.to_string(),
    }
}

fn step_text(step: &Step, dir: &str) -> String {
    match step {
        Step::NotAnEndpoint => format!(
            "{dir}: not a workload or host endpoint here (or a host endpoint without interfaceName): no policy applies"
        ),
        Step::Failsafe { port } => {
            format!("{dir}: allowed: failsafe port {port} (host endpoint; no policy can close it)")
        }
        Step::ProfileAllowed => format!(
            "{dir}: allowed: no policy decided; the host endpoint's profile projectcalico-default-allow allows"
        ),
        Step::HostEndpointDefaultDeny { policies } if policies.is_empty() => format!(
            "{dir}: denied: no policy selects the host endpoint for {dir} and it has no profile that allows (host endpoints are default-deny)"
        ),
        Step::HostEndpointDefaultDeny { policies } => format!(
            "{dir}: denied: every tier passed it on and the host endpoint has no profile that allows (after {})",
            policies
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Step::NotIsolated => {
            format!("{dir}: allowed: no policy selects the pod for {dir} (not isolated)")
        }
        Step::Passed => {
            format!("{dir}: allowed: every tier passed it on; the namespace's profile allows")
        }
        Step::Rule {
            policy,
            rule,
            action,
        } => {
            let verb = match action {
                brindle_policies::Action::Allow => "allowed",
                brindle_policies::Action::Deny => "denied",
                brindle_policies::Action::Pass => "passed",
                brindle_policies::Action::Log => "logged",
            };
            format!("{dir}: {verb} by {policy}, {dir} rule {rule}")
        }
        Step::EndOfTier { tier, policies } => format!(
            "{dir}: denied: no rule allowed it; tier {tier:?} ends with a drop after {}",
            policies
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The explanation, as `policy explain` prints it.
pub fn render(world: &World, flow: &Flow, d: &Decision) -> String {
    let what = match flow.protocol {
        1 | 58 => format!(
            "{}{}",
            if flow.protocol == 1 { "icmp" } else { "icmpv6" },
            flow.port.map(|t| format!(" type {t}")).unwrap_or_default()
        ),
        p => {
            let name = match p {
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                132 => "sctp".to_string(),
                n => format!("protocol {n}"),
            };
            format!(
                "{}/{name}",
                flow.port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "*".into())
            )
        }
    };
    format!(
        "{}{} -> {} {what}: {}\n  {}\n  {}\n",
        who(world, flow.src),
        flow.src_port
            .map(|p| format!(" port {p}"))
            .unwrap_or_default(),
        who(world, flow.dst),
        if d.allowed { "ALLOWED" } else { "DENIED" },
        step_text(&d.egress, "egress"),
        step_text(&d.ingress, "ingress"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_policies::{evaluate, program_of, world_of};

    const YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {nodeName: n1}\nstatus: {phase: Running, podIP: 10.1.0.1}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {nodeName: n1}\nstatus: {phase: Running, podIP: 10.1.0.2}\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]\n";

    #[test]
    fn explains_allow_and_deny() {
        let cfg = brindle_model::parse("p.yaml", YAML).unwrap();
        let (program, warnings) = program_of(&cfg);
        assert!(warnings.is_empty());
        let world = world_of(&cfg);
        let (proto, port) = parse_port("5432/tcp").unwrap();
        let flow = Flow {
            src: resolve(&world, "shop/web").unwrap(),
            dst: resolve(&world, "shop/db").unwrap(),
            protocol: proto,
            port,
            src_port: None,
        };
        let out = render(&world, &flow, &evaluate(&program, &world, &flow));
        assert_eq!(
            out,
            "shop/web (10.1.0.1) -> shop/db (10.1.0.2) 5432/tcp: ALLOWED\n  egress: allowed: no policy selects the pod for egress (not isolated)\n  ingress: allowed by KubernetesNetworkPolicy shop/db, ingress rule 0\n"
        );
        let flow = Flow {
            port: Some(22),
            src_port: None,
            ..flow
        };
        let out = render(&world, &flow, &evaluate(&program, &world, &flow));
        assert!(out.contains("22/tcp: DENIED\n"), "{out}");
        assert!(out.contains("ingress: denied: no rule allowed it; tier \"default\" ends with a drop after KubernetesNetworkPolicy shop/db"), "{out}");
        assert!(resolve(&world, "shop/nope").is_err());
        assert_eq!(parse_port("icmp/8").unwrap(), (1, Some(8)));
        assert_eq!(parse_port("53/udp").unwrap(), (17, Some(53)));
        assert!(parse_port("x").is_err());
    }

    #[test]
    fn explains_host_endpoint_flows_and_failsafe_ports() {
        let yaml = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: n1-eth0, labels: {role: node}}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.1]}\n---\n\
            apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: web}\nspec:\n  selector: role == 'node'\n  types: [Ingress]\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]\n";
        let cfg = brindle_model::parse("p.yaml", yaml).unwrap();
        let (program, _) = program_of(&cfg);
        let world = world_of(&cfg);
        let explain = |port: &str| {
            let (protocol, port) = parse_port(port).unwrap();
            let flow = Flow {
                src: resolve(&world, "192.0.2.254").unwrap(),
                dst: resolve(&world, "hep/n1-eth0").unwrap(),
                protocol,
                port,
                src_port: None,
            };
            render(&world, &flow, &evaluate(&program, &world, &flow))
        };
        let out = explain("22/tcp");
        assert!(
            out.contains("-> HostEndpoint n1-eth0 (192.0.2.1) 22/tcp: ALLOWED"),
            "{out}"
        );
        assert!(
            out.contains("ingress: allowed: failsafe port tcp:22"),
            "{out}"
        );
        let out = explain("8080");
        assert!(
            out.contains("allowed by GlobalNetworkPolicy web, ingress rule 0"),
            "{out}"
        );
        let out = explain("9090");
        assert!(out.contains("9090/tcp: DENIED"), "{out}");
        assert!(
            out.contains("tier \"default\" ends with a drop after GlobalNetworkPolicy web"),
            "{out}"
        );
    }
}
