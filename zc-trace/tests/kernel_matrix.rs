//! The kernel matrix on the running kernel (needs root): the exact table, the syscall formulas,
//! the attach methods and the function guard of `tests/data/kernel-matrix.toml`, over loopback
//! TCP and over the veth sink with and without scatter-gather.
//!
//! The same binary runs on the host (its entry matched by `uname -r`) and, built static, inside
//! each VM of `cargo xtask vm-test` (the entry named by `ZC_TRACE_KERNEL`). Outside CI a host
//! without an entry skips, saying why; with CI=true that fails.

mod common;

use common::matrix::{self, check_probes, check_run};
use common::{bpf_available, run_json, zc_trace};

/// Not a multiple of the chunk would also do; 1 MiB in 64 KiB chunks keeps a TCG guest fast.
const SIZE: u64 = 1 << 20;
const CHUNK: u64 = 64 << 10;

/// The running kernel's entry, or `None` when the test should skip (outside CI).
fn entry(test: &str) -> Option<toml::Table> {
    if !bpf_available(test) {
        return None;
    }
    match matrix::entry(&matrix::matrix()) {
        Ok(e) => Some(e),
        Err(msg) => {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{msg}");
            eprintln!("skipping {test}: {msg}");
            None
        }
    }
}

/// The arguments of a `zc-trace run` of every strategy of the exact table into `sink`, as JSON.
fn table_run_args(m: &toml::Table, sink: &str) -> Vec<String> {
    [
        "run",
        "--format",
        "json",
        "--size",
        &SIZE.to_string(),
        "--chunk",
        &CHUNK.to_string(),
        "--strategies",
        &matrix::strategies(m).join(","),
        "--sink",
        sink,
    ]
    .map(String::from)
    .to_vec()
}

