//! The live `--from-k8s` benchmark: a full sync of N Services of 4
//! endpoints each from the fake API server (`ipvsadm-rs --from-k8s --once`,
//! a process of its own: list, map, plan, write) against our own
//! `ipvsadm-rs -R` of the same table, in the same VM boot; then a no-op
//! resync, whose writes are counted (the sync's own count in its log).
//! `vm-tests/bench.sh` runs `bench_k8s_full` (10,000 Services); CI runs
//! `bench_k8s_smoke` (1,000) through `test.sh`.
//!
//! Times are wall clock including process start. The fake API server runs
//! in this test process, on the VM's one CPU: serving the lists is part of
//! the full sync's time, as a real API server's latency would be.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::objects::{bench_cluster, bench_endpoints, bench_vip};
use fake_apiserver::FakeApiServer;
use vm_tests::{enter_fresh_netns, ipvsadm_ok, ipvsadm_rs};

/// Where `vm-tests/bench.sh` stages the floor client (see `bench.rs`).
const FLOOR: &str = "/extra/nlfloor";

/// The wall time of nlfloor's `c` mode (the restore's requests,
/// [`ipvs_netlink::MAX_IN_FLIGHT`] to a datagram) adding `services`
/// services of 4 real servers into a fresh namespace, process start
/// included; `None` without the floor client. The table it adds is checked
/// to be `restored`.
fn restore_floor(services: usize, restored: &str) -> Option<Duration> {
    if !Path::new(FLOOR).exists() {
        return None;
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_fresh_netns().unwrap();
            let start = Instant::now();
            let out = Command::new(FLOOR)
                .args(["-n", &services.to_string(), "-d", "4", "-b"])
                .arg(ipvs_netlink::MAX_IN_FLIGHT.to_string())
                .arg("c")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let wall = start.elapsed();
            assert!(out.status.success(), "nlfloor c: {out:?}");
            assert_eq!(
                ipvsadm_ok(&["-Sn"]),
                restored,
                "nlfloor added another table"
            );
            Some(wall)
        })
        .join()
        .unwrap()
    })
}

/// The restore file of the table the Services map to.
fn write_rules(path: &Path, services: usize) {
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    for i in 0..services {
        let vip = bench_vip(i);
        writeln!(f, "-A -t {vip}:80 -s rr").unwrap();
        for ep in bench_endpoints(i) {
            writeln!(f, "-a -t {vip}:80 -r {ep}:8080 -m -w 1").unwrap();
        }
    }
    f.flush().unwrap();
}

/// N Services of one port and their EndpointSlices, made at once: the
/// table nlfloor adds ([`bench_cluster`]), so that the floor's time is for
/// the same table.
fn populate(server: &FakeApiServer, services: usize) {
    server.batch(bench_cluster(services));
}

/// The CPU time (user and system) of the children waited for so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs ipvsadm-rs with `args` (stdin from `input`); wall time, exit
/// code, stderr.
fn timed(args: &[&str], input: Option<&Path>) -> (Duration, i32, String) {
    let (wall, _, code, err) = timed_cpu(args, input);
    (wall, code, err)
}

/// [`timed`], with the child's CPU time too: user and system, the
/// kernel's work for its requests included, the fake API server's (a
/// thread of this test, on the VM's one CPU) excluded.
fn timed_cpu(args: &[&str], input: Option<&Path>) -> (Duration, Duration, i32, String) {
    let stdin = match input {
        Some(path) => Stdio::from(File::open(path).unwrap()),
        None => Stdio::null(),
    };
    let cpu_before = children_cpu();
    let start = Instant::now();
    let out = Command::new(ipvsadm_rs())
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let wall = start.elapsed();
    (
        wall,
        children_cpu() - cpu_before,
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The summary line of sync `sync` (`sync 1:`, `sync 2 (resync):`):
/// `... N virtual services; M writes, ...`; with `--verbose`, the same
/// sync's debug lines (`sync 1: running`) come before it.
fn summary<'a>(log: &'a str, sync: &str) -> Option<&'a str> {
    log.lines()
        .find(|l| l.contains(sync) && l.contains(" virtual services; "))
}

