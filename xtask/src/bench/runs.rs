//! Whole runs of zc-trace: the default run's wall time and peak memory, `zc-trace probes`,
//! memory against `--iterations`, and run time against payload and chunk size.

use std::process::Command;

use serde_json::{json, Value};

use super::output::{Row, Section};
use super::proc::{self, Outcome};
use super::stats::Summary;
use super::{
    fmt_kib, fmt_ns, fmt_rate, human_size, progress, size_bytes, strategy_times, zc_json, Ctx,
    SectionOutput,
};
use crate::util::Result;

/// The bound on the default run's anonymous memory.
const ANON_LIMIT_KIB: f64 = 48.0 * 1024.0;

/// `zc-trace run` exactly as a user types it (with --tmpdir only where the bench was given
/// another one).
fn default_run(ctx: &Ctx) -> Command {
    if ctx.tmpdir == std::path::Path::new("/var/tmp") {
        ctx.zc(&["run"])
    } else {
        let mut c = ctx.zc(&["run", "--tmpdir"]);
        c.arg(&ctx.tmpdir);
        c
    }
}

/// Runs the default `zc-trace run`; 1 (a claim differs, as splice does on Linux) is a success.
fn run_default(ctx: &Ctx) -> Result<Outcome> {
    let out = proc::run(&mut default_run(ctx))?;
    if !matches!(out.code, Some(0 | 1)) {
        return Err(format!(
            "zc-trace run: {}: {}",
            out.describe(),
            out.stderr_tail()
        ));
    }
    Ok(out)
}

fn seconds(row: Row, walls: &[f64]) -> Row {
    match Summary::of(walls) {
        Some(s) => row
            .value(s.median, format!("{:.2} s", s.median))
            .spread(s.spread(|v| format!("{v:.2} s"))),
        None => row,
    }
}

fn anon_row(what: String, kib: f64) -> Row {
    Row::new(Section::Memory, what, "KiB")
        .value(kib, fmt_kib(kib))
        .target("< 48 MiB anonymous", |v| v < ANON_LIMIT_KIB)
}

pub fn wall(ctx: &Ctx) -> Result<SectionOutput> {
    let reps = ctx.plan.wall_reps;
    let (mut runs, mut probes) = (Vec::new(), Vec::new());
    for i in 0..reps {
        progress(&format!(
            "wall: `zc-trace run` and `zc-trace probes`, {}/{reps}",
            i + 1
        ));
        runs.push(run_default(ctx)?.wall.as_secs_f64());
        let out = proc::run(&mut ctx.zc(&["probes"]))?;
        if out.code != Some(0) {
            return Err(format!(
                "zc-trace probes: {}: {}",
                out.describe(),
                out.stderr_tail()
            ));
        }
        probes.push(out.wall.as_secs_f64());
    }
    let rows = vec![
        seconds(
            Row::new(
                Section::Wall,
                "`zc-trace run` (defaults: 64 MiB, every strategy, table)",
                "s",
            ),
            &runs,
        )
        .target("< 3 s", |v| v < 3.0),
        seconds(Row::new(Section::Wall, "`zc-trace probes`", "s"), &probes)
            .target_not_applicable("none (the issue sets none)"),
    ];
    Ok(SectionOutput {
        rows,
        raw: json!({ "run_s": runs, "probes_s": probes }),
        how: format!(
            "Wall time from the start of the process to its end, as the bench spawns it (no \
             shell), {reps} times each; value: the median. The default run generates its 64 \
             MiB payload, loads and attaches the probes, runs every strategy once and prints \
             the table and the verdicts."
        ),
    })
}

