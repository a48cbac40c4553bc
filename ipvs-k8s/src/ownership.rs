//! What `--from-k8s` owns: the virtual services it created, kept in a
//! state file so that it still knows them after a crash or a restart,
//! each with the settings it last wrote to it.
//!
//! Unlike kube-proxy, which deletes every virtual service it did not
//! create in its last sync, `--from-k8s` never changes or removes a
//! service it did not create. The rules that make this safe across
//! crashes and other tools:
//! - a service is recorded (file written and synced) **before** the write
//!   that creates it, so no crash can leave a service of ours unrecorded;
//! - a recorded service counts as ours only while the kernel's table has
//!   it: a record whose service is gone (a crash before the write, or a
//!   deletion by someone else) is dropped at the next sync;
//! - and only while the kernel shows the settings it last wrote
//!   (scheduler, flags, persistence timeout and netmask, persistence
//!   engine): the kernel keeps no creator of a service, so a service
//!   another tool created under the same identity (after deleting ours,
//!   or one a forged state file lists) is recognised by its other
//!   settings. Such a service is *disowned*: left alone, reported, its
//!   record dropped. An edit of ours by hand (`ipvsadm -E`) looks the
//!   same and is treated the same (delete it to hand it back).
//!
//! What cannot be recognised: another tool's service with exactly the
//! settings we last wrote (its real servers are then ours to replace).
//! Real servers are no sign (a Service's endpoints may all change between
//! two syncs, and drift in them is repaired); nor are the counters (a
//! recreated service starts them at 0, but so does `ipvsadm -Z`).
//!
//! Before an edit of a service's settings both the old and the new ones
//! are recorded, and after it the new ones only, so a crash in between
//! leaves the service ours whichever it has.
//!
//! A creation that fails (the identity was taken between the dump and the
//! write) is not recorded, and its real servers are not sent.
//!
//! The file is text (format 5): a header line, then one service and
//! settings a line (`tcp 10.96.0.1:443 sched=rr flags=0x0 timeout=0
//! mask=255.255.255.255 pe=- name=default/kubernetes:https`, the name of
//! the Service port when the live mode knows it: for `--top` and
//! `--metrics` to show, never a sign of ownership; a firewall-mark
//! service is `fwm 4096 ...` or `fwm6 4096 ...`, and its name is also
//! what keeps a Service port's mark across restarts), then `# end: N lines`
//! counting them, so that a cut file is never read as whole
//! ([`parse_whole`]). It is
//! replaced atomically: written to a new temporary file beside it
//! (created exclusively, never through a link), synced, renamed over it,
//! and the directory synced; then its copy `STATE.bak` the same way. A cut
//! or missing state file is read from a whole copy (with a note to tell);
//! with neither whole the run is refused, saying what to do, rather than
//! take its own services for another tool's. The directory must
//! not be writable by group or others, nor owned by another user, as
//! sshd refuses loose permissions: whoever can write it could otherwise
//! choose what the sync owns. A file of format 1 (the same lines without
//! settings, before ipvsadm-rs 0.2) is read: each of its services counts
//! as ours only if the kernel shows the settings the dump asks for (what
//! format 1 would have written). Formats 2 (no end line) and 3 (no
//! names) and 4 (no firewall marks) are read too; the first sync
//! rewrites any as format 5.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ipvs_netlink::{AddressFamily, Netmask, Protocol, Service, ServiceFlags, ServiceId};
use nix::fcntl::{Flock, FlockArg};

/// Where the state file is unless `--state` says otherwise.
pub const DEFAULT_STATE: &str = "/var/lib/ipvsadm-rs/k8s-owned";

/// The first line of a state file of format 5, the one written: format
/// 4's lines, and firewall-mark services (`fwm MARK`, `fwm6 MARK`), whose
/// names also keep each Service port's mark across restarts.
pub const HEADER: &str =
    "# ipvsadm-rs --from-k8s state, format 5: the virtual services it created (firewall marks too), the settings it last wrote and their Services (do not edit while it runs; the last line counts the others)";

/// The first line of a state file of format 4 (the previous release's:
/// format 3's lines, each with the Kubernetes name of the Service port it
/// is for when the live mode knows it, `name=namespace/name:port`):
/// read, never written.
pub const HEADER_4: &str =
    "# ipvsadm-rs --from-k8s state, format 4: the virtual services it created, the settings it last wrote and their Services (do not edit while it runs; the last line counts the others)";

/// The first line of a state file of format 3 (the previous release's):
/// read, never written.
pub const HEADER_3: &str =
    "# ipvsadm-rs --from-k8s state, format 3: the virtual services it created and the settings it last wrote (do not edit while it runs; the last line counts the others)";

/// The first line of a state file of format 2 (the previous release's):
/// read, never written.
pub const HEADER_2: &str =
    "# ipvsadm-rs --from-k8s state, format 2: the virtual services it created and the settings it last wrote (do not edit while it runs)";

/// How the last line of a format 3 file starts: `# end: N lines`, N the
/// count of service lines between it and the header.
const END: &str = "# end: ";

/// What every header of ours starts with: a first line that starts so but
/// is no whole header was cut.
const HEADER_START: &str = "# ipvsadm-rs --from-k8s state";

/// The largest state file read (64 MiB): a line is under 120 bytes, so
/// this is room for half a million services.
const MAX_STATE: u64 = 64 << 20;

/// What the state file records of one service it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A line without settings (format 1): ours only if the kernel shows
    /// the settings the dump asks for.
    Unknown,
    /// The settings it last wrote ([`settings`]): one, or two while an
    /// edit is in flight.
    Settings(BTreeSet<String>),
}

impl Recorded {
    /// A record of one set of settings.
    pub fn one(settings: String) -> Self {
        Recorded::Settings([settings].into())
    }
}

/// What a state file records: each service it created.
pub type Records = HashMap<ServiceId, Recorded>;

/// The Kubernetes names a state file records (format 4): each service's
/// `namespace/name:port`, escaped as [`name_word`] writes it. For display
/// (`--top`, `--metrics`): never a sign of ownership.
pub type Names = HashMap<ServiceId, String>;

/// A name (a Kubernetes name, a scheduler, a persistence engine) as one
/// word of a line: graphic ASCII but `\`; anything else (a space, a
/// newline, a backslash, non-ASCII) as Rust's `\u{..}`.
pub fn name_word(name: &str) -> String {
    let mut word = String::with_capacity(name.len());
    push_name_word(&mut word, name);
    word
}

