//! Many writes in flight at once: requests pipelined in one `sendmsg`,
//! with a result for each.
//!
//! The kernel handles every request of a datagram in order before
//! `sendmsg` returns. A request sent without `NLM_F_ACK` that fails still
//! gets its error back, tagged with its sequence number; one that
//! succeeds gets nothing. So a batch asks for an acknowledgement only on
//! its last request: when that arrives, every request without an error
//! reply succeeded. This is what makes a 50,000-line restore about 17
//! times faster than one request per socket.
//!
//! At most [`MAX_IN_FLIGHT`] requests go in one datagram, so that their
//! replies, if all fail, fit the default receive buffer (212,992 bytes
//! hold about 277 error replies); the kernel applies every request even
//! when it has to drop replies, so a lost reply cannot be fixed by
//! sending again.

use netlink_packet_core::NLMSG_ERROR;

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::op::{Op, MAX_IN_FLIGHT};
use crate::transport::{self, Step};

impl Handle {
    /// Applies `ops` in order, pipelined, and returns one result per op.
    ///
    /// Each op runs whatever happened to the ones before it, as separate
    /// requests would. The outer error is for the transport (the socket
    /// failed, a reply was malformed, the kernel stopped answering):
    /// then the ops of the failed datagram have unknown fates, and the
    /// caller should read the table to learn them.
    ///
    /// If replies are lost because the receive buffer overflowed
    /// (ENOBUFS), the replies that did arrive still count: an op up to
    /// the last one answered gets its real result, and the ops after it,
    /// whose fate is unknown, get [`Error::ReplyLost`].
    ///
    /// ```no_run
    /// use ipvs_netlink::{Destination, Handle, Op, Service, ServiceId};
    ///
    /// # fn main() -> Result<(), ipvs_netlink::Error> {
    /// let mut ipvs = Handle::new()?;
    /// let vip = ServiceId::tcp("10.97.97.97:80".parse().unwrap());
    /// let mut ops = vec![Op::AddService(Service::new(vip, "rr"))];
    /// for pod in ["10.244.1.39:80", "10.244.1.40:80"] {
    ///     ops.push(Op::AddDestination(vip, Destination::new(pod.parse().unwrap())));
    /// }
    /// for (op, result) in ops.iter().zip(ipvs.apply(&ops)?) {
    ///     if let Err(e) = result {
    ///         eprintln!("{op:?}: {e}");
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn apply(&mut self, ops: &[Op]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(ops.len());
        for chunk in ops.chunks(MAX_IN_FLIGHT) {
            results.extend(self.apply_datagram(chunk)?);
        }
        Ok(results)
    }

    /// Sends `ops` in one datagram, the last one with `NLM_F_ACK`.
    fn apply_datagram(&mut self, ops: &[Op]) -> Result<Vec<Result<()>>> {
        let Some(last_op) = ops.last() else {
            return Ok(Vec::new());
        };
        let op = last_op.operation();
        let mut bytes = Vec::with_capacity(ops.len() * 160);
        // Consecutive, so that a reply's `seq - first` is its op's index.
        let first = self.main.next_seqs(ops.len());
        let last = first + (ops.len() as u32 - 1);
        for (i, o) in ops.iter().enumerate() {
            let flags = if i + 1 == ops.len() {
                netlink_packet_core::NLM_F_ACK
            } else {
                0
            };
            self.encode_op(o, flags, first + i as u32, &mut bytes);
        }
        self.main.send(&bytes).map_err(|e| Error::at(op, e))?;

        let mut results: Vec<Option<Result<()>>> = (0..ops.len()).map(|_| None).collect();
        // The furthest request a reply was read for.
        let mut furthest: Option<usize> = None;
        // The request whose reply failed to read, when one did.
        let mut blame: Option<usize> = None;
        let mut on_reply = |seq: u32, msg_type: u16, payload: &[u8]| {
            // The transport hands over replies to `first..=last` only.
            let index = seq.wrapping_sub(first) as usize;
            blame = Some(index);
            if msg_type != NLMSG_ERROR {
                return Err(transport::Error::Protocol(format!(
                    "unexpected message type {msg_type} in reply to a write"
                )));
            }
            let code = transport::error_code(payload)?;
            blame = None;
            results[index] = Some(if code < 0 {
                Err(Error::from_errno(
                    ops[index].operation(),
                    code.saturating_neg(),
                ))
            } else {
                Ok(())
            });
            furthest = Some(furthest.map_or(index, |f| f.max(index)));
            Ok(if seq == last {
                Step::Done
            } else {
                Step::Continue
            })
        };
        let outcome = match self.main.receive_keeping(first, last, &mut on_reply) {
            // The socket reports the overflow before the replies that did
            // fit, which are still queued: read them (the rest of the
            // queue goes with them).
            Err(transport::Error::Io(source)) if source.raw_os_error() == Some(libc::ENOBUFS) => {
                // A malformed late reply leaves its request's fate unknown.
                let _ = self.main.read_queued(first, last, &mut on_reply);
                Err(())
            }
            Ok(()) => Ok(()),
            Err(e) => {
                let op = blame.map_or(op, |i| ops[i].operation());
                return Err(Error::at(op, e));
            }
        };
        match outcome {
            Ok(()) => Ok(results
                .into_iter()
                // Everything before the acknowledged last request that
                // got no error reply succeeded.
                .map(|r| r.unwrap_or(Ok(())))
                .collect()),
            // The kernel answers the requests in order and, once the
            // buffer is full, drops every later reply until it is read.
            // So a request before the furthest one answered that got no
            // error reply succeeded; after it, the fate is unknown.
            Err(()) => Ok(results
                .into_iter()
                .zip(ops)
                .enumerate()
                .map(|(i, (r, o))| {
                    r.unwrap_or(if furthest.is_some_and(|f| i < f) {
                        Ok(())
                    } else {
                        Err(Error::ReplyLost { op: o.operation() })
                    })
                })
                .collect()),
        }
    }
}
