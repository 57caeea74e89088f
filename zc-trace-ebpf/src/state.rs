//! Maps, configuration and the per-task filter shared by every hook family.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
};
use zc_trace_common::{
    role, Config, FdKey, FdStat, PendingCopy, RoleStats, TaskState, RECEIVER_SLOTS, URING_OP_SLOTS,
};

/// Counters per role, per CPU. Aggregated in the kernel, read by user space once per run.
#[map]
pub static STATS: PerCpuArray<RoleStats> = PerCpuArray::with_max_entries(role::COUNT, 0);

/// Tracked threads by tid. The receiver is inserted by user space; sender threads insert
/// themselves with the start marker (see `syscalls`). In trace mode user space inserts the
/// traced threads, `tasks` adds the ones they start and removes those that exit.
#[map]
pub static TASKS: HashMap<u32, TaskState> = HashMap::with_max_entries(8192, 0);

/// Trace mode: calls and bytes by syscall, side and kind of descriptor.
#[map]
pub static FDSTATS: PerCpuHashMap<FdKey, FdStat> = PerCpuHashMap::with_max_entries(2048, 0);

/// The ifindex of the device whose transmits are counted (a remote sink's route device that
/// reads frames by DMA); 0: none. Written by user space once the sink is set up.
#[map]
pub static DMA_DEV: Array<u32> = Array::with_max_entries(1, 0);

/// Trace mode: io_uring requests submitted by traced tasks, by opcode.
#[map]
pub static URING_OPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(URING_OP_SLOTS, 0);

/// The receiver processes' tgids (0: a free slot), written by user space as it tracks them.
/// With the sender's tgid (in CONFIG) they let a hook turn every other task on the host away
/// with a compare and a few array loads, before the TASKS hash lookup: the syscall, fault and
/// scheduler hooks run for every task, so this is the tax each of them pays.
#[map]
pub static RECEIVERS: Array<u32> = Array::with_max_entries(RECEIVER_SLOTS, 0);

/// Copies seen at a site's entry whose size arrives at its exit (kprobe/kretprobe, tp_btf and
/// sock_send_length), keyed by tid and site. LRU: an entry whose exit never came (a missed
/// kretprobe, a thread that died) is evicted instead of filling the map for good.
#[map]
pub static PENDING: LruHashMap<u64, PendingCopy> = LruHashMap::with_max_entries(4096, 0);

/// The sender's TCP sockets (struct sock addresses) and their role, recorded by the TCP send
/// hooks in process context, so that work done for them in any context (a softirq transmit)
/// is attributed by socket, never by whatever task happens to be current. Cleared by user
/// space after every run.
#[map]
pub static SOCKS: HashMap<u64, u32> = HashMap::with_max_entries(1024, 0);

/// Written by user space before load (read-only data section).
#[no_mangle]
static CONFIG: Config = Config::zeroed();

#[inline(always)]
pub fn config() -> &'static Config {
    // SAFETY: CONFIG lives for the program's lifetime. Reading its *address* volatilely keeps
    // the compiler from folding the zeroed initialiser into the code, so every field access is
    // a load from the data the loader patched, and nothing is copied onto the 512-byte stack.
    unsafe { &*core::ptr::read_volatile(&(&CONFIG as *const Config)) }
}

/// Records socket `sk` as `role`'s in SOCKS. Looked up first: sends call this on every
/// syscall, and a lookup costs far less than a hash map update.
#[inline(always)]
pub fn remember_socket(sk: u64, role: u32) {
    if unsafe { SOCKS.get(&sk) } != Some(&role) {
        let _ = SOCKS.insert(&sk, &role, 0);
    }
}

/// Whether the current task belongs to a process zc-trace traces (see RECEIVERS).
#[inline(always)]
pub fn traced_process() -> bool {
    // Trace mode follows processes that come and go: TASKS alone says who is traced.
    if config().tasks.follow != 0 {
        return true;
    }
    let tgid = current_tgid();
    if tgid == config().tasks.sender_tgid {
        return true;
    }
    if tgid == 0 {
        return false;
    }
    for i in 0..RECEIVER_SLOTS {
        if RECEIVERS.get(i) == Some(&tgid) {
            return true;
        }
    }
    false
}

/// The state of `tid` if it is tracked and its window is open. `tid` is the current task's
/// (sched_switch's prev is current too).
#[inline(always)]
pub fn active_task(tid: u32) -> Option<*mut TaskState> {
    if !traced_process() {
        return None;
    }
    tracked_task(tid)
}

/// `active_task` for a hook that has already asked `traced_process` (sys_enter, the classic
/// sched_switch): the hot path need not ask twice.
#[inline(always)]
pub fn tracked_task(tid: u32) -> Option<*mut TaskState> {
    let state = TASKS.get_ptr_mut(&tid)?;
    // SAFETY: the pointer comes from a successful map lookup and stays valid for this program run.
    if unsafe { (*state).active } == 0 {
        return None;
    }
    Some(state)
}

#[inline(always)]
pub fn stats(role: u32) -> Option<&'static mut RoleStats> {
    let ptr = STATS.get_ptr_mut(role)?;
    // SAFETY: per-CPU slot; BPF programs do not migrate between CPUs while running.
    Some(unsafe { &mut *ptr })
}

#[inline(always)]
pub fn add(role: u32, counter: usize, value: u64) {
    if let Some(stats) = stats(role) {
        if let Some(slot) = stats.counters.get_mut(counter) {
            *slot += value;
        }
    }
}

#[inline(always)]
pub fn current_tid() -> u32 {
    aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32
}
