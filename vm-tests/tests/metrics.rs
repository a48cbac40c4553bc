//! `ipvsadm-rs --metrics` against the kernel, with real traffic in the
//! table (`vm_tests::lab`): the scrape, read by an independent parser of
//! the text format (prometheus-parse), carries node_exporter's totals
//! with the values of /proc/net/ip_vs_stats, node_exporter's per-backend
//! gauges with those of /proc/net/ip_vs (labels as node_exporter makes
//! them from that file), and per-service and per-real-server counters
//! equal to the real `ipvsadm -Ln --stats --exact`. The table is left
//! still first (no traffic, the estimator's last fold seen twice), and
//! each comparison is made between two equal readings of the truths.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use prometheus_parse::{Sample, Value};
use vm_tests::exporter::Exporter;
use vm_tests::lab::{echo_once, Lab};
use vm_tests::{ipvsadm, run_as};

const TABLE: &[&str] = &[
    "-A -t 10.97.97.97:80 -s rr",
    "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 3",
    "-a -t 10.97.97.97:80 -r 10.244.2.33:80 -m -w 0",
    "-A -u 10.97.97.97:53 -s rr",
    "-a -u 10.97.97.97:53 -r 10.244.1.39:53 -m",
    "-a -u 10.97.97.97:53 -r 10.244.2.33:53 -m",
    "-A -f 42 -s lc",
    "-a -f 42 -r 10.244.1.39:80 -g -w 5",
    "-A -t [2001:db8::1]:443 -s wlc",
    "-a -t [2001:db8::1]:443 -r [2001:db8::10]:8443 -m -w 2",
    "-A --sctp-service 10.97.97.98:5672 -s rr",
];

fn vip(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ipvsadm_ok(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let out = run_as(&ipvsadm(), "ipvsadm", &words, b"");
    assert_eq!(out.code, Some(0), "`ipvsadm {line}` failed:\n{out}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn make_traffic(lab: &mut Lab) {
    for _ in 0..6 {
        lab.client
            .run(|| echo_once(&vip("10.97.97.97:80")))
            .unwrap_or_else(|e| panic!("echo through 10.97.97.97:80: {e}"));
    }
    // Held open: active connections.
    for _ in 0..2 {
        lab.tcp(vip("10.97.97.97:80"), |s| {
            use std::io::{Read, Write};
            let mut buf = [0u8; 5];
            s.write_all(b"ping\n").is_ok() && s.read_exact(&mut buf).is_ok()
        })
        .unwrap_or_else(|e| panic!("held connection: {e}"));
    }
    for _ in 0..3 {
        let echo = lab
            .udp(vip("10.97.97.97:53"), b"metrics")
            .unwrap_or_else(|e| panic!("UDP through 10.97.97.97:53: {e}"));
        assert_eq!(echo, b"metrics");
    }
}

/// The truths, read together: /proc/net/ip_vs_stats, /proc/net/ip_vs (of
/// this thread's namespace: /proc/net is the main thread's) and
/// `ipvsadm -Ln --stats --exact`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Truths {
    stats: String,
    table: String,
    listing: String,
}

fn truths() -> Truths {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    Truths {
        stats: read("/proc/thread-self/net/ip_vs_stats"),
        table: read("/proc/thread-self/net/ip_vs"),
        listing: ipvsadm_ok("-Ln --stats --exact"),
    }
}

/// Waits until the traffic is counted and the table is still: the same
/// truths twice, an estimator period (2 s) apart.
fn still_truths() -> Truths {
    let mut last = truths();
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let now = truths();
        let counted = listing_counters(&now.listing)
            .0
            .values()
            .any(|v| v[0] > 0.0)
            && proc_totals(&now.stats)[0] > 0.0
            && !proc_backends(&now.table).is_empty();
        if now == last && counted {
            return now;
        }
        last = now;
    }
    panic!("the table never kept still:\n{last:?}");
}

