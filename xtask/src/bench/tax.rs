//! The tax on other processes: what one getppid() costs a process that zc-trace does not
//! trace, pinned to another CPU than zc-trace, while zc-trace's probes are attached. The eBPF
//! programs at raw_syscalls:sys_enter/sys_exit run for every syscall of every process (they
//! drop the untracked ones after a map lookup), so this is the price the rest of the machine
//! pays. It is set against bpftrace counting the same facts (syscalls by id, entries and
//! exits, of one thread) with the same tracepoints.
//!
//! Per round, the loop (`cargo xtask __getppid-loop`, a tight loop of raw getppid syscalls
//! timed in batches with CLOCK_MONOTONIC) runs on the last CPU:
//! 1. alone;
//! 2. while bpftrace is attached (idle: it only counts);
//! 3. while `zc-trace run` transfers on CPU 0 (busy), then while it is stopped with SIGSTOP,
//!    probes still attached (idle: the probes' cost alone);
//! 4. while `zc-trace run --untraced` makes the same transfers on CPU 0 (what the busy
//!    neighbour costs without any probe: cache and memory-bus contention).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::bpftrace::Bpftrace;
use super::output::{Row, Section};
use super::proc::{self, Stdout};
use super::stats::{median, Summary};
use super::{fentry_status, fmt_ns, human_size, progress, Ctx, SectionOutput};
use crate::util::Result;

/// The hidden `cargo xtask __getppid-loop`.
#[derive(clap::Args)]
pub struct LoopArgs {
    /// How long to loop.
    #[arg(long)]
    millis: u64,
    /// Calls per timed batch.
    #[arg(long, default_value_t = 20_000)]
    batch: u64,
}

