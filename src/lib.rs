//! Brindle agent library.

pub mod agent;
pub mod config;
pub mod health;
pub mod ctl;
