//! Helpers for tests that run inside the VM (see `vm-tests/run.sh`).
//!
//! The VM runs each test binary as root with `--test-threads=1` and these
//! environment variables:
//! - `IPVSADM`: Debian's ipvsadm 1.31, the reference;
//! - `IPVSADM_RS`: our `ipvsadm-rs`.

pub mod lab;

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of the real ipvsadm, from `$IPVSADM`.
pub fn ipvsadm() -> PathBuf {
    tool_from_env("IPVSADM")
}

/// Path of our ipvsadm-rs, from `$IPVSADM_RS`.
pub fn ipvsadm_rs() -> PathBuf {
    tool_from_env("IPVSADM_RS")
}

fn tool_from_env(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("${var} is not set: vm-tests run inside the VM, through vm-tests/run.sh")
    });
    assert!(
        path.is_file(),
        "${var} names {}, which does not exist",
        path.display()
    );
    path
}

/// Runs `tool` with `args` and returns its output; panics if it cannot start.
pub fn run<I, S>(tool: &PathBuf, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()))
}

/// Moves the calling thread into a new, empty network namespace with `lo` up.
///
/// Namespaces belong to threads, so this isolates the current test (libtest
/// runs each test on its own thread): netlink sockets it opens and processes
/// it spawns see a fresh, empty IPVS table.
pub fn enter_fresh_netns() -> io::Result<()> {
    // SAFETY: unshare takes no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    set_loopback_up()
}

/// `struct ifreq` restricted to the name and the flags (40 bytes on Linux).
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn set_loopback_up() -> io::Result<()> {
    // SAFETY: plain socket call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: req is a valid, writable ifreq-sized buffer for both ioctls.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &mut req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd is ours and still open.
    unsafe { libc::close(fd) };
    result
}

/// What one run of a tool gave: exit code, stdout, stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

/// Runs `tool` with argv[0] set to `argv0` (so that both tools print the
/// same program name in their messages), `args`, and `stdin` as input.
pub fn run_as(tool: &PathBuf, argv0: &str, args: &[&str], stdin: &[u8]) -> Outcome {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut child = Command::new(tool)
        .arg0(argv0)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    if let Some(mut input) = child.stdin.take() {
        // A tool that does not read its input closes the pipe early.
        let _ = input.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", tool.display()));
    Outcome {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// A line diff of two texts: `-` lines only in `a`, `+` lines only in
/// `b`, and two lines of context (from a longest common subsequence).
pub fn diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    ops.iter()
        .enumerate()
        .filter(|(k, _)| near(*k))
        // Trailing blanks matter in ipvsadm's output: show them.
        .map(|(_, (c, l))| format!("{c} {}\n", l.replace(' ', "·")))
        .collect()
}
