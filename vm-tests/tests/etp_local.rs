//! In-cluster traffic to the load-balancer and external IPs (and the
//! NodePort) of an `externalTrafficPolicy: Local` Service (issue 30; kubernetes#93456,
//! #71596: kube-proxy's IPVS mode gives it the node's local endpoints
//! only, so a pod on a node without one gets nothing), live, in the
//! cluster lab (`vm_tests::cluster`): node1 runs `--from-k8s` with
//! `--cluster-cidr`; pods and node1 itself reach every ready endpoint
//! through the port's firewall-mark virtual service, as kube-proxy's
//! nftables mode short-circuits them, while an outside client keeps its
//! address and this node's endpoints only (none: nothing answers). The
//! marks stay across a restart, and `--cleanup` removes the firewall-mark
//! services with the rest.

use std::path::Path;
use std::time::Duration;

use fake_apiserver::objects::service;
use fake_apiserver::{Batch, FakeApiServer};
use serde_json::{json, Value};
use vm_tests::cluster::{
    assert_sources, sa, start_on_node1, Cluster, Host, CLIENT_IN, NODE1, POD_A, POD_B, POD_C,
    POD_PORT,
};
use vm_tests::live::Live;
use vm_tests::{ipvsadm_ok, nft_ok};

/// default/remote: LoadBalancer, Local, its one endpoint pod-c (node2);
/// its NodePort.
const REMOTE_IP: &str = "198.51.100.12";
const REMOTE_NP: u16 = 30083;
/// default/local: LoadBalancer, Local, pod-b (node1) and pod-c (node2).
const LOCAL_IP: &str = "198.51.100.11";
/// default/ext: ClusterIP with an external IP, Local, pod-c alone.
const EXT_IP: &str = "198.51.100.13";
/// default/cluster: LoadBalancer, Cluster (no firewall mark).
const CLUSTER_LB: &str = "198.51.100.14";

/// A hang guard for convergence on a slow emulated VM (not a speed check).
const PATIENCE: Duration = Duration::from_secs(60);

/// An EndpointSlice of `svc`, port `http` TCP [`POD_PORT`], one ready
/// endpoint per (address, node).
fn slice(svc: &str, eps: &[(&str, &str)]) -> Value {
    fake_apiserver::objects::node_slice(svc, &[("http", "TCP", POD_PORT)], eps)
}

/// A Service `default/name` of `kind` at `ip`, port `http` TCP 80 to
/// [`POD_PORT`], `externalTrafficPolicy` `policy`.
fn svc(name: &str, ip: &str, kind: &str, policy: &str, node_port: u16) -> Value {
    let mut s = service("default", name, ip, &[]);
    s["spec"]["type"] = json!(kind);
    let mut port = json!({"name": "http", "protocol": "TCP", "port": 80, "targetPort": POD_PORT});
    if node_port != 0 {
        port["nodePort"] = json!(node_port);
    }
    s["spec"]["ports"] = json!([port]);
    s["spec"]["externalTrafficPolicy"] = json!(policy);
    s
}

/// A LoadBalancer Service with its ingress address `lb`.
fn lb(name: &str, ip: &str, lb: &str, policy: &str, node_port: u16) -> Value {
    let mut s = svc(name, ip, "LoadBalancer", policy, node_port);
    s["status"] = json!({"loadBalancer": {"ingress": [{"ip": lb}]}});
    s
}

fn cluster_objects() -> Batch {
    let mut b = Batch::default();
    b.apply(lb("remote", "10.96.0.15", REMOTE_IP, "Local", REMOTE_NP))
        .apply(slice("remote", &[(POD_C, "node2")]))
        .apply(lb("local", "10.96.0.14", LOCAL_IP, "Local", 30081))
        .apply(slice("local", &[(POD_B, "node1"), (POD_C, "node2")]));
    let mut ext = svc("ext", "10.96.0.16", "ClusterIP", "Local", 0);
    ext["spec"]["externalIPs"] = json!([EXT_IP]);
    b.apply(ext)
        .apply(slice("ext", &[(POD_C, "node2")]))
        .apply(lb("cluster", "10.96.0.17", CLUSTER_LB, "Cluster", 30084))
        .apply(slice("cluster", &[(POD_A, "node1"), (POD_C, "node2")]));
    b
}

/// The firewall-mark lines of `ipvsadm -Sn` (services and real servers).
fn fwmark_lines() -> Vec<String> {
    ipvsadm_ok(&["-Sn"])
        .lines()
        .filter(|l| l.starts_with("-A -f") || l.starts_with("-a -f"))
        .map(str::to_owned)
        .collect()
}

