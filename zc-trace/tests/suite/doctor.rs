//! `zc-trace doctor` on this host: one screen of checks that fits 100 columns, its JSON form
//! agreeing with `zc-trace probes`, and, run as nobody, exit status 3 naming the missing
//! privileges.

use std::process::{Command, Output};

use crate::common::{bin, bpf_available, zc_trace};
use serde_json::Value;

const STATES: [&str; 4] = ["ok", "limited", "missing", "unknown"];
const CHECKS: [&str; 11] = [
    "kernel",
    "privileges",
    "tracefs",
    "btf",
    "kprobes",
    "fentry_fexit",
    "lockdown",
    "io_uring",
    "unprivileged_bpf",
    "perf_event_paranoid",
    "memlock",
];

fn assert_fits_100_columns(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} columns:\n{line}\nin:\n{text}",
            line.chars().count()
        );
    }
}

fn checks_by_name(v: &Value) -> Vec<(&str, &Value)> {
    v["checks"]
        .as_array()
        .expect("a list of checks")
        .iter()
        .map(|c| (c["name"].as_str().expect("a name"), c))
        .collect()
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    checks_by_name(v)
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no check {name}: {v:#}"))
        .1
}

#[test]
fn doctor_as_root_fits_100_columns_and_names_every_check() {
    if !bpf_available("doctor_as_root_fits_100_columns_and_names_every_check") {
        return;
    }
    let out = zc_trace(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{stderr}");
    assert_fits_100_columns(&text);
    for needle in [
        "privileges",
        "tracefs",
        "BTF",
        "kprobes",
        "fentry/fexit",
        "io_uring",
    ] {
        assert!(text.contains(needle), "doctor lacks {needle:?}:\n{text}");
    }
    // Every check line starts with its mark; a line that is not ok says how to fix it.
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let mark = line.split_whitespace().next().unwrap_or("");
        if matches!(mark, "limited" | "missing") {
            let next = lines[i + 1..]
                .iter()
                .take_while(|l| l.starts_with(' '))
                .any(|l| l.trim_start().starts_with("fix: "));
            assert!(next, "no fix for: {line}\n{text}");
        }
    }
    assert!(
        text.contains("probe plan: ") && text.contains("zc-trace works here: "),
        "{text}"
    );
}

#[test]
fn doctor_json_lists_checks_with_name_state_fix_and_agrees_with_probes() {
    if !bpf_available("doctor_json_lists_checks_with_name_state_fix_and_agrees_with_probes") {
        return;
    }
    let out = zc_trace(&["doctor", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["schema"], 1);
    assert_eq!(v["can_run"], true);
    let names: Vec<&str> = checks_by_name(&v).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, CHECKS);
    for (name, c) in checks_by_name(&v) {
        let state = c["state"].as_str().expect("a state");
        assert!(STATES.contains(&state), "{name}: {c}");
        assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c}");
        match state {
            "ok" => assert!(c["fix"].is_null(), "{c}"),
            "limited" | "missing" => {
                assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}")
            }
            _ => assert!(c["fix"].is_null() || c["fix"].is_string(), "{c}"),
        }
    }
    assert_eq!(check(&v, "privileges")["state"], "ok");
    // Found by loading a probe program, not from the version: it agrees with the version
    // on Debian's kernels (the memory cgroup pays for BPF memory from 5.11).
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy();
    let mut version = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>());
    let version = (
        version.next().unwrap().unwrap(),
        version.next().unwrap().unwrap(),
    );
    let memlock = check(&v, "memlock");
    assert_eq!(memlock["state"], "ok", "{memlock}");
    let detail = memlock["detail"].as_str().unwrap();
    if version >= (5, 11) {
        assert!(detail.contains("memory cgroup"), "{release}: {detail}");
    } else {
        assert!(detail.contains("raises its own"), "{release}: {detail}");
    }
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if !kprobes {
        assert_eq!(check(&v, "kprobes")["state"], "missing");
    }

    // The fentry/fexit line is the attach report's, as `zc-trace probes` shows it.
    let probes = zc_trace(&["probes", "--json"]);
    assert!(probes.status.success());
    let p: Value = serde_json::from_slice(&probes.stdout).expect("probes JSON");
    let hooks = p["probes"].as_array().unwrap();
    let trampoline = |m: &str| matches!(m.split('+').next(), Some("fexit" | "fentry"));
    let attached = hooks
        .iter()
        .filter(|h| h["method"].as_str().is_some_and(trampoline))
        .count();
    let tried: Vec<&str> = hooks
        .iter()
        .flat_map(|h| h["failed"].as_array().unwrap())
        .filter(|a| a["method"].as_str().is_some_and(trampoline))
        .filter(|a| {
            !["absent", "in_module", "prototype_mismatch"].contains(&a["kind"].as_str().unwrap())
        })
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    let fentry = check(&v, "fentry_fexit");
    if attached > 0 {
        assert!(
            ["ok", "limited"].contains(&fentry["state"].as_str().unwrap()),
            "{fentry}"
        );
    } else if !tried.is_empty() && tried.iter().all(|k| *k == "not_permitted") {
        assert_eq!(fentry["state"], "missing", "{fentry}");
        assert!(
            fentry["detail"]
                .as_str()
                .unwrap()
                .contains("refused (EPERM)"),
            "{fentry}"
        );
    }

    // The plan summary counts what probes attached.
    let plan = &v["plan"];
    assert_eq!(plan["checked"], true);
    assert_eq!(plan["hooks"].as_u64().unwrap() as usize, hooks.len());
    let probes_attached = hooks.iter().filter(|h| !h["method"].is_null()).count();
    assert_eq!(plan["attached"].as_u64().unwrap() as usize, probes_attached);
    let listed = plan["not_observable"].as_array().unwrap().len()
        + plan["not_in_kernel"].as_array().unwrap().len();
    assert_eq!(probes_attached + listed, hooks.len(), "{plan:#}");
    assert!(v["verdict"]
        .as_str()
        .unwrap()
        .starts_with("zc-trace works here: "));
}

