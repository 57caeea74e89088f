//! System calls: raw_syscalls:sys_enter / sys_exit (classic tracepoints, present on every kernel
//! zc-trace supports). Also owns the measured-window markers.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use zc_trace_common::{counter, role, TaskState, MARK_START, MARK_STOP, NO_SYSCALL, SYSCALL_SLOTS};

use crate::state::{self, TASKS};

#[tracepoint]
pub fn zc_sys_enter(ctx: TracePointContext) -> u32 {
    let _ = on_sys_enter(&ctx);
    0
}

#[tracepoint]
pub fn zc_sys_exit(ctx: TracePointContext) -> u32 {
    let _ = on_sys_exit(&ctx);
    0
}

fn on_sys_enter(ctx: &TracePointContext) -> Result<(), i64> {
    let cfg = state::config();
    let tid = state::current_tid();
    // SAFETY: offsets come from this kernel's tracefs format file.
    let nr: i64 = unsafe { ctx.read_at(cfg.sys_enter_id_off as usize)? };

    if nr == cfg.close_nr as i64 && state::current_tgid() == cfg.sender_tgid {
        let fd: u64 = unsafe { ctx.read_at(cfg.sys_enter_args_off as usize)? };
        if fd == MARK_START {
            if let Err(e) = open_window(tid) {
                // Rare and important: the window will be missing, and user space refuses the
                // run; this says why.
                aya_log_ebpf::warn!(
                    ctx,
                    "zc-trace: cannot track thread {}: TASKS insert failed ({})",
                    tid,
                    e
                );
            }
            return Ok(());
        }
        if fd == MARK_STOP {
            return close_window(tid);
        }
    }

    let Some(task) = state::active_task(tid) else {
        return Ok(());
    };
    // SAFETY: pointer from a successful lookup of this tid's entry.
    let task = unsafe { &mut *task };
    let Some(stats) = state::stats(task.role) else {
        return Ok(());
    };
    stats.counters[counter::SYSCALL_ENTERS] += 1;
    match slot(nr) {
        Some(i) => {
            if let Some(s) = stats.syscalls.get_mut(i) {
                s.enters += 1;
            }
        }
        None => stats.counters[counter::SYSCALL_OUT_OF_TABLE] += 1,
    }
    task.pending_nr = nr;
    task.pending_source = source_kind(ctx, &cfg, nr);
    Ok(())
}

/// For syscalls that read the source file (by descriptor number), which source counter their
/// return value feeds: a derived figure where the kernel's read path cannot be hooked.
#[inline(always)]
fn source_kind(ctx: &TracePointContext, cfg: &zc_trace_common::Config, nr: i64) -> u64 {
    if cfg.source_fd < 0 {
        return 0;
    }
    let nr = nr as u32;
    let (arg, kind) =
        if nr == cfg.read_nr || nr == cfg.pread_nr || nr == cfg.readv_nr || nr == cfg.preadv_nr {
            (0usize, counter::SOURCE_READ_BYTES as u64)
        } else if nr == cfg.sendfile_nr {
            (1, counter::SOURCE_SPLICE_BYTES as u64)
        } else if nr == cfg.splice_nr {
            (0, counter::SOURCE_SPLICE_BYTES as u64)
        } else {
            return 0;
        };
    match unsafe { ctx.read_at::<u64>(cfg.sys_enter_args_off as usize + 8 * arg) } {
        Ok(fd) if fd as i32 == cfg.source_fd => kind,
        _ => 0,
    }
}

fn on_sys_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let cfg = state::config();
    let Some(task) = state::active_task(state::current_tid()) else {
        return Ok(());
    };
    let task = unsafe { &mut *task };
    let nr: i64 = unsafe { ctx.read_at(cfg.sys_exit_id_off as usize)? };
    // Only count the exit of a syscall whose entry was counted: the start marker's own exit,
    // and exits of calls that began before the window, are not ours.
    if task.pending_nr != nr {
        return Ok(());
    }
    task.pending_nr = NO_SYSCALL;
    let ret: i64 = unsafe { ctx.read_at(cfg.sys_exit_ret_off as usize)? };
    let Some(stats) = state::stats(task.role) else {
        return Ok(());
    };
    stats.counters[counter::SYSCALL_EXITS] += 1;
    // Constant indices only: older verifiers (6.1, 6.12) reject a map-value index whose bound
    // was checked on a copy of the register.
    let source = task.pending_source;
    task.pending_source = 0;
    if ret > 0 {
        if source == counter::SOURCE_READ_BYTES as u64 {
            stats.counters[counter::SOURCE_READ_BYTES] += ret as u64;
        } else if source == counter::SOURCE_SPLICE_BYTES as u64 {
            stats.counters[counter::SOURCE_SPLICE_BYTES] += ret as u64;
        }
    }
    if let Some(i) = slot(nr) {
        if let Some(s) = stats.syscalls.get_mut(i) {
            s.exits += 1;
            if ret >= 0 {
                s.ret_positive_sum += ret as u64;
            } else {
                s.errors += 1;
            }
        }
    }
    Ok(())
}

fn open_window(tid: u32) -> Result<(), i64> {
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(task) = TASKS.get_ptr_mut(&tid) {
        let task = unsafe { &mut *task };
        task.active = 1;
        task.pending_nr = NO_SYSCALL;
        task.window_start_ns = now;
        task.window_end_ns = 0;
        task.windows += 1;
        task.pending_source = 0;
        return Ok(());
    }
    let fresh = TaskState {
        role: role::SENDER,
        active: 1,
        pending_nr: NO_SYSCALL,
        window_start_ns: now,
        window_end_ns: 0,
        windows: 1,
        pending_source: 0,
    };
    TASKS.insert(&tid, &fresh, 0)
}

fn close_window(tid: u32) -> Result<(), i64> {
    if let Some(task) = TASKS.get_ptr_mut(&tid) {
        let task = unsafe { &mut *task };
        task.active = 0;
        task.pending_nr = NO_SYSCALL;
        task.window_end_ns = unsafe { bpf_ktime_get_ns() };
    }
    Ok(())
}

#[inline(always)]
fn slot(nr: i64) -> Option<usize> {
    if nr >= 0 && (nr as usize) < SYSCALL_SLOTS {
        Some(nr as usize)
    } else {
        None
    }
}
