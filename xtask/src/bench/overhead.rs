//! The probes' cost on the transfer they measure: every strategy, traced (`zc-trace run`) and
//! untraced (`zc-trace run --untraced`: the same transfers, no eBPF program loaded), one run
//! after the other, A B A B. Each pair gives, per strategy, traced throughput / untraced
//! throughput (the untraced window's median over the traced one's: the same bytes moved); the
//! row is the median over the pairs, with the spread.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::output::{Row, Section};
use super::proc;
use super::stats::{median, Summary};
use super::{human_size, progress, strategy_times, zc_json, Ctx, SectionOutput};
use crate::util::Result;

/// (chunk, the least traced/untraced throughput ratio the issue asks for).
const TARGETS: [(&str, f64); 2] = [("128K", 0.97), ("4K", 0.90)];

pub fn run(ctx: &Ctx) -> Result<SectionOutput> {
    let plan = ctx.plan;
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for (chunk, target) in TARGETS {
        // id -> (name, per-pair ratios), in the order of the first report.
        let mut order: Vec<String> = Vec::new();
        let mut ratios: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
        let mut skipped = Value::Null;
        for pair in 0..plan.overhead_pairs {
            progress(&format!(
                "overhead: {} chunks, pair {}/{} (traced, then untraced)",
                human_size(chunk),
                pair + 1,
                plan.overhead_pairs
            ));
            let what = format!("overhead pair {} at {chunk}", pair + 1);
            let iterations = plan.overhead_iterations.to_string();
            let args = [
                "--strategies",
                "all",
                "--size",
                plan.overhead_size,
                "--chunk",
                chunk,
                "--iterations",
                &iterations,
            ];
            let mut untraced_args = args.to_vec();
            untraced_args.push("--untraced");
            let mut attempt = 0;
            let (traced, untraced) = loop {
                proc::wait_quiet(&what, super::QUIET_LIMIT);
                let (_, traced) = zc_json(ctx, &args)?;
                let (_, untraced) = zc_json(ctx, &untraced_args)?;
                if !proc::disturbed(&what, attempt) {
                    break (traced, untraced);
                }
                attempt += 1;
            };
            let t = strategy_times(&traced);
            let u = strategy_times(&untraced);
            for (id, name, traced_ns) in &t {
                let Some((_, _, untraced_ns)) = u.iter().find(|(i, _, _)| i == id) else {
                    continue;
                };
                let (Some(tn), Some(un)) = (median(traced_ns), median(untraced_ns)) else {
                    continue;
                };
                if !order.contains(id) {
                    order.push(id.clone());
                }
                ratios
                    .entry(id.clone())
                    .or_insert_with(|| (name.clone(), Vec::new()))
                    .1
                    .push(un / tn);
            }
            skipped = traced["config"]["skipped"].clone();
            raw.push(json!({
                "chunk": chunk,
                "pair": pair,
                "traced_time_ns": t.iter().map(|(id, _, v)| (id.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "untraced_time_ns": u.iter().map(|(id, _, v)| (id.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            }));
        }
        for id in &order {
            let (name, r) = &ratios[id];
            let what = format!("{name}, {} chunks", human_size(chunk));
            let row = Row::new(Section::Overhead, what, "ratio");
            rows.push(match Summary::of(r) {
                Some(s) => row
                    .value(s.median, format!("{:.3}", s.median))
                    .spread(s.spread(|v| format!("{v:.3}")))
                    .target(format!(">= {target:.2}"), |v| v >= target),
                None => row.missing("no pair"),
            });
        }
        for s in skipped.as_array().into_iter().flatten() {
            rows.push(
                Row::new(
                    Section::Overhead,
                    format!(
                        "{}, {} chunks",
                        s["strategy"].as_str().unwrap_or("?"),
                        human_size(chunk)
                    ),
                    "ratio",
                )
                .missing(format!(
                    "zc-trace skipped it: {}",
                    s["reason"].as_str().unwrap_or("?")
                )),
            );
        }
    }
    let how = format!(
        "Value: traced throughput / untraced throughput of the same transfer (1.0: the probes \
         cost nothing; 0.95: the traced run is 5 % slower). Each strategy runs in `zc-trace run \
         --strategies all --size {size} --chunk C --iterations {it}`, with its probes attached \
         (traced) and with the hidden `--untraced` switch (the same payload, sinks, receiver \
         process and interleaving, no eBPF program loaded; the window timed with \
         CLOCK_MONOTONIC, the clock of the traced window's bpf_ktime_get_ns()). Traced and \
         untraced runs alternate, A B A B, {pairs} pairs per chunk size; each pair gives one \
         ratio per strategy (median window of the untraced run over that of the traced run), \
         and the value is the median of those ratios, the spread their min .. max and \
         interquartile range. Targets from the issue: >= 0.97 at 128 KiB chunks, >= 0.90 at \
         4 KiB.",
        size = human_size(ctx.plan.overhead_size),
        it = ctx.plan.overhead_iterations,
        pairs = ctx.plan.overhead_pairs,
    );
    Ok(SectionOutput {
        rows,
        raw: Value::Array(raw),
        how,
    })
}
