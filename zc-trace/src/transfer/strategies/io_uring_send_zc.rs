//! io_uring SEND_ZC from an mmap of the file: like send(MSG_ZEROCOPY), the socket references the
//! mapped page-cache pages, but the request goes through an io_uring and the kernel reports
//! back with CQEs: a result CQE per request, then a notification CQE once the pages are released,
//! flagged (IORING_SEND_ZC_REPORT_USAGE) when the kernel copied after all.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, IoUring, Probe};
use nix::libc;

use super::{mapping_len, with_mapping, Strategy, Transfer, TransferContext, ZerocopyReport};
use crate::transfer::sink::SinkKind;

/// `IORING_SEND_ZC_REPORT_USAGE` (linux/io_uring.h, 6.2+): notifications say whether the kernel
/// copied.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in a notification's `res` when the data was copied.
const IORING_NOTIF_USAGE_ZC_COPIED: i32 = 1 << 31;
/// One request in flight at a time; the rest of the ring holds notifications.
const RING_ENTRIES: u32 = 16;
/// How long `finish` waits for the last notifications.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(5);

const MECHANISM: &str = "io_uring notification CQE (IORING_NOTIF_USAGE_ZC_COPIED)";

#[derive(Debug)]
pub struct IoUringSendZcStrategy;

impl Strategy for IoUringSendZcStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::IoUringSendZc
    }
    fn name(&self) -> &'static str {
        "io_uring SEND_ZC"
    }
    fn summary(&self) -> &'static str {
        "ring made before the window; mmap(file) once, one IORING_OP_SEND_ZC per chunk \
         (io_uring_enter waits for its result CQE), munmap; notification CQEs read as they come"
    }
    fn needs_io_uring(&self) -> bool {
        true
    }
    fn unsupported(&self, sink: SinkKind) -> Option<String> {
        (!sink.is_tcp()).then(|| {
            format!(
                "io_uring SEND_ZC needs a TCP socket sink (tcp or veth), not {}; \
                 other sinks have no zero-copy send path",
                sink.cli_name()
            )
        })
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        let len = mapping_len(cx.source)?;
        Ok(Box::new(SendZc::new(cx, len)?))
    }
}

/// (major, minor) of the running kernel.
fn kernel_version() -> Option<(u32, u32)> {
    let uts = nix::sys::utsname::uname().ok()?;
    let release = uts.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The ring, and a probe that it knows SEND_ZC; anything missing makes the strategy unsupported.
fn new_ring() -> io::Result<IoUring> {
    let unsupported = |why: String| io::Error::new(io::ErrorKind::Unsupported, why);
    let ring = IoUring::new(RING_ENTRIES).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES | libc::ENOSYS | libc::EINVAL) => unsupported(format!(
            "io_uring_setup failed: {e} ({})",
            io_uring_disabled()
        )),
        _ => io::Error::new(e.kind(), format!("io_uring_setup: {e}")),
    })?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| unsupported(format!("cannot probe io_uring opcodes (needs 5.6+): {e}")))?;
    if !probe.is_supported(opcode::SendZc::CODE) {
        return Err(unsupported(
            "this kernel's io_uring has no SEND_ZC (6.0+)".into(),
        ));
    }
    // The opcode probe cannot see flags: IORING_SEND_ZC_REPORT_USAGE, without which the
    // kernel does not say whether it copied, came in 6.2.
    if let Some((major, minor)) = kernel_version() {
        if (major, minor) < (6, 2) {
            return Err(unsupported(format!(
                "IORING_SEND_ZC_REPORT_USAGE needs Linux 6.2+, this is {major}.{minor}: the kernel \
                 could not say whether it copied"
            )));
        }
    }
    Ok(ring)
}

/// What the kernel.io_uring_disabled sysctl says, for error messages.
fn io_uring_disabled() -> String {
    match crate::kernel::capabilities::kernel_sysctl("io_uring_disabled") {
        Some(0) => "kernel.io_uring_disabled = 0: io_uring is allowed".into(),
        Some(1) => {
            "kernel.io_uring_disabled = 1: only for CAP_SYS_ADMIN and kernel.io_uring_group".into()
        }
        Some(2) => "kernel.io_uring_disabled = 2: io_uring is off for everyone".into(),
        Some(other) => format!("kernel.io_uring_disabled = {other}"),
        None => "no kernel.io_uring_disabled sysctl; seccomp or an old kernel?".into(),
    }
}

