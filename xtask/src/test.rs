//! The README's test command. Order: cheap static checks first, then the tests, then the
//! kernel matrix in VMs (`vm-test`).

use crate::util::{command, run, workspace_root, Result};
use crate::vm::MatrixError;

pub fn run_all() -> Result {
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
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if ci {
        eprintln!(
            "xtask: CI=true: tests that need root and BPF, and the VM kernel matrix, fail \
             instead of skipping"
        );
    }
    run(command("cargo")
        .args(["test", "--workspace"])
        .current_dir(&root))?;
    vm_matrix(ci)
}

/// The kernel matrix in VMs (`cargo xtask vm-test`, every kernel). Where qemu or the kernels
/// cannot be set up it is skipped with the reason, except with CI=true, where that fails too.
fn vm_matrix(ci: bool) -> Result {
    eprintln!("xtask: the VM kernel matrix (`cargo xtask vm-test`)");
    let started = std::time::Instant::now();
    let result = match crate::vm::test_matrix() {
        Ok(()) => Ok(()),
        Err(MatrixError::Setup(why)) if !ci => {
            eprintln!(
                "xtask: SKIPPED the VM kernel matrix: cannot set up qemu and the kernels: {why}\n\
                 xtask: (with CI=true this fails the run; `cargo xtask vm-test` runs it alone)"
            );
            return Ok(());
        }
        Err(MatrixError::Setup(why)) => Err(format!(
            "the VM kernel matrix: cannot set up qemu and the kernels: {why}"
        )),
        Err(MatrixError::Failed(e)) => Err(e),
    };
    eprintln!(
        "xtask: the VM kernel matrix took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}
