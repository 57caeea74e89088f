//! The report of `zc-trace trace`: the figures of `run`, for whatever the traced tasks did,
//! with the same provenance and ledger, plus a breakdown by descriptor kind and by syscall,
//! io_uring requests by opcode, the interval lines, and the verdict on `--expect`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use zc_trace_common::{fd_kind, fd_side, FdKey, FdStat};

use crate::kernel::capabilities::HostFacts;
use crate::kernel::probes::{AttachReport, HookOutcome, LegId, Place};
use crate::transfer::sink::SinkKind;
use zc_trace_common::filesystems;

use super::build::{program_report, Label};
use super::ledger::SinkRoute;
use super::model::RowId;
use super::model::{Provenance, SiteId, StrategyReport, Tool, Unit};
use super::sample::{RoleSample, Sample};
use super::sites::sites_where;
use super::stat::Stat;
use super::verdict::Outcome;
use crate::ui::units::{human_bytes, human_rate};

/// What was traced.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The command started (argv), or null with --pid.
    pub command: Option<Vec<String>>,
    /// The processes attached to (--pid), or the command's pid.
    pub pids: Vec<u32>,
    /// The user the command ran as ("root" with --as-root or without sudo).
    pub user: Option<String>,
}

/// How the trace ended.
#[derive(Debug, Clone, Serialize)]
pub struct Ending {
    /// "exited" (every traced task), "duration", or the signal that stopped it.
    pub reason: String,
    /// The command's exit status (128 + signal when a signal ended it); null with --pid or
    /// while it still runs.
    pub exit_status: Option<i32>,
    /// Set when the command did not end within the grace after SIGTERM (--duration, or a
    /// signal zc-trace passed on) and zc-trace killed it with SIGKILL: it did not end by
    /// itself, and its exit status (137) says so.
    pub killed: Option<String>,
}

/// One row of the breakdown by descriptor kind.
#[derive(Debug, Clone, Serialize)]
pub struct FdRow {
    pub syscall: String,
    /// "in" (the descriptor bytes came from) or "out" (went to).
    pub side: &'static str,
    /// regular, regular_direct, pipe, tcp, udp, unix, other_socket, char_device, other,
    /// unknown.
    pub kind: &'static str,
    /// A regular file's filesystem.
    pub filesystem: Option<String>,
    pub calls: u64,
    pub bytes: u64,
    /// What such a call does with the bytes, by what the syscall is and where they go.
    pub how: &'static str,
}

/// One --interval line: rates over the interval.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// Seconds since the trace began, at the interval's end.
    pub at_s: f64,
    pub copied_bytes_per_sec: Option<f64>,
    pub by_reference_bytes_per_sec: Option<f64>,
    pub transitions_per_sec: f64,
}

/// The verdict on `--expect zero-copy`.
#[derive(Debug, Clone, Serialize)]
pub struct Expectation {
    pub expect: &'static str,
    /// holds, differs, not_observable (the figures it needs are not complete here).
    pub verdict: Outcome,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    pub schema: u32,
    /// Always "trace": `run`'s reports have no `mode`.
    pub mode: &'static str,
    pub tool: Tool,
    pub host: HostFacts,
    pub target: Target,
    pub ending: Ending,
    /// How many tasks the kernel side could follow at once (`--max-tasks`), and how many
    /// tasks the traced ones started that it had no room for: those went uncounted, and
    /// every figure but the time is then incomplete.
    pub tasks: TaskCoverage,
    pub probes: Vec<HookOutcome>,
    /// The traced tasks' figures, as one row of `run` (`figures`, `copy_sites`,
    /// `syscalls_by_name`, `ledger`).
    pub program: StrategyReport,
    pub by_fd_kind: Vec<FdRow>,
    /// io_uring requests the traced tasks submitted, by opcode; null where the io_uring
    /// tracepoint is not available.
    pub io_uring_requests: Option<BTreeMap<String, u64>>,
    pub intervals: Vec<Interval>,
    pub expectation: Option<Expectation>,
    pub claims: Option<crate::report::claims::ClaimsReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskCoverage {
    pub table_size: u32,
    pub not_followed: u64,
}

impl TaskCoverage {
    /// The report's words for the shortfall; None when every task was followed.
    pub fn shortfall(&self) -> Option<String> {
        (self.not_followed > 0).then(|| {
            format!(
                "{} task{} the traced program started {} not followed: the task table holds \
                 {} (raise it with --max-tasks)",
                self.not_followed,
                if self.not_followed == 1 { "" } else { "s" },
                if self.not_followed == 1 {
                    "was"
                } else {
                    "were"
                },
                self.table_size
            )
        })
    }

