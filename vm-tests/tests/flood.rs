//! Issue 34, finding 1, in the VM: the HTTP server of the project
//! (`ipvs_k8s::serve`) answers a probe while it is flooded with
//! connections. The live `--from-k8s`'s health port, then `ipvsadm-rs
//! --metrics`, each a child process in a network namespace of its own,
//! go through three phases of [`PHASE`] each:
//! - 1,000 connections opened and held idle;
//! - 1,000 connections trickling a partial request line a byte at a
//!   time, each reopened when the server cuts it;
//! - 1,000 connections reopened as fast as the server cuts them.
//!
//! Throughout, a probe every 200 ms is a real `GET` with a 1 s timeout
//! (the kubelet's default): every probe must get an HTTP answer within
//! it (a probe that gets none fails the liveness check as the kubelet
//! counts it). The server's descriptors (`/proc/PID/fd`) and resident
//! memory are sampled after each probe and must stay bounded, over what
//! the server held before the first phase:
//! - descriptors: at most [`MAX_CONNECTIONS`] connections are open at
//!   once (at the cap the oldest is closed before the next is accepted),
//!   so the count stays within the count before the flood plus
//!   [`MAX_CONNECTIONS`] plus [`SLACK_FDS`];
//! - memory: each open connection holds at most hyper's 8 KiB read
//!   buffer, its write buffer and its task (about 20 KiB in all), so the
//!   1,000 of a flood (under the cap) about 20 MiB; the bound is
//!   [`RSS_GROWTH_KIB`] over the resident memory before the flood, twice
//!   that (the allocator keeps freed pages).
//!
//! The answer times (median, p99, max), descriptors and memory of each
//! phase are printed (docs/reliability.md has a run's figures).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::objects::{endpoint_slice, service};
use fake_apiserver::{Batch, FakeApiServer};
use ipvs_k8s::serve::MAX_CONNECTIONS;
use vm_tests::enter_fresh_netns;
use vm_tests::exporter::Exporter;
use vm_tests::live::{healthz, Live};

/// How long each phase floods.
const PHASE: Duration = Duration::from_secs(10);

/// The connections of each phase.
const FLOOD: usize = 1_000;

/// A probe's timeout, the kubelet's default `timeoutSeconds`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The time between two probes.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// Descriptors over the count before the flood and the connection cap:
/// the connection accepted before its task starts, and those a sync of
/// the live mode opens for a moment (netlink sockets, the state file and
/// its lock, a watch's new connection).
const SLACK_FDS: usize = 8;

/// Resident memory the flood may add (KiB): its connections (or the
/// cap, if lower) of about 20 KiB, twice.
const RSS_GROWTH_KIB: u64 = 2
    * 20
    * (if FLOOD < MAX_CONNECTIONS {
        FLOOD
    } else {
        MAX_CONNECTIONS
    }) as u64;

/// A hang guard on a slow emulated VM (not a speed check).
const PATIENCE: Duration = Duration::from_secs(120);

/// How the flooding connections behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Opened and held, sending nothing, never reopened.
    Idle,
    /// Sending a request line that never ends, a byte every 250 ms;
    /// reopened when cut.
    Trickle,
    /// Sending nothing, reopened as soon as the server cuts them.
    Reopen,
}

impl Attack {
    fn describe(self) -> &'static str {
        match self {
            Attack::Idle => "1,000 connections held idle",
            Attack::Trickle => "1,000 connections trickling a request line",
            Attack::Reopen => "1,000 connections reopened as fast as cut",
        }
    }
}

/// The server under test: its process, address and the path probed.
struct Target {
    pid: u32,
    addr: SocketAddr,
    path: &'static str,
}

/// The descriptors open in process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// The resident memory of process `pid` (VmRSS), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// One probe as the kubelet's: connect, `GET path`, read the answer to
/// its end, all within [`PROBE_TIMEOUT`]. The status code and how long
/// it took, or what went wrong.
fn probe(addr: SocketAddr, path: &str) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let deadline = started + PROBE_TIMEOUT;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timed out".to_owned())
    };
    let mut s = TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.31\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        s.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read after {} bytes: {e}", reply.len())),
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&reply);
    let (head, _) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no whole answer: {text:?}"))?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
    Ok((status, took))
}

