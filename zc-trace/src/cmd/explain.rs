//! `zc-trace explain [STRATEGY] [FIGURE]`: how each figure of a strategy is obtained on this
//! kernel (the probe plan attached, nothing transferred), and the claims about it, for a
//! student reading a report or preparing a lab. The same provenance the report carries, built
//! by the same code from the attach report and one empty sample.

use std::process::ExitCode;

use crate::cli::ExplainArgs;
use crate::error::{Error, InputError};
use crate::report::{self, RoleSample, RowId, RunConfig, Sample};
use crate::transfer::sink::SinkKind;
use crate::transfer::strategies::{self, Strategy};

pub fn main(args: ExplainArgs) -> Result<ExitCode, Error> {
    let selected: Vec<&'static dyn Strategy> = match &args.strategy {
        None => strategies::ALL.to_vec(),
        Some(name) => vec![strategies::by_name(name).ok_or_else(|| {
            let known: Vec<&str> = strategies::ALL.iter().map(|s| s.id().name()).collect();
            InputError::Usage(format!(
                "unknown strategy '{name}': known strategies are {}",
                known.join(", ")
            ))
        })?],
    };
    let session = crate::cmd::session::Session::open()?;
    let plan = session.attach_plan()?;
    let host = session.host;
    let config = RunConfig {
        payload_bytes: 0,
        chunk_bytes: 0,
        iterations: 1,
        cold: false,
        source: "none: explain transfers nothing".into(),
        source_fs: "the payload's".into(),
        sink: SinkKind::Tcp,
        sink_description: "TCP over loopback".into(),
        sink_scatter_gather: Some(true),
        receiver: Some("separate process".into()),
        sink_device: None,
        skipped: vec![],
    };
    let empty = || Sample {
        sender: RoleSample::default(),
        receiver: RoleSample::default(),
        window_ns: 0,
        bytes: 0,
        zerocopy: None,
        retransmitted: None,
        send_time: None,
        received: None,
    };
    let runs = selected
        .iter()
        .map(|s| {
            (
                *s,
                s.fixed_sink().unwrap_or(SinkKind::Tcp),
                true,
                vec![empty()],
            )
        })
        .collect();
    let built = report::build(host, config, &plan, runs);
    let claims = crate::report::claims::Claims::seed();
    let width = report::Layout::terminal_width();
    let wrap = |text: &str, indent: &str| crate::ui::wrap::fill(text, width, indent);
    let mut out = String::new();
    let mut found = false;
    for s in &built.strategies {
        out.push_str(&wrap(
            &format!("{} ({}): {}", s.name, s.id, s.summary),
            "  ",
        ));
        out.push('\n');
        for (key, label, figure) in s.figures.columns() {
            if args.figure.as_deref().is_some_and(|f| f != key) {
                continue;
            }
            found = true;
            out.push_str(&wrap(
                &format!("  {label} ({key}): {}", figure.provenance.describe()),
                "      ",
            ));
            out.push('\n');
        }
        if args.figure.is_none() {
            for c in &s.copy_sites {
                out.push_str(&wrap(
                    &format!("  copy site {}: {}", c.site, c.provenance.describe()),
                    "      ",
                ));
                out.push('\n');
            }
            for c in claims.claims.iter().filter(|c| {
                strategies::by_name(&c.strategy).is_some_and(|x| s.id == RowId::Strategy(x.id()))
            }) {
                out.push_str(&wrap(
                    &format!(
                        "  the article claims {} {}{}",
                        c.value,
                        c.figure_label(),
                        c.quote
                            .as_ref()
                            .map(|q| format!(" (\"{q}\")"))
                            .unwrap_or_default()
                    ),
                    "      ",
                ));
                out.push('\n');
            }
        }
        out.push('\n');
    }
    if !found {
        let keys: Vec<&str> = built.strategies[0]
            .figures
            .columns()
            .iter()
            .map(|(k, _, _)| *k)
            .collect();
        return Err(InputError::Usage(format!(
            "unknown figure '{}': the figures are {}",
            args.figure.as_deref().unwrap_or_default(),
            keys.join(", ")
        ))
        .into());
    }
    crate::ui::output::print(&out).map_err(Error::Output)?;
    Ok(ExitCode::SUCCESS)
}
