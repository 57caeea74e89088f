//! A signal before the measurement starts (while the payload is generated): zc-trace used to
//! die of it on the spot, before its handlers existed, leaving a tracefs it had mounted. Now
//! the handlers come first: exit 130, nothing left behind. One test per binary, so no other
//! zc-trace of the suite is loaded while it checks for leftovers.

#[path = "../common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bpf_available, Proc, BIN};
use nix::sys::signal::Signal;

#[test]
fn a_signal_during_payload_generation_is_cleaned_up_and_exits_130() {
    if !bpf_available("a_signal_during_payload_generation_is_cleaned_up_and_exits_130") {
        return;
    }
    let tmpdir = std::env::temp_dir().join(format!("zc-trace-early-{}", std::process::id()));
    std::fs::create_dir_all(&tmpdir).unwrap();
    // 1 GiB takes seconds to generate; the signal lands well inside that.
    let mut child = Proc::spawn(
        "zc-trace run --size 1G",
        Command::new(BIN)
            .args(["run", "--size", "1G", "--tmpdir", tmpdir.to_str().unwrap()])
            .stdout(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.running(), "zc-trace ended before the signal");
    child.signal(Signal::SIGTERM);
    let status = child.wait(Duration::from_secs(60), "it got SIGTERM");
    let stderr = child.stderr();
    let left: Vec<_> = std::fs::read_dir(&tmpdir).unwrap().flatten().collect();
    std::fs::remove_dir_all(&tmpdir).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(left.is_empty(), "left in --tmpdir: {left:?}");
}
