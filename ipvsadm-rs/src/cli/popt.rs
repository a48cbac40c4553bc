//! A tokenizer that walks argv exactly as popt 1.19 does for ipvsadm.
//!
//! What matters for compatibility, and what clap cannot reproduce:
//! - options are returned one at a time, in order, so that each can be
//!   handled when it is reached (`-6` after `-f`, `-r` after `-t`);
//! - short options cluster (`-Ln`), and an option with an argument takes
//!   the rest of its cluster (`-t10.0.0.1:80`, `-t=...`) or the next word,
//!   even one starting with `-`;
//! - an optional argument (`-p`) takes the next word unless it starts
//!   with `-`;
//! - words that are not options are set aside as leftovers and parsing
//!   goes on; `--` makes every later word a leftover;
//! - a failing option is reported with the last argv word consumed, which
//!   is what `poptBadOption` returns.

/// Whether an option takes an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A flag.
    None,
    /// A mandatory argument.
    Required,
    /// An optional argument (only `-p`).
    Optional,
}

/// One entry of the option table, as popt sees it.
pub trait OptionSpec {
    /// The long name, without `--`.
    fn long(&self) -> &str;
    /// The short letter, if any.
    fn short(&self) -> Option<char>;
    /// Whether it takes an argument.
    fn arg(&self) -> ArgKind;
    /// The entry of `table` whose short letter is `letter`: the first one,
    /// as popt finds it. A table may answer from an index; by default
    /// the table is walked.
    fn by_short(table: &[Self], letter: char) -> Option<&Self>
    where
        Self: Sized,
    {
        table.iter().find(|s| s.short() == Some(letter))
    }
}

/// A popt error: its code and the argv word it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoptError {
    /// `POPT_ERROR_*`.
    pub code: i32,
    /// What `poptBadOption` returns.
    pub bad_option: String,
}

/// `POPT_ERROR_NOARG`.
pub const NOARG: i32 = -10;
/// `POPT_ERROR_BADOPT`.
pub const BADOPT: i32 = -11;
/// `POPT_ERROR_UNWANTEDARG`.
pub const UNWANTEDARG: i32 = -12;

impl PoptError {
    /// `poptStrerror` of the code.
    pub fn strerror(&self) -> &'static str {
        match self.code {
            NOARG => "missing argument",
            BADOPT => "unknown option",
            UNWANTEDARG => "option does not take an argument",
            _ => "unknown error",
        }
    }
}

/// Walks argv (without the program name) against a table of options.
/// It borrows: every argument and leftover it returns is a slice of a
/// word of `args` (a restore parses tens of thousands of lines).
pub struct Popt<'t, 'a, S> {
    table: &'t [S],
    args: &'a [String],
    /// Index of the next word to read.
    next: usize,
    /// The rest of a short-option cluster being read.
    cluster: Option<&'a str>,
    /// Everything after `--` is a leftover.
    rest_leftover: bool,
    leftovers: Vec<&'a str>,
}

impl<'t, 'a, S: OptionSpec> Popt<'t, 'a, S> {
    /// A walker over `args` with `table`.
    pub fn new(table: &'t [S], args: &'a [String]) -> Self {
        Popt {
            table,
            args,
            next: 0,
            cluster: None,
            rest_leftover: false,
            leftovers: Vec::new(),
        }
    }

