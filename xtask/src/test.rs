//! The README's test command. Order: cheap static checks first, then the tests.

use crate::util::{command, run, workspace_root, Result};

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
    if std::env::var("CI").as_deref() == Ok("true") {
        eprintln!("xtask: CI=true: tests that need root and BPF fail instead of skipping");
    }
    run(command("cargo")
        .args(["test", "--workspace"])
        .current_dir(&root))
}
