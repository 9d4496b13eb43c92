//! Brindle agent library.

pub mod agent;
pub mod calc;
pub mod cni;
pub mod ctl;
pub mod dataplane;
pub mod endpoint_events;
pub mod datastore;
pub mod health;
