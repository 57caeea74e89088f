//! read() into a user buffer, write() it to the socket: the textbook baseline.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::{retry, write_all, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct ReadWriteStrategy;

impl Strategy for ReadWriteStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::ReadWrite
    }
    fn name(&self) -> &'static str {
        "read+write"
    }
    fn summary(&self) -> &'static str {
        "read(file, buf, chunk) then write(socket, buf, n), until read returns 0"
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        let file = cx.source.file.as_fd();
        nix::unistd::lseek(file.as_raw_fd(), 0, nix::unistd::Whence::SeekSet)?;
        Ok(Box::new(ReadWrite {
            file,
            sink: cx.sink,
            // Touched now (non-zero fill) so the window sees no faults on the buffer.
            buf: vec![0x5a; cx.chunk],
        }))
    }
}

struct ReadWrite<'a> {
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    buf: Vec<u8>,
}

impl Transfer for ReadWrite<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let n = retry(|| nix::unistd::read(self.file.as_raw_fd(), &mut self.buf))?;
            if n == 0 {
                return Ok(total);
            }
            write_all(self.sink, &self.buf[..n])?;
            total += n as u64;
        }
    }
}
