//! Brindle's dataplane (felix): every piece of kernel networking Brindle does, for the
//! node agent and the CNI plugin alike.
//!
//! [`calc::desired`] turns the [`model::Model`] (local endpoints, IP pools, own blocks,
//! remote nodes, learned BGP routes, resolved network policy) into the desired kernel
//! state, purely. The
//! reconcilers ([`reconcile`]: one trait, observe → plan → apply, one report type; over
//! [`links`], [`sysctl`], [`neigh`], [`routes`] and the pod MTU file) diff it against the
//! kernel over netlink and `/proc/sys` and apply the difference in batches, touching only what
//! is Brindle's (route protocol [`calc::ROUTE_PROTOCOL`], `cali*`, `tunl0`,
//! `vxlan.brindle`, the `brl-` iptables chains and `brl4-`/`brl6-` ipsets). [`dataplane::Dataplane`] ties them together: `apply` once, or `run`
//! to re-apply on model changes, kernel events and a periodic resync. [`podnet`] is what
//! the CNI plugin builds for one pod (veth pair, the pod's addresses and routes, the host
//! route) with the same netlink plumbing (strict checking, a timeout on every request)
//! and message builders, [`netns`] runs it inside the pod's network namespace, and
//! [`sysctl`] tables the sysctls of both ends of a pod's veth. [`endpoint`] holds the
//! records the CNI plugin hands to the agent. [`policy_render`] renders a resolved policy
//! program (`brindle_model::resolved`, which the policy compiler fills from Kubernetes
//! and Calico objects so that felix knows neither) into iptables chains and ipsets in
//! Felix's structure (workloads, and host endpoints with their failsafe ports),
//! incrementally, and [`policy_apply`] applies it (ipset swaps, one `iptables-restore`
//! per table and change, the jumps from the kernel chains, drift repair by `brl:` rule
//! hashes). [`nat_outgoing`] masquerades `natOutgoing` pools' traffic leaving the pools,
//! applied the same way; [`policy_reconcile`] makes both reconcilers of the same list as
//! routes and links, with the iptables backend (legacy or nf_tables) [`iptables_backend`]
//! detects as Felix does.

pub mod calc;
pub mod dataplane;
pub mod endpoint;
pub mod iptables_backend;
pub mod links;
pub mod model;
pub mod nat_outgoing;
pub mod neigh;
pub mod netns;
mod nl;
pub mod podnet;
pub mod policy_apply;
pub mod policy_reconcile;
pub mod policy_render;
pub mod reconcile;
pub mod routes;
pub mod sysctl;

pub use calc::{desired, host_mtu, Desired, RpFilterPolicy, Warning, ROUTE_PROTOCOL};
pub use dataplane::{cleanup, ApplyReport, CleanupReport, Dataplane, DataplaneConfig};
