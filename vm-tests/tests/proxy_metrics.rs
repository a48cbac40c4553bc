//! Issue 31: the live mode's own metrics (`--metrics-bind-address`),
//! scraped while the fake API server's objects change, and read back
//! with an independent parser of Prometheus's text format
//! (prometheus-parse). The truths they are held to: the real kernel's
//! table (`ipvsadm -Sn`), the fake API server's own count of requests,
//! the status codes the test's own probes received, the test's own
//! changes to the cluster.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fake_apiserver::objects::{endpoint_slice, service};
use fake_apiserver::{Batch, FakeApiServer, Fault, Kind};
use prometheus_parse::Value;
use vm_tests::live::{bulk_services, Live};
use vm_tests::{enter_fresh_netns, ipvsadm_ok};

/// A hang guard on a slow emulated VM (not a speed check).
const PATIENCE: Duration = Duration::from_secs(300);

const METRICS: &str = "127.0.0.1:10249";
const HEALTHZ: &str = "127.0.0.1:10256";

/// `GET path` on `addr`: the status code, the head and the body (`None`:
/// no whole answer).
fn get(addr: &str, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(PATIENCE)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, head.to_owned(), body.to_owned()))
}

/// One scrape, parsed: each sample's name and labels (sorted, `k=v,...`)
/// to its value; a histogram's count and sum as `NAME_count`, `NAME_sum`.
#[derive(Debug)]
struct Scrape(BTreeMap<String, f64>, String);

