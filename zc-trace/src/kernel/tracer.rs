//! Loads the embedded eBPF object, walks the probe plan (first attach method that works wins),
//! and reads the in-kernel aggregates. The programs never stream events: user space reads the
//! per-CPU totals once before and once after each run.

use std::collections::HashMap;
use std::path::Path;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::{BtfTracePoint, FEntry, FExit, KProbe, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use zc_trace_common::{Config, Role, RoleStats, TaskState, NO_SYSCALL, UNKNOWN};

use crate::error::{EnvError, RunError};
use crate::kernel::btf::KernelBtf;
use crate::kernel::capabilities::HostFacts;
use crate::kernel::probes::{
    AttachError, AttachFailure, AttachReport, Attempt, Candidate, HookOutcome, KernelPaths, Method,
    Need, PLAN,
};
use crate::kernel::tracefs::EventFormat;

/// The compiled programs, rebuilt from zc-trace-ebpf by `cargo xtask build-ebpf` and checked
/// against their source in CI: one object per architecture, because the kprobe programs read
/// `struct pt_regs`, whose layout is the architecture's.
#[cfg(target_arch = "x86_64")]
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../ebpf/x86_64/zc-trace.bpf.o");
#[cfg(target_arch = "aarch64")]
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../ebpf/aarch64/zc-trace.bpf.o");
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "zc-trace ships eBPF objects for x86_64 and aarch64 only (see xtask/src/ebpf.rs, `Arch`)"
);

/// x86's TASK_REPORT_MAX (since 4.14): sched_switch reports a preemption with this bit set in
/// prev_state, whatever the task's real state.
const TASK_REPORT_MAX: u64 = 0x100;

/// Highest canonical user-space address on x86_64 and arm64 (47/48-bit layouts).
const USER_ADDRESS_LIMIT: u64 = 0x0000_7fff_ffff_f000;

/// The async runtime the tracer must be loaded in: aya-log reads the programs' log buffer
/// from a task on it.
pub fn runtime() -> Result<tokio::runtime::Runtime, EnvError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EnvError::Load(format!("cannot start the async runtime: {e}")))
}

/// Loads the programs and attaches the whole plan as `run` does, and returns what attached
/// (the programs are detached on return). The caller runs cleanup (a tracefs it mounted).
pub fn attach_plan(
    host: &HostFacts,
    tracefs: &std::path::Path,
) -> Result<crate::kernel::probes::AttachReport, EnvError> {
    let runtime = runtime()?;
    // aya-log's reader registers with the runtime when the object is loaded.
    let _context = runtime.enter();
    Tracer::load(host, tracefs).map(|t| t.attach_report().clone())
}

pub struct Tracer {
    ebpf: Ebpf,
    /// Trace mode: TASKS' size (`--max-tasks`); 0 in `run`.
    max_tasks: u32,
    report: AttachReport,
}

impl Tracer {
    /// Loads the programs and attaches the plan, for `zc-trace run`: the sender's windows
    /// and the receiver processes are counted.
    pub fn load(host: &HostFacts, tracefs: &Path) -> Result<Self, EnvError> {
        Self::load_for(host, tracefs, None)
    }

