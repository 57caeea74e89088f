//! Human-readable renderings: for the terminal a narrow table that fits its width (one line per
//! strategy below 100 columns) with the verdicts and one summary line, `--explain` adding how
//! each figure was obtained and the evidence of each verdict, `--wide` every column; and
//! markdown for lab reports, with everything. Figures show the median (with min..max when
//! iterations differ).

use std::fmt::Write;

use comfy_table::{presets, ContentArrangement, Table};

use super::model::{Figure, Provenance, Report, Unit};
use super::stat::Stat;
use crate::ui::units::{human_bytes, human_duration, human_rate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Terminal,
    Markdown,
}

/// How the terminal rendering is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Every column, as wide as it takes.
    pub wide: bool,
    /// How each figure was obtained, the syscalls, copy sites, ledger and each verdict's
    /// evidence.
    pub explain: bool,
    /// Verdicts in color.
    pub color: bool,
    /// Columns to fit.
    pub width: usize,
    /// The exit status ignores verdicts (--no-fail): the summary line says which it is.
    pub no_fail: bool,
}

impl Layout {
    /// When the output is not a terminal: 100 columns, no color.
    pub const PLAIN: Layout = Layout {
        wide: false,
        explain: false,
        color: false,
        width: 100,
        no_fail: false,
    };

    /// The terminal's width where stdout is one, else 100 columns.
    pub fn terminal_width() -> usize {
        terminal_size::terminal_size_of(std::io::stdout())
            .map_or(100, |(w, _)| w.0 as usize)
            .max(40)
    }
}

pub fn render_with(report: &Report, style: Style, layout: &Layout) -> String {
    if style == Style::Terminal && !layout.wide {
        return render_narrow(report, layout);
    }
    let mut out = render_full(report, style);
    out.push('\n');
    out.push_str(&summary_line(report, layout));
    out.push('\n');
    out
}

/// The heading, without nested parentheses: fields apart, as a student reads them.
fn heading(report: &Report) -> String {
    let c = &report.config;
    format!(
        "zc-trace {}: kernel {} ({}); payload {}, {} on {}, {}; chunk {}; {} iteration{}; sink: {}",
        report.tool.version,
        report.host.kernel,
        report.host.arch,
        human_bytes(c.payload_bytes as f64),
        c.source.split(" (").next().unwrap_or(&c.source),
        c.source_fs,
        if c.cold {
            "evicted from the page cache before each run"
        } else {
            "warm page cache"
        },
        human_bytes(c.chunk_bytes as f64),
        c.iterations,
        if c.iterations == 1 { "" } else { "s" },
        c.sink_description,
    )
}

/// Prose wrapped to the layout's width, each line after the first indented by `indent`.
fn wrapped(text: &str, width: usize, indent: &str) -> String {
    crate::ui::wrap::fill(text, width.max(20), indent)
}

/// The verdict's word, in color where the layout has it.
fn verdict_word(outcome: crate::report::claims::Outcome, color: bool) -> String {
    use anstyle::{AnsiColor, Style as Ansi};
    let label = outcome.label();
    if !color {
        return label.to_string();
    }
    let style = match outcome {
        crate::report::claims::Outcome::Holds => {
            Ansi::new().fg_color(Some(AnsiColor::Green.into()))
        }
        crate::report::claims::Outcome::Differs => {
            Ansi::new().fg_color(Some(AnsiColor::Red.into())).bold()
        }
        crate::report::claims::Outcome::NotObservable => {
            Ansi::new().fg_color(Some(AnsiColor::Yellow.into()))
        }
    };
    format!("{}{label}{}", style.render(), style.render_reset())
}

/// How many of the verdicts `keep` selects hold, differ, cannot be observed.
fn tally(
    claims: &crate::report::claims::ClaimsReport,
    keep: impl Fn(&crate::report::claims::Verdict) -> bool,
) -> (usize, usize, usize) {
    use crate::report::claims::Outcome;
    let count = |o: Outcome| {
        claims
            .verdicts
            .iter()
            .filter(|v| keep(v) && v.verdict == o)
            .count()
    };
    (
        count(Outcome::Holds),
        count(Outcome::Differs),
        count(Outcome::NotObservable),
    )
}

