//! The kernel matrix (`tests/data/kernel-matrix.toml`), embedded at build time so that the same
//! test binary checks the host and, copied into an initramfs, each VM kernel: the exact table
//! and the syscall formulas (`[strategy.*]`) and the running kernel's entry (attach methods,
//! functions absent on purpose, copy overrides). The checks return every failure at once, each
//! naming strategy, figure and kernel, so one run shows the whole difference.

use serde_json::Value;
use toml::Table;
use zc_trace_common::filesystems;

pub const MATRIX: &str = include_str!("../data/kernel-matrix.toml");
const FILE: &str = "zc-trace/tests/data/kernel-matrix.toml";

/// The environment variable that names the kernel's entry; the VM harness sets it in the
/// guest. Without it the entry is the one whose `release_prefix` matches `uname -r`.
pub const KERNEL_VAR: &str = "ZC_TRACE_KERNEL";

pub fn matrix() -> Table {
    MATRIX
        .parse()
        .unwrap_or_else(|e| panic!("{FILE} does not parse: {e}"))
}

/// The running kernel's entry, or why there is none.
pub fn entry(matrix: &Table) -> Result<Table, String> {
    let kernels = matrix["kernel"].as_array().expect("[[kernel]] entries");
    let tables = kernels.iter().filter_map(|k| k.as_table());
    let found = match std::env::var(KERNEL_VAR) {
        Ok(name) => tables
            .clone()
            .find(|k| k["name"].as_str() == Some(name.as_str()))
            .ok_or_else(|| format!("{KERNEL_VAR}={name} names no [[kernel]] of {FILE}")),
        Err(_) => {
            let release = nix::sys::utsname::uname()
                .expect("uname")
                .release()
                .to_string_lossy()
                .into_owned();
            tables
                .clone()
                .find(|k| {
                    k.get("release_prefix")
                        .and_then(|p| p.as_str())
                        .is_some_and(|p| release.starts_with(p))
                })
                .ok_or_else(|| {
                    format!("no [[kernel]] of {FILE} has a release_prefix matching {release}")
                })
        }
    };
    found.cloned()
}

fn name(entry: &Table) -> &str {
    entry["name"].as_str().unwrap_or("?")
}

/// The filesystem of `dir` as the matrix names it ("ext4", "xfs", "btrfs", "tmpfs").
pub fn filesystem(dir: &str) -> String {
    match nix::sys::statfs::statfs(dir) {
        // The ext family shares one magic; the matrix's cell is ext4.
        Ok(s) => match s.filesystem_type().0 as u32 {
            filesystems::EXT => "ext4".into(),
            magic => filesystems::name(magic.into()),
        },
        Err(e) => format!("unknown ({e})"),
    }
}

/// The filesystem of zc-trace's default payload directory.
pub fn payload_filesystem() -> String {
    filesystem("/var/tmp")
}

/// `table.a.b.c`, as a table, where every step exists.
fn path<'a>(table: &'a Table, keys: &[&str]) -> Option<&'a Table> {
    let mut t = table;
    for k in keys {
        t = t.get(*k)?.as_table()?;
    }
    Some(t)
}

/// What a copy figure must be on this kernel and filesystem.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// A multiple of the payload; `incomplete`: the byte ledger must mark it incomplete;
    /// `retransmitted`: plus the bytes TCP retransmitted (the copy at transmit without
    /// scatter-gather happens again for them), as the report's nic_linearize leg states.
    Multiple {
        m: f64,
        incomplete: bool,
        retransmitted: bool,
    },
    NotObservable,
}

