//! Readers for the value types that recur across kinds (AS numbers, ports, durations,
//! networks, selectors, enums, passwords), each naming the field in its errors.

use super::yaml::{Field, Value};
use crate::error::{closest, ConfigError};
use crate::selector::Selector;
use crate::values::{parse_go_duration, parse_network};
use ipnetwork::IpNetwork;
use std::net::Ipv4Addr;
use std::time::Duration;

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

/// A password: `{value: "..."}` in file mode; `secretKeyRef` is explained away.
pub(crate) fn password(f: &Field) -> Result<String, ConfigError> {
    let m = f.map(&["value", "secretKeyRef"])?;
    if let Some(r) = m.get("secretKeyRef") {
        return Err(r.err(format!(
            "Kubernetes secrets are not available in file mode; put the password itself in {}.value instead",
            f.path
        )));
    }
    let v = m.required("value")?;
    let s = v.string()?;
    if s.is_empty() {
        return Err(v.err("password must not be empty"));
    }
    if s.len() > 80 {
        return Err(v.err("password is longer than 80 bytes (the TCP-MD5 key limit)"));
    }
    Ok(s)
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
