//! The probe plan: every kernel site zc-trace observes, with the attach methods that can observe
//! it in order of preference. The plan is data; `tracer` walks it at run time and records, per
//! site, which method worked on this kernel or why none did. Figures cite the outcome.

use serde::Serialize;

use zc_trace_common::{class, counter, site};

/// How a program is attached, in the order zc-trace prefers them: BTF-typed trampolines first
/// (cheapest, typed arguments), then kprobes, then tracepoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // fentry and raw tracepoints: no hook needs them yet
pub enum Method {
    Fexit,
    Fentry,
    Kretprobe,
    Kprobe,
    TpBtf,
    RawTracepoint,
    Tracepoint,
}

impl Method {
    pub fn label(self) -> &'static str {
        match self {
            Method::Fexit => "fexit",
            Method::Fentry => "fentry",
            Method::Kretprobe => "kretprobe",
            Method::Kprobe => "kprobe",
            Method::TpBtf => "tp_btf",
            Method::RawTracepoint => "raw_tracepoint",
            Method::Tracepoint => "tracepoint",
        }
    }
}

/// One way to observe a site: an eBPF program in the embedded object and where it attaches.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub method: Method,
    /// Program name in the eBPF object.
    pub program: &'static str,
    /// Kernel function, BTF tracepoint name, or "group:event" for classic tracepoints.
    pub target: &'static str,
    /// A second program the first one needs (kretprobe after kprobe; the tracepoint that
    /// supplies a byte count the first cannot see). Both attach, or neither counts.
    pub also: Option<Half>,
    /// For a kernel function: the prototype its programs are written for, checked against
    /// the kernel's BTF before attaching.
    pub proto: Option<&'static Proto>,
    /// What this candidate's figure means, where it differs from the site's `detail`.
    pub detail: Option<&'static str>,
    /// BTF facts its programs read beyond what their prototypes' `needs` say (tracepoints,
    /// which have no function prototype here).
    pub needs: &'static [Need],
}

/// One half of a candidate: the program, how and where it attaches, the prototype it reads.
#[derive(Debug, Clone, Copy)]
pub struct Half {
    pub method: Method,
    pub program: &'static str,
    pub target: &'static str,
    pub proto: Option<&'static Proto>,
}

/// What the programs of a function site read of its prototype. They read arguments by
/// position, and some fexit programs the return value at the slot after the last argument:
/// on a kernel whose prototype differs they would read the wrong values, so a mismatch
/// refuses the candidate (`AttachFailure::PrototypeMismatch`) instead.
#[derive(Debug)]
pub struct Proto {
    /// The leading parameters the programs read (the function may have more after them).
    pub params: &'static [Slot],
    pub ret: Slot,
    /// The fexit program reads the return value at argument slot `params.len()`, so the
    /// function must have exactly these parameters. Otherwise it comes from
    /// bpf_get_func_ret (or a kretprobe's register), whatever the parameter count.
    pub ret_after_params: bool,
    /// The kernel structures the programs read through the arguments.
    pub needs: &'static [Need],
}

/// A fact of the kernel's BTF a program reads through its arguments (resolved into the
/// programs' `Config` at start-up). Without it the program would misread, so its candidate is
/// refused (`AttachFailure::BtfMissing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// iov_iter.iter_type and `enum iter_type`: whose memory a copy reads or writes.
    IovIter,
    /// msghdr.msg_flags and msghdr.msg_iter.
    MsgHdr,
    /// sock.sk_route_caps: whether the route has scatter-gather.
    RouteCaps,
    /// sk_buff.sk: the socket a frame belongs to.
    SkbSk,
    /// sk_buff.data: where a frame's headers are.
    SkbData,
    /// sk_buff.len.
    SkbLen,
    /// NETIF_F_SG_BIT.
    NetifSg,
    /// sk_buff.dev and net_device.ifindex: which device a frame is handed to.
    SkbDev,
    /// sk_buff.head, .transport_header and .data_len, and net_device.ifindex: a frame's TCP
    /// header and fragments from the skb itself.
    SkbHeaders,
}

impl Proto {
    /// Whether a function of prototype `real` can be read this way by `method`.
    pub fn check(
        &self,
        real: &crate::kernel::btf::FuncProto,
        method: Method,
    ) -> Result<(), String> {
        let exact = self.ret_after_params && method == Method::Fexit;
        let n = self.params.len();
        let fits = real.params.get(..n) == Some(self.params)
            && real.ret == self.ret
            && (!exact || real.params.len() == n);
        if fits {
            return Ok(());
        }
        let expected: Vec<String> = self.params.iter().map(Slot::to_string).collect();
        Err(format!(
            "its prototype here is {real}; the {} program reads ({}{}) -> {}",
            method.label(),
            expected.join(", "),
            if exact { "" } else { ", ..." },
            self.ret
        ))
    }
}

use crate::kernel::btf::Slot::{self, Int, Ptr};

/// (struct kiocb *, struct iov_iter *, ...) -> ssize_t: the iov_iter copy sites.
const ITER_COPY: Proto = Proto {
    params: &[Ptr, Ptr],
    ret: Int(8),
    ret_after_params: false,
    needs: &[Need::IovIter],
};

/// (...) -> ssize_t, every returned byte by reference: splice reads, sendpage.
const BYTES_RETURNED: Proto = Proto {
    params: &[],
    ret: Int(8),
    ret_after_params: false,
    needs: &[],
};

/// int tcp_sendmsg_locked(struct sock *, struct msghdr *, size_t).
const SENDMSG: Proto = Proto {
    params: &[Ptr, Ptr, Int(8)],
    ret: Int(4),
    ret_after_params: true,
    needs: &[Need::IovIter, Need::MsgHdr, Need::RouteCaps],
};

/// int unix_stream_sendmsg(struct socket *, struct msghdr *, size_t): no route to read.
const UNIX_SENDMSG: Proto = Proto {
    params: &[Ptr, Ptr, Int(8)],
    ret: Int(4),
    ret_after_params: true,
    needs: &[Need::IovIter, Need::MsgHdr],
};

/// ssize_t filemap_read(struct kiocb *, struct iov_iter *, ssize_t already_read); before 5.12
/// the same function is generic_file_buffered_read(iocb, iter, ssize_t written).
const FILEMAP_READ: Proto = Proto {
    params: &[Ptr, Ptr, Int(8)],
    ret: Int(8),
    ret_after_params: true,
    needs: &[Need::IovIter],
};

