//! What zc-trace creates outside its own process and must undo: the cleanup registry
//! (`cleanup`), private directories in directories others can write (`private_dir`), and the
//! leftovers of a killed run and their safe removal (`leftovers`). The bottom layer but `ui`:
//! the registry runs the undo actions the layers above register and imports none of them;
//! what the sweep still calls above it is listed in tests/source.rs.

pub mod cleanup;
pub mod leftovers;
pub mod private_dir;
