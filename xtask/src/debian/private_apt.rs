//! A private apt state under `target/vm/apt/<name>/`: its own sources list, package lists,
//! archive cache and an empty dpkg status, so resolving and downloading packages never reads or
//! writes the host's apt configuration or its installed-package database. Nothing is installed:
//! the harness unpacks what it downloads with `dpkg-deb -x` into folders of its own.
//!
//! The status file is empty on purpose: what the host has installed (say `qemu-utils` from
//! bookworm-backports while the sources list only bookworm) cannot pull a resolution towards
//! another release, and a dependency set is resolved as a whole from the suites of the state.
//! The archive URIs are the host's own (see `apt`); only suite names come from the harness.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{command, output, run, Result};

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// One apt suite with its archive URI (component `main`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Suite {
    pub uri: String,
    pub suite: String,
}

/// A private apt state.
pub struct AptState {
    dir: PathBuf,
    suites: Vec<Suite>,
    /// The Debian architecture it resolves for ("arm64"); `None`: the host's.
    arch: Option<&'static str>,
}

impl AptState {
    /// The state `name` under `target/vm/apt/`, serving exactly `suites`.
    pub fn new(name: &str, suites: Vec<Suite>) -> AptState {
        AptState {
            dir: crate::vm::vm_dir().join("apt").join(name),
            suites,
            arch: None,
        }
    }

    /// The state `name`, resolving packages of the Debian architecture `arch` ("arm64") only:
    /// the packages for an arm64 guest, on any host. They are only ever unpacked, never run
    /// here.
    pub fn for_arch(name: &str, suites: Vec<Suite>, arch: &'static str) -> AptState {
        AptState {
            arch: Some(arch),
            ..AptState::new(name, suites)
        }
    }