/// struct sk_buff *skb_segment(struct sk_buff *head_skb, netdev_features_t features): read at
/// entry.
const SKB_SEGMENT: Proto = Proto {
    params: &[Ptr, Int(8)],
    ret: Ptr,
    ret_after_params: false,
    needs: &[Need::SkbSk, Need::SkbLen, Need::NetifSg],
};

/// void *__pskb_pull_tail(struct sk_buff *skb, int delta): the fexit reads the new tail at
/// slot 2.
const PSKB_PULL_TAIL: Proto = Proto {
    params: &[Ptr, Int(4)],
    ret: Ptr,
    ret_after_params: true,
    needs: &[Need::SkbSk],
};

/// int skb_copy_datagram_iter(const struct sk_buff *, int offset, struct iov_iter *, int len).
const SKB_COPY_DATAGRAM_ITER: Proto = Proto {
    params: &[Ptr, Int(4), Ptr, Int(4)],
    ret: Int(4),
    ret_after_params: true,
    needs: &[Need::IovIter],
};

impl Candidate {
    /// The candidate's program, then its `also` program.
    pub fn halves(&self) -> impl Iterator<Item = Half> {
        let first = Half {
            method: self.method,
            program: self.program,
            target: self.target,
            proto: self.proto,
        };
        std::iter::once(first).chain(self.also)
    }

    /// Every BTF fact its programs read.
    pub fn all_needs(&self) -> impl Iterator<Item = Need> + '_ {
        self.halves()
            .filter_map(|half| half.proto)
            .flat_map(|p| p.needs)
            .chain(self.needs)
            .copied()
    }

    /// "kprobe+kretprobe", "tp_btf+tracepoint", or the single method.
    pub fn label(&self) -> String {
        match self.also {
            Some(h) if h.method != self.method => {
                format!("{}+{}", self.method.label(), h.method.label())
            }
            _ => self.method.label().to_string(),
        }
    }

    /// Where it attaches, both halves.
    pub fn target_label(&self) -> String {
        match self.also {
            Some(h) if h.target != self.target => format!("{} + {}", self.target, h.target),
            _ => self.target.to_string(),
        }
    }
}

/// A kernel site zc-trace observes.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    pub id: HookId,
    /// What happens at the site, in words.
    pub site: &'static str,
    /// Which reported figures it feeds.
    pub feeds: &'static str,
    /// zc-trace refuses to run without it (the measured window depends on it).
    pub required: bool,
    pub candidates: &'static [Candidate],
    /// For a copy site: everything the report and the ledger need to know about it.
    pub copy: Option<CopySite>,
}

/// A copy site's entry in the catalogue (the plan lists the sites in the order data flows:
/// file side, pipes, socket side, device, receiver): the one place that says what the site counts, whose
/// copies they are, which sink it can carry bytes to, which ledger leg must balance with it,
/// and what stands in for it where no candidate attaches.
#[derive(Debug, Clone, Copy)]
pub struct CopySite {
    /// Its row in the kernel's counters (`zc_trace_common::site`).
    pub index: usize,
    pub side: Side,
    /// The sinks whose bytes it can carry (the socket sites of other families are left out of
    /// the totals and of the socket leg, and stay in the per-site detail).
    pub family: Family,
    /// Where on the data path its bytes go: this decides its byte-ledger leg (`Place::leg`),
    /// the arrows of the HTML diagram and the evidence of `trace --expect`.
    pub place: Place,
    /// What an observed figure means (the provenance's detail), unless the attached
    /// candidate says otherwise (`Candidate::detail`).
    pub detail: &'static str,
    pub fallback: Fallback,
}

/// Where a copy site sits on the path from the file to the sink. Every consumer decides by
/// matching on it, without a default arm, so a new place is a compiler-guided change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A buffered read of the file: page cache to the reader's memory.
    FileRead,
    /// The file's pages into a pipe (splice, sendfile's internal pipe).
    FileSplice,
    /// Into a pipe, from user memory or (by reference) from pages.
    PipeWrite,
    /// Out of a pipe: into user memory or into the sink.
    PipeRead,
    /// Into a file (the file sink).
    FileWrite,
    /// Into a socket (the socket sinks).
    SocketSend,
    /// A frame's fragments copied into its linear part before the device reads it.
    NicLinearize,
    /// Out of a socket into the receiver's memory.
    SocketReceive,
    /// Where a zero-copy send's pinned pages are copied after all, at delivery (the kernel's
    /// completion reports say how much; no hook sees it).
    Delivery,
    /// `cargo xtask test` builds with this feature to show where the compiler asks about a new
    /// place (xtask/src/test.rs, `check_fake_site`).
    #[cfg(feature = "fake-site")]
    FakePlace,
}

impl Place {
    /// The byte-ledger leg whose moved bytes the sites of this place must see.
    pub fn leg(self) -> Option<LegId> {
        match self {
            Place::FileRead | Place::FileSplice => Some(LegId::FileRead),
            Place::PipeWrite => Some(LegId::PipeWrite),
            Place::PipeRead => Some(LegId::PipeRead),
            Place::FileWrite => Some(LegId::FileWrite),
            Place::SocketSend => Some(LegId::SocketSend),
            Place::NicLinearize => Some(LegId::NicLinearize),
            // The receiver's copies and the delivery copy are not the sender's bytes moved.
            Place::SocketReceive | Place::Delivery => None,
        }
    }
}

/// A leg of the byte ledger: bytes the syscalls moved on one path, which that path's copy
/// sites must see (`report::ledger`). An enum from the catalogue to every renderer; its
/// snake_case name is the JSON's and the text's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LegId {
    FileRead,
    FileWrite,
    SocketSend,
    NicLinearize,
    PipeWrite,
    PipeRead,
    /// Frames handed to a device that reads them by DMA (`nic_leg`).
    NicTransmit,
}

impl LegId {
    pub fn name(self) -> &'static str {
        match self {
            LegId::FileRead => "file_read",
            LegId::FileWrite => "file_write",
            LegId::SocketSend => "socket_send",
            LegId::NicLinearize => "nic_linearize",
            LegId::PipeWrite => "pipe_write",
            LegId::PipeRead => "pipe_read",
            LegId::NicTransmit => "nic_transmit",
        }
    }
}

by_name!(LegId, name: Display);

