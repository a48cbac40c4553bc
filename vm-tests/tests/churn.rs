//! Under load: two writers and a lister on one table of 10,000 services
//! at once, for a bounded number of rounds. Nothing panics or hangs,
//! every operation succeeds or reports the kernel's error, the final
//! table equals the expected one, and listings taken during the churn
//! never show a duplicate row.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ipvs_netlink::{Destination, Handle, Op, Service, ServiceId};
use vm_tests::{enter_fresh_netns, ipvsadm_rs, run_as};

const SERVICES: u32 = 10_000;
const ROUNDS: u32 = 3;

fn vip(i: u32) -> ServiceId {
    let a = u32::from(Ipv4Addr::new(10, 80, 0, 0)) + i;
    ServiceId::tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), 80))
}

fn rs(i: u32, k: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(172, 20, (i % 250) as u8, k as u8)),
        8080,
    )
}

fn apply_ok(h: &mut Handle, ops: &[Op]) -> usize {
    let results = h.apply(ops).expect("the transport holds");
    for (op, r) in ops.iter().zip(&results) {
        if let Err(e) = r {
            panic!("{op:?}: {e}");
        }
    }
    results.len()
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn two_writers_and_a_lister_on_ten_thousand_services() {
    enter_fresh_netns().unwrap();
    let mut h = Handle::new().unwrap();
    let setup: Vec<Op> = (0..SERVICES)
        .flat_map(|i| {
            [
                Op::AddService(Service::new(vip(i), "rr")),
                Op::AddDestination(vip(i), Destination::new(rs(i, 1))),
            ]
        })
        .collect();
    apply_ok(&mut h, &setup);

    let done = Arc::new(AtomicBool::new(false));
    // Writer A: on the first half, each round switches the scheduler and
    // replaces the real server (delete 1 or 2, add the other).
    let writer_a = std::thread::spawn(|| {
        let mut h = Handle::new().unwrap();
        let mut ops_done = 0;
        for round in 0..ROUNDS {
            let sched = if round.is_multiple_of(2) { "wrr" } else { "rr" };
            let (old, new) = if round.is_multiple_of(2) {
                (1, 2)
            } else {
                (2, 1)
            };
            let ops: Vec<Op> = (0..SERVICES / 2)
                .flat_map(|i| {
                    [
                        Op::EditService(Service::new(vip(i), sched)),
                        Op::DeleteDestination(vip(i), rs(i, old)),
                        Op::AddDestination(vip(i), Destination::new(rs(i, new))),
                    ]
                })
                .collect();
            ops_done += apply_ok(&mut h, &ops);
        }
        ops_done
    });
    // Writer B: on the second half, each round adds then removes a
    // second real server, and edits the weight of the first.
    let writer_b = std::thread::spawn(|| {
        let mut h = Handle::new().unwrap();
        let mut ops_done = 0;
        for round in 0..ROUNDS {
            let add: Vec<Op> = (SERVICES / 2..SERVICES)
                .flat_map(|i| {
                    [
                        Op::AddDestination(vip(i), Destination::new(rs(i, 3))),
                        Op::EditDestination(vip(i), Destination::new(rs(i, 1)).weight(round + 2)),
                    ]
                })
                .collect();
            ops_done += apply_ok(&mut h, &add);
            let del: Vec<Op> = (SERVICES / 2..SERVICES)
                .map(|i| Op::DeleteDestination(vip(i), rs(i, 3)))
                .collect();
            ops_done += apply_ok(&mut h, &del);
        }
        ops_done
    });
    // The lister: dumps while the writers run; never a repeated row.
    let lister_done = Arc::clone(&done);
    let lister = std::thread::spawn(move || {
        let mut h = Handle::new().unwrap();
        let mut listings = 0;
        while !lister_done.load(Ordering::Relaxed) || listings == 0 {
            let mut seen = HashSet::new();
            h.for_each_service(|s| assert!(seen.insert(s.id), "{} listed twice", s.id))
                .unwrap();
            assert!(seen.len() <= SERVICES as usize);
            let out = run_as(&ipvsadm_rs(), "ipvsadm", &["-Sn"], b"");
            assert_eq!(out.code, Some(0), "{out}");
            let text = String::from_utf8(out.stdout).unwrap();
            let mut lines = HashSet::new();
            for line in text.lines() {
                assert!(lines.insert(line), "`{line}` listed twice");
            }
            listings += 1;
        }
        listings
    });
    let a = writer_a.join().expect("writer A");
    let b = writer_b.join().expect("writer B");
    done.store(true, Ordering::Relaxed);
    let listings = lister.join().expect("lister");
    println!("CHURN {ROUNDS} rounds: writer A {a} ops, writer B {b} ops, {listings} listings during the churn");

    // The final table: the first half on wrr/rr after an odd number of
    // rounds, with real server 2; the second half with real server 1 of
    // weight ROUNDS + 1.
    let last_sched = if (ROUNDS - 1).is_multiple_of(2) {
        "wrr"
    } else {
        "rr"
    };
    let last_rs = if (ROUNDS - 1).is_multiple_of(2) { 2 } else { 1 };
    let services = h.services().unwrap();
    assert_eq!(services.len(), SERVICES as usize);
    for s in &services {
        let i = match s.id {
            ServiceId::Inet {
                addr: IpAddr::V4(a),
                ..
            } => u32::from(a) - u32::from(Ipv4Addr::new(10, 80, 0, 0)),
            other => panic!("unexpected {other}"),
        };
        let dests = h.destinations(&s.id).unwrap();
        let got: Vec<(SocketAddr, u32)> =
            dests.iter().map(|d| (d.socket_addr(), d.weight)).collect();
        if i < SERVICES / 2 {
            assert_eq!(s.scheduler, last_sched, "service {i}");
            assert_eq!(got, vec![(rs(i, last_rs), 1)], "service {i}");
        } else {
            assert_eq!(s.scheduler, "rr", "service {i}");
            assert_eq!(got, vec![(rs(i, 1), ROUNDS + 1)], "service {i}");
        }
    }
}
