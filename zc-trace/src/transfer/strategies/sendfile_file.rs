//! sendfile(file -> file): like sendfile to a socket, but the target is a regular file, whose
//! page cache must be written: the spliced pages are copied into it by the CPU.

use std::io;

use crate::transfer::sink::SinkKind;

use super::sendfile::SendfileStrategy;
use super::{Strategy, Transfer, TransferContext};

#[derive(Debug)]
pub struct SendfileFileStrategy;

impl Strategy for SendfileFileStrategy {
    fn id(&self) -> super::StrategyId {
        super::StrategyId::SendfileFile
    }
    fn name(&self) -> &'static str {
        "sendfile (file->file)"
    }
    fn summary(&self) -> &'static str {
        "sendfile(new file in --tmpdir, file, &offset, chunk) per chunk"
    }
    fn fixed_sink(&self) -> Option<SinkKind> {
        Some(SinkKind::File)
    }
    fn prepare<'a>(&self, cx: TransferContext<'a>) -> io::Result<Box<dyn Transfer + 'a>> {
        // The same calls as sendfile to a socket; only the sink differs.
        SendfileStrategy.prepare(cx)
    }
}
