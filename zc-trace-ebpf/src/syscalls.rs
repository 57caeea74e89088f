//! System calls: raw_syscalls:sys_enter / sys_exit (classic tracepoints, present on every kernel
//! zc-trace supports). Also owns the measured-window markers.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
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
    task.pending_source = source_kind(ctx, cfg, nr);
    Ok(())
}

/// For read/write-family syscalls, sendfile, splice and copy_file_range: which derived-bytes
/// counters their return value feeds, by the type of file behind their descriptors. Packed:
/// the input side's counter in the low byte, the output side's in the next.
#[inline(always)]
fn source_kind(ctx: &TracePointContext, cfg: &zc_trace_common::Config, nr: i64) -> u64 {
    let nr = nr as u32;
    // (input descriptor argument, output descriptor argument, splices)
    let (input, output, splices) =
        if nr == cfg.read_nr || nr == cfg.pread_nr || nr == cfg.readv_nr || nr == cfg.preadv_nr {
            (Some(0usize), None, false)
        } else if nr == cfg.write_nr
            || nr == cfg.pwrite_nr
            || nr == cfg.writev_nr
            || nr == cfg.pwritev_nr
            || nr == cfg.sendto_nr
            || nr == cfg.sendmsg_nr
        {
            (None, Some(0usize), false)
        } else if nr == cfg.sendfile_nr {
            (Some(1), Some(0), true)
        } else if nr == cfg.splice_nr || nr == cfg.copy_file_range_nr {
            (Some(0), Some(2), true)
        } else {
            return 0;
        };
    let kind_of = |arg: Option<usize>| -> Option<u32> {
        let fd = unsafe { ctx.read_at::<u64>(cfg.sys_enter_args_off as usize + 8 * arg?) }.ok()?;
        file_mode(cfg, fd)
    };
    let in_kind = kind_of(input);
    let out_kind = kind_of(output);
    if nr == cfg.copy_file_range_nr {
        return if in_kind == Some(S_IFREG) && out_kind == Some(S_IFREG) {
            counter::UNCLASSIFIED_BYTES as u64
        } else {
            0
        };
    }
    let low = match (in_kind, splices) {
        (Some(S_IFREG), false) => counter::READ_REGULAR_BYTES,
        (Some(S_IFREG), true) => counter::SPLICE_FROM_REGULAR_BYTES,
        (Some(S_IFIFO), false) => counter::READ_PIPE_BYTES,
        _ => 0,
    };
    let high = match (out_kind, splices) {
        (Some(S_IFREG), false) => counter::WRITE_REGULAR_BYTES,
        (Some(S_IFREG), true) => counter::SPLICE_TO_REGULAR_BYTES,
        (Some(S_IFIFO), false) => counter::WRITE_PIPE_BYTES,
        (Some(S_IFSOCK), false) => counter::SEND_SOCKET_BYTES,
        (Some(S_IFSOCK), true) => counter::SPLICE_TO_SOCKET_BYTES,
        _ => 0,
    };
    (low as u64) | ((high as u64) << 8)
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

/// The file type (S_IFMT bits of i_mode) behind descriptor `fd` of the current task:
/// current->files->fdt->fd[fd]->f_inode->i_mode, with offsets from BTF. None for O_DIRECT
/// files, whose data moves by DMA to and from user pages without a CPU copy, except on tmpfs,
/// which has no direct I/O and copies all the same.
#[inline(always)]
fn file_mode(cfg: &zc_trace_common::Config, fd: u64) -> Option<u32> {
    if cfg.task_files_off == zc_trace_common::UNKNOWN
        || cfg.inode_mode_off == zc_trace_common::UNKNOWN
    {
        return None;
    }
    let read_ptr = |base: *const u8, off: u32| -> Option<*const u8> {
        unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const *const u8) }.ok()
    };
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files = read_ptr(task, cfg.task_files_off)?;
    let fdt = read_ptr(files, cfg.files_fdt_off)?;
    let max: u32 =
        unsafe { bpf_probe_read_kernel(fdt.add(cfg.fdt_max_fds_off as usize) as *const u32) }
            .ok()?;
    if fd >= max as u64 {
        return None;
    }
    let array = read_ptr(fdt, cfg.fdt_fd_off)?;
    let file = read_ptr(array, (fd * 8) as u32)?;
    let flags: u32 =
        unsafe { bpf_probe_read_kernel(file.add(cfg.file_flags_off as usize) as *const u32) }
            .ok()?;
    let inode = read_ptr(file, cfg.file_inode_off)?;
    if flags & cfg.o_direct != 0 && !on_tmpfs(cfg, inode) {
        return None;
    }
    let mode: u16 =
        unsafe { bpf_probe_read_kernel(inode.add(cfg.inode_mode_off as usize) as *const u16) }
            .ok()?;
    Some(mode as u32 & S_IFMT)
}

/// Whether the inode's filesystem is tmpfs (super_block.s_magic).
#[inline(always)]
fn on_tmpfs(cfg: &zc_trace_common::Config, inode: *const u8) -> bool {
    if cfg.inode_sb_off == zc_trace_common::UNKNOWN || cfg.sb_magic_off == zc_trace_common::UNKNOWN
    {
        return false;
    }
    let sb =
        unsafe { bpf_probe_read_kernel(inode.add(cfg.inode_sb_off as usize) as *const *const u8) };
    let Ok(sb) = sb else { return false };
    let magic = unsafe { bpf_probe_read_kernel(sb.add(cfg.sb_magic_off as usize) as *const u64) };
    magic.is_ok_and(|m| m == zc_trace_common::TMPFS_MAGIC)
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
    // Masked index: older verifiers (6.1, 6.12) reject a map-value index whose bound was
    // checked on a copy of the register; the mask bounds the very register (COUNT is 32).
    let source = task.pending_source;
    task.pending_source = 0;
    if ret > 0 {
        let low = source & 0xff;
        let high = (source >> 8) & 0xff;
        if low != 0 {
            stats.counters[(low & 31) as usize] += ret as u64;
        }
        if high != 0 {
            stats.counters[(high & 31) as usize] += ret as u64;
        }
    }
    if let Some(i) = slot(nr) {
        if let Some(s) = stats.syscalls.get_mut(i) {
            s.exits += 1;
            if ret > 0 {
                s.ret_positive_sum += ret as u64;
            } else if ret == 0 {
                s.zero_returns += 1;
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
