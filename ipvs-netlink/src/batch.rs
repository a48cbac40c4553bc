//! The pure state machine of a netlink batch: several requests sent in
//! one datagram, and the replies read back into one outcome per request.
//! It owns no socket and reads no clock (as quinn-proto is to quinn): a
//! driver sends [`Batch::datagram`], hands every datagram it receives to
//! [`Batch::read`], and stops when it says [`Progress::Done`], or when
//! its own clock or socket gives up ([`Batch::outcomes`] then says what
//! is known). The drivers: the blocking [`crate::Handle`] (its
//! [`crate::Handle::apply`]), the async handle (every request, feature
//! `tokio`), and ipvs-k8s's rtnetlink and ctnetlink writes.
//!
//! The machine works on raw netlink messages, whatever the protocol
//! (generic netlink for IPVS, `NETLINK_ROUTE`, `NETLINK_NETFILTER`): a
//! request is written by a caller's encoder into the datagram, and a
//! data reply is handed over as its message type and payload, borrowed
//! from the datagram, for the caller to decode. (Being generic over a
//! payload type would make every reply a typed value: the IPVS listings
//! read destinations straight from the bytes, and a batch of route
//! messages and one of IPVS messages would be two machines.)
//!
//! The rules, which the kernel keeps: it handles the requests of a
//! datagram in order and answers them in that order.
//!
//! - A request sent without `NLM_F_ACK` ([`Expect::Refusal`]) is answered
//!   only when refused; it succeeded when a later request of the batch is
//!   answered and it was not refused.
//! - A reply to a request after a reply to a later one is out of order; a
//!   second final reply to a request is a duplicate; a request that asked
//!   for an answer ([`Expect::Ack`], [`Expect::Reply`], [`Expect::Dump`])
//!   and got none when a later one is answered is missing its reply. All
//!   three are [`Error::Protocol`]: the exchange cannot be trusted.
//! - A reply with another port, or to a request not in the batch, is an
//!   error; one to an earlier request (a request that timed out) is
//!   skipped ([`transport::read_datagram`]).
//!
//! ```
//! use ipvs_netlink::batch::{Batch, Event, Outcome};
//! use ipvs_netlink::netlink_packet_core::NLMSG_ERROR;
//! use ipvs_netlink::transport::{Expect, Progress};
//!
//! // Three writes from port 42, sequence numbers 7, 8, 9: only the last
//! // asks for an acknowledgement.
//! let mut batch = Batch::new(42, 7);
//! for expect in [Expect::Refusal, Expect::Refusal, Expect::Ack] {
//!     batch.push(expect, |header, out| {
//!         header.message_type = 0x20; // the protocol's message type
//!         let mut bytes = vec![0u8; 16];
//!         header.length = 16;
//!         use ipvs_netlink::netlink_packet_core::Emitable;
//!         header.emit(&mut bytes);
//!         out.extend_from_slice(&bytes);
//!     });
//! }
//! assert_eq!(batch.datagram().len(), 48);
//! // The kernel refuses request 8 (EEXIST) and acknowledges 9.
//! let reply = |seq: u32, code: i32| {
//!     let mut m = vec![0u8; 20];
//!     m[..4].copy_from_slice(&20u32.to_ne_bytes());
//!     m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
//!     m[8..12].copy_from_slice(&seq.to_ne_bytes());
//!     m[12..16].copy_from_slice(&42u32.to_ne_bytes());
//!     m[16..20].copy_from_slice(&code.to_ne_bytes());
//!     m
//! };
//! let datagram = [reply(8, -17), reply(9, 0)].concat();
//! let mut events = Vec::new();
//! let progress = batch.read(&datagram, |e| {
//!     if let Event::Complete { index, outcome } = e {
//!         events.push((index, outcome));
//!     }
//!     Ok(())
//! })?;
//! assert_eq!(progress, Progress::Done);
//! assert_eq!(
//!     events,
//!     [(0, Outcome::Ok), (1, Outcome::Refused(17)), (2, Outcome::Ok)]
//! );
//! # Ok::<(), ipvs_netlink::transport::Error>(())
//! ```

use netlink_packet_core::{
    NetlinkHeader, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_REQUEST,
};

use crate::transport::{self, error_code, Error, Expect, Progress, Result, Step};

/// Re-exported from [`crate::transport`], where the blocking loop uses them too.
pub use crate::transport::{emit, Sequence};

