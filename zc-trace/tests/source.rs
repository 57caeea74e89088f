//! Checks over the source itself (no root, nothing run).
//!
//! The layers of `zc-trace/src`, one folder each (each folder's `mod.rs` says what it owns): a
//! module may use the layers below its own, never one above, so that there is no import cycle
//! between layers. `LAYERS` lists them from the bottom. The imports that still go upward are
//! listed in `UPWARD`, each with what must move for it to go (#21); the test fails on any
//! other, and on a listed one that is gone, so the list can only shrink.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom first. `error` (the typed errors) is below all of them; `cli` (what clap parses)
/// and `main` are above all of them, with `cmd`.
/// `resources` (the undo registry, private directories, the leftover sweep) comes first: the
/// kernel layer registers what it mounts there.
const LAYERS: &[&str] = &["ui", "resources", "kernel", "transfer", "report", "cmd"];

/// (file, what it uses from a layer above): known, to be removed.
const UPWARD: &[(&str, &str)] = &[
    // The sweep refuses to judge makers outside the host's PID namespace, which
    // kernel::processes tells: the check belongs to the sweep, its /proc reading below both.
    ("resources/leftovers.rs", "kernel::processes"),
    // The sweep deletes a dead run's namespaces with the sink's code: namespace handling
    // (netns files, netlink in a namespace, twice now) belongs below both.
    ("resources/leftovers.rs", "transfer::sink"),
    // The measured run's configuration is a report type built by the transfer layer.
    ("transfer/measure.rs", "report"),
    ("transfer/measure.rs", "cli"),
    // The receiver and the measurement take their flags straight from clap's types: a flags
    // layer (what the program consumes, apart from what clap parses) goes between.
    ("transfer/receiver.rs", "cli"),
];

fn layer_of(name: &str) -> Option<usize> {
    match name {
        "error" => Some(0),
        "cli" | "main" => Some(LAYERS.len()),
        _ => LAYERS.iter().position(|l| *l == name).map(|i| i + 1),
    }
}

/// Every `crate::...` path in `text` outside comments, as its first segment and the rest.
fn crate_paths(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts = path.split("::").filter(|p| !p.is_empty());
            let first = parts.next().unwrap_or_default().to_string();
            let second = parts.next().unwrap_or_default().to_string();
            out.push((first, second));
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_layer_imports_a_layer_above_it_beyond_the_known_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut found = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let Some((own, _)) = rel.split_once('/') else {
            continue; // main.rs, cli.rs, error.rs
        };
        let own_level = layer_of(own).unwrap_or_else(|| panic!("{rel}: {own} is not a layer"));
        let text = std::fs::read_to_string(f).unwrap();
        for (first, second) in crate_paths(&text) {
            let Some(level) = layer_of(&first) else {
                panic!("{rel}: crate::{first} is in no layer: add it to LAYERS");
            };
            if level > own_level {
                let used = if first == "cli" || second.is_empty() {
                    first
                } else {
                    format!("{first}::{second}")
                };
                found.insert((rel.clone(), used));
            }
        }
    }
    let known: BTreeSet<(String, String)> = UPWARD
        .iter()
        .map(|(f, u)| (f.to_string(), u.to_string()))
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        new.is_empty(),
        "imports from a layer above ({LAYERS:?}, bottom first): {new:?}"
    );
    assert!(
        gone.is_empty(),
        "these upward imports are gone: take them off UPWARD: {gone:?}"
    );
}

#[test]
fn the_scanner_sees_paths_and_skips_comments() {
    let text = "use crate::transfer::sink::SinkKind; // crate::cmd::x\nlet a = crate::cli::Args;";
    assert_eq!(
        crate_paths(text),
        vec![
            ("transfer".into(), "sink".into()),
            ("cli".into(), "Args".into())
        ]
    );
}

/// The test binaries that must run alone (their header says "One test per binary": they watch
/// system-wide state, such as every eBPF program loaded or every namespace in /run/netns, that
/// a second test of the same binary, run in parallel, would change) hold exactly one test.
#[test]
fn isolated_test_binaries_hold_one_test_each() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut isolated = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .flat_map(|l| l.trim_start_matches("//!").split_whitespace())
            .collect::<Vec<_>>()
            .join(" ");
        if !header.contains("One test per binary") {
            continue;
        }
        isolated += 1;
        let tests = text.lines().filter(|l| l.trim() == "#[test]").count();
        assert_eq!(
            tests,
            1,
            "{} says one test per binary and has {tests}",
            p.display()
        );
    }
    assert!(
        isolated >= 6,
        "the isolated binaries were not found ({isolated})"
    );
}