    /// The `-o` options that point apt at this state and nowhere else.
    pub fn options(&self) -> Vec<String> {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        [
            format!("Dir::Etc::SourceList={}", d("sources.list")),
            format!("Dir::Etc::SourceParts={}", d("sources.list.d")),
            format!("Dir::Etc::Preferences={}", d("preferences")),
            format!("Dir::Etc::PreferencesParts={}", d("preferences.d")),
            format!("Dir::State={}", d("state")),
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::State::status={}", d("status")),
            format!("Dir::Cache={}", d("cache")),
            format!("Dir::Cache::Archives={}", d("archives")),
            format!("Dir::Log={}", d("log")),
            // The state belongs to root; without the _apt sandbox apt can write it.
            "APT::Sandbox::User=root".into(),
            // Recommends would pull in much that no VM needs.
            "APT::Install-Recommends=false".into(),
            // The host's own apt may be busy or locked; this state has nothing to share.
            "Debug::NoLocking=true".into(),
        ]
        .into_iter()
        .chain(self.arch.into_iter().flat_map(|a| {
            [
                format!("APT::Architecture={a}"),
                format!("APT::Architectures={a}"),
            ]
        }))
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    /// The one-line sources list of the state.
    pub fn sources_list(&self) -> String {
        let mut text = String::from("# Written by `cargo xtask vm-test` (zc-trace).\n");
        for s in &self.suites {
            text.push_str(&format!(
                "deb [signed-by={KEYRING}] {} {} main\n",
                s.uri, s.suite
            ));
        }
        text
    }

    pub fn apt_get(&self) -> Command {
        let mut c = command("apt-get");
        c.args(self.options()).arg("-q");
        c
    }

    pub fn apt_cache(&self) -> Command {
        let mut c = command("apt-cache");
        c.args(self.options());
        c
    }

    /// Lays the state out (idempotent) and runs `apt-get update` in it.
    pub fn update(&self) -> Result {
        for sub in [
            "sources.list.d",
            "preferences.d",
            "state",
            "lists/partial",
            "cache",
            "archives/partial",
            "log",
        ] {
            let d = self.dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        write(&self.dir.join("sources.list"), &self.sources_list())?;
        write(&self.dir.join("preferences"), "")?;
        write(&self.dir.join("status"), "")?;
        run(self.apt_get().arg("update"))
    }

    /// `apt-cache policy` of the packages, parsed.
    pub fn policy(&self, packages: &[&str]) -> Result<Vec<Policy>> {
        Ok(parse_policy(&output(
            self.apt_cache().arg("policy").args(packages),
        )?))
    }

    /// `apt-cache show pkg=version`: the Depends of that one version.
    pub fn depends(&self, package: &str, version: &str) -> Result<Vec<Dependency>> {
        let show = output(self.apt_cache().args([
            "show",
            "--no-all-versions",
            &format!("{package}={version}"),
        ]))?;
        Ok(parse_depends(&show))
    }

    /// Downloads `packages` with their whole dependency closure (as if onto an empty system)
    /// into the state's archive cache; returns the .deb files of that closure.
    pub fn download_closure(&self, packages: &[&str]) -> Result<Vec<PathBuf>> {
        let archives = self.dir.join("archives");
        // Files of an earlier, different closure would be unpacked too.
        clear_debs(&archives)?;
        run(self
            .apt_get()
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--download-only"])
            .args(packages))?;
        debs_in(&archives)
    }

    /// Downloads exactly these `package=version` specs into `dir` (no dependencies).
    pub fn download(&self, specs: &[String], dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        clear_debs(dir)?;
        run(self.apt_get().current_dir(dir).arg("download").args(specs))?;
        debs_in(dir)
    }
}

fn write(path: &Path, text: &str) -> Result {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn debs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    Ok(debs)
}

fn clear_debs(dir: &Path) -> Result {
    for deb in debs_in(dir)? {
        std::fs::remove_file(&deb).map_err(|e| format!("{}: {e}", deb.display()))?;
    }
    Ok(())
}

/// Unpacks every .deb into `root` (`dpkg-deb -x`, no maintainer scripts, nothing registered)
/// and turns absolute symbolic links into links inside `root`, so that nothing unpacked
/// points back into the host's own files.
pub fn unpack(debs: &[PathBuf], root: &Path) -> Result {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for deb in debs {
        run(command("dpkg-deb").arg("-x").arg(deb).arg(root))?;
    }
    relink_absolute(root, root)
}

fn relink_absolute(root: &Path, dir: &Path) -> Result {
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if let Ok(inside) = target.strip_prefix("/") {
                std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                std::os::unix::fs::symlink(root.join(inside), &path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        } else if meta.is_dir() {
            relink_absolute(root, &path)?;
        }
    }
    Ok(())
}

/// One package of `apt-cache policy` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub package: String,
    /// `None` for "(none)".
    pub installed: Option<String>,
    pub candidate: Option<String>,
    /// The version table, newest first, as apt prints it.
    pub versions: Vec<PolicyVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: String,
    /// Where it is published (archive URI and suite); the dpkg status line is left out.
    pub sources: Vec<Suite>,
}

impl Policy {
    /// The newest version published in one of `suites` (apt lists versions newest first).
    pub fn newest_in(&self, suites: &[Suite]) -> Option<&str> {
        self.versions
            .iter()
            .find(|v| v.sources.iter().any(|s| suites.contains(s)))
            .map(|v| v.version.as_str())
    }
}

/// Parses `apt-cache policy` output (one or more packages).
pub fn parse_policy(text: &str) -> Vec<Policy> {
    let mut out: Vec<Policy> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            if let Some(name) = trimmed.strip_suffix(':') {
                out.push(Policy {
                    package: name.to_string(),
                    installed: None,
                    candidate: None,
                    versions: Vec::new(),
                });
            }
            continue;
        }
        let Some(p) = out.last_mut() else { continue };
        let none = |v: &str| (v != "(none)").then(|| v.to_string());
        if let Some(v) = trimmed.strip_prefix("Installed:") {
            p.installed = none(v.trim());
        } else if let Some(v) = trimmed.strip_prefix("Candidate:") {
            p.candidate = none(v.trim());
        } else if trimmed.starts_with("Version table:") {
        } else {
            // "*** 1:10.0.2 100" / "7.3.4-1~bpo13+1 500": a version; "500 URI suite/comp arch
            // Packages" or "100 /var/lib/dpkg/status": where it comes from.
            let words: Vec<&str> = trimmed
                .trim_start_matches("***")
                .split_whitespace()
                .collect();
            match words.as_slice() {
                [prio, uri, dist, ..] if prio.parse::<i32>().is_ok() && uri.contains("://") => {
                    if let (Some(v), Some((suite, _component))) =
                        (p.versions.last_mut(), dist.split_once('/'))
                    {
                        v.sources.push(Suite {
                            uri: uri.trim_end_matches('/').to_string(),
                            suite: suite.to_string(),
                        });
                    }
                }
                [prio, _status] if prio.parse::<i32>().is_ok() => {}
                [version, prio] if prio.parse::<i32>().is_ok() => {
                    p.versions.push(PolicyVersion {
                        version: version.to_string(),
                        sources: Vec::new(),
                    });
                }
                _ => {}
            }
        }
    }
    out
}

