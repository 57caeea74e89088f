//! Root safety (needs root): zc-trace runs as root on shared machines, so these tests play a
//! second, unprivileged user who tries to steer what root does, and check that it cannot.
//!
//! The attacker is this test binary run again as uid 65534 (`attacker_process`, started by
//! the tests with `ZCT_ATTACK_DIR` and `ZCT_ATTACK_EVIL` set; as a test of its own it does
//! nothing).

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{bin, bpf_available};

const NOBODY: u32 = 65534;
/// The attacker's lines, told apart from libtest's own output on the same stdout.
const READY: &str = "ZCT-ATTACKER-READY";
const RESULT: &str = "ZCT-ATTACKER-RESULT";

/// A directory made by root for the test, then given to `owner`.
fn dir(name: &str, owner: u32, mode: u32) -> PathBuf {
    let d = PathBuf::from(format!("/tmp/zct-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(owner), Some(owner)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    d
}

/// Waits for a child at most `limit`, killing it after that: a run the attacker made hang
/// is a finding, not a stuck test.
fn wait_at_most(child: Child, limit: Duration) -> (Option<i32>, String) {
    let mut child = common::Proc::adopt("zc-trace", child);
    let status = child.wait_at_most(limit).and_then(|s| s.code());
    (status, child.stderr())
}

/// The attacker: as `NOBODY`, in a loop, renames every zc-trace entry in `ZCT_ATTACK_DIR`
/// away and plants a symlink to `ZCT_ATTACK_EVIL` in its place, where `sink.fifo` is a
/// symlink to a root-owned file and `sink.sock` is the attacker's own listener. Runs until
/// its stdin closes, then prints how many bytes its listener got and how many swaps it made.
#[test]
fn attacker_process() {
    let (Ok(target), Ok(evil)) = (
        std::env::var("ZCT_ATTACK_DIR"),
        std::env::var("ZCT_ATTACK_EVIL"),
    ) else {
        return; // only as the attacker of the tests below
    };
    nix::unistd::setgroups(&[]).unwrap();
    nix::unistd::setgid(nix::unistd::Gid::from_raw(NOBODY)).unwrap();
    nix::unistd::setuid(nix::unistd::Uid::from_raw(NOBODY)).unwrap();
    let (target, evil) = (PathBuf::from(target), PathBuf::from(evil));
    let listener = std::os::unix::net::UnixListener::bind(evil.join("sink.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stopper.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    println!("{READY}");
    std::io::stdout().flush().unwrap();
    let (mut received, mut swaps, mut moved) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if let Ok((mut conn, _)) = listener.accept() {
            conn.set_nonblocking(false).unwrap();
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                received += n as u64;
            }
        }
        let Ok(entries) = std::fs::read_dir(&target) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let is_ours = e.file_type().is_ok_and(|t| t.is_symlink());
            if !name.to_string_lossy().starts_with("zc-trace-") || is_ours {
                continue;
            }
            moved += 1;
            let away = target.join(format!("moved-{moved}"));
            if std::fs::rename(e.path(), &away).is_ok()
                && std::os::unix::fs::symlink(&evil, e.path()).is_ok()
            {
                swaps += 1;
            }
        }
        // Leave the runs a core of this 2-core machine; the windows last milliseconds.
        std::thread::sleep(Duration::from_micros(100));
    }
    println!("{RESULT} {received} {swaps}");
}

/// Starts the attacker against `target`, waits until it listens.
fn attacker(target: &Path, evil: &Path) -> Child {
    // The test's name in its binary: this module's path without the binary's own name.
    let name = module_path!().split_once("::").map_or("", |(_, m)| m);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("{name}::attacker_process"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZCT_ATTACK_DIR", target)
        .env("ZCT_ATTACK_EVIL", evil)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.as_mut().unwrap());
    let mut line = String::new();
    while !line.contains(READY) {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the attacker did not start"
        );
    }
    child
}

/// Stops the attacker; returns (bytes its listener received, swaps it made).
fn stop(mut child: Child) -> (u64, u64) {
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.split_once(RESULT))
        .unwrap_or_else(|| panic!("attacker said: {text}"))
        .1;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (f[0], f[1])
}

