//! Types shared by the eBPF programs (`zc-trace-ebpf`) and the loader (`zc-trace`).
//!
//! Everything here is `#[repr(C)]` and plain old data: the eBPF side writes these values into
//! maps and the user-space side reads the same bytes back. Changing a layout here requires
//! rebuilding the committed eBPF object (`cargo xtask build-ebpf`); CI refuses a stale object.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "filesystems")]
pub mod filesystems;

/// Who a tracked task is. Counters are kept apart per role so that the receiver's work never
/// mixes with the sender's.
pub mod role {
    /// The sender thread, inside its measured window.
    pub const SENDER: u32 = super::Role::Sender as u32;
    /// The receiver process (a separate process reading from the socket).
    pub const RECEIVER: u32 = super::Role::Receiver as u32;
    pub const COUNT: u32 = 2;
}

/// The role of a tracked task, typed: user space passes and reads roles as this; the maps and
/// the eBPF programs hold its number (`role::*`, the index of its STATS entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Role {
    Sender = 0,
    Receiver = 1,
}

impl Role {
    /// Its number in the maps.
    pub const fn id(self) -> u32 {
        self as u32
    }
}

/// What the programs do with a system call, by its family. User space writes one for every
/// syscall number into [`Config::syscall_families`] from its one table (zc-trace's
/// `kernel/syscalls.rs`, by name, for the architecture it was built for); the programs read
/// it by the number they see, and the report reads the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SyscallFamily {
    /// None the programs treat apart.
    Other = 0,
    /// Data from the descriptor in argument 0 into user memory (read, pread64, readv, ...).
    Read = 1,
    /// Data from user memory to the descriptor in argument 0 (write, ..., sendto, sendmsg).
    Write = 2,
    /// From the socket in argument 0 into user memory (recvfrom, recvmsg): only the
    /// breakdown by descriptor kind counts them.
    Receive = 3,
    /// sendfile: from the descriptor in argument 1 to the one in argument 0, in the kernel.
    Sendfile = 4,
    /// splice: from the descriptor in argument 0 to the one in argument 2, in the kernel.
    Splice = 5,
    /// copy_file_range: like splice, but only file to file counts.
    CopyFileRange = 6,
    /// close: the measured window's markers.
    Close = 7,
    /// execve, execveat: a traced command is counted from its first one.
    Exec = 8,
    /// rt_sigreturn: its sys_exit carries id -1 (the kernel forgets the syscall so that the
    /// restored registers are not restarted as one), matched to the pending entry.
    RtSigreturn = 9,
}

impl SyscallFamily {
    /// Its number in [`Config::syscall_families`].
    pub const fn id(self) -> u8 {
        self as u8
    }
}

