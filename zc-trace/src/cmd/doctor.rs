//! `zc-trace doctor`: what this host lets zc-trace observe and what not, with the fix for each,
//! on one screen. The host facts come from `capabilities` and `tracefs`; what the probe plan
//! attaches comes from loading the tracer as `zc-trace probes` does (`Session::attach_plan`),
//! summarised here.

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::error::Error;
use crate::kernel::capabilities::{self, HostFacts, Lockdown, Privileges, KPROBE_PMU};
use crate::kernel::memlock::Memlock;
use crate::kernel::probes::{AttachFailure, AttachReport, Attempt, Fallback, HookId, Method, PLAN};
use crate::kernel::tracefs;

/// The text form fits this many columns.
const WIDTH: usize = 100;
/// Mark, two spaces, label, two spaces: where a check's text starts.
const MARK: usize = 7;
const LABEL: usize = 16;
/// A hook's name in the plan summary.
const HOOK: usize = 17;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    /// Works, with less than zc-trace could observe.
    Limited,
    /// Not there: what depends on it is not observed (or zc-trace cannot run).
    Missing,
    /// Not checked: it needs privileges this process lacks, or the host hides it.
    Unknown,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Limited => "limited",
            State::Missing => "missing",
            State::Unknown => "unknown",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    #[serde(skip)]
    pub label: &'static str,
    pub state: State,
    pub detail: String,
    /// What to do about it, when it is not ok.
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, label: &'static str, state: State, detail: String) -> Self {
        Check {
            name,
            label,
            state,
            detail,
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Why the plan has no outcome.
#[derive(Debug, Clone)]
pub enum PlanError {
    /// Not tried: this process could not load the programs.
    NotChecked(String),
    /// Tried, and the tracer refused to load or a required hook did not attach.
    Failed(String),
}

/// Everything the report is made of, gathered before anything is judged (so that the
/// judging is testable with made-up hosts).
#[derive(Debug, Clone)]
pub struct Facts {
    pub host: HostFacts,
    pub privileges: Privileges,
    /// The tracefs root zc-trace would use, if this process can read one.
    pub tracefs: Option<std::path::PathBuf>,
    /// Every tracefs mount, before zc-trace mounted anything.
    pub mounts: Vec<tracefs::Mount>,
    pub kprobes: bool,
    pub lockdown: Lockdown,
    /// The kernel has the function tracer (None: tracefs could not be read).
    pub function_tracer: Option<bool>,
    pub io_uring_disabled: Option<i64>,
    pub io_uring_group: Option<i64>,
    pub unprivileged_bpf_disabled: Option<i64>,
    pub perf_event_paranoid: Option<i64>,
    /// Whether BPF memory is charged to RLIMIT_MEMLOCK here, and what became of the limit.
    pub memlock: Memlock,
    /// Why this kernel is refused, if it is older than zc-trace supports.
    pub too_old: Option<String>,
    pub plan: Result<AttachReport, PlanError>,
}

impl Facts {
    /// What stops this process from loading the programs, if anything: the capabilities it
    /// lacks, tracefs included.
    fn missing_privileges(&self) -> Vec<&'static str> {
        let mut missing = self.privileges.missing.clone();
        if self.tracefs.is_none() {
            match self.unreadable_mount() {
                Some(_) if !self.privileges.dac_read => missing.push("CAP_DAC_READ_SEARCH"),
                None if !self.privileges.sys_admin => missing.push("CAP_SYS_ADMIN"),
                _ => {}
            }
        }
        missing
    }

    /// A tracefs mounted where zc-trace looks that this process cannot read.
    fn unreadable_mount(&self) -> Option<&tracefs::Mount> {
        self.mounts
            .iter()
            .find(|m| !m.readable && m.where_zc_trace_looks())
    }

    fn is_root(&self) -> bool {
        self.privileges.euid == 0 && self.privileges.all()
    }
}

/// Gathers the facts; as root (or with the capabilities) loads the tracer and attaches the
/// plan, then detaches it again (and unmounts a tracefs mounted for it).
pub fn gather() -> Facts {
    let host = HostFacts::detect();
    let privileges = Privileges::detect();
    let mounts = tracefs::mounts();
    let mut facts = Facts {
        tracefs: tracefs::find(),
        kprobes: capabilities::kprobes_available(),
        lockdown: capabilities::lockdown(),
        function_tracer: None,
        io_uring_disabled: capabilities::kernel_sysctl("io_uring_disabled"),
        io_uring_group: capabilities::kernel_sysctl("io_uring_group"),
        unprivileged_bpf_disabled: capabilities::kernel_sysctl("unprivileged_bpf_disabled"),
        perf_event_paranoid: capabilities::kernel_sysctl("perf_event_paranoid"),
        memlock: Memlock::Unknown { why: String::new() },
        too_old: capabilities::check_kernel(&host.kernel)
            .err()
            .map(|e| e.to_string()),
        plan: Err(PlanError::NotChecked(String::new())),
        host,
        privileges,
        mounts,
    };
    let missing = facts.missing_privileges();
    // The probe loads a program: as privileged as the plan.
    facts.memlock = if missing.is_empty() {
        crate::kernel::memlock::prepare().clone()
    } else {
        Memlock::Unknown {
            why: format!("not checked: this process lacks {}", and_list(&missing)),
        }
    };
    facts.plan = if let Some(why) = &facts.too_old {
        Err(PlanError::NotChecked(why.clone()))
    } else if !missing.is_empty() {
        Err(PlanError::NotChecked(format!(
            "this process lacks {}",
            and_list(&missing)
        )))
    } else {
        match super::session::Session::open_checked(facts.host.clone()) {
            Ok(session) => {
                facts.function_tracer = capabilities::function_tracer(&session.tracefs);
                session
                    .attach_plan()
                    .map_err(|e| PlanError::Failed(e.to_string()))
            }
            Err(e) => Err(PlanError::Failed(e.to_string())),
        }
    };
    facts
}

