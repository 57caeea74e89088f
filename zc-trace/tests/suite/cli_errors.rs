//! Bad input and missing privileges: one clear line on stderr and the documented exit status.
//! These run without root, except the privilege test, which needs root to drop privileges.

use crate::common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::common::{zc_trace, BIN};

/// Fails with `code`, `needle` on stderr, in one line, and nothing on stdout.
fn assert_fails(args: &[&str], code: i32, needle: &str) {
    let out = zc_trace(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "zc-trace {args:?}: {stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "zc-trace {args:?}: one line on stderr, got:\n{stderr}"
    );
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

/// 1.5M is 1572864 bytes (clap parses in order: the chunk's error shows the size passed);
/// a decimal that is not a whole number of bytes is refused, saying what it came to.
#[test]
fn decimal_sizes_must_come_to_whole_bytes() {
    assert_fails(
        &["run", "--size", "1.5M", "--chunk", "0"],
        2,
        "the chunk must be at least 1 byte",
    );
    assert_fails(
        &["run", "--size", "1.3K"],
        2,
        "'1.3K' is 1331.2 bytes, not a whole number of bytes",
    );
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

/// `all` is valid anywhere in the list; an id named twice runs once, with one warning line.
/// (--no-sg on the loopback sink stops the run before it needs root.)
#[test]
fn all_anywhere_in_the_list_and_duplicates_merged_with_a_warning() {
    let no_sg = "--no-sg needs --sink veth";
    assert_fails(
        &["run", "--strategies", "all,sendfile", "--no-sg"],
        2,
        no_sg,
    );
    let out = zc_trace(&["run", "--strategies", "sendfile,splice,sendfile", "--no-sg"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("zc-trace: warning: --strategies names sendfile more than once"),
        "{stderr}"
    );
    assert!(lines[1].contains(no_sg), "{stderr}");
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

#[test]
fn a_mistyped_option_is_one_line() {
    assert_fails(
        &["run", "--sizee", "1M"],
        2,
        "unexpected argument '--sizee'",
    );
}

#[test]
fn a_claims_file_that_is_not_toml_is_one_line() {
    let path = std::env::temp_dir().join(format!("zc-trace-toml-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "format = 1\nsource = \"x\"\n[[claim]\nstrategy = 1\n",
    )
    .unwrap();
    assert_fails(&["run", "--claims", path.to_str().unwrap()], 2, "(line ");
    std::fs::remove_file(&path).unwrap();
}

/// open() on a FIFO waits for a writer: zc-trace must refuse it at once, like a directory.
#[test]
fn a_fifo_is_not_a_payload_and_does_not_block() {
    let dir = std::env::temp_dir().join(format!("zc-trace-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("payload");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = common::Proc::spawn(
        "zc-trace run --file <fifo>",
        Command::new(BIN)
            .args(["run", "--file", fifo.to_str().unwrap()])
            .stdout(std::process::Stdio::null()),
    );
    let status = child.wait_at_most(std::time::Duration::from_secs(20));
    let stderr = child.stderr();
    std::fs::remove_dir_all(&dir).unwrap();
    let status = status.expect("zc-trace run --file <fifo> was still blocked after 20 s");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a FIFO"), "{stderr}");
}

/// A run where nothing could be measured must not exit 0 with an empty table.
#[test]
fn every_strategy_skipped_is_an_error() {
    if !common::bpf_available("every_strategy_skipped_is_an_error") {
        return;
    }
    // O_DIRECT needs block-aligned chunks: 65537 bytes cannot be.
    assert_fails(
        &[
            "run",
            "--strategies",
            "odirect",
            "--chunk",
            "65537",
            "--size",
            "256K",
        ],
        2,
        "every selected strategy was skipped",
    );
}

/// Claims the run graded none of must not read as "all held" (exit 0).
#[test]
/// Known before anything is measured (it used to fail only after the whole run), so no root is
/// needed to see it.
fn claims_that_grade_nothing_are_an_error() {
    let path = std::env::temp_dir().join(format!("zc-trace-claims-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "format = 1\nsource = \"x\"\n[[claim]]\nstrategy = \"splice\"\nfigure = \"cpu_copies\"\nvalue = 0\n",
    )
    .unwrap();
    assert_fails(
        &[
            "run",
            "--strategies",
            "read-write",
            "--size",
            "64K",
            "--claims",
            path.to_str().unwrap(),
        ],
        2,
        "none of its 1 claims is about a selected strategy (read-write)",
    );
    std::fs::remove_file(&path).unwrap();
}

/// A reader that stops reading (`zc-trace run | head -1`) is not a failure of the run.
#[test]
fn a_closed_stdout_is_not_an_error() {
    if !common::bpf_available("a_closed_stdout_is_not_an_error") {
        return;
    }
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args([
            "run",
            "--strategies",
            "sendfile",
            "--size",
            "64K",
            "--no-fail",
        ])
        .stdout(std::process::Stdio::from(writer))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("writing the report"), "{stderr}");
}

/// A payload that does not fit --tmpdir is refused before a byte is written, instead of
/// filling the filesystem first.
#[test]
fn a_payload_larger_than_the_free_space_is_refused_up_front() {
    if !common::bpf_available("a_payload_larger_than_the_free_space_is_refused_up_front") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("zc-trace-small-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mount a 1 MiB tmpfs on {}",
        dir.display()
    );
    let out = zc_trace(&["run", "--size", "4M", "--tmpdir", dir.to_str().unwrap()]);
    let used = nix::sys::statvfs::statvfs(&dir).unwrap();
    let left = std::fs::read_dir(&dir).unwrap().count();
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bytes free"), "{stderr}");
    assert_eq!(left, 0, "nothing left in the directory");
    assert_eq!(
        used.blocks_free(),
        used.blocks(),
        "not a block of the tmpfs was written"
    );
}

/// `--size 8589934592G` is 2^63 bytes; the payload and a copy-file-range copy of it are 2^64,
/// which wrapped to 0 in release builds and skipped the free-space check, so the run filled
/// the filesystem. Now the sum is checked and the run refused before it writes.
#[test]
fn a_size_whose_room_overflows_is_refused_up_front() {
    if !common::bpf_available("a_size_whose_room_overflows_is_refused_up_front") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("zc-trace-overflow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = zc_trace(&[
        "run",
        "--size",
        "8589934592G",
        "--strategies",
        "copy-file-range",
        "--tmpdir",
        dir.to_str().unwrap(),
    ]);
    let left = std::fs::read_dir(&dir).unwrap().count();
    let _ = std::fs::remove_dir(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("more than any filesystem holds"),
        "{stderr}"
    );
    assert_eq!(left, 0, "nothing written");
}

/// `receive --buffer 1P` aborted with exit 134 and `--buffer 18446744073709551615` panicked
/// (101): a usage error now.
#[test]
fn a_receive_buffer_too_large_to_allocate_is_a_usage_error() {
    assert_fails(
        &["receive", "--listen", "127.0.0.1:0", "--buffer", "1048576G"],
        2,
        "at most",
    );
    assert_fails(
        &[
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--buffer",
            "18446744073709551615",
        ],
        2,
        "at most",
    );
}

/// `--export-json` into a missing directory failed only after the whole measurement; now it
/// is bad input before anything runs (no root needed to see it).
#[test]
fn an_export_into_a_missing_directory_is_refused_before_the_measurement() {
    assert_fails(
        &[
            "run",
            "--export-json",
            "/nonexistent-zc-trace-dir/report.json",
        ],
        2,
        "does not exist",
    );
}
