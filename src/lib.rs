//! Brindle agent library.

pub mod agent;
pub mod cni;
pub mod config;
pub mod ctl;
pub mod dataplane;
pub mod health;
