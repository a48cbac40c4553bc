//! `127.0.0.1:NodePort` (issue 30; kubernetes#96879, #67730) checked by
//! hand, with no project code in the loop, in the cluster lab
//! (`vm_tests::cluster`): the kernel facts that decide how `--from-k8s`
//! can serve it, each with real TCP.
//!
//! 1. An IPVS virtual service at `127.0.0.1:NodePort` does not serve it,
//!    even with `route_localnet=1` and the masquerade mark: IPVS itself
//!    drops a packet whose source is a loopback address on its way to a
//!    real server that is not local (`crosses_local_route_boundary` in
//!    `ip_vs_xmit.c`), before any masquerade could change the source. So
//!    kube-proxy's IPVS mode never served it, and neither can a virtual
//!    service of ours.
//! 2. What kube-proxy's iptables mode does works: a DNAT outside IPVS (nat
//!    output hook) to an endpoint chosen at random, the masquerade mark,
//!    `route_localnet=1`. Here it is nftables with fixed rules and elements
//!    only: a verdict map from protocol and NodePort to a chain per
//!    endpoint count, whose one rule looks the endpoint up by protocol,
//!    NodePort and `numgen random mod N`. The pods on both nodes answer
//!    and see the node's address, never 127.0.0.1. Without
//!    `route_localnet` nothing answers.
//! 3. kube-proxy's rule for what `route_localnet=1` costs
//!    (CVE-2020-8558, kubernetes#90259: `! -s 127.0.0.0/8 -d 127.0.0.0/8
//!    -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`), here in
//!    a prerouting chain, is taken by the kernel as written and leaves the
//!    node's own localhost NodePorts and localhost daemons served. A
//!    neighbour's packet to the node's 127.0.0.1 is tried and printed,
//!    not asserted: crafted with busybox and iproute2 it was not answered
//!    even without the rule.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::thread;

use vm_tests::cluster::{assert_sources, Cluster, Host, CLIENT_IN, NODE1, POD_A, POD_C, POD_PORT};
use vm_tests::{ipvsadm_ok, nft_ok, sysctl};

/// The NodePort of the checks.
const NODE_PORT: u16 = 30090;
/// A daemon of node1 bound to 127.0.0.1 only (as kube-proxy's metrics on
/// 10249), which no neighbour may reach.
const LOCAL_DAEMON: u16 = 10249;

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The masquerade of marked packets, as our table's postrouting chain.
const MASQUERADE: &str = "table inet lh-masq {
\tchain output {
\t\ttype filter hook output priority -150; policy accept;
\t\tip daddr 127.0.0.1 tcp dport 30090 meta mark set meta mark | 0x00004000
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tmeta mark & 0x00004000 == 0x00004000 meta mark set meta mark & 0xffffbfff masquerade fully-random
\t}
}
";

/// Localhost NodePorts with a DNAT outside IPVS: fixed rules, the
/// Services' NodePorts and endpoints as elements.
const DNAT: &str = "table inet lh-dnat {
\tmap localhost-nodeports-v4 { type inet_proto . inet_service : verdict; }
\tmap localhost-endpoints-v4 { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport; }
\tchain endpoints-1 {
\t\tmeta mark set meta mark | 0x00004000
\t\tdnat ip to meta l4proto . th dport . numgen random mod 1 map @localhost-endpoints-v4
\t}
\tchain endpoints-2 {
\t\tmeta mark set meta mark | 0x00004000
\t\tdnat ip to meta l4proto . th dport . numgen random mod 2 map @localhost-endpoints-v4
\t}
\tchain nat-output {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr 127.0.0.1 meta l4proto . th dport vmap @localhost-nodeports-v4
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tmeta mark & 0x00004000 == 0x00004000 meta mark set meta mark & 0xffffbfff masquerade fully-random
\t}
}
";

/// kube-proxy's drop of CVE-2020-8558, in a prerouting chain.
const LOCALNET_DROP: &str = "table inet lh-drop {
\tchain prerouting {
\t\ttype filter hook prerouting priority -150; policy accept;
\t\tip saddr != 127.0.0.0/8 ip daddr 127.0.0.0/8 ct state != { established, related } ct status ! dnat counter drop
\t}
}
";

