//! The copy sites of a report: which hooks are sites of which side and leg, how each site's
//! bytes are obtained on this kernel (observed at its hook, derived from the syscalls by file
//! type, zero where the site does not exist, or not observable, with the reason), and the
//! site rows of a report.

use zc_trace_common::{class, counter, Role};

use super::model::{ClassBytes, CopySiteReport, Provenance, SiteId};
use super::sample::{RoleSample, Sample};
use super::stat::Stat;
use crate::kernel::probes::{AttachReport, CopySite, Fallback, HookId, HookOutcome, Place, PLAN};
use crate::transfer::sink::SinkKind;

/// Provenance of a figure counted at `hook`, or why it is not observable.
pub(super) fn observed(hook: &HookOutcome, detail: &str) -> Provenance {
    match (&hook.method_label, &hook.target) {
        (Some(method), Some(target)) => Provenance::Observed {
            hook: target.clone(),
            method: method.clone(),
            detail: detail.to_string(),
        },
        _ => Provenance::NotObservable {
            reason: format!(
                "no attach method worked for {}: {}",
                hook.site,
                hook.why_not()
            ),
        },
    }
}

/// The copy sites of the catalogue that `keep` selects, in its order (the order data flows).
pub(super) fn sites_where(keep: impl Fn(&CopySite) -> bool) -> Vec<HookId> {
    PLAN.iter()
        .filter(|h| h.copy.as_ref().is_some_and(&keep))
        .map(|h| h.id)
        .collect()
}

/// The sender's copy sites.
pub(super) fn sender_sites() -> Vec<HookId> {
    sites_where(|c| c.side.serves(Role::Sender))
}

/// Where the receiver process copies: out of a socket, or out of a pipe (FIFO sink).
pub(super) fn receiver_sites() -> Vec<HookId> {
    sites_where(|c| c.side.serves(Role::Receiver))
}

/// Sites where bytes enter the socket (the socket leg's): "by reference" counts here, so that
/// the file->pipe leg of splice/sendfile (also by reference) is not counted a second time.
pub(super) fn socket_sites() -> Vec<HookId> {
    sites_where(|c| c.place == Place::SocketSend)
}

/// How a site's bytes per class are obtained on this kernel, and the per-sample values.
pub(super) fn site_source(hook: &HookOutcome) -> (Provenance, SiteValues) {
    let site = hook.hook.copy().expect("a copy-site hook");
    if hook.method.is_some() {
        return (
            observed(hook, hook.detail.unwrap_or(site.detail)),
            SiteValues::Observed(site.index),
        );
    }
    // Absent: every method that was tried found the function missing (a method left out on
    // purpose says nothing either way).
    let tried: Vec<_> = hook
        .failed
        .iter()
        .filter(|a| a.kind != crate::kernel::probes::AttachFailure::Skipped)
        .collect();
    let absent = !tried.is_empty()
        && tried
            .iter()
            .all(|a| a.kind == crate::kernel::probes::AttachFailure::Absent);
    if absent {
        return (
            Provenance::Derived {
                from: format!(
                    "0: the site does not exist on this kernel ({})",
                    tried[0].error
                ),
            },
            SiteValues::Zero,
        );
    }
    let why = hook.why_not();
    match site.fallback {
        // Where the site's function cannot be hooked, the bytes the syscalls returned, by the
        // type of file behind their descriptor (looked up in the kernel), stand in for it.
        Fallback::Derived { what, pairs } => (
            Provenance::Derived {
                from: format!(
                    "{what} (raw_syscalls:sys_exit; file type from the task's descriptor table, \
                     read in the kernel); {} itself is not observable here ({why})",
                    hook.site
                ),
            },
            SiteValues::Derived(pairs),
        ),
        Fallback::InGeneric(generic) => filesystem_site_in_generic_derivation(hook, generic),
        Fallback::None => (
            Provenance::NotObservable {
                reason: format!("no attach method worked for {}: {why}", hook.site),
            },
            SiteValues::Zero,
        ),
    }
}

/// A filesystem-specific site while its generic site is derived: the derivation goes by file
/// type, so it already counts this site's bytes, on every filesystem.
fn filesystem_site_in_generic_derivation(
    hook: &HookOutcome,
    generic: HookId,
) -> (Provenance, SiteValues) {
    (
        Provenance::Derived {
            from: format!(
                "0 here: its bytes are in {}'s figure, derived from syscall return values by file \
                 type on every filesystem ({} itself: {})",
                generic.name(),
                hook.site,
                hook.why_not()
            ),
        },
        SiteValues::Zero,
    )
}

