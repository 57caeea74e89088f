//! System calls: raw_syscalls:sys_enter / sys_exit (classic tracepoints, present on every kernel
//! zc-trace supports). Also owns the measured-window markers.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use zc_trace_common::{
    counter, family, fd_kind, fd_side, role, task_flag, FdKey, FdStat, TaskState, MARK_START,
    MARK_STOP, NO_SYSCALL, SYSCALL_SLOTS,
};

use crate::kread;
use crate::state::{self, FDSTATS, TASKS};

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
    // Every task on the host passes here: turn the untraced away before reading anything.
    if !state::traced_process() {
        return Ok(());
    }
    let cfg = state::config();
    let tid = state::current_tid();
    // SAFETY: offsets come from this kernel's tracefs format file.
    let nr: i64 = unsafe { ctx.read_at(cfg.tp.sys_enter_id_off as usize)? };

    // The number is bounded once, and the family and the per-syscall counter both use that
    // one slot. (6.1 accepts these bounds only because the object is built for BPF ISA v2:
    // with v1, LLVM writes `nr < 512` as `512 > nr` on a register, a compare 6.1's verifier
    // cannot decide, and it followed the impossible branch into the index; see
    // zc-trace-ebpf/.cargo/config.toml.)
    let slot = slot(nr);
    let fam = family_at(cfg, slot);
    if fam == family::CLOSE && state::current_tgid() == cfg.tasks.sender_tgid {
        let fd: u64 = unsafe { ctx.read_at(cfg.tp.sys_enter_args_off as usize)? };
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

    let task = match state::tracked_task(tid) {
        Some(task) => task,
        None if cfg.tasks.follow != 0 => match armed_by_exec(tid, fam) {
            Some(task) => task,
            None => return Ok(()),
        },
        None => return Ok(()),
    };
    // SAFETY: pointer from a successful lookup of this tid's entry.
    let task = unsafe { &mut *task };
    let Some(stats) = state::stats(task.role) else {
        return Ok(());
    };
    // A task entering the kernel is past its first return (a task that never made one, say
    // one started by a fork whose exit was not traced, must not count its next exit as one).
    if task.flags & task_flag::FIRST_RETURN != 0 {
        task.flags &= !task_flag::FIRST_RETURN;
    }
    stats.counters[counter::SYSCALL_ENTERS] += 1;
    match slot {
        Some(i) => {
            if let Some(s) = stats.syscalls.get_mut(i) {
                s.enters += 1;
            }
        }
        None => stats.counters[counter::SYSCALL_OUT_OF_TABLE] += 1,
    }
    task.pending_nr = nr;
    task.pending_in = 0;
    task.pending_out = 0;
    task.pending_source = source_kind(ctx, cfg, fam, task);
    Ok(())
}

/// Trace mode: a task started by zc-trace for the command, counted from its first execve on
/// (the fork's own set-up before it is zc-trace's code, not the command's).
#[inline(always)]
fn armed_by_exec(tid: u32, fam: u8) -> Option<*mut TaskState> {
    let task = TASKS.get_ptr_mut(&tid)?;
    // SAFETY: pointer from a successful lookup.
    let t = unsafe { &mut *task };
    if t.flags & task_flag::ARM_ON_EXEC == 0 || fam != family::EXEC {
        return None;
    }
    t.flags &= !task_flag::ARM_ON_EXEC;
    t.active = 1;
    t.window_start_ns = unsafe { bpf_ktime_get_ns() };
    Some(task)
}

