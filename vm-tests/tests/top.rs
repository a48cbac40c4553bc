//! `ipvsadm-rs --top` on the real kernel with real traffic (see
//! `vm_tests::lab`): the rates of its `--json` and `--batch` frames,
//! times their intervals, add up to the difference of the kernel's
//! counters as the real ipvsadm lists them (`-Ln --stats --exact`)
//! before the first frame and after the last; the first frame's counters
//! are the ones before, the last frame's the ones after.
//!
//! The kernel folds its per-CPU counters into the ones it reports when
//! its estimator runs (every 2 s), so "before" and "after" are read once
//! the counters have settled: the connection counts are the ones made,
//! and two reads an estimator period apart agree. No assertion is timed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use vm_tests::lab::{
    echo_traffic as traffic, ipvsadm_lines as apply, kernel_counters, settled, Counters, Lab,
    COUNTED_TABLE as TABLE,
};
use vm_tests::{ipvsadm, ipvsadm_rs, run_as};

/// `ipvsadm-rs --top` with `args`, its frames read line by line.
struct Top {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Top {
    fn start(args: &[&str]) -> Top {
        let mut child = Command::new(ipvsadm_rs())
            .arg("--top")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ipvsadm-rs --top: {e}"));
        let out = child.stdout.take().unwrap();
        Top {
            child,
            lines: BufReader::new(out).lines(),
        }
    }

