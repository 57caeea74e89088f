//! The HTML report (`zc-trace run --export-html FILE`) in a real browser: headless Chromium
//! takes a screenshot of the page (it must render, and not blank), and dumps the DOM it built,
//! whose numbers must be the JSON report's: every figure median of every strategy, in base
//! units, in its `data-strategy` / `data-key` element, and every diagram arrow's copy-site
//! bytes.
//!
//! Chromium is not installed: `cargo xtask test` unpacks it from this machine's Debian release
//! (`cargo xtask chromium` prints the folder) and passes the folder as `ZC_TRACE_CHROMIUM`; it
//! runs through a launcher there (its own loader and libraries). Needs root (BPF) and that
//! folder: outside CI the test skips, saying why; with CI=true a skip is a failure.
//! `ZC_TRACE_HTML_SCREENSHOT=PATH` keeps a copy of the screenshot.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{bin, bpf_available, strategy};

const STRATEGIES: &[&str] = &["read-write", "sendfile", "splice"];
/// How long one Chromium run may take.
const PATIENCE: Duration = Duration::from_secs(120);

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips the test (saying why) outside CI; fails it with CI=true.
fn skip(test: &str, why: &str) {
    let msg = format!("{test} {why}");
    if ci() {
        panic!("{msg}; with CI=true a skipped test is a failure");
    }
    eprintln!("skipping: {msg}");
}