/// Raises this process's descriptor limit to its hard limit: the flood
/// needs more than the usual 1,024.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid `limit`.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads one valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    assert!(
        limit.rlim_cur as usize > FLOOD + 64,
        "the hard limit of descriptors ({}) is too low for the flood",
        limit.rlim_cur
    );
}

/// The flooding connections, on a runtime of their own, until `stop`;
/// `opened` counts the connections made.
async fn flood(addr: SocketAddr, attack: Attack, stop: Arc<AtomicBool>, opened: Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        let (stop, opened) = (stop.clone(), opened.clone());
        tasks.spawn(async move {
            while !stop.load(Relaxed) {
                let Ok(mut conn) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                opened.fetch_add(1, Relaxed);
                match attack {
                    Attack::Idle => {
                        while !stop.load(Relaxed) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        return;
                    }
                    Attack::Trickle => {
                        let line = b"GET /healthz?";
                        let mut i = 0;
                        while !stop.load(Relaxed) {
                            let byte = line.get(i).copied().unwrap_or(b'a');
                            if conn.write_all(&[byte]).await.is_err() {
                                break;
                            }
                            i += 1;
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                    Attack::Reopen => {
                        let mut buf = [0u8; 256];
                        let cut = async {
                            while let Ok(n) = conn.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        };
                        let watch = async {
                            while !stop.load(Relaxed) {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        };
                        tokio::select! {
                            _ = cut => {}
                            _ = watch => {}
                        }
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One phase's figures.
struct Figures {
    attack: Attack,
    answers: Vec<Duration>,
    statuses: Vec<u16>,
    failures: Vec<String>,
    fds_before: usize,
    fds_max: usize,
    rss_before: u64,
    rss_max: u64,
    opened: usize,
}

impl Figures {
    fn line(&self) -> String {
        let mut t = self.answers.clone();
        t.sort_unstable();
        let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
        let p99 = t
            .len()
            .checked_sub(1)
            .map(|last| (t.len() * 99).div_ceil(100).saturating_sub(1).min(last));
        format!(
            "{}: {} probes, {} answered ({} x 200), {} without an answer; answer median {:.1} ms, \
             p99 {:.1} ms, max {:.1} ms; descriptors {} before, {} at most; RSS {} KiB before, \
             {} KiB at most; {} flood connections opened",
            self.attack.describe(),
            self.answers.len() + self.failures.len(),
            self.answers.len(),
            self.statuses.iter().filter(|&&s| s == 200).count(),
            self.failures.len(),
            ms(t.get(t.len() / 2)),
            ms(p99.and_then(|i| t.get(i))),
            ms(t.last()),
            self.fds_before,
            self.fds_max,
            self.rss_before,
            self.rss_max,
            self.opened,
        )
    }
}

/// Floods `target` with `attack` for [`PHASE`], probing it every
/// [`PROBE_EVERY`] and sampling its descriptors and memory.
fn phase(target: &Target, attack: Attack) -> Figures {
    let fds_before = descriptors(target.pid);
    let rss_before = rss_kib(target.pid);
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (stop, opened, addr) = (stop.clone(), opened.clone(), target.addr);
        // A thread made here shares this thread's network namespace.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(flood(addr, attack, stop, opened))
        })
    };
    // Until the flood has opened its first thousand connections (a hang
    // guard), then the phase.
    let start = Instant::now();
    while opened.load(Relaxed) < FLOOD {
        assert!(
            start.elapsed() < PATIENCE,
            "the flood never opened {FLOOD} connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut f = Figures {
        attack,
        answers: Vec::new(),
        statuses: Vec::new(),
        failures: Vec::new(),
        fds_before,
        fds_max: fds_before,
        rss_before,
        rss_max: rss_before,
        opened: 0,
    };
    let began = Instant::now();
    let mut next = began;
    while began.elapsed() < PHASE {
        match probe(target.addr, target.path) {
            Ok((status, took)) => {
                f.answers.push(took);
                f.statuses.push(status);
            }
            Err(e) => f
                .failures
                .push(format!("probe at {:?}: {e}", began.elapsed())),
        }
        f.fds_max = f.fds_max.max(descriptors(target.pid));
        f.rss_max = f.rss_max.max(rss_kib(target.pid));
        next += PROBE_EVERY;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    stop.store(true, Relaxed);
    attacker.join().unwrap();
    f.opened = opened.load(Relaxed);
    eprintln!("{}", f.line());
    f
}

/// The three phases against `target`; panics after all of them if a
/// probe got no answer or a bound was passed.
fn flood_phases(target: &Target, what: &str, ok_status: u16, attacks: &[Attack]) {
    raise_open_files();
    let (fds_base, rss_base) = (descriptors(target.pid), rss_kib(target.pid));
    let figures: Vec<Figures> = attacks.iter().map(|&a| phase(target, a)).collect();
    let mut broken = Vec::new();
    for f in &figures {
        let name = f.attack.describe();
        broken.extend(f.failures.iter().map(|e| format!("{what}, {name}: {e}")));
        if let Some(s) = f.statuses.iter().find(|&&s| s != ok_status) {
            broken.push(format!(
                "{what}, {name}: a probe answered {s}, not {ok_status}"
            ));
        }
        if f.fds_max > fds_base + MAX_CONNECTIONS + SLACK_FDS {
            broken.push(format!(
                "{what}, {name}: {} descriptors, over {fds_base} before the flood + {MAX_CONNECTIONS} + {SLACK_FDS}",
                f.fds_max
            ));
        }
        if f.rss_max > rss_base + RSS_GROWTH_KIB {
            broken.push(format!(
                "{what}, {name}: RSS {} KiB, over {rss_base} KiB before the flood + {RSS_GROWTH_KIB} KiB",
                f.rss_max
            ));
        }
    }
    eprintln!("{what}: {fds_base} descriptors and {rss_base} KiB of RSS before the flood");
    for f in &figures {
        eprintln!("  {}", f.line());
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

const ALL: &[Attack] = &[Attack::Idle, Attack::Trickle, Attack::Reopen];

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_health_port_answers_every_probe_under_a_connection_flood() {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join("flood-healthz");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(Path::new(&dir).join("kubeconfig"), server.kubeconfig()).unwrap();
    let mut b = Batch::default();
    b.apply(service("shop", "web", "10.96.0.10", &[("http", 80)]))
        .apply(endpoint_slice(
            "shop",
            "web",
            "abcde",
            &[("http", 8080)],
            &["10.244.1.5", "10.244.2.6"],
        ));
    server.batch(b);
    let addr = "127.0.0.1:10256";
    let mut live = Live::start(
        &dir,
        &[
            "--healthz",
            addr,
            "--node-ip",
            "192.168.49.2",
            "--node-name",
            "node-a",
        ],
    );
    live.until("/healthz answered 200", PATIENCE, || {
        healthz(addr, PATIENCE).is_some_and(|(status, _)| status.contains(" 200 "))
    });
    let target = Target {
        pid: live.child.id(),
        addr: addr.parse().unwrap(),
        path: "/healthz",
    };
    flood_phases(&target, "the live mode's /healthz", 200, ALL);
    // The live mode went on serving: still healthy, ends cleanly.
    let (status, body) = healthz(addr, PATIENCE).expect("/healthz after the flood");
    assert!(status.contains(" 200 "), "{status}\n{body}");
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_metrics_port_answers_every_scrape_under_a_connection_flood() {
    enter_fresh_netns().unwrap();
    vm_tests::ipvsadm_ok(&["-A", "-t", "10.97.97.97:80", "-s", "rr"]);
    vm_tests::ipvsadm_ok(&["-a", "-t", "10.97.97.97:80", "-r", "10.244.1.39:80", "-m"]);
    let exporter = Exporter::start("127.0.0.1:9756", &[]);
    let target = Target {
        pid: exporter.pid(),
        addr: exporter.addr,
        path: "/metrics",
    };
    flood_phases(&target, "ipvsadm-rs --metrics", 200, ALL);
    let answer = exporter.get("/metrics");
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("10.97.97.97"), "{}", answer.body);
}
