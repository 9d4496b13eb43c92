//! Brindle's BGP-4 speaker.
//!
//! Owns everything BGP: the wire codec (on top of `netgauze-bgp-pkt`), RFC 7606 error
//! classification, the RFC 4271 session state machine, the RIBs and decision process,
//! and a thin tokio driver ([`speaker`]) that owns sockets and clocks. The core modules
//! (`codec`, `validate`, `fsm`, `rib`) are sans-IO: bytes and time in, actions out.

pub mod codec;
pub mod fsm;
pub mod rib;
pub mod speaker;
pub mod status;
pub mod transport;
pub mod types;
pub mod validate;