/// [`name_word`] of `name`, appended to `out` (a name of graphic ASCII
/// alone, as Kubernetes names are, copied whole).
fn push_name_word(out: &mut String, name: &str) {
    let plain = |c: char| c.is_ascii_graphic() && c != '\\';
    if name.chars().all(plain) {
        out.push_str(name);
        return;
    }
    for c in name.chars() {
        if plain(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
}

/// How a name's word starts.
const NAME: &str = "name=";

/// The settings of a service as the state file records them: exactly what
/// the planner compares (`==` on [`ipvs_plan::ServiceSpec`], which leaves
/// the kernel's HASHED flag aside); one word each, `key=value`. (The
/// state file keeps them as text across restarts, so a record is
/// compared as this text of the kernel's service.)
pub fn settings(svc: &Service) -> String {
    let mask = match svc.netmask {
        Netmask::V4(m) => m.to_string(),
        Netmask::V6(p) => format!("/{p}"),
    };
    let pe = svc
        .persistence_engine
        .as_deref()
        .map_or("-".to_owned(), |p| {
            if p == "-" {
                "\\u{2d}".to_owned()
            } else {
                name_word(p)
            }
        });
    format!(
        "sched={} flags={:#x} timeout={} mask={mask} pe={pe}",
        name_word(&svc.scheduler),
        (svc.flags - ServiceFlags::HASHED).bits(),
        svc.timeout,
    )
}

/// Whether `text` reads as what [`settings`] writes.
fn is_settings(words: &[&str]) -> bool {
    let keys = ["sched=", "flags=", "timeout=", "mask=", "pe="];
    words.len() == keys.len() && words.iter().zip(keys).all(|(w, k)| w.starts_with(k))
}

/// The line of one service, or `None` for a service `--from-k8s` never
/// creates (other protocols and families). A firewall-mark service (of
/// an `externalTrafficPolicy: Local` Service port's in-cluster traffic,
/// [`crate::mapping::assign_fwmarks`]) is `fwm MARK` (IPv4) or `fwm6
/// MARK` (IPv6), the mark in decimal.
pub fn id_line(id: &ServiceId) -> Option<String> {
    let (protocol, addr, port) = match id {
        ServiceId::Inet {
            protocol,
            addr,
            port,
        } => (protocol, addr, port),
        ServiceId::Fwmark { family, mark } => {
            return match family {
                AddressFamily::Inet => Some(format!("fwm {mark}")),
                AddressFamily::Inet6 => Some(format!("fwm6 {mark}")),
            };
        }
    };
    let proto = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        _ => return None,
    };
    Some(format!("{proto} {}", SocketAddr::new(*addr, *port)))
}

/// Reads the service of one line written by [`id_line`]: protocol and
/// address.
pub fn parse_id(proto: &str, addr: &str) -> Option<ServiceId> {
    let fwmark = |af| {
        // Decimal, as `id_line` writes it: no sign, no leading zero.
        let mark: u32 = addr.parse().ok()?;
        (mark != 0 && mark.to_string() == addr).then(|| ServiceId::fwmark(af, mark))
    };
    let protocol = match proto {
        "fwm" => return fwmark(AddressFamily::Inet),
        "fwm6" => return fwmark(AddressFamily::Inet6),
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    Some(ServiceId::inet(protocol, addr.parse().ok()?))
}

/// The text of a state file recording `records` (format 5, without
/// names), sorted.
pub fn render(records: &Records) -> String {
    render_named(records, &Names::new())
}

/// The text of a state file recording `records` (format 5), sorted, each
/// service with settings named as `names` says (if it does).
pub fn render_named(records: &Records, names: &Names) -> String {
    // Each line built once in a buffer of its size and sorted as text (at
    // 10,000 services this is the state file's write: formatting a line
    // with a set of lines kept sorted cost 25 ms natively, each name an
    // allocation a character).
    let mut lines: Vec<String> = Vec::with_capacity(records.len());
    for (id, recorded) in records {
        let Some(service) = id_line(id) else { continue };
        match recorded {
            Recorded::Unknown => lines.push(service),
            Recorded::Settings(all) => {
                let name = names.get(id);
                for s in all {
                    let named = name.map_or(0, |n| 1 + NAME.len() + n.len());
                    let mut line = String::with_capacity(service.len() + 1 + s.len() + named);
                    line.push_str(&service);
                    line.push(' ');
                    line.push_str(s);
                    if let Some(n) = name {
                        line.push(' ');
                        line.push_str(NAME);
                        push_name_word(&mut line, n);
                    }
                    lines.push(line);
                }
            }
        }
    }
    lines.sort_unstable();
    // (A service's settings are a set, and each service has one record:
    // no two lines are the same.)
    let size: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut text = String::with_capacity(HEADER.len() + 1 + size + END.len() + 32);
    text.push_str(HEADER);
    text.push('\n');
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(END);
    text.push_str(&lines.len().to_string());
    text.push_str(" lines\n");
    text
}

/// Why a state file's text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// It is not whole (empty, cut inside a line, or a format 3 file
    /// without its end line or with fewer lines than it counts): a copy
    /// may say what it held. The text says how, after the file's name.
    Cut(String),
    /// It is whole but does not read: refused. The text names the line.
    Damaged(String),
}

/// Reads a state file's text: [`parse`] after checking it is whole. A
/// format 3 file (first line [`HEADER`]) must end with its end line,
/// counting the lines between; files of format 2 ([`HEADER_2`]) and 1 (no
/// header), written by earlier releases, have none, and are whole when
/// they end with a newline (as every release wrote them). Returns the
/// records and whether the file is of format 3.
pub fn parse_whole(text: &str) -> Result<(Records, bool), Unusable> {
    let cut = |why: &str| Err(Unusable::Cut(why.to_owned()));
    if text.is_empty() {
        return cut("is empty");
    }
    if !text.ends_with('\n') {
        return cut("is cut inside a line");
    }
    let first = text.lines().next().unwrap_or_default();
    let known = [HEADER, HEADER_4, HEADER_3, HEADER_2];
    if first.starts_with(HEADER_START) && !known.contains(&first) {
        return cut("is cut inside its first line");
    }
    if first != HEADER && first != HEADER_4 && first != HEADER_3 {
        return parse(text).map(|r| (r, false)).map_err(Unusable::Damaged);
    }
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.last().copied().unwrap_or_default();
    let Some(count) = last
        .strip_prefix(END)
        .and_then(|c| c.strip_suffix(" lines"))
        .and_then(|c| c.parse::<usize>().ok())
    else {
        return cut("ends without its end line");
    };
    let body = &lines[1..lines.len() - 1];
    if body.len() != count {
        return Err(Unusable::Cut(format!(
            "has {} service lines where its end line counts {count}",
            body.len()
        )));
    }
    if let Some(n) = body
        .iter()
        .position(|l| l.trim().is_empty() || l.starts_with('#'))
    {
        return Err(Unusable::Damaged(format!(
            "line {}: not a service it created",
            n + 2
        )));
    }
    parse(text)
        .map(|r| (r, first == HEADER))
        .map_err(Unusable::Damaged)
}

/// [`parse_whole`], and the names the file records (none before format 4).
pub fn parse_named(text: &str) -> Result<(Records, Names), Unusable> {
    let (records, _) = parse_whole(text)?;
    let names = names_of(text, &records);
    Ok((records, names))
}

/// The names the lines of `text` give the services of `records`.
fn names_of(text: &str, records: &Records) -> Names {
    let mut names = Names::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        if let [proto, addr, .., last] = words.as_slice() {
            if let (Some(id), Some(name)) = (parse_id(proto, addr), last.strip_prefix(NAME)) {
                if records.contains_key(&id) {
                    names.insert(id, name.to_owned());
                }
            }
        }
    }
    names
}

