//! `zc-trace trace` on real programs, with figures known exactly from outside: strace's syscall
//! counts of the same command, and nginx serving a 1 MiB file with sendfile on and off, whose
//! bytes the test itself counts on the client side.
//!
//! nginx and strace are not installed: `cargo xtask test` unpacks them from this machine's
//! Debian release (`cargo xtask trace-tools` prints the folder) and passes the folder as
//! `ZC_TRACE_TOOLS`; they run through its own loader and libraries. Needs root (BPF) and that
//! folder: outside CI the tests skip, saying why; with CI=true a skip is a failure.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use common::{bin, bpf_available, run_json};

const MIB: usize = 1 << 20;
/// The requests each nginx test makes.
const REQUESTS: usize = 3;
/// How long a started program (nginx, zc-trace's attach) gets before the test gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// The read-family syscalls a server can read a file with into its own memory.
const READ_FAMILY: &[&str] = &["read", "pread64", "readv", "preadv", "preadv2"];

// ---- the unpacked tools -------------------------------------------------------------------

/// The folder `cargo xtask trace-tools` unpacked nginx and strace into.
struct Tools {
    root: PathBuf,
}

/// Library directories of the unpacked root, in search order (as the xtask's `vm::tools`).
const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib",
    "usr/lib",
];
const LOADER: &str = "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
const BIN_DIRS: &[&str] = &["usr/bin", "usr/sbin", "bin", "sbin"];

/// The tools when the test can run: root (BPF) and `ZC_TRACE_TOOLS`. Outside CI a missing one
/// skips the test (saying why); with CI=true it fails it.
fn tools(test: &str) -> Option<Tools> {
    if !bpf_available(test) {
        return None;
    }
    let Some(root) = std::env::var_os("ZC_TRACE_TOOLS") else {
        let msg = format!(
            "{test} needs nginx and strace: set ZC_TRACE_TOOLS to the folder `cargo xtask \
             trace-tools` prints (`cargo xtask test` sets it)"
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}; with CI=true a skipped test is a failure");
        }
        eprintln!("skipping: {msg}");
        return None;
    };
    Some(Tools { root: root.into() })
}

impl Tools {
    /// A command that runs the unpacked `program` through the unpacked loader and libraries,
    /// so the host's own libraries (or their absence) do not matter.
    fn command(&self, program: &str) -> Command {
        let path = BIN_DIRS
            .iter()
            .map(|d| self.root.join(d).join(program))
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!(
                    "{program} is not in ZC_TRACE_TOOLS ({}); `cargo xtask trace-tools` fetches \
                     it",
                    self.root.display()
                )
            });
        let libs: Vec<String> = LIB_DIRS
            .iter()
            .map(|d| self.root.join(d).display().to_string())
            .collect();
        let mut c = Command::new(self.root.join(LOADER));
        c.arg("--library-path").arg(libs.join(":"));
        c.arg("--argv0").arg(program).arg(path);
        c
    }
}

