//! The receiving end of the TCP connection, in a separate process so that its work (the receive
//! copy, its syscalls) is counted apart from the sender's.
//!
//! Protocol on the child's stdout, one line each: `port N` once it listens on 127.0.0.1, then
//! `done BYTES` after each connection reaches EOF.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::cleanup;
use crate::cli::ReceiverArgs;
use crate::error::RunError;

/// Child side: runs until killed (by zc-trace, or by the kernel when zc-trace dies).
pub fn serve(args: &ReceiverArgs) -> std::io::Result<()> {
    // Never outlive the parent, even if it is killed with SIGKILL.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
        return Ok(()); // the parent is already gone
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "port {}", listener.local_addr()?.port())?;
    out.flush()?;
    // Touch every page now so the read loop takes no page faults of its own.
    let mut buf = vec![0xa5u8; args.buffer.max(1)];
    loop {
        let (mut conn, _) = listener.accept()?;
        let mut total = 0u64;
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        writeln!(out, "done {total}")?;
        out.flush()?;
    }
}

/// Parent side handle. Dropping it kills the receiver.
pub struct Receiver {
    child: Child,
    stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
}

impl Receiver {
    pub fn spawn(buffer: usize) -> Result<Self, RunError> {
        let exe = std::env::current_exe()
            .map_err(|e| RunError::Receiver(format!("cannot find zc-trace's own binary: {e}")))?;
        let mut child = Command::new(exe)
            .arg("__receiver")
            .arg("--buffer")
            .arg(buffer.to_string())
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
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        };
        let line = r.line()?;
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| RunError::Receiver(format!("unexpected first line {line:?}")))?;
        r.addr.set_port(port);
        Ok(r)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the receiver has read the connection to EOF; returns the bytes it read.
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