/// The name of user `uid`, if it has one.
fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

pub fn checks(f: &Facts) -> Vec<Check> {
    vec![
        kernel(f),
        privileges(f),
        tracefs_check(f),
        btf(f),
        kprobes(f),
        fentry(f),
        lockdown(f),
        io_uring(f),
        unprivileged_bpf(f),
        perf_events(f),
        memlock(f),
    ]
}

fn kernel(f: &Facts) -> Check {
    const LABEL: &str = "kernel";
    let (major, minor) = capabilities::OLDEST_KERNEL;
    match &f.too_old {
        None => Check::new(
            "kernel",
            LABEL,
            State::Ok,
            format!(
                "{} (zc-trace supports {major}.{minor} and newer)",
                f.host.kernel
            ),
        ),
        Some(why) => Check::new("kernel", LABEL, State::Missing, why.clone())
            .fix(format!("a kernel {major}.{minor} or newer")),
    }
}

fn memlock(f: &Facts) -> Check {
    const LABEL: &str = "locked memory";
    const FIX: &str = "raise the limit before zc-trace starts: `ulimit -l unlimited` as root, \
                       LimitMEMLOCK=infinity in a systemd unit, or give zc-trace \
                       CAP_SYS_RESOURCE";
    const CHARGED: &str = "this kernel charges eBPF maps to RLIMIT_MEMLOCK (as kernels before \
                           5.11 do)";
    match &f.memlock {
        Memlock::NotCharged => Check::new(
            "memlock",
            LABEL,
            State::Ok,
            "eBPF memory is charged to the memory cgroup (5.11+): RLIMIT_MEMLOCK does not \
             limit zc-trace's maps"
                .into(),
        ),
        Memlock::Raised { inherited } => Check::new(
            "memlock",
            LABEL,
            State::Ok,
            format!(
                "{CHARGED}; the limit here is {inherited}, and zc-trace raises its own for its \
                 maps (a program `trace` starts gets {inherited} back)"
            ),
        ),
        Memlock::Stuck { inherited, why } => Check::new(
            "memlock",
            LABEL,
            State::Missing,
            format!(
                "{CHARGED}; the limit here is {inherited}, and zc-trace cannot raise it ({why}): \
                 its maps do not fit"
            ),
        )
        .fix(FIX),
        Memlock::Unknown { why } => Check::new(
            "memlock",
            LABEL,
            State::Unknown,
            format!("whether this kernel charges eBPF maps to RLIMIT_MEMLOCK: {why}"),
        ),
    }
}

fn privileges(f: &Facts) -> Check {
    const LABEL: &str = "privileges";
    let p = &f.privileges;
    let who = match user_name(p.euid) {
        Some(name) => format!("uid {} ({name})", p.euid),
        None => format!("uid {}", p.euid),
    };
    if f.is_root() {
        return Check::new(
            "privileges",
            LABEL,
            State::Ok,
            format!("{who} with every capability zc-trace uses"),
        );
    }
    let missing = f.missing_privileges();
    if !missing.is_empty() {
        let caps: Vec<String> = missing.iter().map(|c| c.to_ascii_lowercase()).collect();
        return Check::new(
            "privileges",
            LABEL,
            State::Missing,
            format!(
                "{who}, missing {}: zc-trace cannot load or attach its eBPF programs",
                and_list(&missing)
            ),
        )
        .fix(format!(
            "run it as root (sudo zc-trace ...), or give it {}: setcap {}+ep zc-trace",
            and_list(&missing),
            caps.join(",")
        ));
    }
    let mut lacking = Vec::new();
    if !p.sys_admin {
        lacking.push("CAP_SYS_ADMIN");
    }
    if !p.net_admin {
        lacking.push("CAP_NET_ADMIN");
    }
    if lacking.is_empty() {
        return Check::new(
            "privileges",
            LABEL,
            State::Ok,
            format!("{who} with every capability zc-trace uses"),
        );
    }
    Check::new(
        "privileges",
        LABEL,
        State::Limited,
        format!(
            "{who}: enough to load and attach the programs; the veth sink and --no-sg also \
             need {}",
            and_list(&lacking)
        ),
    )
    .fix("run as root for the veth sink and --no-sg")
}

fn tracefs_check(f: &Facts) -> Check {
    const LABEL: &str = "tracefs";
    const MOUNT: &str = "mount -t tracefs tracefs /sys/kernel/tracing";
    if let Some(root) = &f.tracefs {
        let mode = match f.mounts.iter().find(|m| m.path == *root) {
            Some(m) if m.owner_only() => format!(
                ", mode {} (owner only: CAP_BPF + CAP_PERFMON without root need \
                 CAP_DAC_READ_SEARCH too)",
                m.mode_label()
            ),
            Some(m) => format!(", mode {}", m.mode_label()),
            None => String::new(),
        };
        return Check::new(
            "tracefs",
            LABEL,
            State::Ok,
            format!("mounted at {}{mode}", root.display()),
        );
    }
    if let Some(m) = f.unreadable_mount() {
        return Check::new(
            "tracefs",
            LABEL,
            State::Missing,
            format!(
                "mounted at {}, mode {} (owner uid {}): this process cannot read the tracepoint \
                 formats and ids zc-trace needs",
                m.path.display(),
                m.mode_label(),
                m.uid.map_or_else(|| "unknown".into(), |u| u.to_string())
            ),
        )
        .fix("run zc-trace as root, or give it CAP_DAC_READ_SEARCH as well");
    }
    if f.privileges.sys_admin {
        return Check::new(
            "tracefs",
            LABEL,
            State::Ok,
            format!(
                "not mounted: zc-trace mounts it at /sys/kernel/tracing while it runs (to keep \
                 it mounted: {MOUNT})"
            ),
        );
    }
    Check::new(
        "tracefs",
        LABEL,
        State::Missing,
        "not mounted, and this process may not mount it".into(),
    )
    .fix(format!(
        "{MOUNT} (as root), or run zc-trace as root: it mounts tracefs itself"
    ))
}