// ---- a private directory ------------------------------------------------------------------

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("zc-trace-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file of `len` bytes that are not all alike (a served body that came out of
    /// the wrong place does not compare equal); returns its content.
    fn file(&self, name: &str, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        let path = self.0.join(name);
        std::fs::write(&path, &data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        data
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- the report ---------------------------------------------------------------------------

/// The copy site `site` of the traced program; `None` when it is not observable.
fn copy_site<'a>(report: &'a Value, site: &str) -> Option<&'a Value> {
    let sites = report["program"]["copy_sites"]
        .as_array()
        .unwrap_or_else(|| panic!("no program.copy_sites in {report:#}"));
    let s = sites
        .iter()
        .find(|s| s["site"] == site)
        .unwrap_or_else(|| panic!("no copy site {site} in {report:#}"));
    (!s["bytes"].is_null()).then_some(&s["bytes"])
}

/// One direction (`user_to_kernel`, `by_reference`, ...) of the sites' bytes, summed; a site
/// that is not observable counts 0.
fn site_bytes(report: &Value, sites: &[&str], direction: &str) -> u64 {
    sites
        .iter()
        .filter_map(|s| copy_site(report, s))
        .map(|b| {
            b[direction]["median"]
                .as_u64()
                .unwrap_or_else(|| panic!("{direction} has no median in {b:#}"))
        })
        .sum()
}

/// What TCP sockets received: `tcp_send` and `tcp_sendpage` (kernels before 6.5 passed pages
/// by reference through the latter).
fn tcp_bytes(report: &Value, direction: &str) -> u64 {
    site_bytes(report, &["tcp_send", "tcp_sendpage"], direction)
}

fn program_figure(report: &Value, key: &str) -> u64 {
    let f = &report["program"]["figures"][key];
    f["value"]["median"]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} has no value: {f:#}"))
}

/// Bytes of the `by_fd_kind` rows of these syscalls on this side and descriptor kind.
fn fd_kind_bytes(report: &Value, syscalls: &[&str], side: &str, kind: &str) -> u64 {
    report["by_fd_kind"]
        .as_array()
        .unwrap_or_else(|| panic!("no by_fd_kind in {report:#}"))
        .iter()
        .filter(|r| {
            r["side"] == side
                && r["kind"] == kind
                && syscalls.iter().any(|s| r["syscall"].as_str() == Some(*s))
        })
        .map(|r| r["bytes"].as_u64().expect("bytes"))
        .sum()
}

/// `program.syscalls_by_name` as name -> count.
fn zc_trace_counts(report: &Value) -> BTreeMap<String, u64> {
    report["program"]["syscalls_by_name"]
        .as_object()
        .unwrap_or_else(|| panic!("no program.syscalls_by_name in {report:#}"))
        .iter()
        .map(|(name, s)| {
            let n = s["count"]["median"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: no count in {s:#}"));
            (name.clone(), n)
        })
        .collect()
}

// ---- (a) strace's counts ------------------------------------------------------------------

/// The calls column of `strace -c`'s summary table, by syscall name. Rows sit between the
/// dashed line under the header and the one above `total`; the errors column may be blank,
/// so the name is the last word and the calls the fourth.
fn parse_strace_summary(text: &str) -> BTreeMap<String, u64> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("------") {
            if in_table {
                break;
            }
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(calls)) = (words.last(), words.get(3)) else {
            panic!("strace summary row {line:?} has too few columns:\n{text}");
        };
        let calls = calls
            .parse()
            .unwrap_or_else(|_| panic!("strace summary row {line:?}: calls is not a number"));
        rows.insert(name.to_string(), calls);
    }
    assert!(!rows.is_empty(), "no rows in strace's summary:\n{text}");
    rows
}

/// The command both tracers run.
fn dd_args(file: &Path) -> Vec<String> {
    vec![
        "dd".into(),
        format!("if={}", file.display()),
        "of=/dev/null".into(),
        "bs=64K".into(),
    ]
}

fn strace_counts(tools: &Tools, dir: &TempDir, file: &Path) -> BTreeMap<String, u64> {
    let summary = dir.path().join("strace.out");
    let out = tools
        .command("strace")
        .args(["-c", "-f", "-o"])
        .arg(&summary)
        .arg("--")
        .args(dd_args(file))
        .output()
        .expect("run strace");
    assert!(
        out.status.success(),
        "strace dd failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text =
        std::fs::read_to_string(&summary).unwrap_or_else(|e| panic!("{}: {e}", summary.display()));
    parse_strace_summary(&text)
}

#[test]
fn trace_counts_the_syscalls_strace_counts() {
    let test = "trace_counts_the_syscalls_strace_counts";
    let Some(tools) = tools(test) else { return };
    let dir = TempDir::new(test);
    dir.file("in", MIB);
    let file = dir.path().join("in");

    let strace = strace_counts(&tools, &dir, &file);
    let dd = dd_args(&file);
    let mut args = vec!["trace", "--format", "json", "--"];
    args.extend(dd.iter().map(String::as_str));
    let report = run_json(&args);
    let traced = zc_trace_counts(&report);

    // Only names both report are compared: strace leaves out exit_group (it never returns).
    let common: BTreeMap<&str, (u64, u64)> = strace
        .iter()
        .filter_map(|(name, s)| traced.get(name).map(|t| (name.as_str(), (*s, *t))))
        .collect();
    let differ: Vec<String> = common
        .iter()
        .filter(|(_, (s, t))| s != t)
        .map(|(name, (s, t))| format!("{name}: strace {s}, zc-trace {t}"))
        .collect();
    assert!(
        differ.is_empty(),
        "syscall counts differ:\n  {}\nstrace: {strace:?}\nzc-trace: {traced:?}",
        differ.join("\n  ")
    );
    for name in ["read", "write", "openat", "execve"] {
        assert!(
            common.contains_key(name),
            "{name} is not counted by both: strace {strace:?}, zc-trace {traced:?}"
        );
    }
    // 1 MiB in 64 KiB blocks: 16 reads of data, at least.
    assert!(common["read"].0 >= 16, "read: {:?}", common["read"]);
}

// ---- (b) nginx ----------------------------------------------------------------------------

/// A free port on 127.0.0.1 (another program may take it before nginx does; unlikely).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A config that keeps everything nginx writes in `dir` and serves `dir` on `port`.
fn nginx_config(dir: &Path, port: u16, sendfile: bool) -> String {
    let d = dir.display();
    let sendfile = if sendfile { "on" } else { "off" };
    format!(
        "daemon off;
master_process on;
worker_processes 1;
# The worker stays root: the test's directory need not be readable by nobody.
user root;
error_log {d}/error.log notice;
pid {d}/nginx.pid;
lock_file {d}/nginx.lock;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    sendfile {sendfile};
    server {{
        listen 127.0.0.1:{port};
        root {d};
    }}
}}
"
    )
}

