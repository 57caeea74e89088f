//! A signal while zc-trace writes its report into a pipe nobody reads: it used to be ignored
//! until the reader drained the pipe (the handlers had taken the signal and nothing acted on
//! it any more). Now the write runs beside the signal handling: exit 130 at once. One test per
//! binary, so no other zc-trace of the suite runs beside it.

mod common;

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, bpf_available};

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
    let mut child = Command::new(bin())
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
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Full: a pipe takes no more once its page slots are used, which can be a few bytes short
    // of its capacity.
    let page = 4096;
    while pending(&reader) <= capacity - page {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("zc-trace ended ({status:?}) before it filled the pipe");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the pipe did not fill in 60 s ({} bytes in it)",
                pending(&reader)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zc-trace ignored SIGINT for 10 s while its output was blocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    drop(reader);
}
