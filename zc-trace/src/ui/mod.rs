//! The terminal: writing to stdout whatever became of it (`output`), and the progress lines
//! on stderr (`progress`), and sizes, rates and durations in words (`units`).

pub mod output;
pub mod progress;
pub mod units;
