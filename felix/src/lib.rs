//! Brindle's dataplane (felix).
//!
//! [`calc::desired`] turns the [`model::Model`] (local endpoints, IP pools, own blocks,
//! remote nodes, learned BGP routes) into the desired kernel state, purely. The
//! reconcilers ([`links`], [`sysctl`], [`neigh`], [`routes`]) diff it against the kernel
//! over netlink and `/proc/sys` and apply the difference in batches, touching only what
//! is Brindle's (route protocol [`calc::ROUTE_PROTOCOL`], `cali*`, `tunl0`,
//! `vxlan.brindle`). [`dataplane::Dataplane`] ties them together: `apply` once, or `run`
//! to re-apply on model changes, kernel events and a periodic resync. [`endpoint`] holds
//! the records the CNI plugin hands to the agent.

pub mod calc;
pub mod dataplane;
pub mod endpoint;
pub mod links;
pub mod model;
pub mod neigh;
mod nl;
pub mod routes;
pub mod sysctl;

pub use calc::{desired, host_mtu, Desired, RpFilterPolicy, Warning, ROUTE_PROTOCOL};
pub use dataplane::{cleanup, ApplyReport, CleanupReport, Dataplane, DataplaneConfig};