/// Finding 1 of the hardening issue: the owner of `--tmpdir` renamed root's sink directory
/// and planted a symlink, and `run --sink pipe` overwrote a root-owned file with the payload
/// while `run --sink unix --file SECRET` sent the secret to the attacker's listener (and hung).
/// Now nothing outside the run's own files is touched, the attacker gets nothing, and every
/// run ends by itself: with an error that says someone tampered with --tmpdir, or (if the
/// attacker never caught the directory) normally.
#[test]
fn the_owner_of_tmpdir_cannot_redirect_the_pipe_or_unix_sink() {
    if !bpf_available("the_owner_of_tmpdir_cannot_redirect_the_pipe_or_unix_sink") {
        return;
    }
    let tmpdir = dir("attacked", NOBODY, 0o755);
    let evil = dir("evil", NOBODY, 0o755);
    let victims = dir("victims", 0, 0o755);
    let victim = victims.join("victim");
    std::fs::write(&victim, b"root's file\n").unwrap();
    let secret = victims.join("secret");
    std::fs::write(&secret, vec![b's'; 256 * 1024]).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, evil.join("sink.fifo")).unwrap();

    let attack = attacker(&tmpdir, &evil);
    let mut tampered = 0;
    for round in 0..3 {
        for sink in ["pipe", "unix"] {
            let child = Command::new(bin())
                .args(["run", "--format", "json", "--no-fail", "--quiet"])
                .args(["--strategies", "read-write,splice", "--chunk", "64K"])
                .args(["--sink", sink, "--tmpdir"])
                .arg(&tmpdir)
                .arg("--file")
                .arg(&secret)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (status, stderr) = wait_at_most(child, Duration::from_secs(60));
            let status = status.unwrap_or_else(|| {
                panic!("round {round}, --sink {sink}: the run hung (killed after 60 s)")
            });
            assert!(
                std::fs::read(&victim).unwrap() == b"root's file\n",
                "round {round}, --sink {sink} (exit {status}): the root-owned file was written \
                 through the attacker's symlink"
            );
            if status != 0 {
                assert!(
                    stderr.contains("tampering") && stderr.contains("only root can write"),
                    "round {round}, --sink {sink}: exit {status} without saying why:\n{stderr}"
                );
                tampered += 1;
            }
        }
    }
    let (received, swaps) = stop(attack);
    assert!(
        std::fs::read(&victim).unwrap() == b"root's file\n",
        "the root-owned file was written through the attacker's symlink"
    );
    assert_eq!(received, 0, "the attacker's listener received the secret");
    assert!(
        swaps > 0,
        "the attacker never swapped anything: the test tested nothing"
    );
    assert!(
        tampered > 0,
        "{swaps} swaps and no run noticed: the test tested nothing"
    );
    // Nothing of zc-trace's is left, under any name the attacker moved it to, but for one
    // thing no process can prevent: a directory renamed between its mkdir and its open is
    // not known to be zc-trace's and stays, empty (the error says so).
    let left: Vec<_> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_type().unwrap().is_symlink())
        .filter(|e| std::fs::read_dir(e.path()).map_or(true, |mut d| d.next().is_some()))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind in --tmpdir: {left:?}");
    for d in [&tmpdir, &evil, &victims] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// From another PID namespace a live host run's maker cannot be seen, so `cleanup --dry-run`
/// listed a live run's namespaces as dead. Cleanup now refuses there (exit 3, saying why).
#[test]
fn cleanup_refuses_to_judge_from_another_pid_namespace() {
    if !bpf_available("cleanup_refuses_to_judge_from_another_pid_namespace") {
        return;
    }
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(bin())
        .args(["cleanup", "--dry-run"])
        .output()
        .expect("unshare (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("PID namespace of its own"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `zc-trace receive` served one connection at a time: an idle client stalled every sender
/// after it, and a client's RST ended the receiver with exit 4. Now each connection is its
/// own: the good one is answered while the idle one waits, and the reset one is logged while
/// the receiver serves on.
#[test]
fn receive_survives_a_reset_and_is_not_stalled_by_an_idle_client() {
    use std::net::TcpStream;
    let mut recv = Command::new(bin())
        .args(["receive", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(recv.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let _idle = TcpStream::connect(&addr).unwrap();
    // A client that resets its connection mid-stream (SO_LINGER 0, then close).
    let reset = TcpStream::connect(&addr).unwrap();
    (&reset).write_all(&[7u8; 1000]).unwrap();
    nix::sys::socket::setsockopt(
        &reset,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
    drop(reset);
    std::thread::sleep(Duration::from_millis(200));
    let mut good = TcpStream::connect(&addr).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    good.write_all(&[1u8; 4096]).unwrap();
    good.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    good.read_to_string(&mut answer)
        .expect("answered while another client is idle");
    assert_eq!(answer, "zc-trace received 4096\n");
    std::thread::sleep(Duration::from_millis(200));
    let alive = recv.try_wait().unwrap().is_none();
    let _ = recv.kill();
    let _ = recv.wait();
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    assert!(alive, "the receiver ended after a client's reset");
    assert!(rest.contains("received 4096 bytes"), "{rest}");
}
