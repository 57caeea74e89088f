//! Transfer strategies: one small module each, behind one trait.
//!
//! A strategy prepares outside the measured window (buffers allocated and touched, pipes made,
//! file offset reset) so that the window holds only the calls the strategy itself is about.

mod copy_file_range;
mod io_uring_send_zc;
#[cfg(test)]
mod loopback_test;
mod mmap_write;
mod msg_zerocopy;
mod odirect;
mod read_write;
mod sendfile;
mod sendfile_file;
mod splice;
mod tee;
mod vmsplice;

use std::fmt::Debug;
use std::io;
use std::os::fd::BorrowedFd;

use crate::transfer::payload::SourceFile;
use crate::transfer::sink::SinkKind;

pub use copy_file_range::CopyFileRangeStrategy;
pub use io_uring_send_zc::IoUringSendZcStrategy;
pub use mmap_write::MmapWriteStrategy;
pub use msg_zerocopy::MsgZerocopyStrategy;
pub use odirect::OdirectStrategy;
pub use read_write::ReadWriteStrategy;
pub use sendfile::SendfileStrategy;
pub use sendfile_file::SendfileFileStrategy;
pub use splice::SpliceStrategy;
pub use tee::TeeStrategy;
pub use vmsplice::VmspliceStrategy;

/// Everything a strategy may use: the source file, the open sink, the chunk size.
pub struct TransferContext<'a> {
    pub source: &'a SourceFile,
    pub sink: BorrowedFd<'a>,
    #[allow(dead_code)] // for strategies whose calls depend on the sink (socket-only flags)
    pub sink_kind: SinkKind,
    pub chunk: usize,
}

/// A strategy, typed: what the code compares and matches; its name (`read-write`) is for the
/// command line, JSON and the screen only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StrategyId {
    ReadWrite,
    MmapWrite,
    Sendfile,
    Splice,
    Vmsplice,
    Tee,
    Odirect,
    CopyFileRange,
    SendfileFile,
    MsgZerocopy,
    IoUringSendZc,
}

impl StrategyId {
    /// The identifier on the command line and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            StrategyId::ReadWrite => "read-write",
            StrategyId::MmapWrite => "mmap-write",
            StrategyId::Sendfile => "sendfile",
            StrategyId::Splice => "splice",
            StrategyId::Vmsplice => "vmsplice",
            StrategyId::Tee => "tee",
            StrategyId::Odirect => "odirect",
            StrategyId::CopyFileRange => "copy-file-range",
            StrategyId::SendfileFile => "sendfile-file",
            StrategyId::MsgZerocopy => "msg-zerocopy",
            StrategyId::IoUringSendZc => "io-uring-send-zc",
        }
    }
}

by_name!(StrategyId, name: Display, Serialize);

pub trait Strategy: Debug + Sync {
    /// Which strategy this is (its name is the identifier on the command line and in JSON).
    fn id(&self) -> StrategyId;
    /// Display name, e.g. `read+write`.
    fn name(&self) -> &'static str;
    /// One line: what the strategy does, in syscalls.
    fn summary(&self) -> &'static str;
    /// Work done before the window opens; the returned transfer runs inside it.
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>>;
    /// Whether it needs io_uring (which a sysctl may disable: doctor says so).
    fn needs_io_uring(&self) -> bool {
        false
    }
    /// A sink this strategy always uses, whatever --sink says (file -> file strategies).
    fn fixed_sink(&self) -> Option<SinkKind> {
        None
    }
    /// Why the strategy cannot send to `sink`, if it cannot.
    fn unsupported(&self, _sink: SinkKind) -> Option<String> {
        None
    }
}

/// A prepared transfer. `run` moves the whole source to the sink and returns the byte count;
/// it makes only the strategy's own syscalls.
pub trait Transfer {
    fn run(&mut self) -> io::Result<u64>;
    /// Called after the measured window closes, before the sink is closed: strategies whose
    /// kernel reports back asynchronously (zero-copy completions) collect the rest here and
    /// return what the kernel said.
    fn finish(&mut self) -> io::Result<Option<ZerocopyReport>> {
        Ok(None)
    }
}

