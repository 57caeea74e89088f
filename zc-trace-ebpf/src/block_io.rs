//! Device I/O the traced task submits: block:block_bio_queue fires in submit_bio(), in the
//! submitter's context (a read()'s readahead, an O_DIRECT read), so the current task is the
//! right key here. On real hardware these bytes move by DMA; on virtio the host copies them.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use zc_trace_common::counter;

use crate::state;

#[tracepoint]
pub fn zc_bio_queue(ctx: TracePointContext) -> u32 {
    let Some(task) = state::active_task(state::current_tid()) else {
        return 0;
    };
    let cfg = state::config();
    let (Ok(sectors), Ok(op)) = (
        unsafe { ctx.read_at::<u32>(cfg.tp.bio_nr_sector_off as usize) },
        unsafe { ctx.read_at::<u8>(cfg.tp.bio_rwbs_off as usize) },
    ) else {
        return 0;
    };
    let role = unsafe { (*task).role };
    let bytes = sectors as u64 * 512;
    match op {
        b'R' => state::add(role, counter::DEVICE_READ_BYTES, bytes),
        b'W' => state::add(role, counter::DEVICE_WRITE_BYTES, bytes),
        _ => {}
    }
    0
}
