//! Checks over the source itself (no root, nothing run).
//!
//! The layers of `zc-trace/src`, one folder each (each folder's `mod.rs` says what it owns): a
//! module may use the layers below its own, never one above, so that there is no import cycle
//! between layers. `LAYERS` lists them from the bottom. And no import cycle between modules at
//! all, inside a layer too (`no_module_is_in_an_import_cycle`): following any chain of imports
//! never leads back where it started.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom first. `error` (the typed errors) is below all of them; `cli` (what clap parses)
/// and `main` are above all of them, with `cmd`.
/// `resources` (the undo registry, private directories, the leftover sweep) comes first: the
/// kernel layer registers what it mounts there.
const LAYERS: &[&str] = &["ui", "resources", "kernel", "transfer", "report", "cmd"];

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

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
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
fn no_layer_imports_a_layer_above_it() {
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
                found.insert(format!("{rel} uses crate::{first}::{second}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "imports from a layer above ({LAYERS:?}, bottom first): {found:#?}"
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

/// A module: its path from the crate root (`["report", "ledger"]`; the root is `[]`).
type Module = Vec<String>;

/// The module a source file is, from its path under `src/`.
fn module_of(rel: &Path) -> Module {
    let mut parts: Module = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "main") {
        parts.pop();
    }
    parts
}

/// `text` with comments and the contents of string and character literals taken out, so that
/// a path in a doc comment or a message is not read as an import.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A character literal ('x', '\n', '"'), not a lifetime ('a).
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                i += if b[i + 1] == b'\\' { 2 } else { 1 };
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// The tokens of code: identifiers, `::`, and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut id = c.to_string();
            while let Some(&n) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                id.push(n);
                chars.next();
            }
            out.push(id);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.push("::".into());
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out
}

/// Every path that starts at `crate`, `super` or `self` in `code`, `use` groups spread out
/// (`crate::a::{b, c::{d}}` is `crate::a::b` and `crate::a::c::d`).
fn rooted_paths(code: &str) -> Vec<Vec<String>> {
    /// Reads `ident (:: ident)* [:: { group }]` from `t[*i]`, prefixed by `prefix`.
    fn path(t: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut segs = prefix;
        loop {
            match t.get(*i).map(String::as_str) {
                Some("{") => {
                    *i += 1;
                    while *i < t.len() && t[*i] != "}" {
                        path(t, i, segs.clone(), out);
                        if t.get(*i).is_some_and(|s| s == ",") {
                            *i += 1;
                        } else if t.get(*i).is_some_and(|s| s != "}") {
                            *i += 1; // `as alias` and the like
                        }
                    }
                    *i += 1;
                    return;
                }
                Some(s) if s.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                    segs.push(s.to_string());
                    *i += 1;
                    if t.get(*i).is_some_and(|s| s == "::") {
                        *i += 1;
                        continue;
                    }
                    break;
                }
                _ => break,
            }
        }
        // `as ALIAS`
        if t.get(*i).is_some_and(|s| s == "as") {
            *i += 2;
        }
        out.push(segs);
    }
    let t = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let rooted = matches!(t[i].as_str(), "crate" | "super" | "self")
            && t.get(i + 1).is_some_and(|s| s == "::")
            && (i == 0 || t[i - 1] != "::");
        if rooted {
            path(&t, &mut i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// The module graph: for each module, the modules it uses (a parent's use of its own
/// submodules, which it declares and whose interface it is, is left out), each with the path
/// that shows it.
fn module_graph(files: &[(Module, String)]) -> BTreeMap<Module, BTreeMap<Module, String>> {
    let known: BTreeSet<&Module> = files.iter().map(|(m, _)| m).collect();
    // What a folder's mod.rs re-exports (`pub use child::{A, B}`): `super::A` in a sibling is
    // `child::A`.
    let mut reexports: BTreeMap<(Module, String), Module> = BTreeMap::new();
    for (m, text) in files {
        for line in code_only(text).lines() {
            let Some(rest) = line.trim().strip_prefix("pub use ") else {
                continue;
            };
            for p in rooted_paths(&format!("self::{rest}")) {
                if let [_, child, .., item] = p.as_slice() {
                    let mut target = m.clone();
                    target.push(child.clone());
                    if known.contains(&target) {
                        reexports.insert((m.clone(), item.clone()), target);
                    }
                }
            }
        }
    }
    let mut graph = BTreeMap::new();
    for (m, text) in files {
        let edges: &mut BTreeMap<Module, String> = graph.entry(m.clone()).or_default();
        for p in rooted_paths(&code_only(text)) {
            let mut abs: Module = Vec::new();
            let mut segs = p.iter().peekable();
            match segs.peek().map(|s| s.as_str()) {
                Some("crate") => {
                    segs.next();
                }
                Some("self") => {
                    segs.next();
                    abs = m.clone();
                }
                _ => {
                    abs = m.clone();
                    while segs.peek().is_some_and(|s| *s == "super") {
                        segs.next();
                        abs.pop();
                    }
                }
            }
            abs.extend(segs.cloned());
            let Some(n) = (0..=abs.len())
                .rev()
                .find(|n| known.contains(&abs[..*n].to_vec()))
            else {
                continue;
            };
            let mut target = abs[..n].to_vec();
            if let Some(item) = abs.get(n) {
                if let Some(t) = reexports.get(&(target.clone(), item.clone())) {
                    target = t.clone();
                }
            }
            if target.starts_with(m) {
                continue; // itself, or one of its own submodules
            }
            edges.entry(target).or_insert_with(|| p.join("::"));
        }
    }
    graph
}

/// The import cycles of `graph`: its strongly connected components of more than one module
/// (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<Module, BTreeMap<Module, String>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<Module, BTreeMap<Module, String>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a Module) {
        let i = w.index.len();
        w.index.insert(v, i);
        w.low.insert(v, i);
        w.stack.push(v);
        let graph = w.graph;
        for (u, _) in graph
            .get_key_value(v)
            .into_iter()
            .flat_map(|(_, e)| e.iter())
        {
            let Some((u, _)) = graph.get_key_value(u) else {
                continue;
            };
            if !w.index.contains_key(u) {
                visit(w, u);
                let low = w.low[v].min(w.low[u]);
                w.low.insert(v, low);
            } else if w.stack.contains(&u) {
                let low = w.low[v].min(w.index[u]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(u) = w.stack.pop() {
                component.push(u.clone());
                if u == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                w.out.push(component);
            }
        }
    }
    let mut w = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v) {
            visit(&mut w, v);
        }
    }
    w.out
}

#[test]
fn no_module_is_in_an_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    let files: Vec<(Module, String)> = paths
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap();
            (module_of(rel), std::fs::read_to_string(f).unwrap())
        })
        .collect();
    assert!(files.len() > 50, "the sources were not found");
    let graph = module_graph(&files);
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(edges > 100, "the imports were not read ({edges} edges)");
    let found = cycles(&graph);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let names: BTreeSet<&Module> = c.iter().collect();
            c.iter()
                .flat_map(|m| {
                    graph[m]
                        .iter()
                        .filter(|(u, _)| names.contains(u))
                        .map(move |(u, p)| format!("{} -> {} ({p})", m.join("::"), u.join("::")))
                })
                .collect::<Vec<_>>()
                .join("\n  ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles:\n  {}",
        shown.join("\n\n  ")
    );
}