/// For read/write-family syscalls, sendfile, splice and copy_file_range: which derived-bytes
/// counters their return value feeds, by the type of file behind their descriptors. Packed:
/// the input side's counter in the low byte, the output side's in the next. In trace mode it
/// also records both descriptors' classes in `task` for the breakdown by descriptor kind.
#[inline(always)]
fn source_kind(
    ctx: &TracePointContext,
    cfg: &zc_trace_common::Config,
    fam: u8,
    task: &mut TaskState,
) -> u64 {
    let role = task.role;
    // (input descriptor argument, output descriptor argument, splices)
    let (input, output, splices) = match fam {
        family::READ | family::RECEIVE => (Some(0usize), None, false),
        family::WRITE => (None, Some(0usize), false),
        family::SENDFILE => (Some(1), Some(0), true),
        family::SPLICE | family::COPY_FILE_RANGE => (Some(0), Some(2), true),
        _ => return 0,
    };
    // Plain values (0: none), not Options: the verifier rejects the undefined payload LLVM
    // may read from a None.
    let fd_of = |arg: Option<usize>| -> u64 {
        match arg {
            Some(a) => unsafe { ctx.read_at::<u64>(cfg.tp.sys_enter_args_off as usize + 8 * a) }
                .unwrap_or(NO_FD),
            None => NO_FD,
        }
    };
    let in_fd = fd_of(input);
    let mut in_kind = file_mode(cfg, in_fd);
    let out_fd = fd_of(output);
    let mut out_kind = file_mode(cfg, out_fd);
    if cfg.tasks.follow != 0 {
        // A traced program uses any file: keep the counters (and the ledger) to the files
        // and sockets whose copy sites zc-trace hooks; the breakdown keeps the rest.
        if in_fd != NO_FD {
            task.pending_in = fd_class(cfg, file_at(cfg, in_fd));
            in_kind = hooked_kind(cfg, in_kind, task.pending_in);
        }
        if out_fd != NO_FD {
            task.pending_out = fd_class(cfg, file_at(cfg, out_fd));
            out_kind = hooked_kind(cfg, out_kind, task.pending_out);
        }
    }
    // recvfrom/recvmsg feed only the breakdown.
    if fam == family::RECEIVE {
        return 0;
    }
    // A socket the sender sends on is known from here on: frames leave the device inside
    // this very call (or later, in softirq context) and are attributed by their socket.
    if out_kind == S_IFSOCK {
        track_socket_of_file(cfg, file_at(cfg, out_fd), role);
    }
    if fam == family::COPY_FILE_RANGE {
        return if in_kind == S_IFREG && out_kind == S_IFREG {
            counter::UNCLASSIFIED_BYTES as u64
        } else {
            0
        };
    }
    let low = match (in_kind, splices) {
        (S_IFREG, false) => counter::READ_REGULAR_BYTES,
        (S_IFREG, true) => counter::SPLICE_FROM_REGULAR_BYTES,
        (S_IFIFO, false) => counter::READ_PIPE_BYTES,
        _ => 0,
    };
    let high = match (out_kind, splices) {
        (S_IFREG, false) => counter::WRITE_REGULAR_BYTES,
        (S_IFREG, true) => counter::SPLICE_TO_REGULAR_BYTES,
        (S_IFIFO, false) => counter::WRITE_PIPE_BYTES,
        (S_IFSOCK, false) => counter::SEND_SOCKET_BYTES,
        (S_IFSOCK, true) => counter::SPLICE_TO_SOCKET_BYTES,
        (S_IFIFO, true) if fam == family::SENDFILE => counter::SENDFILE_TO_PIPE_BYTES,
        _ => 0,
    };
    counter::pack_sources(low, high)
}

/// No descriptor (an argument that is not one): beyond every descriptor table.
const NO_FD: u64 = u64::MAX;
/// "No file type known": no S_IFMT value is 0.
const NO_KIND: u32 = 0;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;
const S_IFCHR: u32 = 0o020000;

/// file->private_data (a struct socket) ->sk, remembered in SOCKS with the caller's role.
#[inline(always)]
fn track_socket_of_file(cfg: &zc_trace_common::Config, file: *const u8, role: u32) {
    if file.is_null()
        || cfg.file.file_private_data_off == zc_trace_common::UNKNOWN
        || cfg.file.socket_sk_off == zc_trace_common::UNKNOWN
    {
        return;
    }
    let Some(sock) = kread::ptr(file, cfg.file.file_private_data_off) else {
        return;
    };
    if let Some(sk) = kread::ptr(sock, cfg.file.socket_sk_off) {
        if !sk.is_null() {
            crate::state::remember_socket(sk as u64, role);
        }
    }
}

