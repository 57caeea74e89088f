//! Builds zc-trace-ebpf with the nightly toolchain and bpf-linker, and installs or checks the
//! committed object. The build is reproducible (no debug info, hence no paths in the object),
//! which is what lets CI demand byte equality.

use crate::util::{command, run, workspace_root, Result};

pub const OBJECT: &str = "zc-trace/ebpf/zc-trace.bpf.o";

pub fn build(check: bool) -> Result {
    let root = workspace_root();
    let target_dir = root.join("target").join("ebpf");
    // The crate's own .cargo/config.toml (target, build-std, linker) is found from its directory.
    run(command("rustup")
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .current_dir(root.join("zc-trace-ebpf"))
        .env("CARGO_TARGET_DIR", &target_dir))?;
    let built = target_dir.join("bpfel-unknown-none/release/zc-trace");
    let committed = root.join(OBJECT);
    let new = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    if check {
        let old = std::fs::read(&committed).map_err(|e| format!("{}: {e}", committed.display()))?;
        if old != new {
            return Err(format!(
                "{OBJECT} is not what zc-trace-ebpf builds to ({} bytes committed, {} built); \
                 run `cargo xtask build-ebpf` and commit the object",
                old.len(),
                new.len()
            ));
        }
        eprintln!("xtask: {OBJECT} matches its source ({} bytes)", new.len());
    } else {
        std::fs::write(&committed, &new).map_err(|e| format!("{}: {e}", committed.display()))?;
        eprintln!("xtask: wrote {OBJECT} ({} bytes)", new.len());
    }
    Ok(())
}
