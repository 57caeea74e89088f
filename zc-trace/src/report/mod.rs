//! The report: every figure with its value over the iterations and its provenance, built from
//! the raw per-run samples; and its renderings (table, markdown, CSV, JSON, HTML).
//!
//! From the bottom: `stat` (a figure over the iterations), `sample` (what one run keeps),
//! `verdict` and `model` (the JSON schema's types), `sites` (each copy site's bytes and where
//! they come from), `ledger` (the byte ledger over the sites), `build` (every figure from the
//! samples), `claims` (judging the textbook claims), then the renderers (`text`, `csv`,
//! `html`) and the reports of `trace` and `run --untraced`. It uses the kernel layer's plan
//! and the transfer layer's names; no command.

mod build;
pub mod claims;
mod csv;
#[cfg(test)]
mod fixtures;
pub mod html;
mod ledger;
mod model;
mod sample;
mod sites;
pub(crate) mod stat;
mod text;
pub mod trace;
mod untraced;
mod verdict;

pub use build::build;
pub use model::{Provenance, Report, RowId, RunConfig, SkippedStrategy, StrategyReport};
pub use sample::{RoleSample, Sample};
pub use text::Layout;
pub use untraced::{untraced, UntracedSample};

/// The forms a report is written in (`--format`, the `--export-*` files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Markdown,
}

/// Renders the report in the requested format.
pub fn render(report: &Report, format: Format) -> String {
    let mut out = Vec::new();
    write(report, format, &mut out).expect("writing to memory does not fail");
    String::from_utf8(out).expect("every renderer writes UTF-8")
}

/// Writes the report to `out`. JSON is streamed: with every sample of every figure in it, a
/// long run's JSON is tens of MB, which need not be held in memory as one string first.
pub fn write(report: &Report, format: Format, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    write_laid_out(report, format, &Layout::PLAIN, out)
}

