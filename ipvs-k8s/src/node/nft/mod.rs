//! Writes the packet path's table ([`crate::packet`]) with nf_tables
//! messages of our own over nfnetlink ([`Netfilter`]): a whole write is
//! one batch holding the table replaced, its sets and maps, its chains
//! and rules ([`skeleton`]) and every element ([`netlink`]); a later sync
//! is one batch of the elements that changed. The kernel applies a batch
//! whole or not at all. Only our table is ever named; nothing of another
//! tool's tables is read or changed. No `nft` program runs, but for one
//! fallback: a table whose rules or declarations [`skeleton`] cannot
//! spell yet ([`crate::packet::rules::Stmt::Nft`]) has its skeleton
//! written through `nft -f -` and its elements in a second batch, as
//! before the encoder existed (the pre-flight then wants `nft`). Debian's
//! [`NftCommand`] is otherwise for the tests (the outside truth the
//! messages are compared with) and for people (`nft list table inet
//! ipvs-rs`).
//!
//! Why nfnetlink: docs/kubernetes.md ("The packet path") gives the
//! measurement.

pub mod netlink;
pub mod skeleton;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::net::IpAddr;

use crate::model::{Protocol, ServicePort};
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
    /// The element batch over nfnetlink failed.
    Batch(netlink::BatchError),
    /// nf_tables cannot be reached over nfnetlink (no `CAP_NET_ADMIN`,
    /// or a kernel without nf_tables).
    Unavailable(std::io::Error),
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
            NftError::Batch(e) => write!(f, "{e}"),
            NftError::Unavailable(e) => write!(
                f,
                "cannot reach nf_tables over nfnetlink ({e}): the packet path needs the kernel's nftables (nf_tables) and CAP_NET_ADMIN, or --no-nftables"
            ),
        }
    }
}

impl std::error::Error for NftError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NftError::Missing { source, .. } => Some(source),
            NftError::Io(e) => Some(e),
            NftError::Batch(e) => Some(e),
            NftError::Unavailable(e) => Some(e),
            NftError::Refused { .. } => None,
        }
    }
}

/// What the packet path needs of nftables: apply a transaction, remove
/// the table, and tell whether it exists. [`Netfilter`] is the real one;
/// tests use an in-memory fake.
pub trait Nft {
    /// Applies a planned transaction, whole or not at all.
    fn apply(&mut self, tx: &Transaction) -> Result<(), NftError>;
    /// Removes the table `inet ipvs-rs` (no error when there is none).
    fn remove_table(&mut self) -> Result<(), NftError>;
    /// Whether the table `inet ipvs-rs` exists.
    fn has_table(&mut self) -> Result<bool, NftError>;
    /// Where nftables stands now in this network namespace ([`Generation`]);
    /// `None` when it cannot be told. The default tells nothing.
    fn generation(&mut self) -> Option<Generation> {
        None
    }
}

/// Where nftables stands in one network namespace of one boot: the
/// kernel's ruleset generation, which every committed nftables
/// transaction in the namespace advances (ours and every other tool's,
/// iptables-nft included), the namespace and the boot. Equal generations
/// mean that no transaction was committed in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot: String,
    /// The inode of `/proc/self/ns/net`.
    pub netns: u64,
    /// The ruleset generation (`NFT_MSG_GETGEN`'s `NFTA_GEN_ID`).
    pub id: u32,
}

impl Generation {
    /// The generation of the calling thread's network namespace, asked of
    /// the kernel over nfnetlink (one `NFT_MSG_GETGEN`, one reply).
    pub fn now() -> Option<Generation> {
        use std::os::unix::fs::MetadataExt;
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let netns = std::fs::metadata("/proc/thread-self/ns/net").ok()?.ino();
        Some(Generation {
            boot: boot.trim().to_owned(),
            netns,
            id: ruleset_generation().ok()?,
        })
    }
}

