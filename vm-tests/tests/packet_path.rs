//! The packet path of `ipvsadm-rs --from-k8s` (issue 29), live, in the
//! cluster lab (`vm_tests::cluster`): node1 runs the live mode against the
//! fake API server (in this test process, in node1's namespace), with
//! kube-proxy's flags `--cluster-cidr`, `--nodeport-addresses` and then
//! `--masquerade-all`; the clients, node2 and the pods make real TCP and
//! UDP flows and each pod reports the source it saw. Next to it, another
//! tool's nft table and IPVS service, left as they were. After SIGTERM and
//! `--cleanup`, `nft list ruleset`, node1's addresses and the IPVS table are
//! exactly what they were before the start. The expectations are
//! kube-proxy's IPVS mode's (and the ruleset validated by hand in
//! `ruleset_by_hand.rs`, docs/ruleset-validated.md).

use fake_apiserver::objects::node_slice as slice;
use std::path::Path;
use std::time::Duration;

use fake_apiserver::objects::service;
use fake_apiserver::{Batch, FakeApiServer};
use serde_json::{json, Value};
use vm_tests::cluster::{
    assert_sources, sa, start_on_node1, Cluster, Host, CLIENT_IN, CLIENT_OUT, NODE1, OTHER_SERVICE,
    OTHER_TABLE, POD_A, POD_B, POD_C, POD_PORT, SOURCE_RANGE,
};
use vm_tests::live::Live;
use vm_tests::{ipvsadm_ok, nft_ok};

/// default/web, ClusterIP: TCP 80 and UDP 53 to pod-a and pod-c.
const WEB_IP: &str = "10.96.0.10";
/// default/hair, ClusterIP: TCP 80 to pod-a alone (hairpin).
const HAIR_IP: &str = "10.96.0.11";
/// default/np, NodePort: TCP 30080 and UDP 30053 to pod-a and pod-c.
const NP_TCP: u16 = 30080;
const NP_UDP: u16 = 30053;
/// default/lb, LoadBalancer with source ranges, Cluster: pod-a and pod-c.
const LB_IP: &str = "198.51.100.10";
/// default/local, LoadBalancer, externalTrafficPolicy Local: pod-b (node1)
/// and pod-c (node2); its NodePort and health-check node port.
const LOCAL_IP: &str = "198.51.100.11";
const LOCAL_NP: u16 = 30081;
const LOCAL_HC: u16 = 30500;
/// default/remote, LoadBalancer, Local, with pod-c (node2) alone: no local
/// endpoint on node1; its health-check node port.
const REMOTE_IP: &str = "198.51.100.12";
const REMOTE_HC: u16 = 30501;

/// A hang guard for convergence on a slow emulated VM (not a speed check).
const PATIENCE: Duration = Duration::from_secs(60);

/// A Service `default/name` at `ip` with `ports` (name, protocol, port,
/// node port or 0), target port [`POD_PORT`].
fn svc(name: &str, ip: &str, kind: &str, ports: &[(&str, &str, u16, u16)]) -> Value {
    let mut s = service("default", name, ip, &[]);
    s["spec"]["type"] = json!(kind);
    s["spec"]["ports"] = ports
        .iter()
        .map(|(n, proto, port, np)| {
            let mut p = json!({"name": n, "protocol": proto, "port": port, "targetPort": POD_PORT});
            if *np != 0 {
                p["nodePort"] = json!(np);
            }
            p
        })
        .collect();
    s
}

/// A LoadBalancer Service with its ingress address `lb`.
fn lb(name: &str, ip: &str, lb: &str, node_port: u16) -> Value {
    let mut s = svc(name, ip, "LoadBalancer", &[("http", "TCP", 80, node_port)]);
    s["status"] = json!({"loadBalancer": {"ingress": [{"ip": lb}]}});
    s
}

