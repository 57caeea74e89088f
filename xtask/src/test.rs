//! The README's test command. Order: cheap static checks first, then the tests, then the
//! kernel matrix in VMs (`vm-test`).

use crate::util::{command, run, workspace_root, Result};
use crate::vm::MatrixError;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Leave out the VM kernel matrix (the last line then says what was not checked). Without
    /// it, a matrix that cannot be set up fails the run.
    #[arg(long)]
    no_vm: bool,
}

pub fn run_all(args: TestArgs) -> Result {
    let root = workspace_root();
    crate::setup::ensure_all()?;
    crate::ebpf::build(true)?;
    run(command("cargo")
        .args(["fmt", "--all", "--check"])
        .current_dir(&root))?;
    // The eBPF crate is outside the workspace; stable rustfmt formats it all the same.
    run(command("rustfmt")
        .args(["--check", "--edition", "2021", "zc-trace-ebpf/src/main.rs"])
        .current_dir(&root))?;
    run(command("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(&root))?;
    crate::ebpf::clippy()?;
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if ci {
        eprintln!("xtask: CI=true: tests that need root and BPF fail instead of skipping");
    }
    // The `trace` tests run nginx and strace from this folder (they are not installed).
    let trace_tools = crate::trace_tools::ensure()?;
    // The HTML report's test renders the page in headless Chromium from this folder.
    let chromium = crate::chromium::ensure()?;
    run(command("cargo")
        .args(["test", "--workspace"])
        .env("ZC_TRACE_TOOLS", &trace_tools)
        .env("ZC_TRACE_CHROMIUM", &chromium)
        .current_dir(&root))?;
    if args.no_vm {
        // The last line says what was not checked, so a passing run is not read as "all".
        eprintln!("xtask: {}", not_checked());
        return Ok(());
    }
    eprintln!("xtask: the VM kernel matrix (`cargo xtask vm-test`)");
    let started = std::time::Instant::now();
    let result = matrix_verdict(crate::vm::test_matrix());
    eprintln!(
        "xtask: the VM kernel matrix took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// What `--no-vm` leaves out.
fn not_checked() -> String {
    let kernels = crate::vm::kernel_names().unwrap_or_else(|e| vec![e]);
    format!(
        "NOT CHECKED (--no-vm): the VM kernel matrix ({}): attach methods, the exact copy \
         table and the function guard on those kernels; run `cargo xtask vm-test`",
        kernels.join(", ")
    )
}

/// The matrix's outcome as the test command's: a matrix that cannot be set up fails like one
/// that fails, naming what is missing; there is no silent skip (`--no-vm` is the way to leave
/// it out).
fn matrix_verdict(result: std::result::Result<(), MatrixError>) -> Result {
    match result {
        Ok(()) => Ok(()),
        Err(MatrixError::Setup(why)) => Err(format!(
            "the VM kernel matrix cannot run: {why}\n\
             xtask: (`cargo xtask test --no-vm` runs everything else and says what it left out)"
        )),
        Err(MatrixError::Failed(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_that_cannot_be_set_up_fails_the_test_command() {
        let e = matrix_verdict(Err(MatrixError::Setup("no qemu: apt said no".into()))).unwrap_err();
        assert!(e.contains("cannot run: no qemu: apt said no"), "{e}");
        assert!(e.contains("--no-vm"), "{e}");
        assert!(matrix_verdict(Err(MatrixError::Failed("x".into()))).is_err());
        assert!(matrix_verdict(Ok(())).is_ok());
    }

    #[test]
    fn no_vm_names_what_it_left_out() {
        let s = not_checked();
        assert!(
            s.starts_with("NOT CHECKED (--no-vm): the VM kernel matrix"),
            "{s}"
        );
        assert!(s.contains("debian-13-bpo-7"), "{s}");
    }
}
