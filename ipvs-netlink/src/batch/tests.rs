//! The batch machine against hand-made replies, the kernel's captured
//! replies (tests/fixtures, from Debian's 6.1 kernel), and a property
//! test: a model kernel answers a random batch in order, its replies cut
//! into random datagrams, and lost, repeated or reordered.

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK, NLM_F_DUMP};
use proptest::prelude::*;

use super::*;
// The transport's tests build their replies the same way.
use crate::transport::tests::{error, message, PORT};

const KIND: u16 = 0x20;

fn done(seq: u32) -> Vec<u8> {
    message(NLMSG_DONE, seq, PORT, &0i32.to_ne_bytes())
}

fn data(seq: u32, body: &[u8]) -> Vec<u8> {
    message(KIND, seq, PORT, body)
}

/// A batch of `expects` numbered from `first`, each request an empty
/// message of type [`KIND`].
fn batch(first: u32, expects: &[Expect]) -> Batch {
    let mut b = Batch::new(PORT, first);
    for &e in expects {
        b.push(e, |h, out| {
            h.message_type = KIND;
            h.length = 16;
            let at = out.len();
            out.resize(at + 16, 0);
            netlink_packet_core::Emitable::emit(h, &mut out[at..]);
        });
    }
    b
}

/// What `read` reported, in order: `(index, None)` for data (its body),
/// `(index, Some(outcome))` for a completion.
type Seen = Vec<(usize, std::result::Result<Outcome, Vec<u8>>)>;

fn read_all(b: &mut Batch, datagrams: &[Vec<u8>]) -> Result<(Progress, Seen)> {
    let mut seen = Vec::new();
    let mut last = Progress::Stale;
    for d in datagrams {
        last = b.read(d, |e| {
            seen.push(match e {
                Event::Data { index, payload, .. } => (index, Err(payload.to_vec())),
                Event::Complete { index, outcome } => (index, Ok(outcome)),
            });
            Ok(())
        })?;
        if last == Progress::Done {
            break;
        }
    }
    Ok((last, seen))
}

use Expect::{Ack, Dump, Refusal, Reply};

#[test]
fn the_datagram_holds_each_request_with_its_number_and_flags() {
    let b = batch(7, &[Refusal, Dump, Ack]);
    let d = b.datagram();
    assert_eq!(d.len(), 48);
    let field = |at: usize, n: usize| &d[at..at + n];
    for (i, flags) in [
        NLM_F_REQUEST,
        NLM_F_REQUEST | NLM_F_DUMP,
        NLM_F_REQUEST | NLM_F_ACK,
    ]
    .into_iter()
    .enumerate()
    {
        let at = 16 * i;
        assert_eq!(field(at + 6, 2), flags.to_ne_bytes());
        assert_eq!(field(at + 8, 4), (7 + i as u32).to_ne_bytes());
        assert_eq!(field(at + 12, 4), PORT.to_ne_bytes());
    }
    assert_eq!((b.first(), b.last(), b.len()), (7, 9, 3));
}

#[test]
fn refusals_alone_are_answered_and_the_last_ack_completes_the_rest() {
    let mut b = batch(10, &[Refusal, Refusal, Refusal, Ack]);
    let (p, seen) = read_all(&mut b, &[[error(11, -17), error(13, 0)].concat()]).unwrap();
    assert_eq!(p, Progress::Done);
    assert_eq!(
        seen,
        [
            (0, Ok(Outcome::Ok)),
            (1, Ok(Outcome::Refused(17))),
            (2, Ok(Outcome::Ok)),
            (3, Ok(Outcome::Ok))
        ]
    );
    assert_eq!(
        b.outcomes(),
        [Outcome::Ok, Outcome::Refused(17), Outcome::Ok, Outcome::Ok]
    );
}

