//! `-R`: every line of the input as its own invocation, as 1.31 runs it,
//! with consecutive writes pipelined. When the kernel's replies are lost,
//! what became of each line in flight is read back from the table
//! ([`ipvs_plan::fates`]).

use ipvs_netlink::{Handle, Op};
use ipvs_plan::fates::{self, Fate};
use ipvs_plan::messages as strerror;

use super::convert::to_op;
use crate::cli::{self, Entry, Stop};
use crate::io::{Flow, Out};
use ipvs_plan::input;

/// The words of one restore line as ipvsadm's `config_stream_read`
/// splits them: on space, tab, CR and LF, in tokens of at most 4096
/// bytes, without the word `ipvsadm`. A NUL byte ends its token, as the
/// C string it is read into ends there: the rest of those 4096 bytes is
/// lost, and a token that starts with NUL is an empty word.
pub fn restore_tokens(line: &[u8]) -> Vec<String> {
    line.split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .filter(|w| !w.is_empty())
        .flat_map(|w| w.chunks(4096))
        .map(|w| w.split(|&b| b == 0).next().unwrap_or_default())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .filter(|w| w != "ipvsadm")
        .collect()
}

/// Whether ipvsadm drops a last line that has no newline: its reader
/// gives up when it meets the end of input while skipping a second
/// whitespace character.
fn dropped_at_eof(line: &[u8]) -> bool {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    line.iter().rev().take_while(|b| ws(b)).count() >= 2 || line.iter().all(ws)
}

/// The writes of a restore waiting to be sent, with their line numbers.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    lines: Vec<usize>,
}

impl Pending {
    /// Sends the waiting writes pipelined and prints each failure in line
    /// order, as ipvsadm prints them line by line. Returns the last
    /// line's result, or the process exit when the kernel's answers were
    /// lost.
    fn flush(
        &mut self,
        handle: &mut Handle,
        prog: &str,
        io: &mut Out,
    ) -> Result<Option<i32>, Flow> {
        if self.ops.is_empty() {
            return Ok(None);
        }
        let outcome = handle.apply(&self.ops);
        let ops = std::mem::take(&mut self.ops);
        let lines = std::mem::take(&mut self.lines);
        let (first, last_line) = (lines[0], lines[lines.len() - 1]);
        let results = match outcome {
            Ok(r) => r,
            Err(err) => {
                io.err(&format!(
                    "{prog}: lines {first} to {last_line} of the restore were sent but their outcome is unknown: {err}\n"
                ));
                report_fates(handle, &ops, &lines, None, io);
                io.err(&format!(
                    "{prog}: the restore stopped after line {last_line}\n"
                ));
                return Err(Flow::Exit(1));
            }
        };
        let mut last = 0;
        let mut lost = false;
        for result in &results {
            last = match result {
                Ok(()) => 0,
                Err(ipvs_netlink::Error::ReplyLost { .. }) => {
                    lost = true;
                    -1
                }
                Err(err) => {
                    io.err(&format!("{}\n", strerror::describe(err)));
                    -1
                }
            };
        }
        if lost {
            io.err(&format!(
                "{prog}: the kernel's replies to some of lines {first} to {last_line} were lost (receive buffer overflow); their fates:\n"
            ));
            report_fates(handle, &ops, &lines, Some(&results), io);
            io.err(&format!(
                "{prog}: the restore stopped after line {last_line}\n"
            ));
            return Err(Flow::Exit(1));
        }
        Ok(Some(last))
    }
}

/// Prints, for each line that was in flight, what became of its write
/// ([`fates::fates`]).
fn report_fates(
    handle: &mut Handle,
    ops: &[Op],
    lines: &[usize],
    known: Option<&[ipvs_netlink::Result<()>]>,
    io: &mut Out,
) {
    let found = fates::fates(handle, ops, known);
    for (line, fate) in lines.iter().zip(found) {
        let text = match fate {
            Fate::Applied(why) => format!("applied{}", why.text()),
            Fate::NotApplied(why) => format!("not applied{}", why.text()),
            Fate::Unknown(why) => format!("unknown{}", why.text()),
        };
        io.err(&format!("line {line}: {text}\n"));
    }
}

