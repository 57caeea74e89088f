//! The report: every figure with its value over the iterations and its provenance, built from
//! the raw per-run samples; and its renderings (table, markdown, CSV, JSON).

mod csv;
mod model;
mod stat;
mod text;

pub use model::{build, Report, RunConfig, Sample};

use crate::cli::Format;

/// Renders the report in the requested format.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => text::render(report, text::Style::Terminal),
        Format::Markdown => text::render(report, text::Style::Markdown),
        Format::Csv => csv::render(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).expect("the report serialises");
            s.push('\n');
            s
        }
    }
}
