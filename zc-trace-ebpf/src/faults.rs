//! Page faults: exceptions:page_fault_user / page_fault_kernel (x86 tracepoints). A user-mode
//! fault is a full user->kernel->user round trip; a kernel-mode fault on a user address happens
//! inside a syscall (e.g. write() copying from a not-yet-mapped mmap page) and costs no extra
//! transition.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use zc_trace_common::counter;

use crate::state;

#[tracepoint]
pub fn zc_fault_user(_ctx: TracePointContext) -> u32 {
    if let Some(task) = state::active_task(state::current_tid()) {
        state::add(unsafe { (*task).role }, counter::FAULTS_USER_MODE, 1);
    }
    0
}

#[tracepoint]
pub fn zc_fault_kernel(ctx: TracePointContext) -> u32 {
    let Some(task) = state::active_task(state::current_tid()) else {
        return 0;
    };
    let cfg = state::config();
    let Ok(address) = (unsafe { ctx.read_at::<u64>(cfg.tp.fault_address_off as usize) }) else {
        return 0;
    };
    // Faults on kernel memory (vmalloc, etc.) are not the task's page faults.
    if address < cfg.values.user_address_limit {
        state::add(unsafe { (*task).role }, counter::FAULTS_KERNEL_MODE, 1);
    }
    0
}
