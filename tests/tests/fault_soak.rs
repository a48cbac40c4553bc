//! Reordered replies, and a long run of faults injected at random (from a
//! fixed seed) into one handle's conversation with the fake kernel: every
//! operation must give exactly the typed error its fault calls for, or
//! the correct result, and a fault must never leak into a later
//! operation. The run prints how many faults of each kind it injected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipvs_netlink::{Error, Handle, Operation, Service, ServiceId};
use ipvs_tests::*;

fn svc(n: u8) -> Service {
    Service::new(ServiceId::tcp(SocketAddr::from(([10, 0, 0, n], 80))), "rr")
}

#[test]
fn reordered_dump_parts_give_the_same_services() {
    let (mut h, _kernel) = open(|req| {
        let (s, p) = (req.seq, req.port);
        // The second datagram's parts come first.
        vec![
            Action::Send(datagram([
                service_part(s, p, &svc(3)),
                service_part(s, p, &svc(4)),
            ])),
            Action::Send(datagram([
                service_part(s, p, &svc(1)),
                service_part(s, p, &svc(2)),
                done(s, p),
            ])),
        ]
    });
    let mut got = h.services().unwrap();
    got.sort_by_key(|s| s.id.to_string());
    let want: Vec<Service> = (1..=4).map(|n| as_listed(&svc(n))).collect();
    assert_eq!(got, want);
}

#[test]
fn a_part_after_done_ends_nothing_and_is_skipped_later() {
    // DONE overtakes the last part of a dump: the dump ends at DONE (as
    // the protocol says), and the straggler, now stale, does not confuse
    // the next request.
    let (mut h, _kernel) = open(|req| {
        let (s, p) = (req.seq, req.port);
        if req.seq == 2 {
            vec![
                Action::Send(datagram([service_part(s, p, &svc(1)), done(s, p)])),
                Action::Send(service_part(s, p, &svc(2))),
            ]
        } else {
            send_one(req.ack())
        }
    });
    assert_eq!(h.services().unwrap(), vec![as_listed(&svc(1))]);
    h.add_service(&svc(9))
        .expect("the straggler is skipped as stale");
}

#[test]
fn replies_to_two_requests_in_the_wrong_order() {
    // Request 2's reply is held back and arrives after request 3's: the
    // first operation times out, the second succeeds although the late
    // reply comes first in its socket.
    let held: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let (mut h, _kernel) = open(move |req| match req.seq {
        2 => {
            *held.lock().unwrap() = Some(req.error(libc::EEXIST));
            vec![]
        }
        _ => {
            let mut out = Vec::new();
            if let Some(late) = held.lock().unwrap().take() {
                out.push(Action::Send(late));
            }
            out.push(Action::Send(req.ack()));
            out
        }
    });
    let err = h.add_service(&svc(1)).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    h.add_service(&svc(2))
        .expect("the late EEXIST of request 2 is not taken for ours");
}

// ---------------------------------------------------------------------------
// The soak

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    None,
    Drop,
    DelayPastTimeout,
    Truncate,
    Duplicate,
    Reorder,
    FutureSeq,
    ForeignPort,
    ErrorMidDump,
    GarbageAttribute,
}

const FAULTS: [Fault; 10] = [
    Fault::None,
    Fault::Drop,
    Fault::DelayPastTimeout,
    Fault::Truncate,
    Fault::Duplicate,
    Fault::Reorder,
    Fault::FutureSeq,
    Fault::ForeignPort,
    Fault::ErrorMidDump,
    Fault::GarbageAttribute,
];

/// What the handle is asked, in turn.
#[derive(Debug, Clone, Copy)]
enum Op {
    Add,
    List,
}

/// xorshift64*: a fixed, dependency-free sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const ROUNDS: usize = 300;
const SOAK_TIMEOUT: Duration = Duration::from_millis(150);

