//! Readers for the value types that recur across kinds (AS numbers, ports, durations,
//! networks, selectors, enums, passwords, MAC addresses, Calico names), each naming the
//! field in its errors; and [`warn`] for valid but suspicious values.

use super::yaml::{Field, Value};
use crate::calico::{PasswordSource, SecretKeyRef};
use crate::error::{closest, ConfigError};
use crate::selector::Selector;
use crate::values::{parse_go_duration, parse_network};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Records a warning about `f` (formatted like an error naming the file, resource, field
/// and line).
pub(crate) fn warn(f: &Field, message: impl Into<String>) {
    let text = f.err(message).to_string();
    f.ctx.warnings.borrow_mut().push(text);
}

/// Records that the value of `f` is valid but has no effect in Brindle (yet).
pub(crate) fn ignored(f: &Field) {
    f.ctx.ignored(&f.path, f.node.line);
}

/// An AS number: 1..=4294967295, as an integer, a numeric string or asdot ("1.10").
pub(crate) fn as_number(f: &Field) -> Result<u32, ConfigError> {
    let range = || f.err("AS number must be between 1 and 4294967295");
    let v: i128 = match &f.node.value {
        Value::Int(i) => *i,
        Value::Float(_) => {
            return Err(
                f.err("AS number must be an integer (asdot notation must be quoted: \"1.10\")")
            )
        }
        Value::Str(s) => return crate::values::parse_as_number(s).map_err(|m| f.err(m)),
        other => {
            return Err(f.err(format!(
                "expected an AS number, found {}",
                other.type_name()
            )))
        }
    };
    if !(1..=4_294_967_295).contains(&v) {
        return Err(range());
    }
    Ok(v as u32)
}

pub(crate) fn port(f: &Field) -> Result<u16, ConfigError> {
    Ok(f.int(1, 65535)? as u16)
}

pub(crate) fn duration(f: &Field) -> Result<Duration, ConfigError> {
    match &f.node.value {
        Value::Str(s) => parse_go_duration(s).map_err(|m| f.err(m)),
        Value::Int(i) => Err(f.err(format!(
            "expected a duration string with a unit (e.g. \"{i}s\"), found a bare number"
        ))),
        other => Err(f.err(format!(
            "expected a duration like \"120s\", found {}",
            other.type_name()
        ))),
    }
}

pub(crate) fn network(f: &Field) -> Result<IpNetwork, ConfigError> {
    parse_network(f.str()?).map_err(|m| f.err(m))
}

pub(crate) fn ipv4(f: &Field) -> Result<Ipv4Addr, ConfigError> {
    let s = f.str()?;
    s.trim()
        .parse::<Ipv4Addr>()
        .map_err(|_| f.err(format!("{s:?} is not an IPv4 address")))
}

pub(crate) fn ipv6(f: &Field) -> Result<Ipv6Addr, ConfigError> {
    let s = f.str()?;
    s.trim()
        .parse::<Ipv6Addr>()
        .map_err(|_| f.err(format!("{s:?} is not an IPv6 address")))
}

pub(crate) fn ip(f: &Field) -> Result<IpAddr, ConfigError> {
    let s = f.str()?;
    s.trim()
        .parse::<IpAddr>()
        .map_err(|_| f.err(format!("{s:?} is not an IP address")))
}

/// An address with an optional prefix length, host bits allowed (Calico's `cidrv4`,
/// `cidrv6`: `10.0.0.1/24`, or a bare address taken as /32 or /128).
pub(crate) fn ip_or_cidr(f: &Field) -> Result<IpNetwork, ConfigError> {
    let s = f.str()?;
    let t = s.trim();
    if !t.contains('/') {
        return match t.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Ok(IpNetwork::V4(Ipv4Network::from(a))),
            Ok(IpAddr::V6(a)) => Ok(IpNetwork::V6(Ipv6Network::from(a))),
            Err(_) => Err(f.err(format!("{s:?} is not a CIDR"))),
        };
    }
    t.parse::<IpNetwork>()
        .map_err(|_| f.err(format!("{s:?} is not a CIDR")))
}

