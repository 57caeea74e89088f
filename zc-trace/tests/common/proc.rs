//! One child process of a test, with the loop every signal and hang test needs written once:
//! spawned with its stderr read on a thread (a full pipe never blocks it), a line of its
//! stderr awaited with a deadline, signalled, waited for with a deadline (a hang is
//! killed and reported, never a stuck test), and killed when the test panics first.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub struct Proc {
    child: Child,
    /// What it is, for the panics ("zc-trace run", "the attacker").
    what: String,
    /// Its stderr so far, line by line, and the thread that reads it (None when the test
    /// handles stderr itself).
    stderr_lines: Option<Receiver<String>>,
    stderr_reader: Option<JoinHandle<String>>,
}

impl Proc {
    /// Spawns `cmd` with stderr piped and read on a thread; stdin and stdout stay as `cmd`
    /// has them.
    pub fn spawn(what: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut p = Self::adopt(what, child);
        let (tx, rx) = mpsc::channel();
        let stderr = p.child.stderr.take().expect("stderr piped");
        p.stderr_reader = Some(std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        }));
        p.stderr_lines = Some(rx);
        p
    }

    /// A child the test spawned itself (its stderr, if piped, is read once it has exited).
    pub fn adopt(what: &str, child: Child) -> Proc {
        Proc {
            child,
            what: what.to_string(),
            stderr_lines: None,
            stderr_reader: None,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Its child processes now (a receiver, a helper).
    pub fn children(&self) -> Vec<i32> {
        let me = self.child.id() as i32;
        procfs::process::all_processes()
            .expect("/proc")
            .flatten()
            .filter(|p| p.stat().is_ok_and(|s| s.ppid == me))
            .map(|p| p.pid)
            .collect()
    }

    /// Panics when one of `pids` (children seen earlier, say) still exists: what it started
    /// must end with it.
    pub fn assert_left_nothing(&self, pids: &[i32]) {
        let left: Vec<_> = pids
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        assert!(
            left.is_empty(),
            "{} left processes behind: {left:?}",
            self.what
        );
    }

    /// True while it has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.what));
    }

    /// The first stderr line that `wanted` accepts, within `limit`; panics (with the lines
    /// seen) when the process ends or the time is up first. Needs [`Proc::spawn`].
    pub fn wait_for_stderr(&mut self, wanted: impl Fn(&str) -> bool, limit: Duration) -> String {
        let rx = self
            .stderr_lines
            .take()
            .expect("stderr read by Proc::spawn");
        let found = self.wait_for(&rx, "stderr", wanted, limit);
        self.stderr_lines = Some(rx);
        found
    }

    fn wait_for(
        &mut self,
        rx: &Receiver<String>,
        stream: &str,
        wanted: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    panic!(
                        "{}: the awaited {stream} line did not come in {limit:?}; it wrote:\n{}",
                        self.what,
                        seen.join("\n")
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "{} ended ({status:?}) before the awaited {stream} line; it wrote:\n{}",
                        self.what,
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// Its exit status within `limit`, or None when it had to be killed after that.
    pub fn wait_at_most(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its exit status within `limit`; panics saying `why_it_should_end` when it is still
    /// running after that (it is killed first).
    pub fn wait(&mut self, limit: Duration, why_it_should_end: &str) -> ExitStatus {
        match self.wait_at_most(limit) {
            Some(status) => status,
            None => {
                let stderr = self.stderr();
                panic!(
                    "{} still running after {limit:?} ({why_it_should_end}); stderr:\n{stderr}",
                    self.what
                )
            }
        }
    }

    /// All it wrote to stderr (after it exited; empty when the test handles stderr itself).
    pub fn stderr(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            return reader.join().unwrap_or_default();
        }
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    /// A test that panics first leaves no process behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
