//! The rendering read back by an independent parser of the text format
//! (prometheus-parse): every series of the table, its labels and values.

use super::*;
use ipvs_netlink::{AddressFamily, Protocol};
use prometheus_parse::{Sample, Value};
use std::collections::HashMap;

fn stats(base: u64) -> Stats {
    let mut s = Stats::default();
    s.conns = base + 1;
    s.in_pkts = base + 2;
    s.out_pkts = base + 3;
    s.in_bytes = base + 4;
    s.out_bytes = base + 5;
    s.cps = base + 6;
    s.in_pps = base + 7;
    s.out_pps = base + 8;
    s.in_bps = base + 9;
    s.out_bps = base + 10;
    s
}

fn dest(addr: &str, weight: u32, active: u32, inactive: u32, base: u64) -> Destination {
    let mut d = Destination::new(addr.parse().unwrap()).weight(weight);
    d.active_conns = active;
    d.inactive_conns = inactive;
    d.stats = Some(stats(base));
    d
}

fn service(id: ServiceId, base: u64) -> Service {
    let mut s = Service::new(id, "rr");
    s.stats = Some(stats(base));
    s
}

/// A TCP service of two real servers, an IPv6 UDP one, a firewall-mark
/// one, and one without real servers.
fn table() -> Scrape {
    Scrape {
        totals: Some(Totals {
            conns: 11,
            in_pkts: 12,
            out_pkts: 13,
            in_bytes: 14,
            // Past 2^32: the 64-bit counters.
            out_bytes: 1 << 40,
        }),
        services: vec![
            (
                service(ServiceId::tcp("10.96.0.10:53".parse().unwrap()), 100),
                vec![
                    dest("10.244.1.5:53", 1, 3, 4, 200),
                    dest("10.244.2.6:5353", 2, 5, 6, 300),
                ],
            ),
            (
                service(ServiceId::udp("[fd00::a]:53".parse().unwrap()), 400),
                vec![dest("[fd00:1::5]:53", 7, 0, 8, 500)],
            ),
            (
                service(
                    ServiceId::Fwmark {
                        family: AddressFamily::Inet,
                        mark: 0x1f,
                    },
                    600,
                ),
                vec![dest("192.168.50.26:3306", 0, 9, 10, 700)],
            ),
            (
                service(
                    ServiceId::inet(Protocol::Sctp, "10.96.0.20:9".parse().unwrap()),
                    800,
                ),
                vec![],
            ),
        ],
        names: Default::default(),
        families: Families::ALL,
    }
}

fn parse(text: &str) -> Vec<Sample> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap().samples
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of the one sample of `name` with exactly `want` as labels.
fn value(samples: &[Sample], name: &str, want: &HashMap<String, String>) -> Value {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.metric == name && *s.labels == *want)
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    found[0].value.clone()
}

#[test]
fn node_exporter_totals_are_the_proc_file_s() {
    let text = render(table()).unwrap();
    let samples = parse(&text);
    let none = HashMap::new();
    for (name, want) in [
        ("node_ipvs_connections_total", 11.0),
        ("node_ipvs_incoming_packets_total", 12.0),
        ("node_ipvs_outgoing_packets_total", 13.0),
        ("node_ipvs_incoming_bytes_total", 14.0),
        ("node_ipvs_outgoing_bytes_total", (1u64 << 40) as f64),
    ] {
        assert_eq!(value(&samples, name, &none), Value::Counter(want), "{name}");
    }
    // Exact integers, not floats in exponent form.
    assert!(text.contains("\nnode_ipvs_outgoing_bytes_total 1099511627776\n"));
    // Without /proc's totals, no totals (not zeros).
    let mut without = table();
    without.totals = None;
    let samples = parse(&render(without).unwrap());
    assert!(!samples
        .iter()
        .any(|s| s.metric == "node_ipvs_connections_total"));
}

