//! copy_file_range(file -> file): the kernel moves the bytes between two files; a filesystem may
//! share extents (reflink) or copy through the page cache. Always writes a regular file.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::transfer::sink::SinkKind;

use super::{retry, unexpected_eof, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct CopyFileRangeStrategy;

impl Strategy for CopyFileRangeStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::CopyFileRange
    }
    fn name(&self) -> &'static str {
        "copy_file_range"
    }
    fn summary(&self) -> &'static str {
        "copy_file_range(file -> new file in --tmpdir, chunk) per chunk"
    }
    fn fixed_sink(&self) -> Option<SinkKind> {
        Some(SinkKind::File)
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        Ok(Box::new(CopyFileRange {
            file: cx.source.file.as_fd(),
            sink: cx.sink,
            len: cx.source.len,
            chunk: cx.chunk,
        }))
    }
}

struct CopyFileRange<'a> {
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    len: u64,
    chunk: usize,
}

impl Transfer for CopyFileRange<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let mut offset: i64 = 0;
        while (offset as u64) < self.len {
            let want = (self.len - offset as u64).min(self.chunk as u64) as usize;
            let n = retry(|| {
                nix::fcntl::copy_file_range(self.file, Some(&mut offset), self.sink, None, want)
            })?;
            if n == 0 {
                return Err(unexpected_eof(offset as u64, self.len));
            }
        }
        Ok(offset as u64)
    }
}
