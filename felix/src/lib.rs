//! Brindle's dataplane (felix).
//!
//! Owns the node's kernel state for pods: a pure calculation from the [`model::Model`]
//! (local endpoints, IP pools, own blocks, remote nodes, learned BGP routes) to the desired
//! kernel state, and reconcilers that diff it against the kernel over netlink and repair
//! drift. Also owns the endpoint records the CNI plugin hands to the agent
//! ([`endpoint`]).

pub mod endpoint;
pub mod model;