/// The nftables ruleset generation of this network namespace: one
/// `NFT_MSG_GETGEN` over a netfilter netlink socket (needs
/// `CAP_NET_ADMIN`, as every write does).
fn ruleset_generation() -> std::io::Result<u32> {
    use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETGEN: u16 = 16;
    const NFT_MSG_NEWGEN: u16 = 15;
    const NFTA_GEN_ID: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST: u16 = 1;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());

    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // nlmsghdr (16 bytes) and nfgenmsg (family AF_UNSPEC, version 0,
    // res_id 0), no attributes.
    let mut request = Vec::with_capacity(20);
    request.extend_from_slice(&20u32.to_ne_bytes());
    request.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[0, 0, 0, 0]);
    socket.send(&request, 0)?;
    // The kernel answers within the send: the reply is queued already.
    socket.set_non_blocking(true)?;
    let (reply, _) = socket.recv_from_full()?;
    let field = |at: usize, len: usize| reply.get(at..at + len).ok_or_else(|| bad("short reply"));
    let u16_at = |at: usize| -> std::io::Result<u16> {
        let b = field(at, 2)?;
        Ok(u16::from_ne_bytes([b[0], b[1]]))
    };
    let kind = u16_at(4)?;
    if kind == NLMSG_ERROR {
        let b = field(16, 4)?;
        let errno = -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    if kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return Err(bad("not a generation"));
    }
    let b = field(0, 4)?;
    let end = (u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize).min(reply.len());
    // The attributes after nlmsghdr and nfgenmsg, each 4-byte aligned.
    let mut at = 20;
    while at + 4 <= end {
        let len = usize::from(u16_at(at)?);
        let kind = u16_at(at + 2)? & 0x3fff;
        if len < 4 {
            break;
        }
        if kind == NFTA_GEN_ID && len >= 8 {
            let b = field(at + 4, 4)?;
            return Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        }
        at += (len + 3) & !3;
    }
    Err(bad("no NFTA_GEN_ID"))
}

/// nf_tables over nfnetlink: the packet path's writer (see the module
/// documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Netfilter;

impl Netfilter {
    /// Checks that nf_tables answers in this network namespace (one
    /// `NFT_MSG_GETGEN`, which needs `CAP_NET_ADMIN` as every write
    /// does): the pre-flight check of a start, before anything is
    /// written.
    pub fn open() -> Result<Netfilter, NftError> {
        ruleset_generation().map_err(NftError::Unavailable)?;
        Ok(Netfilter)
    }

    /// [`Netfilter::open`], and when the table of `options` cannot be
    /// spelled over nfnetlink ([`skeleton::skeleton`] fails), `nft` found
    /// and run for the fallback: the pre-flight of a start.
    pub fn for_options(options: &packet::Options) -> Result<Netfilter, NftError> {
        let netfilter = Netfilter::open()?;
        let sets: Vec<_> = packet::declarations(options).collect();
        if skeleton::skeleton(&packet::rules::chains(options), &sets).is_err() {
            NftCommand::find()?;
        }
        Ok(netfilter)
    }
}