/// Whose copies a site can count (each role's are kept apart in the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Sender,
    Receiver,
    /// pipe_read: the sender reading its own pipe, or the receiver reading the FIFO sink.
    Both,
}

impl Side {
    /// Whether the tasks of `role` copy at the site.
    pub fn serves(self, role: zc_trace_common::Role) -> bool {
        use zc_trace_common::Role;
        match self {
            Side::Both => true,
            Side::Sender => role == Role::Sender,
            Side::Receiver => role == Role::Receiver,
        }
    }
}

/// The sinks a copy site can carry bytes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Any,
    /// TCP sockets (the tcp and veth sinks).
    Tcp,
    Unix,
}

/// What stands in for a copy site that no candidate can attach to.
#[derive(Debug, Clone, Copy)]
pub enum Fallback {
    /// Nothing: the site is not observable here.
    None,
    /// Derived from the bytes the syscalls returned, by the type of file behind their
    /// descriptors: `what` says how, `pairs` maps each (counter, class).
    Derived {
        what: &'static str,
        pairs: &'static [(usize, usize)],
    },
    /// A filesystem-specific site whose bytes the generic site's derivation already counts
    /// (the derivation goes by file type, on every filesystem).
    InGeneric(HookId),
}

/// The copy site a hook counts: default detail for observed figures.
const CLASSIFIED: &str = "classified at the site by iov_iter type, MSG_SPLICE_PAGES and the \
                          route's scatter-gather capability; traced thread only";

/// Declares `HookId` from one list: its variants, `name()` (the JSON's and the text's) and
/// `ALL`, which sizes the plan, so a hook added here without its entry in `PLAN` does not
/// compile.
macro_rules! hook_ids {
    ($($(#[cfg($cfg:meta)])? $id:ident => $name:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum HookId {
            $($(#[cfg($cfg)])? $id,)*
        }

        impl HookId {
            /// Every hook, in declaration order.
            pub const ALL: &'static [HookId] = &[$($(#[cfg($cfg)])? HookId::$id,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $($(#[cfg($cfg)])? HookId::$id => $name,)*
                }
            }
        }
    };
}

hook_ids! {
    SyscallEnter => "syscall_enter",
    SyscallExit => "syscall_exit",
    FaultUserMode => "fault_user_mode",
    FaultKernelMode => "fault_kernel_mode",
    ContextSwitch => "context_switch",
    TcpSend => "tcp_send",
    TcpSendpage => "tcp_sendpage",
    FileRead => "file_read",
    FileSpliceRead => "file_splice_read",
    SockRecv => "sock_recv",
    PipeWrite => "pipe_write",
    PipeRead => "pipe_read",
    FileWrite => "file_write",
    NicLinearize => "nic_linearize",
    UnixSend => "unix_send",
    DeviceIo => "device_io",
    ShmemRead => "shmem_read",
    ShmemSpliceRead => "shmem_splice_read",
    IomapWrite => "iomap_write",
    BtrfsWrite => "btrfs_write",
    UnixSendpage => "unix_sendpage",
    TaskNew => "task_new",
    TaskExit => "task_exit",
    TaskExec => "task_exec",
    IoUringSubmit => "io_uring_submit",
    NicTransmit => "nic_transmit",
    // `cargo xtask test` builds with this feature to show where the compiler asks for a new
    // copy site (xtask/src/test.rs, `check_fake_site`).
    #[cfg(feature = "fake-site")]
    FakeSite => "fake_site",
}

by_name!(HookId, name: Serialize);

impl HookId {
    /// Its entry in the plan.
    pub fn hook(self) -> &'static Hook {
        PLAN.iter()
            .find(|h| h.id == self)
            .expect("every hook id is in the plan")
    }

    /// The copy site's catalogue entry, if this hook is a copy site.
    pub fn copy(self) -> Option<&'static CopySite> {
        self.hook().copy.as_ref()
    }
}

const fn tp(program: &'static str, target: &'static str) -> Candidate {
    Candidate {
        method: Method::Tracepoint,
        program,
        target,
        also: None,
        proto: None,
        detail: None,
        needs: &[],
    }
}

/// A BTF tracepoint (raw tracepoint with typed arguments): `target` is the event's name.
const fn tp_btf(program: &'static str, target: &'static str) -> Candidate {
    Candidate {
        method: Method::TpBtf,
        ..tp(program, target)
    }
}

const fn fexit(program: &'static str, function: &'static str, proto: &'static Proto) -> Candidate {
    Candidate {
        method: Method::Fexit,
        program,
        target: function,
        also: None,
        proto: Some(proto),
        detail: None,
        needs: &[],
    }
}

const fn kretprobe(
    program: &'static str,
    function: &'static str,
    proto: &'static Proto,
) -> Candidate {
    Candidate {
        method: Method::Kretprobe,
        program,
        target: function,
        also: None,
        proto: Some(proto),
        detail: None,
        needs: &[],
    }
}

/// A kprobe that classifies at entry and its kretprobe that adds the returned byte count.
const fn kprobe_pair(
    entry: &'static str,
    exit: &'static str,
    function: &'static str,
    proto: &'static Proto,
) -> Candidate {
    Candidate {
        method: Method::Kprobe,
        program: entry,
        target: function,
        also: Some(Half {
            method: Method::Kretprobe,
            program: exit,
            target: function,
            proto: Some(proto),
        }),
        proto: Some(proto),
        detail: None,
        needs: &[],
    }
}