/// Per strategy: how many of its claims hold, differ, cannot be observed ("2 ok 1 x 3 ?").
fn verdict_marks(report: &Report, row: super::RowId) -> String {
    let Some(c) = &report.claims else {
        return "-".into();
    };
    let (h, d, n) = tally(c, |v| row == super::RowId::Strategy(v.strategy));
    if h + d + n == 0 {
        return "-".into();
    }
    // The legend is under the table: these stay narrow enough for any terminal.
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}✓"));
    }
    if d > 0 {
        parts.push(format!("{d}✗"));
    }
    if n > 0 {
        parts.push(format!("{n}?"));
    }
    parts.join(" ")
}

/// "6 hold, 1 differs, 9 not observable: exit 1 (--no-fail to ignore)".
pub fn summary_line(report: &Report, layout: &Layout) -> String {
    let Some(c) = &report.claims else {
        return "No claims were judged: exit 0".into();
    };
    let (h, d, n) = tally(c, |_| true);
    let status = match (d > 0, layout.no_fail) {
        (true, false) => "exit 1 (--no-fail to ignore)",
        (true, true) => "exit 0 (--no-fail)",
        (false, _) => "exit 0",
    };
    format!(
        "{h} hold{}, {d} differ{}, {n} not observable: {status}",
        if h == 1 { "s" } else { "" },
        if d == 1 { "s" } else { "" },
    )
}