/// Reads a state file's text, of format 2 (its first line is [`HEADER`])
/// or 1. Blank lines and `#` lines are skipped; any other line that does
/// not read is an error naming its number, never its content (a state
/// file that cannot be trusted must not be guessed at).
pub fn parse(text: &str) -> Result<Records, String> {
    let mut records = Records::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let bad = || format!("line {}: not a service it created", n + 1);
        let id = match words.as_slice() {
            [proto, addr, ..] => parse_id(proto, addr).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        // Formats 4 and 5 may end a line with the Service's name.
        let settings = match words.last() {
            Some(w) if words.len() > 2 && w.starts_with(NAME) => &words[2..words.len() - 1],
            _ => &words[2..],
        };
        let recorded = if words.len() == 2 {
            Recorded::Unknown
        } else if is_settings(settings) {
            Recorded::one(settings.join(" "))
        } else {
            return Err(bad());
        };
        match (records.get_mut(&id), recorded) {
            (Some(Recorded::Settings(all)), Recorded::Settings(more)) => all.extend(more),
            (Some(_), _) => return Err(format!("line {}: a service given twice", n + 1)),
            (None, r) => {
                records.insert(id, r);
            }
        }
    }
    Ok(records)
}

/// The state file: where it is and what it records.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// The services recorded, as last read or written.
    pub recorded: Records,
    /// What the caller must tell (a state file recovered from its copy).
    pub notes: Vec<String>,
    /// Whether the next sync adopts the services of the table it does
    /// not own that are exactly what the mapping writes (`--adopt`,
    /// [`crate::adopt`]); cleared once a sync has recorded them.
    pub adopt: bool,
    /// The files must be written even if the records do not change: one
    /// was cut, missing or of an older format.
    rewrite: bool,
    /// The names written with the records (at the start, those the file
    /// gives: the firewall marks of the Service ports, [`StateFile::fwmarks`]).
    names: Names,
    /// The names the next write records, where it records their services
    /// ([`StateFile::name`]).
    wanted_names: Names,
    /// Held while a sync that writes runs, so two cannot interleave.
    _lock: Option<Flock<File>>,
}

impl StateFile {
    /// Reads the state at `path` (missing: nothing owned). With `lock`,
    /// first makes sure the directory is safe ([`check_directory`],
    /// creating it if needed) and takes an exclusive lock on `PATH.lock`
    /// (never through a link), failing at once if another sync holds it.
    pub fn open(path: &Path, lock: bool) -> Result<Self, String> {
        Self::open_adopting(path, lock, false)
    }

    /// [`StateFile::open`], and with `adopt` (`--adopt`) the next sync
    /// adopts what matches the mapping ([`StateFile::adopt`]); a cut state
    /// file without a whole copy is then no refusal: its records are lost,
    /// a note says so, and the sync starts from none, adopting.
    pub fn open_adopting(path: &Path, lock: bool, adopt: bool) -> Result<Self, String> {
        let dir = directory(path);
        if lock && dir.exists() {
            check_directory(&dir)?;
        }
        // Read whole before anything is made: a state file that does not
        // read leaves no directory or lock behind.
        read_state(path, adopt)?;
        let lock = if lock {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            check_directory(&dir)?;
            let lock_path = sibling(path, ".lock");
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&lock_path)
                .and_then(regular)
                .map_err(|e| format!("cannot open {}: {}", lock_path.display(), link_error(e)))?;
            let locked = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
                format!(
                    "cannot lock {} (is another --from-k8s running?): {e}",
                    lock_path.display()
                )
            })?;
            Some(locked)
        } else {
            None
        };
        // Read again under the lock: what another sync wrote meanwhile.
        let (recorded, rewrite, notes, names) = read_state(path, adopt)?;
        Ok(StateFile {
            path: path.to_owned(),
            recorded,
            notes,
            adopt,
            rewrite,
            names,
            wanted_names: Names::new(),
            _lock: lock,
        })
    }

    /// Records exactly `records`, atomically and durably; does nothing
    /// when they are what the file already records.
    ///
    /// The file is written, then its copy `STATE.bak` with the same text
    /// (each replaced atomically): whichever a crash or a later cut
    /// damages, the other holds the records of this write or, after a
    /// crash between the two, of the one before (when the state file
    /// itself is whole, and wins).
    pub fn record(&mut self, records: Records) -> Result<(), String> {
        if self.holds(&records) {
            return Ok(());
        }
        let names: Names = self
            .wanted_names
            .iter()
            .filter(|(id, _)| matches!(records.get(id), Some(Recorded::Settings(_))))
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        let text = render_named(&records, &names);
        for path in [self.path.clone(), backup(&self.path)] {
            write_atomically(&path, text.as_bytes()).map_err(|e| {
                format!(
                    "cannot write state file {}: {}",
                    path.display(),
                    link_error(e)
                )
            })?;
        }
        self.recorded = records;
        self.names = names;
        self.rewrite = false;
        Ok(())
    }

    /// Whether [`StateFile::record`] of `records` would write nothing:
    /// the file records them already, with the names it would give them
    /// (compared in place, nothing copied).
    pub fn holds(&self, records: &Records) -> bool {
        !self.rewrite
            && *records == self.recorded
            && self.names_held(|id| matches!(records.get(id), Some(Recorded::Settings(_))))
    }

    /// [`StateFile::holds`] of one set of settings for each service of
    /// `settings` (what a sync that writes nothing records), without
    /// making the records.
    pub fn holds_each(&self, settings: &HashMap<ServiceId, String>) -> bool {
        !self.rewrite
            && settings.len() == self.recorded.len()
            && settings.iter().all(|(id, s)| {
                matches!(self.recorded.get(id),
                    Some(Recorded::Settings(all)) if all.len() == 1 && all.contains(s))
            })
            && self.names_held(|id| settings.contains_key(id))
    }

    /// Whether the names the file records are those of the wanted names
    /// whose services are `recorded`.
    fn names_held(&self, recorded: impl Fn(&ServiceId) -> bool) -> bool {
        let mut named = 0;
        for (id, name) in &self.wanted_names {
            if recorded(id) {
                if self.names.get(id) != Some(name) {
                    return false;
                }
                named += 1;
            }
        }
        named == self.names.len()
    }

    /// The Kubernetes names (`namespace/name:port`) of the services the
    /// next writes record, for `--top` and `--metrics` to show.
    pub fn name(&mut self, names: Names) {
        self.wanted_names = names;
    }

    /// [`StateFile::name`] of the services `ids` alone: their names are
    /// now `names` (those without one have none); the others' stay.
    pub fn rename(
        &mut self,
        ids: &HashSet<ServiceId>,
        names: impl IntoIterator<Item = (ServiceId, String)>,
    ) {
        self.wanted_names.retain(|id, _| !ids.contains(id));
        self.wanted_names.extend(names);
    }

    /// The firewall mark of each Service port (`namespace/name:port`) as
    /// the names of the recorded firewall-mark services give it: those
    /// the file gave at the start, then those of the last sync (so a
    /// Service port keeps its mark across syncs and restarts).
    pub fn fwmarks(&self) -> std::collections::BTreeMap<String, u32> {
        self.names
            .iter()
            .chain(&self.wanted_names)
            .filter_map(|(id, name)| match id {
                ServiceId::Fwmark { mark, .. } => Some((name.clone(), *mark)),
                ServiceId::Inet { .. } => None,
            })
            .collect()
    }

    /// The services recorded, whatever their settings.
    pub fn ids(&self) -> HashSet<ServiceId> {
        self.recorded.keys().copied().collect()
    }
}