/// zc-trace run as nobody, without capabilities: setpriv where it exists, else std's uid/gid
/// (which drop the supplementary groups when run as root).
fn as_nobody(args: &[&str]) -> Output {
    let bin = bin();
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let mut cmd = match setpriv {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&bin);
            c
        }
        None => {
            use std::os::unix::process::CommandExt;
            let mut c = Command::new(&bin);
            c.uid(65534).gid(65534);
            c
        }
    };
    // Somewhere nobody may enter.
    cmd.args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} as nobody: {e}"))
}

#[test]
fn doctor_as_nobody_exits_3_and_names_the_missing_privileges() {
    let unprivileged = !nix::unistd::geteuid().is_root();
    let run = |args: &[&str]| {
        if unprivileged {
            zc_trace(args)
        } else {
            as_nobody(args)
        }
    };
    let out = run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}\n{stderr}");
    assert_fits_100_columns(&text);
    let privileges = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("privileges"))
        .unwrap_or_else(|| panic!("no privileges line:\n{text}"));
    assert!(privileges.starts_with("missing"), "{text}");
    assert!(
        text.contains("CAP_BPF") && text.contains("CAP_PERFMON"),
        "{text}"
    );
    assert!(text.contains("zc-trace cannot run here"), "{text}");
    // What needs the programs loaded is said to be unchecked, not guessed.
    let fentry = text
        .lines()
        .find(|l| l.contains("fentry/fexit"))
        .unwrap_or_else(|| panic!("no fentry/fexit line:\n{text}"));
    assert!(
        fentry.starts_with("unknown") && fentry.contains("not checked"),
        "{text}"
    );

    let out = run(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["can_run"], false);
    let p = check(&v, "privileges");
    assert_eq!(p["state"], "missing");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("CAP_BPF") && detail.contains("CAP_PERFMON"),
        "{p}"
    );
    assert!(p["fix"].as_str().unwrap().contains("root"), "{p}");
    assert_eq!(check(&v, "fentry_fexit")["state"], "unknown");
    assert_eq!(v["plan"]["checked"], false);
}
