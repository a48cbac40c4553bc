//! The speed benchmark: ipvsadm 1.31 against ipvsadm-rs on the same
//! kernel, in one VM boot. Ignored by default; `vm-tests/bench.sh` runs
//! it (`bench_full`: 1,000, 10,000 and 100,000 services of 4 real servers)
//! and CI runs `bench_smoke` (1,000 services) through `test.sh`.
//!
//! For each size: the real ipvsadm restores the table into an empty
//! namespace (timed), both tools list it (`-Ln`, `-Sn`, `-Ln --stats`,
//! timed, output to /dev/null, in rounds: see [`rounds`]; the report
//! gives medians and the median of the rounds' ratios), ipvsadm flushes
//! it (timed);
//! then ipvsadm-rs restores and flushes in a second namespace. Before the
//! flush, `ipvsadm-rs --metrics` is scraped in the same rounds beside the
//! real ipvsadm's `-Ln` (one row: scrape against `-Ln`). The
//! listings of both tools are also compared (length and hash), untimed.
//! Times are wall clock including process start; peak memory is the
//! child's maximum resident set (`wait4`), which also counts the pages it
//! shared with this process before `exec`: this process keeps no table in
//! memory, so that share stays small (about 2 MiB, the `-C` rows show it).

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Instant;

use vm_tests::{enter_fresh_netns, ipvsadm, ipvsadm_rs};

/// Writes a restore file of `services` TCP services with 4 masquerading
/// real servers each, streaming: the benchmark process stays small, so
/// that the peak memory of the children it forks (which counts the pages
/// they share with it until `exec`) is theirs.
fn write_rules(path: &str, services: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    for i in 0..services {
        let vip = format!("10.{}.{}.{}:80", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        writeln!(f, "-A -t {vip} -s rr").unwrap();
        for j in 1..=4 {
            writeln!(f, "-a -t {vip} -r 172.16.{}.{j}:8080 -m", i % 250).unwrap();
        }
    }
    f.flush().unwrap();
}

struct Run {
    seconds: f64,
    max_rss_kib: i64,
    code: i32,
}

/// Runs `tool args` with `stdin` from `input` (a file path) and stdout to
/// /dev/null; wall time and peak memory.
fn timed(tool: &std::path::Path, args: &[&str], input: Option<&str>) -> Run {
    let stdin = match input {
        Some(path) => Stdio::from(File::open(path).unwrap()),
        None => Stdio::null(),
    };
    let start = Instant::now();
    let child = Command::new(tool)
        .arg0("ipvsadm")
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::from(File::create("/dev/null").unwrap()))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for (the Child is
    // forgotten below so that it is not waited twice); the pointers are to
    // live locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    std::mem::forget(child);
    assert_eq!(rc, pid, "wait4 failed");
    Run {
        seconds,
        max_rss_kib: usage.ru_maxrss,
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
    }
}

use std::os::unix::process::CommandExt;

/// The length and a hash of what `tool args` prints, read in pieces (the
/// listings of 100,000 services are tens of MB).
fn output(tool: &std::path::Path, args: &[&str]) -> (u64, u64) {
    use std::hash::Hasher;
    use std::io::Read;
    let mut child = Command::new(tool)
        .arg0("ipvsadm")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
        len += n as u64;
    }
    assert!(
        child.wait().unwrap().success(),
        "{} {args:?} failed",
        tool.display()
    );
    (len, hasher.finish())
}

struct Row {
    services: usize,
    what: &'static str,
    /// One run each per round, in turn: ipvsadm, then ipvsadm-rs.
    theirs: Vec<Run>,
    ours: Vec<Run>,
}

