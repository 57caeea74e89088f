//! Every sink on the running kernel (needs root): where the copies happen depends on what the
//! payload is sent to, and the counts stay exact. S = payload bytes.

use crate::common;

use crate::common::{bpf_available, figure, run_json, strategy};
use serde_json::Value;

const S: f64 = (1 << 20) as f64;

fn run(sink: &[&str]) -> Value {
    let mut args = vec![
        "run",
        "--format",
        "json",
        "--size",
        "1M",
        "--chunk",
        "64K",
        "--strategies",
        "read-write,sendfile,splice",
    ];
    args.extend_from_slice(sink);
    run_json(&args)
}

fn copies(s: &Value) -> [f64; 4] {
    [
        figure(s, "copied_user_to_kernel_bytes"),
        figure(s, "copied_kernel_to_user_bytes"),
        figure(s, "copied_kernel_to_kernel_bytes"),
        figure(s, "by_reference_bytes"),
    ]
}

#[test]
fn pipe_sink_copies_into_the_pipe_and_the_receiver_copies_out() {
    if !bpf_available("pipe_sink_copies_into_the_pipe_and_the_receiver_copies_out") {
        return;
    }
    let r = run(&["--sink", "pipe"]);
    assert_eq!(r["config"]["sink"], "pipe");
    let rw = strategy(&r, "read-write");
    assert_eq!(
        copies(rw),
        [S, S, 0.0, 0.0],
        "read(): page cache -> user, write(): user -> pipe"
    );
    for id in ["sendfile", "splice"] {
        assert_eq!(
            figure(strategy(&r, id), "cpu_copied_bytes"),
            0.0,
            "{id}: pages move into the pipe by reference"
        );
    }
    for id in ["read-write", "sendfile", "splice"] {
        assert_eq!(
            figure(strategy(&r, id), "receiver_copied_bytes"),
            S,
            "{id}: the reader's read() copies out"
        );
    }
}

#[test]
fn file_sink_copies_into_the_page_cache_and_has_no_receiver() {
    if !bpf_available("file_sink_copies_into_the_page_cache_and_has_no_receiver") {
        return;
    }
    let r = run(&["--sink", "file"]);
    assert_eq!(copies(strategy(&r, "read-write")), [S, S, 0.0, 0.0]);
    // Spliced pages must still be copied into the target file's page cache.
    assert_eq!(copies(strategy(&r, "sendfile")), [0.0, 0.0, S, 0.0]);
    assert_eq!(copies(strategy(&r, "splice")), [0.0, 0.0, S, 0.0]);
    // No receiver: no receive copy, said as such (not "not observable", which reads as
    // "happened but unseen").
    let recv = &strategy(&r, "sendfile")["figures"]["receiver_copied_bytes"];
    assert!(
        recv["value"]["median"] == 0
            && recv["provenance"]["kind"] == "derived"
            && recv["provenance"]["from"]
                .as_str()
                .is_some_and(|f| f.contains("no receiver")),
        "{recv:#}"
    );
}

#[test]
fn dev_null_sink_costs_only_the_read_copy() {
    if !bpf_available("dev_null_sink_costs_only_the_read_copy") {
        return;
    }
    let r = run(&["--sink", "null"]);
    assert_eq!(copies(strategy(&r, "read-write")), [0.0, S, 0.0, 0.0]);
    assert_eq!(figure(strategy(&r, "sendfile"), "cpu_copied_bytes"), 0.0);
}

