//! What zc-trace creates outside its own process and must undo: the cleanup registry of undo
//! actions (`cleanup`), the names that carry their maker (`names`), private directories in
//! directories others can write (`private_dir`), mounts it made and their safe unmounting
//! (`mounts`), and the sweep of a killed run's leftovers (`sweep`). The bottom layer but `ui`:
//! the registry runs the undo actions the layers above register and imports none of them.

pub mod cleanup;
pub mod mounts;
pub mod names;
pub mod private_dir;
pub mod sweep;