pub const PLAN: &[Hook; HookId::ALL.len()] = &[
    Hook {
        id: HookId::SyscallEnter,
        site: "system call entry (also sees the window markers)",
        feeds: "syscalls, transitions, time",
        required: true,
        copy: None,
        candidates: &[tp("zc_sys_enter", "raw_syscalls:sys_enter")],
    },
    Hook {
        id: HookId::SyscallExit,
        site: "system call return",
        feeds: "transitions, bytes returned per syscall",
        required: true,
        copy: None,
        candidates: &[tp("zc_sys_exit", "raw_syscalls:sys_exit")],
    },
    Hook {
        id: HookId::FaultUserMode,
        site: "page fault taken in user mode",
        feeds: "page faults, transitions",
        required: false,
        copy: None,
        candidates: &[tp("zc_fault_user", "exceptions:page_fault_user")],
    },
    Hook {
        id: HookId::FaultKernelMode,
        site: "page fault on a user address taken in kernel mode",
        feeds: "page faults",
        required: false,
        copy: None,
        candidates: &[tp("zc_fault_kernel", "exceptions:page_fault_kernel")],
    },
    Hook {
        id: HookId::ContextSwitch,
        site: "context switch away from a traced thread",
        feeds: "context switches",
        required: false,
        copy: None,
        candidates: &[
            tp_btf("zc_sched_switch_btf", "sched_switch"),
            tp("zc_sched_switch_tp", "sched:sched_switch"),
        ],
    },
    Hook {
        id: HookId::FileRead,
        site: "buffered file read: page cache copied into the reader's iov_iter (filemap_read)",
        feeds: "CPU-copied bytes (sender)",
        required: false,
        copy: Some(CopySite {
            index: site::FILE_READ,
            side: Side::Sender,
            family: Family::Any,
            place: Place::FileRead,
            detail: CLASSIFIED,
            fallback: Fallback::Derived {
                what: "kernel->user = bytes returned by read-family syscalls on regular files: a \
                       buffered read copies them from the page cache",
                pairs: &[(counter::READ_REGULAR_BYTES, class::KERNEL_TO_USER)],
            },
        }),
        candidates: &[
            fexit("zc_file_read_fexit", "filemap_read", &FILEMAP_READ),
            fexit("zc_generic_file_read_fexit", "generic_file_buffered_read", &FILEMAP_READ),
            kprobe_pair("zc_file_read_kprobe", "zc_file_read_kretprobe", "filemap_read", &FILEMAP_READ),
            kprobe_pair("zc_file_read_kprobe", "zc_file_read_kretprobe", "generic_file_buffered_read", &FILEMAP_READ),
        ],
    },
    // Filesystems whose buffered paths bypass filemap_read / generic_perform_write; without
    // them the byte ledger finds those legs incomplete.
    Hook {
        id: HookId::ShmemRead,
        site: "tmpfs read: shmem pages copied into the reader's iov_iter (shmem_file_read_iter)",
        feeds: "CPU-copied bytes (sender; payload on tmpfs)",
        required: false,
        copy: Some(CopySite {
            index: site::SHMEM_READ,
            side: Side::Sender,
            family: Family::Any,
            place: Place::FileRead,
            detail: CLASSIFIED,
            fallback: Fallback::InGeneric(HookId::FileRead),
        }),
        candidates: &[
            fexit("zc_shmem_read_fexit", "shmem_file_read_iter", &ITER_COPY),
            kprobe_pair("zc_shmem_read_kprobe", "zc_shmem_read_kretprobe", "shmem_file_read_iter", &ITER_COPY),
        ],
    },
    Hook {
        id: HookId::FileSpliceRead,
        site: "file splice read: page-cache pages into a pipe by reference (filemap_splice_read, 6.5+)",
        feeds: "per-site detail (file -> pipe leg of sendfile/splice)",
        required: false,
        copy: Some(CopySite {
            index: site::FILE_SPLICE_READ,
            side: Side::Sender,
            family: Family::Any,
            place: Place::FileSplice,
            detail: CLASSIFIED,
            fallback: Fallback::Derived {
                what: "by reference = bytes returned by sendfile/splice reading a regular file: \
                       the page cache hands its pages to the pipe",
                pairs: &[(counter::SPLICE_FROM_REGULAR_BYTES, class::BY_REFERENCE)],
            },
        }),
        candidates: &[
            fexit("zc_file_splice_read_fexit", "filemap_splice_read", &BYTES_RETURNED),
            kretprobe("zc_file_splice_read_kretprobe", "filemap_splice_read", &BYTES_RETURNED),
        ],
    },
    Hook {
        id: HookId::ShmemSpliceRead,
        site: "tmpfs splice read: shmem pages into a pipe by reference (shmem_file_splice_read, \
               6.5+)",
        feeds: "per-site detail (file -> pipe leg of sendfile/splice on tmpfs)",
        required: false,
        copy: Some(CopySite {
            index: site::SHMEM_SPLICE_READ,
            side: Side::Sender,
            family: Family::Any,
            place: Place::FileSplice,
            detail: CLASSIFIED,
            fallback: Fallback::InGeneric(HookId::FileSpliceRead),
        }),
        candidates: &[
            fexit("zc_shmem_splice_read_fexit", "shmem_file_splice_read", &BYTES_RETURNED),
            kretprobe("zc_shmem_splice_read_kretprobe", "shmem_file_splice_read", &BYTES_RETURNED),
        ],
    },
    Hook {
        id: HookId::PipeWrite,
        site: "pipe write: the writer's iov_iter copied into pipe pages (pipe_write, \
               anon_pipe_write since 6.15)",
        feeds: "CPU-copied bytes (sender)",
        required: false,
        copy: Some(CopySite {
            index: site::PIPE_WRITE,
            side: Side::Sender,
            family: Family::Any,
            place: Place::PipeWrite,
            detail: CLASSIFIED,
            fallback: Fallback::Derived {
                what: "user->kernel = bytes returned by write-family syscalls on pipes",
                pairs: &[(counter::WRITE_PIPE_BYTES, class::USER_TO_KERNEL)],
            },
        }),
        candidates: &[
            fexit("zc_pipe_write_fexit", "pipe_write", &ITER_COPY),
            fexit("zc_anon_pipe_write_fexit", "anon_pipe_write", &ITER_COPY),
            kprobe_pair("zc_pipe_write_kprobe", "zc_pipe_write_kretprobe", "pipe_write", &ITER_COPY),
            kprobe_pair("zc_pipe_write_kprobe", "zc_pipe_write_kretprobe", "anon_pipe_write", &ITER_COPY),
        ],
    },
    Hook {
        id: HookId::PipeRead,
        site: "pipe read: pipe pages copied into the reader's iov_iter (pipe_read, \
               anon_pipe_read since 6.15)",
        feeds: "CPU-copied bytes (sender)",
        required: false,
        copy: Some(CopySite {
            index: site::PIPE_READ,
            side: Side::Both,
            family: Family::Any,
            place: Place::PipeRead,
            detail: CLASSIFIED,
            fallback: Fallback::Derived {
                what: "kernel->user = bytes returned by read-family syscalls on pipes",
                pairs: &[(counter::READ_PIPE_BYTES, class::KERNEL_TO_USER)],
            },
        }),
        candidates: &[
            fexit("zc_pipe_read_fexit", "pipe_read", &ITER_COPY),
            fexit("zc_anon_pipe_read_fexit", "anon_pipe_read", &ITER_COPY),
            kprobe_pair("zc_pipe_read_kprobe", "zc_pipe_read_kretprobe", "pipe_read", &ITER_COPY),
            kprobe_pair("zc_pipe_read_kprobe", "zc_pipe_read_kretprobe", "anon_pipe_read", &ITER_COPY),
        ],
    },
    Hook {
        id: HookId::FileWrite,
        site: "buffered file write: the writer's iov_iter copied into the page cache \
               (generic_perform_write: ext4 and most block filesystems; not xfs's iomap path)",
        feeds: "CPU-copied bytes (sender)",
        required: false,
        copy: Some(CopySite {
            index: site::FILE_WRITE,
            side: Side::Sender,
            family: Family::Any,
            place: Place::FileWrite,
            detail: CLASSIFIED,
            fallback: Fallback::Derived {
                what: "user->kernel = bytes returned by write-family syscalls on regular files \
                       (buffered), kernel->kernel = bytes returned by sendfile/splice into \
                       regular files (the spliced pages are copied into the page cache)",
                pairs: &[
                    (counter::WRITE_REGULAR_BYTES, class::USER_TO_KERNEL),
                    (counter::SPLICE_TO_REGULAR_BYTES, class::KERNEL_TO_KERNEL),
                ],
            },
        }),
        candidates: &[
            fexit("zc_file_write_fexit", "generic_perform_write", &ITER_COPY),
            kprobe_pair("zc_file_write_kprobe", "zc_file_write_kretprobe", "generic_perform_write", &ITER_COPY),
        ],
    },
    Hook {
        id: HookId::IomapWrite,
        site: "iomap buffered write (xfs): the writer's iov_iter copied into the page cache \
               (iomap_file_buffered_write)",
        feeds: "CPU-copied bytes (sender; file sink on xfs)",
        required: false,
        copy: Some(CopySite {
            index: site::IOMAP_WRITE,
            side: Side::Sender,
            family: Family::Any,
            place: Place::FileWrite,
            detail: CLASSIFIED,
            fallback: Fallback::InGeneric(HookId::FileWrite),
        }),
        candidates: &[
            fexit("zc_iomap_write_fexit", "iomap_file_buffered_write", &ITER_COPY),
            kprobe_pair(
                "zc_iomap_write_kprobe",
                "zc_iomap_write_kretprobe",
                "iomap_file_buffered_write",
                &ITER_COPY,
            ),
        ],
    },
    Hook {
        id: HookId::BtrfsWrite,
        site: "btrfs buffered write: the writer's iov_iter copied into the page cache \
               (btrfs_buffered_write)",
        feeds: "CPU-copied bytes (sender; file sink on btrfs)",
        required: false,
        copy: Some(CopySite {
            index: site::BTRFS_WRITE,
            side: Side::Sender,
            family: Family::Any,
            place: Place::FileWrite,
            detail: CLASSIFIED,
            fallback: Fallback::InGeneric(HookId::FileWrite),
        }),
        candidates: &[
            fexit("zc_btrfs_write_fexit", "btrfs_buffered_write", &ITER_COPY),
            kprobe_pair(
                "zc_btrfs_write_kprobe",
                "zc_btrfs_write_kretprobe",
                "btrfs_buffered_write",
                &ITER_COPY,
            ),
        ],
    },
    Hook {
        id: HookId::TcpSend,
        site: "TCP send: bytes copied from the message's iov_iter, or spliced pages kept as \
               references (tcp_sendmsg_locked)",
        feeds: "CPU-copied bytes, bytes by reference (sender)",
        required: false,
        copy: Some(CopySite {
            index: site::TCP_SEND,
            side: Side::Sender,
            family: Family::Tcp,
            place: Place::SocketSend,
            detail: CLASSIFIED,
            fallback: Fallback::None,
        }),
        candidates: &[
            fexit("zc_tcp_send_fexit", "tcp_sendmsg_locked", &SENDMSG),
            kprobe_pair("zc_tcp_send_kprobe", "zc_tcp_send_kretprobe", "tcp_sendmsg_locked", &SENDMSG),
            Candidate {
                method: Method::TpBtf,
                program: "zc_tcp_send_tp_btf",
                target: "tcp_sendmsg_locked",
                also: Some(Half {
                    method: Method::Tracepoint,
                    program: "zc_sock_send_length",
                    target: "sock:sock_send_length",
                    proto: None,
                }),
                proto: None,
                        detail: None,
                needs: &[Need::IovIter, Need::MsgHdr, Need::RouteCaps],
            },
        ],
    },
    Hook {
        id: HookId::TcpSendpage,
        site: "TCP sendpage: page references from splice/sendfile, kernels before 6.5 \
               (do_tcp_sendpages)",
        feeds: "bytes by reference (sender)",
        required: false,
        copy: Some(CopySite {
            index: site::TCP_SENDPAGE,
            side: Side::Sender,
            family: Family::Tcp,
            place: Place::SocketSend,
            detail: CLASSIFIED,
            fallback: Fallback::None,
        }),
        candidates: &[
            fexit("zc_tcp_sendpage_fexit", "do_tcp_sendpages", &BYTES_RETURNED),
            kretprobe("zc_tcp_sendpage_kretprobe", "do_tcp_sendpages", &BYTES_RETURNED),
        ],
    },
    Hook {
        id: HookId::UnixSend,
        site: "UNIX stream send: bytes copied from the message's iov_iter, or spliced pages kept \
               as references (unix_stream_sendmsg; before 6.5 splice goes through \
               unix_stream_sendpage, its own site)",
        feeds: "CPU-copied bytes, bytes by reference (sender, UNIX sink)",
        required: false,
        copy: Some(CopySite {
            index: site::UNIX_SEND,
            side: Side::Sender,
            family: Family::Unix,
            place: Place::SocketSend,
            detail: CLASSIFIED,
            fallback: Fallback::None,
        }),
        candidates: &[
            fexit("zc_unix_send_fexit", "unix_stream_sendmsg", &UNIX_SENDMSG),
            kprobe_pair("zc_unix_send_kprobe", "zc_unix_send_kretprobe", "unix_stream_sendmsg", &UNIX_SENDMSG),
        ],
    },
    Hook {
        id: HookId::UnixSendpage,
        site: "UNIX stream sendpage: page references from splice/sendfile, kernels before 6.5 \
               (unix_stream_sendpage)",
        feeds: "bytes by reference (sender, UNIX sink)",
        required: false,
        copy: Some(CopySite {
            index: site::UNIX_SENDPAGE,
            side: Side::Sender,
            family: Family::Unix,
            place: Place::SocketSend,
            detail: CLASSIFIED,
            fallback: Fallback::None,
        }),
        candidates: &[
            fexit("zc_unix_sendpage_fexit", "unix_stream_sendpage", &BYTES_RETURNED),
            kretprobe("zc_unix_sendpage_kretprobe", "unix_stream_sendpage", &BYTES_RETURNED),
        ],
    },
    Hook {
        id: HookId::NicLinearize,
        site: "a device without scatter-gather: the CPU copies the payload of the sender's \
               TCP skbs into linear memory, segmenting them in software (skb_segment) or \
               linearizing them (__pskb_pull_tail); else seen in each frame leaving the device",
        feeds: "CPU-copied bytes (sender)",
        required: false,
        copy: Some(CopySite {
            index: site::NIC_LINEARIZE,
            side: Side::Sender,
            family: Family::Tcp,
            place: Place::NicLinearize,
            detail: "bytes skb_segment copied into segments for a device without scatter-gather, \
                     plus fragments __pskb_pull_tail linearized, for skbs of the sender's \
                     sockets (attributed by socket, in any context; a retransmitted segment is \
                     copied and counted again)",
            fallback: Fallback::None,
        }),
        candidates: &[
            Candidate {
                method: Method::Fentry,
                program: "zc_skb_segment_fentry",
                target: "skb_segment",
                also: Some(Half {
                    method: Method::Fexit,
                    program: "zc_pskb_pull_tail_fexit",
                    target: "__pskb_pull_tail",
                    proto: Some(&PSKB_PULL_TAIL),
                }),
                proto: Some(&SKB_SEGMENT),
                detail: None,
                needs: &[],
            },
            Candidate {
                method: Method::Kprobe,
                program: "zc_skb_segment_kprobe",
                target: "skb_segment",
                also: Some(Half {
                    method: Method::Kprobe,
                    program: "zc_pskb_pull_tail_kprobe",
                    target: "__pskb_pull_tail",
                    proto: Some(&PSKB_PULL_TAIL),
                }),
                proto: Some(&SKB_SEGMENT),
                detail: None,
                needs: &[],
            },
            // Where neither can attach (no fentry, no kprobes): the linear payload of each
            // frame of the sender's sockets as it leaves the device; at the raw tracepoint
            // first, whose program also runs in a softirq that interrupted another eBPF
            // program (the classic tracepoint's is skipped then: 2-5% of frames were lost).
            Candidate {
                detail: Some(
                    "payload in the linear part of each frame of the sender's sockets leaving \
                     the device (attributed by socket, in any context): what segmentation or \
                     linearization copied there",
                ),
                needs: &[Need::SkbSk, Need::SkbData, Need::SkbLen, Need::SkbHeaders],
                ..tp_btf("zc_net_xmit_btf", "net_dev_start_xmit")
            },
            Candidate {
                detail: Some(
                    "payload in the linear part of each frame of the sender's sockets leaving \
                     the device (attributed by socket, in any context): what segmentation or \
                     linearization copied there; a classic tracepoint, whose program is \
                     skipped when the transmit interrupts another eBPF program, so frames can \
                     be missed (the ledger's nic_linearize leg says so)",
                ),
                needs: &[Need::SkbSk, Need::SkbData],
                ..tp("zc_net_xmit", "net:net_dev_start_xmit")
            },
        ],
    },
    Hook {
        id: HookId::SockRecv,
        site: "socket receive: skb data copied into the reader's iov_iter (skb_copy_datagram_iter)",
        feeds: "receiver copied bytes",
        required: false,
        copy: Some(CopySite {
            index: site::SOCK_RECV,
            side: Side::Receiver,
            family: Family::Any,
            place: Place::SocketReceive,
            detail: CLASSIFIED,
            fallback: Fallback::None,
        }),
        candidates: &[
            fexit("zc_sock_recv_fexit", "skb_copy_datagram_iter", &SKB_COPY_DATAGRAM_ITER),
            kprobe_pair("zc_sock_recv_kprobe", "zc_sock_recv_kretprobe", "skb_copy_datagram_iter", &SKB_COPY_DATAGRAM_ITER),
            Candidate {
                detail: Some(
                    "len of each socket-to-reader copy; the tracepoint does not carry the \
                     iov_iter type, and a read()/recv() into a buffer copies into user memory",
                ),
                ..tp("zc_skb_copy_datagram", "skb:skb_copy_datagram_iovec")
            },
        ],
    },
    Hook {
        id: HookId::DeviceIo,
        site: "block I/O submitted by the traced thread (submit_bio): DMA on real hardware, a \
               host-side copy on virtio",
        feeds: "device read/write bytes (with --cold)",
        required: false,
        copy: None,
        candidates: &[tp("zc_bio_queue", "block:block_bio_queue")],
    },
    Hook {
        id: HookId::NicTransmit,
        site: "the sender's frames handed to a device that reads them from memory by DMA (the \
               route device of a remote sink; loopback and veth read nothing)",
        feeds: "NIC transmit (DMA) bytes, linear part and page fragments",
        required: false,
        copy: None,
        candidates: &[
            // A raw tracepoint runs even inside a softirq that interrupted another eBPF
            // program on the CPU; a classic tracepoint's program is skipped then.
            Candidate {
                needs: &[Need::SkbSk, Need::SkbData, Need::SkbLen, Need::SkbHeaders],
                ..tp_btf("zc_nic_tx_btf", "net_dev_start_xmit")
            },
            Candidate {
                detail: Some(
                    "classic tracepoint: its program is skipped when the transmit interrupts \
                     another eBPF program on the same CPU, so frames can be missed (the \
                     nic_transmit ledger leg says so)",
                ),
                needs: &[Need::SkbSk, Need::SkbData, Need::SkbDev],
                ..tp("zc_nic_tx", "net:net_dev_start_xmit")
            },
        ],
    },
    // `zc-trace trace` only (the programs return at once in `run`).
    Hook {
        id: HookId::TaskNew,
        site: "a traced task starts a task (fork, clone, thread, io_uring worker: copy_process)",
        feeds: "trace: which tasks are followed",
        required: false,
        copy: None,
        candidates: &[tp("zc_task_newtask", "task:task_newtask")],
    },
    Hook {
        id: HookId::TaskExit,
        site: "a traced task exits (do_exit)",
        feeds: "trace: when the traced tasks are all gone",
        required: false,
        copy: None,
        candidates: &[tp("zc_process_exit", "sched:sched_process_exit")],
    },
    Hook {
        id: HookId::TaskExec,
        site: "a traced thread other than the leader calls execve and takes the leader's pid \
               (de_thread)",
        feeds: "trace: which tasks are followed (the new program's, under its new pid)",
        required: false,
        copy: None,
        candidates: &[tp("zc_process_exec", "sched:sched_process_exec")],
    },
    Hook {
        id: HookId::IoUringSubmit,
        site: "an io_uring request submitted by a traced task (io_submit_sqe)",
        feeds: "trace: io_uring requests by opcode",
        required: false,
        copy: None,
        candidates: &[
            tp("zc_io_uring_submit", "io_uring:io_uring_submit_req"),
            // Its name before 5.19.
            tp("zc_io_uring_submit", "io_uring:io_uring_submit_sqe"),
        ],
    },
];