    fn line(&mut self) -> String {
        match self.lines.next() {
            Some(Ok(l)) => l,
            other => panic!("ipvsadm-rs --top ended: {other:?}"),
        }
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The counters and the rates (per second, `None` where unknown) of one
/// JSON frame, by the keys of [`Counters`], and its interval.
type Rated = BTreeMap<String, ([u64; 5], Option<[f64; 5]>)>;

fn json_frame(line: &str) -> (Option<f64>, Rated, Value) {
    let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let counters = |v: &Value| -> [u64; 5] {
        [
            "conns",
            "in_packets",
            "out_packets",
            "in_bytes",
            "out_bytes",
        ]
        .map(|k| v["stats"][k].as_u64().unwrap_or_else(|| panic!("{k}: {v}")))
    };
    let rates = |v: &Value| -> Option<[f64; 5]> {
        let r = &v["rates"];
        if r.is_null() {
            return None;
        }
        Some(
            [
                "conns",
                "in_packets",
                "out_packets",
                "in_bytes",
                "out_bytes",
            ]
            .map(|k| r[k].as_f64().unwrap_or_else(|| panic!("rates {k}: {v}"))),
        )
    };
    let mut out = Rated::new();
    for s in doc["services"].as_array().unwrap() {
        let key = format!(
            "{} {}:{}",
            s["protocol"].as_str().unwrap().to_uppercase(),
            s["address"].as_str().unwrap(),
            s["port"]
        );
        out.insert(key.clone(), (counters(s), rates(s)));
        for d in s["destinations"].as_array().unwrap() {
            let dkey = format!("{key} -> {}:{}", d["address"].as_str().unwrap(), d["port"]);
            out.insert(dkey, (counters(d), rates(d)));
        }
    }
    (doc["interval_seconds"].as_f64(), out, doc)
}

/// The service added once the counters settled: the first frame that
/// lists it was read after they did.
const MARKER: &str = "TCP 10.97.97.99:1";

fn add_marker() {
    apply(&["-A -t 10.97.97.99:1 -s rr"]);
}

fn remove_marker() {
    apply(&["-D -t 10.97.97.99:1"]);
}

/// The kernel's counters, the marker's left out.
fn kernel_counters_but_marker() -> Counters {
    let mut c = kernel_counters();
    c.remove(MARKER);
    c
}

fn assert_sums(
    what: &str,
    before: &Counters,
    after: &Counters,
    sums: &BTreeMap<String, [f64; 5]>,
    tolerance: &dyn Fn(usize, f64) -> f64,
) {
    for (key, b) in before {
        let a = after[key];
        let sum = sums.get(key).copied().unwrap_or([0.0; 5]);
        for i in 0..5 {
            let want = (a[i] - b[i]) as f64;
            assert!(
                (sum[i] - want).abs() <= tolerance(i, want),
                "{what}: {key} counter {i}: rates x intervals add up to {} where the kernel counted {want} ({b:?} -> {a:?})",
                sum[i]
            );
        }
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn json_and_batch_rates_are_the_kernel_counters_over_the_intervals() {
    let lab = Lab::new(&["10.97.97.97", "10.97.97.98"]);
    apply(TABLE);
    traffic(&lab, 3);
    let before = settled(3, 3);

    // --json: the first frame holds the counters before.
    let mut top = Top::start(&["--json", "--interval", "1"]);
    let (interval, first, doc) = json_frame(&top.line());
    assert_eq!(interval, None);
    assert!(
        first.values().all(|(_, r)| r.is_none()),
        "rates in the first frame: {first:?}"
    );
    let counters_of =
        |f: &Rated| -> Counters { f.iter().map(|(k, (c, _))| (k.clone(), *c)).collect() };
    assert_eq!(counters_of(&first), before, "the first frame's counters");
    // The schema of `-Ln --json`, and `rates` added.
    let listing = run_as(&ipvsadm_rs(), "ipvsadm-rs", &["-Ln", "--json"], b"");
    let listing: Value = serde_json::from_slice(&listing.stdout).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let mut want = keys(&listing["services"][0]);
    want.push("rates".into());
    want.sort();
    assert_eq!(keys(&doc["services"][0]), want);
    assert_eq!(doc["schema"], listing["schema"]);

    traffic(&lab, 7);
    let after = settled(10, 10);
    add_marker();
    let mut frames = Vec::new();
    // Every frame up to the first that lists the marker.
    loop {
        let mut f = json_frame(&top.line());
        let last = f.1.remove(MARKER).is_some();
        frames.push(f);
        if last {
            break;
        }
    }
    drop(top);
    assert_eq!(
        kernel_counters_but_marker(),
        after,
        "the counters moved after they settled"
    );
    remove_marker();
    let (_, last, _) = frames.last().unwrap();
    assert_eq!(counters_of(last), after, "the last frame's counters");
    let mut sums: BTreeMap<String, [f64; 5]> = BTreeMap::new();
    for (interval, f, _) in &frames {
        let secs = interval.expect("an interval after the first frame");
        for (key, (_, rates)) in f {
            let r = rates.unwrap_or_else(|| panic!("no rates for {key}"));
            assert!(r.iter().all(|v| *v >= 0.0), "{key}: {r:?}");
            let s = sums.entry(key.clone()).or_default();
            for i in 0..5 {
                s[i] += r[i] * secs;
            }
        }
    }
    assert!(after["TCP 10.97.97.97:80"][1] > before["TCP 10.97.97.97:80"][1]);
    assert_sums("--json", &before, &after, &sums, &|_, want| {
        1e-6 * want.max(1.0)
    });
    println!("--json: {} frames after the first", frames.len());

    // --batch: the same, through the plain-text table (one decimal).
    let before = after;
    let mut top = Top::start(&["--batch", "--interval", "1"]);
    let read_frame = |top: &mut Top| -> (Option<f64>, BTreeMap<String, Option<[f64; 5]>>) {
        // Shown with --nocapture (docs/top.md's frame is one of them).
        let heading = top.line();
        println!("{heading}");
        let interval = heading
            .split("interval ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        let titles = top.line();
        println!("{titles}");
        assert!(titles.split_whitespace().next() == Some("Prot"), "{titles}");
        let mut rows = BTreeMap::new();
        let mut service = String::new();
        loop {
            let line = top.line();
            println!("{line}");
            if line.is_empty() {
                break;
            }
            let w: Vec<&str> = line.split_whitespace().collect();
            let key = if w[0] == "->" {
                format!("{service} -> {}", w[1])
            } else {
                service = format!("{} {}", w[0], w[1]);
                service.clone()
            };
            let rates = (w[6] != "-").then(|| {
                std::array::from_fn(|i| {
                    w[6 + i]
                        .parse::<f64>()
                        .unwrap_or_else(|e| panic!("{line}: {e}"))
                })
            });
            rows.insert(key, rates);
        }
        (interval, rows)
    };
    let (interval, first) = read_frame(&mut top);
    assert_eq!(interval, None);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    traffic(&lab, 5);
    let after = settled(15, 15);
    add_marker();
    let mut frames = Vec::new();
    loop {
        let mut f = read_frame(&mut top);
        let last = f.1.remove(MARKER).is_some();
        frames.push(f);
        if last {
            break;
        }
    }
    drop(top);
    assert_eq!(
        kernel_counters_but_marker(),
        after,
        "the counters moved after they settled"
    );
    let mut sums: BTreeMap<String, [f64; 5]> = BTreeMap::new();
    let n = frames.len() as f64;
    for (interval, rows) in &frames {
        let secs = interval.expect("an interval after the first frame");
        for (key, rates) in rows {
            let r = rates.unwrap_or_else(|| panic!("no rates for {key}"));
            let s = sums.entry(key.clone()).or_default();
            for i in 0..5 {
                s[i] += r[i] * secs;
            }
        }
    }
    // Each rate is rounded to 0.05 and each interval to 0.0005 s.
    assert_sums("--batch", &before, &after, &sums, &|_, want| {
        n * 0.06 + want * 0.001 * n
    });
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn services_of_the_state_file_are_marked() {
    use ipvs_k8s::ownership::{render, Recorded, Records};
    use ipvs_netlink::ServiceId;
    vm_tests::enter_fresh_netns().unwrap();
    apply(TABLE);
    let owned = ServiceId::udp("10.97.97.97:53".parse().unwrap());
    let records: Records = [(owned, Recorded::Unknown)].into();
    let dir = std::env::temp_dir().join("top-state");
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("k8s-owned");
    std::fs::write(&state, render(&records)).unwrap();
    let state = state.to_str().unwrap();
    let out = run_as(
        &ipvsadm_rs(),
        "ipvsadm-rs",
        &["--top", "--json", "--count", "1", "--state", state],
        b"",
    );
    assert_eq!(out.code, Some(0), "{out}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in doc["services"].as_array().unwrap() {
        let is_owned = s["protocol"] == "udp";
        assert_eq!(s.get("kubernetes").is_some(), is_owned, "{s}");
    }
    let out = run_as(
        &ipvsadm_rs(),
        "ipvsadm-rs",
        &["--top", "--count", "1", "--state", state],
        b"",
    );
    assert_eq!(out.code, Some(0), "{out}");
    let text = String::from_utf8_lossy(&out.stdout);
    let marked: Vec<&str> = text.lines().filter(|l| l.ends_with("from-k8s")).collect();
    assert_eq!(marked.len(), 1, "{text}");
    let words: Vec<&str> = marked[0].split_whitespace().take(2).collect();
    assert_eq!(words, ["UDP", "10.97.97.97:53"], "{text}");
    // A --state file that is not there is an error, named.
    let out = run_as(
        &ipvsadm_rs(),
        "ipvsadm-rs",
        &["--top", "--count", "1", "--state", "/nonexistent/state"],
        b"",
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/state"),
        "{out}"
    );
}

/// Wall time of `tool args` (output to /dev/null), process start included.
fn wall(tool: &std::path::Path, args: &[&str]) -> f64 {
    let start = std::time::Instant::now();
    let status = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", tool.display()));
    assert!(status.success(), "{} {args:?}: {status}", tool.display());
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What one refresh of `--top` costs at 10,000 services of 4 real
/// servers, beside one `-Ln` of both tools on the same table: printed,
/// never asserted (a measurement, not a test). Run on its own:
/// `VM_TEST_ARGS="--ignored refresh_cost" vm-tests/run.sh tests`.
#[test]
#[ignore = "a measurement: VM_TEST_ARGS=\"--ignored refresh_cost\" vm-tests/run.sh tests"]
fn refresh_cost_at_10000_services() {
    use std::io::Write;
    let services = std::env::var("TOP_COST_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000usize);
    vm_tests::enter_fresh_netns().unwrap();
    let mut rules = String::new();
    for i in 0..services {
        let vip = format!("10.{}.{}.{}:80", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        rules.push_str(&format!("-A -t {vip} -s rr\n"));
        for j in 1..=4 {
            rules.push_str(&format!("-a -t {vip} -r 172.16.{}.{j}:8080 -m\n", i % 250));
        }
    }
    let out = run_as(&ipvsadm(), "ipvsadm", &["-R"], rules.as_bytes());
    assert_eq!(out.code, Some(0), "{out}");
    let rounds = 5;
    let (mut theirs, mut ours, mut top_json, mut top_batch, mut reads) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        theirs.push(wall(&ipvsadm(), &["-Ln"]));
        ours.push(wall(&ipvsadm_rs(), &["-Ln"]));
        top_json.push(wall(&ipvsadm_rs(), &["--top", "--json", "--count", "1"]));
        top_batch.push(wall(&ipvsadm_rs(), &["--top", "--batch", "--count", "1"]));
        // The read alone, as the frames report it (the second frame's
        // read is one refresh of a running view).
        let out = run_as(
            &ipvsadm_rs(),
            "ipvsadm-rs",
            &["--top", "--json", "--count", "2", "--interval", "0.1"],
            b"",
        );
        assert_eq!(out.code, Some(0), "{out}");
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default();
        let doc: Value = serde_json::from_str(last).unwrap();
        assert_eq!(doc["services"].as_array().map(Vec::len), Some(services));
        reads.push(doc["read_seconds"].as_f64().unwrap());
    }
    let mut log = std::io::stdout().lock();
    let ms = |v: Vec<f64>| median(v) * 1000.0;
    let _ = writeln!(
        log,
        "TOP-COST services={services} rounds={rounds} (medians, ms): \
         ipvsadm -Ln {:.1}; ipvsadm-rs -Ln {:.1}; one refresh (read) {:.1}; \
         ipvsadm-rs --top --json --count 1 {:.1}; ipvsadm-rs --top --batch --count 1 {:.1}",
        ms(theirs),
        ms(ours),
        ms(reads),
        ms(top_json),
        ms(top_batch),
    );
}

/// Runs Debian's tmux (staged into the VM at /usr/bin/tmux, with the
/// C.UTF-8 locale it needs) on the server of socket /tmp/top-tmux.
fn tmux(args: &[&str]) -> vm_tests::Outcome {
    let out = Command::new("/usr/bin/tmux")
        .args(["-u", "-S", "/tmp/top-tmux"])
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tmux: {e}"));
    vm_tests::Outcome {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// The pane's text, line by line, trailing blanks cut.
fn pane() -> Vec<String> {
    let out = tmux(&["capture-pane", "-p", "-t", "top"]);
    assert_eq!(out.code, Some(0), "{out}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// The rows of the table on the screen (between the titles and the keys
/// line), as the first six cells of the batch frame: protocol or `->`,
/// address, scheduler or method, weight, active, inactive.
fn screen_rows(screen: &[String]) -> Vec<Vec<String>> {
    screen
        .iter()
        .skip_while(|l| !l.starts_with("Prot LocalAddress:Port"))
        .skip(1)
        .take_while(|l| !l.starts_with("q quit"))
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().take(6).map(str::to_owned).collect())
        .collect()
}

/// Captures the pane until `ready` holds of it (polled; never a clock).
fn screen_when(what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut last = Vec::new();
    for _ in 0..300 {
        last = pane();
        if ready(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the screen never showed {what}:\n{}", last.join("\n"));
}

fn keys(keys: &[&str]) {
    let mut args = vec!["send-keys", "-t", "top"];
    args.extend_from_slice(keys);
    let out = tmux(&args);
    assert_eq!(out.code, Some(0), "{out}");
}

/// Pseudo-terminals for tmux.
fn ptys() {
    if !std::path::Path::new("/dev/pts/ptmx").exists() {
        std::fs::create_dir_all("/dev/pts").unwrap();
        vm_tests::sh("mount -t devpts devpts /dev/pts");
    }
}

/// Starts `ipvsadm-rs --top --interval SECS` in tmux session `top` of a
/// 150 x 20 terminal (a session left by a failed test ended first).
fn start_in_tmux(interval: &str) {
    ptys();
    let _ = tmux(&["kill-server"]);
    let command = format!("{} --top --interval {interval}", ipvsadm_rs().display());
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "20",
        &command,
    ]);
    assert_eq!(out.code, Some(0), "{out}");
}

/// Quits the view with `q`; the session ends with the program.
fn quit() {
    keys(&["q"]);
    for _ in 0..300 {
        if tmux(&["has-session", "-t", "top"]).code != Some(0) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("q did not end --top:\n{}", pane().join("\n"));
}

/// The docs' picture of the view (docs/top-view.svg, made by
/// scripts/screenshot.sh from this test's output): the counted table
/// under traffic, paused, drawn from tmux's capture with its attributes;
/// the image's text is tmux's plain capture of the same screen, line for
/// line.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_screenshot_is_the_screen() {
    let lab = Lab::new(&["10.97.97.97", "10.97.97.98"]);
    apply(TABLE);
    start_in_tmux("1");
    let rows = TABLE.len();
    screen_when("the table", |s| screen_rows(s).len() == rows);
    // Traffic until a frame shows it as rates (conn/s above 0).
    let moving = |s: &[String]| {
        s.iter().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.len() > 7 && cells[0] == "TCP" && cells[6].parse::<f64>().is_ok_and(|r| r > 0.0)
        })
    };
    for _ in 0..30 {
        traffic(&lab, 3);
        if moving(&pane()) {
            break;
        }
    }
    keys(&["p"]);
    let plain = screen_when("the view paused", |s| s[0].contains("PAUSED"));
    assert!(
        moving(&plain),
        "no rates on the screen:\n{}",
        plain.join("\n")
    );
    let out = tmux(&["capture-pane", "-p", "-e", "-t", "top"]);
    assert_eq!(out.code, Some(0), "{out}");
    let capture = String::from_utf8_lossy(&out.stdout).into_owned();
    let image = vm_tests::screenshot::svg(&capture, 150, "ipvsadm-rs --top");
    assert_eq!(vm_tests::screenshot::text_lines(&image), plain);
    assert!(
        image.contains("<rect x="),
        "the reversed title row is drawn: {image}"
    );
    println!("--- top-view.svg ---\n{image}--- end of top-view.svg ---");
    quit();
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_screen_shows_what_the_batch_frame_shows() {
    vm_tests::enter_fresh_netns().unwrap();
    apply(TABLE);
    // The batch frame: its rows' first six cells.
    let out = run_as(
        &ipvsadm_rs(),
        "ipvsadm-rs",
        &["--top", "--batch", "--count", "1"],
        b"",
    );
    assert_eq!(out.code, Some(0), "{out}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let batch: Vec<Vec<String>> = text
        .lines()
        .skip(2)
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().take(6).map(str::to_owned).collect())
        .collect();
    assert_eq!(batch.len(), 7, "{text}");

    start_in_tmux("0.5");
    // Until the rows are the batch frame's: a capture may catch the
    // terminal mid-draw (a row cut after "  -> 10.244", 6.1, 2026-12-07).
    let screen = screen_when("the batch frame's rows", |s| screen_rows(s) == batch);
    assert!(
        screen[0].starts_with("ipvsadm-rs --top  3 services"),
        "{}",
        screen.join("\n")
    );
    assert_eq!(screen_rows(&screen), batch, "{}\n{text}", screen.join("\n"));

    // Sort by weight (two columns on): the services by the sum of their
    // real servers' weights as the batch frame lists them, largest first.
    let services = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter().filter(|r| r[0] != "->").cloned().collect()
    };
    let mut by_weight = services(&batch);
    by_weight.sort_by_key(|r| std::cmp::Reverse(r[3].parse::<u64>().unwrap()));
    keys(&[">", ">"]);
    let screen = screen_when("the sort by weight", |s| {
        s[0].contains("sort Weight") && services(&screen_rows(s)) == by_weight
    });
    assert_eq!(
        services(&screen_rows(&screen)),
        by_weight,
        "{}",
        screen.join("\n")
    );

    // Collapse all, expand all.
    keys(&["c"]);
    let screen = screen_when("every service collapsed", |s| screen_rows(s).len() == 3);
    assert!(
        screen_rows(&screen).iter().all(|r| r[0] != "->"),
        "{}",
        screen.join("\n")
    );
    keys(&["e"]);
    screen_when("every service expanded", |s| {
        screen_rows(s).len() == batch.len()
    });

    // Back to ipvsadm's order, then filter on udp.
    keys(&["<", "<"]);
    keys(&["/"]);
    keys(&["-l", "udp"]);
    keys(&["Enter"]);
    let udp: Vec<Vec<String>> = batch
        .iter()
        .skip_while(|r| r[0] != "UDP")
        .take(2)
        .cloned()
        .collect();
    let screen = screen_when("the filter", |s| {
        screen_rows(s) == udp && s[0].contains("filter: udp")
    });
    assert_eq!(screen_rows(&screen), udp, "{}", screen.join("\n"));
    assert!(screen[0].contains("filter: udp"), "{}", screen.join("\n"));

    // The help, then quit: the session ends with the program.
    keys(&["?"]);
    screen_when("the help", |s| {
        s.iter().any(|l| l.contains("q, Ctrl-C     quit"))
    });
    keys(&["x"]);
    quit();
}
