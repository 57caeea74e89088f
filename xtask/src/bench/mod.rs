//! `cargo xtask bench`: what zc-trace itself costs on this machine. A benchmark, not a test: it
//! measures, compares each figure with its target and writes `bench/results.json` and
//! `bench/README.md` (the tables, the machine); a missed target fails nothing.
//!
//! Sections (`--only` picks some):
//! - `overhead`: the probes' cost on the transfer they measure: each strategy traced and
//!   untraced (`zc-trace run --untraced`, a hidden switch), alternating A B A B.
//! - `tax`: what an unrelated process pays per syscall while zc-trace is attached, against
//!   bpftrace counting the same facts (`tax`, `bpftrace`).
//! - `wall`, `memory`, `scaling`: the default run's wall time and peak memory, memory against
//!   `--iterations`, and run time against payload and chunk size (`runs`).
//!
//! Progress goes to stderr; `--quick` takes a minute or two, the full bench about ten minutes.

mod bpftrace;
mod machine;
mod output;
mod overhead;
mod proc;
mod runs;
mod stats;
mod tax;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::util::{command, run, workspace_root, Result};
use output::{Results, Row, Section};

pub use tax::{getppid_loop, LoopArgs};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Small payloads and few repetitions (about a minute or two) instead of the full bench.
    #[arg(long)]
    quick: bool,
    /// Only these sections (comma-separated); the files then hold only them.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Where results.json and README.md are written (relative to the workspace root).
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// zc-trace's --tmpdir: where the generated payloads (up to 2 GiB) are written.
    #[arg(long, default_value = "/var/tmp")]
    tmpdir: PathBuf,
}

/// Sizes and repetitions of one mode.
pub struct Plan {
    overhead_size: &'static str,
    overhead_pairs: usize,
    overhead_iterations: u32,
    tax_rounds: usize,
    tax_window_ms: u64,
    tax_size: &'static str,
    wall_reps: usize,
    memory_reps: usize,
    memory_iterations: &'static [u32],
    payload_sizes: &'static [&'static str],
    chunks: &'static [&'static str],
    chunk_payload: &'static str,
}

const FULL: Plan = Plan {
    overhead_size: "64M",
    overhead_pairs: 10,
    overhead_iterations: 5,
    tax_rounds: 5,
    tax_window_ms: 1000,
    tax_size: "64M",
    wall_reps: 5,
    memory_reps: 3,
    memory_iterations: &[1, 100, 1000],
    payload_sizes: &["16M", "128M", "1G", "2G"],
    chunks: &["4K", "16K", "64K", "128K", "1M"],
    chunk_payload: "256M",
};

const QUICK: Plan = Plan {
    overhead_size: "16M",
    overhead_pairs: 3,
    overhead_iterations: 1,
    tax_rounds: 2,
    tax_window_ms: 300,
    tax_size: "16M",
    wall_reps: 3,
    memory_reps: 2,
    memory_iterations: &[1, 10, 100],
    payload_sizes: &["16M", "64M"],
    chunks: &["4K", "128K", "1M"],
    chunk_payload: "16M",
};

/// What every section needs.
pub struct Ctx {
    zc_trace: PathBuf,
    tmpdir: PathBuf,
    plan: &'static Plan,
    cpus: usize,
}

impl Ctx {
    /// `zc-trace <args>`.
    fn zc(&self, args: &[&str]) -> Command {
        let mut c = command(&self.zc_trace.display().to_string());
        c.args(args);
        c
    }

    /// `zc-trace run --tmpdir DIR --no-fail <args>`: exit 0 unless the run itself failed.
    fn zc_run(&self, args: &[&str]) -> Command {
        let mut c = self.zc(&["run", "--no-fail", "--tmpdir"]);
        c.arg(&self.tmpdir).args(args);
        c
    }
}

/// How long the bench waits for other tracers and busy CPUs to go away before a measurement.
const QUIET_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// One line of progress on stderr.
fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// What a section produced: its rows, its raw measurements, and how it measured (for the
/// README).
pub struct SectionOutput {
    rows: Vec<Row>,
    raw: Value,
    how: String,
}