#[test]
fn a_dump_then_a_get_hand_over_their_data_and_complete() {
    let mut b = batch(1, &[Dump, Reply]);
    let first = [data(1, b"a"), data(1, b"b")].concat();
    // An acknowledgement the GET did not ask for ends nothing; NOOP neither.
    let second = [
        done(1),
        message(NLMSG_NOOP, 2, PORT, &[]),
        error(2, 0),
        data(2, b"c"),
    ]
    .concat();
    let (p, seen) = read_all(&mut b, &[first, second]).unwrap();
    assert_eq!(p, Progress::Done);
    let body = |s: &[u8]| Err(s.to_vec());
    assert_eq!(
        seen,
        [
            (0, body(b"a")),
            (0, body(b"b")),
            (0, Ok(Outcome::Ok)),
            (1, body(b"c")),
            (1, Ok(Outcome::Ok))
        ]
    );
}

#[test]
fn stale_replies_are_skipped_and_progress_says_so() {
    let mut b = batch(10, &[Ack, Ack]);
    assert_eq!(b.read(&error(9, 0), |_| Ok(())).unwrap(), Progress::Stale);
    assert_eq!(b.read(&error(10, 0), |_| Ok(())).unwrap(), Progress::More);
    assert!(!b.is_complete());
    assert_eq!(b.outcomes(), [Outcome::Ok, Outcome::Unknown]);
    assert_eq!(b.read(&error(11, -2), |_| Ok(())).unwrap(), Progress::Done);
    assert_eq!(b.outcomes(), [Outcome::Ok, Outcome::Refused(2)]);
}

#[test]
fn duplicates_reorders_and_gaps_are_protocol_errors() {
    let protocol = |r: Result<(Progress, Seen)>| match r {
        Err(Error::Protocol(m)) => m,
        other => panic!("expected a protocol error, got {other:?}"),
    };
    let mut b = batch(10, &[Ack, Ack, Ack]);
    let m = protocol(read_all(&mut b, &[[error(10, 0), error(10, 0)].concat()]));
    assert_eq!(m, "a second reply to request 10, already complete");
    assert_eq!(b.blame(), Some(0));

    let mut b = batch(10, &[Refusal, Refusal, Ack]);
    let m = protocol(read_all(
        &mut b,
        &[[error(11, -17), error(10, -17)].concat()],
    ));
    assert_eq!(
        m,
        "a reply to request 10 after one to request 11: out of order"
    );

    let mut b = batch(10, &[Ack, Ack, Ack]);
    let m = protocol(read_all(&mut b, &[[error(10, 0), error(12, 0)].concat()]));
    assert_eq!(m, "no reply to request 11 before a reply to request 12");

    let mut b = batch(10, &[Ack]);
    let m = protocol(read_all(&mut b, &[done(10)]));
    assert_eq!(m, "NLMSG_DONE in reply to write 10: not an acknowledgement");
    let mut b = batch(10, &[Reply]);
    let m = protocol(read_all(&mut b, &[done(10)]));
    assert_eq!(m, "NLMSG_DONE in reply to request 10, which is not a dump");
    let mut b = batch(10, &[Refusal, Ack]);
    let m = protocol(read_all(&mut b, &[data(10, b"x")]));
    assert_eq!(
        m,
        "a reply of message type 32 to write 10: not an acknowledgement"
    );
    // After a dump's DONE, a part of it is a duplicate.
    let mut b = batch(10, &[Dump, Ack]);
    let m = protocol(read_all(&mut b, &[[done(10), data(10, b"x")].concat()]));
    assert_eq!(m, "a second reply to request 10, already complete");
}

