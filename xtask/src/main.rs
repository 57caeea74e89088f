//! Project tasks: `cargo xtask <task>`.
//!
//! - `setup`: installs what rebuilding the eBPF object needs (nightly rust-src, bpf-linker),
//!   idempotently.
//! - `build-ebpf [--check]`: rebuilds `zc-trace/ebpf/zc-trace.bpf.o` from `zc-trace-ebpf`, or
//!   checks that the committed object is exactly what its source builds to.
//! - `test`: everything CI runs (the README's test command), the VM kernel matrix last.
//! - `vm-test`: zc-trace in qemu VMs on other kernels, checked against
//!   `zc-trace/tests/data/kernel-matrix.toml`.

mod ebpf;
mod setup;
mod test;
mod util;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "zc-trace project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the nightly rust-src component and bpf-linker if missing (idempotent).
    Setup,
    /// Rebuild the embedded eBPF object from zc-trace-ebpf (needs `setup`).
    BuildEbpf {
        /// Do not replace the committed object; fail if the rebuilt one differs from it.
        #[arg(long)]
        check: bool,
    },
    /// Run every check CI runs: setup, eBPF object check, fmt, clippy, tests (root tests
    /// included), then the VM kernel matrix (vm-test); with CI=true a skipped root test or a
    /// VM matrix that cannot be set up fails the run.
    Test,
    /// Run zc-trace inside VMs on other kernels (Debian 6.1, 6.12) and check its output
    /// against zc-trace/tests/data/kernel-matrix.toml
    VmTest(vm::VmTestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::ensure_all(),
        Task::BuildEbpf { check } => ebpf::build(check),
        Task::Test => test::run_all(),
        Task::VmTest(args) => vm::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
