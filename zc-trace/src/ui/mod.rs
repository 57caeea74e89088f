//! The terminal: writing to stdout whatever became of it (`output`), and the progress lines
//! on stderr (`progress`).

pub mod output;
pub mod progress;
