//! The byte ledger: zc-trace checking itself. "Observed" claims that a hook saw every byte on a
//! path; a path that bypasses the hook (tmpfs reads skip filemap_read, xfs writes skip
//! generic_perform_write) would make an observed figure silently short. So for each leg of a
//! transfer, the bytes the syscalls returned on that leg (by the type of file behind the
//! descriptor, recorded in the kernel) are set against the bytes that leg's copy sites saw,
//! copied or by reference. A leg that does not balance makes every copy figure that sums its
//! sites "incomplete", and the claims graded on those figures are not graded.

use zc_trace_common::{class, counter};

use crate::kernel::probes::{AttachReport, HookId, KernelPaths, LegId};

use super::model::{Balance, LedgerLeg};
use super::sample::Sample;
use super::sites::{relevant, site_source_for, SiteValues};
use super::stat::Stat;

/// One leg: which syscall-byte counters say what moved; the copy sites that should see it are
/// those the catalogue (`probes::PLAN`) puts on this leg.
pub struct Leg {
    pub id: LegId,
    pub description: &'static str,
    counters: &'static [usize],
    /// Only for a TCP route without scatter-gather, where every byte sent is copied again at
    /// transmit, and every byte TCP retransmits once more: those count as moved too.
    no_sg_route: bool,
    /// A counter that counts only where the kernel takes that path (`KernelPaths`).
    on_path: Option<(usize, PathTaken)>,
}

/// Whether this kernel takes a path (`Leg::on_path`).
type PathTaken = fn(&KernelPaths) -> bool;

impl Leg {
    /// The copy sites on this leg, from the catalogue.
    pub fn sites(&self) -> impl Iterator<Item = HookId> + '_ {
        crate::kernel::probes::PLAN
            .iter()
            .filter(move |h| h.copy.is_some_and(|c| c.place.leg() == Some(self.id)))
            .map(|h| h.id)
    }
}

/// Where a strategy's bytes went: the sink, and whether its route has scatter-gather.
#[derive(Debug, Clone, Copy)]
pub struct SinkRoute {
    pub kind: crate::transfer::sink::SinkKind,
    pub scatter_gather: Option<bool>,
}

/// The sender's legs whose bytes the syscalls give by file type.
pub const LEGS: &[Leg] = &[
    Leg {
        id: LegId::FileRead,
        description: "source: bytes read from regular files (read family, sendfile/splice from \
                      a file, copy_file_range), O_DIRECT left out",
        counters: &[
            counter::READ_REGULAR_BYTES,
            counter::SPLICE_FROM_REGULAR_BYTES,
            counter::UNCLASSIFIED_BYTES,
        ],
        no_sg_route: false,
        on_path: None,
    },
    Leg {
        id: LegId::FileWrite,
        description: "sink: bytes written to regular files (write family, sendfile/splice into \
                      a file, copy_file_range), O_DIRECT left out",
        counters: &[
            counter::WRITE_REGULAR_BYTES,
            counter::SPLICE_TO_REGULAR_BYTES,
            counter::UNCLASSIFIED_BYTES,
        ],
        no_sg_route: false,
        on_path: None,
    },
    Leg {
        id: LegId::SocketSend,
        description: "sink: bytes sent into sockets (write family, sendto, sendmsg, \
                      sendfile/splice into a socket)",
        counters: &[counter::SEND_SOCKET_BYTES, counter::SPLICE_TO_SOCKET_BYTES],
        no_sg_route: false,
        on_path: None,
    },
    Leg {
        id: LegId::NicLinearize,
        description: "a TCP route without scatter-gather: every byte sent into the socket is \
                      copied into linear memory at transmit (segmentation or linearization)",
        counters: &[counter::SEND_SOCKET_BYTES, counter::SPLICE_TO_SOCKET_BYTES],
        no_sg_route: true,
        on_path: None,
    },
    Leg {
        id: LegId::PipeWrite,
        description: "bytes written into pipes by the write family, and by sendfile where the \
                      kernel writes them with pipe_write (before 5.12)",
        counters: &[counter::WRITE_PIPE_BYTES],
        no_sg_route: false,
        on_path: Some((counter::SENDFILE_TO_PIPE_BYTES, |p| {
            p.sendfile_into_pipe_writes
        })),
    },
    Leg {
        id: LegId::PipeRead,
        description: "bytes read out of pipes by the read family",
        counters: &[counter::READ_PIPE_BYTES],
        no_sg_route: false,
        on_path: None,
    },
];

