//! The strategies beyond the four classic ones, on the running kernel (needs root): exact
//! syscall counts and copies over loopback TCP. S = payload, N = chunks.

use crate::common;

use crate::common::{bpf_available, figure, run_json, strategy, syscall_count};

const S: u64 = (1 << 20) + 1000;
const C: u64 = 64 * 1024;
const N: f64 = S.div_ceil(C) as f64;

#[test]
fn page_reference_strategies_copy_nothing() {
    if !bpf_available("page_reference_strategies_copy_nothing") {
        return;
    }
    let r = run_json(&[
        "run",
        "--format",
        "json",
        "--size",
        &S.to_string(),
        "--chunk",
        &C.to_string(),
        "--strategies",
        "vmsplice,tee",
    ]);
    let v = strategy(&r, "vmsplice");
    assert_eq!(
        (syscall_count(v, "vmsplice"), syscall_count(v, "splice")),
        (N, N)
    );
    assert_eq!(
        (syscall_count(v, "mmap"), syscall_count(v, "munmap")),
        (1.0, 1.0)
    );
    let t = strategy(&r, "tee");
    assert_eq!(
        (syscall_count(t, "tee"), syscall_count(t, "splice")),
        (N, 3.0 * N),
        "tee: file->A, A->sink, B->null"
    );
    for s in [v, t] {
        assert_eq!(figure(s, "cpu_copied_bytes"), 0.0, "{}", s["id"]);
        assert_eq!(figure(s, "by_reference_bytes"), S as f64, "{}", s["id"]);
        assert_eq!(figure(s, "receiver_copied_bytes"), S as f64, "{}", s["id"]);
    }
}

#[test]
fn odirect_skips_the_page_cache_copy() {
    if !bpf_available("odirect_skips_the_page_cache_copy") {
        return;
    }
    let r = run_json(&[
        "run",
        "--format",
        "json",
        "--size",
        &S.to_string(),
        "--chunk",
        &C.to_string(),
        "--strategies",
        "odirect",
    ]);
    if let Some(skip) = r["config"]["skipped"].as_array().unwrap().first() {
        // Only where the filesystem refuses O_DIRECT (tmpfs); /var/tmp here is ext4.
        panic!("odirect was skipped: {skip}");
    }
    let o = strategy(&r, "odirect");
    assert_eq!(syscall_count(o, "read"), N + 1.0);
    assert_eq!(
        figure(o, "copied_kernel_to_user_bytes"),
        0.0,
        "the device fills the user buffer"
    );
    assert_eq!(figure(o, "copied_user_to_kernel_bytes"), S as f64);
}

#[test]
fn file_to_file_strategies_write_their_own_file() {
    if !bpf_available("file_to_file_strategies_write_their_own_file") {
        return;
    }
    let r = run_json(&[
        "run",
        "--format",
        "json",
        "--size",
        &S.to_string(),
        "--chunk",
        &C.to_string(),
        "--strategies",
        "copy-file-range,sendfile-file",
    ]);
    let cfr = strategy(&r, "copy-file-range");
    assert_eq!(cfr["sink"], "file");
    assert_eq!(syscall_count(cfr, "copy_file_range"), N);
    // copy or reflink: only a hook inside the filesystem write path can tell.
    let cpu = &cfr["figures"]["cpu_copied_bytes"];
    if cpu["value"].is_null() {
        assert!(
            cpu["provenance"]["reason"]
                .as_str()
                .unwrap()
                .contains("reflink"),
            "{cpu:#}"
        );
    }
    let sf = strategy(&r, "sendfile-file");
    assert_eq!(sf["sink"], "file");
    assert_eq!(syscall_count(sf, "sendfile"), N);
    assert_eq!(
        figure(sf, "copied_kernel_to_kernel_bytes"),
        S as f64,
        "spliced pages copied into the target's page cache"
    );
    assert_eq!(figure(sf, "cpu_copied_bytes"), S as f64);
}

#[test]
fn an_incompatible_sink_is_a_usage_error_or_a_skip() {
    if !bpf_available("an_incompatible_sink_is_a_usage_error_or_a_skip") {
        return;
    }
    let out = common::zc_trace(&[
        "run",
        "--size",
        "4K",
        "--sink",
        "pipe",
        "--receiver",
        "discard",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a TCP sink"));
}

/// MSG_ZEROCOPY and io_uring SEND_ZC over loopback: the pages are pinned on send (by reference
/// at tcp_sendmsg_locked) and copied on local delivery, which the kernel reports itself.
#[test]
fn zero_copy_sends_are_pinned_then_copied_on_loopback_delivery() {
    if !bpf_available("zero_copy_sends_are_pinned_then_copied_on_loopback_delivery") {
        return;
    }
    let r = run_json(&[
        "run",
        "--format",
        "json",
        "--size",
        &S.to_string(),
        "--chunk",
        &C.to_string(),
        "--strategies",
        "msg-zerocopy,io-uring-send-zc",
    ]);
    let skipped: Vec<&str> = r["config"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["strategy"].as_str().unwrap())
        .collect();
    assert!(
        !skipped.contains(&"msg-zerocopy"),
        "MSG_ZEROCOPY works on every 6.x kernel: {:#}",
        r["config"]["skipped"]
    );
    for id in ["msg-zerocopy", "io-uring-send-zc"] {
        if skipped.contains(&id) {
            eprintln!("{id} skipped here: {:#}", r["config"]["skipped"]);
            continue;
        }
        let s = strategy(&r, id);
        assert_eq!(
            figure(s, "by_reference_bytes"),
            S as f64,
            "{id}: pinned user pages on send"
        );
        assert_eq!(figure(s, "copied_user_to_kernel_bytes"), 0.0, "{id}");
        let site = s["copy_sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["site"] == "zerocopy_completion")
            .unwrap_or_else(|| panic!("{id}: no zerocopy_completion site"));
        assert_eq!(
            site["bytes"]["kernel_to_kernel"]["median"].as_f64(),
            Some(S as f64),
            "{site:#}"
        );
        assert_eq!(
            figure(s, "cpu_copied_bytes"),
            S as f64,
            "{id}: one copy, on delivery"
        );
    }
    assert_eq!(syscall_count(strategy(&r, "msg-zerocopy"), "sendto"), N);
}

/// A strategy the host refuses is left out with its reason, and the next strategy on the same
/// sink is measured normally (the refused run's connection is closed, not left for it).
#[test]
fn a_refused_strategy_is_skipped_and_the_next_one_still_runs() {
    if !bpf_available("a_refused_strategy_is_skipped_and_the_next_one_still_runs") {
        return;
    }
    let r = run_json(&[
        "run",
        "--format",
        "json",
        "--size",
        "300000",
        "--chunk",
        "100000",
        "--strategies",
        "odirect,read-write",
    ]);
    let skipped = &r["config"]["skipped"][0];
    assert_eq!(skipped["strategy"], "odirect");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("multiple of 4096"),
        "{skipped:#}"
    );
    assert_eq!(syscall_count(strategy(&r, "read-write"), "read"), 4.0);
    assert_eq!(r["strategies"].as_array().unwrap().len(), 1);
}
