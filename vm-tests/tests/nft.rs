//! Debian's nft in the VM: a table with the pieces the packet path of
//! `--from-k8s` uses (sets, concatenations, a verdict map, a NAT chain
//! with masquerade, reject, ct and fib) is loaded with `nft -f` and listed
//! back by the kernel, in a fresh network namespace. (nft 1.0.6 wants a
//! newline or `;` after a chain's last rule: `chain c { drop }` on one line
//! is a syntax error.)

//!
//! And the packet path's two writers of elements agree: `nft -f` (the
//! whole transaction) and nf_tables messages of our own over nfnetlink
//! leave the same table, as `nft -j list table` shows it.

use std::net::IpAddr;

use ipvs_k8s::model::{Endpoint, Hint, Protocol, ServicePort};
use ipvs_k8s::node::nft::netlink::{self, BatchError};
use ipvs_k8s::node::nft::{Netfilter, Nft, NftCommand};
use ipvs_k8s::packet;
use vm_tests::{enter_fresh_netns, nft, nft_ok, nft_run};

const TABLE: &str = r#"
table inet vmtest {
    set vips-v4 {
        type ipv4_addr
        elements = { 10.96.0.10 }
    }
    set served-v4 {
        type ipv4_addr . inet_proto . inet_service
        elements = { 10.96.0.10 . tcp . 80 }
    }
    set allow-v4 {
        type ipv4_addr . inet_proto . inet_service . ipv4_addr
        flags interval
        elements = { 10.96.0.10 . tcp . 80 . 192.168.0.0/24 }
    }
    map services-v4 {
        type ipv4_addr . inet_proto . inet_service : verdict
        elements = { 10.96.0.10 . tcp . 80 : jump mark-masq }
    }
    chain mark-masq {
        meta mark set meta mark | 0x00004000
    }
    chain prerouting {
        type filter hook prerouting priority -150; policy accept;
        ip daddr . meta l4proto . th dport vmap @services-v4
    }
    chain input {
        type filter hook input priority 0; policy accept;
        fib daddr type local ct state new ip daddr @vips-v4 ip daddr . meta l4proto . th dport != @served-v4 reject
        ip daddr . ip protocol . th dport . ip saddr @allow-v4 accept
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        meta mark & 0x00004000 == 0x00004000 masquerade fully-random
    }
}
"#;

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn nft_loads_a_table_and_the_kernel_lists_it() {
    enter_fresh_netns().unwrap();
    let version = nft_ok(&["--version"], "");
    eprintln!("{}: {version}", nft().display());
    assert!(version.starts_with("nftables v1.0.6"), "{version}");
    nft_ok(&["-f", "-"], TABLE);
    let listed = nft_ok(&["list", "table", "inet", "vmtest"], "");
    for want in [
        "10.96.0.10 . tcp . 80 : jump mark-masq",
        "10.96.0.10 . tcp . 80 . 192.168.0.0/24",
        "type nat hook postrouting priority srcnat; policy accept;",
        "masquerade fully-random",
        "reject",
        "ct state new",
        "fib daddr type local",
    ] {
        assert!(listed.contains(want), "no {want:?} in:\n{listed}");
    }
    // The table is replaced whole in one transaction, and deleted.
    nft_ok(
        &["-f", "-"],
        "add table inet vmtest\ndelete table inet vmtest\nadd table inet vmtest\n",
    );
    assert_eq!(nft_ok(&["list", "ruleset"], ""), "table inet vmtest {\n}\n");
    nft_ok(&["delete", "table", "inet", "vmtest"], "");
    assert_eq!(nft_ok(&["list", "ruleset"], ""), "");
    let bad = nft_run(&["-f", "-"], "table inet vmtest { chain c { nonsense } }\n");
    assert_eq!(bad.code, Some(1), "{bad}");
}

/// The packet path's elements of `ports` with `cidrs` as the cluster
/// ranges.
fn packet_elements(ports: &[ServicePort], cidrs: &[&str]) -> packet::Elements {
    let options = packet::Options {
        cluster_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        ..packet::Options::default()
    };
    let node: Vec<IpAddr> = vec![
        "192.168.50.2".parse().unwrap(),
        "fd00:50::2".parse().unwrap(),
    ];
    packet::elements(ports, &node, &options, |_, _, _| false)
}

fn endpoint(addr: &str, local: bool) -> Endpoint {
    Endpoint {
        addr: addr.parse().unwrap(),
        ready: true,
        serving: true,
        terminating: false,
        local,
        zone_hint: Hint::None,
        node_hint: Hint::None,
    }
}

fn service_port(name: &str, protocol: Protocol, port: u16) -> ServicePort {
    ServicePort {
        namespace: "shop".into(),
        name: name.into(),
        origin: format!("shop/{name}:{port}"),
        protocol,
        port,
        node_port: None,
        cluster_ips: Vec::new(),
        external_ips: Vec::new(),
        lb_ips: Vec::new(),
        source_ranges: Vec::new(),
        internal_local: false,
        external_local: false,
        health_check_node_port: None,
        affinity_timeout: None,
        scheduling: None,
        endpoints: Vec::new(),
        fwmark: None,
    }
}

