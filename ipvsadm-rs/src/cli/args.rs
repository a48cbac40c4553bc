//! The whole command line of `ipvsadm-rs`: which of our extensions it
//! asks for, around an ipvsadm 1.31 command line. Every spelling is
//! looked up in the one option table ([`super::options::TABLE`]).
//!
//! - `--completions SHELL` or `--man`, alone: text generated from the
//!   table;
//! - `--json` anywhere and `--netns X` (or `--netns=X`) anywhere are
//!   taken out; what is left is
//! - `--apply FILE [--dry-run]` or `--diff FILE` (or `--apply=FILE`) first,
//! - `--top [options]` first (its options are parsed by [`super::top`]),
//! - `--from-k8s [FILE] [options]` first (its options are parsed by the
//!   `--from-k8s` parser),
//! - or else an ipvsadm 1.31 command line, parsed by [`super::parse()`]
//!   when it runs.
//!
//! The checks are made in the order 1.31's path makes them: an error of
//! `--apply`'s or `--from-k8s`'s words is held in the [`Command`] and
//! reported where it was before (after entering the namespace; for
//! `--apply`, after opening IPVS).

use super::options::{find, is_ipvsadm, is_long, version, Opt, Section, Spec, TABLE};
use crate::format::families::Families;

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
    /// `--json=compact`: that document on one line.
    pub compact: bool,
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
    /// `--sysctls`, alone (or why not).
    Sysctls(Result<(), String>),
    /// `--metrics ADDR:PORT`, alone (or why not): serve the table to
    /// Prometheus there.
    Metrics(Result<MetricsArgs, String>),
    /// `--top` and its options (or why they are wrong).
    Top(Result<super::top::TopArgs, String>),
}

/// `--apply FILE [--dry-run]` or `--diff FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apply {
    /// `--apply` or `--diff`, as messages name it.
    pub cmd: String,
    /// `--dry-run` (only with `--apply`).
    pub dry_run: bool,
    /// `--keep-going` (only with `--apply`): keep the writes that went
    /// through when one fails, instead of undoing them.
    pub keep_going: bool,
    /// The file of restore lines or of `-Ln --json`'s document, `-` for
    /// stdin.
    pub file: String,
}

/// Reads the command line (without `argv[0]`); `Err` is a message for
/// `ipvsadm-rs: ...` and exit status 2.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    if let Some(generated) = generated(args)? {
        return Ok(Invocation::Print(generated));
    }
    let json_word = |a: &String| {
        is_long(a, Opt::Json)
            || a.strip_prefix("--json=")
                .is_some_and(|v| v == "compact" || v == "pretty")
    };
    let json = args.iter().any(json_word);
    let compact = args.iter().any(|a| a == "--json=compact");
    let args: Vec<String> = args.iter().filter(|a| !json_word(a)).cloned().collect();
    let (netns, args) = take_netns(args)?;
    let first = args
        .first()
        .map(|a| a.split_once('=').map_or(a.as_str(), |(o, _)| o));
    let command = match first.and_then(|w| find(Section::Extensions, w)) {
        Some(spec) if matches!(spec.opt, Opt::Apply | Opt::Diff) => {
            Command::Apply(parse_apply(&args))
        }
        Some(spec) if spec.opt == Opt::FromK8s => Command::FromK8s(args),
        Some(spec) if spec.opt == Opt::Top => Command::Top(match args[0].split_once('=') {
            Some(_) => Err(format!("unexpected argument {} for --top", args[0])),
            None => super::top::parse(&args[1..]),
        }),
        Some(spec) if spec.opt == Opt::Sysctls => Command::Sysctls(match args.get(1) {
            None => Ok(()),
            Some(arg) => Err(format!("unexpected argument {arg} for --sysctls")),
        }),
        Some(spec) if spec.opt == Opt::Metrics => Command::Metrics(parse_metrics(&args)),
        _ => Command::Ipvsadm(args),
    };
    Ok(Invocation::Run(Run {
        json,
        compact,
        netns,
        command,
    }))
}

