//! send(MSG_ZEROCOPY) from an mmap of the file: the socket takes references to the mapped
//! page-cache pages instead of copying them into socket buffers; the kernel tells, through the
//! socket's error queue, when it no longer needs the pages and whether it copied after all.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::libc;

use super::{mapping_len, with_mapping, Strategy, Transfer, TransferContext, ZerocopyReport};
use crate::transfer::sink::SinkKind;

/// `SO_ZEROCOPY` from asm-generic/socket.h (x86, arm, riscv...; not in the libc crate).
const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` from linux/errqueue.h.
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel fell back to copying the range's data.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;
/// How long `finish` (and a send stalled on ENOBUFS) waits for the kernel's completions.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(5);

const MECHANISM: &str = "MSG_ERRQUEUE (SO_EE_ORIGIN_ZEROCOPY)";

#[derive(Debug)]
pub struct MsgZerocopyStrategy;

impl Strategy for MsgZerocopyStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::MsgZerocopy
    }
    fn name(&self) -> &'static str {
        "send(MSG_ZEROCOPY)"
    }
    fn summary(&self) -> &'static str {
        "mmap(file) once, send(socket, map + off, chunk, MSG_ZEROCOPY) per chunk, munmap; \
         completions read with recvmsg(MSG_ERRQUEUE) (in the window only when send hits ENOBUFS)"
    }
    fn unsupported(&self, sink: SinkKind) -> Option<String> {
        (!sink.is_tcp()).then(|| {
            format!(
                "MSG_ZEROCOPY needs a TCP socket sink (tcp or veth), not {}; \
                 other sinks have no zero-copy send path",
                sink.cli_name()
            )
        })
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        let len = mapping_len(cx.source)?;
        Ok(Box::new(MsgZerocopy::new(cx, len)?))
    }
}

/// setsockopt(SO_ZEROCOPY, 1); a kernel or socket without it makes the strategy unsupported.
fn enable_zerocopy(sink: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid descriptor and a pointer to an int of the given size.
    let r = unsafe {
        libc::setsockopt(
            sink.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ZEROCOPY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT | libc::EINVAL) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the kernel refuses SO_ZEROCOPY on the sink socket ({e}); MSG_ZEROCOPY needs Linux 4.14+"),
        )),
        _ => Err(io::Error::new(
            e.kind(),
            format!("setsockopt(SO_ZEROCOPY): {e}"),
        )),
    }
}

struct MsgZerocopy<'a> {
    file: BorrowedFd<'a>,
    sink: BorrowedFd<'a>,
    len: NonZeroUsize,
    chunk: usize,
    zc: Completions,
    /// Times a send hit ENOBUFS and waited for completions first.
    enobufs: u64,
}

impl<'a> MsgZerocopy<'a> {
    fn new(cx: TransferContext<'a>, len: NonZeroUsize) -> io::Result<Self> {
        enable_zerocopy(cx.sink)?;
        let chunk = cx.chunk.max(1);
        // One id per successful send; reserved now so the window sees no allocation (brk/mmap).
        let sends = len.get().div_ceil(chunk);
        Ok(MsgZerocopy {
            file: cx.source.file.as_fd(),
            sink: cx.sink,
            len,
            chunk,
            zc: Completions::with_capacity(sends * 2 + 16),
            enobufs: 0,
        })
    }

    /// send(MSG_ZEROCOPY) until `buf` is gone; each successful send is one notification id.
    fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let fd = self.sink.as_raw_fd();
        while !buf.is_empty() {
            // SAFETY: `buf` is valid for `buf.len()` bytes; the kernel pins its pages.
            let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_ZEROCOPY) };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Too many notifications pending (optmem) or pages pinned (memlock): let
                    // completions come back, then send again.
                    Some(libc::ENOBUFS) => {
                        if self.zc.pending() == 0 {
                            return Err(io::Error::new(
                                e.kind(),
                                "send(MSG_ZEROCOPY) failed with ENOBUFS with no send outstanding \
                                 (net.core.optmem_max or RLIMIT_MEMLOCK too small?)",
                            ));
                        }
                        self.enobufs += 1;
                        let before = self.zc.pending();
                        self.zc
                            .wait(fd, |zc| zc.pending() < before, COMPLETION_TIMEOUT)?;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            let n = r as usize;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "send returned 0"));
            }
            self.zc.sent(n as u64);
            buf = &buf[n..];
        }
        Ok(())
    }
}

impl Transfer for MsgZerocopy<'_> {
    fn run(&mut self) -> io::Result<u64> {
        let (file, len, chunk) = (self.file, self.len, self.chunk);
        with_mapping(file, len, |data| {
            data.chunks(chunk).try_for_each(|c| self.send_all(c))
        })
    }

    fn finish(&mut self) -> io::Result<Option<ZerocopyReport>> {
        if self.enobufs > 0 {
            log::info!(
                "send(MSG_ZEROCOPY) hit ENOBUFS {} times (net.core.optmem_max) and waited for \
                 completions",
                self.enobufs
            );
        }
        let fd = self.sink.as_raw_fd();
        match self.zc.wait(fd, |zc| zc.pending() == 0, COMPLETION_TIMEOUT) {
            Ok(()) => Ok(Some(self.zc.report())),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} of {} MSG_ZEROCOPY sends never completed within {}s",
                    self.zc.pending(),
                    self.zc.lens.len(),
                    COMPLETION_TIMEOUT.as_secs()
                ),
            )),
            Err(e) => Err(e),
        }
    }
}

/// The sends issued (by notification id) and what the error queue said about them.
#[derive(Debug, Default)]
struct Completions {
    /// Bytes of the send with id `i` (ids start at 0 on a fresh socket).
    lens: Vec<u64>,
    /// Ids reported complete.
    completed_ids: u64,
    /// Notifications (error-queue messages) read.
    completions: u64,
    copied_bytes: u64,
    zerocopy_bytes: u64,
}

impl Completions {
    fn with_capacity(n: usize) -> Self {
        Completions {
            lens: Vec::with_capacity(n),
            ..Default::default()
        }
    }

    fn sent(&mut self, bytes: u64) {
        self.lens.push(bytes);
    }

    fn pending(&self) -> u64 {
        self.lens.len() as u64 - self.completed_ids
    }

    fn report(&self) -> ZerocopyReport {
        ZerocopyReport {
            mechanism: MECHANISM,
            completions: self.completions,
            copied_bytes: self.copied_bytes,
            zerocopy_bytes: self.zerocopy_bytes,
        }
    }

    /// Accounts one notification: ids `lo..=hi` (u32, may wrap) are complete.
    fn complete(&mut self, lo: u32, hi: u32, copied: bool) -> io::Result<()> {
        let count = u64::from(hi.wrapping_sub(lo)) + 1;
        let mut bytes = 0u64;
        for k in 0..count {
            let id = lo.wrapping_add(k as u32) as usize;
            bytes += *self.lens.get(id).ok_or_else(|| {
                io::Error::other(format!(
                    "zero-copy completion for send id {id}, but only {} sends were issued",
                    self.lens.len()
                ))
            })?;
        }
        self.completions += 1;
        self.completed_ids += count;
        if copied {
            self.copied_bytes += bytes;
        } else {
            self.zerocopy_bytes += bytes;
        }
        Ok(())
    }

    /// Reads every notification queued now (recvmsg(MSG_ERRQUEUE | MSG_DONTWAIT) until
    /// EAGAIN); returns how many were read.
    fn drain(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut read = 0;
        loop {
            // u64 words keep the control buffer aligned for cmsghdr.
            let mut control = [0u64; 32];
            // SAFETY: an all-zero msghdr is valid (no name, no iovecs).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: `msg` points at a control buffer that outlives the call.
            let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(read),
                    _ => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("recvmsg(MSG_ERRQUEUE): {e}"),
                        ))
                    }
                }
            }
            if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                return Err(io::Error::other(
                    "recvmsg(MSG_ERRQUEUE): control data truncated",
                ));
            }
            // SAFETY: walking the control buffer the kernel filled, with the libc macros.
            let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !cmsg.is_null() {
                // SAFETY: CMSG_FIRSTHDR/NXTHDR return headers inside the buffer.
                let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
                let is_recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                    || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
                if is_recverr {
                    // SAFETY: IP(V6)_RECVERR carries a sock_extended_err (maybe unaligned).
                    let ee = unsafe {
                        std::ptr::read_unaligned(
                            libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err
                        )
                    };
                    if ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                        if ee.ee_errno != 0 {
                            return Err(io::Error::other(format!(
                                "zero-copy completion reports errno {}",
                                ee.ee_errno
                            )));
                        }
                        let copied = ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0;
                        self.complete(ee.ee_info, ee.ee_data, copied)?;
                        read += 1;
                    } else if ee.ee_errno != 0 {
                        return Err(io::Error::from_raw_os_error(ee.ee_errno as i32));
                    }
                }
                // SAFETY: as above.
                cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
            }
        }
    }

    /// Reads notifications until `done` holds, waiting in poll() (the error queue raises
    /// POLLERR) up to `timeout`; a TimedOut error if it never does.
    fn wait(
        &mut self,
        fd: RawFd,
        done: impl Fn(&Self) -> bool,
        timeout: Duration,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain(fd)?;
            if done(self) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out waiting for zero-copy completions",
                ));
            }
            // Only POLLERR/POLLHUP can wake us: the error queue is not readable data.
            let mut pfd = libc::pollfd {
                fd,
                events: 0,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e);
                }
            } else if pfd.revents & libc::POLLHUP != 0 && pfd.revents & libc::POLLERR == 0 {
                // The peer is gone but the queue is empty; do not spin on a hung-up socket.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::strategies::loopback_test::Loopback;

    #[test]
    fn completions_account_ranges() {
        let mut zc = Completions::with_capacity(4);
        for n in [10, 20, 30, 40] {
            zc.sent(n);
        }
        zc.complete(0, 1, true).unwrap();
        assert_eq!(zc.pending(), 2);
        zc.complete(2, 3, false).unwrap();
        assert_eq!(zc.pending(), 0);
        assert_eq!(zc.report().completions, 2);
        assert_eq!(zc.report().copied_bytes, 30);
        assert_eq!(zc.report().zerocopy_bytes, 70);
        assert!(zc.complete(4, 4, false).is_err());
    }

    #[test]
    fn refuses_non_tcp_sinks() {
        assert!(MsgZerocopyStrategy.unsupported(SinkKind::Tcp).is_none());
        assert!(MsgZerocopyStrategy.unsupported(SinkKind::Veth).is_none());
        let why = MsgZerocopyStrategy.unsupported(SinkKind::Pipe).unwrap();
        assert!(why.contains("TCP"), "{why}");
    }

    /// Sends `len` generated bytes over TCP on 127.0.0.1 in `chunk`s, the receiver starting to
    /// read after `delay`; checks what arrived and returns the report and the ENOBUFS waits.
    fn transfer(len: u64, chunk: usize, delay: Duration) -> (ZerocopyReport, u64) {
        let lb = Loopback::new(len, delay);

        let (report, enobufs) = {
            let cx = lb.cx(chunk);
            let mut t = MsgZerocopy::new(cx, NonZeroUsize::new(len as usize).unwrap()).unwrap();
            assert_eq!(t.run().unwrap(), len);
            let report = t.finish().unwrap().expect("a zero-copy report");
            (report, t.enobufs)
        };
        lb.check_received();

        assert_eq!(report.mechanism, MECHANISM);
        assert!(report.completions >= 1);
        assert_eq!(report.copied_bytes + report.zerocopy_bytes, len);
        // Local delivery copies the pinned fragments: the kernel says so for every send.
        assert_eq!(report.copied_bytes, len);
        (report, enobufs)
    }

    #[test]
    fn the_strategy_prepares_runs_and_finishes_over_loopback() {
        let len = 1u64 << 20;
        let lb = Loopback::new(len, Duration::ZERO);
        let report = {
            let mut t = MsgZerocopyStrategy.prepare(lb.cx(64 << 10)).unwrap();
            assert_eq!(t.run().unwrap(), len);
            t.finish().unwrap().expect("a zero-copy report")
        };
        lb.check_received();
        eprintln!("msg-zerocopy over loopback (1 MiB, 64 KiB chunks): {report:?}");
        assert_eq!(report.copied_bytes, len);
        assert_eq!(report.zerocopy_bytes, 0);
    }

    #[test]
    fn sends_a_file_over_loopback_and_reports_completions() {
        let (report, _) = transfer(1 << 20, 64 << 10, Duration::ZERO);
        eprintln!("msg-zerocopy over loopback (1 MiB, 64 KiB chunks): {report:?}");
        // Chunks that are not page multiples, and a last short one.
        transfer(300_000, 100_000, Duration::ZERO);
    }

    /// With a tiny net.core.optmem_max (per network namespace) and a receiver that reads late,
    /// send(MSG_ZEROCOPY) runs out of notification memory (ENOBUFS) and must wait for
    /// completions. Needs root (a network namespace of its own); skipped otherwise.
    #[test]
    fn enobufs_waits_for_completions_and_sends_the_rest() {
        let result = std::thread::spawn(|| {
            // Only this thread moves to the new namespace.
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                return Err(format!("unshare(CLONE_NEWNET): {e}"));
            }
            loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
            std::fs::write("/proc/sys/net/core/optmem_max", "2048")
                .map_err(|e| format!("setting net.core.optmem_max: {e}"))?;
            Ok(transfer(8 << 20, 16 << 10, Duration::from_millis(300)))
        })
        .join()
        .unwrap();
        match result {
            Ok((report, enobufs)) => {
                eprintln!("msg-zerocopy, optmem_max 2048: {report:?}, {enobufs} ENOBUFS waits");
                assert!(enobufs > 0, "expected send to hit ENOBUFS");
            }
            Err(why) => eprintln!("skipped: {why}"),
        }
    }

    /// ioctl(SIOCSIFFLAGS, IFF_UP) on `lo` of the calling thread's network namespace.
    fn loopback_up() -> io::Result<()> {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| {
            // No address is configured on a down `lo`, but binding the wildcard works anyway.
            std::net::UdpSocket::bind("[::]:0")
        })?;
        // SAFETY: an all-zero ifreq is valid; the name is NUL-terminated.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let fd = sock.as_raw_fd();
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
        unsafe {
            // `as _`: the request is an unsigned long in glibc and an int in musl.
            if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr) < 0 {
                return Err(io::Error::last_os_error());
            }
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
