//! The handle against a scripted fake kernel on a socket pair: happy paths
//! and every way a reply can go wrong. Each test asserts the exact typed
//! outcome; none may hang (handles use a 200 ms timeout).
//!
//! Sequence numbers: the family lookup is request 1, the first IPVS
//! request is 2, and so on.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipvs_netlink::netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTIPART, NLM_F_REQUEST};
use ipvs_netlink::netlink_packet_generic::constants::GENL_ID_CTRL;
use ipvs_netlink::netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use ipvs_netlink::netlink_packet_generic::ctrl::GenlCtrlCmd;
use ipvs_netlink::{
    AddressFamily, Destination, Direction, Error, ForwardMethod, Handle, InfoAttr, IpvsAttr,
    IpvsCmd, IpvsMessage, Netmask, Operation, Service, ServiceFlags, ServiceId, TunnelFlags,
    TunnelType,
};
use ipvs_tests::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn svc_tcp() -> Service {
    Service::new(ServiceId::tcp(addr("10.97.97.97:80")), "rr")
}

fn svc_udp6() -> Service {
    let mut s = Service::new(ServiceId::udp(addr("[2001:db8::53]:53")), "wlc")
        .persistent(300)
        .with_netmask(Netmask::V6(64));
    // Above u32::MAX: only the STATS64 nest carries them whole.
    s.stats = Some(sample_stats(u64::from(u32::MAX) + 7));
    s
}

fn svc_fwm() -> Service {
    Service::new(ServiceId::fwmark(AddressFamily::Inet, 7), "sh")
        .with_flags(ServiceFlags::SCHED1 | ServiceFlags::SCHED2)
        .with_persistence_engine("sip")
}

fn dest_route() -> Destination {
    let mut d = Destination::new(addr("10.244.1.39:80"))
        .weight(3)
        .forward(ForwardMethod::DirectRoute)
        .thresholds(100, 50);
    d.active_conns = 4;
    d.inactive_conns = 5;
    d.persistent_conns = 6;
    d.stats = Some(sample_stats(1000));
    d
}

fn dest_gue() -> Destination {
    let mut d = Destination::new(addr("10.244.2.33:8080"))
        .weight(0)
        .forward(ForwardMethod::Tunnel);
    d.tunnel_type = Some(TunnelType::Gue);
    d.tunnel_port = Some(6080);
    d.tunnel_flags = Some(TunnelFlags::CSUM);
    d.stats = Some(sample_stats(0));
    d
}

/// Records the datagrams the handle receives.
fn trace_received(handle: &mut Handle) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    handle.set_tracer(move |dir, bytes| {
        if dir == Direction::Received {
            sink.lock().unwrap().push(bytes.to_vec());
        }
    });
    seen
}

fn seq_of(datagram: &[u8]) -> u32 {
    u32::from_ne_bytes(datagram[8..12].try_into().unwrap())
}

// ---------------------------------------------------------------------------
// Happy paths

/// Fails unless `err` is the error `variant` of the operation `op`.
macro_rules! assert_error {
    ($err:expr, $variant:ident, $op:ident) => {
        assert!(
            matches!(
                &$err,
                Error::$variant {
                    op: Operation::$op,
                    ..
                }
            ),
            "expected {} of {}, got {:?}",
            stringify!($variant),
            stringify!($op),
            $err
        )
    };
}

/// The message of a decode error of `op`; anything else fails the test.
fn decode_message(err: &Error, op: Operation) -> String {
    match err {
        Error::Decode { op: got, message } if *got == op => message.clone(),
        _ => panic!("expected a decode error of {op:?}, got {err:?}"),
    }
}

/// The error of a service dump whose one service has the nest `nest`.
fn services_of_nest(nest: Vec<u8>) -> Error {
    let (mut h, _kernel) = open(move |req| {
        send_one(datagram([
            raw_service_part(req.seq, req.port, nest.clone()),
            req.done(),
        ]))
    });
    h.services().unwrap_err()
}

