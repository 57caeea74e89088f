//! The Debian archives this machine's apt already uses, read from its own sources (the harness
//! names no archive host itself): the URI serving the host's `<codename>` suite is the main
//! archive, the one serving `<codename>-security` the security archive. The harness reuses them
//! for the suites of other releases (`trixie`, `trixie-updates`, `trixie-security`, ...).
//!
//! Read: `/etc/apt/sources.list` (one-line `deb [options] URI suite components`) and the
//! `*.list` and `*.sources` (deb822) files of `/etc/apt/sources.list.d/`. Files with other
//! names (`*.disabled`, `*.save`, ...) are ignored, as apt ignores them. The harness only reads
//! them: it resolves and downloads in private apt states (`private_apt`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::Result;

const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_PARTS: &str = "/etc/apt/sources.list.d";

/// The archive URIs, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archives {
    /// Serves `<codename>`, `<codename>-updates`, `<codename>-backports`.
    pub main: String,
    /// Serves `<codename>-security`.
    pub security: String,
}

/// The archives of this machine's apt configuration (read once per process).
pub fn archives() -> Result<&'static Archives> {
    static ARCHIVES: OnceLock<Result<Archives>> = OnceLock::new();
    ARCHIVES
        .get_or_init(|| {
            let codename = os_codename().ok_or(
                "cannot tell this machine's Debian release (no VERSION_CODENAME in \
                 /etc/os-release), so not which apt source is the Debian archive",
            )?;
            let files = source_files();
            let entries: Vec<Entry> = files
                .iter()
                .flat_map(|(path, text)| parse_file(path, text))
                .collect();
            let read: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
            find_archives(&entries, &codename).map_err(|e| {
                format!(
                    "{e} (read: {}); the VM tests fetch kernels from the archives this \
                     machine's apt already uses",
                    if read.is_empty() {
                        "no apt sources file".to_string()
                    } else {
                        read.join(", ")
                    }
                )
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `VERSION_CODENAME` of /etc/os-release ("bookworm").
pub fn os_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// (path, contents) of every sources file apt reads, sources.list first, then the parts in
/// name order.
fn source_files() -> Vec<(PathBuf, String)> {
    let mut paths = vec![PathBuf::from(SOURCES_LIST)];
    let mut parts: Vec<PathBuf> = std::fs::read_dir(SOURCES_PARTS)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    parts.sort();
    paths.extend(parts.into_iter().filter(|p| is_source_file(p)));
    paths
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

fn is_source_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".list") || n.ends_with(".sources"))
}

/// One (URI, suite) pair of a `deb` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uri: String,
    pub suite: String,
}

/// The `deb` entries of one sources file: deb822 for `*.sources`, one-line otherwise.
pub fn parse_file(path: &Path, text: &str) -> Vec<Entry> {
    if path.extension().is_some_and(|e| e == "sources") {
        parse_deb822(text)
    } else {
        parse_one_line(text)
    }
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`; `Enabled: no` stanzas skipped).
pub fn parse_deb822(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        let is_deb = get("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = get("Enabled").is_none_or(|e| !e.trim().eq_ignore_ascii_case("no"));
        if is_deb && enabled {
            for uri in get("URIs").unwrap_or("").split_whitespace() {
                for suite in get("Suites").unwrap_or("").split_whitespace() {
                    out.push(Entry {
                        uri: uri.trim_end_matches('/').to_string(),
                        suite: suite.to_string(),
                    });
                }
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            // A continuation line (multi-line values such as an inline Signed-By key).
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// One-line sources: `deb [options] URI suite [components...]`.
pub fn parse_one_line(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue; // deb-src
        }
        let mut rest = rest.trim_start();
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((_, after)) = opts.split_once(']') else {
                continue;
            };
            rest = after;
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(Entry {
                uri: uri.trim_end_matches('/').to_string(),
                suite: suite.trim_end_matches('/').to_string(),
            });
        }
    }
    out
}

/// The first URI serving `<codename>` and the first serving `<codename>-security`.
pub fn find_archives(entries: &[Entry], codename: &str) -> Result<Archives> {
    let serving = |suite: &str| {
        entries
            .iter()
            .find(|e| e.suite == suite)
            .map(|e| e.uri.clone())
            .ok_or_else(|| format!("no apt source of this machine serves the {suite} suite"))
    };
    Ok(Archives {
        main: serving(codename)?,
        security: serving(&format!("{codename}-security"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "http://mirror.example/debian";
    const SECURITY: &str = "http://mirror.example/debian-security";

    #[test]
    fn deb822_sources_are_read() {
        let text = format!(
            "Types: deb\n# a comment\nURIs: {MAIN}/\nSuites: bookworm bookworm-updates\n\
             Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n\
             Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm-security\n\n\
             Types: deb\nURIs: http://off.example/debian\nSuites: bookworm-security\nEnabled: no\n\n\
             Types: deb deb-src\nURIs: {SECURITY}\nSuites: bookworm-security\nComponents: main\n\
             Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
        );
        let entries = parse_file(Path::new("/x/debian.sources"), &text);
        let a = find_archives(&entries, "bookworm").unwrap();
        assert_eq!(a.main, MAIN);
        assert_eq!(a.security, SECURITY);
        assert_eq!(entries.len(), 3, "{entries:?}");
    }

    #[test]
    fn one_line_sources_are_read() {
        let text = format!(
            "# deb http://old.example/debian bookworm main\n\
             deb-src {MAIN} bookworm main\n\
             deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] {MAIN} bookworm main contrib\n\
             deb {SECURITY} bookworm-security main # trailing comment\n"
        );
        let entries = parse_file(Path::new("/x/sources.list"), &text);
        let a = find_archives(&entries, "bookworm").unwrap();
        assert_eq!(a.main, MAIN);
        assert_eq!(a.security, SECURITY);
        assert_eq!(entries.len(), 2, "{entries:?}");
    }

    #[test]
    fn a_missing_suite_is_a_clear_error() {
        let entries = parse_deb822(&format!("Types: deb\nURIs: {MAIN}\nSuites: bookworm\n"));
        let e = find_archives(&entries, "bookworm").unwrap_err();
        assert!(e.contains("serves the bookworm-security suite"), "{e}");
    }

    #[test]
    fn only_list_and_sources_files_count() {
        assert!(is_source_file(Path::new("/a/debian.sources")));
        assert!(is_source_file(Path::new("/a/x.list")));
        assert!(!is_source_file(Path::new("/a/x.list.disabled-by-farm")));
        assert!(!is_source_file(Path::new("/a/n.sources.disabled-by-farm")));
        assert!(!is_source_file(Path::new("/a/x.list.save")));
    }
}
