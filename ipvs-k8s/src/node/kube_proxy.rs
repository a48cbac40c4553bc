//! Is kube-proxy in IPVS mode already managing this node's IPVS table?
//! Two reconcilers would fight: kube-proxy deletes every virtual service
//! it did not create, this tool would create them again.
//!
//! Two signals, both scoped to this network namespace (IPVS tables are
//! per namespace; the DaemonSet runs in the node's, as kube-proxy does):
//! 1. kube-proxy's metrics server answers `GET /proxyMode` with its mode
//!    (`ipvs`, `iptables`, `nftables`), on 127.0.0.1:10249 by default.
//!    Exact, and reachable from a pod on the host network without seeing
//!    the host's processes.
//! 2. A process named `kube-proxy` in this network namespace (its
//!    `/proc/PID/ns/net` is ours), with its mode from `--proxy-mode` on
//!    its command line. Catches a kube-proxy whose metrics server is
//!    elsewhere or not up yet; only sees what this PID namespace sees.
//!
//! The decision: refuse when the metrics say `ipvs`; when they say
//! another mode, a kube-proxy process is not in the way; when they do not
//! answer, refuse for a kube-proxy process in IPVS mode or whose mode is
//! not on its command line (`--config` holds it), but not for one whose
//! command line says another mode or uses the default (iptables).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `Server` header of our own metrics server's answers
/// (`--metrics-bind-address`), which kube-proxy's (Go's) never send.
pub const OUR_SERVER: &str = "ipvsadm-rs";

/// kube-proxy's default metrics address.
pub const METRICS: &str = "127.0.0.1:10249";

/// A proxy mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `ipvs`.
    Ipvs,
    /// Another mode, named.
    Other(String),
    /// Not known (given in a config file).
    Unknown,
}

impl Mode {
    fn named(name: &str) -> Mode {
        match name.trim() {
            "ipvs" => Mode::Ipvs,
            "" => Mode::Unknown,
            other => Mode::Other(other.to_owned()),
        }
    }
}

/// A kube-proxy process in this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its mode, from its command line.
    pub mode: Mode,
}

/// What was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The metrics server's answer to `/proxyMode`, if it answered.
    pub metrics: Option<(SocketAddr, Mode)>,
    /// kube-proxy processes in this network namespace.
    pub processes: Vec<Process>,
}

impl Findings {
    /// Why kube-proxy is taken to manage IPVS here, or `None`.
    pub fn refusal(&self) -> Option<String> {
        match &self.metrics {
            Some((addr, Mode::Ipvs)) => {
                return Some(format!(
                "kube-proxy runs in IPVS mode on this node (http://{addr}/proxyMode answers ipvs)"
            ))
            }
            Some(_) => return None,
            None => {}
        }
        let p = self
            .processes
            .iter()
            .find(|p| !matches!(p.mode, Mode::Other(_)))?;
        Some(match p.mode {
            Mode::Ipvs => format!(
                "kube-proxy runs in IPVS mode in this network namespace (pid {}, --proxy-mode ipvs)",
                p.pid
            ),
            _ => format!(
                "kube-proxy runs in this network namespace (pid {}) and its mode is not on its command line (a --config file?)",
                p.pid
            ),
        })
    }
}

/// The mode a kube-proxy command line (NUL-separated) asks for.
pub fn mode_of_cmdline(cmdline: &[u8]) -> Mode {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut config = false;
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        let Some(arg) = arg else { continue };
        if let Some(mode) = arg.strip_prefix("proxy-mode=") {
            return Mode::named(mode);
        }
        if arg == "proxy-mode" {
            return Mode::named(it.next().map_or("", |s| s.as_str()));
        }
        if arg == "config" || arg.starts_with("config=") {
            config = true;
        }
    }
    if config {
        Mode::Unknown
    } else {
        // kube-proxy's default mode on Linux.
        Mode::Other("iptables".to_owned())
    }
}

