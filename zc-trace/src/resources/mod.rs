//! What zc-trace creates outside its own process and must undo: the cleanup registry
//! (`cleanup`), private directories in directories others can write (`private_dir`), and the
//! leftovers of a killed run and their safe removal (`leftovers`). The bottom layer but `ui`:
//! what it still calls above it (a sink's namespace deletion, a NIC's SG) is listed in
//! tests/layers.rs.

pub mod cleanup;
pub mod leftovers;
pub mod private_dir;