/// The copy of the state file at `path`: `STATE.bak`.
pub fn backup(path: &Path) -> PathBuf {
    sibling(path, ".bak")
}

/// What [`read_state`] gives: the records, whether the files must be
/// written again, notes to tell, and the names of the records.
type State = (Records, bool, Vec<String>, Names);

/// What reading one file gave.
enum Found {
    /// No file.
    Missing,
    /// Whole: its records, whether it is of the current format, and
    /// the names it gives them.
    Whole(Records, bool, Names),
    /// Not whole: how ([`Unusable::Cut`]).
    Cut(String),
}

/// Reads one state file at `path`, never through a link, at most
/// [`MAX_STATE`] bytes. A damaged file is an error.
fn read_file(path: &Path) -> Result<Found, String> {
    let shown = path.display();
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .and_then(regular)
        .and_then(|f| {
            let mut bytes = Vec::new();
            f.take(MAX_STATE + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
    match read {
        Ok(bytes) if bytes.len() as u64 > MAX_STATE => Err(format!(
            "state file {shown}: longer than {MAX_STATE} bytes: not a state file"
        )),
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("state file {shown}: not text: not a state file"))?;
            match parse_whole(&text) {
                Ok((records, current)) => {
                    let names = names_of(&text, &records);
                    Ok(Found::Whole(records, current, names))
                }
                Err(Unusable::Cut(why)) => Ok(Found::Cut(why)),
                Err(Unusable::Damaged(e)) => Err(format!("state file {shown}: {e}")),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(format!("cannot read state file {shown}: {}", link_error(e))),
    }
}

/// Reads the state at `path`, or its copy ([`backup`]) when the file is
/// cut or missing: the records, whether the files must be written again,
/// and a note to tell when the copy was used. Neither file: nothing
/// recorded. A cut file without a whole copy is refused, saying what to
/// do: the services it listed can no longer be told from others'. With
/// `adopt` such a file is read as recording nothing, with a note: the
/// sync adopts what matches the mapping.
fn read_state(path: &Path, adopt: bool) -> Result<State, String> {
    let copy = backup(path);
    let (p, c) = (path.display(), copy.display());
    match (read_file(path)?, read_file(&copy)?) {
        (Found::Whole(records, current, names), Found::Whole(..)) => {
            Ok((records, !current, vec![], names))
        }
        (Found::Whole(records, _, names), _) => Ok((records, true, vec![], names)),
        (Found::Missing, Found::Missing) => Ok((Records::new(), false, vec![], Names::new())),
        (found, Found::Whole(records, _, names)) => {
            let why = match found {
                Found::Cut(why) => why,
                _ => "is missing".to_owned(),
            };
            let note = format!(
                "state file {p} {why}: read its copy {c} instead ({} services, written with it or at the write before); both are written again",
                records.len()
            );
            Ok((records, true, vec![note], names))
        }
        (found, copy_found) => {
            let why = match found {
                Found::Cut(why) => why,
                _ => "is missing".to_owned(),
            };
            let copy_why = match copy_found {
                Found::Cut(why) => why,
                _ => "is missing".to_owned(),
            };
            if adopt {
                return Ok((
                    Records::new(),
                    true,
                    vec![format!(
                        "state file {p} {why} and its copy {c} {copy_why}: which virtual services --from-k8s created is lost; \
                         --adopt takes over those with exactly the settings the mapping writes, the others are left alone and reported; both files are written again"
                    )],
                    Names::new(),
                ));
            }
            Err(format!(
                "state file {p} {why} and its copy {c} {copy_why}: which virtual services --from-k8s created is lost, so nothing was changed. \
                 To go on: run it again with --adopt, which takes over the virtual services that have exactly the settings the mapping writes \
                 and reports the others; or stop every --from-k8s on this node, compare the table (ipvsadm -Ln) with the Services, \
                 delete the virtual services --from-k8s created (the next run creates them again), then remove {p} and {c}"
            ))
        }
    }
}

/// The abstract unix socket name whose binding is the lock of one
/// network namespace: abstract names belong to the namespace, not to a
/// file system, so two containers of one node's network namespace see
/// the same name whatever they mount, and the kernel frees it when its
/// holder exits, however it exits.
const NETNS_LOCK: &str = "ipvsadm-rs --from-k8s: the lock of this network namespace";

/// The start of a second abstract name the holder binds, ending with its
/// state file, for the refusal to name it (read from the namespace's
/// /proc/net/unix).
const NETNS_HOLDER: &str = "ipvsadm-rs --from-k8s: state file ";

/// The lock of this network namespace: one `--from-k8s` that writes per
/// network namespace, whatever its state file (issue 34: two instances
/// with their own state files each took the other's services for
/// another tool's, and stripped their addresses from the dummy
/// interface). Held until dropped.
#[derive(Debug)]
pub struct NetnsLock {
    _lock: std::os::unix::net::UnixDatagram,
    _holder: Option<std::os::unix::net::UnixDatagram>,
}

/// Takes the lock of the network namespace the process is in, naming
/// `state` as its holder's state file; refused plainly (naming the
/// holder's state file) when another instance holds it.
pub fn lock_netns(state: &Path) -> Result<NetnsLock, String> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let name = |bytes: &[u8]| SocketAddr::from_abstract_name(bytes);
    let addr = name(NETNS_LOCK.as_bytes())
        .map_err(|e| format!("cannot lock this network namespace: {e}"))?;
    match UnixDatagram::bind_addr(&addr) {
        Ok(lock) => {
            let shown = std::path::absolute(state).unwrap_or_else(|_| state.to_owned());
            let mut holder = format!("{NETNS_HOLDER}{}", shown.display());
            // An abstract name holds at most 107 bytes.
            while holder.len() > 107 {
                holder.pop();
            }
            let holder = name(holder.as_bytes())
                .and_then(|a| UnixDatagram::bind_addr(&a))
                .ok();
            Ok(NetnsLock {
                _lock: lock,
                _holder: holder,
            })
        }
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            let unix = fs::read_to_string("/proc/thread-self/net/unix").unwrap_or_default();
            let marker = format!("@{NETNS_HOLDER}");
            let holder = unix
                .lines()
                .find_map(|l| l.find(&marker).map(|at| &l[at + marker.len()..]))
                .map_or("its state file is unknown".to_owned(), |p| {
                    format!("its state file is {p}")
                });
            Err(format!(
                "another --from-k8s runs in this network namespace ({holder}): one instance per network namespace, whatever its --state; stop it first"
            ))
        }
        Err(e) => Err(format!("cannot lock this network namespace: {e}")),
    }
}

/// The directory of `path` (`.` for a bare name).
fn directory(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Refuses a state directory that group or others may write, or that
/// another user than root or this one owns: whoever can write it could
/// plant links or choose what the sync owns.
pub fn check_directory(dir: &Path) -> Result<(), String> {
    let meta = fs::metadata(dir).map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "the state directory {} belongs to user {}: refused (it must be root's or this user's)",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the state directory {} is writable by {}: refused (chmod go-w {} to use it)",
            dir.display(),
            if meta.mode() & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
            dir.display()
        ));
    }
    Ok(())
}

