//! The packet path's transactions, applied by Debian's real `nft` to a
//! real kernel in a network namespace of the test's own: the kernel
//! accepts the table and its elements, and what it holds after a diff is
//! what it holds after the whole table is written anew.

use super::*;
use crate::model::{Endpoint, Hint, ServicePort};
use crate::node::nft::{Nft, NftCommand, PacketPath};
use std::net::SocketAddr;

fn ep(addr: &str, local: bool) -> Endpoint {
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

fn port(name: &str, protocol: Protocol, number: u16) -> ServicePort {
    ServicePort {
        namespace: "shop".into(),
        name: name.into(),
        origin: format!("shop/{name}:{number}"),
        protocol,
        port: number,
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
    }
}

/// A cluster with one of each kind: ClusterIP (dual stack), NodePort,
/// UDP, LoadBalancer with source ranges (both policies), external IP.
fn cluster() -> Vec<ServicePort> {
    let mut web = port("web", Protocol::Tcp, 80);
    web.cluster_ips = vec![
        "10.96.0.10".parse().unwrap(),
        "fd00:96::10".parse().unwrap(),
    ];
    web.node_port = Some(30080);
    web.endpoints = vec![ep("10.244.1.5:8080", true), ep("[fd00:244::5]:8080", true)];
    let mut dns = port("dns", Protocol::Udp, 53);
    dns.cluster_ips = vec!["10.96.0.53".parse().unwrap()];
    dns.node_port = Some(30053);
    dns.endpoints = vec![ep("10.244.2.7:5353", false)];
    let mut lb = port("lb", Protocol::Tcp, 443);
    lb.cluster_ips = vec!["10.96.0.44".parse().unwrap()];
    lb.lb_ips = vec!["192.0.2.44".parse().unwrap()];
    lb.source_ranges = vec![
        "198.51.100.0/24".parse().unwrap(),
        "203.0.113.7".parse().unwrap(),
    ];
    lb.endpoints = vec![ep("10.244.1.9:8443", true)];
    let mut local = port("local", Protocol::Tcp, 8080);
    local.cluster_ips = vec!["10.96.0.88".parse().unwrap()];
    local.lb_ips = vec!["192.0.2.88".parse().unwrap()];
    local.external_ips = vec!["192.0.2.99".parse().unwrap()];
    local.source_ranges = vec![
        "198.51.100.0/25".parse().unwrap(),
        "192.168.50.0/24".parse().unwrap(),
    ];
    local.external_local = true;
    local.health_check_node_port = Some(31999);
    local.node_port = Some(31080);
    local.endpoints = vec![ep("10.244.1.12:80", true), ep("10.244.2.12:80", false)];
    vec![web, dns, lb, local]
}

/// `n` TCP Services of four endpoints each, with NodePorts (30000 and up,
/// 2,000 of them at most, shared beyond).
fn many(n: u32) -> Vec<ServicePort> {
    (0..n)
        .map(|i| {
            let mut p = port(&format!("s{i}"), Protocol::Tcp, 80);
            p.cluster_ips = vec![IpAddr::V4(std::net::Ipv4Addr::from(0x0a60_0000 + i))];
            p.node_port = Some(30000 + (i % 2000) as u16);
            p.endpoints = (0..4)
                .map(|j| Endpoint {
                    addr: SocketAddr::new(
                        IpAddr::V4(std::net::Ipv4Addr::from(0x0af4_0000 + i * 4 + j)),
                        8080,
                    ),
                    ..ep("10.0.0.1:1", false)
                })
                .collect();
            p
        })
        .collect()
}

fn node_ips() -> Vec<IpAddr> {
    vec![
        "192.168.50.2".parse().unwrap(),
        "fd00:50::2".parse().unwrap(),
    ]
}

fn options() -> Options {
    Options {
        disabled: false,
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:244::/48".parse().unwrap(),
        ],
        masquerade_all: false,
    }
}

fn no_skip(_: IpAddr, _: Protocol, _: u16) -> bool {
    false
}

/// Runs `f` with a real `nft` in a new network namespace of its own
/// (root, as CI runs; the thread's namespace is the child's).
fn in_netns<T: Send + 'static>(f: impl FnOnce(NftCommand) -> T + Send + 'static) -> T {
    let nft = NftCommand::find().expect(
        "the packet-path tests need nftables' nft (Debian's package nftables; test.sh installs it)",
    );
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): run the tests as root");
        f(nft)
    })
    .join()
    .unwrap()
}

