//! `-R`: every line of the input as its own invocation, as 1.31 runs it,
//! with consecutive writes pipelined. When the kernel's replies are lost,
//! what became of each line in flight is read back from the table
//! ([`ipvs_plan::fates`]).

use ipvs_netlink::{Handle, Op};
use ipvs_plan::fates::{self, Fate};
use ipvsadm_compat::messages as strerror;

use super::convert::to_op;
use crate::cli::{self, Entry, Stop};
use crate::io::{Flow, Out};
use std::io::BufRead;

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
#[cfg(test)]
fn dropped_at_eof(line: &[u8]) -> bool {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    line.iter().rev().take_while(|b| ws(b)).count() >= 2 || line.iter().all(ws)
}

/// The most words one restore line may hold (the word `ipvsadm`, which is
/// dropped, not counted). A word holds at most 4096 bytes, so a line's
/// words hold at most 4 MiB. ipvsadm 1.31 has no such bound: it keeps
/// every word of a line until the line ends, and on a line that never
/// ends (`/dev/zero`) grows until its memory runs out. Real lines have a
/// few dozen words.
pub const MAX_WORDS: usize = 1024;

/// What [`read_words`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The input ended before the line's first byte.
    End,
    /// A line was read, its words are in the vector. `dropped`: the line
    /// had no newline and ipvsadm drops it ([`restore_tokens`]'s notes).
    Line {
        /// ipvsadm drops this last line.
        dropped: bool,
    },
    /// The line has more than [`MAX_WORDS`] words: reading stopped there.
    TooManyWords,
    /// More than the byte budget was read: reading stopped there.
    TooLong,
}

/// The words of one restore line ([`read_words`]), as a slice of
/// `String`s whose storage is kept from line to line: a restore of
/// 50,000 lines allocates for its longest line, not for every word.
#[derive(Debug, Default)]
pub struct Words {
    /// The words, the first `len` of this line, the rest spare storage.
    pool: Vec<String>,
    len: usize,
    /// The bytes of the token being read, kept for the next line.
    token: Vec<u8>,
}

impl Words {
    /// No words, no storage yet.
    pub fn new() -> Words {
        Words::default()
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `bytes` as a word (invalid UTF-8 replaced, as
    /// `String::from_utf8_lossy` does), in a spare `String` when there is
    /// one.
    fn push(&mut self, bytes: &[u8]) {
        // `from_utf8` checks valid text faster than the lossy decoder.
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        match self.pool.get_mut(self.len) {
            Some(spare) => {
                spare.clear();
                spare.push_str(&text);
            }
            None => self.pool.push(text.into_owned()),
        }
        self.len += 1;
    }
}

impl std::ops::Deref for Words {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.pool[..self.len]
    }
}

/// Reads one restore line from `input` as [`restore_tokens`] splits it,
/// without holding the line itself: only its words, at most
/// [`MAX_WORDS`] of them, so memory stays bounded however long the line
/// (ipvsadm's `config_stream_read` reads in the same way, one token of at
/// most 4096 bytes at a time). `budget` bytes at most are read (the
/// count of bytes read is subtracted from it).
pub fn read_words(
    input: &mut dyn BufRead,
    words: &mut Words,
    budget: &mut u64,
) -> std::io::Result<Read> {
    /// The current token: its bytes before any NUL, and its length.
    struct Token {
        bytes: Vec<u8>,
        len: usize,
        nul: bool,
    }
    fn finish(token: &mut Token, words: &mut Words) -> bool {
        if token.len == 0 {
            return true;
        }
        // Only the bytes `ipvsadm` decode to the word `ipvsadm`.
        let ipvsadm = token.bytes == b"ipvsadm";
        let full = words.len() >= MAX_WORDS;
        if !ipvsadm && !full {
            words.push(&token.bytes);
        }
        token.bytes.clear();
        token.len = 0;
        token.nul = false;
        ipvsadm || !full
    }
    words.clear();
    let mut token = Token {
        bytes: std::mem::take(&mut words.token),
        len: 0,
        nul: false,
    };
    token.bytes.clear();
    let read = read_line(input, words, budget, &mut token);
    words.token = token.bytes;
    return read;

    /// The loop of [`read_words`] over `input`'s buffer, a run of word
    /// bytes at a time.
    fn read_line(
        input: &mut dyn BufRead,
        words: &mut Words,
        budget: &mut u64,
        token: &mut Token,
    ) -> std::io::Result<Read> {
        let (mut any, mut any_word_byte, mut trailing_blanks) = (false, false, 0usize);
        loop {
            let buf = match input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                if !any {
                    return Ok(Read::End);
                }
                if !finish(token, words) {
                    return Ok(Read::TooManyWords);
                }
                return Ok(Read::Line {
                    dropped: trailing_blanks >= 2 || !any_word_byte,
                });
            }
            if *budget == 0 {
                return Ok(Read::TooLong);
            }
            // What the budget lets us read of this buffer.
            let within = &buf[..buf
                .len()
                .min(usize::try_from(*budget).unwrap_or(usize::MAX))];
            any = true;
            let mut used = 0;
            let mut end = None;
            while used < within.len() {
                let b = within[used];
                if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                    used += 1;
                    if b == b'\n' {
                        end = Some(if finish(token, words) {
                            Read::Line { dropped: false }
                        } else {
                            Read::TooManyWords
                        });
                        break;
                    }
                    trailing_blanks += 1;
                    if !finish(token, words) {
                        end = Some(Read::TooManyWords);
                        break;
                    }
                    continue;
                }
                // A run of word bytes, cut in tokens of 4096 bytes.
                let run = within[used..]
                    .iter()
                    .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    .unwrap_or(within.len() - used);
                trailing_blanks = 0;
                any_word_byte = true;
                let mut rest = &within[used..used + run];
                while !rest.is_empty() {
                    if token.len == 4096 && !finish(token, words) {
                        end = Some(Read::TooManyWords);
                        break;
                    }
                    let (chunk, after) = rest.split_at(rest.len().min(4096 - token.len));
                    token.len += chunk.len();
                    used += chunk.len();
                    if !token.nul {
                        match chunk.iter().position(|&b| b == 0) {
                            Some(nul) => {
                                token.bytes.extend_from_slice(&chunk[..nul]);
                                token.nul = true;
                            }
                            None => token.bytes.extend_from_slice(chunk),
                        }
                    }
                    rest = after;
                }
                if end.is_some() {
                    break;
                }
            }
            let cut = within.len() < buf.len();
            *budget -= used as u64;
            input.consume(used);
            if let Some(end) = end {
                return Ok(end);
            }
            if cut {
                return Ok(Read::TooLong);
            }
        }
    }
}

