//! The report of `run --untraced` (hidden; the baseline of `cargo xtask bench`). No probe was
//! loaded, so only the payload, the window's length and the throughput have values; every other
//! figure is not observable and says why, so that no reader takes the missing counters for
//! zeros. There are no copy sites, syscalls by name, ledger or probes to report.

use std::collections::BTreeMap;

use super::model::{Figure, Figures, Provenance, Report, RunConfig, StrategyReport, Tool, Unit};
use super::stat::Stat;
use crate::kernel::capabilities::HostFacts;
use crate::transfer::sink::SinkKind;
use crate::transfer::strategies::Strategy;

/// One run of `run --untraced`: the window's length read from user space, and the bytes moved.
pub struct UntracedSample {
    pub window_ns: u64,
    pub bytes: u64,
    /// As `Sample::received`.
    pub received: Option<u64>,
}

const WHY: &str =
    "--untraced: no eBPF program was loaded (a baseline run for measuring zc-trace's own overhead)";

fn not_observable(unit: Unit) -> Figure {
    Figure {
        unit,
        value: None,
        provenance: Provenance::NotObservable { reason: WHY.into() },
    }
}

fn figure(unit: Unit, provenance: Provenance, value: Option<Stat>) -> Figure {
    Figure {
        unit,
        value,
        provenance,
    }
}

pub fn untraced(
    host: HostFacts,
    config: RunConfig,
    runs: Vec<(&'static dyn Strategy, SinkKind, Vec<UntracedSample>)>,
) -> Report {
    let strategies = runs
        .into_iter()
        .map(|(s, sink, samples)| {
            let of = |f: fn(&UntracedSample) -> f64| Stat::of(samples.iter().map(f).collect());
            StrategyReport {
                id: super::RowId::Strategy(s.id()),
                name: s.name(),
                summary: s.summary(),
                sink,
                receiver_window_limited: None,
                figures: Figures {
                    syscalls: not_observable(Unit::Count),
                    transitions: not_observable(Unit::Count),
                    page_faults_user_mode: not_observable(Unit::Count),
                    page_faults_kernel_mode: not_observable(Unit::Count),
                    context_switches_voluntary: not_observable(Unit::Count),
                    context_switches_involuntary: not_observable(Unit::Count),
                    nic_transmit_linear_bytes: not_observable(Unit::Bytes),
                    nic_transmit_frag_bytes: not_observable(Unit::Bytes),
                    payload_bytes: figure(
                        Unit::Bytes,
                        crate::report::build::payload_provenance(
                            samples.iter().filter(|s| s.received.is_some()).count(),
                            samples.len(),
                        ),
                        of(|s| s.bytes as f64),
                    ),
                    time_ns: figure(
                        Unit::Ns,
                        Provenance::Observed {
                            hook: "clock_gettime(CLOCK_MONOTONIC)".into(),
                            method: "user space, no probe (--untraced)".into(),
                            detail: "read by the sender thread right before and right after \
                                     the transfer (the clock bpf_ktime_get_ns() reads)"
                                .into(),
                        },
                        of(|s| s.window_ns as f64),
                    ),
                    throughput_bytes_per_sec: figure(
                        Unit::BytesPerSec,
                        Provenance::Derived {
                            from: "payload_bytes / time_ns".into(),
                        },
                        of(|s| {
                            if s.window_ns == 0 {
                                0.0
                            } else {
                                (s.bytes as f64 * 1e9 / s.window_ns as f64).round()
                            }
                        }),
                    ),
                    cpu_copied_bytes: not_observable(Unit::Bytes),
                    copied_user_to_kernel_bytes: not_observable(Unit::Bytes),
                    copied_kernel_to_user_bytes: not_observable(Unit::Bytes),
                    copied_kernel_to_kernel_bytes: not_observable(Unit::Bytes),
                    by_reference_bytes: not_observable(Unit::Bytes),
                    receiver_copied_bytes: not_observable(Unit::Bytes),
                    device_read_bytes: not_observable(Unit::Bytes),
                    device_write_bytes: not_observable(Unit::Bytes),
                },
                copy_sites: Vec::new(),
                syscalls_by_name: BTreeMap::new(),
                ledger: Vec::new(),
            }
        })
        .collect();
    Report {
        schema: super::model::SCHEMA_VERSION,
        tool: Tool {
            name: "zc-trace",
            version: env!("CARGO_PKG_VERSION"),
        },
        host,
        config,
        probes: Vec::new(),
        strategies,
        claims: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Format;

    #[test]
    fn only_time_throughput_and_payload_have_values() {
        let (config, host) = (
            super::super::tests::run_config(),
            super::super::tests::host(),
        );
        let samples = vec![
            UntracedSample {
                window_ns: 2000,
                bytes: 1000,
                received: Some(1000),
            },
            UntracedSample {
                window_ns: 4000,
                bytes: 1000,
                received: Some(1000),
            },
        ];
        let report = untraced(
            host,
            config,
            vec![(crate::transfer::strategies::ALL[0], SinkKind::Tcp, samples)],
        );
        let v: serde_json::Value =
            serde_json::from_str(&super::super::render(&report, Format::Json)).unwrap();
        let figures = v["strategies"][0]["figures"].as_object().unwrap();
        for (key, f) in figures {
            match key.as_str() {
                "time_ns" => assert_eq!(f["value"]["median"], 3000),
                "throughput_bytes_per_sec" => assert_eq!(f["value"]["max"], 500_000_000),
                "payload_bytes" => assert_eq!(f["value"]["median"], 1000),
                _ => {
                    assert!(f["value"].is_null(), "{key}");
                    assert_eq!(f["provenance"]["kind"], "not_observable", "{key}");
                    assert!(
                        f["provenance"]["reason"]
                            .as_str()
                            .unwrap()
                            .starts_with("--untraced"),
                        "{key}"
                    );
                }
            }
        }
        assert!(v["probes"].as_array().unwrap().is_empty());
    }
}