/// What became of one request of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Acknowledged, answered, its dump done, or (sent without
    /// `NLM_F_ACK`) not refused before a later request was answered.
    Ok,
    /// Refused by the kernel with this errno (positive).
    Refused(i32),
    /// No reply says: the exchange stopped before it was answered (the
    /// driver's timeout, a socket error, replies lost to `ENOBUFS`).
    Unknown,
}

/// What a datagram told about one request, handed to the reader of
/// [`Batch::read`] in the order of the replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A data message (a dump part, the reply of a GET) answering the
    /// request at `index`: its message type and payload (after the
    /// `nlmsghdr`), for the protocol to decode.
    Data {
        /// The request's index in the batch.
        index: usize,
        /// The message type.
        kind: u16,
        /// The payload.
        payload: &'a [u8],
    },
    /// The request at `index` is complete.
    Complete {
        /// The request's index in the batch.
        index: usize,
        /// [`Outcome::Ok`] or [`Outcome::Refused`].
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    expect: Expect,
    outcome: Option<Outcome>,
}

/// A batch of requests in one datagram and the state of their replies
/// (see the module documentation).
#[derive(Debug, Clone)]
pub struct Batch {
    port: u32,
    first: u32,
    bytes: Vec<u8>,
    slots: Vec<Slot>,
    /// How many requests are complete.
    complete: usize,
    /// The furthest request a reply was read for.
    furthest: Option<usize>,
    /// The request whose reply was being read when it failed.
    blame: Option<usize>,
}

impl Batch {
    /// An empty batch of requests from netlink port `port` numbered from
    /// `first` (reserve them with [`Sequence::reserve`]: one per request
    /// pushed).
    pub fn new(port: u32, first: u32) -> Self {
        Batch {
            port,
            first,
            bytes: Vec::new(),
            slots: Vec::new(),
            complete: 0,
            furthest: None,
            blame: None,
        }
    }

    /// Appends a request that ends as `expect` says; `encode` writes it
    /// as one netlink message at the end of the datagram, given its
    /// header: the sequence number, the port and the flags
    /// (`NLM_F_REQUEST` and [`Expect::flags`]) are set, and the encoder
    /// sets the message type, may add flags, and writes the length. Its
    /// sequence number.
    pub fn push(
        &mut self,
        expect: Expect,
        encode: impl FnOnce(&mut NetlinkHeader, &mut Vec<u8>),
    ) -> u32 {
        let seq = self.first.wrapping_add(self.slots.len() as u32);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | expect.flags();
        header.sequence_number = seq;
        header.port_number = self.port;
        // Every message starts on 4 bytes.
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        encode(&mut header, &mut self.bytes);
        self.slots.push(Slot {
            expect,
            outcome: None,
        });
        seq
    }

    /// Appends a message that is no request of the batch: the kernel
    /// never answers it, it has no outcome and takes no place among the
    /// requests (nfnetlink's `NFNL_MSG_BATCH_END`, which closes a
    /// transaction and is sent without `NLM_F_ACK`). `encode` writes it
    /// as [`Batch::push`]'s does; its header carries the port,
    /// `NLM_F_REQUEST` and the sequence number the next request would
    /// take, so push it last.
    pub fn push_silent(&mut self, encode: impl FnOnce(&mut NetlinkHeader, &mut Vec<u8>)) {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        header.sequence_number = self.first.wrapping_add(self.slots.len() as u32);
        header.port_number = self.port;
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        encode(&mut header, &mut self.bytes);
    }

    /// The datagram to send: every request pushed.
    pub fn datagram(&self) -> &[u8] {
        &self.bytes
    }

    /// How many requests the batch holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the batch holds no request.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The sequence number of the first request.
    pub fn first(&self) -> u32 {
        self.first
    }

    /// The sequence number of the last request.
    pub fn last(&self) -> u32 {
        self.first
            .wrapping_add(self.slots.len().saturating_sub(1) as u32)
    }

    /// Whether every request is complete.
    pub fn is_complete(&self) -> bool {
        self.complete == self.slots.len()
    }

    /// The request whose reply was being read when [`Batch::read`]
    /// failed, if the failure was in a reply to one (not in the framing).
    pub fn blame(&self) -> Option<usize> {
        self.blame
    }