/// The expectation of one copy figure, and the override's reason where there is one. Most
/// specific first: the kernel on this filesystem, the sink (`[sink.<name>.copies]`), the
/// filesystem, the kernel, the table.
fn expected_copy(
    matrix: &Table,
    entry: &Table,
    fs: &str,
    sink: &str,
    strategy: &str,
    figure: &str,
) -> Option<(Expected, Option<String>)> {
    let key = format!("{strategy}.{figure}");
    let overrides = [
        path(entry, &["fs", fs, "copies"]),
        path(matrix, &["sink", sink, "copies"]),
        path(matrix, &["filesystem", fs, "copies"]),
        path(entry, &["copies"]),
    ];
    if let Some(o) = overrides.into_iter().flatten().find_map(|t| t.get(&key)) {
        let reason = o["reason"].as_str().map(str::to_string);
        let value = match &o["value"] {
            toml::Value::String(s) if s == "not observable" => Expected::NotObservable,
            v => Expected::Multiple {
                m: v.as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .unwrap_or_else(|| panic!("{FILE}: {key}: value is {v}")),
                incomplete: o.get("incomplete").and_then(|i| i.as_bool()) == Some(true),
                retransmitted: o.get("retransmitted").and_then(|i| i.as_bool()) == Some(true),
            },
        };
        return Some((value, reason));
    }
    let v = matrix["strategy"]
        .get(strategy)?
        .get("copies")?
        .get(figure)?;
    let m = v.as_float().or_else(|| v.as_integer().map(|i| i as f64))?;
    Some((
        Expected::Multiple {
            m,
            incomplete: false,
            retransmitted: false,
        },
        None,
    ))
}

/// The `[sink.<name>]` name of the sink strategy `s` of report `doc` ran with: its `--sink`,
/// with "-no-sg" appended for a route without scatter-gather (`--sink veth --no-sg`).
fn sink_name(doc: &Value, s: &Value) -> String {
    let sink = s["sink"].as_str().unwrap_or("?");
    if s["sink"] == doc["config"]["sink"] && doc["config"]["sink_scatter_gather"] == false {
        format!("{sink}-no-sg")
    } else {
        sink.to_string()
    }
}

/// The figures of `strategy` that `[sink.<name>.unchecked]` leaves unasserted (keys
/// "<strategy>.<figure>", each with its reason).
fn unchecked(matrix: &Table, sink: &str, strategy: &str) -> Vec<String> {
    path(matrix, &["sink", sink, "unchecked"])
        .into_iter()
        .flat_map(|t| t.keys())
        .filter_map(|k| k.strip_prefix(&format!("{strategy}.")).map(str::to_string))
        .collect()
}

/// Strategies the filesystem may refuse, with the reason.
pub fn may_skip(matrix: &Table, fs: &str) -> Table {
    path(matrix, &["filesystem", fs, "may_skip"])
        .cloned()
        .unwrap_or_default()
}

/// The strategy ids of the exact table.
pub fn strategies(matrix: &Table) -> Vec<String> {
    matrix["strategy"]
        .as_table()
        .expect("[strategy.*]")
        .keys()
        .cloned()
        .collect()
}

