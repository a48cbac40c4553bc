//! Captures the bytes of every protocol exchange with the real kernel,
//! for the byte-fixture tests of ipvs-netlink. Ignored by default; run by
//! `vm-tests/capture-fixtures.sh`, which stores the output under
//! `ipvs-netlink/tests/fixtures/`.
//!
//! Each datagram is printed as `FIXTURE <name> <sent|received> <hex>`:
//! what our handle sent and received (its tracer), and under `ipvsadm/`
//! what the real ipvsadm sent and received (an `nlmon` tap).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use ipvs_netlink::{
    AddressFamily, Daemon, DaemonState, Destination, Direction, ForwardMethod, Handle, Netmask,
    Service, ServiceFlags, ServiceId, Timeouts, TunnelFlags, TunnelType,
};
use vm_tests::{enter_fresh_netns, run_as, sa, sh, Lab};

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

/// A packet socket on an `nlmon` device of the caller's network namespace:
/// the kernel copies every netlink message of the namespace to it, both
/// ways, as sent (one packet per datagram). The outside view of what a
/// program such as the real ipvsadm sends, which no tracer of ours sees.
struct NetlinkTap {
    fd: OwnedFd,
}

impl NetlinkTap {
    fn new() -> NetlinkTap {
        sh("ip link add nlmon0 type nlmon && ip link set nlmon0 up");
        // SAFETY: the name is a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(c"nlmon0".as_ptr()) };
        assert_ne!(ifindex, 0, "no nlmon0: {}", io::Error::last_os_error());
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket call; the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                all.into(),
            )
        };
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: addr is a valid sockaddr_ll of the length passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind to nlmon0: {}", io::Error::last_os_error());
        NetlinkTap { fd }
    }

    /// The generic netlink datagrams seen since the last call, in order,
    /// read until the tap has been quiet for 300 ms.
    fn take(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, 300) };
            assert!(ready >= 0, "poll: {}", io::Error::last_os_error());
            if ready == 0 {
                return out;
            }
            // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buf and from are valid for the lengths passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            assert!(n >= 0, "recvfrom: {}", io::Error::last_os_error());
            let n = n as usize;
            assert!(n <= buf.len(), "a datagram of {n} bytes was truncated");
            // nlmon gives each copy the netlink protocol of its socket.
            if u16::from_be(from.sll_protocol) == libc::NETLINK_GENERIC as u16 {
                out.push(buf[..n].to_vec());
            }
        }
    }
}

/// The generic netlink controller's family id (name lookups).
const GENL_ID_CTRL: u16 = 0x10;

/// True for the messages of a datagram that belong to an IPVS exchange:
/// not the controller's (ipvsadm resolves the family "IPVS" by name
/// first), nor an acknowledgement of a controller request.
fn ipvs_exchange(datagram: &[u8]) -> bool {
    let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
    // An error or acknowledgement: the i32 error, then the header of the
    // request it answers, whose type is at bytes 4..6.
    let acked_kind = datagram
        .get(24..26)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]));
    kind != GENL_ID_CTRL && !(kind == libc::NLMSG_ERROR as u16 && acked_kind == Some(GENL_ID_CTRL))
}

/// The requests of the real ipvsadm 1.31 (libipvs over libnl), as the
/// kernel received them, with the kernel's replies: the outside oracle
/// of `ipvs-netlink/tests/fixtures.rs`, which compares our encoder's
/// bytes for the same requests with these. Each command runs once, and
/// its IPVS messages are printed as `FIXTURE ipvsadm/<name> ...`.
#[test]
#[ignore = "run by vm-tests/capture-fixtures.sh"]
fn capture_ipvsadm_requests() {
    enter_fresh_netns().unwrap();
    // lab0 and lab1: interfaces for the sync daemons.
    let _lab = Lab::new();
    let tap = NetlinkTap::new();
    let ipvsadm = vm_tests::ipvsadm();
    let capture = |name: &str, line: &str, ok: bool| {
        tap.take();
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = run_as(&ipvsadm, "ipvsadm", &args, b"");
        assert_eq!(out.code == Some(0), ok, "`ipvsadm {line}`:\n{out}");
        let datagrams = tap.take();
        assert!(!datagrams.is_empty(), "`ipvsadm {line}`: nothing on nlmon0");
        for d in datagrams.iter().filter(|d| ipvs_exchange(d)) {
            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
            // The kernel's answers carry no NLM_F_REQUEST (0x1).
            let dir = if d[6] & 1 == 1 { "sent" } else { "received" };
            println!("FIXTURE ipvsadm/{name} {dir} {hex}");
        }
    };
    capture("new_service", "-A -t 10.97.97.97:80 -s rr", true);
    capture(
        "new_dest",
        "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m",
        true,
    );
    for rs in ["10.244.1.40:80", "10.244.2.33:80"] {
        capture(
            "new_dest_more",
            &format!("-a -t 10.97.97.97:80 -r {rs} -m"),
            true,
        );
    }
    capture(
        "new_service_v6",
        "-A -u [2001:db8::1]:53 -s sh -p 300 -M 64 --pe sip",
        true,
    );
    capture(
        "new_dest_v6",
        "-a -u [2001:db8::1]:53 -r [2001:db8::10]:5353 -m -w 3 -x 100 -y 10",
        true,
    );
    capture("new_service_fwmark", "-A -f 42 -s wlc", true);
    capture("new_dest_fwmark", "-a -f 42 -r 10.5.5.5:0 -g", true);
    capture("get_service_doit", "-L -n -t 10.97.97.97:80", true);
    capture("get_service_dump", "-L -n", true);
    capture("set_service", "-E -t 10.97.97.97:80 -s wrr", true);
    capture(
        "set_dest",
        "-e -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 5",
        true,
    );
    capture("del_dest", "-d -t 10.97.97.97:80 -r 10.244.2.33:80", true);
    capture("error_eexist", "-A -t 10.97.97.97:80 -s rr", false);
    capture("get_service_esrch", "-L -n -t 10.9.9.9:80", false);
    capture("del_service", "-D -u [2001:db8::1]:53", true);
    capture("flush", "-C", true);
    capture("set_config", "--set 900 0 300", true);
    capture("get_config", "-L --timeout", true);
    capture(
        "new_daemon",
        "--start-daemon master --mcast-interface lab0 --syncid 7 --sync-maxlen 1400 \
         --mcast-group 239.1.2.3 --mcast-port 8849 --mcast-ttl 3",
        true,
    );
    capture("get_daemon_dump", "-L --daemon", true);
    capture("del_daemon", "--stop-daemon master", true);
    capture(
        "new_service_flags",
        "-A -u 10.6.0.1:53 -s sh -o -b sh-fallback,sh-port",
        true,
    );
    capture("new_service_tun", "-A -t 10.7.0.1:80 -s rr", true);
    capture(
        "new_dest_gue",
        "-a -t 10.7.0.1:80 -r 10.8.0.2:80 -i --tun-type gue --tun-port 6080 --tun-csum",
        true,
    );
    capture(
        "new_dest_mixed_family",
        "-a -t 10.7.0.1:80 -r [2001:db8::8]:80 -i --tun-type ipip",
        true,
    );
    capture("new_service_web", "-A -t 10.2.0.1:80 -s rr", true);
    capture("zero_service", "-Z -t 10.2.0.1:80", true);
    capture("zero_all", "-Z", true);
    capture("flush_end", "-C", true);
}
