//! Pure calculations from the resource model to what the node should do: the BGP plan
//! (sessions and originated prefixes, as Calico's confd derives them) and the service
//! addresses it advertises.

pub mod plan;
pub mod services;

pub use plan::{node_plan, Advertisement, NodePlan, PeerPlan};
