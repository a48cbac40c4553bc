//! The speed benchmark: ipvsadm 1.31 against ipvsadm-rs on the same
//! kernel, in one VM boot. Ignored by default; `vm-tests/bench.sh` runs
//! it (`bench_full`: 1,000, 10,000 and 100,000 services of 4 real servers)
//! and CI runs `bench_smoke` (1,000 services) through `test.sh`.
//!
//! For each size: the real ipvsadm restores the table into an empty
//! namespace (timed), both tools list it (`-Ln`, `-Sn`, `-Ln --stats`,
//! `-Ln --rate`, timed, output to /dev/null, in rounds: see [`rounds`];
//! the report gives medians and the median of the rounds' ratios), ipvsadm
//! flushes it (timed);
//! then ipvsadm-rs restores and flushes in a second namespace. Before the
//! flush, `ipvsadm-rs --metrics` is scraped in the same rounds beside the
//! real ipvsadm's `-Ln` (one row: scrape against `-Ln`). The
//! listings of both tools are also compared (length and hash), untimed.
//! Times are wall clock including process start; peak memory is the
//! child's maximum resident set (`wait4`), which also counts the pages it
//! shared with this process before `exec`: this process keeps no table in
//! memory, so that share stays small (about 2 MiB, the `-C` rows show it).
//!
//! The floor: where `vm-tests/bench.sh` staged the raw netlink client
//! `nlfloor` (a measuring tool kept outside the repository, see
//! [`FLOOR`]), every round also runs it on the same table, timed the same
//! way: its `d` mode (one GET_SERVICE dump, then one GET_DEST dump per
//! service, one socket, nothing decoded or printed) beside the listings,
//! and its `c` mode (the restore's requests, [`MAX_IN_FLIGHT`] to a
//! datagram, an ack asked only of the last) into a third namespace beside
//! the restores. The table is nlfloor's own ([`write_rules`]), and the
//! table nlfloor restores is checked to be the one ipvsadm restored.
//! Without it the rows say `n/a`.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Instant;

use ipvs_netlink::MAX_IN_FLIGHT;
use vm_tests::rawfloor::RawIpvs;
use vm_tests::{enter_fresh_netns, ipvsadm, ipvsadm_rs};

/// Where `vm-tests/bench.sh` stages the floor client, built static from
/// `nlfloor.c` (`NLFLOOR_SRC`, by default
/// `../shared/reference/floor/nlfloor.c` beside the repository).
const FLOOR: &str = "/extra/nlfloor";

/// The floor client, if staged.
fn floor() -> Option<&'static std::path::Path> {
    let path = std::path::Path::new(FLOOR);
    path.exists().then_some(path)
}

/// Writes a restore file of `services` TCP services with 4 masquerading
/// real servers each, streaming: the benchmark process stays small, so
/// that the peak memory of the children it forks (which counts the pages
/// they share with it until `exec`) is theirs. The table is the one
/// nlfloor adds (its header comment): service `i` is
/// `10.(100+(i>>16)).(i>>8).(i&255):80` rr, its real servers
/// `172.(16+k+16*(i>>16)).(i>>8).(i&255):8080` masq weight 1, in the
/// same order, so that each ratio to the floor compares the same table.
fn write_rules(path: &str, services: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    for i in 0..services {
        let (hi, mid, lo) = (i >> 16, (i >> 8) & 255, i & 255);
        let vip = format!("10.{}.{mid}.{lo}:80", 100 + hi);
        writeln!(f, "-A -t {vip} -s rr").unwrap();
        for k in 0..4 {
            let rip = format!("172.{}.{mid}.{lo}:8080", 16 + k + 16 * hi);
            writeln!(f, "-a -t {vip} -r {rip} -m -w 1").unwrap();
        }
    }
    f.flush().unwrap();
}

#[derive(Clone, Copy)]
struct Run {
    seconds: f64,
    max_rss_kib: i64,
    code: i32,
}

/// Runs `tool args` with `stdin` from `input` (a file path) and stdout to
/// /dev/null; wall time and peak memory.
fn timed(tool: &std::path::Path, args: &[&str], input: Option<&str>) -> Run {
    timed_into(tool, args, input, "/dev/null")
}

/// [`timed`] with stdout to the file `output`.
fn timed_into(tool: &std::path::Path, args: &[&str], input: Option<&str>, output: &str) -> Run {
    let stdin = match input {
        Some(path) => Stdio::from(File::open(path).unwrap()),
        None => Stdio::null(),
    };
    let start = Instant::now();
    let child = Command::new(tool)
        .arg0("ipvsadm")
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::from(File::create(output).unwrap()))
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
    /// The floor's run of each round (empty: no floor client, or none for
    /// this command).
    floor: Vec<Run>,
}

