//! Captures the bytes of every base-protocol exchange with the real kernel,
//! for the byte-fixture tests of ipvs-netlink. Ignored by default; run by
//! `vm-tests/capture-fixtures.sh`, which stores the output under
//! `ipvs-netlink/tests/fixtures/`.
//!
//! Each datagram is printed as `FIXTURE <name> <sent|received> <hex>`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ipvs_netlink::{
    AddressFamily, Destination, Direction, ForwardMethod, Handle, Netmask, Service, ServiceId,
};
use vm_tests::enter_fresh_netns;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Runs `f` on a handle whose traffic is printed under `name`.
fn capture(h: &mut Handle, name: &str, f: impl FnOnce(&mut Handle)) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let tag = name.to_owned();
    h.set_tracer(move |dir, bytes| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = match dir {
            Direction::Sent => "sent",
            Direction::Received => "received",
        };
        sink.lock()
            .unwrap()
            .push(format!("FIXTURE {tag} {dir} {hex}"));
    });
    f(h);
    h.set_tracer(|_, _| {});
    for line in lines.lock().unwrap().iter() {
        println!("{line}");
    }
}

#[test]
#[ignore = "run by vm-tests/capture-fixtures.sh"]
fn capture_fixtures() {
    enter_fresh_netns().unwrap();
    let mut h = Handle::new().unwrap();
    let seed = ServiceId::tcp(sa("10.97.97.97:80"));
    let v6 = ServiceId::udp(sa("[2001:db8::1]:53"));
    let fwm = ServiceId::fwmark(AddressFamily::Inet, 42);

    capture(&mut h, "get_info", |h| {
        h.info().unwrap();
    });
    capture(&mut h, "new_service", |h| {
        h.add_service(&Service::new(seed, "rr")).unwrap()
    });
    capture(&mut h, "new_dest", |h| {
        h.add_destination(&seed, &Destination::new(sa("10.244.1.39:80")))
            .unwrap()
    });
    for rs in ["10.244.1.40:80", "10.244.2.33:80"] {
        h.add_destination(&seed, &Destination::new(sa(rs))).unwrap();
    }
    h.add_service(
        &Service::new(v6, "sh")
            .persistent(300)
            .with_netmask(Netmask::V6(64))
            .with_persistence_engine("sip"),
    )
    .unwrap();
    h.add_destination(
        &v6,
        &Destination::new(sa("[2001:db8::10]:5353"))
            .weight(3)
            .thresholds(100, 10),
    )
    .unwrap();
    h.add_service(&Service::new(fwm, "wlc")).unwrap();
    h.add_destination(
        &fwm,
        &Destination::new(sa("10.5.5.5:0")).forward(ForwardMethod::DirectRoute),
    )
    .unwrap();

    capture(&mut h, "get_service_doit", |h| {
        h.service(&seed).unwrap().unwrap();
    });
    capture(&mut h, "get_service_dump", |h| {
        assert_eq!(h.services().unwrap().len(), 3);
    });
    capture(&mut h, "get_dest_dump", |h| {
        assert_eq!(h.destinations(&seed).unwrap().len(), 3);
    });
    capture(&mut h, "get_dest_dump_v6", |h| {
        assert_eq!(h.destinations(&v6).unwrap().len(), 1);
    });
    capture(&mut h, "get_dest_dump_missing", |h| {
        let missing = ServiceId::tcp(sa("10.9.9.9:80"));
        assert!(h.destinations(&missing).unwrap().is_empty());
    });
    capture(&mut h, "set_service", |h| {
        h.edit_service(&Service::new(seed, "wrr")).unwrap()
    });
    capture(&mut h, "set_dest", |h| {
        h.edit_destination(&seed, &Destination::new(sa("10.244.1.39:80")).weight(5))
            .unwrap()
    });
    capture(&mut h, "del_dest", |h| {
        h.delete_destination(&seed, sa("10.244.2.33:80")).unwrap()
    });
    capture(&mut h, "error_eexist", |h| {
        assert!(h.add_service(&Service::new(seed, "rr")).is_err())
    });
    capture(&mut h, "get_service_esrch", |h| {
        let missing = ServiceId::tcp(sa("10.9.9.9:80"));
        assert_eq!(h.service(&missing).unwrap(), None)
    });
    capture(&mut h, "del_service", |h| h.delete_service(&v6).unwrap());
    capture(&mut h, "flush", |h| h.flush().unwrap());
}
