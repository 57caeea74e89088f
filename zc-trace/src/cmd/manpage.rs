//! `zc-trace completions SHELL` and `zc-trace man`: generated from the clap definition, so
//! that they cannot drift from the options zc-trace really takes.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::cli::Cli;

/// The command line as users see it: without hidden subcommands (`__receiver`, which
/// clap_complete would otherwise offer on TAB; clap_mangen leaves them out already).
fn public() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("zc-trace")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .after_help(full.get_after_help().cloned().unwrap_or_default())
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .subcommand_required(true)
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut public(), "zc-trace", &mut script);
    out.write_all(&script)
}

/// One manual page, zc-trace(1), with a section per subcommand (its synopsis, description,
/// options and examples) rather than clap_mangen's pointers to zc-trace-run(1) and the like,
/// which no one installs.
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = public();
    cmd.build();
    let page = clap_mangen::Man::new(cmd.clone());
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("zc-trace {}", sub.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase().replace('-', "\\-"))?;
        let part = clap_mangen::Man::new(sub.clone().bin_name(&name));
        let mut roff = Vec::new();
        part.render_synopsis_section(&mut roff)?;
        part.render_description_section(&mut roff)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            part.render_options_section(&mut roff)?;
        }
        if sub.get_after_help().is_some() {
            part.render_extra_section(&mut roff)?;
        }
        // Its sections become subsections of the subcommand's.
        let roff = String::from_utf8_lossy(&roff)
            .replace(".SH EXTRA", ".SS EXAMPLES")
            .replace(".SH ", ".SS ");
        out.write_all(roff.as_bytes())?;
    }
    let mut extra = Vec::new();
    page.render_extra_section(&mut extra)?;
    out.write_all(
        String::from_utf8_lossy(&extra)
            .replace(".SH EXTRA", ".SH \"EXAMPLES AND EXIT STATUS\"")
            .as_bytes(),
    )?;
    page.render_version_section(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_zc_trace_and_leave_hidden_subcommands_out() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::Elvish,
            clap_complete::Shell::PowerShell,
        ] {
            let mut script = Vec::new();
            completions(shell, &mut script).unwrap();
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("zc-trace"), "{shell}: {script}");
            for sub in ["run", "trace", "probes", "completions", "sink"] {
                assert!(script.contains(sub), "{shell}: no {sub}");
            }
            assert!(!script.contains("__receiver"), "{shell}: {script}");
        }
    }

    #[test]
    fn the_man_page_covers_every_subcommand() {
        let mut page = Vec::new();
        man(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains("\n.TH zc-trace 1"),
            "{page}"
        );
        for needle in [
            ".TH zc-trace 1",
            ".SH \"ZC\\-TRACE RUN\"",
            ".SH \"ZC\\-TRACE TRACE\"",
            "\\-\\-strategies",
            "\\-\\-pid",
            ".SH \"EXAMPLES AND EXIT STATUS\"",
        ] {
            assert!(page.contains(needle), "no {needle:?} in:\n{page}");
        }
        assert!(!page.contains("receiver\\-"), "hidden subcommand:\n{page}");
        assert!(!page.contains("zc\\-trace\\-run(1)"), "{page}");
    }
}