    /// What is known of each request, in order. After the exchange
    /// stopped early, a request without a reply is [`Outcome::Ok`] if it
    /// asked for no acknowledgement ([`Expect::Refusal`]) and a later
    /// request was answered (the kernel answers in order, and drops
    /// replies only once its buffer is full, never one before a reply it
    /// kept), else [`Outcome::Unknown`].
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| match s.outcome {
                Some(o) => o,
                None if s.expect == Expect::Refusal && self.furthest.is_some_and(|f| i < f) => {
                    Outcome::Ok
                }
                None => Outcome::Unknown,
            })
            .collect()
    }

    /// Reads one received datagram: every reply to a request of the
    /// batch goes to `on_event` (which may refuse it, say when a data
    /// reply does not decode), until the batch is complete. What the
    /// datagram held after that is ignored.
    pub fn read(
        &mut self,
        datagram: &[u8],
        mut on_event: impl FnMut(Event<'_>) -> Result<()>,
    ) -> Result<Progress> {
        if self.is_empty() {
            return Ok(Progress::Done);
        }
        let (port, first, last) = (self.port, self.first, self.last());
        self.blame = None;
        transport::read_datagram(datagram, port, first, last, |seq, kind, payload| {
            self.step(seq, kind, payload, &mut on_event)
        })
    }

    fn step(
        &mut self,
        seq: u32,
        kind: u16,
        payload: &[u8],
        on_event: &mut impl FnMut(Event<'_>) -> Result<()>,
    ) -> Result<Step> {
        // `read_datagram` hands over replies to `first..=last` only.
        let index = seq.wrapping_sub(self.first) as usize;
        if kind == NLMSG_NOOP {
            return Ok(self.step_result());
        }
        self.blame = Some(index);
        let slot = self.slots[index];
        if let Some(f) = self.furthest.filter(|&f| f > index) {
            return Err(Error::Protocol(format!(
                "a reply to request {seq} after one to request {}: out of order",
                self.first.wrapping_add(f as u32)
            )));
        }
        if slot.outcome.is_some() {
            return Err(Error::Protocol(format!(
                "a second reply to request {seq}, already complete"
            )));
        }
        // The kernel has handled every request before this one.
        for before in self.furthest.map_or(0, |f| f + 1)..index {
            let earlier = self.slots[before];
            if earlier.outcome.is_some() {
                continue;
            }
            if earlier.expect != Expect::Refusal {
                return Err(Error::Protocol(format!(
                    "no reply to request {} before a reply to request {seq}",
                    self.first.wrapping_add(before as u32)
                )));
            }
            self.complete(before, Outcome::Ok, on_event)?;
        }
        self.furthest = Some(index);
        match kind {
            NLMSG_ERROR => {
                let code = error_code(payload)?;
                if code < 0 {
                    self.complete(index, Outcome::Refused(code.saturating_neg()), on_event)?;
                } else if matches!(slot.expect, Expect::Ack | Expect::Refusal) {
                    self.complete(index, Outcome::Ok, on_event)?;
                }
                // An acknowledgement a GET or a dump did not ask for ends
                // nothing.
            }
            NLMSG_DONE => {
                let code = payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, i32::from_ne_bytes);
                if code < 0 {
                    self.complete(index, Outcome::Refused(code.saturating_neg()), on_event)?;
                } else if slot.expect == Expect::Dump {
                    self.complete(index, Outcome::Ok, on_event)?;
                } else if slot.expect == Expect::Reply {
                    return Err(Error::Protocol(format!(
                        "NLMSG_DONE in reply to request {seq}, which is not a dump"
                    )));
                } else {
                    return Err(Error::Protocol(format!(
                        "NLMSG_DONE in reply to write {seq}: not an acknowledgement"
                    )));
                }
            }
            NLMSG_OVERRUN => return Err(Error::Protocol("NLMSG_OVERRUN".into())),
            kind => match slot.expect {
                Expect::Ack | Expect::Refusal => {
                    return Err(Error::Protocol(format!(
                        "a reply of message type {kind} to write {seq}: not an acknowledgement"
                    )))
                }
                Expect::Reply => {
                    on_event(Event::Data {
                        index,
                        kind,
                        payload,
                    })?;
                    self.complete(index, Outcome::Ok, on_event)?;
                }
                Expect::Dump => on_event(Event::Data {
                    index,
                    kind,
                    payload,
                })?,
            },
        }
        self.blame = None;
        Ok(self.step_result())
    }

    fn complete(
        &mut self,
        index: usize,
        outcome: Outcome,
        on_event: &mut impl FnMut(Event<'_>) -> Result<()>,
    ) -> Result<()> {
        self.slots[index].outcome = Some(outcome);
        self.complete += 1;
        on_event(Event::Complete { index, outcome })
    }

    fn step_result(&self) -> Step {
        if self.is_complete() {
            Step::Done
        } else {
            Step::Continue
        }
    }
}

#[cfg(test)]
mod tests;
