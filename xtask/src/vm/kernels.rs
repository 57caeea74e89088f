//! The kernels the VM tests boot, and fetching them from the Debian archive through apt (which
//! checks the archive signatures and the package hashes). The archive URIs are this machine's
//! own (see `apt`): the table only names suites.
//!
//! Each kernel is the current `linux-image-cloud-amd64` of one Debian release, resolved when it
//! is first fetched and then cached under `target/vm/kernels/<name>/` (delete that directory to
//! pick up a newer upload).

use std::path::{Path, PathBuf};

use crate::util::{command, output, run, Result};

use super::apt::Archives;
use super::host::{apt_update, ensure_suites};

/// Which of the host's archives serves a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// The one serving the host's `<codename>` suite.
    Main,
    /// The one serving the host's `<codename>-security` suite.
    Security,
}

/// One suite of the table: archive and suite name (component `main`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteSpec {
    pub archive: Archive,
    pub suite: &'static str,
}

/// One apt suite with its archive URI (component `main`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Suite {
    pub uri: String,
    pub suite: String,
}

impl SuiteSpec {
    pub fn resolve(&self, archives: &Archives) -> Suite {
        let uri = match self.archive {
            Archive::Main => &archives.main,
            Archive::Security => &archives.security,
        };
        Suite {
            uri: uri.clone(),
            suite: self.suite.to_string(),
        }
    }
}

/// A kernel to boot: the newest version of `metapackage` found in `suites`.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// Name on the command line and directory under `target/vm/kernels/`; also its entry in
    /// zc-trace/tests/data/kernel-matrix.toml.
    pub name: &'static str,
    pub description: &'static str,
    /// Where to look; the newest version of the metapackage across these wins.
    pub suites: &'static [SuiteSpec],
    /// The flavour metapackage; it depends on the concrete, versioned image package.
    pub metapackage: &'static str,
    /// Upstream version the resolved package must have ("6.1." matches 6.1.x), so a change of
    /// the suite's kernel line shows up as an error rather than a silently different kernel.
    pub upstream_prefix: &'static str,
}

const fn main(suite: &'static str) -> SuiteSpec {
    SuiteSpec {
        archive: Archive::Main,
        suite,
    }
}

const fn security(suite: &'static str) -> SuiteSpec {
    SuiteSpec {
        archive: Archive::Security,
        suite,
    }
}

/// Every kernel the harness knows; `vm-test` without `--kernel` boots all of them.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "debian-12-6.1",
        description: "Debian 12 bookworm cloud kernel (6.1 LTS)",
        suites: &[
            main("bookworm"),
            main("bookworm-updates"),
            security("bookworm-security"),
        ],
        metapackage: "linux-image-cloud-amd64",
        upstream_prefix: "6.1.",
    },
    Kernel {
        name: "debian-13-6.12",
        description: "Debian 13 trixie cloud kernel (6.12 LTS)",
        suites: &[
            main("trixie"),
            main("trixie-updates"),
            security("trixie-security"),
        ],
        metapackage: "linux-image-cloud-amd64",
        upstream_prefix: "6.12.",
    },
];

pub fn by_name(name: &str) -> Result<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
        format!("unknown kernel {name:?}; known: {}", names.join(", "))
    })
}

/// Every suite of the table (the sources file lists all of them, whatever is selected, so it
/// does not change from one run to the next).
pub fn all_suites(archives: &Archives) -> Vec<Suite> {
    KERNELS
        .iter()
        .flat_map(|k| k.suites.iter().map(|s| s.resolve(archives)))
        .collect()
}

/// What was fetched for a kernel.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub vmlinuz: PathBuf,
    /// "package=version" of the image package, as downloaded.
    pub package: String,
}

fn kernel_dir(k: &Kernel) -> PathBuf {
    super::vm_dir().join("kernels").join(k.name)
}

/// The cached kernel, if it was fetched before.
pub fn cached(k: &Kernel) -> Option<Fetched> {
    let dir = kernel_dir(k);
    let boot = dir.join("root").join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })?;
    let package = std::fs::read_to_string(dir.join("package"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "(unknown package)".into());
    Some(Fetched { vmlinuz, package })
}

