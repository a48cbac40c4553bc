//! `--local-routes` (issue 32, the address step): the virtual addresses
//! made the node's own by local routes through `kube-ipvs0` instead of as
//! its addresses, in the cluster lab of `vm_tests::cluster` with real
//! traffic.
//!
//! - A first run binds the ClusterIP as an address (the default, as
//!   kube-proxy). A second run with `--local-routes` replaces it by a
//!   local route of proto 118 (iproute2's listing is the truth), and the
//!   address goes; node1 itself, a client routed through node1 and a pod
//!   reach the ClusterIP all along, and an unserved port of it is still
//!   refused (the packet path's filter).
//! - An IPv6 ClusterIP is routed too (IPv6 takes routes only through an
//!   interface that is up: `kube-ipvs0` is set up).
//! - A Service deleted: its route goes. `--cleanup`: no route of ours is
//!   left, and the interface this tool created is gone.

use std::path::Path;
use std::time::Duration;

use fake_apiserver::objects::{endpoint_slice, service};
use fake_apiserver::{Batch, FakeApiServer, Kind};
use vm_tests::cluster::{sa, start_on_node1, Cluster, Host, DUMMY, POD_A, POD_C, POD_PORT};
use vm_tests::live::{synced, Live};

const WEB_IP: &str = "10.96.0.40";
const WEB_V6: &str = "fd00:96::40";
const PATIENCE: Duration = Duration::from_secs(60);

fn start(dir: &Path, extra: &[&str]) -> Live {
    start_on_node1(dir, extra)
}

/// The addresses of `kube-ipvs0` (none when it is gone).
fn dummy_addresses() -> String {
    vm_tests::sh(&format!(
        "/sbin/ip -o addr show dev {DUMMY} 2>/dev/null | grep -v ' fe80:' | awk '{{print $4}}' | sort"
    ))
}

/// Our local routes as iproute2 lists them (`local ADDR dev kube-ipvs0 ...
/// proto 118`), both families.
fn our_routes() -> String {
    vm_tests::sh(
        "{ /sbin/ip route show table local; /sbin/ip -6 route show table local; } \
         | grep ' proto 118' | awk '{print $1, $2, $3, $4}' | sort",
    )
}

/// Which pod answered one TCP connection from `from` to `ip:80`.
fn reach(cluster: &Cluster, from: Host, ip: &str) -> String {
    let seen = cluster
        .tcp(from, sa(ip, 80))
        .unwrap_or_else(|e| panic!("{from:?} -> {ip}:80: {e}"));
    seen.pod.to_string()
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn local_routes_replace_addresses_with_traffic_served_all_along() {
    let cluster = Cluster::new();
    let dir = std::env::temp_dir().join("local-routes");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let mut web = service("default", "web", WEB_IP, &[("http", 80)]);
    web["spec"]["clusterIPs"] = serde_json::json!([WEB_IP, WEB_V6]);
    web["spec"]["ipFamilies"] = serde_json::json!(["IPv4", "IPv6"]);
    web["spec"]["ipFamilyPolicy"] = serde_json::json!("PreferDualStack");
    let mut batch = Batch::default();
    batch.apply(web).apply(endpoint_slice(
        "default",
        "web",
        "abcde",
        &[("http", POD_PORT)],
        &[POD_A, POD_C],
    ));
    server.batch(batch);

    eprintln!("Addresses (the default): the ClusterIP is an address of {DUMMY}");
    let mut live = start(&dir, &[]);
    live.until("the ClusterIP bound as an address", PATIENCE, || {
        dummy_addresses().contains(&format!("{WEB_IP}/32"))
    });
    assert_eq!(our_routes(), "", "no route of ours without --local-routes");
    let pod = reach(&cluster, Host::Node1, WEB_IP);
    assert!([POD_A, POD_C].contains(&pod.as_str()), "{pod}");
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");

    eprintln!("--local-routes: the address replaced by a local route");
    let mut live = start(&dir, &["--local-routes"]);
    live.until_logged("the switch's sync", PATIENCE, synced);
    assert_eq!(
        (our_routes(), dummy_addresses()),
        (
            format!("local {WEB_IP} dev {DUMMY}\nlocal {WEB_V6} dev {DUMMY}\n"),
            String::new()
        ),
        "the ClusterIPs routed, the addresses gone:\n{}",
        vm_tests::sh("/sbin/ip addr show; /sbin/ip route show table all")
    );
    // The kernel takes them as the node's own.
    let get = vm_tests::sh(&format!("/sbin/ip route get {WEB_IP}"));
    assert!(get.starts_with(&format!("local {WEB_IP} dev")), "{get}");
    for from in [Host::Node1, Host::ClientIn, Host::Pod(1)] {
        let mut pods: Vec<String> = (0..8).map(|_| reach(&cluster, from, WEB_IP)).collect();
        pods.sort();
        pods.dedup();
        assert_eq!(pods, [POD_A, POD_C], "{from:?} -> {WEB_IP}:80");
    }
    eprintln!("An unserved port of the ClusterIP: refused, as with addresses");
    let refused = cluster.run(Host::ClientIn, || {
        std::net::TcpStream::connect_timeout(&sa(WEB_IP, 22), Duration::from_secs(3))
    });
    assert!(refused.is_err(), "{refused:?}");

    eprintln!("The Service deleted: its routes go");
    server.delete(Kind::Service, "default", "web");
    live.until("the routes removed", PATIENCE, || our_routes().is_empty());
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");

    eprintln!("--cleanup after a routed run: nothing of ours left");
    let mut batch = Batch::default();
    batch.apply(service("default", "web", WEB_IP, &[("http", 80)]));
    server.batch(batch);
    let mut live = start(&dir, &["--local-routes"]);
    live.until("routed again", PATIENCE, || {
        our_routes() == format!("local {WEB_IP} dev {DUMMY}\n")
    });
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    vm_tests::live::cleanup(&dir);
    assert_eq!(our_routes(), "");
    let links = vm_tests::sh(&format!("/sbin/ip -o link show {DUMMY} 2>&1 || true"));
    assert!(!links.contains(&format!("{DUMMY}:")), "{links}");
    drop(server);
}
