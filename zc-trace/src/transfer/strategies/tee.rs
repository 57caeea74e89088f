//! tee: splice(file -> pipe A), tee(A -> B) duplicates the page references without consuming
//! them, splice(A -> sink) and splice(B -> /dev/null): four calls per chunk, no copy.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::SpliceFFlags;

use super::splice::{drain_pipe, new_pipe};
use super::{retry, unexpected_eof, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct TeeStrategy;

impl Strategy for TeeStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::Tee
    }
    fn name(&self) -> &'static str {
        "tee"
    }
    fn summary(&self) -> &'static str {
        "per chunk: splice(file -> pipe A), tee(A -> B), splice(A -> sink), splice(B -> /dev/null)"
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        Ok(Box::new(Tee {
            file: cx.source.file.as_fd(),
            sink: cx.sink,
            len: cx.source.len,
            chunk: cx.chunk,
            a: new_pipe(cx.chunk)?,
            b: new_pipe(cx.chunk)?,
            null: std::fs::OpenOptions::new().write(true).open("/dev/null")?,
        }))
    }
}

struct Tee<'a> {
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    len: u64,
    chunk: usize,
    a: (OwnedFd, OwnedFd),
    b: (OwnedFd, OwnedFd),
    null: File,
}

impl Transfer for Tee<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let mut offset: nix::libc::loff_t = 0;
        while (offset as u64) < self.len {
            let want = (self.len - offset as u64).min(self.chunk as u64) as usize;
            let n = retry(|| {
                nix::fcntl::splice(
                    self.file,
                    Some(&mut offset),
                    &self.a.1,
                    None,
                    want,
                    SpliceFFlags::SPLICE_F_MOVE,
                )
            })?;
            if n == 0 {
                return Err(unexpected_eof(offset as u64, self.len));
            }
            let mut teed = 0;
            while teed < n {
                teed += retry(|| {
                    nix::fcntl::tee(&self.a.0, &self.b.1, n - teed, SpliceFFlags::empty())
                })?;
            }
            drain_pipe(&self.a.0, self.sink, n)?;
            drain_pipe(&self.b.0, self.null.as_fd(), n)?;
        }
        Ok(offset as u64)
    }
}
