//! vmsplice + splice: the file is mapped, each chunk of the mapping is vmspliced into a pipe
//! (the pipe takes references to the pages, nothing is copied) and spliced on to the sink.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::SpliceFFlags;

use super::splice::{drain_pipe, new_pipe};
use super::{mapping_len, retry, with_mapping, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct VmspliceStrategy;

impl Strategy for VmspliceStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::Vmsplice
    }
    fn name(&self) -> &'static str {
        "vmsplice+splice"
    }
    fn summary(&self) -> &'static str {
        "mmap(file), then per chunk vmsplice(pipe, mapping) and splice(pipe -> sink), munmap"
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        let len = mapping_len(cx.source)?;
        let (pipe_r, pipe_w) = new_pipe(cx.chunk)?;
        Ok(Box::new(Vmsplice {
            file: cx.source.file.as_fd(),
            sink: cx.sink,
            len,
            chunk: cx.chunk,
            pipe_r,
            pipe_w,
        }))
    }
}

struct Vmsplice<'a> {
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    len: NonZeroUsize,
    chunk: usize,
    pipe_r: OwnedFd,
    pipe_w: OwnedFd,
}

impl Transfer for Vmsplice<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let (file, len, chunk, sink) = (self.file, self.len, self.chunk, self.sink);
        let (pipe_r, pipe_w) = (&self.pipe_r, &self.pipe_w);
        with_mapping(file, len, |data| {
            data.chunks(chunk).try_for_each(|c| {
                let mut rest = c;
                while !rest.is_empty() {
                    let iov = [io::IoSlice::new(rest)];
                    let n = retry(|| nix::fcntl::vmsplice(pipe_w, &iov, SpliceFFlags::empty()))?;
                    drain_pipe(pipe_r, sink, n)?;
                    rest = &rest[n..];
                }
                Ok(())
            })
        })
    }
}