/// One line of a restore as [`Reader::next`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The input ended (or its last line has no newline and ipvsadm
    /// drops it: [`restore_tokens`]'s notes).
    End,
    /// A line without words.
    Blank,
    /// A line that is a kernel write, as [`to_op`] makes it of what
    /// [`cli::parse()`] makes of the line's words.
    Write(Op),
    /// Any other line (a listing, a parse error): what [`cli::parse()`]
    /// makes of its words, to run as its own invocation.
    Other(Result<Entry, Stop>),
    /// The line has more than [`MAX_WORDS`] words: reading stopped there.
    TooLong,
}

/// Reads a restore line by line ([`read_words`]), each parsed as its own
/// invocation: the words' storage is kept from line to line.
#[derive(Debug)]
pub struct Reader {
    words: Words,
    /// No bound on the bytes of the whole restore, as in 1.31: a line of
    /// endless blanks is read in constant memory, as 1.31 reads it.
    budget: u64,
    /// Whether the lines `-S` prints are read straight to their write
    /// (always but in the tests that compare both ways).
    saved: bool,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new()
    }
}

impl Reader {
    /// A reader at the first line.
    pub fn new() -> Reader {
        Reader {
            words: Words::new(),
            budget: u64::MAX,
            saved: true,
        }
    }

    /// A reader that reads every line word by word: what the fast path
    /// is compared with.
    #[cfg(test)]
    fn word_by_word() -> Reader {
        Reader {
            saved: false,
            ..Reader::new()
        }
    }

