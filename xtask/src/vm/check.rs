//! What `vm-test` runs in each VM and what it expects zc-trace to report there.

use serde_json::Value;

use crate::util::Result;

use super::expectations::{self, exact_copies, KernelExpectations, COPY_FIGURES, MATRIX_FILE};
use super::{boot, Kernel, VmOptions, VmRun};

/// Payload and chunk of the run, as given to zc-trace and as numbers for the expectations.
const SIZE_ARG: &str = "1M";
const CHUNK_ARG: &str = "64K";
const SIZE: u64 = 1 << 20;
const CHUNK: u64 = 64 << 10;

/// (syscall, a, b): the sender's `syscalls_by_name.<syscall>.count.median` must be `a * N + b`,
/// with N = ceil(SIZE / CHUNK) transfer calls.
type SyscallCount = (&'static str, u64, u64);

/// Expected system calls of the sender, per strategy id.
const EXPECTED_SYSCALLS: &[(&str, &[SyscallCount])] = &[
    // read() until it returns 0: one more read than writes.
    ("read-write", &[("read", 1, 1), ("write", 1, 0)]),
    (
        "mmap-write",
        &[("mmap", 0, 1), ("munmap", 0, 1), ("write", 1, 0)],
    ),
    ("sendfile", &[("sendfile", 1, 0)]),
    // file -> pipe, pipe -> socket per chunk.
    ("splice", &[("splice", 2, 0)]),
    (
        "vmsplice",
        &[
            ("vmsplice", 1, 0),
            ("splice", 1, 0),
            ("mmap", 0, 1),
            ("munmap", 0, 1),
        ],
    ),
    // file -> A, A -> socket, B -> /dev/null per chunk, and one tee.
    ("tee", &[("tee", 1, 0), ("splice", 3, 0)]),
    ("odirect", &[("read", 1, 1), ("write", 1, 0)]),
    ("sendfile-file", &[("sendfile", 1, 0)]),
    ("copy-file-range", &[("copy_file_range", 1, 0)]),
    (
        "msg-zerocopy",
        &[("sendto", 1, 0), ("mmap", 0, 1), ("munmap", 0, 1)],
    ),
];

fn run_command() -> String {
    format!("zc-trace run --format json --size {SIZE_ARG} --chunk {CHUNK_ARG}")
}
const PROBES_COMMAND: &str = "zc-trace probes --json";

/// One strategy's figures, for the summary table.
#[derive(Debug)]
struct Row {
    strategy: String,
    cells: Vec<String>,
}

const ROW_HEADER: &[&str] = &[
    "strategy",
    "syscalls",
    "read",
    "write",
    "mmap",
    "munmap",
    "sendfile",
    "splice",
    "u2k/k2u/k2k",
    "by ref",
    "cpu",
    "recv",
    "faults u/k",
    "csw vol/inv",
    "time ms",
];

/// Checks a `zc-trace run --format json` document against the expectations: the system calls
/// of each strategy and the exact copy table (with the kernel's overrides). Returns the failed
/// assertions (each naming strategy and figure), the summary rows, and notes (the overrides
/// applied, with their reasons).
fn check_run(doc: &Value, exp: &KernelExpectations) -> (Vec<String>, Vec<Row>, Vec<String>) {
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut rows = Vec::new();
    let n = SIZE.div_ceil(CHUNK);

    if doc["schema"].as_u64() != Some(1) {
        failures.push(format!("schema is {}, expected 1", doc["schema"]));
    }
    for (key, want) in [("payload_bytes", SIZE), ("chunk_bytes", CHUNK)] {
        if doc["config"][key].as_u64() != Some(want) {
            failures.push(format!(
                "config.{key} is {}, expected {want}",
                doc["config"][key]
            ));
        }
    }
    let empty = Vec::new();
    let strategies = doc["strategies"].as_array().unwrap_or(&empty);
    for (id, expected) in EXPECTED_SYSCALLS {
        let Some(s) = strategies.iter().find(|s| s["id"] == *id) else {
            failures.push(format!("strategy {id}: missing from strategies[]"));
            continue;
        };
        let count = |name: &str| s["syscalls_by_name"][name]["count"]["median"].as_f64();
        for (name, a, b) in *expected {
            let want = (a * n + b) as f64;
            let got = count(name);
            if got != Some(want) {
                failures.push(format!(
                    "strategy {id}: syscalls_by_name.{name}.count.median is {}, expected {want} \
                     ({a}*N+{b}, N={n})",
                    got.map_or("absent".into(), |g| g.to_string())
                ));
            }
        }
        for figure in COPY_FIGURES {
            let Some(want) = exp.expected_copy(id, figure) else {
                continue;
            };
            let want_bytes = want.multiple * SIZE as f64;
            let because = want.override_reason.map_or(String::new(), |r| {
                format!(", overridden in {MATRIX_FILE}: {r}")
            });
            if let Some(reason) = want.override_reason {
                notes.push(format!(
                    "{id}.{figure} expected {} on {} instead of {}: {reason}",
                    multiple_of_s(want.multiple),
                    exp.name,
                    multiple_of_s(exact_copies(id, figure).unwrap_or(f64::NAN)),
                ));
            }
            let f = &s["figures"][figure];
            match f["value"]["median"].as_f64() {
                Some(v) if (v - want_bytes).abs() < 0.5 => {}
                Some(v) => failures.push(format!(
                    "strategy {id}: figures.{figure}.value.median is {v}, expected {want_bytes} \
                     ({} with S={SIZE}) on {}{because}",
                    multiple_of_s(want.multiple),
                    exp.name
                )),
                None => failures.push(format!(
                    "strategy {id}: figures.{figure} is not observable ({}), expected \
                     {want_bytes} ({} with S={SIZE}) on {}{because}",
                    f["provenance"]["reason"]
                        .as_str()
                        .unwrap_or("no value, no reason given"),
                    multiple_of_s(want.multiple),
                    exp.name
                )),
            }
        }

        let fig = |key: &str| num(&s["figures"][key]["value"]["median"]);
        let bytes = |key: &str| {
            s["figures"][key]["value"]["median"]
                .as_f64()
                .map_or("n/a".into(), in_s)
        };
        let sc = |name: &str| count(name).map_or("-".into(), |v| format!("{v}"));
        let time_ms = s["figures"]["time_ns"]["value"]["median"]
            .as_f64()
            .map_or("-".into(), |t| format!("{:.1}", t / 1e6));
        rows.push(Row {
            strategy: id.to_string(),
            cells: vec![
                fig("syscalls"),
                sc("read"),
                sc("write"),
                sc("mmap"),
                sc("munmap"),
                sc("sendfile"),
                sc("splice"),
                format!(
                    "{}/{}/{}",
                    bytes("copied_user_to_kernel_bytes"),
                    bytes("copied_kernel_to_user_bytes"),
                    bytes("copied_kernel_to_kernel_bytes")
                ),
                bytes("by_reference_bytes"),
                bytes("cpu_copied_bytes"),
                bytes("receiver_copied_bytes"),
                format!(
                    "{}/{}",
                    fig("page_faults_user_mode"),
                    fig("page_faults_kernel_mode")
                ),
                format!(
                    "{}/{}",
                    fig("context_switches_voluntary"),
                    fig("context_switches_involuntary")
                ),
                time_ms,
            ],
        });
    }
    (failures, rows, notes)
}

/// A multiple of the payload, as the matrix writes it ("2S", "0.5S", "0").
fn multiple_of_s(m: f64) -> String {
    if m == 0.0 {
        "0".into()
    } else if m == 1.0 {
        "S".into()
    } else {
        format!("{m}S")
    }
}

/// Bytes, as a multiple of the payload where exact, else as bytes.
fn in_s(bytes: f64) -> String {
    let m = bytes / SIZE as f64;
    if (m * 1000.0).fract() == 0.0 {
        multiple_of_s(m)
    } else {
        format!("{bytes}")
    }
}

/// Checks a `zc-trace probes --json` document against the kernel's entry: the attach method of
/// every hook it lists, and the function guard (every probe-plan function missing from the
/// kernel's BTF is listed as absent on purpose, every function listed is missing, and the
/// kernel has BTF). Returns the failures and the lines to print (absent functions with their
/// reasons, hooks the entry does not list).
fn check_probes(doc: &Value, exp: &KernelExpectations) -> (Vec<String>, Vec<String>) {
    let (mut failures, mut lines) = check_methods(&doc["probes"], exp);
    let k = &exp.name;
    let Some(functions) = doc["functions"].as_array() else {
        failures.push(format!(
            "the probes JSON has no functions[] array: the function guard cannot run on {k}"
        ));
        return (failures, lines);
    };
    let mut no_btf = Vec::new();
    for f in functions {
        let name = f["function"].as_str().unwrap_or("?");
        let hooks: Vec<&str> = f["hooks"]
            .as_array()
            .map(|h| h.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let hooks = hooks.join(", ");
        let listed = exp.absent_functions.get(name);
        match (&f["in_btf"], listed) {
            (Value::Bool(false), Some(reason)) => {
                lines.push(format!("absent on purpose: {name} (for {hooks}): {reason}"));
            }
            (Value::Bool(false), None) => failures.push(format!(
                "function {name} (for {hooks}) is missing from {k}'s BTF, but \
                 [kernel.absent_functions] of {MATRIX_FILE} does not list it for {k}: list it \
                 with the reason, or fix the probe plan"
            )),
            (Value::Bool(true), Some(reason)) => failures.push(format!(
                "function {name} is listed in [kernel.absent_functions] of {MATRIX_FILE} for \
                 {k} ({reason:?}), but it is in {k}'s BTF: a stale entry, remove it"
            )),
            (Value::Bool(true), None) => {}
            (Value::Null, _) => no_btf.push(name),
            (other, _) => failures.push(format!(
                "function {name}: in_btf is {other}, expected true, false or null"
            )),
        }
    }
    if !no_btf.is_empty() {
        failures.push(format!(
            "in_btf is null (no kernel BTF in the guest) for {}: {k} is expected to have BTF, \
             so the function guard cannot run",
            no_btf.join(", ")
        ));
    }
    for (name, reason) in &exp.absent_functions {
        if !functions.iter().any(|f| f["function"] == name.as_str()) {
            failures.push(format!(
                "function {name} is listed in [kernel.absent_functions] of {MATRIX_FILE} for \
                 {k} ({reason:?}), but it is not a probe-plan function (not in the probes \
                 JSON's functions[]): a stale entry, remove it"
            ));
        }
    }
    (failures, lines)
}

/// The attach method of every hook the kernel's entry lists, against a `probes` array ("none"
/// in the matrix is a null `method`). Returns the failures and notes on hooks the entry does
/// not list.
fn check_methods(probes: &Value, exp: &KernelExpectations) -> (Vec<String>, Vec<String>) {
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let k = &exp.name;
    let Some(probes) = probes.as_array() else {
        failures.push(format!(
            "no probes[] array: the attach methods of {k} cannot be checked"
        ));
        return (failures, notes);
    };
    for (hook, want) in &exp.methods {
        let Some(p) = probes.iter().find(|p| p["hook"] == hook.as_str()) else {
            failures.push(format!(
                "hook {hook}: {MATRIX_FILE} expects {want} on {k}, but probes[] has no such hook"
            ));
            continue;
        };
        let got = p["method"].as_str().unwrap_or("none");
        if got != want {
            let failed = failed_attempts(p);
            failures.push(format!(
                "hook {hook}: expected {want} on {k} ({MATRIX_FILE}), got {got}{}; failed \
                 attempts: {}",
                p["target"]
                    .as_str()
                    .map_or(String::new(), |t| format!(" (target {t})")),
                if failed.is_empty() {
                    "none".into()
                } else {
                    failed.join("; ")
                }
            ));
        }
    }
    for p in probes {
        let hook = p["hook"].as_str().unwrap_or("?");
        if !exp.methods.contains_key(hook) {
            notes.push(format!(
                "hook {hook} is not in {MATRIX_FILE} for {k}: its method was not checked"
            ));
        }
    }
    (failures, notes)
}

/// "method target: error" for each failed attempt of a hook.
fn failed_attempts(p: &Value) -> Vec<String> {
    p["failed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    format!(
                        "{} {}: {}",
                        a["method"].as_str().unwrap_or("?"),
                        a["target"].as_str().unwrap_or("?"),
                        a["error"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) => format!("{f}"),
        None => "n/a".into(),
    }
}

/// Prints rows as an aligned text table.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    line(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// The hooks table of a `probes` array: (hook, method, expected, target, failed attempts).
fn probe_rows(probes: &Value, exp: &KernelExpectations) -> Vec<Vec<String>> {
    let empty = Vec::new();
    probes
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|p| {
            let hook = p["hook"].as_str().unwrap_or("?");
            let got = p["method"].as_str().unwrap_or("none");
            let expected = match exp.methods.get(hook) {
                Some(want) if want == got => "=".to_string(),
                Some(want) => format!("{want} (MISMATCH)"),
                None => "(not listed)".into(),
            };
            let failed = failed_attempts(p);
            vec![
                hook.to_string(),
                p["method"].as_str().unwrap_or("NOT OBSERVABLE").to_string(),
                expected,
                p["target"].as_str().unwrap_or("-").to_string(),
                if failed.is_empty() {
                    "-".into()
                } else {
                    failed.join("; ")
                },
            ]
        })
        .collect()
}

/// "fexit×5 tracepoint×4 none×1": the methods of a `probes` array, for the summary.
fn method_counts(probes: &Value) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for p in probes.as_array().into_iter().flatten() {
        let m = p["method"].as_str().unwrap_or("none").to_string();
        match counts.iter_mut().find(|(n, _)| *n == m) {
            Some((_, c)) => *c += 1,
            None => counts.push((m, 1)),
        }
    }
    counts
        .iter()
        .map(|(m, c)| format!("{m}x{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_stderr(what: &str, stderr: &str) {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return;
    }
    println!("  {what} stderr:");
    for l in stderr.lines() {
        println!("    | {l}");
    }
}

/// Checks one VM run against the kernel's entry; returns the failures (the caller adds the
/// kernel's name) and the attach methods in brief, for the summary.
fn check_vm(vm: &VmRun, options: &VmOptions, exp: &KernelExpectations) -> (Vec<String>, String) {
    let mut failures = Vec::new();
    if vm.var_tmp != options.var_tmp.name() {
        failures.push(format!(
            "/var/tmp is {} in the guest, not {} as asked (see {})",
            vm.var_tmp,
            options.var_tmp.name(),
            vm.log.display()
        ));
    }
    let run = &vm.outputs[0];
    let probes = &vm.outputs[1];
    let secs = |s: Option<f64>| s.map_or("?".into(), |s| format!("{s:.1}"));

    println!(
        "  {}: {} (uname -r {}), /var/tmp on {}; boot {} s, run {} s, probes {} s, wall {:.1} s",
        vm.kernel,
        vm.package,
        vm.release,
        vm.var_tmp,
        secs(vm.boot_seconds),
        secs(run.seconds),
        secs(probes.seconds),
        vm.wall.as_secs_f64()
    );

    for line in kernel_problems(&vm.dmesg) {
        failures.push(format!("the guest kernel logged: {line}"));
    }

    let mut run_doc = None;
    let mut differing = Vec::new();
    match run_status(run.rc, &run.stdout) {
        Ok((doc, d)) => {
            run_doc = Some(doc);
            differing = d;
        }
        Err(e) => failures.push(format!(
            "`{}` {e}{}",
            run.command,
            match run.stderr.trim() {
                "" => String::new(),
                s => format!(": {s}"),
            }
        )),
    }
    print_stderr(&format!("`{}`", run.command), &run.stderr);
    if !failures.is_empty() {
        println!("  (serial console: {})", vm.log.display());
    }
    if let Some(doc) = &run_doc {
        let (f, rows, notes) = check_run(doc, exp);
        println!(
            "  source fs: {}; sink: {}; copies in S = {SIZE} bytes (u2k/k2u/k2k: user->kernel, \
             kernel->user, kernel->kernel)",
            doc["config"]["source_fs"].as_str().unwrap_or("?"),
            doc["config"]["sink"].as_str().unwrap_or("?")
        );
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|r| std::iter::once(r.strategy).chain(r.cells).collect())
            .collect();
        print_table(ROW_HEADER, &rows);
        for n in notes {
            println!("  copy override: {n}");
        }
        for d in &differing {
            println!("  claim DIFFERS (exit status 1, as documented; not a vm-test failure): {d}");
        }
        failures.extend(f);
    }

    let mut probes_doc = None;
    if probes.rc != 0 {
        failures.push(format!(
            "`{}` exited with status {}: {}",
            probes.command,
            probes.rc,
            probes.stderr.trim()
        ));
    } else {
        match serde_json::from_str::<Value>(&probes.stdout) {
            Ok(doc) => probes_doc = Some(doc),
            Err(e) => failures.push(format!("`{}` printed no valid JSON ({e})", probes.command)),
        }
    }
    print_stderr(&format!("`{}`", probes.command), &probes.stderr);
    // Without the probes document, the run report's probes[] still shows the methods (but has
    // no functions[] for the guard: the failure above stands).
    let (array, from) = match (&probes_doc, &run_doc) {
        (Some(doc), _) => (doc["probes"].clone(), PROBES_COMMAND.to_string()),
        (None, Some(doc)) => (doc["probes"].clone(), "the run report's probes[]".into()),
        (None, None) => (Value::Null, String::new()),
    };
    let methods = method_counts(&array);
    if !array.is_null() {
        println!("  attach methods (from {from}; expected: {MATRIX_FILE}, \"=\" when it matches):");
        print_table(
            &[
                "hook",
                "method",
                "expected",
                "target",
                "tried first / why not",
            ],
            &probe_rows(&array, exp),
        );
    }
    let (f, lines) = match &probes_doc {
        Some(doc) => check_probes(doc, exp),
        None if !array.is_null() => check_methods(&array, exp),
        None => (Vec::new(), Vec::new()),
    };
    for l in lines {
        println!("  {l}");
    }
    failures.extend(f);
    (failures, methods)
}

