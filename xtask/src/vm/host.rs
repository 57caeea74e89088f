//! Host side of the VM harness: the Debian packages it needs (qemu, a static busybox, cpio) and
//! the apt sources it adds to fetch kernels of other Debian releases (on the archives the host
//! already uses, see `apt`).
//!
//! Apt is only touched when something is missing: a run with every tool installed and every
//! kernel cached neither updates nor installs anything.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::util::{command, output, run, Result};

use super::kernels::Suite;

/// Sources file the harness owns (deb822). It only lists suites that no other source already
/// configures, so apt never warns about targets configured twice.
pub const SOURCES_FILE: &str = "/etc/apt/sources.list.d/zc-trace-vm.sources";
/// Pins every suite of [`SOURCES_FILE`] low (like experimental), so that adding a newer release
/// to a bookworm host never makes apt upgrade or install host packages from it: only the
/// explicit `apt-get download pkg=version` of the harness uses those suites.
pub const PREFERENCES_FILE: &str = "/etc/apt/preferences.d/zc-trace-vm";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// (command that proves the package is there, Debian package providing it).
const HOST_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("cpio", "cpio"),
    ("gzip", "gzip"),
    // The ext4 image of the guest's /var/tmp, and Debian's xz-compressed kernel modules.
    ("mkfs.ext4", "e2fsprogs"),
    ("xz", "xz-utils"),
];
/// busybox-static is checked with dpkg: a dynamic `busybox` on PATH would not run in the guest.
const BUSYBOX_PACKAGE: &str = "busybox-static";
pub const BUSYBOX: &str = "/bin/busybox";

/// Whether this process already ran `apt-get update` since the sources last changed.
static APT_FRESH: AtomicBool = AtomicBool::new(false);

/// `apt-get update`, at most once per process, and again only after the harness changed the
/// sources.
pub fn apt_update() -> Result {
    if APT_FRESH.load(Ordering::SeqCst) {
        return Ok(());
    }
    run(command("apt-get").args(["-q", "update"]))?;
    APT_FRESH.store(true, Ordering::SeqCst);
    Ok(())
}

/// Makes sure every suite in `suites` is configured, writing [`SOURCES_FILE`] and
/// [`PREFERENCES_FILE`] for those no other source provides.
pub fn ensure_suites(suites: &[Suite]) -> Result {
    let elsewhere = configured_elsewhere()?;
    let mut missing: Vec<&Suite> = suites
        .iter()
        .filter(|s| !elsewhere.contains(&(s.uri.clone(), s.suite.clone())))
        .collect();
    missing.sort();
    missing.dedup();

    let mut sources = String::from(
        "# Written by `cargo xtask vm-test` (zc-trace): Debian releases whose kernels the\n\
             # VM tests boot. Pinned low in /etc/apt/preferences.d/zc-trace-vm.\n",
    );
    let mut prefs = String::from(
        "# Written by `cargo xtask vm-test` (zc-trace): the suites of\n\
             # /etc/apt/sources.list.d/zc-trace-vm.sources are only for downloading kernels.\n",
    );
    let mut uris: Vec<&str> = missing.iter().map(|s| s.uri.as_str()).collect();
    uris.dedup();
    for uri in uris {
        let names: Vec<&str> = missing
            .iter()
            .filter(|s| s.uri == uri)
            .map(|s| s.suite.as_str())
            .collect();
        sources.push_str(&format!(
            "\nTypes: deb\nURIs: {uri}\nSuites: {}\nComponents: main\nSigned-By: {KEYRING}\n",
            names.join(" ")
        ));
    }
    for s in &missing {
        prefs.push_str(&format!(
            "\nPackage: *\nPin: release n={}\nPin-Priority: 1\n",
            s.suite
        ));
    }

    let mut changed = false;
    if missing.is_empty() {
        for f in [SOURCES_FILE, PREFERENCES_FILE] {
            if Path::new(f).exists() {
                std::fs::remove_file(f).map_err(|e| format!("{f}: {e}"))?;
                changed = true;
            }
        }
    } else {
        changed |= write_if_changed(PREFERENCES_FILE, &prefs)?;
        changed |= write_if_changed(SOURCES_FILE, &sources)?;
    }
    if changed {
        APT_FRESH.store(false, Ordering::SeqCst);
    }
    Ok(())
}

fn write_if_changed(path: &str, text: &str) -> Result<bool> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    eprintln!("xtask: writing {path}");
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
    Ok(true)
}

