//! `--top`: a live view of the table with rates.
//!
//! - [`model`]: pure: samples, rates between two samples, sort, filter,
//!   the lines a view shows;
//! - [`text`]: pure: the plain-text (`--batch`, or no terminal) and JSON
//!   frames;
//! - [`tui`]: the full-screen view (ratatui over crossterm): its state
//!   and keys (pure), its drawing, and the thin terminal loop.
//!
//! One refresh is one read: a dump of the services, then one dump of each
//! service's real servers, over one netlink handle; their counters are
//! the kernel's 64-bit ones. The kernel folds its per-CPU counters into
//! them when its rate estimator runs (every 2 s), so a rate over a
//! 1-second interval alternates between 0 and twice the true rate while
//! traffic flows: the sum over frames is exact, not each frame.

pub mod model;
pub mod text;
pub mod tui;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use ipvs_netlink::Handle;
use ipvsadm_compat::messages as strerror;

use crate::cli::top::TopArgs;
use model::{Owners, Sample};

/// Reads the table once: the services, then each one's real servers.
/// `origin` is the instant sample times count from.
pub fn read(handle: &mut Handle, origin: Instant) -> Result<Sample, ipvs_netlink::Error> {
    let start = Instant::now();
    let services = handle.services()?;
    let mut table = Vec::with_capacity(services.len());
    for service in services {
        // A service deleted since the first dump has no real servers.
        let dests = handle.destinations(&service.id)?;
        table.push((service, dests));
    }
    let end = Instant::now();
    Ok(Sample {
        at: end.duration_since(origin),
        took: end.duration_since(start),
        table,
    })
}

/// Where the `--from-k8s` state file is, and what it last said.
pub struct OwnerSource {
    path: PathBuf,
    /// Given with `--state` (then it must be readable), not the default.
    explicit: bool,
    seen: Option<SystemTime>,
    owners: Owners,
}

impl OwnerSource {
    /// The state file of `--state`, or the default one.
    pub fn new(state: Option<&Path>) -> Self {
        OwnerSource {
            explicit: state.is_some(),
            path: state.map_or_else(|| PathBuf::from(DEFAULT_STATE), Path::to_path_buf),
            seen: None,
            owners: Owners::new(),
        }
    }

    /// The services `--from-k8s` owns, read again when the file changed.
    /// A missing default file means none; a `--state` file that cannot be
    /// read, or any file that does not read as a state file, is an error.
    pub fn owners(&mut self) -> Result<&Owners, String> {
        let modified = match std::fs::metadata(&self.path).and_then(|m| m.modified()) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.explicit => None,
            Err(e) => return Err(format!("--state {}: {e}", self.path.display())),
        };
        if modified != self.seen {
            self.owners = match modified {
                Some(_) => read_owners(&self.path)?,
                None => Owners::new(),
            };
            self.seen = modified;
        }
        Ok(&self.owners)
    }
}

#[cfg(feature = "k8s-file")]
const DEFAULT_STATE: &str = ipvs_k8s::ownership::DEFAULT_STATE;
#[cfg(not(feature = "k8s-file"))]
const DEFAULT_STATE: &str = "/var/lib/ipvsadm-rs/k8s-owned";

/// The services a state file records, each with the Kubernetes name
/// (`namespace/name:port`) it records beside it (format 4, written by the
/// live mode); empty when it records none (an earlier format, the
/// offline mode: shown as `from-k8s`).
#[cfg(feature = "k8s-file")]
pub fn read_owners(path: &Path) -> Result<Owners, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("state file {}: {e}", path.display()))?;
    let (records, mut names) = ipvs_k8s::ownership::parse_named(&text).map_err(|e| match e {
        ipvs_k8s::ownership::Unusable::Cut(why) | ipvs_k8s::ownership::Unusable::Damaged(why) => {
            format!("state file {}: {why}", path.display())
        }
    })?;
    Ok(records
        .into_keys()
        .map(|id| (id, names.remove(&id).unwrap_or_default()))
        .collect())
}

/// Without the `k8s-file` feature no state file is read.
#[cfg(not(feature = "k8s-file"))]
pub fn read_owners(_: &Path) -> Result<Owners, String> {
    Ok(Owners::new())
}

/// How the frames are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The full-screen view.
    Screen,
    /// Plain-text frames.
    Batch,
    /// JSON frames.
    Json,
}

/// The mode for the options and standard output.
pub fn mode(args: &TopArgs, json: bool) -> Mode {
    if json {
        Mode::Json
    } else if args.batch || !std::io::stdout().is_terminal() {
        Mode::Batch
    } else {
        Mode::Screen
    }
}

/// Runs `--top` in the namespace already entered; the exit status.
pub fn run(handle: &mut Handle, args: &TopArgs, json: bool, out: &mut dyn Write) -> i32 {
    let mut owners = OwnerSource::new(args.state.as_deref());
    if let Err(msg) = owners.owners() {
        eprintln!("ipvsadm-rs: {msg}");
        return 2;
    }
    match mode(args, json) {
        Mode::Screen => tui::run(handle, args, &mut owners),
        mode => frames(handle, args, mode == Mode::Json, &mut owners, out),
    }
}

/// `--batch` and `--json`: a frame per interval on `out`, until
/// `--count` frames or a closed output.
fn frames(
    handle: &mut Handle,
    args: &TopArgs,
    json: bool,
    owners: &mut OwnerSource,
    out: &mut dyn Write,
) -> i32 {
    let info = match handle.info() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{}", strerror::describe(&e));
            return 1;
        }
    };
    let origin = Instant::now();
    let mut before: Option<model::Frame> = None;
    let mut number = 0u64;
    loop {
        number += 1;
        let due = Instant::now() + args.interval;
        let now = match read(handle, origin) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}", strerror::describe(&e));
                return 1;
            }
        };
        let names = match owners.owners() {
            Ok(o) => o,
            Err(msg) => {
                eprintln!("ipvsadm-rs: {msg}");
                return 1;
            }
        };
        let frame = model::frame(number, before.as_ref(), now, names);
        // The JSON frame is written as it is serialised (25 MB at 10,000
        // services of 4 real servers, never whole in memory).
        let written = if json {
            // Its flush flushes `out`.
            let mut buffered = std::io::BufWriter::with_capacity(1 << 16, &mut *out);
            text::write_json(&info, &frame, &mut buffered).and_then(|()| buffered.flush())
        } else {
            let mut t = text::batch(&frame);
            t.push('\n');
            out.write_all(t.as_bytes()).and_then(|()| out.flush())
        };
        if written.is_err() {
            // A closed pipe (`| head`) ends it quietly.
            return 0;
        }
        if args.count.is_some_and(|n| number >= n) {
            return 0;
        }
        before = Some(frame);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}