/// One dependency of a Depends field: alternatives (`a | b`) are kept as `alternatives`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub package: String,
    /// The version when the dependency is `(= version)`.
    pub exact: Option<String>,
    pub alternatives: bool,
}

/// The Depends field of `apt-cache show --no-all-versions` output.
pub fn parse_depends(show: &str) -> Vec<Dependency> {
    let Some(field) = show.lines().find_map(|l| l.strip_prefix("Depends:")) else {
        return Vec::new();
    };
    field
        .split(',')
        .filter_map(|group| {
            let alternatives = group.contains('|');
            let first = group.split('|').next()?.trim();
            let package = first.split_whitespace().next()?.to_string();
            let exact = first
                .split_once("(=")
                .and_then(|(_, v)| v.split(')').next())
                .map(|v| v.trim().to_string());
            Some(Dependency {
                package,
                exact,
                alternatives,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "http://deb.debian.org/debian";
    const SECURITY: &str = "http://deb.debian.org/debian-security";

    fn suite(uri: &str, suite: &str) -> Suite {
        Suite {
            uri: uri.into(),
            suite: suite.into(),
        }
    }

    /// The fresh machine of the test-infrastructure issue, as the host's own apt sees it:
    /// qemu-utils 10.0 installed from bookworm-backports, which no configured source serves.
    const HOST_POLICY: &str = "\
qemu-utils:
  Installed: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Version table:
 *** 1:10.0.2+ds-2+deb13u1~bpo12+1 100
        100 /var/lib/dpkg/status
     1:7.2+dfsg-7+deb12u18+b3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
qemu-system-x86:
  Installed: (none)
  Candidate: 1:7.2+dfsg-7+deb12u18+b3
  Version table:
     1:7.2+dfsg-7+deb12u18+b3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
     1:7.2+dfsg-7+deb12u15 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
";

    /// The same packages in the harness's private state: nothing installed, so the installed
    /// backports qemu-utils cannot pull the resolution anywhere.
    const PRIVATE_POLICY: &str = "\
qemu-utils:
  Installed: (none)
  Candidate: 1:7.2+dfsg-7+deb12u18+b3
  Version table:
     1:7.2+dfsg-7+deb12u18+b3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
     1:7.2+dfsg-7+deb12u15 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
";

    /// trixie with backports: the backports kernel (7.x) is pinned at 100 and is newest.
    const KERNEL_POLICY: &str = "\
linux-image-cloud-amd64:
  Installed: (none)
  Candidate: 6.12.118-1
  Version table:
     7.3.4-1~bpo13+1 100
        100 http://deb.debian.org/debian trixie-backports/main amd64 Packages
     6.12.118-1 500
        500 http://deb.debian.org/debian-security trixie-security/main amd64 Packages
     6.12.117-1 500
        500 http://deb.debian.org/debian trixie/main amd64 Packages
";

    #[test]
    fn the_fresh_machine_policy_is_read() {
        let p = parse_policy(HOST_POLICY);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].package, "qemu-utils");
        assert_eq!(
            p[0].installed.as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        // The installed version is served by no source: only the status file lists it.
        assert!(p[0].versions[0].sources.is_empty(), "{:?}", p[0]);
        assert_eq!(p[1].installed, None);
        let bookworm = [
            suite(MAIN, "bookworm"),
            suite(SECURITY, "bookworm-security"),
        ];
        assert_eq!(p[1].newest_in(&bookworm), Some("1:7.2+dfsg-7+deb12u18+b3"));
    }

    #[test]
    fn the_private_state_resolves_from_its_own_suites_only() {
        let p = parse_policy(PRIVATE_POLICY);
        assert_eq!(p[0].installed, None, "the private status is empty");
        assert_eq!(p[0].candidate.as_deref(), Some("1:7.2+dfsg-7+deb12u18+b3"));
        let only_security = [suite(SECURITY, "bookworm-security")];
        assert_eq!(
            p[0].newest_in(&only_security),
            Some("1:7.2+dfsg-7+deb12u15")
        );
    }

    #[test]
    fn the_newest_kernel_of_the_chosen_suites_wins_whatever_its_pin() {
        let p = &parse_policy(KERNEL_POLICY)[0];
        let backports = [suite(MAIN, "trixie-backports")];
        assert_eq!(p.newest_in(&backports), Some("7.3.4-1~bpo13+1"));
        let stable = [
            suite(MAIN, "trixie"),
            suite(MAIN, "trixie-updates"),
            suite(SECURITY, "trixie-security"),
        ];
        assert_eq!(p.newest_in(&stable), Some("6.12.118-1"));
        assert_eq!(p.newest_in(&[suite(MAIN, "sid")]), None);
    }

    #[test]
    fn the_private_state_never_points_at_the_hosts_apt() {
        let state = AptState::new("t", vec![suite(MAIN, "bookworm")]);
        let opts = state.options().join(" ");
        for key in [
            "Dir::Etc::SourceList=",
            "Dir::Etc::SourceParts=",
            "Dir::Etc::Preferences=",
            "Dir::Etc::PreferencesParts=",
            "Dir::State=",
            "Dir::State::Lists=",
            "Dir::State::status=",
            "Dir::Cache=",
            "Dir::Cache::Archives=",
            "Dir::Log=",
        ] {
            let value = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} is not set: {opts}"));
            assert!(value.contains("target/vm/apt/t"), "{key}{value}");
        }
        assert!(
            !opts.contains("/etc/apt") && !opts.contains("/var/lib/dpkg"),
            "{opts}"
        );
        assert_eq!(
            state.sources_list().lines().nth(1),
            Some(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian bookworm main"
            )
        );
    }

    #[test]
    fn depends_keep_exact_versions_and_mark_alternatives() {
        let show = "Package: linux-image-7.3.4+deb13-cloud-amd64\nVersion: 7.3.4-1~bpo13+1\n\
            Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
            linux-base-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1), \
            linux-binary-7.3.4+deb13-cloud-amd64 (= 7.3.4-1~bpo13+1)\nSize: 1928\n";
        let d = parse_depends(show);
        assert_eq!(d.len(), 3);
        assert!(d[0].alternatives);
        assert_eq!(d[0].exact, None);
        assert_eq!(d[1].package, "linux-base-7.3.4+deb13-cloud-amd64");
        assert_eq!(d[2].exact.as_deref(), Some("7.3.4-1~bpo13+1"));
        assert!(!d[2].alternatives);
    }
}
