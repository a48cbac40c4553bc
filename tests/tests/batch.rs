//! `Handle::apply`: pipelined writes over a fake kernel.

use ipvs_netlink::netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};
use ipvs_netlink::{Destination, Error, IpvsCmd, Op, Operation, Service, ServiceId, MAX_IN_FLIGHT};
use ipvs_tests::{ack, datagram, nl_error, open, send_one, Action};

fn vip() -> ServiceId {
    ServiceId::tcp("10.97.97.97:80".parse().unwrap())
}

fn ops(n: usize) -> Vec<Op> {
    let mut v = vec![Op::AddService(Service::new(vip(), "rr"))];
    for i in 1..n {
        let addr = format!("10.244.{}.{}:80", i / 250, i % 250 + 1);
        v.push(Op::AddDestination(
            vip(),
            Destination::new(addr.parse().unwrap()),
        ));
    }
    v
}

#[test]
fn one_datagram_one_ack_on_the_last_request() {
    // The kernel answers only what asks for an answer: the last request.
    let (mut h, kernel) = open(|req| {
        if req.flags & NLM_F_ACK != 0 {
            send_one(req.ack())
        } else {
            vec![]
        }
    });
    let batch = ops(5);
    let results = h.apply(&batch).unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r.is_ok()));
    drop(h);
    let reqs = kernel.join();
    // The family lookup, then the five requests.
    assert_eq!(reqs.len(), 6);
    let writes = &reqs[1..];
    assert_eq!(writes[0].cmd(), Some(IpvsCmd::NewService));
    assert!(writes[1..]
        .iter()
        .all(|r| r.cmd() == Some(IpvsCmd::NewDest)));
    let seqs: Vec<u32> = writes.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6]);
    for r in &writes[..4] {
        assert_eq!(r.flags, NLM_F_REQUEST);
    }
    assert_eq!(writes[4].flags, NLM_F_REQUEST | NLM_F_ACK);
}

#[test]
fn errors_are_matched_to_their_requests_by_sequence_number() {
    // Requests 2 and 4 of the batch fail; the others succeed silently.
    let (mut h, _kernel) = open(|req| match req.seq {
        3 => send_one(req.error(libc::EEXIST)),
        5 => send_one(req.error(libc::ESRCH)),
        _ if req.flags & NLM_F_ACK != 0 => send_one(req.ack()),
        _ => vec![],
    });
    let results = h.apply(&ops(5)).unwrap();
    let errnos: Vec<Option<i32>> = results
        .iter()
        .map(|r| r.as_ref().err().and_then(Error::errno))
        .collect();
    assert_eq!(
        errnos,
        [None, Some(libc::EEXIST), None, Some(libc::ESRCH), None]
    );
    assert!(matches!(
        results[1],
        Err(Error::Kernel {
            op: Operation::AddDestination,
            ..
        })
    ));
}

#[test]
fn the_last_request_may_fail_too() {
    let (mut h, _kernel) = open(|req| {
        if req.flags & NLM_F_ACK != 0 {
            send_one(req.error(libc::ENOENT))
        } else {
            vec![]
        }
    });
    let results = h.apply(&ops(3)).unwrap();
    assert!(results[0].is_ok() && results[1].is_ok());
    assert_eq!(results[2].as_ref().unwrap_err().errno(), Some(libc::ENOENT));
}

#[test]
fn big_batches_are_split_into_datagrams_of_at_most_max_in_flight() {
    let (mut h, kernel) = open(|req| {
        if req.flags & NLM_F_ACK != 0 {
            send_one(req.ack())
        } else {
            vec![]
        }
    });
    let n = 2 * MAX_IN_FLIGHT + 7;
    let results = h.apply(&ops(n)).unwrap();
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|r| r.is_ok()));
    drop(h);
    let acked: Vec<usize> = kernel
        .join()
        .iter()
        .skip(1)
        .enumerate()
        .filter(|(_, r)| r.flags & NLM_F_ACK != 0)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(acked, [MAX_IN_FLIGHT - 1, 2 * MAX_IN_FLIGHT - 1, n - 1]);
}

#[test]
fn a_stale_reply_before_the_batch_is_skipped_and_a_future_one_is_an_error() {
    let (mut h, _kernel) = open(|req| {
        if req.flags & NLM_F_ACK != 0 {
            // A late ACK of an earlier request (seq 1), then ours.
            vec![Action::Send(datagram([ack(1, req.port), req.ack()]))]
        } else {
            vec![]
        }
    });
    assert!(h.apply(&ops(2)).unwrap().iter().all(|r| r.is_ok()));

    let (mut h, _kernel) = open(|req| {
        if req.flags & NLM_F_ACK != 0 {
            vec![Action::Send(nl_error(req.seq + 10, req.port, libc::EINVAL))]
        } else {
            vec![]
        }
    });
    assert!(matches!(h.apply(&ops(2)), Err(Error::Protocol { .. })));
}

#[test]
fn a_lost_ack_is_a_timeout_not_a_hang() {
    let (mut h, _kernel) = open(|_| vec![]);
    assert!(matches!(h.apply(&ops(3)), Err(Error::Timeout { .. })));
}

#[test]
fn an_empty_batch_sends_nothing() {
    let (mut h, kernel) = open(|_| vec![]);
    assert!(h.apply(&[]).unwrap().is_empty());
    drop(h);
    assert_eq!(kernel.join().len(), 1);
}

/// The kernel's ENOMEM (which Debian's 6.1 does not return for IPVS
/// writes: it runs the OOM killer instead, see README's Reliability) gets
/// libipvs's message, from a single command and from a restore, whose
/// later lines still run.
#[test]
fn enomem_prints_ipvsadms_message() {
    use ipvsadm_rs::io::Flow;
    // The `fail`-th NewService (from 1) gets ENOMEM.
    let failing = |fail: usize| {
        let mut seen = 0;
        move |req: &ipvs_tests::Request| {
            if req.cmd() == Some(IpvsCmd::NewService) {
                seen += 1;
                if seen == fail {
                    return send_one(req.error(libc::ENOMEM));
                }
            }
            if req.flags & NLM_F_ACK != 0 {
                send_one(req.ack())
            } else {
                vec![]
            }
        }
    };
    let run = |fail: usize, args: &[&str], input: &[u8]| {
        let (mut h, _kernel) = open(failing(fail));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (flow, out, err) = ipvs_tests::fuzz::process(&mut h, &args, input);
        (
            flow,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let (flow, out, err) = run(1, &["-A", "-t", "10.0.0.2:80", "-s", "rr"], b"");
    // process_options returns -1: ipvsadm exits 255.
    assert_eq!((flow, out.as_str()), (Flow::Return(-1), ""));
    assert_eq!(err, "Memory allocation problem\n");
    let rules = b"-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s rr\n-A -t 10.0.0.3:80 -s rr\n";
    let (flow, out, err) = run(2, &["-R"], rules);
    assert_eq!((flow, out.as_str()), (Flow::Return(0), ""));
    assert_eq!(err, "Memory allocation problem\n");
}
