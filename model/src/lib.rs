//! Brindle's resource model, shared by every crate: the Calico kinds (`projectcalico.org/v3`)
//! as domain types ([`calico`]), their decoding from YAML/JSON with errors that name the
//! file, resource, field and line ([`decode`]), Calico's selector language ([`selector`]),
//! value types and parsers ([`values`]), the resolved policy program that the policy
//! compiler hands to felix ([`resolved`]), and [`ClusterConfig`], one checked snapshot of
//! the cluster's resources. No I/O beyond reading a named file in [`load`]; everything
//! here is pure and deterministic.

pub mod calico;
pub mod cluster;
pub mod decode;
pub mod error;
pub mod intern;
pub mod kind;
pub mod kubernetes;
pub mod policy;
pub mod resolved;
pub mod selector;
pub mod values;

pub use calico::*;
pub use cluster::*;
pub use decode::{decode_json, Object, RawResource, Resource};
pub use error::ConfigError;
pub use kind::{Kind, API_VERSION, CRD_API_VERSION};
pub use selector::Selector;
pub use values::{format_duration, parse_go_duration, parse_peer_ip, Community};

#[cfg(test)]
mod tests;