/// What the kernel reported about zero-copy sends (MSG_ZEROCOPY error-queue completions,
/// io_uring SEND_ZC notifications). These are the kernel's own words, not zc-trace's guesses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ZerocopyReport {
    /// How the kernel reported: "MSG_ERRQUEUE (SO_EE_ORIGIN_ZEROCOPY)" or
    /// "io_uring notification CQE (IORING_NOTIF_USAGE_ZC_COPIED)".
    pub mechanism: &'static str,
    /// Number of completions (notifications) received.
    pub completions: u64,
    /// Bytes of the sends the kernel says it copied after all (e.g. delivered to a local
    /// socket: loopback copies zero-copy fragments on delivery).
    pub copied_bytes: u64,
    /// Bytes of the sends the kernel says went out without a copy.
    pub zerocopy_bytes: u64,
}

pub static ALL: &[&dyn Strategy] = &[
    &ReadWriteStrategy,
    &MmapWriteStrategy,
    &SendfileStrategy,
    &SpliceStrategy,
    &VmspliceStrategy,
    &TeeStrategy,
    &OdirectStrategy,
    &CopyFileRangeStrategy,
    &SendfileFileStrategy,
    &MsgZerocopyStrategy,
    &IoUringSendZcStrategy,
];

/// Finds a strategy by id (`read-write`) or display name (`read+write`), ignoring case.
pub fn by_name(name: &str) -> Option<&'static dyn Strategy> {
    ALL.iter()
        .copied()
        .find(|s| s.id().name().eq_ignore_ascii_case(name) || s.name().eq_ignore_ascii_case(name))
}

/// The source's length as a mapping length (a mapping cannot be empty or exceed usize).
fn mapping_len(source: &SourceFile) -> io::Result<std::num::NonZeroUsize> {
    usize::try_from(source.len)
        .ok()
        .and_then(std::num::NonZeroUsize::new)
        .ok_or_else(|| io::Error::other("file too large to map"))
}

/// mmap()s the whole file read-only, hands the mapping to `f`, then munmap()s it. Both calls
/// are the strategy's own, so they run inside the window. Returns the mapped length.
fn with_mapping(
    file: BorrowedFd<'_>,
    len: std::num::NonZeroUsize,
    f: impl FnOnce(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
    // SAFETY: a fresh read-only shared mapping of a file nobody truncates while we run.
    let map = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            file,
            0,
        )
    }?;
    // SAFETY: the mapping is `len` bytes long and stays mapped until munmap below.
    let data = unsafe { std::slice::from_raw_parts(map.as_ptr() as *const u8, len.get()) };
    let result = f(data);
    // SAFETY: `data` is not used past this point. Pages the kernel still references (pinned
    // zero-copy sends, pipe buffers) hold their own references, so unmapping is safe.
    unsafe { munmap(map, len.get()) }?;
    result.map(|()| len.get() as u64)
}

/// Retries a syscall wrapper on EINTR (a signal must not turn into a short transfer).
fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// write(2) until `buf` is gone. On a blocking TCP socket one call normally suffices.
fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = retry(|| nix::unistd::write(fd, buf))?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
        }
        buf = &buf[n..];
    }
    Ok(())
}

fn unexpected_eof(at: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("source ended at byte {at} of {len} (was it truncated?)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_resolve() {
        for s in ALL {
            assert_eq!(by_name(s.id().name()).unwrap().id(), s.id());
            assert_eq!(by_name(s.name()).unwrap().id(), s.id());
            assert_eq!(by_name(&s.id().name().to_uppercase()).unwrap().id(), s.id());
        }
        assert!(by_name("nope").is_none());
    }

    #[test]
    fn ids_are_unique_and_cli_safe() {
        for (i, a) in ALL.iter().enumerate() {
            let name = a.id().name();
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
            for b in &ALL[i + 1..] {
                assert_ne!(a.id(), b.id());
                assert_ne!(name, b.id().name());
            }
        }
    }
}
