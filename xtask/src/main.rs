//! Project tasks: `cargo xtask <task>`.
//!
//! - `setup`: installs what rebuilding the eBPF objects needs (nightly rust-src, bpf-linker) and
//!   the arm64 build's standard library (aarch64-unknown-linux-musl),
//!   idempotently.
//! - `build-ebpf [--check]`: rebuilds `zc-trace/ebpf/<arch>/zc-trace.bpf.o` (x86_64, aarch64)
//!   from `zc-trace-ebpf`, or checks that the committed objects are exactly what their source
//!   builds to.
//! - `test [--no-vm]`: everything CI runs (the README's test command), the VM kernel matrix
//!   last; a matrix that cannot run fails it.
//! - `vm-test`: zc-trace in qemu VMs on other kernels, checked against
//!   `zc-trace/tests/data/kernel-matrix.toml`.
//! - `trace-tools`: fetches nginx and strace for the `trace` tests (unpacked, not installed)
//!   and prints the folder to pass them as `ZC_TRACE_TOOLS` (`test` does this itself).
//! - `chromium`: fetches headless Chromium for the HTML report's test (unpacked, not
//!   installed) and prints the folder to pass it as `ZC_TRACE_CHROMIUM` (`test` does this).
//! - `bench [--quick]`: what zc-trace itself costs (probe overhead, the tax on other
//!   processes, wall time, memory, scaling), written to `bench/`.

mod bench;
mod chromium;
mod debian;
mod ebpf;
mod setup;
mod test;
mod trace_tools;
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
    /// Run every check CI runs: setup, eBPF object check, fmt, clippy (the eBPF crate too, for
    /// the BPF target), tests (root tests included), then the VM kernel matrix (vm-test). A
    /// matrix that cannot be set up fails the run (unless --no-vm); with CI=true a skipped
    /// root test fails too.
    Test(test::TestArgs),
    /// Run zc-trace inside VMs on other kernels (every VM kernel of
    /// zc-trace/tests/data/kernel-matrix.toml) and check its output against that file.
    VmTest(vm::VmTestArgs),
    /// Measure what zc-trace itself costs on this machine (as root): the probes' overhead on
    /// the transfer (traced against untraced, A B A B), the tax on other processes' syscalls
    /// (against bpftrace), wall time, peak memory, and run time against payload and chunk size.
    /// Writes bench/results.json and bench/README.md; a benchmark, so a missed target is
    /// reported, not failed. --quick: a minute or two; the full bench: about ten minutes.
    Bench(bench::BenchArgs),
    /// Fetch nginx and strace, which the `trace` tests run, from this machine's Debian
    /// release into target/trace-tools/root (unpacked, nothing installed) and print that
    /// folder, the ZC_TRACE_TOOLS of `cargo test` (`test` passes it itself).
    TraceTools,
    /// Fetch Chromium, which the HTML report's test runs headless, from this machine's Debian
    /// release into target/chromium/root (unpacked, nothing installed) and print that folder,
    /// the ZC_TRACE_CHROMIUM of `cargo test` (`test` passes it itself).
    Chromium,
    /// Internal (bench): getppid() in a tight loop, printing ns per call per batch.
    #[command(name = "__getppid-loop", hide = true)]
    GetppidLoop(bench::LoopArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::ensure_all(),
        Task::BuildEbpf { check } => ebpf::build(check),
        Task::Test(args) => test::run_all(args),
        Task::VmTest(args) => vm::run(args),
        Task::TraceTools => trace_tools::ensure().map(|root| println!("{}", root.display())),
        Task::Chromium => chromium::ensure().map(|root| println!("{}", root.display())),
        Task::Bench(args) => bench::run_bench(args),
        Task::GetppidLoop(args) => bench::getppid_loop(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
