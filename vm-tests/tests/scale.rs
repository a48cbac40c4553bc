//! Dumps at scale: 100,000 services with 4 destinations each, listed
//! completely and correctly by the streaming dumps, with the memory of the
//! listing process bounded (measured as its peak RSS, `VmHWM`).
//!
//! The table is written with the batch API (`Handle::apply`): many
//! requests per `sendmsg`, only the last of each acknowledged.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use ipvs_netlink::{Destination, Handle, Op, Service, ServiceId};
use vm_tests::{enter_fresh_netns, sysctl};

const SERVICES: u32 = 100_000;
const DESTS_PER_SERVICE: u32 = 4;
/// Operations handed to `Handle::apply` at a time (it sends them 200 per
/// datagram).
const BATCH: usize = 10_000;

fn vip(i: u32) -> ServiceId {
    let a = u32::from(Ipv4Addr::new(10, 64, 0, 0)) + i;
    ServiceId::tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), 80))
}

fn real_server(i: u32, k: u32) -> SocketAddr {
    let a = u32::from(Ipv4Addr::new(172, 16, 0, 0)) + i * DESTS_PER_SERVICE + k;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), 8080)
}

/// The service number of an address made by [`vip`].
fn index_of_vip(id: &ServiceId) -> u32 {
    match id {
        ServiceId::Inet {
            addr: IpAddr::V4(a),
            port: 80,
            ..
        } => u32::from(*a) - u32::from(Ipv4Addr::new(10, 64, 0, 0)),
        other => panic!("unexpected service {other}"),
    }
}

/// Applies `ops` with the batch API; every one must succeed.
fn apply_all(h: &mut Handle, ops: &mut Vec<Op>) {
    for (i, r) in h.apply(ops).unwrap().into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("{:?}: {e}", ops[i]));
    }
    ops.clear();
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// MemTotal - MemAvailable of the VM.
fn used_mib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> u64 {
        let line = info.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("MemTotal:") - field("MemAvailable:")) / 1024
}

fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn hundred_thousand_services_with_four_destinations_each() {
    enter_fresh_netns().unwrap();
    // The 6.1 estimator walks every service and destination from a timer
    // every 2 s; under emulation that would slow the whole VM.
    sysctl("net/ipv4/vs/run_estimation", "0");
    let mut h = Handle::new().unwrap();

    let started = Instant::now();
    let mut ops = Vec::new();
    for i in 0..SERVICES {
        let id = vip(i);
        ops.push(Op::AddService(Service::new(id, "rr")));
        for k in 0..DESTS_PER_SERVICE {
            ops.push(Op::AddDestination(
                id,
                Destination::new(real_server(i, k)).weight(k + 1),
            ));
        }
        if ops.len() >= BATCH {
            apply_all(&mut h, &mut ops);
        }
    }
    apply_all(&mut h, &mut ops);
    println!(
        "SCALE built {SERVICES} services x {DESTS_PER_SERVICE} destinations in {:.1} s; \
         VM memory in use {} MiB",
        started.elapsed().as_secs_f64(),
        used_mib()
    );

    // Stream the services on one handle and, for each, the destinations on
    // a second; check every entry and hold only a bitmap of what was seen.
    let mut dests = Handle::new().unwrap();
    reset_peak_rss();
    let rss_before = peak_rss_kib();
    let started = Instant::now();
    let mut seen = vec![false; SERVICES as usize];
    let (mut services, mut total_dests) = (0u32, 0u32);
    h.for_each_service(|svc| {
        let i = index_of_vip(&svc.id);
        assert!(!seen[i as usize], "service {i} listed twice");
        seen[i as usize] = true;
        assert_eq!(svc.scheduler, "rr");
        services += 1;
        let mut got = HashSet::new();
        dests
            .for_each_destination(&svc.id, |d| {
                got.insert((d.socket_addr(), d.weight));
            })
            .unwrap();
        let want: HashSet<_> = (0..DESTS_PER_SERVICE)
            .map(|k| (real_server(i, k), k + 1))
            .collect();
        assert_eq!(got, want, "destinations of service {i}");
        total_dests += got.len() as u32;
    })
    .unwrap();
    let elapsed = started.elapsed();
    let peak = peak_rss_kib();
    assert_eq!(services, SERVICES);
    assert_eq!(total_dests, SERVICES * DESTS_PER_SERVICE);
    println!(
        "SCALE listed {services} services and {total_dests} destinations in {:.1} s; \
         peak RSS {peak} KiB (before the dump {rss_before} KiB)",
        elapsed.as_secs_f64()
    );
    // Bounded: a few MiB whatever the table size (the table itself, as
    // Vec<Service>, would be tens of MiB).
    assert!(
        peak < rss_before + 16 * 1024,
        "peak RSS {peak} KiB grew too much"
    );

    // The collecting form agrees, and the kernel flushes it all.
    let started = Instant::now();
    let all = h.services().unwrap();
    assert_eq!(all.len(), SERVICES as usize);
    println!(
        "SCALE services() collected {} services in {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
    drop(all);
    h.flush().unwrap();
    assert!(h.services().unwrap().is_empty());
}
