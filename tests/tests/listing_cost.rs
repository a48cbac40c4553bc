//! A listing of 2,000 services of 4 real servers each, served by the fake
//! kernel, for counting the instructions the listing code spends (not a
//! timed test; ignored by default):
//!
//! ```text
//! cargo test --release -p ipvs-tests --test listing_cost --no-run
//! valgrind --tool=callgrind --separate-threads=yes target/release/deps/listing_cost-* \
//!     --ignored --exact listing_for_callgrind
//! callgrind_annotate --inclusive=yes callgrind.out.*-01
//! ```
//!
//! The replies are built before the listing starts, so the kernel thread
//! only sends them; the main thread's costs under `list_all` are ours.
//! `-Ln` by default; `LISTING_COST_RULE=1` lists as `-Sn`.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;

use ipvs_netlink::{Destination, IpvsAttr, IpvsCmd, Service, ServiceId};
use ipvs_tests::*;
use ipvsadm_rs::commands::list::list_all;
use ipvsadm_rs::io::{Flow, Out};

const SERVICES: usize = 2000;

fn vip(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 80))
}

fn dests(i: usize) -> Vec<Destination> {
    (1..=4)
        .map(|j| {
            let mut d = Destination::new(SocketAddr::from(([172, 16, (i % 250) as u8, j], 8080)));
            d.stats = Some(sample_stats(j as u64));
            d
        })
        .collect()
}

/// The service the request's service nest names.
fn requested(msg: &ipvs_netlink::IpvsMessage) -> Option<SocketAddr> {
    msg.attrs.iter().find_map(|a| match a {
        IpvsAttr::Service(nest) => ServiceId::from_attrs(nest).ok().and_then(|id| match id {
            ServiceId::Inet { addr, port, .. } => Some(SocketAddr::new(addr, port)),
            _ => None,
        }),
        _ => None,
    })
}

#[test]
#[ignore = "an instruction count harness for callgrind, not a test"]
fn listing_for_callgrind() {
    let services: Vec<Service> = (0..SERVICES)
        .map(|i| {
            let mut s = Service::new(ServiceId::tcp(vip(i)), "rr");
            s.stats = Some(sample_stats(i as u64));
            s
        })
        .collect();
    let by_vip: HashMap<SocketAddr, usize> = (0..SERVICES).map(|i| (vip(i), i)).collect();
    let (mut handle, _kernel) = open(move |req| {
        let (s, p) = (req.seq, req.port);
        match req.cmd() {
            Some(IpvsCmd::GetInfo) => send_one(genl_message(
                FAMILY_ID,
                0,
                s,
                p,
                14,
                1,
                &[
                    raw_nla(1, 8, &0x010904u32.to_ne_bytes()),
                    raw_nla(2, 8, &4096u32.to_ne_bytes()),
                ]
                .concat(),
            )),
            Some(IpvsCmd::GetService) => {
                let mut out = Vec::new();
                for chunk in services.chunks(150) {
                    out.push(Action::Send(datagram(
                        chunk.iter().map(|svc| service_part(s, p, svc)),
                    )));
                }
                out.push(Action::Send(done(s, p)));
                out
            }
            Some(IpvsCmd::GetDest) => {
                let i = req.ipvs.as_ref().and_then(requested).map(|a| by_vip[&a]);
                let parts = i.map(dests).unwrap_or_default();
                vec![
                    Action::Send(datagram(parts.iter().map(|d| dest_part(s, p, d)))),
                    Action::Send(done(s, p)),
                ]
            }
            _ => send_one(req.error(libc::EINVAL)),
        }
    });
    // Under valgrind the kernel thread is slow.
    handle
        .set_timeout(std::time::Duration::from_secs(60))
        .unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input = Cursor::new(Vec::new());
    let mut io = Out {
        input: &mut input,
        out: &mut out,
        err: &mut err,
        json: false,
    };
    let format = match std::env::var("LISTING_COST_RULE") {
        Ok(_) => ipvsadm_rs::format::fmt::NUMERIC | ipvsadm_rs::format::fmt::RULE,
        Err(_) => ipvsadm_rs::format::fmt::NUMERIC,
    };
    let flow = list_all(&mut handle, format, &mut io);
    assert_eq!(flow, Flow::Return(0), "{}", String::from_utf8_lossy(&err));
    assert_eq!(
        out.iter().filter(|&&b| b == b'\n').count(),
        if format & ipvsadm_rs::format::fmt::RULE != 0 {
            SERVICES * 5
        } else {
            3 + SERVICES * 5
        },
        "{}",
        String::from_utf8_lossy(&out[..200])
    );
}
