//! A signal while zc-trace writes its report into a pipe nobody reads: it used to be ignored
//! until the reader drained the pipe (the handlers had taken the signal and nothing acted on
//! it any more). Now the write runs beside the signal handling: exit 130 at once. One test per
//! binary, so no other zc-trace of the suite runs beside it.

#[path = "../common/mod.rs"]
mod common;

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, bpf_available, Proc};
use nix::sys::signal::Signal;

/// Bytes waiting in the pipe.
fn pending(fd: &impl AsRawFd) -> i32 {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n
}

#[test]
fn a_signal_while_the_report_blocks_on_a_full_pipe_ends_zc_trace() {
    if !bpf_available("a_signal_while_the_report_blocks_on_a_full_pipe_ends_zc_trace") {
        return;
    }
    let (reader, writer) = nix::unistd::pipe().unwrap();
    // SAFETY: F_GETPIPE_SZ takes no argument and returns the capacity.
    let capacity = unsafe { nix::libc::fcntl(writer.as_raw_fd(), nix::libc::F_GETPIPE_SZ) };
    assert!(capacity > 0);
    // The JSON report carries every sample of every figure: at 200 iterations it is several
    // hundred KiB, far more than the pipe holds.
    let mut child = Proc::spawn(
        "zc-trace run (into a pipe nobody reads)",
        Command::new(bin())
            .args([
                "run",
                "--strategies",
                "read-write",
                "--size",
                "64K",
                "--iterations",
                "200",
                "--format",
                "json",
                "--no-fail",
            ])
            .stdout(Stdio::from(writer)),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // Full: a pipe takes no more once its page slots are used, which can be a few bytes short
    // of its capacity.
    let page = 4096;
    while pending(&reader) <= capacity - page {
        if !child.running() {
            panic!(
                "zc-trace ended before it filled the pipe: {}",
                child.stderr()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "the pipe did not fill in 60 s ({} bytes in it)",
                pending(&reader)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.signal(Signal::SIGINT);
    let status = child.wait(
        Duration::from_secs(10),
        "it got SIGINT while its output was blocked",
    );
    let stderr = child.stderr();
    assert_eq!(status.code(), Some(130), "{status:?}: {stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    drop(reader);
}