/// (URI, suite) pairs with `main` Packages indexes configured by sources other than ours.
fn configured_elsewhere() -> Result<BTreeSet<(String, String)>> {
    // Show apt every sources.list.d entry except ours, through a directory of symlinks.
    let parts = super::vm_dir().join("apt-source-parts");
    let _ = std::fs::remove_dir_all(&parts);
    std::fs::create_dir_all(&parts).map_err(|e| format!("{}: {e}", parts.display()))?;
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in entries.flatten() {
            let path = e.path();
            if path == Path::new(SOURCES_FILE) {
                continue;
            }
            let link = parts.join(e.file_name());
            std::os::unix::fs::symlink(&path, &link)
                .map_err(|e| format!("{}: {e}", link.display()))?;
        }
    }
    let listing = output(command("apt-get").args([
        "-o".into(),
        format!("Dir::Etc::SourceParts={}", parts.display()),
        "indextargets".into(),
        "--no-release-info".into(),
        "--format".into(),
        "$(SITE) $(RELEASE) $(COMPONENT) $(IDENTIFIER)".into(),
    ]))?;
    let _ = std::fs::remove_dir_all(&parts);
    Ok(listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [site, release, "main", "Packages"] => {
                    Some((site.trim_end_matches('/').to_string(), release.to_string()))
                }
                _ => None,
            }
        })
        .collect())
}

fn has_command(name: &str) -> bool {
    command("sh")
        .args(["-c", &format!("command -v {name} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn has_package(name: &str) -> bool {
    output(command("dpkg-query").args(["-W", "-f", "${Status}", name]))
        .is_ok_and(|s| s.trim() == "install ok installed")
}

/// Installs qemu-system-x86, busybox-static and cpio where missing, never removing a package:
/// where the release's qemu-system-x86 conflicts with what is installed (this machine image
/// carries qemu-utils from bookworm-backports, which the bookworm qemu-system-x86 would
/// remove), it comes from the release's backports suite instead.
pub fn ensure_tools() -> Result {
    let mut missing: Vec<&str> = HOST_TOOLS
        .iter()
        .filter(|(cmd, _)| !has_command(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !has_package(BUSYBOX_PACKAGE) || !Path::new(BUSYBOX).exists() {
        missing.push(BUSYBOX_PACKAGE);
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing host packages: {}", missing.join(" "));
    apt_update()?;
    let plain = apt_install(&[], &missing);
    let Err(e) = plain else {
        return Ok(());
    };
    let codename =
        super::apt::os_codename().ok_or_else(|| format!("{e} (and no VERSION_CODENAME)"))?;
    eprintln!(
        "xtask: that install would remove packages or failed ({e}); trying {codename}-backports"
    );
    install_from_backports(&codename, &missing).map_err(|e2| format!("{e}; then: {e2}"))
}

fn apt_install(options: &[String], packages: &[&str]) -> Result {
    run(command("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(options)
        .args([
            "-q",
            "install",
            "-y",
            "--no-install-recommends",
            "--no-remove",
        ])
        .args(packages))
}

/// Installs `packages` with `<codename>-backports` as an extra suite, through a private apt
/// configuration under `target/vm/apt-backports/` (the host's sources stay untouched); only
/// qemu-system-x86 is taken from backports.
fn install_from_backports(codename: &str, packages: &[&str]) -> Result {
    let dir = super::vm_dir().join("apt-backports");
    for sub in ["lists/partial", "archives/partial"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let list = dir.join("sources.list");
    let archives = super::apt::archives()?;
    let mut text = String::new();
    for (uri, suite) in [
        (&archives.main, codename.to_string()),
        (&archives.main, format!("{codename}-updates")),
        (&archives.main, format!("{codename}-backports")),
        (&archives.security, format!("{codename}-security")),
    ] {
        text.push_str(&format!("deb [signed-by={KEYRING}] {uri} {suite} main\n"));
    }
    std::fs::write(&list, text).map_err(|e| format!("{}: {e}", list.display()))?;
    let options: Vec<String> = [
        format!("Dir::Etc::SourceList={}", list.display()),
        "Dir::Etc::SourceParts=-".into(),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        format!("Dir::Cache::Archives={}", dir.join("archives").display()),
        "APT::Sandbox::User=root".into(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect();
    run(command("apt-get").args(&options).args(["-q", "update"]))?;
    let backports = format!("qemu-system-x86/{codename}-backports");
    let packages: Vec<&str> = packages
        .iter()
        .map(|p| {
            if *p == "qemu-system-x86" {
                backports.as_str()
            } else {
                p
            }
        })
        .collect();
    apt_install(&options, &packages)
}
