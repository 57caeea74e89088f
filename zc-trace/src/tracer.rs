//! Loads the embedded eBPF object, walks the probe plan (first attach method that works wins),
//! and reads the in-kernel aggregates. The programs never stream events: user space reads the
//! per-CPU totals once before and once after each run.

use std::collections::HashMap;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use zc_trace_common::{role, Config, RoleStats, TaskState, NO_SYSCALL};

use crate::capabilities::HostFacts;
use crate::error::{EnvError, RunError};
use crate::probes::{AttachReport, Attempt, Candidate, HookOutcome, Method, PLAN};
use crate::tracefs::EventFormat;

/// The compiled programs, rebuilt from zc-trace-ebpf by `cargo xtask build-ebpf` and checked
/// against their source in CI.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../ebpf/zc-trace.bpf.o");

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

pub struct Tracer {
    ebpf: Ebpf,
    report: AttachReport,
}

impl Tracer {
    pub fn load(host: &HostFacts, tracefs: &Path) -> Result<Self, EnvError> {
        let formats = read_formats(tracefs);
        let config = build_config(&formats);
        let mut ebpf = EbpfLoader::new()
            .set_global("CONFIG", &config, true)
            .load(OBJECT)
            .map_err(|e| EnvError::Load(error_chain(&e)))?;
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
                target: None,
                failed: Vec::new(),
            };
            for c in hook.candidates {
                match attach(&mut ebpf, c, &formats, &btf) {
                    Ok(()) => {
                        outcome.method = Some(c.method);
                        outcome.target = Some(c.target);
                        break;
                    }
                    Err(error) => outcome.failed.push(Attempt {
                        method: c.method,
                        target: c.target,
                        error,
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
                outcome.method.map_or("not observable".into(), |m| format!(
                    "{} {}",
                    m.label(),
                    outcome.target.unwrap_or("")
                ))
            );
            outcomes.push(outcome);
        }
        Ok(Tracer {
            ebpf,
            report: AttachReport { hooks: outcomes },
        })
    }

    pub fn attach_report(&self) -> &AttachReport {
        &self.report
    }

    /// Count everything `tid` does from now on under `role` (used for the receiver process,
    /// whose every syscall is part of the transfer).
    pub fn track(&mut self, tid: u32, role: u32) -> Result<(), RunError> {
        let mut tasks: BpfHashMap<&mut MapData, u32, TaskState> =
            BpfHashMap::try_from(self.ebpf.map_mut("TASKS").expect("TASKS is in the object"))
                .map_err(|e| RunError::Maps(e.to_string()))?;
        let state = TaskState {
            role,
            active: 1,
            pending_nr: NO_SYSCALL,
            ..Default::default()
        };
        tasks
            .insert(tid, state, 0)
            .map_err(|e| RunError::Maps(format!("tracking tid {tid}: {e}")))
    }

    /// The state of a tracked thread (window timestamps, window count).
    pub fn task(&self, tid: u32) -> Option<TaskState> {
        let tasks: BpfHashMap<&MapData, u32, TaskState> =
            BpfHashMap::try_from(self.ebpf.map("TASKS")?).ok()?;
        tasks.get(&tid, 0).ok()
    }

    /// The role's counters summed over all CPUs.
    pub fn snapshot(&self, role_id: u32) -> Result<Box<RoleStats>, RunError> {
        debug_assert!(role_id < role::COUNT);
        let stats: PerCpuArray<&MapData, RoleStats> =
            PerCpuArray::try_from(self.ebpf.map("STATS").expect("STATS is in the object"))
                .map_err(|e| RunError::Maps(e.to_string()))?;
        let per_cpu = stats
            .get(&role_id, 0)
            .map_err(|e| RunError::Maps(e.to_string()))?;
        let mut total = Box::new(RoleStats::zeroed());
        for cpu in per_cpu.iter() {
            for (t, c) in total.counters.iter_mut().zip(cpu.counters.iter()) {
                *t += c;
            }
            for (t, c) in total.syscalls.iter_mut().zip(cpu.syscalls.iter()) {
                t.enters += c.enters;
                t.exits += c.exits;
                t.ret_positive_sum += c.ret_positive_sum;
                t.errors += c.errors;
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
    for c in PLAN.iter().flat_map(|h| h.candidates) {
        if c.method != Method::Tracepoint {
            continue;
        }
        let (group, event) = c.target.split_once(':').expect("group:event");
        formats.insert(
            c.target,
            EventFormat::read(tracefs, group, event).map_err(|e| e.to_string()),
        );
    }
    formats
}

fn build_config(formats: &Formats) -> Config {
    let off = |event: &str, field: &str| -> u32 {
        formats
            .get(event)
            .and_then(|f| f.as_ref().ok())
            .and_then(|f| f.field(field))
            .map_or(0, |f| f.offset)
    };
    Config {
        sender_tgid: std::process::id(),
        close_nr: nix::libc::SYS_close as u32,
        sys_enter_id_off: off("raw_syscalls:sys_enter", "id"),
        sys_enter_args_off: off("raw_syscalls:sys_enter", "args"),
        sys_exit_id_off: off("raw_syscalls:sys_exit", "id"),
        sys_exit_ret_off: off("raw_syscalls:sys_exit", "ret"),
        sched_prev_pid_off: off("sched:sched_switch", "prev_pid"),
        sched_prev_state_off: off("sched:sched_switch", "prev_state"),
        sched_preempt_state_bit: TASK_REPORT_MAX,
        fault_address_off: off("exceptions:page_fault_kernel", "address"),
        skb_copy_len_off: off("skb:skb_copy_datagram_iovec", "len"),
        user_address_limit: USER_ADDRESS_LIMIT,
    }
}

/// Fields each classic tracepoint program reads; the candidate is refused up front when one is
/// missing from this kernel's format rather than reading at a wrong offset.
fn required_fields(target: &str) -> &'static [&'static str] {
    match target {
        "raw_syscalls:sys_enter" => &["id", "args"],
        "raw_syscalls:sys_exit" => &["id", "ret"],
        "sched:sched_switch" => &["prev_pid", "prev_state"],
        "exceptions:page_fault_kernel" => &["address"],
        "skb:skb_copy_datagram_iovec" => &["len"],
        _ => &[],
    }
}

fn attach(
    ebpf: &mut Ebpf,
    c: &Candidate,
    formats: &Formats,
    btf: &Result<Btf, String>,
) -> Result<(), String> {
    let program = ebpf
        .program_mut(c.program)
        .ok_or_else(|| format!("program {} missing from the eBPF object", c.program))?;
    match c.method {
        Method::Tracepoint => {
            let format = formats
                .get(c.target)
                .ok_or("no format read")?
                .as_ref()
                .map_err(|e| format!("event not available: {e}"))?;
            if let Some(f) = required_fields(c.target)
                .iter()
                .find(|f| format.field(f).is_none())
            {
                return Err(format!("field {f} missing from the event format"));
            }
            let (group, event) = c.target.split_once(':').expect("group:event");
            let tp: &mut TracePoint = program.try_into().map_err(|e| error_chain(&e))?;
            tp.load().map_err(|e| error_chain(&e))?;
            tp.attach(group, event).map_err(|e| error_chain(&e))?;
        }
        Method::TpBtf => {
            let btf = btf.as_ref().map_err(|e| format!("needs kernel BTF: {e}"))?;
            let tp: &mut BtfTracePoint = program.try_into().map_err(|e| error_chain(&e))?;
            tp.load(c.target, btf).map_err(|e| error_chain(&e))?;
            tp.attach().map_err(|e| error_chain(&e))?;
        }
        other => return Err(format!("{} is not implemented yet", other.label())),
    }
    Ok(())
}

/// An error and its sources on one line (aya's load errors carry the errno in a source).
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
    // The verifier log can be long; the first line names the problem.
    s.lines().next().unwrap_or("").to_string()
}
