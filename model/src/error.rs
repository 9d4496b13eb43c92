//! [`ConfigError`]: every error names the file, and where it can the resource
//! (`Kind/name`), the field path (`spec.peerIP`) and the YAML line.

use std::fmt;
use std::path::PathBuf;

/// An error in a Calico resource file.
///
/// The `Display` form is one line meant for humans and log lines, e.g.
/// `cluster.yaml: BGPPeer/rack1-tor: spec.peerIP: "10.0.0.300" is not an IP address (line 12)`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed YAML.
    #[error("{file}: invalid YAML: {message}{}", LineSuffix(*line))]
    Yaml {
        file: String,
        line: Option<u64>,
        message: String,
    },
    /// Well-formed YAML that is not a valid set of resources.
    #[error("{}", Located { file, resource: resource.as_deref(), field: field.as_deref(), message, line: *line })]
    Invalid {
        file: String,
        /// `Kind/name`, when the error is inside one resource.
        resource: Option<String>,
        /// Field path inside the resource (`spec.bgp.ipv4Address`, `spec.communities[1].value`).
        field: Option<String>,
        message: String,
        line: Option<u64>,
    },
}

impl ConfigError {
    /// The 1-based YAML line the error points at, when known.
    pub fn line(&self) -> Option<u64> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Yaml { line, .. } | ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// The `Kind/name` of the resource the error is about, when known.
    pub fn resource(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { resource, .. } => resource.as_deref(),
            _ => None,
        }
    }

    /// The field path the error is about, when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    pub fn invalid(
        file: &str,
        resource: Option<String>,
        field: Option<String>,
        message: impl Into<String>,
        line: Option<u64>,
    ) -> Self {
        ConfigError::Invalid {
            file: file.to_string(),
            resource,
            field,
            message: message.into(),
            line: line.filter(|l| *l > 0),
        }
    }
}

struct LineSuffix(Option<u64>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) if line > 0 => write!(f, " (line {line})"),
            _ => Ok(()),
        }
    }
}

struct Located<'a> {
    file: &'a str,
    resource: Option<&'a str>,
    field: Option<&'a str>,
    message: &'a str,
    line: Option<u64>,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(resource) = self.resource {
            write!(f, "{resource}: ")?;
        }
        if let Some(field) = self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}{}", self.message, LineSuffix(self.line))
    }
}

/// Levenshtein distance, for "did you mean" hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `input` (case-insensitive), if it is close enough to be a
/// plausible typo.
pub(crate) fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = input.to_ascii_lowercase();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .min_by_key(|(d, _)| *d)?;
    let limit = (input.chars().count() / 3).max(2);
    (best.0 <= limit).then_some(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_and_hint() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            closest("asnumber", &["asNumber", "peerIP"]),
            Some("asNumber")
        );
        assert_eq!(closest("peerIp", &["asNumber", "peerIP"]), Some("peerIP"));
        assert_eq!(closest("zzzzzzzz", &["asNumber", "peerIP"]), None);
    }

    #[test]
    fn display_forms() {
        let e = ConfigError::invalid(
            "cluster.yaml",
            Some("BGPPeer/rack1-tor".into()),
            Some("spec.peerIP".into()),
            "\"10.0.0.300\" is not an IP address",
            Some(12),
        );
        assert_eq!(
            e.to_string(),
            "cluster.yaml: BGPPeer/rack1-tor: spec.peerIP: \"10.0.0.300\" is not an IP address (line 12)"
        );
        let e = ConfigError::invalid("c.yaml", None, None, "empty", None);
        assert_eq!(e.to_string(), "c.yaml: empty");
        let e = ConfigError::Yaml {
            file: "c.yaml".into(),
            line: Some(3),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "c.yaml: invalid YAML: bad (line 3)");
    }
}