/// [`SyscallFamily`] numbers, for matching in the programs.
pub mod family {
    use super::SyscallFamily as F;
    pub const OTHER: u8 = F::Other.id();
    pub const READ: u8 = F::Read.id();
    pub const WRITE: u8 = F::Write.id();
    pub const RECEIVE: u8 = F::Receive.id();
    pub const SENDFILE: u8 = F::Sendfile.id();
    pub const SPLICE: u8 = F::Splice.id();
    pub const COPY_FILE_RANGE: u8 = F::CopyFileRange.id();
    pub const CLOSE: u8 = F::Close.id();
    pub const EXEC: u8 = F::Exec.id();
    pub const RT_SIGRETURN: u8 = F::RtSigreturn.id();
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
    /// Bytes of block-device reads the task submitted (block:block_bio_queue): DMA into memory
    /// on real hardware.
    pub const DEVICE_READ_BYTES: usize = 6;
    /// Bytes of block-device writes the task submitted.
    pub const DEVICE_WRITE_BYTES: usize = 7;
    /// System calls whose number did not fit the per-syscall table.
    pub const SYSCALL_OUT_OF_TABLE: usize = 8;
    // Bytes returned by syscalls, by the type of file their descriptor refers to (looked up in
    // the task's file table in the kernel): the basis of derived copy figures where a copy
    // site's kernel function cannot be hooked.
    /// read/readv/pread64/preadv on a regular file.
    pub const READ_REGULAR_BYTES: usize = 9;
    /// sendfile/splice whose input is a regular file.
    pub const SPLICE_FROM_REGULAR_BYTES: usize = 10;
    /// read-family syscalls on a pipe.
    pub const READ_PIPE_BYTES: usize = 11;
    /// write/writev/pwrite64/pwritev on a pipe.
    pub const WRITE_PIPE_BYTES: usize = 12;
    /// write-family syscalls on a regular file.
    pub const WRITE_REGULAR_BYTES: usize = 13;
    /// sendfile/splice whose output is a regular file (the page cache is written by a
    /// kernel->kernel copy from the spliced pages).
    pub const SPLICE_TO_REGULAR_BYTES: usize = 14;
    /// copy_file_range between regular files: copied or reflinked, the syscall cannot tell.
    pub const UNCLASSIFIED_BYTES: usize = 15;
    /// write family, sendto and sendmsg on a socket: the socket leg of the byte ledger.
    pub const SEND_SOCKET_BYTES: usize = 16;
    /// sendfile/splice whose output is a socket.
    pub const SPLICE_TO_SOCKET_BYTES: usize = 17;
    /// Payload of the sender's frames handed to the DMA device (DMA_DEV) for transmit, in the
    /// frame's linear part...
    pub const NIC_TX_LINEAR_BYTES: usize = 18;
    /// ...and in its page fragments (with scatter-gather: pages the device reads in place).
    pub const NIC_TX_FRAG_BYTES: usize = 19;
    /// Trace mode: tasks a traced task started that TASKS had no room for (task:task_newtask's
    /// insert failed), so they went uncounted: the report says it is incomplete by this many.
    pub const TASKS_NOT_FOLLOWED: usize = 20;
    /// Trace mode: a new task's first return to user space (its sys_exit from the fork or
    /// clone that made it, in ret_from_fork): a kernel-to-user transition with no entry of
    /// its own, kept apart so that the per-syscall table still counts each call once.
    pub const FIRST_RETURNS: usize = 21;
    /// sendfile whose output is a pipe: before 5.12 the kernel writes those bytes into the
    /// pipe with pipe_write (a kernel->kernel copy from the spliced pages), since then by
    /// reference (splice_file_to_pipe).
    pub const SENDFILE_TO_PIPE_BYTES: usize = 22;
    /// A power of two above the last counter: the eBPF side masks indices with COUNT - 1, so
    /// that older verifiers see the bound on the very register that indexes the array.
    pub const COUNT: usize = 32;
    const _: () = assert!(COUNT.is_power_of_two() && SENDFILE_TO_PIPE_BYTES < COUNT);

    /// `i` as an index into the counters, bounded by a mask (see [`COUNT`]).
    #[inline(always)]
    pub const fn index(i: u64) -> usize {
        i as usize & (COUNT - 1)
    }

    /// The two derived-bytes counters a pending syscall's return value feeds (its input
    /// side and its output side; 0: none), in one TaskState word.
    #[inline(always)]
    pub const fn pack_sources(input: usize, output: usize) -> u64 {
        (input as u64 & 0xff) | ((output as u64 & 0xff) << 8)
    }

    /// The inverse of [`pack_sources`].
    #[inline(always)]
    pub const fn unpack_sources(packed: u64) -> (usize, usize) {
        ((packed & 0xff) as usize, ((packed >> 8) & 0xff) as usize)
    }
}

/// How a copy site moved bytes, as the kernel says at the site (iov_iter type, msg flags).
pub mod class {
    /// CPU copy from user memory into kernel memory (e.g. write() into socket buffers).
    pub const USER_TO_KERNEL: usize = 0;
    /// CPU copy from kernel memory into user memory (e.g. read() from the page cache).
    pub const KERNEL_TO_USER: usize = 1;
    /// CPU copy between two kernel buffers (e.g. splice pages copied when a route lacks SG).
    pub const KERNEL_TO_KERNEL: usize = 2;
    /// No copy: page references handed on (splice, sendfile with scatter-gather).
    pub const BY_REFERENCE: usize = 3;
    /// A power of two, for the same reason as [`super::counter::COUNT`].
    pub const COUNT: usize = 4;
    const _: () = assert!(COUNT.is_power_of_two() && BY_REFERENCE < COUNT);