/// The checker finds a cycle through a group, through `super::` and through a parent's
/// re-export, and none in a comment, a string or a parent's use of its children.
#[test]
fn the_cycle_check_sees_cycles_and_only_those() {
    let m = |s: &str| -> Module {
        s.split("::")
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()
    };
    let files = |list: &[(&str, &str)]| -> Vec<(Module, String)> {
        list.iter().map(|(n, t)| (m(n), t.to_string())).collect()
    };
    let one = files(&[
        ("", "mod a; mod b;"),
        ("a", "use crate::{b::{self, Thing as T}, c};"),
        ("b", "fn f() { super::a::g() }"),
        ("c", ""),
    ]);
    assert_eq!(cycles(&module_graph(&one)), vec![vec![m("a"), m("b")]]);
    let through_reexport = files(&[
        ("r", "pub use model::Report; fn f() { ledger::x() }"),
        ("r::model", "use super::ledger::Leg;"),
        ("r::ledger", "use super::Report;"),
    ]);
    assert_eq!(
        cycles(&module_graph(&through_reexport)),
        vec![vec![m("r::ledger"), m("r::model")]]
    );
    let none = files(&[
        (
            "a",
            "// use crate::b;\nlet s = \"crate::b::x\"; let c = '\"'; use crate::c::y;",
        ),
        ("b", "use crate::a::z; /* crate::b */"),
        ("c", "use super::d::q;"),
        ("p", "use self::kid::X; mod kid;"),
        ("p::kid", "use super::Y;"),
    ]);
    assert!(
        cycles(&module_graph(&none)).is_empty(),
        "{:?}",
        module_graph(&none)
    );
}
