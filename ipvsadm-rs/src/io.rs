//! The types every command shares: where input comes from and output
//! goes ([`Out`]), and how an invocation ended ([`Flow`]).

use std::io::{BufRead, Write};

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `process_options` returned this value (0 or -1).
    Return(i32),
    /// The process exits with this code (ipvsadm called `exit`).
    Exit(i32),
}

/// Where input comes from and output goes (the standard streams, or
/// buffers in tests).
pub struct Out<'a> {
    /// Standard input (the rules of `-R`).
    pub input: &'a mut dyn BufRead,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// `--json`: list commands print one JSON document.
    pub json: bool,
}

impl Out<'_> {
    /// Writes `text` on standard error after flushing standard output, so
    /// that the two streams interleave as ipvsadm's unbuffered ones do.
    pub fn err(&mut self, text: &str) {
        let _ = self.out.flush();
        let _ = self.err.write_all(text.as_bytes());
        let _ = self.err.flush();
    }
}
