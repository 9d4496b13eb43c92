//! Decoding of resources from YAML and JSON into the domain types of [`crate::calico`]
//! (and, later, the Kubernetes kinds): a location-preserving tree ([`yaml`]) and one
//! decoder per kind that validates each field and names it in errors.

pub(crate) mod calico;
pub(crate) mod yaml;

pub use calico::RawResource;
pub(crate) use calico::{decode_document, Decoded, Resource};
