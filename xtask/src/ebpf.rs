//! Builds zc-trace-ebpf with the nightly toolchain and bpf-linker, and installs or checks the
//! committed object. The build is reproducible, which is what lets CI demand byte equality:
//! no debug info (no paths in the object), and the two crates are built from a fixed staging
//! directory, because cargo hashes the absolute path of a path dependency outside the crate's
//! workspace (zc-trace-common) into the symbol names of non-inlined functions.

use std::path::Path;

use crate::util::{command, run, workspace_root, Result};

/// The crates' files, relative to the workspace root, that the eBPF build reads.
const INPUTS: &[&str] = &["zc-trace-ebpf", "zc-trace-common"];

/// Mirrors the inputs into `staging`, writing only files whose content changed (so cargo's
/// incremental checks keep working) and removing files that are gone.
fn stage(root: &Path, staging: &Path) -> Result {
    fn walk(src: &Path, dst: &Path) -> Result {
        std::fs::create_dir_all(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        let mut wanted = std::collections::HashSet::new();
        for entry in std::fs::read_dir(src).map_err(|e| format!("{}: {e}", src.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name();
            if name == "target" {
                continue;
            }
            wanted.insert(name.clone());
            let (from, to) = (entry.path(), dst.join(&name));
            if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
                walk(&from, &to)?;
            } else {
                let data = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
                if std::fs::read(&to).ok().as_deref() != Some(&data[..]) {
                    std::fs::write(&to, &data).map_err(|e| format!("{}: {e}", to.display()))?;
                }
            }
        }
        for entry in std::fs::read_dir(dst).map_err(|e| e.to_string())?.flatten() {
            let name = entry.file_name();
            if name != "target" && !wanted.contains(&name) {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        Ok(())
    }
    for input in INPUTS {
        walk(&root.join(input), &staging.join(input))?;
    }
    // zc-trace-common inherits package fields and its aya dependency from the workspace root:
    // stage that manifest too, with only the staged member.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
    let staged: String = manifest
        .lines()
        .map(|l| {
            if l.starts_with("members") {
                "members = [\"zc-trace-common\"]"
            } else if l.starts_with("default-members") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = staging.join("Cargo.toml");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(&staged[..]) {
        std::fs::write(&path, staged).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The architectures zc-trace ships an eBPF object for. The programs are the same BPF code for
/// both; what differs is `struct pt_regs`, which the kprobe and kretprobe programs read their
/// arguments and return values from (aya-ebpf picks the layout by `bpf_target_arch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The name as Rust's `target_arch` (and aya-ebpf's `bpf_target_arch`) spells it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The committed object, relative to the workspace root; zc-trace embeds the one for the
    /// architecture it is built for.
    pub fn object(self) -> String {
        format!("zc-trace/ebpf/{}/zc-trace.bpf.o", self.name())
    }
}

pub fn build(check: bool) -> Result {
    let root = workspace_root();
    // A fixed place, the same on every machine and for every clone.
    let staging = Path::new("/tmp/zc-trace-ebpf-build");
    stage(&root, staging)?;
    for arch in Arch::ALL {
        build_one(&root, staging, arch, check)?;
    }
    Ok(())
}

fn build_one(root: &Path, staging: &Path, arch: Arch, check: bool) -> Result {
    // One target directory per architecture, so that neither build invalidates the other.
    let target_dir = staging.join(format!("target-{}", arch.name()));
    // The crate's own .cargo/config.toml (target, build-std, linker, rustflags) is found from
    // its directory; cargo joins this array to the rustflags there. aya-ebpf's build script
    // reads the cfg back (CARGO_CFG_BPF_TARGET_ARCH) and would otherwise take the host's.
    let rustflags = format!(
        "target.bpfel-unknown-none.rustflags=[\"--cfg\", \"bpf_target_arch=\\\"{}\\\"\"]",
        arch.name()
    );
    run(command("rustup")
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--config", &rustflags])
        .current_dir(staging.join("zc-trace-ebpf"))
        .env("CARGO_TARGET_DIR", &target_dir))?;
    let built = target_dir.join("bpfel-unknown-none/release/zc-trace");
    let object = arch.object();
    let committed = root.join(&object);
    let new = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    if check {
        let old = std::fs::read(&committed).map_err(|e| format!("{}: {e}", committed.display()))?;
        if old != new {
            return Err(format!(
                "{object} is not what zc-trace-ebpf builds to for {} ({} bytes committed, {} \
                 built); run `cargo xtask build-ebpf` and commit the object",
                arch.name(),
                old.len(),
                new.len()
            ));
        }
        eprintln!("xtask: {object} matches its source ({} bytes)", new.len());
    } else {
        if let Some(dir) = committed.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&committed, &new).map_err(|e| format!("{}: {e}", committed.display()))?;
        eprintln!("xtask: wrote {object} ({} bytes)", new.len());
    }
    Ok(())
}

/// Clippy on the eBPF crate for its own target (bpfel-unknown-none, nightly, build-std), as
/// aya's xtask does: the stable workspace clippy never sees that crate.
pub fn clippy() -> Result {
    let root = workspace_root();
    let staging = Path::new("/tmp/zc-trace-ebpf-build");
    stage(&root, staging)?;
    run(command("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--release",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(staging.join("zc-trace-ebpf"))
        // Its own target directory: clippy's metadata would otherwise invalidate the build's.
        .env("CARGO_TARGET_DIR", staging.join("target-clippy")))
}