/// The sender's ledger for one strategy: the legs that moved or saw any byte.
pub fn sender_ledger(
    probes: &AttachReport,
    samples: &[Sample],
    source_fs: &str,
    route: SinkRoute,
) -> Vec<LedgerLeg> {
    let sink = route.kind;
    let stat = |f: &dyn Fn(&Sample) -> u64| {
        Stat::of(samples.iter().map(|s| f(s) as f64).collect()).expect("samples")
    };
    let mut out = Vec::new();
    for leg in LEGS {
        if leg.no_sg_route && !(sink.is_tcp() && route.scatter_gather == Some(false)) {
            continue;
        }
        let retransmitted = |s: &Sample| {
            if leg.no_sg_route {
                s.retransmitted.unwrap_or(0)
            } else {
                0
            }
        };
        let on_path = leg
            .on_path
            .and_then(|(c, taken)| taken(&probes.paths).then_some(c));
        let moved = |s: &Sample| {
            leg.counters
                .iter()
                .chain(on_path.iter())
                .map(|&c| s.sender.counter(c))
                .sum::<u64>()
                + retransmitted(s)
        };
        // Sites of other socket families cannot carry this sink's bytes.
        let sites: Vec<HookId> = leg.sites().filter(|&h| relevant(h, sink)).collect();
        let sources: Vec<_> = sites
            .iter()
            .map(|&h| site_source_for(probes, probes.get(h), samples))
            .collect();
        // A read into kernel memory at a file-read site is the kernel's own (execve reading
        // the program's headers with kernel_read, ITER_KVEC), never a syscall's bytes: the
        // read family reads into user memory and splice into pipe pages.
        let counts = |k: usize| !(leg.id == LegId::FileRead && k == class::KERNEL_TO_KERNEL);
        let seen = |s: &Sample| {
            sources
                .iter()
                .map(|(_, v)| {
                    (0..class::COUNT)
                        .filter(|&k| counts(k))
                        .map(|k| v.bytes(&s.sender, k))
                        .sum::<u64>()
                })
                .sum::<u64>()
        };
        if samples.iter().all(|s| moved(s) == 0 && seen(s) == 0) {
            continue;
        }
        let not_observable = sources
            .iter()
            .any(|(p, _)| matches!(p, super::Provenance::NotObservable { .. }));
        let derived = sources
            .iter()
            .any(|(_, v)| matches!(v, SiteValues::Derived(_)));
        let unclassified = samples
            .iter()
            .any(|s| s.sender.counter(counter::UNCLASSIFIED_BYTES) > 0);
        // io_uring moves bytes in requests, not in syscall returns the leg could count.
        let io_uring = (leg.id == LegId::SocketSend || leg.no_sg_route)
            && samples.iter().any(|s| {
                s.sender
                    .syscall(nix::libc::SYS_io_uring_enter as usize)
                    .enters
                    > 0
            });
        let (balance, note) = if io_uring {
            (
                Balance::NotObservable,
                "io_uring requests send without a syscall return per request: the socket leg \
                 has nothing to be checked against"
                    .to_string(),
            )
        } else if not_observable {
            (
                Balance::NotObservable,
                "a site of this leg cannot be observed here".to_string(),
            )
        } else if derived {
            (
                Balance::Derived,
                "this leg's figures are derived from these syscall bytes".to_string(),
            )
        } else if samples.iter().all(|s| moved(s) == seen(s)) {
            (Balance::Balanced, String::new())
        } else if let Some(s) = samples.iter().find(|s| seen(s) < moved(s)) {
            let path = match leg.id {
                LegId::FileRead => format!("fs {source_fs}"),
                LegId::FileWrite => "the written file's filesystem".to_string(),
                LegId::SocketSend => format!("sink {}", sink.cli_name()),
                LegId::NicLinearize => {
                    "a transmit the hooks missed (net:net_dev_start_xmit sees frames, not \
                     the copies: a frame that lost its socket on the way goes uncounted)"
                        .to_string()
                }
                _ => "a pipe".to_string(),
            };
            let mut note = format!(
                "{} of {} bytes seen; the rest went through an unhooked path ({path})",
                seen(s),
                moved(s)
            );
            if unclassified {
                note.push_str(
                    "; or copy_file_range shared the extents (reflink) instead of copying them",
                );
            }
            (Balance::Incomplete, note)
        } else {
            // Not all equal and none short: some sample saw more than moved.
            let s = samples
                .iter()
                .find(|s| seen(s) > moved(s))
                .expect("a sample that is neither equal nor short is over");
            (
                Balance::Excess,
                format!(
                    "the sites saw {} bytes where the syscalls moved {} on this leg",
                    seen(s),
                    moved(s)
                ),
            )
        };
        out.push(LedgerLeg {
            leg: leg.id,
            description: leg.description,
            retransmitted_bytes: leg.no_sg_route.then(|| stat(&retransmitted)),
            moved_bytes: stat(&moved),
            seen_bytes: (!not_observable).then(|| stat(&seen)),
            sites: sites.clone(),
            balance,
            note,
        });
    }
    out
}

