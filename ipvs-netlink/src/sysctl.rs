//! IPVS's sysctls (`net.ipv4.vs.*`, under `/proc/sys/net/ipv4/vs/`) as
//! typed values, and the state IPVS shows in `/proc` and `/sys`.
//!
//! The sysctls belong to the network namespace of the process that opens
//! their files, as the table does to the socket's. Which sysctls exist
//! depends on the kernel: the 6.2 estimator added `est_cpulist` and
//! `est_nice`, and newer kernels add more. A name this module does not
//! know is read as [`Value::Raw`], never an error.
//!
//! ```no_run
//! use ipvs_netlink::sysctl::{self, Value};
//!
//! # fn main() -> Result<(), ipvs_netlink::sysctl::SysctlError> {
//! for s in sysctl::read_all()? {
//!     println!("net.ipv4.vs.{} = {}", s.name, s.value);
//! }
//! sysctl::set("conntrack", &Value::Bool(true))?;
//! assert_eq!(sysctl::read("conntrack")?, Value::Bool(true));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where the IPVS sysctls are, for the process's network namespace.
pub const SYSCTL_DIR: &str = "/proc/sys/net/ipv4/vs";

/// How a sysctl's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0` or `1`.
    Bool,
    /// One integer.
    Int,
    /// Two integers (`sync_threshold`: threshold and period).
    Pair,
    /// A list of CPUs such as `0-3,8` (`est_cpulist`; empty means none).
    CpuList,
}

/// A sysctl this module knows: its name, how it reads, and the first
/// kernel that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The name under `net.ipv4.vs.`.
    pub name: &'static str,
    /// How its value reads.
    pub kind: Kind,
    /// The first mainline kernel that has it (`"2.6"` for those older than
    /// git's history of IPVS's sysctls).
    pub since: &'static str,
}

const fn known(name: &'static str, kind: Kind, since: &'static str) -> Known {
    Known { name, kind, since }
}

/// The sysctls this module reads as typed values. Kernel versions are
/// from the kernel's history of `net/netfilter/ipvs/ip_vs_ctl.c`: the
/// commit that adds each and the release that merged it, checked against
/// the `vs_vars` table of 3.4, 3.6 and 3.10 trees where they fall between
/// (`docs/kernels.md` has the evidence). `lblc_expiration` and
/// `lblcr_expiration` live in their schedulers' modules, and
/// `debug_level` exists only in kernels built with `CONFIG_IP_VS_DEBUG`.
pub const KNOWN: &[Known] = &[
    known("am_droprate", Kind::Int, "2.6"),
    known("amemthresh", Kind::Int, "2.6"),
    known("backup_only", Kind::Bool, "3.9"),
    known("cache_bypass", Kind::Bool, "2.6"),
    known("conn_reuse_mode", Kind::Int, "4.1"),
    known("conntrack", Kind::Bool, "2.6.37"),
    known("debug_level", Kind::Int, "2.6"),
    known("drop_entry", Kind::Int, "2.6"),
    known("drop_packet", Kind::Int, "2.6"),
    known("est_cpulist", Kind::CpuList, "6.2"),
    known("est_nice", Kind::Int, "6.2"),
    known("expire_nodest_conn", Kind::Bool, "2.6"),
    known("expire_quiescent_template", Kind::Bool, "2.6"),
    known("ignore_tunneled", Kind::Bool, "4.4"),
    known("lblc_expiration", Kind::Int, "2.6"),
    known("lblcr_expiration", Kind::Int, "2.6"),
    known("nat_icmp_send", Kind::Bool, "2.6"),
    known("pmtu_disc", Kind::Bool, "3.7"),
    known("run_estimation", Kind::Bool, "5.16"),
    known("schedule_icmp", Kind::Bool, "4.4"),
    known("secure_tcp", Kind::Int, "2.6"),
    known("sloppy_sctp", Kind::Bool, "3.11"),
    known("sloppy_tcp", Kind::Bool, "3.11"),
    known("snat_reroute", Kind::Bool, "2.6.37"),
    known("sync_persist_mode", Kind::Bool, "3.11"),
    known("sync_ports", Kind::Int, "3.5"),
    known("sync_qlen_max", Kind::Int, "3.5"),
    known("sync_refresh_period", Kind::Int, "3.5"),
    known("sync_retries", Kind::Int, "3.5"),
    known("sync_sock_size", Kind::Int, "3.5"),
    known("sync_threshold", Kind::Pair, "2.6"),
    known("sync_version", Kind::Int, "2.6.38"),
];

/// What this module knows of the sysctl `name`, if anything.
pub fn known_sysctl(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}

/// A sysctl's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A switch.
    Bool(bool),
    /// A number.
    Int(i64),
    /// Two numbers.
    Pair(i64, i64),
    /// A CPU list, as the kernel prints it.
    CpuList(String),
    /// A sysctl this module does not know, or a value that does not read
    /// as its kind: the text, without its final newline.
    Raw(String),
}