/// Checks a `zc-trace run --format json` report, made with payload `size` and chunk `chunk`,
/// against the exact table and the kernel's overrides, for the strategies of the report that
/// are in the table, less the figures and ledger legs its sink's `[sink.<name>]` leaves
/// unasserted. Returns the failures.
pub fn check_run(
    matrix: &Table,
    entry: &Table,
    fs: &str,
    doc: &Value,
    size: u64,
    chunk: u64,
) -> Vec<String> {
    let k = &format!("{} on {fs}", name(entry));
    let n = size.div_ceil(chunk);
    let mut failures = Vec::new();
    for key in entry
        .get("copies")
        .and_then(|c| c.as_table())
        .into_iter()
        .flatten()
    {
        let known = key.0.split_once('.').is_some_and(|(s, f)| {
            matrix["strategy"]
                .get(s)
                .and_then(|t| t.get("copies"))
                .is_some_and(|c| c.get(f).is_some())
        });
        if !known {
            failures.push(format!(
                "{k}: [kernel.copies] key {:?} of {FILE} names no strategy figure of the table",
                key.0
            ));
        }
    }
    let empty = Vec::new();
    for s in doc["strategies"].as_array().unwrap_or(&empty) {
        let id = s["id"].as_str().unwrap_or("?");
        let Some(row) = matrix["strategy"].get(id) else {
            continue;
        };
        let sink = sink_name(doc, s);
        let unasserted = unchecked(matrix, &sink, id);
        for (call, ab) in row["syscalls"].as_table().expect("syscalls") {
            let ab: Vec<u64> = ab
                .as_array()
                .expect("[a, b]")
                .iter()
                .map(|x| x.as_integer().expect("integer") as u64)
                .collect();
            let want = (ab[0] * n + ab[1]) as f64;
            let got = s["syscalls_by_name"][call]["count"]["median"].as_f64();
            if got != Some(want) {
                failures.push(format!(
                    "{k}: {id}: {call} calls {}, expected {want} ({}*N+{}, N={n})",
                    got.map_or("none".into(), |g| g.to_string()),
                    ab[0],
                    ab[1]
                ));
            }
        }
        for figure in row["copies"]
            .as_table()
            .expect("copies")
            .keys()
            .filter(|f| !unasserted.contains(f))
        {
            let (want, reason) =
                expected_copy(matrix, entry, fs, &sink, id, figure).expect("in the table");
            let because = reason.map_or(String::new(), |r| format!(" (override: {r})"));
            let f = &s["figures"][figure.as_str()];
            let got = f["value"]["median"].as_f64();
            let incomplete = f["provenance"]["kind"] == "incomplete";
            // The bytes TCP retransmitted, as the nic_linearize leg states them (one iteration:
            // the medians are the run's values).
            let retransmitted = s["ledger"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["leg"] == "nic_linearize")
                .and_then(|l| l["retransmitted_bytes"]["median"].as_f64());
            match &want {
                Expected::Multiple {
                    m,
                    incomplete: i,
                    retransmitted: r,
                } => {
                    let extra = if *r {
                        retransmitted.unwrap_or(0.0)
                    } else {
                        0.0
                    };
                    let expected = m * size as f64 + extra;
                    if got != Some(expected) || *i != incomplete {
                        failures.push(format!(
                            "{k}: {id}: {figure} is {}{}, expected {expected}{} ({m}*S{}, \
                             S={size}){because}",
                            got.map_or(format!("not observable ({})", f["provenance"]), |v| v
                                .to_string()),
                            if incomplete { " (incomplete)" } else { "" },
                            if *i { ", incomplete" } else { "" },
                            if *r {
                                format!(" + {extra} retransmitted")
                            } else {
                                String::new()
                            },
                        ));
                    }
                }
                Expected::NotObservable
                    if got.is_none() && f["provenance"]["reason"].is_string() => {}
                Expected::NotObservable => failures.push(format!(
                    "{k}: {id}: {figure} is {}, expected not observable with a reason{because}",
                    f["value"]
                )),
            }
        }
    }
    failures.extend(ledger_failures(matrix, entry, fs, doc));
    failures
}

/// Every leg of every table strategy's byte ledger balances (or is derived, where nothing can
/// check it), unless the matrix expects the strategy's figures incomplete, or not observable,
/// on this kernel and filesystem. Any sink: the legs do not depend on the exact table.
pub fn ledger_failures(matrix: &Table, entry: &Table, fs: &str, doc: &Value) -> Vec<String> {
    let k = &format!("{} on {fs}", name(entry));
    let mut failures = Vec::new();
    let empty = Vec::new();
    for s in doc["strategies"].as_array().unwrap_or(&empty) {
        let id = s["id"].as_str().unwrap_or("?");
        let Some(copies) = path(matrix, &["strategy", id, "copies"]) else {
            continue;
        };
        let expected: Vec<Expected> = copies
            .keys()
            .filter_map(|f| {
                expected_copy(matrix, entry, fs, &sink_name(doc, s), id, f).map(|(e, _)| e)
            })
            .collect();
        let incomplete = expected.iter().any(|e| {
            matches!(
                e,
                Expected::Multiple {
                    incomplete: true,
                    ..
                }
            )
        });
        let not_observable = expected.contains(&Expected::NotObservable);
        // A kernel may say a sink's socket sends cannot be observed ([kernel.sink.<sink>]).
        let sink = s["sink"].as_str().unwrap_or("?");
        let sink_unobservable = path(entry, &["sink", sink])
            .and_then(|t| t.get("socket_send"))
            .and_then(|v| v.as_str())
            == Some("not observable");
        for leg in s["ledger"].as_array().unwrap_or(&empty) {
            let balance = leg["balance"].as_str().unwrap_or("?");
            // A kernel may say a leg cannot balance on a filesystem, whatever the sink
            // ([kernel.fs.<fs>.ledger]: leg = "reason").
            let leg_name = leg["leg"].as_str().unwrap_or("?");
            let fs_incomplete = path(entry, &["fs", fs, "ledger"])
                .and_then(|t| t.get(leg_name))
                .is_some_and(|r| r.as_str().is_some_and(|r| !r.is_empty()));
            let allowed = match balance {
                "balanced" | "derived" => true,
                "incomplete" => incomplete || fs_incomplete,
                "excess" => incomplete,
                "not_observable" => {
                    not_observable || (sink_unobservable && leg["leg"] == "socket_send")
                }
                _ => false,
            };
            if !allowed {
                failures.push(format!(
                    "{k}: {id} (sink {}): ledger leg {} is {balance}: {}",
                    s["sink"], leg["leg"], leg["note"]
                ));
            }
        }
    }
    failures
}

