//! The subcommands: each reads its flags (`cli`), runs the layers below (the kernel side,
//! transfers, resources) and hands what it measured to `report`. No layer below imports from
//! here (tests/layers.rs). The `probes`, `receive` and `cleanup` subcommands still live beside
//! what they use (`kernel::probes`, `transfer::receiver`, `resources::leftovers`).

pub mod doctor;
pub mod explain;
pub mod manpage;
pub mod runner;
pub mod trace;
pub mod untraced;
