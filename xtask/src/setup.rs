//! Installs what `build-ebpf` needs, only where it is missing:
//! - the `nightly` toolchain's rust-src component (for -Z build-std=core);
//! - the stable toolchain's standard library for `aarch64-unknown-linux-musl` (the arm64 build,
//!   static, linked by rust-lld: no cross C toolchain is needed);
//! - bpf-linker, built against the nightly's own libLLVM (same LLVM major as rustc), because
//!   no prebuilt LLVM of that version is available from the package registries here.
//!
//! The libLLVM symlink prefix lives under $CARGO_HOME so that the installed bpf-linker, whose
//! RUNPATH points into it, keeps working for every later clone of the repository.

use std::path::PathBuf;

use crate::util::{command, output, run, Result};

/// bpf-linker release known to build against LLVM 22 and link aya-ebpf 0.1 programs.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure_all() -> Result {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    ensure_arm64_target()
}

/// The target triple of the arm64 build (`cargo xtask test` checks it; the arm64 guests run it).
pub const ARM64_TARGET: &str = "aarch64-unknown-linux-musl";

fn ensure_arm64_target() -> Result {
    let installed = output(command("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == ARM64_TARGET) {
        return Ok(());
    }
    run(command("rustup").args(["target", "add", ARM64_TARGET]))
}

fn ensure_nightly() -> Result {
    output(command("rustup").args(["run", "nightly", "rustc", "-vV"]))
        .map(|_| ())
        .map_err(|e| {
            format!(
                "the nightly toolchain is needed to rebuild the eBPF object ({e}); \
             install it with `rustup toolchain install nightly`"
            )
        })
}

fn ensure_rust_src() -> Result {
    let installed = output(command("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    run(command("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn ensure_bpf_linker() -> Result {
    if let Ok(v) = output(command("bpf-linker").arg("--version")) {
        eprintln!("xtask: {} already installed", v.trim());
        return Ok(());
    }
    let vv = output(command("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    let llvm_major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .ok_or("cannot read the nightly's LLVM version from `rustc -vV`")?
        .to_string();
    let sysroot =
        output(command("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .map_err(|e| format!("{}: {e}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{llvm_major}")))
        })
        .ok_or_else(|| format!("no libLLVM.so.{llvm_major}* in {}", lib_dir.display()))?;

    let prefix = cargo_home()
        .join("zc-trace")
        .join(format!("llvm-{llvm_major}"));
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib).map_err(|e| format!("{}: {e}", prefix_lib.display()))?;
    let soname = libllvm.file_name().expect("a file").to_owned();
    for name in [std::ffi::OsString::from("libLLVM.so"), soname] {
        let link = prefix_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .map_err(|e| format!("{}: {e}", link.display()))?;
    }
    run(command("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major}"),
        ])
        .env("LLVM_PREFIX", &prefix))?;
    output(command("bpf-linker").arg("--version"))
        .map(|v| eprintln!("xtask: installed {}", v.trim()))
        .map_err(|e| format!("bpf-linker was installed but does not run: {e}"))
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}
