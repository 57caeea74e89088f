//! The receiving end of a socket or pipe sink, in a separate process so that its work (the
//! receive copy, its syscalls) is counted apart from the sender's.
//!
//! Protocol on the child's stdout, one line each: `ready ADDRESS` once it listens, then
//! `done BYTES` after each connection (or FIFO writer) reaches EOF.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use clap::ValueEnum;
use serde::Serialize;

use crate::error::RunError;
use crate::resources::cleanup;

/// How the receiver consumes the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiverMode {
    /// read() into a buffer: the kernel copies every byte into user memory.
    Copy,
    /// recv(MSG_TRUNC): TCP drops the data without copying it (TCP sinks only).
    Discard,
    /// splice() to /dev/null through a pipe: page references, no copy.
    Splice,
}

impl ReceiverMode {
    pub fn describe(self, buffer: usize) -> String {
        match self {
            ReceiverMode::Copy => format!("read() into a {} KiB buffer until EOF", buffer / 1024),
            ReceiverMode::Discard => "recv(MSG_TRUNC): data dropped without a copy".into(),
            ReceiverMode::Splice => "splice() to /dev/null through a pipe".into(),
        }
    }
}

/// Where the receiver listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Fifo(PathBuf),
}

impl Listen {
    pub fn to_arg(&self) -> String {
        match self {
            Listen::Tcp(a) => format!("tcp:{a}"),
            Listen::Unix(p) => format!("unix:{}", p.display()),
            Listen::Fifo(p) => format!("fifo:{}", p.display()),
        }
    }

    pub fn parse(arg: &str) -> Result<Self, String> {
        let (kind, rest) = arg.split_once(':').ok_or("expected KIND:ADDRESS")?;
        match kind {
            "tcp" => rest
                .parse()
                .map(Listen::Tcp)
                .map_err(|e| format!("{rest}: {e}")),
            "unix" => Ok(Listen::Unix(rest.into())),
            "fifo" => Ok(Listen::Fifo(rest.into())),
            other => Err(format!("unknown listen kind {other}")),
        }
    }
}

/// `zc-trace receive`'s answer to the sender once a stream reached its end.
pub fn report_line(bytes: u64) -> String {
    format!("zc-trace received {bytes}\n")
}

/// The byte count in `zc-trace receive`'s answer, if that is what `text` is.
pub fn parse_report(text: &str) -> Option<u64> {
    text.strip_prefix("zc-trace received ")?
        .trim_end()
        .parse()
        .ok()
}

/// What the receiver process is told on its command line (`zc-trace __receiver`).
pub struct Serve {
    /// `Listen::to_arg`'s form.
    pub listen: String,
    pub mode: ReceiverMode,
    /// The read() buffer.
    pub buffer: usize,
    /// A network namespace to enter first (a /run/netns path).
    pub netns: Option<PathBuf>,
}

/// Child side: runs until killed (by zc-trace, or by the kernel when zc-trace dies).
pub fn serve(args: &Serve) -> std::io::Result<()> {
    // Never outlive the parent, even if it is killed with SIGKILL.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
        return Ok(()); // the parent is already gone
    }
    if let Some(ns) = &args.netns {
        let f = File::open(ns)?;
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
    }
    let listen = Listen::parse(&args.listen).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    let mut sink = Consumer::new(args.mode, args.buffer)?;
    match listen {
        Listen::Tcp(addr) => {
            let l = TcpListener::bind(addr)?;
            writeln!(out, "ready {}", l.local_addr()?)?;
            out.flush()?;
            loop {
                let (conn, _) = l.accept()?;
                let n = sink.consume(conn.as_fd(), true)?;
                writeln!(out, "done {n}")?;
                out.flush()?;
            }
        }
        Listen::Unix(path) => {
            let l = UnixListener::bind(&path)?;
            writeln!(out, "ready {}", path.display())?;
            out.flush()?;
            loop {
                let (conn, _) = l.accept()?;
                let n = sink.consume(conn.as_fd(), false)?;
                writeln!(out, "done {n}")?;
                out.flush()?;
            }
        }
        Listen::Fifo(path) => {
            writeln!(out, "ready {}", path.display())?;
            out.flush()?;
            loop {
                // Blocks until the sender opens the FIFO for writing. The read end is closed
                // before saying done: a writer opening for the next run must block until this
                // loop opens it again, not find the old reader and then lose it (EPIPE).
                let n = {
                    let f = open_fifo(&path)?;
                    sink.consume(f.as_fd(), false)?
                };
                writeln!(out, "done {n}")?;
                out.flush()?;
            }
        }
    }
}

