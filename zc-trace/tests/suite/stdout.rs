//! What zc-trace writes on stdout. A reader that goes away early (`zc-trace probes --json |
//! head -c 10`) is not an error for any subcommand: Rust ignores SIGPIPE, so the writes fail
//! with EPIPE, on which `println!` panicked (exit 101) and `run` could fail (exit 4). Each
//! subcommand must exit quietly with its own status. And the output conventions:
//! `completions SHELL`, `man`, `-j`.

use crate::common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Command, ExitStatus, Stdio};

use crate::common::{bin, bpf_available, zc_trace};

/// Runs `zc-trace ARGS` with stdout a one-page pipe whose reader reads `read` bytes and then
/// closes it; with `read` 0 the reader is closed before zc-trace starts (every write fails).
/// The pipe is one page so that output longer than that is still being written when the
/// reader goes away. Returns the status and stderr.
fn with_stdout_closed_early(args: &[&str], read: usize) -> (ExitStatus, String) {
    // Close-on-exec: a zc-trace holding a read end (its own, or that of a test beside it)
    // would never see the pipe closed, and would block on it instead.
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // SAFETY: F_SETPIPE_SZ takes an int; the kernel rounds it up to a page.
    let r = unsafe { nix::libc::fcntl(writer.as_raw_fd(), nix::libc::F_SETPIPE_SZ, 4096) };
    assert!(r > 0, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
    let reader = (read > 0).then(|| std::fs::File::from(reader));
    let child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut reader) = reader {
        let mut some = vec![0u8; read];
        reader.read_exact(&mut some).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit status 0 and not a word about the pipe, whether the reader left at once or after
/// a few bytes.
fn assert_quiet_exit(args: &[&str]) {
    assert_quiet_exit_with(args, 0);
}

/// As `assert_quiet_exit`, for a subcommand whose own status is `code`.
fn assert_quiet_exit_with(args: &[&str], code: i32) {
    for read in [0, 10] {
        let (status, stderr) = with_stdout_closed_early(args, read);
        assert!(!stderr.contains("panicked"), "zc-trace {args:?}: {stderr}");
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("writing the report"),
            "zc-trace {args:?}: {stderr}"
        );
        assert_eq!(
            status.code(),
            Some(code),
            "zc-trace {args:?}, reader gone after {read} bytes: {status:?}: {stderr}"
        );
    }
}

#[test]
fn strategies_and_claims_into_a_closed_pipe_exit_0() {
    assert_quiet_exit(&["strategies"]);
    assert_quiet_exit(&["claims"]);
}

#[test]
fn completions_and_man_into_a_closed_pipe_exit_0() {
    assert_quiet_exit(&["completions", "bash"]);
    assert_quiet_exit(&["man"]);
}

#[test]
fn probes_explain_cleanup_doctor_into_a_closed_pipe_exit_0() {
    if !bpf_available("probes_explain_cleanup_doctor_into_a_closed_pipe_exit_0") {
        return;
    }
    assert_quiet_exit(&["probes", "--json"]);
    assert_quiet_exit(&["probes"]);
    assert_quiet_exit(&["explain"]);
    assert_quiet_exit(&["cleanup", "--dry-run"]);
    // doctor's status says whether zc-trace can run here: the same with stdout closed.
    let own = zc_trace(&["doctor"]).status.code().unwrap();
    assert_quiet_exit_with(&["doctor"], own);
}

/// The run's own status: sendfile's claims hold (or are not observable) on loopback.
#[test]
fn run_into_a_closed_pipe_exits_with_the_run_s_status() {
    if !bpf_available("run_into_a_closed_pipe_exits_with_the_run_s_status") {
        return;
    }
    assert_quiet_exit(&[
        "run",
        "--size",
        "64K",
        "--strategies",
        "sendfile",
        "--format",
        "json",
    ]);
    assert_quiet_exit(&["run", "--size", "64K", "--strategies", "sendfile"]);
    // trace's is the command's.
    assert_quiet_exit(&["trace", "--", "true"]);
    assert_quiet_exit_with(&["trace", "--", "sh", "-c", "exit 3"], 3);
}

#[test]
fn completions_are_scripts_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = zc_trace(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(script.contains("zc-trace"), "{shell}:\n{script}");
        assert!(script.contains("strategies"), "{shell}:\n{script}");
    }
    let out = zc_trace(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn man_prints_a_man_page() {
    let out = zc_trace(&["man"]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(page.contains(".TH zc-trace 1"), "{page}");
    assert!(page.contains("trace"), "{page}");
    assert!(page.contains("ZC\\-TRACE TRACE"), "{page}");
}

/// -j is --format json; with another --format it is a usage error (before anything runs).
#[test]
fn j_is_format_json() {
    for format in ["csv", "table", "markdown"] {
        let out = zc_trace(&["run", "-j", "--format", format]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{format}: {stderr}");
        assert!(
            stderr.contains(&format!("-j (--format json) contradicts --format {format}")),
            "{stderr}"
        );
    }
    let out = zc_trace(&["trace", "-j", "--format", "csv", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    if !bpf_available("j_is_format_json") {
        return;
    }
    let report = common::run_json(&["run", "-j", "--size", "64K", "--strategies", "sendfile"]);
    assert_eq!(report["schema"], 1, "{report:#}");
    assert_eq!(report["strategies"][0]["id"], "sendfile", "{report:#}");
    let report = common::run_json(&["trace", "-j", "--", "true"]);
    assert_eq!(report["mode"], "trace", "{report:#}");
}
