//! The live mode's log: lines with a UTC time stamp on stderr, shared by
//! the loop (`live`) and the API gates (`api`).

use std::io::{self, Write};

/// The log: lines with a UTC time stamp on stderr; debug lines only with
/// `--verbose`.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    /// Whether debug lines are printed.
    pub verbose: bool,
}

impl Log {
    /// Now, to the millisecond.
    fn stamp() -> String {
        let now = jiff::Timestamp::now();
        now.round(jiff::Unit::Millisecond)
            .unwrap_or(now)
            .to_string()
    }

    fn line(&self, level: &str, msg: &str) {
        self.each(level, msg.lines(), |text, line| text.push_str(line));
    }

    /// Lines at `level`, one per item, each written by `write` (without
    /// its newline), all with one time stamp and in one write to stderr.
    fn each<T>(
        &self,
        level: &str,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut String, T),
    ) {
        let prefix = format!("{} {level} ", Self::stamp());
        let mut text = String::new();
        for item in items {
            text.push_str(&prefix);
            write(&mut text, item);
            text.push('\n');
        }
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }

    /// An info line (each line of `msg`, all with one time stamp).
    pub fn info(&self, msg: &str) {
        self.line("info", msg);
    }

    /// Info lines, one per item, each written by `write` (without its
    /// newline), all with one time stamp and in one write to stderr.
    pub fn info_each<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        write: impl FnMut(&mut String, T),
    ) {
        self.each("info", items, write);
    }

    /// A warning line.
    pub fn warn(&self, msg: &str) {
        self.line("warn", msg);
    }

    /// A debug line (`--verbose` only).
    pub fn debug(&self, msg: &str) {
        if self.verbose {
            self.line("debug", msg);
        }
    }
}