fn btf(f: &Facts) -> Check {
    const LABEL: &str = "kernel BTF";
    match &f.host.btf {
        Some(path) => Check::new("btf", LABEL, State::Ok, path.display().to_string()),
        None => Check::new(
            "btf",
            LABEL,
            State::Missing,
            "no /sys/kernel/btf/vmlinux: no fentry/fexit or tp_btf hooks, no typed reads of \
             kernel structures; classic tracepoints and syscall bytes stand in"
                .into(),
        )
        .fix("a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
    }
}

/// How the candidates of some attach methods fared across the plan.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Hooks that attached with one of the methods.
    attached: usize,
    /// Programs the kernel refused (EPERM/EACCES).
    refused: usize,
    btf_missing: usize,
    unavailable: usize,
    skipped: usize,
    /// Any other failure (verifier, ...).
    other: usize,
}

impl Tally {
    fn of(report: &AttachReport, methods: &[Method]) -> Self {
        let labels: Vec<&str> = methods.iter().map(|m| m.label()).collect();
        let mut t = Tally {
            attached: report
                .hooks
                .iter()
                .filter(|h| h.method.is_some_and(|m| methods.contains(&m)))
                .count(),
            ..Tally::default()
        };
        let attempts = report.hooks.iter().flat_map(|h| &h.failed);
        // The candidate's own method is the first of its label ("fentry+fexit").
        for a in attempts.filter(|a| labels.contains(&a.method.split('+').next().unwrap_or(""))) {
            match a.kind {
                AttachFailure::NotPermitted => t.refused += 1,
                AttachFailure::BtfMissing => t.btf_missing += 1,
                AttachFailure::MethodUnavailable => t.unavailable += 1,
                AttachFailure::Skipped => t.skipped += 1,
                // About the function, not the method.
                AttachFailure::Absent
                | AttachFailure::InModule
                | AttachFailure::PrototypeMismatch => {}
                AttachFailure::VerifierRefused | AttachFailure::Other => t.other += 1,
            }
        }
        t
    }

    fn failed(&self) -> usize {
        self.refused + self.btf_missing + self.unavailable + self.skipped + self.other
    }
}

/// "N hooks attach with them", for a method that works.
fn hooks_with(n: usize) -> String {
    match n {
        1 => "1 hook attaches with them".into(),
        n => format!("{n} hooks attach with them"),
    }
}

fn kprobes(f: &Facts) -> Check {
    const LABEL: &str = "kprobes";
    if !f.kprobes {
        return Check::new(
            "kprobes",
            LABEL,
            State::Missing,
            format!("compiled out (no {KPROBE_PMU})"),
        )
        .fix(
            "a kernel with CONFIG_KPROBES=y; without them zc-trace falls back to tracepoints or \
             derives figures from syscall bytes",
        );
    }
    let Ok(report) = &f.plan else {
        return Check::new(
            "kprobes",
            LABEL,
            State::Ok,
            format!("present ({KPROBE_PMU})"),
        );
    };
    let t = Tally::of(report, &[Method::Kprobe, Method::Kretprobe]);
    if t.refused > 0 && t.attached == 0 {
        return Check::new(
            "kprobes",
            LABEL,
            State::Missing,
            format!("present, but refused (EPERM) for {} programs", t.refused),
        )
        .fix("kprobes are refused under lockdown (see lockdown) or by a security module");
    }
    Check::new(
        "kprobes",
        LABEL,
        State::Ok,
        format!(
            "present ({KPROBE_PMU}); {}, where fexit does not",
            hooks_with(t.attached)
        ),
    )
}

