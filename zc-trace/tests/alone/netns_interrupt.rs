//! Ctrl-C while the veth sink's namespaces are being made: it used to leave a namespace
//! behind in 3 of 4 targeted tries while zc-trace said all was removed (cleanup ran between
//! registering a namespace and making it, and the maker, a child `ip`, finished it after).
//!
//! zc-trace now makes the namespaces on threads of its own, which die with it, so the test
//! keeps zc-trace alive after its cleanup: its stderr is a pipe the test has filled, so the
//! "interrupted" line, written after cleanup, blocks until the test reads, and any making that
//! goes on after cleanup has time to finish and be found. The signal is timed by /run/netns:
//! when the run's first or second namespace file appears, at once or a little later (a file
//! appears only once its namespace exists, so shortly after the first one the second is being
//! registered and made; later still come the veth pair and its addresses). One test per
//! binary: no other run's namespaces come and go beside it.

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, bpf_available};

const NETNS_DIR: &str = "/run/netns";

/// zc-trace's namespaces of run `pid` that exist now.
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("zc-trace-{pid}-");
    std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A pipe whose write end is full: the first write to it blocks until the read end is read.
fn full_pipe() -> (std::fs::File, std::fs::File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let (r, w) = nix::unistd::pipe().unwrap();
    let (r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
    let flags = OFlag::from_bits_truncate(fcntl(w.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    let fill = [b'.'; 4096];
    while w.write(&fill).is_ok() {}
    // The flag is on the open file description zc-trace shares: it must block, not fail.
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(flags)).unwrap();
    (r, w)
}

#[test]
fn ctrl_c_while_the_namespaces_are_made_leaves_none_behind() {
    if !bpf_available("ctrl_c_while_the_namespaces_are_made_leaves_none_behind") {
        return;
    }
    // SIGINT once the run's k-th namespace file exists (tx, then rx), after a delay. Shortly
    // after the first, the second is being made: a cleanup that ran between registering it
    // and making it left it behind in about half of these tries when it was made so.
    let phases = [
        (1, 0),
        (1, 0),
        (1, 0),
        (1, 30),
        (1, 100),
        (1, 100),
        (1, 300),
        (1, 300),
        (2, 0),
        (2, 2_000),
    ];
    for (k, delay_us) in phases {
        let (mut stderr_r, stderr_w) = full_pipe();
        let mut child = Command::new(bin())
            .args([
                "run",
                "--sink",
                "veth",
                "--strategies",
                "sendfile",
                "--size",
                "1M",
                "--iterations",
                "50",
            ])
            .stdout(Stdio::null())
            .stderr(stderr_w)
            .spawn()
            .unwrap();
        let pid = child.id();
        // Reads zc-trace's stderr (after the filler) once told to, until zc-trace exits.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _ = wait.recv();
            let mut all = Vec::new();
            let _ = stderr_r.read_to_end(&mut all);
            String::from_utf8_lossy(&all)
                .trim_start_matches('.')
                .to_string()
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while namespaces_of(pid).len() < k && Instant::now() < deadline {}
        let appeared = namespaces_of(pid).len() >= k;
        if appeared {
            std::thread::sleep(Duration::from_micros(delay_us));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            // zc-trace has cleaned up and now blocks on stderr: whatever is still being
            // made after cleanup gets the time to finish.
            std::thread::sleep(Duration::from_millis(300));
        } else {
            let _ = child.kill();
        }
        let left = namespaces_of(pid);
        go.send(()).unwrap();
        let status = child.wait().unwrap();
        let stderr = reader.join().unwrap();
        assert!(
            appeared,
            "no namespace number {k} of zc-trace {pid} in 30 s; it said: {stderr}"
        );
        let left_after_exit = namespaces_of(pid);
        for n in &left_after_exit {
            let path = std::path::Path::new(NETNS_DIR).join(n);
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
        }
        assert!(
            left.is_empty() && left_after_exit.is_empty(),
            "signalled {delay_us} us after namespace {k} appeared: left {left:?} after \
             cleanup, {left_after_exit:?} after exit; zc-trace said ({status:?}): {stderr}"
        );
        assert!(status.code().is_some_and(|c| c != 0), "{stderr}");
    }
}