#[test]
fn family_resolution_sends_getfamily_and_uses_the_id() {
    let (handle, kernel) = open_raw(|req| send_one(ctrl_family_reply(req.seq, req.port, 0x1234)));
    let handle = handle.expect("family resolved");
    assert_eq!(handle.family_id(), 0x1234);
    drop(handle);
    let reqs = kernel.join();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.message_type, GENL_ID_CTRL);
    assert_eq!(r.flags, NLM_F_REQUEST);
    assert_eq!(r.seq, 1);
    assert_eq!(r.port, PORT_ID);
    assert_eq!(r.genl.cmd, u8::from(GenlCtrlCmd::GetFamily));
    let ctrl = r.ctrl.as_ref().unwrap();
    assert_eq!(ctrl.nlas, vec![GenlCtrlAttrs::FamilyName("IPVS".into())]);
}

#[test]
fn add_service_is_acked() {
    let (mut h, kernel) = open(|req| send_one(req.ack()));
    let svc = svc_fwm();
    h.add_service(&svc).expect("acked");
    drop(h);
    let reqs = kernel.join();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[1];
    assert_eq!(r.message_type, FAMILY_ID);
    assert_eq!(r.flags, NLM_F_REQUEST | NLM_F_ACK);
    assert_eq!((r.seq, r.port), (2, PORT_ID));
    assert_eq!(r.genl.version, 1);
    assert_eq!(r.cmd(), Some(IpvsCmd::NewService));
    let msg = r.ipvs.as_ref().unwrap();
    assert_eq!(msg.attrs, vec![IpvsAttr::Service(svc.to_attrs())]);
}

#[test]
fn services_dump_over_two_datagrams() {
    let all = [svc_tcp(), svc_udp6(), svc_fwm()];
    let sent = all.clone();
    let (mut h, kernel) = open(move |req| {
        let (s, p) = (req.seq, req.port);
        vec![
            Action::Send(datagram([
                service_part(s, p, &sent[0]),
                service_part(s, p, &sent[1]),
            ])),
            Action::Send(datagram([service_part(s, p, &sent[2]), done(s, p)])),
        ]
    });
    let got = h.services().expect("dump");
    let want: Vec<Service> = all.iter().map(as_listed).collect();
    assert_eq!(got, want);
    // Field by field on the one with everything set.
    assert_eq!(got[1].scheduler, "wlc");
    assert_eq!(
        got[1].flags,
        ServiceFlags::PERSISTENT | ServiceFlags::HASHED
    );
    assert_eq!(got[1].timeout, 300);
    assert_eq!(got[1].netmask, Netmask::V6(64));
    assert_eq!(got[1].stats.unwrap().conns, u64::from(u32::MAX) + 8);
    assert_eq!(got[2].persistence_engine.as_deref(), Some("sip"));
    assert_eq!(got[0].stats, None);
    drop(h);
    let reqs = kernel.join();
    let r = &reqs[1];
    assert_eq!(r.flags, NLM_F_REQUEST | NLM_F_DUMP);
    assert_eq!(r.cmd(), Some(IpvsCmd::GetService));
    assert!(r.ipvs.as_ref().unwrap().attrs.is_empty());
}

#[test]
fn destinations_dump() {
    let id = svc_tcp().id;
    let dests = [dest_route(), dest_gue()];
    let sent = dests.clone();
    let (mut h, kernel) = open(move |req| {
        let (s, p) = (req.seq, req.port);
        send_one(datagram([
            dest_part(s, p, &sent[0]),
            dest_part(s, p, &sent[1]),
            done(s, p),
        ]))
    });
    let got = h.destinations(&id).expect("dump");
    assert_eq!(got, dests);
    assert_eq!(got[0].active_conns, 4);
    assert_eq!(got[0].stats.unwrap().out_bps, 1010);
    assert_eq!(got[1].tunnel_port, Some(6080));
    drop(h);
    let reqs = kernel.join();
    let r = &reqs[1];
    assert_eq!(r.flags, NLM_F_REQUEST | NLM_F_DUMP);
    assert_eq!(r.cmd(), Some(IpvsCmd::GetDest));
    assert_eq!(
        r.ipvs.as_ref().unwrap().attrs,
        vec![IpvsAttr::Service(id.to_attrs())]
    );
}