    /// The next line of `input`, parsed as the invocation `prog` with its
    /// words.
    ///
    /// A line that the reader's buffer holds whole and that is one of the
    /// shapes `-S` prints is read straight to its write
    /// ([`cli::saved::write_first_line`]); any other line, or one that path does not
    /// take, is read word by word ([`read_words`]) and parsed as 1.31
    /// parses it. Both give the same write.
    pub fn next(&mut self, input: &mut dyn BufRead, prog: &str) -> std::io::Result<Next> {
        match input.fill_buf() {
            Ok(buf) if self.saved => {
                let saved = cli::saved::write_first_line(buf)
                    .filter(|&(_, used)| used as u64 <= self.budget);
                if let Some((op, used)) = saved {
                    input.consume(used);
                    self.budget -= used as u64;
                    return Ok(Next::Write(op));
                }
            }
            // read_words reads again.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        match read_words(input, &mut self.words, &mut self.budget)? {
            Read::End | Read::Line { dropped: true } => return Ok(Next::End),
            Read::Line { dropped: false } => {}
            Read::TooManyWords | Read::TooLong => return Ok(Next::TooLong),
        }
        if self.words.is_empty() {
            return Ok(Next::Blank);
        }
        let parsed = cli::parse(prog, &self.words);
        Ok(match parsed.as_ref().ok().and_then(to_op) {
            Some(op) => Next::Write(op),
            None => Next::Other(parsed),
        })
    }
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
    let found = fates::fates(handle, ops, known, strerror::describe);
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
    let mut result = 0;
    let mut pending = Pending::default();
    let mut reader = Reader::new();
    let mut number = 0;
    loop {
        let parsed = match reader.next(io.input, prog) {
            Ok(Next::End) => break,
            Ok(Next::Blank) => {
                number += 1;
                continue;
            }
            Ok(Next::Write(op)) => {
                number += 1;
                pending.ops.push(op);
                pending.lines.push(number);
                if pending.ops.len() >= ipvs_netlink::MAX_IN_FLIGHT {
                    match pending.flush(handle, prog, io) {
                        Ok(r) => result = r.unwrap_or(result),
                        Err(flow) => return flow,
                    }
                }
                continue;
            }
            Ok(Next::Other(parsed)) => {
                number += 1;
                parsed
            }
            Ok(Next::TooLong) => {
                if let Err(flow) = pending.flush(handle, prog, io) {
                    return flow;
                }
                io.err(&format!(
                    "{prog}: line {} of the rules has more than {MAX_WORDS} words: the restore stopped\n",
                    number + 1
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
        };
        if let Err(flow) = pending.flush(handle, prog, io) {
            return flow;
        }
        match run_line(handle, parsed, io) {
            Flow::Return(r) => result = r,
            exit @ Flow::Exit(_) => return exit,
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
    use proptest::prelude::*;

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

    /// `input` read with [`read_words`], line by line: each line's words
    /// and whether it was dropped.
    fn streamed(input: &[u8]) -> Vec<(Vec<String>, bool)> {
        streamed_by(input, 7)
    }

    /// [`streamed`] through a reader's buffer of `capacity` bytes.
    fn streamed_by(input: &[u8], capacity: usize) -> Vec<(Vec<String>, bool)> {
        let mut r = std::io::BufReader::with_capacity(capacity, input);
        let (mut words, mut budget, mut out) = (Words::new(), u64::MAX, Vec::new());
        loop {
            match read_words(&mut r, &mut words, &mut budget).unwrap() {
                Read::End => return out,
                Read::Line { dropped } => out.push((words.to_vec(), dropped)),
                other => panic!("{other:?}"),
            }
        }
    }

    /// The same input split into lines first, then cut into words.
    fn whole(input: &[u8]) -> Vec<(Vec<String>, bool)> {
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (line, dropped) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..=i], false),
                None => (rest, dropped_at_eof(rest)),
            };
            out.push((restore_tokens(line), dropped));
            rest = &rest[line.len()..];
        }
        out
    }

    #[test]
    fn streamed_words_are_the_words_of_the_whole_line() {
        let mut long = vec![b'a'; 4096];
        long.extend_from_slice(b"\x00bc");
        long.extend(vec![0; 5000]);
        long.extend_from_slice(b" ipvsadm \xc3\xa9\xff\n");
        long.extend(vec![b'b'; 4095]);
        long.extend_from_slice("\u{e9}x".as_bytes());
        let inputs: [&[u8]; 12] = [
            b"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m\n",
            b"ipvsadm -A -t 10.0.0.1:80 -s rr\n\n   \n-a -t 10.0.0.1:80 -r 10.0.1.1 -m ipvsadm -w 2\n",
            b"-A -t 10.0.0.1:80 -s rr\r\n-A\t-t 10.0.0.2:80\r\n",
            b"-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80",
            b"-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80  ",
            b"-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 ",
            b"",
            b" \t",
            b"\x00",
            b"-A -t 10.0.0.1:80\x00junk -s rr\x00x\n-A -t 10.0.0.2:80 -s wlc\x00\n",
            b"\x00\x00 -A -t 10.0.0.1:80\n-A -t 10.0.0.2:80 \x00\n-A -t 10.0.0.3:80\n",
            &long,
        ];
        for input in inputs {
            assert_eq!(streamed(input), whole(input), "{input:?}");
        }
    }

    /// Bytes that make restore lines: words, the separators, NUL,
    /// invalid UTF-8, the word `ipvsadm`, and runs near the 4096-byte
    /// token bound.
    fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"a".to_vec()),
            Just(b"-A".to_vec()),
            Just(b"ipvsadm".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\x00".to_vec()),
            Just(b"\xc3\xa9\xff".to_vec()),
            (4090usize..4100).prop_map(|n| vec![b'x'; n]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the reader's buffer, the words read are those of the
        /// whole line split as 1.31 splits it.
        #[test]
        fn any_buffer_reads_the_words_of_the_whole_line(
            input in line_bytes(),
            capacity in 1usize..64,
        ) {
            prop_assert_eq!(streamed_by(&input, capacity), whole(&input));
        }

        /// A budget of the input's length reads it all; one byte less
        /// stops at the last byte, as too long, having read the budget.
        #[test]
        fn the_budget_is_the_bytes_read(input in line_bytes(), capacity in 1usize..64) {
            prop_assume!(!input.is_empty());
            let mut r = std::io::BufReader::with_capacity(capacity, &input[..]);
            let (mut words, mut budget) = (Words::new(), input.len() as u64 - 1);
            let mut last = Read::End;
            for _ in 0..=input.len() {
                last = read_words(&mut r, &mut words, &mut budget).unwrap();
                if !matches!(last, Read::Line { dropped: false }) {
                    break;
                }
            }
            // The input's last byte is never read, so no line can end
            // after it: the read that reaches it is cut.
            prop_assert_eq!(last, Read::TooLong);
            prop_assert_eq!(budget, 0);
        }
    }

    /// A reader of endless bytes, as `/dev/zero` is, that counts them.
    struct Endless(u8, u64);

    impl std::io::Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(self.0);
            self.1 += buf.len() as u64;
            Ok(buf.len())
        }
    }

    #[test]
    fn an_endless_line_is_refused_after_its_words_not_its_bytes() {
        // /dev/zero: one empty word per 4096 bytes, refused at the bound.
        let mut r = std::io::BufReader::new(Endless(0, 0));
        let (mut words, mut budget) = (Words::new(), u64::MAX);
        let read = read_words(&mut r, &mut words, &mut budget).unwrap();
        assert_eq!(read, Read::TooManyWords);
        assert_eq!(words.len(), MAX_WORDS);
        assert!(
            r.get_ref().1 <= (MAX_WORDS as u64 + 3) * 4096,
            "{}",
            r.get_ref().1
        );
        // Endless words: the same.
        let mut r = std::io::BufReader::new(Endless(b'x', 0));
        let read = read_words(&mut r, &mut words, &mut budget).unwrap();
        assert_eq!(read, Read::TooManyWords);
        // Endless blanks hold nothing; the budget ends them.
        let mut r = std::io::BufReader::new(Endless(b' ', 0));
        let mut budget = 10 << 20;
        let read = read_words(&mut r, &mut words, &mut budget).unwrap();
        assert_eq!((read, words.len(), budget), (Read::TooLong, 0, 0));
    }

    /// Every `Next` of `input` read through a buffer of `capacity` bytes,
    /// up to the end or a line too long.
    fn lines_of(input: &[u8], capacity: usize, mut reader: Reader) -> Vec<Next> {
        let mut r = std::io::BufReader::with_capacity(capacity, input);
        let mut out = Vec::new();
        loop {
            let next = reader.next(&mut r, "ipvsadm").unwrap();
            let stop = matches!(next, Next::End | Next::TooLong);
            out.push(next);
            if stop {
                return out;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A restore read with the fast path gives, line by line, what it
        /// gives read word by word: the same writes, the same other lines
        /// (1.31's errors with their messages and exit codes), the same
        /// blank lines and end, whatever the buffer.
        #[test]
        fn the_fast_path_reads_a_restore_as_the_words_do(
            lines in proptest::collection::vec(crate::cli::saved::tests::lines(), 0..12),
            blank in proptest::collection::vec(any::<bool>(), 12),
            newline_at_end in any::<bool>(),
            capacity in prop_oneof![1usize..80, Just(8192)],
        ) {
            let mut input = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                if blank[i] {
                    input.extend_from_slice(b" \t\n");
                }
                input.extend_from_slice(line);
                if i + 1 < lines.len() || newline_at_end {
                    input.push(b'\n');
                }
            }
            prop_assert_eq!(
                lines_of(&input, capacity, Reader::new()),
                lines_of(&input, capacity, Reader::word_by_word()),
                "{}", String::from_utf8_lossy(&input)
            );
        }
    }
}
