//! The speed benchmark: ipvsadm 1.31 against ipvsadm-rs on the same
//! kernel, in one VM boot. Ignored by default; `vm-tests/bench.sh` runs
//! it (`bench_full`: 1,000, 10,000 and 100,000 services of 4 real servers)
//! and CI runs `bench_smoke` (1,000 services) through `test.sh`.
//!
//! For each size: the real ipvsadm restores the table into an empty
//! namespace (timed), both tools list it (`-Ln`, `-Sn`, `-Ln --stats`,
//! timed, output to /dev/null, each once), ipvsadm flushes it (timed);
//! then ipvsadm-rs restores and flushes in a second namespace. The
//! listings of both tools are also compared byte for byte, untimed.
//! Times are wall clock including process start; peak memory is the
//! child's maximum resident set (`wait4`).

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Instant;

use vm_tests::{enter_fresh_netns, ipvsadm, ipvsadm_rs};

/// A restore file of `services` TCP services with 4 masquerading real
/// servers each.
fn rules(services: usize) -> String {
    let mut s = String::with_capacity(services * 5 * 48);
    for i in 0..services {
        let vip = format!("10.{}.{}.{}:80", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        s.push_str(&format!("-A -t {vip} -s rr\n"));
        for j in 1..=4 {
            s.push_str(&format!("-a -t {vip} -r 172.16.{}.{j}:8080 -m\n", i % 250));
        }
    }
    s
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

fn output(tool: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .arg0("ipvsadm")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{} {args:?} failed", tool.display());
    out.stdout
}

struct Row {
    services: usize,
    what: &'static str,
    theirs: Run,
    ours: Run,
}

fn measure(services: usize, rows: &mut Vec<Row>) {
    let path = format!("/tmp/rules-{services}");
    std::fs::write(&path, rules(services)).unwrap();
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
        if services <= 10_000 {
            assert_eq!(output(&c, args), output(&r, args), "{what} outputs differ");
        }
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
    assert!(output(&c, &["-Sn"]).is_empty(), "the flush left services");
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