    /// Marks every figure of `program` but its time incomplete when tasks went uncounted:
    /// what they did is missing from each of them.
    pub fn apply(&self, program: &mut StrategyReport) {
        let Some(reason) = self.shortfall() else {
            return;
        };
        // The trace's length is what it is, however many tasks were followed.
        let time = program.figures.time_ns.clone();
        for f in program.figures.each_mut() {
            if f.value.is_none() {
                continue;
            }
            f.provenance = match &f.provenance {
                Provenance::Incomplete { from, reason: r } => Provenance::Incomplete {
                    from: from.clone(),
                    reason: format!("{r}; {reason}"),
                },
                other => Provenance::Incomplete {
                    from: other.describe(),
                    reason: reason.clone(),
                },
            };
        }
        program.figures.time_ns = time;
    }
}

/// The tool's name and version, as in `run`'s reports.
pub fn tool() -> Tool {
    Tool {
        name: "zc-trace",
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// Everything the trace collected.
pub struct Collected {
    pub stats: RoleSample,
    pub fds: BTreeMap<FdKey, FdStat>,
    pub uring: Option<Vec<u64>>,
    pub elapsed_ns: u64,
}

/// Where the program's bytes went: a socket family if it sent any (TCP first), else pipes,
/// else files. It says which socket family's copy sites count (the other family's sites
/// would count the same bytes twice where they are derived from syscall bytes). A pipe a
/// program splices through on its way to a socket is not its sink.
pub fn dominant_sink(fds: &BTreeMap<FdKey, FdStat>) -> SinkKind {
    SINKS
        .iter()
        .map(|&(sink, _)| sink)
        .find(|&sink| sink_bytes(fds, sink) > 0)
        .map_or(SinkKind::Tcp, |sink| sink)
}

/// The sink kinds a traced program's bytes can go to, in the order `dominant_sink` prefers
/// them, with the descriptor kind each one is.
const SINKS: [(SinkKind, u32); 4] = [
    (SinkKind::Tcp, fd_kind::TCP),
    (SinkKind::Unix, fd_kind::UNIX),
    (SinkKind::Pipe, fd_kind::PIPE),
    (SinkKind::File, fd_kind::REGULAR),
];

/// Bytes the program wrote into descriptors of `sink`'s kind (TCP's for any other sink).
fn sink_bytes(fds: &BTreeMap<FdKey, FdStat>, sink: SinkKind) -> u64 {
    let kind = SINKS
        .iter()
        .find(|&&(s, _)| s == sink)
        .map_or(fd_kind::TCP, |&(_, k)| k);
    fds.iter()
        .filter(|(k, _)| k.side == fd_side::OUTPUT && k.kind == kind)
        .map(|(_, v)| v.bytes)
        .sum()
}

const TRACED: &str = "the traced tasks only (TASKS filter in the kernel: the command or the \
                      processes, their threads, and every task they started while traced)";

/// The program's row: `run`'s figures over one sample holding everything the traced tasks
/// did (as sender and, for their own socket reads, as receiver).
pub fn program(
    probes: &AttachReport,
    name: &'static str,
    collected: &Collected,
    strategy: Option<&'static dyn crate::transfer::strategies::Strategy>,
) -> StrategyReport {
    let sink = dominant_sink(&collected.fds);
    let bytes = sink_bytes(&collected.fds, sink);
    let sample = Sample {
        sender: collected.stats.clone(),
        receiver: collected.stats.clone(),
        window_ns: collected.elapsed_ns,
        bytes,
        zerocopy: None,
        retransmitted: None,
        send_time: None,
        received: None,
    };
    let label = match strategy {
        Some(s) => Label {
            id: RowId::Strategy(s.id()),
            name: s.name(),
            summary: s.summary(),
        },
        None => Label {
            id: RowId::Traced,
            name,
            summary: "the traced program",
        },
    };
    let route = SinkRoute {
        kind: sink,
        scatter_gather: None,
    };
    let mut r = program_report(
        probes,
        label,
        route,
        true,
        "the traced files'",
        None,
        vec![sample],
    );
    retitle(&mut r, sink);
    r
}

/// `run`'s wording where it says "sender", "window" or "payload": the same figures, counted
/// over the traced tasks for the whole trace.
fn retitle(r: &mut StrategyReport, sink: SinkKind) {
    let f = &mut r.figures;
    for fig in [
        &mut f.syscalls,
        &mut f.page_faults_user_mode,
        &mut f.page_faults_kernel_mode,
        &mut f.context_switches_voluntary,
        &mut f.context_switches_involuntary,
        &mut f.device_read_bytes,
        &mut f.device_write_bytes,
    ] {
        if let Provenance::Observed { detail, .. } = &mut fig.provenance {
            *detail = TRACED.into();
        }
    }
    f.time_ns.provenance = Provenance::Input {
        from: "wall-clock time of the trace (CLOCK_MONOTONIC in zc-trace, from attach to end)"
            .into(),
    };
    f.payload_bytes.provenance = Provenance::Derived {
        from: format!(
            "bytes the traced tasks' syscalls wrote into {} descriptors (raw_syscalls:sys_exit \
             returns, by descriptor kind read in the kernel)",
            match sink {
                SinkKind::Unix => "UNIX stream socket",
                SinkKind::Pipe => "pipe",
                SinkKind::File => "regular-file",
                _ => "TCP socket",
            }
        ),
    };
    f.throughput_bytes_per_sec.provenance = Provenance::Derived {
        from: "payload_bytes / time_ns".into(),
    };
    if let Provenance::Derived { from } = &mut f.receiver_copied_bytes.provenance {
        *from = format!("the traced tasks' own reads from sockets and pipes: {from}");
    }
}

/// How a syscall treats the bytes it returns, by its side and the descriptor's kind.
fn how(syscall: &str, side: u32, kind: u32) -> &'static str {
    use zc_trace_common::SyscallFamily as F;
    let family = crate::kernel::syscalls::family(syscall);
    let read_family = matches!(family, F::Read | F::Receive);
    let write_family = family == F::Write;
    match (read_family, write_family, side, kind) {
        (_, _, _, fd_kind::REGULAR_DIRECT) => "DMA to/from user pages (O_DIRECT)",
        (_, _, _, fd_kind::CHAR_DEVICE) => "the driver decides (/dev/null: nothing)",
        (true, _, fd_side::INPUT, _) => "CPU copy into user memory",
        (_, true, fd_side::OUTPUT, fd_kind::TCP) => {
            "CPU copy from user memory (not with MSG_ZEROCOPY)"
        }
        (_, true, fd_side::OUTPUT, _) => "CPU copy from user memory",
        _ => "in the kernel: see the copy sites",
    }
}

fn kind_name(kind: u32) -> &'static str {
    match kind {
        fd_kind::REGULAR => "regular",
        fd_kind::REGULAR_DIRECT => "regular_direct",
        fd_kind::PIPE => "pipe",
        fd_kind::TCP => "tcp",
        fd_kind::UDP => "udp",
        fd_kind::UNIX => "unix",
        fd_kind::OTHER_SOCKET => "other_socket",
        fd_kind::CHAR_DEVICE => "char_device",
        fd_kind::OTHER => "other",
        _ => "unknown",
    }
}

/// The breakdown by descriptor kind, biggest first.
pub fn by_fd_kind(fds: &BTreeMap<FdKey, FdStat>) -> Vec<FdRow> {
    let mut rows: Vec<FdRow> = fds
        .iter()
        .map(|(k, v)| {
            let syscall = crate::kernel::syscalls::name(k.nr as usize);
            let regular = matches!(k.kind, fd_kind::REGULAR | fd_kind::REGULAR_DIRECT);
            FdRow {
                how: how(&syscall, k.side, k.kind),
                syscall,
                side: if k.side == fd_side::INPUT {
                    "in"
                } else {
                    "out"
                },
                kind: kind_name(k.kind),
                filesystem: regular.then(|| filesystems::name(k.magic.into())),
                calls: v.calls,
                bytes: v.bytes,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.calls.cmp(&a.calls)));
    rows
}

/// io_uring opcode names, from the io-uring crate's opcode numbers.
pub fn uring_ops(counts: &[u64]) -> BTreeMap<String, u64> {
    use io_uring::opcode as op;
    macro_rules! names {
        ($($op:ident),* $(,)?) => { [$((op::$op::CODE, stringify!($op))),*] };
    }
    let names = names!(
        Nop,
        Readv,
        Writev,
        Fsync,
        ReadFixed,
        WriteFixed,
        PollAdd,
        PollRemove,
        SyncFileRange,
        SendMsg,
        RecvMsg,
        Timeout,
        TimeoutRemove,
        Accept,
        AsyncCancel,
        LinkTimeout,
        Connect,
        Fallocate,
        OpenAt,
        Close,
        FilesUpdate,
        Statx,
        Read,
        Write,
        Fadvise,
        Madvise,
        Send,
        Recv,
        OpenAt2,
        EpollCtl,
        Splice,
        ProvideBuffers,
        RemoveBuffers,
        Tee,
        Shutdown,
        RenameAt,
        UnlinkAt,
        MkDirAt,
        SymlinkAt,
        LinkAt,
        MsgRingData,
        Socket,
        UringCmd16,
        SendZc,
        SendMsgZc,
        ReadMulti,
        FutexWait,
        FutexWake,
        FutexWaitV,
        FixedFdInstall,
        Ftruncate,
    );
    counts
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &n)| {
            let name = names
                .iter()
                .find(|(code, _)| *code as usize == i)
                .map_or_else(|| format!("opcode_{i}"), |(_, s)| s.to_string());
            (name, n)
        })
        .collect()
}

