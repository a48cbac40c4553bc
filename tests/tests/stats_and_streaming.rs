//! Counters as old and new kernels send them (STATS64 preferred, STATS as
//! the fallback of kernels before 4.1), and the streaming dumps, over the
//! scripted fake kernel.

use std::net::SocketAddr;

use ipvs_netlink::netlink_packet_core::NLM_F_MULTIPART;
use ipvs_netlink::{
    DestAttr, Destination, IpvsAttr, IpvsCmd, IpvsMessage, Service, ServiceAttr, ServiceId, Stats,
    StatsAttr,
};
use ipvs_tests::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn svc() -> Service {
    Service::new(ServiceId::tcp(addr("10.97.97.97:80")), "rr")
}

/// A service dump part with the given stats nests appended.
fn service_with(seq: u32, port: u32, nests: Vec<ServiceAttr>) -> Vec<u8> {
    let mut attrs = kernel_service_attrs(&svc());
    attrs.extend(nests);
    ipvs_message(
        NLM_F_MULTIPART,
        seq,
        port,
        &IpvsMessage::new(IpvsCmd::NewService, vec![IpvsAttr::Service(attrs)]),
    )
}

/// A destination dump part with the given stats nests appended.
fn dest_with(seq: u32, port: u32, rs: &str, nests: Vec<DestAttr>) -> Vec<u8> {
    let mut attrs = kernel_dest_attrs(&Destination::new(addr(rs)));
    attrs.extend(nests);
    ipvs_message(
        NLM_F_MULTIPART,
        seq,
        port,
        &IpvsMessage::new(IpvsCmd::NewDest, vec![IpvsAttr::Dest(attrs)]),
    )
}

#[test]
fn a_reply_with_only_the_32_bit_nest_is_read() {
    let old = sample_stats(40);
    let (mut h, _kernel) = open(move |req| {
        let (s, p) = (req.seq, req.port);
        match req.cmd() {
            Some(IpvsCmd::GetService) => send_one(datagram([
                service_with(s, p, vec![ServiceAttr::Stats(old.to_attrs())]),
                done(s, p),
            ])),
            _ => send_one(datagram([
                dest_with(s, p, "10.0.0.1:80", vec![DestAttr::Stats(old.to_attrs())]),
                done(s, p),
            ])),
        }
    });
    let services = h.services().unwrap();
    assert_eq!(services[0].stats, Some(sample_stats(40)));
    let dests = h.destinations(&svc().id).unwrap();
    assert_eq!(dests[0].stats, Some(sample_stats(40)));
}

#[test]
fn the_64_bit_nest_wins_wherever_it_comes_in_the_nest() {
    // The 32-bit nest carries the truncated value, as the kernel sends it.
    let mut wide = Stats::default();
    wide.conns = u64::from(u32::MAX) + 5;
    wide.in_pkts = 1 << 40;
    let narrow = vec![
        StatsAttr::Conns(wide.conns & 0xffff_ffff),
        StatsAttr::InPkts(0),
    ];
    let (n1, n2, w1, w2) = (narrow.clone(), narrow, wide.to_attrs(), wide.to_attrs());
    let (mut h, _kernel) = open(move |req| {
        let (s, p) = (req.seq, req.port);
        match req.cmd() {
            Some(IpvsCmd::GetService) => send_one(datagram([
                // STATS64 before STATS: order does not matter.
                service_with(
                    s,
                    p,
                    vec![
                        ServiceAttr::Stats64(w1.clone()),
                        ServiceAttr::Stats(n1.clone()),
                    ],
                ),
                done(s, p),
            ])),
            _ => send_one(datagram([
                dest_with(
                    s,
                    p,
                    "10.0.0.1:80",
                    vec![DestAttr::Stats(n2.clone()), DestAttr::Stats64(w2.clone())],
                ),
                done(s, p),
            ])),
        }
    });
    assert_eq!(h.services().unwrap()[0].stats, Some(wide));
    assert_eq!(h.destinations(&svc().id).unwrap()[0].stats, Some(wide));
}

