//! The packet path's transactions, applied by Debian's real `nft` to a
//! real kernel in a network namespace of the test's own: the kernel
//! accepts the table and its elements, and what it holds after a diff is
//! what it holds after the whole table is written anew.

use super::*;
use crate::model::{Endpoint, Hint, ServicePort};
use crate::node::nft::{Netfilter, Nft, NftCommand, PacketPath};
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
        fwmark: None,
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
    local.fwmark = Some(0x1000);
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
        fwmarks: crate::mapping::FwmarkRange::default(),
        localhost_nodeports: false,
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

/// `nft` with `args` in the calling thread's namespace, which must succeed.
fn nft_ok(nft: &NftCommand, args: &[&str]) {
    let out = std::process::Command::new(nft.program())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Another tool's flush of the ruleset (a firewall's reload) removes our
/// table: the next write, with nothing changed, sees nftables' generation
/// moved and the table gone, and writes it whole again (`nft` the judge:
/// the same listing as before); another tool's transaction that leaves
/// our table alone costs no write.
#[test]
fn a_table_removed_behind_our_back_is_written_again_at_the_next_write() {
    let ports = cluster_localhost();
    let (before, others, restored, after) = in_netns(move |nft| {
        let mut path = PacketPath::new(Box::new(Netfilter), localhost_on());
        assert!(path.write(&ports, &node_ips(), no_skip).unwrap().full);
        let before = listing(&nft);
        nft_ok(&nft, &["add", "table", "inet", "another-tool"]);
        let others = path.write(&ports, &node_ips(), no_skip).unwrap();
        nft_ok(&nft, &["flush", "ruleset"]);
        let restored = path.write(&ports, &node_ips(), no_skip).unwrap();
        (before, others, restored, listing(&nft))
    });
    assert!(!others.sent && !others.restored, "{others:?}");
    assert!(
        restored.sent && restored.full && restored.restored,
        "{restored:?}"
    );
    assert_eq!(after, before);
}

#[test]
fn the_kernel_takes_the_whole_table_and_lists_every_element() {
    let ports = cluster();
    let want = elements(&ports, &node_ips(), &options(), no_skip);
    let text = in_netns(move |mut nft| {
        nft.run(&transaction(None, &want, &options()).text())
            .unwrap();
        // Written twice: the second replaces the first (add, delete, add).
        nft.run(&transaction(None, &want, &options()).text())
            .unwrap();
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
        // Issue 30: in-cluster traffic to the Local port's LB and
        // external IPs takes its firewall mark.
        "192.0.2.88 . tcp . 8080 : 0x00001000",
        "192.0.2.99 . tcp . 8080 : 0x00001000",
        "192.168.50.2 . tcp . 31080 : 0x00001000",
        "ip saddr @cluster-cidrs-v4 meta mark set ip daddr . meta l4proto . th dport map @fwmarks-v4",
        "meta mark set ip daddr . meta l4proto . th dport map @fwmarks-v4",
        "meta mark 0x00001000-0x00003fff ip saddr != @cluster-cidrs-v4 masquerade fully-random",
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
        let mut path = PacketPath::new(Box::new(Netfilter), options());
        let first = path.write(&before, &node_ips(), no_skip).unwrap();
        assert!(first.full && first.sent);
        let w = path.write(&after, &node_ips(), no_skip).unwrap();
        assert!(!w.full && w.sent, "{w:?}");
        let incremental = listing(&nft);
        let again = path.write(&after, &node_ips(), no_skip).unwrap();
        assert!(
            !again.sent && again.added == 0 && again.deleted == 0,
            "{again:?}"
        );
        let mut fresh = PacketPath::new(Box::new(Netfilter), options());
        fresh.write(&after, &node_ips(), no_skip).unwrap();
        (incremental, listing(&nft))
    });
    assert_eq!(incremental, whole);
}

