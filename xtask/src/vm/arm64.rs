//! What an arm64 guest needs from Debian besides its kernel, unpacked under
//! `target/vm/arm64/` (fetched only when an arm64 kernel boots):
//! - `guest/`: arm64 packages for the guest itself, a static busybox (`busybox-static:arm64`);
//! - `cross/`: host programs that build for it, Debian's `gcc-aarch64-linux-gnu` with the arm64
//!   C library, for the static test programs (`zc-trace/tests/programs/*.c`). The Rust binaries
//!   need no C toolchain (musl, rust-lld).
//!
//! Like the VM tools, nothing is installed on the host, and both come from the host's Debian
//! release (the cross compiler's libraries are then those of the host's own C compiler).

use std::path::PathBuf;
use std::process::Command;

use crate::util::{output, Result};

use crate::debian::{fetch_unpacked, fetch_unpacked_for, find_unpacked, library_path};

/// arm64 packages copied into the guest.
const GUEST_PACKAGES: &[&str] = &["busybox-static"];
/// Host packages: the C cross compiler and the arm64 C library it links with.
const CROSS_PACKAGES: &[&str] = &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];
const CC: &str = "aarch64-linux-gnu-gcc";

/// The unpacked arm64 guest packages and the cross compiler.
#[derive(Debug, Clone)]
pub struct Arm64 {
    guest: PathBuf,
    cross: PathBuf,
}

fn dir() -> PathBuf {
    super::vm_dir().join("arm64")
}

impl Arm64 {
    /// Both, fetched first where needed (once per process).
    pub fn ensure() -> Result<Arm64> {
        static DONE: std::sync::OnceLock<Result<Arm64>> = std::sync::OnceLock::new();
        DONE.get_or_init(|| {
            let codename = crate::debian::release_codename()?;
            let a = Arm64 {
                guest: dir().join("guest"),
                cross: dir().join("cross"),
            };
            fetched(&a.guest, &codename, GUEST_PACKAGES, || {
                fetch_unpacked_for("arm64", "arm64-guest", GUEST_PACKAGES, &a.guest)
            })?;
            a.busybox_check()?;
            fetched(&a.cross, &codename, CROSS_PACKAGES, || {
                fetch_unpacked("arm64-cross", CROSS_PACKAGES, &a.cross)
            })?;
            output(a.cc()?.arg("--version")).map_err(|e| {
                format!(
                    "the arm64 cross compiler was unpacked into {} but does not run: {e}",
                    a.cross.display()
                )
            })?;
            Ok(a)
        })
        .clone()
    }

    /// The guest's static busybox (an arm64 executable: it cannot run here).
    pub fn busybox(&self) -> PathBuf {
        self.guest.join("bin/busybox")
    }

    fn busybox_check(&self) -> Result {
        let elf = std::fs::read(self.busybox())
            .map_err(|e| format!("{}: {e}", self.busybox().display()))?;
        // e_machine 183: EM_AARCH64.
        if elf.len() < 20
            || &elf[..4] != b"\x7fELF"
            || u16::from_le_bytes([elf[18], elf[19]]) != 183
        {
            return Err(format!(
                "{} is not an arm64 executable",
                self.busybox().display()
            ));
        }
        Ok(())
    }

    /// The cross compiler. It runs with the host's loader; LD_LIBRARY_PATH gives it, and the
    /// assembler and linker it starts, their unpacked libraries (libopcodes and libbfd for
    /// arm64; the rest are the host release's own).
    pub fn cc(&self) -> Result<Command> {
        let cc = find_unpacked(&self.cross, CC).ok_or_else(|| {
            format!(
                "{CC} is not in {}; delete it to fetch it again",
                self.cross.display()
            )
        })?;
        let mut c = Command::new(cc);
        c.env("LD_LIBRARY_PATH", library_path(&self.cross));
        Ok(c)
    }
}

/// Runs `fetch` unless `root` holds `packages` of `codename` already (its stamp file says so).
fn fetched(
    root: &std::path::Path,
    codename: &str,
    packages: &[&str],
    fetch: impl FnOnce() -> Result,
) -> Result {
    let stamp = root.with_extension("packages");
    let text = format!("{codename}: {}\n", packages.join(" "));
    if root.is_dir() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&text[..]) {
        return Ok(());
    }
    eprintln!(
        "xtask: fetching for the arm64 guests from Debian {codename} into {} (nothing is \
         installed on this machine): {}",
        root.display(),
        packages.join(" ")
    );
    let _ = std::fs::remove_file(&stamp);
    fetch()?;
    std::fs::write(&stamp, text).map_err(|e| format!("{}: {e}", stamp.display()))
}
