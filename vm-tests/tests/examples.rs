//! The libraries' examples, built for musl by vm-tests/run.sh and run
//! from /examples/ in the VM against the real kernel with real traffic
//! (`vm_tests::lab`).
//!
//! `watch_async` (the async handle): its first read's counters are the
//! kernel's as the real ipvsadm lists them (`-Ln --stats --exact`) before
//! the traffic, its last read's the ones after, and its rates times their
//! intervals add up to the difference. The kernel folds its per-CPU
//! counters into the ones it reports every 2 s, so "before" and "after"
//! are read once two reads an estimator period apart agree; a service
//! added after that marks the first read that came later. No assertion
//! is timed.
//!
//! `list` (a table of the services and real servers, comfy-table): the
//! rows are the services and real servers the real ipvsadm lists, with
//! its counters (`-Ln --stats --exact`), schedulers, forwarding methods
//! and weights (`-Ln`).
//!
//! `declare` (ipvs-plan, a declarative sync from a JSON file): the real
//! ipvsadm's `-Sn` and `-Ln --thresholds` after it are the declared table
//! on the addresses it owns and what was there elsewhere; declared again
//! it writes nothing; a wanted service it does not own is a conflict; a
//! file with a service twice is refused before any write; with `--drain`
//! a real server no longer wanted that holds a connection (the real
//! ipvsadm says which) is kept at weight 0, the other deleted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use vm_tests::lab::{
    echo_traffic, ipvsadm_lines, kernel_counters, settled, Counters, Lab, COUNTED_TABLE,
};

/// The service added once the counters settled.
const MARKER: &str = "TCP 10.97.97.99:1";

fn ipvsadm_line(line: &str) {
    ipvsadm_lines(&[line]);
}

/// The services' counters (the watcher reads services only), the
/// marker's left out.
fn services_only(mut counters: Counters) -> Counters {
    counters.retain(|key, _| !key.contains(" -> ") && key != MARKER);
    counters
}

/// One read of the watcher: its interval, and per service the counters
/// and the rates (`None` on the first read).
struct Read {
    interval: Option<f64>,
    services: BTreeMap<String, ([u64; 5], Option<[f64; 5]>)>,
}

struct Watcher {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Watcher {
    fn start(args: &[&str]) -> Watcher {
        let mut child = Command::new("/examples/watch_async")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run /examples/watch_async: {e}"));
        let out = child.stdout.take().unwrap();
        Watcher {
            child,
            lines: BufReader::new(out).lines(),
        }
    }

    fn line(&mut self) -> String {
        match self.lines.next() {
            Some(Ok(l)) => l,
            other => panic!("watch_async ended: {other:?}"),
        }
    }