pub fn memory(ctx: &Ctx) -> Result<SectionOutput> {
    let plan = ctx.plan;
    let mut rows = Vec::new();
    let mut defaults = Vec::new();
    for i in 0..plan.memory_reps {
        progress(&format!(
            "memory: default `zc-trace run`, {}/{}",
            i + 1,
            plan.memory_reps
        ));
        defaults.push(run_default(ctx)?);
    }
    let anon: Vec<f64> = defaults.iter().map(|o| o.peak_anon_kib as f64).collect();
    let rss: Vec<f64> = defaults.iter().map(|o| o.max_rss_kib as f64).collect();
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    rows.push(
        anon_row(
            "default `zc-trace run`: peak anonymous memory (RssAnon, the largest of the runs)"
                .into(),
            max(&anon),
        )
        .spread(format!(
            "runs: {}",
            anon.iter()
                .map(|v| fmt_kib(*v))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    );
    rows.push(
        Row::new(
            Section::Memory,
            "default `zc-trace run`: peak RSS (ru_maxrss, the largest of the runs)",
            "KiB",
        )
        .value(max(&rss), fmt_kib(max(&rss)))
        .note(
            "RSS counts file-backed pages too: the executable and the payload pages that \
             mmap+write, vmsplice and the zero-copy sends map; the 48 MiB bound is on \
             anonymous memory",
        ),
    );

    let strategies = super::output_of(ctx, &["strategies"])?.lines().count();
    let mut by_iterations = Vec::new();
    for &n in plan.memory_iterations {
        progress(&format!("memory: `zc-trace run --size 1 --iterations {n}`"));
        let out = proc::run(&mut ctx.zc_run(&["--size", "1", "--iterations", &n.to_string()]))?;
        if out.code != Some(0) {
            return Err(format!(
                "zc-trace run --size 1 --iterations {n}: {}: {}",
                out.describe(),
                out.stderr_tail()
            ));
        }
        rows.push(
            Row::new(
                Section::Memory,
                format!("`--size 1 --iterations {n}`: peak RSS (ru_maxrss)"),
                "KiB",
            )
            .value(out.max_rss_kib as f64, fmt_kib(out.max_rss_kib as f64))
            .spread(format!(
                "peak RssAnon {}; {:.1} s",
                fmt_kib(out.peak_anon_kib as f64),
                out.wall.as_secs_f64()
            )),
        );
        by_iterations.push((n, out));
    }
    if let (Some((n0, first)), Some((n1, last))) = (by_iterations.first(), by_iterations.last()) {
        let growth = last.max_rss_kib as f64 - first.max_rss_kib as f64;
        let runs = (n1 - n0) as f64 * strategies as f64;
        rows.push(
            Row::new(
                Section::Memory,
                format!("peak RSS growth from {n0} to {n1} iterations"),
                "KiB",
            )
            .value(
                growth,
                format!(
                    "{:+.0} KiB ({:+.2} KiB per strategy run)",
                    growth,
                    growth / runs.max(1.0)
                ),
            )
            .spread(format!(
                "RssAnon {:+.0} KiB",
                last.peak_anon_kib as f64 - first.peak_anon_kib as f64
            ))
            .target("constant: < 1 MiB", |v| v < 1024.0),
        );
    }
    Ok(SectionOutput {
        rows,
        raw: json!({
            "default_run": defaults.iter().map(|o| json!({
                "peak_anon_kib": o.peak_anon_kib, "max_rss_kib": o.max_rss_kib,
                "wall_s": o.wall.as_secs_f64() })).collect::<Vec<_>>(),
            "iterations": by_iterations.iter().map(|(n, o)| json!({
                "iterations": n, "peak_anon_kib": o.peak_anon_kib,
                "max_rss_kib": o.max_rss_kib, "wall_s": o.wall.as_secs_f64() }))
                .collect::<Vec<_>>(),
            "strategies": strategies,
        }),
        how: format!(
            "Peak anonymous memory: the largest RssAnon of /proc/PID/status (heap, stacks, \
             anonymous mappings; not the executable or the payload's page cache), sampled every \
             {} ms while zc-trace runs (its receiver process is not included; it reads into a \
             256 KiB buffer). Peak RSS: ru_maxrss from wait4, the kernel's own high-water mark \
             (file-backed pages included). The default run is measured {} times; the \
             iterations runs use a 1-byte payload and every strategy ({strategies} here), so \
             that what grows is what zc-trace keeps per run.",
            proc::SAMPLE_EVERY.as_millis(),
            plan.memory_reps
        ),
    })
}

pub fn scaling(ctx: &Ctx) -> Result<SectionOutput> {
    let plan = ctx.plan;
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    // (strategy name, ns per byte) at each payload size, for the growth rows.
    let mut per_byte: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for &size in plan.payload_sizes {
        let bytes = size_bytes(size);
        // The payload, plus room for everything else that writes there.
        let need = bytes + (512 << 20);
        let free = proc::free_bytes(&ctx.tmpdir).unwrap_or(0);
        let what = format!("payload {}", human_size(size));
        if free < need {
            rows.push(Row::new(Section::Scaling, what, "s").missing(format!(
                "{} has {} MiB free, {} MiB needed",
                ctx.tmpdir.display(),
                free >> 20,
                need >> 20
            )));
            continue;
        }
        progress(&format!(
            "scaling: --size {size} --strategies read-write,sendfile"
        ));
        let (out, report) = zc_json(
            ctx,
            &["--strategies", "read-write,sendfile", "--size", size],
        )?;
        for (_, name, times) in strategy_times(&report) {
            let Some(s) = Summary::of(&times) else {
                continue;
            };
            rows.push(
                Row::new(Section::Scaling, format!("{what}, {name}: transfer"), "ns").value(
                    s.median,
                    format!(
                        "{} ({})",
                        fmt_ns(s.median),
                        fmt_rate(bytes as f64 * 1e9 / s.median)
                    ),
                ),
            );
            match per_byte.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push((size.to_string(), s.median / bytes as f64)),
                None => per_byte.push((
                    name.clone(),
                    vec![(size.to_string(), s.median / bytes as f64)],
                )),
            }
        }
        rows.push(
            Row::new(
                Section::Scaling,
                format!("{what}: `zc-trace run` wall time (payload written, probes loaded)"),
                "s",
            )
            .value(
                out.wall.as_secs_f64(),
                format!("{:.2} s", out.wall.as_secs_f64()),
            )
            .spread(format!(
                "peak RssAnon {}",
                fmt_kib(out.peak_anon_kib as f64)
            )),
        );
        rows.push(
            anon_row(
                format!("{what}: peak anonymous memory"),
                out.peak_anon_kib as f64,
            )
            .section(Section::Scaling),
        );
        raw.push(json!({
            "size": size, "wall_s": out.wall.as_secs_f64(), "peak_anon_kib": out.peak_anon_kib,
            "max_rss_kib": out.max_rss_kib,
            "time_ns": strategy_times(&report).into_iter()
                .map(|(id, _, t)| (id, json!(t))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    for (name, points) in &per_byte {
        if let (Some(first), Some(last)) = (points.first(), points.last()) {
            if points.len() > 1 {
                let ratio = last.1 / first.1;
                rows.push(
                    Row::new(
                        Section::Scaling,
                        format!(
                            "{name}: time per byte at {} / at {}",
                            human_size(&last.0),
                            human_size(&first.0)
                        ),
                        "ratio",
                    )
                    .value(ratio, format!("{ratio:.2}"))
                    .note("1.00: run time grows linearly with the payload"),
                );
            }
        }
    }
    for &chunk in plan.chunks {
        progress(&format!(
            "scaling: --size {} --chunk {chunk} --strategies read-write,sendfile",
            plan.chunk_payload
        ));
        let (out, report) = zc_json(
            ctx,
            &[
                "--strategies",
                "read-write,sendfile",
                "--size",
                plan.chunk_payload,
                "--chunk",
                chunk,
            ],
        )?;
        let bytes = size_bytes(plan.chunk_payload) as f64;
        let what = format!(
            "chunk {} ({} payload)",
            human_size(chunk),
            human_size(plan.chunk_payload)
        );
        for (_, name, times) in strategy_times(&report) {
            if let Some(s) = Summary::of(&times) {
                rows.push(
                    Row::new(Section::Scaling, format!("{what}, {name}: transfer"), "ns").value(
                        s.median,
                        format!(
                            "{} ({})",
                            fmt_ns(s.median),
                            fmt_rate(bytes * 1e9 / s.median)
                        ),
                    ),
                );
            }
        }
        rows.push(
            anon_row(
                format!("{what}: peak anonymous memory"),
                out.peak_anon_kib as f64,
            )
            .section(Section::Scaling),
        );
        raw.push(json!({
            "chunk": chunk, "size": plan.chunk_payload, "wall_s": out.wall.as_secs_f64(),
            "peak_anon_kib": out.peak_anon_kib, "max_rss_kib": out.max_rss_kib,
            "time_ns": strategy_times(&report).into_iter()
                .map(|(id, _, t)| (id, json!(t))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    Ok(SectionOutput {
        rows,
        raw: Value::Array(raw),
        how: format!(
            "`zc-trace run --strategies read-write,sendfile` (traced), once per size: payloads \
             {} at 128 KiB chunks, then chunks {} with a {} payload. Transfer: the measured \
             window of the strategy (bpf_ktime_get_ns() at its two markers), with the \
             throughput; wall time: the whole command (writing the payload into {} and loading \
             the probes included). A size that does not fit the free space of {} (with 512 \
             MiB to spare) is left out and says so.",
            plan.payload_sizes
                .iter()
                .map(|s| human_size(s))
                .collect::<Vec<_>>()
                .join(", "),
            plan.chunks
                .iter()
                .map(|s| human_size(s))
                .collect::<Vec<_>>()
                .join(", "),
            human_size(plan.chunk_payload),
            ctx.tmpdir.display(),
            ctx.tmpdir.display(),
        ),
    })
}
