//! The integration tests that may run beside each other, as one test binary (one link of
//! `tests/common` instead of one per file). Each module is one subject; `cargo test --test
//! suite MODULE::` runs one of them. Tests that watch system-wide state are in `tests/alone/`,
//! one test per binary; see `tests/README.md` for where a new test goes.

#[path = "../common/mod.rs"]
mod common;

mod bpf_counts;
mod claims;
mod cli_errors;
mod doctor;
mod html_report;
mod probes;
mod receive_move_device;
mod root_safety;
mod sinks;
mod source;
mod stdout;
mod strategies;
mod terminal;
mod trace;
