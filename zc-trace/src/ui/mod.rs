//! The terminal: writing to stdout whatever became of it (`output`), and the progress lines
//! on stderr (`progress`), sizes, rates and durations in words (`units`), and prose wrapped to a width (`wrap`).

pub mod output;
pub mod progress;
pub mod units;
pub mod wrap;
