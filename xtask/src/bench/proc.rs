//! Child processes of the bench: pinned to a CPU, timed, their peak memory taken, stopped and
//! signalled. Plain libc calls: std's `Child` cannot report rusage, pin or stop a process.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::Result;

/// Runs the command's process on `cpu` only (its children inherit the mask).
pub fn pin(cmd: &mut Command, cpu: usize) {
    // SAFETY: sched_setaffinity is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// How a child ended, and what it cost.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit code, or None when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub wall: Duration,
    /// The kernel's peak resident set (ru_maxrss of wait4: the child and the children it
    /// waited for), file-backed pages included.
    pub max_rss_kib: u64,
    /// The largest RssAnon seen in /proc/PID/status, sampled every `SAMPLE_EVERY`.
    pub peak_anon_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "ended".into(),
        }
    }

    /// The last lines of stderr, for an error message.
    pub fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" / ")
    }
}

/// How often RssAnon is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// A started child whose stdout and stderr are read on threads (so it never blocks on a full
/// pipe) and whose anonymous memory is sampled until it is reaped.
pub struct Running {
    pub pid: i32,
    started: Instant,
    stop: Arc<AtomicBool>,
    peak_anon: Arc<AtomicU64>,
    sampler: std::thread::JoinHandle<()>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: std::thread::JoinHandle<String>,
}

/// Where a child's stdout goes.
pub enum Stdout {
    Capture,
    Discard,
    File(std::fs::File),
}

/// Starts `cmd` with stdin empty, stderr captured and stdout as `stdout` says.
pub fn start(cmd: &mut Command, stdout: Stdout) -> Result<Running> {
    cmd.stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(match stdout {
            Stdout::Capture => Stdio::piped(),
            Stdout::Discard => Stdio::null(),
            Stdout::File(f) => Stdio::from(f),
        });
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as i32;
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let stdout = child
        .stdout
        .take()
        .map(|o| read_all(Box::new(o) as Box<dyn Read + Send>));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped")));
    let stop = Arc::new(AtomicBool::new(false));
    let peak_anon = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak_anon.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = status_field(pid, "RssAnon:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        })
    };
    // `child` is dropped without waiting: `Running::wait` reaps it with wait4, for rusage.
    drop(child);
    Ok(Running {
        pid,
        started,
        stop,
        peak_anon,
        sampler,
        stdout,
        stderr,
    })
}

impl Running {
    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill() on our own, not yet reaped child.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Waits for the child to end and returns what it cost.
    pub fn wait(self) -> Result<Outcome> {
        self.wait_until(None)
    }

    /// Sends `sig` and waits for the end; after `grace`, SIGKILL.
    pub fn stop(self, sig: i32, grace: Duration) -> Result<Outcome> {
        self.signal(sig);
        self.wait_until(Some(Instant::now() + grace))
    }

    fn wait_until(self, mut deadline: Option<Instant>) -> Result<Outcome> {
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid out-parameter.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = loop {
            let flags = if deadline.is_some() { libc::WNOHANG } else { 0 };
            // SAFETY: wait4 on our own child, with valid out-pointers.
            let r = unsafe { libc::wait4(self.pid, &mut status, flags, &mut usage) };
            if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            if r == 0 {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    self.signal(libc::SIGKILL);
                    deadline = None;
                } else {
                    std::thread::sleep(Duration::from_millis(5));
                }
                continue;
            }
            break r;
        };
        let wall = self.started.elapsed();
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sampler.join();
        if r != self.pid {
            return Err(format!(
                "wait4({}): {}",
                self.pid,
                std::io::Error::last_os_error()
            ));
        }
        let stdout = self
            .stdout
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        Ok(Outcome {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            wall,
            max_rss_kib: usage.ru_maxrss as u64,
            peak_anon_kib: self.peak_anon.load(Ordering::Relaxed),
            stdout,
            stderr,
        })
    }
}

/// Runs `cmd` to its end, stdout captured.
pub fn run(cmd: &mut Command) -> Result<Outcome> {
    start(cmd, Stdout::Capture)?.wait()
}

/// A "Name:  123 kB" field of /proc/PID/status, in KiB.
pub fn status_field(pid: i32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_field(p, 1).and_then(|s| s.parse::<i32>().ok()) == Some(pid))
        .collect()
}

/// Field `n` after the command name of /proc/PID/stat (0: state, 1: ppid).
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(n).map(str::to_string)
}