fn route_localnet(on: bool) {
    sysctl(
        "net/ipv4/conf/all/route_localnet",
        if on { "1" } else { "0" },
    );
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn localhost_nodeports_need_a_dnat_outside_ipvs_and_the_localnet_drop() {
    let cluster = Cluster::new();
    route_localnet(true);
    nft_ok(&["-f", "-"], MASQUERADE);

    // 1. IPVS at 127.0.0.1:NodePort, real servers on both nodes: nothing
    // answers (each real server tried, rr).
    let vip = format!("127.0.0.1:{NODE_PORT}");
    ipvsadm_ok(&["-A", "-t", &vip, "-s", "rr"]);
    sysctl("net/ipv4/vs/conntrack", "1");
    for pod in [POD_A, POD_C] {
        ipvsadm_ok(&["-a", "-t", &vip, "-r", &format!("{pod}:{POD_PORT}"), "-m"]);
    }
    for _ in 0..2 {
        let got = cluster.tcp(Host::Node1, localhost(NODE_PORT));
        assert!(
            got.is_err(),
            "IPVS served 127.0.0.1:{NODE_PORT} to a pod: {got:?}"
        );
    }
    let conns = ipvsadm_ok(&["-Lnc"]);
    eprintln!("IPVS connections after the tries:\n{conns}");
    ipvsadm_ok(&["-D", "-t", &vip]);
    nft_ok(&["delete", "table", "inet", "lh-masq"], "");

    // 2. The DNAT outside IPVS: both pods answer, each seeing node1's
    // address.
    nft_ok(&["-f", "-"], DNAT);
    nft_ok(
        &["-f", "-"],
        &format!(
            "add element inet lh-dnat localhost-nodeports-v4 {{ tcp . {NODE_PORT} : goto endpoints-2 }}
add element inet lh-dnat localhost-endpoints-v4 {{ tcp . {NODE_PORT} . 0 : {POD_A} . {POD_PORT}, tcp . {NODE_PORT} . 1 : {POD_C} . {POD_PORT} }}
"
        ),
    );
    let seen = cluster.each_pod(Host::Node1, localhost(NODE_PORT), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "127.0.0.1:NodePort by DNAT");
    // Without route_localnet the kernel will not route a loopback source
    // off the node: nothing answers.
    route_localnet(false);
    let got = cluster.tcp(Host::Node1, localhost(NODE_PORT));
    assert!(got.is_err(), "served without route_localnet: {got:?}");
    route_localnet(true);

    // 3. A daemon on node1's 127.0.0.1, and a neighbour that routes
    // 127.0.0.1 at node1 (its own loopback routes gone).
    let daemon = TcpListener::bind(localhost(LOCAL_DAEMON)).expect("bind 127.0.0.1:10249");
    thread::spawn(move || {
        for mut s in daemon.incoming().map_while(Result::ok) {
            if let Ok(peer) = s.peer_addr() {
                let _ = s.write_all(format!("127.0.0.1 {peer}\n").as_bytes());
            }
        }
    });
    cluster.client_in.sh(&format!(
        "echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet && \
         /sbin/ip link set lo down && \
         /sbin/ip route add 127.0.0.1/32 via {NODE1} dev eth0 src {CLIENT_IN}"
    ));
    // The neighbour's try, without and with the drop: printed, not
    // asserted. With busybox's and iproute2's means here (loopback down,
    // a route of 127.0.0.1 via node1) the neighbour's SYN was not
    // answered even without the drop, on both kernels: whether it left
    // the neighbour is not known, so the drop's effect is not shown by
    // traffic (a raw frame at node1's MAC would; not built).
    let reached = cluster.tcp(Host::ClientIn, localhost(LOCAL_DAEMON));
    eprintln!("the neighbour to node1's 127.0.0.1:{LOCAL_DAEMON}, no drop rule: {reached:?}");
    nft_ok(&["-f", "-"], LOCALNET_DROP);
    let got = cluster.tcp(Host::ClientIn, localhost(LOCAL_DAEMON));
    eprintln!("the same with the drop rule: {got:?}");
    let listed = nft_ok(&["list", "table", "inet", "lh-drop"], "");
    eprintln!("{listed}");
    // The kernel holds the rule as written (the bit test, not a
    // comparison of the whole status word).
    assert!(
        listed.contains("ct state != { established, related } ct status ! dnat"),
        "{listed}"
    );
    // The node's own localhost NodePorts are still served with the drop.
    let seen = cluster.each_pod(Host::Node1, localhost(NODE_PORT), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "127.0.0.1:NodePort with the drop");
    // And the node's own 127.0.0.1 daemon.
    let own = cluster
        .tcp(Host::Node1, localhost(LOCAL_DAEMON))
        .expect("node1 to its own daemon");
    assert_eq!(own.source().to_string(), "127.0.0.1");
}
