//! `--netns NAME|PATH`: act on the IPVS table (and, for `-c`, the
//! connection table) of another network namespace: a name as `ip netns`
//! gives it (`/run/netns/NAME`) or a path such as `/proc/PID/ns/net` of a
//! container.
//!
//! The whole process enters the namespace before it opens anything, so
//! that the netlink socket, `/proc/net/ip_vs_conn` and any `modprobe`
//! all belong to it. At that point the process has one thread, so
//! `setns` moves all of it.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};

/// The namespace file for a `--netns` value.
fn path_of(value: &str) -> PathBuf {
    if value.contains('/') {
        PathBuf::from(value)
    } else {
        PathBuf::from("/run/netns").join(value)
    }
}

/// Removes `--netns X` (or `--netns=X`) from `args` and enters that
/// namespace; the arguments left, or what went wrong.
pub fn take(args: Vec<String>) -> Result<Vec<String>, String> {
    let mut rest = Vec::with_capacity(args.len());
    let mut target: Option<String> = None;
    let mut words = args.into_iter();
    while let Some(arg) = words.next() {
        let value = if arg == "--netns" {
            Some(words.next().ok_or("--netns needs a name or a path")?)
        } else {
            arg.strip_prefix("--netns=").map(str::to_owned)
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
    if let Some(value) = target {
        let path = path_of(&value);
        let file = File::open(&path).map_err(|e| format!("--netns {}: {e}", path.display()))?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
            format!(
                "--netns {}: cannot enter the network namespace: {}",
                path.display(),
                std::io::Error::from(e)
            )
        })?;
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(path_of("blue"), PathBuf::from("/run/netns/blue"));
        assert_eq!(path_of("/proc/42/ns/net"), PathBuf::from("/proc/42/ns/net"));
    }

    #[test]
    fn without_the_option_nothing_happens() {
        let args = vec!["-Ln".to_owned()];
        assert_eq!(take(args.clone()).unwrap(), args);
    }

    #[test]
    fn bad_values_are_refused_before_entering_anything() {
        let v = |a: &[&str]| take(a.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            v(&["-Ln", "--netns"]).unwrap_err(),
            "--netns needs a name or a path"
        );
        assert!(v(&["--netns", "..", "-Ln"])
            .unwrap_err()
            .contains("not a namespace"));
        assert!(v(&["--netns=/nonexistent/ns", "-Ln"])
            .unwrap_err()
            .starts_with("--netns /nonexistent/ns: No such file"));
        assert!(v(&["--netns", "a", "--netns", "b"])
            .unwrap_err()
            .contains("twice"));
    }
}
