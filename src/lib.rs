//! Brindle agent library.

pub mod agent;
pub mod config;
pub mod dataplane;
pub mod health;
pub mod ctl;
pub mod cni;
