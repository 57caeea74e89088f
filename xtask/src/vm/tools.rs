//! The host-side tools of the VM harness (qemu for x86_64 and arm64 guests, a static busybox, cpio, mkfs for ext4, xfs and
//! btrfs, xz), unpacked from Debian packages into `target/vm/tools/root/`. Nothing is installed
//! on the host and its apt configuration is not touched: the packages are resolved and
//! downloaded by `crate::debian` in a private apt state that serves only the host release's
//! suites (`<codename>`, `-updates`, `-security`), so the whole dependency set comes from one
//! release whatever the host has installed (a qemu-utils from backports, say).
//!
//! The unpacked programs run through the unpacked dynamic loader with the unpacked libraries
//! (`ld-linux --library-path ... program`), so a library the host lacks or has in another
//! version does not matter either.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{output, Result};

use super::arch::GuestArch;

use crate::debian::{fetch_unpacked, find_unpacked, unpacked_command};

/// The Debian packages the harness needs (with their dependencies).
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    // qemu-system-aarch64, for the arm64 guests.
    "qemu-system-arm",
    "busybox-static",
    "cpio",
    "e2fsprogs",
    "xfsprogs",
    "btrfs-progs",
    "xz-utils",
];

/// Where Debian's qemu looks for firmware (its configured --firmwarepath).
const QEMU_MODULES: &str = "usr/lib/x86_64-linux-gnu/qemu";
const FIRMWARE_DIRS: &[&str] = &["usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu"];

/// The unpacked tools.
#[derive(Debug, Clone)]
pub struct Tools {
    root: PathBuf,
}

fn tools_dir() -> PathBuf {
    super::vm_dir().join("tools")
}

/// What the stamp file holds: the package list and the release they came from. A different
/// list (a package added here) unpacks afresh.
fn stamp_text(codename: &str) -> String {
    format!("{codename}: {}\n", PACKAGES.join(" "))
}

impl Tools {
    /// The tools, downloading and unpacking them first where needed. Fails, naming what is
    /// missing, when they cannot be had.
    pub fn ensure() -> Result<Tools> {
        let codename = crate::debian::apt::os_codename().ok_or(
            "cannot tell this machine's Debian release (no VERSION_CODENAME in /etc/os-release), \
             so not which release to take qemu and the other VM tools from",
        )?;
        let dir = tools_dir();
        let tools = Tools {
            root: dir.join("root"),
        };
        let stamp = dir.join("packages");
        if std::fs::read_to_string(&stamp).ok() == Some(stamp_text(&codename))
            && tools.check().is_ok()
        {
            return Ok(tools);
        }
        eprintln!(
            "xtask: fetching the VM tools from Debian {codename} into {} (nothing is installed \
             on this machine): {}",
            tools.root.display(),
            PACKAGES.join(" ")
        );
        let _ = std::fs::remove_file(&stamp);
        fetch_unpacked("tools", PACKAGES, &tools.root)?;
        tools.check().map_err(|e| {
            format!(
                "the VM tools were unpacked into {} but do not run: {e}",
                tools.root.display()
            )
        })?;
        std::fs::write(&stamp, stamp_text(&codename))
            .map_err(|e| format!("{}: {e}", stamp.display()))?;
        Ok(tools)
    }

    /// Every tool answers (qemu its version, busybox its applets).
    fn check(&self) -> Result {
        for arch in [GuestArch::Amd64, GuestArch::Arm64] {
            output(self.command(arch.qemu())?.arg("--version"))?;
        }
        output(Command::new(self.busybox()).arg("--list"))?;
        for tool in ["cpio", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "xz"] {
            self.path(tool)?;
        }
        Ok(())
    }

    /// The static busybox (runs as it is, on the host and in an x86_64 guest).
    pub fn busybox(&self) -> PathBuf {
        self.root.join("bin/busybox")
    }

    /// A file of the unpacked root.
    pub fn file(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn path(&self, program: &str) -> Result<PathBuf> {
        find_unpacked(&self.root, program).ok_or_else(|| {
            format!(
                "{program} is not in the VM tools ({}); delete {} to fetch them again",
                self.root.display(),
                tools_dir().display()
            )
        })
    }

    /// A command that runs the unpacked `program` with the unpacked loader and libraries.
    pub fn command(&self, program: &str) -> Result<Command> {
        let path = self.path(program)?;
        Ok(unpacked_command(&self.root, &path, program))
    }

    /// qemu with the unpacked firmware and module directories (Debian builds TCG itself as a
    /// loadable module).
    pub fn qemu(&self, arch: GuestArch) -> Result<Command> {
        let mut c = self.command(arch.qemu())?;
        c.env("QEMU_MODULE_DIR", self.root.join(QEMU_MODULES));
        for d in FIRMWARE_DIRS {
            let dir = self.root.join(d);
            if dir.is_dir() {
                c.arg("-L").arg(dir);
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn commands_run_through_the_unpacked_loader() {
        let t = Tools {
            root: PathBuf::from("/nonexistent-root"),
        };
        let e = t.command("qemu-system-x86_64").unwrap_err();
        assert!(
            e.contains("qemu-system-x86_64 is not in the VM tools"),
            "{e}"
        );
        assert_eq!(t.busybox(), Path::new("/nonexistent-root/bin/busybox"));
    }

    #[test]
    fn the_stamp_names_release_and_packages() {
        assert_eq!(
            stamp_text("bookworm"),
            "bookworm: qemu-system-x86 qemu-system-arm busybox-static cpio e2fsprogs xfsprogs btrfs-progs \
             xz-utils\n"
        );
    }
}