#[test]
fn service_doit_returns_some() {
    let svc = svc_udp6();
    let sent = svc.clone();
    let (mut h, kernel) = open(move |req| send_one(service_reply(req.seq, req.port, &sent)));
    let got = h.service(&svc.id).expect("doit");
    assert_eq!(got, Some(as_listed(&svc)));
    drop(h);
    let reqs = kernel.join();
    let r = &reqs[1];
    // A doit GET: no ACK asked for, no dump.
    assert_eq!(r.flags, NLM_F_REQUEST);
    assert_eq!(r.cmd(), Some(IpvsCmd::GetService));
    assert_eq!(
        r.ipvs.as_ref().unwrap().attrs,
        vec![IpvsAttr::Service(svc.id.to_attrs())]
    );
}

#[test]
fn service_doit_esrch_is_none() {
    let (mut h, _kernel) = open(|req| send_one(req.error(libc::ESRCH)));
    assert_eq!(h.service(&svc_tcp().id).expect("ESRCH is no error"), None);
}

#[test]
fn service_doit_other_errno_is_an_error() {
    let (mut h, _kernel) = open(|req| send_one(req.error(libc::EINVAL)));
    let err = h.service(&svc_tcp().id).unwrap_err();
    assert!(
        matches!(err, Error::Kernel { op: Operation::GetService, errno } if errno == libc::EINVAL),
        "{err:?}"
    );
}

#[test]
fn info_parses_version_and_table_size() {
    let (mut h, kernel) = open(|req| {
        let reply = IpvsMessage::new(
            IpvsCmd::SetInfo,
            vec![
                IpvsAttr::Info(InfoAttr::Version(0x010201)),
                IpvsAttr::Info(InfoAttr::ConnTableSize(4096)),
            ],
        );
        send_one(ipvs_message(0, req.seq, req.port, &reply))
    });
    let info = h.info().expect("info");
    assert_eq!(info.version, 0x010201);
    assert_eq!(info.conn_table_size, 4096);
    assert_eq!(info.version_triple(), (1, 2, 1));
    drop(h);
    let reqs = kernel.join();
    assert_eq!(reqs[1].cmd(), Some(IpvsCmd::GetInfo));
    assert_eq!(reqs[1].flags, NLM_F_REQUEST);
}

#[test]
fn info_without_table_size_is_decode_error() {
    let (mut h, _kernel) = open(|req| {
        let reply = IpvsMessage::new(
            IpvsCmd::SetInfo,
            vec![IpvsAttr::Info(InfoAttr::Version(0x010201))],
        );
        send_one(ipvs_message(0, req.seq, req.port, &reply))
    });
    let err = h.info().unwrap_err();
    let message = decode_message(&err, Operation::GetInfo);
    assert!(message.contains("CONN_TAB_SIZE"), "{message}");
}

#[test]
fn destinations_of_missing_service_is_empty() {
    let (mut h, _kernel) = open(|req| send_one(req.done()));
    let got = h.destinations(&svc_tcp().id).expect("empty dump");
    assert!(got.is_empty());
}

#[test]
fn flush_and_deletes_are_acked_writes() {
    let (mut h, kernel) = open(|req| send_one(req.ack()));
    let id = svc_tcp().id;
    h.flush().unwrap();
    h.delete_service(&id).unwrap();
    h.add_destination(&id, &dest_route()).unwrap();
    h.edit_destination(&id, &dest_route()).unwrap();
    h.delete_destination(&id, addr("10.244.1.39:80")).unwrap();
    h.edit_service(&svc_tcp()).unwrap();
    drop(h);
    let reqs = kernel.join();
    let cmds: Vec<_> = reqs[1..].iter().map(|r| r.cmd().unwrap()).collect();
    assert_eq!(
        cmds,
        [
            IpvsCmd::Flush,
            IpvsCmd::DelService,
            IpvsCmd::NewDest,
            IpvsCmd::SetDest,
            IpvsCmd::DelDest,
            IpvsCmd::SetService
        ]
    );
    let seqs: Vec<u32> = reqs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
    assert!(reqs[1..]
        .iter()
        .all(|r| r.flags == NLM_F_REQUEST | NLM_F_ACK));
    assert_eq!(
        reqs[3].ipvs.as_ref().unwrap().attrs,
        vec![
            IpvsAttr::Service(id.to_attrs()),
            IpvsAttr::Dest(dest_route().to_attrs())
        ]
    );
}