/// The file behind descriptor `fd` of the current task (current->files->fdt->fd[fd], offsets
/// from BTF), or null. A plain pointer, not an Option: the verifier rejects the undefined
/// payload LLVM may read from a None.
#[inline(always)]
fn file_at(cfg: &zc_trace_common::Config, fd: u64) -> *const u8 {
    let none = core::ptr::null();
    if cfg.file.task_files_off == zc_trace_common::UNKNOWN {
        return none;
    }
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let Some(files) = kread::ptr(task, cfg.file.task_files_off) else {
        return none;
    };
    let Some(fdt) = kread::ptr(files, cfg.file.files_fdt_off) else {
        return none;
    };
    let max = kread::at::<u32>(fdt, cfg.file.fdt_max_fds_off);
    match max {
        Some(max) if fd < max as u64 => {}
        _ => return none,
    }
    let Some(array) = kread::ptr(fdt, cfg.file.fdt_fd_off) else {
        return none;
    };
    kread::ptr(array, (fd * 8) as u32).unwrap_or(none)
}

/// The file type (S_IFMT bits of i_mode) behind descriptor `fd` of the current task:
/// file->f_inode->i_mode, with offsets from BTF; NO_KIND when unknown, and for O_DIRECT
/// files, whose data moves by DMA to and from user pages without a CPU copy, except on tmpfs,
/// which has no direct I/O and copies all the same.
#[inline(always)]
fn file_mode(cfg: &zc_trace_common::Config, fd: u64) -> u32 {
    file_mode_of(cfg, file_at(cfg, fd)).unwrap_or(NO_KIND)
}

#[inline(always)]
fn file_mode_of(cfg: &zc_trace_common::Config, file: *const u8) -> Option<u32> {
    if file.is_null() || cfg.file.inode_mode_off == zc_trace_common::UNKNOWN {
        return None;
    }
    let flags: u32 = kread::at(file, cfg.file.file_flags_off)?;
    let inode: *const u8 = kread::ptr(file, cfg.file.file_inode_off)?;
    if flags & cfg.values.o_direct != 0 && !on_tmpfs(cfg, inode) {
        return None;
    }
    let mode: u16 = kread::at(inode, cfg.file.inode_mode_off)?;
    Some(mode as u32 & S_IFMT)
}

/// A descriptor's class for the trace breakdown: an `fd_kind` in the low 32 bits and, for a
/// regular file, its filesystem's magic in the high 32; 0 when unknown.
#[inline(always)]
fn fd_class(cfg: &zc_trace_common::Config, file: *const u8) -> u64 {
    if file.is_null() || cfg.file.inode_mode_off == zc_trace_common::UNKNOWN {
        return 0;
    }
    let inode = kread::ptr(file, cfg.file.file_inode_off).unwrap_or(core::ptr::null());
    if inode.is_null() {
        return 0;
    }
    let Some(mode) = kread::at::<u16>(inode, cfg.file.inode_mode_off) else {
        return 0;
    };
    match mode as u32 & S_IFMT {
        S_IFREG => {
            let flags: u32 = kread::at(file, cfg.file.file_flags_off).unwrap_or(0);
            let kind = if flags & cfg.values.o_direct != 0 {
                fd_kind::REGULAR_DIRECT
            } else {
                fd_kind::REGULAR
            };
            (kind as u64) | ((fs_magic(cfg, inode) as u64) << 32)
        }
        S_IFIFO => fd_kind::PIPE as u64,
        S_IFCHR => fd_kind::CHAR_DEVICE as u64,
        S_IFSOCK => socket_kind(cfg, file) as u64,
        _ => fd_kind::OTHER as u64,
    }
}

