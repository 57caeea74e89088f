//! The kernels the VM tests boot, read from `zc-trace/tests/data/kernel-matrix.toml` (each
//! `[[kernel]]` with a `[kernel.package]` table is a VM kernel), and fetching them from the
//! Debian archive through a private apt state (which checks the archive signatures and the
//! package hashes). The archive URIs are this machine's own (see `apt`); the data file only
//! names suites.
//!
//! A kernel is the newest `linux-image-<flavour>` of its suites, resolved when first fetched and
//! then cached under `target/vm/kernels/<name>/` (delete that directory to pick up a newer
//! upload). Its packages are the metapackage's closure of exact-version (`= <version>`)
//! dependencies: on 6.x one `linux-image-<release>` holding vmlinuz and the modules; on 7.x
//! `linux-binary-*` (vmlinuz), `linux-modules-*` (the modules) and `linux-base-*`
//! (`modules.builtin`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::util::{workspace_root, Result};

use super::arch::GuestArch;

use crate::debian::apt::Archives;
use crate::debian::private_apt::{unpack, AptState, Suite};

/// The data file, relative to the workspace root.
pub const MATRIX_FILE: &str = "zc-trace/tests/data/kernel-matrix.toml";

/// A kernel to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// Name on the command line, directory under `target/vm/kernels/`, entry of the matrix.
    pub name: String,
    pub description: String,
    /// Where to look; the newest version of the metapackage across these wins.
    pub suites: Vec<String>,
    /// "cloud-amd64": the metapackage is `linux-image-<flavour>`.
    pub flavour: String,
    /// Upstream version the resolved package must have ("6.1." matches 6.1.x), so a change of
    /// the suite's kernel line shows up as an error rather than a silently different kernel.
    pub upstream_prefix: String,
    /// The /var/tmp file systems the matrix boots it with (default: all four).
    pub filesystems: Vec<super::VarTmp>,
    /// The guest's architecture (default amd64).
    pub arch: GuestArch,
}

#[derive(Deserialize)]
struct File {
    kernel: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    package: Option<Package>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Package {
    description: String,
    suites: Vec<String>,
    flavour: String,
    upstream_prefix: String,
    filesystems: Option<Vec<String>>,
    #[serde(default)]
    arch: GuestArch,
}

impl Kernel {
    pub fn metapackage(&self) -> String {
        format!("linux-image-{}", self.flavour)
    }

    /// The suites with their archive: `*-security` on the security archive, the rest on the
    /// main one.
    pub fn resolved_suites(&self, archives: &Archives) -> Vec<Suite> {
        self.suites
            .iter()
            .map(|s| Suite {
                uri: if s.ends_with("-security") {
                    archives.security.clone()
                } else {
                    archives.main.clone()
                },
                suite: s.clone(),
            })
            .collect()
    }
}

/// Every VM kernel of the data file, in its order.
pub fn all() -> Result<Vec<Kernel>> {
    let path = workspace_root().join(MATRIX_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text)
}

pub fn parse(text: &str) -> Result<Vec<Kernel>> {
    let file: File = toml::from_str(text).map_err(|e| format!("{MATRIX_FILE}: {e}"))?;
    let kernels: Vec<Kernel> = file
        .kernel
        .into_iter()
        .filter_map(|e| {
            let p = e.package?;
            Some((e.name, p))
        })
        .map(|(name, p)| {
            let filesystems = match p.filesystems {
                None => super::VarTmp::ALL.to_vec(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        super::VarTmp::ALL
                            .iter()
                            .copied()
                            .find(|v| v.name() == n)
                            .ok_or_else(|| format!("{MATRIX_FILE}: {name}: no file system {n:?}"))
                    })
                    .collect::<Result<_>>()?,
            };
            Ok(Kernel {
                name,
                description: p.description,
                suites: p.suites,
                flavour: p.flavour,
                upstream_prefix: p.upstream_prefix,
                filesystems,
                arch: p.arch,
            })
        })
        .collect::<Result<_>>()?;
    if kernels.is_empty() {
        return Err(format!(
            "{MATRIX_FILE}: no [[kernel]] has a [kernel.package]"
        ));
    }
    Ok(kernels)
}

