//! Copy sites: where payload bytes are copied by the CPU or handed on by page reference.
//!
//! The copy primitives in lib/ cannot be hooked on distro kernels, so each site is one of their
//! callers in mm/ and net/. The class of every copy comes from what the kernel says at the site
//! (the iov_iter type, MSG_SPLICE_PAGES, the route's scatter-gather capability), read with
//! offsets that user space resolved from this kernel's BTF; never from the strategy's name.
//! Each site has several programs (fexit; kprobe + kretprobe; tp_btf or tracepoint where the
//! kernel has one) and user space attaches exactly one of them, so a copy is counted once.

use aya_ebpf::{
    helpers::bpf_get_func_ret,
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext,
        TracePointContext,
    },
    EbpfContext,
};
use zc_trace_common::{class, counter, pending_key, site, Config, PendingCopy, UNKNOWN};

use crate::kread;
use crate::state::{self, PENDING, SOCKS};

// One macro per site shape. A loaded fexit program is bound to one kernel function, so each
// function gets its own program; the shape's logic lives in the inline helpers they call.

/// A site that copies between an iov_iter (second argument) and kernel pages and returns the
/// bytes: an fexit program per function name, and one kprobe/kretprobe pair for all of them.
macro_rules! iter_copy_site {
    (
        $site:expr,
        $classify:expr,
        fexit = [$($fexit:ident => $function:tt),+ $(,)?],
        kprobe = $kprobe:ident,
        kretprobe = $kretprobe:ident $(,)?
    ) => {
        $(
            #[fexit(function = $function)]
            pub fn $fexit(ctx: FExitContext) -> i32 {
                fexit_iter_copy(&ctx, $site, $classify);
                0
            }
        )+

        #[kprobe]
        pub fn $kprobe(ctx: ProbeContext) -> u32 {
            kprobe_iter_copy(&ctx, $site, $classify);
            0
        }

        #[kretprobe]
        pub fn $kretprobe(ctx: RetProbeContext) -> u32 {
            complete(state::current_tid(), $site, ctx.ret().unwrap_or(0));
            0
        }
    };
}

/// A site whose every returned byte is a page reference (splice into a pipe, sendpage): an fexit
/// program and a kretprobe, both counting the return value.
macro_rules! by_reference_site {
    (
        $site:expr,
        fexit = $fexit:ident => $function:tt,
        kretprobe = $kretprobe:ident $(,)?
    ) => {
        #[fexit(function = $function)]
        pub fn $fexit(ctx: FExitContext) -> i32 {
            if let Some(ret) = func_ret(&ctx) {
                record(state::current_tid(), $site, class::BY_REFERENCE, ret);
            }
            0
        }

        #[kretprobe]
        pub fn $kretprobe(ctx: RetProbeContext) -> u32 {
            let ret: i64 = ctx.ret().unwrap_or(0);
            record(state::current_tid(), $site, class::BY_REFERENCE, ret);
            0
        }
    };
}

/// Remembers a socket the (active) sender sends on; see `SOCKS`.
#[inline(always)]
fn track_socket(tid: u32, sk: *const u8) {
    if let Some(task) = state::active_task(tid) {
        let role = unsafe { (*task).role };
        state::remember_socket(sk as u64, role);
    }
}

/// What an iov_iter's type says about the memory behind it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Memory {
    User,
    Kernel,
    /// 6.1's ITER_PIPE: the "copy" installs page references into a pipe.
    PipePages,
    /// ITER_DISCARD: nothing is copied.
    Discard,
}

#[inline(always)]
fn memory(cfg: &Config, iter: *const u8) -> Option<Memory> {
    if iter.is_null() || cfg.iov_iter_type_off == UNKNOWN {
        return None;
    }
    let t = kread::at::<u8>(iter, cfg.iov_iter_type_off)? as u32;
    Some(if t == cfg.iter_ubuf || t == cfg.iter_iovec {
        Memory::User
    } else if t == cfg.iter_pipe {
        Memory::PipePages
    } else if t == cfg.iter_discard {
        Memory::Discard
    } else {
        Memory::Kernel
    })
}

