//! Trace mode's task family: the tasks a traced task starts are traced from their creation
//! (task:task_newtask fires in copy_process for every fork, clone and io_uring worker, in the
//! parent's context, before the child first runs), exiting tasks leave TASKS
//! (sched:sched_process_exit), a thread that execs takes its entry to the leader's pid it
//! inherits (sched:sched_process_exec), and io_uring requests are counted by opcode at submission
//! (io_uring:io_uring_submit_req, in the submitting task: the program's thread or its SQPOLL
//! thread, both traced). Nothing here runs in `zc-trace run` (`follow` is 0 there).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use zc_trace_common::{counter, task_flag, TaskState, NO_SYSCALL, URING_OP_SLOTS};

use crate::state::{self, TASKS, URING_OPS};

#[tracepoint]
pub fn zc_task_newtask(ctx: TracePointContext) -> u32 {
    let cfg = state::config();
    if cfg.tasks.follow == 0 {
        return 0;
    }
    let Some(parent) = TASKS.get_ptr(&state::current_tid()) else {
        return 0;
    };
    // SAFETY: pointer from a successful lookup.
    let parent = unsafe { &*parent };
    let flags = if parent.flags & task_flag::SPAWNER != 0 {
        task_flag::ARM_ON_EXEC
    } else if parent.active != 0 {
        0
    } else {
        return 0;
    };
    let Ok(child) = (unsafe { ctx.read_at::<i32>(cfg.tp.newtask_pid_off as usize) }) else {
        return 0;
    };
    // A counted child's first sys_exit is its return from the parent's fork or clone, which
    // is the parent's pending syscall (the child's registers are a copy of the parent's).
    let (flags, pending_nr) = if flags == 0 {
        (task_flag::FIRST_RETURN, parent.pending_nr)
    } else {
        (flags, NO_SYSCALL)
    };
    let state = TaskState {
        role: parent.role,
        active: u32::from(flags != task_flag::ARM_ON_EXEC),
        pending_nr,
        flags,
        ..TaskState::default()
    };
    let role = parent.role;
    let spawner = flags == task_flag::ARM_ON_EXEC;
    if TASKS.insert(&(child as u32), &state, 0).is_err() {
        // The map is full: the child goes uncounted, and the report says by how many tasks
        // it is incomplete (one warning per task flooded the log on large programs).
        state::add(role, counter::TASKS_NOT_FOLLOWED, 1);
    }
    if spawner {
        // zc-trace's spawning thread starts one task, the command: its mark goes now, not
        // when user space takes it away after spawn() returns, so the command's tasks have
        // the whole table whatever the timing (the command's threads raced that removal).
        let _ = TASKS.remove(&state::current_tid());
    }
    0
}

/// A thread other than the leader that calls execve ends every other thread and takes the
/// leader's pid (de_thread): the leader's entry left with its exit, so the exec'ing thread's
/// entry moves from its old tid to that pid. Without this, the new program went uncounted
/// and its old tid stayed in TASKS for good.
#[tracepoint]
pub fn zc_process_exec(ctx: TracePointContext) -> u32 {
    let cfg = state::config();
    if cfg.tasks.follow == 0 {
        return 0;
    }
    let Ok(pid) = (unsafe { ctx.read_at::<i32>(cfg.tp.exec_pid_off as usize) }) else {
        return 0;
    };
    let Ok(old_pid) = (unsafe { ctx.read_at::<i32>(cfg.tp.exec_old_pid_off as usize) }) else {
        return 0;
    };
    if pid == old_pid {
        return 0;
    }
    let Some(task) = TASKS.get_ptr(&(old_pid as u32)) else {
        return 0;
    };
    // SAFETY: pointer from a successful lookup; copied before the entry is removed.
    let task = unsafe { *task };
    if TASKS.insert(&(pid as u32), &task, 0).is_err() {
        state::add(task.role, counter::TASKS_NOT_FOLLOWED, 1);
    }
    let _ = TASKS.remove(&(old_pid as u32));
    0
}

#[tracepoint]
pub fn zc_process_exit(_ctx: TracePointContext) -> u32 {
    if state::config().tasks.follow == 0 {
        return 0;
    }
    // Runs in the exiting task; its counts are already in STATS.
    let _ = TASKS.remove(&state::current_tid());
    0
}

#[tracepoint]
pub fn zc_io_uring_submit(ctx: TracePointContext) -> u32 {
    if state::active_task(state::current_tid()).is_none() {
        return 0;
    }
    let cfg = state::config();
    let Ok(opcode) = (unsafe { ctx.read_at::<u8>(cfg.tp.uring_opcode_off as usize) }) else {
        return 0;
    };
    let slot = (opcode as u32).min(URING_OP_SLOTS - 1);
    if let Some(n) = URING_OPS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { *n += 1 };
    }
    0
}
