//! The report as one self-contained HTML page: inline CSS and inline SVG, nothing fetched
//! (no fonts, scripts, images or links to load). It shows the run's header, per strategy a
//! data-path diagram like the seed article's figures (disk -> page cache -> user buffer ->
//! socket buffer -> NIC, and the receiver) whose arrows carry the measured bytes and say how
//! they moved, bar charts across strategies, the claims with their verdicts, and how every
//! figure was obtained. Every figure's median is also in the page as text, in base units, in an
//! element marked `data-strategy` / `data-key` (the JSON keys), so a test can check the page
//! against the JSON report. Every string from the report is HTML-escaped.

// Until `run --export-html FILE` calls `render`, only the tests do.

use std::fmt::Write;

use super::model::{
    Class, CopySiteReport, Figure, Provenance, Report, RowId, SiteId, StrategyReport, Unit,
};
use super::stat::Stat;
use crate::kernel::probes::Place;
use crate::report::claims::{Condition, Outcome};
use crate::transfer::sink::SinkKind;
use crate::transfer::strategies::StrategyId;
use crate::ui::units::{human_bytes, human_duration, human_rate};

/// The page.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let title = format!(
        "zc-trace report: kernel {}, payload {}",
        report.host.kernel,
        human_bytes(report.config.payload_bytes as f64)
    );
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    writeln!(out, "<title>{}</title>", esc(&title)).unwrap();
    writeln!(out, "<style>{CSS}</style>\n</head>\n<body>").unwrap();
    header(&mut out, report);
    diagrams(&mut out, report);
    charts(&mut out, report);
    figures_table(&mut out, report);
    claims(&mut out, report);
    provenance(&mut out, report);
    writeln!(
        out,
        "<footer>Written by zc-trace {}. This page is self-contained: it loads nothing from \
         anywhere.</footer>\n</body>\n</html>",
        esc(report.tool.version)
    )
    .unwrap();
    out
}

