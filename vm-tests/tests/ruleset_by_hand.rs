//! The packet path of issue 29 checked by hand, with no project code in the
//! loop: in the cluster lab (`vm_tests::cluster`), the real ipvsadm makes
//! the IPVS services kube-proxy's IPVS mode would make, the VIPs are bound
//! on `kube-ipvs0` with iproute2, and Debian's nft loads the ruleset the
//! lead's `node::nft` is to generate (docs/ruleset-validated.md). Every flow is
//! real TCP or UDP and checks the source address the pod saw.

use vm_tests::cluster::{
    assert_sources, sa, Cluster, Host, CLIENT_IN, CLIENT_OUT, CLUSTER_CIDR, DUMMY, NODE1,
    OTHER_SERVICE, OTHER_TABLE, POD_A, POD_B, POD_C, POD_PORT, SOURCE_RANGE,
};
use vm_tests::lab::sh;
use vm_tests::{ipvsadm_ok, nft_ok, nft_run};

/// ClusterIP: TCP 80 and UDP 53 to pod-a and pod-c.
const CLUSTER_IP: &str = "10.96.0.10";
/// ClusterIP with pod-a alone behind it (hairpin).
const HAIRPIN_IP: &str = "10.96.0.11";
/// LoadBalancer IP with source ranges, externalTrafficPolicy Cluster: pod-a, pod-c.
const LB_IP: &str = "198.51.100.10";
/// LoadBalancer IP, externalTrafficPolicy Local: pod-b (node1's only endpoint).
const LB_LOCAL_IP: &str = "198.51.100.11";
/// NodePorts on node1's address: TCP and UDP (Cluster, pod-a and pod-c),
/// TCP Local (pod-b).
const NP_TCP: u16 = 30080;
const NP_UDP: u16 = 30053;
const NP_LOCAL: u16 = 30081;
const HEALTH_PORT: u16 = 30500;

/// The ruleset, as validated (the draft of design-29.md with the
/// corrections docs/ruleset-validated.md lists).
const RULESET: &str = include_str!("ruleset/ipvs-rs.nft");

/// The IPv6 half of the ruleset (sets, maps and rules with `ip6`,
/// `ipv6_addr`, `ip6 nexthdr`), in a table of its own, with an element
/// each: loaded by the kernel, not driven by traffic (the lab is IPv4).
const IPV6_MIRROR: &str = include_str!("ruleset/ipvs-rs-v6.nft");

/// The elements of this lab's Services.
fn elements() -> String {
    format!(
        "add element inet ipvs-rs cluster-cidrs-v4 {{ {CLUSTER_CIDR} }}
add element inet ipvs-rs vips-v4 {{ {CLUSTER_IP}, {HAIRPIN_IP}, {LB_IP}, {LB_LOCAL_IP} }}
add element inet ipvs-rs served-v4 {{ {CLUSTER_IP} . tcp . 80, {CLUSTER_IP} . udp . 53, {HAIRPIN_IP} . tcp . 80, {LB_IP} . tcp . 80, {LB_LOCAL_IP} . tcp . 80, {NODE1} . tcp . {NP_TCP}, {NODE1} . udp . {NP_UDP}, {NODE1} . tcp . {NP_LOCAL} }}
add element inet ipvs-rs services-v4 {{ {CLUSTER_IP} . tcp . 80 : jump cluster-ip, {CLUSTER_IP} . udp . 53 : jump cluster-ip, {HAIRPIN_IP} . tcp . 80 : jump cluster-ip, {LB_IP} . tcp . 80 : jump firewall-external, {LB_LOCAL_IP} . tcp . 80 : jump external-local, {NODE1} . tcp . {NP_TCP} : jump external, {NODE1} . udp . {NP_UDP} : jump external, {NODE1} . tcp . {NP_LOCAL} : jump external-local }}
add element inet ipvs-rs firewall-allow-v4 {{ {LB_IP} . tcp . 80 . {SOURCE_RANGE} }}
add element inet ipvs-rs hairpin-v4 {{ {POD_A} . tcp . {POD_PORT} . {POD_A}, {POD_B} . tcp . {POD_PORT} . {POD_B} }}
add element inet ipvs-rs health-check-ports {{ {HEALTH_PORT} }}
"
    )
}