/// The leg of a route through a device that reads frames by DMA: every byte the sender put
/// into its socket, and every byte TCP retransmitted, must be in a frame handed to that
/// device (net:net_dev_start_xmit, linear part and fragments).
pub fn nic_leg(probes: &AttachReport, samples: &[Sample]) -> LedgerLeg {
    let stat = |f: &dyn Fn(&Sample) -> u64| {
        Stat::of(samples.iter().map(|s| f(s) as f64).collect()).expect("samples")
    };
    let retransmitted = |s: &Sample| s.retransmitted.unwrap_or(0);
    let moved = |s: &Sample| {
        s.sender.counter(counter::SEND_SOCKET_BYTES)
            + s.sender.counter(counter::SPLICE_TO_SOCKET_BYTES)
            + retransmitted(s)
    };
    let seen = |s: &Sample| {
        s.sender.counter(counter::NIC_TX_LINEAR_BYTES)
            + s.sender.counter(counter::NIC_TX_FRAG_BYTES)
    };
    let observable = probes.get(HookId::NicTransmit).method.is_some();
    let io_uring = samples.iter().any(|s| {
        s.sender
            .syscall(nix::libc::SYS_io_uring_enter as usize)
            .enters
            > 0
    });
    let (balance, note) = if !observable {
        (
            Balance::NotObservable,
            format!(
                "the device's transmits cannot be observed here: {}",
                probes.get(HookId::NicTransmit).why_not()
            ),
        )
    } else if io_uring {
        (
            Balance::NotObservable,
            "io_uring requests send without a syscall return per request: nothing to check \
             the device's bytes against"
                .to_string(),
        )
    } else if samples.iter().all(|s| moved(s) == seen(s)) {
        (Balance::Balanced, String::new())
    } else if let Some(s) = samples.iter().find(|s| seen(s) < moved(s)) {
        (
            Balance::Incomplete,
            format!(
                "{} of {} bytes seen in frames handed to the device; the rest left another way \
                 (another route, or frames the hook missed)",
                seen(s),
                moved(s)
            ),
        )
    } else {
        let s = samples.iter().find(|s| seen(s) > moved(s)).expect("over");
        (
            Balance::Excess,
            format!(
                "the device was handed {} bytes of the sender's frames where {} were sent",
                seen(s),
                moved(s)
            ),
        )
    };
    LedgerLeg {
        leg: LegId::NicTransmit,
        description: "a device that reads frames by DMA: every byte sent into the socket, and \
                      every byte TCP retransmitted, is handed to it in a frame",
        moved_bytes: stat(&moved),
        retransmitted_bytes: Some(stat(&retransmitted)),
        seen_bytes: observable.then(|| stat(&seen)),
        sites: vec![HookId::NicTransmit],
        balance,
        note,
    }
}

