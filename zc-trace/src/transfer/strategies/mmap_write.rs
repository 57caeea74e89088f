//! mmap() the file, write() from the mapping to the socket, munmap(). The mapping shares the
//! page cache (no copy into user memory), but write() still copies into socket buffers.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};

use super::{mapping_len, with_mapping, write_all, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct MmapWriteStrategy;

impl Strategy for MmapWriteStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::MmapWrite
    }
    fn name(&self) -> &'static str {
        "mmap+write"
    }
    fn summary(&self) -> &'static str {
        "mmap(file) once, write(socket, map + off, chunk) per chunk, munmap"
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        let len = mapping_len(cx.source)?;
        Ok(Box::new(MmapWrite {
            file: cx.source.file.as_fd(),
            sink: cx.sink,
            len,
            chunk: cx.chunk,
        }))
    }
}

struct MmapWrite<'a> {
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    len: NonZeroUsize,
    chunk: usize,
}

impl Transfer for MmapWrite<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let (file, len, chunk, sink) = (self.file, self.len, self.chunk, self.sink);
        with_mapping(file, len, |data| {
            data.chunks(chunk).try_for_each(|c| write_all(sink, c))
        })
    }
}