fn fentry(f: &Facts) -> Check {
    const LABEL: &str = "fentry/fexit";
    let report = match &f.plan {
        Ok(r) => r,
        Err(PlanError::NotChecked(why)) => {
            return Check::new(
                "fentry_fexit",
                LABEL,
                State::Unknown,
                format!("not checked: {why}"),
            )
            .fix("run doctor as root to check")
        }
        Err(PlanError::Failed(_)) => {
            return Check::new(
                "fentry_fexit",
                LABEL,
                State::Unknown,
                "not checked: the tracer did not load (see below)".into(),
            )
        }
    };
    let t = Tally::of(report, &[Method::Fentry, Method::Fexit]);
    if t.failed() == 0 {
        return if t.attached > 0 {
            Check::new(
                "fentry_fexit",
                LABEL,
                State::Ok,
                format!("allowed: {}", hooks_with(t.attached)),
            )
        } else {
            Check::new(
                "fentry_fexit",
                LABEL,
                State::Unknown,
                "no fentry/fexit candidate applies to this kernel's functions".into(),
            )
        };
    }
    if t.attached > 0 {
        return Check::new(
            "fentry_fexit",
            LABEL,
            State::Limited,
            format!(
                "{}; {} programs failed (zc-trace probes says why)",
                hooks_with(t.attached),
                t.failed()
            ),
        );
    }
    if t.refused == t.failed() {
        const CONFIG: &str = "CONFIG_FUNCTION_TRACER and CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS";
        let fix = match (&f.lockdown, f.function_tracer) {
            (Lockdown::Mode(m), _) if m != "none" => format!(
                "the kernel is locked down ({m}): boot without lockdown={m} (or without the \
                 Secure Boot that turns it on)"
            ),
            (_, Some(true)) => "the kernel has the function tracer (tracefs lists it), so a \
                                policy refuses them: lift the lockdown (see below) or the \
                                security module (a BPF LSM program)"
                .into(),
            (_, Some(false)) => {
                format!("a kernel with {CONFIG} (tracefs lists no function tracer)")
            }
            (_, None) => format!("boot without lockdown=, or use a kernel with {CONFIG}"),
        };
        return Check::new(
            "fentry_fexit",
            LABEL,
            State::Missing,
            format!(
                "refused (EPERM) for all {} programs tried: usually lockdown, or a kernel \
                 without CONFIG_FUNCTION_TRACER / ftrace direct calls",
                t.refused
            ),
        )
        .fix(fix);
    }
    if t.btf_missing == t.failed() {
        return Check::new(
            "fentry_fexit",
            LABEL,
            State::Missing,
            "unavailable: they need kernel BTF".into(),
        )
        .fix("see kernel BTF");
    }
    if t.skipped == t.failed() {
        return Check::new(
            "fentry_fexit",
            LABEL,
            State::Limited,
            format!(
                "skipped: {} names them",
                crate::kernel::tracer::SKIP_METHODS_VAR
            ),
        )
        .fix(format!("unset {}", crate::kernel::tracer::SKIP_METHODS_VAR));
    }
    Check::new(
        "fentry_fexit",
        LABEL,
        State::Missing,
        format!(
            "no program attached: {} refused (EPERM), {} failed otherwise (zc-trace probes says \
             why)",
            t.refused,
            t.failed() - t.refused
        ),
    )
}

fn lockdown(f: &Facts) -> Check {
    const LABEL: &str = "lockdown";
    const FIX: &str = "boot without lockdown= on the kernel command line (Secure Boot may turn \
                       it on: then without that)";
    match &f.lockdown {
        Lockdown::Mode(m) if m == "none" => Check::new("lockdown", LABEL, State::Ok, "none".into()),
        Lockdown::Mode(m) if m == "integrity" => Check::new(
            "lockdown",
            LABEL,
            State::Limited,
            "integrity: kprobes and eBPF writes to user memory are refused".into(),
        )
        .fix(FIX),
        Lockdown::Mode(m) => Check::new(
            "lockdown",
            LABEL,
            State::Missing,
            format!(
                "{m}: eBPF may not read kernel memory, and tracefs and perf are closed: zc-trace \
                 cannot observe its sites"
            ),
        )
        .fix(FIX),
        Lockdown::NoLsm => Check::new(
            "lockdown",
            LABEL,
            State::Ok,
            "not locked down (no lockdown LSM)".into(),
        ),
        Lockdown::Unknown(why) => Check::new(
            "lockdown",
            LABEL,
            State::Unknown,
            format!("{why}: the lockdown mode cannot be read"),
        )
        .fix(format!(
            "mount -t securityfs securityfs {} and run doctor again",
            capabilities::SECURITYFS
        )),
    }
}

fn io_uring(f: &Facts) -> Check {
    const LABEL: &str = "io_uring";
    const FIX: &str = "sysctl kernel.io_uring_disabled=0";
    let strategies: Vec<&str> = crate::transfer::strategies::ALL
        .iter()
        .filter(|s| s.needs_io_uring())
        .map(|s| s.id().name())
        .collect();
    let strategies = and_list(&strategies);
    match f.io_uring_disabled {
        None => Check::new(
            "io_uring",
            LABEL,
            State::Ok,
            "no kernel.io_uring_disabled (kernel before 6.6): io_uring is allowed".into(),
        ),
        Some(0) => Check::new(
            "io_uring",
            LABEL,
            State::Ok,
            "kernel.io_uring_disabled = 0: allowed".into(),
        ),
        Some(1) => {
            let group = match f.io_uring_group {
                Some(g) if g >= 0 => format!("and group {g} (kernel.io_uring_group)"),
                _ => "(kernel.io_uring_group names no group)".into(),
            };
            Check::new(
                "io_uring",
                LABEL,
                State::Limited,
                format!(
                    "kernel.io_uring_disabled = 1: only CAP_SYS_ADMIN {group} may create rings: \
                     `run` as root can, a program traced as another user may not"
                ),
            )
            .fix(FIX)
        }
        Some(v) => Check::new(
            "io_uring",
            LABEL,
            State::Missing,
            format!(
                "kernel.io_uring_disabled = {v}: disabled for everyone; the io_uring strategies \
                 ({strategies}) are skipped"
            ),
        )
        .fix(FIX),
    }
}

fn unprivileged_bpf(f: &Facts) -> Check {
    const LABEL: &str = "unprivileged bpf";
    let Some(v) = f.unprivileged_bpf_disabled else {
        return Check::new(
            "unprivileged_bpf",
            LABEL,
            State::Unknown,
            "no kernel.unprivileged_bpf_disabled".into(),
        );
    };
    let name = format!("kernel.unprivileged_bpf_disabled = {v}");
    if f.privileges.missing.is_empty() {
        return Check::new(
            "unprivileged_bpf",
            LABEL,
            State::Ok,
            format!("{name} (matters only without CAP_BPF)"),
        );
    }
    if v == 0 {
        return Check::new(
            "unprivileged_bpf",
            LABEL,
            State::Ok,
            format!("{name}: bpf() is open, but only for socket filters, not tracing programs"),
        );
    }
    Check::new(
        "unprivileged_bpf",
        LABEL,
        State::Limited,
        format!("{name}: bpf() needs CAP_BPF here"),
    )
    .fix("CAP_BPF (setting it to 0 would not do: tracing programs always need CAP_BPF)")
}

