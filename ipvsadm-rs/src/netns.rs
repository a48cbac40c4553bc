//! `--netns NAME|PATH` (read by [`crate::cli::args`]): act on the IPVS table (and, for `-c`, the
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

/// Enters the network namespace that a `--netns` value names (checked
/// by [`crate::cli::args`]).
pub fn enter(value: &str) -> Result<(), String> {
    let path = path_of(value);
    let file = File::open(&path).map_err(|e| format!("--netns {}: {e}", path.display()))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
        format!(
            "--netns {}: cannot enter the network namespace: {}",
            path.display(),
            std::io::Error::from(e)
        )
    })
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
    fn a_missing_namespace_is_named() {
        assert!(enter("/nonexistent/ns")
            .unwrap_err()
            .starts_with("--netns /nonexistent/ns: No such file"));
    }
}
