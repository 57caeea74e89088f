//! The programs zc-trace's `trace` tests trace and compare against (nginx and strace), unpacked
//! from this machine's Debian release into `target/trace-tools/root/` like the VM tools
//! (`debian`): resolved and downloaded in a private apt state, unpacked with `dpkg-deb -x`,
//! run through the unpacked loader and libraries. Nothing is installed on the host, removed or
//! downgraded. `cargo xtask test` hands the root to the tests as `ZC_TRACE_TOOLS`.

use std::path::{Path, PathBuf};

use crate::debian::{fetch_unpacked, find_unpacked, published, release_codename, unpacked_command};
use crate::util::{output, workspace_root, Result};

/// The private apt state the packages are resolved in (under `target/vm/apt/`).
const APT_STATE: &str = "trace-tools";
/// nginx, the smallest build first: releases after bookworm dropped `nginx-light` (their
/// `nginx` has the few modules the tests need).
const NGINX: &[&str] = &["nginx-light", "nginx"];
const STRACE: &str = "strace";

fn dir() -> PathBuf {
    workspace_root().join("target/trace-tools")
}

/// What the stamp file holds: the release and the packages asked for. A different list (a
/// package added here) or another release unpacks afresh.
fn stamp_text(codename: &str) -> String {
    format!("{codename}: {} {STRACE}\n", NGINX.join("|"))
}

/// The root the tools are unpacked into, fetching them first where needed (a second call,
/// with the stamp in place and the tools answering, is instant). Fails, naming what is
/// missing, when they cannot be had.
pub fn ensure() -> Result<PathBuf> {
    let codename = release_codename()?;
    let dir = dir();
    let root = dir.join("root");
    let stamp = dir.join("packages");
    if std::fs::read_to_string(&stamp).ok() == Some(stamp_text(&codename)) && check(&root).is_ok() {
        return Ok(root);
    }
    let _ = std::fs::remove_file(&stamp);
    let available = published(APT_STATE, &[NGINX, &[STRACE]].concat())?;
    let packages = choose(&available, &codename)?;
    eprintln!(
        "xtask: fetching the trace tests' programs from Debian {codename} into {} (nothing is \
         installed on this machine): {}",
        root.display(),
        packages.join(" ")
    );
    fetch_unpacked(APT_STATE, &packages, &root)?;
    check(&root).map_err(|e| {
        format!(
            "the trace tests' programs were unpacked into {} but do not run: {e}",
            root.display()
        )
    })?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(&stamp, stamp_text(&codename))
        .map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(root)
}

/// The packages to fetch, given those the release publishes: the first nginx of `NGINX`, and
/// strace. Names what the release lacks.
fn choose(available: &[String], codename: &str) -> Result<Vec<&'static str>> {
    let has = |p: &str| available.iter().any(|a| a == p);
    let mut missing = Vec::new();
    let nginx = NGINX.iter().copied().find(|p| has(p));
    if nginx.is_none() {
        missing.push(NGINX.join(" or "));
    }
    if !has(STRACE) {
        missing.push(STRACE.to_string());
    }
    match nginx {
        Some(nginx) if missing.is_empty() => Ok(vec![nginx, STRACE]),
        _ => Err(format!(
            "Debian {codename} (this machine's release) publishes no {}, which the trace tests \
             need",
            missing.join(", no ")
        )),
    }
}

/// Both programs answer: nginx its version, strace its own.
fn check(root: &Path) -> Result {
    for (program, version) in [("nginx", "-v"), (STRACE, "-V")] {
        let path = find_unpacked(root, program)
            .ok_or_else(|| format!("{program} is not in {}", root.display()))?;
        output(unpacked_command(root, &path, program).arg(version))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nginx_light_first_then_nginx() {
        let both = names(&["nginx-light", "nginx", "strace"]);
        assert_eq!(
            choose(&both, "bookworm").unwrap(),
            ["nginx-light", "strace"]
        );
        let trixie = names(&["nginx", "strace"]);
        assert_eq!(choose(&trixie, "trixie").unwrap(), ["nginx", "strace"]);
    }

    #[test]
    fn what_the_release_lacks_is_named() {
        let e = choose(&names(&["strace"]), "sid").unwrap_err();
        assert!(e.contains("publishes no nginx-light or nginx,"), "{e}");
        let e = choose(&names(&["nginx"]), "sid").unwrap_err();
        assert!(e.contains("publishes no strace,"), "{e}");
        let e = choose(&[], "sid").unwrap_err();
        assert!(e.contains("no nginx-light or nginx, no strace,"), "{e}");
    }

    #[test]
    fn the_stamp_names_release_and_packages() {
        assert_eq!(
            stamp_text("bookworm"),
            "bookworm: nginx-light|nginx strace\n"
        );
    }
}