    /// `c` as an index into a site's classes, bounded by a mask.
    #[inline(always)]
    pub const fn index(c: u64) -> usize {
        c as usize & (COUNT - 1)
    }
}

/// Kernel sites where payload bytes are copied or passed by reference.
pub mod site {
    /// tcp_sendmsg_locked(): write/send/sendmsg, and splice/sendfile to TCP since 6.5.
    pub const TCP_SEND: usize = 0;
    /// do_tcp_sendpages(): splice/sendfile to TCP before 6.5 (page references).
    pub const TCP_SENDPAGE: usize = 1;
    /// filemap_read(): buffered file read into an iov_iter.
    pub const FILE_READ: usize = 2;
    /// filemap_splice_read(): page-cache pages into a pipe (6.5+).
    pub const FILE_SPLICE_READ: usize = 3;
    /// skb_copy_datagram_iter(): socket receive copy.
    pub const SOCK_RECV: usize = 4;
    /// pipe_write() / anon_pipe_write(): data written into a pipe.
    pub const PIPE_WRITE: usize = 5;
    /// pipe_read() / anon_pipe_read(): data read out of a pipe.
    pub const PIPE_READ: usize = 6;
    /// generic_perform_write(): buffered file write into the page cache.
    pub const FILE_WRITE: usize = 7;
    /// Frames of the sender's TCP sockets leaving a device: payload found in the frame's linear
    /// part was copied there by GSO segmentation or linearization, which a device without
    /// scatter-gather needs (the article's "no SG-DMA" copy).
    pub const NIC_LINEARIZE: usize = 8;
    /// unix_stream_sendmsg(): UNIX stream socket send.
    pub const UNIX_SEND: usize = 9;
    /// shmem_file_read_iter(): tmpfs read into an iov_iter (its own copy loop, not filemap_read).
    pub const SHMEM_READ: usize = 10;
    /// shmem_file_splice_read(): tmpfs pages into a pipe (6.5+).
    pub const SHMEM_SPLICE_READ: usize = 11;
    /// iomap_file_buffered_write(): buffered write of iomap filesystems (xfs, ...).
    pub const IOMAP_WRITE: usize = 12;
    /// btrfs_buffered_write(): btrfs's buffered write.
    pub const BTRFS_WRITE: usize = 13;
    /// unix_stream_sendpage(): splice/sendfile to a UNIX stream socket before 6.5 (page
    /// references appended to the skb).
    pub const UNIX_SENDPAGE: usize = 14;
    pub const COUNT: usize = 15;
}

/// What a descriptor refers to, in `zc-trace trace`'s breakdown by file-descriptor kind
/// ([`FdKey::kind`]). Regular files carry their filesystem's magic in [`FdKey::magic`].
pub mod fd_kind {
    /// Not classified (no BTF for the descriptor walk, or not a descriptor argument).
    pub const UNKNOWN: u32 = 0;
    pub const REGULAR: u32 = 1;
    /// A regular file opened with O_DIRECT: its data moves by DMA to and from user pages.
    pub const REGULAR_DIRECT: u32 = 2;
    /// Pipes and FIFOs.
    pub const PIPE: u32 = 3;
    pub const TCP: u32 = 4;
    pub const UDP: u32 = 5;
    pub const UNIX: u32 = 6;
    pub const OTHER_SOCKET: u32 = 7;
    /// Character devices (/dev/null, ttys).
    pub const CHAR_DEVICE: u32 = 8;
    pub const OTHER: u32 = 9;
}

/// Which descriptor of a syscall an [`FdKey`] describes.
pub mod fd_side {
    /// The descriptor bytes were read from (read family, recv family, the input of
    /// sendfile/splice/copy_file_range).
    pub const INPUT: u32 = 0;
    /// The descriptor bytes were written to.
    pub const OUTPUT: u32 = 1;
}

