//! How a report's figures are computed from the samples: every figure is observed at a named
//! hook, derived from observed figures (the formula is stated), an input, or marked not
//! observable with the reason; a figure summing a site of a leg the ledger cannot balance is
//! marked incomplete.

use std::collections::BTreeMap;

use zc_trace_common::{class, counter, Role};

use super::model::*;
use super::sample::{RoleSample, Sample};
use super::sites::{
    copy_site, observed, receiver_sites, relevant, sender_sites, site_source_for, socket_sites,
    zerocopy_site, SiteValues, ZEROCOPY_FALLBACK,
};
use super::stat::Stat;
use crate::kernel::capabilities::HostFacts;
use crate::kernel::probes::{AttachReport, HookId};
use crate::kernel::syscalls;
use crate::transfer::sink::SinkKind;
use crate::transfer::strategies::Strategy;

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
                id: super::model::RowId::Strategy(s.id()),
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
    pub id: super::model::RowId,
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

fn figure(unit: Unit, provenance: Provenance, value: Option<Stat>) -> Figure {
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
                      side: Role,
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
        Unit::Count,
        observed(enter, SENDER),
        stat(samples, c(sender, counter::SYSCALL_ENTERS)),
    );

    // Each syscall is one entry and one exit; each user-mode fault is one more round trip.
    let faults_seen = fault_user.method.is_some();
    let transitions = figure(
        Unit::Count,
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
        Unit::Ns,
        observed(
            enter,
            "bpf_ktime_get_ns() at the start and stop markers (close(0x7a637401/2))",
        ),
        stat(samples, |s| s.window_ns as f64),
    );
    let throughput = figure(
        Unit::BytesPerSec,
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
                Unit::Bytes,
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
                Unit::Bytes,
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
            Unit::Bytes,
            observed(device, device_detail),
            stat(samples, c(sender, counter::DEVICE_READ_BYTES)),
        ),
        device_write_bytes: figure(
            Unit::Bytes,
            observed(device, device_detail),
            stat(samples, c(sender, counter::DEVICE_WRITE_BYTES)),
        ),
        syscalls,
        transitions,
        page_faults_user_mode: figure(
            Unit::Count,
            observed(fault_user, SENDER),
            stat(samples, c(sender, counter::FAULTS_USER_MODE)),
        ),
        page_faults_kernel_mode: figure(
            Unit::Count,
            observed(
                fault_kernel,
                "faults on user addresses taken inside a syscall (e.g. write() reading an \
                 unmapped mmap page); sender thread only",
            ),
            stat(samples, c(sender, counter::FAULTS_KERNEL_MODE)),
        ),
        context_switches_voluntary: figure(
            Unit::Count,
            observed(
                csw,
                "the sender thread blocked (not a preemption); sender only",
            ),
            stat(samples, c(sender, counter::CSW_VOLUNTARY)),
        ),
        context_switches_involuntary: figure(
            Unit::Count,
            observed(
                csw,
                "the sender thread was preempted while runnable; sender only",
            ),
            stat(samples, c(sender, counter::CSW_INVOLUNTARY)),
        ),
        payload_bytes: figure(
            Unit::Bytes,
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
                Role::Receiver,
                sink,
            )
        } else if sink == SinkKind::Remote {
            figure(
                Unit::Bytes,
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
                Unit::Bytes,
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
            Role::Sender,
            sink,
        ),
        copied_user_to_kernel_bytes: copy_total(
            probes,
            samples,
            &[class::USER_TO_KERNEL],
            &sender_sites(),
            Role::Sender,
            sink,
        ),
        copied_kernel_to_user_bytes: copy_total(
            probes,
            samples,
            &[class::KERNEL_TO_USER],
            &sender_sites(),
            Role::Sender,
            sink,
        ),
        copied_kernel_to_kernel_bytes: copy_total(
            probes,
            samples,
            &[class::KERNEL_TO_KERNEL],
            &sender_sites(),
            Role::Sender,
            sink,
        ),
        by_reference_bytes: copy_total(
            probes,
            samples,
            &[class::BY_REFERENCE],
            &socket_sites(),
            Role::Sender,
            sink,
        ),
    }
}