fn perf_events(f: &Facts) -> Check {
    const LABEL: &str = "perf events";
    let Some(v) = f.perf_event_paranoid else {
        return Check::new(
            "perf_event_paranoid",
            LABEL,
            State::Unknown,
            "no kernel.perf_event_paranoid".into(),
        );
    };
    let name = format!("kernel.perf_event_paranoid = {v}");
    if !f.privileges.missing.contains(&"CAP_PERFMON") {
        return Check::new(
            "perf_event_paranoid",
            LABEL,
            State::Ok,
            format!("{name} (matters only without CAP_PERFMON)"),
        );
    }
    if v <= -1 {
        return Check::new(
            "perf_event_paranoid",
            LABEL,
            State::Ok,
            format!("{name}: tracepoint events are open to every user"),
        );
    }
    Check::new(
        "perf_event_paranoid",
        LABEL,
        State::Limited,
        format!("{name}: tracepoint perf events need CAP_PERFMON here"),
    )
    .fix("CAP_PERFMON (or sysctl kernel.perf_event_paranoid=-1, which opens them to everyone)")
}

/// A hook that did not attach, in one line.
#[derive(Debug, Clone, Serialize)]
pub struct Unobserved {
    pub hook: HookId,
    pub feeds: &'static str,
    /// What stands in for it.
    pub instead: String,
    /// Why each kind of candidate failed, shortly (`zc-trace probes` has the messages).
    pub why: String,
    /// Its figure is derived from syscall bytes.
    #[serde(skip)]
    derived: bool,
    /// Its bytes are counted in another site's derived figure.
    #[serde(skip)]
    folded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodCount {
    pub method: String,
    pub hooks: usize,
}

/// The probe plan's outcome, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    /// The plan was tried here.
    pub checked: bool,
    pub hooks: usize,
    pub attached: usize,
    pub methods: Vec<MethodCount>,
    /// Hooks that exist in this kernel but did not attach.
    pub not_observable: Vec<Unobserved>,
    /// Hooks whose every function or event is absent from this kernel (other kernels' sites).
    pub not_in_kernel: Vec<HookId>,
    /// Figures derived from syscall bytes instead of observed.
    pub derived: usize,
    /// Why the plan was not tried, or did not load.
    pub error: Option<String>,
}

/// One failed attempt, shortly.
fn short_reason(a: &Attempt) -> String {
    if a.kind == AttachFailure::MethodUnavailable {
        // Whatever the method: the kprobe PMU is missing.
        return "no kprobes".into();
    }
    let why = match a.kind {
        AttachFailure::NotPermitted => "EPERM",
        AttachFailure::MethodUnavailable => "no kprobes",
        AttachFailure::Absent => "absent",
        AttachFailure::BtfMissing => "no BTF",
        AttachFailure::InModule => "in a module",
        AttachFailure::PrototypeMismatch => "prototype differs",
        AttachFailure::VerifierRefused => "verifier refused",
        AttachFailure::Skipped => "skipped",
        AttachFailure::Other => "failed",
    };
    format!("{} {why}", a.method)
}

