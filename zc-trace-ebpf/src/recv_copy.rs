//! Receive-side copies: skb:skb_copy_datagram_iovec fires in skb_copy_datagram_iter(), which
//! copies `len` bytes of socket data into the reader's iov_iter. It runs in the reader's process
//! context (tcp_recvmsg), so the current tid identifies the reader.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use zc_trace_common::counter;

use crate::state;

#[tracepoint]
pub fn zc_skb_copy_datagram(ctx: TracePointContext) -> u32 {
    let Some(task) = state::active_task(state::current_tid()) else {
        return 0;
    };
    let cfg = state::config();
    let Ok(len) = (unsafe { ctx.read_at::<i32>(cfg.skb_copy_len_off as usize) }) else {
        return 0;
    };
    if len > 0 {
        let role = unsafe { (*task).role };
        state::add(role, counter::RECV_COPY_BYTES, len as u64);
        state::add(role, counter::RECV_COPY_CALLS, 1);
    }
    0
}