/// The Chromium launcher, when the test can run: root (BPF), `ZC_TRACE_CHROMIUM`, and a
/// zc-trace whose `run` has `--export-html`.
fn chromium(test: &str) -> Option<PathBuf> {
    if !bpf_available(test) {
        return None;
    }
    let Some(root) = std::env::var_os("ZC_TRACE_CHROMIUM") else {
        skip(
            test,
            "needs headless Chromium: set ZC_TRACE_CHROMIUM to the folder `cargo xtask \
             chromium` prints (`cargo xtask test` sets it)",
        );
        return None;
    };
    let launcher = Path::new(&root).join("zc-trace-chromium");
    assert!(
        launcher.exists(),
        "{} is missing: ZC_TRACE_CHROMIUM must be the folder `cargo xtask chromium` prints",
        launcher.display()
    );
    let help = Command::new(bin())
        .args(["run", "--help"])
        .output()
        .expect("zc-trace run --help");
    if !String::from_utf8_lossy(&help.stdout).contains("--export-html") {
        skip(
            test,
            "needs `zc-trace run --export-html FILE`: --export-html not wired yet",
        );
        return None;
    }
    Some(launcher)
}

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("zc-trace-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs headless Chromium on `page` with `args`; returns its stdout. Its profile and HOME are
/// in `dir`, so nothing is written elsewhere; killed after `PATIENCE`.
fn headless(launcher: &Path, dir: &Path, page: &Path, args: &[String]) -> String {
    let mut c = Command::new(launcher);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        // The children start through the launcher (the zygote would start from the loader).
        "--no-zygote",
        "--no-first-run",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--browser-subprocess-path={}", launcher.display()))
    .arg(format!("--user-data-dir={}", dir.join("profile").display()))
    .args(args)
    .arg(format!("file://{}", page.display()))
    .env("HOME", dir)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", launcher.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} took more than {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap().unwrap_or_default();
    let stderr = err.join().unwrap().unwrap_or_default();
    assert!(
        status.success(),
        "chromium {args:?} failed ({status}):\nstderr:\n{stderr}"
    );
    stdout
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// An element found in the DOM: where it starts, its attributes (name -> value), its text up
/// to the next tag.
struct Element {
    at: usize,
    attrs: BTreeMap<String, String>,
    text: String,
}

/// Every element of `dom` that has `attr`. The DOM Chromium serializes quotes every attribute
/// with `"`.
fn elements_with(dom: &str, attr: &str) -> Vec<Element> {
    let needle = format!(" {attr}=\"");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = dom[from..].find(&needle) {
        let at = from + i;
        let start = dom[..at].rfind('<').expect("inside a tag");
        let end = at + dom[at..].find('>').expect("the tag ends");
        let tag = &dom[start + 1..end];
        let mut attrs = BTreeMap::new();
        let mut rest = tag.split_once(' ').map_or("", |(_, r)| r);
        while let Some((name, after)) = rest.split_once("=\"") {
            let (value, tail) = after.split_once('"').expect("a quoted value");
            attrs.insert(name.trim().to_string(), unescape(value));
            rest = tail;
        }
        let text_end = dom[end + 1..].find('<').map_or(dom.len(), |j| end + 1 + j);
        found.push(Element {
            at: start,
            attrs,
            text: unescape(&dom[end + 1..text_end]),
        });
        from = end;
    }
    found
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

#[test]
fn the_html_report_renders_and_its_numbers_are_the_json_reports() {
    let test = "html_report";
    let Some(launcher) = chromium(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let page = dir.0.join("report.html");
    let page_arg = page.display().to_string();
    let run = Command::new(bin())
        .args(["run", "--size", "1M", "--strategies"])
        .arg(STRATEGIES.join(","))
        .args(["--format", "json", "--no-fail", "--export-html", &page_arg])
        .output()
        .expect("zc-trace run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "zc-trace run failed:\n{stderr}");
    let json: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}); stderr:\n{stderr}"));
    let html = std::fs::read_to_string(&page)
        .unwrap_or_else(|e| panic!("--export-html wrote no page at {page_arg}: {e}"));
    // Nothing to fetch: no tag carries a URL.
    for tag in html
        .split('<')
        .skip(1)
        .map(|t| t.split('>').next().unwrap())
    {
        assert!(
            !tag.contains("http://") && !tag.contains("https://"),
            "the page refers to the network: <{tag}>"
        );
    }

    // The screenshot: the page renders, and something is drawn on it.
    let png_path = dir.0.join("report.png");
    headless(
        &launcher,
        &dir.0,
        &page,
        &[
            format!("--screenshot={}", png_path.display()),
            "--window-size=1200,2000".into(),
        ],
    );
    let png = std::fs::read(&png_path)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png_path.display()));
    assert_eq!(png_size(&png), (1200, 2000), "the screenshot's size");
    // A blank 1200x2000 page compresses to a few KB; boxes, arrows, bars and text do not.
    assert!(
        png.len() > 20 * 1024,
        "the screenshot is {} bytes: blank?",
        png.len()
    );
    if let Some(keep) = std::env::var_os("ZC_TRACE_HTML_SCREENSHOT") {
        std::fs::copy(&png_path, &keep)
            .unwrap_or_else(|e| panic!("{}: {e}", Path::new(&keep).display()));
    }

    // The DOM the browser built from the page.
    let dom = headless(&launcher, &dir.0, &page, &["--dump-dom".into()]);
    assert!(
        dom.contains("<svg class=\"diagram\""),
        "the DOM has no diagram:\n{dom}"
    );
    assert_eq!(
        dom.matches("<svg class=\"diagram\"").count(),
        STRATEGIES.len(),
        "one diagram per strategy"
    );
    for chart in ["chart-bytes", "chart-transitions"] {
        assert!(dom.contains(&format!("id=\"{chart}\"")), "no {chart}");
    }

    // Every figure of every strategy, and only those, with the JSON's median.
    let mut expected: BTreeMap<(String, String), Option<f64>> = BTreeMap::new();
    for id in STRATEGIES {
        let s = strategy(&json, id);
        for (key, f) in s["figures"].as_object().expect("figures") {
            let median = f["value"]["median"].as_f64();
            assert!(
                median.is_some() || f["value"].is_null(),
                "{id} {key}: {f:#}"
            );
            expected.insert((id.to_string(), key.clone()), median);
        }
    }
    let mut seen = BTreeMap::new();
    for Element { attrs, text, .. } in elements_with(&dom, "data-key") {
        let id = attrs["data-strategy"].clone();
        let key = attrs["data-key"].clone();
        let value = match text.trim() {
            "not observable" => None,
            t => Some(
                t.parse::<f64>()
                    .unwrap_or_else(|e| panic!("{id} {key}: '{t}' is not a number ({e})")),
            ),
        };
        assert!(
            seen.insert((id.clone(), key.clone()), value).is_none(),
            "{id} {key} twice in the page"
        );
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the page's (strategy, key) elements against the JSON's figures"
    );
    for (k, v) in &expected {
        assert_eq!(
            seen[k], *v,
            "{} {}: the page against the JSON report",
            k.0, k.1
        );
    }

    // Every arrow of a copy site carries that site's bytes of its class in the strategy whose
    // diagram it is in, as in the JSON.
    let mut arrows = 0;
    for Element { at, attrs, .. } in elements_with(&dom, "data-site") {
        let Some(bytes) = attrs.get("data-bytes") else {
            continue; // a site named as not observable, under a diagram
        };
        let (site, class) = (&attrs["data-site"], &attrs["data-class"]);
        let diagram = "<svg class=\"diagram\" data-strategy=\"";
        let i = dom[..at]
            .rfind(diagram)
            .expect("an arrow is inside a diagram")
            + diagram.len();
        let id = &dom[i..i + dom[i..].find('"').unwrap()];
        let json_bytes = strategy(&json, id)["copy_sites"]
            .as_array()
            .expect("copy_sites")
            .iter()
            .find(|c| c["site"] == site.as_str())
            .and_then(|c| c["bytes"][class]["median"].as_f64());
        let b: f64 = bytes.parse().expect("data-bytes is a number");
        assert!(
            b > 0.0 && json_bytes == Some(b),
            "{id}: arrow {site} {class} carries {b}, the JSON {json_bytes:?}"
        );
        arrows += 1;
    }
    // read+write: file_read k->u and tcp_send u->k; sendfile and splice: file_splice_read and
    // tcp_send by reference (at least these; more on kernels that see more).
    assert!(arrows >= 6, "{arrows} copy-site arrows in the page");
    eprintln!(
        "html_report: {} figures checked, {arrows} arrows, screenshot {} bytes",
        seen.len(),
        png.len()
    );
}
