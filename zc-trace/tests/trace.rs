//! `zc-trace trace`: small programs, one per strategy (tests/programs/xfer.c, built static here
//! with the C compiler Rust links with), traced with exact figures; a running process attached
//! by pid; exit statuses passed through; bad input refused before anything is attached.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// Bytes each program sends: 16 calls of 64 KiB, plus an odd tail.
const N: u64 = (1 << 20) + 4321;

/// The test program, compiled once per test binary.
fn xfer() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("zc-trace-test-xfer.{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let out = dir.join("xfer");
            let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/xfer.c");
            let status = Command::new("cc")
                .args(["-O2", "-static", "-Wall", "-o"])
                .arg(&out)
                .arg(src)
                .status()
                .expect("cc (the C compiler Rust links with) runs");
            assert!(status.success(), "cc -static {src} failed");
            out
        })
        .clone()
}

/// A file of N bytes in /var/tmp (a disk filesystem, like a server's files).
fn payload(name: &str) -> PathBuf {
    let path = PathBuf::from(format!(
        "/var/tmp/zc-trace-test-{name}.{}",
        std::process::id()
    ));
    let data: Vec<u8> = (0..N).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}

/// A loopback listener that reads and counts everything sent to it, outside the trace.
fn receiver() -> (u16, std::thread::JoinHandle<u64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    (port, t)
}

