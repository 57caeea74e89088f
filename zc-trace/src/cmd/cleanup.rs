//! `zc-trace cleanup`: finds what killed runs left (`resources::sweep`), and removes it or,
//! with --dry-run, lists it.

use std::process::ExitCode;

use crate::cli::CleanupArgs;
use crate::error::Error;
use crate::resources::sweep;

/// `zc-trace cleanup`: exit 0 when everything found was removed (or nothing was found), 4
/// when something could not be.
pub fn main(args: &CleanupArgs) -> Result<ExitCode, Error> {
    crate::kernel::capabilities::check_privileges()?;
    // From another PID namespace a live host run's maker is invisible, so its namespaces
    // would be swept as dead.
    sweep::in_host_pid_namespace()?;
    let found = sweep::find(&args.tmpdir, true);
    if found.is_empty() {
        say("nothing to remove: no leftover of a killed zc-trace")?;
    }
    let mut failed = 0;
    for l in &found {
        if args.dry_run {
            say(&format!("would remove {l}"))?;
            continue;
        }
        match sweep::remove(l) {
            Ok(()) => say(&format!("removed {l}"))?,
            Err(e) => {
                failed += 1;
                eprintln!("zc-trace: cannot remove {l}: {e}");
            }
        }
    }
    Ok(ExitCode::from(if failed > 0 { 4 } else { 0 }))
}

/// A line on stdout (`output`: a closed pipe ends the listing, not the cleanup).
fn say(line: &str) -> Result<(), Error> {
    crate::ui::output::println(line).map_err(Error::Output)
}