/// Fetches and unpacks the kernel unless it is cached.
pub fn ensure(k: &Kernel) -> Result<Fetched> {
    if let Some(f) = cached(k) {
        return Ok(f);
    }
    let archives = super::apt::archives()?;
    ensure_suites(&all_suites(archives))?;
    apt_update()?;
    let (package, version) = resolve(k, archives)?;
    let spec = format!("{package}={version}");
    eprintln!("xtask: {}: fetching {spec}", k.name);

    let debs = super::vm_dir().join("kernels").join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    run(command("apt-get")
        .current_dir(&debs)
        // The download directory belongs to root; let apt write it without the _apt sandbox.
        .args(["-q", "-o", "APT::Sandbox::User=root", "download", &spec]))?;
    // apt-get download names the file <package>_<version with ':' as %3a>_<arch>.deb.
    let deb = std::fs::read_dir(&debs)
        .map_err(|e| format!("{}: {e}", debs.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{package}_{}_", version.replace(':', "%3a")))
                    && n.ends_with(".deb")
            })
        })
        .ok_or_else(|| format!("apt-get download {spec} left no .deb in {}", debs.display()))?;

    let dir = kernel_dir(k);
    let _ = std::fs::remove_dir_all(&dir);
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("root")).map_err(|e| format!("{}: {e}", tmp.display()))?;
    run(command("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(tmp.join("root")))?;
    std::fs::write(tmp.join("package"), format!("{spec}\n"))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &dir)
        .map_err(|e| format!("{} -> {}: {e}", tmp.display(), dir.display()))?;
    let _ = std::fs::remove_file(&deb);
    cached(k).ok_or_else(|| format!("{} has no boot/vmlinuz-*", deb.display()))
}

/// (image package, version): the newest `metapackage` in the kernel's suites, and the unsigned
/// image package it stands for (the signed one when no unsigned build exists).
fn resolve(k: &Kernel, archives: &Archives) -> Result<(String, String)> {
    let suites: Vec<Suite> = k.suites.iter().map(|s| s.resolve(archives)).collect();
    let madison = output(command("apt-cache").args(["madison", k.metapackage]))?;
    let mut best: Option<String> = None;
    for line in madison.lines() {
        // " linux-image-cloud-amd64 | 6.1.192-2 | <URI> bookworm-security/main amd64 Packages"
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, version, source] = cols.as_slice() else {
            continue;
        };
        let mut words = source.split_whitespace();
        let (Some(uri), Some(dist)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((suite, "main")) = dist.split_once('/') else {
            continue;
        };
        let uri = uri.trim_end_matches('/');
        if !suites.iter().any(|s| s.uri == uri && s.suite == suite) {
            continue;
        }
        let newer = match &best {
            None => true,
            Some(b) => version_gt(version, b),
        };
        if newer {
            best = Some(version.to_string());
        }
    }
    let version = best.ok_or_else(|| {
        let suites: Vec<String> = suites
            .iter()
            .map(|s| format!("{} {}", s.uri, s.suite))
            .collect();
        format!(
            "{}: no {} in {} (apt-cache madison found:\n{madison})",
            k.name,
            k.metapackage,
            suites.join(", ")
        )
    })?;
    if !version.starts_with(k.upstream_prefix) {
        return Err(format!(
            "{}: {}={version} is not a {}x kernel; update the kernel table",
            k.name, k.metapackage, k.upstream_prefix
        ));
    }
    let show = output(command("apt-cache").args([
        "show",
        "--no-all-versions",
        &format!("{}={version}", k.metapackage),
    ]))?;
    let image = show
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .into_iter()
        .flat_map(|d| d.split(','))
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-"))
        .ok_or_else(|| {
            format!(
                "{}={version} depends on no linux-image-* package",
                k.metapackage
            )
        })?
        .to_string();
    let unsigned = if image.ends_with("-unsigned") {
        image.clone()
    } else {
        format!("{image}-unsigned")
    };
    for candidate in [unsigned, image.clone()] {
        let exists = output(command("apt-cache").args([
            "show",
            "--no-all-versions",
            &format!("{candidate}={version}"),
        ]))
        .is_ok_and(|s| s.contains("Package:"));
        if exists {
            return Ok((candidate, version));
        }
    }
    Err(format!(
        "{}: neither {image}-unsigned nor {image} ={version} is available",
        k.name
    ))
}

/// `a > b` in Debian version order.
fn version_gt(a: &str, b: &str) -> bool {
    command("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

/// The kernel release a vmlinuz path names ("6.1.0-56-cloud-amd64").
pub fn release_of(vmlinuz: &Path) -> String {
    vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or("?")
        .to_string()
}
