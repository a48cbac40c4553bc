//! The speed benchmark: ipvsadm 1.31 against ipvsadm-rs on the same
//! kernel, in one VM boot. Ignored by default; `vm-tests/bench.sh` runs
//! it (`bench_full`: 1,000, 10,000 and 100,000 services of 4 real servers)
//! and CI runs `bench_smoke` (1,000 services) through `test.sh`.
//!
//! For each size: the real ipvsadm restores the table into an empty
//! namespace (timed), both tools list it (`-Ln`, `-Sn`, `-Ln --stats`,
//! timed, output to /dev/null, each once), ipvsadm flushes it (timed);
//! then ipvsadm-rs restores and flushes in a second namespace. The
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
    theirs: Run,
    ours: Run,
}

fn measure(services: usize, rows: &mut Vec<Row>) {
    let path = format!("/tmp/rules-{services}");
    write_rules(&path, services);
    let (c, r) = (ipvsadm(), ipvsadm_rs());

    enter_fresh_netns().unwrap();
    let their_restore = timed(&c, &["-R"], Some(&path));
    assert_eq!(their_restore.code, 0, "ipvsadm -R failed");
    let their_table = output(&c, &["-Sn"]);
    for (what, args) in [
        ("-Ln", &["-Ln"][..]),
        ("-Sn", &["-Sn"][..]),
        ("-Ln --stats", &["-Ln", "--stats"][..]),
    ] {
        let theirs = timed(&c, args, None);
        let ours = timed(&r, args, None);
        assert_eq!((theirs.code, ours.code), (0, 0), "{what} failed");
        assert_eq!(output(&c, args), output(&r, args), "{what} outputs differ");
        rows.push(Row {
            services,
            what,
            theirs,
            ours,
        });
    }
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
        theirs: their_restore,
        ours: our_restore,
    });
    rows.push(Row {
        services,
        what: "-C (flush)",
        theirs: their_flush,
        ours: our_flush,
    });
    std::fs::remove_file(&path).unwrap();
}

fn report(rows: &[Row]) {
    println!("BENCH-TABLE-BEGIN");
    println!("| services | command | ipvsadm 1.31 (s) | ipvsadm-rs (s) | speed-up | ipvsadm-rs peak RSS (MiB) |");
    println!("|---:|---|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | `{}` | {:.3} | {:.3} | {:.1}x | {:.1} |",
            row.services,
            row.what,
            row.theirs.seconds,
            row.ours.seconds,
            row.theirs.seconds / row.ours.seconds,
            row.ours.max_rss_kib as f64 / 1024.0
        );
    }
    println!("BENCH-TABLE-END");
}

#[test]
#[ignore = "run by test.sh at smoke size and by vm-tests/bench.sh"]
fn bench_smoke() {
    let mut rows = Vec::new();
    measure(1_000, &mut rows);
    report(&rows);
}

#[test]
#[ignore = "run by vm-tests/bench.sh"]
fn bench_full() {
    let mut rows = Vec::new();
    for n in [1_000, 10_000, 100_000] {
        measure(n, &mut rows);
    }
    report(&rows);
}
