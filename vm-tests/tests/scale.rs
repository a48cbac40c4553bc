//! Dumps at scale: 100,000 services with 4 destinations each, listed
//! completely and correctly by the streaming dumps, with the memory of the
//! listing process bounded (measured as its peak RSS, `VmHWM`).
//!
//! The table is written fast by a test-only helper that packs many
//! requests into each `sendmsg` without waiting for a reply per request
//! (no `NLM_F_ACK`: the kernel answers only failures), then synchronises
//! on one acknowledged request.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use ipvs_netlink::netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use ipvs_netlink::netlink_packet_generic::GenlMessage;
use ipvs_netlink::{Destination, Handle, IpvsAttr, IpvsCmd, IpvsMessage, Service, ServiceId};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr as NlAddr};
use vm_tests::{enter_fresh_netns, sysctl};

const SERVICES: u32 = 100_000;
const DESTS_PER_SERVICE: u32 = 4;
/// Requests per `sendmsg` (each is about 100 bytes; the socket's send
/// buffer is 208 KiB).
const BATCH: usize = 1000;

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

/// Writes requests in batches over a raw generic-netlink socket.
struct Pipeline {
    socket: Socket,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
    pending: usize,
}

impl Pipeline {
    fn new(family: u16) -> Self {
        let mut socket = Socket::new(NETLINK_GENERIC).unwrap();
        socket.bind_auto().unwrap();
        socket.connect(&NlAddr::new(0, 0)).unwrap();
        Pipeline {
            socket,
            family,
            seq: 0,
            buf: Vec::new(),
            pending: 0,
        }
    }

    fn push(&mut self, cmd: IpvsCmd, attrs: Vec<IpvsAttr>, flags: u16) {
        self.seq += 1;
        let mut genl = GenlMessage::from_payload(IpvsMessage::new(cmd, attrs));
        genl.set_resolved_family_id(self.family);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
        nl.finalize();
        let at = self.buf.len();
        self.buf.resize(at + nl.buffer_len(), 0);
        nl.serialize(&mut self.buf[at..]);
        self.pending += 1;
        if self.pending == BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        if !self.buf.is_empty() {
            let n = self.socket.send(&self.buf, 0).unwrap();
            assert_eq!(n, self.buf.len());
            self.buf.clear();
            self.pending = 0;
        }
    }

    /// Sends what is left with a final acknowledged FLUSH-free request
    /// (an acknowledged ZERO of everything) and reads until its ack; any
    /// error reported on the way fails the test.
    fn finish(mut self) {
        self.push(IpvsCmd::Zero, vec![], NLM_F_ACK);
        self.send();
        let last = self.seq;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0).unwrap();
            let mut at = 0;
            while at < n {
                let msg = NetlinkBuffer::new_checked(&buf[at..n]).unwrap();
                let len = msg.length() as usize;
                assert_eq!(msg.message_type(), 2, "only NLMSG_ERROR/ACK expected");
                let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                assert_eq!(
                    code,
                    0,
                    "request {} failed: errno {}",
                    msg.sequence_number(),
                    -code
                );
                if msg.sequence_number() == last {
                    return;
                }
                at += (len + 3) & !3;
            }
        }
    }
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
fn hundred_thousand_services_with_four_destinations_each() {
    enter_fresh_netns().unwrap();
    // The 6.1 estimator walks every service and destination from a timer
    // every 2 s; under emulation that would slow the whole VM.
    sysctl("net/ipv4/vs/run_estimation", "0");
    let mut h = Handle::new().unwrap();

    let started = Instant::now();
    let mut p = Pipeline::new(h.family_id());
    for i in 0..SERVICES {
        let id = vip(i);
        p.push(
            IpvsCmd::NewService,
            vec![IpvsAttr::Service(Service::new(id, "rr").to_attrs())],
            0,
        );
        for k in 0..DESTS_PER_SERVICE {
            p.push(
                IpvsCmd::NewDest,
                vec![
                    IpvsAttr::Service(id.to_attrs()),
                    IpvsAttr::Dest(Destination::new(real_server(i, k)).weight(k + 1).to_attrs()),
                ],
                0,
            );
        }
    }
    p.finish();
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
