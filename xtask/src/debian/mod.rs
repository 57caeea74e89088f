//! Debian packages unpacked for the tools zc-trace's tests and benches need (qemu and the VM
//! tools, kernels, nginx and strace, Chromium, bpftrace): resolved and downloaded in a private
//! apt state (`private_apt`) that serves only this machine's release, from the archives its
//! own apt sources name (`apt`), unpacked with `dpkg-deb -x`. Nothing is installed on the host
//! and its apt configuration is only read. Unpacked programs run through the unpacked loader
//! (`unpacked_command`), so the host's libraries do not matter.

pub mod apt;
pub mod private_apt;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{command, Result};

use private_apt::{unpack, AptState, Suite};

/// Library directories of the unpacked root, in search order.
const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib",
    "usr/lib",
];
const LOADER: &str = "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
const BIN_DIRS: &[&str] = &["usr/bin", "bin", "usr/sbin", "sbin"];

/// The executable `program` of the unpacked `root`, from the usual bin directories.
pub(crate) fn find_unpacked(root: &Path, program: &str) -> Option<PathBuf> {
    BIN_DIRS
        .iter()
        .map(|d| root.join(d).join(program))
        .find(|p| p.exists())
}

/// Resolves `packages` with their whole dependency closure in the private apt state `state`
/// (serving only this machine's Debian release: `<codename>`, `-updates`, `-security`),
/// downloads them and unpacks them afresh into `root`. Nothing is installed on the host.
pub fn fetch_unpacked(state: &str, packages: &[&str], root: &Path) -> Result {
    let debs = release_state(state, None)?.download_closure(packages)?;
    let _ = std::fs::remove_dir_all(root);
    unpack(&debs, root)
}

/// [`fetch_unpacked`] for the Debian architecture `arch` ("arm64"): files for a guest of that
/// architecture, to be copied into it, not run here.
pub fn fetch_unpacked_for(
    arch: &'static str,
    state: &str,
    packages: &[&str],
    root: &Path,
) -> Result {
    let debs = release_state(state, Some(arch))?.download_closure(packages)?;
    let _ = std::fs::remove_dir_all(root);
    unpack(&debs, root)
}

/// Those of `packages` that this machine's Debian release publishes (apt has a candidate for
/// them in the private apt state `state`), in their order; a package that release dropped or
/// renamed is left out, so callers can fall back to another.
pub(crate) fn published(state: &str, packages: &[&str]) -> Result<Vec<String>> {
    let policy = release_state(state, None)?.policy(packages)?;
    Ok(packages
        .iter()
        .filter(|p| {
            policy
                .iter()
                .any(|q| q.package == **p && q.candidate.is_some())
        })
        .map(|p| p.to_string())
        .collect())
}

/// This machine's Debian release (its codename), the one packages are taken from.
pub(crate) fn release_codename() -> Result<String> {
    apt::os_codename().ok_or_else(|| {
        "cannot tell this machine's Debian release (no VERSION_CODENAME in /etc/os-release), \
         so not which release to take the packages from"
            .to_string()
    })
}

/// The private apt state `state`, serving only this machine's Debian release (for `arch`, or
/// the host's architecture), updated.
fn release_state(state: &str, arch: Option<&'static str>) -> Result<AptState> {
    let codename = release_codename()?;
    let archives = apt::archives()?;
    let suites = vec![
        Suite {
            uri: archives.main.clone(),
            suite: codename.clone(),
        },
        Suite {
            uri: archives.main.clone(),
            suite: format!("{codename}-updates"),
        },
        Suite {
            uri: archives.security.clone(),
            suite: format!("{codename}-security"),
        },
    ];
    let state = match arch {
        None => AptState::new(state, suites),
        Some(a) => AptState::for_arch(state, suites, a),
    };
    state.update()?;
    Ok(state)
}

/// The unpacked `root`'s library directories, as a search path.
pub fn library_path(root: &Path) -> String {
    let libs: Vec<String> = LIB_DIRS
        .iter()
        .map(|d| root.join(d).display().to_string())
        .collect();
    libs.join(":")
}

/// A command that runs `program` (a file of the unpacked `root`) with the unpacked loader and
/// libraries; `argv0` is the name it sees.
pub fn unpacked_command(root: &Path, program: &Path, argv0: &str) -> Command {
    let mut c = command(&root.join(LOADER).display().to_string());
    c.arg("--library-path").arg(library_path(root));
    // Programs that look at their name (mke2fs as mkfs.ext4) see their own.
    c.arg("--argv0").arg(argv0).arg(program);
    c
}