/// Key of the FDSTATS map (trace mode): bytes by syscall, side and kind of descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdKey {
    pub nr: u32,
    pub side: u32,
    pub kind: u32,
    /// super_block.s_magic of a regular file's filesystem (its low 32 bits), else 0.
    pub magic: u32,
}

impl FdKey {
    /// A descriptor class as the eBPF side packs it in [`TaskState`]: kind in the low 32
    /// bits, magic in the high 32 (0: not classified).
    pub const fn unpack(nr: u32, side: u32, class: u64) -> FdKey {
        FdKey {
            nr,
            side,
            kind: class as u32,
            magic: (class >> 32) as u32,
        }
    }
}

/// Value of the FDSTATS map: returns of such calls and the bytes they returned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdStat {
    /// Calls that returned (errors included).
    pub calls: u64,
    /// Sum of positive return values.
    pub bytes: u64,
}

/// io_uring opcodes counted per opcode (URING_OPS); higher ones share the last slot.
pub const URING_OP_SLOTS: u32 = 64;

/// [`TaskState::flags`]: zc-trace's own thread that starts the traced command. It is not
/// counted; a task it starts inherits [`task_flag::ARM_ON_EXEC`].
pub mod task_flag {
    pub const SPAWNER: u32 = 1;
    /// Counted from its first execve on: what the command itself does, not the fork's
    /// set-up in zc-trace's code before it.
    pub const ARM_ON_EXEC: u32 = 2;
    /// Started by a counted task and not yet back in user space: its first sys_exit is the
    /// return from its parent's fork or clone ([`counter::FIRST_RETURNS`](super::counter)).
    pub const FIRST_RETURN: u32 = 4;
}

/// Receiver processes the kernel side can recognise by tgid at once: a run has one (only its
/// main sink has a receiver; the file sink has none), and one more is spare.
pub const RECEIVER_SLOTS: u32 = 2;

/// Size of the per-syscall table; syscall numbers at or above it are counted in
/// [`counter::SYSCALL_OUT_OF_TABLE`].
pub const SYSCALL_SLOTS: usize = 512;
// The programs index tables by a syscall number masked with SYSCALL_SLOTS - 1.
const _: () = assert!(SYSCALL_SLOTS.is_power_of_two());

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
    /// Number of returns of exactly 0: for read-like calls, end of file (a call that moved
    /// nothing, so not a per-chunk cost).
    pub zero_returns: u64,
}

/// Everything counted for one role, on one CPU. User space sums the per-CPU copies.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RoleStats {
    pub counters: [u64; counter::COUNT],
    /// Bytes per copy site and class.
    pub copies: [[u64; class::COUNT]; site::COUNT],
    /// Completed operations per copy site.
    pub site_calls: [u64; site::COUNT],
    pub syscalls: [SyscallStat; SYSCALL_SLOTS],
}

impl RoleStats {
    pub const fn zeroed() -> Self {
        RoleStats {
            counters: [0; counter::COUNT],
            copies: [[0; class::COUNT]; site::COUNT],
            site_calls: [0; site::COUNT],
            syscalls: [SyscallStat {
                enters: 0,
                exits: 0,
                ret_positive_sum: 0,
                errors: 0,
                zero_returns: 0,
            }; SYSCALL_SLOTS],
        }
    }

    /// Number of `u64` words in a `RoleStats`: it is nothing but `u64`s (asserted below).
    pub const WORDS: usize = core::mem::size_of::<RoleStats>() / 8;

    /// Every counter as one flat array, in field order. User space sums per-CPU copies,
    /// takes deltas and keeps samples word by word, with no per-field code to keep in step.
    pub fn words(&self) -> &[u64; Self::WORDS] {
        // SAFETY: repr(C), only u64 fields and arrays of them: no padding, align 8, size
        // WORDS * 8 (all asserted below).
        unsafe { &*(self as *const Self as *const [u64; Self::WORDS]) }
    }