fn parse(body: &str) -> Vec<Sample> {
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("the scrape does not parse: {e}"))
        .samples
}

type Labels = BTreeMap<String, String>;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Counter(n) | Value::Gauge(n) | Value::Untyped(n) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

/// The samples of `name`, by their labels.
fn series(samples: &[Sample], name: &str) -> BTreeMap<Labels, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.metric == name) {
        let key: Labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let old = out.insert(key, number(&s.value));
        assert!(old.is_none(), "{name} twice with {:?}", s.labels);
    }
    out
}

/// /proc/net/ip_vs_stats's totals, as procfs reads them (hex, third line).
fn proc_totals(text: &str) -> Vec<f64> {
    let line = text.lines().nth(2).unwrap_or_else(|| panic!("{text}"));
    line.split_whitespace()
        .map(|w| u64::from_str_radix(w, 16).unwrap_or_else(|e| panic!("{w}: {e}")) as f64)
        .collect()
}

/// An address and port of /proc/net/ip_vs: `0A616161:0050` (IPv4 in hex)
/// or `[2001:0db8:...]:01BB` (IPv6).
fn proc_addr(word: &str) -> (IpAddr, u16) {
    let (addr, port) = word.rsplit_once(':').unwrap_or_else(|| panic!("{word}"));
    let port = u16::from_str_radix(port, 16).unwrap_or_else(|e| panic!("{word}: {e}"));
    let ip = if let Some(v6) = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        IpAddr::V6(
            v6.parse::<Ipv6Addr>()
                .unwrap_or_else(|e| panic!("{word}: {e}")),
        )
    } else {
        IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).unwrap_or_else(|e| panic!("{word}: {e}")),
        ))
    };
    (ip, port)
}

/// node_exporter's backend series from /proc/net/ip_vs, as its collector
/// makes them: labels to (active, inactive, weight).
fn proc_backends(text: &str) -> BTreeMap<Labels, (f64, f64, f64)> {
    let mut out = BTreeMap::new();
    let (mut local, mut port, mut proto, mut mark) =
        (String::new(), String::new(), String::new(), String::new());
    for line in text.lines().skip(3) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[..] {
            ["FWM", m, ..] => {
                (local, port, proto, mark) = (String::new(), "0".into(), "FWM".into(), m.into());
            }
            ["->", remote, _fwd, weight, active, inactive] => {
                let (raddr, rport) = proc_addr(remote);
                let key = labels(&[
                    ("local_address", local.clone()),
                    ("local_port", port.clone()),
                    ("remote_address", raddr.to_string()),
                    ("remote_port", rport.to_string()),
                    ("proto", proto.clone()),
                    ("local_mark", mark.clone()),
                ]);
                let n = |s: &str| s.parse::<f64>().unwrap_or_else(|e| panic!("{line}: {e}"));
                out.insert(key, (n(active), n(inactive), n(weight)));
            }
            [p, addr, ..] => {
                let (a, p2) = proc_addr(addr);
                (local, port, proto, mark) =
                    (a.to_string(), p2.to_string(), p.into(), String::new());
            }
            _ => panic!("unexpected line of /proc/net/ip_vs: {line:?}"),
        }
    }
    out
}