fn trace_json(args: &[&str]) -> (Value, i32) {
    let out = common::zc_trace(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "zc-trace {args:?}: stdout is not JSON ({e}); status {}\nstderr:\n{}\nstdout:\n{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

/// (user->kernel, kernel->user, kernel->kernel, by reference) at a copy site.
fn site(report: &Value, name: &str) -> [u64; 4] {
    let s = report["program"]["copy_sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["site"] == name)
        .unwrap_or_else(|| panic!("no copy site {name}"));
    let b = &s["bytes"];
    assert!(!b.is_null(), "{name} is not observable: {s}");
    [
        "user_to_kernel",
        "kernel_to_user",
        "kernel_to_kernel",
        "by_reference",
    ]
    .map(|k| b[k]["median"].as_f64().unwrap() as u64)
}

/// Bytes of `syscall` on `side` with descriptors of `kind`, from the breakdown.
fn fd_bytes(report: &Value, syscall: &str, side: &str, kind: &str) -> u64 {
    report["by_fd_kind"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["syscall"] == syscall && r["side"] == side && r["kind"] == kind)
        .map(|r| r["bytes"].as_u64().unwrap())
        .sum()
}

fn assert_ledger_balanced(report: &Value) {
    for leg in report["program"]["ledger"].as_array().unwrap() {
        let b = leg["balance"].as_str().unwrap();
        assert!(
            b == "balanced" || b == "derived",
            "ledger leg {} is {b}: {leg}",
            leg["leg"]
        );
    }
}

/// Traces `xfer STRATEGY` and checks its exact figures: the file's N bytes as the strategy
/// moves them, at the file-read site and the TCP send site, and in the breakdown.
macro_rules! strategy_test {
    ($name:ident, $strategy:literal, file_k2u: $k2u:expr, tcp: [$u2k:expr, $by_ref:expr],
     breakdown: [$($syscall:literal $side:literal $kind:literal),*], zero_copy: $zc:literal) => {
        #[test]
        fn $name() {
            if !common::bpf_available(stringify!($name)) {
                return;
            }
            let file = payload($strategy);
            let (port, received) = receiver();
            let port = port.to_string();
            let prog = xfer();
            let (r, status) = trace_json(&[
                "trace", "--format", "json", "--expect", "zero-copy", "--no-fail", "--",
                prog.to_str().unwrap(), $strategy, file.to_str().unwrap(), &port,
            ]);
            std::fs::remove_file(&file).unwrap();
            assert_eq!(received.join().unwrap(), N, "the receiver got the file");
            assert_eq!(status, 0, "xfer's own exit status passes through");
            assert_eq!(r["mode"], "trace");
            assert_eq!(r["ending"]["exit_status"], 0);
            assert_eq!(site(&r, "file_read")[1], $k2u, "file_read kernel->user");
            let tcp = site(&r, "tcp_send");
            let page = site(&r, "tcp_sendpage");
            assert_eq!(tcp[0] + page[0], $u2k, "tcp user->kernel");
            assert_eq!(tcp[2] + page[2], 0, "tcp kernel->kernel");
            assert_eq!(tcp[3] + page[3], $by_ref, "tcp by reference");
            $(
                assert_eq!(fd_bytes(&r, $syscall, $side, $kind), N, "{} {} {}", $syscall, $side, $kind);
            )*
            assert_ledger_balanced(&r);
            assert_eq!(
                r["expectation"]["verdict"], $zc,
                "zero-copy: {}", r["expectation"]["reason"]
            );
        }
    };
}

strategy_test!(read_write_copies_the_file_twice, "read-write", file_k2u: N, tcp: [N, 0],
    breakdown: ["read" "in" "regular", "write" "out" "tcp"], zero_copy: "differs");
strategy_test!(mmap_write_copies_it_once, "mmap-write", file_k2u: 0, tcp: [N, 0],
    breakdown: ["write" "out" "tcp"], zero_copy: "differs");
strategy_test!(sendfile_passes_it_by_reference, "sendfile", file_k2u: 0, tcp: [0, N],
    breakdown: ["sendfile" "in" "regular", "sendfile" "out" "tcp"], zero_copy: "holds");
strategy_test!(splice_passes_it_by_reference, "splice", file_k2u: 0, tcp: [0, N],
    breakdown: ["splice" "in" "regular", "splice" "out" "tcp"], zero_copy: "holds");

#[test]
fn a_running_process_is_traced_by_pid_until_it_exits() {
    if !common::bpf_available("a_running_process_is_traced_by_pid_until_it_exits") {
        return;
    }
    let file = payload("pid");
    let (port, received) = receiver();
    let mut prog = Command::new(xfer())
        .args([
            "read-write",
            file.to_str().unwrap(),
            &port.to_string(),
            "wait",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = prog.id().to_string();
    let tracer = Command::new(common::bin())
        .args(["trace", "--format", "json", "--pid", &pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Attached once the probes are loaded; a generous wait, then the program goes on.
    std::thread::sleep(std::time::Duration::from_secs(3));
    prog.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(prog.wait().unwrap().success());
    let out = tracer.wait_with_output().unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(received.join().unwrap(), N);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["ending"]["reason"], "every traced task exited");
    assert!(r["ending"]["exit_status"].is_null(), "not zc-trace's child");
    assert_eq!(fd_bytes(&r, "read", "in", "regular"), N);
    assert_eq!(fd_bytes(&r, "write", "out", "tcp"), N);
    // The byte it waited for, read before and returned after the attach, or after: either
    // way it is a pipe's, not the file's.
    assert_eq!(site(&r, "tcp_send")[0], N);
    assert_eq!(site(&r, "file_read")[1], N);
}

#[test]
fn the_commands_exit_status_and_its_children_are_followed() {
    if !common::bpf_available("the_commands_exit_status_and_its_children_are_followed") {
        return;
    }
    let file = payload("children");
    // A shell that starts two processes, one of them in the background, and exits 7.
    let script = format!(
        "cat {f} > /dev/null & cat {f} > /dev/null; wait; exit 7",
        f = file.display()
    );
    let (r, status) = trace_json(&["trace", "--format", "json", "--", "sh", "-c", &script]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(status, 7, "the command's status passes through");
    assert_eq!(r["ending"]["exit_status"], 7);
    // Both children's reads of the file, counted in the kernel as they were forked.
    let read: u64 = ["read", "pread64", "copy_file_range", "sendfile", "splice"]
        .iter()
        .map(|s| fd_bytes(&r, s, "in", "regular"))
        .sum();
    assert!(read >= 2 * N, "both cats' reads are counted: {read} bytes");
    assert!(
        r["program"]["syscalls_by_name"]["execve"]["count"]["median"]
            .as_f64()
            .unwrap()
            >= 3.0,
        "sh and both cats"
    );
}

#[test]
fn io_uring_requests_are_counted_by_opcode() {
    if !common::bpf_available("io_uring_requests_are_counted_by_opcode") {
        return;
    }
    // zc-trace itself, untraced, as the program: 8 SEND_ZC requests of 128 KiB. Its own
    // report would share stdout with the trace's.
    let inner = format!(
        "exec {} run --untraced --strategies io-uring-send-zc --size 1M --chunk 128K \
         --format csv > /dev/null",
        common::bin()
    );
    let (r, status) = trace_json(&["trace", "--format", "json", "--", "sh", "-c", &inner]);
    assert_eq!(status, 0, "{r}");
    let ops = &r["io_uring_requests"];
    assert!(ops.is_object(), "io_uring is observable here: {ops}");
    assert_eq!(ops["SendZc"], 8, "{ops}");
}

#[test]
fn bad_commands_and_pids_are_refused_with_their_status() {
    // Checked before anything is loaded: no root needed.
    let plain = std::env::temp_dir()
        .join(format!("zc-trace-test-plain.{}", std::process::id()))
        .display()
        .to_string();
    std::fs::write(&plain, "not a program").unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["trace", "--", "zc-trace-no-such-program"],
            127,
            "not found on PATH",
        ),
        (&["trace", "--", "/nonexistent/prog"], 127, "no such file"),
        (&["trace", "--", &plain], 126, "is not executable"),
        (&["trace"], 2, "give a command to trace"),
        (&["trace", "--pid", "1", "--", "true"], 2, "not both"),
        (&["trace", "--pid", "0"], 2, "0 is not a process"),
        (&["trace", "--pid", "4000000000"], 2, "no such process"),
        (&["trace", "--duration", "0", "--", "true"], 2, "above 0"),
        (
            &["trace", "--claims", "x.toml", "--", "true"],
            2,
            "--strategy",
        ),
    ];
    for (args, code, message) in cases {
        let out = common::zc_trace(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    std::fs::remove_file(&plain).unwrap();
}

#[test]
fn duration_ends_the_command_and_intervals_are_printed() {
    if !common::bpf_available("duration_ends_the_command_and_intervals_are_printed") {
        return;
    }
    let (r, status) = trace_json(&[
        "trace",
        "--format",
        "json",
        "--interval",
        "0.25",
        "--duration",
        "1.5",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(r["ending"]["reason"], "--duration");
    // The command got SIGTERM at --duration: 128 + 15, passed through.
    assert_eq!(status, 143, "{}", r["ending"]);
    let n = r["intervals"].as_array().unwrap().len();
    assert!(
        (4..=7).contains(&n),
        "about 6 intervals of 0.25 s in 1.5 s: {n}"
    );
    for i in r["intervals"].as_array().unwrap() {
        assert!(i["transitions_per_sec"].is_number(), "{i}");
    }
}
