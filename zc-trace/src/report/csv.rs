//! CSV: one row per strategy, medians in base units (count, bytes, ns, bytes/s); an empty cell
//! means not observable. The last column lists syscalls by name as `name=count;...`.

use super::model::Report;
use super::stat::number;

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let Some(first) = report.strategies.first() else {
        return out;
    };
    let mut header = vec!["strategy".to_string()];
    header.extend(
        first
            .figures
            .columns()
            .iter()
            .map(|(key, _, _)| key.to_string()),
    );
    header.push("syscalls_by_name".into());
    out.push_str(&header.join(","));
    out.push('\n');
    for s in &report.strategies {
        let mut row = vec![s.id.to_string()];
        row.extend(s.figures.columns().iter().map(|(_, _, f)| {
            f.value
                .as_ref()
                .map(|v| number(v.median).to_string())
                .unwrap_or_default()
        }));
        row.push(
            s.syscalls_by_name
                .iter()
                .map(|(n, f)| format!("{n}={}", number(f.count.median)))
                .collect::<Vec<_>>()
                .join(";"),
        );
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}