/// Whether `pid` exists and has not ended (a zombie has).
pub fn alive(pid: i32) -> bool {
    stat_field(pid, 0).is_some_and(|s| s != "Z" && s != "X")
}

/// Waits until `pid` has a child (zc-trace starts its receiver once its probes are attached);
/// returns the child's pid.
pub fn wait_for_child(pid: i32, timeout: Duration) -> Result<i32> {
    let started = Instant::now();
    loop {
        if let Some(&c) = children_of(pid).first() {
            return Ok(c);
        }
        if !alive(pid) {
            return Err(format!("process {pid} ended before starting its receiver"));
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "process {pid} started no receiver within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until every process of `pids` is stopped (state T), for at most a second.
pub fn wait_stopped(pids: &[i32]) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if pids
            .iter()
            .all(|&p| stat_field(p, 0).is_some_and(|s| s == "T" || s == "t"))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Sends `sig` to a process that is not our child (zc-trace's receiver).
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill() has no memory effects.
    unsafe { libc::kill(pid, sig) };
}

/// Free bytes for unprivileged use in `dir`'s filesystem.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; `path` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0)
        .then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// (busy, total) clock ticks of each CPU since boot, from /proc/stat.
pub fn cpu_ticks() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// How busy `cpu` was between two `cpu_ticks` readings (0 to 1).
pub fn busy_between(before: &[(u64, u64)], after: &[(u64, u64)], cpu: usize) -> f64 {
    match (before.get(cpu), after.get(cpu)) {
        (Some(b), Some(a)) if a.1 > b.1 => (a.0 - b.0) as f64 / (a.1 - b.1) as f64,
        _ => 0.0,
    }
}

/// What `wait_quiet` saw when the machine stayed busy, for the results.
static NOISE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The noise notes so far.
pub fn noise() -> Vec<String> {
    NOISE.lock().map(|n| n.clone()).unwrap_or_default()
}

/// Other tracers or VMs that would add their own cost to every measurement (a second
/// zc-trace's probes tax every syscall too): their names and pids.
fn foreign_tracers() -> Vec<String> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me && stat_field(p, 1).and_then(|s| s.parse().ok()) != Some(me))
        .filter_map(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).ok()?;
            let comm = comm.trim();
            (comm == "zc-trace" || comm == "bpftrace" || comm.starts_with("qemu-system"))
                .then(|| format!("{comm} ({p})"))
        })
        .collect()
}

/// Waits (at most `limit`) until no other tracer runs and the CPUs are nearly idle over a
/// short window, so that a measurement does not carry someone else's work; `what` names the
/// measurement for the note recorded when the machine stayed busy.
pub fn wait_quiet(what: &str, limit: Duration) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        let before = cpu_ticks();
        std::thread::sleep(Duration::from_millis(300));
        let after = cpu_ticks();
        let busy = (0..after.len())
            .map(|c| busy_between(&before, &after, c))
            .fold(0.0, f64::max);
        let tracers = foreign_tracers();
        if busy < 0.15 && tracers.is_empty() {
            if started.elapsed() > Duration::from_secs(2) {
                eprintln!(
                    "bench: the machine is quiet again after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            return;
        }
        let now = format!(
            "a CPU {:.0} % busy{}",
            busy * 100.0,
            if tracers.is_empty() {
                String::new()
            } else {
                format!(", other tracers running: {}", tracers.join(", "))
            }
        );
        if last.is_empty() {
            eprintln!("bench: waiting for a quiet machine before {what}: {now}");
        }
        last = now;
    }
    let note = format!(
        "{what}: the machine was not quiet after {} s ({last}); measured anyway",
        limit.as_secs()
    );
    eprintln!("bench: {note}");
    if let Ok(mut n) = NOISE.lock() {
        n.push(note);
    }
}

/// Whether another tracer runs now, right after a measurement (so it may have run during it):
/// the note is recorded, and true means "measure again" for the first two attempts.
pub fn disturbed(what: &str, attempt: usize) -> bool {
    let tracers = foreign_tracers();
    if tracers.is_empty() {
        return false;
    }
    let again = attempt < 2;
    let note = format!(
        "{what}: other tracers ran at its end ({}); {}",
        tracers.join(", "),
        if again {
            "measured again"
        } else {
            "kept after three attempts"
        }
    );
    eprintln!("bench: {note}");
    if let Ok(mut n) = NOISE.lock() {
        n.push(note);
    }
    again
}
