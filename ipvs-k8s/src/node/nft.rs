//! Writes the packet path's table ([`crate::packet`]) with Debian's `nft`,
//! one transaction per sync read from standard input (`nft -f -`), as
//! kube-proxy's knftables drives nftables: the kernel applies a
//! transaction whole or not at all. Only our table is ever named; nothing
//! of another tool's tables is read or changed.
//!
//! Why the `nft` program rather than nf_tables messages of our own:
//! docs/kubernetes.md ("The packet path") gives the measurement.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::packet::{self, Elements, Options, Transaction};

/// What went wrong talking to nftables.
#[derive(Debug)]
pub enum NftError {
    /// No `nft` program could be run.
    Missing {
        /// The program looked for.
        program: PathBuf,
        /// Why it could not run.
        source: std::io::Error,
    },
    /// `nft` ran and refused the transaction (nothing of it was applied).
    Refused {
        /// Its exit status.
        status: Option<i32>,
        /// What it printed on standard error.
        stderr: String,
    },
    /// Talking to the `nft` process failed.
    Io(std::io::Error),
}

impl fmt::Display for NftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NftError::Missing { program, source } => write!(
                f,
                "cannot run {} ({source}): the packet path needs nftables' nft program (Debian's package nftables), or --no-nftables",
                program.display()
            ),
            NftError::Refused { status, stderr } => {
                let first: Vec<&str> = stderr.lines().take(4).collect();
                match status {
                    Some(code) => write!(f, "nft refused the transaction (exit {code}): {}", first.join(" / ")),
                    None => write!(f, "nft was killed: {}", first.join(" / ")),
                }
            }
            NftError::Io(e) => write!(f, "talking to nft: {e}"),
        }
    }
}

impl std::error::Error for NftError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NftError::Missing { source, .. } => Some(source),
            NftError::Io(e) => Some(e),
            NftError::Refused { .. } => None,
        }
    }
}

/// What the packet path needs of nftables: run a transaction, and tell
/// whether our table exists. [`NftCommand`] is the real one; tests use an
/// in-memory fake.
pub trait Nft {
    /// Applies one transaction, whole or not at all.
    fn run(&mut self, script: &str) -> Result<(), NftError>;
    /// Whether the table `inet ipvs-rs` exists.
    fn has_table(&mut self) -> Result<bool, NftError>;
}

/// Debian's `nft`, found on the `PATH` or in `/usr/sbin` and `/sbin`.
#[derive(Debug, Clone)]
pub struct NftCommand {
    program: PathBuf,
}

impl NftCommand {
    /// Finds `nft` and checks that it runs (`nft --version`): the
    /// pre-flight check of a start, before anything is written.
    pub fn find() -> Result<NftCommand, NftError> {
        let program = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .map_or_else(|| PathBuf::from("nft"), Path::to_path_buf);
        let cmd = NftCommand { program };
        cmd.output(&["--version"])?;
        Ok(cmd)
    }

    /// The program it runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs `nft ARGS` with no input; its standard output when it
    /// succeeds.
    fn output(&self, args: &[&str]) -> Result<Vec<u8>, NftError> {
        // Pipes, never `Stdio::null()`: a container's root may have no
        // /dev/null, and failing to open it would read as a missing nft.
        let out = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::piped())
            .output()
            .map_err(|source| NftError::Missing {
                program: self.program.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(NftError::Refused {
                status: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(out.stdout)
    }
}

impl Nft for NftCommand {
    fn run(&mut self, script: &str) -> Result<(), NftError> {
        let mut child = Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| NftError::Missing {
                program: self.program.clone(),
                source,
            })?;
        let written = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(script.as_bytes()),
            None => Ok(()),
        };
        let out = child.wait_with_output().map_err(NftError::Io)?;
        if !out.status.success() {
            return Err(NftError::Refused {
                status: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        written.map_err(NftError::Io)
    }

    fn has_table(&mut self) -> Result<bool, NftError> {
        let out = self.output(&["list", "tables", packet::FAMILY])?;
        let wanted = format!("table {} {}", packet::FAMILY, packet::TABLE);
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .any(|l| l.trim() == wanted))
    }
}

/// What one write of the packet path did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// Whether the whole table was replaced.
    pub full: bool,
    /// Elements added.
    pub added: usize,
    /// Elements deleted.
    pub deleted: usize,
    /// Whether a transaction was sent at all (a no-op sync sends none).
    pub sent: bool,
}

/// The packet path of one run: the writer, the options, and the elements
/// the kernel holds since the last write that succeeded (`None`: unknown,
/// so the next write replaces the whole table).
pub struct PacketPath {
    nft: Box<dyn Nft + Send>,
    options: Options,
    last: Option<Elements>,
}

impl fmt::Debug for PacketPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketPath")
            .field("options", &self.options)
            .field("elements", &self.last.as_ref().map(Elements::len))
            .finish()
    }
}

impl PacketPath {
    /// A packet path that writes with `nft`.
    pub fn new(nft: Box<dyn Nft + Send>, options: Options) -> PacketPath {
        PacketPath {
            nft,
            options,
            last: None,
        }
    }

    /// Its options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The transaction that would make the table hold `desired`.
    pub fn plan(&self, desired: &Elements) -> Transaction {
        packet::transaction(self.last.as_ref(), desired, &self.options)
    }

    /// Makes the table hold `desired`: the whole table at the first
    /// write and after a failed one, else the elements that changed;
    /// nothing when nothing changed.
    pub fn write(&mut self, desired: &Elements) -> Result<Written, NftError> {
        let tx = self.plan(desired);
        let written = Written {
            full: tx.full,
            added: tx.added,
            deleted: tx.deleted,
            sent: !tx.is_empty(),
        };
        if tx.is_empty() {
            return Ok(written);
        }
        match self.nft.run(&tx.text) {
            Ok(()) => {
                self.last = Some(desired.clone());
                Ok(written)
            }
            Err(e) => {
                // What the kernel holds is unknown now: replace it whole
                // at the next write.
                self.last = None;
                Err(e)
            }
        }
    }

    /// Removes the table if it exists; `Ok(true)` when it did.
    pub fn remove(&mut self) -> Result<bool, NftError> {
        self.last = None;
        if !self.nft.has_table()? {
            return Ok(false);
        }
        self.nft.run(&packet::removal())?;
        Ok(true)
    }
}

/// An in-memory nftables for tests: records every transaction and can
/// be told to refuse.
#[derive(Debug, Default, Clone)]
pub struct FakeNft {
    /// Every transaction applied, in order.
    pub transactions: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Refuse the next transactions while set.
    pub refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Nft for FakeNft {
    fn run(&mut self, script: &str) -> Result<(), NftError> {
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(NftError::Refused {
                status: Some(1),
                stderr: "Error: refused by the test".to_owned(),
            });
        }
        if let Ok(mut t) = self.transactions.lock() {
            t.push(script.to_owned());
        }
        Ok(())
    }

    fn has_table(&mut self) -> Result<bool, NftError> {
        let t = self
            .transactions
            .lock()
            .map_err(|_| NftError::Io(std::io::Error::other("a test thread panicked")))?;
        Ok(t.last().is_some_and(|s| s != &packet::removal()))
    }
}