// ---------------------------------------------------------------------------
// Family resolution failures

#[test]
fn family_not_registered_is_not_available() {
    let (handle, _kernel) = open_raw(|req| send_one(req.error(libc::ENOENT)));
    let err = handle.unwrap_err();
    assert!(matches!(err, Error::NotAvailable), "{err:?}");
}

#[test]
fn family_lookup_eperm_is_permission_denied() {
    let (handle, _kernel) = open_raw(|req| send_one(req.error(libc::EPERM)));
    let err = handle.unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                op: Operation::ResolveFamily
            }
        ),
        "{err:?}"
    );
}

#[test]
fn family_reply_without_id_is_protocol_error() {
    let (handle, _kernel) = open_raw(|req| {
        send_one(ctrl_reply(
            req.seq,
            req.port,
            vec![GenlCtrlAttrs::FamilyName("IPVS".into())],
        ))
    });
    let err = handle.unwrap_err();
    assert_error!(err, Protocol, ResolveFamily);
}

#[test]
fn family_lookup_unanswered_times_out() {
    let (handle, _kernel) = open_raw(|_| vec![]);
    let err = handle.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { op: Operation::ResolveFamily, after } if after == TIMEOUT),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// Lost, late, truncated and malformed replies

#[test]
fn dropped_reply_times_out() {
    let (mut h, _kernel) = open(|_| vec![]);
    let start = Instant::now();
    let err = h.add_service(&svc_tcp()).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, Error::Timeout { op: Operation::AddService, after } if after == TIMEOUT),
        "{err:?}"
    );
    assert!(took >= TIMEOUT, "gave up after {took:?}");
    assert!(took < TIMEOUT * 5, "took {took:?}");
}

