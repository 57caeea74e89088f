//! Socket sites: TCP sends (tcp_sendmsg_locked, and do_tcp_sendpages before 6.5), socket
//! receives (skb_copy_datagram_iter), UNIX stream sends.

use super::*;

// ---- tcp_sendmsg_locked(struct sock *sk, struct msghdr *msg, size_t size) -> int ----

/// The class of a TCP send, decided as tcp_sendmsg_locked decides it: on a route with
/// scatter-gather, spliced pages (MSG_SPLICE_PAGES), MSG_ZEROCOPY sends on a socket with
/// SOCK_ZEROCOPY, and messages carrying their own ubuf_info (io_uring SEND_ZC) keep their
/// pages by reference (user pages pinned, for the zero-copy sends); anything else is copied
/// from the message's iov_iter.
#[inline(always)]
fn tcp_send_class(sk: *const u8, msg: *const u8) -> Option<usize> {
    let cfg = state::config();
    if msg.is_null() || cfg.msghdr.flags_off == UNKNOWN || cfg.msghdr.iter_off == UNKNOWN {
        return None;
    }
    let flags: u32 = kread::at(msg, cfg.msghdr.flags_off)?;
    let spliced = cfg.values.msg_splice_pages != 0 && flags & cfg.values.msg_splice_pages != 0;
    let mut zerocopy = false;
    if cfg.values.msg_zerocopy != 0
        && flags & cfg.values.msg_zerocopy != 0
        && cfg.sock.flags_off != UNKNOWN
        && cfg.values.sock_zerocopy_bit < 64
    {
        let sk_flags: u64 = kread::at(sk, cfg.sock.flags_off)?;
        zerocopy = sk_flags & (1u64 << (cfg.values.sock_zerocopy_bit & 63)) != 0;
    }
    if cfg.msghdr.ubuf_off != UNKNOWN {
        let ubuf: u64 = kread::at(msg, cfg.msghdr.ubuf_off)?;
        zerocopy |= ubuf != 0;
    }
    if (spliced || zerocopy) && cfg.sock.route_caps_off != UNKNOWN {
        let caps: u64 = kread::at(sk, cfg.sock.route_caps_off)?;
        if caps & cfg.values.netif_f_sg != 0 {
            return Some(class::BY_REFERENCE);
        }
    }
    match memory(cfg, unsafe { msg.add(cfg.msghdr.iter_off as usize) })? {
        Memory::User => Some(class::USER_TO_KERNEL),
        _ => Some(class::KERNEL_TO_KERNEL),
    }
}

#[fexit(function = "tcp_sendmsg_locked")]
pub fn zc_tcp_send_fexit(ctx: FExitContext) -> i32 {
    let tid = state::current_tid();
    if state::active_task(tid).is_none() {
        return 0;
    }
    let sk: *const u8 = unsafe { ctx.arg(0) };
    let msg: *const u8 = unsafe { ctx.arg(1) };
    let ret: i64 = unsafe { ctx.arg::<i32>(3) } as i64;
    track_socket(tid, sk);
    if let Some(c) = tcp_send_class(sk, msg) {
        record(tid, site::TCP_SEND, c, ret);
    }
    0
}

#[kprobe]
pub fn zc_tcp_send_kprobe(ctx: ProbeContext) -> u32 {
    let tid = state::current_tid();
    let (Some(sk), Some(msg)) = (ctx.arg::<*const u8>(0), ctx.arg::<*const u8>(1)) else {
        return 0;
    };
    track_socket(tid, sk);
    if let Some(c) = tcp_send_class(sk, msg) {
        remember(tid, site::TCP_SEND, c, 0);
    }
    0
}

#[kretprobe]
pub fn zc_tcp_send_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i32 = ctx.ret().unwrap_or(0);
    complete(state::current_tid(), site::TCP_SEND, ret as i64);
    0
}

/// tcp:tcp_sendmsg_locked (6.16+) fires at each loop iteration of the send, before its copy;
/// the first one of a call remembers the class, sock:sock_send_length then supplies the bytes.
#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn zc_tcp_send_tp_btf(ctx: BtfTracePointContext) -> u32 {
    let tid = state::current_tid();
    let sk: *const u8 = unsafe { ctx.arg(0) };
    let msg: *const u8 = unsafe { ctx.arg(1) };
    track_socket(tid, sk);
    if let Some(c) = tcp_send_class(sk, msg) {
        remember_latest(tid, site::TCP_SEND, c);
    }
    0
}

/// sock:sock_send_length(sk, ret, flags): the end of every sock_sendmsg(), with its result.
#[tracepoint]
pub fn zc_sock_send_length(ctx: TracePointContext) -> u32 {
    let cfg = state::config();
    if let Ok(ret) = unsafe { ctx.read_at::<i32>(cfg.tp.sock_send_ret_off as usize) } {
        complete(state::current_tid(), site::TCP_SEND, ret as i64);
    }
    0
}

