//! Scalar value syntaxes used by Calico resources: Go durations, BGP communities,
//! `peerIP` with optional port, CIDRs.

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// A BGP community attached to an advertised prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Community {
    /// RFC 1997 community, `(aa << 16) | nn`.
    Standard(u32),
    /// RFC 8092 large community `global:local1:local2`.
    Large(u32, u32, u32),
}

impl Community {
    /// Parses `"aa:nn"` (16-bit parts) or `"aa:nn:mm"` (32-bit parts).
    pub fn parse(s: &str) -> Result<Community, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let bad = || {
            format!(
                "{s:?} is not a community (expected \"aa:nn\" with 16-bit numbers or \"aa:nn:mm\" with 32-bit numbers)"
            )
        };
        match parts.as_slice() {
            [a, n] => {
                let a: u16 = a.parse().map_err(|_| bad())?;
                let n: u16 = n.parse().map_err(|_| bad())?;
                Ok(Community::Standard((u32::from(a) << 16) | u32::from(n)))
            }
            [a, b, c] => {
                let a: u32 = a.parse().map_err(|_| bad())?;
                let b: u32 = b.parse().map_err(|_| bad())?;
                let c: u32 = c.parse().map_err(|_| bad())?;
                Ok(Community::Large(a, b, c))
            }
            _ => Err(bad()),
        }
    }

    /// True when the text looks like a literal community rather than a name.
    pub(crate) fn looks_literal(s: &str) -> bool {
        s.contains(':') && s.split(':').all(|p| p.chars().all(|c| c.is_ascii_digit()))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Community::Standard(v) => write!(f, "{}:{}", v >> 16, v & 0xffff),
            Community::Large(a, b, c) => write!(f, "{a}:{b}:{c}"),
        }
    }
}

/// Parses a Go `time.Duration` string: `"120s"`, `"2m"`, `"1h30m"`, `"500ms"`, `"1.5s"`, `"0"`.
/// An AS number written as text: `65000` or asdot `1.10`, in 1..=4294967295.
pub fn parse_as_number(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not an AS number");
    let v: u64 = if let Some((hi, lo)) = s.split_once('.') {
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        (u64::from(hi) << 16) | u64::from(lo)
    } else {
        s.parse().map_err(|_| bad())?
    };
    if !(1..=4_294_967_295).contains(&v) {
        return Err("AS number must be between 1 and 4294967295".into());
    }
    Ok(v as u32)
}

pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad =
        |why: &str| format!("{s:?} is not a duration ({why}; e.g. \"120s\", \"1h30m\", \"500ms\")");
    let text = s.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if text.starts_with('-') {
        return Err(bad("negative"));
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let mut total: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad("expected a number"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad("bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit; use ns, us, ms, s, m or h")),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad("too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way Go would for whole units (`"2m0s"` style is not needed here;
/// this is only used in messages).
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parses Calico's `peerIP`: `"a.b.c.d"`, `"a.b.c.d:port"`, `"x::y"`, `"[x::y]:port"`.
pub fn parse_peer_ip(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let text = s.trim();
    let not_ip = || format!("{s:?} is not an IP address");
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{s:?}: {p:?} is not a valid port (1..65535)")),
            Ok(port) => Ok(port),
        }
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(not_ip)?;
        let ip: std::net::Ipv6Addr = addr.parse().map_err(|_| not_ip())?;
        return match after {
            "" => Ok((IpAddr::V6(ip), None)),
            p => Ok((
                IpAddr::V6(ip),
                Some(port(p.strip_prefix(':').ok_or_else(not_ip)?)?),
            )),
        };
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Some((addr, p)) = text.rsplit_once(':') {
        if let Ok(ip) = addr.parse::<std::net::Ipv4Addr>() {
            return Ok((IpAddr::V4(ip), Some(port(p)?)));
        }
    }
    Err(not_ip())
}

/// Parses a CIDR; a bare address is refused (`what` names the expected form in the message).
pub fn parse_cidr(s: &str) -> Result<IpNetwork, String> {
    let text = s.trim();
    if !text.contains('/') {
        if text.parse::<IpAddr>().is_ok() {
            let len = if text.contains(':') { 128 } else { 32 };
            return Err(format!(
                "{s:?} is not a CIDR: add the prefix length (e.g. \"{text}/{len}\")"
            ));
        }
        return Err(format!("{s:?} is not a CIDR"));
    }
    text.parse::<IpNetwork>()
        .map_err(|_| format!("{s:?} is not a CIDR"))
}

/// Parses a CIDR that must be a network address (no host bits set).
pub fn parse_network(s: &str) -> Result<IpNetwork, String> {
    let net = parse_cidr(s)?;
    let canonical = IpNetwork::new(net.network(), net.prefix()).expect("valid prefix");
    if canonical.ip() != net.ip() {
        return Err(format!(
            "{s:?} has host bits set; did you mean \"{canonical}\"?"
        ));
    }
    Ok(canonical)
}

/// Whether `outer` contains all of `inner`.
pub fn net_contains(outer: &IpNetwork, inner: &IpNetwork) -> bool {
    outer.is_ipv4() == inner.is_ipv4()
        && outer.prefix() <= inner.prefix()
        && outer.contains(inner.network())
}

/// Whether two networks share any address.
pub fn nets_overlap(a: &IpNetwork, b: &IpNetwork) -> bool {
    net_contains(a, b) || net_contains(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("120s").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_go_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        for bad in ["", "120", "-5s", "5x", "s", "1h-3m", "abc"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn communities() {
        assert_eq!(
            Community::parse("65000:100").unwrap(),
            Community::Standard((65000 << 16) | 100)
        );
        assert_eq!(
            Community::parse("4200000000:1:2").unwrap(),
            Community::Large(4200000000, 1, 2)
        );
        assert!(Community::parse("70000:1").is_err());
        assert!(Community::parse("1").is_err());
        assert!(Community::parse("a:b").is_err());
        assert_eq!(
            Community::Standard((65000 << 16) | 100).to_string(),
            "65000:100"
        );
        assert_eq!(Community::Large(1, 2, 3).to_string(), "1:2:3");
        assert!(Community::looks_literal("65000:100"));
        assert!(!Community::looks_literal("no-export"));
    }

    #[test]
    fn peer_ips() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(parse_peer_ip("10.0.0.1").unwrap(), (v4, None));
        assert_eq!(parse_peer_ip("10.0.0.1:1790").unwrap(), (v4, Some(1790)));
        assert_eq!(parse_peer_ip("2001:db8::1").unwrap(), (v6, None));
        assert_eq!(
            parse_peer_ip("[2001:db8::1]:1790").unwrap(),
            (v6, Some(1790))
        );
        assert_eq!(parse_peer_ip("[2001:db8::1]").unwrap(), (v6, None));
        assert_eq!(
            parse_peer_ip("10.0.0.300").unwrap_err(),
            "\"10.0.0.300\" is not an IP address"
        );
        assert!(parse_peer_ip("10.0.0.1:0").is_err());
        assert!(parse_peer_ip("10.0.0.1:70000").is_err());
        assert!(parse_peer_ip("[2001:db8::1]1790").is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_network("10.65.0.0/16").unwrap(),
            "10.65.0.0/16".parse::<IpNetwork>().unwrap()
        );
        assert!(parse_network("10.65.1.0/16")
            .unwrap_err()
            .contains("did you mean \"10.65.0.0/16\""));
        assert!(parse_cidr("10.0.0.1").unwrap_err().contains("10.0.0.1/32"));
        assert!(parse_cidr("10.0.0.1/33").is_err());
        let a: IpNetwork = "10.65.0.0/16".parse().unwrap();
        let b: IpNetwork = "10.65.0.64/26".parse().unwrap();
        let c: IpNetwork = "10.66.0.0/26".parse().unwrap();
        assert!(net_contains(&a, &b));
        assert!(!net_contains(&b, &a));
        assert!(!net_contains(&a, &c));
        assert!(nets_overlap(&b, &a));
        assert!(!nets_overlap(&a, &c));
    }
}