pub fn by_name<'a>(kernels: &'a [Kernel], name: &str) -> Result<&'a Kernel> {
    kernels.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
        format!("unknown kernel {name:?}; known: {}", names.join(", "))
    })
}

/// What was fetched for a kernel.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub vmlinuz: PathBuf,
    /// The kernel release ("6.1.0-56-cloud-amd64").
    pub release: String,
    /// `<root>/{usr/,}lib/modules/<release>`.
    pub modules: PathBuf,
    /// "package=version ..." of the packages, as downloaded.
    pub package: String,
}

fn kernel_dir(k: &Kernel) -> PathBuf {
    super::vm_dir().join("kernels").join(&k.name)
}

/// The cached kernel, if it was fetched before.
pub fn cached(k: &Kernel) -> Option<Fetched> {
    let dir = kernel_dir(k);
    let package = std::fs::read_to_string(dir.join("package")).ok()?;
    find_kernel(&dir.join("root"), package.trim())
}

/// vmlinuz in an unpacked root: `boot/vmlinuz-<release>` (6.x) or
/// `usr/lib/modules/<release>/vmlinuz` (7.x).
fn find_kernel(root: &Path, package: &str) -> Option<Fetched> {
    let entries = |d: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let in_boot = entries(root.join("boot")).into_iter().find_map(|p| {
        let release = p
            .file_name()?
            .to_str()?
            .strip_prefix("vmlinuz-")?
            .to_string();
        Some((p, release))
    });
    let in_modules = || {
        ["usr/lib/modules", "lib/modules"]
            .iter()
            .flat_map(|d| entries(root.join(d)))
            .find_map(|d| {
                let v = d.join("vmlinuz");
                let release = d.file_name()?.to_str()?.to_string();
                v.is_file().then_some((v, release))
            })
    };
    let (vmlinuz, release) = in_boot.or_else(in_modules)?;
    let modules = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&release))
        .find(|d| d.join("kernel").is_dir())?;
    Some(Fetched {
        vmlinuz,
        release,
        modules,
        package: package.to_string(),
    })
}

/// Fetches and unpacks the kernel unless it is cached.
pub fn ensure(k: &Kernel) -> Result<Fetched> {
    if let Some(f) = cached(k) {
        return Ok(f);
    }
    let archives = crate::debian::apt::archives()?;
    let suites = k.resolved_suites(archives);
    let name = format!("kernel-{}", k.name);
    let state = match k.arch {
        GuestArch::Amd64 => AptState::new(&name, suites.clone()),
        arch => AptState::for_arch(&name, suites.clone(), arch.debian()),
    };
    state.update()?;
    let specs = resolve(k, &state, &suites)?;
    eprintln!("xtask: {}: fetching {}", k.name, specs.join(" "));

    let dir = kernel_dir(k);
    let tmp = dir.with_file_name(format!("{}.partial", k.name));
    let _ = std::fs::remove_dir_all(&tmp);
    let debs = state.download(&specs, &tmp.join("debs"))?;
    unpack(&debs, &tmp.join("root"))?;
    std::fs::remove_dir_all(tmp.join("debs")).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::write(tmp.join("package"), format!("{}\n", specs.join(" ")))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)
        .map_err(|e| format!("{} -> {}: {e}", tmp.display(), dir.display()))?;
    cached(k).ok_or_else(|| {
        format!(
            "{}: the packages {} hold no vmlinuz with its modules",
            k.name,
            specs.join(" ")
        )
    })
}