#[test]
fn unix_sink_receiver_copies_everything() {
    if !bpf_available("unix_sink_receiver_copies_everything") {
        return;
    }
    let r = run(&["--sink", "unix"]);
    for id in ["read-write", "sendfile", "splice"] {
        let s = strategy(&r, id);
        assert_eq!(figure(s, "receiver_copied_bytes"), S, "{id}");
        // The UNIX send site needs fexit or kprobes; where it has neither the copy totals must
        // say so rather than print a partial sum.
        let cpu = &s["figures"]["cpu_copied_bytes"];
        if cpu["value"].is_null() {
            assert!(
                cpu["provenance"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("unix_stream_sendmsg"),
                "{cpu:#}"
            );
        } else {
            let expected = if id == "read-write" { 2.0 * S } else { 0.0 };
            assert_eq!(cpu["value"]["median"].as_f64(), Some(expected), "{id}");
        }
    }
}

#[test]
fn receiver_modes_decide_whether_the_receiver_copies() {
    if !bpf_available("receiver_modes_decide_whether_the_receiver_copies") {
        return;
    }
    for mode in ["discard", "splice"] {
        let r = run(&["--receiver", mode]);
        for id in ["read-write", "sendfile"] {
            assert_eq!(
                figure(strategy(&r, id), "receiver_copied_bytes"),
                0.0,
                "--receiver {mode}, {id}"
            );
        }
    }
}

/// The article's SG-DMA pair, measured: with scatter-gather, sendfile's pages go to the
/// device by reference; without it, segmentation copies every byte once.
#[test]
fn veth_without_scatter_gather_adds_one_copy_of_every_byte() {
    if !bpf_available("veth_without_scatter_gather_adds_one_copy_of_every_byte") {
        return;
    }
    let with = run(&["--sink", "veth"]);
    assert_eq!(with["config"]["sink_scatter_gather"], true);
    assert_eq!(copies(strategy(&with, "sendfile")), [0.0, 0.0, 0.0, S]);
    assert_eq!(copies(strategy(&with, "read-write")), [S, S, 0.0, 0.0]);

    let without = run(&["--sink", "veth", "--no-sg"]);
    assert_eq!(without["config"]["sink_scatter_gather"], false);
    // Every byte sent is copied at segmentation, and every byte TCP sends again is copied
    // again: the nic_linearize leg's retransmitted bytes (tcp_info), mostly 0.
    let retransmitted = |id: &str| {
        strategy(&without, id)["ledger"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["leg"] == "nic_linearize")
            .map_or(0.0, |l| {
                l["retransmitted_bytes"]["median"].as_f64().unwrap_or(0.0)
            })
    };
    let (rs, rw) = (retransmitted("sendfile"), retransmitted("read-write"));
    assert_eq!(
        copies(strategy(&without, "sendfile")),
        [0.0, 0.0, S + rs, S],
        "sendfile without SG-DMA: one CPU copy"
    );
    assert_eq!(
        copies(strategy(&without, "read-write")),
        [S, S, S + rw, 0.0]
    );
    let nic = strategy(&without, "sendfile")["copy_sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["site"] == "nic_linearize")
        .cloned()
        .unwrap();
    assert_eq!(
        nic["bytes"]["kernel_to_kernel"]["median"].as_f64(),
        Some(S + rs),
        "{nic:#}"
    );

    // The claims about sendfile without SG now have evidence; those with SG are not observable.
    let verdict = |r: &Value, when: &str| {
        r["claims"]["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| {
                v["strategy"] == "sendfile" && v["figure"] == "cpu_copies" && v["when"] == when
            })
            .cloned()
            .unwrap()
    };
    let v = verdict(&without, "no-sg");
    let per_byte = ((S + rs) / S * 1000.0).round() / 1000.0;
    assert_eq!(
        (v["verdict"].as_str(), v["observed"].as_f64()),
        (Some("holds"), Some(per_byte)),
        "{v:#}"
    );
    assert_eq!(verdict(&without, "sg")["verdict"], "not_observable");
    assert_eq!(verdict(&with, "sg")["verdict"], "holds");

    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("zc-trace-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "network namespaces left behind: {left:?}");
}

/// A receiver that reads slowly through a small receive buffer (4 KiB per millisecond):
/// the sender's report says the receiver was the bottleneck, from the connection's own
/// tcp_info, in the JSON, in the throughput figure's provenance and as a warning in the table.
/// A run used to report such a pace as sendfile's own, without a word.
#[test]
fn a_slow_receiver_is_named_as_the_bottleneck() {
    if !bpf_available("a_slow_receiver_is_named_as_the_bottleneck") {
        return;
    }
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::RcvBuf, &8192).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 4096];
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    });
    let sink = format!("tcp:127.0.0.1:{port}");
    let args = [
        "run",
        "--size",
        "2M",
        "--strategies",
        "sendfile",
        "--iterations",
        "1",
        "--sink",
        &sink,
    ];
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let r = run_json(&json_args);
    let s = strategy(&r, "sendfile");
    let share = s["receiver_window_limited"]["median"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!(share >= 0.5, "{}", s["receiver_window_limited"]);
    let from = s["figures"]["throughput_bytes_per_sec"]["provenance"]["from"]
        .as_str()
        .unwrap();
    assert!(from.contains("the receiver set this pace"), "{from}");
    let mut table_args = args.to_vec();
    table_args.push("--no-fail");
    let out = common::zc_trace(&table_args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("the receiver was the bottleneck"),
        "no warning in the table:\n{text}"
    );
}
