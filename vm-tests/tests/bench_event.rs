//! Event to kernel (issue 32): with N Services of 4 endpoints loaded and
//! the live `--from-k8s` running against the fake API server, how long
//! one change takes from its watch event to the kernel. Half the events
//! add a Service with its EndpointSlice, half replace one endpoint of an
//! existing EndpointSlice. Each is timed from the moment the fake API
//! server is handed the object (it sends the watch event then) until the
//! kernel's table, read over netlink every millisecond, shows it; then
//! until the kernel holds its element in the packet path's `served-v4`
//! set (for the added Services), asked over nfnetlink every millisecond
//! (`NFT_MSG_GETSETELEM`, what `nft get element` sends, without running
//! `nft`: before, one `nft` run a look made that figure's resolution an
//! `nft` process, hundreds of milliseconds under TCG).
//! Events are 200 ms apart, so each arrives after a quiet stretch, as
//! lone changes in a cluster do.
//!
//! Reported as a histogram, as kube-proxy reports
//! `network_programming_duration_seconds` (whose smallest bucket is
//! 0.25 s), with the 50th, 90th and 99th percentiles. `vm-tests/bench.sh`
//! runs `bench_event_full` (10,000 Services) and CI `bench_event_smoke`
//! (1,000). A figure, never an assertion on time.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fake_apiserver::objects::{endpoint_slice, service};
use fake_apiserver::{Batch, FakeApiServer};
use ipvs_k8s::model::Protocol;
use ipvs_k8s::node::nft::netlink;
use ipvs_k8s::packet::Key;
use ipvs_netlink::{Handle, ServiceId};
use vm_tests::enter_fresh_netns;
use vm_tests::live::Live;

const EVENTS: usize = 200;
const PORT: u16 = 8080;
const PATIENCE: Duration = Duration::from_secs(600);

fn vip(i: usize) -> String {
    format!(
        "10.{}.{}.{}",
        100 + ((i >> 16) & 63),
        (i >> 8) & 255,
        i & 255
    )
}

fn pods(i: usize, generation: usize) -> Vec<String> {
    (1..=4)
        .map(|k| format!("172.{}.{}.{}", 16 + generation % 8, i % 250, k))
        .collect()
}

fn objects(i: usize, generation: usize) -> (serde_json::Value, serde_json::Value) {
    let name = format!("svc-{i}");
    let pods = pods(i, generation);
    let addrs: Vec<&str> = pods.iter().map(String::as_str).collect();
    (
        service("bench", &name, &vip(i), &[("http", PORT)]),
        endpoint_slice("bench", &name, "abcde", &[("http", PORT)], &addrs),
    )
}

fn id(i: usize) -> ServiceId {
    ServiceId::tcp(SocketAddr::new(vip(i).parse().unwrap(), PORT))
}

/// Whether the kernel's table has service `i` with exactly the pods of
/// `generation`.
fn in_kernel(h: &mut Handle, i: usize, generation: usize) -> bool {
    let mut want: Vec<SocketAddr> = pods(i, generation)
        .iter()
        .map(|p| SocketAddr::new(p.parse().unwrap(), PORT))
        .collect();
    want.sort();
    match h.destinations(&id(i)) {
        Ok(dests) => {
            let mut got: Vec<SocketAddr> = dests.iter().map(|d| d.socket_addr()).collect();
            got.sort();
            got == want
        }
        Err(_) => false,
    }
}

/// Whether the packet path's `served-v4` set holds service `i`'s
/// element (one nfnetlink request, no `nft` run).
fn in_nft(i: usize) -> bool {
    let key = Key::Service(vip(i).parse().unwrap(), Protocol::Tcp, PORT);
    netlink::element_exists("served-v4", key).unwrap_or(false)
}

/// Polls `done` until it holds: the time from `from`.
fn until(from: Instant, what: &str, mut done: impl FnMut() -> bool, pause: Duration) -> Duration {
    while !done() {
        assert!(from.elapsed() < PATIENCE, "never {what}");
        std::thread::sleep(pause);
    }
    from.elapsed()
}

struct Figures {
    services: usize,
    to_ipvs: Vec<Duration>,
    to_nft: Vec<Duration>,
    /// Each step of the syncs after the first (the events' syncs), its
    /// milliseconds a sync, in the order the log names the steps.
    steps: Vec<(String, Vec<u64>)>,
}