    /// Loads the programs and attaches the plan; with `follow` (`zc-trace trace`: TASKS'
    /// size), the tasks in TASKS are counted, with every task they start, and bytes are kept
    /// by descriptor kind.
    pub fn load_for(
        host: &HostFacts,
        tracefs: &Path,
        follow: Option<u32>,
    ) -> Result<Self, EnvError> {
        let formats = read_formats(tracefs);
        let kernel_btf = match &host.btf {
            Some(_) => KernelBtf::from_sys_fs(),
            None => Err(host.btf_note.clone().unwrap_or_default()),
        };
        let mut config = build_config(&formats);
        if follow.is_some() {
            config.tasks.follow = 1;
            config.pseudo_fs_magics = zc_trace_common::filesystems::pseudo_magics();
            // No thread of zc-trace's own opens a measured window in trace mode.
            config.tasks.sender_tgid = 0;
        }
        if let Ok(b) = &kernel_btf {
            add_btf_config(&mut config, b);
        }
        let mut loader = EbpfLoader::new();
        loader.set_global("CONFIG", &config, true);
        if let Some(max_tasks) = follow {
            loader.set_max_entries("TASKS", max_tasks);
        }
        let memlock = crate::kernel::memlock::prepare();
        let mut ebpf = loader.load(OBJECT).map_err(|e| match memlock {
            crate::kernel::memlock::Memlock::Stuck { inherited, why } => EnvError::Memlock {
                limit: *inherited,
                why: why.clone(),
                load: error_chain(&e),
            },
            _ => EnvError::Load(error_chain(&e)),
        })?;
        if let Err(e) = aya_log::EbpfLogger::init(&mut ebpf) {
            log::warn!("eBPF log messages will not be shown: {e}");
        }
        let btf = match &host.btf {
            Some(_) => Btf::from_sys_fs().map_err(|e| error_chain(&e)),
            None => Err(host.btf_note.clone().unwrap_or_default()),
        };
        let mut outcomes = Vec::new();
        for hook in PLAN {
            let mut outcome = HookOutcome {
                hook: hook.id,
                site: hook.site,
                feeds: hook.feeds,
                method: None,
                method_label: None,
                target: None,
                failed: Vec::new(),
                detail: None,
            };
            for c in hook.candidates {
                let result = attach_candidate(&mut ebpf, c, &formats, &btf, &kernel_btf, &config);
                match result {
                    Ok(()) => {
                        outcome.method = Some(c.method);
                        outcome.method_label = Some(c.label());
                        outcome.target = Some(c.target_label());
                        outcome.detail = c.detail;
                        break;
                    }
                    Err(error) => outcome.failed.push(Attempt {
                        method: c.label(),
                        target: c.target_label(),
                        kind: error.kind,
                        error: error.message,
                    }),
                }
            }
            if outcome.method.is_none() && hook.required {
                return Err(EnvError::RequiredHook {
                    hook: hook.id.name().into(),
                    tried: outcome.why_not(),
                });
            }
            log::info!(
                "{}: {}",
                hook.id.name(),
                match (&outcome.method_label, &outcome.target) {
                    (Some(m), Some(t)) => format!("{m} {t}"),
                    _ => format!("not observable ({})", outcome.why_not()),
                }
            );
            outcomes.push(outcome);
        }
        Ok(Tracer {
            ebpf,
            max_tasks: follow.unwrap_or(0),
            report: AttachReport {
                hooks: outcomes,
                paths: kernel_btf
                    .as_ref()
                    .map_or_else(|_| KernelPaths::default(), KernelPaths::of),
            },
        })
    }

    pub fn attach_report(&self) -> &AttachReport {
        &self.report
    }

