//! The report's data model (the JSON schema, version 1) and how figures are computed from the
//! samples. Every figure is observed at a named hook, derived from observed figures (the
//! formula is stated), an input, or marked not observable with the reason.

use std::collections::BTreeMap;

use serde::Serialize;
use zc_trace_common::{class, counter};

pub use super::sample::{RoleSample, Sample};

use super::stat::Stat;
use crate::kernel::capabilities::HostFacts;
use crate::kernel::probes::{AttachReport, CopySite, Fallback, HookId, HookOutcome, LegId, PLAN};
use crate::kernel::syscall_names;
use crate::transfer::sink::SinkKind;
use crate::transfer::strategies::Strategy;

pub const SCHEMA_VERSION: u32 = 1;

/// Where a figure comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Provenance {
    /// Counted by an eBPF program.
    Observed {
        /// The kernel site ("group:event" or function).
        hook: String,
        /// The attach method, e.g. "fexit", "kprobe+kretprobe", "tracepoint".
        method: String,
        detail: String,
    },
    /// Computed from observed figures; `from` states the formula.
    Derived { from: String },
    /// Given to the run (and checked).
    Input { from: String },
    /// This kernel offers no way to observe it; `reason` says why.
    NotObservable { reason: String },
    /// Counted at the hooks `from` names, but the byte ledger shows they did not see every
    /// byte (or saw more than moved); `reason` gives the leg and the gap. Claims are not graded
    /// on it.
    Incomplete { from: String, reason: String },
}

impl Provenance {
    pub fn describe(&self) -> String {
        match self {
            Provenance::Observed {
                hook,
                method,
                detail,
            } => format!("observed at {hook} ({method}); {detail}"),
            Provenance::Derived { from } => format!("derived: {from}"),
            Provenance::Input { from } => format!("input: {from}"),
            Provenance::NotObservable { reason } => format!("not observable here: {reason}"),
            Provenance::Incomplete { from, reason } => {
                format!("observed, incomplete: {reason} ({from})")
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub unit: &'static str,
    /// Absent when not observable.
    pub value: Option<Stat>,
    pub provenance: Provenance,
}

/// The figures of one strategy. Field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub syscalls: Figure,
    pub transitions: Figure,
    pub page_faults_user_mode: Figure,
    pub page_faults_kernel_mode: Figure,
    pub context_switches_voluntary: Figure,
    pub context_switches_involuntary: Figure,
    pub payload_bytes: Figure,
    pub time_ns: Figure,
    pub throughput_bytes_per_sec: Figure,
    /// Sender: every byte the CPU copied, all classes, all copy sites.
    pub cpu_copied_bytes: Figure,
    pub copied_user_to_kernel_bytes: Figure,
    pub copied_kernel_to_user_bytes: Figure,
    pub copied_kernel_to_kernel_bytes: Figure,
    /// Sender: bytes that entered the socket as page references (no CPU copy).
    pub by_reference_bytes: Figure,
    pub receiver_copied_bytes: Figure,
    /// Block-device bytes the sender's reads and writes submitted (DMA on real hardware).
    pub device_read_bytes: Figure,
    pub device_write_bytes: Figure,
    /// Payload of the sender's frames handed to a device that reads them by DMA (a remote
    /// sink's route device), in the frames' linear parts and in their page fragments.
    pub nic_transmit_linear_bytes: Figure,
    pub nic_transmit_frag_bytes: Figure,
}

impl Figures {
    /// Every figure, for a change that applies to all of them.
    pub fn each_mut(&mut self) -> [&mut Figure; 19] {
        [
            &mut self.syscalls,
            &mut self.transitions,
            &mut self.page_faults_user_mode,
            &mut self.page_faults_kernel_mode,
            &mut self.context_switches_voluntary,
            &mut self.context_switches_involuntary,
            &mut self.payload_bytes,
            &mut self.time_ns,
            &mut self.throughput_bytes_per_sec,
            &mut self.cpu_copied_bytes,
            &mut self.copied_user_to_kernel_bytes,
            &mut self.copied_kernel_to_user_bytes,
            &mut self.copied_kernel_to_kernel_bytes,
            &mut self.by_reference_bytes,
            &mut self.receiver_copied_bytes,
            &mut self.device_read_bytes,
            &mut self.device_write_bytes,
            &mut self.nic_transmit_linear_bytes,
            &mut self.nic_transmit_frag_bytes,
        ]
    }

    /// (JSON key, column label, figure), in display order.
    pub fn columns(&self) -> [(&'static str, &'static str, &Figure); 19] {
        [
            ("syscalls", "Syscalls", &self.syscalls),
            (
                "transitions",
                "User<->kernel transitions",
                &self.transitions,
            ),
            (
                "page_faults_user_mode",
                "Page faults (user mode)",
                &self.page_faults_user_mode,
            ),
            (
                "page_faults_kernel_mode",
                "Page faults (in kernel, on user memory)",
                &self.page_faults_kernel_mode,
            ),
            (
                "context_switches_voluntary",
                "Scheduler context switches (voluntary)",
                &self.context_switches_voluntary,
            ),
            (
                "context_switches_involuntary",
                "Scheduler context switches (involuntary)",
                &self.context_switches_involuntary,
            ),
            ("payload_bytes", "Payload", &self.payload_bytes),
            ("time_ns", "Time", &self.time_ns),
            (
                "throughput_bytes_per_sec",
                "Throughput",
                &self.throughput_bytes_per_sec,
            ),
            (
                "cpu_copied_bytes",
                "CPU copied (sender)",
                &self.cpu_copied_bytes,
            ),
            (
                "copied_user_to_kernel_bytes",
                "Copied user->kernel",
                &self.copied_user_to_kernel_bytes,
            ),
            (
                "copied_kernel_to_user_bytes",
                "Copied kernel->user",
                &self.copied_kernel_to_user_bytes,
            ),
            (
                "copied_kernel_to_kernel_bytes",
                "Copied kernel->kernel",
                &self.copied_kernel_to_kernel_bytes,
            ),
            (
                "by_reference_bytes",
                "By reference (into the socket)",
                &self.by_reference_bytes,
            ),
            (
                "receiver_copied_bytes",
                "Receiver copied",
                &self.receiver_copied_bytes,
            ),
            ("device_read_bytes", "Device reads", &self.device_read_bytes),
            (
                "device_write_bytes",
                "Device writes",
                &self.device_write_bytes,
            ),
            (
                "nic_transmit_linear_bytes",
                "NIC transmit (DMA), linear",
                &self.nic_transmit_linear_bytes,
            ),
            (
                "nic_transmit_frag_bytes",
                "NIC transmit (DMA), fragments",
                &self.nic_transmit_frag_bytes,
            ),
        ]
    }
}

/// One copy site's bytes per class, for one strategy (sender).
#[derive(Debug, Clone, Serialize)]
pub struct CopySiteReport {
    pub site: SiteId,
    pub description: &'static str,
    pub provenance: Provenance,
    /// Absent when not observable.
    pub bytes: Option<ClassBytes>,
}

/// A copy site of the report: a hook of the plan, or the kernel's own reports of zero-copy
/// sends it copied after all (read after the window, not a hook). Serialised, and printed, as
/// its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteId {
    Hook(HookId),
    ZerocopyCompletion,
}

impl SiteId {
    pub fn name(self) -> &'static str {
        match self {
            SiteId::Hook(h) => h.name(),
            SiteId::ZerocopyCompletion => "zerocopy_completion",
        }
    }
}

