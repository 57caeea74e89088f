//! Verdicts on the textbook claims, and the exit status that lets labs grade with zc-trace
//! (needs root: the verdicts are about real measurements).

use crate::common::{bpf_available, zc_trace};
use serde_json::Value;

fn verdict<'a>(report: &'a Value, strategy: &str, figure: &str, when: Option<&str>) -> &'a Value {
    report["claims"]["verdicts"]
        .as_array()
        .expect("claims.verdicts")
        .iter()
        .find(|v| v["strategy"] == strategy && v["figure"] == figure && v["when"].as_str() == when)
        .unwrap_or_else(|| panic!("no verdict for {strategy} {figure} {when:?}"))
}

/// `zc-trace run --format json --size 1M --chunk 64K EXTRA...`.
fn run(extra: &[&str]) -> (Option<i32>, Value) {
    run_with(&[&["--size", "1M", "--chunk", "64K"], extra].concat())
}

/// `zc-trace run --format json ARGS...`: exit status and report.
fn run_with(run_args: &[&str]) -> (Option<i32>, Value) {
    let args = [&["run", "--format", "json"], run_args].concat();
    let out = zc_trace(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

#[test]
fn seed_claims_get_verdicts_with_evidence_and_a_differing_one_fails_the_run() {
    if !bpf_available("seed_claims_get_verdicts_with_evidence_and_a_differing_one_fails_the_run") {
        return;
    }
    let (code, r) = run(&[]);
    assert_eq!(
        code,
        Some(1),
        "splice's 2 transitions per call differ: exit 1"
    );

    let v = verdict(&r, "read-write", "transitions_per_call", None);
    assert_eq!(v["verdict"], "holds", "{v:#}");
    // 16 chunks: 16 reads + 16 writes = 64 transitions; the EOF read moved nothing.
    assert_eq!(v["observed"].as_f64(), Some(64.0 / 16.0));
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("read x1 + write x1"), "{v:#}");
    assert!(reason.contains("read x1 returned 0 (end of file)"), "{v:#}");

    let v = verdict(&r, "read-write", "cpu_copies", None);
    assert_eq!(
        (v["verdict"].as_str(), v["observed"].as_f64()),
        (Some("holds"), Some(2.0)),
        "{v:#}"
    );
    let v = verdict(&r, "mmap-write", "cpu_copies", None);
    assert_eq!(
        (v["verdict"].as_str(), v["observed"].as_f64()),
        (Some("holds"), Some(1.0)),
        "{v:#}"
    );
    let v = verdict(&r, "sendfile", "cpu_copies", Some("sg"));
    assert_eq!(
        (v["verdict"].as_str(), v["observed"].as_f64()),
        (Some("holds"), Some(0.0)),
        "{v:#}"
    );
    assert!(
        v["reason"].as_str().unwrap().contains("by reference at"),
        "{v:#}"
    );

    let v = verdict(&r, "splice", "transitions_per_call", None);
    assert_eq!(v["verdict"], "differs", "{v:#}");
    assert_eq!(v["observed"].as_f64(), Some(4.0));
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("file -> pipe, then pipe -> socket"),
        "{v:#}"
    );

    // Not observable, with the reason, never guessed.
    let v = verdict(&r, "sendfile", "cpu_copies", Some("no-sg"));
    assert_eq!(v["verdict"], "not_observable");
    assert!(v["observed"].is_null() && v["reason"].as_str().unwrap().contains("scatter-gather"));
    let v = verdict(&r, "read-write", "dma_copies", None);
    assert_eq!(v["verdict"], "not_observable");
    assert!(
        v["quote"].as_str().unwrap().contains("DMA"),
        "the source's words are kept"
    );
}

/// One chunk: the EOF read used to count as a per-chunk call ("read x2 + write x1": 6, DIFFERS).
#[test]
fn a_single_chunk_is_graded_on_the_calls_that_moved_it() {
    if !bpf_available("a_single_chunk_is_graded_on_the_calls_that_moved_it") {
        return;
    }
    let (code, r) = run_with(&[
        "--size",
        "64K",
        "--chunk",
        "64K",
        "--strategies",
        "read-write,sendfile",
    ]);
    assert_eq!(code, Some(0), "{r:#}");
    for (strategy, transitions) in [("read-write", 4.0), ("sendfile", 2.0)] {
        let v = verdict(&r, strategy, "transitions_per_call", None);
        assert_eq!(v["verdict"], "holds", "{v:#}");
        assert_eq!(v["observed"].as_f64(), Some(transitions), "{v:#}");
    }
}

/// A pipe sink takes 64 KiB per sendfile call: two calls per 128 KiB chunk, and the verdict
/// says why instead of a bare DIFFERS.
#[test]
fn more_calls_than_chunks_are_explained() {
    if !bpf_available("more_calls_than_chunks_are_explained") {
        return;
    }
    let (_, r) = run_with(&[
        "--size",
        "1M",
        "--sink",
        "pipe",
        "--chunk",
        "128K",
        "--strategies",
        "sendfile",
        "--no-fail",
    ]);
    let v = verdict(&r, "sendfile", "transitions_per_call", None);
    assert_eq!(
        (v["verdict"].as_str(), v["observed"].as_f64()),
        (Some("differs"), Some(4.0)),
        "{v:#}"
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("sendfile moved 64 KiB per call on average, less than the 128 KiB chunk"),
        "{v:#}"
    );
}

#[test]
fn no_fail_keeps_the_verdicts_and_exits_zero() {
    if !bpf_available("no_fail_keeps_the_verdicts_and_exits_zero") {
        return;
    }
    let (code, r) = run(&["--no-fail", "--strategies", "splice"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        verdict(&r, "splice", "transitions_per_call", None)["verdict"],
        "differs"
    );
    // Only the strategies that ran are judged.
    assert!(r["claims"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["strategy"] == "splice"));
}

#[test]
fn a_course_claims_file_is_graded_instead_of_the_seed() {
    if !bpf_available("a_course_claims_file_is_graded_instead_of_the_seed") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("zc-trace-claims-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let holds = dir.join("holds.toml");
    std::fs::write(
        &holds,
        "format = 1\nsource = \"course notes\"\n\
         [[claim]]\nstrategy = \"splice\"\nfigure = \"transitions_per_call\"\nvalue = 4\n\
         [[claim]]\nstrategy = \"sendfile\"\nfigure = \"cpu_copies\"\nvalue = 0\n",
    )
    .unwrap();
    let (code, r) = run(&[
        "--claims",
        holds.to_str().unwrap(),
        "--strategies",
        "splice,sendfile",
    ]);
    assert_eq!(code, Some(0), "every claim holds: exit 0");
    assert_eq!(r["claims"]["source"], "course notes");
    assert_eq!(r["claims"]["verdicts"].as_array().unwrap().len(), 2);

    let wrong = dir.join("wrong.toml");
    std::fs::write(
        &wrong,
        "format = 1\nsource = \"wrong notes\"\n\
         [[claim]]\nstrategy = \"sendfile\"\nfigure = \"cpu_copies\"\nvalue = 1\n",
    )
    .unwrap();
    let (code, r) = run(&[
        "--claims",
        wrong.to_str().unwrap(),
        "--strategies",
        "sendfile",
    ]);
    assert_eq!(code, Some(1));
    let v = verdict(&r, "sendfile", "cpu_copies", None);
    assert_eq!(
        (v["verdict"].as_str(), v["observed"].as_f64()),
        (Some("differs"), Some(0.0))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
