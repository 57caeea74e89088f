//! splice(file -> pipe) then splice(pipe -> socket), per chunk: page references move through
//! the pipe; two syscalls per chunk.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag, SpliceFFlags};

use super::{retry, unexpected_eof, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct SpliceStrategy;

impl Strategy for SpliceStrategy {
    fn id(&self) -> &'static str {
        "splice"
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
    if capacity < chunk {
        log::warn!(
            "the pipe holds at most {capacity} bytes (fs.pipe-max-size), less than the {chunk} \
             byte chunk: expect more pipe calls per chunk"
        );
    }
    Ok((r, w))
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