fn run_table_strategies(m: &toml::Table, sink: &str) -> serde_json::Value {
    let args = table_run_args(m, sink);
    run_json(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The table's strategies that report `doc` lacks, though the filesystem `fs` may not refuse
/// them.
fn missing_strategies(m: &toml::Table, doc: &serde_json::Value, fs: &str) -> Vec<String> {
    let ran: Vec<&str> = doc["strategies"]
        .as_array()
        .expect("strategies")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    let may_skip = matrix::may_skip(m, fs);
    matrix::strategies(m)
        .into_iter()
        .filter(|s| !ran.contains(&s.as_str()) && !may_skip.contains_key(s))
        .map(|s| {
            format!(
                "strategy {s} did not run on {fs}: {}",
                doc["config"]["skipped"]
            )
        })
        .collect()
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} difference(s) from the kernel matrix:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn every_strategy_matches_the_exact_table_and_its_syscall_formulas() {
    let Some(entry) = entry("every_strategy_matches_the_exact_table_and_its_syscall_formulas")
    else {
        return;
    };
    let m = matrix::matrix();
    let doc = run_table_strategies(&m, "tcp");
    let fs = matrix::payload_filesystem();
    let mut failures = missing_strategies(&m, &doc, &fs);
    failures.extend(check_run(&m, &entry, &fs, &doc, SIZE, CHUNK));
    report(failures);
}

/// The payload on a tmpfs the test mounts (`--tmpdir`): where /var/tmp is not tmpfs (the host;
/// guests boot once with it on tmpfs), the table with its [filesystem.tmpfs] overrides must
/// hold and every ledger leg balance, or be derived where no site can be hooked: tmpfs reads
/// bypass filemap_read, which made a wrong "observed" figure before the ledger existed.
#[test]
fn the_table_holds_with_the_payload_on_a_tmpfs() {
    let Some(entry) = entry("the_table_holds_with_the_payload_on_a_tmpfs") else {
        return;
    };
    if matrix::payload_filesystem() == "tmpfs" {
        eprintln!("/var/tmp is tmpfs here: every_strategy_matches_the_exact_table covers it");
        return;
    }
    let dir = std::env::temp_dir().join(format!("zc-trace-tmpfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // By the syscall, not the mount program: the guests have only what the test brings.
    nix::mount::mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64M"),
    )
    .unwrap_or_else(|e| panic!("mount a tmpfs on {}: {e}", dir.display()));
    let m = matrix::matrix();
    let mut args = table_run_args(&m, "tcp");
    args.extend(["--tmpdir".to_string(), dir.display().to_string()]);
    let out = common::zc_trace(
        &[
            args.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["--no-fail"],
        ]
        .concat(),
    );
    let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["config"]["source_fs"], "tmpfs", "{:#}", doc["config"]);
    let mut failures = missing_strategies(&m, &doc, "tmpfs");
    failures.extend(check_run(&m, &entry, "tmpfs", &doc, SIZE, CHUNK));
    report(failures);
}

/// Every sink: each leg of the byte ledger balances, so no figure labelled observed is short.
#[test]
fn every_ledger_leg_balances_on_every_sink() {
    let Some(entry) = entry("every_ledger_leg_balances_on_every_sink") else {
        return;
    };
    let m = matrix::matrix();
    let fs = matrix::payload_filesystem();
    let mut failures = Vec::new();
    for sink in ["unix", "pipe", "file"] {
        let doc = run_table_strategies(&m, sink);
        assert!(
            !doc["strategies"].as_array().expect("strategies").is_empty(),
            "{sink}: nothing ran: {doc:#}"
        );
        failures.extend(matrix::ledger_failures(&m, &entry, &fs, &doc));
    }
    report(failures);
}

/// The veth sink, with scatter-gather and without (`--no-sg`): zc-trace makes the namespaces
/// and the veth pair itself, so this runs in the guests too (their busybox has no `ip netns`;
/// they load the veth module). With SG the whole exact table holds, as over loopback; without,
/// the table with `[sink.veth-no-sg]`'s overrides (the copy at transmit, exact: skb_segment and
/// __pskb_pull_tail) and every ledger leg, nic_linearize included; the report must say which
/// route it had. Where /var/tmp is ext4: the VM matrix checks it once per
/// kernel.
#[test]
fn the_veth_sink_matches_the_table_with_and_without_scatter_gather() {
    let Some(entry) = entry("the_veth_sink_matches_the_table_with_and_without_scatter_gather")
    else {
        return;
    };
    let m = matrix::matrix();
    let fs = matrix::payload_filesystem();
    if fs != "ext4" {
        // About 10 s of a TCG guest per boot: the sink does not depend on the payload's
        // filesystem, which the loopback table checks on every one.
        eprintln!("the veth sink is checked where /var/tmp is ext4 (here {fs})");
        return;
    }
    let mut failures = Vec::new();
    for sg in [true, false] {
        let mut args = table_run_args(&m, "veth");
        if !sg {
            args.push("--no-sg".into());
        }
        let doc = run_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
        if doc["config"]["sink_scatter_gather"] != sg {
            failures.push(format!(
                "veth (sg {sg}): the report says scatter-gather {}",
                doc["config"]["sink_scatter_gather"]
            ));
        }
        failures.extend(
            missing_strategies(&m, &doc, &fs)
                .into_iter()
                .map(|f| format!("veth (sg {sg}): {f}")),
        );
        failures.extend(
            check_run(&m, &entry, &fs, &doc, SIZE, CHUNK)
                .into_iter()
                .map(|f| format!("veth (sg {sg}): {f}")),
        );
    }
    report(failures);
}

#[test]
fn every_hook_attaches_as_expected_and_every_function_is_accounted_for() {
    let Some(entry) = entry("every_hook_attaches_as_expected_and_every_function_is_accounted_for")
    else {
        return;
    };
    let out = zc_trace(&["probes", "--json"]);
    assert!(
        out.status.success(),
        "zc-trace probes --json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("probes JSON");
    report(check_probes(&entry, &matrix::payload_filesystem(), &doc));
}

/// The kprobe half of every attach chain: with fexit and fentry left out, each hook the
/// kernel attaches by either must attach by kprobe (+kretprobe) instead, and the exact table
/// and the ledger must come out the same. Kernels without such hooks (the host) have nothing
/// to check.
#[test]
fn kprobes_stand_in_for_fexit_with_the_same_figures() {
    let Some(entry) = entry("kprobes_stand_in_for_fexit_with_the_same_figures") else {
        return;
    };
    let fexit_hooks: Vec<String> = entry
        .get("methods")
        .and_then(|m| m.as_table())
        .into_iter()
        .flatten()
        .filter(|(_, m)| matches!(m.as_str(), Some("fexit" | "fentry")))
        .map(|(h, _)| h.clone())
        .collect();
    if fexit_hooks.is_empty() {
        eprintln!("no hook attaches by fexit on this kernel: nothing to stand in for");
        return;
    }
    let m = matrix::matrix();
    let fs = matrix::payload_filesystem();
    // Only this test's own zc-trace processes see the variable.
    let with_kprobes = |args: &[&str]| {
        let out = std::process::Command::new(common::bin())
            .args(args)
            .env("ZC_TRACE_SKIP_METHODS", "fexit,fentry")
            .output()
            .expect("run zc-trace");
        assert!(
            out.status.success(),
            "zc-trace {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let probes = with_kprobes(&["probes", "--json"]);
    let mut failures = Vec::new();
    for hook in &fexit_hooks {
        let p = probes["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["hook"] == hook.as_str())
            .unwrap_or_else(|| panic!("hook {hook} missing"));
        if p["method"] != "kprobe" && p["method"] != "kretprobe" {
            failures.push(format!(
                "{hook}: without fexit and fentry it attached by {} (failed: {})",
                p["method"], p["failed"]
            ));
        }
    }
    let mut args = table_run_args(&m, "tcp");
    args.push("--no-fail".into());
    let doc = with_kprobes(&args.iter().map(String::as_str).collect::<Vec<_>>());
    failures.extend(check_run(&m, &entry, &fs, &doc, SIZE, CHUNK));
    report(failures);
}

/// The checks themselves: a wrong figure, a wrong method, an unlisted absent function and a
/// stale entry are each found (so the tests above cannot pass vacuously).
/// `zc-trace trace` of small programs, one per strategy: on this kernel's attach methods
/// (fexit in the guests), the file's bytes exactly where each strategy puts them.
#[test]
fn traced_programs_show_their_exact_figures() {
    if entry("traced_programs_show_their_exact_figures").is_none() {
        return;
    }
    for e in common::trace::EXPECTED {
        common::trace::check_xfer(e);
    }
}

/// Task following on this kernel: exec from a thread other than the main one, the task
/// limit, and transitions equal to the kernel's own raw_syscalls events (signals, forks,
/// threads). The VM harness gives the program (ZC_TRACE_TASKS) on its ext4 boots only: the
/// file system plays no part here.
#[test]
fn traced_tasks_are_followed_through_exec_signals_and_forks() {
    if std::env::var_os("ZC_TRACE_KERNEL").is_some() && std::env::var_os("ZC_TRACE_TASKS").is_none()
    {
        eprintln!("no ZC_TRACE_TASKS in this guest: the VM harness runs this on its ext4 boots");
        return;
    }
    if entry("traced_tasks_are_followed_through_exec_signals_and_forks").is_none() {
        return;
    }
    common::trace::check_exec_from_a_thread();
    common::trace::check_task_limit();
    common::trace::check_transitions_against_ftrace();
}

/// The NIC pair the VM harness cables on its ext4 boots (ZC_TRACE_NICS=sender,receiver):
/// the receiver's port in a namespace of its own (`zc-trace receive --move-device`), the
/// sender on the other, payload read with --cold from the virtio disk. Every byte sent must be
/// handed to the device, with SG in page fragments (sendfile and splice: page-cache pages, no
/// CPU copy) and without SG in linear parts the CPU copied at segmentation; the article's DMA
/// claims get their verdicts. Where no pair is cabled (the host) there is nothing to check:
/// the harness makes sure the test passed in the guests that have one.
#[test]
fn a_nic_pair_reads_every_byte_by_dma_with_and_without_sg() {
    let Ok(pair) = std::env::var("ZC_TRACE_NICS") else {
        eprintln!("no NIC pair here: the VM harness cables one on its ext4 boots");
        return;
    };
    if entry("a_nic_pair_reads_every_byte_by_dma_with_and_without_sg").is_none() {
        return;
    }
    let (tx, rx) = pair.split_once(',').expect("ZC_TRACE_NICS=sender,receiver");
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["addr", "add", "10.77.0.1/24", "dev", tx]);
    ip(&["link", "set", tx, "up"]);
    let strategies = ["read-write", "mmap-write", "sendfile", "splice"];
    let mut receiver = std::process::Command::new(common::bin())
        .args([
            "receive",
            "--listen",
            "10.77.0.2:9000",
            "--move-device",
            rx,
            "--address",
            "10.77.0.2/24",
            "--count",
            &(2 * strategies.len() + 1).to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(receiver.stdout.take().unwrap()));
    for line in lines.by_ref() {
        if line.unwrap().contains("listening on") {
            break;
        }
    }
    let run = |no_sg: bool, strategies: &str| {
        let (size, chunk) = (SIZE.to_string(), CHUNK.to_string());
        let mut args = vec![
            "run",
            "--format",
            "json",
            "--cold",
            "--size",
            &size,
            "--chunk",
            &chunk,
            "--strategies",
            strategies,
            "--sink",
            "tcp:10.77.0.2:9000",
        ];
        if no_sg {
            args.push("--no-sg");
        }
        run_json(&args)
    };
    let mut failures = Vec::new();
    for no_sg in [false, true] {
        let doc = run(no_sg, &strategies.join(","));
        let case = if no_sg { "without SG" } else { "with SG" };
        let dev = &doc["config"]["sink_device"];
        assert_eq!(dev["name"], tx, "{dev}");
        assert_eq!(dev["dma"], true, "{dev}");
        assert_eq!(doc["config"]["sink_scatter_gather"], !no_sg, "{case}");
        for id in strategies {
            let s = common::strategy(&doc, id);
            let leg = s["ledger"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["leg"] == "nic_transmit")
                .unwrap_or_else(|| panic!("{case} {id}: no nic_transmit leg"));
            let moved = leg["moved_bytes"]["median"].as_f64().unwrap();
            let mut check = |what: &str, got: f64, want: f64| {
                if got != want {
                    failures.push(format!("{case} {id}: {what} is {got}, expected {want}"));
                }
            };
            check(
                "nic_transmit balance",
                (leg["balance"] == "balanced") as u8 as f64,
                1.0,
            );
            let linear = common::figure(s, "nic_transmit_linear_bytes");
            let frags = common::figure(s, "nic_transmit_frag_bytes");
            check("linear + fragments", linear + frags, moved);
            check(
                "device reads (--cold)",
                common::figure(s, "device_read_bytes"),
                SIZE as f64,
            );
            if no_sg {
                // Nothing in fragments: segmentation copied every byte into linear parts.
                check("fragments", frags, 0.0);
                let linearized = s["copy_sites"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["site"] == "nic_linearize")
                    .map_or(-1.0, |c| {
                        c["bytes"]["kernel_to_kernel"]["median"].as_f64().unwrap()
                    });
                check("nic_linearize kernel->kernel", linearized, moved);
            } else if matches!(id, "sendfile" | "splice") {
                check("fragments (page-cache pages)", frags, moved);
                // Every payload byte went by reference (the fragments above are exact). Now
                // and then (seen twice: 56 B, sendfile on 6.12, splice on 6.1) a few bytes
                // are copied at some site beside them; which site, and why, is not known
                // yet: the sites are printed to find out. Less than a page is not the payload
                // being copied.
                let copied = common::figure(s, "cpu_copied_bytes");
                if copied > 0.0 {
                    eprintln!(
                        "{case} {id}: {copied} B CPU-copied beside the fragments; copy sites: {}",
                        s["copy_sites"]
                    );
                }
                if copied >= 4096.0 {
                    failures.push(format!(
                        "{case} {id}: CPU copied is {copied}, expected under a page"
                    ));
                }
            }
        }
        // The article's DMA claims about these strategies, under this run's condition.
        let verdicts = doc["claims"]["verdicts"].as_array().unwrap();
        let dma: Vec<&serde_json::Value> = verdicts
            .iter()
            .filter(|v| v["figure"] == "dma_copies" || v["figure"] == "total_copies")
            // Without SG only the claims about that case apply (read+write's "2 CPU copies"
            // is about a NIC with SG, like most of the article's).
            .filter(|v| {
                if no_sg {
                    v["when"] == "no-sg"
                } else {
                    v["when"].is_null() || v["when"] == "sg"
                }
            })
            .collect();
        assert!(!dma.is_empty(), "{case}: no DMA claim graded");
        for v in dma {
            if v["verdict"] != "holds" {
                failures.push(format!("{case}: {v}"));
            }
        }
    }
    // Scatter-gather is on again after the --no-sg run.
    let after = run(false, "sendfile");
    assert_eq!(after["config"]["sink_scatter_gather"], true, "SG restored");
    assert!(receiver.wait().unwrap().success());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_checks_find_each_kind_of_difference() {
    use serde_json::json;
    let m = matrix::matrix();
    let entry: toml::Table = r#"
        name = "k"
        [methods]
        tcp_send = "fexit"
        [absent_functions]
        gone = "removed"
        [copies]
        "sendfile.by_reference_bytes" = { value = "not observable", reason = "why" }
    "#
    .parse()
    .unwrap();
    let fig = |v: Option<u64>| match v {
        Some(v) => json!({ "value": { "median": v }, "provenance": {} }),
        None => json!({ "value": null, "provenance": { "reason": "no hook" } }),
    };
    let n = SIZE.div_ceil(CHUNK);
    let doc = json!({ "strategies": [{
        "id": "sendfile",
        "syscalls_by_name": { "sendfile": { "count": { "median": n + 1 } } },
        "figures": {
            "copied_user_to_kernel_bytes": fig(Some(0)),
            "copied_kernel_to_user_bytes": fig(Some(0)),
            "copied_kernel_to_kernel_bytes": fig(Some(5)),
            "by_reference_bytes": fig(None),
            "cpu_copied_bytes": fig(Some(0)),
            "receiver_copied_bytes": fig(Some(SIZE)),
        }
    }]});
    let f = check_run(&m, &entry, "ext4", &doc, SIZE, CHUNK);
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(f[0].contains("sendfile calls 17, expected 16"), "{f:#?}");
    assert!(
        f[1].contains("copied_kernel_to_kernel_bytes is 5, expected 0"),
        "{f:#?}"
    );

    // Without scatter-gather ([sink.veth-no-sg]) the copy at transmit is asserted from its
    // overrides, and every leg must balance, nic_linearize included.
    let plain: toml::Table = "name = \"k\"".parse().unwrap();
    let no_sg = json!({
        "config": { "sink": "veth", "sink_scatter_gather": false },
        "strategies": [{
            "id": "sendfile",
            "sink": "veth",
            "syscalls_by_name": { "sendfile": { "count": { "median": n } } },
            "figures": {
                "copied_user_to_kernel_bytes": fig(Some(0)),
                "copied_kernel_to_user_bytes": fig(Some(0)),
                "copied_kernel_to_kernel_bytes": fig(Some(SIZE + 5)),
                "by_reference_bytes": fig(Some(0)),
                "cpu_copied_bytes": fig(Some(SIZE + 5)),
                "receiver_copied_bytes": fig(Some(SIZE)),
            },
            "ledger": [
                { "leg": "nic_linearize", "balance": "incomplete", "note": "short" },
            ]
        }]
    });
    let f = check_run(&m, &plain, "ext4", &no_sg, SIZE, CHUNK);
    assert_eq!(f.len(), 4, "{f:#?}");
    assert!(
        f[0].contains("by_reference_bytes is 0, expected 1048576"),
        "{f:#?}"
    );
    assert!(
        f[1].contains("copied_kernel_to_kernel_bytes is 1048581, expected 1048576")
            && f[1].contains("override: the copy at transmit"),
        "{f:#?}"
    );
    assert!(f[2].contains("cpu_copied_bytes is 1048581"), "{f:#?}");
    assert!(
        f[3].contains("ledger leg \"nic_linearize\" is incomplete"),
        "{f:#?}"
    );

    let probes = json!({
        "probes": [{ "hook": "tcp_send", "method": "kprobe", "target": "t", "failed": [] }],
        "functions": [
            { "function": "gone", "in_btf": true, "hooks": ["x"] },
            { "function": "missing", "in_btf": false, "hooks": ["y"] },
            { "function": "changed", "in_btf": true, "hooks": ["z"],
              "prototype_mismatch": "its prototype here is (ptr) -> int32" },
        ]
    });
    let f = check_probes(&entry, "ext4", &probes);
    assert_eq!(f.len(), 4, "{f:#?}");
    assert!(
        f[3].contains("function changed: its prototype here is (ptr) -> int32"),
        "{f:#?}"
    );
    assert!(
        f[0].contains("tcp_send: expected \"fexit\", got kprobe"),
        "{f:#?}"
    );
    assert!(f[1].contains("gone is listed as absent"), "{f:#?}");
    assert!(
        f[2].contains("function missing (for [\"y\"]) is missing"),
        "{f:#?}"
    );
}