/// One --interval line's rates from the counters' change over `secs`.
pub fn interval(probes: &AttachReport, delta: &Collected, at_s: f64, secs: f64) -> Interval {
    let row = program(probes, "interval", delta, None);
    let f = &row.figures;
    let rate = |v: Option<&Stat>| v.map(|s| (s.median / secs).round());
    let copied = match (
        f.cpu_copied_bytes.value.as_ref(),
        f.receiver_copied_bytes.value.as_ref(),
    ) {
        (Some(a), Some(b)) => Some(a.median + b.median),
        (Some(a), None) => Some(a.median),
        _ => None,
    };
    Interval {
        at_s: (at_s * 10.0).round() / 10.0,
        copied_bytes_per_sec: copied.map(|c| (c / secs).round()),
        by_reference_bytes_per_sec: rate(f.by_reference_bytes.value.as_ref()),
        transitions_per_sec: f
            .transitions
            .value
            .as_ref()
            .map_or(0.0, |s| (s.median / secs).round()),
    }
}

/// The interval line as printed while tracing.
pub fn interval_line(i: &Interval) -> String {
    let rate = |v: Option<f64>| v.map_or("not observable".into(), human_rate);
    format!(
        "{:>8.1} s  copied {:>14}  by reference {:>14}  transitions {:>9}/s",
        i.at_s,
        rate(i.copied_bytes_per_sec),
        rate(i.by_reference_bytes_per_sec),
        i.transitions_per_sec
    )
}