/// nlfloor `mode` on `services` services of 4 real servers (`c`: added
/// [`MAX_IN_FLIGHT`] to a datagram; `d`: the dump floor), timed as our
/// tools are; it exits 0 only when the counts match.
fn floor_run(floor: &std::path::Path, mode: &str, services: usize) -> Run {
    let n = services.to_string();
    let batch = MAX_IN_FLIGHT.to_string();
    let run = timed(floor, &["-n", &n, "-d", "4", "-b", &batch, mode], None);
    assert_eq!(run.code, 0, "nlfloor {mode} on {services} services failed");
    run
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
        ("-Ln --rate", &["-Ln", "--rate"][..]),
    ];
    let first = rows.len();
    for (what, args) in listings {
        assert_eq!(output(&c, args), output(&r, args), "{what} outputs differ");
        rows.push(Row {
            services,
            what,
            theirs: Vec::new(),
            ours: Vec::new(),
            floor: Vec::new(),
        });
    }
    // Each round runs the dump floor, then every listing with both tools
    // in turn, so that a busy stretch of the machine hits all three.
    let mut dump_floors = Vec::new();
    for _ in 0..rounds {
        let dump_floor = floor().map(|f| floor_run(f, "d", services));
        dump_floors.extend(dump_floor);
        for (i, (what, args)) in listings.iter().enumerate() {
            let theirs = timed(&c, args, None);
            let ours = timed(&r, args, None);
            assert_eq!((theirs.code, ours.code), (0, 0), "{what} failed");
            rows[first + i].theirs.push(theirs);
            rows[first + i].ours.push(ours);
            rows[first + i].floor.extend(dump_floor);
        }
    }
    scrapes(services, rounds, &dump_floors, rows);
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

    // The restore floor, into a third namespace: the same table.
    let restore_floor = floor().map(|f| {
        enter_fresh_netns().unwrap();
        let run = floor_run(f, "c", services);
        assert_eq!(
            output(&c, &["-Sn"]),
            their_table,
            "nlfloor restored another table than ipvsadm"
        );
        run
    });
    // The flush floor: the raw client's flush of the same table (the
    // restore floor's, or one ipvsadm restores).
    if restore_floor.is_none() {
        enter_fresh_netns().unwrap();
        assert_eq!(timed(&c, &["-R"], Some(&path)).code, 0, "ipvsadm -R failed");
    }
    let flush_floor = raw_run(RawIpvs::open().unwrap().flush().unwrap());
    assert_eq!(output(&c, &["-Sn"]).0, 0, "the raw flush left services");
    rows.push(Row {
        services,
        what: "-R (restore)",
        theirs: vec![their_restore],
        ours: vec![our_restore],
        floor: restore_floor.into_iter().collect(),
    });
    rows.push(Row {
        services,
        what: "-C (flush)",
        theirs: vec![their_flush],
        ours: vec![our_flush],
        floor: vec![flush_floor],
    });
    std::fs::remove_file(&path).unwrap();
}