/// The default terminal rendering: fits `layout.width`.
fn render_narrow(report: &Report, layout: &Layout) -> String {
    let mut out = String::new();
    let w = layout.width;
    writeln!(out, "{}", wrapped(&heading(report), w, "  ")).unwrap();
    let header = [
        "Strategy",
        "Syscalls",
        "User/kernel transitions",
        "CPU copied",
        "By reference",
        "Throughput",
        "Claims",
    ];
    let rows: Vec<[String; 7]> = report
        .strategies
        .iter()
        .map(|s| {
            let f = &s.figures;
            [
                s.name.to_string(),
                narrow_cell(&f.syscalls),
                narrow_cell(&f.transitions),
                narrow_cell(&f.cpu_copied_bytes),
                narrow_cell(&f.by_reference_bytes),
                narrow_cell(&f.throughput_bytes_per_sec),
                verdict_marks(report, s.id),
            ]
        })
        .collect();
    if w >= 100 {
        let mut table = Table::new();
        table
            .load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(w as u16)
            .set_header(header);
        for r in &rows {
            table.add_row(r.iter());
        }
        // No word is broken: each column is at least as wide as its longest word (cells wrap
        // at spaces only).
        let longest_word = |i: usize| {
            std::iter::once(header[i])
                .chain(rows.iter().map(|r| r[i].as_str()))
                .flat_map(str::split_whitespace)
                .map(|w| w.chars().count())
                .max()
                .unwrap_or(1)
        };
        for i in 0..header.len() {
            // The constraint's width includes the cell's padding, one space on each side.
            let min = longest_word(i) + 2;
            if let Some(c) = table.column_mut(i) {
                c.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(
                    comfy_table::Width::Fixed(min as u16),
                ));
            }
        }
        writeln!(out, "{table}").unwrap();
    } else {
        // Too narrow for seven columns without breaking words: one line per strategy.
        for r in &rows {
            // A figure and its unit stay together on a line.
            let r: Vec<String> = r.iter().map(|c| c.replace(' ', "\u{a0}")).collect();
            let line = format!(
                "{}: {} syscalls, {} user/kernel transitions, CPU copied {}, by reference {}, \
                 throughput {}; claims: {}",
                r[0], r[1], r[2], r[3], r[4], r[5], r[6]
            );
            writeln!(out, "{}", wrapped(&line, w, "    ")).unwrap();
        }
    }
    if report.config.iterations > 1 {
        writeln!(
            out,
            "{}",
            wrapped(
                "Medians of the iterations; * where they differ (--wide and --format json \
                 show the spread).",
                w,
                ""
            )
        )
        .unwrap();
    }
    if report.claims.is_some() {
        writeln!(
            out,
            "{}",
            wrapped(
                "Claims: ✓ hold, ✗ differ, ? not observable here (the list below says which \
                 and why).",
                w,
                ""
            )
        )
        .unwrap();
    }
    writeln!(
        out,
        "{}",
        wrapped(
            "User/kernel transitions are the article's \"context switches\": mode switches \
             between user and kernel mode (syscall entry and return, page-fault round trips), \
             not the scheduler's context switches (--wide shows those).",
            w,
            ""
        )
    )
    .unwrap();
    for skipped in &report.config.skipped {
        writeln!(
            out,
            "{}",
            wrapped(
                &format!("Skipped {}: {}", skipped.strategy, skipped.reason),
                w,
                "  "
            )
        )
        .unwrap();
    }
    for note in zerocopy_notes(report)
        .into_iter()
        .chain(receiver_notes(report))
    {
        writeln!(out, "{}", wrapped(&note, w, "  ")).unwrap();
    }
    if layout.explain {
        render_explanations(&mut out, report, w);
    }
    if let Some(claims) = &report.claims {
        writeln!(
            out,
            "\n{}",
            wrapped(&format!("Claims ({}):", claims.source), w, "  ")
        )
        .unwrap();
        for v in &claims.verdicts {
            let claim = match v.when {
                Some(crate::report::claims::Condition::Sg) => format!("{} (with SG)", v.figure),
                Some(crate::report::claims::Condition::NoSg) => {
                    format!("{} (without SG)", v.figure)
                }
                None => v.figure.to_string(),
            };
            let observed = v
                .observed
                .map_or(String::new(), |o| format!(", observed {o}"));
            let mut line = format!(
                "{} {}: claimed {}{observed}: {}",
                v.strategy,
                claim,
                plain(v.claimed),
                verdict_word(v.verdict, layout.color)
            );
            if layout.explain {
                line.push_str(&format!(" ({})", v.reason));
            }
            writeln!(out, "{}", wrapped(&line, w, "    ")).unwrap();
        }
    }
    writeln!(out, "\n{}", summary_line(report, layout)).unwrap();
    if !layout.explain {
        writeln!(
            out,
            "{}",
            wrapped(
                "More: --explain (how each figure was obtained, each verdict's evidence), \
                 --wide (every column), --format json|markdown, zc-trace explain STRATEGY",
                w,
                "  "
            )
        )
        .unwrap();
    }
    out
}

/// Why a zero-copy send shows bytes both by reference and copied: the kernel's completion
/// reports say it copied them after all (delivery to a local socket copies pinned pages).
fn zerocopy_notes(report: &Report) -> Vec<String> {
    report
        .strategies
        .iter()
        .filter_map(|s| {
            let c = s
                .copy_sites
                .iter()
                .find(|c| c.site == super::model::SiteId::ZerocopyCompletion)?;
            let copied = c.bytes.as_ref()?.kernel_to_kernel.median;
            (copied > 0.0).then(|| {
                format!(
                    "{}: by reference and copied both count {} of its bytes: the kernel's \
                     completion reports say it copied them after all (delivery to a socket on \
                     this host, as over loopback or veth, copies the pinned pages).",
                    s.name,
                    human_bytes(copied)
                )
            })
        })
        .collect()
}

/// A TCP sink whose receiver was the bottleneck: its Throughput is the receiver's pace.
fn receiver_notes(report: &Report) -> Vec<String> {
    report
        .strategies
        .iter()
        .filter_map(|s| {
            let share = s.receiver_bound()?;
            Some(format!(
                "WARNING: {}: the receiver was the bottleneck: its receive window held the \
                 connection back {:.0}% of the time it had data to send (tcp_info), so its \
                 Throughput is the receiver's pace rather than the strategy's.",
                s.name,
                share * 100.0
            ))
        })
        .collect()
}

