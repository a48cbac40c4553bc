//! The live mode's log: lines with a UTC time stamp on stderr, shared by
//! the loop (`live`) and the API gates (`api`).

use std::io::{self, Write};

pub use crate::escape_controls;

/// The text of log lines at `level` after `prefix` (the time stamp), one
/// per item, each written by `write`: whatever it writes is one line, its
/// control characters escaped ([`escape_controls`]).
fn render<T>(
    prefix: &str,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) -> String {
    let mut text = String::new();
    let mut item_text = String::new();
    for item in items {
        item_text.clear();
        write(&mut item_text, item);
        text.push_str(prefix);
        text.push_str(&escape_controls(&item_text));
        text.push('\n');
    }
    text
}

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

    /// Each line of `msg` as a log line (our messages join their lines
    /// with newlines), other control characters escaped.
    fn line(&self, level: &str, msg: &str) {
        self.each(level, msg.lines(), |text, line| text.push_str(line));
    }

    /// Lines at `level`, one per item, each written by `write` (without
    /// its newline), all with one time stamp and in one write to stderr.
    fn each<T>(
        &self,
        level: &str,
        items: impl IntoIterator<Item = T>,
        write: impl FnMut(&mut String, T),
    ) {
        let prefix = format!("{} {level} ", Self::stamp());
        let text = render(&prefix, items, write);
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }

    /// An info line (each line of `msg`, all with one time stamp).
    pub fn info(&self, msg: &str) {
        self.line("info", msg);
    }

    /// Info lines, one per item, each written by `write` (without its
    /// newline), all with one time stamp and in one write to stderr. What
    /// `write` writes is one line whatever it holds: its control
    /// characters, a newline in a name among them, are escaped.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn a_newline_in_a_field_cannot_forge_a_line() {
        // The case: an object named so that its op line would end
        // and a line of the attacker's follow.
        let origin = "default/web\ninfo FAKE LINE:http";
        let text = render("T info ", [origin], |out, o| {
            out.push_str(&format!("-A -t 10.96.0.10:80 -s rr ({o})"))
        });
        assert_eq!(
            text,
            "T info -A -t 10.96.0.10:80 -s rr (default/web\\ninfo FAKE LINE:http)\n"
        );
        assert_eq!(text.lines().count(), 1);
        // Every control character, terminal escapes and C1 included.
        assert_eq!(
            escape_controls("a\rb\tc\x1b[2Jd\u{85}e\x7f"),
            "a\\rb\\tc\\u{1b}[2Jd\\u{85}e\\u{7f}"
        );
        assert!(matches!(
            escape_controls("default/web:80 é"),
            Cow::Borrowed(_)
        ));
    }
}
