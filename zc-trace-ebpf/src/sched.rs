//! Context switches of tracked tasks, from sched_switch. Voluntary means the task blocked
//! (prev_state != TASK_RUNNING and not a preemption), matching the kernel's own nvcsw/nivcsw.
//! Two attach methods: tp_btf (gets `preempt` as an argument, no offsets) and the classic
//! tracepoint (offsets from tracefs); user space picks the first that works.

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use zc_trace_common::counter;

use crate::state;

#[btf_tracepoint(function = "sched_switch")]
pub fn zc_sched_switch_btf(ctx: BtfTracePointContext) -> u32 {
    // sched_switch runs on the outgoing task, so the current tid is `prev`.
    let Some(task) = state::active_task(state::current_tid()) else {
        return 0;
    };
    // TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
    //          unsigned int prev_state) -- prev_state since 5.18.
    let preempt: u64 = unsafe { ctx.arg(0) };
    let prev_state: u64 = unsafe { ctx.arg(3) };
    // Each argument fills a u64 slot; only its own width is the value.
    let voluntary = preempt as u8 == 0 && prev_state as u32 != 0;
    count(unsafe { (*task).role }, voluntary);
    0
}

#[tracepoint]
pub fn zc_sched_switch_tp(ctx: TracePointContext) -> u32 {
    // Every switch on the host passes here (prev is the current task).
    if !state::traced_process() {
        return 0;
    }
    let cfg = state::config();
    let Ok(prev_pid) = (unsafe { ctx.read_at::<i32>(cfg.tp.sched_prev_pid_off as usize) }) else {
        return 0;
    };
    let Some(task) = state::tracked_task(prev_pid as u32) else {
        return 0;
    };
    let Ok(prev_state) = (unsafe { ctx.read_at::<i64>(cfg.tp.sched_prev_state_off as usize) })
    else {
        return 0;
    };
    // The tracepoint reports a preemption as TASK_REPORT_MAX, whatever the task's state.
    let preempted = (prev_state as u64) & cfg.values.sched_preempt_state_bit != 0;
    count(unsafe { (*task).role }, prev_state != 0 && !preempted);
    0
}

#[inline(always)]
fn count(role: u32, voluntary: bool) {
    let c = if voluntary {
        counter::CSW_VOLUNTARY
    } else {
        counter::CSW_INVOLUNTARY
    };
    state::add(role, c, 1);
}
