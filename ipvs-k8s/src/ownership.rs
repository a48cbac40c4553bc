//! What `--from-k8s` owns: the virtual services it created, kept in a
//! state file so that it still knows them after a crash or a restart.
//!
//! Unlike kube-proxy, which deletes every virtual service it did not
//! create in its last sync, `--from-k8s` never changes or removes a
//! service it did not create. The rule that makes this safe across
//! crashes:
//! - a service is recorded (file written and synced) **before** the write
//!   that creates it, so no crash can leave a service of ours unrecorded;
//! - a recorded service counts as ours only while the kernel's table has
//!   it: a record whose service is gone (a crash before the write, or a
//!   deletion by someone else) is dropped at the next sync. Only a
//!   service created by another tool under that very identity between
//!   the crash and the next sync would be taken for ours.
//!
//! A creation that fails (the identity was taken between the dump and the
//! write) is not recorded, and its real servers are not sent.
//!
//! The file is text, one service a line (`tcp 10.96.0.1:443`), replaced
//! atomically: written to a temporary file beside it, synced, renamed over
//! it, and the directory synced.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipvs_netlink::{Protocol, ServiceId};
use nix::fcntl::{Flock, FlockArg};

/// Where the state file is unless `--state` says otherwise.
pub const DEFAULT_STATE: &str = "/var/lib/ipvsadm-rs/k8s-owned";

const HEADER: &str =
    "# Virtual services that ipvsadm-rs --from-k8s created (do not edit while it runs)";

/// The line of one service, or `None` for a service `--from-k8s` never
/// creates (firewall marks, other protocols).
pub fn id_line(id: &ServiceId) -> Option<String> {
    let ServiceId::Inet {
        protocol,
        addr,
        port,
    } = id
    else {
        return None;
    };
    let proto = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        _ => return None,
    };
    Some(format!("{proto} {}", SocketAddr::new(*addr, *port)))
}

/// Reads one line written by [`id_line`].
pub fn parse_line(line: &str) -> Option<ServiceId> {
    let (proto, addr) = line.split_once(' ')?;
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    Some(ServiceId::inet(protocol, addr.trim().parse().ok()?))
}

/// The text of a state file recording `ids`, sorted.
pub fn render(ids: &HashSet<ServiceId>) -> String {
    let lines: BTreeSet<String> = ids.iter().filter_map(id_line).collect();
    let mut text = String::from(HEADER);
    text.push('\n');
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Reads a state file's text. Blank lines and `#` lines are skipped; any
/// other line that does not read is an error (a state file that cannot be
/// trusted must not be guessed at).
pub fn parse(text: &str) -> Result<HashSet<ServiceId>, String> {
    let mut ids = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = parse_line(line).ok_or_else(|| format!("line {}: cannot read {line:?}", n + 1))?;
        ids.insert(id);
    }
    Ok(ids)
}

/// The state file: where it is and what it records.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// The services recorded, as last read or written.
    pub recorded: HashSet<ServiceId>,
    /// Held while a sync that writes runs, so two cannot interleave.
    _lock: Option<Flock<File>>,
}

impl StateFile {
    /// Reads the state at `path` (missing: nothing owned). With `lock`,
    /// first takes an exclusive lock on `PATH.lock` (creating the
    /// directory if needed), failing at once if another sync holds it.
    pub fn open(path: &Path, lock: bool) -> Result<Self, String> {
        let shown = path.display();
        let lock = if lock {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let lock_path = sibling(path, ".lock");
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
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
        let recorded = match fs::read_to_string(path) {
            Ok(text) => parse(&text).map_err(|e| format!("state file {shown}: {e}"))?,
            Err(e) if e.kind() == ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(format!("cannot read state file {shown}: {e}")),
        };
        Ok(StateFile {
            path: path.to_owned(),
            recorded,
            _lock: lock,
        })
    }

    /// Records exactly `ids`, atomically and durably; does nothing when
    /// they are what the file already records.
    pub fn record(&mut self, ids: HashSet<ServiceId>) -> Result<(), String> {
        if ids == self.recorded {
            return Ok(());
        }
        write_atomically(&self.path, render(&ids).as_bytes())
            .map_err(|e| format!("cannot write state file {}: {e}", self.path.display()))?;
        self.recorded = ids;
        Ok(())
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Replaces `path` with `bytes`: a temporary file beside it, written and
/// synced, renamed over it, then the directory synced so the rename
/// survives a power loss.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let tmp = sibling(path, &format!(".tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(proto: Protocol, a: &str) -> ServiceId {
        ServiceId::inet(proto, a.parse().unwrap())
    }

    #[test]
    fn lines_round_trip_for_every_protocol_and_family() {
        let ids: HashSet<ServiceId> = [
            id(Protocol::Tcp, "10.96.0.1:443"),
            id(Protocol::Udp, "10.96.0.10:53"),
            id(Protocol::Sctp, "[fd00::1]:9000"),
        ]
        .into();
        let text = render(&ids);
        assert_eq!(
            text,
            format!("{HEADER}\nsctp [fd00::1]:9000\ntcp 10.96.0.1:443\nudp 10.96.0.10:53\n")
        );
        assert_eq!(parse(&text).unwrap(), ids);
    }

    #[test]
    fn services_it_never_creates_have_no_line() {
        let fwm = ServiceId::fwmark(ipvs_netlink::AddressFamily::Inet, 7);
        assert_eq!(id_line(&fwm), None);
    }

    #[test]
    fn a_damaged_file_is_refused() {
        assert_eq!(
            parse("tcp 10.0.0.1:80\ntcp 10.0.0.1\n").unwrap_err(),
            "line 2: cannot read \"tcp 10.0.0.1\""
        );
        assert!(parse("icmp 10.0.0.1:80").is_err());
    }

    #[test]
    fn state_survives_a_reopen_and_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("ipvsadm-rs-own-{}", std::process::id()));
        let path = dir.join("sub").join("owned");
        let mut state = StateFile::open(&path, true).unwrap();
        assert!(state.recorded.is_empty());
        // A second writer is refused while the first holds the lock.
        let second = StateFile::open(&path, true).unwrap_err();
        assert!(second.contains("another --from-k8s"), "{second}");
        let ids: HashSet<ServiceId> = [id(Protocol::Tcp, "10.0.0.1:80")].into();
        state.record(ids.clone()).unwrap();
        drop(state);
        let mut again = StateFile::open(&path, true).unwrap();
        assert_eq!(again.recorded, ids);
        again.record(HashSet::new()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{HEADER}\n"));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        drop(again);
        fs::remove_dir_all(&dir).unwrap();
    }
}