/// `--expect zero-copy`: no byte of a file reached a socket through user memory. Evidence:
/// (1) no page-cache file was read into user memory (k->u at the file read sites), (2) no
/// CPU copy between kernel buffers on the send path (k->k at the socket and transmit sites),
/// (3) what entered sockets by reference is more than what the CPU copied into them from
/// user memory (headers and the like), so the file's bytes are the ones by reference.
pub fn expect_zero_copy(program: &StrategyReport) -> Expectation {
    let sum = |place: &[Place], pick: fn(&super::model::ClassBytes) -> f64| -> Option<f64> {
        let mut total = 0.0;
        // A site of another socket family than the program's carries none of its bytes (and
        // may not be observable here): left out, as in the totals.
        for id in sites_where(|c| place.contains(&c.place)) {
            if !super::sites::relevant(id, program.sink) {
                continue;
            }
            let s = program
                .copy_sites
                .iter()
                .find(|c| c.site == SiteId::Hook(id))?;
            total += pick(s.bytes.as_ref()?);
        }
        Some(total)
    };
    let file_reads = [Place::FileRead];
    let send = [Place::SocketSend, Place::NicLinearize];
    let k2u = sum(&file_reads, |b| b.kernel_to_user.median);
    let k2k = sum(&send, |b| b.kernel_to_kernel.median);
    let u2k = sum(&send, |b| b.user_to_kernel.median);
    let by_ref = sum(&send, |b| b.by_reference.median);
    let incomplete: Vec<&str> = program
        .ledger
        .iter()
        .filter(|l| l.unbalanced() && matches!(l.leg, LegId::FileRead | LegId::SocketSend))
        .map(|l| l.leg.name())
        .collect();
    let (Some(k2u), Some(k2k), Some(u2k), Some(by_ref)) = (k2u, k2k, u2k, by_ref) else {
        return Expectation {
            expect: "zero-copy",
            verdict: Outcome::NotObservable,
            reason: "a copy site of the file-to-socket path is not observable here (see the \
                     copy sites)"
                .into(),
        };
    };
    if !incomplete.is_empty() {
        return Expectation {
            expect: "zero-copy",
            verdict: Outcome::NotObservable,
            reason: format!(
                "the byte ledger does not balance on {}: the figures are incomplete",
                incomplete.join(", ")
            ),
        };
    }
    let b = |x: f64| human_bytes(x);
    let mut failed = Vec::new();
    if k2u > 0.0 {
        failed.push(format!(
            "{} were read from files into user memory (file_read/shmem_read k->u)",
            b(k2u)
        ));
    }
    if k2k > 0.0 {
        failed.push(format!(
            "{} were copied between kernel buffers on the send path (k->k)",
            b(k2k)
        ));
    }
    if by_ref <= u2k {
        failed.push(format!(
            "{} entered sockets by reference and {} were copied into them from user memory",
            b(by_ref),
            b(u2k)
        ));
    }
    if failed.is_empty() {
        Expectation {
            expect: "zero-copy",
            verdict: Outcome::Holds,
            reason: format!(
                "{} entered sockets by reference; no file byte was read into user memory and no \
                 kernel buffer was copied on the send path; {} were copied into sockets from \
                 user memory (headers and other data the program wrote itself)",
                b(by_ref),
                b(u2k)
            ),
        }
    } else {
        Expectation {
            expect: "zero-copy",
            verdict: Outcome::Differs,
            reason: failed.join("; "),
        }
    }
}