/// `ipvsadm-rs --metrics` and `--top` beside the real ipvsadm's `-Ln`
/// and ours, in the same rounds: a scrape of `/metrics` (connect to the
/// last byte of the answer, read and its chunks decoded by this process,
/// every family), a scrape of the per-service families alone, and one
/// refresh of `--top` ([`top_refresh`]). A scrape's peak memory is the
/// exporter's (VmHWM); its processor time (user and system, the kernel's
/// dumps included) is printed after the table with the ratios to our
/// `-Ln`. The floor of the scrape of every family and of the refresh is
/// the dump floor of the listings' rounds (`floors`).
fn scrapes(services: usize, rounds: usize, floors: &[Run], rows: &mut Vec<Row>) {
    // Every family of 100,000 services of 4 real servers is 680 MB of
    // text: under TCG its scrape outlives the exporter's 60 s connection
    // lifetime (`commands::metrics::LIFETIME`) and is cut, as it should
    // be (Prometheus's own scrape timeout is 10 s). Above 10,000 only
    // the per-service families are scraped, and no refresh is timed
    // (its two JSON frames would be 500 MB in the VM's memory).
    let whole = services <= 10_000;
    if !whole {
        println!(
            "--metrics at {services} services: the per-service families alone are scraped (every family would be about 680 MB of text, longer to send than the exporter's 60 s lifetime under TCG)"
        );
    }
    let exporter = vm_tests::exporter::Exporter::start("127.0.0.1:9911", &[]);
    let (mut theirs, mut ours, mut refreshes) = (Vec::new(), Vec::new(), Vec::new());
    // The scrape of the per-service families alone (`collect[]`): one
    // dump of the services, no real servers.
    let mut ours_services = Vec::new();
    // Its floor: one dump of the services by the raw client, in each round.
    let mut services_floor = Vec::new();
    let mut raw = RawIpvs::open().unwrap();
    // Our `-Ln` of each round; the exporter's user and system seconds of
    // each scrape of every family, and of each of the per-service ones.
    let (mut our_listings, mut cpu, mut cpu_services) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = (0, 0);
    // The scrape of every family taking gzip (as Prometheus asks): its
    // runs, the exporter's processor time, the bytes on the wire.
    let (mut ours_gzip, mut cpu_gzip, mut wire_bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        theirs.push(timed(&ipvsadm(), &["-Ln"], None));
        let our_listing = timed(&ipvsadm_rs(), &["-Ln"], None);
        our_listings.push(our_listing.seconds);
        let scrape = |path: &str| {
            // Counted as it is read, never held (`exporter::count`).
            let (answer, seconds, cpu) = on_exporter(&exporter, || exporter.count(path));
            assert_eq!(answer.status, 200, "the scrape failed: {answer:?}");
            // Whole: the last family's last series (one per service) is
            // there (and a chunked answer's last chunk: `exporter::count`
            // checks it).
            assert!(
                answer.last_line.starts_with("kube_router_service_bps_out{"),
                "the scrape of {path} was cut after {} bytes: {:?}",
                answer.bytes,
                answer.last_line
            );
            println!(
                "--metrics at {services} services: {path} {seconds:.3} s ({} bytes; the exporter's processor time {:.2} s user, {:.2} s system), our -Ln {:.3} s ({:.2}x), ipvsadm's -Ln {:.3} s",
                answer.bytes,
                cpu.0,
                cpu.1,
                our_listing.seconds,
                seconds / our_listing.seconds,
                theirs.last().map_or(0.0, |r| r.seconds)
            );
            (answer, seconds, cpu)
        };
        if whole {
            refreshes.push(top_refresh(services));
            let (answer, seconds, used) = scrape("/metrics");
            size = (answer.bytes, answer.lines);
            cpu.push(used);
            ours.push(Run {
                seconds,
                max_rss_kib: exporter.peak_rss_kib(),
                code: 0,
            });
            // Taking gzip: timed to the last compressed byte, then read
            // back through busybox's zcat (untimed) and checked whole.
            let ((status, wire), seconds, used) = on_exporter(&exporter, || {
                vm_tests::exporter::fetch_gzip(exporter.addr, "/metrics")
            });
            assert_eq!(status, 200, "the gzip scrape failed");
            let text = vm_tests::exporter::count_compressed(status, &wire);
            assert_eq!(
                (text.bytes, text.lines),
                size,
                "the gzip scrape's text is not the plain one's size"
            );
            assert!(
                text.last_line.starts_with("kube_router_service_bps_out{"),
                "the gzip scrape was cut: {:?}",
                text.last_line
            );
            println!(
                "--metrics at {services} services: /metrics taking gzip {seconds:.3} s ({} bytes on the wire for {} of text; the exporter's processor time {:.2} s user, {:.2} s system), our -Ln {:.3} s ({:.2}x)",
                wire.len(),
                text.bytes,
                used.0,
                used.1,
                our_listing.seconds,
                seconds / our_listing.seconds
            );
            wire_bytes = wire.len();
            cpu_gzip.push(used);
            ours_gzip.push(Run {
                seconds,
                max_rss_kib: exporter.peak_rss_kib(),
                code: 0,
            });
        }
        let (_, seconds, used) = scrape("/metrics?collect[]=service&collect[]=kube-router");
        cpu_services.push(used);
        ours_services.push(Run {
            seconds,
            max_rss_kib: exporter.peak_rss_kib(),
            code: 0,
        });
        let dump = raw.dump_services().unwrap();
        assert_eq!(dump.messages, services, "the raw dump of the services");
        services_floor.push(raw_run(dump));
    }
    let against_ours = |runs: &[Run]| {
        ratio_cell(
            &runs
                .iter()
                .zip(&our_listings)
                .map(|(r, ln)| r.seconds / ln)
                .collect::<Vec<_>>(),
        )
    };
    let cpu_cell = |used: &[(f64, f64)]| {
        format!(
            "{:.2} s user + {:.2} s system",
            median(used.iter().map(|c| c.0).collect()),
            median(used.iter().map(|c| c.1).collect())
        )
    };
    println!(
        "--metrics at {services} services: our -Ln median {:.3} s; per-service scrape / our -Ln: {}, the exporter's processor time a scrape (medians) {}",
        median(our_listings.clone()),
        against_ours(&ours_services),
        cpu_cell(&cpu_services)
    );
    if whole {
        println!(
            "--metrics at {services} services: {} bytes, {} lines a scrape; exporter's peak RSS {:.1} MiB; scrape / our -Ln: {}, the exporter's processor time a scrape (medians) {}",
            size.0,
            size.1,
            exporter.peak_rss_kib() as f64 / 1024.0,
            against_ours(&ours),
            cpu_cell(&cpu)
        );
        println!(
            "--metrics at {services} services taking gzip: {wire_bytes} bytes on the wire; scrape / our -Ln: {}, the exporter's processor time a scrape (medians) {}",
            against_ours(&ours_gzip),
            cpu_cell(&cpu_gzip)
        );
        println!(
            "--top at {services} services: one refresh's read median {:.3} s; refresh / our -Ln: {}",
            median(refreshes.iter().map(|r| r.seconds).collect()),
            against_ours(&refreshes)
        );
        rows.push(Row {
            services,
            what: "--metrics scrape (against ipvsadm -Ln)",
            theirs: theirs.clone(),
            ours,
            floor: floors.to_vec(),
        });
        rows.push(Row {
            services,
            what: "--metrics scrape taking gzip, as Prometheus asks (against ipvsadm -Ln)",
            theirs: theirs.clone(),
            ours: ours_gzip,
            floor: floors.to_vec(),
        });
        rows.push(Row {
            services,
            what: "--top: one refresh, the read (against ipvsadm -Ln)",
            theirs: theirs.clone(),
            ours: refreshes,
            floor: floors.to_vec(),
        });
    }
    rows.push(Row {
        services,
        what: "--metrics scrape, `collect[]=service,kube-router` (against ipvsadm -Ln)",
        theirs,
        ours: ours_services,
        floor: services_floor,
    });
}