/// Opens the sink's FIFO for reading: the path goes through zc-trace's descriptor of its
/// private directory (`private_dir`); the last step must be no symlink and the file a FIFO.
fn open_fifo(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    if !f.metadata()?.file_type().is_fifo() {
        return Err(std::io::Error::other(format!(
            "{} is not the FIFO zc-trace made",
            path.display()
        )));
    }
    Ok(f)
}

/// Consumes one stream to EOF the way the mode says.
pub struct Consumer {
    mode: ReceiverMode,
    buf: Vec<u8>,
    pipe: Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
    null: Option<File>,
}

impl Consumer {
    pub fn new(mode: ReceiverMode, buffer: usize) -> std::io::Result<Self> {
        let (pipe, null) = if mode == ReceiverMode::Splice {
            (
                Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?),
                Some(std::fs::OpenOptions::new().write(true).open("/dev/null")?),
            )
        } else {
            (None, None)
        };
        Ok(Consumer {
            mode,
            // Touched now so the read loop takes no page faults of its own.
            buf: vec![0xa5u8; buffer.max(1)],
            pipe,
            null,
        })
    }

    pub fn consume(&mut self, fd: BorrowedFd<'_>, tcp: bool) -> std::io::Result<u64> {
        let mut total = 0u64;
        loop {
            let n = match self.mode {
                ReceiverMode::Copy => retry(|| nix::unistd::read(fd.as_raw_fd(), &mut self.buf))?,
                ReceiverMode::Discard => {
                    if !tcp {
                        return Err(std::io::Error::other("discard mode needs a TCP sink"));
                    }
                    retry(|| {
                        nix::sys::socket::recv(
                            fd.as_raw_fd(),
                            &mut self.buf,
                            nix::sys::socket::MsgFlags::MSG_TRUNC,
                        )
                    })?
                }
                ReceiverMode::Splice => self.splice_once(fd)?,
            };
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    fn splice_once(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<usize> {
        use nix::fcntl::{splice, SpliceFFlags};
        let (r, w) = self.pipe.as_ref().expect("splice mode has a pipe");
        let null = self.null.as_ref().expect("splice mode has /dev/null");
        let n = retry(|| splice(fd, None, w, None, 1 << 16, SpliceFFlags::SPLICE_F_MOVE))?;
        let mut left = n;
        while left > 0 {
            left -= retry(|| splice(r, None, null, None, left, SpliceFFlags::SPLICE_F_MOVE))?;
        }
        Ok(n)
    }
}

fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> std::io::Result<T> {
    loop {
        match f() {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(std::io::Error::from),
        }
    }
}

/// Parent side handle. Dropping it kills the receiver.
pub struct Receiver {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// What the receiver reported when ready (its TCP address, or the path).
    pub ready: String,
}

impl Receiver {
    pub fn spawn(
        listen: &Listen,
        mode: ReceiverMode,
        buffer: usize,
        netns: Option<&Path>,
    ) -> Result<Self, RunError> {
        // /proc/self/exe, not the path: it still runs if the binary was replaced meanwhile.
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("__receiver")
            .arg("--listen")
            .arg(listen.to_arg())
            .arg("--mode")
            .arg(mode.to_possible_value().expect("named").get_name())
            .arg("--buffer")
            .arg(buffer.to_string());
        if let Some(ns) = netns {
            cmd.arg("--netns").arg(ns);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| RunError::Receiver(format!("cannot start: {e}")))?;
        cleanup::register_process(nix::unistd::Pid::from_raw(child.id() as i32));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut r = Receiver {
            child,
            stdout: BufReader::new(stdout),
            ready: String::new(),
        };
        let line = r.line()?;
        r.ready = line
            .strip_prefix("ready ")
            .ok_or_else(|| RunError::Receiver(format!("unexpected first line {line:?}")))?
            .to_string();
        Ok(r)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the receiver has read the stream to EOF; returns the bytes it read.
    pub fn wait_done(&mut self) -> Result<u64, RunError> {
        let line = self.line()?;
        line.strip_prefix("done ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| RunError::Receiver(format!("unexpected line {line:?}")))
    }

    fn line(&mut self) -> Result<String, RunError> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(RunError::Receiver(format!("exited ({status})")))
            }
            Ok(_) => Ok(line.trim_end().to_string()),
            Err(e) => Err(RunError::Receiver(e.to_string())),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_round_trip() {
        for spec in ["tcp:127.0.0.1:0", "unix:/tmp/x.sock", "fifo:/tmp/x.fifo"] {
            assert_eq!(Listen::parse(spec).unwrap().to_arg(), spec);
        }
        assert!(Listen::parse("udp:1.2.3.4:5").is_err());
        assert!(Listen::parse("nonsense").is_err());
    }
}