    /// The word `poptBadOption` names: the last one consumed.
    pub fn bad_option(&self) -> &'a str {
        self.next
            .checked_sub(1)
            .and_then(|i| self.args.get(i))
            .map_or("", String::as_str)
    }

    /// The words that were not options, in order (`poptGetArg`).
    pub fn leftovers(&self) -> &[&'a str] {
        &self.leftovers
    }

    fn error(&self, code: i32) -> PoptError {
        PoptError {
            code,
            bad_option: self.bad_option().to_owned(),
        }
    }

    /// The next option with its argument; `None` at the end.
    pub fn next_opt(&mut self) -> Option<Result<(&'t S, Option<&'a str>), PoptError>> {
        loop {
            if let Some(cluster) = self.cluster.take() {
                return Some(self.short_option(cluster));
            }
            let word = self.args.get(self.next)?.as_str();
            self.next += 1;
            if self.rest_leftover || !word.starts_with('-') || word == "-" {
                self.leftovers.push(word);
                continue;
            }
            if word == "--" {
                self.rest_leftover = true;
                continue;
            }
            if let Some(long) = word.strip_prefix("--") {
                return Some(self.long_option(long));
            }
            self.cluster = Some(&word[1..]);
        }
    }

    fn long_option(&mut self, long: &'a str) -> Result<(&'t S, Option<&'a str>), PoptError> {
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        let Some(spec) = self.table.iter().find(|s| s.long() == name) else {
            return Err(self.error(BADOPT));
        };
        if spec.arg() == ArgKind::None {
            if inline.is_some() {
                return Err(self.error(UNWANTEDARG));
            }
            return Ok((spec, None));
        }
        match inline {
            Some(v) => Ok((spec, Some(v))),
            None => self.argument(spec),
        }
    }

    fn short_option(&mut self, cluster: &'a str) -> Result<(&'t S, Option<&'a str>), PoptError> {
        let mut chars = cluster.chars();
        let Some(letter) = chars.next() else {
            return Err(self.error(BADOPT));
        };
        let rest = chars.as_str();
        let Some(spec) = S::by_short(self.table, letter) else {
            return Err(self.error(BADOPT));
        };
        if spec.arg() == ArgKind::None {
            if !rest.is_empty() {
                self.cluster = Some(rest);
            }
            return Ok((spec, None));
        }
        if !rest.is_empty() {
            // `-t=addr` drops the `=`.
            return Ok((spec, Some(rest.strip_prefix('=').unwrap_or(rest))));
        }
        self.argument(spec)
    }

    /// The argument of `spec` from the next word.
    fn argument(&mut self, spec: &'t S) -> Result<(&'t S, Option<&'a str>), PoptError> {
        match self.args.get(self.next) {
            None if spec.arg() == ArgKind::Optional => Ok((spec, None)),
            None => Err(self.error(NOARG)),
            Some(w) if spec.arg() == ArgKind::Optional && w.starts_with('-') => Ok((spec, None)),
            Some(w) => {
                self.next += 1;
                Ok((spec, Some(w.as_str())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S(&'static str, Option<char>, ArgKind);
    impl OptionSpec for S {
        fn long(&self) -> &str {
            self.0
        }
        fn short(&self) -> Option<char> {
            self.1
        }
        fn arg(&self) -> ArgKind {
            self.2
        }
    }
    const T: &[S] = &[
        S("list", Some('L'), ArgKind::None),
        S("numeric", Some('n'), ArgKind::None),
        S("tcp-service", Some('t'), ArgKind::Required),
        S("persistent", Some('p'), ArgKind::Optional),
    ];

    type Walk = Vec<Result<(String, Option<String>), PoptError>>;

    fn walk(args: &[&str]) -> (Walk, Vec<String>) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut p = Popt::new(T, &args);
        let mut out = Vec::new();
        while let Some(r) = p.next_opt() {
            let stop = r.is_err();
            out.push(r.map(|(s, a)| (s.0.to_owned(), a.map(str::to_owned))));
            if stop {
                break;
            }
        }
        (out, p.leftovers().iter().map(|s| s.to_string()).collect())
    }

    fn ok(name: &str, arg: Option<&str>) -> Result<(String, Option<String>), PoptError> {
        Ok((name.to_owned(), arg.map(str::to_owned)))
    }

    #[test]
    fn clusters_and_attached_arguments() {
        let (r, _) = walk(&["-Ln", "-t10.0.0.1:80", "-t=x", "--tcp-service=y"]);
        assert_eq!(
            r,
            [
                ok("list", None),
                ok("numeric", None),
                ok("tcp-service", Some("10.0.0.1:80")),
                ok("tcp-service", Some("x")),
                ok("tcp-service", Some("y"))
            ]
        );
    }

    #[test]
    fn required_argument_takes_a_dash_word_optional_does_not() {
        let (r, _) = walk(&["-t", "-n", "-p", "-n", "-p", "300"]);
        assert_eq!(
            r,
            [
                ok("tcp-service", Some("-n")),
                ok("persistent", None),
                ok("numeric", None),
                ok("persistent", Some("300"))
            ]
        );
    }

    #[test]
    fn leftovers_and_double_dash() {
        let (r, left) = walk(&["a", "-L", "-", "b", "--", "-n"]);
        assert_eq!(r, [ok("list", None)]);
        assert_eq!(left, ["a", "-", "b", "-n"]);
    }

    #[test]
    fn errors_name_the_last_word_consumed() {
        let (r, _) = walk(&["-L", "-Q"]);
        assert_eq!(
            r[1],
            Err(PoptError {
                code: BADOPT,
                bad_option: "-Q".into()
            })
        );
        let (r, _) = walk(&["-LQ"]);
        assert_eq!(r[1].as_ref().unwrap_err().bad_option, "-LQ");
        let (r, _) = walk(&["-L", "-t"]);
        assert_eq!(r[1].as_ref().unwrap_err().code, NOARG);
        let (r, _) = walk(&["--list=x"]);
        assert_eq!(r[0].as_ref().unwrap_err().code, UNWANTEDARG);
        let (r, _) = walk(&["--lis"]);
        assert_eq!(r[0].as_ref().unwrap_err().code, BADOPT);
    }
}