/// Under any name but `ipvsadm`, what `-h`, `--help`, `-v`, `--version`
/// and `-V` print, without IPVS: 1.31 opens IPVS before it looks at its
/// arguments (so `ipvsadm -h` on a kernel without IPVS says "Can't
/// initialize ipvs"), and under the name `ipvsadm` that stays. `None`:
/// the command line goes on as usual.
pub fn without_kernel(prog: &str, args: &[String]) -> Option<String> {
    if is_ipvsadm(prog) {
        return None;
    }
    let first = args.first()?;
    if find(Section::Extensions, first).is_some_and(|s| s.opt == Opt::Version) && args.len() == 1 {
        return Some(version(prog));
    }
    let asks = |opt| {
        find(Section::Commands, first)
            .or(find(Section::Hidden, first))
            .is_some_and(|s: &Spec| s.opt == opt)
    };
    if !asks(Opt::Help) && !asks(Opt::Version) {
        return None;
    }
    // 1.31's parser decides the rest (`-h -n` is help, `-h -Z` an error).
    match super::parse(prog, args) {
        Err(super::Stop::Exit {
            stdout,
            stderr,
            code: 0,
        }) if stderr.is_empty() => Some(stdout),
        _ => None,
    }
}

/// Under any name but `ipvsadm`, a command line 1.31's parser refuses
/// for a long option no parser knows: 1.31's message (and exit status),
/// then a line naming the bad word and the nearest option, if one is
/// near (`--stat`: `--stats`). Answered before IPVS is opened. Under the
/// name `ipvsadm`, `None`: 1.31's texts alone, after its start-up.
pub fn typo(prog: &str, args: &[String]) -> Option<(String, i32)> {
    if is_ipvsadm(prog) {
        return None;
    }
    let bad = args.iter().find_map(|a| {
        let name = a.strip_prefix("--")?.split('=').next()?;
        let known = TABLE.iter().any(|s| s.long == name);
        (!name.is_empty() && !known).then_some(name)
    })?;
    let (mut stderr, code) = match super::parse(prog, args) {
        Ok(_) | Err(super::Stop::Exit { code: 0, .. }) => return None,
        Err(super::Stop::Exit { stderr, code, .. }) => (stderr, code),
        Err(super::Stop::Return { stderr }) => (stderr, 255),
    };
    let near = TABLE
        .iter()
        .filter(|s| s.section != Section::FromK8s)
        .map(|s| (distance(bad, s.long), s.long))
        .filter(|&(d, long)| d <= 2 && d * 3 <= long.len())
        .min();
    stderr.push_str(&match near {
        Some((_, long)) => {
            format!("ipvsadm-rs: unknown option `--{bad}'; did you mean `--{long}'?\n")
        }
        None => format!("ipvsadm-rs: unknown option `--{bad}'\n"),
    });
    Some((stderr, code))
}

/// The edit distance of two words, a swap of neighbours counting one.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
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
    let mut keep_going = false;
    for arg in rest {
        match find(Section::Extensions, arg) {
            Some(s) if s.opt == Opt::DryRun && is_long(cmd, Opt::Apply) => dry_run = true,
            Some(s) if s.opt == Opt::KeepGoing && is_long(cmd, Opt::Apply) => keep_going = true,
            _ => return Err(format!("unexpected argument {arg} for {cmd}")),
        }
    }
    Ok(Apply {
        cmd: cmd.to_owned(),
        dry_run,
        keep_going,
        file,
    })
}

/// What `--metrics` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsArgs {
    /// Where to serve.
    pub addr: std::net::SocketAddr,
    /// `--state FILE`: the `--from-k8s` state file whose names label the
    /// services it created (`None`: its default place, if there).
    pub state: Option<std::path::PathBuf>,
    /// `--metrics-families LIST`: the families every scrape carries (all
    /// by default); a scrape's `collect[]` parameters may ask for fewer.
    pub families: Families,
}

