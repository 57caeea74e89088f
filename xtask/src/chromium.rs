//! Headless Chromium for the HTML report's test (`zc-trace/tests/suite/html_report.rs`), unpacked
//! from this machine's Debian release into `target/chromium/root/` like the trace tests'
//! programs (`trace_tools`): resolved and downloaded in a private apt state of its own
//! (`target/vm/apt/chromium/`), unpacked with `dpkg-deb -x`, run through the unpacked loader
//! and libraries. Nothing is installed on the host, removed or downgraded. A folder and stamp
//! of its own, because it is large (about 230 MB of packages, 840 MB unpacked) and only one
//! test needs it. `cargo xtask test` hands the root to the tests as `ZC_TRACE_CHROMIUM`.
//!
//! Chromium finds its data files (ICU, .pak) next to `/proc/self/exe` and starts its child
//! processes from it; run through the loader, that is the loader. So a copy of the loader goes
//! next to the browser, and a launcher script (`zc-trace-chromium` in the root) runs the
//! browser through that copy with the unpacked libraries and fonts. A caller passes
//! `--no-zygote --browser-subprocess-path=<the launcher>` so that the children start through the
//! launcher too (the zygote would start from the loader itself).

use std::path::{Path, PathBuf};

use crate::debian::{fetch_unpacked, published, release_codename};
use crate::util::{output, workspace_root, Result};

/// The private apt state the packages are resolved in (under `target/vm/apt/`).
const APT_STATE: &str = "chromium";
/// The browser, and fonts for the page's text: DejaVu (fontconfig's own dependency picks one
/// only among alternatives; this one is named so that the text always has glyphs) and a small
/// CJK font (1.6 MB), since the seed article's quotes in the claims table are in Chinese.
const PACKAGES: &[&str] = &["chromium", "fonts-dejavu-core", "fonts-wqy-microhei"];
/// The browser binary inside the root (`/usr/bin/chromium` is a shell wrapper around it).
const BINARY: &str = "usr/lib/chromium/chromium";
/// The loader's copy next to the browser.
const LOADER_COPY: &str = "usr/lib/chromium/ld-linux-x86-64.so.2";
const LOADER: &str = "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
/// The launcher the tests run, in the root.
const LAUNCHER: &str = "zc-trace-chromium";
/// The fontconfig file the launcher points Chromium at: the unpacked fonts only.
const FONTS_CONF: &str = "etc/fonts/zc-trace-fonts.conf";
/// Library directories of the unpacked root, in search order (PulseAudio keeps a private
/// library in a directory of its own).
const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu/pulseaudio",
    "lib",
    "usr/lib",
];
/// Bumped when the launcher changes, so an older unpacked root is made afresh.
const LAUNCHER_VERSION: u32 = 1;

fn dir() -> PathBuf {
    workspace_root().join("target/chromium")
}

/// What the stamp file holds: the release and the packages asked for.
fn stamp_text(codename: &str) -> String {
    format!(
        "{codename}: {} (launcher {LAUNCHER_VERSION})\n",
        PACKAGES.join(" ")
    )
}

/// The root Chromium is unpacked into, fetching it first where needed (a second call, with the
/// stamp in place and the browser answering, is instant). Fails, naming what is missing, when
/// it cannot be had.
pub fn ensure() -> Result<PathBuf> {
    let codename = release_codename()?;
    let dir = dir();
    let root = dir.join("root");
    let stamp = dir.join("packages");
    if std::fs::read_to_string(&stamp).ok() == Some(stamp_text(&codename)) && check(&root).is_ok() {
        return Ok(root);
    }
    let _ = std::fs::remove_file(&stamp);
    let available = published(APT_STATE, PACKAGES)?;
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !available.iter().any(|a| a == p))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "Debian {codename} (this machine's release) publishes no {}, which the HTML \
             report's test needs",
            missing.join(", no ")
        ));
    }
    eprintln!(
        "xtask: fetching Chromium for the HTML report's test from Debian {codename} into {} \
         (nothing is installed on this machine; about 230 MB): {}",
        root.display(),
        PACKAGES.join(" ")
    );
    let started = std::time::Instant::now();
    fetch_unpacked(APT_STATE, PACKAGES, &root)?;
    install_launcher(&root)?;
    check(&root).map_err(|e| {
        format!(
            "Chromium was unpacked into {} but does not run: {e}",
            root.display()
        )
    })?;
    eprintln!(
        "xtask: Chromium fetched and unpacked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(&stamp, stamp_text(&codename))
        .map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(root)
}

/// Writes the loader's copy, the fontconfig file and the launcher into `root`.
fn install_launcher(root: &Path) -> Result {
    let write = |relative: &str, text: &str| {
        let path = root.join(relative);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let copy = root.join(LOADER_COPY);
    std::fs::copy(root.join(LOADER), &copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    write(FONTS_CONF, &fonts_conf(root))?;
    write(LAUNCHER, &launcher(root))?;
    let path = root.join(LAUNCHER);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `path` as one word of a shell command.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The launcher: Chromium through the loader's copy, with the unpacked libraries and fonts.
fn launcher(root: &Path) -> String {
    let libs: Vec<String> = LIB_DIRS
        .iter()
        .map(|d| root.join(d).display().to_string())
        .collect();
    format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask chromium` (zc-trace): the unpacked Chromium, through the \
         unpacked loader.\n\
         export FONTCONFIG_FILE={}\n\
         exec {} --library-path {} --argv0 chromium {} \"$@\"\n",
        shell_quote(&root.join(FONTS_CONF)),
        shell_quote(&root.join(LOADER_COPY)),
        shell_quote(Path::new(&libs.join(":"))),
        shell_quote(&root.join(BINARY)),
    )
}

/// A fontconfig file that reads the unpacked fonts and configuration only.
fn fonts_conf(root: &Path) -> String {
    let r = |p: &str| {
        root.join(p)
            .display()
            .to_string()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
    };
    format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE fontconfig SYSTEM \"fonts.dtd\">\n<fontconfig>\n  \
         <dir>{}</dir>\n  <cachedir>{}</cachedir>\n  \
         <include ignore_missing=\"yes\">{}</include>\n</fontconfig>\n",
        r("usr/share/fonts"),
        r("var/cache/fontconfig"),
        r("etc/fonts/conf.d"),
    )
}

/// The browser answers with its version, through the launcher.
fn check(root: &Path) -> Result {
    let launcher = root.join(LAUNCHER);
    if !launcher.exists() {
        return Err(format!("{} is missing", launcher.display()));
    }
    output(std::process::Command::new(&launcher).arg("--version"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_names_release_and_packages() {
        assert_eq!(
            stamp_text("bookworm"),
            "bookworm: chromium fonts-dejavu-core fonts-wqy-microhei (launcher 1)\n"
        );
    }

    #[test]
    fn the_launcher_quotes_its_paths() {
        let l = launcher(Path::new("/w/it's"));
        assert!(l.starts_with("#!/bin/sh\n"), "{l}");
        assert!(
            l.contains("exec '/w/it'\\''s/usr/lib/chromium/ld-linux-x86-64.so.2' --library-path"),
            "{l}"
        );
        assert!(l.ends_with("/usr/lib/chromium/chromium' \"$@\"\n"), "{l}");
    }
}