/// `kind` (a file type), or NO_KIND where the descriptor's class has no hooked copy site:
/// regular files of pseudo filesystems, sockets other than TCP and UNIX stream.
#[inline(always)]
fn hooked_kind(cfg: &zc_trace_common::Config, kind: u32, class: u64) -> u32 {
    let fd = class as u32;
    let magic = (class >> 32) as u32;
    if kind == S_IFSOCK && fd != fd_kind::TCP && fd != fd_kind::UNIX {
        return NO_KIND;
    }
    if kind == S_IFREG && magic != 0 {
        for m in cfg.pseudo_fs_magics {
            if m == 0 {
                break;
            }
            if m == magic {
                return NO_KIND;
            }
        }
    }
    kind
}

/// TCP, UDP, UNIX or another socket: file->private_data (struct socket)->sk's family and
/// protocol.
#[inline(always)]
fn socket_kind(cfg: &zc_trace_common::Config, file: *const u8) -> u32 {
    const AF_UNIX: u16 = 1;
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    const IPPROTO_TCP: u16 = 6;
    const IPPROTO_UDP: u16 = 17;
    const IPPROTO_UDPLITE: u16 = 136;
    if cfg.file.file_private_data_off == zc_trace_common::UNKNOWN
        || cfg.file.socket_sk_off == zc_trace_common::UNKNOWN
        || cfg.sock.family_off == zc_trace_common::UNKNOWN
        || cfg.sock.protocol_off == zc_trace_common::UNKNOWN
    {
        return fd_kind::OTHER_SOCKET;
    }
    let sock = kread::ptr(file, cfg.file.file_private_data_off).unwrap_or(core::ptr::null());
    if sock.is_null() {
        return fd_kind::OTHER_SOCKET;
    }
    let sk = kread::ptr(sock, cfg.file.socket_sk_off).unwrap_or(core::ptr::null());
    if sk.is_null() {
        return fd_kind::OTHER_SOCKET;
    }
    let read_u16 = |off: u32| -> u16 { kread::at::<u16>(sk, off).unwrap_or(0) };
    let family = read_u16(cfg.sock.family_off);
    if family == AF_UNIX {
        // Only stream sockets go through unix_stream_sendmsg, the UNIX copy site.
        const SOCK_STREAM: u16 = 1;
        if cfg.sock.type_off != zc_trace_common::UNKNOWN
            && read_u16(cfg.sock.type_off) == SOCK_STREAM
        {
            return fd_kind::UNIX;
        }
        return fd_kind::OTHER_SOCKET;
    }
    if family != AF_INET && family != AF_INET6 {
        return fd_kind::OTHER_SOCKET;
    }
    match read_u16(cfg.sock.protocol_off) {
        IPPROTO_TCP => fd_kind::TCP,
        IPPROTO_UDP | IPPROTO_UDPLITE => fd_kind::UDP,
        _ => fd_kind::OTHER_SOCKET,
    }
}

/// The low 32 bits of the inode's super_block.s_magic; 0 when unknown.
#[inline(always)]
fn fs_magic(cfg: &zc_trace_common::Config, inode: *const u8) -> u32 {
    if cfg.file.inode_sb_off == zc_trace_common::UNKNOWN
        || cfg.file.sb_magic_off == zc_trace_common::UNKNOWN
    {
        return 0;
    }
    let sb = kread::ptr(inode, cfg.file.inode_sb_off);
    let Some(sb) = sb else { return 0 };
    let magic = kread::at::<u64>(sb, cfg.file.sb_magic_off);
    magic.map_or(0, |m| m as u32)
}