pub fn run_bench(args: BenchArgs) -> Result {
    let started = Instant::now();
    let root = workspace_root();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the bench loads eBPF programs (zc-trace, bpftrace): run it as root".into());
    }
    let plan = if args.quick { &QUICK } else { &FULL };
    let sections: Vec<Section> = if args.only.is_empty() {
        Section::ALL.to_vec()
    } else {
        let mut s = args.only.clone();
        s.sort();
        s.dedup();
        s
    };
    progress("building zc-trace (release)");
    run(command("cargo")
        .args(["build", "--release", "-p", "zc-trace"])
        .current_dir(&root))?;
    // A copy: a build in the same tree during the bench (cargo replaces the release binary)
    // must not change what is measured halfway.
    let zc_trace = root.join("target/bench/zc-trace");
    std::fs::create_dir_all(root.join("target/bench"))
        .and_then(|()| std::fs::copy(root.join("target/release/zc-trace"), &zc_trace))
        .map_err(|e| format!("copying zc-trace to {}: {e}", zc_trace.display()))?;
    let ctx = Ctx {
        zc_trace,
        tmpdir: args.tmpdir.clone(),
        plan,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let probes = probes_json(&ctx)?;
    let mut machine = machine::Machine::detect(&ctx.tmpdir, attach_summary(&probes));
    machine.zc_trace_version = output_of(&ctx, &["--version"])
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let mut results = Results {
        schema: 1,
        mode: if args.quick { "quick" } else { "full" },
        command: format!(
            "cargo xtask bench{}{}",
            if args.quick { " --quick" } else { "" },
            if args.only.is_empty() {
                String::new()
            } else {
                format!(
                    " --only {}",
                    sections
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        ),
        machine,
        duration_s: 0.0,
        load_average: [load_average(), String::new()],
        noise: Vec::new(),
        section_durations_s: Default::default(),
        rows: Vec::new(),
        raw: Default::default(),
        errors: Vec::new(),
    };
    let mut how = Vec::new();
    for section in sections {
        progress(&format!("== {} ==", section.title()));
        proc::wait_quiet(section.name(), QUIET_LIMIT);
        let t = Instant::now();
        let out = match section {
            Section::Overhead => overhead::run(&ctx),
            Section::Tax => tax::run(&ctx, &probes),
            Section::Wall => runs::wall(&ctx),
            Section::Memory => runs::memory(&ctx),
            Section::Scaling => runs::scaling(&ctx),
        };
        let secs = t.elapsed().as_secs_f64();
        results.section_durations_s.insert(section.name(), secs);
        progress(&format!("{} took {secs:.0} s", section.name()));
        match out {
            Ok(out) => {
                for r in &out.rows {
                    progress(&format!(
                        "  {}: {}{}",
                        r.what,
                        r.shown,
                        match r.meets {
                            Some(true) => format!(" (target {}: met)", r.target),
                            Some(false) => format!(" (target {}: MISSED)", r.target),
                            None => String::new(),
                        }
                    ));
                }
                results.rows.extend(out.rows);
                results.raw.insert(section.name().into(), out.raw);
                how.push((section, out.how));
            }
            Err(e) => {
                progress(&format!("{} FAILED: {e}", section.name()));
                results.errors.push(format!("{}: {e}", section.name()));
            }
        }
    }
    results.duration_s = started.elapsed().as_secs_f64();
    results.load_average[1] = load_average();
    results.noise = proc::noise();
    let dir = root.join(&args.out);
    output::write(&dir, &results, &how)?;
    progress(&format!(
        "wrote {} and {} ({:.0} s in all)",
        dir.join("results.json").display(),
        dir.join("README.md").display(),
        results.duration_s
    ));
    if results.errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} section(s) failed: {}",
            results.errors.len(),
            results.errors.join("; ")
        ))
    }
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// stdout of `zc-trace <args>`, which must succeed.
fn output_of(ctx: &Ctx, args: &[&str]) -> Result<String> {
    let out = proc::run(&mut ctx.zc(args))?;
    if out.code != Some(0) {
        return Err(format!(
            "zc-trace {}: {}: {}",
            args.join(" "),
            out.describe(),
            out.stderr_tail()
        ));
    }
    Ok(out.stdout)
}

fn probes_json(ctx: &Ctx) -> Result<Value> {
    let text = output_of(ctx, &["probes", "--json"])?;
    serde_json::from_str(&text).map_err(|e| format!("zc-trace probes --json: {e}"))
}

/// The attach method of the syscall hooks, and whether fentry/fexit works here (and why not).
fn attach_summary(probes: &Value) -> String {
    let hooks = probes["probes"].as_array().cloned().unwrap_or_default();
    let method = |hook: &str| {
        hooks
            .iter()
            .find(|h| h["hook"] == hook)
            .and_then(|h| h["method_label"].as_str())
            .unwrap_or("none")
            .to_string()
    };
    format!(
        "syscall hooks: {} (raw_syscalls:sys_enter) and {} (sys_exit); fentry/fexit: {}",
        method("syscall_enter"),
        method("syscall_exit"),
        fentry_status(probes)
    )
}

