//! The words after `--top`: `--interval SECONDS`, `--count N`, `--batch`
//! and `--state FILE` (the `--from-k8s` state file whose services are
//! marked), each spelled as the one option table spells it, `--opt=value`
//! or `--opt value`. `--json` and `--netns` are taken out before
//! ([`super::args`]).

use std::path::PathBuf;
use std::time::Duration;

use super::options::{find, Opt, Section};

/// What `--top` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopArgs {
    /// The time between two refreshes.
    pub interval: Duration,
    /// Stop after this many frames (`None`: until quit).
    pub count: Option<u64>,
    /// Plain-text frames even on a terminal.
    pub batch: bool,
    /// The `--from-k8s` state file; `None`: its default place, if there.
    pub state: Option<PathBuf>,
}

/// The longest interval accepted: a day.
const MAX_INTERVAL: f64 = 86_400.0;

/// Reads the words after `--top`.
pub fn parse(words: &[String]) -> Result<TopArgs, String> {
    let mut out = TopArgs {
        interval: Duration::from_secs(1),
        count: None,
        batch: false,
        state: None,
    };
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        let (name, inline) = match word.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (word.as_str(), None),
        };
        let opt = find(Section::Extensions, name)
            .or_else(|| find(Section::FromK8s, name).filter(|s| s.opt == Opt::State))
            .map(|s| s.opt);
        let mut value = || match inline.clone().or_else(|| rest.next().cloned()) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(format!("{name} needs a value")),
        };
        match opt {
            Some(Opt::Interval) => {
                let text = value()?;
                let secs: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.1 && *s <= MAX_INTERVAL)
                    .ok_or_else(|| {
                        format!("{name} {text}: not a number of seconds from 0.1 to 86400")
                    })?;
                out.interval = Duration::from_secs_f64(secs);
            }
            Some(Opt::Count) => {
                let text = value()?;
                let n: u64 = text
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name} {text}: not a whole number above 0"))?;
                out.count = Some(n);
            }
            Some(Opt::Batch) if inline.is_none() => out.batch = true,
            Some(Opt::State) => out.state = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unexpected argument {word} for --top")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(a: &[&str]) -> Result<TopArgs, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_every_option() {
        let t = parse_words(&[]).unwrap();
        assert_eq!(t.interval, Duration::from_secs(1));
        assert_eq!((t.count, t.batch, t.state), (None, false, None));
        let t = parse_words(&[
            "--interval",
            "0.5",
            "--count=3",
            "--batch",
            "--state",
            "/tmp/s",
        ])
        .unwrap();
        assert_eq!(t.interval, Duration::from_millis(500));
        assert_eq!(t.count, Some(3));
        assert!(t.batch);
        assert_eq!(t.state, Some(PathBuf::from("/tmp/s")));
    }

    #[test]
    fn bad_words_are_named() {
        for (words, msg) in [
            (&["--interval", "0"][..], "--interval 0: not a number"),
            (&["--interval=nan"][..], "--interval nan: not a number"),
            (&["--interval", "1e9"][..], "--interval 1e9: not a number"),
            (&["--count", "0"][..], "--count 0: not a whole number"),
            (&["--count"][..], "--count needs a value"),
            (
                &["--batch=1"][..],
                "unexpected argument --batch=1 for --top",
            ),
            (&["-Ln"][..], "unexpected argument -Ln for --top"),
            (
                &["--node-ip", "1.2.3.4"][..],
                "unexpected argument --node-ip",
            ),
        ] {
            let err = parse_words(words).unwrap_err();
            assert!(err.starts_with(msg), "{words:?}: {err}");
        }
    }
}