/// The counters of `ipvsadm -Ln --stats --exact`: per service (labels
/// local_address, local_port, proto, local_mark) and per real server
/// (those and remote_address, remote_port) the five counters.
#[allow(clippy::type_complexity)]
fn listing_counters(text: &str) -> (BTreeMap<Labels, Vec<f64>>, BTreeMap<Labels, Vec<f64>>) {
    let (mut services, mut backends) = (BTreeMap::new(), BTreeMap::new());
    let mut service: Vec<(&str, String)> = Vec::new();
    let split = |addr: &str| -> (IpAddr, u16) {
        let (a, p) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{addr}"));
        let a = a.trim_start_matches('[').trim_end_matches(']');
        (
            a.parse().unwrap_or_else(|e| panic!("{addr}: {e}")),
            p.parse().unwrap_or_else(|e| panic!("{addr}: {e}")),
        )
    };
    for line in text.lines().skip(3) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let nums = |from: usize| -> Vec<f64> {
            f[from..]
                .iter()
                .map(|w| w.parse::<f64>().unwrap_or_else(|e| panic!("{line}: {e}")))
                .collect()
        };
        match f[..] {
            ["->", addr, ..] => {
                let (a, p) = split(addr);
                let mut l = service.clone();
                l.push(("remote_address", a.to_string()));
                l.push(("remote_port", p.to_string()));
                backends.insert(labels(&l), nums(2));
            }
            ["FWM", mark, ..] => {
                let mark: u32 = mark.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
                service = vec![
                    ("local_address", String::new()),
                    ("local_port", "0".into()),
                    ("proto", "FWM".into()),
                    ("local_mark", format!("{mark:08X}")),
                ];
                services.insert(labels(&service), nums(2));
            }
            [proto, addr, ..] => {
                let (a, p) = split(addr);
                service = vec![
                    ("local_address", a.to_string()),
                    ("local_port", p.to_string()),
                    ("proto", proto.to_owned()),
                    ("local_mark", String::new()),
                ];
                services.insert(labels(&service), nums(2));
            }
            _ => panic!("unexpected line of the listing: {line:?}"),
        }
    }
    (services, backends)
}

/// Checks one scrape against `t`; the mismatches.
/// The family (`--metrics-families`'s name) of a series, by its name.
fn family_of(metric: &str) -> &'static str {
    [
        ("node_ipvs_", "node"),
        ("ipvs_service_", "service"),
        ("ipvs_backend_", "backend"),
        ("kube_router_service_", "kube-router"),
    ]
    .iter()
    .find(|(prefix, _)| metric.starts_with(prefix))
    .map_or("none", |(_, family)| family)
}

/// What in the scrape `body` differs from the truths `t`, for every family.
fn compare(body: &str, t: &Truths) -> Vec<String> {
    compare_families(body, t, &["node", "service", "backend", "kube-router"])
}

