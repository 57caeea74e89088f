//! Reads of kernel memory at the offsets user space found in BTF (Config's `*_off` fields):
//! the one place for the pointer arithmetic and `bpf_probe_read_kernel` that the copy sites
//! and the syscall programs share.

use aya_ebpf::helpers::bpf_probe_read_kernel;

/// The `T` at byte `off` of the kernel object at `base`; None when the read fails (a null or
/// stale pointer: the helper checks the address, it never faults).
#[inline(always)]
pub fn at<T>(base: *const u8, off: u32) -> Option<T> {
    at_byte(base, off as usize)
}

/// The pointer at byte `off` of the kernel object at `base`.
#[inline(always)]
pub fn ptr(base: *const u8, off: u32) -> Option<*const u8> {
    at(base, off)
}

/// As [`at`], for an offset computed in the program (a header length, say).
#[inline(always)]
pub fn at_byte<T>(base: *const u8, off: usize) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel validates the address itself; the pointer is never
    // dereferenced here.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off) as *const T) }.ok()
}
