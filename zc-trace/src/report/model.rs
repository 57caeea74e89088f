//! The report's data model (the JSON schema, version 1) and how figures are computed from the
//! samples. Every figure is observed at a named hook, derived from observed figures (the
//! formula is stated), an input, or marked not observable with the reason.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stat::Stat;

use crate::kernel::capabilities::HostFacts;
use crate::kernel::probes::{HookId, HookOutcome, LegId, Place};
use crate::transfer::strategies::StrategyId;

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

/// What a figure counts, serialised as the JSON's `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    #[serde(rename = "count")]
    Count,
    #[serde(rename = "bytes")]
    Bytes,
    #[serde(rename = "ns")]
    Ns,
    #[serde(rename = "bytes/s")]
    BytesPerSec,
}

impl Unit {
    /// As the JSON names it.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Bytes => "bytes",
            Unit::Ns => "ns",
            Unit::BytesPerSec => "bytes/s",
        }
    }
}

by_name!(Unit, name: Display);

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub unit: Unit,
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

    /// Where its bytes go on the data path.
    pub fn place(self) -> Place {
        match self {
            SiteId::Hook(h) => {
                h.copy()
                    .expect("a report's copy sites are copy-site hooks (sites::copy_site)")
                    .place
            }
            SiteId::ZerocopyCompletion => Place::Delivery,
        }
    }
}

by_name!(SiteId, name: Display, Serialize);

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

by_name!(Class, key: Display);

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
    /// `kernel::syscalls::returns_bytes`).
    pub returned: Option<Stat>,
    pub errors: Stat,
    /// Calls that returned 0: for read-like calls, end of file (they moved nothing).
    pub zero_returns: Stat,
}

/// What a row of figures is: a strategy of `run`, or the program `trace` followed. In JSON,
/// the strategy's identifier or "traced".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowId {
    Strategy(StrategyId),
    Traced,
}

impl RowId {
    pub const fn name(self) -> &'static str {
        match self {
            RowId::Strategy(s) => s.name(),
            RowId::Traced => "traced",
        }
    }
}

by_name!(RowId, name: Display, Serialize);

#[derive(Debug, Clone, Serialize)]
pub struct StrategyReport {
    pub id: RowId,
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
    pub ledger: Vec<LedgerLeg>,
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
    pub strategy: StrategyId,
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
    pub claims: Option<super::verdict::ClaimsReport>,
}

/// How a leg of the byte ledger (`ledger`) came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// The sites saw exactly what the syscalls moved, in every iteration.
    Balanced,
    /// The sites saw less: some bytes took a path no hooked site covers.
    Incomplete,
    /// The sites saw more than the syscalls moved on this leg.
    Excess,
    /// The leg's figure is itself derived from these syscall bytes: nothing to check.
    Derived,
    /// A site of the leg cannot be observed here.
    NotObservable,
}

/// One leg of one strategy.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerLeg {
    pub leg: LegId,
    pub description: &'static str,
    /// Bytes the syscalls returned on this leg (raw_syscalls:sys_exit, by descriptor type),
    /// and on the nic_linearize leg the bytes TCP retransmitted too.
    pub moved_bytes: Stat,
    /// nic_linearize: of the moved bytes, those TCP retransmitted (the socket's
    /// tcp_info.tcpi_bytes_retrans, read after the receiver has them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmitted_bytes: Option<Stat>,
    /// Bytes the leg's copy sites saw, all classes; absent when not observable.
    pub seen_bytes: Option<Stat>,
    pub sites: Vec<HookId>,
    pub balance: Balance,
    /// For a leg that does not balance: what it means, in words.
    pub note: String,
}

impl LedgerLeg {
    /// Whether figures that sum this leg's sites are short of (or over) the truth.
    pub fn unbalanced(&self) -> bool {
        matches!(self.balance, Balance::Incomplete | Balance::Excess)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the renderers print are the JSON's.
    #[test]
    fn unit_names_are_the_json_names() {
        for u in [Unit::Count, Unit::Bytes, Unit::Ns, Unit::BytesPerSec] {
            assert_eq!(serde_json::to_value(u).unwrap(), u.name());
        }
    }
}