/// The facts for claims about the traced program: chunks are its calls that moved bytes into
/// the sink.
pub fn run_config_for_claims(program: &StrategyReport) -> super::model::RunConfig {
    let payload = program
        .figures
        .payload_bytes
        .value
        .as_ref()
        .map_or(0.0, |s| s.median) as u64;
    let calls: f64 = program
        .syscalls_by_name
        .values()
        .map(|f| f.count.median - f.zero_returns.median - f.errors.median)
        .sum::<f64>()
        .max(1.0);
    super::model::RunConfig {
        payload_bytes: payload.max(1),
        chunk_bytes: (payload as f64 / calls).ceil().max(1.0) as u64,
        iterations: 1,
        cold: false,
        source: "traced program".into(),
        source_fs: String::new(),
        sink: program.sink,
        sink_description: format!("the traced program's {}", program.sink.cli_name()),
        sink_scatter_gather: None,
        receiver: None,
        sink_device: None,
        skipped: vec![],
    }
}

// ---- renderings ----

pub fn write(
    r: &TraceReport,
    format: crate::report::Format,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use crate::report::Format;
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, r)?;
            out.write_all(b"\n")
        }
        Format::Csv => out.write_all(csv(r).as_bytes()),
        Format::Table => out.write_all(text(r, false).as_bytes()),
        Format::Markdown => out.write_all(text(r, true).as_bytes()),
    }
}

fn value(f: &super::model::Figure) -> String {
    match &f.value {
        None => "not observable".into(),
        Some(v) => match f.unit {
            Unit::Bytes => human_bytes(v.median),
            Unit::BytesPerSec => human_rate(v.median),
            Unit::Ns => format!("{:.3} s", v.median / 1e9),
            Unit::Count => super::stat::number(v.median).to_string(),
        },
    }
}

