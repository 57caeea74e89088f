//! zc-trace's eBPF programs. One hook family per module; all of them count into the per-CPU
//! `STATS` map for tracked tasks only, so nothing per event ever reaches user space.
#![no_std]
#![no_main]

mod block_io;
mod copy_sites;
mod faults;
mod kread;
mod sched;
mod state;
mod syscalls;
mod tasks;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves the programs cannot reach this; it exists only to satisfy no_std.
    loop {}
}