/// The writes a sync's log line counts: `...; N writes, M ms`.
fn writes_of(log: &str, sync: &str) -> Option<usize> {
    let line = summary(log, sync)?;
    let (_, rest) = line.split_once("; ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The nftables elements a sync's log line counts (added, deleted):
/// `..., nftables +A -D elements ...`; `(0, 0)` when it sent none.
fn elements_of(log: &str, sync: &str) -> Option<(usize, usize)> {
    let line = summary(log, sync)?;
    if line.contains("nftables unchanged") {
        return Some((0, 0));
    }
    let (_, rest) = line.split_once("nftables +")?;
    let mut words = rest.split_whitespace();
    let added = words.next()?.parse().ok()?;
    let deleted = words.next()?.strip_prefix('-')?.parse().ok()?;
    Some((added, deleted))
}

/// The milliseconds a sync took, by its summary line (`..., M ms`).
fn ms_of(log: &str, sync: &str) -> Option<u64> {
    let line = summary(log, sync)?;
    let (_, last) = line.rsplit_once(", ")?;
    last.strip_suffix(" ms")?.trim().parse().ok()
}

/// The milliseconds of one step in a sync's `took:` line of the log.
fn step_ms(log: &str, step: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("sync 1 took: "))?;
    let (_, steps) = line.split_once("took: ")?;
    steps.split(", ").find_map(|s| {
        let rest = s.strip_prefix(step)?.strip_prefix(' ')?;
        rest.strip_suffix(" ms")?.parse().ok()
    })
}

/// Prints where a `--once` run's time went, from its `--verbose` log:
/// start-up, the two lists (time since the watch began), and each step
/// of the sync.
fn phases(what: &str, log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| {
            line.contains("debug started in")
                || line.contains("debug listed ")
                || line.contains(" took: ")
        })
        .map(|line| {
            let text = line.split_once(" debug ").map_or(line, |(_, t)| t);
            format!("{what}: {text}")
        })
        .collect()
}

struct Figures {
    services: usize,
    restore: Duration,
    /// nlfloor's restore of the same table (`None`: no floor client).
    floor: Option<Duration>,
    restore_cpu: Duration,
    full: Duration,
    full_cpu: Duration,
    full_writes: usize,
    /// The full sync's step that bound the addresses to the dummy
    /// interface, which a restore does not do.
    addresses: Duration,
    noop: Duration,
    noop_writes: usize,
    resync_writes: usize,
    /// The no-op periodic resync of a running loop, by its own account.
    resync: Duration,
    /// The same full sync with `--no-nftables`, in a fresh namespace.
    full_without_rules: Duration,
    /// The full sync's nftables step, and the elements it added.
    nft_step: Duration,
    nft_elements: usize,
    /// The elements of the no-op sync and of the no-op resync (both 0).
    noop_elements: (usize, usize),
    resync_elements: (usize, usize),
    /// Where the `--once` runs' time went, one line per step.
    steps: Vec<String>,
    /// The live mode's peak RSS (VmHWM) after its first sync and its
    /// first resync, in KiB.
    live_peak_kib: u64,
}

/// The peak resident memory (VmHWM) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}