#[test]
fn streaming_dumps_hand_over_each_entry_once_across_datagrams() {
    let (mut h, _kernel) = open(move |req| {
        let (s, p) = (req.seq, req.port);
        match req.cmd() {
            Some(IpvsCmd::GetService) => {
                let a = Service::new(ServiceId::tcp(addr("10.0.0.1:80")), "rr");
                let b = Service::new(ServiceId::udp(addr("10.0.0.1:53")), "wlc");
                vec![
                    Action::Send(datagram([service_part(s, p, &a), service_part(s, p, &b)])),
                    // A resumed dump repeating an entry (the table changed).
                    Action::Send(datagram([service_part(s, p, &b), done(s, p)])),
                ]
            }
            _ => vec![
                Action::Send(datagram([
                    dest_with(s, p, "10.1.0.1:80", vec![]),
                    dest_with(s, p, "10.1.0.2:80", vec![]),
                ])),
                Action::Send(datagram([
                    dest_with(s, p, "10.1.0.1:80", vec![]),
                    dest_with(s, p, "10.1.0.3:80", vec![]),
                    done(s, p),
                ])),
            ],
        }
    });
    let mut names = Vec::new();
    h.for_each_service(|svc| names.push(format!("{} {}", svc.id, svc.scheduler)))
        .unwrap();
    assert_eq!(names, ["TCP 10.0.0.1:80 rr", "UDP 10.0.0.1:53 wlc"]);
    let mut rs = Vec::new();
    h.for_each_destination(&svc().id, |d| rs.push(d.socket_addr()))
        .unwrap();
    assert_eq!(
        rs,
        [
            addr("10.1.0.1:80"),
            addr("10.1.0.2:80"),
            addr("10.1.0.3:80")
        ]
    );
}

/// A walk that breaks stops handing over entries, returns what it broke
/// with, and the handle's next dumps are whole (the rest of the broken
/// dump, in a later datagram, is read off by the walk: the real kernel
/// refuses a second dump on the socket until the first is read to its
/// end).
#[test]
fn a_walk_that_breaks_reads_the_rest_of_the_dump_off() {
    use std::ops::ControlFlow;
    let (mut h, _kernel) = open(move |req| {
        let (s, p) = (req.seq, req.port);
        match req.cmd() {
            Some(IpvsCmd::GetService) => {
                let a = Service::new(ServiceId::tcp(addr("10.0.0.1:80")), "rr");
                let b = Service::new(ServiceId::udp(addr("10.0.0.1:53")), "wlc");
                let c = Service::new(ServiceId::tcp(addr("10.0.0.2:80")), "sh");
                vec![
                    Action::Send(datagram([service_part(s, p, &a), service_part(s, p, &b)])),
                    Action::Send(datagram([service_part(s, p, &c), done(s, p)])),
                ]
            }
            _ => vec![
                Action::Send(datagram([dest_with(s, p, "10.1.0.1:80", vec![])])),
                Action::Send(datagram([
                    dest_with(s, p, "10.1.0.2:80", vec![]),
                    done(s, p),
                ])),
            ],
        }
    });
    let mut seen = Vec::new();
    let found = h
        .try_for_each_service(|svc| {
            seen.push(svc.id.to_string());
            if svc.scheduler == "wlc" {
                ControlFlow::Break(svc.id)
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(
        found,
        ControlFlow::Break(ServiceId::udp(addr("10.0.0.1:53")))
    );
    assert_eq!(seen, ["TCP 10.0.0.1:80", "UDP 10.0.0.1:53"]);
    let first = h
        .try_for_each_destination(&svc().id, |d| ControlFlow::Break(d.socket_addr()))
        .unwrap();
    assert_eq!(first, ControlFlow::Break(addr("10.1.0.1:80")));
    // The next dumps are whole: nothing of the broken ones is left.
    let all: Vec<String> = h
        .services()
        .unwrap()
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(
        all,
        ["TCP 10.0.0.1:80", "UDP 10.0.0.1:53", "TCP 10.0.0.2:80"]
    );
    let none = h
        .try_for_each_destination(&svc().id, |_| ControlFlow::<()>::Continue(()))
        .unwrap();
    assert_eq!(none, ControlFlow::Continue(()));
    assert_eq!(h.destinations(&svc().id).unwrap().len(), 2);
}

#[test]
fn a_slow_streaming_callback_is_not_a_kernel_timeout() {
    let (mut h, _kernel) = open(move |req| {
        let (s, p) = (req.seq, req.port);
        let a = Service::new(ServiceId::tcp(addr("10.0.0.1:80")), "rr");
        let b = Service::new(ServiceId::tcp(addr("10.0.0.2:80")), "rr");
        vec![
            Action::Send(datagram([service_part(s, p, &a)])),
            Action::Send(datagram([service_part(s, p, &b), done(s, p)])),
        ]
    });
    let mut n = 0;
    // Longer than the handle's receive timeout (TIMEOUT), spent in our
    // code while the rest of the dump is already queued.
    h.for_each_service(|_| {
        std::thread::sleep(TIMEOUT * 2);
        n += 1;
    })
    .expect("time in the callback is not waiting for the kernel");
    assert_eq!(n, 2);
}