impl fmt::Display for Value {
    /// The text the kernel reads back: what `sysctl` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{}", u8::from(*b)),
            Value::Int(i) => write!(f, "{i}"),
            Value::Pair(a, b) => write!(f, "{a}\t{b}"),
            Value::CpuList(s) | Value::Raw(s) => f.write_str(s),
        }
    }
}

impl Value {
    /// Reads `text` as a value of `kind`; anything else is [`Value::Raw`].
    pub fn parse(kind: Option<Kind>, text: &str) -> Value {
        let t = text.trim_end_matches('\n');
        let raw = || Value::Raw(t.to_owned());
        match kind {
            Some(Kind::Bool) => match t.trim() {
                "0" => Value::Bool(false),
                "1" => Value::Bool(true),
                _ => raw(),
            },
            Some(Kind::Int) => t.trim().parse().map(Value::Int).unwrap_or_else(|_| raw()),
            Some(Kind::Pair) => {
                let mut it = t.split_whitespace().map(str::parse::<i64>);
                match (it.next(), it.next(), it.next()) {
                    (Some(Ok(a)), Some(Ok(b)), None) => Value::Pair(a, b),
                    _ => raw(),
                }
            }
            Some(Kind::CpuList) => Value::CpuList(t.trim().to_owned()),
            None => raw(),
        }
    }
}

/// One sysctl as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// Its name under `net.ipv4.vs.`.
    pub name: String,
    /// Its value.
    pub value: Value,
    /// What this module knows of it (`None`: a sysctl of a newer kernel).
    pub known: Option<&'static Known>,
}

/// What went wrong with one sysctl, or with the folder of them.
#[derive(Debug)]
pub struct SysctlError {
    /// The sysctl's full name (`net.ipv4.vs.NAME`), or the folder's path.
    pub name: String,
    /// Why.
    pub kind: SysctlErrorKind,
}

/// Why a sysctl could not be read or set.
#[derive(Debug)]
pub enum SysctlErrorKind {
    /// This kernel has no such sysctl (or IPVS is not loaded).
    Missing,
    /// The name is not one a sysctl can have (empty, or with a `/`).
    BadName,
    /// The kernel refused the value written (`EINVAL`: out of range).
    Refused(String),
    /// Reading or writing failed otherwise.
    Io(io::Error),
}

impl fmt::Display for SysctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SysctlErrorKind::Missing => write!(
                f,
                "{}: no such sysctl on this kernel (is IPVS loaded?)",
                self.name
            ),
            SysctlErrorKind::BadName => write!(f, "{}: not a sysctl name", self.name),
            SysctlErrorKind::Refused(v) => {
                write!(f, "{}: the kernel refused the value {v:?}", self.name)
            }
            SysctlErrorKind::Io(e) => write!(f, "{}: {e}", self.name),
        }
    }
}

impl std::error::Error for SysctlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            SysctlErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

fn full_name(name: &str) -> String {
    format!("net.ipv4.vs.{name}")
}

fn error(name: &str, e: io::Error) -> SysctlError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => SysctlErrorKind::Missing,
        _ => SysctlErrorKind::Io(e),
    };
    SysctlError {
        name: full_name(name),
        kind,
    }
}

fn path_of(dir: &Path, name: &str) -> Result<PathBuf, SysctlError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(SysctlError {
            name: full_name(name),
            kind: SysctlErrorKind::BadName,
        });
    }
    Ok(dir.join(name))
}

/// Every IPVS sysctl of this kernel, sorted by name.
pub fn read_all() -> Result<Vec<Sysctl>, SysctlError> {
    read_all_in(Path::new(SYSCTL_DIR))
}

/// [`read_all`] from another folder (a test's, or a container's `/proc`).
pub fn read_all_in(dir: &Path) -> Result<Vec<Sysctl>, SysctlError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SysctlError {
        name: dir.display().to_string(),
        kind: match e.kind() {
            io::ErrorKind::NotFound => SysctlErrorKind::Missing,
            _ => SysctlErrorKind::Io(e),
        },
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| error("*", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Write-only sysctls (none today) cannot be listed.
        match read_in(dir, &name) {
            Ok(value) => out.push(Sysctl {
                known: known_sysctl(&name),
                name,
                value,
            }),
            Err(SysctlError {
                kind: SysctlErrorKind::Io(e),
                ..
            }) if e.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The value of `net.ipv4.vs.NAME`.
pub fn read(name: &str) -> Result<Value, SysctlError> {
    read_in(Path::new(SYSCTL_DIR), name)
}

/// [`read`] from another folder.
pub fn read_in(dir: &Path, name: &str) -> Result<Value, SysctlError> {
    let text = std::fs::read_to_string(path_of(dir, name)?).map_err(|e| error(name, e))?;
    Ok(Value::parse(known_sysctl(name).map(|k| k.kind), &text))
}

/// Sets `net.ipv4.vs.NAME` (needs CAP_NET_ADMIN in the namespace's owner).
pub fn set(name: &str, value: &Value) -> Result<(), SysctlError> {
    set_in(Path::new(SYSCTL_DIR), name, value)
}

/// [`set`] in another folder.
pub fn set_in(dir: &Path, name: &str, value: &Value) -> Result<(), SysctlError> {
    use std::io::Write;
    let path = path_of(dir, name)?;
    let text = value.to_string();
    // A sysctl file takes the whole value in one write; it exists already.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| error(name, e))?;
    file.write_all(format!("{text}\n").as_bytes())
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => SysctlError {
                name: full_name(name),
                kind: SysctlErrorKind::Refused(text.clone()),
            },
            _ => error(name, e),
        })
}

/// The state of IPVS's rate estimator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimator {
    /// Whether rates are estimated in kernel threads (6.2 and later, with
    /// `est_cpulist` and `est_nice`) rather than in a timer.
    pub kthreads: bool,
    /// `run_estimation` (5.16 and later; `None` before): whether rates
    /// are estimated at all.
    pub running: Option<bool>,
    /// `est_cpulist`: the CPUs the estimator threads may run on.
    pub cpulist: Option<String>,
    /// `est_nice`: their nice value.
    pub nice: Option<i64>,
}