/// Checks a `zc-trace probes --json` document against the kernel's entry: the attach method
/// of every hook it lists ("none": not observable) and the function guard (every probe-plan
/// function missing from the kernel's BTF is listed as absent on purpose, each listed one is
/// missing and is a plan function, and the kernel has BTF). Returns the failures.
pub fn check_probes(entry: &Table, fs: &str, doc: &Value) -> Vec<String> {
    let k = &format!("{} on {fs}", name(entry));
    let mut failures = Vec::new();
    let empty = Vec::new();
    let probes = doc["probes"].as_array().unwrap_or(&empty);
    // The kernel's methods, with its [kernel.fs.<fs>.methods] over them.
    let mut all_methods = path(entry, &["methods"]).cloned().unwrap_or_default();
    if let Some(on_fs) = path(entry, &["fs", fs, "methods"]) {
        all_methods.extend(on_fs.clone());
    }
    let methods = Some(&all_methods);
    for (hook, want) in methods.into_iter().flatten() {
        let Some(p) = probes.iter().find(|p| p["hook"] == hook.as_str()) else {
            failures.push(format!("{k}: hook {hook} is not in probes[]"));
            continue;
        };
        let got = p["method"].as_str().unwrap_or("none");
        if Some(got) != want.as_str() {
            failures.push(format!(
                "{k}: hook {hook}: expected {want}, got {got} (target {}; failed attempts: {})",
                p["target"], p["failed"]
            ));
        }
    }
    for p in probes {
        let hook = p["hook"].as_str().unwrap_or("?");
        if !methods.is_some_and(|m| m.contains_key(hook)) {
            failures.push(format!(
                "{k}: hook {hook} ({}) has no expected method in {FILE}: add it",
                p["method"]
            ));
        }
    }
    let no_absent = Table::new();
    let absent = entry
        .get("absent_functions")
        .and_then(|a| a.as_table())
        .unwrap_or(&no_absent);
    let functions = doc["functions"].as_array().unwrap_or(&empty);
    if functions.is_empty() {
        failures.push(format!(
            "{k}: the probes JSON lists no functions[] to guard"
        ));
    }
    for f in functions {
        let fname = f["function"].as_str().unwrap_or("?");
        match (f["in_btf"].as_bool(), absent.get(fname)) {
            (None, _) => failures.push(format!("{k}: {fname}: no kernel BTF to check against")),
            (Some(false), None) => failures.push(format!(
                "{k}: function {fname} (for {}) is missing from the kernel's BTF and not listed \
                 in [kernel.absent_functions] of {FILE}: list it with the reason, or fix the \
                 probe plan",
                f["hooks"]
            )),
            (Some(true), Some(reason)) => failures.push(format!(
                "{k}: function {fname} is listed as absent ({reason}) but is in the kernel's \
                 BTF: a stale entry"
            )),
            _ => {}
        }
        if let Some(why) = f["prototype_mismatch"].as_str() {
            failures.push(format!("{k}: function {fname}: {why}"));
        }
    }
    for (fname, reason) in absent {
        if !functions.iter().any(|f| f["function"] == fname.as_str()) {
            failures.push(format!(
                "{k}: function {fname} is listed as absent ({reason}) but is no probe-plan \
                 function: a stale entry"
            ));
        }
    }
    failures
}