#[inline(always)]
fn record(tid: u32, site_id: usize, class_id: usize, bytes: i64) {
    if bytes <= 0 {
        return;
    }
    let Some(task) = state::active_task(tid) else {
        return;
    };
    let Some(stats) = state::stats(unsafe { (*task).role }) else {
        return;
    };
    if let Some(row) = stats.copies.get_mut(site_id) {
        if let Some(c) = row.get_mut(class_id) {
            *c += bytes as u64;
        }
    }
    if let Some(calls) = stats.site_calls.get_mut(site_id) {
        *calls += 1;
    }
}

/// A site's entry (kprobe): remembers the class until its exit. A call of the same site nested
/// in one already pending on this thread (recursion, or a path back into the same function)
/// only deepens the outer entry, so the inner call neither overwrites the outer one's class and
/// base nor counts its bytes twice: the outermost exit counts them all.
#[inline(always)]
fn remember(tid: u32, site_id: usize, class_id: usize, base: i64) {
    if state::active_task(tid).is_none() {
        return;
    }
    let key = pending_key(tid, site_id);
    if let Some(p) = PENDING.get_ptr_mut(&key) {
        unsafe { (*p).depth += 1 };
        return;
    }
    let pending = PendingCopy {
        class: class_id as u32,
        depth: 0,
        base,
    };
    let _ = PENDING.insert(&key, &pending, 0);
}

/// For a hook that fires several times within one call (tp_btf tcp_sendmsg_locked fires at
/// every loop iteration, with the same class) and has no exit of its own to pair with: each
/// firing replaces the entry, so one left behind by a call whose end was not seen cannot
/// classify a later call.
#[inline(always)]
fn remember_latest(tid: u32, site_id: usize, class_id: usize) {
    if state::active_task(tid).is_none() {
        return;
    }
    let pending = PendingCopy {
        class: class_id as u32,
        depth: 0,
        base: 0,
    };
    let _ = PENDING.insert(&pending_key(tid, site_id), &pending, 0);
}

/// A site's exit: the pending entry if this is the outermost call, else one level less.
#[inline(always)]
fn take(tid: u32, site_id: usize) -> Option<PendingCopy> {
    let key = pending_key(tid, site_id);
    let p = PENDING.get_ptr_mut(&key)?;
    unsafe {
        if (*p).depth > 0 {
            (*p).depth -= 1;
            return None;
        }
    }
    let pending = unsafe { *p };
    let _ = PENDING.remove(&key);
    Some(pending)
}

#[inline(always)]
fn complete(tid: u32, site_id: usize, ret: i64) {
    if let Some(p) = take(tid, site_id) {
        // Masked, not compared: the verifier must see the bound on the very register that
        // indexes the map value.
        record(tid, site_id, class::index(p.class as u64), ret - p.base);
    }
}

// ---- tcp_sendmsg_locked(struct sock *sk, struct msghdr *msg, size_t size) -> int ----