pub fn plan_summary(f: &Facts) -> PlanSummary {
    let report = match &f.plan {
        Ok(r) => r,
        Err(PlanError::NotChecked(why) | PlanError::Failed(why)) => {
            return PlanSummary {
                checked: matches!(f.plan, Err(PlanError::Failed(_))),
                hooks: PLAN.len(),
                attached: 0,
                methods: Vec::new(),
                not_observable: Vec::new(),
                not_in_kernel: Vec::new(),
                derived: 0,
                error: Some(why.clone()),
            }
        }
    };
    let mut methods: Vec<MethodCount> = Vec::new();
    for label in report.hooks.iter().filter_map(|h| h.method_label.as_ref()) {
        match methods.iter_mut().find(|m| m.method == *label) {
            Some(m) => m.hooks += 1,
            None => methods.push(MethodCount {
                method: label.clone(),
                hooks: 1,
            }),
        }
    }
    methods.sort_by_key(|m| std::cmp::Reverse(m.hooks));
    let attached = |id: HookId| {
        report
            .hooks
            .iter()
            .any(|h| h.hook == id && h.method.is_some())
    };
    let mut not_observable = Vec::new();
    let mut not_in_kernel = Vec::new();
    for h in report.hooks.iter().filter(|h| h.method.is_none()) {
        let absent =
            |a: &&Attempt| matches!(a.kind, AttachFailure::Absent | AttachFailure::InModule);
        // A copy site that this kernel lacks is a path its data never takes here. Other hooks
        // (faults, context switches, tasks) count what every kernel does: where their event
        // or function is absent (x86's exceptions:page_fault_* on arm64), the figure is not
        // observable, not someone else's.
        if h.hook.copy().is_some() && !h.failed.is_empty() && h.failed.iter().all(|a| absent(&a)) {
            not_in_kernel.push(h.hook);
            continue;
        }
        let mut reasons: Vec<String> = Vec::new();
        for r in h.failed.iter().filter(|a| !absent(a)).map(short_reason) {
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
        let fallback = h.hook.copy().map(|c| c.fallback);
        let (instead, derived, folded) = match fallback {
            Some(Fallback::Derived { .. }) => {
                ("derived from syscall bytes".to_string(), true, false)
            }
            Some(Fallback::InGeneric(g)) if !attached(g) => (
                format!("counted in {}'s derived figure", g.name()),
                false,
                true,
            ),
            _ => (format!("not observable: {}", h.feeds), false, false),
        };
        not_observable.push(Unobserved {
            hook: h.hook,
            feeds: h.feeds,
            instead,
            why: reasons.join("; "),
            derived,
            folded,
        });
    }
    PlanSummary {
        checked: true,
        hooks: report.hooks.len(),
        attached: report.hooks.iter().filter(|h| h.method.is_some()).count(),
        derived: not_observable.iter().filter(|u| u.derived).count(),
        methods,
        not_observable,
        not_in_kernel,
        error: None,
    }
}

/// Whether zc-trace can run here: the plan loaded with its required hooks.
fn can_run(f: &Facts) -> bool {
    match &f.plan {
        Ok(report) => PLAN
            .iter()
            .filter(|h| h.required)
            .all(|h| report.get(h.id).method.is_some()),
        Err(_) => false,
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The last line: whether zc-trace works here, and how much of it.
pub fn verdict(f: &Facts, s: &PlanSummary) -> String {
    if !can_run(f) {
        let why = s
            .error
            .clone()
            .unwrap_or_else(|| "a required hook did not attach".into());
        return format!("zc-trace cannot run here: {why}; fix what is marked missing above");
    }
    let mut v = format!(
        "zc-trace works here: {} of {} hooks attach",
        s.attached, s.hooks
    );
    if !s.not_in_kernel.is_empty() {
        v.push_str(&format!(
            " ({} of other kernels)",
            plural(s.not_in_kernel.len(), "is a site", "are sites")
        ));
    }
    let unobservable: Vec<&str> = s
        .not_observable
        .iter()
        .filter(|u| !u.derived && !u.folded)
        .map(|u| u.hook.name())
        .collect();
    match (s.derived, unobservable.len()) {
        (0, 0) => v.push_str("; every figure is observed"),
        (d, u) => {
            if d > 0 {
                v.push_str(&format!(
                    "; {} derived from syscall bytes instead of observed",
                    plural(d, "figure is", "figures are")
                ));
            }
            if u > 0 {
                v.push_str(&format!(
                    "; {} not observable ({})",
                    plural(u, "site is", "sites are"),
                    unobservable.join(", ")
                ));
            }
        }
    }
    v
}

/// `head` then `text` wrapped into the columns after it, continuation lines indented to it.
fn hang(out: &mut Vec<String>, head: &str, text: &str) {
    let indent = head.chars().count();
    for (i, l) in crate::ui::wrap::lines(text, WIDTH - indent)
        .into_iter()
        .enumerate()
    {
        if i == 0 {
            out.push(format!("{head}{l}").trim_end().to_string());
        } else {
            out.push(format!("{}{l}", " ".repeat(indent)));
        }
    }
}

/// The text form, one line per element, each at most WIDTH columns.
pub fn render(f: &Facts, checks: &[Check], s: &PlanSummary) -> Vec<String> {
    let mut out = Vec::new();
    let who = if f.is_root() {
        "as root"
    } else {
        "not as root"
    };
    hang(
        &mut out,
        "",
        &format!(
            "zc-trace doctor: kernel {} ({}), {who}",
            f.host.kernel, f.host.arch
        ),
    );
    out.push(String::new());
    let pad = " ".repeat(MARK + 2 + LABEL + 2);
    for c in checks {
        let head = format!("{:<MARK$}  {:<LABEL$}  ", c.state.label(), c.label);
        hang(&mut out, &head, &c.detail);
        if let Some(fix) = &c.fix {
            hang(&mut out, &format!("{pad}fix: "), fix);
        }
    }
    out.push(String::new());
    if s.checked && s.error.is_none() {
        let methods: Vec<String> = s
            .methods
            .iter()
            .map(|m| format!("{} {}", m.hooks, m.method))
            .collect();
        hang(
            &mut out,
            "",
            &format!(
                "probe plan: {} of {} hooks attach: {}",
                s.attached,
                s.hooks,
                methods.join(", ")
            ),
        );
        if !s.not_observable.is_empty() {
            out.push("  not observed here, and why (zc-trace probes has the details):".into());
            for u in &s.not_observable {
                let head = format!("  {:<HOOK$}  ", u.hook.name());
                hang(&mut out, &head, &format!("{} [{}]", u.instead, u.why));
            }
        }
        if !s.not_in_kernel.is_empty() {
            let names: Vec<&str> = s.not_in_kernel.iter().map(|h| h.name()).collect();
            hang(
                &mut out,
                "  ",
                &format!(
                    "not in this kernel (sites of other kernels): {}",
                    names.join(", ")
                ),
            );
        }
    } else {
        let why = s.error.as_deref().unwrap_or("");
        let what = if s.checked {
            "did not load"
        } else {
            "not checked"
        };
        hang(&mut out, "", &format!("probe plan: {what}: {why}"));
    }
    out.push(String::new());
    hang(&mut out, "", &verdict(f, s));
    out
}

/// `text` and a newline on stdout, in one write; a reader gone (`zc-trace doctor | head`) is
/// not an error.
fn print(text: &str) -> Result<(), Error> {
    crate::ui::output::println(text).map_err(Error::Output)
}

/// `zc-trace doctor`: exit 0 when zc-trace can run here, 3 when it cannot.
pub fn main(args: DoctorArgs) -> Result<ExitCode, Error> {
    let facts = gather();
    let checks = checks(&facts);
    let summary = plan_summary(&facts);
    let ok = can_run(&facts);
    if args.json {
        let doc = serde_json::json!({
            "schema": 1,
            "host": facts.host,
            "privileges": facts.privileges,
            "tracefs_mounts": facts.mounts,
            "checks": checks,
            "plan": summary,
            "can_run": ok,
            "verdict": verdict(&facts, &summary),
        });
        print(&serde_json::to_string_pretty(&doc).expect("serialisable"))?;
    } else {
        print(&render(&facts, &checks, &summary).join("\n"))?;
    }
    Ok(ExitCode::from(if ok { 0 } else { 3 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::probes::{Hook, HookOutcome};

    /// A report of the plan where `outcome` decides each hook's method and failed attempts.
    fn report(outcome: impl Fn(&Hook) -> (Option<Method>, Vec<Attempt>)) -> AttachReport {
        AttachReport {
            paths: crate::kernel::probes::KernelPaths::default(),
            hooks: PLAN
                .iter()
                .map(|h| {
                    let (method, failed) = outcome(h);
                    HookOutcome {
                        hook: h.id,
                        site: h.site,
                        feeds: h.feeds,
                        method,
                        method_label: method.map(|m| m.label().to_string()),
                        target: method.map(|_| h.candidates[0].target.to_string()),
                        failed,
                        detail: None,
                    }
                })
                .collect(),
        }
    }

    fn attempt(method: &str, kind: AttachFailure) -> Attempt {
        Attempt {
            method: method.into(),
            target: "f".into(),
            kind,
            error: "e".into(),
        }
    }

    /// This development machine: tracepoints only, every fexit/fentry refused, no kprobes.
    fn tracepoints_only() -> AttachReport {
        report(|h| {
            let tp = h
                .candidates
                .iter()
                .find(|c| matches!(c.method, Method::Tracepoint | Method::TpBtf));
            match tp {
                Some(c) => (Some(c.method), Vec::new()),
                None => (
                    None,
                    h.candidates
                        .iter()
                        .map(|c| match c.method {
                            Method::Fexit | Method::Fentry => {
                                attempt(&c.label(), AttachFailure::NotPermitted)
                            }
                            _ => attempt(&c.label(), AttachFailure::MethodUnavailable),
                        })
                        .collect(),
                ),
            }
        })
    }

    fn root() -> Privileges {
        Privileges::from_effective(0x0000_01ff_ffff_ffff, 0)
    }

    fn facts(privileges: Privileges, plan: Result<AttachReport, PlanError>) -> Facts {
        Facts {
            host: HostFacts {
                kernel: "6.18.0-test".into(),
                arch: "x86_64".into(),
                btf: Some("/sys/kernel/btf/vmlinux".into()),
                btf_note: None,
            },
            privileges,
            tracefs: Some("/sys/kernel/tracing".into()),
            mounts: vec![tracefs::Mount {
                path: "/sys/kernel/tracing".into(),
                mode: Some(0o700),
                uid: Some(0),
                readable: true,
            }],
            kprobes: false,
            lockdown: Lockdown::Mode("none".into()),
            function_tracer: Some(true),
            io_uring_disabled: Some(0),
            io_uring_group: Some(-1),
            unprivileged_bpf_disabled: Some(2),
            perf_event_paranoid: Some(2),
            memlock: Memlock::NotCharged,
            too_old: None,
            plan,
        }
    }

    fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).expect(name)
    }

    fn assert_fits(lines: &[String]) {
        for l in lines {
            assert!(
                l.chars().count() <= WIDTH,
                "{} columns: {l}",
                l.chars().count()
            );
        }
    }

    /// Before 5.11: raised, it is fine and says what `trace`'s command gets; stuck, it is
    /// missing, with the fix.
    #[test]
    fn a_memlock_limit_that_cannot_be_raised_is_missing_with_its_fix() {
        let mut f = facts(root(), Ok(tracepoints_only()));
        let inherited = crate::kernel::memlock::Limit {
            soft: 65536,
            hard: 65536,
        };
        f.memlock = Memlock::Raised { inherited };
        let c = check(&checks(&f), "memlock").clone();
        assert_eq!(c.state, State::Ok, "{c:?}");
        assert!(c.detail.contains("64 KiB back"), "{c:?}");
        f.memlock = Memlock::Stuck {
            inherited,
            why: "Operation not permitted".into(),
        };
        let c = check(&checks(&f), "memlock").clone();
        assert_eq!(c.state, State::Missing, "{c:?}");
        assert!(c.detail.contains("is 64 KiB") && c.detail.contains("not permitted"));
        assert!(c
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("ulimit -l unlimited")));
        assert_fits(&render(&f, &checks(&f), &plan_summary(&f)));
    }

    #[test]
    fn a_kernel_older_than_supported_is_missing_with_its_fix() {
        let mut f = facts(root(), Err(PlanError::NotChecked("too old".into())));
        assert_eq!(check(&checks(&f), "kernel").state, State::Ok);
        f.too_old = Some("kernel 5.4.0 is older than 5.10".into());
        let c = check(&checks(&f), "kernel").clone();
        assert_eq!(c.state, State::Missing, "{c:?}");
        assert!(c
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("5.10 or newer")));
        assert!(!can_run(&f));
    }

    #[test]
    fn every_fexit_refused_is_reported_as_eperm_and_the_plan_summarised() {
        let f = facts(root(), Ok(tracepoints_only()));
        let checks = checks(&f);
        let fentry = check(&checks, "fentry_fexit");
        assert_eq!(fentry.state, State::Missing);
        assert!(
            fentry.detail.contains("refused (EPERM)"),
            "{}",
            fentry.detail
        );
        assert!(fentry.fix.as_ref().unwrap().contains("function tracer"));
        assert_eq!(check(&checks, "kprobes").state, State::Missing);
        assert!(check(&checks, "kprobes")
            .fix
            .as_ref()
            .unwrap()
            .contains("CONFIG_KPROBES"));
        assert_eq!(check(&checks, "privileges").state, State::Ok);
        let s = plan_summary(&f);
        assert!(s.checked && s.error.is_none());
        assert_eq!(
            s.attached + s.not_observable.len() + s.not_in_kernel.len(),
            s.hooks
        );
        let file_read = s
            .not_observable
            .iter()
            .find(|u| u.hook == HookId::FileRead)
            .unwrap();
        assert_eq!(file_read.instead, "derived from syscall bytes");
        assert_eq!(file_read.why, "fexit EPERM; no kprobes");
        let v = verdict(&f, &s);
        assert!(v.starts_with("zc-trace works here: "), "{v}");
        assert!(
            v.contains("derived from syscall bytes instead of observed"),
            "{v}"
        );
        let lines = render(&f, &checks, &s);
        assert_fits(&lines);
        // The verdict ends the screen, wrapped.
        let tail: Vec<&str> = lines
            .iter()
            .rev()
            .take_while(|l| !l.is_empty())
            .map(String::as_str)
            .collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        assert_eq!(tail.join(" "), v);
    }

    #[test]
    fn lockdown_is_named_as_the_cause_when_the_kernel_is_locked_down() {
        let mut f = facts(root(), Ok(tracepoints_only()));
        f.lockdown = Lockdown::Mode("integrity".into());
        let checks = checks(&f);
        assert!(check(&checks, "fentry_fexit")
            .fix
            .as_ref()
            .unwrap()
            .contains("lockdown=integrity"));
        assert_eq!(check(&checks, "lockdown").state, State::Limited);
        f.lockdown = Lockdown::Unknown("securityfs is not mounted".into());
        assert_eq!(check(&super::checks(&f), "lockdown").state, State::Unknown);
    }

    #[test]
    fn fexit_that_attaches_is_ok() {
        let f = facts(
            root(),
            Ok(report(|h| (Some(h.candidates[0].method), Vec::new()))),
        );
        let checks = checks(&f);
        assert_eq!(check(&checks, "fentry_fexit").state, State::Ok);
        let s = plan_summary(&f);
        assert_eq!(s.attached, s.hooks);
        assert!(verdict(&f, &s).ends_with("every figure is observed"));
    }

    /// arm64: x86's exceptions:page_fault_* events are absent, as is a copy site of older
    /// kernels. Only the copy site is another kernel's; the faults still happen here, unseen.
    #[test]
    fn an_absent_fault_event_leaves_its_figure_not_observable() {
        let f = facts(
            root(),
            Ok(report(|h| match h.id {
                HookId::FaultUserMode | HookId::FaultKernelMode | HookId::TcpSendpage => (
                    None,
                    vec![attempt(&h.candidates[0].label(), AttachFailure::Absent)],
                ),
                _ => (Some(h.candidates[0].method), Vec::new()),
            })),
        );
        let s = plan_summary(&f);
        assert_eq!(s.not_in_kernel, [HookId::TcpSendpage]);
        let unobserved: Vec<HookId> = s.not_observable.iter().map(|u| u.hook).collect();
        assert_eq!(unobserved, [HookId::FaultUserMode, HookId::FaultKernelMode]);
        let v = verdict(&f, &s);
        assert!(!v.contains("every figure is observed"), "{v}");
        assert!(
            v.ends_with("2 sites are not observable (fault_user_mode, fault_kernel_mode)"),
            "{v}"
        );
    }

    #[test]
    fn io_uring_disabled_says_which_strategies_are_skipped() {
        let mut f = facts(root(), Ok(tracepoints_only()));
        f.io_uring_disabled = Some(2);
        let c = check(&checks(&f), "io_uring").clone();
        assert_eq!(c.state, State::Missing);
        assert!(c.detail.contains("io-uring-send-zc"), "{}", c.detail);
        assert_eq!(c.fix.as_deref(), Some("sysctl kernel.io_uring_disabled=0"));
        f.io_uring_disabled = Some(1);
        f.io_uring_group = Some(1234);
        let c = check(&checks(&f), "io_uring").clone();
        assert_eq!(c.state, State::Limited);
        assert!(c.detail.contains("group 1234"), "{}", c.detail);
    }

    #[test]
    fn without_privileges_nothing_is_loaded_and_the_missing_ones_are_named() {
        let nobody = Privileges::from_effective(0, 65534);
        let mut f = facts(nobody, Err(PlanError::NotChecked("lacks".into())));
        f.tracefs = None;
        f.mounts[0].readable = false;
        assert_eq!(
            f.missing_privileges(),
            ["CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"]
        );
        let checks = checks(&f);
        let p = check(&checks, "privileges");
        assert_eq!(p.state, State::Missing);
        assert!(
            p.detail
                .contains("missing CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH"),
            "{}",
            p.detail
        );
        assert_eq!(check(&checks, "tracefs").state, State::Missing);
        assert_eq!(check(&checks, "fentry_fexit").state, State::Unknown);
        assert_eq!(check(&checks, "perf_event_paranoid").state, State::Limited);
        assert!(!can_run(&f));
        let s = plan_summary(&f);
        assert!(!s.checked);
        assert!(verdict(&f, &s).starts_with("zc-trace cannot run here"));
        assert_fits(&render(&f, &checks, &s));
        // With CAP_BPF and CAP_PERFMON only, tracefs's mode is what is missing.
        let bpf = Privileges::from_effective((1u64 << 39) | (1u64 << 38), 1000);
        f.privileges = bpf;
        assert_eq!(f.missing_privileges(), ["CAP_DAC_READ_SEARCH"]);
        // Not mounted at all: mounting it needs CAP_SYS_ADMIN.
        f.mounts.clear();
        assert_eq!(f.missing_privileges(), ["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn the_subcommand_parses() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["zc-trace", "doctor", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            crate::cli::Command::Doctor(DoctorArgs { json: true })
        ));
    }
}
