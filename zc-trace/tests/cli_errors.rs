//! Bad input and missing privileges: one clear line on stderr and the documented exit status.
//! These run without root, except the privilege test, which needs root to drop privileges.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::{zc_trace, BIN};

fn assert_fails(args: &[&str], code: i32, needle: &str) {
    let out = zc_trace(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "zc-trace {args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "zc-trace {args:?}: expected {needle:?} in:\n{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "zc-trace {args:?} printed to stdout on error"
    );
}

#[test]
fn zero_size_is_a_usage_error() {
    assert_fails(&["run", "--size", "0"], 2, "at least 1 byte");
}

#[test]
fn zero_chunk_is_a_usage_error() {
    assert_fails(&["run", "--chunk", "0"], 2, "at least 1 byte");
}

#[test]
fn unknown_strategy_lists_the_known_ones() {
    assert_fails(
        &["run", "--strategies", "sendfile,teleport"],
        2,
        "unknown strategy 'teleport'",
    );
    assert_fails(
        &["run", "--strategies", "teleport"],
        2,
        "read-write, mmap-write, sendfile, splice",
    );
}

#[test]
fn missing_file_is_a_usage_error() {
    assert_fails(
        &["run", "--file", "/nonexistent/zc-trace-input"],
        2,
        "--file /nonexistent/zc-trace-input",
    );
}

#[test]
fn a_directory_is_not_a_payload() {
    assert_fails(&["run", "--file", "/"], 2, "is a directory");
}

#[test]
fn help_has_examples_and_exit_statuses() {
    let out = zc_trace(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Examples:",
        "zc-trace run --strategies",
        "Exit status",
        "CAP_BPF",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn strategies_subcommand_lists_all_four() {
    let out = zc_trace(&["strategies"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for id in ["read-write", "mmap-write", "sendfile", "splice"] {
        assert!(text.contains(id), "{text}");
    }
}

/// Without root or CAP_BPF/CAP_PERFMON, zc-trace says exactly what is missing and how to run it.
#[test]
fn unprivileged_run_names_the_missing_capabilities() {
    if !nix::unistd::geteuid().is_root() {
        // Already unprivileged: the check applies to us directly.
        assert_fails(
            &["run", "--size", "4K"],
            3,
            "missing CAP_BPF and CAP_PERFMON",
        );
        return;
    }
    let out = Command::new(BIN)
        .args(["run", "--size", "4K"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run zc-trace as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("missing CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
    assert!(stderr.contains("run it as root"), "{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one clear line, got:\n{stderr}"
    );
}

#[test]
fn a_broken_claims_file_is_a_usage_error() {
    let path =
        std::env::temp_dir().join(format!("zc-trace-bad-claims-{}.toml", std::process::id()));
    std::fs::write(&path, "format = 1\nsource = \"x\"\n[[claim]]\nstrategy = \"teleport\"\nfigure = \"cpu_copies\"\nvalue = 1\n").unwrap();
    assert_fails(
        &["run", "--claims", path.to_str().unwrap()],
        2,
        "unknown strategy 'teleport'",
    );
    std::fs::remove_file(&path).unwrap();
    assert_fails(
        &["run", "--claims", "/nonexistent/claims.toml"],
        2,
        "--claims /nonexistent/claims.toml",
    );
}