/// A MAC address in one of the forms Go's `net.ParseMAC` reads (6, 8 or 20 octets,
/// `aa:bb:..`, `aa-bb-..` or `aabb.ccdd...`). Returned as written.
pub(crate) fn mac(f: &Field) -> Result<String, ConfigError> {
    let s = f.str()?;
    let hex_groups = |sep: char, width: usize, counts: &[usize]| {
        let groups: Vec<&str> = s.split(sep).collect();
        counts.contains(&groups.len())
            && groups
                .iter()
                .all(|g| g.len() == width && g.chars().all(|c| c.is_ascii_hexdigit()))
    };
    let ok = hex_groups(':', 2, &[6, 8, 20])
        || hex_groups('-', 2, &[6, 8, 20])
        || hex_groups('.', 4, &[3, 4, 10]);
    if !ok {
        return Err(f.err(format!(
            "{s:?} is not a MAC address (e.g. \"66:d0:ad:1b:39:5e\")"
        )));
    }
    Ok(s.to_string())
}

/// Whether `s` is a valid Calico resource name (a DNS subdomain: lowercase letters,
/// digits, '-' and '.', each label starting and ending with a letter or digit).
pub(crate) fn is_calico_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A string that must be a Calico resource name (`what` says what it names).
pub(crate) fn calico_name(f: &Field, what: &str) -> Result<String, ConfigError> {
    let s = f.string()?;
    if !is_calico_name(&s) {
        return Err(f.err(format!(
            "{s:?} is not a valid {what} name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        )));
    }
    Ok(s)
}

pub(crate) fn selector(f: &Field) -> Result<Selector, ConfigError> {
    let s = f.str()?;
    Selector::parse(s).map_err(|m| f.err(format!("invalid selector {s:?}: {m}")))
}

pub(crate) fn enum_value<T: Copy>(
    f: &Field,
    options: &[(&'static str, T)],
) -> Result<T, ConfigError> {
    let s = f.str()?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
        return Ok(*v);
    }
    let names: Vec<&str> = options
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !n.is_empty())
        .collect();
    let hint = match closest(s, &names) {
        Some(n) => format!("; did you mean {n}?"),
        None => String::new(),
    };
    Err(f.err(format!("{s:?} is not one of {}{hint}", names.join(", "))))
}

pub(crate) fn string_list(f: &Field) -> Result<Vec<String>, ConfigError> {
    f.seq()?.iter().map(|i| i.string()).collect()
}

/// A password: Calico's `{secretKeyRef: {name, key, optional}}`, or (Brindle extension,
/// for file mode) the password itself, `{value: "..."}`. A Secret is not read here: the
/// caller resolves it, and until then the sessions have no password; the warning says so.
pub(crate) fn password(f: &Field) -> Result<PasswordSource, ConfigError> {
    let m = f.map(&["value", "secretKeyRef"])?;
    match (m.get("value"), m.get("secretKeyRef")) {
        (Some(_), Some(r)) => Err(r.err(format!(
            "set either {0}.value or {0}.secretKeyRef, not both",
            f.path
        ))),
        (Some(v), None) => {
            let s = v.string()?;
            if s.is_empty() {
                return Err(v.err("password must not be empty"));
            }
            if s.len() > 80 {
                return Err(v.err("password is longer than 80 bytes (the TCP-MD5 key limit)"));
            }
            Ok(PasswordSource::Value(s))
        }
        (None, Some(r)) => {
            let k = r.map(&["name", "key", "optional"])?;
            let key_f = k.required("key")?;
            let key = key_f.string()?;
            if key.is_empty() {
                return Err(key_f.err("the Secret's key must not be empty"));
            }
            let name = k.opt("name", |n| n.string())?.unwrap_or_default();
            let optional = k.opt("optional", |o| o.bool())?.unwrap_or(false);
            if name.is_empty() {
                warn(
                    &r,
                    "secretKeyRef has no name: it can never be resolved, so these sessions have no password",
                );
            } else {
                warn(
                    &r,
                    format!(
                        "Brindle does not read Kubernetes Secrets yet: these sessions have no password (not the one in Secret {name:?}, key {key:?}); in file mode put the password itself in {}.value",
                        f.path
                    ),
                );
            }
            Ok(PasswordSource::SecretKeyRef(SecretKeyRef {
                name,
                key,
                optional,
            }))
        }
        (None, None) => Err(f.err(
            "needs secretKeyRef (a key of a Kubernetes Secret) or, in file mode, value (the password itself)",
        )),
    }
}

pub(crate) fn cidr_list(f: &Field) -> Result<Vec<IpNetwork>, ConfigError> {
    f.seq()?
        .iter()
        .map(|item| {
            let m = item.map(&["cidr"])?;
            network(&m.required("cidr")?)
        })
        .collect()
}