/// getppid() in a tight loop; prints the ns per call of every batch as a JSON array.
pub fn getppid_loop(args: LoopArgs) -> Result {
    let call = || {
        // SAFETY: getppid has no arguments and no side effects.
        unsafe { libc::syscall(libc::SYS_getppid) }
    };
    // Warm up (caches, the CPU's frequency) before anything is timed.
    for _ in 0..args.batch {
        call();
    }
    let deadline = Instant::now() + Duration::from_millis(args.millis);
    let mut batches = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        // A while loop: xtask is a debug build, where a range iterator costs a call per step.
        let mut i = 0;
        while i < args.batch {
            call();
            i += 1;
        }
        batches.push(t.elapsed().as_nanos() as f64 / args.batch as f64);
    }
    println!(
        "{}",
        serde_json::to_string(&batches).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The loop on `cpu` for `millis`: the median ns per call over its batches (robust to the odd
/// interrupt or preemption in one batch).
fn ns_per_call(cpu: usize, millis: u64) -> Result<f64> {
    let exe = std::env::current_exe().map_err(|e| format!("the xtask executable: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["__getppid-loop", "--millis", &millis.to_string()]);
    proc::pin(&mut cmd, cpu);
    let out = proc::run(&mut cmd)?;
    if out.code != Some(0) {
        return Err(format!(
            "the getppid loop: {}: {}",
            out.describe(),
            out.stderr_tail()
        ));
    }
    let batches: Vec<f64> = serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("the getppid loop's output: {e}"))?;
    median(&batches).ok_or_else(|| "the getppid loop timed no batch".into())
}

/// Restores the bench's own CPU mask when dropped.
struct Affinity(libc::cpu_set_t);

impl Affinity {
    /// Keeps the bench itself (and the threads it starts: output readers, memory samplers) on
    /// `cpu`, away from the loop's CPU.
    fn pin_self(cpu: usize) -> Affinity {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: zeroed cpu_set_t values are valid; the calls get their true size.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, size, &mut old);
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size, &set);
            Affinity(old)
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        // SAFETY: restores a mask sched_getaffinity returned.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

#[derive(Default, Debug, serde::Serialize)]
struct Round {
    alone: f64,
    /// How busy CPU 0 was while the loop ran alone: it should be idle; more means another
    /// process ran (noise).
    cpu0_busy_alone: f64,
    bpftrace: Option<f64>,
    zc_busy: f64,
    zc_idle: f64,
    untraced_busy: f64,
}

pub fn run(ctx: &Ctx, probes: &Value) -> Result<SectionOutput> {
    let plan = ctx.plan;
    let loop_cpu = ctx.cpus - 1;
    let _affinity = Affinity::pin_self(0);
    let bpftrace = Bpftrace::ensure();
    if let Err(e) = &bpftrace {
        progress(&format!("bpftrace: not measured: {e}"));
    }
    let mut bpftrace_error: Option<String> = bpftrace.as_ref().err().cloned();
    let mut bpftrace_output = String::new();
    let mut rounds = Vec::new();
    let window = plan.tax_window_ms;
    for round in 0..plan.tax_rounds {
        progress(&format!(
            "tax: round {}/{} ({window} ms per window, getppid loop on CPU {loop_cpu})",
            round + 1,
            plan.tax_rounds
        ));
        let what = format!("tax round {}", round + 1);
        let mut attempt = 0;
        let r = loop {
            proc::wait_quiet(&what, super::QUIET_LIMIT);
            let r = tax_round(
                ctx,
                &bpftrace,
                &mut bpftrace_error,
                &mut bpftrace_output,
                loop_cpu,
                window,
            )?;
            // CPU 0 should idle while the loop runs alone: if it did not, another process
            // shared the machine during the round, and the round is measured again.
            let busy = r.cpu0_busy_alone > 0.3 && attempt < 2;
            if busy {
                progress(&format!(
                    "  CPU 0 was {:.0} % busy during the baseline window: measuring the round again",
                    r.cpu0_busy_alone * 100.0
                ));
            }
            if !proc::disturbed(&what, attempt) && !busy {
                break r;
            }
            attempt += 1;
        };
        progress(&format!(
            "  ns/call: alone {:.1}, bpftrace {}, zc-trace busy {:.1} / stopped {:.1}, \
             untraced busy {:.1}",
            r.alone,
            r.bpftrace.map_or("-".into(), |v| format!("{v:.1}")),
            r.zc_busy,
            r.zc_idle,
            r.untraced_busy
        ));
        rounds.push(r);
    }

    // Another process running during the windows makes the figures noisy; say so.
    let busiest = rounds.iter().map(|r| r.cpu0_busy_alone).fold(0.0, f64::max);
    let load_note = (busiest > 0.1).then(|| {
        format!(
            "background load: CPU 0 was up to {:.0} % busy while the loop ran alone (it should \
             be idle): another process ran, so this section's figures are noisy",
            busiest * 100.0
        )
    });
    let series =
        |f: fn(&Round) -> Option<f64>| -> Vec<f64> { rounds.iter().filter_map(f).collect() };
    let ns = |s: &Summary| fmt_ns(s.median);
    let spread = |s: &Summary| s.spread(|v| format!("{v:.1}"));
    let mut rows = Vec::new();
    let absolute = |what: &str, v: Vec<f64>| {
        let row = Row::new(Section::Tax, what, "ns/call");
        match Summary::of(&v) {
            Some(s) => row.value(s.median, ns(&s)).spread(spread(&s)),
            None => row,
        }
    };
    rows.push(absolute("getppid() alone", series(|r| Some(r.alone))));
    let bpf_tax = Summary::of(&series(|r| Some(r.bpftrace? - r.alone)));
    let bpf_row = Row::new(
        Section::Tax,
        "tax: bpftrace counting the same facts (raw_syscalls:sys_enter/sys_exit, one tid)",
        "ns/call",
    );
    rows.push(match (&bpf_tax, &bpftrace_error) {
        (Some(s), _) => bpf_row
            .value(s.median, ns(s))
            .spread(spread(s))
            .note(format!(
                "{}; program: {}",
                bpftrace
                    .as_ref()
                    .map(|b| b.version.clone())
                    .unwrap_or_default(),
                bpftrace_program(std::process::id())
            )),
        (None, Some(e)) => bpf_row.missing(e.clone()),
        (None, None) => bpf_row.missing("no round measured it"),
    });
    let idle = Summary::of(&series(|r| Some(r.zc_idle - r.alone)));
    let mut idle_row = Row::new(
        Section::Tax,
        "tax: zc-trace attached (run stopped with SIGSTOP: the probes alone)",
        "ns/call",
    );
    if let Some(s) = &idle {
        idle_row = idle_row.value(s.median, ns(s)).spread(spread(s));
    }
    idle_row = match &bpf_tax {
        Some(b) => {
            let limit = b.median;
            idle_row.target(
                format!("<= bpftrace's tax for the same facts ({})", fmt_ns(limit)),
                move |v| v <= limit,
            )
        }
        None => idle_row.target_not_applicable(format!(
            "<= bpftrace's tax: not judged, bpftrace not measured ({})",
            bpftrace_error.clone().unwrap_or_default()
        )),
    };
    rows.push(idle_row);
    let busy = Summary::of(&series(|r| Some(r.zc_busy - r.untraced_busy)));
    let mut busy_row = Row::new(
        Section::Tax,
        "tax: zc-trace attached and transferring on another CPU, over the same transfers untraced",
        "ns/call",
    );
    if let Some(s) = &busy {
        busy_row = busy_row
            .value(s.median, ns(s))
            .spread(spread(s))
            .note(format!(
                "ns/call while zc-trace transfers: {}; while the same transfers run untraced: \
                 {} (what a busy neighbour costs without probes: shared caches and memory bus)",
                fmt_ns(median(&series(|r| Some(r.zc_busy))).unwrap_or(0.0)),
                fmt_ns(median(&series(|r| Some(r.untraced_busy))).unwrap_or(0.0)),
            ));
    }
    rows.push(busy_row);
    let fentry = fentry_status(probes);
    let mut fentry_row = Row::new(
        Section::Tax,
        "tax with fentry-attached syscall hooks",
        "ns/call",
    );
    fentry_row = if fentry == "used" {
        match &idle {
            Some(s) => fentry_row
                .value(s.median, ns(s))
                .target("< 30 ns (where fentry exists)", |v| v < 30.0),
            None => fentry_row.missing("no round"),
        }
    } else {
        fentry_row
            .missing(format!("fentry/fexit {fentry} on this host"))
            .target_not_applicable(
                "< 30 ns where fentry exists: not applicable here (the syscall hooks are \
                 tracepoints)",
            )
    };
    rows.push(fentry_row);

    if let (Some(note), Some(first)) = (&load_note, rows.first_mut()) {
        first.note = Some(note.clone());
    }
    let how = format!(
        "Value: extra ns per getppid() of a process zc-trace does not trace, pinned to CPU \
         {loop_cpu} while zc-trace (and its receiver, bpftrace) run on CPU 0. The loop \
         (`cargo xtask __getppid-loop`: raw getppid syscalls in batches of 20000, timed with \
         CLOCK_MONOTONIC; the value of a window is the median batch) runs {window} ms per \
         window, {rounds} rounds; each round measures it alone, under bpftrace, under \
         `zc-trace run --strategies read-write --size {size} --iterations 1000` while it \
         transfers and then while it is stopped with SIGSTOP (probes attached, nothing \
         running), and under the same run with `--untraced`. A tax is a condition's ns/call \
         minus the same round's baseline (alone; for the transferring run, the untraced \
         transferring run); the value is the median over rounds, the spread their min .. max \
         and IQR. bpftrace is bookworm's, unpacked under target/bench/tools (not installed), \
         counting syscalls by id on entry and exit for one thread (the bench's own), as \
         zc-trace does for its sender. The xtask loop is a debug build: its few ns of loop \
         overhead are in every absolute figure and cancel out of the taxes.",
        size = human_size(plan.tax_size),
        rounds = plan.tax_rounds,
    );
    Ok(SectionOutput {
        rows,
        raw: json!({
            "loop_cpu": loop_cpu,
            "window_ms": window,
            "rounds": rounds,
            "bpftrace_error": bpftrace_error,
            "bpftrace_program": bpftrace_program(std::process::id()),
            "bpftrace_last_output": bpftrace_output.chars().take(4000).collect::<String>(),
        }),
        how,
    })
}

/// One round: the loop alone, under bpftrace, under zc-trace (busy, then stopped), under the
/// untraced run.
fn tax_round(
    ctx: &Ctx,
    bpftrace: &Result<Bpftrace>,
    bpftrace_error: &mut Option<String>,
    bpftrace_output: &mut String,
    loop_cpu: usize,
    window: u64,
) -> Result<Round> {
    let before = proc::cpu_ticks();
    let mut r = Round {
        alone: ns_per_call(loop_cpu, window)?,
        ..Round::default()
    };
    r.cpu0_busy_alone = proc::busy_between(&before, &proc::cpu_ticks(), 0);
    if let (Ok(b), None) = (bpftrace, &*bpftrace_error) {
        match with_bpftrace(b, loop_cpu, window) {
            Ok((ns, output)) => {
                r.bpftrace = Some(ns);
                *bpftrace_output = output;
            }
            Err(e) => {
                progress(&format!("bpftrace: not measured: {e}"));
                *bpftrace_error = Some(e);
            }
        }
    }
    (r.zc_busy, r.zc_idle) = with_zc_trace(ctx, loop_cpu, window)?;
    r.untraced_busy = with_untraced(ctx, loop_cpu, window)?;
    Ok(r)
}

fn bpftrace_program(tid: u32) -> String {
    format!(
        "tracepoint:raw_syscalls:sys_enter /tid == {tid}/ {{ @enter[args->id] = count(); }} \
         tracepoint:raw_syscalls:sys_exit /tid == {tid}/ {{ @exit[args->id] = count(); \
         @ret[args->id] = sum(args->ret); }}"
    )
}

/// The loop while bpftrace counts the bench's own syscalls; returns ns/call and bpftrace's
/// output (its maps).
fn with_bpftrace(b: &Bpftrace, loop_cpu: usize, window: u64) -> Result<(f64, String)> {
    let out_path = crate::util::workspace_root().join("target/bench/bpftrace.out");
    std::fs::create_dir_all(out_path.parent().expect("a parent"))
        .map_err(|e| format!("target/bench: {e}"))?;
    let file =
        std::fs::File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
    let mut cmd = b.command();
    cmd.args(["-e", &bpftrace_program(std::process::id())]);
    proc::pin(&mut cmd, 0);
    let running = proc::start(&mut cmd, Stdout::File(file))?;
    // bpftrace prints "Attaching N probes..." once its programs are attached (it compiles
    // them with LLVM first, which takes a few seconds).
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.contains("Attaching") {
            break;
        }
        let dead = !proc::alive(running.pid);
        if dead || started.elapsed() > Duration::from_secs(120) {
            let out = running.stop(libc::SIGKILL, Duration::from_secs(5))?;
            return Err(format!(
                "bpftrace did not attach{}: {} {}",
                if dead { "" } else { " within 120 s" },
                out.describe(),
                out.stderr_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let ns = ns_per_call(loop_cpu, window);
    let out = running.stop(libc::SIGINT, Duration::from_secs(10))?;
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let ns = ns?;
    if !text.contains("@enter") {
        return Err(format!(
            "bpftrace printed no counts ({}): {}",
            out.describe(),
            out.stderr_tail()
        ));
    }
    Ok((ns, text))
}

/// The loop while `zc-trace run` transfers on CPU 0, then while it is stopped (probes
/// attached). Returns (busy, stopped) ns/call.
fn with_zc_trace(ctx: &Ctx, loop_cpu: usize, window: u64) -> Result<(f64, f64)> {
    let mut cmd = ctx.zc_run(&[
        "--strategies",
        "read-write",
        "--size",
        ctx.plan.tax_size,
        "--iterations",
        "1000",
        "--format",
        "json",
    ]);
    proc::pin(&mut cmd, 0);
    let running = proc::start(&mut cmd, Stdout::Discard)?;
    // The receiver starts once every probe is attached.
    let receiver = match proc::wait_for_child(running.pid, Duration::from_secs(60)) {
        Ok(r) => r,
        Err(e) => {
            let out = running.stop(libc::SIGKILL, Duration::from_secs(5))?;
            return Err(format!("zc-trace run: {e}: {}", out.stderr_tail()));
        }
    };
    std::thread::sleep(Duration::from_millis(200));
    let busy = ns_per_call(loop_cpu, window);
    running.signal(libc::SIGSTOP);
    proc::kill(receiver, libc::SIGSTOP);
    let stopped = proc::wait_stopped(&[running.pid, receiver]);
    let idle = ns_per_call(loop_cpu, window);
    proc::kill(receiver, libc::SIGCONT);
    running.signal(libc::SIGCONT);
    let out = running.stop(libc::SIGTERM, Duration::from_secs(10))?;
    if !stopped {
        return Err("zc-trace run did not stop on SIGSTOP (did it end early?)".into());
    }
    // SIGTERM: zc-trace cleans up and exits 130; 0 would mean it ended before the windows.
    if out.code != Some(130) {
        return Err(format!(
            "zc-trace run ended with {} before the windows closed: {}",
            out.describe(),
            out.stderr_tail()
        ));
    }
    Ok((busy?, idle?))
}

/// The loop while `zc-trace run --untraced` makes the same transfers on CPU 0.
fn with_untraced(ctx: &Ctx, loop_cpu: usize, window: u64) -> Result<f64> {
    let mut cmd = ctx.zc_run(&[
        "--untraced",
        "--strategies",
        "read-write",
        "--size",
        ctx.plan.tax_size,
        "--iterations",
        "1000",
        "--format",
        "json",
    ]);
    proc::pin(&mut cmd, 0);
    let running = proc::start(&mut cmd, Stdout::Discard)?;
    if let Err(e) = proc::wait_for_child(running.pid, Duration::from_secs(60)) {
        let out = running.stop(libc::SIGKILL, Duration::from_secs(5))?;
        return Err(format!(
            "zc-trace run --untraced: {e}: {}",
            out.stderr_tail()
        ));
    }
    std::thread::sleep(Duration::from_millis(200));
    let busy = ns_per_call(loop_cpu, window);
    let out = running.stop(libc::SIGTERM, Duration::from_secs(10))?;
    if out.code != Some(130) {
        return Err(format!(
            "zc-trace run --untraced ended with {} before the window closed: {}",
            out.describe(),
            out.stderr_tail()
        ));
    }
    busy
}