/// The hooks of the legs that do not balance, with the leg's note.
pub fn unbalanced_sites(ledger: &[LedgerLeg]) -> Vec<(HookId, String)> {
    ledger
        .iter()
        .filter(|l| l.unbalanced())
        // Only legs of copy sites make copy figures incomplete (nic_transmit's bytes are the
        // device's, in figures of their own, and the DMA claims check that leg themselves).
        .filter_map(|l| Some((l, LEGS.iter().find(|g| g.id == l.leg)?)))
        .flat_map(|(l, leg)| {
            leg.sites()
                .map(move |h| (h, format!("{} leg: {}", l.leg, l.note)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{attach_report, read_of, SENDFILE};
    use zc_trace_common::site;

    pub(super) const TCP: SinkRoute = SinkRoute {
        kind: crate::transfer::sink::SinkKind::Tcp,
        scatter_gather: Some(true),
    };
    pub(super) const UNIX: SinkRoute = SinkRoute {
        kind: crate::transfer::sink::SinkKind::Unix,
        scatter_gather: None,
    };

    #[test]
    fn every_leg_has_sites_and_every_site_s_leg_exists() {
        for leg in LEGS {
            assert!(leg.sites().next().is_some(), "leg {} has no site", leg.id);
        }
        for h in crate::kernel::probes::PLAN {
            if let Some(leg) = h.copy.and_then(|c| c.place.leg()) {
                assert!(LEGS.iter().any(|l| l.id == leg), "{:?}: no leg {leg}", h.id);
            }
        }
    }

    #[test]
    fn a_leg_whose_sites_saw_every_byte_balances() {
        let probes = attach_report(&[]);
        let l = sender_ledger(
            &probes,
            &[read_of(1000, &[(site::FILE_READ, 1000)])],
            "ext4",
            TCP,
        );
        assert_eq!(l.len(), 1, "{l:#?}");
        assert_eq!(
            (l[0].leg, l[0].balance),
            (LegId::FileRead, Balance::Balanced)
        );
        assert_eq!(l[0].seen_bytes.as_ref().unwrap().median, 1000.0);
    }

    #[test]
    fn tmpfs_bytes_outside_filemap_read_make_the_leg_incomplete() {
        let probes = attach_report(&[]);
        let samples = [read_of(1000, &[])];
        let l = sender_ledger(&probes, &samples, "tmpfs", TCP);
        assert_eq!(l[0].balance, Balance::Incomplete);
        assert_eq!(
            l[0].note,
            "0 of 1000 bytes seen; the rest went through an unhooked path (fs tmpfs)"
        );
        let sites = unbalanced_sites(&l);
        assert!(sites.iter().any(|(h, _)| *h == HookId::FileRead));
        // Seen at the tmpfs site, the same bytes balance.
        let l = sender_ledger(
            &probes,
            &[read_of(1000, &[(site::SHMEM_READ, 1000)])],
            "tmpfs",
            TCP,
        );
        assert_eq!(l[0].balance, Balance::Balanced);
    }

    /// sendfile into a pipe: before 5.12 (no splice_file_to_pipe) the kernel writes the bytes
    /// with pipe_write, a kernel->kernel copy the pipe_write leg must expect; since then the
    /// pages go by reference, and the same copy would be excess.
    #[test]
    fn sendfile_into_a_pipe_is_on_the_pipe_write_leg_only_where_pipe_write_takes_it() {
        let sample = crate::report::fixtures::sample_with(&[(SENDFILE, 1, 1000)], 0, 10, |s| {
            s.counters[counter::SPLICE_FROM_REGULAR_BYTES] = 1000;
            s.counters[counter::SENDFILE_TO_PIPE_BYTES] = 1000;
            s.copies[site::FILE_READ][class::BY_REFERENCE] = 1000;
            s.copies[site::PIPE_WRITE][class::KERNEL_TO_KERNEL] = 1000;
        });
        let pipe = SinkRoute {
            kind: crate::transfer::sink::SinkKind::Pipe,
            scatter_gather: None,
        };
        let leg = |writes: bool| {
            let mut probes = attach_report(&[]);
            probes.paths.sendfile_into_pipe_writes = writes;
            sender_ledger(&probes, std::slice::from_ref(&sample), "ext4", pipe)
                .into_iter()
                .find(|l| l.leg == LegId::PipeWrite)
                .expect("a pipe_write leg")
                .balance
        };
        assert_eq!(leg(true), Balance::Balanced);
        assert_eq!(leg(false), Balance::Excess);
    }

    #[test]
    fn more_seen_than_moved_is_excess_and_a_derived_leg_is_not_checked() {
        let probes = attach_report(&[]);
        let l = sender_ledger(
            &probes,
            &[read_of(10, &[(site::FILE_READ, 20)])],
            "ext4",
            TCP,
        );
        assert_eq!(l[0].balance, Balance::Excess);
        assert!(l[0].unbalanced());
        // file_read cannot be hooked (not "absent"): its figure is derived from the syscalls.
        let probes = attach_report(&[HookId::FileRead]);
        let l = sender_ledger(&probes, &[read_of(1000, &[])], "ext4", TCP);
        assert_eq!(l[0].balance, Balance::Derived);
        assert!(!l[0].unbalanced());
    }
}

#[cfg(test)]
mod socket_tests {
    use super::tests::{TCP, UNIX};
    use super::*;
    use crate::report::fixtures::{attach_report, sample_with, SENDFILE};
    use zc_trace_common::site;

    /// sendfile of N bytes into a socket; `seen` at the given socket site, by reference.
    fn sendfile_into(n: u64, seen_at: &[(usize, u64)]) -> Sample {
        sample_with(&[(SENDFILE, 1, n)], 0, 10, |s| {
            s.counters[counter::SPLICE_TO_SOCKET_BYTES] = n;
            for &(site_id, bytes) in seen_at {
                s.copies[site_id][class::BY_REFERENCE] = bytes;
            }
        })
    }

    #[test]
    fn unix_sendpage_closes_the_socket_leg_before_6_5() {
        let probes = attach_report(&[]);
        // 6.1: splice to a UNIX socket goes through unix_stream_sendpage only.
        let l = sender_ledger(
            &probes,
            &[sendfile_into(4096, &[(site::UNIX_SENDPAGE, 4096)])],
            "ext4",
            UNIX,
        );
        let leg = l.iter().find(|l| l.leg == LegId::SocketSend).unwrap();
        assert_eq!(leg.balance, Balance::Balanced, "{leg:#?}");
        assert!(leg.sites.contains(&HookId::UnixSendpage) && !leg.sites.contains(&HookId::TcpSend));
        // Without that site the same bytes are missing, and the ledger says where.
        let l = sender_ledger(&probes, &[sendfile_into(4096, &[])], "ext4", UNIX);
        let leg = l.iter().find(|l| l.leg == LegId::SocketSend).unwrap();
        assert_eq!(leg.balance, Balance::Incomplete);
        assert!(leg.note.contains("(sink unix)"), "{}", leg.note);
    }

    #[test]
    fn a_socket_site_of_another_family_does_not_make_the_leg_unobservable() {
        // tcp_send observed; unix_send cannot be hooked (the host): a TCP sink's leg is checked.
        let probes = attach_report(&[HookId::UnixSend]);
        let l = sender_ledger(
            &probes,
            &[sendfile_into(100, &[(site::TCP_SEND, 100)])],
            "ext4",
            TCP,
        );
        let leg = l.iter().find(|l| l.leg == LegId::SocketSend).unwrap();
        assert_eq!(leg.balance, Balance::Balanced, "{leg:#?}");
    }

    /// sendfile of N bytes into a TCP socket on a route without scatter-gather, with `linear`
    /// bytes copied at transmit and `retransmitted` bytes sent again.
    fn sendfile_without_sg(n: u64, linear: u64, retransmitted: u64) -> Sample {
        let mut s = sample_with(&[(SENDFILE, 1, n)], 0, 10, |s| {
            s.counters[counter::SPLICE_TO_SOCKET_BYTES] = n;
            s.copies[site::TCP_SEND][class::BY_REFERENCE] = n;
            s.copies[site::NIC_LINEARIZE][class::KERNEL_TO_KERNEL] = linear;
        });
        s.retransmitted = Some(retransmitted);
        s
    }

    const NO_SG: SinkRoute = SinkRoute {
        kind: crate::transfer::sink::SinkKind::Veth,
        scatter_gather: Some(false),
    };

    fn nic_leg(samples: &[Sample], route: SinkRoute) -> Option<LedgerLeg> {
        let l = sender_ledger(&attach_report(&[]), samples, "ext4", route);
        l.into_iter().find(|l| l.leg == LegId::NicLinearize)
    }

    #[test]
    fn without_scatter_gather_every_byte_sent_must_be_seen_copied_at_transmit() {
        let leg = nic_leg(&[sendfile_without_sg(1000, 1000, 0)], NO_SG).unwrap();
        assert_eq!((leg.balance, leg.note.as_str()), (Balance::Balanced, ""));
        // Retransmitted bytes pass the transmit, and its copy, again: they count as moved.
        let leg = nic_leg(&[sendfile_without_sg(1000, 1448, 448)], NO_SG).unwrap();
        assert_eq!(leg.balance, Balance::Balanced);
        assert_eq!(leg.moved_bytes.median, 1448.0);
        assert_eq!(leg.retransmitted_bytes.unwrap().median, 448.0);
        // More than sent and retransmitted: a site counted something else.
        let leg = nic_leg(&[sendfile_without_sg(1000, 1448, 0)], NO_SG).unwrap();
        assert_eq!(leg.balance, Balance::Excess);
        // Fewer: a transmit went unseen; the figure is incomplete, never graded.
        let leg = nic_leg(&[sendfile_without_sg(1000, 600, 0)], NO_SG).unwrap();
        assert_eq!(leg.balance, Balance::Incomplete);
        assert!(
            leg.note.starts_with("600 of 1000 bytes seen"),
            "{}",
            leg.note
        );
        assert!(unbalanced_sites(&[leg])
            .iter()
            .any(|(h, _)| *h == HookId::NicLinearize));
        // With scatter-gather (or no route at all) there is no such leg.
        assert!(nic_leg(&[sendfile_without_sg(1000, 0, 0)], TCP).is_none());
        assert!(nic_leg(&[sendfile_without_sg(1000, 0, 0)], UNIX).is_none());
    }
}
