//! Pure calculations from the resource model to what the node should do: the BGP plan
//! (sessions and originated prefixes, as Calico's confd derives them).

pub mod plan;

pub use plan::{node_plan, Advertisement, NodePlan, PeerPlan};