/// `file` if it is a regular file (not a FIFO or a device someone put in
/// its place).
fn regular(file: File) -> std::io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// An error, with the words for the one `O_NOFOLLOW` gives on a link.
fn link_error(e: std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::ELOOP) {
        "a symbolic link: refused".to_owned()
    } else {
        e.to_string()
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Creates `path` exclusively (`O_EXCL`, never through a link), mode 0600;
/// a file or link left there by an earlier process is removed (the link,
/// not what it points to) and the creation tried once more.
fn create_new(path: &Path) -> std::io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

/// Replaces `path` with `bytes`: a temporary file beside it, created
/// exclusively, written and synced, renamed over it (a link at `path` is
/// replaced, not followed), then the directory synced so the rename
/// survives a power loss.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = directory(path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)?;
    }
    let tmp = sibling(path, &format!(".tmp.{}", std::process::id()));
    let mut created = false;
    let result = (|| {
        let mut file = create_new(&tmp)?;
        created = true;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() && created {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_plan::ServiceSpec;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn id(proto: Protocol, a: &str) -> ServiceId {
        ServiceId::inet(proto, a.parse().unwrap())
    }

    fn rr(id: ServiceId) -> Recorded {
        Recorded::one(settings(&Service::new(id, "rr")))
    }

    static DIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A fresh directory of this test's own, mode 0755.
    fn temp_dir() -> PathBuf {
        let n = DIRS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ipvsadm-rs-own-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn lines_round_trip_for_every_protocol_and_family() {
        let tcp = id(Protocol::Tcp, "10.96.0.1:443");
        let udp = id(Protocol::Udp, "10.96.0.10:53");
        let sctp = id(Protocol::Sctp, "[fd00::1]:9000");
        let mut sticky = Service::new(udp, "sh");
        sticky.flags = ServiceFlags::PERSISTENT | ServiceFlags::HASHED;
        sticky.timeout = 10800;
        let records: Records = [
            (tcp, rr(tcp)),
            (udp, Recorded::one(settings(&sticky))),
            (sctp, rr(sctp)),
        ]
        .into();
        let text = render(&records);
        assert_eq!(
            text,
            format!(
                "{HEADER}\n\
                 sctp [fd00::1]:9000 sched=rr flags=0x0 timeout=0 mask=/128 pe=-\n\
                 tcp 10.96.0.1:443 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=-\n\
                 udp 10.96.0.10:53 sched=sh flags=0x1 timeout=10800 mask=255.255.255.255 pe=-\n\
                 # end: 3 lines\n"
            )
        );
        assert_eq!(parse(&text).unwrap(), records);
        assert_eq!(parse_whole(&text).unwrap(), (records, true));
    }

    #[test]
    fn names_are_words_escaped_as_rust_escapes_unicode() {
        assert_eq!(name_word("default/web:http"), "default/web:http");
        assert_eq!(name_word(""), "");
        assert_eq!(name_word("a b\\é\n"), "a\\u{20}b\\u{5c}\\u{e9}\\u{a}");
    }

    #[test]
    fn a_file_with_names_is_its_lines_sorted_as_text() {
        let web = id(Protocol::Tcp, "10.96.0.10:80");
        let dns = id(Protocol::Udp, "10.96.0.2:53");
        let old = id(Protocol::Tcp, "10.96.0.1:443");
        let mark = ServiceId::fwmark(AddressFamily::Inet, 4096);
        let both = Recorded::Settings(
            [
                settings(&Service::new(web, "rr")),
                settings(&Service::new(web, "wlc")),
            ]
            .into(),
        );
        let records: Records = [
            (web, both),
            (dns, rr(dns)),
            (old, Recorded::Unknown),
            (mark, rr(mark)),
        ]
        .into();
        let names: Names = [
            (web, "default/web:http".to_owned()),
            (dns, "kube system/dns:53".to_owned()),
            (old, "not written: no settings".to_owned()),
        ]
        .into();
        let text = render_named(&records, &names);
        assert_eq!(
            text,
            format!(
                "{HEADER}\n\
                 fwm 4096 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=-\n\
                 tcp 10.96.0.10:80 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=- name=default/web:http\n\
                 tcp 10.96.0.10:80 sched=wlc flags=0x0 timeout=0 mask=255.255.255.255 pe=- name=default/web:http\n\
                 tcp 10.96.0.1:443\n\
                 udp 10.96.0.2:53 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=- name=kube\\u{{20}}system/dns:53\n\
                 # end: 5 lines\n"
            )
        );
        let (read, named) = parse_named(&text).unwrap();
        assert_eq!(read, records);
        assert_eq!(named.len(), 2);
        assert_eq!(named[&dns], "kube\\u{20}system/dns:53");
    }

    #[test]
    fn an_edit_in_flight_records_both_settings() {
        let tcp = id(Protocol::Tcp, "10.96.0.1:443");
        let both = Recorded::Settings(
            [
                settings(&Service::new(tcp, "rr")),
                settings(&Service::new(tcp, "wlc")),
            ]
            .into(),
        );
        let records: Records = [(tcp, both)].into();
        assert_eq!(parse(&render(&records)).unwrap(), records);
    }

    #[test]
    fn settings_are_what_the_planner_compares_and_one_word_each() {
        let a = id(Protocol::Tcp, "10.0.0.1:80");
        let mut one = Service::new(a, "rr");
        let mut other = one.clone();
        other.flags |= ServiceFlags::HASHED;
        assert_eq!(settings(&one), settings(&other), "HASHED is the kernel's");
        assert_eq!(ServiceSpec::from(&one), ServiceSpec::from(&other));
        for change in [
            |s: &mut Service| s.scheduler = "wlc".into(),
            |s: &mut Service| s.flags |= ServiceFlags::ONE_PACKET,
            |s: &mut Service| s.timeout = 300,
            |s: &mut Service| s.netmask = Netmask::V4("255.255.255.0".parse().unwrap()),
            |s: &mut Service| s.persistence_engine = Some("sip".into()),
        ] {
            let mut changed = one.clone();
            change(&mut changed);
            assert_ne!(ServiceSpec::from(&one), ServiceSpec::from(&changed));
            assert_ne!(settings(&one), settings(&changed));
        }
        one.scheduler = "odd name\n".into();
        one.persistence_engine = Some("-".into());
        let words = settings(&one);
        assert_eq!(words.split(' ').count(), 5, "{words}");
        assert!(is_settings(&words.split(' ').collect::<Vec<_>>()));
    }

    #[test]
    fn firewall_mark_services_have_lines_of_their_own() {
        for (id, line) in [
            (ServiceId::fwmark(AddressFamily::Inet, 4096), "fwm 4096"),
            (ServiceId::fwmark(AddressFamily::Inet6, 4097), "fwm6 4097"),
        ] {
            assert_eq!(id_line(&id).as_deref(), Some(line));
            let (proto, addr) = line.split_once(' ').unwrap();
            assert_eq!(parse_id(proto, addr), Some(id));
        }
        for (proto, addr) in [("fwm", "0"), ("fwm", "0x10"), ("fwm", "010"), ("fwm", "-1")] {
            assert_eq!(parse_id(proto, addr), None, "{proto} {addr}");
        }
    }

    #[test]
    fn a_service_ports_firewall_mark_survives_a_restart() {
        let dir = temp_dir();
        let path = dir.join("k8s-owned");
        let fwm4 = ServiceId::fwmark(AddressFamily::Inet, 4096);
        let fwm6 = ServiceId::fwmark(AddressFamily::Inet6, 4096);
        let tcp = id(Protocol::Tcp, "192.0.2.10:80");
        let mut state = StateFile::open(&path, true).unwrap();
        assert!(state.fwmarks().is_empty());
        state.name(
            [
                (fwm4, "shop/web:http".to_owned()),
                (fwm6, "shop/web:http".to_owned()),
                (tcp, "shop/web:http".to_owned()),
            ]
            .into(),
        );
        let records: Records = [fwm4, fwm6, tcp]
            .into_iter()
            .map(|i| (i, Recorded::one(settings(&Service::new(i, "rr")))))
            .collect();
        state.record(records.clone()).unwrap();
        drop(state);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        assert!(text.contains("\nfwm 4096 sched=rr "), "{text}");
        assert!(text.contains("\nfwm6 4096 sched=rr "), "{text}");
        let state = StateFile::open(&path, true).unwrap();
        assert_eq!(state.recorded, records);
        assert_eq!(state.fwmarks(), [("shop/web:http".to_owned(), 4096)].into());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn format_1_reads_as_records_without_settings() {
        let text =
            "# Virtual services that ipvsadm-rs --from-k8s created (do not edit while it runs)\n\
                    tcp 10.0.0.1:80\nudp [fd00::1]:53\n";
        let records = parse(text).unwrap();
        assert_eq!(records.len(), 2);
        assert!(records.values().all(|r| *r == Recorded::Unknown));
    }

    #[test]
    fn a_damaged_file_is_refused_without_echoing_it() {
        let err = |text: &str| parse(text).unwrap_err();
        assert_eq!(
            err("tcp 10.0.0.1:80\nsecret-token 10.0.0.1\n"),
            "line 2: not a service it created"
        );
        assert_eq!(err("icmp 10.0.0.1:80"), "line 1: not a service it created");
        assert_eq!(
            err("tcp 10.0.0.1:80 sched=rr flags=0x0"),
            "line 1: not a service it created"
        );
        assert_eq!(
            err("tcp 10.0.0.1:80\ntcp 10.0.0.1:80\n"),
            "line 2: a service given twice"
        );
        // Bytes that are not text, and a file far too long, are refused
        // whole, with no content in the message.
        let dir = temp_dir();
        let path = dir.join("owned");
        fs::write(&path, b"\xff\xfe secret\n").unwrap();
        let e = StateFile::open(&path, false).unwrap_err();
        assert_eq!(
            e,
            format!("state file {}: not text: not a state file", path.display())
        );
        fs::write(&path, "root:x:0:0:secret:/root:/bin/sh\n").unwrap();
        let e = StateFile::open(&path, false).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        let f = File::create(&path).unwrap();
        f.set_len(MAX_STATE + 1).unwrap();
        let e = StateFile::open(&path, false).unwrap_err();
        assert!(e.ends_with("not a state file"), "{e}");
        // Refused before its lock is made: nothing is left behind.
        fs::write(&path, "tcp 10.0.0.1\n").unwrap();
        assert!(StateFile::open(&path, true).is_err());
        assert!(!sibling(&path, ".lock").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_survives_a_reopen_and_is_replaced_whole() {
        let dir = temp_dir();
        let path = dir.join("sub").join("owned");
        let mut state = StateFile::open(&path, true).unwrap();
        assert!(state.recorded.is_empty());
        // A second writer is refused while the first holds the lock.
        let second = StateFile::open(&path, true).unwrap_err();
        assert!(second.contains("another --from-k8s"), "{second}");
        let a = id(Protocol::Tcp, "10.0.0.1:80");
        let records: Records = [(a, rr(a))].into();
        state.record(records.clone()).unwrap();
        drop(state);
        let mut again = StateFile::open(&path, true).unwrap();
        assert_eq!(again.recorded, records);
        assert_eq!(again.ids(), [a].into());
        again.record(Records::new()).unwrap();
        let empty = format!("{HEADER}\n# end: 0 lines\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), empty);
        assert_eq!(fs::read_to_string(backup(&path)).unwrap(), empty);
        // No temporary file is left behind; the files are root's alone.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        for name in names {
            let mode = fs::metadata(path.with_file_name(name)).unwrap().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        drop(again);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_in_the_state_directory_are_never_followed() {
        let dir = temp_dir();
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let state_dir = dir.join("state");
        fs::create_dir(&state_dir).unwrap();
        let path = state_dir.join("owned");
        // A link where the temporary file will be: removed, not followed.
        let tmp = sibling(&path, &format!(".tmp.{}", std::process::id()));
        symlink(&victim, &tmp).unwrap();
        let mut state = StateFile::open(&path, true).unwrap();
        let a = id(Protocol::Tcp, "10.0.0.1:80");
        state.record([(a, rr(a))].into()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert!(!tmp.exists());
        drop(state);
        // A link as the lock file: refused, the victim untouched.
        let lock = sibling(&path, ".lock");
        fs::remove_file(&lock).unwrap();
        symlink(&victim, &lock).unwrap();
        let e = StateFile::open(&path, true).unwrap_err();
        assert_eq!(
            e,
            format!("cannot open {}: a symbolic link: refused", lock.display())
        );
        // A link to a file that does not exist yet: not created.
        fs::remove_file(&lock).unwrap();
        let planted = dir.join("planted");
        symlink(&planted, &lock).unwrap();
        assert!(StateFile::open(&path, true).is_err());
        assert!(!planted.exists());
        fs::remove_file(&lock).unwrap();
        // A link as the state file: refused, not read.
        fs::remove_file(&path).unwrap();
        symlink(&victim, &path).unwrap();
        let e = StateFile::open(&path, false).unwrap_err();
        assert!(e.ends_with("a symbolic link: refused"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_directory_others_may_write_is_refused() {
        let dir = temp_dir();
        let path = dir.join("owned");
        for (mode, who) in [(0o777, "others"), (0o1777, "others"), (0o775, "its group")] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let e = StateFile::open(&path, true).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "the state directory {0} is writable by {who}: refused (chmod go-w {0} to use it)",
                    dir.display()
                )
            );
            assert!(!sibling(&path, ".lock").exists());
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(StateFile::open(&path, true).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The records of a format 3 file listing `n` services.
    fn some(n: u8) -> Records {
        (0..n)
            .map(|i| {
                let a = id(Protocol::Tcp, &format!("10.96.0.{i}:80"));
                (a, rr(a))
            })
            .collect()
    }

    #[test]
    fn a_cut_or_empty_file_is_never_read_as_whole() {
        let text = render(&some(3));
        let cut = |t: &str| match parse_whole(t) {
            Err(Unusable::Cut(why)) => why,
            other => panic!("{t:?}: {other:?}"),
        };
        assert_eq!(cut(""), "is empty");
        // At every line boundary, and inside every line.
        let ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
        for &end in &ends[..ends.len() - 1] {
            assert_eq!(cut(&text[..end]), "ends without its end line");
        }
        for at in 1..text.len() {
            if !ends.contains(&at) {
                cut(&text[..at]);
            }
        }
        assert_eq!(cut(&text[..70]), "is cut inside a line");
        assert_eq!(
            cut(&format!("{}\n", &HEADER[..70])),
            "is cut inside its first line"
        );
        // A line lost in the middle, and an end line that counts others.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(2);
        assert_eq!(
            cut(&(lines.join("\n") + "\n")),
            "has 2 service lines where its end line counts 3"
        );
        // The previous release's files (format 2, no end line) still read,
        // as do format 1's.
        let old = text
            .replacen(HEADER, HEADER_2, 1)
            .replace("# end: 3 lines\n", "");
        assert_eq!(parse_whole(&old).unwrap(), (some(3), false));
        assert_eq!(
            parse_whole(&format!("{HEADER_2}\n")).unwrap(),
            (Records::new(), false)
        );
        assert_eq!(parse_whole("tcp 10.0.0.1:80\n").unwrap().0.len(), 1);
        // ... but not cut inside a line.
        assert_eq!(cut(&old[..old.len() - 1]), "is cut inside a line");
    }

    #[test]
    fn a_cut_state_file_is_read_from_its_copy_or_refused() {
        let dir = temp_dir();
        let path = dir.join("owned");
        let mut state = StateFile::open(&path, true).unwrap();
        state.record(some(2)).unwrap();
        drop(state);
        let whole = fs::read_to_string(&path).unwrap();
        assert_eq!(fs::read_to_string(backup(&path)).unwrap(), whole);
        for damage in [
            "",
            &whole[..70],
            &whole[..whole.len() - 20],
            &whole[..whole.find("tcp 10.96.0.1").unwrap()],
        ] {
            fs::write(&path, damage).unwrap();
            let mut state = StateFile::open(&path, true).unwrap();
            assert_eq!(state.recorded, some(2), "{damage:?}");
            assert_eq!(state.notes.len(), 1);
            assert!(
                state.notes[0].contains("read its copy"),
                "{}",
                state.notes[0]
            );
            // Both are written again at the first record, whatever it holds.
            state.record(some(2)).unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), whole);
            drop(state);
        }
        // A deleted state file too.
        fs::remove_file(&path).unwrap();
        let state = StateFile::open(&path, false).unwrap();
        assert_eq!((state.recorded.len(), state.notes.len()), (2, 1));
        // Both cut: refused, saying what was lost and what to do.
        fs::write(&path, "").unwrap();
        fs::write(backup(&path), &whole[..100]).unwrap();
        let e = StateFile::open(&path, true).unwrap_err();
        assert!(e.contains("is empty and its copy"), "{e}");
        assert!(e.contains("is cut inside a line"), "{e}");
        assert!(
            e.contains("is lost, so nothing was changed. To go on: run it again with --adopt"),
            "{e}"
        );
        // With --adopt: read as recording nothing, said, both rewritten.
        let mut state = StateFile::open_adopting(&path, true, true).unwrap();
        assert!(state.recorded.is_empty() && state.adopt);
        assert_eq!(state.notes.len(), 1);
        assert!(
            state.notes[0].contains(
                "is lost; --adopt takes over those with exactly the settings the mapping writes"
            ),
            "{}",
            state.notes[0]
        );
        state.record(Records::new()).unwrap();
        let empty = format!("{HEADER}\n# end: 0 lines\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), empty);
        assert_eq!(fs::read_to_string(backup(&path)).unwrap(), empty);
        drop(state);
        fs::write(&path, "").unwrap();
        fs::write(backup(&path), &whole[..100]).unwrap();
        // A whole state file wins over a cut copy, which is repaired.
        fs::write(&path, &whole).unwrap();
        let mut state = StateFile::open(&path, true).unwrap();
        assert_eq!((state.recorded.clone(), state.notes.len()), (some(2), 0));
        state.record(some(2)).unwrap();
        assert_eq!(fs::read_to_string(backup(&path)).unwrap(), whole);
        drop(state);
        // A file of an earlier release is read and rewritten as format 4.
        let old = whole
            .replacen(HEADER, HEADER_2, 1)
            .replace("# end: 2 lines\n", "");
        fs::write(&path, &old).unwrap();
        fs::remove_file(backup(&path)).unwrap();
        let mut state = StateFile::open(&path, true).unwrap();
        assert_eq!((state.recorded.clone(), state.notes.len()), (some(2), 0));
        state.record(some(2)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), whole);
        drop(state);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The previous release's file (format 3, as it wrote it) is read, and
    /// the first write records the Services' names (format 4), which
    /// `--top` and `--metrics` read back.
    #[test]
    fn a_format_3_file_is_read_and_rewritten_with_names() {
        let dir = std::env::temp_dir().join(format!("owned-names-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("owned");
        let format_3 = "# ipvsadm-rs --from-k8s state, format 3: the virtual services it created and the settings it last wrote (do not edit while it runs; the last line counts the others)\n\
            tcp 10.96.0.0:80 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=-\n\
            tcp 10.96.0.1:80 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=-\n\
            # end: 2 lines\n";
        fs::write(&path, format_3).unwrap();
        assert_eq!(parse_named(format_3).unwrap(), (some(2), Names::new()));
        let mut state = StateFile::open(&path, true).unwrap();
        assert_eq!((state.recorded.clone(), state.notes.len()), (some(2), 0));
        let a = id(Protocol::Tcp, "10.96.0.0:80");
        let gone = id(Protocol::Tcp, "10.96.9.9:80");
        state.name(
            [
                (a, "default/web:http".to_owned()),
                (gone, "default/gone:x".to_owned()),
            ]
            .into(),
        );
        state.record(some(2)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        assert!(
            text.contains("tcp 10.96.0.0:80 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=- name=default/web:http\n"),
            "{text}"
        );
        assert!(!text.contains("gone"), "{text}");
        let (records, names) = parse_named(&text).unwrap();
        assert_eq!(records, some(2));
        assert_eq!(names, [(a, "default/web:http".to_owned())].into());
        // A name changes: written again; a name that is no word is escaped.
        state.name([(a, "default/a b\n".to_owned())].into());
        state.record(some(2)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(parse_named(&text).unwrap().1[&a], "default/a\\u{20}b\\u{a}");
        assert_eq!(fs::read_to_string(backup(&path)).unwrap(), text);
        // The same records and names: held, nothing written. One name
        // changed by `rename` (the live loop's, of the changed services
        // alone): no longer held, and the file is written with it, the
        // other names kept.
        assert!(state.holds(&some(2)));
        let b = id(Protocol::Tcp, "10.96.0.1:80");
        state.rename(&[b].into(), [(b, "default/b:x".to_owned())]);
        assert!(!state.holds(&some(2)));
        state.record(some(2)).unwrap();
        let names = parse_named(&fs::read_to_string(&path).unwrap()).unwrap().1;
        assert_eq!(
            names,
            [
                (a, "default/a\\u{20}b\\u{a}".to_owned()),
                (b, "default/b:x".to_owned())
            ]
            .into()
        );
        state.rename(&[b].into(), []);
        assert!(!state.holds(&some(2)), "a name dropped");
        state.record(some(2)).unwrap();
        assert!(state.holds(&some(2)));
        // The same, as the settings of a sync that writes nothing.
        let each: HashMap<ServiceId, String> = some(2)
            .into_iter()
            .map(|(id, r)| match r {
                Recorded::Settings(all) => (id, all.into_iter().next().unwrap()),
                Recorded::Unknown => panic!("{id}: no settings"),
            })
            .collect();
        assert!(state.holds_each(&each));
        let mut other = each.clone();
        other.get_mut(&a).unwrap().push_str(" x");
        assert!(!state.holds_each(&other), "other settings");
        other = each.clone();
        other.remove(&a);
        assert!(!state.holds_each(&other), "one fewer");
        let names = parse_named(&fs::read_to_string(&path).unwrap()).unwrap().1;
        assert_eq!(names, [(a, "default/a\\u{20}b\\u{a}".to_owned())].into());
        drop(state);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_instance_in_one_network_namespace_is_refused_naming_the_first() {
        // In a network namespace of this thread's own (root only): the
        // lock is the namespace's, and another test or builder must not
        // hold it.
        // SAFETY: unshare takes no pointers.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            eprintln!("skipped: unshare(CLONE_NEWNET) needs root");
            return;
        }
        let first = lock_netns(Path::new("/var/lib/a/owned")).unwrap();
        let e = lock_netns(Path::new("/var/lib/b/owned")).unwrap_err();
        assert_eq!(
            e,
            "another --from-k8s runs in this network namespace (its state file is /var/lib/a/owned): one instance per network namespace, whatever its --state; stop it first"
        );
        drop(first);
        let again = lock_netns(Path::new("/var/lib/b/owned"));
        assert!(again.is_ok(), "{again:?}");
    }
}