/// nginx, master and one worker, stopped (and waited for) when dropped, on every path.
struct Nginx {
    master: Child,
    worker: u32,
    addr: SocketAddr,
    error_log: PathBuf,
}

impl Nginx {
    fn start(tools: &Tools, dir: &TempDir, sendfile: bool) -> Nginx {
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, nginx_config(dir.path(), port, sendfile)).expect("write config");
        let master = tools
            .command("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            master,
            worker: 0,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            error_log: dir.path().join("error.log"),
        };
        nginx.worker = nginx.wait_until_serving();
        nginx
    }

    fn master_pid(&self) -> u32 {
        self.master.id()
    }

    /// Waits until the master has its worker and the port answers; returns the worker's pid.
    fn wait_until_serving(&mut self) -> u32 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.master.try_wait() {
                panic!("nginx exited ({status}): {}", self.log());
            }
            let workers = children(self.master_pid());
            if let ([worker], Ok(_)) = (workers.as_slice(), TcpStream::connect(self.addr)) {
                return *worker;
            }
            assert!(
                Instant::now() < deadline,
                "nginx does not serve {} with one worker ({workers:?}): {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    /// `GET /big` over HTTP/1.0 (nginx closes the connection after the response); returns
    /// the response's header length (through the blank line) and its body.
    fn get_big(&self) -> (usize, Vec<u8>) {
        let mut s = TcpStream::connect(self.addr).expect("connect to nginx");
        s.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        s.write_all(b"GET /big HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("send the request");
        let mut response = Vec::new();
        s.read_to_end(&mut response).expect("read the response");
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {} bytes", response.len()))
            + 4;
        let head = String::from_utf8_lossy(&response[..end]);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        (end, response[end..].to_vec())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: a fast shutdown (SIGQUIT would wait for open connections).
        let _ = kill(Pid::from_raw(self.master_pid() as i32), Signal::SIGTERM);
        if wait_for(&mut self.master, Duration::from_secs(10)).is_none() {
            let _ = self.master.kill();
            let _ = self.master.wait();
            // The worker of a killed master would be left serving.
            if self.worker != 0 {
                let _ = kill(Pid::from_raw(self.worker as i32), Signal::SIGKILL);
            }
        }
    }
}

/// The pids whose parent is `pid` (from /proc/*/stat).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent(*p) == Some(pid))
        .collect()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()?;
    u32::try_from(stat.ppid).ok()
}