/// The `package=version` specs of the kernel: the newest metapackage of its suites and the
/// closure of its exact-version dependencies.
fn resolve(k: &Kernel, state: &AptState, suites: &[Suite]) -> Result<Vec<String>> {
    let meta = k.metapackage();
    let policy = state.policy(&[&meta])?;
    let version = policy
        .first()
        .and_then(|p| p.newest_in(suites))
        .ok_or_else(|| {
            let names: Vec<&str> = suites.iter().map(|s| s.suite.as_str()).collect();
            format!("{}: no {meta} in {}", k.name, names.join(", "))
        })?
        .to_string();
    if !version.starts_with(&k.upstream_prefix) {
        return Err(format!(
            "{}: {meta}={version} is not a {}x kernel; update {MATRIX_FILE}",
            k.name, k.upstream_prefix
        ));
    }
    let mut specs = Vec::new();
    let mut todo = vec![meta];
    while let Some(p) = todo.pop() {
        let spec = format!("{p}={version}");
        if specs.contains(&spec) {
            continue;
        }
        for d in state.depends(&p, &version)? {
            if !d.alternatives && d.exact.as_deref() == Some(version.as_str()) {
                todo.push(d.package);
            }
        }
        specs.push(spec);
    }
    // The metapackage stays first: it names the kernel in summaries.
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_data_names_five_debian_kernels() {
        let ks = all().unwrap();
        let names: Vec<&str> = ks.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "debian-11-5.10",
                "debian-12-6.1",
                "debian-13-6.12",
                "debian-13-6.12-rt",
                "debian-13-bpo-7"
            ]
        );
        let rt = by_name(&ks, "debian-13-6.12-rt").unwrap();
        assert_eq!(rt.metapackage(), "linux-image-rt-amd64");
        assert_eq!(
            rt.filesystems,
            [super::super::VarTmp::Ext4, super::super::VarTmp::Tmpfs]
        );
        assert_eq!(by_name(&ks, "debian-12-6.1").unwrap().filesystems.len(), 4);
        let bpo = by_name(&ks, "debian-13-bpo-7").unwrap();
        assert_eq!(bpo.metapackage(), "linux-image-cloud-amd64");
        assert!(bpo.suites.contains(&"trixie-backports".to_string()));
    }

    #[test]
    fn security_suites_use_the_security_archive() {
        let k = &parse(
            "[[kernel]]\nname = \"k\"\n[kernel.package]\ndescription = \"d\"\n\
             suites = [\"trixie\", \"trixie-security\"]\nflavour = \"cloud-amd64\"\n\
             upstream_prefix = \"6.12.\"\n",
        )
        .unwrap()[0];
        let a = Archives {
            main: "http://m".into(),
            security: "http://s".into(),
        };
        let s = k.resolved_suites(&a);
        assert_eq!(s[0].uri, "http://m");
        assert_eq!(s[1].uri, "http://s");
    }

    #[test]
    fn an_unknown_package_field_is_an_error() {
        let e = parse(
            "[[kernel]]\nname = \"k\"\n[kernel.package]\ndescription = \"d\"\nsuites = []\n\
             flavour = \"x\"\nupstream_prefix = \"6.\"\nmetapackage = \"y\"\n",
        )
        .unwrap_err();
        assert!(e.contains("metapackage"), "{e}");
    }

    #[test]
    fn vmlinuz_is_found_in_either_layout() {
        let root = std::env::temp_dir().join(format!("zc-kernels-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let m7 = root.join("a/usr/lib/modules/7.3.4+deb13-cloud-amd64");
        std::fs::create_dir_all(m7.join("kernel")).unwrap();
        std::fs::write(m7.join("vmlinuz"), "").unwrap();
        let f = find_kernel(&root.join("a"), "p=1").unwrap();
        assert_eq!(f.release, "7.3.4+deb13-cloud-amd64");
        assert_eq!(f.modules, m7);
        std::fs::create_dir_all(root.join("b/boot")).unwrap();
        std::fs::write(root.join("b/boot/vmlinuz-6.1.0-56-cloud-amd64"), "").unwrap();
        let m6 = root.join("b/lib/modules/6.1.0-56-cloud-amd64/kernel");
        std::fs::create_dir_all(&m6).unwrap();
        let f = find_kernel(&root.join("b"), "p=1").unwrap();
        assert_eq!(f.release, "6.1.0-56-cloud-amd64");
        assert!(find_kernel(&root.join("c"), "p=1").is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
