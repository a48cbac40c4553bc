//! Captures the bytes of every protocol exchange with the real kernel,
//! for the byte-fixture tests of ipvs-netlink. Ignored by default; run by
//! `vm-tests/capture-fixtures.sh`, which stores the output under
//! `ipvs-netlink/tests/fixtures/`.
//!
//! Each datagram is printed as `FIXTURE <name> <sent|received> <hex>`.

use std::sync::{Arc, Mutex};

use ipvs_netlink::{
    AddressFamily, Daemon, DaemonState, Destination, Direction, ForwardMethod, Handle, Netmask,
    Service, ServiceFlags, ServiceId, Timeouts, TunnelFlags, TunnelType,
};
use vm_tests::{enter_fresh_netns, sa, Lab};

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

/// The rest of the protocol: config, daemons, tunnels and mixed family,
/// scheduler flags, ZERO, and counters after real traffic.
#[test]
#[ignore = "run by vm-tests/capture-fixtures.sh"]
fn capture_fixtures_protocol() {
    enter_fresh_netns().unwrap();
    let lab = Lab::new();
    let mut h = Handle::new().unwrap();

    capture(&mut h, "set_config", |h| {
        h.set_timeouts(&Timeouts::new(900, 0, 300)).unwrap()
    });
    capture(&mut h, "get_config", |h| {
        assert_eq!(h.timeouts().unwrap().tcp, 900);
    });

    let mut master = Daemon::new(DaemonState::Master, "lab0");
    master.sync_id = 7;
    master.max_len = Some(1400);
    master.group = Some("239.1.2.3".parse().unwrap());
    master.port = Some(8849);
    master.ttl = Some(3);
    capture(&mut h, "new_daemon", |h| h.start_daemon(&master).unwrap());
    let mut backup = Daemon::new(DaemonState::Backup, "lab1");
    backup.sync_id = 9;
    backup.group = Some("ff02::1:3".parse().unwrap());
    h.start_daemon(&backup).unwrap();
    capture(&mut h, "get_daemon_dump", |h| {
        assert_eq!(h.daemons().unwrap().len(), 2);
    });
    capture(&mut h, "del_daemon", |h| h.stop_daemon(&master).unwrap());
    h.stop_daemon(&backup).unwrap();

    let flags = ServiceId::udp(sa("10.6.0.1:53"));
    capture(&mut h, "new_service_flags", |h| {
        h.add_service(
            &Service::new(flags, "sh")
                .with_flags(ServiceFlags::ONE_PACKET | ServiceFlags::SCHED1 | ServiceFlags::SCHED2),
        )
        .unwrap()
    });
    capture(&mut h, "get_service_flags", |h| {
        h.service(&flags).unwrap().unwrap();
    });

    let tun = ServiceId::tcp(sa("10.7.0.1:80"));
    h.add_service(&Service::new(tun, "rr")).unwrap();
    capture(&mut h, "new_dest_gue", |h| {
        h.add_destination(
            &tun,
            &Destination::new(sa("10.8.0.2:80")).tunnel(
                TunnelType::Gue,
                Some(6080),
                TunnelFlags::CSUM,
            ),
        )
        .unwrap()
    });
    h.add_destination(
        &tun,
        &Destination::new(sa("10.8.0.4:80")).tunnel(TunnelType::Gre, None, TunnelFlags::CSUM),
    )
    .unwrap();
    capture(&mut h, "new_dest_mixed_family", |h| {
        h.add_destination(
            &tun,
            &Destination::new(sa("[2001:db8::8]:80")).tunnel(
                TunnelType::Ipip,
                None,
                TunnelFlags::empty(),
            ),
        )
        .unwrap()
    });
    capture(&mut h, "get_dest_dump_tunnels", |h| {
        assert_eq!(h.destinations(&tun).unwrap().len(), 3);
    });

    let web = ServiceId::tcp(sa("10.2.0.1:80"));
    h.add_service(&Service::new(web, "rr")).unwrap();
    h.add_destination(&web, &Destination::new(sa("10.1.0.2:8080")))
        .unwrap();
    for _ in 0..3 {
        lab.connect("10.2.0.1:80");
    }
    // Counters reach what the kernel reports on its next estimator tick.
    while h.service(&web).unwrap().unwrap().stats.unwrap().conns < 3 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    capture(&mut h, "get_service_stats", |h| {
        assert_eq!(h.service(&web).unwrap().unwrap().stats.unwrap().conns, 3);
    });
    capture(&mut h, "get_dest_dump_stats", |h| {
        assert_eq!(h.destinations(&web).unwrap()[0].stats.unwrap().conns, 3);
    });
    capture(&mut h, "zero_service", |h| h.zero(Some(&web)).unwrap());
    capture(&mut h, "zero_all", |h| h.zero(None).unwrap());
    h.flush().unwrap();
    drop(lab);
}
