//! `zc-trace trace` of the test program tests/programs/xfer.c: built here, or given by the VM
//! harness (`ZC_TRACE_XFER`, a static build in the guest's /bin), with the checks shared by
//! tests/trace.rs and the kernel matrix.

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
        .get_or_init(|| {
            if let Some(given) = std::env::var_os("ZC_TRACE_XFER") {
                return PathBuf::from(given);
            }
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
