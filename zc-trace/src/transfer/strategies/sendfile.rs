//! sendfile(socket, file): the kernel moves the data itself, no user buffer.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::{retry, unexpected_eof, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct SendfileStrategy;

impl Strategy for SendfileStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::Sendfile
    }
    fn name(&self) -> &'static str {
        "sendfile"
    }
    fn summary(&self) -> &'static str {
        "sendfile(socket, file, &offset, chunk) per chunk"
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        Ok(Box::new(Sendfile {
            file: cx.source.file.as_fd(),
            sink: cx.sink,
            len: cx.source.len,
            chunk: cx.chunk,
        }))
    }
}

struct Sendfile<'a> {
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    len: u64,
    chunk: usize,
}

impl Transfer for Sendfile<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let mut offset: nix::libc::off_t = 0;
        while (offset as u64) < self.len {
            let want = (self.len - offset as u64).min(self.chunk as u64) as usize;
            let n = retry(|| {
                nix::sys::sendfile::sendfile(self.sink, self.file, Some(&mut offset), want)
            })?;
            if n == 0 {
                return Err(unexpected_eof(offset as u64, self.len));
            }
        }
        Ok(offset as u64)
    }
}