/// The class of a TCP send, decided as tcp_sendmsg_locked decides it: on a route with
/// scatter-gather, spliced pages (MSG_SPLICE_PAGES), MSG_ZEROCOPY sends on a socket with
/// SOCK_ZEROCOPY, and messages carrying their own ubuf_info (io_uring SEND_ZC) keep their
/// pages by reference (user pages pinned, for the zero-copy sends); anything else is copied
/// from the message's iov_iter.
#[inline(always)]
fn tcp_send_class(sk: *const u8, msg: *const u8) -> Option<usize> {
    let cfg = state::config();
    if msg.is_null() || cfg.msghdr_flags_off == UNKNOWN || cfg.msghdr_iter_off == UNKNOWN {
        return None;
    }
    let flags: u32 = kread::at(msg, cfg.msghdr_flags_off)?;
    let spliced = cfg.msg_splice_pages != 0 && flags & cfg.msg_splice_pages != 0;
    let mut zerocopy = false;
    if cfg.msg_zerocopy != 0
        && flags & cfg.msg_zerocopy != 0
        && cfg.sock_flags_off != UNKNOWN
        && cfg.sock_zerocopy_bit < 64
    {
        let sk_flags: u64 = kread::at(sk, cfg.sock_flags_off)?;
        zerocopy = sk_flags & (1u64 << (cfg.sock_zerocopy_bit & 63)) != 0;
    }
    if cfg.msghdr_ubuf_off != UNKNOWN {
        let ubuf: u64 = kread::at(msg, cfg.msghdr_ubuf_off)?;
        zerocopy |= ubuf != 0;
    }
    if (spliced || zerocopy) && cfg.sock_route_caps_off != UNKNOWN {
        let caps: u64 = kread::at(sk, cfg.sock_route_caps_off)?;
        if caps & cfg.netif_f_sg != 0 {
            return Some(class::BY_REFERENCE);
        }
    }
    match memory(cfg, unsafe { msg.add(cfg.msghdr_iter_off as usize) })? {
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
    if let Ok(ret) = unsafe { ctx.read_at::<i32>(cfg.sock_send_ret_off as usize) } {
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

// ---- filemap_read(struct kiocb *, struct iov_iter *, ssize_t already_read) -> ssize_t ----

#[inline(always)]
fn file_read_class(iter: *const u8) -> Option<usize> {
    match memory(state::config(), iter)? {
        Memory::User => Some(class::KERNEL_TO_USER),
        Memory::Kernel => Some(class::KERNEL_TO_KERNEL),
        Memory::PipePages => Some(class::BY_REFERENCE),
        Memory::Discard => None,
    }
}

#[fexit(function = "filemap_read")]
pub fn zc_file_read_fexit(ctx: FExitContext) -> i32 {
    let tid = state::current_tid();
    if state::active_task(tid).is_none() {
        return 0;
    }
    let iter: *const u8 = unsafe { ctx.arg(1) };
    let already: i64 = unsafe { ctx.arg(2) };
    let ret: i64 = unsafe { ctx.arg(3) };
    if let Some(c) = file_read_class(iter) {
        record(tid, site::FILE_READ, c, ret - already);
    }
    0
}

#[kprobe]
pub fn zc_file_read_kprobe(ctx: ProbeContext) -> u32 {
    let tid = state::current_tid();
    let (Some(iter), Some(already)) = (ctx.arg::<*const u8>(1), ctx.arg::<i64>(2)) else {
        return 0;
    };
    if let Some(c) = file_read_class(iter) {
        remember(tid, site::FILE_READ, c, already);
    }
    0
}

#[kretprobe]
pub fn zc_file_read_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret().unwrap_or(0);
    complete(state::current_tid(), site::FILE_READ, ret);
    0
}

// ---- filemap_splice_read(in, ppos, pipe, len, flags) -> ssize_t (6.5+): page references ----

by_reference_site!(
    site::FILE_SPLICE_READ,
    fexit = zc_file_splice_read_fexit => "filemap_splice_read",
    kretprobe = zc_file_splice_read_kretprobe,
);

// ---- skb_copy_datagram_iter(skb, offset, struct iov_iter *to, int len) -> int (0 or -EFAULT) ----

#[inline(always)]
fn recv_class(iter: *const u8) -> Option<usize> {
    match memory(state::config(), iter)? {
        Memory::User => Some(class::KERNEL_TO_USER),
        Memory::Discard | Memory::PipePages => None,
        Memory::Kernel => Some(class::KERNEL_TO_KERNEL),
    }
}

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
    if let Ok(len) = unsafe { ctx.read_at::<i32>(cfg.skb_copy_len_off as usize) } {
        record(
            state::current_tid(),
            site::SOCK_RECV,
            class::KERNEL_TO_USER,
            len as i64,
        );
    }
    0
}

// ---- pipe_write / anon_pipe_write (6.15+) (struct kiocb *, struct iov_iter *from) -> ssize_t ----
// ---- pipe_read / anon_pipe_read (struct kiocb *, struct iov_iter *to) -> ssize_t ----
// ---- generic_perform_write(struct kiocb *, struct iov_iter *) -> ssize_t ----
// All three copy between the iov_iter and kernel pages; the iter says whose memory it is.
// A loaded fexit program is bound to one function, hence one program per name.

#[inline(always)]
fn from_iter_class(iter: *const u8) -> Option<usize> {
    match memory(state::config(), iter)? {
        Memory::User => Some(class::USER_TO_KERNEL),
        Memory::Kernel => Some(class::KERNEL_TO_KERNEL),
        Memory::PipePages | Memory::Discard => None,
    }
}

/// An iov_iter copy site's fexit: the iter is the second argument, the return value the bytes
/// (from bpf_get_func_ret, whatever the number of arguments).
#[inline(always)]
fn fexit_iter_copy(ctx: &FExitContext, site_id: usize, classify: fn(*const u8) -> Option<usize>) {
    let tid = state::current_tid();
    if state::active_task(tid).is_none() {
        return;
    }
    let iter: *const u8 = unsafe { ctx.arg(1) };
    if let (Some(c), Some(ret)) = (classify(iter), func_ret(ctx)) {
        record(tid, site_id, c, ret);
    }
}

#[inline(always)]
fn kprobe_iter_copy(ctx: &ProbeContext, site_id: usize, classify: fn(*const u8) -> Option<usize>) {
    if let Some(iter) = ctx.arg::<*const u8>(1) {
        if let Some(c) = classify(iter) {
            remember(state::current_tid(), site_id, c, 0);
        }
    }
}

iter_copy_site!(
    site::PIPE_WRITE,
    from_iter_class,
    fexit = [
        zc_pipe_write_fexit => "pipe_write",
        zc_anon_pipe_write_fexit => "anon_pipe_write",
    ],
    kprobe = zc_pipe_write_kprobe,
    kretprobe = zc_pipe_write_kretprobe,
);

iter_copy_site!(
    site::PIPE_READ,
    recv_class,
    fexit = [
        zc_pipe_read_fexit => "pipe_read",
        zc_anon_pipe_read_fexit => "anon_pipe_read",
    ],
    kprobe = zc_pipe_read_kprobe,
    kretprobe = zc_pipe_read_kretprobe,
);

iter_copy_site!(
    site::FILE_WRITE,
    from_iter_class,
    fexit = [zc_file_write_fexit => "generic_perform_write"],
    kprobe = zc_file_write_kprobe,
    kretprobe = zc_file_write_kretprobe,
);

// ---- net:net_dev_start_xmit: frames leaving a device ----
// Attributed by the frame's socket (SOCKS), not by the current task: transmits also happen in
// softirq context. TCP keeps payload in page fragments (its route caps always include SG,
// software GSO); payload in a frame's linear part was copied there by segmentation or
// linearization because the device lacks scatter-gather.

#[tracepoint]
pub fn zc_net_xmit(ctx: TracePointContext) -> u32 {
    let _ = on_net_xmit(&ctx);
    0
}

#[inline(always)]
fn on_net_xmit(ctx: &TracePointContext) -> Option<()> {
    let cfg = state::config();
    if cfg.skb_sk_off == UNKNOWN || cfg.skb_data_off == UNKNOWN {
        return None;
    }
    let skb: *const u8 = unsafe { ctx.read_at(cfg.xmit_skbaddr_off as usize) }.ok()?;
    let sk: u64 = kread::at(skb, cfg.skb_sk_off)?;
    let role = *unsafe { SOCKS.get(&sk) }?;
    let linear_payload = linear_payload(ctx, cfg, skb);
    if linear_payload > 0 {
        let stats = state::stats(role)?;
        stats.copies[site::NIC_LINEARIZE][class::KERNEL_TO_KERNEL] += linear_payload as u64;
        stats.site_calls[site::NIC_LINEARIZE] += 1;
    }
    Some(())
}

/// The TCP payload in the linear part of the frame at net_dev_start_xmit (its length less the
/// part in fragments, less the headers up to the end of the TCP header); -1 when unknown.
/// A plain value, not an Option: the verifier rejects the undefined payload LLVM may read
/// from a None.
#[inline(always)]
fn linear_payload(ctx: &TracePointContext, cfg: &Config, skb: *const u8) -> i64 {
    let valid: u8 = unsafe { ctx.read_at(cfg.xmit_transport_valid_off as usize) }.unwrap_or(0);
    if valid == 0 {
        return -1;
    }
    let (Ok(len), Ok(data_len), Ok(transport)) = (
        unsafe { ctx.read_at::<u32>(cfg.xmit_len_off as usize) },
        unsafe { ctx.read_at::<u32>(cfg.xmit_data_len_off as usize) },
        unsafe { ctx.read_at::<i32>(cfg.xmit_transport_off as usize) },
    ) else {
        return -1;
    };
    let Some(data) = kread::ptr(skb, cfg.skb_data_off) else {
        return -1;
    };
    // TCP data offset: the high nibble of byte 12 of the header, in 32-bit words.
    let Some(doff) = kread::at_byte::<u8>(data, transport as usize + 12) else {
        return -1;
    };
    let headers = transport as i64 + ((doff >> 4) as i64) * 4;
    (len as i64 - data_len as i64) - headers
}

// ---- the transmit of a device that reads frames by DMA ----
// net:net_dev_start_xmit fires as each frame is handed to a device's driver. For the device
// of a remote sink's route (DMA_DEV), the payload of the sender's frames is what the device
// reads from memory: the linear part (written by the CPU) and the page fragments (read in
// place; with scatter-gather and sendfile/splice, page-cache pages). Loopback and veth hand
// the buffers on by reference instead: DMA_DEV is 0 for them.

/// tp_btf: a raw tracepoint's program runs even when the transmit interrupts (in softirq)
/// another eBPF program on the same CPU, where a classic tracepoint's is skipped (the
/// kernel's per-CPU bpf_prog_active): under load that lost whole TSO frames.
#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn zc_nic_tx_btf(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(const struct sk_buff *skb, const struct net_device *dev)
    let skb: *const u8 = unsafe { ctx.arg(0) };
    let dev: *const u8 = unsafe { ctx.arg(1) };
    let _ = on_nic_tx_btf(skb, dev);
    0
}

