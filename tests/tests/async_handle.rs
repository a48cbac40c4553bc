//! The async handle (feature `tokio`) against the scripted fake kernel:
//! what the blocking handle's tests show of the blocking one (fake_kernel.rs,
//! batch.rs), through the same batch machine: dumps as streams, batches
//! with a result per op, timeouts, stale and foreign replies, a stream
//! dropped mid-dump, and many tasks sharing one handle. (That the dropped
//! dump is read to its end matters to the real kernel, which refuses a
//! second dump on a socket while one runs: vm-tests/tests/handle_table.rs.)

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use ipvs_netlink::netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use ipvs_netlink::{
    AsyncHandle, Destination, Error, IpvsCmd, Op, Operation, Service, ServiceId, MAX_IN_FLIGHT,
};
use ipvs_tests::*;

fn svc(i: u8) -> Service {
    let id = ServiceId::tcp(format!("10.97.97.{i}:80").parse().unwrap());
    Service::new(id, "rr")
}

async fn open_async(
    script: impl FnMut(&Request) -> Vec<Action> + Send + 'static,
) -> (AsyncHandle, FakeKernel) {
    let (fd, kernel) = FakeKernel::start(with_family(script));
    let h = AsyncHandle::from_socket(fd, PORT_ID, TIMEOUT)
        .await
        .expect("open the async handle");
    assert_eq!(h.family_id(), FAMILY_ID);
    (h, kernel)
}