/// [`compare`] for the families named: their series must be the truths',
/// and no series of another family may be there.
fn compare_families(body: &str, t: &Truths, families: &[&str]) -> Vec<String> {
    let samples = parse(body);
    let mut bad: Vec<String> = samples
        .iter()
        .filter(|s| !families.contains(&family_of(&s.metric)))
        .map(|s| format!("{}: not of the families {families:?}", s.metric))
        .collect();
    let wants = |name: &str| families.contains(&family_of(name));
    let none = Labels::new();
    let totals = proc_totals(&t.stats);
    for (i, name) in [
        "node_ipvs_connections_total",
        "node_ipvs_incoming_packets_total",
        "node_ipvs_outgoing_packets_total",
        "node_ipvs_incoming_bytes_total",
        "node_ipvs_outgoing_bytes_total",
    ]
    .iter()
    .enumerate()
    {
        if !wants(name) {
            continue;
        }
        let got = series(&samples, name).get(&none).copied();
        if got != Some(totals[i]) {
            bad.push(format!(
                "{name}: {got:?}, /proc/net/ip_vs_stats has {}",
                totals[i]
            ));
        }
    }
    let backends = proc_backends(&t.table);
    let gauges = [
        "node_ipvs_backend_connections_active",
        "node_ipvs_backend_connections_inactive",
        "node_ipvs_backend_weight",
    ];
    for (i, name) in gauges.iter().enumerate().filter(|(_, n)| wants(n)) {
        let got = series(&samples, name);
        let want: BTreeMap<Labels, f64> = backends
            .iter()
            .map(|(k, v)| (k.clone(), [v.0, v.1, v.2][i]))
            .collect();
        if got != want {
            bad.push(format!(
                "{name}:\n  scrape {got:?}\n  /proc/net/ip_vs {want:?}"
            ));
        }
    }
    let (services, dests) = listing_counters(&t.listing);
    let counters = [
        "connections",
        "incoming_packets",
        "outgoing_packets",
        "incoming_bytes",
        "outgoing_bytes",
    ];
    for (i, c) in counters.iter().enumerate() {
        for (prefix, truth) in [("ipvs_service", &services), ("ipvs_backend", &dests)] {
            let name = format!("{prefix}_{c}_total");
            if !wants(&name) {
                continue;
            }
            let got = series(&samples, &name);
            let want: BTreeMap<Labels, f64> =
                truth.iter().map(|(k, v)| (k.clone(), v[i])).collect();
            if got != want {
                bad.push(format!("{name}:\n  scrape {got:?}\n  ipvsadm {want:?}"));
            }
        }
    }
    // kube-router's gauges of each Service port: the same counters.
    for (i, name) in [
        "kube_router_service_total_connections",
        "kube_router_service_packets_in",
        "kube_router_service_packets_out",
        "kube_router_service_bytes_in",
        "kube_router_service_bytes_out",
    ]
    .iter()
    .enumerate()
    .filter(|(_, n)| wants(n))
    {
        let got = series(&samples, name);
        let want: BTreeMap<Labels, f64> = services
            .iter()
            .filter(|(k, _)| k["proto"] != "FWM")
            .map(|(k, v)| {
                let l = labels(&[
                    ("namespace", String::new()),
                    ("service_name", String::new()),
                    ("service_vip", k["local_address"].clone()),
                    ("protocol", k["proto"].to_lowercase()),
                    ("port", k["local_port"].clone()),
                ]);
                (l, v[i])
            })
            .collect();
        if got != want {
            bad.push(format!("{name}:\n  scrape {got:?}\n  ipvsadm {want:?}"));
        }
    }
    bad
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn metrics_scrape_shows_what_proc_and_ipvsadm_show() {
    let mut lab = Lab::new(&["10.97.97.97", "10.97.97.98"]);
    for line in TABLE {
        ipvsadm_ok(line);
    }
    make_traffic(&mut lab);
    let exporter = Exporter::start("127.0.0.1:9901", &[]);

    let mut failures = Vec::new();
    for _ in 0..3 {
        let before = still_truths();
        let answer = exporter.get("/metrics");
        let after = truths();
        if before != after {
            continue;
        }
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            answer
                .headers
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{}",
            answer.headers
        );
        assert!(
            answer.headers.contains("connection: close"),
            "{}",
            answer.headers
        );
        println!("{}", after.listing);
        println!("{}", answer.body);
        failures = compare(&answer.body, &after);
        // The traffic is there: not a comparison of zeros.
        let samples = parse(&answer.body);
        let active = series(&samples, "node_ipvs_backend_connections_active");
        assert_eq!(active.values().sum::<f64>(), 2.0, "two held connections");
        let conns = series(&samples, "ipvs_service_connections_total");
        assert!(conns.values().sum::<f64>() >= 11.0, "{conns:?}");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        break;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Taking gzip, as Prometheus asks: compressed, and what busybox's
    // zcat reads back is the same truths' series.
    let mut failures = vec!["the table never kept still".to_owned()];
    for _ in 0..3 {
        let before = still_truths();
        let answer = exporter.get_gzip("/metrics");
        if before != truths() {
            continue;
        }
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            answer.headers.contains("\r\ncontent-encoding: gzip\r\n"),
            "{}",
            answer.headers
        );
        failures = compare(&answer.body, &before);
        break;
    }
    assert!(failures.is_empty(), "gzip: {}", failures.join("\n"));

    // Elsewhere: 404; the exporter keeps serving.
    assert_eq!(exporter.get("/nothing").status, 404);
    assert_eq!(exporter.get("/metrics").status, 200);

    // Fewer families: by the exporter's `--metrics-families`, and by a
    // scrape's `collect[]` (URL-encoded, as Prometheus sends its
    // `params`); their series are still the truths', the others absent.
    let fewer = Exporter::start_with(
        "127.0.0.1:9906",
        &[],
        &["--metrics-families", "service,kube-router"],
    );
    let asked = [
        (&fewer, "/metrics", &["service", "kube-router"][..]),
        (
            &exporter,
            "/metrics?collect%5B%5D=node&collect%5B%5D=backend",
            &["node", "backend"][..],
        ),
        (
            &fewer,
            "/metrics?collect[]=kube-router",
            &["kube-router"][..],
        ),
    ];
    for (server, path, families) in asked {
        let mut failures = vec!["the table never kept still".to_owned()];
        for _ in 0..3 {
            let before = still_truths();
            let answer = server.get(path);
            if before != truths() {
                continue;
            }
            assert_eq!(answer.status, 200, "{path}: {answer:?}");
            failures = compare_families(&answer.body, &before, families);
            // Each family asked is there (the table has a real server).
            let present: std::collections::BTreeSet<&str> = parse(&answer.body)
                .iter()
                .map(|s| family_of(&s.metric))
                .collect();
            assert_eq!(present, families.iter().copied().collect(), "{path}");
            break;
        }
        assert!(failures.is_empty(), "{path}: {}", failures.join("\n"));
    }
    // A family the exporter does not serve, or none such: 400, saying why.
    for (path, says) in [
        (
            "/metrics?collect[]=node",
            "node asked, service,kube-router served",
        ),
        ("/metrics?collect[]=pods", "unknown family \"pods\""),
    ] {
        let answer = fewer.get(path);
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
        assert!(answer.body.contains(says), "{path}: {answer:?}");
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn metrics_with_netns_opens_the_port_outside_and_reads_the_table_inside() {
    let lab = Lab::new(&["10.97.97.97"]);
    ipvsadm_ok("-A -t 10.97.97.97:80 -s rr");
    // The server namespace has no IPVS services; its port is ours.
    let path = lab.server.path().to_owned();
    let exporter = Exporter::start("127.0.0.1:9902", &["--netns", &path]);
    let answer = exporter.get("/metrics");
    assert_eq!(answer.status, 200, "{answer:?}");
    let samples = parse(&answer.body);
    assert!(
        series(&samples, "ipvs_service_connections_total").is_empty(),
        "the director's table was read:\n{}",
        answer.body
    );
    // ... and the director's own exporter sees its service.
    let here = Exporter::start("127.0.0.1:9903", &[]);
    let samples = parse(&here.get("/metrics").body);
    assert_eq!(series(&samples, "ipvs_service_connections_total").len(), 1);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn metrics_bad_addresses_are_refused_with_exit_2() {
    vm_tests::enter_fresh_netns().unwrap_or_else(|e| panic!("{e}"));
    let rs = vm_tests::ipvsadm_rs();
    for (args, says) in [
        (&["--metrics", "9100"][..], "not an address and port"),
        (&["--metrics"][..], "needs an address and port"),
        (
            &[
                "--metrics",
                "127.0.0.1:9905",
                "--metrics-families",
                "node,pods",
            ][..],
            "unknown family \"pods\"",
        ),
        (
            &["--metrics", "203.0.113.9:9100"][..],
            "cannot listen on 203.0.113.9:9100",
        ),
    ] {
        let out = run_as(&rs, "ipvsadm-rs", args, b"");
        assert_eq!(out.code, Some(2), "{args:?}: {out}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {out}"
        );
    }
}

/// A scrape of 5,000 services of 4 real servers (34 MB of text) is
/// streamed: sent in HTTP/1.1 chunks as it is encoded, whole (the last
/// chunk there, every service and real server of the real ipvsadm's
/// listing in it, read by prometheus-parse), with the exporter's peak
/// memory below the size of the text it sent (it held the whole text
/// twice before). A client that asks and then reads nothing holds its
/// scrape, not the others: a second scrape is answered whole while the
/// first waits, and the first is whole too once read.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_large_scrape_is_streamed_and_a_stalled_client_stops_no_other() {
    use std::fmt::Write as _;
    use std::io::{Read, Write};
    vm_tests::enter_fresh_netns().unwrap_or_else(|e| panic!("{e}"));
    let services = 5_000;
    let mut rules = String::new();
    for i in 0..services {
        let (mid, lo) = (i >> 8, i & 255);
        writeln!(rules, "-A -t 10.100.{mid}.{lo}:80 -s rr").unwrap();
        for k in 0..4 {
            writeln!(
                rules,
                "-a -t 10.100.{mid}.{lo}:80 -r 172.{}.{mid}.{lo}:8080 -m",
                16 + k
            )
            .unwrap();
        }
    }
    let out = run_as(
        &vm_tests::ipvsadm_rs(),
        "ipvsadm",
        &["-R"],
        rules.as_bytes(),
    );
    assert_eq!(out.code, Some(0), "{out}");
    // The real ipvsadm's count of the table.
    let listing = ipvsadm_ok("-Ln");
    let listed_services = listing.lines().filter(|l| l.starts_with("TCP ")).count();
    let listed_backends = listing
        .lines()
        .filter(|l| l.starts_with("  -> 172."))
        .count();
    assert_eq!((listed_services, listed_backends), (services, 4 * services));

    let exporter = Exporter::start("127.0.0.1:9904", &[]);
    // The stalled client: asks, reads nothing.
    let mut stalled = std::net::TcpStream::connect(exporter.addr).unwrap();
    write!(
        stalled,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n",
        exporter.addr
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = stalled.read(&mut first).unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );

    let whole = |answer: &vm_tests::exporter::Answer| {
        assert_eq!(answer.status, 200, "{}", answer.headers);
        assert!(
            answer.headers.contains("\r\ntransfer-encoding: chunked"),
            "not streamed: {}",
            answer.headers
        );
        let samples = parse(&answer.body);
        let of = |name: &str| samples.iter().filter(|s| s.metric == name).count();
        assert_eq!(of("ipvs_service_connections_total"), listed_services);
        assert_eq!(of("kube_router_service_bps_out"), listed_services);
        assert_eq!(of("node_ipvs_backend_weight"), listed_backends);
        assert_eq!(of("ipvs_backend_outgoing_bytes_total"), listed_backends);
        assert_eq!(
            samples.len(),
            5 + 15 * listed_services + 8 * listed_backends
        );
    };
    let answer = exporter.get("/metrics");
    whole(&answer);
    let text = answer.body.len();
    // Taking gzip: streamed too, whole once zcat has read it, and a
    // tenth of the text or less on the wire.
    let (_, wire) = exporter.count_gzip("/metrics");
    let compressed = exporter.get_gzip("/metrics");
    whole(&compressed);
    assert_eq!(compressed.body.len(), text, "the compressed scrape's text");
    println!(
        "a scrape of {services} services taking gzip: {} bytes on the wire for {text} of text",
        wire.len()
    );
    assert!(wire.len() < text / 10, "{} bytes compressed", wire.len());
    // The stalled scrape, read now: whole too.
    let mut rest = Vec::new();
    stalled.read_to_end(&mut rest).unwrap();
    let mut raw = first[..n].to_vec();
    raw.extend_from_slice(&rest);
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let body = vm_tests::exporter::dechunk(&raw[end + 4..]);
    assert_eq!(body.len(), text, "the stalled scrape's size");
    let peak = exporter.peak_rss_kib() as usize * 1024;
    println!("a scrape of {services} services: {text} bytes; exporter's peak RSS {peak} bytes");
    assert!(
        peak < text,
        "the exporter's peak memory ({peak} bytes) is not below its text ({text} bytes)"
    );
}