/// The kernel's answer to `req` under `fault`.
fn answer(req: &Request, op: Op, fault: Fault) -> Vec<Action> {
    let (s, p) = (req.seq, req.port);
    let parts = |list: &[u8]| -> Vec<Vec<u8>> {
        list.iter().map(|n| service_part(s, p, &svc(*n))).collect()
    };
    let good: Vec<Vec<u8>> = match op {
        Op::Add => vec![req.ack()],
        Op::List => vec![
            datagram(parts(&[1, 2])),
            datagram([parts(&[3]), vec![done(s, p)]].concat()),
        ],
    };
    match fault {
        Fault::None => good.into_iter().map(Action::Send).collect(),
        Fault::Drop => vec![],
        // Held back until the next request (sent once the handle has
        // given up on this one): see `held` in the test.
        Fault::DelayPastTimeout => vec![],
        Fault::Truncate => {
            let mut first = good[0].clone();
            first.truncate(first.len() - 3);
            vec![Action::Send(first)]
        }
        Fault::Duplicate => good
            .iter()
            .chain(good.iter())
            .cloned()
            .map(Action::Send)
            .collect(),
        Fault::Reorder => match op {
            // The parts of the dump swap datagrams; DONE stays last.
            Op::List => vec![
                Action::Send(datagram(parts(&[3]))),
                Action::Send(datagram([parts(&[2, 1]), vec![done(s, p)]].concat())),
            ],
            // A stale reply overtakes ours.
            Op::Add => vec![Action::Send(datagram([ack(s - 1, p), req.ack()]))],
        },
        Fault::FutureSeq => vec![Action::Send(ack(s + 1, p))],
        Fault::ForeignPort => vec![Action::Send(ack(s, p ^ 1))],
        Fault::ErrorMidDump => match op {
            Op::List => vec![Action::Send(datagram([
                service_part(s, p, &svc(1)),
                nl_error(s, p, libc::ENOMEM),
            ]))],
            Op::Add => vec![Action::Send(req.error(libc::ENOMEM))],
        },
        // A service nest whose ADDR_FAMILY is 3 bytes long (before the
        // ACK, for a write).
        Fault::GarbageAttribute => {
            let garbage = raw_service_part(s, p, raw_nla(1, 7, &[2, 0, 0]));
            match op {
                Op::List => vec![Action::Send(garbage)],
                Op::Add => vec![Action::Send(datagram([garbage, req.ack()]))],
            }
        }
    }
}

/// Whether `outcome` is exactly what `fault` calls for.
fn as_expected(op: Op, fault: Fault, outcome: &Result<Vec<Service>, Error>) -> bool {
    let listed: Vec<Service> = (1..=3).map(|n| as_listed(&svc(n))).collect();
    match (fault, outcome) {
        (Fault::None | Fault::Duplicate | Fault::Reorder, Ok(got)) => match op {
            Op::Add => got.is_empty(),
            Op::List => {
                let mut got = got.clone();
                got.sort_by_key(|s| s.id.to_string());
                got == listed
            }
        },
        (Fault::Drop | Fault::DelayPastTimeout, Err(Error::Timeout { after, .. })) => {
            *after == SOAK_TIMEOUT
        }
        (Fault::Truncate, Err(Error::Decode { .. })) => true,
        (Fault::GarbageAttribute, Err(Error::Decode { .. })) => true,
        (Fault::FutureSeq | Fault::ForeignPort, Err(Error::Protocol { .. })) => true,
        (Fault::ErrorMidDump, Err(Error::Kernel { errno, .. })) => *errno == libc::ENOMEM,
        _ => false,
    }
}

#[test]
fn three_hundred_operations_under_random_faults() {
    let mut rng = Rng(0x1905_2026_0a0b_0c0d);
    let plan: Vec<(Op, Fault)> = (0..ROUNDS)
        .map(|_| {
            let op = if rng.next().is_multiple_of(2) {
                Op::Add
            } else {
                Op::List
            };
            (op, FAULTS[(rng.next() % FAULTS.len() as u64) as usize])
        })
        .collect();
    let script_plan = plan.clone();
    // A delayed reply is sent just before the answer to the next request:
    // after its own operation timed out, with no race against the clock.
    let mut held: Vec<Action> = Vec::new();
    let (fd, kernel) = FakeKernel::start(with_family(move |req: &Request| {
        let (op, fault) = script_plan[(req.seq - 2) as usize];
        let mut actions = std::mem::take(&mut held);
        if fault == Fault::DelayPastTimeout {
            held = answer(req, op, Fault::None);
        } else {
            actions.extend(answer(req, op, fault));
        }
        actions
    }));
    let mut h = Handle::from_socket(fd, PORT_ID, SOAK_TIMEOUT).expect("open");
    let mut injected: BTreeMap<Fault, usize> = BTreeMap::new();
    for (i, &(op, fault)) in plan.iter().enumerate() {
        let outcome = match op {
            Op::Add => h.add_service(&svc(1)).map(|()| Vec::new()),
            Op::List => h.services(),
        };
        assert!(
            as_expected(op, fault, &outcome),
            "operation {i} ({op:?}) under {fault:?}: {outcome:?}"
        );
        if let Err(e) = &outcome {
            let want = match op {
                Op::Add => Operation::AddService,
                Op::List => Operation::ListServices,
            };
            assert_eq!(e.operation(), Some(want), "{e:?}");
        }
        *injected.entry(fault).or_default() += 1;
    }
    drop(h);
    assert_eq!(kernel.join().len(), ROUNDS + 1);
    let faults: usize = injected
        .iter()
        .filter(|(f, _)| **f != Fault::None)
        .map(|(_, n)| n)
        .sum();
    eprintln!("{ROUNDS} operations, {faults} faults injected: {injected:?}");
    assert_eq!(injected.len(), FAULTS.len(), "every kind of fault ran");
}
