//! `zc-trace probes` on the running kernel (needs root): every hook of the plan is reported,
//! with the method that attached or the errors of every method tried.

mod common;

use common::{bpf_available, zc_trace};

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
    assert_eq!(
        hooks,
        [
            "syscall_enter",
            "syscall_exit",
            "fault_user_mode",
            "fault_kernel_mode",
            "context_switch",
            "tcp_send",
            "tcp_sendpage",
            "file_read",
            "file_splice_read",
            "sock_recv",
            "pipe_write",
            "pipe_read",
            "file_write",
            "nic_linearize",
            "device_io",
            "unix_send"
        ]
    );
    for p in probes {
        if p["method"].is_null() {
            // Not observable: every candidate must have been tried and must say why it failed.
            let failed = p["failed"].as_array().unwrap();
            assert!(
                !failed.is_empty()
                    && failed
                        .iter()
                        .all(|f| f["error"].as_str().is_some_and(|e| !e.is_empty())),
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

/// The host is the matrix's third column: its entry in tests/data/kernel-matrix.toml says which
/// attach method each hook must use here and which plan functions are absent on purpose.
#[test]
fn host_matches_its_kernel_matrix_entry() {
    if !bpf_available("host_matches_its_kernel_matrix_entry") {
        return;
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/kernel-matrix.toml"
    ))
    .expect("kernel-matrix.toml");
    let matrix: toml::Table = text.parse().expect("kernel-matrix.toml parses");
    let release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    let entry = matrix["kernel"].as_array().unwrap().iter().find(|k| {
        k.get("release_prefix")
            .and_then(|p| p.as_str())
            .is_some_and(|p| release.starts_with(p))
    });
    let Some(entry) = entry else {
        let msg = format!("no kernel-matrix.toml entry has a release_prefix matching {release}");
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{msg}");
        eprintln!("skipping: {msg}");
        return;
    };

    let out = zc_trace(&["probes", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut problems = Vec::new();
    for (hook, expected) in entry["methods"].as_table().unwrap() {
        let p = v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["hook"] == hook.as_str())
            .unwrap_or_else(|| panic!("hook {hook} missing from probes"));
        let got = p["method"].as_str().unwrap_or("none");
        if got != expected.as_str().unwrap() {
            problems.push(format!(
                "hook {hook}: expected {expected}, got {got} (failed: {})",
                p["failed"]
            ));
        }
    }
    let absent = entry["absent_functions"].as_table().unwrap();
    for f in v["functions"].as_array().unwrap() {
        let name = f["function"].as_str().unwrap();
        match f["in_btf"].as_bool() {
            None => problems.push(format!("{name}: the host has no BTF to check against")),
            Some(false) if !absent.contains_key(name) => problems.push(format!(
                "{name} ({}) is missing from this kernel and not listed as absent on purpose",
                f["hooks"]
            )),
            Some(true) if absent.contains_key(name) => problems.push(format!(
                "{name} is listed as absent but exists (stale entry)"
            )),
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "host kernel {release}:\n{}",
        problems.join("\n")
    );
}