impl Nft for Netfilter {
    fn apply(&mut self, tx: &Transaction) -> Result<(), NftError> {
        let skeleton = if tx.full {
            match skeleton::skeleton(&tx.chains, &tx.sets) {
                Ok(requests) => requests,
                Err(_) => {
                    // The fallback: the skeleton through nft, then the
                    // elements in a batch of their own.
                    NftCommand::find()?.run(&tx.skeleton_text())?;
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        netlink::apply_with(&skeleton, &tx.changes).map_err(NftError::Batch)
    }

    fn remove_table(&mut self) -> Result<(), NftError> {
        netlink::apply_with(&skeleton::removal(), &[]).map_err(NftError::Batch)
    }

    fn has_table(&mut self) -> Result<bool, NftError> {
        netlink::table_exists().map_err(NftError::Batch)
    }

    fn generation(&mut self) -> Option<Generation> {
        Generation::now()
    }
}

/// Debian's `nft`, found on the `PATH` or in `/usr/sbin` and `/sbin`: not
/// run by the writer ([`Netfilter`]); the tests' outside truth.
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

impl NftCommand {
    /// Runs one transaction with `nft -f -`, whole or not at all.
    pub fn run(&mut self, script: &str) -> Result<(), NftError> {
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

    /// Whether the table `inet ipvs-rs` exists, as `nft list tables` says.
    pub fn has_table(&mut self) -> Result<bool, NftError> {
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
    /// Whether the table had been removed behind our back (another
    /// tool's transaction since our last write, a flush of the ruleset
    /// among them) and was written whole again.
    pub restored: bool,
}

/// The packet path of one run: the writer, the options, the table the
/// Services want kept per Service port ([`packet::Table`]), and whether
/// the kernel holds it as of the last write (`false`: unknown, so the
/// next write replaces the whole table).
///
/// A sync hands it the Service ports ([`PacketPath::write`]): the ports
/// that changed since the last sync are spelled anew, and the elements
/// they moved are the transaction; a sync where nothing changed compares
/// the ports and sends nothing. It never reads the kernel's table back:
/// an element changed behind its back is put right by the next whole
/// write (after a failed write, or at a new run whose record does not
/// hold), as before the table was kept per port.
///
/// Another tool may remove the table: a firewall's reload (`nft -f` of a
/// file that starts with `flush ruleset`, `systemctl reload nftables`)
/// does. Each write first asks nftables' generation (one
/// `NFT_MSG_GETGEN`); when it moved since our last write, some other
/// transaction was committed in the namespace, and the table's presence
/// is asked (`NFT_MSG_GETTABLE`): a table gone is written whole again at
/// that write, a no-op resync's included, so the packet path comes back
/// within a resync period. Elements or chains edited inside our table by
/// another tool are not looked for (a chain removed fails the next
/// transaction, which puts the table back whole).
///
/// A new process knows nothing of the table, but the table a previous run
/// wrote may still be right. With a record ([`PacketPath::with_record`],
/// a file beside the state file), every write that succeeds records a
/// fingerprint of the whole table it left ([`packet::fingerprint`]) with
/// nftables' [`Generation`] right after it; the first write of a new run
/// sends nothing when the generation is still the recorded one (no
/// nftables transaction of anyone since, in this namespace, this boot)
/// and the table it wants has the recorded fingerprint, and writes only
/// the difference from then on. Anything else replaces the table whole,
/// as before: another tool's nftables write in between (iptables-nft's
/// included) costs a restart that one whole write.
pub struct PacketPath {
    nft: Box<dyn Nft + Send>,
    options: Options,
    /// The fingerprint of the table's structure ([`packet::structure_fingerprint`]).
    structure: u64,
    /// The elements the Services want, per Service port.
    table: packet::Table,
    /// Whether the kernel holds `table` as of the last write.
    known: bool,
    /// The record of the last write that succeeded.
    record: Option<PathBuf>,
    /// Whether the record was read already (once a run, at the first
    /// write).
    checked: bool,
    /// nftables' generation right after our last write (or the last
    /// check that found the table there): when the generation has moved
    /// since, the next write asks whether the table is still there.
    seen: Option<Generation>,
}

/// The first line of a record.
const RECORD_HEADER: &str = "ipvsadm-rs: nftables table inet ipvs-rs as last written, version 2";

impl fmt::Debug for PacketPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketPath")
            .field("options", &self.options)
            .field("elements", &self.table.elements().len())
            .field("known", &self.known)
            .finish()
    }
}

impl PacketPath {
    /// A packet path that writes with `nft`.
    pub fn new(nft: Box<dyn Nft + Send>, options: Options) -> PacketPath {
        PacketPath {
            nft,
            structure: packet::structure_fingerprint(&options),
            options,
            table: packet::Table::default(),
            known: false,
            record: None,
            checked: false,
            seen: None,
        }
    }

    /// Keeps the record of the last write at `path` (see [`PacketPath`]):
    /// read at the first write, rewritten after each write that
    /// succeeds, removed with the table or when a write fails.
    pub fn with_record(mut self, path: PathBuf) -> PacketPath {
        self.record = Some(path);
        self
    }

    /// The record beside the state file `state`: `STATE.nft`.
    pub fn record_beside(state: &Path) -> PathBuf {
        let mut name = state.as_os_str().to_owned();
        name.push(".nft");
        PathBuf::from(name)
    }

    /// The record's text for a table of `fingerprint` at `generation`.
    fn record_text(generation: &Generation, fingerprint: u64) -> String {
        format!(
            "{RECORD_HEADER}\nboot {}\nnetns {}\ngeneration {}\ntable {fingerprint:016x}\n",
            generation.boot, generation.netns, generation.id
        )
    }

    /// The fingerprint of the table the Services want.
    fn fingerprint(&self) -> u64 {
        packet::fingerprint_on(self.structure, self.table.elements())
    }

    /// Whether the kernel's table is the one wanted, by the record:
    /// written by the last write of a previous run, nothing committed
    /// since.
    fn recorded_as_wanted(&mut self) -> bool {
        let Some(path) = &self.record else {
            return false;
        };
        let Ok(record) = std::fs::read_to_string(path) else {
            return false;
        };
        let Some(now) = self.nft.generation() else {
            return false;
        };
        let holds = record == Self::record_text(&now, self.fingerprint());
        if holds {
            self.seen = Some(now);
        }
        holds
    }

    /// Whether the table we wrote is gone: asked of the kernel only when
    /// nftables' generation moved since our last write or check (another
    /// tool committed a transaction in between), else known not to be.
    fn gone_behind_our_back(&mut self) -> Result<bool, NftError> {
        let now = self.nft.generation();
        if now.is_none() || now == self.seen {
            return Ok(false);
        }
        let there = self.nft.has_table()?;
        self.seen = now;
        Ok(!there)
    }

    /// Records the table just written with the generation right after
    /// the write ([`PacketPath::seen`]); removes the record when the
    /// generation cannot be told. A record that cannot be written only
    /// costs the next run a whole write.
    fn save_record(&mut self) {
        let Some(path) = self.record.clone() else {
            return;
        };
        let Some(now) = &self.seen else {
            let _ = std::fs::remove_file(&path);
            return;
        };
        let text = Self::record_text(now, self.fingerprint());
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Forgets the record (what the kernel holds is unknown).
    fn drop_record(&self) {
        if let Some(path) = &self.record {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Its options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The elements the last write wanted.
    pub fn elements(&self) -> &Elements {
        self.table.elements()
    }

    /// Makes the table hold the elements `ports` want ([`packet::elements`]:
    /// `node_ips` serve the NodePorts, `skip` leaves out what this node
    /// does not serve): the whole table at the first write and after a
    /// failed one, else the elements the changed ports moved; nothing
    /// when nothing changed.
    pub fn write(
        &mut self,
        ports: &[ServicePort],
        node_ips: &[IpAddr],
        skip: impl Fn(IpAddr, Protocol, u16) -> bool,
    ) -> Result<Written, NftError> {
        let touched = self.table.update(ports, node_ips, &self.options, skip);
        let mut restored = false;
        if self.known {
            match self.gone_behind_our_back() {
                Ok(false) => {}
                Ok(true) => {
                    self.known = false;
                    restored = true;
                }
                Err(e) => {
                    // What the kernel holds is unknown: whole next time.
                    self.known = false;
                    self.drop_record();
                    return Err(e);
                }
            }
        }
        if !self.known && !self.checked {
            self.checked = true;
            if self.recorded_as_wanted() {
                // The kernel holds the table wanted: nothing to send.
                self.known = true;
                return Ok(Written::default());
            }
        }
        let tx = if self.known {
            self.table.transaction(&touched)
        } else {
            packet::transaction(None, self.table.elements(), &self.options)
        };
        let written = Written {
            full: tx.full,
            added: tx.added,
            deleted: tx.deleted,
            sent: !tx.is_empty(),
            restored,
        };
        if tx.is_empty() {
            return Ok(written);
        }
        match self.nft.apply(&tx) {
            Ok(()) => {
                self.known = true;
                self.seen = self.nft.generation();
                self.save_record();
                Ok(written)
            }
            Err(e) => {
                // What the kernel holds is unknown now: replace it whole
                // at the next write.
                self.known = false;
                self.drop_record();
                Err(e)
            }
        }
    }

    /// Removes the table if it exists; `Ok(true)` when it did.
    pub fn remove(&mut self) -> Result<bool, NftError> {
        self.known = false;
        self.drop_record();
        if !self.nft.has_table()? {
            return Ok(false);
        }
        self.nft.remove_table()?;
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

impl FakeNft {
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
}

impl Nft for FakeNft {
    fn apply(&mut self, tx: &Transaction) -> Result<(), NftError> {
        self.run(&tx.text())
    }

    fn remove_table(&mut self) -> Result<(), NftError> {
        self.run(&packet::removal())
    }

    fn has_table(&mut self) -> Result<bool, NftError> {
        let t = self
            .transactions
            .lock()
            .map_err(|_| NftError::Io(std::io::Error::other("a test thread panicked")))?;
        Ok(t.last().is_some_and(|s| s != &packet::removal()))
    }
}
