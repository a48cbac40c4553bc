//! Every flag the command-line parsers accept is in `ipvsadm-rs -h`, the
//! man page and the bash, zsh and fish completions.
//!
//! Which flags are accepted is found from the parsers' behaviour, not
//! from the option table: each candidate spelling is put into command
//! lines of every shape (alone, after `-L`, after `--apply FILE`, after
//! `--from-k8s [FILE]`, ...), and it counts as accepted where the parsers
//! make of it something else than of a spelling no parser knows. The
//! candidates are every `-X` and every `--word` written in the crate's
//! sources and tests, ipvs-k8s's sources, the project's documents,
//! deploy/ and the VM tests, plus ipvsadm 1.31's long options: a flag
//! a parser matches by hand, outside the table, is found that way (a
//! `--legacy-mode` accepted in `cli/from_k8s.rs` made this test fail).

use std::collections::BTreeSet;
use std::path::Path;

use ipvsadm_rs::cli::args::{self, Command, Invocation};
use ipvsadm_rs::cli::{self, generate, options};

/// ipvsadm 1.31's long options (its `options[]` in ipvsadm.c).
const IPVSADM_131: &[&str] = &[
    "add-service",
    "edit-service",
    "delete-service",
    "clear",
    "restore",
    "save",
    "add-server",
    "edit-server",
    "delete-server",
    "list",
    "zero",
    "set",
    "start-daemon",
    "stop-daemon",
    "help",
    "version",
    "tcp-service",
    "udp-service",
    "sctp-service",
    "fwmark-service",
    "ipv6",
    "scheduler",
    "pe",
    "persistent",
    "netmask",
    "real-server",
    "gatewaying",
    "ipip",
    "masquerading",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
    "weight",
    "u-threshold",
    "l-threshold",
    "connection",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "exact",
    "thresholds",
    "persistent-conn",
    "tun-info",
    "nosort",
    "sort",
    "ops",
    "numeric",
    "sched-flags",
    "syncid",
    "sync-maxlen",
    "mcast-interface",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
];

/// What the parsers make of a whole command line, as text.
fn outcome(words: &[String]) -> String {
    match args::parse(words) {
        Err(message) => format!("refused: {message}"),
        Ok(Invocation::Print(text)) => format!("print {text:?}"),
        Ok(Invocation::Run(run)) => {
            let command = match &run.command {
                Command::Ipvsadm(a) => format!("{:?}", cli::parse("ipvsadm-rs", a)),
                Command::Apply(a) => format!("{a:?}"),
                Command::Sysctls(a) => format!("sysctls {a:?}"),
                Command::Metrics(a) => format!("metrics {a:?}"),
                Command::FromK8s(a) => from_k8s(a),
                Command::Top(a) => format!("top {a:?}"),
            };
            format!("json {} netns {:?}: {command}", run.json, run.netns)
        }
    }
}

#[cfg(feature = "k8s-file")]
fn from_k8s(words: &[String]) -> String {
    format!("{:?}", ipvsadm_rs::cli::from_k8s::parse(words))
}

#[cfg(not(feature = "k8s-file"))]
fn from_k8s(words: &[String]) -> String {
    format!("from-k8s {words:?}")
}

/// The shapes of command line a flag is tried in; `@` is the flag.
const SHAPES: &[&[&str]] = &[
    &["@"],
    &["@", "v"],
    &["@", "-"],
    &["@", "v", "-L"],
    &["-L", "@"],
    &["-L", "@", "v"],
    &["-A", "-t", "10.0.0.1:80", "@"],
    &["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.2", "@"],
    &["--start-daemon", "master", "@", "v"],
    &["--apply", "t.rules", "@"],
    &["--top", "@"],
    &["--top", "@", "1"],
    &["--from-k8s", "@"],
    &["--from-k8s", "@", "v"],
    &["--from-k8s", "d.json", "@"],
    &["--from-k8s", "d.json", "@", "v"],
];

/// The command line of `shape` with `flag` in its hole.
fn fill(shape: &[&str], flag: &str) -> Vec<String> {
    shape
        .iter()
        .map(|w| if *w == "@" { flag } else { w }.to_owned())
        .collect()
}

/// Whether some parser accepts `flag`: in some shape, the outcome differs
/// from that of a spelling no parser knows, once that spelling's name
/// is replaced by `flag` (so that messages naming it compare equal).
fn accepted(flag: &str) -> bool {
    let unknown = if flag.starts_with("--") {
        "--zz%"
    } else {
        "-%"
    };
    SHAPES.iter().any(|shape| {
        let reference = outcome(&fill(shape, unknown)).replace(unknown, flag);
        outcome(&fill(shape, flag)) != reference
    })
}