/// Waits up to `limit` for `child` to exit.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// `zc-trace trace --pid ...` running in the background; killed when dropped unfinished.
struct Trace {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

/// The outcome of a finished trace.
struct Traced {
    status: std::process::ExitStatus,
    report: Value,
}

impl Trace {
    /// Starts the trace of `pids` and returns once it is attached: the first --interval line
    /// is printed after the probes are attached and the pids are followed, so the requests
    /// after it are seen whole (attaching takes seconds; a fixed sleep would be a guess).
    fn attach(pids: &[u32], expect_zero_copy: bool) -> Trace {
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let mut cmd = Command::new(bin());
        cmd.args(["trace", "--format", "json", "--interval", "0.1", "--pid"])
            .arg(pids.join(","));
        if expect_zero_copy {
            cmd.args(["--expect", "zero-copy"]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zc-trace");
        let (tx, stderr) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut trace = Trace {
            child: Some(child),
            stderr,
            stderr_seen: Vec::new(),
        };
        trace.wait_for_interval_line();
        trace
    }

    fn wait_for_interval_line(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let interval = is_interval_line(&line);
                    self.stderr_seen.push(line);
                    if interval {
                        return;
                    }
                }
                Err(_) => panic!(
                    "zc-trace printed no --interval line within {PATIENCE:?} (not attached, or \
                     it exited):\n{}",
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// Ends the trace as Ctrl-C would and reads its report.
    fn stop(mut self) -> Traced {
        let mut child = self.child.take().expect("running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let Some(status) = wait_for(&mut child, PATIENCE) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zc-trace did not exit within {PATIENCE:?} of SIGINT");
        };
        let stdout = reader.join().expect("stdout reader");
        self.stderr_seen.extend(self.stderr.try_iter());
        let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "zc-trace ({status}): stdout is not JSON ({e}):\n{stdout}\nstderr:\n{}",
                self.stderr_seen.join("\n")
            )
        });
        Traced { status, report }
    }
}