// ---- do_tcp_sendpages(sk, page, offset, size, flags) -> ssize_t (before 6.5) ----
// Only reached when the route has scatter-gather (tcp_sendpage_locked falls back to a copying
// sendmsg otherwise), so every byte it accepts is a page reference.

by_reference_site!(
    site::TCP_SENDPAGE,
    fexit = zc_tcp_sendpage_fexit => "do_tcp_sendpages",
    kretprobe = zc_tcp_sendpage_kretprobe,
);

// ---- skb_copy_datagram_iter(skb, offset, struct iov_iter *to, int len) -> int (0 or -EFAULT) ----

#[fexit(function = "skb_copy_datagram_iter")]
pub fn zc_sock_recv_fexit(ctx: FExitContext) -> i32 {
    let tid = state::current_tid();
    if state::active_task(tid).is_none() {
        return 0;
    }
    let iter: *const u8 = unsafe { ctx.arg(2) };
    let len: i32 = unsafe { ctx.arg(3) };
    let ret: i32 = unsafe { ctx.arg(4) };
    if ret == 0 {
        if let Some(c) = recv_class(iter) {
            record(tid, site::SOCK_RECV, c, len as i64);
        }
    }
    0
}

#[kprobe]
pub fn zc_sock_recv_kprobe(ctx: ProbeContext) -> u32 {
    let tid = state::current_tid();
    let (Some(iter), Some(len)) = (ctx.arg::<*const u8>(2), ctx.arg::<i32>(3)) else {
        return 0;
    };
    if let Some(c) = recv_class(iter) {
        // The return value is 0 on success: remember the length as a negative base.
        remember(tid, site::SOCK_RECV, c, -(len as i64));
    }
    0
}

#[kretprobe]
pub fn zc_sock_recv_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i32 = ctx.ret().unwrap_or(-1);
    let tid = state::current_tid();
    if ret == 0 {
        complete(tid, site::SOCK_RECV, 0);
    } else {
        let _ = take(tid, site::SOCK_RECV);
    }
    0
}

/// skb:skb_copy_datagram_iovec fires in skb_copy_datagram_iter() with `len`, in the reader's
/// process context (tcp_recvmsg). It does not carry the iov_iter type: the class is the one
/// every read()/recv() of a TCP socket has, kernel->user, and user space labels it so.
#[tracepoint]
pub fn zc_skb_copy_datagram(ctx: TracePointContext) -> u32 {
    let cfg = state::config();
    if let Ok(len) = unsafe { ctx.read_at::<i32>(cfg.tp.skb_copy_len_off as usize) } {
        record(
            state::current_tid(),
            site::SOCK_RECV,
            class::KERNEL_TO_USER,
            len as i64,
        );
    }
    0
}

// ---- unix_stream_sendmsg(struct socket *, struct msghdr *, size_t) -> int ----
// Spliced pages are appended by reference (MSG_SPLICE_PAGES, 6.5+); anything else is copied
// from the message's iov_iter into the skb.

#[inline(always)]
fn unix_send_class(msg: *const u8) -> Option<usize> {
    let cfg = state::config();
    if msg.is_null() || cfg.msghdr.flags_off == UNKNOWN || cfg.msghdr.iter_off == UNKNOWN {
        return None;
    }
    let flags: u32 = kread::at(msg, cfg.msghdr.flags_off)?;
    if cfg.values.msg_splice_pages != 0 && flags & cfg.values.msg_splice_pages != 0 {
        return Some(class::BY_REFERENCE);
    }
    match memory(cfg, unsafe { msg.add(cfg.msghdr.iter_off as usize) })? {
        Memory::User => Some(class::USER_TO_KERNEL),
        _ => Some(class::KERNEL_TO_KERNEL),
    }
}

#[fexit(function = "unix_stream_sendmsg")]
pub fn zc_unix_send_fexit(ctx: FExitContext) -> i32 {
    let tid = state::current_tid();
    if state::active_task(tid).is_none() {
        return 0;
    }
    let msg: *const u8 = unsafe { ctx.arg(1) };
    let ret: i64 = unsafe { ctx.arg::<i32>(3) } as i64;
    if let Some(c) = unix_send_class(msg) {
        record(tid, site::UNIX_SEND, c, ret);
    }
    0
}

#[kprobe]
pub fn zc_unix_send_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(msg) = ctx.arg::<*const u8>(1) {
        if let Some(c) = unix_send_class(msg) {
            remember(state::current_tid(), site::UNIX_SEND, c, 0);
        }
    }
    0
}

#[kretprobe]
pub fn zc_unix_send_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i32 = ctx.ret().unwrap_or(0);
    complete(state::current_tid(), site::UNIX_SEND, ret as i64);
    0
}

// ---- unix_stream_sendpage(struct socket *, struct page *, int, size_t, int) -> ssize_t ----
// Before 6.5, splice and sendfile reach a UNIX stream socket here: skb_append_pagefrags()
// takes a reference on each page, nothing is copied.

by_reference_site!(
    site::UNIX_SENDPAGE,
    fexit = zc_unix_sendpage_fexit => "unix_stream_sendpage",
    kretprobe = zc_unix_sendpage_kretprobe,
);
