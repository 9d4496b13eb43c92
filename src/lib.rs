//! Brindle's agent crate: the binaries (`brindle-node`, `brindlectl`, `brindle-cni`) and
//! the wiring between the other crates. It owns the datastore seam ([`datastore`]: the
//! file and Kubernetes backends and the cache that turns their events into one checked
//! snapshot of the resource model), the pure calculations from that snapshot to what a
//! node does ([`calc`]: the BGP plan), the agent runtime that feeds the plan to the BGP
//! speaker and the dataplane model to felix ([`agent`], [`dataplane`]), the agent's own
//! surfaces (status socket, [`health`] and metrics), Calico-compatible address management
//! ([`ipam`]: blocks, affinities and handles over a compare-and-swap store), the CNI plugin
//! ([`cni`]) and the CLI ([`ctl`]). Data flows one way: datastore → model → calculation → speaker and felix;
//! what comes back (learned routes, dataplane reports, endpoint events) enters the agent
//! through channels.

pub mod agent;
pub mod autodetect;
pub mod calc;
pub mod cni;
pub mod ctl;
pub mod dataplane;
pub mod datastore;
pub mod endpoint_events;
pub mod flock;
pub mod health;
pub mod ipam;
pub mod node_identity;
pub mod status;
pub mod status_socket;
