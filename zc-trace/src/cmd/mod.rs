//! The subcommands: each reads its flags (`cli`), runs the layers below (the kernel side,
//! transfers, resources) and hands what it measured to `report`. No layer below imports from
//! here (tests/source.rs). The `receive` subcommand still lives beside what it uses
//! (`transfer::receiver`).

pub mod cleanup;
pub mod doctor;
pub mod explain;
pub mod manpage;
pub mod probes;
pub mod runner;
pub mod trace;
pub mod untraced;
