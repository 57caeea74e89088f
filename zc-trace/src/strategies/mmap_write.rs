//! mmap() the file, write() from the mapping to the socket, munmap(). The mapping shares the
//! page cache (no copy into user memory), but write() still copies into socket buffers.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use super::{write_all, Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct MmapWriteStrategy;

impl Strategy for MmapWriteStrategy {
    fn id(&self) -> &'static str {
        "mmap-write"
    }
    fn name(&self) -> &'static str {
        "mmap+write"
    }
    fn summary(&self) -> &'static str {
        "mmap(file) once, write(socket, map + off, chunk) per chunk, munmap"
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        let len = usize::try_from(cx.source.len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| io::Error::other("file too large to map"))?;
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
        // The mmap itself is part of the strategy, so it is inside the window.
        // SAFETY: a fresh read-only shared mapping of a file nobody truncates while we run.
        let map = unsafe {
            mmap(
                None,
                self.len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                self.file,
                0,
            )
        }?;
        // SAFETY: the mapping is `len` bytes long and stays mapped until munmap below.
        let data = unsafe { std::slice::from_raw_parts(map.as_ptr() as *const u8, self.len.get()) };
        let result = data
            .chunks(self.chunk)
            .try_for_each(|c| write_all(self.sink, c));
        // SAFETY: `data` is not used past this point.
        unsafe { munmap(map, self.len.get()) }?;
        result.map(|()| self.len.get() as u64)
    }
}
