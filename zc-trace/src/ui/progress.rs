//! Progress on stderr while zc-trace works (indicatif), only when stderr is a terminal and not
//! --quiet: a pipe or a log file gets nothing. Updates are drawn between transfers, never inside
//! a measured window (the window counts the sender thread's syscalls, and a draw is a write).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress(Option<ProgressBar>);

impl Progress {
    fn enabled(quiet: bool) -> bool {
        !quiet && std::io::stderr().is_terminal()
    }

    /// A bar of `total` steps.
    pub fn steps(quiet: bool, total: u64) -> Progress {
        if !Self::enabled(quiet) {
            return Progress(None);
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} {msg}").expect("a valid template"),
        );
        Progress(Some(bar))
    }

    /// A spinner for one long step (generating the payload), ticking on its own thread.
    pub fn spinner(quiet: bool, message: String) -> Progress {
        if !Self::enabled(quiet) {
            return Progress(None);
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} {spinner} {msg}").expect("a valid template"),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress(Some(bar))
    }

    /// The next step starts.
    pub fn step(&self, message: String) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
            bar.set_message(message);
        }
    }

    /// Done: the line is removed, so the report starts on a clean terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
