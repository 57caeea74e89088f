//! Copy sites: where payload bytes are copied by the CPU or handed on by page reference.
//!
//! The copy primitives in lib/ cannot be hooked on distro kernels, so each site is one of their
//! callers in mm/ and net/. The class of every copy comes from what the kernel says at the site
//! (the iov_iter type, MSG_SPLICE_PAGES, the route's scatter-gather capability), read with
//! offsets that user space resolved from this kernel's BTF; never from the strategy's name.
//! Each site has several programs (fexit; kprobe + kretprobe; tp_btf or tracepoint where the
//! kernel has one) and user space attaches exactly one of them, so a copy is counted once.
//!
//! One module per family: `file` (the page cache and the filesystems that bypass it),
//! `pipe`, `sock` (TCP and UNIX sends, socket receives), `nic` (frames leaving a device: what
//! it reads by DMA, and the CPU copies of segmentation and linearization for a device without
//! scatter-gather); `classify` says what an iov_iter's memory is. Here: the site shapes (the
//! macros) and the per-thread pending-copy bookkeeping they share.

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
use classify::{file_read_class, from_iter_class, memory, recv_class, Memory};

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

/// The return value of the traced function (fexit), whatever its number of arguments.
#[inline(always)]
fn func_ret(ctx: &FExitContext) -> Option<i64> {
    let mut ret: u64 = 0;
    let rc = unsafe { bpf_get_func_ret(ctx.as_ptr(), &mut ret) };
    (rc == 0).then_some(ret as i64)
}

// After the macros: a macro_rules! is visible only below its definition.
mod classify;
mod file;
mod nic;
mod pipe;
mod sock;