impl Scrape {
    fn take() -> Scrape {
        let (code, head, body) = get(METRICS, "/metrics").expect("a scrape");
        assert_eq!(code, 200, "{head}\n{body}");
        let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("the scrape does not parse: {e}\n{body}"));
        let mut map = BTreeMap::new();
        for s in parsed.samples {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let key = |name: &str| format!("{name}{{{}}}", labels.join(","));
            match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    map.insert(key(&s.metric), v);
                }
                Value::Histogram(buckets) => {
                    let count = buckets.last().map_or(0.0, |b| b.count);
                    // Cumulative, and +Inf holds them all.
                    for w in buckets.windows(2) {
                        assert!(w[0].count <= w[1].count, "{}: {buckets:?}", s.metric);
                        assert!(w[0].less_than < w[1].less_than);
                    }
                    assert!(buckets.last().is_some_and(|b| b.less_than.is_infinite()));
                    map.insert(key(&format!("{}_count", s.metric)), count);
                    for b in &buckets {
                        let mut with_le = labels.clone();
                        with_le.push(format!("le={}", b.less_than));
                        with_le.sort();
                        let name = format!("{}_bucket{{{}}}", s.metric, with_le.join(","));
                        map.insert(name, b.count);
                    }
                }
                Value::Summary(_) => {}
            }
        }
        Scrape(map, body)
    }

    /// A sample's value; 0 when absent (a counter never incremented).
    fn v(&self, key: &str) -> f64 {
        let key = if key.contains('{') {
            key.to_owned()
        } else {
            format!("{key}{{}}")
        };
        self.0.get(&key).copied().unwrap_or(0.0)
    }

    fn syncs(&self) -> f64 {
        self.v("kubeproxy_sync_proxy_rules_duration_seconds_count")
    }

    /// What one scrape must hold whenever it is taken: a sync seen whole.
    fn consistent(&self) {
        let ok = self.v("ipvs_k8s_syncs_total{result=ok}");
        let failed = self.v("ipvs_k8s_syncs_total{result=failed}");
        assert_eq!(self.syncs(), ok + failed, "{self:?}");
        let last = self.v("kubeproxy_sync_proxy_rules_last_timestamp_seconds");
        assert_eq!(ok > 0.0, last > 0.0, "{self:?}");
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The virtual services and real servers of the kernel's table.
fn kernel_counts() -> (f64, f64) {
    let table = ipvsadm_ok(&["-Sn"]);
    let count = |p: &str| table.lines().filter(|l| l.starts_with(p)).count() as f64;
    (count("-A "), count("-a "))
}

fn start(dir: &Path, extra: &[&str]) -> Live {
    let mut args = vec![
        "--node-ip",
        "192.168.49.2",
        "--node-name",
        "node-a",
        "--healthz",
        HEALTHZ,
        "--metrics-bind-address",
        METRICS,
        "--resync",
        "3600",
    ];
    args.extend_from_slice(extra);
    Live::start(dir, &args)
}

/// Scrapes until `ready` holds of a scrape (each one checked
/// consistent); panics with the log after [`PATIENCE`].
fn scrape_until(live: &mut Live, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(status)) = live.child.try_wait() {
            panic!("ipvsadm-rs ended ({status}) before {what}:\n{}", live.log());
        }
        if get(METRICS, "/proxyMode").is_some() {
            let s = Scrape::take();
            s.consistent();
            if ready(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "never {what}: {s:?}\nlog:\n{}",
                live.log()
            );
        }
        assert!(Instant::now() < end, "never {what}\nlog:\n{}", live.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_proxys_metrics_follow_the_cluster() {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join("proxy-metrics");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let mut b = Batch::default();
    b.apply(service("default", "web", "10.96.0.10", &[("http", 80)]))
        .apply(endpoint_slice(
            "default",
            "web",
            "abcde",
            &[("http", 8080)],
            &["10.244.0.1", "10.244.0.2"],
        ));
    server.batch(b);
    let began = unix_now();
    let mut live = start(&dir, &[]);

    // The first sync: the writes are the kernel's table, the initial
    // lists no changes.
    let first = scrape_until(&mut live, "a first sync", |s| s.syncs() >= 1.0);
    assert_eq!(first.syncs(), 1.0, "{first:?}");
    let (services, dests) = kernel_counts();
    assert_eq!((services, dests), (1.0, 2.0));
    assert_eq!(first.v("ipvs_k8s_writes_total{kind=add_service}"), services);
    assert_eq!(
        first.v("ipvs_k8s_writes_total{kind=add_destination}"),
        dests
    );
    let last = first.v("kubeproxy_sync_proxy_rules_last_timestamp_seconds");
    assert!(last >= began && last <= unix_now(), "{last} vs {began}");
    assert_eq!(
        first.v("kubeproxy_sync_proxy_rules_service_changes_total"),
        0.0
    );
    assert_eq!(first.v("ipvs_k8s_conflicting_services"), 0.0);
    // The metrics exist now: a change triggered from here on is measured
    // from its trigger time.
    let metrics_up = SystemTime::now();

    // kube-proxy's other answers on the metrics port.
    let (code, head, body) = get(METRICS, "/proxyMode").unwrap();
    assert_eq!((code, body.as_str()), (200, "ipvs"), "{head}");
    assert_eq!(get(METRICS, "/healthz").unwrap().2, "ok");
    assert_eq!(get(METRICS, "/nothing-here").unwrap().0, 404);

    // The health endpoint's answers, counted by code: the test's own
    // probes are the only ones.
    let mut sent: BTreeMap<(bool, u16), f64> = BTreeMap::new();
    for path in ["/healthz", "/livez", "/healthz"] {
        let (code, _, body) = get(HEALTHZ, path).unwrap();
        assert!(body.contains("\"lastUpdated\""), "{body}");
        *sent.entry((path == "/livez", code)).or_insert(0.0) += 1.0;
    }
    let s = Scrape::take();
    for ((livez, code), n) in &sent {
        let name = if *livez {
            "kubeproxy_proxy_livez_total"
        } else {
            "kubeproxy_proxy_healthz_total"
        };
        assert_eq!(s.v(&format!("{name}{{code={code}}}")), *n, "{s:?}");
    }

    // A Service added with its slice: two changes, one sync that writes
    // what the kernel then holds, a network programming duration from
    // the slice's trigger time (the EndpointSlice controller's
    // annotation), here at least 6 s before the sync: kube-proxy's
    // measure, not the event's arrival.
    let before = s;
    let since = metrics_up.elapsed().unwrap_or_default();
    std::thread::sleep(Duration::from_secs(6).saturating_sub(since));
    let trigger = jiff::Timestamp::try_from(metrics_up).unwrap().to_string();
    let mut slice = endpoint_slice(
        "shop",
        "cart",
        "abcde",
        &[("http", 8080)],
        &["10.244.5.1", "10.244.5.2", "10.244.5.3"],
    );
    slice["metadata"]["annotations"] =
        serde_json::json!({"endpoints.kubernetes.io/last-change-trigger-time": trigger});
    let mut b = Batch::default();
    b.apply(service("shop", "cart", "10.96.1.1", &[("http", 80)]))
        .apply(slice);
    server.batch(b);
    // (The two may come in one sync or two.)
    let after = scrape_until(&mut live, "the syncs of the new Service", |s| {
        s.v("ipvs_k8s_writes_total{kind=add_service}") >= 2.0
            && s.v("ipvs_k8s_writes_total{kind=add_destination}") >= 5.0
            && s.v("kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 0.0
    });
    let grew = |name: &str| after.v(name) - before.v(name);
    assert_eq!(
        grew("kubeproxy_sync_proxy_rules_service_changes_total"),
        1.0
    );
    assert_eq!(
        grew("kubeproxy_sync_proxy_rules_endpoint_changes_total"),
        1.0
    );
    assert_eq!(
        after.v("kubeproxy_sync_proxy_rules_service_changes_pending"),
        0.0
    );
    assert_eq!(
        after.v("kubeproxy_sync_proxy_rules_endpoint_changes_pending"),
        0.0
    );
    let syncs = grew("kubeproxy_sync_proxy_rules_duration_seconds_count");
    assert!((1.0..=2.0).contains(&syncs), "{after:?}");
    assert_eq!(
        grew("kubeproxy_network_programming_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        grew("kubeproxy_network_programming_duration_seconds_bucket{le=5}"),
        0.0,
        "measured from the event's arrival, not the trigger time: {after:?}"
    );
    let queued = after.v("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds");
    assert!(queued >= last && queued <= unix_now(), "{after:?}");
    assert!(
        after.v("kubeproxy_sync_proxy_rules_last_timestamp_seconds") >= queued,
        "{after:?}"
    );
    let (services, dests) = kernel_counts();
    assert_eq!((services, dests), (2.0, 5.0));
    assert_eq!(grew("ipvs_k8s_writes_total{kind=add_destination}"), 3.0);

    // The API requests as the fake API server counted them (once the
    // watches are open, both counts stand still).
    let stats = server.stats();
    let api = scrape_until(&mut live, "the API server's count of requests", |s| {
        let ours = |r: &str| {
            s.v(&format!(
                "ipvs_k8s_api_requests_total{{resource={r},verb=list}}"
            )) + s.v(&format!(
                "ipvs_k8s_api_requests_total{{resource={r},verb=watch}}"
            ))
        };
        let stats = server.stats();
        let theirs = |k: Kind| stats.requests.get(k.name()).copied().unwrap_or(0) as f64;
        ours("services") == theirs(Kind::Service)
            && ours("endpointslices") == theirs(Kind::EndpointSlice)
    });
    assert!(stats.requests.values().all(|n| *n > 0), "{stats:?}");
    assert_eq!(
        api.v("ipvs_k8s_api_failures_in_a_row{resource=services}"),
        0.0
    );

    // The Services' requests fail with 500: counted by class, the
    // failures in a row shown; then they work again.
    server.fault(Some(Kind::Service), Some(Fault::Status(500)));
    server.expire_watches();
    scrape_until(&mut live, "failures of the Services' requests", |s| {
        s.v("ipvs_k8s_api_failures_total{class=status,resource=services}") >= 1.0
            && s.v("ipvs_k8s_api_failures_in_a_row{resource=services}") >= 1.0
    });
    server.fault(Some(Kind::Service), None);
    scrape_until(&mut live, "the Services' recovery", |s| {
        s.v("ipvs_k8s_api_failures_in_a_row{resource=services}") == 0.0
    });

    // Another instance is refused by the lock of the network namespace,
    // not taken for kube-proxy because our /proxyMode answers `ipvs`.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("kubeconfig"), server.kubeconfig()).unwrap();
    let second = Live::start(&other, &["--node-ip", "192.168.49.2"]);
    let (code, log) = second.wait();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("another --from-k8s runs in this network namespace"),
        "{log}"
    );
    assert!(!log.contains("kube-proxy runs"), "{log}");

    // The Kubernetes names the state file records: beside the services the
    // live mode owns in --top's frames and --metrics's labels, not beside
    // another tool's.
    ipvsadm_ok(&["-A", "-t", "10.96.99.99:80", "-s", "wlc"]);
    let state = dir.join("owned");
    live.until("the names in the state file", PATIENCE, || {
        std::fs::read_to_string(&state).is_ok_and(|t| t.contains(" name=shop/cart:http\n"))
    });
    let state = state.to_str().unwrap();
    let ipvsadm_rs = vm_tests::ipvsadm_rs();
    let top = |extra: &[&str]| {
        let mut args = vec!["--top", "--count", "1", "--state", state];
        args.extend_from_slice(extra);
        let out = vm_tests::run_as(&ipvsadm_rs, "ipvsadm-rs", &args, b"");
        assert_eq!(out.code, Some(0), "{out}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let frame = top(&["--batch"]);
    let line_of = |vip: &str| {
        frame
            .lines()
            .find(|l| l.contains(vip))
            .unwrap_or_else(|| panic!("{vip}:\n{frame}"))
            .trim_end()
            .to_owned()
    };
    assert!(
        line_of("10.96.1.1:80").ends_with("shop/cart:http"),
        "{frame}"
    );
    assert!(
        line_of("10.96.0.10:80").ends_with("default/web:http"),
        "{frame}"
    );
    let foreign = line_of("10.96.99.99:80");
    assert!(
        !foreign.contains("from-k8s") && !foreign.contains('/'),
        "{frame}"
    );
    let json: serde_json::Value = serde_json::from_str(&top(&["--json"])).unwrap();
    let mut names: Vec<(String, Option<String>)> = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap_or_default().to_owned(),
                s["kubernetes"]["name"].as_str().map(str::to_owned),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("10.96.0.10".to_owned(), Some("default/web:http".to_owned())),
            ("10.96.1.1".to_owned(), Some("shop/cart:http".to_owned())),
            ("10.96.99.99".to_owned(), None),
        ],
        "{json}"
    );
    let mut exporter = std::process::Command::new(&ipvsadm_rs)
        .args(["--metrics", "127.0.0.1:9101", "--state", state])
        .spawn()
        .unwrap();
    let end = Instant::now() + PATIENCE;
    let body = loop {
        if let Some((200, _, body)) = get("127.0.0.1:9101", "/metrics") {
            break body;
        }
        assert!(Instant::now() < end, "--metrics never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = exporter.kill();
    let _ = exporter.wait();
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let labels_of = |metric: &str, addr_label: &str, vip: &str| {
        let found: Vec<_> = parsed
            .samples
            .iter()
            .filter(|s| s.metric == metric && s.labels.get(addr_label) == Some(vip))
            .collect();
        assert_eq!(found.len(), 1, "{metric} {vip}:\n{body}");
        let get = |k: &str| {
            found[0]
                .labels
                .get(k)
                .map(str::to_owned)
                .unwrap_or_default()
        };
        [get("namespace"), get("service_name"), get("port_name")]
    };
    let named = |a: &str, b: &str, c: &str| [a.to_owned(), b.to_owned(), c.to_owned()];
    let ours = "ipvs_service_connections_total";
    assert_eq!(
        labels_of(ours, "local_address", "10.96.1.1"),
        named("shop", "cart", "http")
    );
    assert_eq!(
        labels_of(ours, "local_address", "10.96.0.10"),
        named("default", "web", "http")
    );
    assert_eq!(
        labels_of(ours, "local_address", "10.96.99.99"),
        named("", "", "")
    );
    let router = "kube_router_service_bytes_in";
    assert_eq!(
        labels_of(router, "service_vip", "10.96.1.1"),
        named("shop", "cart", "")
    );
    assert_eq!(
        labels_of(router, "service_vip", "10.96.99.99"),
        named("", "", "")
    );

    // The scrape of docs/metrics.md (printed with --nocapture).
    println!("the last scrape:\n{}", Scrape::take().1);
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
}

/// Services of the scrape-during-a-sync test: a first sync of seconds in
/// the emulated VM.
const SERVICES: usize = 2_000;

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_scrape_during_a_sync_sees_it_whole_or_not_at_all() {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join("proxy-metrics-during-sync");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    server.batch(bulk_services(SERVICES));
    let mut live = start(&dir, &[]);
    live.until_logged("a sync starts", PATIENCE, |log| {
        log.contains("a sync starts")
    });
    let (mut during, mut after) = (0, 0);
    let end = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < end, "no sync:\n{}", live.log());
        let s = Scrape::take();
        s.consistent();
        if s.syncs() == 0.0 {
            // Nothing of the sync shows before it ends.
            assert_eq!(s.v("ipvs_k8s_writes_total{kind=add_service}"), 0.0);
            assert_eq!(
                s.v("kubeproxy_sync_proxy_rules_last_timestamp_seconds"),
                0.0
            );
            during += 1;
            continue;
        }
        // All of it shows after.
        assert_eq!(s.syncs(), 1.0, "{s:?}");
        let (services, dests) = kernel_counts();
        assert_eq!((services, dests), (SERVICES as f64, 4.0 * SERVICES as f64));
        assert_eq!(s.v("ipvs_k8s_writes_total{kind=add_service}"), services);
        assert_eq!(s.v("ipvs_k8s_writes_total{kind=add_destination}"), dests);
        after += 1;
        if after == 3 {
            break;
        }
    }
    println!("scrapes during the first sync of {SERVICES} Services x 4: {during}");
    assert!(during > 0, "no scrape was answered during the sync");
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
}