/// `write`, with the terminal rendering laid out as `layout` says.
pub fn write_laid_out(
    report: &Report,
    format: Format,
    layout: &Layout,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Table => {
            out.write_all(text::render_with(report, text::Style::Terminal, layout).as_bytes())
        }
        Format::Markdown => {
            out.write_all(text::render_with(report, text::Style::Markdown, layout).as_bytes())
        }
        Format::Csv => out.write_all(csv::render(report).as_bytes()),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            out.write_all(b"\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{attach_report, sample, READ, WRITE};
    use super::*;
    use crate::kernel::capabilities::HostFacts;
    use crate::kernel::probes::HookId;
    use crate::transfer::strategies;
    use serde_json::Value;

    /// A 1000-byte payload in 500-byte chunks, twice, over loopback TCP.
    pub(crate) fn run_config() -> RunConfig {
        RunConfig {
            payload_bytes: 1000,
            chunk_bytes: 500,
            iterations: 2,
            cold: false,
            source: "generated".into(),
            source_fs: "ext2/3/4".into(),
            sink: crate::transfer::sink::SinkKind::Tcp,
            sink_description: "TCP over loopback (127.0.0.1)".into(),
            sink_scatter_gather: Some(true),
            receiver: Some("separate process".into()),
            sink_device: None,
            skipped: vec![],
        }
    }

    pub(crate) fn host() -> HostFacts {
        HostFacts {
            kernel: "6.18.0-test".into(),
            arch: "x86_64".into(),
            btf: Some("/sys/kernel/btf/vmlinux".into()),
            btf_note: None,
        }
    }

    pub(crate) fn report(missing: &[HookId]) -> Report {
        let config = run_config();
        let host = host();
        let runs = vec![(
            strategies::ALL[0],
            crate::transfer::sink::SinkKind::Tcp,
            true,
            vec![
                sample(&[(READ, 3, 1000), (WRITE, 2, 1000)], 0, 2000),
                sample(&[(READ, 3, 1000), (WRITE, 2, 1000)], 1, 4000),
            ],
        )];
        build(host, config, &attach_report(missing), runs)
    }

    /// The JSON schema documented in the README, version 1: these keys and types are a contract.
    #[test]
    fn json_schema_v1() {
        let v: Value =
            serde_json::from_str(&render(&report(&[HookId::SockRecv]), Format::Json)).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["tool"]["name"], "zc-trace");
        assert!(v["tool"]["version"].is_string());
        for k in ["kernel", "arch"] {
            assert!(v["host"][k].is_string(), "host.{k}");
        }
        for k in ["payload_bytes", "chunk_bytes", "iterations"] {
            assert!(v["config"][k].is_u64(), "config.{k}");
        }
        assert!(v["config"]["cold"].is_boolean());
        for k in [
            "source",
            "source_fs",
            "sink",
            "sink_description",
            "receiver",
        ] {
            assert!(v["config"][k].is_string(), "config.{k}");
        }
        let probes = v["probes"].as_array().unwrap();
        assert_eq!(probes.len(), crate::kernel::probes::PLAN.len());
        for p in probes {
            assert!(p["hook"].is_string() && p["site"].is_string() && p["feeds"].is_string());
            assert!(p["method"].is_string() || p["method"].is_null());
            assert!(p["failed"].is_array());
        }
        let s = &v["strategies"][0];
        assert_eq!(s["id"], "read-write");
        assert_eq!(s["name"], "read+write");
        assert!(s["summary"].is_string());
        let keys = [
            "syscalls",
            "transitions",
            "page_faults_user_mode",
            "page_faults_kernel_mode",
            "context_switches_voluntary",
            "context_switches_involuntary",
            "payload_bytes",
            "time_ns",
            "throughput_bytes_per_sec",
            "cpu_copied_bytes",
            "copied_user_to_kernel_bytes",
            "copied_kernel_to_user_bytes",
            "copied_kernel_to_kernel_bytes",
            "by_reference_bytes",
            "receiver_copied_bytes",
            "device_read_bytes",
            "device_write_bytes",
            "nic_transmit_linear_bytes",
            "nic_transmit_frag_bytes",
        ];
        let figures = s["figures"].as_object().unwrap();
        assert_eq!(figures.len(), keys.len(), "{figures:?}");
        for k in keys {
            let f = &s["figures"][k];
            assert!(f["unit"].is_string(), "{k}");
            let kind = f["provenance"]["kind"].as_str().unwrap();
            match kind {
                "observed" => {
                    assert!(
                        f["provenance"]["hook"].is_string()
                            && f["provenance"]["method"].is_string(),
                        "{k}"
                    );
                    assert!(f["provenance"]["detail"].is_string(), "{k}");
                }
                "derived" | "input" => assert!(f["provenance"]["from"].is_string(), "{k}"),
                "incomplete" => assert!(
                    f["provenance"]["from"].is_string() && f["provenance"]["reason"].is_string(),
                    "{k}"
                ),
                "not_observable" => {
                    assert!(f["provenance"]["reason"].is_string(), "{k}");
                    assert!(
                        f["value"].is_null(),
                        "{k}: a not-observable figure has no value"
                    );
                    continue;
                }
                other => panic!("{k}: unknown provenance kind {other}"),
            }
            for stat in ["median", "min", "max"] {
                assert!(f["value"][stat].is_number(), "{k}.value.{stat}");
            }
            assert_eq!(f["value"]["samples"].as_array().unwrap().len(), 2, "{k}");
        }
        assert_eq!(
            s["figures"]["receiver_copied_bytes"]["provenance"]["kind"],
            "not_observable"
        );
        assert_eq!(s["figures"]["syscalls"]["value"]["median"], 5);
        assert_eq!(
            s["figures"]["time_ns"]["value"]["samples"],
            serde_json::json!([2000, 4000])
        );
        assert!(
            v["claims"].is_null(),
            "claims are judged by the runner, after build()"
        );
        let sites = s["copy_sites"].as_array().unwrap();
        let names: Vec<&str> = sites.iter().map(|c| c["site"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "file_read",
                "shmem_read",
                "file_splice_read",
                "shmem_splice_read",
                "pipe_write",
                "pipe_read",
                "file_write",
                "iomap_write",
                "btrfs_write",
                "tcp_send",
                "tcp_sendpage",
                "unix_send",
                "unix_sendpage",
                "nic_linearize"
            ]
        );
        for c in sites {
            assert!(c["description"].is_string() && c["provenance"]["kind"].is_string());
            for k in [
                "user_to_kernel",
                "kernel_to_user",
                "kernel_to_kernel",
                "by_reference",
            ] {
                assert!(c["bytes"][k]["median"].is_number(), "{c:#}");
            }
        }
        assert!(s["ledger"].is_array(), "every strategy has its ledger");
        let read = &s["syscalls_by_name"]["read"];
        for k in ["count", "returned", "errors", "zero_returns"] {
            assert!(read[k]["median"].is_number(), "syscalls_by_name.read.{k}");
        }
        // `returned` is null for a call whose return is no byte count (mmap: an address).
        for (name, f) in s["syscalls_by_name"].as_object().unwrap() {
            assert!(
                f["returned"].is_null() || f["returned"]["median"].is_number(),
                "syscalls_by_name.{name}.returned"
            );
        }
        let mut with_mmap = report(&[]);
        let mmap = with_mmap.strategies[0]
            .syscalls_by_name
            .values()
            .next()
            .unwrap()
            .clone();
        with_mmap.strategies[0].syscalls_by_name.insert(
            "mmap".into(),
            super::model::SyscallFigures {
                returned: None,
                ..mmap
            },
        );
        let v: Value = serde_json::from_str(&render(&with_mmap, Format::Json)).unwrap();
        let mmap = &v["strategies"][0]["syscalls_by_name"]["mmap"];
        assert!(
            mmap["returned"].is_null() && mmap["count"]["median"].is_number(),
            "{mmap}"
        );
    }

    #[test]
    fn csv_has_one_row_per_strategy_in_base_units() {
        let csv = render(&report(&[HookId::SockRecv]), Format::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("strategy,syscalls,transitions,"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with(
            ",receiver_copied_bytes,device_read_bytes,device_write_bytes,\
             nic_transmit_linear_bytes,nic_transmit_frag_bytes,syscalls_by_name,ledger,incomplete"
        ));
        assert!(lines[1].starts_with("read-write,5,"), "{}", lines[1]);
        assert!(
            lines[1].ends_with(",,0,0,,,read=3;write=2,,"),
            "not observable is an empty cell: {}",
            lines[1]
        );
    }

    #[test]
    fn markdown_and_the_explained_table_say_how_every_figure_was_obtained() {
        let r = report(&[HookId::FaultUserMode]);
        let explained = {
            let mut out = Vec::new();
            let layout = Layout {
                explain: true,
                ..Layout::PLAIN
            };
            write_laid_out(&r, Format::Table, &layout, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        for (text, marker, how) in [
            (
                render(&r, Format::Markdown),
                "| read+write",
                "How each column was obtained:",
            ),
            (explained, "┆", "How each figure was obtained:"),
        ] {
            assert!(text.contains(marker), "{text}");
            assert!(text.contains(how), "{text}");
            assert!(
                text.contains("observed at raw_syscalls:sys_enter (tracepoint)"),
                "{text}"
            );
            assert!(
                text.contains("Page faults (user mode): not observable here"),
                "{text}"
            );
            assert!(text.contains("read+write: read 3, write 2"), "{text}");
        }
        // Runs differ in time: the spread is shown.
        assert!(render(&r, Format::Markdown).contains("(2.0 us..4.0 us)"));
    }

    /// The default table keeps to the figures a student compares; the rest is behind
    /// --explain and --wide, and the run ends with one summary line.
    #[test]
    fn the_default_table_is_narrow_and_ends_with_the_summary() {
        let mut r = report(&[]);
        r.claims = Some(crate::report::claims::judge(
            &crate::report::claims::Claims::seed(),
            &r,
            &crate::report::claims::RunFacts {
                sink_has_sg: Some(true),
                sink: "loopback".into(),
                cold: false,
            },
        ));
        let text = render(&r, Format::Table);
        assert!(!text.contains("How each"), "{text}");
        assert!(text.contains("User/kernel"), "{text}");
        let summary = text
            .lines()
            .find(|l| l.contains("not observable: exit"))
            .unwrap_or_else(|| panic!("no summary line: {text}"));
        assert!(summary.contains(" hold"), "{summary}");
        for line in text.lines() {
            assert!(line.chars().count() <= 100, "wider than 100: {line}");
        }
    }
}