/// The rounds of each listing at `services`: `BENCH_ROUNDS` if set, else
/// 5 (3 at the smoke size), and 1 at 100,000 services, where one round
/// of the three listings takes minutes.
fn rounds(services: usize, smoke: bool) -> usize {
    if let Some(n) = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    match (smoke, services) {
        (true, _) => 3,
        (false, n) if n >= 100_000 => 1,
        _ => 5,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn measure(services: usize, rounds: usize, rows: &mut Vec<Row>) {
    let path = format!("/tmp/rules-{services}");
    write_rules(&path, services);
    let (c, r) = (ipvsadm(), ipvsadm_rs());

    enter_fresh_netns().unwrap();
    let their_restore = timed(&c, &["-R"], Some(&path));
    assert_eq!(their_restore.code, 0, "ipvsadm -R failed");
    let their_table = output(&c, &["-Sn"]);
    let listings = [
        ("-Ln", &["-Ln"][..]),
        ("-Sn", &["-Sn"][..]),
        ("-Ln --stats", &["-Ln", "--stats"][..]),
    ];
    let first = rows.len();
    for (what, args) in listings {
        assert_eq!(output(&c, args), output(&r, args), "{what} outputs differ");
        rows.push(Row {
            services,
            what,
            theirs: Vec::new(),
            ours: Vec::new(),
        });
    }
    // Each round runs every listing with both tools in turn, so that a
    // busy stretch of the machine hits both.
    for _ in 0..rounds {
        for (i, (what, args)) in listings.iter().enumerate() {
            let theirs = timed(&c, args, None);
            let ours = timed(&r, args, None);
            assert_eq!((theirs.code, ours.code), (0, 0), "{what} failed");
            rows[first + i].theirs.push(theirs);
            rows[first + i].ours.push(ours);
        }
    }
    scrapes(services, rounds, rows);
    let their_flush = timed(&c, &["-C"], None);

    enter_fresh_netns().unwrap();
    let our_restore = timed(&r, &["-R"], Some(&path));
    assert_eq!(our_restore.code, 0, "ipvsadm-rs -R failed");
    assert_eq!(
        output(&c, &["-Sn"]),
        their_table,
        "the restored tables differ"
    );
    let our_flush = timed(&r, &["-C"], None);
    assert_eq!(output(&c, &["-Sn"]).0, 0, "the flush left services");
    rows.push(Row {
        services,
        what: "-R (restore)",
        theirs: vec![their_restore],
        ours: vec![our_restore],
    });
    rows.push(Row {
        services,
        what: "-C (flush)",
        theirs: vec![their_flush],
        ours: vec![our_flush],
    });
    std::fs::remove_file(&path).unwrap();
}

/// `ipvsadm-rs --metrics`: a scrape of `/metrics` (connect to the last
/// byte of the answer, read by this process) beside the real ipvsadm's
/// `-Ln` in the same round; the peak memory is the exporter's (VmHWM).
fn scrapes(services: usize, rounds: usize, rows: &mut Vec<Row>) {
    let exporter = vm_tests::exporter::Exporter::start("127.0.0.1:9911", &[]);
    let (mut theirs, mut ours) = (Vec::new(), Vec::new());
    let mut size = (0, 0);
    for _ in 0..rounds {
        theirs.push(timed(&ipvsadm(), &["-Ln"], None));
        let start = Instant::now();
        let answer = exporter.get("/metrics");
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(answer.status, 200, "the scrape failed: {}", answer.body);
        // Whole: the last family's last series (one per service) is there.
        let last = answer.body.lines().last().unwrap_or("");
        assert!(
            last.starts_with("kube_router_service_bps_out{"),
            "the scrape was cut after {} bytes: {last:?}",
            answer.body.len()
        );
        size = (answer.body.len(), answer.body.lines().count());
        ours.push(Run {
            seconds,
            max_rss_kib: exporter.peak_rss_kib(),
            code: 0,
        });
    }
    println!(
        "--metrics at {services} services: {} bytes, {} lines a scrape",
        size.0, size.1
    );
    rows.push(Row {
        services,
        what: "--metrics scrape (against ipvsadm -Ln)",
        theirs,
        ours,
    });
}

fn report(rows: &[Row]) {
    println!("BENCH-TABLE-BEGIN");
    println!("| services | command | rounds | ipvsadm 1.31: median (s) | ipvsadm-rs: median (s) | speed-up: median of the rounds' ratios (range) | ipvsadm-rs peak RSS (MiB) |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let ratios: Vec<f64> = row
            .theirs
            .iter()
            .zip(&row.ours)
            .map(|(t, o)| t.seconds / o.seconds)
            .collect();
        let range = if ratios.len() > 1 {
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            format!(" ({lo:.2} to {hi:.2})")
        } else {
            String::new()
        };
        println!(
            "| {} | `{}` | {} | {:.3} | {:.3} | {:.2}x{range} | {:.1} |",
            row.services,
            row.what,
            ratios.len(),
            median(row.theirs.iter().map(|r| r.seconds).collect()),
            median(row.ours.iter().map(|r| r.seconds).collect()),
            median(ratios),
            row.ours.iter().map(|r| r.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
        );
    }
    println!("BENCH-TABLE-END");
}

#[test]
#[ignore = "run by test.sh at smoke size and by vm-tests/bench.sh"]
fn bench_smoke() {
    let mut rows = Vec::new();
    measure(1_000, rounds(1_000, true), &mut rows);
    report(&rows);
}

#[test]
#[ignore = "run by hand: VM_TEST_ARGS='--ignored bench_10k' vm-tests/run.sh tests"]
fn bench_10k() {
    let mut rows = Vec::new();
    measure(10_000, rounds(10_000, false), &mut rows);
    report(&rows);
}

#[test]
#[ignore = "run by vm-tests/bench.sh"]
fn bench_full() {
    let mut rows = Vec::new();
    for n in [1_000, 10_000, 100_000] {
        measure(n, rounds(n, false), &mut rows);
    }
    report(&rows);
}