/// Element states that touch every kind of set and map of the table:
/// a whole write, then diffs adding and deleting v4 and v6 keys, plain
/// and concatenated, plain intervals (one running to the last address)
/// and concatenated ones, verdicts that change, and the empty table.
fn element_states() -> Vec<packet::Elements> {
    let mut ports = first_ports();
    let first = packet_elements(&ports, &["10.244.0.0/16", "fd00:244::/48"]);
    ports[0].endpoints[1] = endpoint("[fd00:244::6]:8080", true);
    ports.remove(1);
    ports[1].source_ranges = vec![
        "198.51.100.128/25".parse().unwrap(),
        "2001:db8:200::/40".parse().unwrap(),
    ];
    ports[1].external_local = false;
    let second = packet_elements(
        &ports,
        &[
            "10.244.0.0/16",
            "10.245.0.0/16",
            "255.255.255.0/24",
            "ffff::/16",
        ],
    );
    ports.truncate(1);
    let third = packet_elements(&ports, &[]);
    vec![first, second, third, packet::Elements::default()]
}

/// Dual-stack ClusterIP and NodePort, UDP, a dual-stack load balancer
/// with source ranges and `externalTrafficPolicy: Local` (and its
/// firewall mark).
fn first_ports() -> Vec<ServicePort> {
    let mut web = service_port("web", Protocol::Tcp, 80);
    web.cluster_ips = vec![
        "10.96.0.10".parse().unwrap(),
        "fd00:96::10".parse().unwrap(),
    ];
    web.node_port = Some(30080);
    web.endpoints = vec![
        endpoint("10.244.1.5:8080", true),
        endpoint("[fd00:244::5]:8080", true),
    ];
    let mut dns = service_port("dns", Protocol::Udp, 53);
    dns.cluster_ips = vec!["10.96.0.53".parse().unwrap()];
    dns.endpoints = vec![endpoint("10.244.2.7:5353", false)];
    let mut lb = service_port("lb", Protocol::Tcp, 443);
    lb.cluster_ips = vec![
        "10.96.0.44".parse().unwrap(),
        "fd00:96::44".parse().unwrap(),
    ];
    lb.lb_ips = vec![
        "192.0.2.44".parse().unwrap(),
        "2001:db8::44".parse().unwrap(),
    ];
    lb.source_ranges = ["198.51.100.0/24", "192.168.50.0/24", "2001:db8:100::/48"]
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    lb.external_local = true;
    lb.node_port = Some(31443);
    lb.health_check_node_port = Some(31999);
    lb.fwmark = Some(0x1000);
    lb.endpoints = vec![
        endpoint("10.244.1.9:8443", true),
        endpoint("[fd00:244::9]:8443", true),
    ];
    vec![web, dns, lb]
}