    /// Count everything `tid` does from now on under `role` (used for the receiver process,
    /// whose every syscall is part of the transfer).
    pub fn track(&mut self, tid: u32, role: Role) -> Result<(), RunError> {
        let mut tasks: BpfHashMap<&mut MapData, u32, TaskState> =
            BpfHashMap::try_from(self.ebpf.map_mut("TASKS").expect("TASKS is in the object"))
                .map_err(|e| RunError::Maps(e.to_string()))?;
        let state = TaskState {
            role: role.id(),
            active: 1,
            pending_nr: NO_SYSCALL,
            ..Default::default()
        };
        tasks
            .insert(tid, state, 0)
            .map_err(|e| RunError::Maps(format!("tracking tid {tid}: {e}")))?;
        // The kernel side turns away every process not in RECEIVERS (or the sender's) before
        // it looks a task up. `tid` is the receiver process's pid, i.e. its tgid.
        let mut receivers: Array<&mut MapData, u32> = Array::try_from(
            self.ebpf
                .map_mut("RECEIVERS")
                .expect("RECEIVERS is in the object"),
        )
        .map_err(|e| RunError::Maps(e.to_string()))?;
        let slots = (0..zc_trace_common::RECEIVER_SLOTS)
            .map(|i| receivers.get(&i, 0).map(|t| (i, t)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RunError::Maps(e.to_string()))?;
        if slots.iter().any(|&(_, t)| t == tid) {
            return Ok(());
        }
        let (free, _) = slots
            .into_iter()
            .find(|&(_, t)| t == 0)
            .ok_or_else(|| RunError::Maps("more receiver processes than RECEIVER_SLOTS".into()))?;
        receivers
            .set(free, tid, 0)
            .map_err(|e| RunError::Maps(format!("tracking process {tid}: {e}")))
    }

    fn tasks_map(&mut self) -> Result<BpfHashMap<&mut MapData, u32, TaskState>, RunError> {
        BpfHashMap::try_from(self.ebpf.map_mut("TASKS").expect("TASKS is in the object"))
            .map_err(|e| RunError::Maps(e.to_string()))
    }

    /// Trace mode: count every thread in `tids` from now on (already running ones, found by
    /// user space); those already followed are left as they are.
    pub fn follow(&mut self, tids: &[u32]) -> Result<usize, RunError> {
        let max_tasks = self.max_tasks;
        let mut tasks = self.tasks_map()?;
        let mut added = 0;
        for &tid in tids {
            if tasks.get(&tid, 0).is_ok() {
                continue;
            }
            let state = TaskState {
                role: Role::Sender.id(),
                active: 1,
                pending_nr: NO_SYSCALL,
                ..Default::default()
            };
            tasks.insert(tid, state, 0).map_err(|e| {
                let full = matches!(&e, aya::maps::MapError::SyscallError(s)
                    if s.io_error.raw_os_error() == Some(nix::libc::E2BIG));
                RunError::Maps(if full {
                    format!(
                        "following thread {tid}: the task table is full ({} tasks): raise \
                         it with --max-tasks",
                        max_tasks
                    )
                } else {
                    format!("following thread {tid}: {e}")
                })
            })?;
            added += 1;
        }
        Ok(added)
    }

    /// Takes out of TASKS those of `tids` that have exited: a thread that ended between the
    /// /proc scan and its insert had its exit hook run before it was followed, and its entry
    /// would stay for good (the trace never ended by itself, and a later task given the same
    /// tid was counted). The ones that exit after this check are removed by their exit hook.
    /// Returns how many were taken out.
    pub fn unfollow_exited(&mut self, tids: &[u32]) -> Result<usize, RunError> {
        let mut tasks = self.tasks_map()?;
        let mut removed = 0;
        for &tid in tids {
            if crate::kernel::processes::task_alive(tid) {
                continue;
            }
            if tasks.get(&tid, 0).is_ok() && tasks.remove(&tid).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Trace mode: `tid` (a thread of zc-trace) is about to start the command, which is to
    /// be counted from its execve on; `false` takes the mark away again.
    pub fn spawner(&mut self, tid: u32, on: bool) -> Result<(), RunError> {
        let mut tasks = self.tasks_map()?;
        if on {
            let state = TaskState {
                role: Role::Sender.id(),
                active: 0,
                pending_nr: NO_SYSCALL,
                flags: zc_trace_common::task_flag::SPAWNER,
                ..Default::default()
            };
            tasks
                .insert(tid, state, 0)
                .map_err(|e| RunError::Maps(format!("marking the spawning thread: {e}")))
        } else {
            let _ = tasks.remove(&tid);
            Ok(())
        }
    }

    /// Trace mode: how many followed tasks have not exited yet.
    pub fn followed_tasks(&self) -> Result<usize, RunError> {
        Ok(self.followed_tids()?.len())
    }

    /// Trace mode: the tids of the followed tasks that have not exited yet.
    pub fn followed_tids(&self) -> Result<Vec<u32>, RunError> {
        let tasks: BpfHashMap<&MapData, u32, TaskState> =
            BpfHashMap::try_from(self.ebpf.map("TASKS").expect("TASKS is in the object"))
                .map_err(|e| RunError::Maps(e.to_string()))?;
        Ok(tasks.keys().filter_map(Result::ok).collect())
    }

    /// Trace mode: calls and bytes by syscall, side and descriptor kind, summed over CPUs.
    pub fn fd_stats(
        &self,
    ) -> Result<std::collections::BTreeMap<zc_trace_common::FdKey, zc_trace_common::FdStat>, RunError>
    {
        use zc_trace_common::{FdKey, FdStat};
        let map: aya::maps::PerCpuHashMap<&MapData, FdKey, FdStat> =
            aya::maps::PerCpuHashMap::try_from(
                self.ebpf.map("FDSTATS").expect("FDSTATS is in the object"),
            )
            .map_err(|e| RunError::Maps(e.to_string()))?;
        let mut out = std::collections::BTreeMap::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry.map_err(|e| RunError::Maps(e.to_string()))?;
            let total: &mut FdStat = out.entry(key).or_default();
            for v in per_cpu.iter() {
                total.calls += v.calls;
                total.bytes += v.bytes;
            }
        }
        Ok(out)
    }

    /// Trace mode: io_uring requests submitted, by opcode (the last slot holds the rest).
    pub fn uring_ops(&self) -> Result<Vec<u64>, RunError> {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("URING_OPS")
                .expect("URING_OPS is in the object"),
        )
        .map_err(|e| RunError::Maps(e.to_string()))?;
        (0..zc_trace_common::URING_OP_SLOTS)
            .map(|i| {
                map.get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(|e| RunError::Maps(e.to_string()))
            })
            .collect()
    }

    /// Counts the transmits of device `ifindex` (0: none) as DMA reads of the sender's frames.
    pub fn set_dma_device(&mut self, ifindex: u32) -> Result<(), RunError> {
        let mut dev: Array<&mut MapData, u32> = Array::try_from(
            self.ebpf
                .map_mut("DMA_DEV")
                .expect("DMA_DEV is in the object"),
        )
        .map_err(|e| RunError::Maps(e.to_string()))?;
        dev.set(0, ifindex, 0)
            .map_err(|e| RunError::Maps(format!("DMA_DEV: {e}")))
    }

    /// Forgets the sockets the sender used (their addresses may be reused by anyone once closed).
    pub fn forget_sockets(&mut self) -> Result<(), RunError> {
        let mut socks: BpfHashMap<&mut MapData, u64, u32> =
            BpfHashMap::try_from(self.ebpf.map_mut("SOCKS").expect("SOCKS is in the object"))
                .map_err(|e| RunError::Maps(e.to_string()))?;
        let keys: Vec<u64> = socks.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = socks.remove(&k);
        }
        Ok(())
    }