#[test]
fn backends_carry_node_exporter_s_labels() {
    let samples = parse(&render(table()).unwrap());
    let tcp = labels(&[
        ("local_address", "10.96.0.10"),
        ("local_port", "53"),
        ("remote_address", "10.244.2.6"),
        ("remote_port", "5353"),
        ("proto", "TCP"),
        ("local_mark", ""),
    ]);
    let v6 = labels(&[
        ("local_address", "fd00::a"),
        ("local_port", "53"),
        ("remote_address", "fd00:1::5"),
        ("remote_port", "53"),
        ("proto", "UDP"),
        ("local_mark", ""),
    ]);
    // /proc/net/ip_vs's firewall-mark line: `FWM  0000001F rr`.
    let fwm = labels(&[
        ("local_address", ""),
        ("local_port", "0"),
        ("remote_address", "192.168.50.26"),
        ("remote_port", "3306"),
        ("proto", "FWM"),
        ("local_mark", "0000001F"),
    ]);
    for (labels, active, inactive, weight, base) in [
        (&tcp, 5.0, 6.0, 2.0, 300.0),
        (&v6, 0.0, 8.0, 7.0, 500.0),
        (&fwm, 9.0, 10.0, 0.0, 700.0),
    ] {
        let gauge = |name| value(&samples, name, labels);
        assert_eq!(
            gauge("node_ipvs_backend_connections_active"),
            Value::Gauge(active)
        );
        assert_eq!(
            gauge("node_ipvs_backend_connections_inactive"),
            Value::Gauge(inactive)
        );
        assert_eq!(gauge("node_ipvs_backend_weight"), Value::Gauge(weight));
        let counter = |name| value(&samples, name, labels);
        assert_eq!(
            counter("ipvs_backend_connections_total"),
            Value::Counter(base + 1.0)
        );
        assert_eq!(
            counter("ipvs_backend_incoming_packets_total"),
            Value::Counter(base + 2.0)
        );
        assert_eq!(
            counter("ipvs_backend_outgoing_packets_total"),
            Value::Counter(base + 3.0)
        );
        assert_eq!(
            counter("ipvs_backend_incoming_bytes_total"),
            Value::Counter(base + 4.0)
        );
        assert_eq!(
            counter("ipvs_backend_outgoing_bytes_total"),
            Value::Counter(base + 5.0)
        );
    }
}

#[test]
fn services_carry_their_counters_and_kube_router_s_gauges() {
    let samples = parse(&render(table()).unwrap());
    let tcp = labels(&[
        ("local_address", "10.96.0.10"),
        ("local_port", "53"),
        ("proto", "TCP"),
        ("local_mark", ""),
    ]);
    let fwm = labels(&[
        ("local_address", ""),
        ("local_port", "0"),
        ("proto", "FWM"),
        ("local_mark", "0000001F"),
    ]);
    let sctp = labels(&[
        ("local_address", "10.96.0.20"),
        ("local_port", "9"),
        ("proto", "SCTP"),
        ("local_mark", ""),
    ]);
    for (labels, base) in [(&tcp, 100.0), (&fwm, 600.0), (&sctp, 800.0)] {
        let counter = |name| value(&samples, name, labels);
        assert_eq!(
            counter("ipvs_service_connections_total"),
            Value::Counter(base + 1.0)
        );
        assert_eq!(
            counter("ipvs_service_incoming_packets_total"),
            Value::Counter(base + 2.0)
        );
        assert_eq!(
            counter("ipvs_service_outgoing_packets_total"),
            Value::Counter(base + 3.0)
        );
        assert_eq!(
            counter("ipvs_service_incoming_bytes_total"),
            Value::Counter(base + 4.0)
        );
        assert_eq!(
            counter("ipvs_service_outgoing_bytes_total"),
            Value::Counter(base + 5.0)
        );
    }
    let udp6 = labels(&[
        ("namespace", ""),
        ("service_name", ""),
        ("service_vip", "fd00::a"),
        ("protocol", "udp"),
        ("port", "53"),
    ]);
    for (name, offset) in [
        ("kube_router_service_total_connections", 1.0),
        ("kube_router_service_packets_in", 2.0),
        ("kube_router_service_packets_out", 3.0),
        ("kube_router_service_bytes_in", 4.0),
        ("kube_router_service_bytes_out", 5.0),
        ("kube_router_service_cps", 6.0),
        ("kube_router_service_pps_in", 7.0),
        ("kube_router_service_pps_out", 8.0),
        ("kube_router_service_bps_in", 9.0),
        ("kube_router_service_bps_out", 10.0),
    ] {
        assert_eq!(
            value(&samples, name, &udp6),
            Value::Gauge(400.0 + offset),
            "{name}"
        );
        // A firewall mark is no Service port: 3 of the 4 services.
        assert_eq!(
            samples.iter().filter(|s| s.metric == name).count(),
            3,
            "{name}"
        );
    }
}