    pub fn words_mut(&mut self) -> &mut [u64; Self::WORDS] {
        // SAFETY: as in `words`; every bit pattern is a valid RoleStats.
        unsafe { &mut *(self as *mut Self as *mut [u64; Self::WORDS]) }
    }

    /// Word index of `counters[i]` in [`RoleStats::words`].
    pub const fn counter_word(i: usize) -> usize {
        core::mem::offset_of!(RoleStats, counters) / 8 + i
    }

    /// Word index of `copies[site][class]`.
    pub const fn copy_word(site: usize, class: usize) -> usize {
        core::mem::offset_of!(RoleStats, copies) / 8 + site * class::COUNT + class
    }

    /// Word index of `site_calls[site]`.
    pub const fn site_calls_word(site: usize) -> usize {
        core::mem::offset_of!(RoleStats, site_calls) / 8 + site
    }

    /// Word index of the first field of `syscalls[nr]` (see [`SyscallStat::WORDS`]).
    pub const fn syscall_word(nr: usize) -> usize {
        core::mem::offset_of!(RoleStats, syscalls) / 8 + nr * SyscallStat::WORDS
    }
}

impl SyscallStat {
    /// Number of `u64` fields, in declaration order.
    pub const WORDS: usize = core::mem::size_of::<SyscallStat>() / 8;

    /// From its words, in declaration order.
    pub const fn from_words(w: [u64; Self::WORDS]) -> Self {
        SyscallStat {
            enters: w[0],
            exits: w[1],
            ret_positive_sum: w[2],
            errors: w[3],
            zero_returns: w[4],
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
    /// Which derived-bytes counter the pending syscall's return value feeds (0: none).
    pub pending_source: u64,
    /// Trace mode: the pending syscall's input and output descriptor classes (see
    /// [`FdKey::unpack`]; 0: none).
    pub pending_in: u64,
    pub pending_out: u64,
    /// [`task_flag`] bits.
    pub flags: u32,
    pub _pad: u32,
}

/// A copy seen at a site's entry (kprobe, tp_btf) whose byte count arrives at its exit
/// (kretprobe, sock_send_length); keyed by [`pending_key`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCopy {
    pub class: u32,
    /// Calls of the same site on the same thread nested inside the one that made the entry;
    /// only the outermost call's exit counts (its bytes include the inner ones').
    pub depth: u32,
    /// Bytes to subtract from the return value (filemap_read's already_read).
    pub base: i64,
}

pub const fn pending_key(tid: u32, site: usize) -> u64 {
    ((tid as u64) << 8) | site as u64
}

/// TMPFS_MAGIC (include/uapi/linux/magic.h), super_block.s_magic of tmpfs.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

/// "Absent on this kernel" for offsets and enum values in [`Config`].
pub const UNKNOWN: u32 = u32::MAX;

/// Run-time configuration, written by user space into the `CONFIG` global before loading,
/// grouped by where each value comes from. Every group is `#[repr(C)]` with no implicit padding
/// (asserted below): Config is read as plain bytes on both sides (`aya::Pod`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub values: KernelValues,
    pub tasks: Tasks,
    pub tp: TracepointOffsets,
    pub iter: IterTypes,
    pub msghdr: MsghdrOffsets,
    pub sock: SockOffsets,
    pub file: FileOffsets,
    pub skb: SkbOffsets,
    /// Explicit padding: with an odd number of u32s, the end would be padded implicitly.
    pub _pad: u32,
    /// Filesystems whose regular files do not go through the page cache sites (procfs,
    /// sysfs...: their read and write copy in their own code), by s_magic's low 32 bits; 0
    /// ends the list. Their bytes stay out of the regular-file counters (and the ledger).
    pub pseudo_fs_magics: [u32; PSEUDO_FS_SLOTS],
    /// The [`SyscallFamily`] of every syscall number below [`SYSCALL_SLOTS`] (0: other).
    pub syscall_families: [u8; SYSCALL_SLOTS],
}