/// A run of syncs, each written by the Service ports that changed alone
/// ([`PacketPath::write`] keeps a [`Table`]): after every step the kernel
/// lists what a fresh whole write of the same Services lists (`nft` the
/// judge), shared elements outlive the one of their Services that goes,
/// a changed `skip` answer and a changed verdict are written, and a step
/// that changes nothing sends nothing.
#[test]
fn every_step_of_a_run_of_changed_ports_leaves_what_a_whole_write_leaves() {
    type Skip = Vec<(IpAddr, u16)>;
    let web_ip: IpAddr = "10.96.0.10".parse().unwrap();
    let mut steps: Vec<(&str, Vec<ServicePort>, Skip)> = Vec::new();
    let mut ports = cluster_localhost();
    steps.push(("first", ports.clone(), Vec::new()));
    ports[0].endpoints[0] = ep("10.244.1.6:8080", true);
    ports.remove(1);
    let mut extra = port("new", Protocol::Udp, 5000);
    extra.cluster_ips = vec!["10.96.0.77".parse().unwrap()];
    extra.node_port = Some(30500);
    extra.endpoints = vec![ep("10.244.3.3:5000", false)];
    ports.push(extra);
    steps.push((
        "an endpoint, a Service gone, one new",
        ports.clone(),
        Vec::new(),
    ));
    // A second Service port on web's address and endpoint: the VIP and
    // the hairpin element are wanted twice.
    let mut twin = ports[0].clone();
    twin.name = "twin".into();
    twin.origin = "shop/twin:81".into();
    twin.port = 81;
    twin.node_port = None;
    ports.push(twin);
    steps.push(("a twin", ports.clone(), Vec::new()));
    ports.pop();
    steps.push(("the twin gone", ports.clone(), Vec::new()));
    // A policy turns a verdict around; web's ClusterIP is another tool's.
    let lb = ports.iter().position(|p| p.name == "lb").unwrap();
    ports[lb].external_local = true;
    steps.push(("a verdict, a skip", ports.clone(), vec![(web_ip, 80)]));
    steps.push(("the skip gone", ports.clone(), Vec::new()));
    steps.push(("nothing", Vec::new(), Vec::new()));
    let listed = in_netns(move |nft| {
        let mut path = PacketPath::new(Box::new(Netfilter), localhost_on());
        let mut out = Vec::new();
        for (i, (what, ports, skip)) in steps.into_iter().enumerate() {
            let skips = |ip: IpAddr, _: Protocol, port: u16| skip.contains(&(ip, port));
            let w = path.write(&ports, &node_ips(), skips).unwrap();
            assert_eq!(w.full, i == 0, "{what}: {w:?}");
            assert!(w.sent, "{what}: {w:?}");
            let again = path.write(&ports, &node_ips(), skips).unwrap();
            assert!(!again.sent, "{what}, again: {again:?}");
            let incremental = listing(&nft);
            let mut fresh = PacketPath::new(Box::new(Netfilter), localhost_on());
            assert!(fresh.write(&ports, &node_ips(), skips).unwrap().full);
            out.push((what, incremental, listing(&nft)));
        }
        out
    });
    for (what, incremental, whole) in &listed {
        assert_eq!(incremental, whole, "{what}");
    }
    // The outside truth moved as the steps say.
    let has = |step: usize, needle: &str| listed[step].1.contains(needle);
    assert!(has(2, "10.244.1.6 . tcp . 8080 . 10.244.1.6"));
    assert!(
        has(3, "10.244.1.6 . tcp . 8080 . 10.244.1.6"),
        "{}",
        listed[3].1
    );
    assert!(has(3, "10.96.0.10 . tcp . 80 : goto cluster-ip"));
    assert!(!has(3, "10.96.0.10 . tcp . 81"));
    assert!(has(
        4,
        "192.0.2.44 . tcp . 443 : goto firewall-external-local"
    ));
    assert!(!has(4, "10.96.0.10 . tcp . 80 : goto cluster-ip"));
    assert!(has(5, "10.96.0.10 . tcp . 80 : goto cluster-ip"));
    assert!(!has(6, "10.96.0.10"));
}