/// The cluster the fake API server serves.
fn cluster_objects() -> Batch {
    let both = [(POD_A, "node1"), (POD_C, "node2")];
    let mut b = Batch::default();
    b.apply(svc(
        "web",
        WEB_IP,
        "ClusterIP",
        &[("http", "TCP", 80, 0), ("dns", "UDP", 53, 0)],
    ))
    .apply(slice(
        "web",
        &[("http", "TCP", POD_PORT), ("dns", "UDP", POD_PORT)],
        &both,
    ))
    .apply(svc("hair", HAIR_IP, "ClusterIP", &[("http", "TCP", 80, 0)]))
    .apply(slice(
        "hair",
        &[("http", "TCP", POD_PORT)],
        &[(POD_A, "node1")],
    ))
    .apply(svc(
        "np",
        "10.96.0.12",
        "NodePort",
        &[("http", "TCP", 80, NP_TCP), ("dns", "UDP", 53, NP_UDP)],
    ))
    .apply(slice(
        "np",
        &[("http", "TCP", POD_PORT), ("dns", "UDP", POD_PORT)],
        &both,
    ));
    let mut with_ranges = lb("lb", "10.96.0.13", LB_IP, 30082);
    with_ranges["spec"]["loadBalancerSourceRanges"] = json!([SOURCE_RANGE]);
    b.apply(with_ranges)
        .apply(slice("lb", &[("http", "TCP", POD_PORT)], &both));
    let mut local = lb("local", "10.96.0.14", LOCAL_IP, LOCAL_NP);
    local["spec"]["externalTrafficPolicy"] = json!("Local");
    local["spec"]["healthCheckNodePort"] = json!(LOCAL_HC);
    b.apply(local).apply(slice(
        "local",
        &[("http", "TCP", POD_PORT)],
        &[(POD_B, "node1"), (POD_C, "node2")],
    ));
    let mut remote = lb("remote", "10.96.0.15", REMOTE_IP, 30083);
    remote["spec"]["externalTrafficPolicy"] = json!("Local");
    remote["spec"]["healthCheckNodePort"] = json!(REMOTE_HC);
    b.apply(remote).apply(slice(
        "remote",
        &[("http", "TCP", POD_PORT)],
        &[(POD_C, "node2")],
    ));
    b
}

/// Starts the live mode on node1 with kube-proxy's flags of the lab, and
/// `extra`.
fn start(dir: &Path, extra: &[&str]) -> Live {
    let mut args = vec!["--nodeport-addresses", "192.168.1.0/24"];
    args.extend_from_slice(extra);
    start_on_node1(dir, &args)
}

/// What must be as before the start: the whole ruleset, node1's
/// addresses and links, and the IPVS table.
fn node_state() -> (String, String, String) {
    // IPv6 duplicate address detection may still be running on the pods'
    // links at the first look: its `tentative` flag is not the node's state.
    let addrs =
        vm_tests::sh("/sbin/ip -o addr show | sed 's/ valid_lft.*//; s/ tentative//' | sort");
    let links = vm_tests::sh("/sbin/ip -o link show | sed 's/^[0-9]*: //; s/ qdisc.*//' | sort");
    (
        nft_ok(&["list", "ruleset"], ""),
        format!("{addrs}{links}"),
        ipvsadm_ok(&["-Sn"]),
    )
}