/// Constants of this kernel: from its headers (macros, not in BTF) or its BTF enums. The u64s
/// first, so that the group has no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelValues {
    /// Bit set in sched_switch's prev_state when the switch was a preemption.
    pub sched_preempt_state_bit: u64,
    /// Highest user-space address; faults above it are kernel faults on kernel memory.
    pub user_address_limit: u64,
    /// 1 << NETIF_F_SG_BIT.
    pub netif_f_sg: u64,
    /// MSG_SPLICE_PAGES (6.5+), 0 before.
    pub msg_splice_pages: u32,
    /// Zero-copy sends: MSG_ZEROCOPY on a socket with SOCK_ZEROCOPY set (an sk_flags bit), or
    /// a message carrying its own ubuf_info (io_uring SEND_ZC, msghdr.msg_ubuf, 6.0+).
    pub msg_zerocopy: u32,
    pub sock_zerocopy_bit: u32,
    /// file.f_flags' O_DIRECT, to leave O_DIRECT files out of the derived copies (they DMA to
    /// user pages).
    pub o_direct: u32,
}

/// Which tasks are traced.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tasks {
    /// tgid whose threads may open a measured window with the markers.
    pub sender_tgid: u32,
    /// 1 in trace mode: the traced tasks are every task in TASKS (not the sender's tgid and
    /// RECEIVERS), tasks they start are tracked too, and bytes are kept by descriptor kind.
    pub follow: u32,
}

/// Classic tracepoint field offsets: they differ between kernels, so user space reads them
/// from tracefs (`events/<group>/<event>/format`; `zc-trace/src/kernel/tracepoints.rs` says
/// which event's field goes where).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointOffsets {
    pub sys_enter_id_off: u32,
    pub sys_enter_args_off: u32,
    pub sys_exit_id_off: u32,
    pub sys_exit_ret_off: u32,
    pub sched_prev_pid_off: u32,
    pub sched_prev_state_off: u32,
    pub fault_address_off: u32,
    pub skb_copy_len_off: u32,
    /// sock:sock_send_length's `ret`.
    pub sock_send_ret_off: u32,
    /// net:net_dev_start_xmit.
    pub xmit_skbaddr_off: u32,
    pub xmit_len_off: u32,
    pub xmit_data_len_off: u32,
    pub xmit_transport_valid_off: u32,
    pub xmit_transport_off: u32,
    /// block:block_bio_queue.
    pub bio_nr_sector_off: u32,
    pub bio_rwbs_off: u32,
    /// task:task_newtask's `pid`.
    pub newtask_pid_off: u32,
    /// io_uring's submit event's `opcode`.
    pub uring_opcode_off: u32,
    /// sched:sched_process_exec's `pid` and `old_pid`: a thread other than the leader that
    /// calls execve takes the leader's pid, and its TASKS entry moves with it.
    pub exec_pid_off: u32,
    pub exec_old_pid_off: u32,
}

/// Where an iov_iter says what it iterates over (BTF; [`UNKNOWN`] when absent), and the
/// `enum iter_type` values on this kernel (their order and form changed between versions).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IterTypes {
    /// `iov_iter.iter_type` (u8, 5.14+), or 5.10-5.13's `iov_iter.type` (unsigned int: the
    /// type's bit ORed with the direction, READ 0 or WRITE 1), whose low byte is read
    /// (little-endian, as x86_64 and arm64 are).
    pub type_off: u32,
    /// What of that byte is the type: 0xff, or 0xfe where the direction bit shares it.
    pub type_mask: u32,
    pub ubuf: u32,
    pub iovec: u32,
    pub kvec: u32,
    pub bvec: u32,
    pub pipe: u32,
    pub discard: u32,
}

/// struct msghdr members (BTF; [`UNKNOWN`] when absent).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsghdrOffsets {
    pub flags_off: u32,
    pub iter_off: u32,
    pub ubuf_off: u32,
}

