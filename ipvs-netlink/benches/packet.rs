//! Micro-benchmarks of the packet layer: encoding requests (through the
//! typed message, and as the handle does) and parsing
//! the kernel's dump replies (bytes captured from Debian's 6.1 kernel).
//! Run with `cargo bench -p ipvs-netlink`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ipvs_netlink::netlink_packet_core::{Emitable, NetlinkHeader, ParseableParametrized};
use ipvs_netlink::netlink_packet_generic::GenlHeader;
use ipvs_netlink::{
    AddressFamily, Destination, IpvsAttr, IpvsCmd, IpvsMessage, Op, Request, Service, ServiceId,
};

/// The generic-netlink payload (after the 16-byte netlink header and the
/// 4-byte generic header) of the first reply of a captured dump.
fn captured_payload(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("fixture");
    let line = text.lines().find(|l| l.starts_with('<')).expect("a reply");
    let hex = &line[2..];
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let len = u32::from_ne_bytes(bytes[..4].try_into().expect("length")) as usize;
    bytes[20..len].to_vec()
}

fn encode(c: &mut Criterion) {
    let id = ServiceId::tcp("10.97.97.97:80".parse().expect("addr"));
    let dest = Destination::new("10.244.1.39:80".parse().expect("addr"));
    c.bench_function("encode NEW_DEST", |b| {
        b.iter(|| {
            let msg = IpvsMessage::new(
                IpvsCmd::NewDest,
                vec![
                    IpvsAttr::Service(black_box(&id).to_attrs()),
                    IpvsAttr::Dest(black_box(&dest).to_attrs()),
                ],
            );
            let mut buf = vec![0u8; msg.buffer_len()];
            msg.emit(&mut buf);
            buf
        })
    });
    let svc = Service::new(id, "rr");
    c.bench_function("encode NEW_SERVICE", |b| {
        b.iter(|| {
            let msg = IpvsMessage::new(
                IpvsCmd::NewService,
                vec![IpvsAttr::Service(black_box(&svc).to_attrs())],
            );
            let mut buf = vec![0u8; msg.buffer_len()];
            msg.emit(&mut buf);
            buf
        })
    });
}

/// What the handle does for every request: [`Request::emit`] into the
/// datagram's buffer, reused.
fn handle_encode(c: &mut Criterion) {
    let id = ServiceId::tcp("10.97.97.97:80".parse().expect("addr"));
    let dest = Destination::new("10.244.1.39:80".parse().expect("addr"));
    let mut header = NetlinkHeader::default();
    header.message_type = 0x20;
    let mut out = Vec::with_capacity(4096);
    let op = Op::AddDestination(id, dest);
    c.bench_function("handle encode NEW_DEST", |b| {
        b.iter(|| {
            out.clear();
            Request::Op(black_box(&op)).emit(&header, &mut out);
            out.len()
        })
    });
    let op = Op::AddService(Service::new(id, "rr"));
    c.bench_function("handle encode NEW_SERVICE", |b| {
        b.iter(|| {
            out.clear();
            Request::Op(black_box(&op)).emit(&header, &mut out);
            out.len()
        })
    });
}

fn parse(c: &mut Criterion) {
    let header = |cmd: IpvsCmd| GenlHeader {
        cmd: cmd.into(),
        version: 1,
    };
    let svc = captured_payload("get_service_dump");
    c.bench_function("parse a service dump message into Service", |b| {
        b.iter(|| {
            let msg = IpvsMessage::parse_with_param(black_box(&svc), header(IpvsCmd::NewService))
                .expect("parse");
            Service::from_attrs(msg.service_attrs().expect("nest")).expect("service")
        })
    });
    let dest = captured_payload("get_dest_dump");
    c.bench_function("parse a destination dump message into Destination", |b| {
        b.iter(|| {
            let msg = IpvsMessage::parse_with_param(black_box(&dest), header(IpvsCmd::NewDest))
                .expect("parse");
            Destination::from_attrs(msg.dest_attrs().expect("nest"), AddressFamily::Inet)
                .expect("destination")
        })
    });
}

criterion_group!(benches, encode, handle_encode, parse);
criterion_main!(benches);
