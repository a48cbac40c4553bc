//! The whole command line of `ipvsadm-rs`: which of our extensions it
//! asks for, around an ipvsadm 1.31 command line. Every spelling is
//! looked up in the one option table ([`super::options::TABLE`]).
//!
//! - `--completions SHELL` or `--man`, alone: text generated from the
//!   table;
//! - `--json` anywhere and `--netns X` (or `--netns=X`) anywhere are
//!   taken out; what is left is
//! - `--apply FILE [--dry-run]` or `--diff FILE` (or `--apply=FILE`) first,
//! - `--from-k8s [FILE] [options]` first (its options are parsed by the
//!   `--from-k8s` parser),
//! - or else an ipvsadm 1.31 command line, parsed by [`super::parse()`]
//!   when it runs.
//!
//! The checks are made in the order 1.31's path makes them: an error of
//! `--apply`'s or `--from-k8s`'s words is held in the [`Command`] and
//! reported where it was before (after entering the namespace; for
//! `--apply`, after opening IPVS).

use super::options::{find, is_long, Opt, Section};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Print a text generated from the option table.
    Print(Generated),
    /// Act on IPVS.
    Run(Run),
}

/// The texts generated from the option table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// `--completions bash`.
    Bash,
    /// `--completions zsh`.
    Zsh,
    /// `--completions fish`.
    Fish,
    /// `--man`.
    Man,
}

impl Generated {
    /// The text itself.
    pub fn text(self) -> String {
        use super::generate;
        match self {
            Generated::Bash => generate::bash(),
            Generated::Zsh => generate::zsh(),
            Generated::Fish => generate::fish(),
            Generated::Man => generate::man(),
        }
    }
}

/// A command line that acts on IPVS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `--json`: list commands print one JSON document.
    pub json: bool,
    /// `--netns`: the namespace to enter first, as given.
    pub netns: Option<String>,
    /// What to do there.
    pub command: Command,
}

/// What to do once in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An ipvsadm 1.31 command line (empty: list everything).
    Ipvsadm(Vec<String>),
    /// `--apply` or `--diff`, or why its words are wrong.
    Apply(Result<Apply, String>),
    /// `--from-k8s` and the words after it (for the `--from-k8s` parser).
    FromK8s(Vec<String>),
}

/// `--apply FILE [--dry-run]` or `--diff FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apply {
    /// `--apply` or `--diff`, as messages name it.
    pub cmd: String,
    /// `--dry-run` (only with `--apply`).
    pub dry_run: bool,
    /// The restore-format file, `-` for stdin.
    pub file: String,
}

/// Reads the command line (without `argv[0]`); `Err` is a message for
/// `ipvsadm-rs: ...` and exit status 2.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    if let Some(generated) = generated(args)? {
        return Ok(Invocation::Print(generated));
    }
    let json = args.iter().any(|a| is_long(a, Opt::Json));
    let args: Vec<String> = args
        .iter()
        .filter(|a| !is_long(a, Opt::Json))
        .cloned()
        .collect();
    let (netns, args) = take_netns(args)?;
    let first = args
        .first()
        .map(|a| a.split_once('=').map_or(a.as_str(), |(o, _)| o));
    let command = match first.and_then(|w| find(Section::Extensions, w)) {
        Some(spec) if matches!(spec.opt, Opt::Apply | Opt::Diff) => {
            Command::Apply(parse_apply(&args))
        }
        Some(spec) if spec.opt == Opt::FromK8s => Command::FromK8s(args),
        _ => Command::Ipvsadm(args),
    };
    Ok(Invocation::Run(Run {
        json,
        netns,
        command,
    }))
}

/// `--completions SHELL` or `--man`, the whole command line.
fn generated(args: &[String]) -> Result<Option<Generated>, String> {
    let (first, rest) = match args {
        [first, rest @ ..] => (first.as_str(), rest),
        [] => return Ok(None),
    };
    if is_long(first, Opt::Man) && rest.is_empty() {
        return Ok(Some(Generated::Man));
    }
    if !is_long(first, Opt::Completions) {
        return Ok(None);
    }
    match rest {
        [shell] if shell == "bash" => Ok(Some(Generated::Bash)),
        [shell] if shell == "zsh" => Ok(Some(Generated::Zsh)),
        [shell] if shell == "fish" => Ok(Some(Generated::Fish)),
        _ => Err(format!("{first} takes bash, zsh or fish")),
    }
}

/// Takes `--netns X` (or `--netns=X`) out of `args`: the value, checked
/// (entering it is [`crate::netns::enter`]'s), and the words left.
fn take_netns(args: Vec<String>) -> Result<(Option<String>, Vec<String>), String> {
    let mut rest = Vec::with_capacity(args.len());
    let mut target: Option<String> = None;
    let mut words = args.into_iter();
    while let Some(arg) = words.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let value = if !is_long(name, Opt::Netns) {
            None
        } else if inline.is_some() {
            inline
        } else {
            Some(words.next().ok_or("--netns needs a name or a path")?)
        };
        match value {
            Some(v) if target.is_some() => {
                return Err(format!("--netns given twice ({v})"));
            }
            Some(v) if v.is_empty() || v == "." || v == ".." => {
                return Err(format!("--netns {v:?}: not a namespace name or path"));
            }
            Some(v) => target = Some(v),
            None => rest.push(arg),
        }
    }
    Ok((target, rest))
}

