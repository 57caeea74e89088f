//! The transfer engine: the payload, the strategies that move it, and the sinks they move it
//! to (with the receiver process, network namespaces and NICs). The measured runs of these
//! (`cmd::measure`) sit above, with the report they fill.

pub mod nic;
pub mod payload;
pub mod receiver;
pub mod sink;
pub mod strategies;
