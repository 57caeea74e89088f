//! A signal before the measurement starts (while the payload is generated): zc-trace used to
//! die of it on the spot, before its handlers existed, leaving a tracefs it had mounted. Now
//! the handlers come first: exit 130, nothing left behind. One test per binary, so no other
//! zc-trace of the suite is loaded while it checks for leftovers.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bpf_available, BIN};

#[test]
fn a_signal_during_payload_generation_is_cleaned_up_and_exits_130() {
    if !bpf_available("a_signal_during_payload_generation_is_cleaned_up_and_exits_130") {
        return;
    }
    let tmpdir = std::env::temp_dir().join(format!("zc-trace-early-{}", std::process::id()));
    std::fs::create_dir_all(&tmpdir).unwrap();
    // 1 GiB takes seconds to generate; the signal lands well inside that.
    let mut child = Command::new(BIN)
        .args(["run", "--size", "1G", "--tmpdir", tmpdir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "zc-trace ended before the signal"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "zc-trace ignored SIGTERM for 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let left: Vec<_> = std::fs::read_dir(&tmpdir).unwrap().flatten().collect();
    std::fs::remove_dir_all(&tmpdir).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(left.is_empty(), "left in --tmpdir: {left:?}");
}