#[inline(always)]
fn on_nic_tx_btf(skb: *const u8, dev: *const u8) -> Option<()> {
    let cfg = state::config();
    let wanted = *crate::state::DMA_DEV.get(0)?;
    if wanted == 0 || cfg.netdev_ifindex_off == UNKNOWN {
        return None;
    }
    let ifindex: u32 = kread::at(dev, cfg.netdev_ifindex_off)?;
    if ifindex != wanted {
        return None;
    }
    let role = skb_role(cfg, skb)?;
    let frags = skb_frags(cfg, skb);
    if frags < 0 {
        return None;
    }
    count_nic_tx(role, skb_linear_payload(cfg, skb), frags as u32)
}

/// sk_buff.data_len: the bytes in page fragments; -1 when unknown.
#[inline(always)]
fn skb_frags(cfg: &Config, skb: *const u8) -> i64 {
    if cfg.skb_data_len_off == UNKNOWN {
        return -1;
    }
    kread::at::<u32>(skb, cfg.skb_data_len_off).map_or(-1, |v| v as i64)
}

/// `linear_payload` from the skb itself (tp_btf has no tracefs fields): its length less the
/// fragments, less the headers up to the end of the TCP header; -1 when unknown.
#[inline(always)]
fn skb_linear_payload(cfg: &Config, skb: *const u8) -> i64 {
    if cfg.skb_len_off == UNKNOWN
        || cfg.skb_head_off == UNKNOWN
        || cfg.skb_transport_header_off == UNKNOWN
        || cfg.skb_data_off == UNKNOWN
    {
        return -1;
    }
    let frags = skb_frags(cfg, skb);
    let Some(len) = kread::at::<u32>(skb, cfg.skb_len_off) else {
        return -1;
    };
    let head = kread::ptr(skb, cfg.skb_head_off).unwrap_or(core::ptr::null());
    let data = kread::ptr(skb, cfg.skb_data_off).unwrap_or(core::ptr::null());
    let Some(th) = kread::at::<u16>(skb, cfg.skb_transport_header_off) else {
        return -1;
    };
    // (u16)~0: no transport header set.
    if head.is_null() || data.is_null() || frags < 0 || th == u16::MAX {
        return -1;
    }
    let tcp = unsafe { head.add(th as usize) };
    let Some(doff) = kread::at::<u8>(tcp, 12) else {
        return -1;
    };
    let headers = (tcp as i64 - data as i64) + ((doff >> 4) as i64) * 4;
    (len as i64 - frags) - headers
}