fn title(r: &TraceReport) -> String {
    let what = match &r.target.command {
        Some(argv) => format!("`{}`", argv.join(" ")),
        None => format!(
            "pid {}",
            r.target
                .pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    format!(
        "zc-trace {} trace: {what}{}, kernel {} ({}), {}; ended: {}{}{}{}",
        r.tool.version,
        r.target
            .user
            .as_ref()
            .map(|u| format!(" as {u}"))
            .unwrap_or_default(),
        r.host.kernel,
        r.host.arch,
        value(&r.program.figures.time_ns),
        r.ending.reason,
        r.ending
            .exit_status
            .map(|s| format!(", exit status {s}"))
            .unwrap_or_default(),
        r.ending
            .killed
            .as_ref()
            .map(|k| format!(" ({k})"))
            .unwrap_or_default(),
        r.tasks
            .shortfall()
            .map(|s| format!("; INCOMPLETE: {s}"))
            .unwrap_or_default()
    )
}

fn text(r: &TraceReport, markdown: bool) -> String {
    let raw = text_unwrapped(r, markdown);
    if markdown {
        return raw;
    }
    // Prose lines wrapped to the terminal (tables are laid out to it already).
    let width = super::Layout::terminal_width();
    raw.lines()
        .map(|l| {
            let table = l.starts_with(['┌', '│', '╞', '└', '├']);
            if table || l.chars().count() <= width {
                l.to_string()
            } else {
                crate::ui::wrap::fill(l, width, "    ")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn text_unwrapped(r: &TraceReport, markdown: bool) -> String {
    use comfy_table::{presets, ContentArrangement, Table};
    let mut out = String::new();
    if markdown {
        writeln!(out, "## zc-trace trace\n\n{}\n", title(r)).unwrap();
    } else {
        writeln!(out, "{}", title(r)).unwrap();
    }
    let table = |header: &[&str]| {
        let mut t = Table::new();
        t.load_preset(if markdown {
            presets::ASCII_MARKDOWN
        } else {
            presets::UTF8_FULL_CONDENSED
        });
        if !markdown {
            t.set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(super::Layout::terminal_width() as u16);
        }
        t.set_header(header.to_vec());
        t
    };
    let f = &r.program.figures;
    let mut t = table(&["Figure", "Value"]);
    let rows: [(&str, &super::model::Figure); 13] = [
        ("Syscalls", &f.syscalls),
        ("User<->kernel transitions", &f.transitions),
        ("Page faults, user mode", &f.page_faults_user_mode),
        ("Page faults, in kernel", &f.page_faults_kernel_mode),
        ("Context switches, voluntary", &f.context_switches_voluntary),
        (
            "Context switches, involuntary",
            &f.context_switches_involuntary,
        ),
        ("CPU copied (send side)", &f.cpu_copied_bytes),
        ("  user -> kernel", &f.copied_user_to_kernel_bytes),
        ("  kernel -> user", &f.copied_kernel_to_user_bytes),
        ("  kernel -> kernel", &f.copied_kernel_to_kernel_bytes),
        ("By reference into sockets", &f.by_reference_bytes),
        ("CPU copied on receive", &f.receiver_copied_bytes),
        ("Device reads / writes", &f.device_read_bytes),
    ];
    let mut how = String::new();
    for (name, fig) in rows {
        let v = if name.starts_with("Device") {
            format!("{} / {}", value(fig), value(&f.device_write_bytes))
        } else {
            value(fig)
        };
        t.add_row(vec![name.to_string(), v]);
        writeln!(how, "  {}: {}", name.trim(), fig.provenance.describe()).unwrap();
    }
    writeln!(out, "{t}").unwrap();

    writeln!(out, "\nBy descriptor kind (bytes the syscalls returned):").unwrap();
    let mut t = table(&[
        "Syscall",
        "Side",
        "Kind",
        "Calls",
        "Bytes",
        "What the bytes cost",
    ]);
    for row in &r.by_fd_kind {
        let kind = match &row.filesystem {
            Some(fs) => format!("{} ({fs})", row.kind),
            None => row.kind.to_string(),
        };
        t.add_row(vec![
            row.syscall.clone(),
            row.side.to_string(),
            kind,
            row.calls.to_string(),
            human_bytes(row.bytes as f64),
            row.how.to_string(),
        ]);
    }
    writeln!(out, "{t}").unwrap();

    let calls: Vec<String> = r
        .program
        .syscalls_by_name
        .iter()
        .map(|(n, f)| format!("{n} {}", super::stat::number(f.count.median)))
        .collect();
    writeln!(out, "\nSyscalls by name: {}", calls.join(", ")).unwrap();
    match &r.io_uring_requests {
        Some(ops) if !ops.is_empty() => {
            let ops: Vec<String> = ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(out, "io_uring requests by opcode: {}", ops.join(", ")).unwrap();
        }
        Some(_) => {}
        None => writeln!(
            out,
            "io_uring requests: not observable (no io_uring submit tracepoint here)"
        )
        .unwrap(),
    }
    writeln!(out, "\nCopy sites:").unwrap();
    for c in &r.program.copy_sites {
        let Some(b) = &c.bytes else { continue };
        let total = b.user_to_kernel.median
            + b.kernel_to_user.median
            + b.kernel_to_kernel.median
            + b.by_reference.median;
        if total == 0.0 {
            continue;
        }
        writeln!(
            out,
            "  {}: u->k {}, k->u {}, k->k {}, by reference {} ({})",
            c.site,
            human_bytes(b.user_to_kernel.median),
            human_bytes(b.kernel_to_user.median),
            human_bytes(b.kernel_to_kernel.median),
            human_bytes(b.by_reference.median),
            c.provenance.describe()
        )
        .unwrap();
    }
    writeln!(out, "\nByte ledger:").unwrap();
    for l in &r.program.ledger {
        writeln!(
            out,
            "  {}: {:?}, moved {}, seen {}{}",
            l.leg,
            l.balance,
            human_bytes(l.moved_bytes.median),
            l.seen_bytes
                .as_ref()
                .map_or("not observable".into(), |s| human_bytes(s.median)),
            if l.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", l.note)
            }
        )
        .unwrap();
    }
    writeln!(out, "\nHow each figure was obtained:\n{how}").unwrap();
    if let Some(e) = &r.expectation {
        writeln!(
            out,
            "\nExpectation {}: {} ({})",
            e.expect,
            e.verdict.short_label(),
            e.reason
        )
        .unwrap();
    }
    if let Some(c) = &r.claims {
        writeln!(out, "\nClaims ({}):", c.source).unwrap();
        for v in &c.verdicts {
            writeln!(
                out,
                "  {} {}: claimed {}, {} ({})",
                v.strategy,
                v.figure,
                v.claimed,
                v.verdict.label(),
                v.reason
            )
            .unwrap();
        }
    }
    out
}

fn csv(r: &TraceReport) -> String {
    let mut out = String::from("mode,target");
    let cols = r.program.figures.columns();
    for (key, _, _) in &cols {
        out.push(',');
        out.push_str(key);
    }
    out.push_str(",by_fd_kind,expectation\n");
    let target = r.target.command.as_ref().map_or_else(
        || {
            r.target
                .pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        },
        |c| c.join(" "),
    );
    out.push_str("trace,");
    out.push_str(&format!("\"{}\"", target.replace('"', "\"\"")));
    for (_, _, f) in &cols {
        out.push(',');
        if let Some(v) = &f.value {
            out.push_str(&super::stat::number(v.median).to_string());
        }
    }
    out.push(',');
    out.push_str(
        &r.by_fd_kind
            .iter()
            .map(|row| {
                format!(
                    "{}:{}:{}{}={}/{}",
                    row.syscall,
                    row.side,
                    row.kind,
                    row.filesystem
                        .as_ref()
                        .map(|f| format!("({f})"))
                        .unwrap_or_default(),
                    row.calls,
                    row.bytes
                )
            })
            .collect::<Vec<_>>()
            .join(";"),
    );
    out.push(',');
    if let Some(e) = &r.expectation {
        out.push_str(e.verdict.name());
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::probes::HookId;
    use crate::report::Format;
    use zc_trace_common::{counter, site, RoleStats};

    /// sendfile of 1000 bytes from ext4 to TCP in 2 calls, observed at tcp_send.
    fn report() -> TraceReport {
        let probes = crate::report::fixtures::attach_report(&[]);
        let mut stats = Box::new(RoleStats::zeroed());
        let nr = nix::libc::SYS_sendfile as usize;
        stats.syscalls[nr].enters = 2;
        stats.syscalls[nr].exits = 2;
        stats.syscalls[nr].ret_positive_sum = 1000;
        stats.counters[counter::SYSCALL_ENTERS] = 2;
        stats.counters[counter::SYSCALL_EXITS] = 2;
        stats.counters[counter::SPLICE_FROM_REGULAR_BYTES] = 1000;
        stats.counters[counter::SPLICE_TO_SOCKET_BYTES] = 1000;
        stats.copies[site::TCP_SEND][zc_trace_common::class::BY_REFERENCE] = 1000;
        stats.copies[site::FILE_SPLICE_READ][zc_trace_common::class::BY_REFERENCE] = 1000;
        let mut fds = BTreeMap::new();
        for (side, kind, magic) in [
            (fd_side::INPUT, fd_kind::REGULAR, 0xef53),
            (fd_side::OUTPUT, fd_kind::TCP, 0),
        ] {
            fds.insert(
                FdKey {
                    nr: nr as u32,
                    side,
                    kind,
                    magic,
                },
                FdStat {
                    calls: 2,
                    bytes: 1000,
                },
            );
        }
        let collected = Collected {
            stats: RoleSample::delta(&stats, &RoleStats::zeroed()),
            fds,
            uring: Some(vec![0; 64]),
            elapsed_ns: 1_000_000,
        };
        let program = program(&probes, "server", &collected, None);
        TraceReport {
            schema: 1,
            mode: "trace",
            tool: tool(),
            host: super::super::tests::host(),
            target: Target {
                command: Some(vec!["server".into(), "--port".into(), "80".into()]),
                pids: vec![42],
                user: Some("student".into()),
            },
            ending: Ending {
                reason: "every traced task exited".into(),
                exit_status: Some(0),
                killed: None,
            },
            tasks: TaskCoverage {
                table_size: 8192,
                not_followed: 0,
            },
            probes: probes.hooks.clone(),
            by_fd_kind: by_fd_kind(&collected.fds),
            io_uring_requests: collected.uring.as_deref().map(uring_ops),
            expectation: Some(expect_zero_copy(&program)),
            program,
            intervals: vec![],
            claims: None,
        }
    }

    #[test]
    fn the_program_row_has_run_s_figures_over_the_traced_tasks() {
        let r = report();
        let f = &r.program.figures;
        assert_eq!(r.program.sink, SinkKind::Tcp);
        assert_eq!(f.by_reference_bytes.value.as_ref().unwrap().median, 1000.0);
        assert_eq!(f.cpu_copied_bytes.value.as_ref().unwrap().median, 0.0);
        assert_eq!(f.payload_bytes.value.as_ref().unwrap().median, 1000.0);
        assert!(
            f.syscalls
                .provenance
                .describe()
                .contains("the traced tasks only"),
            "{}",
            f.syscalls.provenance.describe()
        );
        assert_eq!(r.expectation.as_ref().unwrap().verdict, Outcome::Holds);
        assert_eq!(r.by_fd_kind[0].filesystem.as_deref(), Some("ext2/3/4"));
        assert_eq!(r.by_fd_kind.len(), 2);
    }

    #[test]
    fn every_format_renders_the_trace() {
        let r = report();
        let render = |f| {
            let mut out = Vec::new();
            write(&r, f, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let json: serde_json::Value = serde_json::from_str(&render(Format::Json)).unwrap();
        assert_eq!(json["mode"], "trace");
        assert_eq!(json["schema"], 1);
        assert_eq!(json["program"]["id"], "traced");
        assert_eq!(json["by_fd_kind"][0]["kind"], "regular");
        assert_eq!(json["io_uring_requests"], serde_json::json!({}));
        let table = render(Format::Table);
        assert!(table.contains("`server --port 80` as student"), "{table}");
        assert!(table.contains("regular (ext2/3/4)"), "{table}");
        assert!(table.contains("Expectation zero-copy: HOLDS"), "{table}");
        let md = render(Format::Markdown);
        assert!(md.starts_with("## zc-trace trace"), "{md}");
        assert!(md.contains("| Syscalls"), "{md}");
        let csv = render(Format::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2, "{csv}");
        assert!(lines[0].starts_with("mode,target,syscalls,"), "{csv}");
        assert!(
            lines[1].starts_with("trace,\"server --port 80\",2,"),
            "{csv}"
        );
        assert!(
            lines[1].contains("sendfile:in:regular(ext2/3/4)=2/1000"),
            "{csv}"
        );
        assert!(lines[1].ends_with(",holds"), "{csv}");
    }

    #[test]
    fn zero_copy_differs_when_a_file_is_read_into_user_memory() {
        let mut r = report();
        let site = r
            .program
            .copy_sites
            .iter_mut()
            .find(|c| c.site == SiteId::Hook(HookId::FileRead))
            .unwrap();
        site.bytes.as_mut().unwrap().kernel_to_user = Stat::of(vec![500.0]).unwrap();
        let e = expect_zero_copy(&r.program);
        assert_eq!(e.verdict, Outcome::Differs, "{}", e.reason);
        assert!(
            e.reason.contains("read from files into user memory"),
            "{}",
            e.reason
        );
    }
}