impl Estimator {
    /// The estimator's state, from the sysctls in `sysctls`.
    pub fn from_sysctls(sysctls: &[Sysctl]) -> Estimator {
        let get = |n: &str| sysctls.iter().find(|s| s.name == n).map(|s| &s.value);
        Estimator {
            kthreads: get("est_cpulist").is_some(),
            running: match get("run_estimation") {
                Some(Value::Bool(b)) => Some(*b),
                _ => None,
            },
            cpulist: match get("est_cpulist") {
                Some(Value::CpuList(s)) => Some(s.clone()),
                _ => None,
            },
            nice: match get("est_nice") {
                Some(Value::Int(n)) => Some(*n),
                _ => None,
            },
        }
    }
}

/// The size of IPVS's connection hash table: `2^conn_tab_bits`, the
/// module parameter, the same for every namespace on
/// kernels whose connection table is not per namespace. `None` when IPVS
/// is not loaded. The listing's `size=` comes from the kernel's info
/// reply ([`crate::Handle::info`]), which a kernel with resizable
/// per-namespace tables reports for the socket's namespace.
pub fn conn_table_size() -> io::Result<Option<u64>> {
    match std::fs::read_to_string("/sys/module/ip_vs/parameters/conn_tab_bits") {
        Ok(t) => Ok(t
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|bits| 1u64.checked_shl(bits))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The lines of `/proc/net/ip_vs_status` (kernels with resizable
/// per-namespace tables), as `key: value` pairs; `None` where the kernel
/// has no such file.
pub fn status() -> io::Result<Option<Vec<(String, String)>>> {
    match std::fs::read_to_string("/proc/net/ip_vs_status") {
        Ok(t) => Ok(Some(
            t.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ipvs-sysctl-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        d
    }

    #[test]
    fn values_read_as_their_kinds_and_unknown_ones_raw() {
        let d = dir(&[
            ("conntrack", "1\n"),
            ("sync_threshold", "3\t50\n"),
            ("est_cpulist", "0-3\n"),
            ("est_nice", "-5\n"),
            ("svc_lfactor", "-4\n"),
            ("expire_nodest_conn", "7\n"),
        ]);
        let all = read_all_in(&d).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conntrack",
                "est_cpulist",
                "est_nice",
                "expire_nodest_conn",
                "svc_lfactor",
                "sync_threshold"
            ]
        );
        assert_eq!(all[0].value, Value::Bool(true));
        assert_eq!(all[1].value, Value::CpuList("0-3".into()));
        assert_eq!(all[2].value, Value::Int(-5));
        // Not 0 or 1: shown as the kernel has it, not refused.
        assert_eq!(all[3].value, Value::Raw("7".into()));
        assert_eq!(all[4].value, Value::Raw("-4".into()));
        assert!(all[4].known.is_none());
        assert_eq!(all[5].value, Value::Pair(3, 50));
        assert_eq!(all[5].value.to_string(), "3\t50");
        let est = Estimator::from_sysctls(&all);
        assert!(est.kthreads);
        assert_eq!(est.nice, Some(-5));
        assert_eq!(est.running, None);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn errors_name_the_sysctl() {
        let d = dir(&[]);
        let e = read_in(&d, "est_nice").unwrap_err();
        assert_eq!(
            e.to_string(),
            "net.ipv4.vs.est_nice: no such sysctl on this kernel (is IPVS loaded?)"
        );
        let e = set_in(&d, "../../etc/passwd", &Value::Int(1)).unwrap_err();
        assert!(matches!(e.kind, SysctlErrorKind::BadName), "{e}");
        let e = read_all_in(&d.join("absent")).unwrap_err();
        assert!(matches!(e.kind, SysctlErrorKind::Missing), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn set_writes_what_read_reads_back() {
        let d = dir(&[("sync_threshold", "3 50\n")]);
        set_in(&d, "sync_threshold", &Value::Pair(5, 100)).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("sync_threshold")).unwrap(),
            "5\t100\n"
        );
        assert_eq!(read_in(&d, "sync_threshold").unwrap(), Value::Pair(5, 100));
        std::fs::remove_dir_all(d).unwrap();
    }
}