fn start(dir: &Path) -> Live {
    start_on_node1(dir, &["--nodeport-addresses", "192.168.1.0/24"])
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn in_cluster_traffic_to_a_local_lb_ip_reaches_every_endpoint() {
    let cluster = Cluster::new();
    let dir = std::env::temp_dir().join("etp-local");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    server.batch(cluster_objects());

    let mut live = start(&dir);
    live.until("the table is written", PATIENCE, || {
        fwmark_lines().len() == 3 + 4
    });
    let table = ipvsadm_ok(&["-Sn"]);
    eprintln!("{table}");
    // One firewall-mark service per Local port with an LB or external IP,
    // each with every ready endpoint; the Local LB services keep this
    // node's endpoints only; the Cluster Service has none.
    let marks = fwmark_lines();
    let services: Vec<&String> = marks.iter().filter(|l| l.starts_with("-A")).collect();
    assert_eq!(services.len(), 3, "{table}");
    for s in &services {
        let mark: u32 = s.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!((0x1000..=0x3fff).contains(&mark), "{s}");
    }
    assert!(
        !table.contains(&format!("-a -t {REMOTE_IP}:80 -r")),
        "{table}"
    );
    assert!(table.contains(&format!("-a -t {LOCAL_IP}:80 -r {POD_B}:{POD_PORT}")));
    assert!(
        !table.contains(&format!("-a -t {LOCAL_IP}:80 -r {POD_C}")),
        "{table}"
    );

    eprintln!("A pod on node1 to the Local LB IP whose one endpoint is on node2: answered");
    let seen = cluster.each_pod(Host::Pod(1), sa(REMOTE_IP, 80), false, &[POD_C]);
    assert_sources(&seen, POD_B, "pod to a Local LB IP (inside --cluster-cidr)");
    eprintln!("A pod to a Local LB IP with endpoints on both nodes: both answer");
    let seen = cluster.each_pod(Host::Pod(0), sa(LOCAL_IP, 80), false, &[POD_B, POD_C]);
    assert_sources(&seen, POD_A, "pod to a Local LB IP");
    eprintln!("A pod to a Local external IP: answered from node2");
    let seen = cluster.each_pod(Host::Pod(1), sa(EXT_IP, 80), false, &[POD_C]);
    assert_sources(&seen, POD_B, "pod to a Local external IP");
    eprintln!("A pod to the Local NodePort on node1's address: answered from node2");
    let seen = cluster.each_pod(Host::Pod(1), sa(NODE1, REMOTE_NP), false, &[POD_C]);
    assert_sources(&seen, POD_B, "pod to a Local NodePort");
    eprintln!("node1 itself to the Local LB IP: answered, masqueraded");
    let seen = cluster.each_pod(Host::Node1, sa(REMOTE_IP, 80), false, &[POD_C]);
    assert_sources(&seen, NODE1, "node1 to a Local LB IP");

    eprintln!("An outside client: this node's endpoints only, its own address kept");
    for to in [sa(REMOTE_IP, 80), sa(NODE1, REMOTE_NP)] {
        let refused = cluster.tcp(Host::ClientIn, to);
        assert!(
            refused.is_err(),
            "{CLIENT_IN} reached {to} on node1, which has no endpoint: {refused:?}"
        );
    }
    for _ in 0..6 {
        let seen = cluster.tcp(Host::ClientIn, sa(LOCAL_IP, 80)).unwrap();
        assert_eq!(seen.pod.to_string(), POD_B, "{seen:?}");
        assert_eq!(seen.source().to_string(), CLIENT_IN, "{seen:?}");
    }
    eprintln!("The Cluster LB IP from a pod: both endpoints, as before");
    cluster.each_pod(Host::Pod(1), sa(CLUSTER_LB, 80), false, &[POD_A, POD_C]);

    eprintln!("A restart keeps the marks");
    let state = std::fs::read_to_string(dir.join("owned")).unwrap();
    assert_eq!(
        state.lines().filter(|l| l.starts_with("fwm ")).count(),
        3,
        "{state}"
    );
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    // Another Local Service appears while it is down: it takes a new
    // mark, never one of the three.
    server.batch({
        let mut b = Batch::default();
        b.apply(lb("newer", "10.96.0.18", "198.51.100.15", "Local", 30085))
            .apply(slice("newer", &[(POD_C, "node2")]));
        b
    });
    let mut live = start(&dir);
    // Both writers: the IPVS table and the packet path's mark map (the
    // restart's whole write of the table sends its elements after it).
    live.until("the new Service is written", PATIENCE, || {
        fwmark_lines()
            .iter()
            .filter(|l| l.starts_with("-A"))
            .count()
            == 4
            && nft_ok(&["list", "map", "inet", "ipvs-rs", "fwmarks-v4"], "")
                .contains("198.51.100.15 . tcp . 80")
    });
    let after = fwmark_lines();
    for line in &marks {
        assert!(
            after.contains(line),
            "{line} gone after the restart: {after:?}"
        );
    }
    let seen = cluster.each_pod(Host::Pod(1), sa(REMOTE_IP, 80), false, &[POD_C]);
    assert_sources(&seen, POD_B, "pod to a Local LB IP after the restart");
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");

    eprintln!("--cleanup removes the firewall-mark services");
    vm_tests::live::cleanup(&dir);
    assert_eq!(fwmark_lines(), Vec::<String>::new());
    drop(server);
}