impl std::fmt::Display for SiteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for SiteId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassBytes {
    pub user_to_kernel: Stat,
    pub kernel_to_user: Stat,
    pub kernel_to_kernel: Stat,
    pub by_reference: Stat,
}

/// How a copy site moved bytes (`zc_trace_common::class` in the kernel's counters): its
/// `key` is ClassBytes' JSON key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    UserToKernel,
    KernelToUser,
    KernelToKernel,
    ByReference,
}

impl Class {
    pub fn key(self) -> &'static str {
        match self {
            Class::UserToKernel => "user_to_kernel",
            Class::KernelToUser => "kernel_to_user",
            Class::KernelToKernel => "kernel_to_kernel",
            Class::ByReference => "by_reference",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl ClassBytes {
    pub fn get(&self, class: Class) -> &Stat {
        match class {
            Class::UserToKernel => &self.user_to_kernel,
            Class::KernelToUser => &self.kernel_to_user,
            Class::KernelToKernel => &self.kernel_to_kernel,
            Class::ByReference => &self.by_reference,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyscallFigures {
    pub count: Stat,
    /// Sum of the bytes the calls returned (their non-negative return values); null for a
    /// call whose return is no byte count (mmap's is an address, openat's a descriptor: see
    /// `syscall_names::returns_bytes`).
    pub returned: Option<Stat>,
    pub errors: Stat,
    /// Calls that returned 0: for read-like calls, end of file (they moved nothing).
    pub zero_returns: Stat,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategyReport {
    pub id: &'static str,
    pub name: &'static str,
    pub summary: &'static str,
    /// The sink this strategy sent to.
    pub sink: crate::transfer::sink::SinkKind,
    pub figures: Figures,
    /// The sender's copy sites, each with its own provenance; the copy figures are their sums.
    pub copy_sites: Vec<CopySiteReport>,
    /// Per syscall name, sender only; provenance as for `figures.syscalls`.
    pub syscalls_by_name: BTreeMap<String, SyscallFigures>,
    /// The byte ledger of the sender's legs (see `ledger`).
    pub ledger: Vec<super::ledger::LedgerLeg>,
    /// TCP sinks: the share (0 to 1) of the connection's send time that the receiver's
    /// window held the sender back (tcp_info.tcpi_rwnd_limited / tcpi_busy_time); null for
    /// other sinks. At RECEIVER_BOUND or more, the throughput is the receiver's.
    pub receiver_window_limited: Option<Stat>,
}

/// From this share of its send time held back by the receiver's window on, a TCP sink's
/// throughput is the receiver's pace, not the strategy's: the report says so.
pub const RECEIVER_BOUND: f64 = 0.5;

impl StrategyReport {
    /// The median share of the send time the receiver held the sender back, when it is at
    /// least [`RECEIVER_BOUND`].
    pub fn receiver_bound(&self) -> Option<f64> {
        self.receiver_window_limited
            .as_ref()
            .map(|s| s.median)
            .filter(|&m| m >= RECEIVER_BOUND)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub payload_bytes: u64,
    pub chunk_bytes: u64,
    pub iterations: u32,
    pub cold: bool,
    pub source: String,
    pub source_fs: String,
    /// The sink chosen with --sink (strategies with a fixed sink say so in their own `sink`).
    pub sink: crate::transfer::sink::SinkKind,
    pub sink_description: String,
    /// Scatter-gather on the sink's route; null when the sink has no network route.
    pub sink_scatter_gather: Option<bool>,
    /// How the receiver process consumes the data; null when the sink has none.
    pub receiver: Option<String>,
    /// The device a remote sink's route goes through; null for the other sinks.
    pub sink_device: Option<crate::transfer::sink::SinkDevice>,
    /// Selected strategies that cannot use this sink, with the reason.
    pub skipped: Vec<SkippedStrategy>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedStrategy {
    pub strategy: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub tool: Tool,
    pub host: HostFacts,
    pub config: RunConfig,
    pub probes: Vec<HookOutcome>,
    pub strategies: Vec<StrategyReport>,
    /// The verdict on every claim about a strategy that ran.
    pub claims: Option<crate::report::claims::ClaimsReport>,
}

pub fn build(
    host: HostFacts,
    config: RunConfig,
    probes: &AttachReport,
    runs: Vec<(
        &'static dyn Strategy,
        crate::transfer::sink::SinkKind,
        bool,
        Vec<Sample>,
    )>,
) -> Report {
    let strategies = runs
        .into_iter()
        .map(|(s, sink, has_receiver, samples)| {
            let label = Label {
                id: s.id(),
                name: s.name(),
                summary: s.summary(),
            };
            let route = super::ledger::SinkRoute {
                kind: sink,
                scatter_gather: config.sink_scatter_gather,
            };
            program_report(
                probes,
                label,
                route,
                has_receiver,
                &config.source_fs,
                config.sink_device.as_ref().filter(|_| sink == config.sink),
                samples,
            )
        })
        .collect();
    Report {
        schema: SCHEMA_VERSION,
        tool: Tool {
            name: "zc-trace",
            version: env!("CARGO_PKG_VERSION"),
        },
        host,
        config,
        probes: probes.hooks.clone(),
        strategies,
        claims: None,
    }
}

/// What a report row is called: a strategy's names, or a traced program's.
pub struct Label {
    pub id: &'static str,
    pub name: &'static str,
    pub summary: &'static str,
}

/// One row of figures, with its copy sites, syscalls and ledger: a strategy of `run`, or the
/// program `trace` followed.
pub fn program_report(
    probes: &AttachReport,
    label: Label,
    route: super::ledger::SinkRoute,
    has_receiver: bool,
    source_fs: &str,
    device: Option<&crate::transfer::sink::SinkDevice>,
    samples: Vec<Sample>,
) -> StrategyReport {
    let sink = route.kind;
    let mut ledger = super::ledger::sender_ledger(probes, &samples, source_fs, route);
    if device.is_some_and(|d| d.dma) {
        ledger.push(super::ledger::nic_leg(probes, &samples));
    }
    let unbalanced = super::ledger::unbalanced_sites(&ledger);
    let receiver_window_limited = if samples.iter().all(|s| s.send_time.is_some()) {
        stat(&samples, |s| {
            s.send_time.map_or(0.0, |t| t.receiver_share())
        })
    } else {
        None
    };
    let mut report = StrategyReport {
        id: label.id,
        name: label.name,
        summary: label.summary,
        sink,
        receiver_window_limited,
        figures: figures(probes, &samples, has_receiver, sink, device, &unbalanced),
        copy_sites: sender_sites()
            .into_iter()
            .map(|h| copy_site(probes, probes.get(h), &samples))
            .chain(zerocopy_site(&samples))
            .collect(),
        syscalls_by_name: by_name(&samples),
        ledger,
    };
    if let Some(share) = report.receiver_bound() {
        if let Provenance::Derived { from } =
            &mut report.figures.throughput_bytes_per_sec.provenance
        {
            from.push_str(&format!(
                "; the receiver set this pace, not the strategy: its receive window held the \
                 sender back {:.0}% of the time it had data to send (tcp_info)",
                share * 100.0
            ));
        }
    }
    report
}

fn stat(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<Stat> {
    Stat::of(samples.iter().map(f).collect())
}

/// Provenance of a figure counted at `hook`, or why it is not observable.
fn observed(hook: &HookOutcome, detail: &str) -> Provenance {
    match (&hook.method_label, &hook.target) {
        (Some(method), Some(target)) => Provenance::Observed {
            hook: target.clone(),
            method: method.clone(),
            detail: detail.to_string(),
        },
        _ => Provenance::NotObservable {
            reason: format!(
                "no attach method worked for {}: {}",
                hook.site,
                hook.why_not()
            ),
        },
    }
}

fn figure(unit: &'static str, provenance: Provenance, value: Option<Stat>) -> Figure {
    let value = match provenance {
        Provenance::NotObservable { .. } => None,
        _ => value,
    };
    Figure {
        unit,
        value,
        provenance,
    }
}

fn figures(
    probes: &AttachReport,
    samples: &[Sample],
    has_receiver: bool,
    sink: SinkKind,
    device: Option<&crate::transfer::sink::SinkDevice>,
    unbalanced: &[(HookId, String)],
) -> Figures {
    // Sender copy totals over sites of a leg that does not balance are incomplete.
    let copy_total = |probes: &AttachReport,
                      samples: &[Sample],
                      classes: &[usize],
                      sites: &[HookId],
                      side: Side,
                      sink: SinkKind| {
        let f = copy_total(probes, samples, classes, sites, side, sink);
        incomplete_if(f, sites, unbalanced, side)
    };
    const SENDER: &str =
        "sender thread only (tid filter in the kernel), inside the measured window";
    let c =
        |role: fn(&Sample) -> &RoleSample, i: usize| move |s: &Sample| role(s).counter(i) as f64;
    fn sender(s: &Sample) -> &RoleSample {
        &s.sender
    }

    let enter = probes.get(HookId::SyscallEnter);
    let fault_user = probes.get(HookId::FaultUserMode);
    let fault_kernel = probes.get(HookId::FaultKernelMode);
    let csw = probes.get(HookId::ContextSwitch);

    let syscalls = figure(
        "count",
        observed(enter, SENDER),
        stat(samples, c(sender, counter::SYSCALL_ENTERS)),
    );

    // Each syscall is one entry and one exit; each user-mode fault is one more round trip.
    let faults_seen = fault_user.method.is_some();
    let transitions = figure(
        "count",
        Provenance::Derived {
            from: if faults_seen {
                "syscall entries (raw_syscalls:sys_enter) + syscall exits (raw_syscalls:sys_exit, \
                 rt_sigreturn's included) + first returns of new tasks (their sys_exit from \
                 fork or clone) + 2 x user-mode page faults (exceptions:page_fault_user)"
                    .into()
            } else {
                "syscall entries + syscall exits + first returns of new tasks only: user-mode \
                 page faults are not observable here, so their round trips are missing"
                    .into()
            },
        },
        stat(samples, |s| {
            let k = |i| s.sender.counter(i);
            let faults = if faults_seen {
                k(counter::FAULTS_USER_MODE)
            } else {
                0
            };
            (k(counter::SYSCALL_ENTERS)
                + k(counter::SYSCALL_EXITS)
                + k(counter::FIRST_RETURNS)
                + 2 * faults) as f64
        }),
    );

    let time_ns = figure(
        "ns",
        observed(
            enter,
            "bpf_ktime_get_ns() at the start and stop markers (close(0x7a637401/2))",
        ),
        stat(samples, |s| s.window_ns as f64),
    );
    let throughput = figure(
        "bytes/s",
        Provenance::Derived {
            from: "payload_bytes / time_ns".into(),
        },
        stat(samples, |s| {
            if s.window_ns == 0 {
                0.0
            } else {
                (s.bytes as f64 * 1e9 / s.window_ns as f64).round()
            }
        }),
    );

    let nic = |counter_id: usize, part: &str| -> Figure {
        let value = stat(samples, c(sender, counter_id));
        match device.filter(|d| d.dma) {
            Some(d) => figure(
                "bytes",
                observed(
                    probes.get(HookId::NicTransmit),
                    &format!(
                        "payload of the sender's frames handed to {} ({}) for transmit, in \
                         their {part}: the device reads it from memory by DMA (retransmitted \
                         segments again)",
                        d.name,
                        d.driver.as_deref().unwrap_or("?")
                    ),
                ),
                value,
            ),
            None => figure(
                "bytes",
                Provenance::NotObservable {
                    reason: "no device reads this sink's frames by DMA: loopback and veth \
                             hand socket buffers to the receiving socket by reference (use \
                             --sink tcp:HOST:PORT through a NIC)"
                        .into(),
                },
                None,
            ),
        }
    };
    let nic_transmit_linear_bytes = nic(counter::NIC_TX_LINEAR_BYTES, "linear parts");
    let nic_transmit_frag_bytes = nic(
        counter::NIC_TX_FRAG_BYTES,
        "page fragments (with scatter-gather, read where they are: the page cache for \
         sendfile and splice)",
    );
    let device = probes.get(HookId::DeviceIo);
    let device_detail = "block I/O the sender thread submitted (submit_bio); DMA on real \
                         hardware, a host-side copy on virtio; 0 with a warm page cache";
    Figures {
        nic_transmit_linear_bytes,
        nic_transmit_frag_bytes,
        device_read_bytes: figure(
            "bytes",
            observed(device, device_detail),
            stat(samples, c(sender, counter::DEVICE_READ_BYTES)),
        ),
        device_write_bytes: figure(
            "bytes",
            observed(device, device_detail),
            stat(samples, c(sender, counter::DEVICE_WRITE_BYTES)),
        ),
        syscalls,
        transitions,
        page_faults_user_mode: figure(
            "count",
            observed(fault_user, SENDER),
            stat(samples, c(sender, counter::FAULTS_USER_MODE)),
        ),
        page_faults_kernel_mode: figure(
            "count",
            observed(
                fault_kernel,
                "faults on user addresses taken inside a syscall (e.g. write() reading an \
                 unmapped mmap page); sender thread only",
            ),
            stat(samples, c(sender, counter::FAULTS_KERNEL_MODE)),
        ),
        context_switches_voluntary: figure(
            "count",
            observed(
                csw,
                "the sender thread blocked (not a preemption); sender only",
            ),
            stat(samples, c(sender, counter::CSW_VOLUNTARY)),
        ),
        context_switches_involuntary: figure(
            "count",
            observed(
                csw,
                "the sender thread was preempted while runnable; sender only",
            ),
            stat(samples, c(sender, counter::CSW_INVOLUNTARY)),
        ),
        payload_bytes: figure(
            "bytes",
            payload_provenance(
                samples.iter().filter(|s| s.received.is_some()).count(),
                samples.len(),
            ),
            stat(samples, |s| s.bytes as f64),
        ),
        time_ns,
        throughput_bytes_per_sec: throughput,
        receiver_copied_bytes: if has_receiver {
            copy_total(
                probes,
                samples,
                &[class::KERNEL_TO_USER, class::KERNEL_TO_KERNEL],
                &receiver_sites(),
                Side::Receiver,
                sink,
            )
        } else if sink == SinkKind::Remote {
            figure(
                "bytes",
                Provenance::NotObservable {
                    reason: "the receiver runs on the other machine (zc-trace receive there \
                             counts what it received, not its copies)"
                        .into(),
                },
                None,
            )
        } else {
            // Nothing reads a file or /dev/null: no receiver, so no receive copy (a student
            // read "not observable" as "happened but unseen").
            figure(
                "bytes",
                Provenance::Derived {
                    from: "0: this sink has no receiver (a file or /dev/null is not read)".into(),
                },
                stat(samples, |_| 0.0),
            )
        },
        cpu_copied_bytes: copy_total(
            probes,
            samples,
            &[
                class::USER_TO_KERNEL,
                class::KERNEL_TO_USER,
                class::KERNEL_TO_KERNEL,
            ],
            &sender_sites(),
            Side::Sender,
            sink,
        ),
        copied_user_to_kernel_bytes: copy_total(
            probes,
            samples,
            &[class::USER_TO_KERNEL],
            &sender_sites(),
            Side::Sender,
            sink,
        ),
        copied_kernel_to_user_bytes: copy_total(
            probes,
            samples,
            &[class::KERNEL_TO_USER],
            &sender_sites(),
            Side::Sender,
            sink,
        ),
        copied_kernel_to_kernel_bytes: copy_total(
            probes,
            samples,
            &[class::KERNEL_TO_KERNEL],
            &sender_sites(),
            Side::Sender,
            sink,
        ),
        by_reference_bytes: copy_total(
            probes,
            samples,
            &[class::BY_REFERENCE],
            &socket_sites(),
            Side::Sender,
            sink,
        ),
    }
}

/// The copy sites of the catalogue that `keep` selects, in its order (the order data flows).
fn sites_where(keep: impl Fn(&CopySite) -> bool) -> Vec<HookId> {
    PLAN.iter()
        .filter(|h| h.copy.as_ref().is_some_and(&keep))
        .map(|h| h.id)
        .collect()
}

/// The sender's copy sites.
fn sender_sites() -> Vec<HookId> {
    sites_where(|c| c.side.sender())
}

/// Where the receiver process copies: out of a socket, or out of a pipe (FIFO sink).
fn receiver_sites() -> Vec<HookId> {
    sites_where(|c| c.side.receiver())
}

/// Sites where bytes enter the socket (the socket leg's): "by reference" counts here, so that
/// the file->pipe leg of splice/sendfile (also by reference) is not counted a second time.
pub(super) fn socket_sites() -> Vec<HookId> {
    sites_where(|c| c.leg == Some(LegId::SocketSend))
}

/// How a site's bytes per class are obtained on this kernel, and the per-sample values.
fn site_source(hook: &HookOutcome) -> (Provenance, SiteValues) {
    let site = hook.hook.copy().expect("a copy-site hook");
    if hook.method.is_some() {
        return (
            observed(hook, hook.detail.unwrap_or(site.detail)),
            SiteValues::Observed(site.index),
        );
    }
    // Absent: every method that was tried found the function missing (a method left out on
    // purpose says nothing either way).
    let tried: Vec<_> = hook
        .failed
        .iter()
        .filter(|a| a.kind != crate::kernel::probes::AttachFailure::Skipped)
        .collect();
    let absent = !tried.is_empty()
        && tried
            .iter()
            .all(|a| a.kind == crate::kernel::probes::AttachFailure::Absent);
    if absent {
        return (
            Provenance::Derived {
                from: format!(
                    "0: the site does not exist on this kernel ({})",
                    tried[0].error
                ),
            },
            SiteValues::Zero,
        );
    }
    let why = hook.why_not();
    match site.fallback {
        // Where the site's function cannot be hooked, the bytes the syscalls returned, by the
        // type of file behind their descriptor (looked up in the kernel), stand in for it.
        Fallback::Derived { what, pairs } => (
            Provenance::Derived {
                from: format!(
                    "{what} (raw_syscalls:sys_exit; file type from the task's descriptor table, \
                     read in the kernel); {} itself is not observable here ({why})",
                    hook.site
                ),
            },
            SiteValues::Derived(pairs),
        ),
        Fallback::InGeneric(generic) => filesystem_site_in_generic_derivation(hook, generic),
        Fallback::None => (
            Provenance::NotObservable {
                reason: format!("no attach method worked for {}: {why}", hook.site),
            },
            SiteValues::Zero,
        ),
    }
}

/// A filesystem-specific site while its generic site is derived: the derivation goes by file
/// type, so it already counts this site's bytes, on every filesystem.
fn filesystem_site_in_generic_derivation(
    hook: &HookOutcome,
    generic: HookId,
) -> (Provenance, SiteValues) {
    (
        Provenance::Derived {
            from: format!(
                "0 here: its bytes are in {}'s figure, derived from syscall return values by file \
                 type on every filesystem ({} itself: {})",
                generic.name(),
                hook.site,
                hook.why_not()
            ),
        },
        SiteValues::Zero,
    )
}

#[derive(Clone, Copy)]
pub(super) enum SiteValues {
    Observed(usize),
    /// (counter, class) pairs: all of each counter's bytes in its class.
    Derived(&'static [(usize, usize)]),
    Zero,
}

impl SiteValues {
    pub(super) fn bytes(self, stats: &RoleSample, class_id: usize) -> u64 {
        match self {
            SiteValues::Observed(site_id) => stats.copied(site_id, class_id),
            SiteValues::Derived(pairs) => pairs
                .iter()
                .filter(|(_, k)| *k == class_id)
                .map(|(c, _)| stats.counter(*c))
                .sum(),
            SiteValues::Zero => 0,
        }
    }
}

/// `site_source`, unless the strategy made calls whose copies the syscalls cannot classify
/// (copy_file_range may copy or reflink): then a derived file-write figure would be a guess.
pub(super) fn site_source_for(
    probes: &AttachReport,
    hook: &HookOutcome,
    samples: &[Sample],
) -> (Provenance, SiteValues) {
    // A filesystem-specific site observed while its generic site is derived would count its
    // bytes twice: the derivation already has them.
    if let Some(Fallback::InGeneric(generic)) = hook.hook.copy().map(|c| c.fallback) {
        if matches!(site_source(probes.get(generic)).1, SiteValues::Derived(_)) {
            return filesystem_site_in_generic_derivation(hook, generic);
        }
    }
    let (p, v) = site_source(hook);
    let unclassified = samples
        .iter()
        .map(|s| s.sender.counter(counter::UNCLASSIFIED_BYTES))
        .max()
        .unwrap_or(0);
    let file_write = hook
        .hook
        .copy()
        .is_some_and(|c| c.leg == Some(LegId::FileWrite));
    if file_write && matches!(v, SiteValues::Derived(_)) && unclassified > 0 {
        return (
            Provenance::NotObservable {
                reason: format!(
                    "copy_file_range moved {unclassified} bytes between regular files, which the \
                     filesystem may copy or share (reflink); the syscall result cannot tell, and \
                     {} cannot be hooked here ({})",
                    hook.site,
                    hook.why_not()
                ),
            },
            SiteValues::Zero,
        );
    }
    (p, v)
}

fn copy_site(probes: &AttachReport, hook: &HookOutcome, samples: &[Sample]) -> CopySiteReport {
    let (provenance, values) = site_source_for(probes, hook, samples);
    let of = |k: usize| stat(samples, |s| values.bytes(&s.sender, k) as f64).expect("samples");
    let bytes = match provenance {
        Provenance::NotObservable { .. } => None,
        _ => Some(ClassBytes {
            user_to_kernel: of(class::USER_TO_KERNEL),
            kernel_to_user: of(class::KERNEL_TO_USER),
            kernel_to_kernel: of(class::KERNEL_TO_KERNEL),
            by_reference: of(class::BY_REFERENCE),
        }),
    };
    CopySiteReport {
        site: SiteId::Hook(hook.hook),
        description: hook.site,
        provenance,
        bytes,
    }
}

const ZEROCOPY_FALLBACK: &str = "the kernel's zero-copy completion reports (MSG_ERRQUEUE \
     SO_EE_CODE_ZEROCOPY_COPIED / io_uring IORING_NOTIF_USAGE_ZC_COPIED): bytes of zero-copy \
     sends that the kernel says it copied after all (delivery to a local socket copies the \
     pinned pages)";

/// The copies a zero-copy send still cost, as the kernel itself reported them; the copy
/// happens at delivery, where no task or socket identifies it, so the report is the evidence.
fn zerocopy_site(samples: &[Sample]) -> Option<CopySiteReport> {
    if samples.iter().all(|s| s.zerocopy.is_none()) {
        return None;
    }
    let of = |f: fn(&crate::transfer::strategies::ZerocopyReport) -> u64| {
        stat(samples, |s| s.zerocopy.as_ref().map_or(0, f) as f64).expect("samples")
    };
    let zero = stat(samples, |_| 0.0).expect("samples");
    Some(CopySiteReport {
        site: SiteId::ZerocopyCompletion,
        description: "zero-copy sends the kernel reports as copied (its completion notifications)",
        provenance: Provenance::Derived {
            from: format!(
                "kernel->kernel = {ZEROCOPY_FALLBACK}; read by zc-trace after the window"
            ),
        },
        bytes: Some(ClassBytes {
            user_to_kernel: zero.clone(),
            kernel_to_user: zero.clone(),
            kernel_to_kernel: of(|z| z.copied_bytes),
            by_reference: zero,
        }),
    })
}

/// The sum of `classes` over `sites`; not observable if any site is.
/// Whose copies a total adds up.
#[derive(Clone, Copy)]
enum Side {
    Sender,
    Receiver,
}

impl Side {
    fn of(self, s: &Sample) -> &RoleSample {
        match self {
            Side::Sender => &s.sender,
            Side::Receiver => &s.receiver,
        }
    }
}

/// Whether a site can carry payload to this sink: the socket sites of other socket families
/// are left out of the totals (they stay in the per-site detail).
pub(super) fn relevant(h: HookId, sink: SinkKind) -> bool {
    h.copy().map_or(true, |c| sink.carries(c.family))
}

/// `f`, marked incomplete when it sums a site of a leg that does not balance.
fn incomplete_if(
    f: Figure,
    sites: &[HookId],
    unbalanced: &[(HookId, String)],
    side: Side,
) -> Figure {
    if !matches!(side, Side::Sender) || f.value.is_none() {
        return f;
    }
    let mut reasons: Vec<&str> = unbalanced
        .iter()
        .filter(|(h, _)| sites.contains(h))
        .map(|(_, r)| r.as_str())
        .collect();
    reasons.dedup();
    let (Provenance::Derived { from } | Provenance::Observed { detail: from, .. }) = &f.provenance
    else {
        return f;
    };
    if reasons.is_empty() {
        return f;
    }
    Figure {
        provenance: Provenance::Incomplete {
            from: from.clone(),
            reason: reasons.join("; "),
        },
        ..f
    }
}

fn copy_total(
    probes: &AttachReport,
    samples: &[Sample],
    classes: &[usize],
    sites: &[HookId],
    side: Side,
    sink: SinkKind,
) -> Figure {
    let mut parts = Vec::new();
    let mut values = Vec::new();
    for &h in sites.iter().filter(|&&h| relevant(h, sink)) {
        let hook = probes.get(h);
        let (p, v) = site_source_for(probes, hook, samples);
        let how = match &p {
            Provenance::NotObservable { reason } => {
                return figure(
                    "bytes",
                    Provenance::NotObservable {
                        reason: reason.clone(),
                    },
                    None,
                )
            }
            Provenance::Observed { hook, method, .. } => format!("observed at {hook} ({method})"),
            Provenance::Derived { .. } if matches!(v, SiteValues::Zero) => {
                "0, absent on this kernel".into()
            }
            Provenance::Derived { .. } => "derived from syscall return values by file type".into(),
            Provenance::Input { .. } | Provenance::Incomplete { .. } => {
                unreachable!("copy sites are never inputs, and only totals are incomplete")
            }
        };
        parts.push(format!("{} {how}", h.name()));
        values.push(v);
    }
    // Copies the kernel reported for zero-copy sends (see `zerocopy_site`).
    let reported = matches!(side, Side::Sender)
        && classes.contains(&class::KERNEL_TO_KERNEL)
        && samples.iter().any(|s| s.zerocopy.is_some());
    if reported {
        parts.push(format!(
            "zerocopy_completion derived from {ZEROCOPY_FALLBACK}"
        ));
    }
    figure(
        "bytes",
        Provenance::Derived {
            from: format!("sum over copy sites: {}", parts.join("; ")),
        },
        stat(samples, |s| {
            let sites: u64 = values
                .iter()
                .map(|v| classes.iter().map(|&k| v.bytes(side.of(s), k)).sum::<u64>())
                .sum();
            let kernel_reported = if reported {
                s.zerocopy.as_ref().map_or(0, |z| z.copied_bytes)
            } else {
                0
            };
            (sites + kernel_reported) as f64
        }),
    )
}

fn by_name(samples: &[Sample]) -> BTreeMap<String, SyscallFigures> {
    let mut out = BTreeMap::new();
    let numbers: std::collections::BTreeSet<usize> = samples
        .iter()
        .flat_map(|s| s.sender.syscall_numbers())
        .collect();
    for nr in numbers {
        if samples.iter().all(|s| s.sender.syscall(nr).enters == 0) {
            continue;
        }
        let of = |f: fn(&zc_trace_common::SyscallStat) -> u64| {
            Stat::of(
                samples
                    .iter()
                    .map(|s| f(&s.sender.syscall(nr)) as f64)
                    .collect(),
            )
            .expect("at least one sample")
        };
        let name = syscall_names::name(nr);
        let returns_bytes = syscall_names::returns_bytes(&name);
        out.insert(
            name,
            SyscallFigures {
                count: of(|s| s.enters),
                returned: returns_bytes.then(|| of(|s| s.ret_positive_sum)),
                errors: of(|s| s.errors),
                zero_returns: of(|s| s.zero_returns),
            },
        );
    }
    out
}

/// The payload's provenance: what it was checked against in each of `runs` runs, of which
/// `with_count` had a count of the bytes that arrived (a remote server that does not answer
/// with one, as `zc-trace receive` does, gives none: then that check was not made).
pub fn payload_provenance(with_count: usize, runs: usize) -> Provenance {
    let from = if with_count == runs {
        "source file length; checked equal to the bytes the strategy moved and the bytes the \
         receiver read"
            .to_string()
    } else if with_count == 0 {
        "source file length; checked equal to the bytes the strategy moved; NOT checked against \
         the bytes that arrived: the receiver did not say how many (a server other than zc-trace \
         receive)"
            .to_string()
    } else {
        format!(
            "source file length; checked equal to the bytes the strategy moved, and to the bytes \
             the receiver read in {with_count} of {runs} runs (in the others it did not say)"
        )
    };
    Provenance::Input { from }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernel::probes::PLAN;

    /// A remote server that answered no count (or a wrong one, which fails the run) used to
    /// leave the provenance saying the receiver's count was checked.
    #[test]
    fn the_payload_says_whether_the_receivers_count_was_checked() {
        let from = |with, runs| match payload_provenance(with, runs) {
            Provenance::Input { from } => from,
            other => panic!("{other:?}"),
        };
        assert!(from(3, 3).contains("the bytes the receiver read"));
        assert!(from(0, 3).contains("NOT checked against the bytes that arrived"));
        assert!(from(1, 3).contains("in 1 of 3 runs"));
    }
    use zc_trace_common::RoleStats;

    /// An attach report where every hook attached with its last (most portable) candidate,
    /// except those listed as missing.
    pub fn attach_report(missing: &[HookId]) -> AttachReport {
        AttachReport {
            hooks: PLAN
                .iter()
                .map(|h| {
                    let c = h.candidates.last().unwrap();
                    let ok = !missing.contains(&h.id);
                    HookOutcome {
                        hook: h.id,
                        site: h.site,
                        feeds: h.feeds,
                        method: ok.then_some(c.method),
                        method_label: ok.then(|| c.label()),
                        target: ok.then(|| c.target_label()),
                        detail: if ok { c.detail } else { None },
                        failed: if ok {
                            vec![]
                        } else {
                            vec![crate::kernel::probes::Attempt {
                                method: c.label(),
                                kind: crate::kernel::probes::AttachFailure::Other,
                                target: c.target.to_string(),
                                error: "event not available".into(),
                            }]
                        },
                    }
                })
                .collect(),
        }
    }

    pub fn sample(syscalls: &[(usize, u64, u64)], faults_user: u64, window_ns: u64) -> Sample {
        sample_with(syscalls, faults_user, window_ns, |_| {})
    }

    /// `sample`, with the sender's counters changed by `tweak` before they are kept.
    pub fn sample_with(
        syscalls: &[(usize, u64, u64)],
        faults_user: u64,
        window_ns: u64,
        tweak: impl FnOnce(&mut RoleStats),
    ) -> Sample {
        let mut sender = Box::new(RoleStats::zeroed());
        for &(nr, count, ret) in syscalls {
            sender.syscalls[nr].enters = count;
            sender.syscalls[nr].exits = count;
            sender.syscalls[nr].ret_positive_sum = ret;
            sender.counters[counter::SYSCALL_ENTERS] += count;
            sender.counters[counter::SYSCALL_EXITS] += count;
        }
        sender.counters[counter::FAULTS_USER_MODE] = faults_user;
        tweak(&mut sender);
        let mut receiver = Box::new(RoleStats::zeroed());
        receiver.copies[zc_trace_common::site::SOCK_RECV][class::KERNEL_TO_USER] = 1000;
        Sample {
            sender: RoleSample::from(&*sender),
            receiver: RoleSample::from(&*receiver),
            window_ns,
            bytes: 1000,
            zerocopy: None,
            retransmitted: None,
            send_time: None,
            received: None,
        }
    }

    #[test]
    fn transitions_are_entries_plus_exits_plus_fault_round_trips() {
        let r = attach_report(&[]);
        let f = figures(
            &r,
            &[sample(&[(0, 3, 1000), (1, 2, 1000)], 4, 1000)],
            true,
            SinkKind::Tcp,
            None,
            &[],
        );
        assert_eq!(f.syscalls.value.as_ref().unwrap().median, 5.0);
        assert_eq!(
            f.transitions.value.as_ref().unwrap().median,
            5.0 + 5.0 + 8.0
        );
        assert!(matches!(
            f.transitions.provenance,
            Provenance::Derived { .. }
        ));
        assert_eq!(f.throughput_bytes_per_sec.value.unwrap().median, 1e9);
        assert_eq!(f.receiver_copied_bytes.value.unwrap().median, 1000.0);
    }

    /// Absence is read from the attempts' kind, not their wording: all absent makes the site's
    /// figure 0 (it does not exist here); one refused attempt makes it derived instead.
    #[test]
    fn a_site_is_absent_only_when_every_attempt_says_so() {
        use crate::kernel::probes::AttachFailure;
        let mut r = attach_report(&[HookId::FileRead]);
        let set = |r: &mut AttachReport, kinds: &[AttachFailure]| {
            let h = r
                .hooks
                .iter_mut()
                .find(|h| h.hook == HookId::FileRead)
                .unwrap();
            h.failed = kinds
                .iter()
                .map(|&kind| crate::kernel::probes::Attempt {
                    method: "fexit".into(),
                    target: "filemap_read".into(),
                    kind,
                    error: "whatever the loader said".into(),
                })
                .collect();
        };
        set(&mut r, &[AttachFailure::Absent, AttachFailure::Absent]);
        assert!(matches!(
            site_source(r.get(HookId::FileRead)).1,
            SiteValues::Zero
        ));
        set(
            &mut r,
            &[AttachFailure::NotPermitted, AttachFailure::Absent],
        );
        assert!(matches!(
            site_source(r.get(HookId::FileRead)).1,
            SiteValues::Derived(_)
        ));
    }

    #[test]
    fn a_missing_hook_makes_its_figures_not_observable_and_says_so() {
        let r = attach_report(&[HookId::FaultUserMode, HookId::ContextSwitch]);
        let f = figures(
            &r,
            &[sample(&[(0, 3, 0)], 4, 10)],
            true,
            SinkKind::Tcp,
            None,
            &[],
        );
        assert!(f.page_faults_user_mode.value.is_none());
        let Provenance::NotObservable { reason } = &f.page_faults_user_mode.provenance else {
            panic!("{:?}", f.page_faults_user_mode.provenance)
        };
        assert!(reason.contains("exceptions:page_fault_user"), "{reason}");
        assert!(f.context_switches_voluntary.value.is_none());
        // Without fault hooks, transitions count syscalls only, and say so.
        assert_eq!(f.transitions.value.as_ref().unwrap().median, 6.0);
        let Provenance::Derived { from } = &f.transitions.provenance else {
            panic!()
        };
        assert!(from.contains("not observable"), "{from}");
    }

    #[test]
    fn observed_figures_name_hook_and_method() {
        let r = attach_report(&[]);
        let f = figures(
            &r,
            &[sample(&[(0, 1, 0)], 0, 10)],
            true,
            SinkKind::Tcp,
            None,
            &[],
        );
        assert_eq!(
            f.syscalls.provenance,
            Provenance::Observed {
                hook: "raw_syscalls:sys_enter".into(),
                method: "tracepoint".into(),
                detail: "sender thread only (tid filter in the kernel), inside the measured window"
                    .into()
            }
        );
    }

    #[test]
    fn syscalls_by_name_lists_only_calls_made() {
        let m = by_name(&[sample(&[(0, 3, 300), (1, 2, 200)], 0, 10)]);
        let names: Vec<&str> = m.keys().map(String::as_str).collect();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(names, ["read", "write"]);
        assert_eq!(m.values().map(|v| v.count.median).sum::<f64>(), 5.0);
        assert_eq!(
            m.values()
                .map(|v| v.returned.as_ref().unwrap().median)
                .sum::<f64>(),
            500.0
        );
    }

    /// mmap returns an address: it was summed into `returned` as if it were bytes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn returned_counts_only_calls_that_return_bytes() {
        let (mmap, read) = (nix::libc::SYS_mmap as usize, nix::libc::SYS_read as usize);
        let m = by_name(&[sample(
            &[(mmap, 1, 0x7f12_3456_7000), (read, 2, 4096)],
            0,
            10,
        )]);
        assert!(m["mmap"].returned.is_none(), "{:?}", m["mmap"]);
        assert_eq!(m["mmap"].count.median, 1.0);
        assert_eq!(m["read"].returned.as_ref().unwrap().median, 4096.0);
    }
}
