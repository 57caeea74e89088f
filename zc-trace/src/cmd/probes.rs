//! `zc-trace probes`: attach the whole plan, print what worked (or why not) per hook, and
//! which of the plan's functions this kernel has, then detach.

use std::process::ExitCode;

use crate::cli::ProbesArgs;
use crate::error::Error;
use crate::kernel::probes;

/// `zc-trace probes`: attach the whole plan, print what worked, detach.
pub fn main(args: ProbesArgs) -> Result<ExitCode, Error> {
    let session = crate::cmd::session::Session::open()?;
    let report = session.attach_plan()?;
    let host = session.host;
    let functions = probes::function_presence();
    if args.json {
        let doc = serde_json::json!({
            "schema": 1,
            "host": host,
            "probes": report.hooks,
            "functions": functions,
        });
        crate::ui::output::println(&serde_json::to_string_pretty(&doc).expect("serialisable"))
            .map_err(Error::Output)?;
    } else {
        let mut text = format!("kernel {} ({})\n", host.kernel, host.arch);
        if let Some(note) = &host.btf_note {
            text.push_str(&format!("note: {note}\n"));
        }
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        table.set_header(["hook", "site", "method", "target", "tried first / why not"]);
        for h in &report.hooks {
            table.add_row([
                h.hook.name().to_string(),
                h.site.to_string(),
                h.method_label
                    .clone()
                    .unwrap_or_else(|| "NOT OBSERVABLE".into()),
                h.target.clone().unwrap_or_else(|| "-".into()),
                h.why_not(),
            ]);
        }
        text.push_str(&format!("{table}\n"));
        crate::ui::output::print(&text).map_err(Error::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}
