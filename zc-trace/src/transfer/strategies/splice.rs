//! splice(file -> pipe) then splice(pipe -> socket), per chunk: page references move through
//! the pipe; two syscalls per chunk.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{fcntl, FcntlArg, OFlag, SpliceFFlags};

use super::{retry, unexpected_eof, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct SpliceStrategy;

impl Strategy for SpliceStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::Splice
    }
    fn name(&self) -> &'static str {
        "splice"
    }
    fn summary(&self) -> &'static str {
        "splice(file -> pipe, chunk) then splice(pipe -> socket) per chunk"
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        let (pipe_r, pipe_w) = new_pipe(cx.chunk)?;
        Ok(Box::new(Splice {
            file: cx.source.file.as_fd(),
            sink: cx.sink,
            pipe_r,
            pipe_w,
            len: cx.source.len,
            chunk: cx.chunk,
        }))
    }
}

/// A pipe sized for one chunk (see `size_pipe`); warns when fs.pipe-max-size caps it lower.
pub(super) fn new_pipe(chunk: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let capacity = size_pipe(&w, chunk)?;
    if let Some(warning) = short_pipe_warning(&SHORT_PIPE_WARNED, capacity, chunk) {
        log::warn!("{warning}");
    }
    Ok((r, w))
}

/// Set once a short pipe has been reported. Every pipe of a run is capped alike (one chunk,
/// one fs.pipe-max-size), and splice, vmsplice and tee (two pipes) each made one: the same
/// warning was printed four times per run, and once more per iteration.
static SHORT_PIPE_WARNED: AtomicBool = AtomicBool::new(false);

/// The warning for a pipe that holds less than a chunk, the first time only (`warned`).
fn short_pipe_warning(warned: &AtomicBool, capacity: usize, chunk: usize) -> Option<String> {
    if capacity >= chunk || warned.swap(true, Ordering::Relaxed) {
        return None;
    }
    Some(format!(
        "the pipe holds at most {capacity} bytes (fs.pipe-max-size), less than the {chunk} byte \
         chunk: expect more pipe calls per chunk"
    ))
}

/// splice() `n` bytes out of a pipe into `to` (a sink, or /dev/null), however many calls it takes.
pub(super) fn drain_pipe(pipe_r: &OwnedFd, to: BorrowedFd<'_>, mut n: usize) -> io::Result<()> {
    while n > 0 {
        let m =
            retry(|| nix::fcntl::splice(pipe_r, None, to, None, n, SpliceFFlags::SPLICE_F_MOVE))?;
        if m == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "splice out of the pipe returned 0",
            ));
        }
        n -= m;
    }
    Ok(())
}

/// Makes the pipe big enough for one chunk at any file offset (one extra page for an unaligned
/// start), within fs.pipe-max-size. Returns the capacity obtained.
fn size_pipe(pipe: &OwnedFd, chunk: usize) -> io::Result<usize> {
    let page = 4096usize;
    let want = chunk.div_ceil(page) * page + page;
    match fcntl(pipe.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(want as i32)) {
        Ok(n) => Ok(n as usize),
        Err(nix::errno::Errno::EPERM) => {
            let max: i32 = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")?
                .trim()
                .parse()
                .map_err(io::Error::other)?;
            Ok(fcntl(pipe.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(max))? as usize)
        }
        Err(e) => Err(e.into()),
    }
}

struct Splice<'a> {
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    pipe_r: OwnedFd,
    pipe_w: OwnedFd,
    len: u64,
    chunk: usize,
}

impl Transfer for Splice<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let mut offset: nix::libc::loff_t = 0;
        while (offset as u64) < self.len {
            let want = (self.len - offset as u64).min(self.chunk as u64) as usize;
            let in_pipe = retry(|| {
                nix::fcntl::splice(
                    self.file,
                    Some(&mut offset),
                    &self.pipe_w,
                    None,
                    want,
                    SpliceFFlags::SPLICE_F_MOVE,
                )
            })?;
            if in_pipe == 0 {
                return Err(unexpected_eof(offset as u64, self.len));
            }
            drain_pipe(&self.pipe_r, self.sink, in_pipe)?;
        }
        Ok(offset as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splice, vmsplice and tee's two pipes, each capped below the chunk: one warning.
    #[test]
    fn a_short_pipe_is_reported_once_per_run() {
        let warned = AtomicBool::new(false);
        assert_eq!(short_pipe_warning(&warned, 1 << 20, 128 << 10), None);
        let warnings: Vec<String> = (0..4)
            .filter_map(|_| short_pipe_warning(&warned, 65536, 128 << 10))
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("the pipe holds at most 65536 bytes"),
            "{warnings:?}"
        );
    }
}