    /// The state of a tracked thread (window timestamps, window count).
    pub fn task(&self, tid: u32) -> Option<TaskState> {
        let tasks: BpfHashMap<&MapData, u32, TaskState> =
            BpfHashMap::try_from(self.ebpf.map("TASKS")?).ok()?;
        tasks.get(&tid, 0).ok()
    }

    /// The role's counters summed over all CPUs.
    pub fn snapshot(&self, role: Role) -> Result<Box<RoleStats>, RunError> {
        let role_id = role.id();
        let stats: PerCpuArray<&MapData, RoleStats> =
            PerCpuArray::try_from(self.ebpf.map("STATS").expect("STATS is in the object"))
                .map_err(|e| RunError::Maps(e.to_string()))?;
        let per_cpu = stats
            .get(&role_id, 0)
            .map_err(|e| RunError::Maps(e.to_string()))?;
        let mut total = Box::new(RoleStats::zeroed());
        for cpu in per_cpu.iter() {
            for (t, c) in total.words_mut().iter_mut().zip(cpu.words()) {
                *t += c;
            }
        }
        Ok(total)
    }
}

/// Formats of the classic tracepoints the plan may use, by "group:event"; absent when tracefs
/// does not have the event (e.g. exceptions:* exists only on x86).
type Formats = HashMap<&'static str, Result<EventFormat, String>>;

fn read_formats(tracefs: &Path) -> Formats {
    let mut formats = Formats::new();
    let halves = PLAN
        .iter()
        .flat_map(|h| h.candidates)
        .flat_map(Candidate::halves);
    for crate::kernel::probes::Half { method, target, .. } in halves {
        if method != Method::Tracepoint {
            continue;
        }
        let (group, event) = target.split_once(':').expect("group:event");
        formats.insert(
            target,
            EventFormat::read(tracefs, group, event).map_err(|e| e.to_string()),
        );
    }
    formats
}

fn build_config(formats: &Formats) -> Config {
    let mut config = Config {
        syscall_families: crate::kernel::syscalls::families_by_number(),
        ..Config::zeroed()
    };
    config.tasks.sender_tgid = std::process::id();
    config.values.sched_preempt_state_bit = TASK_REPORT_MAX;
    config.values.user_address_limit = USER_ADDRESS_LIMIT;
    config.values.o_direct = nix::libc::O_DIRECT as u32;
    // A field's offset stays 0 unless this kernel's format has it (and its program is then
    // refused at attach); an event under two names (io_uring's submit) gets the one this
    // kernel has.
    for event in crate::kernel::tracepoints::EVENTS {
        let Some(Ok(format)) = formats.get(event.target) else {
            continue;
        };
        for field in event.fields {
            if let Some(f) = format.field(field.name) {
                (field.set)(&mut config, f.offset);
            }
        }
    }
    config
}

/// MSG_SPLICE_PAGES from include/linux/socket.h (a macro, so not in BTF); it exists from 6.5,
/// where `tcp_sendmsg_locked` handles splice. Older kernels have sendpage instead.
const MSG_SPLICE_PAGES: u32 = 0x0800_0000;

/// MSG_ZEROCOPY from include/linux/socket.h (4.14+).
const MSG_ZEROCOPY: u32 = 0x0400_0000;