/// One element looked up over nfnetlink (`NFT_MSG_GETSETELEM`, what the
/// event benchmark polls) is there exactly when `nft get element` finds
/// it.
#[test]
fn an_element_looked_up_over_nfnetlink_is_there_when_nft_finds_it() {
    use crate::node::nft::netlink::element_exists;
    let web = Key::Service("10.96.0.10".parse().unwrap(), Protocol::Tcp, 80);
    let other = Key::Service("10.96.0.10".parse().unwrap(), Protocol::Tcp, 81);
    let told = in_netns(move |nft| {
        let no_table = element_exists("served-v4", web).unwrap();
        let mut path = PacketPath::new(Box::new(Netfilter), options());
        path.write(&cluster(), &node_ips(), no_skip).unwrap();
        let by_nft = |key: &Key| {
            std::process::Command::new(nft.program())
                .args(["get", "element", FAMILY, TABLE, "served-v4"])
                .arg(format!("{{ {key} }}"))
                .output()
                .unwrap()
                .status
                .success()
        };
        [
            (no_table, false),
            (element_exists("served-v4", web).unwrap(), by_nft(&web)),
            (element_exists("served-v4", other).unwrap(), by_nft(&other)),
        ]
    });
    assert_eq!(told, [(false, false), (true, true), (false, false)]);
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
    let want = cluster();
    let mut after = cluster();
    after.remove(1);
    let record = record_path("restart");
    let rec = record.clone();
    let (first, untouched, after_hand, changed_first, changed_again) = in_netns(move |nft| {
        let fresh = || PacketPath::new(Box::new(Netfilter), options()).with_record(rec.clone());
        let first = fresh().write(&want, &node_ips(), no_skip).unwrap();
        let written = listing(&nft);
        // A new run, the table right, nothing committed since: nothing sent.
        let untouched = fresh().write(&want, &node_ips(), no_skip).unwrap();
        assert_eq!(listing(&nft), written);
        // An element deleted behind its back: the kernel's generation
        // moved, so a new run writes the table whole.
        by_hand(
            &nft,
            &format!("delete element {FAMILY} {TABLE} vips-v4 {{ 10.96.0.10 }}\n"),
        );
        assert!(!listing(&nft).contains("10.96.0.10,"));
        let after_hand = fresh().write(&want, &node_ips(), no_skip).unwrap();
        assert_eq!(listing(&nft), written);
        // The Services changed while no run was there: written whole,
        // then a new run of the same Services sends nothing.
        let changed_first = fresh().write(&after, &node_ips(), no_skip).unwrap();
        let changed_again = fresh().write(&after, &node_ips(), no_skip).unwrap();
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
    let want = cluster();
    let record = record_path("no-record");
    let rec = record.clone();
    let (no_record, other_options) = in_netns(move |_nft| {
        PacketPath::new(Box::new(Netfilter), options())
            .with_record(rec.clone())
            .write(&want, &node_ips(), no_skip)
            .unwrap();
        std::fs::remove_file(&rec).unwrap();
        let no_record = PacketPath::new(Box::new(Netfilter), options())
            .with_record(rec.clone())
            .write(&want, &node_ips(), no_skip)
            .unwrap();
        assert!(rec.exists(), "a whole write records the structure");
        let masquerade_all = Options {
            masquerade_all: true,
            ..options()
        };
        let other_options = PacketPath::new(Box::new(Netfilter), masquerade_all)
            .with_record(rec.clone())
            .write(&want, &node_ips(), no_skip)
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
    assert_eq!((tx.added, tx.deleted), (4, 0), "{}", tx.text());
    assert!(before.len() > 8000, "{}", before.len());
}

/// The cost of the packet path's writes at `n` Services x 4 endpoints
/// (with NodePorts), by the old way (the whole transaction through `nft
/// -f`) and the new (the skeleton through `nft -f`, the elements over
/// nfnetlink): a whole write, then a one-Service diff. A measurement for
/// docs/kubernetes.md, not an assertion of time:
/// `cargo test --release -p ipvs-k8s --lib packet::tests::nft_cost -- --ignored --nocapture`
/// (`NFT_COST_SERVICES` sets `n`, 1,000 by default).
#[test]
#[ignore = "a measurement: run by hand"]
fn nft_cost() {
    use crate::node::nft::netlink;
    let n: u32 = std::env::var("NFT_COST_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let ports = many(n);
    let all = elements(&ports, &node_ips()[..1], &options(), no_skip);
    let mut more = ports.clone();
    let mut new = ports[0].clone();
    new.name = "added".into();
    new.cluster_ips = vec!["10.97.0.1".parse().unwrap()];
    new.node_port = Some(32000);
    new.endpoints[0].addr = "10.250.0.1:8080".parse().unwrap();
    more.push(new);
    let next = elements(&more, &node_ips()[..1], &options(), no_skip);
    let whole = transaction(None, &all, &options());
    let diff = transaction(Some(&all), &next, &options());
    for (way, by) in [
        ("nft -f", 0),
        ("skeleton by nft -f, elements by nfnetlink", 1),
        ("one nfnetlink batch", 2),
    ] {
        let (whole_tx, diff_tx) = (whole.clone(), diff.clone());
        let (t_whole, t_skeleton, t_diff) = in_netns(move |mut nft| {
            let t = std::time::Instant::now();
            let mut t_skeleton = std::time::Duration::ZERO;
            match by {
                0 => nft.run(&whole_tx.text()).unwrap(),
                1 => {
                    nft.run(&whole_tx.skeleton_text()).unwrap();
                    t_skeleton = t.elapsed();
                    netlink::apply(&whole_tx.changes).unwrap();
                }
                _ => Netfilter.apply(&whole_tx).unwrap(),
            }
            let t_whole = t.elapsed();
            let t = std::time::Instant::now();
            if by > 0 {
                Netfilter.apply(&diff_tx).unwrap();
            } else {
                nft.run(&diff_tx.text()).unwrap();
            }
            (t_whole, t_skeleton, t.elapsed())
        });
        eprintln!(
            "{way}: {} elements, whole write in {t_whole:?} (skeleton {t_skeleton:?}); one-Service diff +{} -{} in {t_diff:?}",
            all.len(),
            diff.added,
            diff.deleted
        );
    }
    let t = std::time::Instant::now();
    let requests = crate::node::nft::skeleton::skeleton(&whole.chains, &whole.sets).unwrap();
    let (msgs, bytes) = netlink::batch_size(&requests, &whole.changes).unwrap();
    eprintln!("encoding the whole batch: {:?}", t.elapsed());
    let (dmsgs, dbytes) = netlink::batch_size(&[], &diff.changes).unwrap();
    eprintln!(
        "nft -f text: whole {} bytes, diff {} bytes; nfnetlink batch: whole {msgs} messages {bytes} bytes (skeleton text {} bytes), diff {dmsgs} messages {dbytes} bytes",
        whole.text().len(),
        diff.text().len(),
        whole.skeleton_text().len()
    );
}

/// The cost of a sync's nftables step at `n` Services x 4 endpoints
/// (with NodePorts), as [`PacketPath::write`] pays it in a sync: the
/// elements spelled and written, for the first sync (the whole table), a
/// sync where nothing changed, and one where one Service was added. A
/// measurement for docs/kubernetes.md, not an assertion of time:
/// `cargo test -p ipvs-k8s --features live --lib packet::tests::sync_cost -- --ignored --nocapture`
/// (`NFT_COST_SERVICES` sets `n`, 1,000 by default).
#[test]
#[ignore = "a measurement: run by hand"]
fn sync_cost() {
    let n: u32 = std::env::var("NFT_COST_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let ports = many(n);
    let mut more = ports.clone();
    let mut new = ports[0].clone();
    new.name = "added".into();
    new.origin = "shop/added:80".into();
    new.cluster_ips = vec!["10.97.0.1".parse().unwrap()];
    new.node_port = Some(32000);
    new.endpoints[0].addr = "10.250.0.1:8080".parse().unwrap();
    more.push(new);
    let (first, noop, add, w) = in_netns(move |_nft| {
        let mut path = PacketPath::new(Box::new(Netfilter), options());
        let t = std::time::Instant::now();
        let w = path.write(&ports, &node_ips()[..1], no_skip).unwrap();
        assert!(w.full);
        let first = t.elapsed();
        let t = std::time::Instant::now();
        let w = path.write(&ports, &node_ips()[..1], no_skip).unwrap();
        assert!(!w.sent);
        let noop = t.elapsed();
        let t = std::time::Instant::now();
        let w = path.write(&more, &node_ips()[..1], no_skip).unwrap();
        assert!(w.sent && !w.full);
        (first, noop, t.elapsed(), w)
    });
    eprintln!(
        "the sync's nftables step at {n} Services: first {first:?}, no-op {noop:?}, one Service added {add:?} (+{} -{})",
        w.added, w.deleted
    );
}

/// [`cluster`] with a dual-stack load balancer (v6 source ranges), so
/// that every set and map of the table holds elements.
fn cluster_dual() -> Vec<ServicePort> {
    let mut ports = cluster();
    let mut lb6 = port("lb6", Protocol::Tcp, 443);
    lb6.cluster_ips = vec!["fd00:96::44".parse().unwrap()];
    lb6.lb_ips = vec!["2001:db8::44".parse().unwrap()];
    lb6.source_ranges = vec![
        "2001:db8:100::/48".parse().unwrap(),
        "fd00:50::/64".parse().unwrap(),
    ];
    lb6.node_port = Some(30443);
    lb6.health_check_node_port = Some(31998);
    lb6.endpoints = vec![ep("[fd00:244::9]:8443", true)];
    lb6.external_local = true;
    lb6.fwmark = Some(0x1001);
    ports.push(lb6);
    ports
}

/// Options whose cluster ranges include ranges that run to the last
/// address (no interval end element) and adjacent ones.
fn options_edges() -> Options {
    Options {
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "10.245.0.0/16".parse().unwrap(),
            "255.255.255.0/24".parse().unwrap(),
            "fd00:244::/48".parse().unwrap(),
            "ffff::/16".parse().unwrap(),
        ],
        ..options()
    }
}

/// What nft lists of the table, as JSON (`nft -j list table`).
fn listing_json(nft: &NftCommand) -> String {
    let out = std::process::Command::new(nft.program())
        .args(["-j", "list", "table", FAMILY, TABLE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A sequence of element states: a whole write, then diffs that add and
/// delete elements of every kind (v4 and v6, plain and concatenated
/// keys, plain and concatenated intervals, verdict map elements, a
/// verdict changed).
fn states() -> Vec<Elements> {
    let first = elements(&cluster_dual(), &node_ips(), &options(), no_skip);
    let mut ports = cluster_dual();
    ports[0].endpoints[0] = ep("10.244.1.6:8080", true);
    ports[0].endpoints[1] = ep("[fd00:244::6]:8080", true);
    ports.remove(1);
    // Other source ranges; a policy change turns verdicts around.
    ports[1].source_ranges = vec!["198.51.100.128/25".parse().unwrap()];
    ports[3].source_ranges = vec!["2001:db8:200::/40".parse().unwrap()];
    ports[2].external_local = false;
    let second = elements(&ports, &node_ips(), &options_edges(), no_skip);
    ports.truncate(1);
    let third = elements(&ports, &node_ips(), &options(), no_skip);
    vec![first, second, third, Elements::default()]
}

/// The listings after each state, written by `write` in a network
/// namespace of its own.
fn listings(write: impl Fn(&mut NftCommand, &Transaction) + Send + 'static) -> Vec<String> {
    in_netns(move |mut nft| {
        let mut prev: Option<Elements> = None;
        let mut out = Vec::new();
        for next in states() {
            let tx = transaction(prev.as_ref(), &next, &options());
            write(&mut nft, &tx);
            out.push(listing_json(&nft));
            prev = Some(next);
        }
        out
    })
}

#[test]
fn nfnetlink_elements_leave_what_nft_leaves_for_every_kind_of_set() {
    // The old path: the whole transaction through `nft -f`.
    let by_nft = listings(|nft, tx| nft.run(&tx.text()).unwrap());
    // The new: the skeleton and the elements over nfnetlink.
    let by_netlink = listings(|_, tx| Netfilter.apply(tx).unwrap());
    assert_eq!(by_nft.len(), 4);
    for (i, (a, b)) in by_nft.iter().zip(&by_netlink).enumerate() {
        assert_eq!(a, b, "state {i}: nft and nfnetlink differ");
    }
    // Not vacuous: the first state lists elements of every set, the
    // last none.
    for needle in [
        "fd00:244::5",
        "2001:db8:100::",
        "cluster-ip",
        "firewall-external",
        "31998",
        "fwmarks-v4",
        "fwmarks-v6",
        "4097",
    ] {
        assert!(by_nft[0].contains(needle), "{needle}: {}", by_nft[0]);
    }
    for needle in ["255.255.255.0", "ffff::", "10.245.0.0", "198.51.100.128"] {
        assert!(by_nft[1].contains(needle), "{needle}: {}", by_nft[1]);
    }
    assert!(!by_nft[3].contains("\"elem\""), "{}", by_nft[3]);
}

fn add(set: &'static str, key: Key) -> Change {
    Change {
        add: true,
        set,
        key,
        value: None,
    }
}

/// The key of an address.
fn addr(text: &str) -> Key {
    Key::Addr(text.parse().unwrap())
}

#[test]
fn a_refused_element_is_named_and_nothing_of_its_batch_is_applied() {
    use crate::node::nft::netlink::{apply, BatchError};
    let (no_table, exists, gone, many, listed) = in_netns(|mut nft| {
        // No table: the set is missing.
        let no_table = apply(&[add("vips-v4", addr("10.96.0.1"))]).unwrap_err();
        let skeleton = transaction(None, &Elements::default(), &options());
        nft.run(&skeleton.text()).unwrap();
        apply(&[add("vips-v4", addr("10.96.0.1"))]).unwrap();
        // One message per set: the existing element in a message of its
        // own, after one that would succeed.
        let exists = apply(&[
            add("vips-v6", addr("fd00::2")),
            add("vips-v4", addr("10.96.0.1")),
        ])
        .unwrap_err();
        let gone = apply(&[Change {
            add: false,
            ..add(
                "served-v4",
                Key::Service("10.96.0.9".parse().unwrap(), Protocol::Tcp, 80),
            )
        }])
        .unwrap_err();
        // Many elements in one message, the refused one among them.
        let mut changes: Vec<Change> = (2..50)
            .map(|i| add("vips-v4", addr(&format!("10.96.0.{i}"))))
            .collect();
        changes.insert(20, add("vips-v4", addr("10.96.0.1")));
        let many = apply(&changes).unwrap_err();
        (no_table, exists, gone, many, listing(&nft))
    });
    let named = |e: &BatchError| match e {
        BatchError::Element {
            add,
            set,
            element,
            errno,
        } => (*add, set.clone(), element.clone(), *errno),
        other => panic!("not an element's refusal: {other}"),
    };
    assert_eq!(
        named(&no_table),
        (true, "vips-v4".into(), "10.96.0.1".into(), libc::ENOENT)
    );
    assert_eq!(
        named(&exists),
        (true, "vips-v4".into(), "10.96.0.1".into(), libc::EEXIST)
    );
    assert!(exists.to_string().contains("10.96.0.1"), "{exists}");
    assert_eq!(
        named(&gone),
        (
            false,
            "served-v4".into(),
            "10.96.0.9 . tcp . 80".into(),
            libc::ENOENT
        )
    );
    assert_eq!(
        named(&many),
        (true, "vips-v4".into(), "10.96.0.1".into(), libc::EEXIST)
    );
    // Atomic: nothing of the refused batches is in the kernel.
    assert!(listed.contains("10.96.0.1"), "{listed}");
    for absent in ["fd00::2", "10.96.0.2", "10.96.0.49"] {
        assert!(!listed.contains(absent), "{absent} applied:\n{listed}");
    }
}

/// What `nft -j list table` shows after `write`, in a network namespace
/// of its own, for a whole write of `elements` with `options`.
fn whole_listing(
    elements: Elements,
    options: Options,
    write: impl FnOnce(&mut NftCommand, &Transaction) + Send + 'static,
) -> String {
    in_netns(move |mut nft| {
        let tx = transaction(None, &elements, &options);
        write(&mut nft, &tx);
        listing_json(&nft)
    })
}

/// `listing` without its handles (`"handle": N`), which count every
/// object the namespace's nftables made: a second write gets others.
fn without_handles(listing: &str) -> String {
    let mut out = String::with_capacity(listing.len());
    let mut rest = listing;
    while let Some(at) = rest.find(", \"handle\": ") {
        out.push_str(&rest[..at]);
        rest = rest[at + 12..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// Every shape of the table's rules: cluster ranges of both families,
/// none, and `--masquerade-all` (with and without ranges); another
/// `--fwmark-range`; `--localhost-nodeports` with and without ranges.
fn option_shapes() -> Vec<Options> {
    vec![
        options(),
        localhost_on(),
        Options {
            localhost_nodeports: true,
            masquerade_all: true,
            ..Options::default()
        },
        Options {
            fwmarks: crate::mapping::FwmarkRange {
                first: 0x10,
                last: 0x1_0020,
            },
            ..options()
        },
        Options::default(),
        Options {
            masquerade_all: true,
            ..Options::default()
        },
        Options {
            masquerade_all: true,
            ..options_edges()
        },
    ]
}

#[test]
fn the_skeleton_over_nfnetlink_lists_as_nft_writes_it_for_every_shape() {
    for options in option_shapes() {
        let want = elements(&cluster_dual(), &node_ips(), &options, no_skip);
        let (o, w) = (options.clone(), want.clone());
        let by_nft = whole_listing(w, o, |nft, tx| nft.run(&tx.text()).unwrap());
        let (o, w) = (options.clone(), want.clone());
        let by_netlink = whole_listing(w, o, |_, tx| Netfilter.apply(tx).unwrap());
        assert_eq!(by_nft, by_netlink, "{options:?}: nft and nfnetlink differ");
        // Not vacuous: rules of both families, every kind of statement.
        for needle in [
            "\"masquerade\"",
            "\"reject\"",
            "\"vmap\"",
            "\"ip6\"",
            "firewall-allow-v6",
            "\"ct\"",
            "\"mangle\"",
            "\"hook\": \"postrouting\"",
            "10.96.0.10",
            "\"map\": {\"key\": {\"concat\": [{\"payload\": {\"protocol\": \"ip6\"",
            "@fwmarks-v4",
            "\"range\"",
        ] {
            assert!(by_nft.contains(needle), "{needle}: {by_nft}");
        }
        if options.localhost_nodeports {
            for needle in [
                "\"dnat\"",
                "\"numgen\"",
                "endpoints-64",
                "localhost-endpoints-v4",
                "[\"established\", \"related\"]",
                "10.244.1.5",
            ] {
                assert!(by_nft.contains(needle), "{needle}: {by_nft}");
            }
        }
        // The table was replaced whole: a second whole write over the
        // first lists the same.
        let (o, w) = (options.clone(), want.clone());
        let twice = whole_listing(w, o, |_, tx| {
            Netfilter.apply(tx).unwrap();
            Netfilter.apply(tx).unwrap();
        });
        assert_eq!(
            without_handles(&by_nft),
            without_handles(&twice),
            "{options:?}: a second whole write differs"
        );
        assert!(!without_handles(&twice).contains("handle"));
    }
}

/// For each (chain, rule, statement) of `drops`: the table of `opts`
/// written over nfnetlink with that statement dropped does not list as
/// the whole table written by nft.
fn each_drop_lists_otherwise(opts: Options, drops: &[(&'static str, usize, usize)]) {
    let want = elements(&cluster_dual(), &node_ips(), &opts, no_skip);
    let by_nft = whole_listing(want.clone(), opts.clone(), |nft, tx| {
        nft.run(&tx.text()).unwrap()
    });
    for &(chain, rule, stmt) in drops {
        let mutated = whole_listing(want.clone(), opts.clone(), move |_, tx| {
            let mut tx = tx.clone();
            let c = tx.chains.iter_mut().find(|c| c.name == chain).unwrap();
            c.rules[rule].remove(stmt);
            Netfilter.apply(&tx).unwrap();
        });
        assert_ne!(
            by_nft, mutated,
            "{chain} rule {rule} without statement {stmt}"
        );
    }
}

#[test]
fn a_rule_missing_an_expression_lists_otherwise() {
    // The comparison above can fail: the same table with one statement
    // dropped from one rule, over nfnetlink, is not what nft writes.
    // (Not `meta nfproto` alone: the encoder adds it back before an
    // address field, as nft does.)
    each_drop_lists_otherwise(
        options(),
        &[
            ("postrouting", 2, 1),
            ("input", 1, 0),
            ("cluster-ip", 0, 1),
            ("prerouting", 0, 0),
            ("postrouting", 0, 0),
            ("postrouting", 1, 1),
        ],
    );
    // And of --localhost-nodeports' rules: the martian drop's conntrack
    // tests, the nat output hook's address.
    each_drop_lists_otherwise(
        localhost_on(),
        &[
            ("prerouting", 0, 2),
            ("prerouting", 0, 3),
            ("nat-output", 0, 0),
        ],
    );
}

#[test]
fn the_table_is_told_and_removed_over_nfnetlink_as_nft_sees_it() {
    let (before, after_write, listed, after_removal, again, ruleset) = in_netns(|nft| {
        let mut netfilter = Netfilter::open().unwrap();
        let before = netfilter.has_table().unwrap();
        let want = elements(&cluster(), &node_ips(), &options(), no_skip);
        netfilter
            .apply(&transaction(None, &want, &options()))
            .unwrap();
        let after_write = netfilter.has_table().unwrap();
        let listed = listing(&nft);
        netfilter.remove_table().unwrap();
        let after_removal = netfilter.has_table().unwrap();
        // No table: removing it is no error.
        let again = netfilter.remove_table().is_ok();
        let out = std::process::Command::new(nft.program())
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        (
            before,
            after_write,
            listed,
            after_removal,
            again,
            String::from_utf8(out.stdout).unwrap(),
        )
    });
    assert!(!before);
    assert!(after_write);
    assert!(
        listed.contains("10.96.0.10 . tcp . 80 : goto cluster-ip"),
        "{listed}"
    );
    assert!(!after_removal);
    assert!(again);
    assert_eq!(ruleset, "");
}

/// Issue 30: the firewall marks of `externalTrafficPolicy: Local` ports
/// with LB or external IPs, keyed by those addresses (of a family the
/// port serves, not those another tool holds); none for other ports; the
/// pods' traffic is marked only with `--cluster-cidr` (kube-proxy's
/// short-circuit needs its local-traffic detector), the node's always,
/// and the node's masqueraded by the mark range.
#[test]
fn local_ports_lb_and_external_ips_map_to_their_firewall_mark() {
    let mut ports = cluster();
    ports[3].lb_ips.push("2001:db8::88".parse().unwrap());
    let e = elements(&ports, &node_ips(), &options(), no_skip);
    // The LB IP, the external IP and the NodePort on the node's address.
    assert_eq!(
        e.keys("fwmarks-v4"),
        vec![
            "192.0.2.88 . tcp . 8080",
            "192.0.2.99 . tcp . 8080",
            "192.168.50.2 . tcp . 31080"
        ]
    );
    // No v6 ClusterIP: no v6 mark.
    assert!(e.keys("fwmarks-v6").is_empty());
    let skip_99 = |ip: IpAddr, _: Protocol, _: u16| ip.to_string() == "192.0.2.99";
    let e = elements(&ports, &node_ips(), &options(), skip_99);
    assert_eq!(
        e.keys("fwmarks-v4"),
        vec!["192.0.2.88 . tcp . 8080", "192.168.50.2 . tcp . 31080"]
    );
    ports[3].fwmark = None;
    let e = elements(&ports, &node_ips(), &options(), no_skip);
    assert!(e.keys("fwmarks-v4").is_empty());

    let text = |o: &Options| transaction(None, &Elements::default(), o).skeleton_text();
    let pods = "ip saddr @cluster-cidrs-v4 meta mark set";
    let node = "\t\tmeta mark set ip daddr . meta l4proto . th dport map @fwmarks-v4\n";
    let with_cidrs = text(&options());
    assert!(with_cidrs.contains(pods), "{with_cidrs}");
    assert!(with_cidrs.contains(node), "{with_cidrs}");
    assert!(
        with_cidrs
            .contains("meta mark 0x00001000-0x00003fff ip saddr != @cluster-cidrs-v4 masquerade"),
        "{with_cidrs}"
    );
    let no_cidrs = text(&Options {
        cluster_cidrs: Vec::new(),
        ..options()
    });
    assert!(!no_cidrs.contains(pods), "{no_cidrs}");
    assert!(no_cidrs.contains(node), "{no_cidrs}");
    assert!(
        no_cidrs.contains("meta mark 0x00001000-0x00003fff masquerade"),
        "{no_cidrs}"
    );
    // The node's mark is set after the masquerade bit and before the
    // verdict maps, which end the chain for a Local address.
    let output = &with_cidrs[with_cidrs.find("chain output").unwrap()..];
    let at = |needle: &str| output.find(needle).unwrap();
    assert!(at("jump mark-masq") < at(node) && at(node) < at("vmap @services-v4"));
}

/// [`options`] with `--localhost-nodeports`.
fn localhost_on() -> Options {
    Options {
        localhost_nodeports: true,
        ..options()
    }
}

/// [`cluster`] with an IPv6-only NodePort, a NodePort without endpoints
/// and one with more endpoints than the chains spread over.
fn cluster_localhost() -> Vec<ServicePort> {
    let mut ports = cluster();
    let mut v6 = port("v6", Protocol::Tcp, 80);
    v6.cluster_ips = vec!["fd00:96::66".parse().unwrap()];
    v6.node_port = Some(30666);
    v6.endpoints = vec![ep("[fd00:244::66]:8080", true)];
    let mut empty = port("empty", Protocol::Tcp, 80);
    empty.cluster_ips = vec!["10.96.0.67".parse().unwrap()];
    empty.node_port = Some(30667);
    let mut big = port("big", Protocol::Sctp, 9000);
    big.cluster_ips = vec!["10.96.0.68".parse().unwrap()];
    big.node_port = Some(30668);
    big.endpoints = (0..70)
        .map(|i| ep(&format!("10.244.9.{}:9000", 100 + i), false))
        .collect();
    ports.extend([v6, empty, big]);
    ports
}

/// The map `set`'s elements as `key : value` lines.
fn map_items(e: &Elements, set: &str) -> Vec<String> {
    e.sets
        .get(set)
        .map(|m| {
            m.iter()
                .map(|(k, e)| match e.value {
                    Some(v) => format!("{k} : {v}"),
                    None => format!("{k} : "),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn localhost_nodeports_are_ipv4_nodeports_to_their_cluster_endpoints_only_with_the_flag() {
    let ports = cluster_localhost();
    let off = elements(&ports, &node_ips(), &options(), no_skip);
    assert!(off.keys("localhost-nodeports-v4").is_empty());
    assert!(off.keys("localhost-endpoints-v4").is_empty());
    let skeleton_off = transaction(None, &off, &options()).skeleton_text();
    for absent in ["localhost", "nat-output", "127.0.0.0/8", "numgen"] {
        assert!(!skeleton_off.contains(absent), "{absent}:\n{skeleton_off}");
    }

    let on = elements(&ports, &node_ips(), &localhost_on(), no_skip);
    let big: Vec<String> = (0..64)
        .map(|i| format!("sctp . 30668 . {i} : 10.244.9.{} . 9000", 100 + i))
        .collect();
    let mut want_endpoints = vec![
        // local: externalTrafficPolicy Local, yet both endpoints (the
        // node's own traffic goes to the cluster's, as in kube-proxy's
        // iptables mode).
        "tcp . 31080 . 0 : 10.244.1.12 . 80".to_owned(),
        "tcp . 31080 . 1 : 10.244.2.12 . 80".to_owned(),
        // web: dual stack, its IPv4 endpoint alone.
        "tcp . 30080 . 0 : 10.244.1.5 . 8080".to_owned(),
        "udp . 30053 . 0 : 10.244.2.7 . 5353".to_owned(),
    ];
    want_endpoints.extend(big);
    want_endpoints.sort();
    // The map orders its keys by their typed fields (protocol, port,
    // slot): compared as sorted text.
    let mut items = map_items(&on, "localhost-endpoints-v4");
    items.sort();
    assert_eq!(items, want_endpoints);
    // No IPv6 NodePort (fd00:96::66, 30666), none without endpoints
    // (30667), none for the LoadBalancer without NodePorts; at most 64
    // endpoints.
    assert_eq!(
        map_items(&on, "localhost-nodeports-v4"),
        [
            "tcp . 30080 : goto endpoints-1",
            "tcp . 31080 : goto endpoints-2",
            "udp . 30053 : goto endpoints-1",
            "sctp . 30668 : goto endpoints-64",
        ]
    );
    // The node-address NodePort of `local` (IPVS) has its local
    // endpoint alone; localhost has both.
    assert_eq!(
        ports[3].external_endpoints(true),
        vec!["10.244.1.12:80".parse::<SocketAddr>().unwrap()]
    );
    // Everything else is as without the flag.
    let mut rest = on.clone();
    rest.sets.remove("localhost-nodeports-v4");
    rest.sets.remove("localhost-endpoints-v4");
    assert_eq!(rest, off);
    // What skip leaves out (another tool's 127.0.0.1:30080) is left out.
    let skipped = elements(&ports, &node_ips(), &localhost_on(), |ip, _, p| {
        ip == IpAddr::V4(LOCALHOST) && p == 30080
    });
    assert!(!skipped
        .keys("localhost-nodeports-v4")
        .contains(&"tcp . 30080".to_string()));
}

#[test]
fn the_kernel_takes_the_localhost_rules_and_nfnetlink_writes_what_nft_writes() {
    let first = elements(&cluster_localhost(), &node_ips(), &localhost_on(), no_skip);
    let mut ports = cluster_localhost();
    // pod 10.244.1.12 goes, two come; the UDP NodePort goes.
    ports[3].endpoints = vec![
        ep("10.244.2.12:80", false),
        ep("10.244.3.12:80", false),
        ep("10.244.4.12:80", false),
    ];
    ports.remove(1);
    let second = elements(&ports, &node_ips(), &localhost_on(), no_skip);
    let states = vec![first, second, Elements::default()];
    let run = move |netlink: bool| {
        let states = states.clone();
        in_netns(move |mut nft| {
            let mut prev: Option<Elements> = None;
            let mut out = Vec::new();
            for next in states {
                let tx = transaction(prev.as_ref(), &next, &localhost_on());
                if netlink {
                    Netfilter.apply(&tx).unwrap();
                } else {
                    nft.run(&tx.text()).unwrap();
                }
                out.push((listing_json(&nft), listing(&nft)));
                prev = Some(next);
            }
            out
        })
    };
    let by_nft = run(false);
    let by_netlink = run(true);
    for (i, (a, b)) in by_nft.iter().zip(&by_netlink).enumerate() {
        assert_eq!(a.0, b.0, "state {i}: nft and nfnetlink differ");
    }
    let text = &by_nft[0].1;
    for needle in [
        "ip saddr != 127.0.0.0/8 ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat drop",
        "type nat hook output priority -100; policy accept;",
        "ip daddr 127.0.0.1 meta l4proto . th dport vmap @localhost-nodeports-v4",
        "dnat ip to meta l4proto . th dport . numgen random mod 64 map @localhost-endpoints-v4",
        "tcp . 31080 : goto endpoints-2",
        "udp . 30053 . 0 : 10.244.2.7 . 5353",
        "sctp . 30668 . 63 : 10.244.9.163 . 9000",
    ] {
        assert!(text.contains(needle), "the kernel does not list {needle:?}:\n{text}");
    }
    let second = &by_nft[1].1;
    assert!(
        second.contains("tcp . 31080 : goto endpoints-3"),
        "{second}"
    );
    assert!(
        second.contains("tcp . 31080 . 2 : 10.244.4.12 . 80"),
        "{second}"
    );
    assert!(!second.contains("10.244.1.12"), "{second}");
    assert!(!second.contains("udp . 30053"), "{second}");
}

#[test]
fn a_rule_in_nft_text_only_is_written_through_nft_and_lists_the_same() {
    // The fallback: a statement with no nf_tables spelling here (a mark
    // range) puts the skeleton through `nft -f`, the elements over
    // nfnetlink; the table lists as the whole text through `nft -f`.
    let want = elements(&cluster_dual(), &node_ips(), &options(), no_skip);
    let mut tx = transaction(None, &want, &options());
    let postrouting = tx.chains.iter_mut().find(|c| c.name == "postrouting");
    postrouting.unwrap().rules.push(vec![
        rules::Stmt::Nft("meta mark 0x00010000-0x0001ffff".into()),
        rules::Stmt::Masquerade,
    ]);
    assert!(crate::node::nft::skeleton::skeleton(&tx.chains, &tx.sets).is_err());
    let (text, t) = (tx.text(), tx.clone());
    let by_nft = in_netns(move |mut nft| {
        nft.run(&text).unwrap();
        listing_json(&nft)
    });
    let by_netfilter = in_netns(move |nft| {
        Netfilter.apply(&t).unwrap();
        listing_json(&nft)
    });
    assert_eq!(by_nft, by_netfilter);
    assert!(by_nft.contains("\"range\""), "{by_nft}");
}