/// The words `-x` and `--word` of a text.
fn flags_in(text: &str, into: &mut BTreeSet<String>) {
    for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '=')) {
        let token = token.split('=').next().unwrap_or_default();
        let long = token.strip_prefix("--").is_some_and(|name| {
            name.len() > 1
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
        if long {
            into.insert(token.to_owned());
        }
    }
}

/// Every file under `dir` whose name ends in one of `exts`.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") && !path.ends_with(".cache") {
                files(&path, exts, out);
            }
        } else if exts.iter().any(|e| path.to_string_lossy().ends_with(e)) {
            out.push(path);
        }
    }
}

/// The candidate spellings.
fn candidates() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in ('a'..='z').chain('A'..='Z').chain('0'..='9') {
        out.insert(format!("-{c}"));
    }
    out.extend(IPVSADM_131.iter().map(|l| format!("--{l}")));
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir.join("..");
    let mut paths = Vec::new();
    files(&crate_dir.join("src"), &[".rs"], &mut paths);
    files(&crate_dir.join("tests"), &[".rs"], &mut paths);
    files(&root.join("vm-tests").join("tests"), &[".rs"], &mut paths);
    files(&root.join("ipvs-k8s").join("src"), &[".rs"], &mut paths);
    files(&root.join("docs"), &[".md"], &mut paths);
    files(
        &root.join("deploy"),
        &[".yaml", "Containerfile"],
        &mut paths,
    );
    paths.push(root.join("README.md"));
    for path in paths {
        if let Ok(text) = std::fs::read_to_string(&path) {
            flags_in(&text, &mut out);
        }
    }
    out
}

/// The accepted flags a text lacks; `has` tells whether it names one.
fn missing(accepted: &[String], has: impl Fn(&str) -> bool) -> Vec<&str> {
    accepted
        .iter()
        .map(String::as_str)
        .filter(|f| !has(f))
        .collect()
}

/// Whether `flag` is one of the words of `text` (`|`, `,`, brackets and
/// quotes separate words).
fn has_word(text: &str, flag: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .any(|w| w == flag)
}

/// A fish script names `--long` as `-l long` and `-s` as `-s s`.
fn fish_has(script: &str, flag: &str) -> bool {
    match flag.strip_prefix("--") {
        Some(long) => script.contains(&format!(" -l {long} ")),
        None => script.contains(&format!(" -s {} ", &flag[1..])),
    }
}

#[test]
fn every_accepted_flag_is_in_help_man_and_completions() {
    let found: Vec<String> = candidates().into_iter().filter(|f| accepted(f)).collect();
    // The parsers' behaviour, checked against a few that must be there.
    let mut sure = vec![
        "-L", "--list", "--json", "--netns", "--apply", "--man", "-v",
    ];
    if cfg!(feature = "k8s-file") {
        sure.extend(["--healthz", "--node-ip", "--verbose"]);
    }
    for sure in sure {
        assert!(found.iter().any(|f| f == sure), "{sure} not found accepted");
    }
    for never in ["--release", "--lis", "-Q", "--workspace"] {
        assert!(!found.iter().any(|f| f == never), "{never} found accepted");
    }
    let help = options::usage("ipvsadm-rs");
    let man = generate::man()
        .replace("\\-", "-")
        .replace("\\fB", " ")
        .replace("\\fI", " ")
        .replace("\\fR", " ");
    let (bash, zsh, fish) = (generate::bash(), generate::zsh(), generate::fish());
    let mut report = String::new();
    // 1.31's help does not name `--version`, and the 1.31 part of ours
    // is 1.31's.
    let in_help = |f: &str| f == "--version" || has_word(&help, f);
    for (what, lacks) in [
        ("-h", missing(&found, in_help)),
        ("--man", missing(&found, |f| has_word(&man, f))),
        ("bash", missing(&found, |f| has_word(&bash, f))),
        ("zsh", missing(&found, |f| has_word(&zsh, f))),
        ("fish", missing(&found, |f| fish_has(&fish, f))),
    ] {
        if !lacks.is_empty() {
            report.push_str(&format!("{what} lacks {lacks:?}\n"));
        }
    }
    assert!(report.is_empty(), "accepted flags not shown:\n{report}");
}

#[test]
fn a_flag_a_parser_accepts_but_no_text_shows_is_reported() {
    // `--netns` is accepted; a help text without it is caught.
    assert!(accepted("--netns") && !accepted("--nonsense"));
    let found = vec!["--netns".to_owned(), "-L".to_owned()];
    let help = "  --list            -L|-l     list the table\n";
    assert_eq!(missing(&found, |f| has_word(help, f)), ["--netns"]);
    assert!(!fish_has("complete -c x -l netnsx -d 'y'\n", "--netns"));
}
