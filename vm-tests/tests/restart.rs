//! A restart of the live mode drops nothing (issue 30; kubernetes#92019,
//! #108319: kube-proxy's IPVS mode could leave real servers at weight 0
//! after a restart). In the cluster lab (`vm_tests::cluster`), node1 runs
//! `--from-k8s` live with the packet path; the client outside the cluster
//! CIDR makes a new TCP connection to a ClusterIP every 20 ms (masqueraded:
//! the nftables table matters as much as IPVS) and holds one connection
//! open to another ClusterIP, echoing a line every 50 ms; the real ipvsadm
//! reads the table every 50 ms. Then: SIGTERM and a new start; SIGKILL and
//! a new start; a start while the API server stalls every list, healed
//! later. Not one connection may fail, the long one must keep echoing, and
//! the table read by the real ipvsadm must never lack a service, a real
//! server, or have a weight other than 1.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fake_apiserver::objects::{endpoint_slice, service};
use fake_apiserver::{Batch, FakeApiServer, Fault};
use vm_tests::cluster::{sa, start_on_node1, tcp_flow, Cluster, POD_A, POD_B, POD_C};
use vm_tests::ipvsadm_ok;
use vm_tests::live::{synced, Live};
use vm_tests::traffic::{echo_server, Traffic};

/// default/web, ClusterIP 10.96.0.10:8080, pod-a and pod-c (the lab's
/// servers listen on 8080).
const WEB_IP: &str = "10.96.0.10";
const WEB_PORT: u16 = 8080;
/// default/long, ClusterIP 10.96.0.20:7000, pod-b's echo server.
const LONG_IP: &str = "10.96.0.20";
const LONG_PORT: u16 = 7000;
/// A hang guard for a slow emulated VM (not a speed check).
const PATIENCE: Duration = Duration::from_secs(60);

fn objects() -> Batch {
    let mut b = Batch::default();
    b.apply(service("default", "web", WEB_IP, &[("http", WEB_PORT)]))
        .apply(endpoint_slice(
            "default",
            "web",
            "abcde",
            &[("http", WEB_PORT)],
            &[POD_A, POD_C],
        ))
        .apply(service("default", "long", LONG_IP, &[("echo", LONG_PORT)]))
        .apply(endpoint_slice(
            "default",
            "long",
            "abcde",
            &[("echo", LONG_PORT)],
            &[POD_B],
        ));
    b
}

fn start(dir: &Path) -> Live {
    start_on_node1(dir, &[])
}

/// What the table must hold at every look: both services, their real
/// servers, weight 1 each.
fn table_whole(table: &str) -> Result<(), String> {
    let want = [
        format!("-A -t {WEB_IP}:{WEB_PORT} "),
        format!("-a -t {WEB_IP}:{WEB_PORT} -r {POD_A}:{WEB_PORT} -m -w 1"),
        format!("-a -t {WEB_IP}:{WEB_PORT} -r {POD_C}:{WEB_PORT} -m -w 1"),
        format!("-A -t {LONG_IP}:{LONG_PORT} "),
        format!("-a -t {LONG_IP}:{LONG_PORT} -r {POD_B}:{LONG_PORT} -m -w 1"),
    ];
    match want.iter().find(|w| !table.contains(w.as_str())) {
        None => Ok(()),
        Some(w) => Err(format!("no `{w}` in:\n{table}")),
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn restarts_drop_no_connection() {
    let cluster = Cluster::new();
    // pod-b's echo server, on the long Service's port.
    echo_server(&cluster.pods[1], LONG_PORT);

    let dir = std::env::temp_dir().join("restart");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    server.batch(objects());

    let mut live = start(&dir);
    live.until_logged("the first start synced", PATIENCE, synced);
    let to_web = sa(WEB_IP, WEB_PORT);
    live.until("the client reaches the ClusterIP", PATIENCE, || {
        cluster
            .run(vm_tests::cluster::Host::ClientOut, move || tcp_flow(to_web))
            .is_ok()
    });
    table_whole(&ipvsadm_ok(&["-Sn"])).unwrap();

    // New connections from outside the cluster CIDR; one held open across
    // every restart.
    let traffic = Traffic::start(&cluster, to_web, sa(LONG_IP, LONG_PORT));
    // The real ipvsadm's view of the table, all along.
    let watcher = {
        let (stop, errors) = (traffic.stopped(), traffic.errors());
        std::thread::spawn(move || {
            let mut looks = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = table_whole(&ipvsadm_ok(&["-Sn"])) {
                    errors.lock().unwrap().push(format!("the table: {e}"));
                }
                looks += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            looks
        })
    };
    traffic.phase("steady");

    // SIGTERM, a second without a proxy, then a new start.
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    std::thread::sleep(Duration::from_secs(1));
    let mut live = start(&dir);
    live.until_logged("the start after SIGTERM synced", PATIENCE, synced);
    traffic.phase("after SIGTERM and a start");

    // SIGKILL: no chance to do anything on the way out.
    live.child.kill().unwrap();
    let _ = live.child.wait();
    std::thread::sleep(Duration::from_secs(1));
    let mut live = start(&dir);
    live.until_logged("the start after SIGKILL synced", PATIENCE, synced);
    traffic.phase("after SIGKILL and a start");

    // A start while the API server stalls every request: the table stays
    // as it is until the lists come, then the first sync changes nothing
    // that serves.
    drop(live);
    server.fault(None, Some(Fault::StallHead));
    let mut live = start(&dir);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !synced(&live.log()),
        "a sync ran while the API server stalled:\n{}",
        live.log()
    );
    traffic.phase("a start against a stalled API server");
    server.fault(None, None);
    live.until_logged(
        "the start after the API server healed synced",
        PATIENCE,
        synced,
    );
    traffic.phase("after the API server healed");

    traffic.stop();
    let looks = watcher.join().unwrap();
    let report = traffic.finish();
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    eprintln!("{}; the table read {looks} times", report.summary());
    report.assert_clean();
}