const CSS: &str = "
body{font-family:sans-serif;margin:1.5em auto;max-width:1180px;padding:0 1em;color:#1b1b1b;
background:#fff;line-height:1.35}
h1{font-size:1.6em;margin-bottom:.3em}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:1px solid #ccc;padding-bottom:.2em}h3{font-size:1.05em;margin:1.2em 0 .2em}
table{border-collapse:collapse;font-size:.86em;margin:.5em 0}
th,td{border:1px solid #d4d4d4;padding:.25em .45em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;white-space:nowrap}
.scroll{overflow-x:auto}.n{font-family:monospace}.h{color:#555;font-size:.9em}
.na{color:#777;font-style:italic}.incomplete{color:#a05a00}
.summary{color:#444;font-size:.9em;margin:.1em 0 .4em}.syscalls{font-size:.85em;color:#333}
.verdict-holds{background:#dff3e3;font-weight:bold}.verdict-differs{background:#fbe0dc;
font-weight:bold}.verdict-not_observable{background:#ececec}
.legend span{display:inline-block;margin-right:1.2em;font-size:.85em}
.swatch{display:inline-block;width:1.6em;height:.5em;margin-right:.35em;vertical-align:middle}
svg{display:block;max-width:100%;height:auto}svg text{font-family:sans-serif}
.box rect{stroke:#444;stroke-width:1.2}.box text{font-size:12px;text-anchor:middle}
.box .sub{font-size:10px;fill:#555}
.arrow text{font-size:11px;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
.arrow .site{font-size:10px;fill:#444}
.band{font-size:11px;fill:#666;font-style:italic}
.chart text{font-size:11px}.chart .axis{stroke:#999}
footer{margin-top:2.5em;font-size:.8em;color:#666}
";

// ---- escaping and numbers ------------------------------------------------------------------

/// `s` as HTML text or attribute value.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A value in base units, as the JSON report writes it: whole numbers as integers.
fn base(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A value in its unit, for people.
fn human(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => human_bytes(v),
        Unit::Ns => human_duration(v),
        Unit::BytesPerSec => human_rate(v),
        Unit::Count => base(v),
    }
}

/// A figure's median for people, with the spread when runs differ.
fn human_stat(unit: Unit, v: &Stat) -> String {
    if v.is_exact() {
        human(unit, v.median)
    } else {
        format!(
            "{} ({}..{})",
            human(unit, v.median),
            human(unit, v.min),
            human(unit, v.max)
        )
    }
}

/// The figure of `s` whose JSON key is `key` (read by name, so figures added to the model
/// later are found the same way).
fn figure<'a>(s: &'a StrategyReport, key: &str) -> Option<&'a Figure> {
    s.figures
        .columns()
        .into_iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, f)| f)
}

/// The median of a figure, None when not observable (or absent from the model).
fn median(s: &StrategyReport, key: &str) -> Option<f64> {
    figure(s, key)?.value.as_ref().map(|v| v.median)
}

fn why(f: Option<&Figure>) -> String {
    f.map_or("this figure is not in the report".into(), |f| {
        f.provenance.describe()
    })
}

// ---- 1. header -----------------------------------------------------------------------------

fn header(out: &mut String, report: &Report) {
    let c = &report.config;
    let h = &report.host;
    out.push_str("<header>\n<h1>zc-trace report</h1>\n<table class=\"meta\">\n");
    let mut row = |k: &str, v: String| {
        writeln!(out, "<tr><th>{}</th><td>{v}</td></tr>", esc(k)).unwrap();
    };
    row("zc-trace", esc(report.tool.version));
    row("Kernel", format!("{} ({})", esc(&h.kernel), esc(&h.arch)));
    row(
        "BTF",
        match (&h.btf, &h.btf_note) {
            (Some(p), None) => esc(&p.display().to_string()),
            (Some(p), Some(n)) => format!("{} ({})", esc(&p.display().to_string()), esc(n)),
            (None, Some(n)) => format!("none: {}", esc(n)),
            (None, None) => "none".into(),
        },
    );
    row(
        "Payload",
        format!(
            "{} (<span class=\"n\">{}</span> bytes): {}, {}, {}",
            esc(&human_bytes(c.payload_bytes as f64)),
            c.payload_bytes,
            esc(&c.source),
            esc(&c.source_fs),
            if c.cold {
                "evicted from the page cache before each run (--cold)"
            } else {
                "warm page cache"
            }
        ),
    );
    row(
        "Chunk",
        format!(
            "{} (<span class=\"n\">{}</span> bytes per transfer call)",
            esc(&human_bytes(c.chunk_bytes as f64)),
            c.chunk_bytes
        ),
    );
    row(
        "Iterations",
        format!(
            "{}{}",
            c.iterations,
            if c.iterations > 1 {
                " (medians shown, with min..max where runs differ)"
            } else {
                ""
            }
        ),
    );
    let sg = match c.sink_scatter_gather {
        Some(true) => "; scatter-gather on",
        Some(false) => "; scatter-gather off",
        None => "",
    };
    row(
        "Sink",
        format!(
            "{} ({}){sg}",
            esc(&c.sink_description),
            esc(c.sink.cli_name())
        ),
    );
    if let Some(d) = &c.sink_device {
        row(
            "Sink device",
            format!(
                "{} (driver {}; {}; {})",
                esc(&d.name),
                esc(d.driver.as_deref().unwrap_or("none")),
                if d.dma {
                    "reads frames by DMA"
                } else {
                    "no DMA"
                },
                esc(d.features.as_deref().unwrap_or("offloads unknown"))
            ),
        );
    }
    row(
        "Receiver",
        esc(c
            .receiver
            .as_deref()
            .unwrap_or("none (this sink has no receiver process)")),
    );
    if !c.skipped.is_empty() {
        let list: Vec<String> = c
            .skipped
            .iter()
            .map(|s| format!("{}: {}", esc(s.strategy.name()), esc(&s.reason)))
            .collect();
        row("Skipped", list.join("<br>"));
    }
    out.push_str("</table>\n</header>\n");
}

// ---- 2. data-path diagrams -----------------------------------------------------------------

/// A box of a diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Disk,
    PageCache,
    UserBuf,
    /// A pipe between the file and the sink (splice, sendfile's internal pipe).
    Pipe,
    /// Where the payload goes: a socket's buffers, the FIFO, the destination file's page
    /// cache, /dev/null.
    Sink,
    /// The copy of a frame's payload into its linear part (GSO or linearization without SG).
    Linear,
    /// The copy of a zero-copy send's pinned pages at local delivery.
    DeliveryCopy,
    Nic,
    /// The destination file's disk (a file sink's writes).
    DiskWrite,
    RecvBuf,
}

impl Node {
    /// Centre of the box in the diagram.
    fn centre(self) -> (f64, f64) {
        match self {
            Node::UserBuf => (335.0, 55.0),
            Node::RecvBuf => (850.0, 55.0),
            Node::PageCache => (110.0, 155.0),
            Node::Sink => (560.0, 155.0),
            Node::Pipe => (335.0, 218.0),
            Node::Linear | Node::DeliveryCopy => (800.0, 218.0),
            Node::Disk => (110.0, 310.0),
            Node::Nic | Node::DiskWrite => (560.0, 310.0),
        }
    }

    fn fill(self) -> &'static str {
        match self {
            Node::UserBuf | Node::RecvBuf => "#fff4d6",
            Node::Disk | Node::Nic | Node::DiskWrite => "#e3ecf7",
            _ => "#e6f2e6",
        }
    }

    /// Title and subtitle of the box.
    fn labels(self, report: &Report, s: &StrategyReport) -> (String, String) {
        let (title, sub): (&str, String) = match self {
            Node::Disk => ("Disk", format!("source file ({})", report.config.source_fs)),
            Node::PageCache => ("Page cache", "source file".into()),
            Node::UserBuf => ("User buffer", "sender process".into()),
            Node::Pipe => ("Pipe", "kernel pipe buffer".into()),
            Node::Sink => match s.sink {
                SinkKind::Tcp => ("Socket buffer", "TCP over loopback".into()),
                SinkKind::Veth => ("Socket buffer", "TCP over veth".into()),
                SinkKind::Remote => ("Socket buffer", "TCP to another host".into()),
                SinkKind::Unix => ("Socket buffer", "UNIX stream".into()),
                SinkKind::Pipe => ("FIFO", "the sink pipe".into()),
                SinkKind::File => ("Page cache", "destination file".into()),
                SinkKind::Null => ("/dev/null", "discards".into()),
            },
            Node::Linear => ("Linear copy", "segmentation without SG".into()),
            Node::DeliveryCopy => ("Copied pages", "local delivery".into()),
            Node::Nic => (
                "NIC",
                match report
                    .config
                    .sink_device
                    .as_ref()
                    .filter(|_| s.sink == report.config.sink)
                {
                    Some(d) => format!("{} ({})", d.name, d.driver.as_deref().unwrap_or("virtual")),
                    None => "none on this route".into(),
                },
            ),
            Node::DiskWrite => ("Disk", "destination file".into()),
            Node::RecvBuf => ("Receiver buffer", "receiver process".into()),
        };
        (title.to_string(), sub)
    }
}

/// How an arrow's bytes moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Cpu,
    ByReference,
    Dma,
    /// Nothing moved where the article has a step (e.g. no disk read with a warm cache).
    Zero,
    NotObservable,
}

impl How {
    fn class(self) -> &'static str {
        match self {
            How::Cpu => "cpu",
            How::ByReference => "byref",
            How::Dma => "dma",
            How::Zero => "zero",
            How::NotObservable => "not-observable",
        }
    }

    fn label(self) -> &'static str {
        match self {
            How::Cpu => "CPU copy",
            How::ByReference => "by reference",
            How::Dma => "DMA",
            How::Zero => "",
            How::NotObservable => "not observable",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            How::Cpu => "#c0392b",
            How::ByReference => "#2471a3",
            How::Dma => "#1e8449",
            How::Zero => "#999999",
            How::NotObservable => "#999999",
        }
    }

    fn dash(self) -> &'static str {
        match self {
            How::ByReference => " stroke-dasharray=\"7 4\"",
            How::Zero => " stroke-dasharray=\"2 3\"",
            How::NotObservable => " stroke-dasharray=\"1 4\"",
            _ => "",
        }
    }
}

const HOWS: [How; 5] = [
    How::Cpu,
    How::ByReference,
    How::Dma,
    How::Zero,
    How::NotObservable,
];

/// One arrow of a diagram.
#[derive(Debug, Clone)]
struct Arrow {
    from: Node,
    to: Node,
    how: How,
    bytes: Option<f64>,
    /// What made it, under the bytes (a copy site and class, or a figure).
    what: String,
    /// The tooltip: where the number comes from, or why there is none.
    title: String,
    /// `data-*` attributes: the site and class, or the figure.
    data: Vec<(&'static str, String)>,
}

/// The byte classes of a copy site: (class, short label, how).
const CLASSES: [(Class, &str, How); 4] = [
    (Class::UserToKernel, "u->k", How::Cpu),
    (Class::KernelToUser, "k->u", How::Cpu),
    (Class::KernelToKernel, "k->k", How::Cpu),
    (Class::ByReference, "by ref", How::ByReference),
];

/// Where a copy site's bytes of one class went in the diagram: (from, to). `via_pipe`: the
/// strategy's file pages went into a pipe first (splice, sendfile), so what enters the sink
/// from the kernel comes from there.
fn route(place: Place, class: Class, via_pipe: bool, sink: SinkKind) -> (Node, Node) {
    use Class::{ByReference, KernelToKernel, KernelToUser, UserToKernel};
    let kernel_source = if via_pipe {
        Node::Pipe
    } else {
        Node::PageCache
    };
    // write()/read() on a pipe: the sink itself when the sink is a FIFO.
    let pipe = if sink == SinkKind::Pipe {
        Node::Sink
    } else {
        Node::Pipe
    };
    match (place, class) {
        (Place::FileRead, KernelToUser) => (Node::PageCache, Node::UserBuf),
        (Place::FileRead, UserToKernel) => (Node::UserBuf, Node::PageCache),
        (Place::FileRead, KernelToKernel | ByReference) | (Place::FileSplice, _) => {
            (Node::PageCache, Node::Pipe)
        }
        (Place::PipeWrite, KernelToKernel) => (Node::PageCache, pipe),
        (Place::PipeWrite, KernelToUser) => (pipe, Node::UserBuf),
        (Place::PipeWrite, UserToKernel | ByReference) => (Node::UserBuf, pipe),
        (Place::PipeRead, UserToKernel) => (Node::UserBuf, pipe),
        (Place::PipeRead, KernelToKernel) => (pipe, Node::Sink),
        (Place::PipeRead, KernelToUser | ByReference) => (pipe, Node::UserBuf),
        (Place::NicLinearize, _) => (Node::Sink, Node::Linear),
        (Place::Delivery, _) => (Node::Sink, Node::DeliveryCopy),
        // The sink's sites: sockets and file writes.
        (Place::SocketSend | Place::FileWrite | Place::SocketReceive, UserToKernel) => {
            (Node::UserBuf, Node::Sink)
        }
        (Place::SocketSend | Place::FileWrite | Place::SocketReceive, KernelToUser) => {
            (Node::Sink, Node::UserBuf)
        }
        // Page references enter the sink from the pipe they were spliced into or, without a
        // pipe, from the page cache (a mapping of the file: MSG_ZEROCOPY, vmsplice).
        (
            Place::SocketSend | Place::FileWrite | Place::SocketReceive,
            KernelToKernel | ByReference,
        ) => (kernel_source, Node::Sink),
    }
}

/// Whether a copy site can carry payload to this sink (the model's rule for its totals).
fn site_relevant(site: SiteId, sink: SinkKind) -> bool {
    match site {
        SiteId::Hook(h) => super::sites::relevant(h, sink),
        SiteId::ZerocopyCompletion => true,
    }
}

/// The arrows of a strategy's diagram, and its copy sites that are not observable here.
fn arrows<'a>(report: &Report, s: &'a StrategyReport) -> (Vec<Arrow>, Vec<&'a CopySiteReport>) {
    let mut arrows = Vec::new();
    let via_pipe = s.copy_sites.iter().any(|c| {
        c.site.place() == Place::FileSplice
            && c.bytes
                .as_ref()
                .is_some_and(|b| CLASSES.iter().any(|(k, _, _)| b.get(*k).median != 0.0))
    });
    let mut hidden = Vec::new();
    for c in &s.copy_sites {
        let Some(b) = &c.bytes else {
            if site_relevant(c.site, s.sink) {
                hidden.push(c);
            }
            continue;
        };
        for (class, short, how) in CLASSES {
            let v = b.get(class);
            if v.median == 0.0 {
                continue;
            }
            let (from, to) = route(c.site.place(), class, via_pipe, s.sink);
            arrows.push(Arrow {
                from,
                to,
                how,
                bytes: Some(v.median),
                what: format!("{} {short}", c.site),
                title: format!(
                    "{} ({}): {class} {} bytes{}; {}",
                    c.site,
                    c.description,
                    base(v.median),
                    if v.is_exact() {
                        String::new()
                    } else {
                        format!(" (min {} .. max {})", base(v.min), base(v.max))
                    },
                    c.provenance.describe()
                ),
                data: vec![
                    ("site", c.site.to_string()),
                    ("class", class.to_string()),
                    ("bytes", base(v.median)),
                ],
            });
        }
    }

    // Disk -> page cache (O_DIRECT: straight into the user buffer), by DMA.
    let to = if s.id == RowId::Strategy(StrategyId::Odirect) {
        Node::UserBuf
    } else {
        Node::PageCache
    };
    let zero_why = if report.config.cold {
        "no block read was submitted"
    } else {
        "warm page cache, no disk read (try --cold)"
    };
    arrows.push(figure_arrow(
        s,
        &["device_read_bytes"],
        Node::Disk,
        to,
        zero_why,
        "disk read",
    ));
    if s.sink == SinkKind::File && median(s, "device_write_bytes").is_some_and(|v| v != 0.0) {
        arrows.push(figure_arrow(
            s,
            &["device_write_bytes"],
            Node::Sink,
            Node::DiskWrite,
            "",
            "disk write",
        ));
    }
    if matches!(s.sink, SinkKind::Tcp | SinkKind::Veth | SinkKind::Remote) {
        arrows.push(figure_arrow(
            s,
            &["nic_transmit_linear_bytes", "nic_transmit_frag_bytes"],
            Node::Sink,
            Node::Nic,
            "nothing was handed to a device",
            "NIC transmit",
        ));
    }
    // The receiver process, where there is one here.
    let receiver = figure(s, "receiver_copied_bytes");
    let has_receiver = receiver.is_some_and(|f| f.value.is_some())
        || (report.config.receiver.is_some()
            && s.sink == report.config.sink
            && s.sink != SinkKind::Remote);
    if has_receiver {
        let mut a = figure_arrow(
            s,
            &["receiver_copied_bytes"],
            Node::Sink,
            Node::RecvBuf,
            "the receiver took the data without a copy",
            "receive",
        );
        if a.how == How::Dma {
            a.how = How::Cpu;
        }
        arrows.push(a);
    }
    (arrows, hidden)
}

/// An arrow carrying the sum of figures `keys` (how: DMA, except the receiver's copy): not
/// observable when any is, "0 B" (with `zero_why`) when they sum to 0.
fn figure_arrow(
    s: &StrategyReport,
    keys: &[&str],
    from: Node,
    to: Node,
    zero_why: &str,
    what: &str,
) -> Arrow {
    let mut sum = Some(0.0);
    let mut titles = Vec::new();
    for k in keys {
        let f = figure(s, k);
        let v = f.and_then(|f| f.value.as_ref());
        titles.push(format!(
            "{k}: {}; {}",
            v.map_or("not observable".into(), |v| format!(
                "{} bytes",
                base(v.median)
            )),
            why(f)
        ));
        sum = match (sum, v) {
            (Some(a), Some(v)) => Some(a + v.median),
            _ => None,
        };
    }
    let how = match sum {
        None => How::NotObservable,
        Some(0.0) => How::Zero,
        Some(_) => How::Dma,
    };
    let what = match how {
        How::Zero if !zero_why.is_empty() => zero_why.to_string(),
        _ if keys.len() > 1 => format!(
            "{what} ({})",
            keys.iter()
                .map(|k| {
                    let v = median(s, k);
                    let part = k
                        .trim_start_matches("nic_transmit_")
                        .trim_end_matches("_bytes");
                    format!("{part} {}", v.map_or("-".into(), human_bytes))
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => what.to_string(),
    };
    let mut data = vec![("figure", keys.join("+"))];
    if let Some(v) = sum {
        data.push(("bytes", base(v)));
    }
    Arrow {
        from,
        to,
        how,
        bytes: sum,
        what,
        title: titles.join("\n"),
        data,
    }
}

const BOX_W: f64 = 150.0;
const BOX_H: f64 = 44.0;
const DIAGRAM_W: f64 = 960.0;
const DIAGRAM_H: f64 = 350.0;

/// Where the segment from the centre of a box towards (dx, dy) leaves the box, plus a gap.
fn edge(c: (f64, f64), dx: f64, dy: f64) -> (f64, f64) {
    let len = (dx * dx + dy * dy).sqrt().max(1e-9);
    let tx = if dx == 0.0 {
        f64::INFINITY
    } else {
        (BOX_W / 2.0) / dx.abs()
    };
    let ty = if dy == 0.0 {
        f64::INFINITY
    } else {
        (BOX_H / 2.0) / dy.abs()
    };
    let t = tx.min(ty) + 4.0 / len;
    (c.0 + dx * t, c.1 + dy * t)
}

/// Where an arrow's two label lines go, clear of the line: (x, y of the first line, anchor).
/// Beside a vertical arrow, near its lower end (the middle of the kernel band is busy); above
/// a horizontal one; to the left of a slanted one, on the side it moves away from.
/// `right`: the right-hand free side of a slanted arrow instead (O_DIRECT's disk read passes
/// the page cache on its left).
fn label_place(x1: f64, y1: f64, x2: f64, y2: f64, right: bool) -> (f64, f64, &'static str) {
    let (dx, dy) = (x2 - x1, y2 - y1);
    let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let rising = (dx > 0.0) == (dy < 0.0);
    if dx.abs() < 1.0 {
        (mx + 8.0, y1.max(y2) - 26.0, "start")
    } else if dy.abs() < 1.0 {
        (mx, my - 17.0, "middle")
    } else if right && rising {
        (mx + 6.0, my + 14.0, "start")
    } else if right {
        (mx + 6.0, my - 16.0, "start")
    } else if rising {
        // Rising to the right: the line is below the text on its left.
        (mx - 6.0, my - 16.0, "end")
    } else {
        // Falling to the right: the line is above the text on its left.
        (mx - 6.0, my + 14.0, "end")
    }
}

fn diagrams(out: &mut String, report: &Report) {
    out.push_str("<section id=\"diagrams\">\n<h2>Where the bytes went</h2>\n");
    out.push_str(
        "<p>Per strategy, the path of the payload as the seed article draws it, with what was \
         measured on each step (medians; hover an arrow for its source). Boxes without an \
         arrow were not touched.</p>\n<p class=\"legend\">",
    );
    for how in HOWS {
        let label = match how {
            How::Zero => "0 B where the article has a step",
            How::NotObservable => "not observable here",
            h => h.label(),
        };
        write!(
            out,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
            how.colour(),
            label
        )
        .unwrap();
    }
    out.push_str("</p>\n");
    for (i, s) in report.strategies.iter().enumerate() {
        writeln!(
            out,
            "<article class=\"strategy\" id=\"strategy-{}\">\n<h3>{} <span class=\"h\">({})</span></h3>\n\
             <p class=\"summary\">{}</p>",
            esc(s.id.name()),
            esc(s.name),
            esc(s.id.name()),
            esc(s.summary)
        )
        .unwrap();
        diagram(out, report, s, i);
        let calls: Vec<String> = s
            .syscalls_by_name
            .iter()
            .map(|(name, f)| format!("{} {}", esc(name), base(f.count.median)))
            .collect();
        writeln!(
            out,
            "<p class=\"syscalls\">Syscalls (sender): {}</p>\n</article>",
            if calls.is_empty() {
                "none".into()
            } else {
                calls.join(", ")
            }
        )
        .unwrap();
    }
    out.push_str("</section>\n");
}

fn diagram(out: &mut String, report: &Report, s: &StrategyReport, index: usize) {
    let (arrows, hidden) = arrows(report, s);
    let id = format!("d{index}");
    writeln!(
        out,
        "<svg class=\"diagram\" data-strategy=\"{}\" viewBox=\"0 0 {DIAGRAM_W} {DIAGRAM_H}\" \
         width=\"{DIAGRAM_W}\" height=\"{DIAGRAM_H}\" role=\"img\" aria-label=\"data path of {}\">",
        esc(s.id.name()),
        esc(s.name)
    )
    .unwrap();
    out.push_str("<defs>");
    for how in HOWS {
        write!(
            out,
            "<marker id=\"{id}-{}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
             markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" \
             fill=\"{}\"/></marker>",
            how.class(),
            how.colour()
        )
        .unwrap();
    }
    out.push_str("</defs>\n");
    // Bands: user space, kernel, hardware.
    for (y, h, label, fill) in [
        (4.0, 98.0, "user space", "#fffcf3"),
        (108.0, 150.0, "kernel", "#f6fbf6"),
        (264.0, 82.0, "hardware", "#f5f8fc"),
    ] {
        writeln!(
            out,
            "<rect x=\"2\" y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{fill}\" stroke=\"#ddd\"/>\
             <text class=\"band\" x=\"8\" y=\"{}\">{label}</text>",
            DIAGRAM_W - 4.0,
            y + 13.0
        )
        .unwrap();
    }
    // Boxes: the article's chain always, the others where an arrow touches them.
    let mut nodes = vec![Node::Disk, Node::PageCache, Node::UserBuf, Node::Sink];
    for a in &arrows {
        for n in [a.from, a.to] {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
    }
    // The two copies off the socket buffer share a place; rarely both are there.
    let both = nodes.contains(&Node::Linear) && nodes.contains(&Node::DeliveryCopy);
    let centre = |n: Node| {
        if both && n == Node::DeliveryCopy {
            (800.0, 155.0)
        } else {
            n.centre()
        }
    };
    for n in &nodes {
        let (cx, cy) = centre(*n);
        let (title, sub) = n.labels(report, s);
        writeln!(
            out,
            "<g class=\"box\" data-node=\"{:?}\"><rect x=\"{}\" y=\"{}\" width=\"{BOX_W}\" \
             height=\"{BOX_H}\" rx=\"6\" fill=\"{}\"/><text x=\"{cx}\" y=\"{}\">{}</text>\
             <text class=\"sub\" x=\"{cx}\" y=\"{}\">{}</text></g>",
            n,
            cx - BOX_W / 2.0,
            cy - BOX_H / 2.0,
            n.fill(),
            cy - 3.0,
            esc(&title),
            cy + 12.0,
            esc(&sub)
        )
        .unwrap();
    }
    // Arrows; parallel ones (same two boxes) side by side.
    for (i, a) in arrows.iter().enumerate() {
        let pair = |x: &Arrow| {
            if (x.from as u8) < (x.to as u8) {
                (x.from as u8, x.to as u8)
            } else {
                (x.to as u8, x.from as u8)
            }
        };
        let siblings: Vec<usize> = arrows
            .iter()
            .enumerate()
            .filter(|(_, x)| pair(x) == pair(a))
            .map(|(j, _)| j)
            .collect();
        let k = siblings.iter().position(|&j| j == i).unwrap_or(0) as f64;
        let offset = (k - (siblings.len() as f64 - 1.0) / 2.0) * 30.0;
        let (c1, c2) = (centre(a.from), centre(a.to));
        let (dx, dy) = (c2.0 - c1.0, c2.1 - c1.1);
        let len = (dx * dx + dy * dy).sqrt().max(1e-9);
        let (nx, ny) = (-dy / len * offset, dx / len * offset);
        let p1 = edge(c1, dx, dy);
        let p2 = edge(c2, -dx, -dy);
        let (x1, y1, x2, y2) = (p1.0 + nx, p1.1 + ny, p2.0 + nx, p2.1 + ny);
        let (lx, ly, anchor) = label_place(x1, y1, x2, y2, a.from == Node::Disk);
        let amount = match (a.how, a.bytes) {
            (How::NotObservable, _) | (_, None) => "not observable".to_string(),
            (How::Zero, Some(v)) => human_bytes(v),
            (how, Some(v)) => format!("{}: {}", how.label(), human_bytes(v)),
        };
        let data: String = a
            .data
            .iter()
            .map(|(k, v)| format!(" data-{k}=\"{}\"", esc(v)))
            .collect();
        writeln!(
            out,
            "<g class=\"arrow {}\"{data}><title>{}</title><line x1=\"{x1:.1}\" y1=\"{y1:.1}\" \
             x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{}\" stroke-width=\"{}\"{} \
             marker-end=\"url(#{id}-{})\"/><text x=\"{lx:.1}\" y=\"{ly:.1}\" \
             text-anchor=\"{anchor}\" fill=\"{}\">{}</text><text class=\"site\" x=\"{lx:.1}\" \
             y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text></g>",
            a.how.class(),
            esc(&a.title),
            a.how.colour(),
            if matches!(a.how, How::Cpu | How::Dma) {
                "2.5"
            } else {
                "1.8"
            },
            a.how.dash(),
            a.how.class(),
            a.how.colour(),
            esc(&amount),
            ly + 12.0,
            esc(&a.what)
        )
        .unwrap();
    }
    // Copy sites of this sink's path that cannot be seen here.
    if !hidden.is_empty() {
        write!(
            out,
            "<text class=\"na\" x=\"8\" y=\"{}\" font-size=\"11\" fill=\"#777\">copy sites not \
             observable here:",
            DIAGRAM_H - 4.0
        )
        .unwrap();
        for c in &hidden {
            write!(
                out,
                " <tspan data-site=\"{}\">{}<title>{}</title></tspan>",
                esc(c.site.name()),
                esc(c.site.name()),
                esc(&c.provenance.describe())
            )
            .unwrap();
        }
        out.push_str("</text>\n");
    }
    out.push_str("</svg>\n");
}

// ---- 3. charts -----------------------------------------------------------------------------

const CHART_W: f64 = 960.0;
const LABEL_W: f64 = 190.0;
const BAR_W: f64 = 560.0;

/// The byte classes of the CPU-copied bar: (figure key, label, colour).
const COPY_PARTS: [(&str, &str, &str); 3] = [
    (
        "copied_user_to_kernel_bytes",
        "CPU copied user->kernel",
        "#c0392b",
    ),
    (
        "copied_kernel_to_user_bytes",
        "CPU copied kernel->user",
        "#e67e22",
    ),
    (
        "copied_kernel_to_kernel_bytes",
        "CPU copied kernel->kernel",
        "#8e44ad",
    ),
];
const BY_REF_COLOUR: &str = "#2471a3";

fn charts(out: &mut String, report: &Report) {
    out.push_str("<section id=\"charts\">\n<h2>Across strategies</h2>\n");
    bytes_chart(out, report);
    transitions_chart(out, report);
    out.push_str("</section>\n");
}

fn bar(x: f64, y: f64, w: f64, h: f64, fill: &str, title: &str) -> String {
    format!(
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h}\" fill=\"{fill}\">\
         <title>{}</title></rect>",
        w.max(0.0),
        esc(title)
    )
}

fn axis(out: &mut String, top: f64, bottom: f64, max: f64, fmt: &dyn Fn(f64) -> String) {
    for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let x = LABEL_W + q * BAR_W;
        write!(
            out,
            "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" \
             stroke-dasharray=\"{}\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" \
             fill=\"#666\">{}</text>",
            if q == 0.0 { "none" } else { "2 3" },
            bottom + 13.0,
            esc(&fmt(max * q))
        )
        .unwrap();
    }
    out.push('\n');
}

fn bytes_chart(out: &mut String, report: &Report) {
    let rows = report.strategies.len() as f64;
    let row_h = 46.0;
    let top = 10.0;
    let height = top + rows * row_h + 24.0;
    let max = report
        .strategies
        .iter()
        .flat_map(|s| {
            [
                median(s, "cpu_copied_bytes"),
                median(s, "by_reference_bytes"),
            ]
        })
        .flatten()
        .fold(0.0f64, f64::max)
        .max(1.0);
    out.push_str("<h3>Bytes the CPU copied and bytes passed by reference (sender)</h3>\n");
    out.push_str("<p class=\"legend\">");
    for (_, label, colour) in COPY_PARTS {
        write!(
            out,
            "<span><span class=\"swatch\" style=\"background:{colour}\"></span>{label}</span>"
        )
        .unwrap();
    }
    writeln!(
        out,
        "<span><span class=\"swatch\" style=\"background:{BY_REF_COLOUR}\"></span>by reference \
         (into the socket)</span></p>"
    )
    .unwrap();
    writeln!(
        out,
        "<svg class=\"chart\" id=\"chart-bytes\" viewBox=\"0 0 {CHART_W} {height}\" \
         width=\"{CHART_W}\" height=\"{height}\" role=\"img\" aria-label=\"bytes copied by the \
         CPU and passed by reference, per strategy\">"
    )
    .unwrap();
    axis(out, top, top + rows * row_h, max, &|v| {
        human_bytes(v.round())
    });
    let scale = |v: f64| v / max * BAR_W;
    for (i, s) in report.strategies.iter().enumerate() {
        let y = top + i as f64 * row_h;
        write!(
            out,
            "<g data-strategy=\"{}\"><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            esc(s.id.name()),
            LABEL_W - 8.0,
            y + 25.0,
            esc(s.name)
        )
        .unwrap();
        // CPU copied: stacked by class, or the total alone when a class is not observable.
        let total = figure(s, "cpu_copied_bytes");
        let bar_y = y + 4.0;
        match total.and_then(|f| f.value.as_ref()) {
            None => write!(
                out,
                "<text class=\"na\" x=\"{}\" y=\"{:.1}\" fill=\"#777\">CPU copied: not \
                 observable<title>{}</title></text>",
                LABEL_W + 4.0,
                bar_y + 12.0,
                esc(&why(total))
            )
            .unwrap(),
            Some(v) => {
                let parts: Option<Vec<(f64, &str, &str)>> = COPY_PARTS
                    .iter()
                    .map(|(k, label, colour)| median(s, k).map(|m| (m, *label, *colour)))
                    .collect();
                let mut x = LABEL_W;
                match parts {
                    Some(parts) if parts.iter().map(|p| p.0).sum::<f64>() == v.median => {
                        for (m, label, colour) in parts {
                            let title = format!("{label}: {} bytes", base(m));
                            out.push_str(&bar(x, bar_y, scale(m), 16.0, colour, &title));
                            x += scale(m);
                        }
                    }
                    _ => {
                        let title = format!("CPU copied: {} bytes", base(v.median));
                        out.push_str(&bar(x, bar_y, scale(v.median), 16.0, "#c0392b", &title));
                        x += scale(v.median);
                    }
                }
                let incomplete =
                    total.is_some_and(|f| matches!(f.provenance, Provenance::Incomplete { .. }));
                write!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\">CPU copied {}{}</text>",
                    x + 6.0,
                    bar_y + 12.0,
                    esc(&human_stat(Unit::Bytes, v)),
                    if incomplete { " (incomplete)" } else { "" }
                )
                .unwrap();
            }
        }
        let by_ref = figure(s, "by_reference_bytes");
        let ref_y = y + 24.0;
        match by_ref.and_then(|f| f.value.as_ref()) {
            None => write!(
                out,
                "<text class=\"na\" x=\"{}\" y=\"{:.1}\" fill=\"#777\">by reference: not \
                 observable<title>{}</title></text>",
                LABEL_W + 4.0,
                ref_y + 12.0,
                esc(&why(by_ref))
            )
            .unwrap(),
            Some(v) => {
                let w = scale(v.median);
                let title = format!("by reference: {} bytes", base(v.median));
                out.push_str(&bar(LABEL_W, ref_y, w, 16.0, BY_REF_COLOUR, &title));
                write!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\">by reference {}</text>",
                    LABEL_W + w + 6.0,
                    ref_y + 12.0,
                    esc(&human_stat(Unit::Bytes, v))
                )
                .unwrap();
            }
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
}

fn transitions_chart(out: &mut String, report: &Report) {
    let rows = report.strategies.len() as f64;
    let row_h = 26.0;
    let top = 10.0;
    let height = top + rows * row_h + 24.0;
    let max = report
        .strategies
        .iter()
        .filter_map(|s| median(s, "transitions"))
        .fold(0.0f64, f64::max)
        .max(1.0);
    out.push_str("<h3>User&lt;-&gt;kernel transitions (sender)</h3>\n");
    writeln!(
        out,
        "<svg class=\"chart\" id=\"chart-transitions\" viewBox=\"0 0 {CHART_W} {height}\" \
         width=\"{CHART_W}\" height=\"{height}\" role=\"img\" aria-label=\"user/kernel \
         transitions per strategy\">"
    )
    .unwrap();
    axis(out, top, top + rows * row_h, max, &|v| base(v.round()));
    for (i, s) in report.strategies.iter().enumerate() {
        let y = top + i as f64 * row_h;
        write!(
            out,
            "<g data-strategy=\"{}\"><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            esc(s.id.name()),
            LABEL_W - 8.0,
            y + 16.0,
            esc(s.name)
        )
        .unwrap();
        let f = figure(s, "transitions");
        match f.and_then(|f| f.value.as_ref()) {
            None => write!(
                out,
                "<text class=\"na\" x=\"{}\" y=\"{:.1}\" fill=\"#777\">not observable\
                 <title>{}</title></text>",
                LABEL_W + 4.0,
                y + 16.0,
                esc(&why(f))
            )
            .unwrap(),
            Some(v) => {
                let w = v.median / max * BAR_W;
                let title = format!("{} transitions", base(v.median));
                out.push_str(&bar(LABEL_W, y + 4.0, w, 16.0, "#5d6d7e", &title));
                write!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    LABEL_W + w + 6.0,
                    y + 16.0,
                    esc(&human_stat(Unit::Count, v))
                )
                .unwrap();
            }
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
}

// ---- the exact figures ---------------------------------------------------------------------

fn figures_table(out: &mut String, report: &Report) {
    let Some(first) = report.strategies.first() else {
        out.push_str("<section id=\"figures\"><h2>Figures</h2><p>No strategy ran.</p></section>\n");
        return;
    };
    out.push_str(
        "<section id=\"figures\">\n<h2>Figures</h2>\n<p>Medians over the iterations, in base \
         units (bytes, ns, counts), with the human-readable value under each.</p>\n\
         <div class=\"scroll\"><table>\n<tr><th>Figure (JSON key)</th>",
    );
    for s in &report.strategies {
        write!(out, "<th>{}</th>", esc(s.name)).unwrap();
    }
    out.push_str("</tr>\n");
    for (key, label, _) in first.figures.columns() {
        write!(
            out,
            "<tr><th>{}<br><code class=\"h\">{}</code></th>",
            esc(label),
            esc(key)
        )
        .unwrap();
        for s in &report.strategies {
            let Some(f) = figure(s, key) else {
                out.push_str("<td class=\"na\">-</td>");
                continue;
            };
            let attrs = format!(
                "data-strategy=\"{}\" data-key=\"{}\" data-unit=\"{}\"",
                esc(s.id.name()),
                esc(key),
                esc(f.unit.name())
            );
            match &f.value {
                None => write!(
                    out,
                    "<td><span class=\"na\" {attrs} title=\"{}\">not observable</span></td>",
                    esc(&f.provenance.describe())
                )
                .unwrap(),
                Some(v) => {
                    let incomplete = match &f.provenance {
                        Provenance::Incomplete { reason, .. } => format!(
                            " <span class=\"incomplete\" title=\"{}\">(incomplete)</span>",
                            esc(reason)
                        ),
                        _ => String::new(),
                    };
                    let human = human_stat(f.unit, v);
                    let human = if human == base(v.median) {
                        String::new()
                    } else {
                        format!("<br><span class=\"h\">{}</span>", esc(&human))
                    };
                    write!(
                        out,
                        "<td class=\"num\"><span class=\"n\" {attrs}>{}</span>{human}\
                         {incomplete}</td>",
                        base(v.median),
                    )
                    .unwrap();
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n</section>\n");
}

// ---- 4. claims -----------------------------------------------------------------------------

fn claims(out: &mut String, report: &Report) {
    out.push_str("<section id=\"claims\">\n<h2>Claims</h2>\n");
    let Some(claims) = &report.claims else {
        out.push_str("<p>No claims were judged in this run.</p>\n</section>\n");
        return;
    };
    writeln!(out, "<p>Source: {}</p>", esc(&claims.source)).unwrap();
    out.push_str(
        "<div class=\"scroll\"><table>\n<tr><th>Strategy</th><th>Claim</th><th>Claimed</th>\
         <th>Observed</th><th>Verdict</th><th>Evidence</th><th>The source says</th></tr>\n",
    );
    for v in &claims.verdicts {
        let when = match v.when {
            Some(Condition::Sg) => " (with SG)",
            Some(Condition::NoSg) => " (without SG)",
            None => "",
        };
        let verdict = match v.verdict {
            Outcome::Holds => "holds",
            Outcome::Differs => "differs",
            Outcome::NotObservable => "not_observable",
        };
        writeln!(
            out,
            "<tr data-strategy=\"{}\" data-verdict=\"{verdict}\"><td>{}</td><td>{}{when}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"verdict-{verdict}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(v.strategy.name()),
            esc(v.strategy.name()),
            esc(&v.figure.to_string()),
            base(v.claimed),
            v.observed.map_or("-".into(), |o| esc(&format!("{o}"))),
            v.verdict.label(),
            esc(&v.reason),
            esc(v.quote.as_deref().unwrap_or(""))
        )
        .unwrap();
    }
    out.push_str("</table></div>\n</section>\n");
}

// ---- 5. provenance -------------------------------------------------------------------------

/// `(how, strategies)` groups: strategies whose `describe` is the same share a line.
fn grouped<'a>(items: impl Iterator<Item = (&'a str, String)>) -> Vec<(String, Vec<&'a str>)> {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, how) in items {
        match groups.iter_mut().find(|(h, _)| *h == how) {
            Some((_, names)) => names.push(name),
            None => groups.push((how, vec![name])),
        }
    }
    groups
}

fn how_cell(groups: &[(String, Vec<&str>)], all: usize) -> String {
    if groups.len() == 1 && groups[0].1.len() == all {
        return esc(&groups[0].0);
    }
    groups
        .iter()
        .map(|(how, names)| format!("<b>{}</b>: {}", esc(&names.join(", ")), esc(how)))
        .collect::<Vec<_>>()
        .join("<br>")
}

fn provenance(out: &mut String, report: &Report) {
    out.push_str("<section id=\"provenance\">\n<h2>How each figure was obtained</h2>\n");
    let n = report.strategies.len();
    if let Some(first) = report.strategies.first() {
        out.push_str("<table>\n<tr><th>Figure</th><th>JSON key</th><th>How</th></tr>\n");
        for (key, label, _) in first.figures.columns() {
            let groups = grouped(
                report
                    .strategies
                    .iter()
                    .filter_map(|s| Some((s.name, figure(s, key)?.provenance.describe()))),
            );
            writeln!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(label),
                esc(key),
                how_cell(&groups, n)
            )
            .unwrap();
        }
        out.push_str(
            "</table>\n<h3>Copy sites (sender)</h3>\n<table>\n<tr><th>Site</th>\
                      <th>What it is</th><th>How</th></tr>\n",
        );
        let mut sites: Vec<&CopySiteReport> = Vec::new();
        for s in &report.strategies {
            for c in &s.copy_sites {
                if !sites.iter().any(|x| x.site == c.site) {
                    sites.push(c);
                }
            }
        }
        for c in sites {
            let with_site: Vec<&StrategyReport> = report
                .strategies
                .iter()
                .filter(|s| s.copy_sites.iter().any(|x| x.site == c.site))
                .collect();
            let groups = grouped(with_site.iter().filter_map(|s| {
                let x = s.copy_sites.iter().find(|x| x.site == c.site)?;
                Some((s.name, x.provenance.describe()))
            }));
            writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(c.site.name()),
                esc(c.description),
                how_cell(&groups, with_site.len())
            )
            .unwrap();
        }
        out.push_str("</table>\n");
    }
    out.push_str(
        "<h3>Probes</h3>\n<table>\n<tr><th>Hook</th><th>Site</th><th>Feeds</th><th>Method</th>\
         <th>Target</th><th>Tried before, or why none</th></tr>\n",
    );
    for p in &report.probes {
        let method = match &p.method_label {
            Some(m) => esc(m),
            None => "<span class=\"na\">not observable here</span>".into(),
        };
        let failed: Vec<String> = p
            .failed
            .iter()
            .map(|a| format!("{} {}: {}", esc(&a.method), esc(&a.target), esc(&a.error)))
            .collect();
        writeln!(
            out,
            "<tr data-hook=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{method}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(p.hook.name()),
            esc(p.hook.name()),
            esc(p.site),
            esc(p.feeds),
            esc(p.target.as_deref().unwrap_or("-")),
            failed.join("<br>")
        )
        .unwrap();
    }
    out.push_str("</table>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::super::tests::{host, run_config};
    use super::*;
    use crate::report::claims::{ClaimFigure, ClaimsReport, Verdict};
    use crate::report::fixtures::{attach_report, sample_with, READ, SENDFILE, WRITE};
    use zc_trace_common::{class, site};

    /// read+write and sendfile over loopback TCP, 1000 bytes, two iterations each, with the
    /// copy sites each strategy has; a claim whose quote and reason hold markup.
    fn report() -> Report {
        let rw = |extra: u64| {
            sample_with(&[(READ, 3, 1000), (WRITE, 2, 1000)], 0, 2000 + extra, |r| {
                r.copies[site::FILE_READ][class::KERNEL_TO_USER] = 1000;
                r.copies[site::TCP_SEND][class::USER_TO_KERNEL] = 1000;
            })
        };
        let sf = |extra: u64| {
            sample_with(&[(SENDFILE, 2, 1000)], 0, 1000 + extra, |r| {
                r.copies[site::FILE_SPLICE_READ][class::BY_REFERENCE] = 1000;
                r.copies[site::TCP_SEND][class::BY_REFERENCE] = 1000;
            })
        };
        let runs = vec![
            (
                crate::transfer::strategies::by_name("read-write").unwrap(),
                SinkKind::Tcp,
                true,
                vec![rw(0), rw(500)],
            ),
            (
                crate::transfer::strategies::by_name("sendfile").unwrap(),
                SinkKind::Tcp,
                true,
                vec![sf(0), sf(1)],
            ),
        ];
        let mut r = super::super::build(host(), run_config(), &attach_report(&[]), runs);
        r.claims = Some(ClaimsReport {
            source: "a <b>bold</b> source & more".into(),
            verdicts: vec![Verdict {
                strategy: StrategyId::ReadWrite,
                figure: ClaimFigure::CpuCopies,
                when: None,
                claimed: 2.0,
                observed: Some(2.0),
                verdict: Outcome::Holds,
                reason: "copied at file_read <kernel->user>".into(),
                quote: Some("<script>alert(1)</script> 2<3 \"quoted\" 'single'".into()),
            }],
        });
        r
    }

    #[test]
    fn the_page_loads_nothing_from_the_network() {
        let page = render(&report());
        // Outside text, no URL at all: no tag or attribute may carry one.
        let mut rest = page.as_str();
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("every tag ends") + start;
            let tag = &rest[start..=end];
            assert!(
                !tag.contains("http://") && !tag.contains("https://"),
                "a tag refers to the network: {tag}"
            );
            rest = &rest[end + 1..];
        }
        for forbidden in [
            "<script", "<link", "<img", "<iframe", "@import", "src=", "href=",
        ] {
            assert!(!page.contains(forbidden), "{forbidden} in the page");
        }
        // url() only for the diagrams' own markers.
        for (i, _) in page.match_indices("url(") {
            assert!(page[i..].starts_with("url(#"), "{}", &page[i..i + 40]);
        }
    }

    #[test]
    fn one_diagram_per_strategy_and_the_charts() {
        let r = report();
        let page = render(&r);
        assert_eq!(page.matches("<svg").count(), r.strategies.len() + 2);
        for s in &r.strategies {
            assert!(
                page.contains(&format!(
                    "<svg class=\"diagram\" data-strategy=\"{}\"",
                    s.id
                )),
                "no diagram for {}",
                s.id
            );
        }
        assert!(page.contains("id=\"chart-bytes\""));
        assert!(page.contains("id=\"chart-transitions\""));
        assert_eq!(page.matches("</svg>").count(), page.matches("<svg").count());
    }

    #[test]
    fn the_arrows_follow_the_copy_sites() {
        let r = report();
        let (rw, _) = arrows(&r, &r.strategies[0]);
        let find = |a: &[Arrow], site: &str, class: &str| {
            a.iter()
                .find(|x| {
                    x.data.contains(&("site", site.to_string()))
                        && x.data.contains(&("class", class.to_string()))
                })
                .map(|x| (x.from, x.to, x.how, x.bytes))
        };
        assert_eq!(
            find(&rw, "file_read", "kernel_to_user"),
            Some((Node::PageCache, Node::UserBuf, How::Cpu, Some(1000.0)))
        );
        assert_eq!(
            find(&rw, "tcp_send", "user_to_kernel"),
            Some((Node::UserBuf, Node::Sink, How::Cpu, Some(1000.0)))
        );
        let (sf, _) = arrows(&r, &r.strategies[1]);
        assert_eq!(
            find(&sf, "file_splice_read", "by_reference"),
            Some((Node::PageCache, Node::Pipe, How::ByReference, Some(1000.0)))
        );
        assert_eq!(
            find(&sf, "tcp_send", "by_reference"),
            Some((Node::Pipe, Node::Sink, How::ByReference, Some(1000.0)))
        );
        assert!(
            find(&sf, "file_read", "kernel_to_user").is_none(),
            "0 B: no arrow"
        );
        // Warm cache: the disk read is there, at 0 B; loopback: the NIC is not observable,
        // and the page says why.
        let disk = sf.iter().find(|a| a.from == Node::Disk).unwrap();
        assert_eq!((disk.how, disk.bytes), (How::Zero, Some(0.0)));
        let nic = sf.iter().find(|a| a.to == Node::Nic).unwrap();
        assert_eq!(nic.how, How::NotObservable);
        let page = render(&r);
        let reason = figure(&r.strategies[1], "nic_transmit_linear_bytes")
            .unwrap()
            .provenance
            .describe();
        assert!(page.contains(&esc(&reason)), "{reason}");
        assert!(page.contains("<g class=\"arrow not-observable\" data-figure=\"nic_transmit_linear_bytes+nic_transmit_frag_bytes\"><title>"));
    }

    #[test]
    fn text_from_the_report_is_escaped() {
        let page = render(&report());
        assert!(!page.contains("<script>alert"), "a quote became markup");
        assert!(page.contains(
            "&lt;script&gt;alert(1)&lt;/script&gt; 2&lt;3 &quot;quoted&quot; &#39;single&#39;"
        ));
        assert!(page.contains("copied at file_read &lt;kernel-&gt;user&gt;"));
        assert!(page.contains("a &lt;b&gt;bold&lt;/b&gt; source &amp; more"));
        assert!(page.contains("<td class=\"verdict-holds\">HOLDS</td>"));
    }

    #[test]
    fn every_figure_median_is_in_the_page_with_its_key() {
        let r = report();
        let page = render(&r);
        let mut seen = 0;
        for s in &r.strategies {
            for (key, _, f) in s.figures.columns() {
                let attrs = format!(
                    "data-strategy=\"{}\" data-key=\"{key}\" data-unit=\"{}\"",
                    s.id, f.unit
                );
                let expected = match &f.value {
                    Some(v) => format!("{attrs}>{}</span>", base(v.median)),
                    None => format!("{attrs} title=\""),
                };
                assert!(page.contains(&expected), "{}: {key}: {expected}", s.id);
                seen += 1;
            }
        }
        assert_eq!(
            page.matches("data-key=\"").count(),
            seen,
            "one element per figure"
        );
        // Medians of two runs that differ: time is 2000 and 2500 ns, median 2250.
        assert!(page.contains(
            "data-strategy=\"read-write\" data-key=\"time_ns\" data-unit=\"ns\">2250</span>"
        ));
    }

    #[test]
    fn numbers_are_written_as_the_json_writes_them() {
        assert_eq!(base(1048576.0), "1048576");
        assert_eq!(base(2.5), "2.5");
        assert_eq!(base(2362807131.2), "2362807131.2");
        assert_eq!(base(0.0), "0");
    }

    #[test]
    fn the_header_says_what_ran() {
        let page = render(&report());
        for text in [
            "6.18.0-test",
            "x86_64",
            "1000 B",
            "500 B",
            "TCP over loopback (127.0.0.1)",
        ] {
            assert!(page.contains(text), "{text}");
        }
        assert!(page.contains("<th>Iterations</th><td>2 (medians shown"));
        assert!(page.contains("<tr data-hook=\"syscall_enter\">"));
    }
}