/// One SEND_ZC request: what its result CQE and its notification CQE said.
#[derive(Debug, Default, Clone, Copy)]
struct Request {
    /// The result CQE's `res` (bytes sent, or -errno).
    result: Option<i32>,
    /// The result CQE had IORING_CQE_F_MORE: a notification follows.
    notif_follows: bool,
    /// The notification arrived; whether it said IORING_NOTIF_USAGE_ZC_COPIED.
    copied: Option<bool>,
}

struct SendZc<'a> {
    ring: IoUring,
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    len: NonZeroUsize,
    chunk: usize,
    /// Indexed by the SQE's user_data.
    reqs: Vec<Request>,
}

impl<'a> SendZc<'a> {
    fn new(cx: TransferContext<'a>, len: NonZeroUsize) -> io::Result<Self> {
        let ring = new_ring()?;
        // A request moves at most u32::MAX bytes.
        let chunk = cx.chunk.clamp(1, u32::MAX as usize);
        // One entry per request; reserved now so the window sees no allocation (brk/mmap).
        let requests = len.get().div_ceil(chunk);
        Ok(SendZc {
            ring,
            file: cx.source.file.as_fd(),
            sink: cx.sink,
            len,
            chunk,
            reqs: Vec::with_capacity(requests * 2 + 16),
        })
    }

    /// Reads every CQE in the completion queue into `reqs`.
    fn reap(&mut self) -> io::Result<()> {
        let reqs = &mut self.reqs;
        for cqe in self.ring.completion() {
            let n = reqs.len();
            let req = reqs.get_mut(cqe.user_data() as usize).ok_or_else(|| {
                io::Error::other(format!(
                    "CQE for request {}, but only {n} were submitted",
                    cqe.user_data()
                ))
            })?;
            if cqueue::notif(cqe.flags()) {
                req.copied = Some(cqe.result() & IORING_NOTIF_USAGE_ZC_COPIED != 0);
            } else {
                req.result = Some(cqe.result());
                req.notif_follows = cqueue::more(cqe.flags());
            }
        }
        Ok(())
    }

    /// Submits one SEND_ZC of `buf` and waits for its result CQE; returns the bytes sent.
    fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        let idx = self.reqs.len();
        self.reqs.push(Request::default());
        let sqe = opcode::SendZc::new(
            types::Fd(self.sink.as_raw_fd()),
            buf.as_ptr(),
            buf.len() as u32,
        )
        .zc_flags(IORING_SEND_ZC_REPORT_USAGE)
        .build()
        .user_data(idx as u64);
        // SAFETY: `buf` stays valid (mapped) until the result CQE; the kernel pins its pages
        // for as long as the notification is outstanding.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        let res = loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}"))),
            }
            self.reap()?;
            if let Some(res) = self.reqs[idx].result {
                break res;
            }
        };
        if res < 0 {
            let e = io::Error::from_raw_os_error(-res);
            return Err(if res == -libc::EINVAL {
                io::Error::new(
                    e.kind(),
                    format!("SEND_ZC failed: {e} (IORING_SEND_ZC_REPORT_USAGE needs Linux 6.2+)"),
                )
            } else {
                io::Error::new(e.kind(), format!("SEND_ZC failed: {e}"))
            });
        }
        if res == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "SEND_ZC sent 0 bytes",
            ));
        }
        Ok(res as usize)
    }

    fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            // A stream socket may take less than asked (no MSG_WAITALL): send the rest.
            let n = self.send(buf)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    fn missing(&self) -> usize {
        self.reqs
            .iter()
            .filter(|r| r.notif_follows && r.copied.is_none())
            .count()
    }

    fn report(&self) -> ZerocopyReport {
        let mut report = ZerocopyReport {
            mechanism: MECHANISM,
            ..Default::default()
        };
        for r in &self.reqs {
            let Some(copied) = r.copied else { continue };
            report.completions += 1;
            let bytes = r.result.unwrap_or(0).max(0) as u64;
            if copied {
                report.copied_bytes += bytes;
            } else {
                report.zerocopy_bytes += bytes;
            }
        }
        report
    }
}

