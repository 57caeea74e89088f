//! Human-readable renderings: a terminal table, or markdown for lab reports. Both show the
//! median (with min..max when iterations differ) and, under the table, how each column was
//! obtained.

use std::fmt::Write;

use comfy_table::{presets, ContentArrangement, Table};

use super::model::{Figure, Provenance, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Terminal,
    Markdown,
}

pub fn render(report: &Report, style: Style) -> String {
    let mut out = String::new();
    let c = &report.config;
    let heading = format!(
        "zc-trace {}: kernel {} ({}), payload {} ({}, {}{}), chunk {}, {} iteration{}, sink {}",
        report.tool.version,
        report.host.kernel,
        report.host.arch,
        human_bytes(c.payload_bytes as f64),
        c.source,
        c.source_fs,
        if c.cold {
            ", evicted from page cache before each run"
        } else {
            ", warm page cache"
        },
        human_bytes(c.chunk_bytes as f64),
        c.iterations,
        if c.iterations == 1 { "" } else { "s" },
        c.sink_description,
    );
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
        "Context switches\nvoluntary / involuntary",
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
                    super::ledger::Balance::Balanced => "balanced".to_string(),
                    super::ledger::Balance::Derived => "derived (not checked)".to_string(),
                    super::ledger::Balance::NotObservable => "not observable".to_string(),
                    super::ledger::Balance::Incomplete => format!("INCOMPLETE: {}", l.note),
                    super::ledger::Balance::Excess => format!("EXCESS: {}", l.note),
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

fn render_claims(out: &mut String, claims: &crate::claims::ClaimsReport, style: Style) {
    writeln!(out, "\nClaims ({}):", claims.source).unwrap();
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
            Some(crate::claims::Condition::Sg) => format!("{} (with SG)", v.figure),
            Some(crate::claims::Condition::NoSg) => format!("{} (without SG)", v.figure),
            None => v.figure.to_string(),
        };
        let mut row = vec![
            v.strategy.clone(),
            claim,
            plain(v.claimed),
            v.observed.map_or("-".into(), |o| format!("{o}")),
            v.verdict.label().to_string(),
            v.reason.clone(),
        ];
        if style == Style::Markdown {
            row.push(v.quote.clone().unwrap_or_default());
        }
        table.add_row(row);
    }
    writeln!(out, "{table}").unwrap();
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
        "bytes" => human_bytes(x),
        "ns" => human_duration(x),
        "bytes/s" => format!("{}/s", human_bytes(x)),
        _ => plain(x),
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

pub fn human_bytes(x: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = x;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", x as u64)
    } else if v.fract() == 0.0 {
        format!("{v} {}", UNITS[i])
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

pub fn human_duration(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_and_time_units() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(64.0 * 1024.0 * 1024.0), "64 MiB");
        assert_eq!(human_bytes(1536.0), "1.50 KiB");
        assert_eq!(human_duration(1_500_000.0), "1.50 ms");
        assert_eq!(human_duration(2.5e9), "2.50 s");
        assert_eq!(human_duration(999.0), "999 ns");
    }
}