#[test]
fn what_the_transport_refuses_is_refused_here() {
    let mut b = batch(10, &[Ack, Ack]);
    // Ahead of the batch, another port, a cut message.
    assert!(matches!(
        b.read(&error(12, 0), |_| Ok(())),
        Err(Error::Protocol(m)) if m == "reply with sequence number 12 to requests 10..=11"
    ));
    let foreign = message(NLMSG_ERROR, 10, PORT + 1, &0i32.to_ne_bytes());
    assert!(matches!(
        b.read(&foreign, |_| Ok(())),
        Err(Error::Protocol(_))
    ));
    assert!(matches!(
        b.read(&error(10, 0)[..18], |_| Ok(())),
        Err(Error::Decode(_))
    ));
    assert_eq!(b.blame(), None);
    // A reader's refusal of a data reply is the batch's error, blamed on
    // the request.
    let mut b = batch(10, &[Ack, Reply]);
    let e = b
        .read(&[error(10, 0), data(11, b"??")].concat(), |e| match e {
            Event::Data { .. } => Err(Error::Decode("no".into())),
            _ => Ok(()),
        })
        .unwrap_err();
    assert!(matches!(e, Error::Decode(m) if m == "no"));
    assert_eq!(b.blame(), Some(1));
}

#[test]
fn after_a_loss_refusals_before_the_furthest_reply_succeeded() {
    // Replies to 12.. were dropped: 10 and 11 were handled before 12 was.
    let mut b = batch(10, &[Refusal, Refusal, Refusal, Refusal, Ack]);
    b.read(&error(12, -17), |_| Ok(())).unwrap();
    assert_eq!(
        b.outcomes(),
        [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Refused(17),
            Outcome::Unknown,
            Outcome::Unknown
        ]
    );
}

#[test]
fn sequence_numbers_skip_0_and_a_run_never_wraps() {
    let mut s = Sequence::new();
    assert_eq!((s.reserve(1), s.reserve(3), s.reserve(1)), (1, 2, 5));
    s.set_last(u32::MAX - 2);
    assert_eq!(s.reserve(3), 1);
    s.set_last(u32::MAX - 1);
    assert_eq!((s.reserve(1), s.reserve(1)), (u32::MAX, 1));
    // A batch may start anywhere but 0: its window wraps with it.
    let mut b = batch(u32::MAX, &[Refusal, Ack]);
    assert_eq!(b.last(), 0);
    assert_eq!(b.read(&error(0, 0), |_| Ok(())).unwrap(), Progress::Done);
}

// ---------------------------------------------------------------------------
// The kernel's own replies (captured from Debian's 6.1 in the test VM).

fn fixture(name: &str) -> Vec<(bool, Vec<u8>)> {
    let path = format!("{}/tests/fixtures/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .map(|line| {
            let (mark, hex) = line.split_once(' ').unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (mark == ">", bytes)
        })
        .collect()
}

/// Replays a captured exchange through a batch of its one request: the
/// outcome and the message types of the data replies.
fn replay(name: &str) -> (Outcome, Vec<u16>) {
    let exchange = fixture(name);
    let request = &exchange[0].1;
    assert!(exchange[0].0, "{name} starts with its request");
    let u16_at = |at: usize| u16::from_ne_bytes([request[at], request[at + 1]]);
    let u32_at = |at: usize| u32::from_ne_bytes(request[at..at + 4].try_into().unwrap());
    let flags = u16_at(6);
    let expect = if flags & NLM_F_DUMP == NLM_F_DUMP {
        Dump
    } else if flags & NLM_F_ACK != 0 {
        Ack
    } else {
        Reply
    };
    let mut b = Batch::new(u32_at(12), u32_at(8));
    b.push(expect, |h, out| {
        h.message_type = u16_at(4);
        h.length = request.len() as u32;
        let at = out.len();
        out.extend_from_slice(request);
        netlink_packet_core::Emitable::emit(h, &mut out[at..at + 16]);
    });
    // The request as the batch writes it is the request the kernel took
    // (its length and payload are the encoder's).
    assert_eq!(b.datagram(), &request[..], "{name}");
    let mut kinds = Vec::new();
    let mut outcome = None;
    for (sent, bytes) in &exchange[1..] {
        assert!(!sent);
        b.read(bytes, |e| {
            match e {
                Event::Data { kind, .. } => kinds.push(kind),
                Event::Complete { outcome: o, .. } => outcome = Some(o),
            }
            Ok(())
        })
        .unwrap();
    }
    assert!(b.is_complete(), "{name}");
    (outcome.unwrap(), kinds)
}

