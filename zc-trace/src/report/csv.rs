//! CSV: one row per strategy, medians in base units (count, bytes, ns, bytes/s); an empty cell
//! means not observable. Then `syscalls_by_name` (`name=count;...`), `ledger`
//! (`leg=balance:moved/seen;...`) and `incomplete` (the copy figures the ledger marks
//! incomplete, `;`-separated).

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
    header.push("ledger".into());
    header.push("incomplete".into());
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
        row.push(
            s.ledger
                .iter()
                .map(|l| {
                    let balance = serde_json::to_value(l.balance).expect("serialises");
                    format!(
                        "{}={}:{}/{}",
                        l.leg,
                        balance.as_str().unwrap_or("?"),
                        number(l.moved_bytes.median),
                        l.seen_bytes
                            .as_ref()
                            .map_or(String::new(), |v| number(v.median).to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(";"),
        );
        row.push(
            s.figures
                .columns()
                .iter()
                .filter(|(_, _, f)| matches!(f.provenance, super::Provenance::Incomplete { .. }))
                .map(|(key, _, _)| *key)
                .collect::<Vec<_>>()
                .join(";"),
        );
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}
