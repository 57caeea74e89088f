//! zc-trace: how many times does the CPU copy the bytes when a program moves a file to a
//! socket, and what does each transfer strategy cost in user/kernel transitions?

/// `Display` (and, where asked, `Serialize`) of an identifier enum as its name, from the
/// method that names it: identifiers stay enums until they are printed, and each is printed
/// one way in text and JSON alike. A macro_rules! is visible below its definition only, so
/// it comes before the modules.
macro_rules! by_name {
    ($ty:ty, $name:ident: $($tr:ident),+) => {
        $(by_name!(@$tr $ty, $name);)+
    };
    (@Display $ty:ty, $name:ident) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.$name())
            }
        }
    };
    (@Serialize $ty:ty, $name:ident) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.$name())
            }
        }
    };
}

mod cli;
mod cmd;
mod error;
mod kernel;
mod report;
mod resources;
mod transfer;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::Error;

fn main() -> ExitCode {
    // Before anything ignores or blocks a signal: the traced command gets these back.
    cmd::trace::command::record_inherited_signals();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap prints them; a usage error is one line (exit 2).
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("zc-trace: {}", one_line_usage_error(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    // The receiver is a separate, single-threaded process: dispatch before anything else
    // (no logger threads, no runtime) so that it makes only the syscalls of its read loop.
    if let Command::Receiver(args) = &cli.command {
        return match transfer::receiver::serve(&args.serve()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("zc-trace receiver: {e}");
                ExitCode::from(4)
            }
        };
    }
    init_logging(cli.verbose);
    // A panic must not leave a device without scatter-gather or a namespace behind.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        resources::cleanup::run_all_after_panic();
        default_hook(info);
    }));
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zc-trace: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// clap's message without its "Usage:" block and tips: "error: ..." lines joined into one, with
/// a pointer to --help.
fn one_line_usage_error(message: &str) -> String {
    let what: Vec<&str> = message
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:") && !l.starts_with("For more"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    format!("{} (see --help)", what.join(" "))
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
}

fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    let listed = match &cli.command {
        Command::Run(args) => Some((&args.strategies, "--strategies")),
        Command::Trace(args) => args.strategy.as_ref().map(|s| (s, "--strategy")),
        _ => None,
    };
    if let Some(warning) = listed.and_then(|(list, option)| list.duplicates_warning(option)) {
        eprintln!("zc-trace: warning: {warning}");
    }
    match cli.command {
        // The bench's baseline: the same transfers without probes (see `untraced`).
        Command::Run(args) if args.untraced => cmd::untraced::main(args),
        Command::Run(args) => cmd::runner::main(args),
        Command::Trace(args) => cmd::trace::main(args),
        Command::Explain(args) => cmd::explain::main(args),
        Command::Claims => {
            ui::output::print(report::claims::seed_text()).map_err(Error::Output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Receive(args) => cmd::receive::receive(&args),
        Command::Probes(args) => cmd::probes::main(args),
        Command::Doctor(args) => cmd::doctor::main(args),
        Command::Strategies => {
            let list: String = transfer::strategies::ALL
                .iter()
                .map(|s| format!("{:<12} {}\n", s.id(), s.summary()))
                .collect();
            ui::output::print(&list).map_err(Error::Output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions(args) => {
            ui::output::write_with(|out| cmd::manpage::completions(args.shell, out))
                .map_err(Error::Output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            ui::output::write_with(cmd::manpage::man).map_err(Error::Output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cleanup(args) => cmd::cleanup::main(&args),
        Command::Receiver(_) => unreachable!("dispatched in main"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_error_is_one_line() {
        let e = Cli::try_parse_from(["zc-trace", "run", "--sizee", "1M"]).unwrap_err();
        let line = one_line_usage_error(&e.to_string());
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("unexpected argument '--sizee'"), "{line}");
        assert!(line.ends_with("(see --help)"), "{line}");
    }
}