/// `f`, marked incomplete when it sums a site of a leg that does not balance.
fn incomplete_if(
    f: Figure,
    sites: &[HookId],
    unbalanced: &[(HookId, String)],
    side: Role,
) -> Figure {
    if !matches!(side, Role::Sender) || f.value.is_none() {
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

/// The sum of `classes` over `sites` for the tasks of `side`; not observable if any site is.
fn copy_total(
    probes: &AttachReport,
    samples: &[Sample],
    classes: &[usize],
    sites: &[HookId],
    side: Role,
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
                    Unit::Bytes,
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
    let reported = matches!(side, Role::Sender)
        && classes.contains(&class::KERNEL_TO_KERNEL)
        && samples.iter().any(|s| s.zerocopy.is_some());
    if reported {
        parts.push(format!(
            "zerocopy_completion derived from {ZEROCOPY_FALLBACK}"
        ));
    }
    figure(
        Unit::Bytes,
        Provenance::Derived {
            from: format!("sum over copy sites: {}", parts.join("; ")),
        },
        stat(samples, |s| {
            let sites: u64 = values
                .iter()
                .map(|v| classes.iter().map(|&k| v.bytes(s.of(side), k)).sum::<u64>())
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
        let name = syscalls::name(nr);
        let returns_bytes = syscalls::returns_bytes(&name);
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
mod tests {
    use super::*;
    use crate::report::fixtures::{attach_report, read_of, sample, READ, WRITE};

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

    #[test]
    fn transitions_are_entries_plus_exits_plus_fault_round_trips() {
        let r = attach_report(&[]);
        let f = figures(
            &r,
            &[sample(&[(READ, 3, 1000), (WRITE, 2, 1000)], 4, 1000)],
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

    #[test]
    fn a_missing_hook_makes_its_figures_not_observable_and_says_so() {
        let r = attach_report(&[HookId::FaultUserMode, HookId::ContextSwitch]);
        let f = figures(
            &r,
            &[sample(&[(READ, 3, 0)], 4, 10)],
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
            &[sample(&[(READ, 1, 0)], 0, 10)],
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
        let m = by_name(&[sample(&[(READ, 3, 300), (WRITE, 2, 200)], 0, 10)]);
        let names: Vec<&str> = m.keys().map(String::as_str).collect();
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

    #[test]
    fn an_incomplete_leg_marks_the_copy_figures_and_the_claim_is_not_graded() {
        use crate::report::Provenance;
        let probes = attach_report(&[]);
        let samples = vec![read_of(1000, &[])];
        let config = crate::report::RunConfig {
            payload_bytes: 1000,
            chunk_bytes: 500,
            iterations: 1,
            cold: false,
            source: "generated".into(),
            source_fs: "tmpfs".into(),
            sink: crate::transfer::sink::SinkKind::Tcp,
            sink_description: "TCP over loopback".into(),
            sink_scatter_gather: Some(true),
            receiver: Some("separate process".into()),
            sink_device: None,
            skipped: vec![],
        };
        let strategy = crate::transfer::strategies::by_name("read-write").unwrap();
        let host = crate::kernel::capabilities::HostFacts {
            kernel: "6.12.0-test".into(),
            arch: "x86_64".into(),
            btf: None,
            btf_note: None,
        };
        let mut report = crate::report::build(
            host,
            config,
            &probes,
            vec![(
                strategy,
                crate::transfer::sink::SinkKind::Tcp,
                true,
                samples,
            )],
        );
        let f = &report.strategies[0].figures;
        let Provenance::Incomplete { reason, .. } = &f.cpu_copied_bytes.provenance else {
            panic!("{:#?}", f.cpu_copied_bytes);
        };
        assert!(
            reason.contains("file_read leg: 0 of 1000 bytes seen"),
            "{reason}"
        );
        assert!(matches!(
            f.copied_kernel_to_user_bytes.provenance,
            Provenance::Incomplete { .. }
        ));
        // by reference sums the socket sites only: not part of the file leg.
        assert!(!matches!(
            f.by_reference_bytes.provenance,
            Provenance::Incomplete { .. }
        ));
        let facts = crate::report::claims::RunFacts {
            sink_has_sg: Some(true),
            sink: "tcp".into(),
            cold: false,
        };
        report.claims = Some(crate::report::claims::judge(
            &crate::report::claims::Claims::seed(),
            &report,
            &facts,
        ));
        let v = report
            .claims
            .as_ref()
            .unwrap()
            .verdicts
            .iter()
            .find(|v| {
                v.strategy == crate::transfer::strategies::StrategyId::ReadWrite
                    && v.figure == crate::report::claims::ClaimFigure::CpuCopies
            })
            .expect("the seed article grades read+write's CPU copies");
        assert_eq!(
            v.verdict,
            crate::report::claims::Outcome::NotObservable,
            "{v:#?}"
        );
        assert!(v.reason.contains("incomplete"), "{}", v.reason);
    }
}