/// struct sock members (BTF; [`UNKNOWN`] when absent): the route's capabilities, sk_flags,
/// and what tells TCP, UDP and UNIX stream sockets apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    pub route_caps_off: u32,
    pub flags_off: u32,
    pub family_off: u32,
    pub protocol_off: u32,
    /// Only UNIX *stream* sockets go through unix_stream_sendmsg.
    pub type_off: u32,
}

/// The path from a task's descriptor to what it is (BTF; [`UNKNOWN`] when absent):
/// task_struct->files->fdt->fd[n]->f_inode->i_mode, the file's flags and filesystem, and a
/// socket file's sock.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOffsets {
    pub task_files_off: u32,
    pub files_fdt_off: u32,
    pub fdt_max_fds_off: u32,
    pub fdt_fd_off: u32,
    pub file_inode_off: u32,
    pub inode_mode_off: u32,
    pub file_flags_off: u32,
    /// inode.i_sb and super_block.s_magic: O_DIRECT on tmpfs still copies (shmem has no direct
    /// I/O path; since 6.6 it accepts the flag and ignores it), so it is not left out there.
    pub inode_sb_off: u32,
    pub sb_magic_off: u32,
    /// file.private_data and socket.sk: the sender's sockets are tracked when a syscall on
    /// them begins, before any frame of theirs can leave a device.
    pub file_private_data_off: u32,
    pub socket_sk_off: u32,
}

/// struct sk_buff members and net_device.ifindex (BTF; [`UNKNOWN`] when absent): a frame's
/// socket, its bytes copied by segmentation/linearization, the device it is handed to, and
/// its TCP header at the tp_btf net_dev_start_xmit (which has no tracefs fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbOffsets {
    pub sk_off: u32,
    pub data_off: u32,
    pub len_off: u32,
    pub data_len_off: u32,
    pub dev_off: u32,
    pub head_off: u32,
    pub transport_header_off: u32,
    pub netdev_ifindex_off: u32,
}

/// Room in [`Config::pseudo_fs_magics`].
pub const PSEUDO_FS_SLOTS: usize = 24;