#[test]
fn the_kernels_captured_replies_complete_their_requests() {
    let family = u16::from_ne_bytes([0x20, 0]);
    assert_eq!(replay("new_service"), (Outcome::Ok, vec![]));
    assert_eq!(
        replay("error_eexist"),
        (Outcome::Refused(libc::EEXIST), vec![])
    );
    assert_eq!(
        replay("get_service_esrch"),
        (Outcome::Refused(libc::ESRCH), vec![])
    );
    assert_eq!(replay("get_info"), (Outcome::Ok, vec![family]));
    assert_eq!(replay("get_service_doit"), (Outcome::Ok, vec![family]));
    assert_eq!(replay("get_dest_dump"), (Outcome::Ok, vec![family; 3]));
    assert_eq!(replay("get_dest_dump_missing"), (Outcome::Ok, vec![]));
    let (outcome, services) = replay("get_service_dump");
    assert_eq!(outcome, Outcome::Ok);
    assert!(!services.is_empty());
}

// ---------------------------------------------------------------------------
// Property: a model kernel.

/// What the model kernel does with each request: its expectation, and
/// whether it refuses it (with this errno) or, for a dump, how many parts.
#[derive(Debug, Clone)]
struct Case {
    first: u32,
    requests: Vec<(Expect, Option<i32>, usize)>,
    /// Where the replies are cut into datagrams.
    cuts: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    let request = (
        prop_oneof![Just(Refusal), Just(Ack), Just(Reply), Just(Dump)],
        prop::option::weighted(0.3, 1..200i32),
        0..4usize,
    );
    (
        prop_oneof![Just(1u32), Just(u32::MAX - 3), 1..u32::MAX - 100],
        prop::collection::vec(request, 1..20),
        prop::collection::vec(0..200usize, 0..6),
    )
        .prop_map(|(first, mut requests, cuts)| {
            // The last request asks for an answer, so the batch can end.
            if let Some(last) = requests.last_mut() {
                if last.0 == Refusal {
                    last.0 = Ack;
                }
            }
            Case {
                first,
                requests,
                cuts,
            }
        })
}

/// The kernel's replies, in order, each with its request's index.
fn replies(c: &Case) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, &(expect, refusal, parts)) in c.requests.iter().enumerate() {
        let seq = c.first.wrapping_add(i as u32);
        if let Some(errno) = refusal {
            out.push((i, error(seq, -errno)));
            continue;
        }
        match expect {
            Refusal => {}
            Ack => out.push((i, error(seq, 0))),
            Reply => out.push((i, data(seq, &[i as u8]))),
            Dump => {
                for p in 0..parts {
                    out.push((i, data(seq, &[i as u8, p as u8])));
                }
                out.push((i, done(seq)));
            }
        }
    }
    out
}

