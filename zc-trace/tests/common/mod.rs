//! Helpers shared by the integration tests. Tests panic with context rather than returning
//! errors, so a failure says what was run and what came back.
#![allow(dead_code)] // each test binary uses a different subset

pub mod matrix;
pub mod proc;
pub mod trace;

#[allow(unused_imports)] // not every binary spawns one
pub use proc::Proc;

use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_zc-trace");

/// The zc-trace to test: `ZC_TRACE_BIN` where set (the VM harness puts the binary at another
/// path in the guest), else the one cargo built with the tests.
pub fn bin() -> String {
    std::env::var("ZC_TRACE_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// True when the tests that load eBPF programs can run. Outside CI they skip (saying why)
/// when not root; in CI (CI=true) a skip is a failure.
pub fn bpf_available(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        ensure_tracefs();
        return true;
    }
    let msg = format!("{test} needs root to load eBPF programs");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}; with CI=true a skipped BPF test is a failure");
    }
    eprintln!("skipping: {msg}");
    false
}

/// Tests run zc-trace instances in parallel; if one of them mounted tracefs itself it would
/// unmount it on exit under the others' feet, so the tests mount it once up front.
fn ensure_tracefs() {
    if std::path::Path::new("/sys/kernel/tracing/events").is_dir()
        || std::path::Path::new("/sys/kernel/debug/tracing/events").is_dir()
    {
        return;
    }
    let _ = Command::new("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status();
}

pub fn zc_trace(args: &[&str]) -> Output {
    let bin = bin();
    Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

/// Runs zc-trace, requires success, parses stdout as JSON. `run` gets --no-fail: these tests
/// are about the figures; the verdicts' exit status has tests of its own (claims.rs).
pub fn run_json(args: &[&str]) -> Value {
    let mut args = args.to_vec();
    if args.first() == Some(&"run") {
        args.push("--no-fail");
    }
    let args = &args[..];
    let out = zc_trace(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zc-trace {args:?} failed ({}):\nstderr:\n{stderr}\nstdout:\n{stdout}",
        out.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("zc-trace {args:?}: stdout is not JSON ({e}):\n{stdout}"))
}

pub fn strategy<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["strategies"]
        .as_array()
        .expect("strategies array")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no strategy {id} in {report:#}"))
}

/// Median of a figure, panicking with the figure's provenance when it has no value.
pub fn figure(strategy: &Value, key: &str) -> f64 {
    let f = &strategy["figures"][key];
    f["value"]["median"]
        .as_f64()
        .unwrap_or_else(|| panic!("{} {key} has no value: {f:#}", strategy["id"]))
}

/// Median count of one syscall by name (0 when the strategy did not make it).
pub fn syscall_count(strategy: &Value, name: &str) -> f64 {
    strategy["syscalls_by_name"][name]["count"]["median"]
        .as_f64()
        .unwrap_or(0.0)
}