/// Offsets and enum values the copy sites need, from this kernel's BTF.
fn add_btf_config(config: &mut Config, btf: &KernelBtf) {
    let off = |s: &str, m: &str| btf.field(s, m).map_or(UNKNOWN, |f| f.offset);
    let val = |e: &str| btf.enum_value(e).map_or(UNKNOWN, |v| v as u32);
    config.msghdr.flags_off = off("msghdr", "msg_flags");
    config.msghdr.iter_off = off("msghdr", "msg_iter");
    // 5.14+: `u8 iter_type`; 5.10-5.13: `unsigned int type`, the type's bit | the direction
    // (READ 0, WRITE 1), whose low byte the programs read with the direction masked off.
    (config.iter.type_off, config.iter.type_mask) = match (
        btf.field("iov_iter", "iter_type").filter(|f| f.size == 1),
        btf.field("iov_iter", "type").filter(|f| f.size == 4),
    ) {
        (Some(f), _) => (f.offset, 0xff),
        (None, Some(f)) => (f.offset, 0xfe),
        (None, None) => (UNKNOWN, 0xff),
    };
    config.sock.route_caps_off = off("sock", "sk_route_caps");
    config.skb.sk_off = off("sk_buff", "sk");
    config.values.msg_zerocopy = MSG_ZEROCOPY;
    // sk_flags is a macro for __sk_common.skc_flags; sock_common is the first member of sock.
    config.sock.flags_off = match (
        btf.field("sock", "__sk_common"),
        btf.field("sock_common", "skc_flags"),
    ) {
        (Some(common), Some(flags)) => common.offset + flags.offset,
        _ => UNKNOWN,
    };
    config.values.sock_zerocopy_bit = val("SOCK_ZEROCOPY");
    config.sock.family_off = match (
        btf.field("sock", "__sk_common"),
        btf.field("sock_common", "skc_family"),
    ) {
        (Some(common), Some(family)) => common.offset + family.offset,
        _ => UNKNOWN,
    };
    config.sock.type_off = btf
        .field("sock", "sk_type")
        .filter(|f| f.size == 2)
        .map_or(UNKNOWN, |f| f.offset);
    config.sock.protocol_off = btf
        .field("sock", "sk_protocol")
        .filter(|f| f.size == 2)
        .map_or(UNKNOWN, |f| f.offset);
    config.msghdr.ubuf_off = off("msghdr", "msg_ubuf");
    config.skb.data_off = off("sk_buff", "data");
    config.skb.dev_off = off("sk_buff", "dev");
    config.skb.netdev_ifindex_off = off("net_device", "ifindex");
    config.skb.head_off = off("sk_buff", "head");
    config.skb.transport_header_off = btf
        .field("sk_buff", "transport_header")
        .filter(|f| f.size == 2)
        .map_or(UNKNOWN, |f| f.offset);
    config.skb.len_off = off("sk_buff", "len");
    config.skb.data_len_off = off("sk_buff", "data_len");
    config.file.file_private_data_off = off("file", "private_data");
    config.file.socket_sk_off = off("socket", "sk");
    config.iter.ubuf = val("ITER_UBUF");
    config.iter.iovec = val("ITER_IOVEC");
    config.iter.kvec = val("ITER_KVEC");
    config.iter.bvec = val("ITER_BVEC");
    config.iter.pipe = val("ITER_PIPE");
    config.iter.discard = val("ITER_DISCARD");
    // The descriptor -> file type walk for the syscall-derived figures; all or nothing.
    let path = [
        off("task_struct", "files"),
        off("files_struct", "fdt"),
        off("fdtable", "max_fds"),
        off("fdtable", "fd"),
        off("file", "f_inode"),
        off("inode", "i_mode"),
        off("file", "f_flags"),
    ];
    if !path.contains(&UNKNOWN) {
        [
            config.file.task_files_off,
            config.file.files_fdt_off,
            config.file.fdt_max_fds_off,
            config.file.fdt_fd_off,
            config.file.file_inode_off,
            config.file.inode_mode_off,
            config.file.file_flags_off,
        ] = path;
    }
    config.file.inode_sb_off = off("inode", "i_sb");
    config.file.sb_magic_off = off("super_block", "s_magic");
    config.values.netif_f_sg = btf
        .enum_value("NETIF_F_SG_BIT")
        .map_or(0, |bit| 1u64 << bit);
    // The splice branch of tcp_sendmsg_locked came with MSG_SPLICE_PAGES and
    // filemap_splice_read (6.5); the latter is the witness that the flag exists.
    config.values.msg_splice_pages = if btf.has_function("filemap_splice_read") {
        MSG_SPLICE_PAGES
    } else {
        0
    };
}

/// The BTF facts a candidate's programs read (`Candidate::all_needs`); without them they would
/// misclassify, so the candidate is refused instead.
fn btf_requirements(c: &Candidate, config: &Config) -> Result<(), AttachError> {
    match c.all_needs().find(|&n| !resolved(n, config)) {
        None => Ok(()),
        Some(n) => Err(AttachError::new(
            AttachFailure::BtfMissing,
            format!("{} not found in kernel BTF", need_label(n)),
        )),
    }
}

fn resolved(need: Need, config: &Config) -> bool {
    match need {
        Need::IovIter => {
            config.iter.type_off != UNKNOWN
                && (config.iter.ubuf != UNKNOWN || config.iter.iovec != UNKNOWN)
        }
        Need::MsgHdr => config.msghdr.flags_off != UNKNOWN && config.msghdr.iter_off != UNKNOWN,
        Need::RouteCaps => config.sock.route_caps_off != UNKNOWN,
        Need::SkbSk => config.skb.sk_off != UNKNOWN,
        Need::SkbData => config.skb.data_off != UNKNOWN,
        Need::SkbLen => config.skb.len_off != UNKNOWN,
        Need::NetifSg => config.values.netif_f_sg != 0,
        Need::SkbDev => config.skb.dev_off != UNKNOWN && config.skb.netdev_ifindex_off != UNKNOWN,
        Need::SkbHeaders => {
            config.skb.head_off != UNKNOWN
                && config.skb.transport_header_off != UNKNOWN
                && config.skb.data_len_off != UNKNOWN
                && config.skb.netdev_ifindex_off != UNKNOWN
        }
    }
}

