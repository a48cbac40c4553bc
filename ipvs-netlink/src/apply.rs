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

use netlink_packet_core::NetlinkHeader;

use crate::batch::{Batch, Event, Outcome};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::op::{Op, MAX_IN_FLIGHT};
use crate::request::Request;
use crate::transport::{self, Expect, Transport};

/// The blocking driver of the batch machine, for any netlink protocol.
impl Transport {
    /// Sends `batch`'s datagram and reads its replies into it
    /// ([`Batch::read`], `on_event` getting each reply) until it is
    /// complete. The timeout runs from the last datagram that held a
    /// reply to it. After `ENOBUFS` (returned as [`transport::Error::Io`]) the
    /// replies that did arrive are read without waiting, so that
    /// [`Batch::outcomes`] says what became of each request; so they are
    /// after any other error, as far as the replies read tell.
    pub fn exchange_batch(
        &mut self,
        batch: &mut Batch,
        mut on_event: impl FnMut(Event<'_>) -> transport::Result<()>,
    ) -> transport::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.send(batch.datagram())?;
        match self.each_datagram(false, |bytes| batch.read(bytes, &mut on_event)) {
            // The socket reports the overflow before the replies that did
            // fit, which are still queued: read them (the rest of the
            // queue goes with them). A malformed late reply leaves its
            // request's fate unknown.
            Err(transport::Error::Io(source)) if source.raw_os_error() == Some(libc::ENOBUFS) => {
                let _ = self.each_queued(|bytes| batch.read(bytes, &mut on_event));
                Err(transport::Error::Io(source))
            }
            other => other,
        }
    }
}

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
        let first = self.main.next_seqs(ops.len());
        let mut batch = op_batch(ops, self.family_id(), self.main.port(), first);
        let exchanged = self.main.exchange_batch(&mut batch, |_| Ok(()));
        finish(ops, &batch, exchanged).map_err(|e| {
            let op = batch.blame().map_or(last_op, |i| &ops[i]);
            Error::at(op.operation(), e)
        })
    }
}

/// The batch of `ops` (at most [`MAX_IN_FLIGHT`]) for the IPVS family
/// `family_id`, from `port`, numbered from `first`: every request but the
/// last without `NLM_F_ACK` ([`Expect::Refusal`]), so that the kernel
/// answers only the refusals and the last one.
pub(crate) fn op_batch(ops: &[Op], family_id: u16, port: u32, first: u32) -> Batch {
    let mut batch = Batch::new(port, first);
    for (i, op) in ops.iter().enumerate() {
        let expect = if i + 1 == ops.len() {
            Expect::Ack
        } else {
            Expect::Refusal
        };
        batch.push(expect, |header: &mut NetlinkHeader, out| {
            header.message_type = family_id;
            Request::Op(op).emit(header, out);
        });
    }
    batch
}

/// The result of each op of `batch` once its exchange `exchanged`
/// ended: the outer error for the transport's failure, except replies
/// lost to `ENOBUFS`, whose ops get [`Error::ReplyLost`] while those
/// answered keep their real result.
pub(crate) fn finish(
    ops: &[Op],
    batch: &Batch,
    exchanged: transport::Result<()>,
) -> transport::Result<Vec<Result<()>>> {
    match exchanged {
        Ok(()) => {}
        Err(transport::Error::Io(source)) if source.raw_os_error() == Some(libc::ENOBUFS) => {}
        Err(e) => return Err(e),
    }
    Ok(batch
        .outcomes()
        .into_iter()
        .zip(ops)
        .map(|(outcome, op)| match outcome {
            Outcome::Ok => Ok(()),
            Outcome::Refused(errno) => Err(Error::from_errno(op.operation(), errno)),
            Outcome::Unknown => Err(Error::ReplyLost { op: op.operation() }),
        })
        .collect())
}
