//! CNI errors: the `{"cniVersion","code","msg","details"}` object printed on stdout.

use serde::Serialize;
use std::fmt;

/// Error codes from the CNI specification (0-99 are reserved by the spec).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid necessary environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, ...).
    pub const INVALID_ENV: u32 = 7;
    /// Try again later (a transient condition, e.g. the IPAM lock is held too long).
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available (cannot serve ADD requests).
    pub const NOT_AVAILABLE: u32 = 50;

    /// Brindle: a netlink operation failed (creating the veth, addresses, routes...).
    pub const NETLINK: u32 = 100;
    /// Brindle: no free address in the node's blocks.
    pub const IPAM_EXHAUSTED: u32 = 101;
    /// Brindle: the node has no block of its own (no confirmed BlockAffinity).
    pub const NO_BLOCK: u32 = 102;
    /// Brindle: CHECK found the pod's network different from what ADD set up.
    pub const CHECK_FAILED: u32 = 103;
    /// Brindle: the pod's network namespace cannot be entered.
    pub const NETNS: u32 = 104;
    /// Brindle: internal error (a bug).
    pub const INTERNAL: u32 = 199;
}

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }

    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, msg)
    }

    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(code::IO_FAILURE, msg)
    }

    pub fn netlink(msg: impl Into<String>) -> Self {
        Self::new(code::NETLINK, msg)
    }

    pub fn check(msg: impl Into<String>) -> Self {
        Self::new(code::CHECK_FAILED, msg)
    }

    /// The JSON object printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_else(|_| {
            format!(
                "{{\"cniVersion\":\"{cni_version}\",\"code\":{},\"msg\":\"error\"}}",
                self.code
            )
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

pub type Result<T, E = CniError> = std::result::Result<T, E>;
