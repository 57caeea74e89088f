//! The transfer engine: the payload, the strategies that move it, the sinks they move it
//! to (with the receiver process, network namespaces and NICs), and the measured windows
//! (`measure`).

pub mod measure;
pub mod nic;
pub mod payload;
pub mod receiver;
pub mod sink;
pub mod strategies;