/// The run's JSON report, and the claims that DIFFER: `zc-trace run` exits 0, or 1 when a
/// claim of the article DIFFERS from what it measured (its documented exit status; the report
/// is complete then). Any other status, or 1 without a differing claim, is an error.
fn run_status(rc: i32, stdout: &str) -> std::result::Result<(Value, Vec<String>), String> {
    let doc = match serde_json::from_str::<Value>(stdout) {
        Ok(doc) => doc,
        Err(e) if rc == 0 || rc == 1 => {
            return Err(format!(
                "exited with status {rc} and printed no valid JSON ({e})"
            ))
        }
        Err(_) => return Err(format!("exited with status {rc}")),
    };
    let differing: Vec<String> = doc["claims"]["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["verdict"] == "differs")
        .map(|v| {
            format!(
                "{} {}: claimed {}, observed {} ({})",
                v["strategy"].as_str().unwrap_or("?"),
                v["figure"].as_str().unwrap_or("?"),
                v["claimed"],
                v["observed"],
                v["reason"].as_str().unwrap_or("no reason given")
            )
        })
        .collect();
    match rc {
        0 => Ok((doc, differing)),
        1 if !differing.is_empty() => Ok((doc, differing)),
        1 => Err("exited with status 1, but no claim of its report DIFFERS".into()),
        _ => Err(format!("exited with status {rc}")),
    }
}

/// Kernel log lines that mean something went wrong in the kernel (a WARN, BUG or oops splat,
/// e.g. one triggered by an eBPF program or its attachment).
fn kernel_problems(dmesg: &str) -> Vec<&str> {
    const SIGNS: &[&str] = &[
        "WARNING: CPU",
        "BUG:",
        "kernel BUG",
        "Oops",
        "general protection fault",
        "Call Trace:",
        "Kernel panic",
    ];
    dmesg
        .lines()
        .filter(|l| SIGNS.iter().any(|s| l.contains(s)))
        .map(str::trim)
        .collect()
}

/// `vm-test`: boots each kernel, runs zc-trace, checks its reports, prints a summary.
pub fn vm_test(kernels: &[&Kernel], options: &VmOptions) -> Result {
    let matrix = expectations::load()?;
    // One zc-trace for every kernel; a build failure is nobody's kernel's fault.
    let zc_trace = super::zc_trace_binary(options)?;
    println!(
        "zc-trace: {} ({})",
        zc_trace.display(),
        if options.binary.is_some() {
            "as given by --binary"
        } else {
            "static build of the working tree"
        }
    );
    let run_cmd = run_command();
    let commands = [run_cmd.as_str(), PROBES_COMMAND];
    let mut all_failures = Vec::new();
    let mut summary = Vec::new();
    for k in kernels {
        let exp = matrix.get(k)?;
        println!("\n== {}: {}", k.name, k.description);
        if !exp.about.is_empty() {
            println!("  expectations ({MATRIX_FILE}): {}", exp.about);
        }
        let started = std::time::Instant::now();
        let (failures, row) = match boot(k, &commands, options) {
            Ok(vm) => {
                let (f, methods) = check_vm(&vm, options, exp);
                let secs = |s: Option<f64>| s.map_or("?".into(), |s| format!("{s:.1}"));
                let row = vec![
                    k.name.to_string(),
                    vm.release.clone(),
                    // The metapackage's spec (the first); the rest are in the log.
                    vm.package
                        .split_whitespace()
                        .next()
                        .unwrap_or("?")
                        .to_string(),
                    secs(vm.boot_seconds),
                    secs(vm.outputs[0].seconds),
                    secs(vm.outputs[1].seconds),
                    format!("{:.1}", vm.wall.as_secs_f64()),
                    methods,
                ];
                (f, row)
            }
            Err(e) => {
                println!("  {e}");
                let row = vec![k.name.to_string(), "?".into(), "?".into()];
                let first = e.lines().next().unwrap_or_default().to_string();
                (vec![first], row)
            }
        };
        let verdict = if failures.is_empty() {
            "ok".to_string()
        } else {
            format!("FAILED ({})", failures.len())
        };
        for f in &failures {
            println!("  FAIL: {f}");
        }
        let mut row = row;
        row.resize(8, "?".into());
        row.push(format!("{:.1}", started.elapsed().as_secs_f64()));
        row.push(verdict);
        summary.push(row);
        all_failures.extend(failures.into_iter().map(|f| format!("{}: {f}", k.name)));
    }
    println!(
        "\n== summary, in seconds: boot, run and probes by the guest's clock; wall: the qemu \
         process; total: with zc-trace build, disk image and initramfs"
    );
    print_table(
        &[
            "kernel",
            "release",
            "package",
            "boot",
            "run",
            "probes",
            "wall",
            "attach methods",
            "total",
            "result",
        ],
        &summary,
    );
    if all_failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "vm-test: {} failure(s):\n  {}",
            all_failures.len(),
            all_failures.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stat(v: f64) -> Value {
        json!({ "median": v, "min": v, "max": v, "samples": [v] })
    }

    /// A strategy whose copy figures are the exact table's.
    fn strategy(id: &str, calls: &[(&str, f64)]) -> Value {
        let by_name: serde_json::Map<String, Value> = calls
            .iter()
            .map(|(n, c)| (n.to_string(), json!({ "count": stat(*c) })))
            .collect();
        let figures: serde_json::Map<String, Value> = COPY_FIGURES
            .iter()
            .map(|f| {
                let fig = match exact_copies(id, f) {
                    Some(m) => json!({ "unit": "bytes", "value": stat(m * SIZE as f64),
                                       "provenance": { "kind": "observed" } }),
                    None => json!({ "unit": "bytes", "value": null,
                                    "provenance": { "kind": "not_observable", "reason": "no receiver" } }),
                };
                (f.to_string(), fig)
            })
            .collect();
        json!({ "id": id, "figures": figures, "syscalls_by_name": by_name })
    }

    fn good_doc() -> Value {
        json!({
            "schema": 1,
            "config": { "payload_bytes": SIZE, "chunk_bytes": CHUNK },
            "strategies": [
                strategy("read-write", &[("read", 17.0), ("write", 16.0)]),
                strategy("mmap-write", &[("mmap", 1.0), ("munmap", 1.0), ("write", 16.0)]),
                strategy("sendfile", &[("sendfile", 16.0)]),
                strategy("splice", &[("splice", 32.0)]),
                strategy("vmsplice", &[("vmsplice", 16.0), ("splice", 16.0), ("mmap", 1.0), ("munmap", 1.0)]),
                strategy("tee", &[("tee", 16.0), ("splice", 48.0)]),
                strategy("odirect", &[("read", 17.0), ("write", 16.0)]),
                strategy("sendfile-file", &[("sendfile", 16.0)]),
                strategy("copy-file-range", &[("copy_file_range", 16.0)]),
                strategy("msg-zerocopy", &[("sendto", 16.0), ("mmap", 1.0), ("munmap", 1.0)]),
            ]
        })
    }

    /// An entry shaped like the matrix's debian-12-6.1.
    fn expectations() -> KernelExpectations {
        let text = r#"
            [[kernel]]
            name = "debian-12-6.1"
            [kernel.methods]
            syscall_enter = "tracepoint"
            tcp_send = "fexit"
            file_splice_read = "none"
            [kernel.absent_functions]
            filemap_splice_read = "added in 6.5"
            [kernel.copies]
        "#;
        let all = super::super::kernels::all().unwrap();
        let kernels = [super::super::kernels::by_name(&all, "debian-12-6.1")
            .unwrap()
            .clone()];
        expectations::parse(text, &kernels)
            .unwrap()
            .kernel
            .remove(0)
    }

    fn probe(hook: &str, method: Option<&str>) -> Value {
        json!({ "hook": hook, "site": "x", "method": method, "target": method.map(|_| "t"),
                "failed": [{ "method": "kprobe", "target": "t", "error": "ENOENT" }] })
    }

    fn good_probes() -> Value {
        json!({
            "schema": 1,
            "probes": [
                probe("syscall_enter", Some("tracepoint")),
                probe("tcp_send", Some("fexit")),
                probe("file_splice_read", None),
            ],
            "functions": [
                { "function": "tcp_sendmsg_locked", "in_btf": true, "hooks": ["tcp_send"] },
                { "function": "filemap_splice_read", "in_btf": false,
                  "hooks": ["file_splice_read"] },
            ]
        })
    }

    #[test]
    fn a_correct_report_passes() {
        let (failures, rows, notes) = check_run(&good_doc(), &expectations());
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(rows.len(), EXPECTED_SYSCALLS.len());
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn failures_name_strategy_and_figure() {
        let mut doc = good_doc();
        doc["strategies"][2] = strategy("sendfile", &[("sendfile", 15.0)]);
        doc["strategies"][2]["figures"]["receiver_copied_bytes"]["value"] = stat(1.0);
        doc["strategies"].as_array_mut().unwrap().remove(3);
        let (failures, _, _) = check_run(&doc, &expectations());
        let all = failures.join("\n");
        assert!(
            all.contains("strategy sendfile: syscalls_by_name.sendfile.count.median is 15"),
            "{all}"
        );
        assert!(
            all.contains("strategy sendfile: figures.receiver_copied_bytes.value.median is 1,"),
            "{all}"
        );
        assert!(all.contains("strategy splice: missing"), "{all}");
        assert_eq!(failures.len(), 3, "{all}");
    }

    #[test]
    fn a_wrong_copy_figure_fails() {
        let mut doc = good_doc();
        doc["strategies"][0]["figures"]["cpu_copied_bytes"]["value"] = stat(SIZE as f64);
        doc["strategies"][3]["figures"]["by_reference_bytes"] = json!({ "unit": "bytes", "value": null,
                    "provenance": { "kind": "not_observable", "reason": "no hook" } });
        let (failures, _, _) = check_run(&doc, &expectations());
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].starts_with(
                "strategy read-write: figures.cpu_copied_bytes.value.median is 1048576, \
                 expected 2097152 (2S with S=1048576) on debian-12-6.1"
            ),
            "{failures:?}"
        );
        assert!(
            failures[1].contains(
                "strategy splice: figures.by_reference_bytes is not observable (no hook)"
            ),
            "{failures:?}"
        );
    }

    #[test]
    fn copy_overrides_apply_with_their_reason() {
        let mut exp = expectations();
        exp.copies.insert(
            "sendfile.by_reference_bytes".into(),
            expectations::CopyOverride {
                value: 0.5,
                reason: "half goes elsewhere".into(),
            },
        );
        let (failures, _, notes) = check_run(&good_doc(), &exp);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0]
                .contains("figures.by_reference_bytes.value.median is 1048576, expected 524288")
                && failures[0].ends_with("half goes elsewhere"),
            "{failures:?}"
        );
        assert_eq!(
            notes,
            ["sendfile.by_reference_bytes expected 0.5S on debian-12-6.1 instead of S: half goes \
              elsewhere"]
        );
        let mut doc = good_doc();
        doc["strategies"][2]["figures"]["by_reference_bytes"]["value"] = stat(SIZE as f64 / 2.0);
        assert!(check_run(&doc, &exp).0.is_empty());
    }

    #[test]
    fn correct_probes_pass() {
        let (failures, lines) = check_probes(&good_probes(), &expectations());
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(
            lines,
            ["absent on purpose: filemap_splice_read (for file_splice_read): added in 6.5"]
        );
    }

    #[test]
    fn a_wrong_method_fails() {
        let mut doc = good_probes();
        doc["probes"][1] = probe("tcp_send", Some("kprobe"));
        doc["probes"][2] = probe("file_splice_read", Some("fexit"));
        let (failures, _) = check_probes(&doc, &expectations());
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].starts_with(
                "hook file_splice_read: expected none on debian-12-6.1 (zc-trace/tests/data/\
                 kernel-matrix.toml), got fexit"
            ),
            "{failures:?}"
        );
        assert!(
            failures[1].starts_with("hook tcp_send: expected fexit on debian-12-6.1")
                && failures[1].contains("got kprobe (target t); failed attempts: kprobe t: ENOENT"),
            "{failures:?}"
        );
        doc["probes"].as_array_mut().unwrap().remove(0);
        let (failures, _) = check_probes(&doc, &expectations());
        assert!(
            failures.iter().any(|f| f.starts_with(
                "hook syscall_enter: zc-trace/tests/data/kernel-matrix.toml expects tracepoint \
                 on debian-12-6.1, but probes[] has no such hook"
            )),
            "{failures:?}"
        );
    }

    #[test]
    fn an_unexpected_absent_function_fails() {
        let mut doc = good_probes();
        doc["functions"][0]["in_btf"] = json!(false);
        let (failures, _) = check_probes(&doc, &expectations());
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with(
                "function tcp_sendmsg_locked (for tcp_send) is missing from debian-12-6.1's BTF, \
                 but [kernel.absent_functions]"
            ),
            "{failures:?}"
        );
    }

    #[test]
    fn a_stale_absent_entry_fails() {
        let mut doc = good_probes();
        doc["functions"][1]["in_btf"] = json!(true);
        let (failures, _) = check_probes(&doc, &expectations());
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with("function filemap_splice_read is listed")
                && failures[0].contains("for debian-12-6.1 (\"added in 6.5\"), but it is in")
                && failures[0].contains("stale entry"),
            "{failures:?}"
        );
        // Listed, but not a function of the plan at all.
        doc["functions"].as_array_mut().unwrap().remove(1);
        let (failures, _) = check_probes(&doc, &expectations());
        assert!(
            failures[0].contains("filemap_splice_read")
                && failures[0].contains("not a probe-plan function"),
            "{failures:?}"
        );
    }

    #[test]
    fn no_btf_fails() {
        let mut doc = good_probes();
        doc["functions"][0]["in_btf"] = Value::Null;
        doc["functions"][1]["in_btf"] = Value::Null;
        let (failures, _) = check_probes(&doc, &expectations());
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with(
                "in_btf is null (no kernel BTF in the guest) for tcp_sendmsg_locked, \
                 filemap_splice_read: debian-12-6.1 is expected to have BTF"
            ),
            "{failures:?}"
        );
        doc.as_object_mut().unwrap().remove("functions");
        assert!(check_probes(&doc, &expectations()).0[0].contains("no functions[] array"));
    }

    #[test]
    fn a_differing_claim_is_exit_status_1() {
        let mut doc = good_doc();
        assert!(run_status(0, &doc.to_string()).unwrap().1.is_empty());
        let e = run_status(1, &doc.to_string()).unwrap_err();
        assert!(e.contains("no claim of its report DIFFERS"), "{e}");
        doc["claims"] = json!({ "verdicts": [
            { "strategy": "splice", "figure": "transitions_per_call", "claimed": 2.0,
              "observed": 4.0, "verdict": "differs", "reason": "splice x2" },
            { "strategy": "splice", "figure": "cpu_copies", "verdict": "holds" },
        ] });
        let (_, differing) = run_status(1, &doc.to_string()).unwrap();
        assert_eq!(
            differing,
            ["splice transitions_per_call: claimed 2.0, observed 4.0 (splice x2)"]
        );
        assert_eq!(
            run_status(4, &doc.to_string()).unwrap_err(),
            "exited with status 4"
        );
        assert!(run_status(1, "oops").unwrap_err().contains("no valid JSON"));
    }

    #[test]
    fn kernel_splats_are_found() {
        let log = "[ 0.4] LSM support for eBPF active\n[ 3.1] WARNING: CPU: 1 PID: 90 at kernel/bpf/x.c:1\n\
                   [ 3.2] Call Trace:\n[ 3.3] PCI: ... report a bug\n";
        assert_eq!(kernel_problems(log).len(), 2);
        assert!(kernel_problems("[ 1.0] calibrate_delay_direct() failed\n").is_empty());
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            super::super::strip_escapes("\x1bc\x1b[?7l\x1b[2Jboot\r"),
            "boot"
        );
    }

    #[test]
    fn console_markers_are_parsed() {
        let console = "boot noise\n\x1bc\x1b[?7l@@ZC-READY up=3.21 kernel=6.1.0-x var_tmp=ext4@@\n\
                       @@ZC-BEGIN 0@@\n{\"a\": 1}\n\n@@ZC-END 0 rc=0@@\n\
                       @@ZC-STDERR-BEGIN 0@@\n\n@@ZC-STDERR-END 0@@\n@@ZC-TIME 0 start=3.30 end=5.80@@\n\
                       \x1b[0m@@ZC-BEGIN 1@@\nno newline\n@@ZC-END 1 rc=2@@\n\
                       @@ZC-STDERR-BEGIN 1@@\nError: boom\n\n@@ZC-STDERR-END 1@@\n\
                       @@ZC-DMESG-BEGIN@@\n[    1.0] hello\n\n@@ZC-DMESG-END@@\n@@ZC-DONE@@\n";
        let (ready, out, dmesg) = super::super::parse_console(console, &["a", "b"]).unwrap();
        assert_eq!(dmesg, "[    1.0] hello\n");
        assert_eq!(ready.field("up").as_deref(), Some("3.21"));
        assert_eq!(ready.field("var_tmp").as_deref(), Some("ext4"));
        assert_eq!(out[0].stdout, "{\"a\": 1}\n");
        assert_eq!(out[0].rc, 0);
        assert_eq!(out[0].stderr, "");
        assert!((out[0].seconds.unwrap() - 2.5).abs() < 1e-9);
        assert_eq!(out[1].stdout, "no newline");
        assert_eq!(out[1].rc, 2);
        assert_eq!(out[1].stderr, "Error: boom\n");
        assert!(super::super::parse_console(console, &["a", "b", "c"]).is_err());
    }
}