#[test]
fn series_are_bounded_by_the_table() {
    let samples = parse(&render(table()).unwrap());
    let count = |name: &str| samples.iter().filter(|s| s.metric == name).count();
    // 4 real servers, 4 services.
    for name in [
        "node_ipvs_backend_connections_active",
        "node_ipvs_backend_weight",
        "ipvs_backend_outgoing_bytes_total",
    ] {
        assert_eq!(count(name), 4, "{name}");
    }
    assert_eq!(count("ipvs_service_connections_total"), 4);
    // 5 totals + 8 per real server + 5 per service + 10 per port service.
    assert_eq!(samples.len(), 5 + 8 * 4 + 5 * 4 + 10 * 3);
    // An empty table: the totals alone.
    let empty = Scrape {
        totals: Some(Totals::default()),
        services: vec![],
        names: Default::default(),
        families: Families::ALL,
    };
    assert_eq!(parse(&render(empty).unwrap()).len(), 5);
}

/// Each family alone carries its series and no other, and the four
/// together are the whole scrape, sample for sample (as the parser reads
/// them).
#[test]
fn each_family_alone_is_its_part_of_the_whole_scrape() {
    let key = |s: &Sample| {
        let labels: std::collections::BTreeMap<_, _> = s.labels.iter().collect();
        format!("{} {labels:?} {:?}", s.metric, s.value)
    };
    let mut whole: Vec<String> = parse(&render(table()).unwrap()).iter().map(key).collect();
    let mut parts = Vec::new();
    for (name, prefix) in Families::NAMES.iter().zip([
        "node_ipvs_",
        "ipvs_service_",
        "ipvs_backend_",
        "kube_router_service_",
    ]) {
        let families = Families::from_names([*name]).unwrap();
        let samples = parse(
            &render(Scrape {
                families,
                ..table()
            })
            .unwrap(),
        );
        assert!(!samples.is_empty(), "{name}");
        for s in &samples {
            assert!(s.metric.starts_with(prefix), "{name}: {}", s.metric);
        }
        parts.extend(samples.iter().map(key));
    }
    whole.sort();
    parts.sort();
    assert_eq!(parts, whole);
}

#[test]
fn the_proc_totals_are_read_in_hexadecimal() {
    // /proc/net/ip_vs_stats as the kernel prints it (%8LX columns).
    let text = "   Total Incoming Outgoing         Incoming         Outgoing\n   Conns  Packets  Packets            Bytes            Bytes\n       3       1F        0      10000000000                0\n\n Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n       0        0        0                0                0\n";
    assert_eq!(
        parse_ip_vs_stats(text),
        Some(Totals {
            conns: 3,
            in_pkts: 31,
            out_pkts: 0,
            in_bytes: 1 << 40,
            out_bytes: 0,
        })
    );
    assert_eq!(parse_ip_vs_stats("garbage"), None);
    assert_eq!(parse_ip_vs_stats("a\nb\n1 2 3\n"), None);
}

