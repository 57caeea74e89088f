//! The bench's results: rows with their targets, written as `results.json` and as the
//! markdown tables of `README.md`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::machine::Machine;
use crate::util::Result;

/// The parts of the bench, in the order they run and are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Overhead,
    Tax,
    Wall,
    Memory,
    Scaling,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Overhead,
        Section::Tax,
        Section::Wall,
        Section::Memory,
        Section::Scaling,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Section::Overhead => "Overhead of the probes on the measured transfer",
            Section::Tax => "Tax on other processes while zc-trace is attached",
            Section::Wall => "Wall time",
            Section::Memory => "Peak memory",
            Section::Scaling => "Run time against payload and chunk size",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Section::Overhead => "overhead",
            Section::Tax => "tax",
            Section::Wall => "wall",
            Section::Memory => "memory",
            Section::Scaling => "scaling",
        }
    }
}

/// One measured figure and its target.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub section: Section,
    pub what: String,
    /// In `unit`; null when not measured (`shown` says why).
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The value as the table shows it.
    pub shown: String,
    pub spread: Option<String>,
    pub target: String,
    /// Null when the row has no target or was not measured.
    pub meets: Option<bool>,
    pub note: Option<String>,
}

impl Row {
    pub fn new(section: Section, what: impl Into<String>, unit: &'static str) -> Row {
        Row {
            section,
            what: what.into(),
            value: None,
            unit,
            shown: String::new(),
            spread: None,
            target: "none".into(),
            meets: None,
            note: None,
        }
    }

    pub fn value(mut self, value: f64, shown: impl Into<String>) -> Row {
        self.value = Some(value);
        self.shown = shown.into();
        self
    }

    /// Not measured, and why.
    pub fn missing(mut self, why: impl Into<String>) -> Row {
        self.value = None;
        self.shown = format!("not measured: {}", why.into());
        self.meets = None;
        self
    }

    pub fn spread(mut self, spread: impl Into<String>) -> Row {
        self.spread = Some(spread.into());
        self
    }

    /// The target, and whether the value meets it (null when there is no value).
    pub fn target(mut self, target: impl Into<String>, meets: impl Fn(f64) -> bool) -> Row {
        self.target = target.into();
        self.meets = self.value.map(meets);
        self
    }

    /// A target that cannot be judged here, with the reason in the target column.
    pub fn target_not_applicable(mut self, target: impl Into<String>) -> Row {
        self.target = target.into();
        self.meets = None;
        self
    }

    /// Files the row under another section.
    pub fn section(mut self, section: Section) -> Row {
        self.section = section;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = Some(note.into());
        self
    }
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub schema: u32,
    pub mode: &'static str,
    pub command: String,
    pub machine: Machine,
    pub duration_s: f64,
    /// /proc/loadavg before and after: other work on the machine makes the figures noisy.
    pub load_average: [String; 2],
    /// Measurements taken while the machine stayed busy (another tracer, a busy CPU).
    pub noise: Vec<String>,
    pub section_durations_s: std::collections::BTreeMap<&'static str, f64>,
    pub rows: Vec<Row>,
    /// Every raw measurement, per section, for re-analysis.
    pub raw: serde_json::Map<String, serde_json::Value>,
    /// Sections that failed, with the error.
    pub errors: Vec<String>,
}

pub fn write(dir: &Path, results: &Results, how: &[(Section, String)]) -> Result {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(results).map_err(|e| e.to_string())? + "\n";
    let path = dir.join("results.json");
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    let path = dir.join("README.md");
    std::fs::write(&path, markdown(results, how))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(r: &Results, how: &[(Section, String)]) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# zc-trace benchmark\n");
    let _ = writeln!(
        out,
        "What zc-trace itself costs on one machine. Written by `{}` ({} mode, {:.0} s); \
         every raw sample is in [`results.json`](results.json). This is a benchmark, not a \
         test: a missed target is reported here, it fails nothing.\n",
        r.command, r.mode, r.duration_s
    );
    let _ = writeln!(out, "| machine | |\n|---|---|");
    for (k, v) in m.rows() {
        let _ = writeln!(out, "| {k} | {} |", cell(&v));
    }
    let _ = writeln!(
        out,
        "| load average (1, 5, 15 min) | {} before, {} after |",
        r.load_average[0], r.load_average[1]
    );
    let judged: Vec<&Row> = r.rows.iter().filter(|x| x.meets.is_some()).collect();
    let missed: Vec<&Row> = judged
        .iter()
        .copied()
        .filter(|x| x.meets == Some(false))
        .collect();
    let _ = writeln!(
        out,
        "\n**{} of {} rows with a target meet it.**{}",
        judged.len() - missed.len(),
        judged.len(),
        if missed.is_empty() {
            String::new()
        } else {
            format!(
                " Missed: {}.",
                missed
                    .iter()
                    .map(|x| format!("{} ({}; target {})", x.what, x.shown, x.target))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    );
    if !r.noise.is_empty() {
        let _ = writeln!(
            out,
            "\n**Measured on a busy machine** (the bench waits up to 2 minutes for other \
             tracers and busy CPUs before each measurement): {}",
            cell(&r.noise.join("; "))
        );
    }
    for e in &r.errors {
        let _ = writeln!(out, "\n**Error:** {}", cell(e));
    }
    for section in Section::ALL {
        let rows: Vec<&Row> = r.rows.iter().filter(|x| x.section == section).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n## {}\n", section.title());
        if let Some((_, text)) = how.iter().find(|(s, _)| *s == section) {
            let _ = writeln!(out, "{text}\n");
        }
        let _ = writeln!(out, "| measurement | value | spread | target | meets |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for x in &rows {
            let meets = match x.meets {
                Some(true) => "yes",
                Some(false) => "**NO**",
                None => "n/a",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {meets} |",
                cell(&x.what),
                cell(&x.shown),
                cell(x.spread.as_deref().unwrap_or("")),
                cell(&x.target)
            );
        }
        let notes: Vec<String> = rows
            .iter()
            .filter_map(|x| Some(format!("- {}: {}", x.what, x.note.as_ref()?)))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(out, "\n{}", notes.join("\n"));
        }
    }
    out
}