/// The steps of every sync after the first in the live mode's `--verbose`
/// log (`sync N took: map 1 ms, table 0 ms, ...`), with their sum as
/// `whole`: where the time of an event's sync goes.
fn sync_steps(log: &str) -> Vec<(String, Vec<u64>)> {
    let mut steps: Vec<(String, Vec<u64>)> = Vec::new();
    let mut whole = Vec::new();
    for line in log.lines() {
        let Some((head, took)) = line.split_once(" took: ") else {
            continue;
        };
        let Some(n) = head
            .rsplit_once("sync ")
            .and_then(|(_, n)| n.parse::<u64>().ok())
        else {
            continue;
        };
        if n < 2 {
            continue;
        }
        let mut sum = 0;
        for step in took.split(", ") {
            let Some((name, ms)) = step
                .strip_suffix(" ms")
                .and_then(|s| s.rsplit_once(' '))
                .and_then(|(name, ms)| Some((name, ms.parse::<u64>().ok()?)))
            else {
                continue;
            };
            sum += ms;
            match steps.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => v.push(ms),
                None => steps.push((name.to_owned(), vec![ms])),
            }
        }
        whole.push(sum);
    }
    steps.push(("whole (their sum)".to_owned(), whole));
    steps
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn measure(services: usize) -> Figures {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join(format!("bench-event-{services}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let mut b = Batch::default();
    for i in 0..services {
        let (svc, slice) = objects(i, 0);
        b.apply(svc).apply(slice);
    }
    server.batch(b);

    let mut live = Live::start(
        Path::new(&dir),
        &["--node-ip", "192.168.49.2", "--resync", "3600"],
    );
    let mut h = Handle::new().unwrap();
    let last = services - 1;
    live.until("the first sync is done", PATIENCE, || {
        in_kernel(&mut h, last, 0) && in_nft(last)
    });
    std::thread::sleep(Duration::from_millis(500));

    let (mut to_ipvs, mut to_nft) = (Vec::new(), Vec::new());
    for e in 0..EVENTS {
        if e % 2 == 0 {
            // A new Service and its EndpointSlice, in one batch.
            let i = services + e / 2;
            let (svc, slice) = objects(i, 0);
            let mut b = Batch::default();
            b.apply(svc).apply(slice);
            let t = Instant::now();
            server.batch(b);
            to_ipvs.push(until(
                t,
                "a new Service in IPVS",
                || in_kernel(&mut h, i, 0),
                Duration::from_millis(1),
            ));
            to_nft.push(until(
                t,
                "a new Service in nftables",
                || in_nft(i),
                Duration::from_millis(1),
            ));
        } else {
            // One existing EndpointSlice, all its endpoints replaced.
            let i = (e * 7919) % services;
            let generation = 1 + e;
            let (_, slice) = objects(i, generation);
            let t = Instant::now();
            server.apply(slice);
            to_ipvs.push(until(
                t,
                "a changed EndpointSlice in IPVS",
                || in_kernel(&mut h, i, generation),
                Duration::from_millis(1),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    let steps = sync_steps(&log);
    assert!(
        steps.last().is_some_and(|(_, v)| !v.is_empty()),
        "no sync after the first in the log: {log}"
    );
    Figures {
        services,
        to_ipvs,
        to_nft,
        steps,
    }
}

fn report(f: &mut Figures) {
    f.to_ipvs.sort();
    f.to_nft.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("BENCH-TABLE-BEGIN");
    println!(
        "| event to kernel, {} Services (x4) loaded | events | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |",
        f.services
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (what, v) in [
        (
            "to IPVS (a Service added, or an EndpointSlice changed)",
            &f.to_ipvs,
        ),
        (
            "to the nftables set (a Service added; one nfnetlink request a look)",
            &f.to_nft,
        ),
    ] {
        println!(
            "| {what} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            v.len(),
            ms(percentile(v, 50.0)),
            ms(percentile(v, 90.0)),
            ms(percentile(v, 99.0)),
            ms(*v.last().unwrap()),
        );
    }
    println!();
    let bounds = [5u64, 10, 25, 50, 100, 250, 500, 1000];
    print!("| to IPVS: events at most |");
    for b in bounds {
        print!(" {b} ms |");
    }
    println!(" more |");
    println!("|---|{}---:|", "---:|".repeat(bounds.len()));
    print!("| {} events |", f.to_ipvs.len());
    let mut below = 0;
    for b in bounds {
        let n = f.to_ipvs.iter().filter(|d| ms(**d) <= b as f64).count();
        print!(" {n} |");
        below = n;
    }
    println!(" {} |", f.to_ipvs.len() - below);
    println!();
    println!(
        "| the events' syncs, by step (`--verbose`) | syncs | p50 (ms) | p90 (ms) | max (ms) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (step, v) in &mut f.steps {
        v.sort_unstable();
        let at = |p: f64| v[(((p / 100.0) * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        println!(
            "| {step} | {} | {} | {} | {} |",
            v.len(),
            at(50.0),
            at(90.0),
            v.last().copied().unwrap_or(0)
        );
    }
    println!("BENCH-TABLE-END");
}

#[test]
#[ignore = "run by test.sh at smoke size and by vm-tests/bench.sh"]
fn bench_event_smoke() {
    report(&mut measure(1_000));
}

#[test]
#[ignore = "run by vm-tests/bench.sh"]
fn bench_event_full() {
    report(&mut measure(10_000));
}