impl Config {
    pub const fn zeroed() -> Self {
        const U: u32 = UNKNOWN;
        Config {
            values: KernelValues {
                sched_preempt_state_bit: 0,
                user_address_limit: 0,
                netif_f_sg: 0,
                msg_splice_pages: 0,
                msg_zerocopy: 0,
                sock_zerocopy_bit: U,
                o_direct: 0,
            },
            tasks: Tasks {
                sender_tgid: 0,
                follow: 0,
            },
            // 0 until tracefs has the field (its program is then refused at attach).
            tp: TracepointOffsets {
                sys_enter_id_off: 0,
                sys_enter_args_off: 0,
                sys_exit_id_off: 0,
                sys_exit_ret_off: 0,
                sched_prev_pid_off: 0,
                sched_prev_state_off: 0,
                fault_address_off: 0,
                skb_copy_len_off: 0,
                sock_send_ret_off: 0,
                xmit_skbaddr_off: 0,
                xmit_len_off: 0,
                xmit_data_len_off: 0,
                xmit_transport_valid_off: 0,
                xmit_transport_off: 0,
                bio_nr_sector_off: 0,
                bio_rwbs_off: 0,
                newtask_pid_off: 0,
                uring_opcode_off: 0,
                exec_pid_off: 0,
                exec_old_pid_off: 0,
            },
            iter: IterTypes {
                type_off: U,
                type_mask: 0xff,
                ubuf: U,
                iovec: U,
                kvec: U,
                bvec: U,
                pipe: U,
                discard: U,
            },
            msghdr: MsghdrOffsets {
                flags_off: U,
                iter_off: U,
                ubuf_off: U,
            },
            sock: SockOffsets {
                route_caps_off: U,
                flags_off: U,
                family_off: U,
                protocol_off: U,
                type_off: U,
            },
            file: FileOffsets {
                task_files_off: U,
                files_fdt_off: U,
                fdt_max_fds_off: U,
                fdt_fd_off: U,
                file_inode_off: U,
                inode_mode_off: U,
                file_flags_off: U,
                inode_sb_off: U,
                sb_magic_off: U,
                file_private_data_off: U,
                socket_sk_off: U,
            },
            skb: SkbOffsets {
                sk_off: U,
                data_off: U,
                len_off: U,
                data_len_off: U,
                dev_off: U,
                head_off: U,
                transport_header_off: U,
                netdev_ifindex_off: U,
            },
            _pad: 0,
            pseudo_fs_magics: [0; PSEUDO_FS_SLOTS],
            syscall_families: [0; SYSCALL_SLOTS],
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
    unsafe impl aya::Pod for super::PendingCopy {}
    unsafe impl aya::Pod for super::FdKey {}
    unsafe impl aya::Pod for super::FdStat {}
}

// Config has no implicit padding: each group's size is the sum of its fields (a field added
// without minding alignment fails the build), and Config's is the sum of its groups'.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<KernelValues>() == 3 * 8 + 4 * 4);
    assert!(size_of::<Tasks>() == 2 * 4);
    assert!(size_of::<TracepointOffsets>() == 20 * 4);
    assert!(size_of::<IterTypes>() == 8 * 4);
    assert!(size_of::<MsghdrOffsets>() == 3 * 4);
    assert!(size_of::<SockOffsets>() == 5 * 4);
    assert!(size_of::<FileOffsets>() == 11 * 4);
    assert!(size_of::<SkbOffsets>() == 8 * 4);
    assert!(
        size_of::<Config>()
            == size_of::<KernelValues>()
                + size_of::<Tasks>()
                + size_of::<TracepointOffsets>()
                + size_of::<IterTypes>()
                + size_of::<MsghdrOffsets>()
                + size_of::<SockOffsets>()
                + size_of::<FileOffsets>()
                + size_of::<SkbOffsets>()
                + 4
                + PSEUDO_FS_SLOTS * 4
                + SYSCALL_SLOTS
    );
    assert!(SYSCALL_SLOTS.is_multiple_of(8));
};
const _: () = assert!(core::mem::size_of::<TaskState>() == 9 * 8);
const _: () = assert!(core::mem::size_of::<FdKey>() == 16);

// The kernel refuses per-CPU map values above 32 KiB (PCPU_MIN_UNIT_SIZE).
const _: () = assert!(core::mem::size_of::<RoleStats>() <= 32 * 1024);
// `RoleStats::words` relies on these: only u64s, no padding anywhere.
const _: () = assert!(core::mem::align_of::<RoleStats>() == 8);
const _: () = assert!(
    core::mem::size_of::<RoleStats>()
        == 8 * (counter::COUNT
            + site::COUNT * class::COUNT
            + site::COUNT
            + SYSCALL_SLOTS * SyscallStat::WORDS)
);
const _: () = assert!(core::mem::size_of::<SyscallStat>() == 5 * 8);
// close() takes an int: the markers must be positive ints, and far above any descriptor
// zc-trace holds (its RLIMIT_NOFILE is at most fs.nr_open, 2^20 by default).
const _: () = assert!(MARK_START > (1 << 30) && MARK_STOP > MARK_START);
const _: () = assert!(MARK_STOP < i32::MAX as u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_sources_of_a_pending_syscall_survive_packing() {
        let packed = counter::pack_sources(counter::READ_REGULAR_BYTES, counter::FIRST_RETURNS);
        assert_eq!(
            counter::unpack_sources(packed),
            (counter::READ_REGULAR_BYTES, counter::FIRST_RETURNS)
        );
        assert_eq!(counter::unpack_sources(0), (0, 0));
    }

    /// The masks keep every real index and fold anything else into the array.
    #[test]
    fn index_masks_keep_real_indices_in_bounds() {
        assert_eq!(
            counter::index(counter::FIRST_RETURNS as u64),
            counter::FIRST_RETURNS
        );
        assert!(counter::index(u64::MAX) < counter::COUNT);
        assert_eq!(
            class::index(class::BY_REFERENCE as u64),
            class::BY_REFERENCE
        );
        assert!(class::index(u64::MAX) < class::COUNT);
    }
}