/// nic_linearize at the raw tracepoint: the linear payload of each frame of the sender's
/// sockets leaving any device (see `zc_net_xmit`).
#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn zc_net_xmit_btf(ctx: BtfTracePointContext) -> u32 {
    let skb: *const u8 = unsafe { ctx.arg(0) };
    let cfg = state::config();
    let Some(role) = skb_role(cfg, skb) else {
        return 0;
    };
    let linear = skb_linear_payload(cfg, skb);
    if linear > 0 {
        let _ = add_linearized(role, linear as u64);
    }
    0
}

/// The classic tracepoint, where tp_btf cannot attach.
#[tracepoint]
pub fn zc_nic_tx(ctx: TracePointContext) -> u32 {
    let _ = on_nic_tx(&ctx);
    0
}

#[inline(always)]
fn on_nic_tx(ctx: &TracePointContext) -> Option<()> {
    let cfg = state::config();
    let wanted = *crate::state::DMA_DEV.get(0)?;
    if wanted == 0
        || cfg.skb_dev_off == UNKNOWN
        || cfg.netdev_ifindex_off == UNKNOWN
        || cfg.skb_sk_off == UNKNOWN
        || cfg.skb_data_off == UNKNOWN
    {
        return None;
    }
    let skb: *const u8 = unsafe { ctx.read_at(cfg.xmit_skbaddr_off as usize) }.ok()?;
    let dev: *const u8 = kread::ptr(skb, cfg.skb_dev_off)?;
    let ifindex: i32 = kread::at(dev, cfg.netdev_ifindex_off)?;
    if ifindex as u32 != wanted {
        return None;
    }
    let role = skb_role(cfg, skb)?;
    let frags: u32 = unsafe { ctx.read_at(cfg.xmit_data_len_off as usize) }.ok()?;
    count_nic_tx(role, linear_payload(ctx, cfg, skb), frags)
}