/// A kernel whose table holds `services`: the service dump in one
/// datagram per service (so a stream can stop between two), then DONE.
fn listing(services: Vec<Service>) -> impl FnMut(&Request) -> Vec<Action> + Send + 'static {
    move |req| match req.cmd() {
        Some(IpvsCmd::GetService) if req.flags & NLM_F_DUMP == NLM_F_DUMP => {
            let mut out: Vec<Action> = services
                .iter()
                .map(|s| Action::Send(service_part(req.seq, req.port, s)))
                .collect();
            // A repeat, as the kernel sends when its table changes
            // between two datagrams: dropped.
            if let Some(first) = services.first() {
                out.push(Action::Send(service_part(req.seq, req.port, first)));
            }
            out.push(Action::Send(req.done()));
            out
        }
        _ if req.flags & NLM_F_ACK != 0 => send_one(req.ack()),
        _ => vec![],
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_service_dump_streams_and_matches_the_blocking_handle() {
    let table: Vec<Service> = (1..=3).map(svc).collect();
    let (h, _kernel) = open_async(listing(table.clone())).await;
    let got = h.services().await.unwrap();
    let want: Vec<Service> = table.iter().map(as_listed).collect();
    assert_eq!(got, want);
    // The blocking handle reads the same kernel the same way.
    let (mut b, _kernel) = open(listing(table.clone()));
    assert_eq!(b.services().unwrap(), want);
    // As a stream: the first item, then the rest.
    let mut s = pin!(h.service_stream());
    assert_eq!(s.next().await.unwrap().unwrap(), want[0]);
    let rest: Vec<Service> = s.map(|r| r.unwrap()).collect().await;
    assert_eq!(rest, want[1..]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_dropped_mid_dump_is_read_to_its_end_before_the_next_request() {
    let table: Vec<Service> = (1..=4).map(svc).collect();
    let (h, kernel) = open_async(listing(table.clone())).await;
    {
        let mut s = pin!(h.service_stream());
        assert!(s.next().await.unwrap().is_ok());
    }
    // The rest of the first dump (3 parts, the repeat, DONE) is still
    // queued: the next dump gets only its own replies.
    let want: Vec<Service> = table.iter().map(as_listed).collect();
    assert_eq!(h.services().await.unwrap(), want);
    h.flush().await.unwrap();
    drop(h);
    let cmds: Vec<_> = kernel.join().iter().skip(1).map(|r| r.cmd()).collect();
    assert_eq!(
        cmds,
        [
            Some(IpvsCmd::GetService),
            Some(IpvsCmd::GetService),
            Some(IpvsCmd::Flush)
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_batch_gets_one_result_per_op_with_one_ack_per_datagram() {
    let (h, kernel) = open_async(|req| match req.cmd() {
        Some(IpvsCmd::NewDest) if req.seq == 4 => send_one(req.error(libc::EEXIST)),
        _ if req.flags & NLM_F_ACK != 0 => send_one(req.ack()),
        _ => vec![],
    })
    .await;
    let vip = svc(1).id;
    let mut ops = vec![Op::AddService(svc(1))];
    for i in 0..MAX_IN_FLIGHT + 3 {
        let addr = format!("10.244.{}.{}:80", i / 250, i % 250 + 1);
        ops.push(Op::AddDestination(
            vip,
            Destination::new(addr.parse().unwrap()),
        ));
    }
    let results = h.apply(&ops).await.unwrap();
    assert_eq!(results.len(), ops.len());
    let failed: Vec<usize> = (0..ops.len()).filter(|&i| results[i].is_err()).collect();
    // Request 4 is the third op (the family lookup is request 1).
    assert_eq!(failed, [2]);
    assert!(results[2].as_ref().unwrap_err().is_already_exists());
    assert!(matches!(
        results[2],
        Err(Error::Kernel {
            op: Operation::AddDestination,
            ..
        })
    ));
    drop(h);
    let acked: Vec<usize> = kernel
        .join()
        .iter()
        .skip(1)
        .enumerate()
        .filter(|(_, r)| r.flags & NLM_F_ACK != 0)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(acked, [MAX_IN_FLIGHT - 1, ops.len() - 1]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_lost_reply_is_a_timeout_and_the_handle_goes_on() {
    let (h, _kernel) = open_async(|req| match req.cmd() {
        Some(IpvsCmd::Flush) => vec![],
        _ => send_one(req.ack()),
    })
    .await;
    let e = h.flush().await.unwrap_err();
    assert!(matches!(
        e,
        Error::Timeout {
            op: Operation::Flush,
            after
        } if after == TIMEOUT
    ));
    h.zero(None).await.unwrap();
    h.set_timeout(Duration::from_millis(50)).await;
    assert!(
        matches!(h.flush().await, Err(Error::Timeout { after, .. }) if after == Duration::from_millis(50))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stale_replies_are_skipped_and_replies_ahead_are_protocol_errors() {
    let (h, _kernel) = open_async(|req| match req.cmd() {
        // A late ACK of an earlier request, then ours.
        Some(IpvsCmd::Flush) => vec![Action::Send(datagram([ack(1, req.port), req.ack()]))],
        _ => send_one(nl_error(req.seq + 10, req.port, libc::EINVAL)),
    })
    .await;
    h.flush().await.unwrap();
    assert!(matches!(
        h.zero(None).await,
        Err(Error::Protocol {
            op: Operation::Zero,
            ..
        })
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn kernel_refusals_speak_ipvs() {
    let (h, _kernel) = open_async(|req| match req.cmd() {
        Some(IpvsCmd::NewService) => send_one(req.error(libc::ENOENT)),
        Some(IpvsCmd::GetService) => send_one(req.error(libc::ESRCH)),
        _ => send_one(req.error(libc::EPERM)),
    })
    .await;
    let e = h.add_service(&svc(1)).await.unwrap_err();
    assert!(e.is_no_such_scheduler(), "{e}");
    assert_eq!(h.service(&svc(1).id).await.unwrap(), None);
    let e = h.flush().await.unwrap_err();
    assert!(e.is_permission());
    assert!(matches!(
        e,
        Error::PermissionDenied {
            op: Operation::Flush
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_handle() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (h, _kernel) = open_async(move |req| {
        if req.cmd() == Some(IpvsCmd::NewService) {
            log.lock().unwrap().push(req.seq);
        }
        send_one(req.ack())
    })
    .await;
    let tasks: Vec<_> = (1..=16)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.add_service(&svc(i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut seqs = seen.lock().unwrap().clone();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 16, "each request its own sequence number");
}

#[test]
fn the_handle_and_its_futures_are_send() {
    fn send<T: Send + Sync>(_: &T) {}
    fn send_future<F: std::future::Future + Send>(_: F) {}
    fn with(h: &AsyncHandle) {
        send(h);
        send_future(h.services());
        send_future(h.apply(&[]));
        send_future(h.info());
    }
    let _ = with;
}

/// The family lookup's failures read as the blocking handle's
/// (fake_kernel.rs): the two handles share the decision
/// (`ENOENT` is no IPVS, `EPERM` no permission, another errno the
/// kernel's; a reply without the family id a protocol error).
#[tokio::test(flavor = "current_thread")]
async fn a_failed_family_lookup_reads_as_the_blocking_handle_s() {
    for errno in [libc::ENOENT, libc::EPERM, libc::EINVAL] {
        let (fd, _kernel) = FakeKernel::start(move |req: &Request| send_one(req.error(errno)));
        let ours = AsyncHandle::from_socket(fd, PORT_ID, TIMEOUT)
            .await
            .unwrap_err();
        let (blocking, _kernel) = open_raw(move |req| send_one(req.error(errno)));
        let blocking = blocking.unwrap_err();
        assert_eq!(ours.errno(), blocking.errno(), "{ours:?} / {blocking:?}");
        assert_eq!(ours.to_string(), blocking.to_string());
        let want = match errno {
            libc::ENOENT => matches!(ours, Error::NotAvailable),
            libc::EPERM => matches!(ours, Error::PermissionDenied { .. }),
            _ => matches!(
                ours,
                Error::Kernel {
                    errno: libc::EINVAL,
                    ..
                }
            ),
        };
        assert!(want, "{errno}: {ours:?}");
    }
}