#[test]
fn truncated_message_is_decode_error() {
    // The header says 200 bytes; the datagram holds 36.
    let (mut h, _kernel) = open(|req| {
        send_one(raw_message_with_length(
            FAMILY_ID,
            NLM_F_MULTIPART,
            req.seq,
            req.port,
            &[4, 1, 0, 0, 8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            200,
        ))
    });
    let err = h.services().unwrap_err();
    let message = decode_message(&err, Operation::ListServices);
    assert!(message.contains("200"), "{message}");
}

#[test]
fn truncated_second_message_of_a_datagram_is_decode_error() {
    let (mut h, _kernel) = open(|req| {
        let mut d = service_part(req.seq, req.port, &svc_tcp());
        // A second header claiming 64 bytes, cut after 20.
        d.extend_from_slice(&raw_message_with_length(
            FAMILY_ID,
            NLM_F_MULTIPART,
            req.seq,
            req.port,
            &[4, 1, 0, 0],
            64,
        ));
        send_one(d)
    });
    let err = h.services().unwrap_err();
    assert_error!(err, Decode, ListServices);
}

#[test]
fn datagram_shorter_than_a_header_is_decode_error() {
    let (mut h, _kernel) = open(|_| send_one(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    assert_error!(err, Decode, AddService);
}

#[test]
fn nlmsg_error_without_code_is_decode_error() {
    let (mut h, _kernel) =
        open(|req| send_one(raw_message(NLMSG_ERROR, 0, req.seq, req.port, &[0, 0])));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    let message = decode_message(&err, Operation::AddService);
    assert!(message.contains("NLMSG_ERROR"), "{message}");
}

#[test]
fn nlmsg_error_with_most_negative_code_does_not_panic() {
    let (mut h, _kernel) = open(|req| send_one(nl_error_code(req.seq, req.port, i32::MIN)));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    assert!(
        matches!(err, Error::Kernel { op: Operation::AddService, errno } if errno > 0),
        "{err:?}"
    );
}

#[test]
fn attribute_running_past_its_nest_is_decode_error() {
    let mut nest = raw_nla(1, 6, &2u16.to_ne_bytes()); // AF_INET
    nest.extend_from_slice(&raw_nla(3, 40, &[10, 0, 0, 1])); // says 40, has 8
    let err = services_of_nest(nest);
    let message = decode_message(&err, Operation::ListServices);
    assert!(message.contains("IPVS_CMD_ATTR_SERVICE"), "{message}");
    assert!(message.contains("NewService"), "{message}");
}

#[test]
fn three_byte_af_attribute_is_decode_error() {
    let mut nest = raw_nla(1, 7, &[2, 0, 0]);
    nest.extend_from_slice(&raw_nla(2, 6, &6u16.to_ne_bytes()));
    let err = services_of_nest(nest);
    let message = decode_message(&err, Operation::ListServices);
    assert!(message.contains("IPVS_SVC_ATTR_AF"), "{message}");
    assert!(message.contains("expected 2 bytes, got 3"), "{message}");
}

#[test]
fn service_without_address_family_is_decode_error() {
    let nest = raw_nla(2, 6, &6u16.to_ne_bytes()); // PROTOCOL only
    let err = services_of_nest(nest);
    let message = decode_message(&err, Operation::ListServices);
    assert!(message.contains("IPVS_SVC_ATTR_AF"), "{message}");
}

#[test]
fn unexpected_message_type_is_protocol_error() {
    let (mut h, _kernel) = open(|req| send_one(raw_message(0x77, 0, req.seq, req.port, &[0; 4])));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    assert_error!(err, Protocol, AddService);
}

#[test]
fn done_in_reply_to_a_write_is_protocol_error() {
    let (mut h, _kernel) = open(|req| send_one(req.done()));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    assert_error!(err, Protocol, AddService);
}

#[test]
fn noop_and_unrequested_ack_do_not_end_a_dump() {
    let (mut h, _kernel) = open(|req| {
        let (s, p) = (req.seq, req.port);
        send_one(datagram([
            raw_message(NLMSG_NOOP, 0, s, p, &[]),
            service_part(s, p, &svc_tcp()),
            ack(s, p),
            service_part(s, p, &svc_fwm()),
            done(s, p),
        ]))
    });
    let got = h.services().unwrap();
    assert_eq!(got, vec![as_listed(&svc_tcp()), as_listed(&svc_fwm())]);
}

// ---------------------------------------------------------------------------
// Sequence numbers and ports

#[test]
fn future_sequence_number_is_protocol_error() {
    let (mut h, _kernel) = open(|req| send_one(ack(req.seq + 5, req.port)));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    match &err {
        Error::Protocol {
            op: Operation::AddService,
            message,
        } => assert!(message.contains("sequence number 7"), "{message}"),
        _ => panic!("{err:?}"),
    }
}

#[test]
fn stale_reply_then_correct_reply_succeeds() {
    let (mut h, _kernel) = open(|req| {
        // A late duplicate ACK of request 1 (the family lookup), then ours.
        send_one(datagram([ack(req.seq - 1, req.port), req.ack()]))
    });
    h.add_service(&svc_tcp()).expect("stale ACK skipped");
}

#[test]
fn stale_error_is_not_taken_for_ours() {
    let (mut h, _kernel) = open(|req| {
        vec![
            Action::Send(nl_error(req.seq - 1, req.port, libc::EEXIST)),
            Action::Send(req.ack()),
        ]
    });
    h.add_service(&svc_tcp()).expect("stale error skipped");
}

#[test]
fn duplicate_ack_is_skipped_by_the_next_request() {
    let (mut h, kernel) = open(|req| match req.seq {
        2 => vec![Action::Send(req.ack()), Action::Send(req.ack())],
        _ => send_one(req.ack()),
    });
    let seen = trace_received(&mut h);
    h.add_service(&svc_tcp()).expect("first");
    h.delete_service(&svc_tcp().id).expect("second");
    let seqs: Vec<u32> = seen.lock().unwrap().iter().map(|d| seq_of(d)).collect();
    // The duplicate of ACK 2 was read (and skipped) by request 3.
    assert_eq!(seqs, [2, 2, 3]);
    drop(h);
    assert_eq!(kernel.join().len(), 3);
}

#[test]
fn duplicated_service_in_a_dump_is_returned_once() {
    let (mut h, _kernel) = open(|req| {
        let (s, p) = (req.seq, req.port);
        vec![
            Action::Send(datagram([
                service_part(s, p, &svc_tcp()),
                service_part(s, p, &svc_udp6()),
            ])),
            Action::Send(datagram([
                service_part(s, p, &svc_udp6()),
                service_part(s, p, &svc_fwm()),
                done(s, p),
            ])),
        ]
    });
    let got = h.services().unwrap();
    assert_eq!(
        got,
        vec![
            as_listed(&svc_tcp()),
            as_listed(&svc_udp6()),
            as_listed(&svc_fwm())
        ]
    );
}

#[test]
fn duplicated_destination_in_a_dump_is_returned_once() {
    let (mut h, _kernel) = open(|req| {
        let (s, p) = (req.seq, req.port);
        send_one(datagram([
            dest_part(s, p, &dest_route()),
            dest_part(s, p, &dest_gue()),
            dest_part(s, p, &dest_route()),
            done(s, p),
        ]))
    });
    let got = h.destinations(&svc_tcp().id).unwrap();
    assert_eq!(got, vec![dest_route(), dest_gue()]);
}

#[test]
fn wrong_port_is_protocol_error() {
    let (mut h, _kernel) = open(|req| send_one(ack(req.seq, req.port + 1)));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    match &err {
        Error::Protocol {
            op: Operation::AddService,
            message,
        } => assert!(message.contains("port"), "{message}"),
        _ => panic!("{err:?}"),
    }
}

// ---------------------------------------------------------------------------
// Kernel error codes

#[test]
fn error_in_the_middle_of_a_dump() {
    let (mut h, _kernel) = open(|req| {
        let (s, p) = (req.seq, req.port);
        send_one(datagram([
            service_part(s, p, &svc_tcp()),
            service_part(s, p, &svc_fwm()),
            nl_error(s, p, libc::EINVAL),
        ]))
    });
    let err = h.services().unwrap_err();
    assert!(
        matches!(err, Error::Kernel { op: Operation::ListServices, errno } if errno == libc::EINVAL),
        "{err:?}"
    );
    assert_eq!(err.errno(), Some(libc::EINVAL));
}

#[test]
fn eperm_on_a_write_is_permission_denied() {
    let (mut h, _kernel) = open(|req| send_one(req.error(libc::EPERM)));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                op: Operation::AddService
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.errno(), Some(libc::EPERM));
}

#[test]
fn eexist_on_a_write_is_kernel_error() {
    let (mut h, _kernel) = open(|req| send_one(req.error(libc::EEXIST)));
    let err = h.add_service(&svc_tcp()).unwrap_err();
    assert!(
        matches!(err, Error::Kernel { op: Operation::AddService, errno } if errno == libc::EEXIST),
        "{err:?}"
    );
}

#[test]
fn dump_done_with_negative_status_is_kernel_error() {
    let (mut h, _kernel) = open(|req| {
        send_one(raw_message(
            NLMSG_DONE,
            NLM_F_MULTIPART,
            req.seq,
            req.port,
            &(-libc::EMSGSIZE).to_ne_bytes(),
        ))
    });
    let err = h.services().unwrap_err();
    assert!(
        matches!(err, Error::Kernel { op: Operation::ListServices, errno } if errno == libc::EMSGSIZE),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// Timing and the socket going away

#[test]
fn delayed_reply_times_out_and_is_skipped_later() {
    let (tx, rx) = signal();
    let (mut h, _kernel) = open(move |req| match req.seq {
        2 => {
            let tx = tx.clone();
            vec![
                Action::Sleep(TIMEOUT * 2),
                Action::Send(req.ack()),
                Action::Call(Box::new(move || tx.send(()).unwrap())),
            ]
        }
        _ => send_one(req.ack()),
    });
    let seen = trace_received(&mut h);
    let err = h.add_service(&svc_tcp()).unwrap_err();
    assert!(
        matches!(err, Error::Timeout { op: Operation::AddService, after } if after == TIMEOUT),
        "{err:?}"
    );
    // Wait until the late ACK is in the socket, then go on.
    rx.recv_timeout(Duration::from_secs(5))
        .expect("late ACK sent");
    h.delete_service(&svc_tcp().id)
        .expect("late ACK skipped as stale");
    let seqs: Vec<u32> = seen.lock().unwrap().iter().map(|d| seq_of(d)).collect();
    assert_eq!(seqs, [2, 3]);
}

#[test]
fn endless_stale_replies_still_time_out() {
    // Stale ACKs every 50 ms for 1.5 s: each recv succeeds, so only the
    // handle's own deadline can end the wait.
    let (mut h, _kernel) = open(|req| {
        let mut actions = Vec::new();
        for _ in 0..30 {
            actions.push(Action::Send(ack(req.seq - 1, req.port)));
            actions.push(Action::Sleep(Duration::from_millis(50)));
        }
        actions
    });
    let start = Instant::now();
    let err = h.add_service(&svc_tcp()).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, Error::Timeout { op: Operation::AddService, after } if after == TIMEOUT),
        "{err:?}"
    );
    assert!(took < TIMEOUT * 3, "waited {took:?} on stale replies");
}

#[test]
fn peer_closing_the_socket_is_io_error() {
    let (mut h, kernel) = open(|_| vec![Action::Close]);
    let err = h.add_service(&svc_tcp()).unwrap_err();
    match &err {
        Error::Io {
            op: Operation::AddService,
            source,
        } => assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof),
        _ => panic!("{err:?}"),
    }
    assert_eq!(kernel.join().len(), 2);
    // The next request cannot even be sent.
    let err = h.delete_service(&svc_tcp().id).unwrap_err();
    assert_error!(err, Io, DeleteService);
    assert_eq!(err.errno(), Some(libc::EPIPE));
}

#[test]
fn zero_and_sub_microsecond_timeouts_do_not_block_forever() {
    // SO_RCVTIMEO of zero means "no timeout": the handle must not pass a
    // zero (or sub-microsecond) timeout through as such.
    for timeout in [Duration::ZERO, Duration::from_nanos(500)] {
        let (tx, rx) = std::sync::mpsc::channel();
        let (fd, _kernel) = FakeKernel::start(|_| vec![]);
        std::thread::spawn(move || {
            let r = Handle::from_socket(fd, PORT_ID, timeout);
            let _ = tx.send(r.map(drop));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_else(|_| panic!("from_socket with a {timeout:?} timeout hung"));
        let err = r.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { op: Operation::ResolveFamily, after } if after == timeout),
            "{err:?}"
        );
    }
}

#[test]
fn raw_request_returns_the_dump_messages() {
    let (mut h, kernel) = open(|req| {
        let (s, p) = (req.seq, req.port);
        send_one(datagram([service_part(s, p, &svc_tcp()), done(s, p)]))
    });
    let replies = h
        .request(IpvsMessage::new(IpvsCmd::GetService, vec![]), true)
        .unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].cmd, IpvsCmd::NewService);
    assert_eq!(
        Service::from_attrs(replies[0].service_attrs().unwrap()).unwrap(),
        as_listed(&svc_tcp())
    );
    drop(h);
    assert_eq!(kernel.join()[1].flags, NLM_F_REQUEST | NLM_F_DUMP);
}
