//! `zc-trace trace` of the test program tests/programs/xfer.c: built here, or given by the VM
//! harness (`ZC_TRACE_XFER`, a static build in the guest's /bin), with the checks shared by
//! tests/suite/trace.rs and the kernel matrix.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// Bytes each program sends: 16 calls of 64 KiB, plus an odd tail.
pub const N: u64 = (1 << 20) + 4321;

/// The test program: `ZC_TRACE_XFER`, or compiled once per test binary.
pub fn xfer() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| built("ZC_TRACE_XFER", "xfer.c", "xfer"))
        .clone()
}

/// tests/programs/tasks.c (signals, forks, threads, exec from a thread), named `zct-tasks`:
/// `ZC_TRACE_TASKS`, or compiled once per test binary.
pub fn tasks() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| built("ZC_TRACE_TASKS", "tasks.c", "zct-tasks"))
        .clone()
}

/// `$given`, or tests/programs/`src` compiled static as `name` in a directory of this test
/// binary's own.
fn built(given: &str, src: &str, name: &str) -> PathBuf {
    if let Some(given) = std::env::var_os(given) {
        return PathBuf::from(given);
    }
    let dir = std::env::temp_dir().join(format!("zc-trace-test-{name}.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let src = format!("{}/tests/programs/{src}", env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("cc")
        .args(["-O2", "-static", "-pthread", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc (the C compiler Rust links with) runs");
    assert!(status.success(), "cc -static {src} failed");
    out
}

/// A file of N bytes in /var/tmp (a disk filesystem, like a server's files).
pub fn payload(name: &str) -> PathBuf {
    let path = PathBuf::from(format!(
        "/var/tmp/zc-trace-test-{name}.{}",
        std::process::id()
    ));
    let data: Vec<u8> = (0..N).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}

/// A loopback listener that reads and counts everything sent to it, outside the trace.
pub fn receiver() -> (u16, std::thread::JoinHandle<u64>) {
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

pub fn trace_json(args: &[&str]) -> (Value, i32) {
    let out = super::zc_trace(args);
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
pub fn site(report: &Value, name: &str) -> [u64; 4] {
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
pub fn fd_bytes(report: &Value, syscall: &str, side: &str, kind: &str) -> u64 {
    report["by_fd_kind"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["syscall"] == syscall && r["side"] == side && r["kind"] == kind)
        .map(|r| r["bytes"].as_u64().unwrap())
        .sum()
}

pub fn assert_ledger_balanced(report: &Value) {
    for leg in report["program"]["ledger"].as_array().unwrap() {
        let b = leg["balance"].as_str().unwrap();
        assert!(
            b == "balanced" || b == "derived",
            "ledger leg {} is {b}: {leg}",
            leg["leg"]
        );
    }
}

/// What tracing `xfer STRATEGY` must show: the file's bytes read into user memory, and sent
/// into TCP from user memory and by reference; the breakdown rows that must hold all N bytes;
/// the zero-copy verdict.
pub struct Expected {
    pub strategy: &'static str,
    pub file_k2u: u64,
    pub tcp_u2k: u64,
    pub tcp_by_ref: u64,
    pub breakdown: &'static [(&'static str, &'static str, &'static str)],
    pub zero_copy: &'static str,
}

/// The four strategies xfer implements.
pub const EXPECTED: &[Expected] = &[
    Expected {
        strategy: "read-write",
        file_k2u: N,
        tcp_u2k: N,
        tcp_by_ref: 0,
        breakdown: &[("read", "in", "regular"), ("write", "out", "tcp")],
        zero_copy: "differs",
    },
    Expected {
        strategy: "mmap-write",
        file_k2u: 0,
        tcp_u2k: N,
        tcp_by_ref: 0,
        breakdown: &[("write", "out", "tcp")],
        zero_copy: "differs",
    },
    Expected {
        strategy: "sendfile",
        file_k2u: 0,
        tcp_u2k: 0,
        tcp_by_ref: N,
        breakdown: &[("sendfile", "in", "regular"), ("sendfile", "out", "tcp")],
        zero_copy: "holds",
    },
    Expected {
        strategy: "splice",
        file_k2u: 0,
        tcp_u2k: 0,
        tcp_by_ref: N,
        breakdown: &[("splice", "in", "regular"), ("splice", "out", "tcp")],
        zero_copy: "holds",
    },
];

pub fn expected(strategy: &str) -> &'static Expected {
    EXPECTED
        .iter()
        .find(|e| e.strategy == strategy)
        .expect("a strategy of xfer")
}

/// Traces `xfer` moving a file of N bytes with `e.strategy` to a loopback listener, and checks
/// every figure `e` names, exactly.
pub fn check_xfer(e: &Expected) {
    let file = payload(e.strategy);
    let (port, received) = receiver();
    let port = port.to_string();
    let prog = xfer();
    let (r, status) = trace_json(&[
        "trace",
        "--format",
        "json",
        "--expect",
        "zero-copy",
        "--no-fail",
        "--",
        prog.to_str().unwrap(),
        e.strategy,
        file.to_str().unwrap(),
        &port,
    ]);
    std::fs::remove_file(&file).unwrap();
    let s = e.strategy;
    assert_eq!(
        received.join().unwrap(),
        N,
        "{s}: the receiver got the file"
    );
    assert_eq!(status, 0, "{s}: xfer's own exit status passes through");
    assert_eq!(r["mode"], "trace");
    assert_eq!(r["ending"]["exit_status"], 0);
    // tmpfs files are read at shmem_read.
    let k2u = site(&r, "file_read")[1] + site(&r, "shmem_read")[1];
    assert_eq!(k2u, e.file_k2u, "{s}: file read kernel->user");
    let tcp = site(&r, "tcp_send");
    let page = site(&r, "tcp_sendpage");
    assert_eq!(tcp[0] + page[0], e.tcp_u2k, "{s}: tcp user->kernel");
    assert_eq!(tcp[2] + page[2], 0, "{s}: tcp kernel->kernel");
    assert_eq!(tcp[3] + page[3], e.tcp_by_ref, "{s}: tcp by reference");
    for (syscall, side, kind) in e.breakdown {
        assert_eq!(
            fd_bytes(&r, syscall, side, kind),
            N,
            "{s}: {syscall} {side} {kind}"
        );
    }
    assert_ledger_balanced(&r);
    assert_eq!(
        r["expectation"]["verdict"], e.zero_copy,
        "{s}: zero-copy: {}",
        r["expectation"]["reason"]
    );
}

/// A thread other than the main one execs (`zct-tasks threxec 7`: the new program writes
/// 7 x 1000 bytes to /dev/null): the exec'd program is counted under the pid it inherits,
/// the old tid does not stay followed, and the trace ends by itself.
pub fn check_exec_from_a_thread() {
    let tasks = tasks();
    let (r, status) = trace_json(&[
        "trace",
        "-j",
        "--duration",
        "60",
        "--",
        tasks.to_str().unwrap(),
        "threxec",
        "7",
    ]);
    assert_eq!(status, 0, "{}", r["ending"]);
    assert_eq!(
        r["ending"]["reason"], "every traced task exited",
        "the trace did not end by itself: a task stayed followed"
    );
    let writes: Vec<&Value> = r["by_fd_kind"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["syscall"] == "write" && row["kind"] == "char_device")
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["calls"], 7, "{writes:?}");
    assert_eq!(writes[0]["bytes"], 7000, "{writes:?}");
}

/// More tasks alive at once than the task table holds (`--max-tasks 16`, 1 + 20 threads):
/// exactly 5 are not followed, and the report says its figures are incomplete.
pub fn check_task_limit() {
    let tasks = tasks();
    let out = super::zc_trace(&[
        "trace",
        "-j",
        "--max-tasks",
        "16",
        "--",
        tasks.to_str().unwrap(),
        "hold",
        "20",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(r["tasks"]["table_size"], 16);
    assert_eq!(r["tasks"]["not_followed"], 5, "{}", r["tasks"]);
    for key in ["syscalls", "transitions"] {
        let p = &r["program"]["figures"][key]["provenance"];
        assert_eq!(p["kind"], "incomplete", "{key}: {p}");
        assert!(p["reason"].as_str().unwrap().contains("5 tasks"), "{p}");
    }
    assert_ne!(
        r["program"]["figures"]["time_ns"]["provenance"]["kind"], "incomplete",
        "the trace's length is not made incomplete"
    );
    assert!(
        stderr.contains("incomplete: 5 tasks") && stderr.contains("--max-tasks"),
        "{stderr}"
    );
}

/// An ftrace instance of the test's own (never the global buffer) recording raw_syscalls of
/// the tasks named `comm`, removed when dropped (with the tracefs mount it made, if any).
pub struct SyscallEvents {
    dir: PathBuf,
    mounted: Option<PathBuf>,
}

impl SyscallEvents {
    pub fn start(comm: &str) -> SyscallEvents {
        // The first tracefs of this mount namespace (procfs parses mountinfo).
        let found = procfs::process::Process::myself()
            .and_then(|p| p.mountinfo())
            .unwrap()
            .into_iter()
            .find(|m| m.fs_type == "tracefs")
            .map(|m| m.mount_point);
        let (root, mounted) = match found {
            Some(root) => (root, None),
            None => {
                let at = std::env::temp_dir()
                    .join(format!("zc-trace-test-tracefs.{}", std::process::id()));
                std::fs::create_dir_all(&at).unwrap();
                nix::mount::mount(
                    Some("tracefs"),
                    &at,
                    Some("tracefs"),
                    nix::mount::MsFlags::empty(),
                    None::<&str>,
                )
                .expect("mount tracefs");
                (at.clone(), Some(at))
            }
        };
        let dir = root.join(format!("instances/zc-trace-test.{}", std::process::id()));
        std::fs::create_dir(&dir).expect("an ftrace instance");
        let events = SyscallEvents { dir, mounted };
        std::fs::write(
            events.dir.join("events/raw_syscalls/filter"),
            format!("comm == \"{comm}\""),
        )
        .unwrap();
        std::fs::write(events.dir.join("events/raw_syscalls/enable"), "1").unwrap();
        events
    }

    /// Stops recording; (sys_enter, sys_exit) events, checked not to have overrun.
    pub fn stop(&self) -> (u64, u64) {
        std::fs::write(self.dir.join("events/raw_syscalls/enable"), "0").unwrap();
        for cpu in std::fs::read_dir(self.dir.join("per_cpu")).unwrap() {
            let stats = std::fs::read_to_string(cpu.unwrap().path().join("stats")).unwrap();
            assert!(
                stats.lines().any(|l| l == "overrun: 0"),
                "the instance's buffer overran: {stats}"
            );
        }
        let text = std::fs::read_to_string(self.dir.join("trace")).unwrap();
        let count = |what: &str| text.lines().filter(|l| l.contains(what)).count() as u64;
        (count(" sys_enter: "), count(" sys_exit: "))
    }
}

impl Drop for SyscallEvents {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("events/raw_syscalls/enable"), "0");
        let _ = std::fs::remove_dir(&self.dir);
        if let Some(at) = &self.mounted {
            let _ = nix::mount::umount(at);
            let _ = std::fs::remove_dir(at);
        }
    }
}

/// Every way a task enters and leaves the kernel (`zct-tasks all`: 100 handled signals, 5
/// forks, 5 threads): zc-trace's syscalls and transitions equal the kernel's own raw_syscalls
/// events of the same run, counted by an ftrace instance that sees only the program (its
/// comm). The one difference is the execve that starts it: zc-trace counts its entry (made
/// in zc-trace's fork, under zc-trace's name), the instance only its exit.
pub fn check_transitions_against_ftrace() {
    // A name of its own (comm is the executable's name, 15 bytes at most): other tests'
    // zct-tasks may run meanwhile, and the filter must see this run only.
    let comm = format!("zct-ftr-{}", std::process::id() % 10_000_000);
    let dir = std::env::temp_dir().join(format!("zc-trace-test-{comm}"));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join(&comm);
    std::fs::copy(tasks(), &program).unwrap();
    let events = SyscallEvents::start(&comm);
    let (r, status) = trace_json(&["trace", "-j", "--", program.to_str().unwrap(), "all"]);
    let _ = std::fs::remove_dir_all(&dir);
    let (enters, exits) = events.stop();
    drop(events);
    assert_eq!(status, 0);
    let f = &r["program"]["figures"];
    let value = |key: &str| {
        f[key]["value"]["median"]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {}", f[key]))
    };
    assert!(enters > 300, "the instance saw {enters} entries");
    assert_eq!(value("syscalls"), enters + 1, "syscall entries");
    let faults = value("page_faults_user_mode");
    assert_eq!(
        value("transitions"),
        enters + 1 + exits + 2 * faults,
        "transitions: {enters} + 1 entries, {exits} exits (rt_sigreturn's and the new tasks' \
         first returns included), {faults} user-mode faults"
    );
}
