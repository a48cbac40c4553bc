//! Every operation of the base protocol against the real kernel, and each
//! error path, through `ipvs_netlink::Handle`; cross-checked with the real
//! ipvsadm 1.31 both ways.

use ipvs_netlink::{
    AddressFamily, Daemon, DaemonState, Destination, Error, ForwardMethod, Handle, Netmask,
    Operation, Protocol, Service, ServiceFlags, ServiceId,
};
use vm_tests::{fresh_handle, ipvsadm_ok, sa};

fn seed(h: &mut Handle) -> ServiceId {
    let id = ServiceId::tcp(sa("10.97.97.97:80"));
    h.add_service(&Service::new(id, "rr")).unwrap();
    for rs in ["10.244.1.39:80", "10.244.1.40:80", "10.244.2.33:80"] {
        h.add_destination(&id, &Destination::new(sa(rs))).unwrap();
    }
    id
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn info_reports_version_1_2_1() {
    let mut h = fresh_handle();
    let info = h.info().unwrap();
    assert_eq!(info.version_triple(), (1, 2, 1));
    assert_eq!(info.conn_table_size, 4096);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn seed_table_written_by_us_is_read_back_by_ipvsadm() {
    let mut h = fresh_handle();
    seed(&mut h);
    assert_eq!(
        ipvsadm_ok(&["-Sn"]),
        "-A -t 10.97.97.97:80 -s rr\n\
         -a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 1\n\
         -a -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 1\n\
         -a -t 10.97.97.97:80 -r 10.244.2.33:80 -m -w 1\n"
    );
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn service_dump_and_doit_agree_and_carry_hashed() {
    let mut h = fresh_handle();
    let id = seed(&mut h);
    let all = h.services().unwrap();
    assert_eq!(all.len(), 1);
    let one = h.service(&id).unwrap().expect("service exists");
    assert_eq!(all[0], one);
    assert_eq!(one.scheduler, "rr");
    assert_eq!(one.flags, ServiceFlags::HASHED);
    assert_eq!(one.timeout, 0);
    assert_eq!(one.netmask, Netmask::V4("255.255.255.255".parse().unwrap()));
    assert_eq!(one.persistence_engine, None);
    assert!(one.stats.is_some(), "the kernel reports counters");
    let dests = h.destinations(&id).unwrap();
    let mut addrs: Vec<_> = dests.iter().map(|d| d.socket_addr()).collect();
    addrs.sort();
    assert_eq!(
        addrs,
        [
            sa("10.244.1.39:80"),
            sa("10.244.1.40:80"),
            sa("10.244.2.33:80")
        ]
    );
    for d in &dests {
        assert_eq!(d.forward, ForwardMethod::Masquerade);
        assert_eq!(d.weight, 1);
        assert_eq!((d.upper_threshold, d.lower_threshold), (0, 0));
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn what_ipvsadm_writes_we_read_field_for_field() {
    let mut h = fresh_handle();
    for line in [
        "-A -t 10.0.0.1:80 -s wlc -p 600 -M 255.255.255.0",
        "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 5 -x 100 -y 10",
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -g -w 0",
        "-a -t 10.0.0.1:80 -r 10.0.1.3 -i -w 2",
        "-A -u 10.0.0.2:53 -s sh -b sh-fallback,sh-port -o",
        "-A --sctp-service 10.0.0.3:3868 -s rr",
        "-A -f 42 -s lc",
        "-A -f 7 -6 -s wrr -p 100 -M 64",
        "-A -t [2001:db8::1]:443 -s mh -b mh-port",
        "-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -m -w 3",
        "-A -u 10.0.0.4:5060 -s rr -p 30 --pe sip",
    ] {
        ipvsadm_ok(&line.split_whitespace().collect::<Vec<_>>());
    }
    let mut services = h.services().unwrap();
    services.sort_by_key(|s| s.id.to_string());
    let by = |name: &str| {
        services
            .iter()
            .find(|s| s.id.to_string() == name)
            .unwrap_or_else(|| panic!("{name} not listed in {services:#?}"))
            .clone()
    };

    let tcp = by("TCP 10.0.0.1:80");
    assert_eq!(tcp.scheduler, "wlc");
    assert_eq!(tcp.flags, ServiceFlags::HASHED | ServiceFlags::PERSISTENT);
    assert_eq!(tcp.timeout, 600);
    assert_eq!(tcp.netmask, Netmask::V4("255.255.255.0".parse().unwrap()));
    let mut dests = h.destinations(&tcp.id).unwrap();
    dests.sort_by_key(|d| d.socket_addr());
    let summary: Vec<_> = dests
        .iter()
        .map(|d| {
            (
                d.socket_addr(),
                d.forward,
                d.weight,
                d.upper_threshold,
                d.lower_threshold,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (sa("10.0.1.1:8080"), ForwardMethod::Masquerade, 5, 100, 10),
            // -g and -i force the service's port.
            (sa("10.0.1.2:80"), ForwardMethod::DirectRoute, 0, 0, 0),
            (sa("10.0.1.3:80"), ForwardMethod::Tunnel, 2, 0, 0),
        ]
    );

    let udp = by("UDP 10.0.0.2:53");
    assert_eq!(udp.scheduler, "sh");
    assert_eq!(
        udp.flags,
        ServiceFlags::HASHED
            | ServiceFlags::ONE_PACKET
            | ServiceFlags::SCHED1
            | ServiceFlags::SCHED2
    );

    let sctp = by("SCTP 10.0.0.3:3868");
    assert!(matches!(
        sctp.id,
        ServiceId::Inet {
            protocol: Protocol::Sctp,
            port: 3868,
            ..
        }
    ));

    let fwm = by("FWM 42");
    assert_eq!(fwm.id, ServiceId::fwmark(AddressFamily::Inet, 42));
    assert_eq!(fwm.scheduler, "lc");

    let fwm6 = by("FWM 7 IPv6");
    assert_eq!(fwm6.id, ServiceId::fwmark(AddressFamily::Inet6, 7));
    assert_eq!(fwm6.netmask, Netmask::V6(64));
    assert_eq!(fwm6.timeout, 100);

    let v6 = by("TCP [2001:db8::1]:443");
    assert_eq!(v6.flags, ServiceFlags::HASHED | ServiceFlags::SCHED2);
    assert_eq!(v6.netmask, Netmask::V6(128));
    let d6 = h.destinations(&v6.id).unwrap();
    assert_eq!(d6.len(), 1);
    assert_eq!(d6[0].socket_addr(), sa("[2001:db8::10]:443"));
    assert_eq!(d6[0].weight, 3);

    let sip = by("UDP 10.0.0.4:5060");
    assert_eq!(sip.persistence_engine.as_deref(), Some("sip"));
    assert_eq!(sip.timeout, 30);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn what_we_write_ipvsadm_reads_back() {
    let mut h = fresh_handle();
    let web = ServiceId::tcp(sa("10.1.0.1:80"));
    h.add_service(
        &Service::new(web, "wrr")
            .persistent(120)
            .with_netmask(Netmask::V4("255.255.0.0".parse().unwrap())),
    )
    .unwrap();
    h.add_destination(
        &web,
        &Destination::new(sa("10.1.1.1:8080"))
            .weight(7)
            .thresholds(50, 5),
    )
    .unwrap();
    h.add_destination(
        &web,
        &Destination::new(sa("10.1.1.2:80")).forward(ForwardMethod::DirectRoute),
    )
    .unwrap();
    let dns = ServiceId::udp(sa("[fd00::53]:53"));
    h.add_service(&Service::new(dns, "sed").with_flags(ServiceFlags::ONE_PACKET))
        .unwrap();
    h.add_destination(&dns, &Destination::new(sa("[fd00::1:53]:5353")).weight(2))
        .unwrap();
    let mark = ServiceId::fwmark(AddressFamily::Inet, 9);
    h.add_service(&Service::new(mark, "nq")).unwrap();

    assert_eq!(
        ipvsadm_ok(&["-Sn"]),
        "-A -t 10.1.0.1:80 -s wrr -p 120 -M 255.255.0.0\n\
         -a -t 10.1.0.1:80 -r 10.1.1.1:8080 -m -w 7\n\
         -a -t 10.1.0.1:80 -r 10.1.1.2:80 -g -w 1\n\
         -A -u [fd00::53]:53 -s sed -o\n\
         -a -u [fd00::53]:53 -r [fd00::1:53]:5353 -m -w 2\n\
         -A -f 9 -s nq\n"
    );
    let thresholds = ipvsadm_ok(&["-Ln", "--thresholds", "-t", "10.1.0.1:80"]);
    assert!(
        thresholds.contains(
            "  -> 10.1.1.1:8080                50         5          0          0         \n"
        ),
        "{thresholds}"
    );
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn edits_replace_the_whole_entry_and_deletes_remove_it() {
    let mut h = fresh_handle();
    let id = seed(&mut h);
    h.edit_service(&Service::new(id, "wlc").persistent(60))
        .unwrap();
    let svc = h.service(&id).unwrap().unwrap();
    assert_eq!(svc.scheduler, "wlc");
    assert_eq!(svc.timeout, 60);
    assert!(svc.flags.contains(ServiceFlags::PERSISTENT));
    // SET_SERVICE replaces the flags: no PERSISTENT without it.
    h.edit_service(&Service::new(id, "rr")).unwrap();
    let svc = h.service(&id).unwrap().unwrap();
    assert_eq!(svc.flags, ServiceFlags::HASHED);

    let rs = sa("10.244.1.40:80");
    h.edit_destination(
        &id,
        &Destination::new(rs)
            .weight(0)
            .forward(ForwardMethod::Tunnel),
    )
    .unwrap();
    let d = h
        .destinations(&id)
        .unwrap()
        .into_iter()
        .find(|d| d.socket_addr() == rs)
        .unwrap();
    assert_eq!((d.weight, d.forward), (0, ForwardMethod::Tunnel));

    h.delete_destination(&id, rs).unwrap();
    assert_eq!(h.destinations(&id).unwrap().len(), 2);
    h.delete_service(&id).unwrap();
    assert_eq!(h.services().unwrap(), vec![]);
    assert_eq!(h.service(&id).unwrap(), None);

    seed(&mut h);
    h.add_service(&Service::new(ServiceId::udp(sa("10.0.0.9:53")), "rr"))
        .unwrap();
    h.flush().unwrap();
    assert!(h.services().unwrap().is_empty());
    assert_eq!(ipvsadm_ok(&["-Sn"]), "");
}

fn errno_of(r: ipvs_netlink::Result<()>) -> (Operation, i32) {
    match r {
        Err(Error::Kernel { op, errno }) => (op, errno),
        other => panic!("expected a kernel error, got {other:?}"),
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn kernel_errors_are_typed_with_errno_and_operation() {
    let mut h = fresh_handle();
    let id = seed(&mut h);
    let missing = ServiceId::tcp(sa("10.9.9.9:80"));
    assert_eq!(
        errno_of(h.add_service(&Service::new(id, "rr"))),
        (Operation::AddService, libc::EEXIST)
    );
    assert_eq!(
        errno_of(h.edit_service(&Service::new(missing, "rr"))),
        (Operation::EditService, libc::ESRCH)
    );
    assert_eq!(
        errno_of(h.delete_service(&missing)),
        (Operation::DeleteService, libc::ESRCH)
    );
    assert_eq!(
        errno_of(h.add_service(&Service::new(missing, "nosuch"))),
        (Operation::AddService, libc::ENOENT)
    );
    assert_eq!(
        errno_of(h.add_destination(&missing, &Destination::new(sa("10.0.0.1:80")))),
        (Operation::AddDestination, libc::ESRCH)
    );
    assert_eq!(
        errno_of(h.add_destination(&id, &Destination::new(sa("10.244.1.39:80")))),
        (Operation::AddDestination, libc::EEXIST)
    );
    assert_eq!(
        errno_of(h.delete_destination(&id, sa("10.244.9.9:80"))),
        (Operation::DeleteDestination, libc::ENOENT)
    );
    assert_eq!(
        errno_of(h.edit_destination(&id, &Destination::new(sa("10.244.9.9:80")))),
        (Operation::EditDestination, libc::ENOENT)
    );
    // The kernel reads the weight as an int: 2^31 is negative, ERANGE.
    assert_eq!(
        errno_of(h.add_destination(&id, &Destination::new(sa("10.244.9.9:80")).weight(1 << 31))),
        (Operation::AddDestination, libc::ERANGE)
    );
    // Lower threshold above the upper one.
    assert_eq!(
        errno_of(h.add_destination(
            &id,
            &Destination::new(sa("10.244.9.9:80")).thresholds(5, 10)
        )),
        (Operation::AddDestination, libc::ERANGE)
    );
    // A GET_DEST dump of a missing service is empty, not an error.
    assert_eq!(h.destinations(&missing).unwrap(), vec![]);
    assert_eq!(h.service(&missing).unwrap(), None);
    // Nothing above changed the table.
    assert_eq!(h.services().unwrap().len(), 1);
    assert_eq!(h.destinations(&id).unwrap().len(), 3);
}

/// Each question a caller asks of an error, against what the real kernel
/// answered: `is_already_exists`, `is_not_found` (ESRCH for a service,
/// ENOENT for a destination), `is_no_such_scheduler`, `is_permission`,
/// and `Display` in IPVS's words.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn kernel_errors_answer_in_ipvs_words() {
    let mut h = fresh_handle();
    let id = seed(&mut h);
    let missing = ServiceId::tcp(sa("10.9.9.9:80"));
    let rs = Destination::new(sa("10.244.1.39:80"));
    let absent = Destination::new(sa("10.244.9.9:80"));

    let exists = [
        h.add_service(&Service::new(id, "rr")).unwrap_err(),
        h.add_destination(&id, &rs).unwrap_err(),
    ];
    for e in &exists {
        assert!(e.is_already_exists(), "{e:?}");
        assert!(!e.is_not_found() && !e.is_no_such_scheduler() && !e.is_permission());
    }
    assert_eq!(
        exists[0].to_string(),
        "add service: the service already exists (EEXIST)"
    );
    assert_eq!(
        exists[1].to_string(),
        "add destination: the destination already exists (EEXIST)"
    );

    // A missing service (ESRCH) and a missing destination (ENOENT) are
    // both "not found".
    let not_found = [
        h.edit_service(&Service::new(missing, "rr")).unwrap_err(),
        h.delete_service(&missing).unwrap_err(),
        h.add_destination(&missing, &rs).unwrap_err(),
        h.zero(Some(&missing)).unwrap_err(),
        h.edit_destination(&id, &absent).unwrap_err(),
        h.delete_destination(&id, absent.socket_addr()).unwrap_err(),
        h.stop_daemon(&Daemon::new(DaemonState::Backup, "lo"))
            .unwrap_err(),
    ];
    let errnos: Vec<i32> = not_found.iter().filter_map(Error::errno).collect();
    assert_eq!(
        errnos,
        [
            libc::ESRCH,
            libc::ESRCH,
            libc::ESRCH,
            libc::ESRCH,
            libc::ENOENT,
            libc::ENOENT,
            libc::ESRCH
        ]
    );
    for e in &not_found {
        assert!(e.is_not_found(), "{e:?}");
        assert!(!e.is_already_exists() && !e.is_no_such_scheduler() && !e.is_permission());
    }
    assert_eq!(
        not_found[0].to_string(),
        "edit service: no such service (ESRCH)"
    );
    assert_eq!(
        not_found[5].to_string(),
        "delete destination: no such destination (ENOENT)"
    );

    let no_sched = [
        h.add_service(&Service::new(missing, "nosuch")).unwrap_err(),
        h.edit_service(&Service::new(id, "nosuch")).unwrap_err(),
        h.add_service(&Service::new(missing, "rr").with_persistence_engine("nosuch"))
            .unwrap_err(),
    ];
    for e in &no_sched {
        assert!(e.is_no_such_scheduler(), "{e:?}");
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(!e.is_not_found() && !e.is_already_exists() && !e.is_permission());
    }
    assert_eq!(
        no_sched[0].to_string(),
        "add service: no such scheduler or persistence engine \
         (no ip_vs_NAME or ip_vs_pe_NAME module) (ENOENT)"
    );

    // Without CAP_NET_ADMIN: a thread of its own that is no longer root
    // (the raw syscall changes the calling thread's credentials only;
    // libc's setuid would change every thread's). It is in this test's
    // network namespace, as threads inherit their creator's.
    let denied = std::thread::spawn(|| {
        // SAFETY: setuid takes an integer and touches no memory of ours;
        // it changes the credentials of this thread alone, which ends
        // with this closure.
        let r = unsafe { libc::syscall(libc::SYS_setuid, 65534) };
        assert_eq!(r, 0, "setuid: {}", std::io::Error::last_os_error());
        Handle::new()
            .and_then(|mut h| h.services().map(drop))
            .unwrap_err()
    })
    .join()
    .unwrap();
    assert!(denied.is_permission(), "{denied:?}");
    assert!(matches!(
        denied,
        Error::PermissionDenied {
            op: Operation::ListServices
        }
    ));
    assert_eq!(denied.errno(), Some(libc::EPERM));
    assert!(!denied.is_not_found() && !denied.is_already_exists());

    // Nothing above changed the table.
    assert_eq!(h.services().unwrap().len(), 1);
    assert_eq!(h.service(&id).unwrap().unwrap().scheduler, "rr");
    assert_eq!(h.destinations(&id).unwrap().len(), 3);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn handle_is_send_and_works_from_another_thread_in_its_namespace() {
    let h = fresh_handle();
    let t = std::thread::spawn(move || {
        let mut h = h;
        h.add_service(&Service::new(ServiceId::tcp(sa("10.3.3.3:80")), "rr"))
            .and_then(|_| h.services())
    });
    // The socket stays in the namespace it was opened in, whatever thread
    // uses it.
    let services = t.join().unwrap().unwrap();
    assert_eq!(services.len(), 1);
    assert!(ipvsadm_ok(&["-Sn"]).contains("-A -t 10.3.3.3:80 -s rr"));
}
