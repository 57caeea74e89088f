//! The subcommands: each reads its flags (`cli`), runs the layers below (the kernel side,
//! transfers, resources) and hands what it measured to `report`. No layer below imports from
//! here (tests/suite/source.rs). `measure` is the run's engine, shared by `run` (`runner`, with the
//! probes for a meter) and `run --untraced` (`untraced`, with the clock).

pub mod cleanup;
pub mod doctor;
pub mod explain;
pub mod manpage;
pub mod measure;
pub mod probes;
pub mod receive;
pub mod runner;
pub mod session;
pub mod trace;
pub mod untraced;