fn measure(services: usize) -> Figures {
    let dir = std::env::temp_dir().join(format!("bench-k8s-{services}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules");
    write_rules(&rules, services);

    // Our restore of the same table, in a namespace of its own.
    let saved_by_restore = std::thread::scope(|s| {
        s.spawn(|| {
            enter_fresh_netns().unwrap();
            let (restore, cpu, code, err) = timed_cpu(&["-R"], Some(&rules));
            assert_eq!(code, 0, "ipvsadm-rs -R: {err}");
            ((restore, cpu), ipvsadm_ok(&["-Sn"]))
        })
        .join()
        .unwrap()
    });
    let ((restore, restore_cpu), restored) = saved_by_restore;
    let floor = restore_floor(services, &restored);

    enter_fresh_netns().unwrap();
    let server = FakeApiServer::start().unwrap();
    populate(&server, services);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let state = dir.join("owned");
    let base = [
        "--from-k8s",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-ip",
        "192.168.49.2",
        "--state",
        state.to_str().unwrap(),
        "--verbose",
    ];
    let once: Vec<&str> = base.iter().copied().chain(["--once"]).collect();

    // The full sync into an empty table.
    let (full, full_cpu, code, log) = timed_cpu(&once, None);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        ipvsadm_ok(&["-Sn"]),
        restored,
        "the synced table differs from the restored one"
    );
    let full_writes = writes_of(&log, "sync 1:").expect("the sync's line");
    assert_eq!(full_writes, services * 5);
    let (nft_elements, _) = elements_of(&log, "sync 1:").expect("the sync's nftables count");
    let nft_step = Duration::from_millis(step_ms(&log, "nftables").expect("the nftables step"));
    let mut steps = phases("full sync", &log);
    let addresses = Duration::from_millis(step_ms(&log, "addresses").expect("the address step"));

    // A no-op sync (a new process: list, map, dump the table, plan).
    let (noop, code, log) = timed(&once, None);
    assert_eq!(code, 0, "{log}");
    let noop_writes = writes_of(&log, "sync 1:").expect("the sync's line");
    // A new process reads the nftables table back (its structure checked
    // against the record beside the state file) and writes nothing.
    let noop_elements = elements_of(&log, "sync 1:").expect("the sync's nftables count");
    steps.extend(phases("no-op sync", &log));

    // A no-op periodic resync in a running loop.
    let err = File::create(dir.join("live.log")).unwrap();
    let mut child = Command::new(ipvsadm_rs())
        .args(base)
        .args(["--resync", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(600);
    let (resync_writes, resync_elements, resync) = loop {
        let log = std::fs::read_to_string(dir.join("live.log")).unwrap_or_default();
        if let Some(w) = writes_of(&log, "sync 2 (resync):") {
            let e = elements_of(&log, "sync 2 (resync):").expect("the resync's nftables count");
            let ms = ms_of(&log, "sync 2 (resync):").expect("the resync's time");
            steps.extend(
                log.lines()
                    .filter(|l| l.contains("sync 2 took: "))
                    .map(|l| {
                        let text = l.split_once(" debug ").map_or(l, |(_, t)| t);
                        format!("no-op resync: {text}")
                    }),
            );
            break (w, e, Duration::from_millis(ms));
        }
        assert!(Instant::now() < end, "no resync came:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let live_peak_kib = peak_rss_kib(child.id());
    // SAFETY: kill takes no pointers; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    ipvsadm_ok(&["-C"]);

    // What the runs above made goes with `--cleanup` (our nftables
    // table, the dummy interface and its addresses).
    let cleanup = Command::new(ipvsadm_rs())
        .args(["--from-k8s", "--cleanup", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(cleanup.status.success(), "{cleanup:?}");
    assert_eq!(ipvsadm_ok(&["-Sn"]), "");
    // The same full sync without the packet path, into a namespace of its
    // own with an API server of its own: not here, where the kernel keeps
    // the real servers just removed in its trash for minutes and searches
    // it on every add (docs/speed.md, "What the restore costs": at 10,000
    // Services that made this run four times slower than the one above).
    let without = std::thread::scope(|s| {
        s.spawn(|| {
            enter_fresh_netns().unwrap();
            let server = FakeApiServer::start().unwrap();
            populate(&server, services);
            let kubeconfig = dir.join("kubeconfig-without-rules");
            std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
            let state = dir.join("owned-without-rules");
            let mut args = once.clone();
            let at = args.iter().position(|a| *a == "--kubeconfig").unwrap() + 1;
            args[at] = kubeconfig.to_str().unwrap();
            let at = args.iter().position(|a| *a == "--state").unwrap() + 1;
            args[at] = state.to_str().unwrap();
            args.push("--no-nftables");
            let (full, code, log) = timed(&args, None);
            assert_eq!(code, 0, "{log}");
            assert_eq!(writes_of(&log, "sync 1:"), Some(services * 5), "{log}");
            full
        })
        .join()
        .unwrap()
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Figures {
        full_without_rules: without,
        nft_step,
        nft_elements,
        noop_elements,
        resync_elements,
        services,
        restore,
        floor,
        restore_cpu,
        full,
        full_cpu,
        full_writes,
        addresses,
        noop,
        noop_writes,
        resync_writes,
        resync,
        steps,
        live_peak_kib,
    }
}

fn report(rows: &[Figures]) {
    println!("BENCH-TABLE-BEGIN");
    println!("| Services (x4 endpoints) | `ipvsadm-rs -R` (s) | full sync `--from-k8s --once` (s) | ratio | floor, `nlfloor c` (s) | `-R`/floor | sync/floor | its address step (s) | the sync without it (s) | ratio | CPU of `-R` (s) | CPU of the sync (s) | CPU ratio | writes | no-op sync (s) | its writes | no-op resync's writes | no-op resync (s) | live mode's peak RSS (MiB) |");
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for f in rows {
        let without = f.full.saturating_sub(f.addresses);
        let (floor, restore_to_floor, full_to_floor) = match f.floor {
            Some(floor) => {
                let s = floor.as_secs_f64();
                (
                    format!("{s:.3}"),
                    format!("{:.2}x", f.restore.as_secs_f64() / s),
                    format!("{:.2}x", f.full.as_secs_f64() / s),
                )
            }
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        println!(
            "| {} | {:.3} | {:.3} | {:.2}x | {floor} | {restore_to_floor} | {full_to_floor} | {:.3} | {:.3} | {:.2}x | {:.3} | {:.3} | {:.2}x | {} | {:.3} | {} | {} | {:.3} | {:.1} |",
            f.services,
            f.restore.as_secs_f64(),
            f.full.as_secs_f64(),
            f.full.as_secs_f64() / f.restore.as_secs_f64(),
            f.addresses.as_secs_f64(),
            without.as_secs_f64(),
            without.as_secs_f64() / f.restore.as_secs_f64(),
            f.restore_cpu.as_secs_f64(),
            f.full_cpu.as_secs_f64(),
            f.full_cpu.as_secs_f64() / f.restore_cpu.as_secs_f64(),
            f.full_writes,
            f.noop.as_secs_f64(),
            f.noop_writes,
            f.resync_writes,
            f.resync.as_secs_f64(),
            f.live_peak_kib as f64 / 1024.0
        );
    }
    println!();
    println!("| Services (x4 endpoints) | full sync with the packet path (s) | the same without it, `--no-nftables` (s) | ratio | its nftables step (s) | elements written | a new process's no-op sync: elements | no-op resync: elements |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.2}x | {:.3} | {} | +{} -{} | +{} -{} |",
            f.services,
            f.full.as_secs_f64(),
            f.full_without_rules.as_secs_f64(),
            f.full.as_secs_f64() / f.full_without_rules.as_secs_f64(),
            f.nft_step.as_secs_f64(),
            f.nft_elements,
            f.noop_elements.0,
            f.noop_elements.1,
            f.resync_elements.0,
            f.resync_elements.1,
        );
    }
    for f in rows {
        println!();
        println!(
            "Where the time of the `--once` runs at {} Services went (their `--verbose` log):",
            f.services
        );
        println!();
        for step in &f.steps {
            println!("- {step}");
        }
    }
    println!("BENCH-TABLE-END");
    for f in rows {
        assert_eq!((f.noop_writes, f.resync_writes), (0, 0));
        // A running loop's no-op resync sends nothing to nftables either,
        // nor does a new process's first sync of a table already right.
        assert_eq!(f.resync_elements, (0, 0));
        assert_eq!(f.noop_elements, (0, 0));
    }
}

#[test]
#[ignore = "run by test.sh at smoke size and by vm-tests/bench.sh"]
fn bench_k8s_smoke() {
    report(&[measure(1_000)]);
}

#[test]
#[ignore = "run by vm-tests/bench.sh"]
fn bench_k8s_full() {
    report(&[measure(10_000)]);
}
