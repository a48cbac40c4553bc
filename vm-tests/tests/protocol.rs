//! The rest of the IPVS protocol against the real kernel: timeouts
//! (SET/GET_CONFIG), sync daemons on a veth pair, ZERO with counters from
//! real traffic, tunnels of every kind, mixed-family destinations,
//! scheduler flags, one-packet, persistence engine and netmask. Each is
//! cross-checked with the real ipvsadm 1.31 both ways.

use std::net::IpAddr;

use ipvs_netlink::{
    AddressFamily, Daemon, DaemonState, Destination, Error, ForwardMethod, Handle, Netmask,
    Operation, Service, ServiceFlags, ServiceId, Stats, Timeouts, TunnelFlags, TunnelType,
};
use vm_tests::{fresh_handle, ipvsadm_ok, sa, Lab};

fn ipvsadm_line(line: &str) -> String {
    ipvsadm_ok(&line.split_whitespace().collect::<Vec<_>>())
}

fn kernel_errno<T: std::fmt::Debug>(r: ipvs_netlink::Result<T>) -> (Operation, i32) {
    match r {
        Err(Error::Kernel { op, errno }) => (op, errno),
        other => panic!("expected a kernel error, got {other:?}"),
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn timeouts_zero_keeps_the_current_value_both_ways() {
    let mut h = fresh_handle();
    h.set_timeouts(&Timeouts::new(900, 120, 300)).unwrap();
    assert_eq!(h.timeouts().unwrap(), Timeouts::new(900, 120, 300));
    h.set_timeouts(&Timeouts::new(0, 60, 0)).unwrap();
    assert_eq!(h.timeouts().unwrap(), Timeouts::new(900, 60, 300));
    assert_eq!(
        ipvsadm_ok(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 900 60 300\n"
    );
    ipvsadm_line("--set 100 0 50");
    assert_eq!(h.timeouts().unwrap(), Timeouts::new(100, 60, 50));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn flags_one_packet_engine_and_netmask_written_by_us_read_by_ipvsadm() {
    let mut h = fresh_handle();
    let dns = ServiceId::udp(sa("10.6.0.1:53"));
    h.add_service(
        &Service::new(dns, "sh")
            .with_flags(ServiceFlags::ONE_PACKET | ServiceFlags::SCHED1 | ServiceFlags::SCHED2),
    )
    .unwrap();
    let web = ServiceId::tcp(sa("10.6.0.2:443"));
    h.add_service(&Service::new(web, "mh").with_flags(ServiceFlags::SCHED2 | ServiceFlags::SCHED3))
        .unwrap();
    let sip = ServiceId::udp(sa("10.6.0.3:5060"));
    h.add_service(
        &Service::new(sip, "rr")
            .persistent(45)
            .with_netmask(Netmask::V4("255.255.255.0".parse().unwrap()))
            .with_persistence_engine("sip"),
    )
    .unwrap();
    let v6 = ServiceId::fwmark(AddressFamily::Inet6, 12);
    h.add_service(
        &Service::new(v6, "wlc")
            .persistent(360)
            .with_netmask(Netmask::V6(48)),
    )
    .unwrap();
    assert_eq!(
        ipvsadm_ok(&["-Sn"]),
        // 1.31 names only the flags of its scheduler: flag-3 is not saved
        // (the kernel keeps it, as read back below).
        "-A -t 10.6.0.2:443 -s mh -b mh-port\n\
         -A -u 10.6.0.1:53 -s sh -o -b sh-fallback,sh-port\n\
         -A -u 10.6.0.3:5060 -s rr -p 45 -M 255.255.255.0 --pe sip\n\
         -A -f 12 -6 -s wlc -p 360 -M 48\n"
    );
    // And read back by us, field for field.
    let got = h.service(&sip).unwrap().unwrap();
    assert_eq!(got.persistence_engine.as_deref(), Some("sip"));
    assert_eq!(got.netmask, Netmask::V4("255.255.255.0".parse().unwrap()));
    assert_eq!(got.flags, ServiceFlags::PERSISTENT | ServiceFlags::HASHED);
    let got = h.service(&web).unwrap().unwrap();
    assert_eq!(
        got.flags,
        ServiceFlags::HASHED | ServiceFlags::SCHED2 | ServiceFlags::SCHED3
    );
    assert_eq!(h.service(&v6).unwrap().unwrap().netmask, Netmask::V6(48));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn tunnels_of_every_kind_and_mixed_family_both_ways() {
    let mut h = fresh_handle();
    let id = ServiceId::tcp(sa("10.7.0.1:80"));
    h.add_service(&Service::new(id, "rr")).unwrap();
    let ours = [
        Destination::new(sa("10.8.0.1:80")).tunnel(TunnelType::Ipip, None, TunnelFlags::empty()),
        Destination::new(sa("10.8.0.2:80")).tunnel(TunnelType::Gue, Some(6080), TunnelFlags::CSUM),
        Destination::new(sa("10.8.0.3:80")).tunnel(
            TunnelType::Gue,
            Some(6081),
            TunnelFlags::REMCSUM,
        ),
        Destination::new(sa("10.8.0.4:80")).tunnel(TunnelType::Gre, None, TunnelFlags::CSUM),
        // Mixed family: an IPv6 real server behind an IPv4 service.
        Destination::new(sa("[2001:db8::8]:80")).tunnel(
            TunnelType::Ipip,
            None,
            TunnelFlags::empty(),
        ),
    ];
    for d in &ours {
        h.add_destination(&id, d).unwrap();
    }
    let mut got = h.destinations(&id).unwrap();
    got.sort_by_key(|d| d.socket_addr());
    let summary: Vec<_> = got
        .iter()
        .map(|d| {
            (
                d.socket_addr(),
                d.forward,
                d.tunnel_type,
                d.tunnel_port,
                d.tunnel_flags,
            )
        })
        .collect();
    let tun = ForwardMethod::Tunnel;
    assert_eq!(
        summary,
        [
            (
                sa("10.8.0.1:80"),
                tun,
                Some(TunnelType::Ipip),
                Some(0),
                Some(TunnelFlags::empty())
            ),
            (
                sa("10.8.0.2:80"),
                tun,
                Some(TunnelType::Gue),
                Some(6080),
                Some(TunnelFlags::CSUM)
            ),
            (
                sa("10.8.0.3:80"),
                tun,
                Some(TunnelType::Gue),
                Some(6081),
                Some(TunnelFlags::REMCSUM)
            ),
            (
                sa("10.8.0.4:80"),
                tun,
                Some(TunnelType::Gre),
                Some(0),
                Some(TunnelFlags::CSUM)
            ),
            (
                sa("[2001:db8::8]:80"),
                tun,
                Some(TunnelType::Ipip),
                Some(0),
                Some(TunnelFlags::empty())
            ),
        ]
    );
    let save = ipvsadm_ok(&["-Sn"]);
    for line in [
        "-a -t 10.7.0.1:80 -r 10.8.0.1:80 -i -w 1 --tun-type ipip\n",
        "-a -t 10.7.0.1:80 -r 10.8.0.2:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum\n",
        "-a -t 10.7.0.1:80 -r 10.8.0.3:80 -i -w 1 --tun-type gue --tun-port 6081 --tun-remcsum\n",
        "-a -t 10.7.0.1:80 -r 10.8.0.4:80 -i -w 1 --tun-type gre --tun-csum\n",
        "-a -t 10.7.0.1:80 -r [2001:db8::8]:80 -i -w 1 --tun-type ipip\n",
    ] {
        assert!(save.contains(line), "missing {line:?} in\n{save}");
    }

    // What ipvsadm writes, we read.
    let other = ServiceId::udp(sa("10.7.0.2:53"));
    ipvsadm_line("-A -u 10.7.0.2:53 -s wrr");
    ipvsadm_line("-a -u 10.7.0.2:53 -r 10.9.0.1 -i --tun-type gue --tun-port 7000 --tun-nocsum");
    ipvsadm_line("-a -u 10.7.0.2:53 -r 10.9.0.2 -i --tun-type gre --tun-csum -w 4");
    ipvsadm_line("-a -u 10.7.0.2:53 -r [2001:db8::9]:53 -i -w 2");
    let mut got = h.destinations(&other).unwrap();
    got.sort_by_key(|d| d.socket_addr());
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].socket_addr(), sa("10.9.0.1:53"));
    assert_eq!(
        (got[0].tunnel_type, got[0].tunnel_port, got[0].tunnel_flags),
        (
            Some(TunnelType::Gue),
            Some(7000),
            Some(TunnelFlags::empty())
        )
    );
    assert_eq!(
        (got[1].tunnel_type, got[1].tunnel_flags, got[1].weight),
        (Some(TunnelType::Gre), Some(TunnelFlags::CSUM), 4)
    );
    assert_eq!(got[2].addr, "2001:db8::9".parse::<IpAddr>().unwrap());
    assert_eq!((got[2].forward, got[2].weight), (ForwardMethod::Tunnel, 2));

    // Mixed families only tunnel; GUE needs a port.
    assert_eq!(
        kernel_errno(h.add_destination(&id, &Destination::new(sa("[2001:db8::9]:80")))),
        (Operation::AddDestination, libc::EINVAL)
    );
    assert_eq!(
        kernel_errno(h.add_destination(
            &id,
            &Destination::new(sa("10.8.0.9:80")).tunnel(TunnelType::Gue, None, TunnelFlags::CSUM)
        )),
        (Operation::AddDestination, libc::EINVAL)
    );
}

/// The director's end of the veth pair to the real servers, and the
/// real servers' end (see [`Lab`]).
const MASTER_IF: &str = "lab0";
const BACKUP_IF: &str = "rs0";

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn sync_daemons_master_and_backup_on_a_veth_pair() {
    let mut master = fresh_handle();
    let lab = Lab::new();
    let peer = &lab.server;
    let mut backup = Handle::in_netns(peer.path()).unwrap();

    let mut m = Daemon::new(DaemonState::Master, MASTER_IF);
    m.sync_id = 7;
    m.max_len = Some(1400);
    m.group = Some("239.1.2.3".parse().unwrap());
    m.port = Some(8849);
    m.ttl = Some(3);
    master.start_daemon(&m).unwrap();
    let mut b = Daemon::new(DaemonState::Backup, BACKUP_IF);
    b.sync_id = 7;
    b.max_len = Some(1400);
    b.group = Some("239.1.2.3".parse().unwrap());
    b.port = Some(8849);
    b.ttl = Some(3);
    backup.start_daemon(&b).unwrap();

    assert_eq!(master.daemons().unwrap(), vec![m.clone()]);
    assert_eq!(backup.daemons().unwrap(), vec![b.clone()]);
    assert_eq!(
        ipvsadm_ok(&["-L", "--daemon"]),
        "master sync daemon (mcast=lab0, syncid=7, maxlen=1400, group=239.1.2.3, port=8849, ttl=3)\n"
    );
    assert_eq!(
        kernel_errno(master.start_daemon(&m)),
        (Operation::StartDaemon, libc::EEXIST)
    );

    // Connections the master schedules reach the backup's table.
    let svc = ServiceId::tcp(sa("10.2.0.1:80"));
    master.add_service(&Service::new(svc, "rr")).unwrap();
    master
        .add_destination(&svc, &Destination::new(sa("10.1.0.2:8080")))
        .unwrap();
    let synced = (0..100).any(|_| {
        lab.connect("10.2.0.1:80");
        if peer.sh("ipvsadm -Lnc").contains("10.1.0.2:8080") {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        false
    });
    assert!(synced, "the backup never learned a connection");

    master.stop_daemon(&m).unwrap();
    assert_eq!(master.daemons().unwrap(), vec![]);
    assert_eq!(
        kernel_errno(master.stop_daemon(&m)),
        (Operation::StopDaemon, libc::ESRCH)
    );

    // What ipvsadm starts, we read field for field (IPv6 group here).
    backup.stop_daemon(&b).unwrap();
    peer.sh(
        "ipvsadm --start-daemon backup --mcast-interface rs0 --syncid 9 \
         --sync-maxlen 1200 --mcast-group ff02::1:3 --mcast-port 9000 --mcast-ttl 2",
    );
    let mut want = Daemon::new(DaemonState::Backup, BACKUP_IF);
    want.sync_id = 9;
    want.max_len = Some(1200);
    want.group = Some("ff02::1:3".parse().unwrap());
    want.port = Some(9000);
    want.ttl = Some(2);
    assert_eq!(backup.daemons().unwrap(), vec![want]);
}

/// Counters of a service and of its one destination once they are
/// stable. The kernel folds its per-CPU counters into what it reports on
/// every estimator tick (2 s), so two reads more than a tick apart must
/// agree.
fn settled(h: &mut Handle, id: &ServiceId) -> (Stats, Stats) {
    let mut read = || {
        let svc = h.service(id).unwrap().unwrap().stats.unwrap();
        let dest = h.destinations(id).unwrap()[0].stats.unwrap();
        (svc, dest)
    };
    let mut last = read();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(2200));
        let now = read();
        if (counters(&now.0), counters(&now.1)) == (counters(&last.0), counters(&last.1)) {
            return now;
        }
        last = now;
    }
}

fn counters(s: &Stats) -> [u64; 5] {
    [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes]
}

/// The `--stats --exact` line of a service: conns, inpkts, outpkts,
/// inbytes, outbytes.
fn ipvsadm_stats(vip: &str) -> [u64; 5] {
    let out = ipvsadm_ok(&["-Ln", "--stats", "--exact", "-t", vip]);
    let line = out
        .lines()
        .find(|l| l.starts_with("TCP"))
        .unwrap_or_else(|| panic!("no service line in {out}"));
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(2)
        .map(|w| w.parse().unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn zero_one_or_all_with_live_counters_from_real_traffic() {
    let mut h = fresh_handle();
    let lab = Lab::new();
    let (a, b) = (
        ServiceId::tcp(sa("10.2.0.1:80")),
        ServiceId::tcp(sa("10.2.0.1:81")),
    );
    h.add_service(&Service::new(a, "rr")).unwrap();
    h.add_destination(&a, &Destination::new(sa("10.1.0.2:8080")))
        .unwrap();
    h.add_service(&Service::new(b, "rr")).unwrap();
    h.add_destination(&b, &Destination::new(sa("10.1.0.2:8081")))
        .unwrap();
    for _ in 0..3 {
        lab.connect("10.2.0.1:80");
    }
    for _ in 0..2 {
        lab.connect("10.2.0.1:81");
    }

    let (sa_, da) = settled(&mut h, &a);
    let (sb, db) = settled(&mut h, &b);
    assert_eq!((sa_.conns, da.conns, sb.conns, db.conns), (3, 3, 2, 2));
    for s in [sa_, da, sb, db] {
        assert!(s.in_pkts >= 3 * 2 && s.out_pkts >= 2 * 2, "{s:?}");
        assert!(s.in_bytes > 0 && s.out_bytes > 0, "{s:?}");
    }
    // The service counters are the sum of its destinations'.
    assert_eq!(counters(&sa_), counters(&da));
    assert_eq!(ipvsadm_stats("10.2.0.1:80"), counters(&sa_));
    assert_eq!(ipvsadm_stats("10.2.0.1:81"), counters(&sb));

    // Zero one service: its counters and its destinations' go, the other
    // service keeps its own.
    h.zero(Some(&a)).unwrap();
    let (za, zda) = settled(&mut h, &a);
    assert_eq!((za, zda), (Stats::default(), Stats::default()));
    assert_eq!(ipvsadm_stats("10.2.0.1:80"), [0; 5]);
    assert_eq!(counters(&settled(&mut h, &b).0), counters(&sb));

    // Counting goes on after a zero.
    lab.connect("10.2.0.1:80");
    assert_eq!(settled(&mut h, &a).0.conns, 1);

    // ipvsadm zeroes one service, we read it.
    ipvsadm_line("-Z -t 10.2.0.1:81");
    assert_eq!(counters(&settled(&mut h, &b).0), [0; 5]);
    assert_eq!(settled(&mut h, &a).0.conns, 1);

    // Zero all.
    h.zero(None).unwrap();
    for id in [a, b] {
        let (s, d) = settled(&mut h, &id);
        assert_eq!((counters(&s), counters(&d)), ([0; 5], [0; 5]));
    }
    assert_eq!(
        kernel_errno(h.zero(Some(&ServiceId::tcp(sa("10.2.0.9:80"))))),
        (Operation::Zero, libc::ESRCH)
    );
    drop(lab);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn destination_dumps_come_in_page_sized_datagrams_and_the_service_dump_in_large_ones() {
    use ipvs_netlink::{Direction, Op};
    use std::sync::{Arc, Mutex};

    let mut h = fresh_handle();
    let first = ServiceId::tcp(sa("10.50.0.0:80"));
    let mut ops: Vec<Op> = (0..120u8)
        .map(|i| {
            Op::AddService(Service::new(
                ServiceId::tcp(sa(&format!("10.50.0.{i}:80"))),
                "rr",
            ))
        })
        .collect();
    ops.extend((0..150u8).map(|i| {
        Op::AddDestination(
            first,
            Destination::new(sa(&format!("10.60.{}.{i}:8080", i % 3))),
        )
    }));
    for r in h.apply(&ops).unwrap() {
        r.unwrap();
    }
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sizes);
    h.set_tracer(move |dir, bytes| {
        if dir == Direction::Received {
            seen.lock().unwrap().push(bytes.len());
        }
    });
    assert_eq!(h.services().unwrap().len(), 120);
    let service_dump = std::mem::take(&mut *sizes.lock().unwrap());
    assert_eq!(h.destinations(&first).unwrap().len(), 150);
    let dest_dump = std::mem::take(&mut *sizes.lock().unwrap());
    // 120 services of about 300 bytes: the kernel packs them in datagrams
    // of up to 32 KiB, since the service dump's socket offers 64 KiB.
    assert!(
        service_dump.iter().any(|&n| n > 8192),
        "service dump datagrams: {service_dump:?}"
    );
    // 150 destinations, over 20 KiB: several datagrams of at most a page
    // (4 KiB here), since the main socket offers one page.
    assert!(
        dest_dump.len() > 5,
        "destination dump datagrams: {dest_dump:?}"
    );
    assert!(
        dest_dump.iter().all(|&n| n <= 4096),
        "destination dump datagrams: {dest_dump:?}"
    );
}
