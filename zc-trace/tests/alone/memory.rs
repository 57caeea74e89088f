//! Memory stays flat in --iterations. Each sample used to keep two whole counter tables
//! (~40 KiB), and the JSON report was built as one string: `--iterations 1000` peaked near
//! 400 MB. What a run keeps per iteration now is the exact values its medians need, a few
//! hundred bytes per strategy. One test per binary: the peaks are not disturbed by other runs.

#[path = "../common/mod.rs"]
mod common;

use std::process::{Command, Stdio};

use common::{bin, bpf_available};

/// Peak resident set (KiB) of `zc-trace ARGS`, which must succeed.
// The child is reaped by wait4, which also gives its own rusage (Child::wait cannot).
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(args: &[&str]) -> i64 {
    let child = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for this child only.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { nix::libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(
        pid,
        child.id() as i32,
        "wait4: {}",
        std::io::Error::last_os_error()
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut stderr).unwrap();
    assert!(
        nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0,
        "zc-trace {args:?}: status {status:#x}: {stderr}"
    );
    usage.ru_maxrss
}

#[test]
fn peak_memory_does_not_grow_with_iterations() {
    if !bpf_available("peak_memory_does_not_grow_with_iterations") {
        return;
    }
    // Every strategy, a 1-byte payload: the run is dominated by per-iteration bookkeeping.
    let args = |n: &'static str| {
        [
            "run",
            "--size",
            "1",
            "--iterations",
            n,
            "--format",
            "json",
            "--no-fail",
        ]
    };
    let few = peak_rss_kib(&args("10"));
    let many = peak_rss_kib(&args("1000"));
    // 990 more iterations of ~10 strategies: 8 MiB allows ~800 bytes each (it used to be
    // ~40 KiB each, ~380 MiB in all).
    assert!(
        many - few < 8 * 1024,
        "peak RSS {few} KiB at 10 iterations, {many} KiB at 1000"
    );
}
