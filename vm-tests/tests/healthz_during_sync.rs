//! Issue 29: the live mode's `/healthz` answers while a long first sync
//! writes. The fake API server (in this test process) holds
//! [`SERVICES`] Services of four endpoints each; `ipvsadm-rs --from-k8s`
//! (a child process, in a network namespace of its own) syncs them into
//! the real kernel's IPVS table while the test probes `/healthz`, one
//! probe after another, until one answers 200 (the sync recorded).
//!
//! The runtime serves `/healthz` while a sync writes only if the sync runs
//! off its thread: a probe sent during the sync is then answered at once,
//! 503 (no sync done yet). A runtime blocked by the sync answers the first
//! probe sent during it only after the sync, with 200. So every probe sent
//! during the sync must be answered with 503 (the last may see the sync
//! end), and enough of them must have been sent to tell. Latencies are
//! printed, not asserted.

use std::path::Path;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use vm_tests::live::{bulk_services, healthz, Live};
use vm_tests::{enter_fresh_netns, ipvsadm_ok};

/// Services of the cluster: a first sync of a few seconds in the
/// emulated VM.
const SERVICES: usize = 2_500;

/// A hang guard for the sync and for each probe on a slow emulated VM
/// (not a speed check).
const PATIENCE: Duration = Duration::from_secs(300);

/// Where the health endpoint listens.
const HEALTHZ: &str = "127.0.0.1:10256";

/// One probe: how long its answer took, its status line, and whether the
/// log showed the sync done before it was sent.
struct Probe {
    latency: Duration,
    status: String,
    after_the_sync: bool,
}

fn log_has(live: &Live, what: &str) -> bool {
    live.log().contains(what)
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn healthz_answers_during_a_long_first_sync() {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join("healthz-during-sync");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(Path::new(&dir).join("kubeconfig"), server.kubeconfig()).unwrap();
    server.batch(bulk_services(SERVICES));

    let mut live = Live::start(
        &dir,
        &[
            "--healthz",
            HEALTHZ,
            "--resync",
            "3600",
            "--node-ip",
            "192.168.49.2",
            "--node-name",
            "node-a",
        ],
    );
    // The loop logs "a sync starts" just before it hands the sync over.
    let started = Instant::now();
    while !log_has(&live, "a sync starts") {
        if let Ok(Some(status)) = live.child.try_wait() {
            panic!("ipvsadm-rs ended ({status}):\n{}", live.log());
        }
        assert!(started.elapsed() < PATIENCE, "no sync:\n{}", live.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = format!("sync 1: {SERVICES} Services");
    let mut probes = Vec::new();
    loop {
        assert!(started.elapsed() < PATIENCE, "no 200 yet:\n{}", live.log());
        let after_the_sync = log_has(&live, &done);
        let asked = Instant::now();
        let Some((status, body)) = healthz(HEALTHZ, PATIENCE) else {
            panic!(
                "probe {} got no answer; log:\n{}",
                probes.len() + 1,
                live.log()
            );
        };
        let latency = asked.elapsed();
        let healthy = status.contains(" 200 ");
        assert!(healthy || status.contains(" 503 "), "{status}\n{body}");
        probes.push(Probe {
            latency,
            status,
            after_the_sync,
        });
        if healthy {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = live.log();
    assert!(log.contains(&done), "{log}");
    let during: Vec<&Probe> = probes.iter().filter(|p| !p.after_the_sync).collect();
    // Answered while the sync ran: 503, no sync recorded yet.
    let answered_during = during.iter().filter(|p| p.status.contains(" 503 ")).count();
    let mut latencies: Vec<Duration> = during.iter().map(|p| p.latency).collect();
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let sync_ms = log
        .lines()
        .find(|l| l.contains(&done))
        .and_then(|l| l.rsplit(", ").next())
        .unwrap_or("?");
    eprintln!(
        "/healthz during a first sync of {SERVICES} Services x 4 ({sync_ms}): {} probes sent \
         during it, {answered_during} answered 503 while it ran; latency median {:.1} ms, \
         slowest {:.1} ms",
        during.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1]),
    );
    // Every probe sent during the sync but the last was answered before
    // it ended (the loop stops at the first 200).
    assert!(
        during.len() >= 2 && answered_during >= during.len() - 1,
        "{} probes during the sync, {answered_during} answered while it ran",
        during.len()
    );
    // Enough of them to tell a served runtime from a blocked one.
    assert!(
        answered_during >= 10,
        "only {answered_during} probes answered during the sync:\n{log}"
    );
    // The sync did write the whole table.
    let table = ipvsadm_ok(&["-Sn"]);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("-A ")).count(),
        SERVICES
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("-a ")).count(),
        SERVICES * 4
    );
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
}