/// "used" where some hook attached by fentry/fexit, else why it was refused (or "not tried").
pub fn fentry_status(probes: &Value) -> String {
    let hooks = probes["probes"].as_array().cloned().unwrap_or_default();
    if hooks
        .iter()
        .any(|h| matches!(h["method"].as_str(), Some("fexit" | "fentry")))
    {
        return "used".into();
    }
    hooks
        .iter()
        .flat_map(|h| h["failed"].as_array().cloned().unwrap_or_default())
        .find(|a| a["method"] == "fexit" && a["kind"] != "absent")
        .map_or("not tried".into(), |a| {
            format!(
                "refused ({}: {})",
                a["kind"].as_str().unwrap_or("?"),
                a["error"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(90)
                    .collect::<String>()
            )
        })
}

/// Per strategy of a zc-trace JSON report, in its order: (id, name, time_ns samples).
fn strategy_times(report: &Value) -> Vec<(String, String, Vec<f64>)> {
    report["strategies"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap_or("?").to_string(),
                        s["name"].as_str().unwrap_or("?").to_string(),
                        s["figures"]["time_ns"]["value"]["samples"]
                            .as_array()
                            .map(|v| v.iter().filter_map(Value::as_f64).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `zc-trace run ... --format json` and parses its report; the run must succeed.
fn zc_json(ctx: &Ctx, args: &[&str]) -> Result<(proc::Outcome, Value)> {
    let mut cmd = ctx.zc_run(args);
    cmd.args(["--format", "json"]);
    let out = proc::run(&mut cmd)?;
    if out.code != Some(0) {
        return Err(format!(
            "zc-trace run {}: {}: {}",
            args.join(" "),
            out.describe(),
            out.stderr_tail()
        ));
    }
    let report = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("zc-trace run {}: bad JSON: {e}", args.join(" ")))?;
    Ok((out, report))
}

pub fn fmt_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.2} s", n / 1e9),
        n if n >= 1e6 => format!("{:.1} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.1} µs", n / 1e3),
        n => format!("{n:.1} ns"),
    }
}

pub fn fmt_kib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

pub fn fmt_rate(bytes_per_s: f64) -> String {
    let gib = bytes_per_s / (1u64 << 30) as f64;
    if gib >= 1.0 {
        format!("{gib:.2} GiB/s")
    } else {
        format!("{:.0} MiB/s", bytes_per_s / (1u64 << 20) as f64)
    }
}

/// Bytes of a size written as zc-trace takes it (binary units).
pub fn size_bytes(size: &str) -> u64 {
    let (digits, unit) = size.split_at(size.len() - 1);
    let n: u64 = digits.parse().unwrap_or(0);
    match unit {
        "K" => n << 10,
        "M" => n << 20,
        "G" => n << 30,
        _ => size.parse().unwrap_or(0),
    }
}

/// "128 KiB", "2 GiB" for a size written as zc-trace takes it.
pub fn human_size(size: &str) -> String {
    let (digits, unit) = size.split_at(size.len() - 1);
    match unit {
        "K" | "M" | "G" => format!("{digits} {unit}iB"),
        _ => format!("{size} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_zc_trace_reads_them() {
        assert_eq!(size_bytes("4K"), 4096);
        assert_eq!(size_bytes("2G"), 2 << 30);
        assert_eq!(human_size("128K"), "128 KiB");
        assert_eq!(fmt_ns(1.5e9), "1.50 s");
        assert_eq!(fmt_ns(42.04), "42.0 ns");
    }

    #[test]
    fn fentry_refusal_is_named() {
        let probes: Value = serde_json::json!({"probes": [
            {"hook": "syscall_enter", "method": "tracepoint", "method_label": "tracepoint",
             "failed": []},
            {"hook": "tcp_send", "method": "tp_btf", "method_label": "tp_btf+tracepoint",
             "failed": [{"method": "fexit", "kind": "not_permitted", "error": "EPERM"}]}
        ]});
        assert_eq!(fentry_status(&probes), "refused (not_permitted: EPERM)");
        assert!(attach_summary(&probes).starts_with("syscall hooks: tracepoint"));
    }
}