fn need_label(need: Need) -> &'static str {
    match need {
        Need::IovIter => "iov_iter.iter_type (iov_iter.type before 5.14) or its enum",
        Need::MsgHdr => "msghdr.msg_flags or msghdr.msg_iter",
        Need::RouteCaps => "sock.sk_route_caps",
        Need::SkbSk => "sk_buff.sk",
        Need::SkbData => "sk_buff.data",
        Need::SkbLen => "sk_buff.len",
        Need::NetifSg => "NETIF_F_SG_BIT",
        Need::SkbDev => "sk_buff.dev or net_device.ifindex",
        Need::SkbHeaders => {
            "sk_buff.head, sk_buff.transport_header, sk_buff.data_len or net_device.ifindex"
        }
    }
}

fn attach_candidate(
    ebpf: &mut Ebpf,
    c: &Candidate,
    formats: &Formats,
    btf: &Result<Btf, String>,
    kernel_btf: &Result<KernelBtf, String>,
    config: &Config,
) -> Result<(), AttachError> {
    if skipped_methods().iter().any(|m| m == c.method.label()) {
        return Err(AttachError::new(
            AttachFailure::Skipped,
            format!("skipped: {SKIP_METHODS_VAR} names {}", c.method.label()),
        ));
    }
    btf_requirements(c, config)?;
    if matches!(
        c.method,
        Method::Fexit | Method::Fentry | Method::Kprobe | Method::Kretprobe
    ) {
        // A clearer reason than the loader's when the function is simply not in this kernel.
        // A module's functions (btrfs_buffered_write) are not in vmlinux's BTF: kallsyms
        // lists them while the module is loaded, and a kprobe can reach them.
        if let Ok(b) = kernel_btf {
            if !b.has_function(c.target) {
                match module_of(c.target) {
                    None => {
                        return Err(AttachError::new(
                            AttachFailure::Absent,
                            format!("function {} is not in this kernel", c.target),
                        ))
                    }
                    Some(module) if !matches!(c.method, Method::Kprobe | Method::Kretprobe) => {
                        return Err(AttachError::new(
                            AttachFailure::InModule,
                            format!(
                                "function {} is in module {module}, whose BTF this loader \
                                 cannot attach {} programs to",
                                c.target,
                                c.method.label()
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            for half in c.halves() {
                if let (Some(expected), Some(real)) = (half.proto, b.func_proto(half.target)) {
                    expected.check(&real, half.method).map_err(|m| {
                        AttachError::new(
                            AttachFailure::PrototypeMismatch,
                            format!("function {}: {m}", half.target),
                        )
                    })?;
                }
            }
        }
    }
    let mut halves = c.halves();
    let first = halves.next().expect("a candidate has its own program");
    attach(
        ebpf,
        first.method,
        first.program,
        first.target,
        formats,
        btf,
    )?;
    for half in halves {
        if let Err(e) = attach(ebpf, half.method, half.program, half.target, formats, btf) {
            // Half a candidate would count nothing (or count wrongly): take it down again.
            if let Some(p) = ebpf.program_mut(first.program) {
                unload(p);
            }
            return Err(AttachError::new(
                e.kind,
                format!("{} {}: {}", half.method.label(), half.target, e.message),
            ));
        }
    }
    Ok(())
}

/// Attach methods to leave out, comma-separated ("fexit"): lets the kernel matrix exercise the
/// next method of every chain (kprobe+kretprobe) on kernels where the first one works.
pub const SKIP_METHODS_VAR: &str = "ZC_TRACE_SKIP_METHODS";

fn skipped_methods() -> Vec<String> {
    std::env::var(SKIP_METHODS_VAR)
        .map(|v| v.split(',').map(|m| m.trim().to_string()).collect())
        .unwrap_or_default()
}

/// The loaded module that defines text symbol `function`, from /proc/kallsyms
/// ("ffffffffc02eb1d0 t btrfs_buffered_write\t[btrfs]").
fn module_of(function: &str) -> Option<String> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").ok()?;
    module_in_kallsyms(&kallsyms, function)
}

fn module_in_kallsyms(kallsyms: &str, function: &str) -> Option<String> {
    kallsyms.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let (_, kind, name, module) = (words.next()?, words.next()?, words.next()?, words.next()?);
        (name == function && matches!(kind, "t" | "T"))
            .then(|| module.trim_matches(['[', ']']).to_string())
    })
}

fn unload(program: &mut aya::programs::Program) {
    use aya::programs::Program;
    let _ = match program {
        Program::TracePoint(p) => p.unload(),
        Program::BtfTracePoint(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        _ => Ok(()),
    };
}

fn attach(
    ebpf: &mut Ebpf,
    method: Method,
    program: &str,
    target: &str,
    formats: &Formats,
    btf: &Result<Btf, String>,
) -> Result<(), AttachError> {
    use AttachFailure::{Absent, BtfMissing, Other};
    let program = ebpf.program_mut(program).ok_or_else(|| {
        AttachError::new(
            Other,
            format!("program {program} missing from the eBPF object"),
        )
    })?;
    let needs_btf = || {
        btf.as_ref()
            .map_err(|e| AttachError::new(BtfMissing, format!("needs kernel BTF: {e}")))
    };
    let e = |e: aya::programs::ProgramError| {
        let kind = failure_kind(&e);
        // The whole verifier log, for whoever debugs a refusal (RUST_LOG=debug); the
        // message below keeps its first line and its reason.
        log::debug!("{} {target}: {e:?}", method.label());
        // "the BPF_PROG_LOAD syscall failed. Verifier output: : Operation not permitted" says
        // nothing a user can act on: say what the kernel refused.
        let message = match (kind, method) {
            (AttachFailure::NotPermitted, Method::Fexit | Method::Fentry) => format!(
                "this kernel refuses {} programs (EPERM at load: lockdown, a security \
                 module, or no ftrace direct calls; `zc-trace doctor` says which)",
                method.label()
            ),
            (AttachFailure::NotPermitted, _) => {
                let mut m = format!(
                    "the kernel refused the {} program (EPERM: lockdown or a security module?)",
                    method.label()
                );
                // A verifier that logged before the refusal said why: keep it.
                if matches!(&e, aya::programs::ProgramError::LoadError { verifier_log, .. }
                    if !verifier_log.to_string().trim().is_empty())
                {
                    m.push_str(": ");
                    m.push_str(&error_chain(&e));
                }
                m
            }
            _ => error_chain(&e),
        };
        AttachError::new(kind, message)
    };
    match method {
        Method::Tracepoint => {
            let format = formats
                .get(target)
                .ok_or_else(|| AttachError::new(Other, "no format read"))?
                .as_ref()
                .map_err(|e| AttachError::new(Absent, format!("event not available: {e}")))?;
            if let Some(f) = crate::kernel::tracepoints::event(target)
                .map_or(&[][..], |e| e.fields)
                .iter()
                .map(|f| f.name)
                .find(|f| format.field(f).is_none())
            {
                return Err(AttachError::new(
                    Other,
                    format!("field {f} missing from the event format"),
                ));
            }
            let (group, event) = target.split_once(':').expect("group:event");
            let tp: &mut TracePoint = program.try_into().map_err(e)?;
            tp.load().map_err(e)?;
            tp.attach(group, event).map_err(e)?;
        }
        Method::TpBtf => {
            let btf = needs_btf()?;
            let tp: &mut BtfTracePoint = program.try_into().map_err(e)?;
            tp.load(target, btf).map_err(e)?;
            tp.attach().map_err(e)?;
        }
        Method::Fexit => {
            let btf = needs_btf()?;
            let p: &mut FExit = program.try_into().map_err(e)?;
            p.load(target, btf).map_err(e)?;
            p.attach().map_err(e)?;
        }
        Method::Fentry => {
            let btf = needs_btf()?;
            let p: &mut FEntry = program.try_into().map_err(e)?;
            p.load(target, btf).map_err(e)?;
            p.attach().map_err(e)?;
        }
        Method::Kprobe | Method::Kretprobe => {
            // Without the kprobe PMU aya's error names a sysfs path; say what it means.
            if !crate::kernel::capabilities::kprobes_available() {
                return Err(AttachError::new(
                    AttachFailure::MethodUnavailable,
                    "kprobes are not in this kernel (no kprobe PMU in \
                     /sys/bus/event_source/devices; CONFIG_KPROBES off?)",
                ));
            }
            let p: &mut KProbe = program.try_into().map_err(e)?;
            p.load().map_err(e)?;
            p.attach(target, 0).map_err(e)?;
        }
        Method::RawTracepoint => {
            return Err(AttachError::new(
                Other,
                "raw tracepoints are not used by any hook",
            ))
        }
    }
    Ok(())
}

/// An error and its sources on one line (aya's load errors carry the errno in a source).
/// The kind of an aya program error: the kernel's errno where one is in the chain (EPERM and
/// EACCES: not permitted), a verifier log where the load was refused. Absence is only ever
/// decided by zc-trace's own checks (BTF, kallsyms, tracefs), never guessed from an errno.
fn failure_kind(e: &aya::programs::ProgramError) -> AttachFailure {
    use aya::programs::ProgramError;
    if let ProgramError::LoadError {
        verifier_log,
        io_error,
    } = e
    {
        // The verifier refuses many accesses with EACCES, and says why in its log; lockdown
        // and security modules refuse before it runs, with an empty log.
        let logged = !verifier_log.to_string().trim().is_empty();
        match io_error.raw_os_error() {
            Some(nix::libc::EPERM) => return AttachFailure::NotPermitted,
            Some(nix::libc::EACCES) if !logged => return AttachFailure::NotPermitted,
            _ if logged => return AttachFailure::VerifierRefused,
            _ => {}
        }
    }
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(nix::libc::EPERM | nix::libc::EACCES) = io.raw_os_error() {
                return AttachFailure::NotPermitted;
            }
        }
        cur = err.source();
    }
    AttachFailure::Other
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = inner.source();
    }
    // A verifier log can be long: its first line says what failed; why is the line before
    // its statistics (the instruction it refused), then the "processed N insns" summary and
    // the errno. The statistics are "processed ..." with, on some kernels and log levels,
    // "stack depth ..." and "verification time ..." before it (6.1 prints stack depth).
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let is_statistic =
        |l: &str| l.starts_with("stack depth ") || l.starts_with("verification time ");
    let tail_from = lines
        .iter()
        .rposition(|l| l.starts_with("processed "))
        .map_or(lines.len().saturating_sub(2), |mut p| {
            while p > 0 && is_statistic(lines[p - 1]) {
                p -= 1;
            }
            p.saturating_sub(1)
        });
    match lines.len() {
        0..=3 => lines.join(" | "),
        _ if tail_from <= 1 => lines.join(" | "),
        _ => format!("{} | ... | {}", lines[0], lines[tail_from..].join(" | ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every program the probe plan names (both halves of a candidate) is in the embedded
    /// object, so a renamed or forgotten program fails here, without root, rather than as an
    /// attach error on some kernel.
    #[test]
    fn the_embedded_object_has_every_program_of_the_plan() {
        let object = aya_obj::Object::parse(OBJECT).expect("the embedded object parses");
        let mut missing = Vec::new();
        for hook in crate::kernel::probes::PLAN {
            for c in hook.candidates {
                for p in c.halves().map(|half| half.program) {
                    if !object.programs.contains_key(p) {
                        missing.push(format!("{} ({})", p, hook.id.name()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "not in the eBPF object: {missing:?}");
        assert!(object.programs.len() >= 30, "{}", object.programs.len());
    }

    /// The refused instruction's line is kept: it comes before the summary, and was cut off
    /// (6.1's refusal read "... | processed 3588 insns ... | : Invalid argument").
    #[test]
    fn a_verifier_log_keeps_its_first_line_and_the_reason_before_the_summary() {
        let log = "the BPF_PROG_LOAD syscall failed. Verifier output: 0: R1=ctx\n\
                   1: (bf) r6 = r1\n\
                   2: (71) r1 = *(u8 *)(r2 +880)\n\
                   R2 unbounded memory access, make sure to bounds check any such access\n\
                   processed 3588 insns (limit 1000000) max_states_per_insn 5\n";
        let e = std::io::Error::other(log);
        let text = error_chain(&e);
        assert_eq!(
            text,
            "the BPF_PROG_LOAD syscall failed. Verifier output: 0: R1=ctx | ... | R2 unbounded \
             memory access, make sure to bounds check any such access | processed 3588 insns \
             (limit 1000000) max_states_per_insn 5"
        );
        // 6.1 prints the stack depth between the reason and the summary.
        let log = "Verifier output: 0: R1=ctx\n\
                   1: (bf) r6 = r1\n\
                   2: (71) r1 = *(u8 *)(r2 +880)\n\
                   R2 unbounded memory access\n\
                   verification time 9 usec\n\
                   stack depth 168+0+0+0+0\n\
                   processed 3588 insns (limit 1000000)\n";
        assert_eq!(
            error_chain(&std::io::Error::other(log)),
            "Verifier output: 0: R1=ctx | ... | R2 unbounded memory access | verification time \
             9 usec | stack depth 168+0+0+0+0 | processed 3588 insns (limit 1000000)"
        );
        assert_eq!(error_chain(&std::io::Error::other("a\nb")), "a | b");
    }

    #[test]
    fn module_functions_are_found_in_kallsyms() {
        let kallsyms = "ffffffff81000000 T _text\n\
                        ffffffffc02eb1d0 t btrfs_buffered_write\t[btrfs]\n\
                        ffffffffc02eb2d0 d btrfs_data\t[btrfs]\n";
        assert_eq!(
            module_in_kallsyms(kallsyms, "btrfs_buffered_write").as_deref(),
            Some("btrfs")
        );
        assert_eq!(module_in_kallsyms(kallsyms, "btrfs_data"), None, "not text");
        assert_eq!(
            module_in_kallsyms(kallsyms, "_text"),
            None,
            "not in a module"
        );
        assert_eq!(module_in_kallsyms(kallsyms, "absent"), None);
    }
}