/// Every series deploy/grafana-dashboard.json queries is one a scrape
/// carries (read back by the parser, not taken from our tables), and every
/// label its legends print is on that series (or `instance`, which
/// Prometheus adds); every `$variable` is defined.
#[test]
fn the_grafana_dashboard_queries_what_a_scrape_carries() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let samples = parse(&render(table()).unwrap());
    let mut series: HashMap<String, Vec<String>> = HashMap::new();
    for s in &samples {
        let labels = series.entry(s.metric.clone()).or_default();
        labels.extend(s.labels.keys().cloned());
    }
    let defined: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            // The proxy's own series (`--from-k8s --metrics-bind-address`):
            // checked against its scrape by ipvs-k8s's live::metrics tests.
            if expr.contains("kubeproxy_") || expr.contains("ipvs_k8s_") {
                continue;
            }
            let words: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
                .filter(|w| !w.is_empty())
                .collect();
            let names: Vec<&str> = words
                .iter()
                .copied()
                .filter(|w| {
                    ["node_ipvs_", "ipvs_", "kube_router_"]
                        .iter()
                        .any(|p| w.starts_with(p))
                })
                .collect();
            assert!(!names.is_empty(), "{expr}: queries no series of ours");
            for name in &names {
                assert!(
                    series.contains_key(*name),
                    "{expr}: no series {name} in a scrape"
                );
            }
            for var in words.iter().filter_map(|w| w.strip_prefix('$')) {
                assert!(
                    var.starts_with("__") || defined.contains(&var),
                    "{expr}: ${var} is not defined"
                );
            }
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            for label in legend
                .split("{{")
                .skip(1)
                .filter_map(|s| s.split("}}").next())
            {
                assert!(
                    label == "instance"
                        || names.iter().all(|n| series[*n].iter().any(|l| l == label)),
                    "{expr}: legend label {label} is not on {names:?}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 15, "the dashboard's queries");
}

/// A service the state file names carries its name as labels: kube-router's
/// `namespace` and `service_name` on its series, and on ours with
/// `port_name`; a service it does not name has none on ours, empty ones on
/// kube-router's.
#[test]
fn the_state_file_s_names_label_the_services_it_names() {
    let mut scrape = table();
    let named = scrape.services[0].0.id;
    let other = scrape.services[1].0.id;
    scrape.names = [(named, "shop/cart:http".to_owned())].into();
    let samples = parse(&render(scrape).unwrap());
    let of = |name: &str, id: &ServiceId| -> HashMap<String, String> {
        let addr = match id {
            ServiceId::Inet { addr, .. } => addr.to_string(),
            ServiceId::Fwmark { .. } => unreachable!(),
        };
        let found: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.metric == name
                    && s.labels
                        .get("local_address")
                        .or(s.labels.get("service_vip"))
                        == Some(&addr)
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {id}: {found:?}");
        (*found[0].labels).clone()
    };
    let ours = of("ipvs_service_connections_total", &named);
    assert_eq!(ours.get("namespace").map(String::as_str), Some("shop"));
    assert_eq!(ours.get("service_name").map(String::as_str), Some("cart"));
    assert_eq!(ours.get("port_name").map(String::as_str), Some("http"));
    let router = of("kube_router_service_bytes_in", &named);
    assert_eq!(router.get("namespace").map(String::as_str), Some("shop"));
    assert_eq!(router.get("service_name").map(String::as_str), Some("cart"));
    let unnamed = of("ipvs_service_connections_total", &other);
    assert!(!unnamed.contains_key("namespace"), "{unnamed:?}");
    assert_eq!(name_labels("no-slash:80"), None);
    assert_eq!(
        name_labels("default/web:8080").unwrap()[2],
        ("port_name", "8080")
    );
}

/// The bench's table (vm-tests/tests/bench.rs `write_rules`): `services`
/// TCP services of 4 real servers each, with counters.
pub(crate) fn bench_table(services: usize) -> Scrape {
    let services = (0..services)
        .map(|i| {
            let (hi, mid, lo) = (i >> 16, (i >> 8) & 255, i & 255);
            let vip = format!("10.{}.{mid}.{lo}:80", 100 + hi);
            let svc = service(ServiceId::tcp(vip.parse().unwrap()), i as u64);
            let dests = (0..4)
                .map(|k| {
                    let rip = format!("172.{}.{mid}.{lo}:8080", 16 + k + 16 * hi);
                    dest(&rip, 1, 3, 4, i as u64 * 7 + k as u64)
                })
                .collect();
            (svc, dests)
        })
        .collect();
    Scrape {
        totals: Some(Totals::default()),
        services,
        names: Default::default(),
        families: Families::ALL,
    }
}

/// A writer that keeps nothing: the bytes written, and a hash of them.
#[derive(Default)]
struct Sink {
    bytes: usize,
    lines: usize,
    hash: std::collections::hash_map::DefaultHasher,
}

impl fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        use std::hash::Hasher;
        self.bytes += s.len();
        self.lines += s.bytes().filter(|&b| b == b'\n').count();
        self.hash.write(s.as_bytes());
        Ok(())
    }
}

/// What encoding a scrape of 10,000 services x 4 costs on this machine,
/// streamed (as the server sends it) and whole (run by hand: `cargo test
/// --release -p ipvsadm-rs --features metrics --lib -- --ignored
/// --nocapture cost_of_a_scrape`).
#[test]
#[ignore = "a measurement, run by hand"]
fn cost_of_a_scrape_of_10000_services() {
    use std::hash::Hasher;
    let hwm = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
            .unwrap()
    };
    println!("table built, VmHWM {}", hwm());
    for round in 0..3 {
        let mut sink = Sink::default();
        let table = bench_table(10_000);
        let start = std::time::Instant::now();
        encode(table, &mut sink).unwrap();
        let took = start.elapsed();
        println!(
            "round {round}: streamed {:.3} s, {} bytes, {} lines, hash {:x}, VmHWM {}",
            took.as_secs_f64(),
            sink.bytes,
            sink.lines,
            sink.hash.finish(),
            hwm()
        );
    }
    let table = bench_table(10_000);
    let start = std::time::Instant::now();
    let text = render(table).unwrap();
    let took = start.elapsed();
    println!(
        "whole: {:.3} s, {} bytes, VmHWM {}",
        took.as_secs_f64(),
        text.len(),
        hwm()
    );
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&text, &mut h);
    println!("whole text's hash {:x}", h.finish());
    let mut by_family: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let e = by_family.entry(name).or_default();
        e.0 += 1;
        e.1 += line.len() + 1;
    }
    for (name, (n, bytes)) in by_family {
        println!("{name}: {n} series, {bytes} bytes");
    }
}
