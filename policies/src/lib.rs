//! Brindle's network policy compiler. It owns the meaning of policy: Kubernetes
//! `networking.k8s.io/v1` NetworkPolicy compiled ([`kubernetes`]) into a backend-neutral
//! program ([`ir`]: per policy, ordered ingress and egress rules of match → action, and
//! the address and named-port sets they reference, defined by what selects their
//! members), the endpoints and namespaces policy is about ([`world`]), and an evaluator
//! ([`evaluate`]) that answers, on that same program, whether a flow is allowed and which
//! policy and rule decided. Calico `NetworkPolicy`/`GlobalNetworkPolicy` compile into
//! the same form ([`calico`]: orders, Deny, Pass, Log, Calico selectors over the labels
//! Felix gives an endpoint). Pure: no I/O, no kernel; felix renders the program into
//! iptables and ipsets. Tiers other than `default` are ordered by name until Tier
//! objects are read.

pub mod calico;
pub mod evaluate;
pub mod ir;
pub mod kubernetes;
pub mod world;

pub use evaluate::{evaluate, Decision, Flow};
pub use ir::{Action, Direction, PolicyId, Program};
pub use world::{Endpoint, World};
