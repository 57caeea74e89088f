//! O_DIRECT read + write: the file is read with O_DIRECT, so the device moves the data into the
//! user buffer without the page cache (DMA on real hardware, no CPU copy), then write() sends it.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use super::{retry, write_all, Strategy, Transfer, TransferContext};

/// O_DIRECT transfers must be aligned to the logical block size; a page covers every device.
const ALIGN: usize = 4096;

#[derive(Debug)]
pub struct OdirectStrategy;

impl Strategy for OdirectStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::Odirect
    }
    fn name(&self) -> &'static str {
        "O_DIRECT read+write"
    }
    fn summary(&self) -> &'static str {
        "read(file opened O_DIRECT, aligned buf, chunk) then write(sink, buf, n)"
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        if cx.chunk % ALIGN != 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("O_DIRECT needs a chunk that is a multiple of {ALIGN} bytes"),
            ));
        }
        // A second, O_DIRECT description of the same file (works for unnamed files too).
        let path = format!("/proc/self/fd/{}", cx.source.file.as_raw_fd());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(&path)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the source's filesystem ({}) refuses O_DIRECT: {e}",
                        cx.source.fs_type
                    ),
                )
            })?;
        let len = NonZeroUsize::new(cx.chunk).expect("chunk >= 1");
        // SAFETY: a fresh private anonymous mapping; page-aligned as O_DIRECT requires.
        let buf = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }?;
        // Touch every page now so the window sees no faults on the buffer.
        // SAFETY: the mapping is `len` bytes long and writable.
        unsafe { std::ptr::write_bytes(buf.as_ptr() as *mut u8, 0x5a, len.get()) };
        Ok(Box::new(Odirect {
            file,
            sink: cx.sink,
            buf,
            len,
        }))
    }
}

struct Odirect<'a> {
    file: File,
    sink: BorrowedFd<'a>,
    buf: NonNull<std::ffi::c_void>,
    len: NonZeroUsize,
}

impl Transfer for Odirect<'_> {
    fn run(&mut self) -> io::Result<u64> {
        // SAFETY: the mapping is ours, `len` bytes long, and lives until drop.
        let buf =
            unsafe { std::slice::from_raw_parts_mut(self.buf.as_ptr() as *mut u8, self.len.get()) };
        let mut total = 0u64;
        loop {
            let n = retry(|| nix::unistd::read(self.file.as_fd().as_raw_fd(), buf))?;
            if n == 0 {
                return Ok(total);
            }
            write_all(self.sink, &buf[..n])?;
            total += n as u64;
        }
    }
}

impl Drop for Odirect<'_> {
    fn drop(&mut self) {
        // SAFETY: the buffer is not used after the transfer.
        let _ = unsafe { munmap(self.buf, self.len.get()) };
    }
}