#[derive(Clone, Copy)]
pub(super) enum SiteValues {
    Observed(usize),
    /// (counter, class) pairs: all of each counter's bytes in its class.
    Derived(&'static [(usize, usize)]),
    Zero,
}

impl SiteValues {
    pub(super) fn bytes(self, stats: &RoleSample, class_id: usize) -> u64 {
        match self {
            SiteValues::Observed(site_id) => stats.copied(site_id, class_id),
            SiteValues::Derived(pairs) => pairs
                .iter()
                .filter(|(_, k)| *k == class_id)
                .map(|(c, _)| stats.counter(*c))
                .sum(),
            SiteValues::Zero => 0,
        }
    }
}

/// `site_source`, unless the strategy made calls whose copies the syscalls cannot classify
/// (copy_file_range may copy or reflink): then a derived file-write figure would be a guess.
pub(super) fn site_source_for(
    probes: &AttachReport,
    hook: &HookOutcome,
    samples: &[Sample],
) -> (Provenance, SiteValues) {
    // A filesystem-specific site observed while its generic site is derived would count its
    // bytes twice: the derivation already has them.
    if let Some(Fallback::InGeneric(generic)) = hook.hook.copy().map(|c| c.fallback) {
        if matches!(site_source(probes.get(generic)).1, SiteValues::Derived(_)) {
            return filesystem_site_in_generic_derivation(hook, generic);
        }
    }
    let (p, v) = site_source(hook);
    let unclassified = samples
        .iter()
        .map(|s| s.sender.counter(counter::UNCLASSIFIED_BYTES))
        .max()
        .unwrap_or(0);
    let file_write = hook
        .hook
        .copy()
        .is_some_and(|c| c.place == Place::FileWrite);
    if file_write && matches!(v, SiteValues::Derived(_)) && unclassified > 0 {
        return (
            Provenance::NotObservable {
                reason: format!(
                    "copy_file_range moved {unclassified} bytes between regular files, which the \
                     filesystem may copy or share (reflink); the syscall result cannot tell, and \
                     {} cannot be hooked here ({})",
                    hook.site,
                    hook.why_not()
                ),
            },
            SiteValues::Zero,
        );
    }
    (p, v)
}

/// Whether a site can carry payload to this sink: the socket sites of other socket families
/// are left out of the totals (they stay in the per-site detail).
pub(super) fn relevant(h: HookId, sink: SinkKind) -> bool {
    h.copy().map_or(true, |c| sink.carries(c.family))
}

pub(super) fn copy_site(
    probes: &AttachReport,
    hook: &HookOutcome,
    samples: &[Sample],
) -> CopySiteReport {
    let (provenance, values) = site_source_for(probes, hook, samples);
    let of = |k: usize| stat(samples, |s| values.bytes(&s.sender, k) as f64).expect("samples");
    let bytes = match provenance {
        Provenance::NotObservable { .. } => None,
        _ => Some(ClassBytes {
            user_to_kernel: of(class::USER_TO_KERNEL),
            kernel_to_user: of(class::KERNEL_TO_USER),
            kernel_to_kernel: of(class::KERNEL_TO_KERNEL),
            by_reference: of(class::BY_REFERENCE),
        }),
    };
    CopySiteReport {
        site: SiteId::Hook(hook.hook),
        description: hook.site,
        provenance,
        bytes,
    }
}

pub(super) const ZEROCOPY_FALLBACK: &str =
    "the kernel's zero-copy completion reports (MSG_ERRQUEUE \
     SO_EE_CODE_ZEROCOPY_COPIED / io_uring IORING_NOTIF_USAGE_ZC_COPIED): bytes of zero-copy \
     sends that the kernel says it copied after all (delivery to a local socket copies the \
     pinned pages)";

/// The copies a zero-copy send still cost, as the kernel itself reported them; the copy
/// happens at delivery, where no task or socket identifies it, so the report is the evidence.
pub(super) fn zerocopy_site(samples: &[Sample]) -> Option<CopySiteReport> {
    if samples.iter().all(|s| s.zerocopy.is_none()) {
        return None;
    }
    let of = |f: fn(&crate::transfer::strategies::ZerocopyReport) -> u64| {
        stat(samples, |s| s.zerocopy.as_ref().map_or(0, f) as f64).expect("samples")
    };
    let zero = stat(samples, |_| 0.0).expect("samples");
    Some(CopySiteReport {
        site: SiteId::ZerocopyCompletion,
        description: "zero-copy sends the kernel reports as copied (its completion notifications)",
        provenance: Provenance::Derived {
            from: format!(
                "kernel->kernel = {ZEROCOPY_FALLBACK}; read by zc-trace after the window"
            ),
        },
        bytes: Some(ClassBytes {
            user_to_kernel: zero.clone(),
            kernel_to_user: zero.clone(),
            kernel_to_kernel: of(|z| z.copied_bytes),
            by_reference: zero,
        }),
    })
}

fn stat(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<Stat> {
    Stat::of(samples.iter().map(f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::attach_report;

    /// Absence is read from the attempts' kind, not their wording: all absent makes the site's
    /// figure 0 (it does not exist here); one refused attempt makes it derived instead.
    #[test]
    fn a_site_is_absent_only_when_every_attempt_says_so() {
        use crate::kernel::probes::AttachFailure;
        let mut r = attach_report(&[HookId::FileRead]);
        let set = |r: &mut AttachReport, kinds: &[AttachFailure]| {
            let h = r
                .hooks
                .iter_mut()
                .find(|h| h.hook == HookId::FileRead)
                .unwrap();
            h.failed = kinds
                .iter()
                .map(|&kind| crate::kernel::probes::Attempt {
                    method: "fexit".into(),
                    target: "filemap_read".into(),
                    kind,
                    error: "whatever the loader said".into(),
                })
                .collect();
        };
        set(&mut r, &[AttachFailure::Absent, AttachFailure::Absent]);
        assert!(matches!(
            site_source(r.get(HookId::FileRead)).1,
            SiteValues::Zero
        ));
        set(
            &mut r,
            &[AttachFailure::NotPermitted, AttachFailure::Absent],
        );
        assert!(matches!(
            site_source(r.get(HookId::FileRead)).1,
            SiteValues::Derived(_)
        ));
    }
}
