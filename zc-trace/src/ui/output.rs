//! Standard output, for every subcommand. A reader that stops reading (`zc-trace probes | head`)
//! is not an error: Rust ignores SIGPIPE, so a write into a closed pipe fails with EPIPE
//! (BrokenPipe), on which `println!` panics (exit 101) and `?` would make a failure of it. Every
//! write to stdout goes through here instead: BrokenPipe ends the output quietly, later writes
//! are skipped, and the subcommand exits with its own status. Other errors (a full disk behind
//! `> file`) are still errors.

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the reader of stdout is gone.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes what `write` writes to stdout (buffered, then flushed). Ok when the reader went away
/// before or while it wrote.
pub fn write_with(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let written = write(&mut out).and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            // Dropped with its buffer emptied: nothing is written a second time.
            let _ = out.into_parts();
            Ok(())
        }
        r => r,
    }
}

/// `text` on stdout, as is.
pub fn print(text: &str) -> io::Result<()> {
    write_with(|out| out.write_all(text.as_bytes()))
}

/// `line` and a newline on stdout.
pub fn println(line: &str) -> io::Result<()> {
    write_with(|out| {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")
    })
}