    fn read(&mut self) -> Read {
        let header = self.line();
        let words: Vec<&str> = header.split(' ').collect();
        let interval = match words.as_slice() {
            ["read", _, "interval", "-"] => None,
            ["read", _, "interval", secs] => Some(secs.parse().unwrap()),
            _ => panic!("not a read's first line: {header:?}"),
        };
        let mut services = BTreeMap::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                return Read { interval, services };
            }
            let w: Vec<&str> = line.split(' ').collect();
            assert_eq!(w.len(), 13, "{line:?}");
            assert_eq!(w[7], "rates", "{line:?}");
            let counters: [u64; 5] = std::array::from_fn(|i| w[2 + i].parse().unwrap());
            let rates = (w[8] != "-").then(|| std::array::from_fn(|i| w[8 + i].parse().unwrap()));
            services.insert(format!("{} {}", w[0], w[1]), (counters, rates));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counters_of(r: &Read) -> Counters {
    r.services
        .iter()
        .map(|(k, (c, _))| (k.clone(), *c))
        .collect()
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn watch_async_reads_the_kernels_counters_and_its_rates_add_up() {
    let lab = Lab::new(&["10.97.97.97", "10.97.97.98"]);
    ipvsadm_lines(COUNTED_TABLE);
    echo_traffic(&lab, 3);
    let before = services_only(settled(3, 3));

    let mut watcher = Watcher::start(&["0.5"]);
    let first = watcher.read();
    assert_eq!(first.interval, None);
    assert!(first.services.values().all(|(_, r)| r.is_none()));
    assert_eq!(counters_of(&first), before, "the first read's counters");

    echo_traffic(&lab, 7);
    let after = services_only(settled(10, 10));
    ipvsadm_line(&format!("-A -t {} -s rr", &MARKER[4..]));
    let mut reads = Vec::new();
    loop {
        let mut r = watcher.read();
        let last = r.services.remove(MARKER).is_some();
        reads.push(r);
        if last {
            break;
        }
    }
    drop(watcher);
    assert_eq!(
        services_only(kernel_counters()),
        after,
        "the counters moved after they settled"
    );
    let last = reads.last().unwrap();
    assert_eq!(counters_of(last), after, "the last read's counters");

    let mut sums: BTreeMap<String, [f64; 5]> = BTreeMap::new();
    for r in &reads {
        let secs = r.interval.expect("an interval after the first read");
        assert!(secs > 0.0);
        for (key, (_, rates)) in &r.services {
            let rates = rates.unwrap_or_else(|| panic!("no rates for {key}"));
            let s = sums.entry(key.clone()).or_default();
            for i in 0..5 {
                assert!(rates[i] >= 0.0);
                s[i] += rates[i] * secs;
            }
        }
    }
    assert!(after["TCP 10.97.97.97:80"][1] > before["TCP 10.97.97.97:80"][1]);
    // Rates are printed to 0.0005, intervals to 0.0000005 s.
    let slack =
        0.001 * reads.len() as f64 * reads.iter().filter_map(|r| r.interval).fold(1.0, f64::max);
    for (key, b) in &before {
        let a = after[key];
        let sum = sums.get(key).copied().unwrap_or([0.0; 5]);
        for i in 0..5 {
            let want = (a[i] - b[i]) as f64;
            assert!(
                (sum[i] - want).abs() <= slack + 1e-6 * want,
                "{key} counter {i}: rates x intervals add up to {} where the kernel counted {want}",
                sum[i]
            );
        }
    }
    ipvsadm_line(&format!("-D -t {}", &MARKER[4..]));
}

/// ipvs-plan's `declare` example (ipvs-plan/examples/declare.rs) with
/// `args`, the wanted table `json` in a file; its exit code and stdout.
fn declare(json: &str, args: &[&str]) -> (Option<i32>, String) {
    let path = std::env::temp_dir().join(format!("declare-{}.json", std::process::id()));
    std::fs::write(&path, json).unwrap();
    let out = Command::new("/examples/declare")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run /examples/declare: {e}"));
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8(out.stdout).unwrap();
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), stdout)
}

/// The real ipvsadm's `-Sn`, its lines sorted (services are listed in
/// the kernel's hash order).
fn saved_lines() -> Vec<String> {
    let mut lines: Vec<String> = vm_tests::ipvsadm_ok(&["-Sn"])
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// What `declare` is given: a table document in the schema of
/// `ipvsadm-rs -Ln --json`, services on 10.97.97.97 only; the counters
/// and members it does not need left out, as a person writes one.
const DECLARED: &str = r#"{"schema": "ipvsadm-rs/v2", "services": [
  {"protocol": "tcp", "address": "10.97.97.97", "port": 80, "scheduler": "wrr",
   "destinations": [
     {"address": "10.244.1.39", "port": 80, "forward": "masquerade", "weight": 3},
     {"address": "10.244.1.41", "port": 80, "forward": "route", "weight": 1,
      "upper_threshold": 100, "lower_threshold": 10}]},
  {"protocol": "udp", "address": "10.97.97.97", "port": 53, "scheduler": "sh",
   "flags": ["sh-fallback"],
   "destinations": [
     {"address": "10.0.0.53", "port": 53, "forward": "tunnel", "weight": 2,
      "tunnel": {"type": "gue", "port": 6080, "flags": ["csum"]}}]}
]}"#;

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn declare_makes_the_declared_table_and_leaves_other_addresses_alone() {
    vm_tests::enter_fresh_netns().unwrap();
    ipvsadm_lines(&[
        // Ours (on 10.97.97.97): edited, one real server gone, one service gone.
        "-A -t 10.97.97.97:80 -s rr",
        "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 1",
        "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 1",
        "-A -t 10.97.97.97:443 -s rr",
        // Another tool's: never touched.
        "-A -t 10.9.9.9:80 -s rr",
        "-a -t 10.9.9.9:80 -r 10.244.1.40:80 -m -w 1",
    ]);
    let (code, out) = declare(DECLARED, &[]);
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    // Edit the service, delete .40, edit .39, add .41; add the UDP service
    // and its real server; delete :443.
    assert_eq!(lines.last(), Some(&"7 writes, 0 failed"), "{out}");
    assert_eq!(lines.len(), 8, "{out}");
    assert!(lines[..7].iter().all(|l| l.starts_with("ok ")), "{out}");

    let mut want = vec![
        "-A -t 10.97.97.97:80 -s wrr",
        "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 3",
        "-a -t 10.97.97.97:80 -r 10.244.1.41:80 -g -w 1",
        "-A -u 10.97.97.97:53 -s sh -b sh-fallback",
        "-a -u 10.97.97.97:53 -r 10.0.0.53:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum",
        "-A -t 10.9.9.9:80 -s rr",
        "-a -t 10.9.9.9:80 -r 10.244.1.40:80 -m -w 1",
    ];
    want.sort();
    assert_eq!(saved_lines(), want);
    // -S leaves the thresholds out: the listing of them shows them.
    let thresholds = vm_tests::ipvsadm_ok(&["-Ln", "--thresholds"]);
    let line = thresholds
        .lines()
        .find(|l| l.contains("10.244.1.41:80"))
        .unwrap_or_else(|| panic!("no 10.244.1.41:80 in:\n{thresholds}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[2..4], ["100", "10"], "{thresholds}");

    // Declared again: nothing to write.
    let (code, out) = declare(DECLARED, &[]);
    assert_eq!((code, out.as_str()), (Some(0), "0 writes, 0 failed\n"));
    assert_eq!(saved_lines(), want);

    // Owning 10.97.97.97 only, a wanted service another tool holds is a
    // conflict, left alone.
    let more = DECLARED.replace(
        "\n]}",
        r#",{"protocol": "tcp", "address": "10.9.9.9", "port": 80, "scheduler": "wlc"}]}"#,
    );
    let (code, out) = declare(&more, &["--own", "10.97.97.97"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "conflict TCP 10.9.9.9:80\n0 writes, 0 failed\n")
    );
    assert_eq!(saved_lines(), want);
    // By default the file owns the addresses it names: the service is
    // edited and its real server removed.
    let (code, out) = declare(&more, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.lines().last(), Some("2 writes, 0 failed"), "{out}");
    let now = saved_lines();
    assert!(
        now.contains(&"-A -t 10.9.9.9:80 -s wlc".to_owned()),
        "{now:?}"
    );
    assert!(
        !now.iter().any(|l| l.starts_with("-a -t 10.9.9.9:80")),
        "{now:?}"
    );

    // A file with a service twice is refused before any write.
    let twice = r#"{"services": [
        {"protocol": "tcp", "address": "10.9.9.9", "port": 80, "scheduler": "rr"},
        {"protocol": "tcp", "address": "10.9.9.9", "port": 80, "scheduler": "sh"}]}"#;
    let before = saved_lines();
    let (code, out) = declare(twice, &[]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert_eq!(saved_lines(), before);
    vm_tests::ipvsadm_ok(&["-C"]);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn declare_drains_a_real_server_that_still_has_a_connection() {
    let mut lab = Lab::new(&["10.97.97.97"]);
    ipvsadm_lines(&[
        "-A -t 10.97.97.97:7001 -s rr",
        "-a -t 10.97.97.97:7001 -r 10.244.1.39:7001 -m -w 1",
        "-a -t 10.97.97.97:7001 -r 10.244.1.40:7001 -m -w 1",
    ]);
    lab.tcp("10.97.97.97:7001".parse().unwrap(), |s| {
        use std::io::Write;
        s.write_all(b"x").is_ok()
    })
    .unwrap();
    // Which real server holds the connection, as the real ipvsadm lists
    // it (`-> ADDRESS Masq WEIGHT ACTIVE INACTIVE`).
    let listing = vm_tests::ipvsadm_ok(&["-Ln"]);
    let active: Vec<(String, String)> = listing
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first() == Some(&"->") && w.len() == 6)
        .map(|w| (w[1].to_owned(), w[4].to_owned()))
        .collect();
    let held: Vec<&str> = active
        .iter()
        .filter(|(_, n)| n == "1")
        .map(|(a, _)| a.as_str())
        .collect();
    let [held] = held[..] else {
        panic!("not one real server with the connection:\n{listing}")
    };
    let idle = if held == "10.244.1.39:7001" {
        "10.244.1.40:7001"
    } else {
        "10.244.1.39:7001"
    };

    // Neither is wanted any more; a third one is.
    let json = r#"{"services": [{"protocol": "tcp", "address": "10.97.97.97", "port": 7001,
        "scheduler": "rr", "destinations": [
          {"address": "10.244.2.33", "port": 7001, "forward": "masquerade", "weight": 1}]}]}"#;
    let (code, out) = declare(json, &["--drain"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("draining TCP 10.97.97.97:7001 -> {held}\n")),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("3 writes, 0 failed"), "{out}");
    let mut want = vec![
        "-A -t 10.97.97.97:7001 -s rr".to_owned(),
        format!("-a -t 10.97.97.97:7001 -r {held} -m -w 0"),
        "-a -t 10.97.97.97:7001 -r 10.244.2.33:7001 -m -w 1".to_owned(),
    ];
    want.sort();
    assert_eq!(saved_lines(), want, "{idle} deleted, {held} drained");

    // While the connection lasts, planning again writes nothing and the
    // server still drains.
    let (code, out) = declare(json, &["--drain"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        format!("draining TCP 10.97.97.97:7001 -> {held}\n0 writes, 0 failed\n")
    );
    assert_eq!(saved_lines(), want);
    drop(lab);
}