#[inline(always)]
fn count_nic_tx(role: u32, linear: i64, frags: u32) -> Option<()> {
    let stats = state::stats(role)?;
    if linear > 0 {
        stats.counters[counter::NIC_TX_LINEAR_BYTES] += linear as u64;
    }
    stats.counters[counter::NIC_TX_FRAG_BYTES] += frags as u64;
    Some(())
}

// ---- segmentation and linearization for a device without scatter-gather ----
// A device without NETIF_F_SG takes no page fragments, so validate_xmit_skb makes the CPU
// copy them: a GSO skb is segmented in software (skb_segment copies every payload byte into
// each segment's linear area: at its entry the skb's data is the payload, headers pulled), a
// one-segment skb is linearized (__skb_linearize, inline, calls __pskb_pull_tail, which
// copies `delta` bytes of fragments). Counted where the copy happens, by the skb's socket:
// transmits also run in softirq context. A retransmitted segment is copied again, and counted.

/// The role of the traced socket that owns `skb`, if any.
#[inline(always)]
fn skb_role(cfg: &Config, skb: *const u8) -> Option<u32> {
    if skb.is_null() || cfg.skb_sk_off == UNKNOWN {
        return None;
    }
    let sk: u64 = kread::at(skb, cfg.skb_sk_off)?;
    unsafe { SOCKS.get(&sk) }.copied()
}

#[inline(always)]
fn add_linearized(role: u32, bytes: u64) -> Option<()> {
    let stats = state::stats(role)?;
    stats.copies[site::NIC_LINEARIZE][class::KERNEL_TO_KERNEL] += bytes;
    stats.site_calls[site::NIC_LINEARIZE] += 1;
    Some(())
}

/// skb_segment(head_skb, features): without NETIF_F_SG every byte of head_skb is copied.
#[inline(always)]
fn on_segment(skb: *const u8, features: u64) -> Option<()> {
    let cfg = state::config();
    if cfg.netif_f_sg == 0 || features & cfg.netif_f_sg != 0 || cfg.skb_len_off == UNKNOWN {
        return None;
    }
    let role = skb_role(cfg, skb)?;
    let len: u32 = kread::at(skb, cfg.skb_len_off)?;
    add_linearized(role, len as u64)
}

#[fentry(function = "skb_segment")]
pub fn zc_skb_segment_fentry(ctx: FEntryContext) -> i32 {
    let skb: *const u8 = unsafe { ctx.arg(0) };
    let features: u64 = unsafe { ctx.arg(1) };
    let _ = on_segment(skb, features);
    0
}

#[kprobe]
pub fn zc_skb_segment_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(skb), Some(features)) = (ctx.arg::<*const u8>(0), ctx.arg::<u64>(1)) {
        let _ = on_segment(skb, features);
    }
    0
}

/// __pskb_pull_tail(skb, delta) -> new tail or NULL: `delta` bytes of fragments copied into
/// the linear area (all of them when __skb_linearize calls it).
#[inline(always)]
fn on_pull_tail(skb: *const u8, delta: i32) -> Option<()> {
    if delta <= 0 {
        return None;
    }
    add_linearized(skb_role(state::config(), skb)?, delta as u64)
}