/// --explain: the syscalls, copy sites and ledger per strategy, and how each figure was
/// obtained, wrapped.
fn render_explanations(out: &mut String, report: &Report, w: usize) {
    let Some(first) = report.strategies.first() else {
        return;
    };
    let mut full = String::new();
    writeln!(full, "\nSyscalls by name (sender):").unwrap();
    for s in &report.strategies {
        let list: Vec<String> = s
            .syscalls_by_name
            .iter()
            .map(|(name, f)| format!("{name} {}", plain(f.count.median)))
            .collect();
        writeln!(
            full,
            "{}",
            wrapped(&format!("  {}: {}", s.name, list.join(", ")), w, "    ")
        )
        .unwrap();
    }
    out.push_str(&full);
    let mut sites = String::new();
    render_sites(&mut sites, report, "  ");
    for line in sites.lines() {
        writeln!(out, "{}", wrapped(line, w, "    ")).unwrap();
    }
    let mut ledger = String::new();
    render_ledger(&mut ledger, report, "  ");
    for line in ledger.lines() {
        writeln!(out, "{}", wrapped(line, w, "    ")).unwrap();
    }
    writeln!(out, "\nHow each figure was obtained:").unwrap();
    for (_, label, f) in first.figures.columns() {
        writeln!(
            out,
            "{}",
            wrapped(
                &format!("  {label}: {}", f.provenance.describe()),
                w,
                "    "
            )
        )
        .unwrap();
    }
}