/// `-R`: every line of stdin as its own invocation. Kernel errors print
/// their message and the next line runs; the result is the last line's.
///
/// Writes are not sent one by one: consecutive ones are pipelined (up to
/// [`ipvs_netlink::MAX_IN_FLIGHT`] per datagram) and their errors printed
/// in line order. Before any other line (a listing, a parse error, the
/// end of input) the waiting writes are sent, so what is printed and
/// applied is what ipvsadm would print and apply, in the same order.
///
/// `run_line` runs a line that is not a write (a listing, a parse error)
/// as its own invocation: the dispatcher's.
pub fn restore(
    handle: &mut Handle,
    prog: &str,
    reading_stdin: bool,
    io: &mut Out,
    mut run_line: impl FnMut(&mut Handle, Result<Entry, Stop>, &mut Out) -> Flow,
) -> Flow {
    if reading_stdin {
        io.err(&format!(
            "Try `{prog} -h' or '{prog} --help' for more information.\n"
        ));
        return Flow::Exit(255);
    }
    let limit = match input::max_input() {
        Ok(n) => n,
        Err(msg) => {
            io.err(&format!("{prog}: {msg}\n"));
            return Flow::Exit(2);
        }
    };
    let mut result = 0;
    let mut pending = Pending::default();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = input::read_line(io.input, &mut line, limit);
        match read {
            Ok(Some(0)) => break,
            Ok(Some(_)) => number += 1,
            Ok(None) => {
                if let Err(flow) = pending.flush(handle, prog, io) {
                    return flow;
                }
                let what = format!("line {} of the rules", number + 1);
                io.err(&format!(
                    "{prog}: {}: the restore stopped\n",
                    input::too_long(&what, limit)
                ));
                return Flow::Exit(2);
            }
            Err(e) => {
                if let Err(flow) = pending.flush(handle, prog, io) {
                    return flow;
                }
                io.err(&format!("{prog}: cannot read the rules: {e}\n"));
                return Flow::Exit(1);
            }
        }
        if !line.ends_with(b"\n") && dropped_at_eof(&line) {
            break;
        }
        let words = restore_tokens(&line);
        if words.is_empty() {
            continue;
        }
        let parsed = cli::parse(prog, &words);
        match parsed.as_ref().ok().and_then(to_op) {
            Some(op) => {
                pending.ops.push(op);
                pending.lines.push(number);
                if pending.ops.len() >= ipvs_netlink::MAX_IN_FLIGHT {
                    match pending.flush(handle, prog, io) {
                        Ok(r) => result = r.unwrap_or(result),
                        Err(flow) => return flow,
                    }
                }
            }
            None => {
                if let Err(flow) = pending.flush(handle, prog, io) {
                    return flow;
                }
                match run_line(handle, parsed, io) {
                    Flow::Return(r) => result = r,
                    exit @ Flow::Exit(_) => return exit,
                }
            }
        }
    }
    match pending.flush(handle, prog, io) {
        Ok(r) => Flow::Return(r.unwrap_or(result)),
        Err(flow) => flow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_lines_drop_the_word_ipvsadm_and_split_on_whitespace() {
        assert_eq!(
            restore_tokens(b"ipvsadm -A\t-t 10.0.0.1:80 -s ipvsadm rr\r\n"),
            ["-A", "-t", "10.0.0.1:80", "-s", "rr"]
        );
        assert!(restore_tokens(b"   \n").is_empty());
        assert_eq!(restore_tokens(b"# comment").len(), 2);
    }

    #[test]
    fn a_nul_byte_ends_its_token_as_in_ipvsadm() {
        // config_stream_read copies each token of at most 4096 bytes with
        // strdup, which stops at the first NUL.
        assert_eq!(
            restore_tokens(b"-A -t 10.0.0.1\x00:80 -s rr\x00junk\n"),
            ["-A", "-t", "10.0.0.1", "-s", "rr"]
        );
        assert_eq!(restore_tokens(b"\x00\x00 -C ipvsadm\x00x"), ["", "-C"]);
        let mut long = vec![b'a'; 4096];
        long.extend_from_slice(b"\x00bc");
        long.extend(vec![0; 5000]);
        assert_eq!(
            restore_tokens(&long),
            ["a".repeat(4096), String::new(), String::new()]
        );
    }

    #[test]
    fn an_unterminated_last_line_is_dropped_after_two_blanks() {
        assert!(!dropped_at_eof(b"-C"));
        assert!(!dropped_at_eof(b"-C "));
        assert!(dropped_at_eof(b"-C  "));
        assert!(dropped_at_eof(b" \t"));
    }
}
