//! `zc-trace probes` on the running kernel (needs root): every hook of the plan is reported,
//! with the method that attached or the errors of every method tried.

use crate::common::{bpf_available, zc_trace};

#[test]
fn probes_json_reports_every_hook_with_a_method_or_the_reasons() {
    if !bpf_available("probes_json_reports_every_hook_with_a_method_or_the_reasons") {
        return;
    }
    let out = zc_trace(&["probes", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["schema"], 1);
    let probes = v["probes"].as_array().unwrap();
    let hooks: Vec<&str> = probes.iter().map(|p| p["hook"].as_str().unwrap()).collect();
    // The plan's order: the order data flows (file side, pipes, socket side, device,
    // receiver), then trace mode's task family.
    assert_eq!(
        hooks,
        [
            "syscall_enter",
            "syscall_exit",
            "fault_user_mode",
            "fault_kernel_mode",
            "context_switch",
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
            "nic_linearize",
            "sock_recv",
            "device_io",
            "nic_transmit",
            "task_new",
            "task_exit",
            "task_exec",
            "io_uring_submit",
        ]
    );
    for p in probes {
        if p["method"].is_null() {
            // Not observable: every candidate must have been tried and must say why it failed,
            // with a kind the report can act on.
            let failed = p["failed"].as_array().unwrap();
            assert!(
                !failed.is_empty()
                    && failed.iter().all(|f| {
                        f["error"].as_str().is_some_and(|e| !e.is_empty())
                            && f["kind"].as_str().is_some_and(|k| {
                                [
                                    "absent",
                                    "in_module",
                                    "btf_missing",
                                    "not_permitted",
                                    "method_unavailable",
                                    "verifier_refused",
                                    "skipped",
                                    "other",
                                ]
                                .contains(&k)
                            })
                    }),
                "{p:#}"
            );
        } else {
            assert!(p["target"].is_string(), "{p:#}");
        }
    }
    // The syscall hooks are required: zc-trace refuses to run without them.
    assert_eq!(probes[0]["method"], "tracepoint");
    assert_eq!(probes[0]["target"], "raw_syscalls:sys_enter");
}

#[test]
fn probes_table_names_methods() {
    if !bpf_available("probes_table_names_methods") {
        return;
    }
    let out = zc_trace(&["probes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("raw_syscalls:sys_enter") && text.contains("tracepoint"),
        "{text}"
    );
}