fn render_full(report: &Report, style: Style) -> String {
    let mut out = String::new();
    let heading = heading(report);
    match style {
        Style::Terminal => writeln!(out, "{heading}").unwrap(),
        Style::Markdown => writeln!(out, "## zc-trace report\n\n{heading}\n").unwrap(),
    }

    let mut table = Table::new();
    table.load_preset(match style {
        Style::Terminal => presets::UTF8_FULL_CONDENSED,
        Style::Markdown => presets::ASCII_MARKDOWN,
    });
    if style == Style::Terminal {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    let Some(first) = report.strategies.first() else {
        return out;
    };
    let header = [
        "Strategy",
        "Syscalls",
        "User<->kernel\ntransitions",
        "Page faults\nuser-mode / in-kernel",
        "Scheduler context switches\nvoluntary / involuntary",
        "CPU copied, sender\nu->k / k->u / k->k",
        "By reference\ninto socket",
        "Receiver\ncopied",
        "Time",
        "Throughput",
    ];
    // Markdown tables cannot break a header cell over lines.
    table.set_header(header.map(|h| match style {
        Style::Terminal => h.to_string(),
        Style::Markdown => h.replace('\n', " "),
    }));
    for s in &report.strategies {
        let f = &s.figures;
        table.add_row([
            s.name.to_string(),
            cell(&f.syscalls),
            cell(&f.transitions),
            format!(
                "{} / {}",
                cell(&f.page_faults_user_mode),
                cell(&f.page_faults_kernel_mode)
            ),
            format!(
                "{} / {}",
                cell(&f.context_switches_voluntary),
                cell(&f.context_switches_involuntary)
            ),
            format!(
                "{}\n{} / {} / {}",
                cell(&f.cpu_copied_bytes),
                cell(&f.copied_user_to_kernel_bytes),
                cell(&f.copied_kernel_to_user_bytes),
                cell(&f.copied_kernel_to_kernel_bytes)
            ),
            cell(&f.by_reference_bytes),
            cell(&f.receiver_copied_bytes),
            cell(&f.time_ns),
            cell(&f.throughput_bytes_per_sec),
        ]);
    }
    writeln!(out, "{table}").unwrap();

    let bullet = if style == Style::Markdown { "- " } else { "  " };
    writeln!(out, "\nSyscalls by name (sender):").unwrap();
    for s in &report.strategies {
        let list: Vec<String> = s
            .syscalls_by_name
            .iter()
            .map(|(name, f)| format!("{name} {}", plain(f.count.median)))
            .collect();
        writeln!(out, "{bullet}{}: {}", s.name, list.join(", ")).unwrap();
    }

    render_sites(&mut out, report, bullet);
    for skipped in &report.config.skipped {
        writeln!(
            out,
            "{bullet}skipped {}: {}",
            skipped.strategy, skipped.reason
        )
        .unwrap();
    }
    render_ledger(&mut out, report, bullet);

    if let Some(claims) = &report.claims {
        render_claims(&mut out, claims, style);
    }

    writeln!(out, "\nHow each column was obtained:").unwrap();
    let mut previous = None;
    for (_, label, f) in first.figures.columns() {
        let how = f.provenance.describe();
        if previous.as_ref() == Some(&how) {
            writeln!(out, "{bullet}{label}: as above").unwrap();
        } else {
            writeln!(out, "{bullet}{label}: {how}").unwrap();
        }
        previous = Some(how);
    }
    for c in &first.copy_sites {
        writeln!(
            out,
            "{bullet}copy site {}: {}",
            c.site,
            c.provenance.describe()
        )
        .unwrap();
    }
    if let Some(note) = &report.host.btf_note {
        writeln!(out, "\nNote: {note}").unwrap();
    }
    out
}

/// Per strategy, the bytes of each copy site by class.
fn render_sites(out: &mut String, report: &Report, bullet: &str) {
    writeln!(
        out,
        "\nCopy sites (sender; bytes by class, zero classes omitted):"
    )
    .unwrap();
    for s in &report.strategies {
        let sites: Vec<String> = s
            .copy_sites
            .iter()
            .filter_map(|c| {
                let b = c.bytes.as_ref()?;
                let parts: Vec<String> = [
                    ("u->k", &b.user_to_kernel),
                    ("k->u", &b.kernel_to_user),
                    ("k->k", &b.kernel_to_kernel),
                    ("by ref", &b.by_reference),
                ]
                .iter()
                .filter(|(_, v)| v.median != 0.0)
                .map(|(k, v)| format!("{k} {}", human_bytes(v.median)))
                .collect();
                (!parts.is_empty()).then(|| format!("{} {}", c.site, parts.join(", ")))
            })
            .collect();
        let sites = if sites.is_empty() {
            "none".to_string()
        } else {
            sites.join("; ")
        };
        writeln!(out, "{bullet}{}: {sites}", s.name).unwrap();
    }
}

/// The byte ledger: per strategy and leg, bytes the syscalls moved against bytes the leg's
/// copy sites saw.
fn render_ledger(out: &mut String, report: &Report, bullet: &str) {
    writeln!(
        out,
        "\nByte ledger (sender; bytes the syscalls moved on each leg = bytes its copy sites saw):"
    )
    .unwrap();
    for s in &report.strategies {
        let legs: Vec<String> = s
            .ledger
            .iter()
            .map(|l| {
                let seen = l
                    .seen_bytes
                    .as_ref()
                    .map_or("not observable".into(), |v| human_bytes(v.median));
                let verdict = match l.balance {
                    super::model::Balance::Balanced => "balanced".to_string(),
                    super::model::Balance::Derived => "derived (not checked)".to_string(),
                    super::model::Balance::NotObservable => "not observable".to_string(),
                    super::model::Balance::Incomplete => format!("INCOMPLETE: {}", l.note),
                    super::model::Balance::Excess => format!("EXCESS: {}", l.note),
                };
                format!(
                    "{} moved {}, seen {}: {verdict}",
                    l.leg,
                    human_bytes(l.moved_bytes.median),
                    seen
                )
            })
            .collect();
        let legs = if legs.is_empty() {
            "no leg with bytes".to_string()
        } else {
            legs.join("; ")
        };
        writeln!(out, "{bullet}{}: {legs}", s.name).unwrap();
    }
}

/// A claims file's own text (its source, a quote) in markdown: the characters markdown and its
/// tables give a meaning are escaped (a `|` in a quote broke the row; `<`, `*`, `[` rendered),
/// and line breaks become spaces. The HTML export escapes the same text for HTML.
fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn render_claims(out: &mut String, claims: &crate::report::claims::ClaimsReport, style: Style) {
    let source = match style {
        Style::Markdown => markdown_text(&claims.source),
        Style::Terminal => claims.source.clone(),
    };
    writeln!(out, "\nClaims ({source}):").unwrap();
    let mut table = Table::new();
    match style {
        Style::Terminal => {
            table.load_preset(presets::UTF8_FULL_CONDENSED);
            table.set_content_arrangement(ContentArrangement::Dynamic);
        }
        Style::Markdown => {
            table.load_preset(presets::ASCII_MARKDOWN);
        }
    }
    let mut header = vec![
        "Strategy", "Claim", "Claimed", "Observed", "Verdict", "Evidence",
    ];
    if style == Style::Markdown {
        header.push("Source says");
    }
    table.set_header(header);
    for v in &claims.verdicts {
        let claim = match v.when {
            Some(crate::report::claims::Condition::Sg) => format!("{} (with SG)", v.figure),
            Some(crate::report::claims::Condition::NoSg) => format!("{} (without SG)", v.figure),
            None => v.figure.to_string(),
        };
        let mut row = vec![
            v.strategy.to_string(),
            claim,
            plain(v.claimed),
            v.observed.map_or("-".into(), |o| format!("{o}")),
            v.verdict.label().to_string(),
            v.reason.clone(),
        ];
        if style == Style::Markdown {
            row.push(markdown_text(v.quote.as_deref().unwrap_or_default()));
        }
        table.add_row(row);
    }
    writeln!(out, "{table}").unwrap();
}

/// `cell` for the narrow table: the median alone, marked * where runs differ.
fn narrow_cell(f: &Figure) -> String {
    match &f.value {
        Some(v) if !v.is_exact() => {
            let median = Figure {
                value: Stat::of(vec![v.median]),
                ..f.clone()
            };
            format!("{}*", cell(&median))
        }
        _ => cell(f),
    }
}

/// The median, with the spread when runs differ; "n/a" when not observable.
fn cell(f: &Figure) -> String {
    let Some(v) = &f.value else {
        return match f.provenance {
            Provenance::NotObservable { .. } => "not observable".into(),
            _ => "-".into(),
        };
    };
    let fmt = |x: f64| match f.unit {
        Unit::Bytes => human_bytes(x),
        Unit::Ns => human_duration(x),
        Unit::BytesPerSec => human_rate(x),
        Unit::Count => plain(x),
    };
    let text = if v.is_exact() {
        fmt(v.median)
    } else {
        format!("{} ({}..{})", fmt(v.median), fmt(v.min), fmt(v.max))
    };
    match f.provenance {
        // A partial count must never read as a complete one.
        Provenance::Incomplete { .. } => format!("{text} (incomplete)"),
        _ => text,
    }
}

fn plain(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {

    /// `--export-markdown` wrote a claims file's source and quotes as they were (the HTML
    /// export escapes them): a `|` split the row and `<script>` went through.
    #[test]
    fn claims_text_is_escaped_in_markdown() {
        assert_eq!(markdown_text("a|b"), "a\\|b");
        assert_eq!(
            markdown_text("<script>x</script>"),
            "\\<script\\>x\\</script\\>"
        );
        assert_eq!(markdown_text("two\nlines *bold*"), "two lines \\*bold\\*");
        assert_eq!(
            markdown_text("plain words, 2 copies."),
            "plain words, 2 copies."
        );
    }

    use super::*;

    /// A size that is not a whole number of its unit never looks like one (--chunk 65537 was
    /// shown as "64.00 KiB"); whole sizes look as they did.
    #[test]
    fn inexact_sizes_show_their_bytes() {
        let mut report = super::super::tests::report(&[]);
        report.config.chunk_bytes = 65537;
        let text = render_with(&report, Style::Terminal, &Layout::PLAIN);
        assert!(text.contains("chunk 65537 B (~64.00 KiB);"), "{text}");
    }
}