/// What the kernel holds: `nft list table`, as nft prints it.
fn listing(nft: &NftCommand) -> String {
    let out = std::process::Command::new(nft.program())
        .args(["list", "table", FAMILY, TABLE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_kernel_takes_the_whole_table_and_lists_every_element() {
    let ports = cluster();
    let want = elements(&ports, &node_ips(), &options(), no_skip);
    let text = in_netns(move |mut nft| {
        nft.run(&transaction(None, &want, &options()).text).unwrap();
        // Written twice: the second replaces the first (add, delete, add).
        nft.run(&transaction(None, &want, &options()).text).unwrap();
        listing(&nft)
    });
    for needle in [
        "10.96.0.10 . tcp . 80 : goto cluster-ip",
        "fd00:96::10 . tcp . 80 : goto cluster-ip",
        "192.168.50.2 . tcp . 30080 : goto external",
        "192.168.50.2 . udp . 30053 : goto external",
        "192.0.2.44 . tcp . 443 : goto firewall-external",
        "192.0.2.88 . tcp . 8080 : goto firewall-external-local",
        "192.0.2.99 . tcp . 8080 : goto external-local",
        "192.168.50.2 . tcp . 31080 : goto external-local",
        "192.0.2.44 . tcp . 443 . 198.51.100.0/24",
        "192.0.2.44 . tcp . 443 . 203.0.113.7",
        // A range holds the node's address: the node's own connections
        // (from the load-balancer IP) are allowed.
        "192.0.2.88 . tcp . 8080 . 192.0.2.88",
        "10.244.1.5 . tcp . 8080 . 10.244.1.5",
        "fd00:244::5 . tcp . 8080 . fd00:244::5",
        "31999",
        "10.244.0.0/16",
    ] {
        assert!(
            text.contains(needle),
            "the kernel does not list {needle:?}:\n{text}"
        );
    }
    // No v6 node port for the UDP Service of no v6 ClusterIP.
    assert!(!text.contains("fd00:50::2 . udp"), "{text}");
    // No range of 192.0.2.44 holds a node address: the node is refused.
    assert!(
        !text.contains("192.0.2.44 . tcp . 443 . 192.0.2.44"),
        "{text}"
    );
}

#[test]
fn a_diff_leaves_what_a_whole_write_leaves_and_a_no_op_sends_nothing() {
    let before = cluster();
    let mut after = cluster();
    // One Service changes an endpoint, one goes, one comes.
    after[0].endpoints[0] = ep("10.244.1.6:8080", true);
    after.remove(1);
    let mut extra = port("new", Protocol::Udp, 5000);
    extra.cluster_ips = vec!["10.96.0.77".parse().unwrap()];
    extra.endpoints = vec![ep("10.244.3.3:5000", false)];
    after.push(extra);
    let (incremental, whole) = in_netns(move |nft| {
        let mut path = PacketPath::new(Box::new(nft.clone()), options());
        let first = path
            .write(&elements(&before, &node_ips(), &options(), no_skip))
            .unwrap();
        assert!(first.full && first.sent);
        let w = path
            .write(&elements(&after, &node_ips(), &options(), no_skip))
            .unwrap();
        assert!(!w.full && w.sent, "{w:?}");
        let incremental = listing(&nft);
        let again = path
            .write(&elements(&after, &node_ips(), &options(), no_skip))
            .unwrap();
        assert!(
            !again.sent && again.added == 0 && again.deleted == 0,
            "{again:?}"
        );
        let mut fresh = PacketPath::new(Box::new(nft.clone()), options());
        fresh
            .write(&elements(&after, &node_ips(), &options(), no_skip))
            .unwrap();
        (incremental, listing(&nft))
    });
    assert_eq!(incremental, whole);
}

/// A record file of its own for one test.
fn record_path(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvs-k8s-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("owned.nft")
}

/// Runs `nft -f -` with `script` (a change made behind the program's back).
fn by_hand(nft: &NftCommand, script: &str) {
    let mut other = nft.clone();
    other.run(script).unwrap();
}

#[test]
fn a_new_run_writes_nothing_to_the_table_it_left_right_and_whole_after_another_write() {
    let want = elements(&cluster(), &node_ips(), &options(), no_skip);
    let mut changed = cluster();
    changed.remove(1);
    let after = elements(&changed, &node_ips(), &options(), no_skip);
    let record = record_path("restart");
    let rec = record.clone();
    let (first, untouched, after_hand, changed_first, changed_again) = in_netns(move |nft| {
        let fresh = || PacketPath::new(Box::new(nft.clone()), options()).with_record(rec.clone());
        let first = fresh().write(&want).unwrap();
        let written = listing(&nft);
        // A new run, the table right, nothing committed since: nothing sent.
        let untouched = fresh().write(&want).unwrap();
        assert_eq!(listing(&nft), written);
        // An element deleted behind its back: the kernel's generation
        // moved, so a new run writes the table whole.
        by_hand(
            &nft,
            &format!("delete element {FAMILY} {TABLE} vips-v4 {{ 10.96.0.10 }}\n"),
        );
        assert!(!listing(&nft).contains("10.96.0.10,"));
        let after_hand = fresh().write(&want).unwrap();
        assert_eq!(listing(&nft), written);
        // The Services changed while no run was there: written whole,
        // then a new run of the same Services sends nothing.
        let changed_first = fresh().write(&after).unwrap();
        let changed_again = fresh().write(&after).unwrap();
        (first, untouched, after_hand, changed_first, changed_again)
    });
    assert!(first.full && first.sent, "{first:?}");
    assert!(
        !untouched.sent && (untouched.added, untouched.deleted) == (0, 0),
        "{untouched:?}"
    );
    assert!(after_hand.full && after_hand.sent, "{after_hand:?}");
    assert!(changed_first.full, "{changed_first:?}");
    assert!(!changed_again.sent, "{changed_again:?}");
    let _ = std::fs::remove_dir_all(record.parent().unwrap());
}

#[test]
fn without_its_record_or_with_other_options_a_new_run_writes_the_table_whole() {
    let want = elements(&cluster(), &node_ips(), &options(), no_skip);
    let record = record_path("no-record");
    let rec = record.clone();
    let (no_record, other_options) = in_netns(move |nft| {
        PacketPath::new(Box::new(nft.clone()), options())
            .with_record(rec.clone())
            .write(&want)
            .unwrap();
        std::fs::remove_file(&rec).unwrap();
        let no_record = PacketPath::new(Box::new(nft.clone()), options())
            .with_record(rec.clone())
            .write(&want)
            .unwrap();
        assert!(rec.exists(), "a whole write records the structure");
        let masquerade_all = Options {
            masquerade_all: true,
            ..options()
        };
        let other_options = PacketPath::new(Box::new(nft.clone()), masquerade_all)
            .with_record(rec.clone())
            .write(&want)
            .unwrap();
        (no_record, other_options)
    });
    assert!(no_record.full, "{no_record:?}");
    assert!(other_options.full, "{other_options:?}");
    let _ = std::fs::remove_dir_all(record.parent().unwrap());
}

#[test]
fn a_one_service_change_among_a_thousand_is_a_few_elements() {
    let mut ports = many(1000);
    let before = elements(&ports, &node_ips()[..1], &options(), no_skip);
    // A new Service of four endpoints.
    let mut new = ports[0].clone();
    new.name = "added".into();
    new.cluster_ips = vec!["10.97.0.1".parse().unwrap()];
    new.node_port = Some(32000);
    ports.push(new);
    let after = elements(&ports, &node_ips()[..1], &options(), no_skip);
    let tx = transaction(Some(&before), &after, &options());
    // vips, served, services (ClusterIP), services (NodePort), and the
    // hairpin elements of its endpoints, which the first Service shares.
    assert_eq!((tx.added, tx.deleted), (4, 0), "{}", tx.text);
    assert!(before.len() > 8000, "{}", before.len());
}

/// The cost of nft at 10,000 Services x 4 endpoints (with NodePorts):
/// a whole write, then a one-Service diff. A measurement for
/// docs/kubernetes.md, not an assertion of time:
/// `cargo test -p ipvs-k8s --lib packet::tests::nft_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: run by hand"]
fn nft_cost() {
    let ports = many(10_000);
    let record = record_path("nft-cost");
    let rec = record.clone();
    in_netns(move |nft| {
        let mut path = PacketPath::new(Box::new(nft.clone()), options()).with_record(rec.clone());
        let t = std::time::Instant::now();
        let all = elements(&ports, &node_ips()[..1], &options(), no_skip);
        let planned = t.elapsed();
        let tx = path.plan(&all);
        let t = std::time::Instant::now();
        path.write(&all).unwrap();
        let whole = t.elapsed();
        let mut more = ports.clone();
        more[17].endpoints[0].addr = "10.250.0.1:8080".parse().unwrap();
        let next = elements(&more, &node_ips()[..1], &options(), no_skip);
        let diff = path.plan(&next);
        let t = std::time::Instant::now();
        path.write(&next).unwrap();
        let one = t.elapsed();
        let t = std::time::Instant::now();
        let w = path.write(&next).unwrap();
        let noop = t.elapsed();
        // A new run: the table read back, nothing sent.
        let t = std::time::Instant::now();
        let restart = PacketPath::new(Box::new(nft.clone()), options())
            .with_record(rec)
            .write(&next)
            .unwrap();
        let restarted = t.elapsed();
        // What reading the table back through nft would cost instead.
        let t = std::time::Instant::now();
        let listed = std::process::Command::new(nft.program())
            .args(["-j", "list", "table", FAMILY, TABLE])
            .output()
            .unwrap();
        assert!(listed.status.success());
        let listing_json = t.elapsed();
        eprintln!(
            "elements {} (planned in {planned:?}), whole write {} bytes in {whole:?}; one-Service diff +{} -{} ({} bytes) in {one:?}; no-op sent={} in {noop:?}; a new run's no-op (by the record) sent={} in {restarted:?}; `nft -j list table` ({} bytes) in {listing_json:?}",
            all.len(),
            tx.text.len(),
            diff.added,
            diff.deleted,
            diff.text.len(),
            w.sent,
            restart.sent,
            listed.stdout.len()
        );
    });
    let _ = std::fs::remove_dir_all(record.parent().unwrap());
}