/// Writes every state in turn, each transaction by `write`, in a fresh
/// network namespace; `nft -j list table` after each.
fn listings_after(mut write: impl FnMut(&mut NftCommand, &packet::Transaction)) -> Vec<String> {
    enter_fresh_netns().unwrap();
    let mut nft = NftCommand::find().unwrap();
    let mut prev: Option<packet::Elements> = None;
    let mut out = Vec::new();
    for next in element_states() {
        let tx = packet::transaction(prev.as_ref(), &next, &packet::Options::default());
        write(&mut nft, &tx);
        out.push(nft_ok(
            &["-j", "list", "table", packet::FAMILY, packet::TABLE],
            "",
        ));
        prev = Some(next);
    }
    out
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn nfnetlink_elements_leave_what_nft_leaves() {
    let by_nft = listings_after(|nft, tx| nft.run(&tx.text()).unwrap());
    let by_netlink = listings_after(|_, tx| Netfilter.apply(tx).unwrap());
    for (i, (a, b)) in by_nft.iter().zip(&by_netlink).enumerate() {
        assert_eq!(
            a, b,
            "state {i}: nft -f and nfnetlink leave different tables"
        );
    }
    for want in [
        "fd00:244::5",
        "2001:db8:100::",
        "firewall-external-local",
        "31999",
    ] {
        assert!(by_nft[0].contains(want), "no {want:?} in {}", by_nft[0]);
    }
    for want in [
        "255.255.255.0",
        "ffff::",
        "198.51.100.128",
        "\"firewall-external\"",
    ] {
        assert!(by_nft[1].contains(want), "no {want:?} in {}", by_nft[1]);
    }
    assert!(!by_nft[3].contains("\"elem\""), "{}", by_nft[3]);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_refused_element_batch_is_named_and_not_applied() {
    enter_fresh_netns().unwrap();
    let add = |set: &'static str, key: &str| packet::Change {
        add: true,
        set,
        key: packet::Key::Addr(key.parse().unwrap()),
        value: None,
    };
    let refused = |e: BatchError| match e {
        BatchError::Element {
            set,
            element,
            errno,
            ..
        } => (set, element, errno),
        other => panic!("not an element's refusal: {other}"),
    };
    // No table yet: the set is missing.
    let e = netlink::apply(&[add("vips-v4", "10.96.0.1")]).unwrap_err();
    assert_eq!(
        refused(e),
        ("vips-v4".into(), "10.96.0.1".into(), libc::ENOENT)
    );
    let mut nft = NftCommand::find().unwrap();
    let skeleton = packet::transaction(
        None,
        &packet::Elements::default(),
        &packet::Options::default(),
    );
    nft.run(&skeleton.text()).unwrap();
    netlink::apply(&[add("vips-v4", "10.96.0.1")]).unwrap();
    // The element that exists, among many in one message, after another
    // set's.
    let mut changes: Vec<packet::Change> = (2..40)
        .map(|i| add("vips-v4", &format!("10.96.0.{i}")))
        .collect();
    changes.insert(0, add("vips-v6", "fd00::2"));
    changes.insert(17, add("vips-v4", "10.96.0.1"));
    let e = netlink::apply(&changes).unwrap_err();
    assert!(e.to_string().contains("10.96.0.1"), "{e}");
    assert_eq!(
        refused(e),
        ("vips-v4".into(), "10.96.0.1".into(), libc::EEXIST)
    );
    let listed = nft_ok(&["list", "table", packet::FAMILY, packet::TABLE], "");
    assert!(listed.contains("10.96.0.1"), "{listed}");
    for absent in ["fd00::2", "10.96.0.2", "10.96.0.39"] {
        assert!(
            !listed.contains(absent),
            "{absent} applied from a refused batch:\n{listed}"
        );
    }
    nft_ok(&["delete", "table", packet::FAMILY, packet::TABLE], "");
}

/// What `nft -j list table` shows, in a fresh network namespace, after
/// `write` wrote `tx`.
fn listing_after(
    tx: &packet::Transaction,
    write: impl FnOnce(&mut NftCommand, &packet::Transaction),
) -> String {
    enter_fresh_netns().unwrap();
    let mut nft = NftCommand::find().unwrap();
    write(&mut nft, tx);
    nft_ok(&["-j", "list", "table", packet::FAMILY, packet::TABLE], "")
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_skeleton_over_nfnetlink_lists_as_nft_writes_it() {
    // Every shape of the rules: cluster ranges of both families, none,
    // --masquerade-all with and without ranges, --localhost-nodeports;
    // elements of both families in every set.
    let node: Vec<IpAddr> = vec![
        "192.168.50.2".parse().unwrap(),
        "fd00:50::2".parse().unwrap(),
    ];
    let cidrs = |c: &[&str]| c.iter().map(|c| c.parse().unwrap()).collect::<Vec<_>>();
    for (cluster_cidrs, masquerade_all, localhost_nodeports) in [
        (cidrs(&["10.244.0.0/16", "fd00:244::/48"]), false, false),
        (Vec::new(), false, false),
        (Vec::new(), true, false),
        (
            cidrs(&["10.244.0.0/16", "255.255.255.0/24", "ffff::/16"]),
            true,
            false,
        ),
        (cidrs(&["10.244.0.0/16", "fd00:244::/48"]), false, true),
        (Vec::new(), true, true),
    ] {
        let options = packet::Options {
            cluster_cidrs,
            masquerade_all,
            localhost_nodeports,
            ..packet::Options::default()
        };
        let elements = packet::elements(&first_ports(), &node, &options, |_, _, _| false);
        let tx = packet::transaction(None, &elements, &options);
        let by_nft = listing_after(&tx, |nft, tx| nft.run(&tx.text()).unwrap());
        let by_netlink = listing_after(&tx, |_, tx| Netfilter.apply(tx).unwrap());
        assert_eq!(
            by_nft, by_netlink,
            "{options:?}: nft -f and nfnetlink differ"
        );
        for want in [
            "\"masquerade\"",
            "\"reject\"",
            "\"vmap\"",
            "firewall-allow-v6",
            "fd00:244::5",
            "@fwmarks-v6",
            "\"range\"",
        ] {
            assert!(by_nft.contains(want), "no {want:?} in {by_nft}");
        }
        if localhost_nodeports {
            for want in ["\"numgen\"", "\"dnat\"", "endpoints-64", "10.244.1.5"] {
                assert!(by_nft.contains(want), "no {want:?} in {by_nft}");
            }
        }
        // A rule short of one statement is told apart.
        let mut short = tx.clone();
        let postrouting = short.chains.iter_mut().find(|c| c.name == "postrouting");
        postrouting.unwrap().rules[0].remove(1);
        let mutated = listing_after(&short, |_, tx| Netfilter.apply(tx).unwrap());
        assert_ne!(
            by_nft, mutated,
            "{options:?}: an emptied rule went unnoticed"
        );
    }
}