impl Transfer for SendZc<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let (file, len, chunk) = (self.file, self.len, self.chunk);
        with_mapping(file, len, |data| {
            data.chunks(chunk).try_for_each(|c| self.send_all(c))
        })
    }

    fn finish(&mut self) -> io::Result<Option<ZerocopyReport>> {
        let deadline = Instant::now() + COMPLETION_TIMEOUT;
        loop {
            self.reap()?;
            let missing = self.missing();
            if missing == 0 {
                return Ok(Some(self.report()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{missing} of {} SEND_ZC notifications never arrived within {}s",
                        self.reqs.len(),
                        COMPLETION_TIMEOUT.as_secs()
                    ),
                ));
            }
            let ts = types::Timespec::new()
                .sec(left.as_secs())
                .nsec(left.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::strategies::loopback_test::Loopback;

    #[test]
    fn refuses_non_tcp_sinks() {
        assert!(IoUringSendZcStrategy.unsupported(SinkKind::Veth).is_none());
        let why = IoUringSendZcStrategy.unsupported(SinkKind::Unix).unwrap();
        assert!(why.contains("TCP") && why.contains("unix"), "{why}");
    }

    /// Sends `len` generated bytes over TCP on 127.0.0.1 in `chunk`s, the receiver starting to
    /// read after `delay`; checks what arrived and returns the report and the request count,
    /// or None when this host has no io_uring SEND_ZC.
    fn transfer(len: u64, chunk: usize, delay: Duration) -> Option<(ZerocopyReport, usize)> {
        let lb = Loopback::new(len, delay);

        let (report, requests) = {
            let cx = lb.cx(chunk);
            let mut t = match SendZc::new(cx, NonZeroUsize::new(len as usize).unwrap()) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    eprintln!("skipped: io_uring SEND_ZC is not available here: {e}");
                    return None;
                }
                Err(e) => panic!("prepare: {e}"),
            };
            assert_eq!(t.run().unwrap(), len);
            let report = t.finish().unwrap().expect("a zero-copy report");
            (report, t.reqs.len())
        };
        lb.check_received();

        assert_eq!(report.mechanism, MECHANISM);
        assert!(report.completions >= 1);
        assert_eq!(report.copied_bytes + report.zerocopy_bytes, len);
        // Local delivery copies the pinned fragments: the kernel says so for every request.
        assert_eq!(report.copied_bytes, len);
        Some((report, requests))
    }

    #[test]
    fn chunks_that_are_not_page_multiples_and_a_late_receiver() {
        transfer(300_000, 100_000, Duration::ZERO);
        // The socket buffer fills while nobody reads: requests may come back short and the rest
        // is sent by the next one; every request still gets its notification.
        if let Some((report, requests)) = transfer(8 << 20, 1 << 20, Duration::from_millis(200)) {
            eprintln!("io-uring-send-zc, late receiver: {report:?} for {requests} requests");
            assert_eq!(report.completions, requests as u64);
        }
    }

    #[test]
    fn sends_a_file_over_loopback_and_reports_notifications() {
        let len = 1u64 << 20;
        let lb = Loopback::new(len, Duration::ZERO);

        let report = {
            let prepared = IoUringSendZcStrategy.prepare(lb.cx(64 << 10));
            let mut t = match prepared {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    eprintln!("skipped: io_uring SEND_ZC is not available here: {e}");
                    return;
                }
                Err(e) => panic!("prepare: {e}"),
            };
            assert_eq!(t.run().unwrap(), len);
            t.finish().unwrap().expect("a zero-copy report")
        };
        lb.check_received();

        eprintln!("io-uring-send-zc over loopback: {report:?}");
        assert_eq!(report.mechanism, MECHANISM);
        assert!(report.completions >= 1);
        assert_eq!(report.copied_bytes + report.zerocopy_bytes, len);
        // Local delivery copies the pinned fragments: the kernel says so for every request.
        assert_eq!(report.copied_bytes, len);
    }
}
