//! ipvs-netlink's examples, built for musl by vm-tests/run.sh and run
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