// One entry per hook: the array's length makes a hook without an entry a compile error, and
// this makes a second entry for one hook (in place of another's) one too.
const _: () = {
    let mut i = 0;
    while i < HookId::ALL.len() {
        let mut entries = 0;
        let mut j = 0;
        while j < PLAN.len() {
            if PLAN[j].id as usize == HookId::ALL[i] as usize {
                entries += 1;
            }
            j += 1;
        }
        assert!(entries == 1, "every HookId has exactly one entry in PLAN");
        i += 1;
    }
};

/// Why a candidate did not attach, as a kind the report acts on; the message says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachFailure {
    /// The function or event does not exist in this kernel.
    Absent,
    /// The function is in a loaded module, which this method cannot reach here.
    InModule,
    /// Kernel BTF, or a BTF fact the program needs, is missing.
    BtfMissing,
    /// The kernel refused the operation (EPERM/EACCES: lockdown, capabilities, fentry off).
    NotPermitted,
    /// The attach method itself is not in this kernel (kprobes compiled out).
    MethodUnavailable,
    /// The verifier rejected the program.
    VerifierRefused,
    /// Left out on purpose (ZC_TRACE_SKIP_METHODS, for tests of the next method in a chain).
    Skipped,
    /// The function's prototype in this kernel's BTF is not the one its programs read.
    PrototypeMismatch,
    /// Anything else (a tracepoint format that lacks a field, an unsupported program type...).
    Other,
}

