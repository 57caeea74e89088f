//! Types shared by the eBPF programs (`zc-trace-ebpf`) and the loader (`zc-trace`).
//!
//! Everything here is `#[repr(C)]` and plain old data: the eBPF side writes these values into
//! maps and the user-space side reads the same bytes back. Changing a layout here requires
//! rebuilding the committed eBPF object (`cargo xtask build-ebpf`); CI refuses a stale object.
#![no_std]

/// Who a tracked task is. Counters are kept apart per role so that the receiver's work never
/// mixes with the sender's.
pub mod role {
    /// The sender thread, inside its measured window.
    pub const SENDER: u32 = 0;
    /// The receiver process (a separate process reading from the socket).
    pub const RECEIVER: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Indices into [`RoleStats::counters`].
pub mod counter {
    /// Kernel entries by system call (raw_syscalls:sys_enter).
    pub const SYSCALL_ENTERS: usize = 0;
    /// Returns to user space from a system call (raw_syscalls:sys_exit).
    pub const SYSCALL_EXITS: usize = 1;
    /// Page faults taken while the CPU was in user mode (each is a user->kernel->user round trip).
    pub const FAULTS_USER_MODE: usize = 2;
    /// Page faults on user addresses taken in kernel mode, e.g. inside copy_from_user().
    pub const FAULTS_KERNEL_MODE: usize = 3;
    /// Context switches where the task gave up the CPU (blocked or slept).
    pub const CSW_VOLUNTARY: usize = 4;
    /// Context switches where the task was preempted while runnable.
    pub const CSW_INVOLUNTARY: usize = 5;
    /// Bytes copied from socket buffers into the task's memory (skb_copy_datagram_iovec).
    pub const RECV_COPY_BYTES: usize = 6;
    /// Number of such copy operations.
    pub const RECV_COPY_CALLS: usize = 7;
    /// System calls whose number did not fit the per-syscall table.
    pub const SYSCALL_OUT_OF_TABLE: usize = 8;
    pub const COUNT: usize = 16;
}

/// Size of the per-syscall table; syscall numbers at or above it are counted in
/// [`counter::SYSCALL_OUT_OF_TABLE`].
pub const SYSCALL_SLOTS: usize = 512;

/// The sender brackets its measured window with `close(MARK_START)` and `close(MARK_STOP)`.
/// Both fail with EBADF (zc-trace never holds that many descriptors); the eBPF program at
/// raw_syscalls:sys_enter recognises them, opens or closes the window for the calling thread,
/// and does not count them. This makes the window exact without any user-space bookkeeping
/// syscall leaking into the counts.
pub const MARK_START: u64 = 0x7a63_7401;
pub const MARK_STOP: u64 = 0x7a63_7402;

/// Sentinel for "no syscall in flight" in [`TaskState::pending_nr`].
pub const NO_SYSCALL: i64 = -1;

/// Per-syscall counters, indexed by syscall number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallStat {
    pub enters: u64,
    pub exits: u64,
    /// Sum of positive return values (bytes, for read/write-like calls).
    pub ret_positive_sum: u64,
    /// Number of negative (error) returns.
    pub errors: u64,
}

/// Everything counted for one role, on one CPU. User space sums the per-CPU copies.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RoleStats {
    pub counters: [u64; counter::COUNT],
    pub syscalls: [SyscallStat; SYSCALL_SLOTS],
}

impl RoleStats {
    pub const fn zeroed() -> Self {
        RoleStats {
            counters: [0; counter::COUNT],
            syscalls: [SyscallStat {
                enters: 0,
                exits: 0,
                ret_positive_sum: 0,
                errors: 0,
            }; SYSCALL_SLOTS],
        }
    }
}

impl Default for RoleStats {
    fn default() -> Self {
        Self::zeroed()
    }
}

/// State of one tracked thread, keyed by its tid in the `TASKS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskState {
    pub role: u32,
    /// 1 while the task's work is being counted.
    pub active: u32,
    /// Syscall entered (and counted) but not yet returned, or [`NO_SYSCALL`].
    pub pending_nr: i64,
    /// bpf_ktime_get_ns() at the start and stop markers.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// Number of windows opened by this task (a sanity check for user space).
    pub windows: u64,
}

/// Run-time configuration, written by user space into the `CONFIG` global before loading.
///
/// Classic tracepoint field offsets differ between kernels, so user space reads them from
/// tracefs (`events/<group>/<event>/format`) instead of hard-coding them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// tgid whose threads may open a measured window with the markers.
    pub sender_tgid: u32,
    /// Syscall number of close(2) on this architecture.
    pub close_nr: u32,
    pub sys_enter_id_off: u32,
    pub sys_enter_args_off: u32,
    pub sys_exit_id_off: u32,
    pub sys_exit_ret_off: u32,
    pub sched_prev_pid_off: u32,
    pub sched_prev_state_off: u32,
    /// Bit set in sched_switch's prev_state when the switch was a preemption.
    pub sched_preempt_state_bit: u64,
    pub fault_address_off: u32,
    pub skb_copy_len_off: u32,
    /// Highest user-space address; faults above it are kernel faults on kernel memory.
    pub user_address_limit: u64,
}

impl Config {
    pub const fn zeroed() -> Self {
        Config {
            sender_tgid: 0,
            close_nr: 0,
            sys_enter_id_off: 0,
            sys_enter_args_off: 0,
            sys_exit_id_off: 0,
            sys_exit_ret_off: 0,
            sched_prev_pid_off: 0,
            sched_prev_state_off: 0,
            sched_preempt_state_bit: 0,
            fault_address_off: 0,
            skb_copy_len_off: 0,
            user_address_limit: 0,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) with only integer fields and no padding-sensitive
    // invariants; any bit pattern is a valid value.
    unsafe impl aya::Pod for super::SyscallStat {}
    unsafe impl aya::Pod for super::RoleStats {}
    unsafe impl aya::Pod for super::TaskState {}
    unsafe impl aya::Pod for super::Config {}
}

// The kernel refuses per-CPU map values above 32 KiB (PCPU_MIN_UNIT_SIZE).
const _: () = assert!(core::mem::size_of::<RoleStats>() <= 32 * 1024);
// close() takes an int: the markers must be positive ints, and far above any descriptor
// zc-trace holds (its RLIMIT_NOFILE is at most fs.nr_open, 2^20 by default).
const _: () = assert!(MARK_START > (1 << 30) && MARK_STOP > MARK_START);
const _: () = assert!(MARK_STOP < i32::MAX as u64);