/// The kube-proxy processes under `proc_root` (normally `/proc`) that
/// share this process's network namespace. A process whose namespace
/// cannot be read counts as sharing it (the safe side).
pub fn processes(proc_root: &Path) -> Vec<Process> {
    let ns = |pid: &str| fs::read_link(proc_root.join(pid).join("ns/net")).ok();
    let ours = ns("self");
    let me = std::process::id();
    let Ok(entries) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir: PathBuf = entry.path();
        let Ok(comm) = fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end_matches('\n') != "kube-proxy" {
            continue;
        }
        let theirs = ns(&pid.to_string());
        if ours.is_some() && theirs.is_some() && theirs != ours {
            continue;
        }
        let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
        out.push(Process {
            pid,
            mode: mode_of_cmdline(&cmdline),
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Asks a kube-proxy metrics server for its mode: `None` when nothing
/// answers there (or not as kube-proxy would).
pub fn metrics_mode(addr: SocketAddr) -> Option<Mode> {
    let wait = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream.set_write_timeout(Some(wait)).ok()?;
    let request =
        format!("GET /proxyMode HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: ipvsadm-rs\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut reply).ok()?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    let mut words = status.split_whitespace();
    if !words.next()?.starts_with("HTTP/") || words.next()? != "200" {
        return None;
    }
    // Another ipvsadm-rs's metrics server (`--metrics-bind-address`)
    // answers `ipvs` too, as kube-proxy's, but it is not kube-proxy: the
    // lock of the network namespace keeps two of them apart.
    if head
        .lines()
        .any(|l| l.eq_ignore_ascii_case(&format!("server: {OUR_SERVER}")))
    {
        return None;
    }
    let mode = body.trim();
    // A mode is one short word; anything else is not kube-proxy.
    if mode.is_empty() || mode.len() > 32 || !mode.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(Mode::named(mode))
}

/// Looks for kube-proxy: its metrics at `metrics`, its processes under
/// `proc_root`.
pub fn detect(metrics: SocketAddr, proc_root: &Path) -> Findings {
    Findings {
        metrics: metrics_mode(metrics).map(|m| (metrics, m)),
        processes: processes(proc_root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn proc_(pid: u32, mode: Mode) -> Process {
        Process { pid, mode }
    }

    #[test]
    fn command_lines_give_the_mode() {
        let m = |s: &str| mode_of_cmdline(s.replace(' ', "\0").as_bytes());
        assert_eq!(m("kube-proxy --proxy-mode=ipvs"), Mode::Ipvs);
        assert_eq!(m("kube-proxy --v=2 --proxy-mode ipvs"), Mode::Ipvs);
        assert_eq!(
            m("kube-proxy -proxy-mode=nftables"),
            Mode::Other("nftables".into())
        );
        assert_eq!(
            m("/usr/local/bin/kube-proxy --config=/var/lib/kube-proxy/config.conf --hostname-override=n1"),
            Mode::Unknown
        );
        assert_eq!(m("kube-proxy --config /c --proxy-mode="), Mode::Unknown);
        assert_eq!(m("kube-proxy"), Mode::Other("iptables".into()));
        assert_eq!(m(""), Mode::Other("iptables".into()));
    }

    #[test]
    fn the_decision() {
        let none = Findings::default();
        assert_eq!(none.refusal(), None);
        let addr: SocketAddr = METRICS.parse().unwrap();
        let ipvs = Findings {
            metrics: Some((addr, Mode::Ipvs)),
            processes: vec![],
        };
        assert_eq!(
            ipvs.refusal().unwrap(),
            "kube-proxy runs in IPVS mode on this node (http://127.0.0.1:10249/proxyMode answers ipvs)"
        );
        // The metrics' word wins over a command line that does not say.
        let iptables = Findings {
            metrics: Some((addr, Mode::Other("iptables".into()))),
            processes: vec![proc_(7, Mode::Unknown)],
        };
        assert_eq!(iptables.refusal(), None);
        let unknown = Findings {
            metrics: None,
            processes: vec![
                proc_(3, Mode::Other("nftables".into())),
                proc_(7, Mode::Unknown),
            ],
        };
        assert!(
            unknown.refusal().unwrap().contains("(pid 7)"),
            "{unknown:?}"
        );
        let by_flag = Findings {
            metrics: None,
            processes: vec![proc_(9, Mode::Ipvs)],
        };
        assert_eq!(
            by_flag.refusal().unwrap(),
            "kube-proxy runs in IPVS mode in this network namespace (pid 9, --proxy-mode ipvs)"
        );
        let other = Findings {
            metrics: None,
            processes: vec![proc_(3, Mode::Other("iptables".into()))],
        };
        assert_eq!(other.refusal(), None);
    }

    #[test]
    fn processes_are_found_by_name_in_our_network_namespace() {
        let root = std::env::temp_dir().join(format!("ipvsadm-rs-proc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let mk = |pid: &str, comm: &str, cmdline: &str, ns: Option<&str>| {
            let d = root.join(pid);
            fs::create_dir_all(d.join("ns")).unwrap();
            fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(d.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
            if let Some(ns) = ns {
                std::os::unix::fs::symlink(ns, d.join("ns/net")).unwrap();
            }
        };
        mk("self", "ipvsadm-rs", "ipvsadm-rs", Some("net:[1]"));
        mk(
            "10",
            "kube-proxy",
            "kube-proxy --proxy-mode=ipvs",
            Some("net:[1]"),
        );
        mk(
            "11",
            "kube-proxy",
            "kube-proxy --proxy-mode=ipvs",
            Some("net:[2]"),
        ); // another netns
        mk("12", "kube-proxy", "kube-proxy --config=/c", None); // unreadable: counted
        mk("13", "sleep", "sleep 100", Some("net:[1]"));
        fs::create_dir_all(root.join("sys")).unwrap();
        assert_eq!(
            processes(&root),
            vec![proc_(10, Mode::Ipvs), proc_(12, Mode::Unknown)]
        );
        fs::remove_dir_all(&root).unwrap();
        // The real /proc of a test machine has no kube-proxy in our netns.
        assert!(processes(Path::new("/proc"))
            .iter()
            .all(|p| p.pid != std::process::id()));
    }

    #[test]
    fn the_metrics_endpoint_is_asked_for_the_mode() {
        let serve = |reply: &'static str| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let t = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = [0u8; 1024];
                let n = s.read(&mut req).unwrap();
                let req = String::from_utf8_lossy(&req[..n]).into_owned();
                s.write_all(reply.as_bytes()).unwrap();
                req
            });
            (addr, t)
        };
        let (addr, t) = serve("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nipvs");
        assert_eq!(metrics_mode(addr), Some(Mode::Ipvs));
        assert!(t.join().unwrap().starts_with("GET /proxyMode HTTP/1.0\r\n"));
        let (addr, t) = serve("HTTP/1.1 200 OK\r\n\r\niptables\n");
        assert_eq!(metrics_mode(addr), Some(Mode::Other("iptables".into())));
        t.join().unwrap();
        let (addr, t) = serve("HTTP/1.1 404 Not Found\r\n\r\nipvs");
        assert_eq!(metrics_mode(addr), None);
        t.join().unwrap();
        // Another ipvsadm-rs's metrics server is not kube-proxy.
        let (addr, t) = serve("HTTP/1.1 200 OK\r\nserver: ipvsadm-rs\r\n\r\nipvs");
        assert_eq!(metrics_mode(addr), None);
        t.join().unwrap();
        let (addr, t) = serve("HTTP/1.1 200 OK\r\n\r\n<html>a web page</html>");
        assert_eq!(metrics_mode(addr), None);
        t.join().unwrap();
        // Nothing listening.
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(metrics_mode(free), None);
    }
}