/// A candidate that did not attach: what kind of failure, and the message.
#[derive(Debug, Clone)]
pub struct AttachError {
    pub kind: AttachFailure,
    pub message: String,
}

impl AttachError {
    pub fn new(kind: AttachFailure, message: impl Into<String>) -> Self {
        AttachError {
            kind,
            message: message.into(),
        }
    }
}

/// One failed try of a candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub method: String,
    pub target: String,
    pub kind: AttachFailure,
    pub error: String,
}

/// What happened to one hook on this kernel.
#[derive(Debug, Clone, Serialize)]
pub struct HookOutcome {
    pub hook: HookId,
    pub site: &'static str,
    pub feeds: &'static str,
    /// The method that attached, or None: "not observable here".
    pub method: Option<Method>,
    /// The method with its companion, e.g. "kprobe+kretprobe", when one attached.
    pub method_label: Option<String>,
    pub target: Option<String>,
    /// Candidates tried before the one that attached (or all of them), with the error.
    pub failed: Vec<Attempt>,
    /// What the attached candidate's figure means, where it differs from its site's.
    #[serde(skip)]
    pub detail: Option<&'static str>,
}

impl HookOutcome {
    /// Why nothing attached, in one line.
    pub fn why_not(&self) -> String {
        self.failed
            .iter()
            .map(|a| format!("{} {}: {}", a.method, a.target, a.error))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The outcome of the whole plan on this kernel.
#[derive(Debug, Clone, Serialize)]
pub struct AttachReport {
    pub hooks: Vec<HookOutcome>,
    /// How this kernel routes bytes where that changed between versions (the ledger's legs
    /// follow it).
    #[serde(skip)]
    pub paths: KernelPaths,
}

/// Paths through the kernel that changed between versions, as its BTF tells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelPaths {
    /// sendfile into a pipe goes through pipe_write (a kernel->kernel copy): before 5.12,
    /// which added `splice_file_to_pipe` for it (by reference).
    pub sendfile_into_pipe_writes: bool,
}

impl KernelPaths {
    pub fn of(btf: &crate::kernel::btf::KernelBtf) -> Self {
        KernelPaths {
            sendfile_into_pipe_writes: !btf.has_function("splice_file_to_pipe"),
        }
    }
}

impl AttachReport {
    pub fn get(&self, id: HookId) -> &HookOutcome {
        self.hooks
            .iter()
            .find(|h| h.hook == id)
            .expect("every hook of the plan has an outcome")
    }
}

/// Every kernel function the plan may hook (fexit, fentry, kprobe), with its hooks.
pub fn plan_functions() -> Vec<(&'static str, Vec<HookId>)> {
    let mut out: Vec<(&'static str, Vec<HookId>)> = Vec::new();
    for h in PLAN {
        for Half {
            method: m, target, ..
        } in h.candidates.iter().flat_map(Candidate::halves)
        {
            if !matches!(
                m,
                Method::Fexit | Method::Fentry | Method::Kprobe | Method::Kretprobe
            ) {
                continue;
            }
            match out.iter_mut().find(|(f, _)| *f == target) {
                Some((_, hooks)) if !hooks.contains(&h.id) => hooks.push(h.id),
                Some(_) => {}
                None => out.push((target, vec![h.id])),
            }
        }
    }
    out
}

/// Whether each function of the plan exists in this kernel's BTF (null without BTF): the guard
/// the kernel matrix checks against its list of functions absent on purpose.
pub fn function_presence() -> Vec<serde_json::Value> {
    let btf = crate::kernel::btf::KernelBtf::from_sys_fs().ok();
    plan_functions()
        .into_iter()
        .map(|(f, hooks)| {
            let proto = btf.as_ref().and_then(|b| b.func_proto(f));
            serde_json::json!({
                "function": f,
                "in_btf": btf.as_ref().map(|b| b.has_function(f)),
                "prototype": proto.as_ref().map(|p| p.to_string()),
                "prototype_mismatch": proto.as_ref().and_then(|p| prototype_mismatch(f, p)),
                "hooks": hooks,
            })
        })
        .collect()
}

/// Why a program of the plan cannot read function `f` of prototype `real`, if one cannot.
pub fn prototype_mismatch(f: &str, real: &crate::kernel::btf::FuncProto) -> Option<String> {
    PLAN.iter()
        .flat_map(|h| h.candidates)
        .flat_map(Candidate::halves)
        .filter(|half| half.target == f)
        .find_map(|half| half.proto?.check(real, half.method).err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hook_has_candidates_in_preference_order() {
        for h in PLAN {
            assert!(!h.candidates.is_empty(), "{:?}", h.id);
            let ranks: Vec<usize> = h.candidates.iter().map(|c| c.method as usize).collect();
            let mut sorted = ranks.clone();
            sorted.sort();
            assert_eq!(
                ranks, sorted,
                "{:?} candidates out of preference order",
                h.id
            );
        }
    }

    #[test]
    fn a_prototype_is_checked_by_position_and_exactly_where_the_return_follows() {
        use crate::kernel::btf::FuncProto;
        let three = FuncProto {
            params: vec![Ptr, Ptr, Int(8)],
            ret: Int(4),
        };
        assert_eq!(SENDMSG.check(&three, Method::Fexit), Ok(()));
        let four = FuncProto {
            params: vec![Ptr, Ptr, Int(8), Int(4)],
            ret: Int(4),
        };
        // The fexit program would read the fourth argument as the return value.
        let e = SENDMSG.check(&four, Method::Fexit).unwrap_err();
        assert!(
            e.contains("(ptr, ptr, int64, int32) -> int32")
                && e.contains("reads (ptr, ptr, int64)"),
            "{e}"
        );
        // A kprobe reads arguments by position and the return from a register.
        assert_eq!(SENDMSG.check(&four, Method::Kprobe), Ok(()));
        let int_ret = FuncProto {
            params: vec![Ptr, Ptr],
            ret: Int(4),
        };
        assert!(ITER_COPY.check(&int_ret, Method::Fexit).is_err());
        let more = FuncProto {
            params: vec![Ptr, Ptr, Ptr, Ptr, Ptr],
            ret: Int(8),
        };
        // iomap_file_buffered_write grew from 3 to 5 parameters (6.1 -> 7.x): still readable.
        assert_eq!(ITER_COPY.check(&more, Method::Fexit), Ok(()));
    }

    /// The kernel-function tracker on this kernel: every function of the plan that it has
    /// has the prototype its programs read (the VM matrix checks its kernels the same way).
    #[test]
    fn every_planned_function_this_kernel_has_matches_its_prototype() {
        let Ok(btf) = crate::kernel::btf::KernelBtf::from_sys_fs() else {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI has BTF");
            return;
        };
        let mut checked = 0;
        for (f, _) in plan_functions() {
            if let Some(real) = btf.func_proto(f) {
                checked += 1;
                assert_eq!(prototype_mismatch(f, &real), None, "{f}");
            }
        }
        assert!(
            checked >= 8,
            "only {checked} planned functions in this kernel's BTF"
        );
    }

    /// The catalogue is whole: every counter row of the kernel side is one site, every
    /// filesystem-specific site's generic one is derived on its leg, every function is read
    /// through a prototype the loader checks, and the README's site table has every site.
    #[test]
    fn the_copy_site_catalogue_is_whole() {
        let sites: Vec<(&Hook, &CopySite)> = PLAN
            .iter()
            .filter_map(|h| Some((h, h.copy.as_ref()?)))
            .collect();
        let mut indices: Vec<usize> = sites.iter().map(|(_, c)| c.index).collect();
        indices.sort();
        assert_eq!(indices, (0..site::COUNT).collect::<Vec<_>>());
        let readme = include_str!("../../../README.md");
        for (h, c) in &sites {
            if let Fallback::InGeneric(g) = c.fallback {
                let generic = g.copy().expect("a copy site");
                assert!(
                    matches!(generic.fallback, Fallback::Derived { .. }),
                    "{:?}",
                    h.id
                );
                assert_eq!(generic.place.leg(), c.place.leg(), "{:?}", h.id);
            }
            let name = format!("`{}`", h.id.name());
            assert!(
                readme.lines().any(|l| l
                    .strip_prefix("| ")
                    .and_then(|row| row.split(" | ").next())
                    .is_some_and(|first| first.contains(&name))),
                "README's copy-site table has no row for {name}"
            );
        }
        for c in PLAN.iter().flat_map(|h| h.candidates) {
            for half in c.halves() {
                let function = matches!(
                    half.method,
                    Method::Fexit | Method::Fentry | Method::Kprobe | Method::Kretprobe
                );
                assert_eq!(function, half.proto.is_some(), "{}", half.program);
            }
        }
    }

    #[test]
    fn plan_functions_are_listed_once_with_their_hooks() {
        let f = plan_functions();
        let names: Vec<&str> = f.iter().map(|(n, _)| *n).collect();
        for expected in [
            "tcp_sendmsg_locked",
            "do_tcp_sendpages",
            "filemap_read",
            "filemap_splice_read",
            "skb_copy_datagram_iter",
            "pipe_write",
            "anon_pipe_write",
            "pipe_read",
            "anon_pipe_read",
            "generic_perform_write",
            "unix_stream_sendmsg",
        ] {
            assert_eq!(
                names.iter().filter(|n| **n == expected).count(),
                1,
                "{names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.contains(':')),
            "tracepoints are not functions"
        );
        let tcp = f.iter().find(|(n, _)| *n == "tcp_sendmsg_locked").unwrap();
        assert_eq!(tcp.1, [HookId::TcpSend]);
    }

    #[test]
    fn hook_ids_are_unique() {
        for (i, a) in PLAN.iter().enumerate() {
            for b in &PLAN[i + 1..] {
                assert_ne!(a.id, b.id);
            }
        }
    }

    #[test]
    fn classic_tracepoint_targets_name_group_and_event() {
        for h in PLAN {
            for c in h
                .candidates
                .iter()
                .filter(|c| c.method == Method::Tracepoint)
            {
                let (g, e) = c.target.split_once(':').expect("group:event");
                assert!(!g.is_empty() && !e.is_empty(), "{}", c.target);
            }
        }
    }
}