/// The rows of `list`'s table: per service (`TCP 10.97.97.97:80`) and
/// real server (`TCP 10.97.97.97:80 -> 10.244.1.39:80`) its cells after
/// the first.
fn list_rows(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut rows = BTreeMap::new();
    let mut service = String::new();
    // The first row is the header.
    for line in text.lines().filter(|l| l.starts_with('│')).skip(1) {
        let cells: Vec<String> = line
            .trim_matches('│')
            .split('┆')
            .map(|c| c.trim().to_owned())
            .collect();
        let key = match cells[0].strip_prefix("-> ") {
            Some(addr) => format!("{service} -> {addr}"),
            None => {
                service = cells[0].clone();
                service.clone()
            }
        };
        rows.insert(key, cells[1..].to_vec());
    }
    rows
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn list_shows_the_kernels_table_and_counters() {
    let lab = Lab::new(&["10.97.97.97", "10.97.97.98"]);
    ipvsadm_lines(COUNTED_TABLE);
    echo_traffic(&lab, 3);
    let counters = settled(3, 3);
    let out = Command::new("/examples/list")
        .output()
        .unwrap_or_else(|e| panic!("cannot run /examples/list: {e}"));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let rows = list_rows(&text);
    // Every service and real server the real ipvsadm lists, no other,
    // with its counters.
    let keys: Vec<&String> = rows.keys().collect();
    assert_eq!(keys, counters.keys().collect::<Vec<_>>(), "{text}");
    for (key, want) in &counters {
        let cells = &rows[key];
        let got: Vec<u64> = cells[4..9].iter().map(|c| c.parse().unwrap()).collect();
        assert_eq!(got, want, "{key} in:\n{text}");
    }
    // Schedulers, forwarding methods and weights as the real ipvsadm
    // lists them (`-Ln`: `-> ADDRESS Masq WEIGHT ACTIVE INACTIVE`).
    let listing = vm_tests::ipvsadm_ok(&["-Ln"]);
    let mut service = String::new();
    for line in listing.lines().skip(3) {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["->", addr, fwd, weight, ..] => {
                let cells = &rows[&format!("{service} -> {addr}")];
                assert_eq!(cells[..2], [*fwd, *weight], "{addr} in:\n{text}");
            }
            [proto, addr, sched, ..] => {
                service = format!("{proto} {addr}");
                assert_eq!(rows[&service][0], *sched, "{service} in:\n{text}");
            }
            _ => panic!("a line of ipvsadm -Ln: {line:?}"),
        }
    }
    drop(lab);
}