impl Drop for Trace {
    /// A test that failed midway: SIGINT lets zc-trace detach and clean up; SIGKILL if it
    /// does not.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            if wait_for(&mut child, Duration::from_secs(15)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// "zc-trace:      0.2 s  copied ...": seconds, then "s".
fn is_interval_line(line: &str) -> bool {
    let mut words = line
        .strip_prefix("zc-trace:")
        .unwrap_or("")
        .split_whitespace();
    words.next().is_some_and(|w| w.parse::<f64>().is_ok()) && words.next() == Some("s")
}

/// Header and body bytes of the responses, summed.
#[derive(Debug, Default)]
struct Served {
    headers: u64,
    bodies: u64,
}

/// Serves `big` REQUESTS times under a trace of nginx's master and worker; checks every body
/// against the file and returns the trace and what the client received.
fn trace_nginx(test: &str, sendfile: bool) -> Option<(Traced, Served)> {
    let tools = tools(test)?;
    let dir = TempDir::new(test);
    let big = dir.file("big", MIB);
    let nginx = Nginx::start(&tools, &dir, sendfile);
    let trace = Trace::attach(&[nginx.master_pid(), nginx.worker], true);
    let mut served = Served::default();
    for _ in 0..REQUESTS {
        let (header, body) = nginx.get_big();
        assert_eq!(body.len(), MIB, "body length");
        assert!(body == big, "the body is not the file's content");
        served.headers += header as u64;
        served.bodies += body.len() as u64;
    }
    let traced = trace.stop();
    eprintln!(
        "{test}: {served:?}, zc-trace {}\n{}",
        traced.status,
        summary(&traced.report)
    );
    Some((traced, served))
}

/// The figures the nginx tests assert, for the log (and a failure's message).
fn summary(report: &Value) -> String {
    let sites: Vec<String> = ["file_read", "tcp_send", "tcp_sendpage"]
        .iter()
        .map(|s| format!("{s} {}", copy_site(report, s).unwrap_or(&Value::Null)))
        .collect();
    format!(
        "copy sites:\n  {}\nby_fd_kind: {}\nexpectation: {}",
        sites.join("\n  "),
        report["by_fd_kind"],
        report["expectation"]
    )
}

#[test]
fn nginx_sendfile_on_passes_the_file_by_reference() {
    let test = "nginx_sendfile_on_passes_the_file_by_reference";
    let Some((traced, served)) = trace_nginx(test, true) else {
        return;
    };
    let r = &traced.report;
    let ctx = summary(r);
    assert_eq!(served.bodies, (REQUESTS * MIB) as u64);
    assert_eq!(tcp_bytes(r, "by_reference"), served.bodies, "{ctx}");
    // The headers nginx writes itself (writev) are the only bytes copied into the socket.
    assert_eq!(tcp_bytes(r, "user_to_kernel"), served.headers, "{ctx}");
    assert_eq!(tcp_bytes(r, "kernel_to_kernel"), 0, "{ctx}");
    // No file byte went through nginx's memory.
    assert_eq!(
        site_bytes(r, &["file_read", "shmem_read"], "kernel_to_user"),
        0,
        "{ctx}"
    );
    assert_eq!(
        fd_kind_bytes(r, &["sendfile", "sendfile64"], "in", "regular"),
        served.bodies,
        "{ctx}"
    );
    assert_eq!(
        fd_kind_bytes(r, &["sendfile", "sendfile64"], "out", "tcp"),
        served.bodies,
        "{ctx}"
    );
    assert_eq!(r["expectation"]["verdict"], "holds", "{ctx}");
    assert!(traced.status.success(), "{}: {ctx}", traced.status);
}

#[test]
fn nginx_sendfile_off_copies_it() {
    let test = "nginx_sendfile_off_copies_it";
    let Some((traced, served)) = trace_nginx(test, false) else {
        return;
    };
    let r = &traced.report;
    let ctx = summary(r);
    assert_eq!(served.bodies, (REQUESTS * MIB) as u64);
    assert_eq!(program_figure(r, "by_reference_bytes"), 0, "{ctx}");
    assert_eq!(tcp_bytes(r, "by_reference"), 0, "{ctx}");
    // Headers and bodies alike go through nginx's memory into the socket.
    assert_eq!(
        tcp_bytes(r, "user_to_kernel"),
        served.headers + served.bodies,
        "{ctx}"
    );
    assert_eq!(
        fd_kind_bytes(r, READ_FAMILY, "in", "regular"),
        served.bodies,
        "{ctx}"
    );
    // Every body byte was read from the page cache into nginx's buffers.
    assert_eq!(
        site_bytes(r, &["file_read", "shmem_read"], "kernel_to_user"),
        served.bodies,
        "{ctx}"
    );
    assert_eq!(r["expectation"]["verdict"], "differs", "{ctx}");
    assert_eq!(traced.status.code(), Some(1), "{ctx}");
}

// ---- the parsers, without root ----------------------------------------------------------

/// The traced command starts with the locked-memory limit zc-trace was started with, though
/// zc-trace raises its own where the kernel charges eBPF maps to it (kernels before 5.11:
/// there, without the restore, the command would get "unlimited").
#[test]
fn the_command_gets_the_callers_locked_memory_limit() {
    if !bpf_available("the_command_gets_the_callers_locked_memory_limit") {
        return;
    }
    // Below any default (64 KiB): lowering a limit needs no privilege.
    let (soft, hard) = (32 * 1024, 48 * 1024);
    let mut c = Command::new(bin());
    c.args(["trace", "--format", "json", "--", "sh", "-c"])
        .arg("ulimit -S -l; ulimit -H -l");
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK, soft, hard)
                .map_err(std::io::Error::from)
        });
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let limits: Vec<&str> = stdout.lines().take(2).collect();
    assert_eq!(limits, ["32", "48"], "{stdout}");
}

#[test]
fn strace_summaries_are_read_with_and_without_errors() {
    let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 22.71    0.000981          28        35        16 openat
 21.37    0.000923          46        20           read
  0.00    0.000000           0         1           execve
------ ----------- ----------- --------- --------- ----------------
100.00    0.004320          27        56        16 total
";
    let rows = parse_strace_summary(text);
    assert_eq!(
        rows.into_iter().collect::<Vec<_>>(),
        [
            ("execve".to_string(), 1),
            ("openat".to_string(), 35),
            ("read".to_string(), 20)
        ]
    );
}

#[test]
fn interval_lines_are_told_from_notes() {
    assert!(is_interval_line(
        "zc-trace:      0.2 s  copied          0 B/s  by reference          0 B/s"
    ));
    assert!(!is_interval_line("zc-trace: note: no BTF"));
    assert!(!is_interval_line("nginx: 0.2 s"));
}