#[fexit(function = "__pskb_pull_tail")]
pub fn zc_pskb_pull_tail_fexit(ctx: FExitContext) -> i32 {
    let skb: *const u8 = unsafe { ctx.arg(0) };
    let delta: i32 = unsafe { ctx.arg(1) };
    let tail: *const u8 = unsafe { ctx.arg(2) };
    if !tail.is_null() {
        let _ = on_pull_tail(skb, delta);
    }
    0
}

/// Counted at entry: the kprobe cannot see the result (a failed pull, ENOMEM, is rare).
#[kprobe]
pub fn zc_pskb_pull_tail_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(skb), Some(delta)) = (ctx.arg::<*const u8>(0), ctx.arg::<i32>(1)) {
        let _ = on_pull_tail(skb, delta);
    }
    0
}

// ---- unix_stream_sendmsg(struct socket *, struct msghdr *, size_t) -> int ----
// Spliced pages are appended by reference (MSG_SPLICE_PAGES, 6.5+); anything else is copied
// from the message's iov_iter into the skb.

#[inline(always)]
fn unix_send_class(msg: *const u8) -> Option<usize> {
    let cfg = state::config();
    if msg.is_null() || cfg.msghdr_flags_off == UNKNOWN || cfg.msghdr_iter_off == UNKNOWN {
        return None;
    }
    let flags: u32 = kread::at(msg, cfg.msghdr_flags_off)?;
    if cfg.msg_splice_pages != 0 && flags & cfg.msg_splice_pages != 0 {
        return Some(class::BY_REFERENCE);
    }
    match memory(cfg, unsafe { msg.add(cfg.msghdr_iter_off as usize) })? {
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

// ---- Filesystem paths that bypass filemap_read / generic_perform_write ----
// shmem_file_read_iter(struct kiocb *, struct iov_iter *to) -> ssize_t (tmpfs reads);
// shmem_file_splice_read(in, ppos, pipe, len, flags) -> ssize_t (6.5+, pages by reference);
// iomap_file_buffered_write(struct kiocb *, struct iov_iter *, ops, ...) -> ssize_t (xfs; its
// trailing arguments changed between versions); btrfs_buffered_write(struct kiocb *,
// struct iov_iter *) -> ssize_t. The return value comes from bpf_get_func_ret, which knows the
// prototype, so no argument slot is assumed for it.

/// The return value of the traced function (fexit), whatever its number of arguments.
#[inline(always)]
fn func_ret(ctx: &FExitContext) -> Option<i64> {
    let mut ret: u64 = 0;
    let rc = unsafe { bpf_get_func_ret(ctx.as_ptr(), &mut ret) };
    (rc == 0).then_some(ret as i64)
}

iter_copy_site!(
    site::SHMEM_READ,
    file_read_class,
    fexit = [zc_shmem_read_fexit => "shmem_file_read_iter"],
    kprobe = zc_shmem_read_kprobe,
    kretprobe = zc_shmem_read_kretprobe,
);

by_reference_site!(
    site::SHMEM_SPLICE_READ,
    fexit = zc_shmem_splice_read_fexit => "shmem_file_splice_read",
    kretprobe = zc_shmem_splice_read_kretprobe,
);

iter_copy_site!(
    site::IOMAP_WRITE,
    from_iter_class,
    fexit = [zc_iomap_write_fexit => "iomap_file_buffered_write"],
    kprobe = zc_iomap_write_kprobe,
    kretprobe = zc_iomap_write_kretprobe,
);

iter_copy_site!(
    site::BTRFS_WRITE,
    from_iter_class,
    fexit = [zc_btrfs_write_fexit => "btrfs_buffered_write"],
    kprobe = zc_btrfs_write_kprobe,
    kretprobe = zc_btrfs_write_kretprobe,
);

// ---- unix_stream_sendpage(struct socket *, struct page *, int, size_t, int) -> ssize_t ----
// Before 6.5, splice and sendfile reach a UNIX stream socket here: skb_append_pagefrags()
// takes a reference on each page, nothing is copied.

by_reference_site!(
    site::UNIX_SENDPAGE,
    fexit = zc_unix_sendpage_fexit => "unix_stream_sendpage",
    kretprobe = zc_unix_sendpage_kretprobe,
);
