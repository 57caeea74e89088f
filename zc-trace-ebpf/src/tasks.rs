//! Trace mode's task family: the tasks a traced task starts are traced from their creation
//! (task:task_newtask fires in copy_process for every fork, clone and io_uring worker, in the
//! parent's context, before the child first runs), exiting tasks leave TASKS
//! (sched:sched_process_exit), and io_uring requests are counted by opcode at submission
//! (io_uring:io_uring_submit_req, in the submitting task: the program's thread or its SQPOLL
//! thread, both traced). Nothing here runs in `zc-trace run` (`follow` is 0 there).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use zc_trace_common::{task_flag, TaskState, NO_SYSCALL, URING_OP_SLOTS};

use crate::state::{self, TASKS, URING_OPS};

#[tracepoint]
pub fn zc_task_newtask(ctx: TracePointContext) -> u32 {
    let cfg = state::config();
    if cfg.follow == 0 {
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
    let Ok(child) = (unsafe { ctx.read_at::<i32>(cfg.newtask_pid_off as usize) }) else {
        return 0;
    };
    let state = TaskState {
        role: parent.role,
        active: u32::from(flags == 0),
        pending_nr: NO_SYSCALL,
        flags,
        ..TaskState::default()
    };
    if let Err(e) = TASKS.insert(&(child as u32), &state, 0) {
        // The child goes uncounted: say so (user space also checks the map's fill).
        aya_log_ebpf::warn!(
            &ctx,
            "zc-trace: cannot follow new task {}: TASKS insert failed ({})",
            child,
            e
        );
    }
    0
}

#[tracepoint]
pub fn zc_process_exit(_ctx: TracePointContext) -> u32 {
    if state::config().follow == 0 {
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
    let Ok(opcode) = (unsafe { ctx.read_at::<u8>(cfg.uring_opcode_off as usize) }) else {
        return 0;
    };
    let slot = (opcode as u32).min(URING_OP_SLOTS - 1);
    if let Some(n) = URING_OPS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { *n += 1 };
    }
    0
}