/// The health-check node port's answer from `from` at node1: the status
/// and the body's JSON.
fn health(cluster: &Cluster, from: Host, port: u16) -> (u16, Value) {
    let (code, body) = cluster
        .http_get(from, sa(NODE1, port), "/")
        .unwrap_or_else(|e| panic!("GET {NODE1}:{port}: {e}"));
    let body = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {NODE1}:{port}: body not JSON ({e}): {body:?}"));
    (code, body)
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_live_packet_path_and_a_clean_node_after() {
    let cluster = Cluster::new();
    nft_ok(&["-f", "-"], OTHER_TABLE);
    for line in OTHER_SERVICE.lines() {
        ipvsadm_ok(&line.split_whitespace().collect::<Vec<_>>());
    }
    let before = node_state();
    let other_before = nft_ok(&["list", "table", "inet", "othertool"], "");

    let dir = std::env::temp_dir().join("packet-path");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    server.batch(cluster_objects());
    // A daemon of node1 listening on every address (kubernetes#72236).
    let daemon = std::net::TcpListener::bind("0.0.0.0:9999").unwrap();
    std::thread::spawn(move || for _s in daemon.incoming() {});

    let mut live = start(&dir, &[]);
    live.until("the table and the ruleset are written", PATIENCE, || {
        let table = ipvsadm_ok(&["-Sn"]);
        table.contains(&format!("-A -t {REMOTE_IP}:80"))
            && table.contains(&format!("-a -t {LOCAL_IP}:80 -r {POD_B}:{POD_PORT}"))
            && vm_tests::nft_run(&["list", "table", "inet", "ipvs-rs"], "").code == Some(0)
    });
    eprintln!("{}", ipvsadm_ok(&["-Sn"]));

    eprintln!("NodePort, Cluster, pods on both nodes: the node's address");
    let seen = cluster.each_pod(Host::ClientIn, sa(NODE1, NP_TCP), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "NodePort tcp");
    let seen = cluster.each_pod(Host::ClientOut, sa(NODE1, NP_UDP), true, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "NodePort udp");

    eprintln!("LoadBalancer IP with source ranges: inside through, outside refused");
    let seen = cluster.each_pod(Host::ClientIn, sa(LB_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "LB IP from inside the ranges");
    let refused = cluster.tcp(Host::ClientOut, sa(LB_IP, 80));
    assert!(
        refused.is_err(),
        "{CLIENT_OUT} outside {SOURCE_RANGE} got {refused:?}"
    );

    eprintln!("externalTrafficPolicy Local: the client's address, health 200 / 503");
    let seen = cluster.each_pod(Host::ClientIn, sa(LOCAL_IP, 80), false, &[POD_B]);
    assert_sources(&seen, CLIENT_IN, "LB IP, Local");
    let seen = cluster.each_pod(Host::ClientOut, sa(NODE1, LOCAL_NP), false, &[POD_B]);
    assert_sources(&seen, CLIENT_OUT, "NodePort, Local");
    let (code, body) = health(&cluster, Host::ClientIn, LOCAL_HC);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["service"],
        json!({"namespace": "default", "name": "local"}),
        "{body}"
    );
    assert_eq!(body["localEndpoints"], json!(1), "{body}");
    let (code, body) = health(&cluster, Host::Node2, REMOTE_HC);
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        body["service"],
        json!({"namespace": "default", "name": "remote"}),
        "{body}"
    );
    assert_eq!(body["localEndpoints"], json!(0), "{body}");

    eprintln!("Hairpin, pod to ClusterIP, node1 to ClusterIP, outside to ClusterIP");
    let seen = cluster.each_pod(Host::Pod(0), sa(HAIR_IP, 80), false, &[POD_A]);
    assert_sources(&seen, NODE1, "hairpin");
    let seen = cluster.each_pod(Host::Pod(1), sa(WEB_IP, 53), true, &[POD_A, POD_C]);
    assert_sources(&seen, POD_B, "pod to ClusterIP (inside --cluster-cidr)");
    let seen = cluster.each_pod(Host::Node1, sa(WEB_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "node1 to ClusterIP");
    let seen = cluster.each_pod(Host::ClientOut, sa(WEB_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "outside --cluster-cidr to ClusterIP");

    eprintln!("A ClusterIP's unserved port: refused; the daemon on node1's own address is not");
    let refused = cluster.tcp(Host::ClientIn, sa(WEB_IP, 9999));
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    let reached = cluster.run(Host::ClientIn, || {
        std::net::TcpStream::connect_timeout(&sa(NODE1, 9999), Duration::from_secs(3))
    });
    assert!(reached.is_ok(), "{reached:?}");

    eprintln!("The other tool's table and service: intact");
    assert_eq!(
        nft_ok(&["list", "table", "inet", "othertool"], ""),
        other_before
    );
    let table = ipvsadm_ok(&["-Sn"]);
    for line in OTHER_SERVICE.lines() {
        assert!(table.contains(line), "{line} gone from:\n{table}");
    }
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");

    eprintln!("--masquerade-all: a pod reaching a ClusterIP is masqueraded too");
    // Resyncs every 2 s: the table removed below comes back at one.
    let mut live = start(&dir, &["--masquerade-all", "--resync", "2"]);
    // The first run's table stays after SIGTERM (as kube-proxy's rules
    // do): wait for the second run's, whose ClusterIP flows are masqueraded.
    live.until(
        "a pod's flow to a ClusterIP is masqueraded",
        PATIENCE,
        || {
            cluster
                .tcp(Host::Pod(1), sa(WEB_IP, 80))
                .is_ok_and(|seen| seen.source().to_string() == NODE1)
        },
    );
    let seen = cluster.each_pod(Host::Pod(1), sa(WEB_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "pod to ClusterIP with --masquerade-all");

    eprintln!("Another tool removes our nftables table: a resync writes it again");
    nft_ok(&["delete", "table", "inet", "ipvs-rs"], "");
    live.until(
        "the table is back and the NodePort answers",
        PATIENCE,
        || {
            vm_tests::nft_run(&["list", "table", "inet", "ipvs-rs"], "").code == Some(0)
                && cluster.tcp(Host::ClientOut, sa(NODE1, NP_TCP)).is_ok()
        },
    );
    let seen = cluster.each_pod(Host::ClientIn, sa(NODE1, NP_TCP), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "NodePort tcp after the table came back");
    let (code, log) = live.terminate();
    assert!(
        log.lines()
            .any(|l| l.contains("(resync)")
                && l.contains("(whole table: another tool had removed it)")),
        "{log}"
    );
    assert_eq!(code, Some(0), "{log}");

    eprintln!("--cleanup: the node as before the start");
    vm_tests::live::cleanup(&dir);
    let after = node_state();
    assert_eq!(after.0, before.0, "nft list ruleset after --cleanup");
    assert_eq!(
        after.1, before.1,
        "node1's addresses and links after --cleanup"
    );
    assert_eq!(after.2, before.2, "the IPVS table after --cleanup");
    // Again on the clean node: nothing to do, exit 0.
    vm_tests::live::cleanup(&dir);
    drop(server);
}