/// `ask` of the running `exporter`, timed: its answer, the wall seconds
/// and the exporter's processor time meanwhile (user, system).
fn on_exporter<T>(
    exporter: &vm_tests::exporter::Exporter,
    ask: impl FnOnce() -> T,
) -> (T, f64, (f64, f64)) {
    let (user, system) = exporter.cpu_seconds();
    let start = Instant::now();
    let answer = ask();
    let seconds = start.elapsed().as_secs_f64();
    let (user_after, system_after) = exporter.cpu_seconds();
    (answer, seconds, (user_after - user, system_after - system))
}

/// One refresh of `ipvsadm-rs --top` at `services` services: the read
/// of the table a running view makes each interval (one dump of the
/// services and one of each one's real servers, decoded), as the view
/// times it: `read_seconds` of the second of two JSON frames 0.1 s apart
/// (the first read is the process's first, with its start). The view's
/// other work each refresh (the rates and the sort of one frame, a
/// screen of rows drawn) is not in it. Peak memory is the process's.
fn top_refresh(services: usize) -> Run {
    use std::io::{BufRead, BufReader, Read};
    let path = "/tmp/bench-top.json";
    let run = timed_into(
        &ipvsadm_rs(),
        &["--top", "--json", "--count", "2", "--interval", "0.1"],
        None,
        path,
    );
    assert_eq!(run.code, 0, "ipvsadm-rs --top --json failed");
    // The second frame's first members, without holding the first frame
    // (25 MB at 10,000 services).
    let mut frames = BufReader::new(File::open(path).unwrap());
    frames.skip_until(b'\n').unwrap();
    let mut head = String::new();
    frames.take(4096).read_to_string(&mut head).unwrap();
    std::fs::remove_file(path).unwrap();
    assert!(
        head.starts_with('{') && head.contains("\"frame\":2"),
        "no second frame: {head:.200}"
    );
    let read_seconds = head
        .split_once("\"read_seconds\":")
        .and_then(|(_, rest)| rest.split([',', '}']).next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no read_seconds in {head:.200}"));
    // Its services follow (not counted here: the listings' checks
    // compare the tables).
    let first = if services > 0 {
        "\"services\":[{"
    } else {
        "\"services\":[]"
    };
    assert!(head.contains(first), "no services in {head:.200}");
    Run {
        seconds: read_seconds,
        max_rss_kib: run.max_rss_kib,
        code: 0,
    }
}

/// A run of the raw client ([`RawIpvs`]): in this process, so no process
/// start and no memory of its own.
fn raw_run(timed: vm_tests::rawfloor::Timed) -> Run {
    Run {
        seconds: timed.elapsed.as_secs_f64(),
        max_rss_kib: 0,
        code: 0,
    }
}

/// The median of `ratios` and, with more than one, their range.
fn ratio_cell(ratios: &[f64]) -> String {
    if ratios.is_empty() {
        return "n/a".to_string();
    }
    let range = if ratios.len() > 1 {
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        format!(" ({lo:.2} to {hi:.2})")
    } else {
        String::new()
    };
    format!("{:.2}x{range}", median(ratios.to_vec()))
}

fn report(rows: &[Row]) {
    println!("BENCH-TABLE-BEGIN");
    println!("| services | command | rounds | ipvsadm 1.31: median (s) | ipvsadm-rs: median (s) | floor: median (s) | speed-up, ipvsadm/ours: median of the rounds' ratios (range) | ours/floor: median of the rounds' ratios (range) | ipvsadm-rs peak RSS (MiB) |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let ratios: Vec<f64> = row
            .theirs
            .iter()
            .zip(&row.ours)
            .map(|(t, o)| t.seconds / o.seconds)
            .collect();
        let to_floor: Vec<f64> = row
            .ours
            .iter()
            .zip(&row.floor)
            .map(|(o, f)| o.seconds / f.seconds)
            .collect();
        let floor = if row.floor.is_empty() {
            "n/a".to_string()
        } else {
            format!(
                "{:.3}",
                median(row.floor.iter().map(|r| r.seconds).collect())
            )
        };
        println!(
            "| {} | `{}` | {} | {:.3} | {:.3} | {floor} | {} | {} | {:.1} |",
            row.services,
            row.what,
            ratios.len(),
            median(row.theirs.iter().map(|r| r.seconds).collect()),
            median(row.ours.iter().map(|r| r.seconds).collect()),
            ratio_cell(&ratios),
            ratio_cell(&to_floor),
            row.ours.iter().map(|r| r.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
        );
    }
    println!();
    if floor().is_some() {
        println!("The floor is `nlfloor` (`../shared/reference/floor/nlfloor.c`, a raw generic netlink client of IPVS in C, built static), timed as our tools are, process start included: `-n N -d 4 -b {MAX_IN_FLIGHT} c` (the restore's requests, {MAX_IN_FLIGHT} to a datagram, an ack asked only of the last) into a fresh namespace for `-R`, and `-n N -d 4 d` (one GET_SERVICE dump, then one GET_DEST dump per service on one socket, decoding and printing nothing) in each round of the listings and the scrape of every family.");
    } else {
        println!("floor: n/a (no floor client in the VM: `vm-tests/bench.sh` builds it from `NLFLOOR_SRC`, by default `../shared/reference/floor/nlfloor.c` beside the repository, which this checkout does not have).");
    }
    println!("The floors of `-C` and of the scrape of the per-service families are the raw client of `vm-tests/src/rawfloor.rs` (bytes laid out by hand from the kernel's headers over a bare netlink socket, nothing decoded), run in the benchmark's own process, so without a process start: one IPVS_CMD_FLUSH, acknowledged, of the same table; one GET_SERVICE dump, no real servers, in each round of the scrape.");
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

/// The scrape's row alone at 10,000 services (the table restored by
/// ipvsadm-rs, no floor): `VM_TEST_ARGS='--ignored --nocapture
/// bench_scrape_10k' vm-tests/run.sh tests`.
#[test]
#[ignore = "run by hand"]
fn bench_scrape_10k() {
    let services = 10_000;
    let path = format!("/tmp/rules-{services}");
    write_rules(&path, services);
    enter_fresh_netns().unwrap();
    let restore = timed(&ipvsadm_rs(), &["-R"], Some(&path));
    assert_eq!(restore.code, 0, "ipvsadm-rs -R failed");
    let mut rows = Vec::new();
    scrapes(services, rounds(services, false).min(3), &[], &mut rows);
    report(&rows);
}

#[test]
#[ignore = "run by vm-tests/bench.sh"]
fn bench_full() {
    let mut rows = Vec::new();
    for n in [1_000, 10_000, 100_000] {
        // A size that fails still leaves the rows of the sizes before it
        // in the log (the run of 2026-12-07 lost an hour's rows to a
        // failure at 100,000).
        let measured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            measure(n, rounds(n, false), &mut rows)
        }));
        if let Err(panic) = measured {
            report(&rows);
            std::panic::resume_unwind(panic);
        }
    }
    report(&rows);
}
