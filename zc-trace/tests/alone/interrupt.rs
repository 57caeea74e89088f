//! Ctrl-C in the middle of a measurement: zc-trace exits 130 and leaves nothing behind (no
//! receiver process, no temporary file, no eBPF program). One test per binary, so no other
//! zc-trace instance of the test suite is loaded while it checks for leftovers.

#[path = "../common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bpf_available, Proc, BIN};
use nix::sys::signal::Signal;

fn zc_trace_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .filter(|n| n.starts_with("zc_"))
        .collect()
}

#[test]
fn ctrl_c_mid_run_cleans_up_everything() {
    if !bpf_available("ctrl_c_mid_run_cleans_up_everything") {
        return;
    }
    assert!(
        zc_trace_programs().is_empty(),
        "zc-trace programs already loaded before the test"
    );
    let tmpdir = std::env::temp_dir().join(format!("zc-trace-interrupt-{}", std::process::id()));
    std::fs::create_dir_all(&tmpdir).unwrap();

    let mut child = Proc::spawn(
        "zc-trace run",
        Command::new(BIN)
            .args([
                "run",
                "-v",
                "--size",
                "64M",
                "--chunk",
                "4K",
                "--iterations",
                "100",
            ])
            .arg("--tmpdir")
            .arg(&tmpdir)
            .stdout(Stdio::null()),
    );

    // Wait until a strategy is running: probes attached, receiver up, transfer under way.
    child.wait_for_stderr(|l| l.contains("running "), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let receivers = child.children();
    assert_eq!(
        receivers.len(),
        1,
        "expected exactly the receiver as child: {receivers:?}"
    );
    assert!(
        !zc_trace_programs().is_empty(),
        "no zc-trace program loaded mid-run"
    );

    child.signal(Signal::SIGINT);
    let status = child.wait(Duration::from_secs(60), "it got SIGINT");
    let stderr = child.stderr();

    assert_eq!(status.code(), Some(130), "stderr:\n{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    child.assert_left_nothing(&receivers);
    assert_eq!(
        std::fs::read_dir(&tmpdir).unwrap().count(),
        0,
        "temporary files left in {}",
        tmpdir.display()
    );
    assert!(
        zc_trace_programs().is_empty(),
        "eBPF programs left loaded: {:?}",
        zc_trace_programs()
    );
    std::fs::remove_dir(&tmpdir).unwrap();
}