/// `--apply FILE [--dry-run]` or `--diff FILE` (`args[0]` is one of them).
fn parse_apply(args: &[String]) -> Result<Apply, String> {
    let (cmd, inline) = match args[0].split_once('=') {
        Some((c, v)) => (c, Some(v.to_owned())),
        None => (args[0].as_str(), None),
    };
    let mut rest = args[1..].iter();
    let Some(file) = inline.or_else(|| rest.next().cloned()) else {
        return Err(format!("{cmd} needs a file (- for stdin)"));
    };
    let mut dry_run = false;
    for arg in rest {
        match find(Section::Extensions, arg) {
            Some(s) if s.opt == Opt::DryRun && is_long(cmd, Opt::Apply) => dry_run = true,
            _ => return Err(format!("unexpected argument {arg} for {cmd}")),
        }
    }
    Ok(Apply {
        cmd: cmd.to_owned(),
        dry_run,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn run(a: &[&str]) -> Run {
        match parse(&words(a)) {
            Ok(Invocation::Run(r)) => r,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    #[test]
    fn json_and_netns_leave_the_ipvsadm_command_line() {
        let r = run(&["-L", "--json", "--netns", "blue", "-n"]);
        assert!(r.json);
        assert_eq!(r.netns.as_deref(), Some("blue"));
        assert_eq!(r.command, Command::Ipvsadm(words(&["-L", "-n"])));
        let r = run(&["--netns=/proc/1/ns/net", "--json"]);
        assert_eq!(r.netns.as_deref(), Some("/proc/1/ns/net"));
        assert_eq!(r.command, Command::Ipvsadm(vec![]));
        // 1.31's parser, not this one, refuses `--json=1`.
        let r = run(&["-L", "--json=1"]);
        assert!(!r.json);
        assert_eq!(r.command, Command::Ipvsadm(words(&["-L", "--json=1"])));
    }

    #[test]
    fn bad_netns_values_are_refused() {
        let err = |a: &[&str]| parse(&words(a)).unwrap_err();
        assert_eq!(err(&["-Ln", "--netns"]), "--netns needs a name or a path");
        assert!(err(&["--netns", "..", "-Ln"]).contains("not a namespace"));
        assert!(err(&["--netns=", "-Ln"]).contains("not a namespace"));
        assert!(err(&["--netns", "a", "--netns", "b"]).contains("twice"));
    }

    #[test]
    fn apply_and_diff() {
        let a = |v: &[&str]| run(v).command;
        let ok = |cmd: &str, dry_run, file: &str| {
            Command::Apply(Ok(Apply {
                cmd: cmd.into(),
                dry_run,
                file: file.into(),
            }))
        };
        assert_eq!(
            a(&["--apply", "t.rules", "--dry-run"]),
            ok("--apply", true, "t.rules")
        );
        assert_eq!(a(&["--diff=-"]), ok("--diff", false, "-"));
        assert_eq!(
            a(&["--diff"]),
            Command::Apply(Err("--diff needs a file (- for stdin)".into()))
        );
        assert_eq!(
            a(&["--diff", "-", "--dry-run"]),
            Command::Apply(Err("unexpected argument --dry-run for --diff".into()))
        );
        assert_eq!(
            a(&["--apply", "-", "--dry-run=1"]),
            Command::Apply(Err("unexpected argument --dry-run=1 for --apply".into()))
        );
        // Not first: 1.31's parser calls it an unknown option.
        assert_eq!(
            a(&["-L", "--apply", "x"]),
            Command::Ipvsadm(words(&["-L", "--apply", "x"]))
        );
    }

    #[test]
    fn from_k8s_and_generated_texts() {
        assert_eq!(
            run(&["--from-k8s=d.json", "--json", "--dry-run"]).command,
            Command::FromK8s(words(&["--from-k8s=d.json", "--dry-run"]))
        );
        assert_eq!(
            parse(&words(&["--completions", "zsh"])),
            Ok(Invocation::Print(Generated::Zsh))
        );
        assert_eq!(
            parse(&words(&["--man"])),
            Ok(Invocation::Print(Generated::Man))
        );
        assert_eq!(
            parse(&words(&["--completions", "csh"])),
            Err("--completions takes bash, zsh or fish".into())
        );
        // Not alone: an ipvsadm command line (which 1.31 refuses).
        assert_eq!(
            run(&["--man", "-n"]).command,
            Command::Ipvsadm(words(&["--man", "-n"]))
        );
        assert!(parse(&words(&["--completions", "bash", "--json"])).is_err());
        assert!(parse(&words(&["--completions"])).is_err());
    }
}