/// The IPVS services of the lab, with the real ipvsadm.
fn ipvs_services() {
    let rr = |vip: String, proto: &str, reals: &[&str]| {
        ipvsadm_ok(&["-A", proto, &vip, "-s", "rr"]);
        for real in reals {
            ipvsadm_ok(&[
                "-a",
                proto,
                &vip,
                "-r",
                &format!("{real}:{POD_PORT}"),
                "-m",
                "-w",
                "1",
            ]);
        }
    };
    rr(format!("{CLUSTER_IP}:80"), "-t", &[POD_A, POD_C]);
    rr(format!("{CLUSTER_IP}:53"), "-u", &[POD_A, POD_C]);
    rr(format!("{HAIRPIN_IP}:80"), "-t", &[POD_A]);
    rr(format!("{LB_IP}:80"), "-t", &[POD_A, POD_C]);
    rr(format!("{LB_LOCAL_IP}:80"), "-t", &[POD_B]);
    rr(format!("{NODE1}:{NP_TCP}"), "-t", &[POD_A, POD_C]);
    rr(format!("{NODE1}:{NP_UDP}"), "-u", &[POD_A, POD_C]);
    rr(format!("{NODE1}:{NP_LOCAL}"), "-t", &[POD_B]);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_ruleset_by_hand() {
    let cluster = Cluster::new();
    // Another tool's table and IPVS service, there first.
    nft_ok(&["-f", "-"], OTHER_TABLE);
    for line in OTHER_SERVICE.lines() {
        ipvsadm_ok(&line.split_whitespace().collect::<Vec<_>>());
    }
    let other_before = nft_ok(&["list", "table", "inet", "othertool"], "");

    // The node as kube-proxy's IPVS mode leaves it.
    sh(&format!("/sbin/ip link add {DUMMY} type dummy"));
    for vip in [CLUSTER_IP, HAIRPIN_IP, LB_IP, LB_LOCAL_IP] {
        sh(&format!("/sbin/ip addr add {vip}/32 dev {DUMMY}"));
    }
    for (name, value) in [
        ("net/ipv4/vs/conntrack", "1"),
        ("net/ipv4/vs/conn_reuse_mode", "0"),
        ("net/ipv4/vs/expire_nodest_conn", "1"),
        ("net/ipv4/vs/expire_quiescent_template", "1"),
    ] {
        std::fs::write(format!("/proc/sys/{name}"), value)
            .unwrap_or_else(|e| panic!("sysctl {name}: {e}"));
    }
    ipvs_services();

    // The ruleset in one transaction: add, delete, the table, the elements.
    let file = format!(
        "add table inet ipvs-rs\ndelete table inet ipvs-rs\n{RULESET}\n{}",
        elements()
    );
    let loaded = nft_run(&["-f", "-"], &file);
    assert_eq!(
        loaded.code,
        Some(0),
        "nft -f of the ruleset:\n{loaded}\n{file}"
    );
    eprintln!("{}", nft_ok(&["list", "ruleset"], ""));

    // A daemon of node1 listening on every address (kubernetes#72236).
    let daemon = std::net::TcpListener::bind("0.0.0.0:9999").unwrap();
    std::thread::spawn(move || for _s in daemon.incoming() {});

    eprintln!("NodePort TCP, Cluster: the node's address");
    let seen = cluster.each_pod(Host::ClientIn, sa(NODE1, NP_TCP), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "NodePort tcp");
    eprintln!("NodePort UDP, Cluster: the node's address");
    let seen = cluster.each_pod(Host::ClientOut, sa(NODE1, NP_UDP), true, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "NodePort udp");
    eprintln!("LB IP, Cluster, client in the source ranges: the node's address");
    let seen = cluster.each_pod(Host::ClientIn, sa(LB_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "LB ip");
    eprintln!("LB IP, client outside the source ranges: dropped");
    let refused = cluster.tcp(Host::ClientOut, sa(LB_IP, 80));
    eprintln!("  {CLIENT_OUT} -> {LB_IP}:80: {refused:?}");
    assert!(refused.is_err(), "{refused:?}");
    eprintln!("Local: the client's address");
    let seen = cluster.each_pod(Host::ClientIn, sa(LB_LOCAL_IP, 80), false, &[POD_B]);
    assert_sources(&seen, CLIENT_IN, "LB Local");
    let seen = cluster.each_pod(Host::ClientOut, sa(NODE1, NP_LOCAL), false, &[POD_B]);
    assert_sources(&seen, CLIENT_OUT, "NodePort Local");
    eprintln!("Hairpin: pod-a to its own Service");
    let seen = cluster.each_pod(Host::Pod(0), sa(HAIRPIN_IP, 80), false, &[POD_A]);
    assert_sources(&seen, NODE1, "hairpin");
    eprintln!("A pod to a ClusterIP: its own address");
    let seen = cluster.each_pod(Host::Pod(1), sa(CLUSTER_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, POD_B, "pod to ClusterIP");
    let seen = cluster.each_pod(Host::Pod(1), sa(CLUSTER_IP, 53), true, &[POD_A, POD_C]);
    assert_sources(&seen, POD_B, "pod to ClusterIP udp");
    eprintln!("node1 to a ClusterIP: the node's address");
    let seen = cluster.each_pod(Host::Node1, sa(CLUSTER_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "node1 to ClusterIP");
    let seen = cluster.each_pod(Host::Node1, sa(CLUSTER_IP, 53), true, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "node1 to ClusterIP udp");
    eprintln!("A client outside the cluster CIDR to a ClusterIP: the node's address");
    let seen = cluster.each_pod(Host::ClientOut, sa(CLUSTER_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "outside to ClusterIP");
    eprintln!(
        "A ClusterIP's unserved port: refused; the node's own address still reaches the daemon"
    );
    let refused = cluster.tcp(Host::ClientIn, sa(CLUSTER_IP, 9999));
    eprintln!("  {CLIENT_IN} -> {CLUSTER_IP}:9999: {refused:?}");
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    let daemon = cluster.run(Host::ClientIn, || {
        std::net::TcpStream::connect_timeout(&sa(NODE1, 9999), std::time::Duration::from_secs(3))
    });
    assert!(daemon.is_ok(), "{daemon:?}");
    let udp_refused = cluster.udp(Host::ClientIn, sa(CLUSTER_IP, 54));
    eprintln!("  {CLIENT_IN} -> {CLUSTER_IP}:54 udp: {udp_refused:?}");
    assert!(udp_refused.is_err());

    eprintln!("The other tool's table and service: intact");
    assert_eq!(
        nft_ok(&["list", "table", "inet", "othertool"], ""),
        other_before
    );
    let table = ipvsadm_ok(&["-Sn"]);
    for line in OTHER_SERVICE.lines() {
        assert!(table.contains(line), "{line} gone from:\n{table}");
    }
    eprintln!("node1 to the LB IP with source ranges: its source is the LB IP");
    let dropped = cluster.tcp(Host::Node1, sa(LB_IP, 80));
    eprintln!("  node1 -> {LB_IP}:80 without an element for the node: {dropped:?}");
    assert!(dropped.is_err(), "{dropped:?}");
    // kube-proxy allows the node when a source range holds a node address
    // (its allowFromNode): the LB IP itself as an allowed source.
    nft_ok(
        &["-f", "-"],
        &format!("add element inet ipvs-rs firewall-allow-v4 {{ {LB_IP} . tcp . 80 . {LB_IP} }}\n"),
    );
    let seen = cluster.each_pod(Host::Node1, sa(LB_IP, 80), false, &[POD_A, POD_C]);
    assert_sources(&seen, NODE1, "node1 to the LB IP, allowed");
    eprintln!("The health-check node port is reachable on the node's address");
    let hc = std::net::TcpListener::bind(("0.0.0.0", HEALTH_PORT)).unwrap();
    std::thread::spawn(move || for _s in hc.incoming() {});
    let hc = cluster.run(Host::ClientOut, || {
        std::net::TcpStream::connect_timeout(
            &sa(NODE1, HEALTH_PORT),
            std::time::Duration::from_secs(3),
        )
    });
    assert!(hc.is_ok(), "{hc:?}");

    eprintln!("With net.ipv4.vs.conntrack=0, IPVS traffic misses the NAT: pod-a sees the client");
    std::fs::write("/proc/sys/net/ipv4/vs/conntrack", "0").unwrap();
    let mut saw_client = false;
    for _ in 0..4 {
        let got = cluster.tcp(Host::ClientIn, sa(NODE1, NP_TCP));
        eprintln!("  conntrack=0: ClientIn -> {NODE1}:{NP_TCP}: {got:?}");
        if let Ok(seen) = got {
            assert_eq!(seen.pod.to_string(), POD_A, "{seen:?}");
            assert_eq!(seen.source().to_string(), CLIENT_IN, "{seen:?}");
            saw_client = true;
        }
    }
    assert!(saw_client);
    std::fs::write("/proc/sys/net/ipv4/vs/conntrack", "1").unwrap();

    eprintln!("The kernel facts: a firewall set keyed with meta l4proto, and the IPv6 mirror");
    let l4proto = nft_run(
        &["-f", "-"],
        "table inet l4check {
\tset allow {
\t\ttype ipv4_addr . inet_proto . inet_service . ipv4_addr
\t\tflags interval
\t\telements = { 198.51.100.10 . tcp . 80 . 192.168.1.0/28 }
\t}

\tchain firewall {
\t\tip daddr . meta l4proto . th dport . ip saddr @allow return
\t\tdrop
\t}
}
",
    );
    eprintln!("  meta l4proto in an interval concatenation: {l4proto}");
    let _ = nft_run(&["delete", "table", "inet", "l4check"], "");
    nft_ok(&["-f", "-"], IPV6_MIRROR);
    let v6 = nft_ok(&["list", "table", "inet", "ipvs-rs-v6"], "");
    eprintln!("{v6}");
    nft_ok(&["delete", "table", "inet", "ipvs-rs-v6"], "");

    // The control: with our table gone, the daemon is reachable on the
    // ClusterIP (the filter is what refused it).
    nft_ok(&["delete", "table", "inet", "ipvs-rs"], "");
    let open = cluster.run(Host::ClientIn, || {
        std::net::TcpStream::connect_timeout(
            &sa(CLUSTER_IP, 9999),
            std::time::Duration::from_secs(3),
        )
    });
    assert!(open.is_ok(), "without the filter: {open:?}");
}
