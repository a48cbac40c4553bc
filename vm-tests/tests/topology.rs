//! Endpoint selection with real traffic (issue 30): the cluster lab of
//! `vm_tests::cluster`, the live `--from-k8s` on node1 in zone `zone-a`,
//! and connections from node1 itself to ClusterIPs.
//!
//! - A Service whose EndpointSlice carries zone hints (what
//!   `trafficDistribution: PreferClose` makes the EndpointSlice controller
//!   write): node1 reaches only the endpoints hinted for `zone-a` while
//!   one of them is ready; when none is, every ready endpoint; when one
//!   ready endpoint has no hint at all, every ready endpoint again (the
//!   fallbacks of kube-proxy's `CategorizeEndpoints`, pkg/proxy/topology.go).
//! - A Service of `internalTrafficPolicy: Local`: node1 and a client routed
//!   through it reach only node1's endpoint; with no local endpoint left,
//!   the ClusterIP serves nobody on node1 (kube-proxy's rule: no fallback
//!   to other nodes' endpoints), while pod-c behind node2 keeps serving.
//!
//! Which pod answered is the pod's own report (`vm_tests::cluster`), so the
//! truth is the kernel's choice of real server, not our table.

use std::path::Path;
use std::time::Duration;

use fake_apiserver::objects::service;
use fake_apiserver::{Batch, FakeApiServer};
use serde_json::{json, Value};
use vm_tests::cluster::{sa, start_on_node1, Cluster, Host, POD_A, POD_B, POD_C, POD_PORT};
use vm_tests::ipvsadm_ok;
use vm_tests::live::Live;

const ZONED_IP: &str = "10.96.0.30";
const LOCAL_IP: &str = "10.96.0.31";
const PATIENCE: Duration = Duration::from_secs(60);
/// Connections per check: with three real servers under rr, one that
/// should never answer would answer at least once in this many.
const TRIES: usize = 12;

/// One endpoint: address, node, zone, zone hint (`None`: no hints), ready.
type Ep = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    bool,
);

fn slice(svc: &str, eps: &[Ep]) -> Value {
    let eps: Vec<Value> = eps
        .iter()
        .map(|(addr, node, zone, hint, ready)| {
            let mut e = json!({
                "addresses": [addr],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": node,
                "zone": zone,
            });
            if let Some(h) = hint {
                e["hints"] = json!({"forZones": [{"name": h}]});
            }
            e
        })
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"namespace": "default", "name": format!("{svc}-abcde"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": POD_PORT, "protocol": "TCP"}],
        "endpoints": eps,
    })
}

fn zoned_service() -> Value {
    let mut s = service("default", "zoned", ZONED_IP, &[("http", 80)]);
    s["spec"]["trafficDistribution"] = json!("PreferClose");
    s
}

fn local_service() -> Value {
    let mut s = service("default", "local", LOCAL_IP, &[("http", 80)]);
    s["spec"]["internalTrafficPolicy"] = json!("Local");
    s
}

fn start(dir: &Path) -> Live {
    start_on_node1(dir, &["--node-zone", "zone-a"])
}

/// The pods that answered `TRIES` TCP connections from `from` to `ip:80`,
/// sorted, once each; panics on a failed connection.
fn answered(cluster: &Cluster, from: Host, ip: &str) -> Vec<String> {
    let mut pods: Vec<String> = (0..TRIES)
        .map(|_| {
            let seen = cluster
                .tcp(from, sa(ip, 80))
                .unwrap_or_else(|e| panic!("{from:?} -> {ip}:80: {e}"));
            seen.pod.to_string()
        })
        .collect();
    pods.sort();
    pods.dedup();
    eprintln!("  {from:?} -> {ip}:80 answered by {pods:?}");
    pods
}

fn real_servers(ip: &str) -> Vec<String> {
    let table = ipvsadm_ok(&["-Sn"]);
    let prefix = format!("-a -t {ip}:80 -r ");
    let mut rs: Vec<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split(':').next())
        .map(str::to_owned)
        .collect();
    rs.sort();
    rs
}

/// Waits until the real ipvsadm lists exactly `want` behind `ip:80`.
fn until_real_servers(live: &mut Live, ip: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    live.until(
        &format!("{ip}:80 has real servers {want:?}"),
        PATIENCE,
        || real_servers(ip) == want,
    );
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn zone_hints_and_internal_traffic_policy_with_real_traffic() {
    let cluster = Cluster::new();
    let dir = std::env::temp_dir().join("topology");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();

    let a = (POD_A, "node1", "zone-a", Some("zone-a"), true);
    let b = (POD_B, "node1", "zone-a", Some("zone-a"), true);
    let c = (POD_C, "node2", "zone-b", Some("zone-b"), true);
    let mut batch = Batch::default();
    batch
        .apply(zoned_service())
        .apply(slice("zoned", &[a, b, c]))
        .apply(local_service())
        .apply(slice(
            "local",
            &[
                (POD_A, "node1", "zone-a", None, true),
                (POD_C, "node2", "zone-b", None, true),
            ],
        ));
    server.batch(batch);

    let mut live = start(&dir);
    until_real_servers(&mut live, ZONED_IP, &[POD_A, POD_B]);
    until_real_servers(&mut live, LOCAL_IP, &[POD_A]);

    eprintln!("zone hints: node1 (zone-a) reaches zone-a's endpoints only");
    assert_eq!(answered(&cluster, Host::Node1, ZONED_IP), [POD_A, POD_B]);
    assert_eq!(answered(&cluster, Host::ClientIn, ZONED_IP), [POD_A, POD_B]);

    eprintln!("zone hints: zone-a's endpoints not ready, every ready endpoint");
    let not_ready = |(addr, node, zone, hint, _): Ep| (addr, node, zone, hint, false);
    server.apply(slice("zoned", &[not_ready(a), not_ready(b), c]));
    until_real_servers(&mut live, ZONED_IP, &[POD_C]);
    assert_eq!(answered(&cluster, Host::Node1, ZONED_IP), [POD_C]);

    eprintln!("zone hints: one ready endpoint without a hint, every ready endpoint");
    server.apply(slice(
        "zoned",
        &[a, b, (POD_C, "node2", "zone-b", None, true)],
    ));
    until_real_servers(&mut live, ZONED_IP, &[POD_A, POD_B, POD_C]);
    assert_eq!(
        answered(&cluster, Host::Node1, ZONED_IP),
        [POD_A, POD_B, POD_C]
    );

    eprintln!("internalTrafficPolicy Local: node1's endpoint only");
    assert_eq!(answered(&cluster, Host::Node1, LOCAL_IP), [POD_A]);
    assert_eq!(answered(&cluster, Host::ClientIn, LOCAL_IP), [POD_A]);
    assert_eq!(answered(&cluster, Host::Pod(1), LOCAL_IP), [POD_A]);

    eprintln!("internalTrafficPolicy Local: no local endpoint, no fallback");
    server.apply(slice(
        "local",
        &[
            (POD_A, "node1", "zone-a", None, false),
            (POD_C, "node2", "zone-b", None, true),
        ],
    ));
    until_real_servers(&mut live, LOCAL_IP, &[]);
    let refused = cluster.tcp(Host::Node1, sa(LOCAL_IP, 80));
    assert!(
        refused.is_err(),
        "node1 -> {LOCAL_IP}:80 with no local endpoint: {refused:?}"
    );
    // pod-c itself still serves (the Service is not dropped, only node1's
    // share of it is empty).
    let direct = cluster.tcp(Host::Node1, sa(POD_C, POD_PORT)).unwrap();
    assert_eq!(direct.pod.to_string(), POD_C);

    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
}