fn datagrams(c: &Case, replies: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = c.cuts.iter().map(|x| x % (replies.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(replies.len());
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts {
        if cut > at {
            out.push(replies[at..cut].concat());
            at = cut;
        }
    }
    out
}

fn expected(c: &Case) -> Vec<Outcome> {
    c.requests
        .iter()
        .map(|&(_, refusal, _)| refusal.map_or(Outcome::Ok, Outcome::Refused))
        .collect()
}

proptest! {
    #[test]
    fn every_request_gets_the_kernels_answer(c in case()) {
        let expects: Vec<Expect> = c.requests.iter().map(|r| r.0).collect();
        let mut b = batch(c.first, &expects);
        let replies: Vec<Vec<u8>> = replies(&c).into_iter().map(|r| r.1).collect();
        let (p, seen) = read_all(&mut b, &datagrams(&c, &replies)).unwrap();
        prop_assert_eq!(p, Progress::Done);
        prop_assert_eq!(b.outcomes(), expected(&c));
        // One completion per request, in order, each after its data.
        let completions: Vec<usize> = seen
            .iter()
            .filter(|(_, e)| e.is_ok())
            .map(|(i, _)| *i)
            .collect();
        prop_assert_eq!(completions, (0..c.requests.len()).collect::<Vec<_>>());
        let parts = seen.iter().filter(|(_, e)| e.is_err()).count();
        let want: usize = c.requests.iter().map(|&(e, r, n)| match (e, r) {
            (_, Some(_)) => 0,
            (Reply, None) => 1,
            (Dump, None) => n,
            _ => 0,
        }).sum();
        prop_assert_eq!(parts, want);
    }

    #[test]
    fn a_lost_reply_leaves_a_known_prefix_or_is_caught(c in case(), which in any::<prop::sample::Index>()) {
        let expects: Vec<Expect> = c.requests.iter().map(|r| r.0).collect();
        let all = replies(&c);
        let k = which.index(all.len());
        // Replies from `k` on are lost (the kernel's buffer filled).
        let kept: Vec<Vec<u8>> = all[..k].iter().map(|r| r.1.clone()).collect();
        let mut b = batch(c.first, &expects);
        read_all(&mut b, &datagrams(&c, &kept)).unwrap();
        prop_assert!(!b.is_complete());
        let want = expected(&c);
        let got = b.outcomes();
        let furthest = all[..k].last().map(|r| r.0);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Known outcomes are right; unknown ones are at or after the
            // first request whose reply was lost.
            if *g == Outcome::Unknown {
                prop_assert!(furthest.is_none_or(|f| i >= f), "{} unknown before {:?}", i, furthest);
            } else {
                prop_assert_eq!(g, w);
            }
        }
        // Only one reply is missing, not the rest: a later reply shows
        // the gap, unless the request skipped was a silent success.
        if k + 1 < all.len() {
            let mut gap: Vec<Vec<u8>> = all.iter().map(|r| r.1.clone()).collect();
            gap.remove(k);
            let mut b = batch(c.first, &expects);
            let r = read_all(&mut b, &[gap.concat()]);
            let (i, _) = all[k];
            let parts_left = all.iter().filter(|r| r.0 == i).count() > 1;
            let caught = matches!(r, Err(Error::Protocol(_)));
            // A dump missing one of several parts is indistinguishable
            // from a shorter dump, and a refusal of a request that asked
            // for no acknowledgement from a success: the kernel never
            // loses a reply before one it keeps.
            prop_assert!(caught || parts_left || expects[i] == Refusal, "{:?}", r);
        }
    }

    #[test]
    fn a_repeated_or_swapped_reply_is_caught(c in case(), which in any::<prop::sample::Index>()) {
        let expects: Vec<Expect> = c.requests.iter().map(|r| r.0).collect();
        let all = replies(&c);
        let k = which.index(all.len());
        // A final reply (not a dump's part) repeated.
        let (i, ref bytes) = all[k];
        let is_part = u16::from_ne_bytes([bytes[4], bytes[5]]) == KIND && expects[i] == Dump;
        if !is_part {
            let mut twice: Vec<Vec<u8>> = all.iter().map(|r| r.1.clone()).collect();
            twice.insert(k + 1, bytes.clone());
            let mut b = batch(c.first, &expects);
            let r = read_all(&mut b, &[twice.concat()]);
            // The repeat of the very last reply comes after the batch is
            // done: ignored.
            if k + 1 < all.len() {
                prop_assert!(matches!(r, Err(Error::Protocol(_))), "{:?}", r);
            } else {
                prop_assert!(r.is_ok());
            }
        }
        // Two replies of different requests swapped (not with the last
        // one: the batch is complete when it comes, and what follows in
        // the datagram is not read).
        if k + 2 < all.len() && all[k].0 != all[k + 1].0 {
            let mut swapped: Vec<Vec<u8>> = all.iter().map(|r| r.1.clone()).collect();
            swapped.swap(k, k + 1);
            let mut b = batch(c.first, &expects);
            let r = read_all(&mut b, &[swapped.concat()]);
            prop_assert!(matches!(r, Err(Error::Protocol(_))), "{:?}", r);
        }
    }
}
