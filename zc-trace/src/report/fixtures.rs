//! Test fixtures for the report's modules: attach reports and samples built by hand.

use zc_trace_common::{class, counter, RoleStats};

use crate::kernel::probes::{AttachReport, HookId, HookOutcome, PLAN};
use crate::report::sample::{RoleSample, Sample};

/// Syscall numbers of the architecture the tests run on (they differ: read is 0 on x86_64, 63
/// on arm64), so that a fixture's call is named and classed as it would be there.
pub const READ: usize = nix::libc::SYS_read as usize;
pub const WRITE: usize = nix::libc::SYS_write as usize;
pub const SENDFILE: usize = nix::libc::SYS_sendfile as usize;

/// An attach report where every hook attached with its last (most portable) candidate,
/// except those listed as missing.
pub fn attach_report(missing: &[HookId]) -> AttachReport {
    AttachReport {
        paths: crate::kernel::probes::KernelPaths::default(),
        hooks: PLAN
            .iter()
            .map(|h| {
                let c = h.candidates.last().unwrap();
                let ok = !missing.contains(&h.id);
                HookOutcome {
                    hook: h.id,
                    site: h.site,
                    feeds: h.feeds,
                    method: ok.then_some(c.method),
                    method_label: ok.then(|| c.label()),
                    target: ok.then(|| c.target_label()),
                    detail: if ok { c.detail } else { None },
                    failed: if ok {
                        vec![]
                    } else {
                        vec![crate::kernel::probes::Attempt {
                            method: c.label(),
                            kind: crate::kernel::probes::AttachFailure::Other,
                            target: c.target.to_string(),
                            error: "event not available".into(),
                        }]
                    },
                }
            })
            .collect(),
    }
}

pub fn sample(syscalls: &[(usize, u64, u64)], faults_user: u64, window_ns: u64) -> Sample {
    sample_with(syscalls, faults_user, window_ns, |_| {})
}

/// `sample`, with the sender's counters changed by `tweak` before they are kept.
pub fn sample_with(
    syscalls: &[(usize, u64, u64)],
    faults_user: u64,
    window_ns: u64,
    tweak: impl FnOnce(&mut RoleStats),
) -> Sample {
    let mut sender = Box::new(RoleStats::zeroed());
    for &(nr, count, ret) in syscalls {
        sender.syscalls[nr].enters = count;
        sender.syscalls[nr].exits = count;
        sender.syscalls[nr].ret_positive_sum = ret;
        sender.counters[counter::SYSCALL_ENTERS] += count;
        sender.counters[counter::SYSCALL_EXITS] += count;
    }
    sender.counters[counter::FAULTS_USER_MODE] = faults_user;
    tweak(&mut sender);
    let mut receiver = Box::new(RoleStats::zeroed());
    receiver.copies[zc_trace_common::site::SOCK_RECV][class::KERNEL_TO_USER] = 1000;
    Sample {
        sender: RoleSample::from(&*sender),
        receiver: RoleSample::from(&*receiver),
        window_ns,
        bytes: 1000,
        zerocopy: None,
        retransmitted: None,
        send_time: None,
        received: None,
    }
}

/// A read+write of N bytes from a file: read() returned N on a regular file.
pub fn read_of(n: u64, seen_at: &[(usize, u64)]) -> Sample {
    sample_with(&[(READ, 2, n)], 0, 10, |s| {
        s.counters[counter::READ_REGULAR_BYTES] = n;
        for &(site_id, bytes) in seen_at {
            s.copies[site_id][class::KERNEL_TO_USER] = bytes;
        }
    })
}
