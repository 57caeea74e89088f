//! The README's test command. Order: cheap static checks first, then the tests, then the
//! kernel matrix in VMs (`vm-test`).

use std::path::Path;

use crate::util::{command, run, workspace_root, Result};
use crate::vm::MatrixError;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Leave out the VM kernel matrix (the last line then says what was not checked). Without
    /// it, a matrix that cannot be set up fails the run.
    #[arg(long)]
    no_vm: bool,
}

pub fn run_all(args: TestArgs) -> Result {
    let root = workspace_root();
    crate::setup::ensure_all()?;
    crate::ebpf::build(true)?;
    run(command("cargo")
        .args(["fmt", "--all", "--check"])
        .current_dir(&root))?;
    // The eBPF crate is outside the workspace; stable rustfmt formats it all the same.
    run(command("rustfmt")
        .args(["--check", "--edition", "2021", "zc-trace-ebpf/src/main.rs"])
        .current_dir(&root))?;
    run(command("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(&root))?;
    crate::ebpf::clippy()?;
    // The arm64 build: the same lints for the other architecture, so that an x86-only type or
    // constant (a libc type that differs between glibc and musl, a syscall number) fails here.
    run(command("cargo")
        .args(["clippy", "-p", "zc-trace", "--all-targets", "--target"])
        .arg(crate::setup::ARM64_TARGET)
        .args(["--", "-D", "warnings"])
        .current_dir(&root))?;
    check_alone_tests(&root.join("zc-trace"))?;
    check_fake_site(&root)?;
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if ci {
        eprintln!("xtask: CI=true: tests that need root and BPF fail instead of skipping");
    }
    // The `trace` tests run nginx and strace from this folder (they are not installed).
    let trace_tools = crate::trace_tools::ensure()?;
    // The HTML report's test renders the page in headless Chromium from this folder.
    let chromium = crate::chromium::ensure()?;
    run(command("cargo")
        .args(["test", "--workspace"])
        .env("ZC_TRACE_TOOLS", &trace_tools)
        .env("ZC_TRACE_CHROMIUM", &chromium)
        .current_dir(&root))?;
    if args.no_vm {
        // The last line says what was not checked, so a passing run is not read as "all".
        eprintln!("xtask: {}", not_checked());
        return Ok(());
    }
    eprintln!("xtask: the VM kernel matrix (`cargo xtask vm-test`)");
    let started = std::time::Instant::now();
    let result = matrix_verdict(crate::vm::test_matrix());
    eprintln!(
        "xtask: the VM kernel matrix took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// The tests in `zc-trace/tests/alone/` watch system-wide state (every eBPF program loaded,
/// /run/netns, tracefs, peak memory) that a second test of their binary, run in parallel,
/// would change: each file must hold one test and be a `[[test]]` of zc-trace's Cargo.toml
/// (Cargo does not look in a subfolder by itself, so an unlisted file would never run).
fn check_alone_tests(crate_dir: &Path) -> Result {
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml"))
        .map_err(|e| format!("{}/Cargo.toml: {e}", crate_dir.display()))?;
    let manifest: toml::Value =
        toml::from_str(&manifest).map_err(|e| format!("zc-trace/Cargo.toml: {e}"))?;
    let listed: Vec<&str> = manifest
        .get("test")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("path")?.as_str())
        .collect();
    let dir = crate_dir.join("tests/alone");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let mut problems = Vec::new();
    if files.is_empty() {
        problems.push(format!("no test found in {}", dir.display()));
    }
    for f in &files {
        let rel = format!(
            "tests/alone/{}",
            f.file_name().unwrap_or_default().to_string_lossy()
        );
        if !listed.contains(&rel.as_str()) {
            problems.push(format!(
                "{rel} is not a [[test]] of zc-trace/Cargo.toml, so it never runs"
            ));
        }
        let text = std::fs::read_to_string(f).map_err(|e| format!("{rel}: {e}"))?;
        let tests = text.lines().filter(|l| l.trim() == "#[test]").count();
        if tests != 1 {
            problems.push(format!(
                "{rel} holds {tests} tests: a test there runs alone, one per binary"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Where the compiler must stop a new copy site or place until it is named: (file, error
/// code, what a developer writes there). docs/developing.md ("Adding a copy site") says the
/// same; everything else reads the catalogue entry.
const FAKE_SITE_ERRORS: &[(&str, &str, &str)] = &[
    (
        "zc-trace/src/kernel/probes.rs",
        "E0308",
        "the site's entry in PLAN (one per HookId: its attach candidates, eBPF counter row, \
         side, sink family, place and fallback)",
    ),
    (
        "zc-trace/src/kernel/probes.rs",
        "E0004",
        "a new place's byte-ledger leg (Place::leg)",
    ),
    (
        "zc-trace/src/report/html.rs",
        "E0004",
        "a new place's arrows in the HTML diagram (route)",
    ),
];

/// Builds zc-trace with the `fake-site` feature (a HookId and a Place that no table knows) and
/// checks that the compiler refuses them exactly where FAKE_SITE_ERRORS says: a site that
/// compiled unnoticed, or a place a new site must be named that nobody listed, fails here.
fn check_fake_site(root: &Path) -> Result {
    let out = command("cargo")
        .args([
            "check",
            "-p",
            "zc-trace",
            "--features",
            "fake-site",
            "--message-format",
            "json",
        ])
        .current_dir(root)
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start cargo check: {e}"))?;
    let errors = compiler_errors(&String::from_utf8_lossy(&out.stdout));
    fake_site_verdict(&errors, FAKE_SITE_ERRORS)?;
    eprintln!("xtask: a new copy site is compiler-guided; the compiler asks for:");
    for (file, code, what) in FAKE_SITE_ERRORS {
        eprintln!("xtask:   {file} ({code}): {what}");
    }
    Ok(())
}

/// (file, code, rendered message) of each error in cargo's JSON messages.
fn compiler_errors(json_lines: &str) -> Vec<(String, String, String)> {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-message" && m["message"]["level"] == "error")
        .filter_map(|m| {
            let msg = &m["message"];
            let span = msg["spans"]
                .as_array()?
                .iter()
                .find(|s| s["is_primary"] == true)?;
            Some((
                span["file_name"].as_str()?.to_string(),
                msg["code"]["code"].as_str().unwrap_or("").to_string(),
                msg["rendered"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

fn fake_site_verdict(
    found: &[(String, String, String)],
    expected: &[(&str, &str, &str)],
) -> Result {
    let mut left: Vec<&(String, String, String)> = found.iter().collect();
    let mut problems = Vec::new();
    for (file, code, what) in expected {
        match left.iter().position(|(f, c, _)| f == file && c == code) {
            Some(i) => {
                left.remove(i);
            }
            None => problems.push(format!(
                "the compiler no longer stops a fake copy site at {file} ({code}: {what}): \
                 a new site there would compile unnoticed"
            )),
        }
    }
    for (file, code, rendered) in left {
        problems.push(format!(
            "a fake copy site also fails at {file} ({code}): add it to FAKE_SITE_ERRORS and to \
             docs/developing.md (\"Adding a copy site\"), or read it from the catalogue:\n{rendered}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// What `--no-vm` leaves out.
fn not_checked() -> String {
    let kernels = crate::vm::kernel_names().unwrap_or_else(|e| vec![e]);
    format!(
        "NOT CHECKED (--no-vm): the VM kernel matrix ({}): attach methods, the exact copy \
         table and the function guard on those kernels; run `cargo xtask vm-test`",
        kernels.join(", ")
    )
}

/// The matrix's outcome as the test command's: a matrix that cannot be set up fails like one
/// that fails, naming what is missing; there is no silent skip (`--no-vm` is the way to leave
/// it out).
fn matrix_verdict(result: std::result::Result<(), MatrixError>) -> Result {
    match result {
        Ok(()) => Ok(()),
        Err(MatrixError::Setup(why)) => Err(format!(
            "the VM kernel matrix cannot run: {why}\n\
             xtask: (`cargo xtask test --no-vm` runs everything else and says what it left out)"
        )),
        Err(MatrixError::Failed(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_that_cannot_be_set_up_fails_the_test_command() {
        let e = matrix_verdict(Err(MatrixError::Setup("no qemu: apt said no".into()))).unwrap_err();
        assert!(e.contains("cannot run: no qemu: apt said no"), "{e}");
        assert!(e.contains("--no-vm"), "{e}");
        assert!(matrix_verdict(Err(MatrixError::Failed("x".into()))).is_err());
        assert!(matrix_verdict(Ok(())).is_ok());
    }

    /// The fake-site check fails when a listed place stops refusing the fake site (it would
    /// compile unnoticed there) and when the compiler refuses it somewhere unlisted.
    #[test]
    fn the_fake_site_check_fails_on_a_place_gone_quiet_or_unlisted() {
        let expected = [("a.rs", "E0004", "a match"), ("b.rs", "E0308", "a table")];
        let err = |f: &str, c: &str| (f.to_string(), c.to_string(), format!("{f}: {c}"));
        assert!(
            fake_site_verdict(&[err("b.rs", "E0308"), err("a.rs", "E0004")], &expected).is_ok()
        );
        let quiet = fake_site_verdict(&[err("b.rs", "E0308")], &expected).unwrap_err();
        assert!(
            quiet.contains("a.rs (E0004: a match)") && quiet.contains("unnoticed"),
            "{quiet}"
        );
        assert!(
            fake_site_verdict(&[], &expected).is_err(),
            "it compiled: every place quiet"
        );
        let extra = fake_site_verdict(
            &[
                err("a.rs", "E0004"),
                err("b.rs", "E0308"),
                err("c.rs", "E0004"),
            ],
            &expected,
        )
        .unwrap_err();
        assert!(
            extra.contains("c.rs (E0004)") && !extra.contains("unnoticed"),
            "{extra}"
        );
    }

    #[test]
    fn the_alone_tests_hold_one_test_each_and_are_listed() {
        check_alone_tests(&workspace_root().join("zc-trace")).unwrap();
    }

    /// The check fails on a second test and on a file Cargo.toml does not list.
    #[test]
    fn a_second_test_or_an_unlisted_file_in_alone_fails_the_check() {
        // Under target/, not /tmp: the test runs as root in CI, and another user could plant a
        // symlink at a guessable /tmp name between the removal and the creation.
        let dir = workspace_root()
            .join("target")
            .join(format!("xtask-alone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tests/alone")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[[test]]\nname = \"a\"\npath = \"tests/alone/a.rs\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("tests/alone/a.rs"), "#[test]\nfn x() {}\n").unwrap();
        assert_eq!(check_alone_tests(&dir), Ok(()));
        std::fs::write(
            dir.join("tests/alone/a.rs"),
            "#[test]\nfn x() {}\n  #[test]\nfn y() {}\n",
        )
        .unwrap();
        std::fs::write(dir.join("tests/alone/b.rs"), "#[test]\nfn z() {}\n").unwrap();
        let e = check_alone_tests(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("tests/alone/a.rs holds 2 tests"), "{e}");
        assert!(e.contains("tests/alone/b.rs is not a [[test]]"), "{e}");
    }

    #[test]
    fn no_vm_names_what_it_left_out() {
        let s = not_checked();
        assert!(
            s.starts_with("NOT CHECKED (--no-vm): the VM kernel matrix"),
            "{s}"
        );
        assert!(s.contains("debian-13-bpo-7"), "{s}");
    }
}