/// Whether the inode's filesystem is tmpfs (super_block.s_magic).
#[inline(always)]
fn on_tmpfs(cfg: &zc_trace_common::Config, inode: *const u8) -> bool {
    if cfg.file.inode_sb_off == zc_trace_common::UNKNOWN
        || cfg.file.sb_magic_off == zc_trace_common::UNKNOWN
    {
        return false;
    }
    let sb = kread::ptr(inode, cfg.file.inode_sb_off);
    let Some(sb) = sb else { return false };
    let magic = kread::at::<u64>(sb, cfg.file.sb_magic_off);
    magic.is_some_and(|m| m == zc_trace_common::TMPFS_MAGIC)
}

fn on_sys_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let cfg = state::config();
    let Some(task) = state::active_task(state::current_tid()) else {
        return Ok(());
    };
    let task = unsafe { &mut *task };
    let mut nr: i64 = unsafe { ctx.read_at(cfg.tp.sys_exit_id_off as usize)? };
    // rt_sigreturn returns with the syscall forgotten (id -1): it is still the return of the
    // call whose entry was counted.
    if nr == -1 && family_at(cfg, slot(task.pending_nr)) == family::RT_SIGRETURN {
        nr = task.pending_nr;
    }
    // Only count the exit of a syscall whose entry was counted: the start marker's own exit,
    // and exits of calls that began before the window, are not ours.
    if task.pending_nr != nr {
        return Ok(());
    }
    task.pending_nr = NO_SYSCALL;
    let Some(stats) = state::stats(task.role) else {
        return Ok(());
    };
    if task.flags & task_flag::FIRST_RETURN != 0 {
        // A new task's first return to user space: a transition, not a call of its own.
        task.flags &= !task_flag::FIRST_RETURN;
        stats.counters[counter::FIRST_RETURNS] += 1;
        return Ok(());
    }
    let ret: i64 = unsafe { ctx.read_at(cfg.tp.sys_exit_ret_off as usize)? };
    stats.counters[counter::SYSCALL_EXITS] += 1;
    // Masked index: older verifiers (6.1, 6.12) reject a map-value index whose bound was
    // checked on a copy of the register; the mask bounds the very register (COUNT is 32).
    let source = task.pending_source;
    task.pending_source = 0;
    if ret > 0 {
        let (input, output) = counter::unpack_sources(source);
        if input != 0 {
            stats.counters[counter::index(input as u64)] += ret as u64;
        }
        if output != 0 {
            stats.counters[counter::index(output as u64)] += ret as u64;
        }
    }
    if cfg.tasks.follow != 0 {
        let bytes = if ret > 0 { ret as u64 } else { 0 };
        let (fd_in, fd_out) = (task.pending_in, task.pending_out);
        task.pending_in = 0;
        task.pending_out = 0;
        if fd_in != 0 {
            count_fd(FdKey::unpack(nr as u32, fd_side::INPUT, fd_in), bytes);
        }
        if fd_out != 0 {
            count_fd(FdKey::unpack(nr as u32, fd_side::OUTPUT, fd_out), bytes);
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

/// One more call, and its bytes, in the trace breakdown by descriptor kind.
#[inline(always)]
fn count_fd(key: FdKey, bytes: u64) {
    if let Some(v) = FDSTATS.get_ptr_mut(&key) {
        // SAFETY: per-CPU value from a successful lookup.
        let v = unsafe { &mut *v };
        v.calls += 1;
        v.bytes += bytes;
    } else {
        let _ = FDSTATS.insert(&key, &FdStat { calls: 1, bytes }, 0);
    }
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
        ..TaskState::default()
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

/// The family of the syscall in `slot` (see [`slot`]), from the table user space wrote;
/// other beyond the table.
#[inline(always)]
fn family_at(cfg: &zc_trace_common::Config, slot: Option<usize>) -> u8 {
    match slot {
        Some(i) => cfg
            .syscall_families
            .get(i)
            .copied()
            .unwrap_or(family::OTHER),
        None => family::OTHER,
    }
}

#[inline(always)]
fn slot(nr: i64) -> Option<usize> {
    if nr >= 0 && (nr as usize) < SYSCALL_SLOTS {
        Some(nr as usize)
    } else {
        None
    }
}