/// `--metrics ADDR:PORT [--state FILE] [--metrics-families LIST]` (or
/// `--metrics=ADDR:PORT`, `--state=FILE`, `--metrics-families=LIST`), the
/// whole command line but `--netns`.
fn parse_metrics(args: &[String]) -> Result<MetricsArgs, String> {
    let (cmd, inline) = match args[0].split_once('=') {
        Some((c, v)) => (c, Some(v.to_owned())),
        None => (args[0].as_str(), None),
    };
    let mut rest = args[1..].iter();
    let Some(addr) = inline.or_else(|| rest.next().cloned()) else {
        return Err(format!(
            "{cmd} needs an address and port (such as 0.0.0.0:9100)"
        ));
    };
    let mut state = None;
    let mut families = Families::ALL;
    while let Some(arg) = rest.next() {
        let (option, value) = match arg.split_once('=') {
            Some((o @ ("--state" | "--metrics-families"), v)) => (o, Some(v.to_owned())),
            None if arg == "--state" || arg == "--metrics-families" => {
                (arg.as_str(), rest.next().cloned())
            }
            _ => return Err(format!("unexpected argument {arg} for {cmd}")),
        };
        match value {
            Some(v) if !v.is_empty() && option == "--state" => {
                state = Some(std::path::PathBuf::from(v))
            }
            Some(v) if !v.is_empty() => {
                families = Families::parse_list(&v).map_err(|e| format!("{option} {v}: {e}"))?
            }
            _ => return Err(format!("{option} needs a value")),
        }
    }
    let addr = addr.parse().map_err(|_| {
        format!("{cmd} {addr}: not an address and port (such as 0.0.0.0:9100 or [::]:9100)")
    })?;
    Ok(MetricsArgs {
        addr,
        state,
        families,
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
        assert!(!r.compact);
        let r = run(&["--json=compact", "-Ln"]);
        assert!(r.json && r.compact);
        assert_eq!(r.command, Command::Ipvsadm(words(&["-Ln"])));
        let r = run(&["--sysctls", "--json=pretty"]);
        assert!(r.json && !r.compact);
        assert_eq!(r.command, Command::Sysctls(Ok(())));
        assert_eq!(
            run(&["--sysctls", "-n"]).command,
            Command::Sysctls(Err("unexpected argument -n for --sysctls".into()))
        );
        // 1.31's parser, not this one, refuses `--json=1`.
        let r = run(&["-L", "--json=1"]);
        assert!(!r.json);
        assert_eq!(r.command, Command::Ipvsadm(words(&["-L", "--json=1"])));
    }

    #[test]
    fn metrics_takes_one_address_and_port() {
        let r = run(&["--netns", "blue", "--metrics", "127.0.0.1:9100"]);
        assert_eq!(r.netns.as_deref(), Some("blue"));
        let at = |a: &str, state: Option<&str>| {
            Command::Metrics(Ok(MetricsArgs {
                addr: a.parse().unwrap(),
                state: state.map(std::path::PathBuf::from),
                families: Families::ALL,
            }))
        };
        assert_eq!(r.command, at("127.0.0.1:9100", None));
        let r = run(&["--metrics=[::]:9100"]);
        assert_eq!(r.command, at("[::]:9100", None));
        let r = run(&["--metrics", "[::]:9100", "--state", "/run/owned"]);
        assert_eq!(r.command, at("[::]:9100", Some("/run/owned")));
        let r = run(&["--metrics", "[::]:9100", "--state=/run/owned"]);
        assert_eq!(r.command, at("[::]:9100", Some("/run/owned")));
        let refused = |a: &[&str]| match run(a).command {
            Command::Metrics(Err(e)) => e,
            other => panic!("{a:?}: {other:?}"),
        };
        assert_eq!(
            refused(&["--metrics"]),
            "--metrics needs an address and port (such as 0.0.0.0:9100)"
        );
        assert_eq!(
            refused(&["--metrics", "9100"]),
            "--metrics 9100: not an address and port (such as 0.0.0.0:9100 or [::]:9100)"
        );
        assert_eq!(
            refused(&["--metrics", ":9100", "-n"]),
            "unexpected argument -n for --metrics"
        );
        assert_eq!(
            refused(&["--metrics", ":9100", "--state"]),
            "--state needs a value"
        );
        let r = run(&[
            "--metrics",
            "[::]:9100",
            "--metrics-families",
            "service,node",
        ]);
        let Command::Metrics(Ok(m)) = r.command else {
            panic!("{r:?}")
        };
        assert_eq!(m.families.to_string(), "node,service");
        let r = run(&[
            "--metrics=[::]:9100",
            "--metrics-families=kube-router",
            "--state=/s",
        ]);
        let Command::Metrics(Ok(m)) = r.command else {
            panic!("{r:?}")
        };
        assert_eq!(
            (m.families.to_string(), m.state),
            ("kube-router".into(), Some("/s".into()))
        );
        assert_eq!(
            refused(&["--metrics", ":9100", "--metrics-families"]),
            "--metrics-families needs a value"
        );
        assert_eq!(
            refused(&["--metrics", ":9100", "--metrics-families", "node,pods"]),
            "--metrics-families node,pods: unknown family \"pods\" \
             (the families: node, service, backend, kube-router)"
        );
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
                keep_going: false,
                file: file.into(),
            }))
        };
        assert_eq!(
            a(&["--apply", "-", "--keep-going"]),
            Command::Apply(Ok(Apply {
                cmd: "--apply".into(),
                dry_run: false,
                keep_going: true,
                file: "-".into(),
            }))
        );
        assert_eq!(
            a(&["--diff", "-", "--keep-going"]),
            Command::Apply(Err("unexpected argument --keep-going for --diff".into()))
        );
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
    fn help_and_version_need_no_kernel_under_our_own_name_only() {
        let ask = |prog: &str, a: &[&str]| without_kernel(prog, &words(a));
        // Under the name `ipvsadm`, 1.31 opens IPVS first: nothing here.
        for a in [&["-h"][..], &["--help"], &["-v"], &["--version"], &["-V"]] {
            assert_eq!(ask("ipvsadm", a), None, "{a:?}");
            assert_eq!(ask("/usr/sbin/ipvsadm", a), None, "{a:?}");
        }
        let ours = ask("ipvsadm-rs", &["-h"]).unwrap();
        assert_eq!(ours, super::super::options::usage("ipvsadm-rs"));
        assert_eq!(ask("ipvsadm-rs", &["--help", "-n"]), Some(ours));
        let v = ask("/usr/local/bin/ipvsadm-rs", &["-V"]).unwrap();
        assert!(v.starts_with(&format!(
            "ipvsadm-rs {} (features: ",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(v.ends_with(
            "\ncompatible with ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
        ));
        for a in [&["-v"][..], &["--version"]] {
            assert_eq!(ask("ipvsadm-rs", a).as_ref(), Some(&v));
        }
        // Anything else goes on to IPVS as before.
        assert_eq!(ask("ipvsadm-rs", &["-Ln"]), None);
        assert_eq!(ask("ipvsadm-rs", &["-V", "-n"]), None);
        assert_eq!(ask("ipvsadm-rs", &["-Z", "-h"]), None);
    }

    #[test]
    fn typos_get_a_suggestion_under_our_own_name_only() {
        let t = |prog: &str, a: &[&str]| typo(prog, &words(a));
        for a in [&["-L", "--stat"][..], &["--lsit"], &["-Ln", "--jsno"]] {
            assert_eq!(t("ipvsadm", a), None, "{a:?}");
        }
        // 1.31's words first (popt's, or its try-help line), then ours.
        assert_eq!(
            t("ipvsadm-rs", &["-L", "--stat"]),
            Some((
                "--stat: unknown option\nipvsadm-rs: unknown option `--stat'; did you mean `--stats'?\n".into(),
                255
            ))
        );
        assert_eq!(
            t("ipvsadm-rs", &["--lsit", "-n"]),
            Some((
                "Try `ipvsadm-rs -h' or 'ipvsadm-rs --help' for more information.\nipvsadm-rs: unknown option `--lsit'; did you mean `--list'?\n".into(),
                255
            ))
        );
        assert_eq!(
            t("ipvsadm-rs", &["-L", "--jsno"]).map(|(e, _)| e.lines().last().map(str::to_owned)),
            Some(Some(
                "ipvsadm-rs: unknown option `--jsno'; did you mean `--json'?".into()
            ))
        );
        assert_eq!(
            t("ipvsadm-rs", &["-L", "--zzzzzz"]).map(|(e, _)| e.lines().last().map(str::to_owned)),
            Some(Some("ipvsadm-rs: unknown option `--zzzzzz'".into()))
        );
        // Known options, or a refusal for another reason: nothing added.
        assert_eq!(t("ipvsadm-rs", &["-L", "--stats"]), None);
        assert_eq!(t("ipvsadm-rs", &["-L", "-Q"]), None);
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
