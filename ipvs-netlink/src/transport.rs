//! One blocking netlink request loop, for any netlink protocol.
//!
//! [`Transport`] owns a netlink socket bound to a port of its own and
//! connected to the kernel, and does what every request/reply exchange
//! needs whatever the protocol (generic netlink for IPVS, `NETLINK_ROUTE`
//! for rtnetlink, ...):
//!
//! - a sequence number per request, skipping 0, and on every reply a
//!   check of its port and sequence number: a reply to an earlier request
//!   (one that timed out) is skipped, one to a request not sent yet or
//!   addressed to another port is an error, never guessed at;
//! - several requests pipelined in one datagram, each reply handed over
//!   with the sequence number that says which request it answers;
//! - the control messages (`NLMSG_ERROR`, `NLMSG_DONE`, `NLMSG_NOOP`,
//!   `NLMSG_OVERRUN`) read by one set of rules ([`reply_step`]);
//! - a datagram larger than the length offered reported as truncated,
//!   never cut silently;
//! - a receive timeout that runs from the last reply that was not
//!   skipped, so a lost reply is an error, never a hang, and stale
//!   replies alone cannot keep an exchange alive;
//! - after `ENOBUFS` (the kernel dropped replies), the queue drained, or
//!   left for [`Transport::read_queued`] to read what did arrive.
//!
//! The encoding of requests and the parsing of replies belong to the
//! protocol: a request is bytes (see [`Transport::append`] for a typed
//! message), and a reply is handed over as its sequence number, message
//! type and payload, borrowed from the receive buffer. Errors carry no
//! operation; the protocol's client names what it was doing.
//!
//! The reading rules are pure functions ([`read_datagram`],
//! [`reply_step`]), testable with byte vectors and no socket:
//!
//! ```
//! use ipvs_netlink::netlink_packet_core::NLMSG_ERROR;
//! use ipvs_netlink::transport::{read_datagram, Progress, Step};
//!
//! // An acknowledgement (error code 0) of request 7, sent from port 42.
//! let mut ack = vec![0u8; 36];
//! ack[..4].copy_from_slice(&36u32.to_ne_bytes());
//! ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
//! ack[8..12].copy_from_slice(&7u32.to_ne_bytes());
//! ack[12..16].copy_from_slice(&42u32.to_ne_bytes());
//! let answered = |_seq: u32, _kind: u16, _payload: &[u8]| Ok(Step::Done);
//! assert_eq!(read_datagram(&ack, 42, 7, 7, answered).unwrap(), Progress::Done);
//! // To request 8 it is a late reply to an earlier request: skipped.
//! assert_eq!(read_datagram(&ack, 42, 8, 8, answered).unwrap(), Progress::Stale);
//! // To request 6 it answers a request not sent yet: an error.
//! assert!(read_datagram(&ack, 42, 6, 6, answered).is_err());
//! ```

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkSerializable, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP,
    NLMSG_OVERRUN, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};

use netlink_sys::Socket;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// The length of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// At most this many queued datagrams are discarded after `ENOBUFS` (a
/// bound in case the kernel keeps sending).
const DRAIN_LIMIT: usize = 4096;

/// Why an exchange failed. It names no operation: the protocol's client
/// does.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused the request with this errno (positive).
    Kernel(i32),
    /// The socket failed.
    Io(io::Error),
    /// No reply within the receive timeout.
    Timeout(Duration),
    /// A reply that does not read (cut short, truncated, malformed).
    Decode(String),
    /// A reply that breaks the protocol (a sequence number not sent, a
    /// foreign port, an unexpected message).
    Protocol(String),
}

impl Error {
    /// The errno: the kernel's refusal, or the socket's error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel(errno) => Some(*errno),
            Error::Io(source) => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Kernel(errno) => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
            Error::Io(source) => write!(f, "{source}"),
            Error::Timeout(after) => write!(f, "no reply from the kernel within {after:?}"),
            Error::Decode(message) => write!(f, "undecodable reply: {message}"),
            Error::Protocol(message) => write!(f, "netlink protocol error: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(source) => Some(source),
            _ => None,
        }
    }
}

/// The result type of the transport.
pub type Result<T> = std::result::Result<T, Error>;

/// Which way a traced datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent to the kernel.
    Sent,
    /// Received from the kernel.
    Received,
}

type Tracer = Box<dyn FnMut(Direction, &[u8]) + Send>;

/// What ends the exchange of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A write with `NLM_F_ACK`: the acknowledgement.
    Ack,
    /// A doit GET: its one reply message.
    Reply,
    /// A dump: `NLMSG_DONE`.
    Dump,
    /// A write without `NLM_F_ACK`, in a batch ([`crate::batch`]): the
    /// kernel answers it only with a refusal, and it succeeded when a
    /// later request of the batch is answered. Alone, it ends as
    /// [`Expect::Ack`] would (on a reply the kernel was not asked for).
    Refusal,
}

impl Expect {
    /// The request flags that ask for this ending.
    pub fn flags(self) -> u16 {
        match self {
            Expect::Ack => NLM_F_ACK,
            Expect::Reply => 0,
            Expect::Dump => NLM_F_DUMP,
            Expect::Refusal => 0,
        }
    }
}

/// What a reader says after a reply to a request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More is to come.
    Continue,
    /// The exchange is complete.
    Done,
}

/// What one datagram did for an exchange ([`read_datagram`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Only late replies to earlier requests: nothing for this exchange.
    Stale,
    /// Replies to the requests in flight; more is to come.
    More,
    /// A reply completed the exchange.
    Done,
}

/// Hands every netlink message of the datagram `bytes` addressed to
/// `port` and answering one of the requests `first..=last` (wrapping) to
/// `f` (sequence number, message type, payload after the `nlmsghdr`),
/// until `f` says [`Step::Done`].
///
/// A reply behind `first` (a late reply to an earlier request) is
/// skipped; one ahead of `last` or addressed to another port is
/// [`Error::Protocol`]; a message that does not frame is
/// [`Error::Decode`].
pub fn read_datagram(
    bytes: &[u8],
    port: u32,
    first: u32,
    last: u32,
    mut f: impl FnMut(u32, u16, &[u8]) -> Result<Step>,
) -> Result<Progress> {
    let mut progress = Progress::Stale;
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let nl = NetlinkBuffer::new_checked(rest).map_err(|e| Error::Decode(e.to_string()))?;
        let len = nl.length() as usize;
        let (seq, reply_port, kind) = (nl.sequence_number(), nl.port_number(), nl.message_type());
        // `new_checked` proved HEADER_LEN <= len <= rest.len().
        let payload = &rest[HEADER_LEN..len];
        offset += (len + 3) & !3;
        if reply_port != port {
            return Err(Error::Protocol(format!(
                "reply addressed to port {reply_port} instead of {port}"
            )));
        }
        if seq.wrapping_sub(first) > last.wrapping_sub(first) {
            // Behind `first` (wrapping distance): a late reply.
            if (first.wrapping_sub(seq) as i32) > 0 {
                continue;
            }
            return Err(Error::Protocol(if first == last {
                format!("reply with sequence number {seq} to request {first}")
            } else {
                format!("reply with sequence number {seq} to requests {first}..={last}")
            }));
        }
        progress = Progress::More;
        if f(seq, kind, payload)? == Step::Done {
            return Ok(Progress::Done);
        }
    }
    Ok(progress)
}

/// The rules of one request's replies: what the message of `kind` with
/// `payload` does to an exchange that ends as `expect` says. Control
/// messages are read here (an error code is [`Error::Kernel`]); any other
/// message is handed to `on_data`, and ends a [`Expect::Reply`].
pub fn reply_step(
    expect: Expect,
    kind: u16,
    payload: &[u8],
    on_data: impl FnOnce(u16, &[u8]) -> Result<()>,
) -> Result<Step> {
    match kind {
        NLMSG_NOOP => Ok(Step::Continue),
        NLMSG_ERROR => {
            let code = error_code(payload)?;
            if code < 0 {
                return Err(Error::Kernel(code.saturating_neg()));
            }
            // An acknowledgement not asked for does not end the exchange.
            Ok(if matches!(expect, Expect::Ack | Expect::Refusal) {
                Step::Done
            } else {
                Step::Continue
            })
        }
        NLMSG_DONE => {
            let code = read_i32(payload).unwrap_or(0);
            if code < 0 {
                return Err(Error::Kernel(code.saturating_neg()));
            }
            if expect == Expect::Dump {
                return Ok(Step::Done);
            }
            Err(Error::Protocol(
                "NLMSG_DONE in reply to a request that is not a dump".into(),
            ))
        }
        NLMSG_OVERRUN => Err(Error::Protocol("NLMSG_OVERRUN".into())),
        kind => {
            on_data(kind, payload)?;
            Ok(if expect == Expect::Reply {
                Step::Done
            } else {
                Step::Continue
            })
        }
    }
}

/// The error code of an `NLMSG_ERROR` payload: 0 for an acknowledgement,
/// a negative errno for a refusal.
pub fn error_code(payload: &[u8]) -> Result<i32> {
    read_i32(payload).ok_or_else(|| Error::Decode("NLMSG_ERROR shorter than its error code".into()))
}

fn read_i32(payload: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?))
}

/// Sequence numbers for requests: never 0, and the run of one batch
/// never wraps, so that a reply's `seq - first` is its request's index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequence {
    last: u32,
}

impl Sequence {
    /// A sequence whose next number is 1.
    pub fn new() -> Self {
        Sequence::default()
    }

    /// Reserves `n` consecutive numbers (at least one); the first.
    pub fn reserve(&mut self, n: usize) -> u32 {
        let span = u32::try_from(n.max(1) - 1).unwrap_or(u32::MAX - 1);
        let mut first = self.last.wrapping_add(1);
        if first == 0 || first.checked_add(span).is_none() {
            first = 1;
        }
        self.last = first + span;
        first
    }

    /// The last number reserved (0 before the first).
    pub fn last(&self) -> u32 {
        self.last
    }

    /// Makes `last` the last number reserved.
    pub fn set_last(&mut self, last: u32) {
        self.last = last;
    }
}

/// Appends `payload` as one netlink message with `header` (whose length
/// is written from the message) to `out`: an encoder for
/// [`crate::batch::Batch::push`] of any typed netlink payload.
pub fn emit<T>(out: &mut Vec<u8>, header: &NetlinkHeader, payload: T)
where
    T: netlink_packet_core::NetlinkSerializable + std::fmt::Debug,
{
    let mut nl = netlink_packet_core::NetlinkMessage::new(
        *header,
        netlink_packet_core::NetlinkPayload::InnerMessage(payload),
    );
    nl.finalize();
    let at = out.len();
    out.resize(at + nl.buffer_len(), 0);
    nl.serialize(&mut out[at..]);
}

/// Opens a socket of netlink `protocol` (such as
/// `netlink_sys::protocols::NETLINK_GENERIC`) bound to a port of its own
/// and connected to the kernel; the socket and its port.
pub fn open_socket(protocol: isize) -> io::Result<(Socket, u32)> {
    let mut socket = Socket::new(protocol)?;
    let local = socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    Ok((socket, local.port_number()))
}

/// Raises the socket's receive and send buffers (the kernel's
/// `sk_rcvbuf` and `sk_sndbuf`, what `SO_RCVBUF` and `SO_SNDBUF` report)
/// to `receive` and `send` bytes when they are smaller: past
/// `net.core.rmem_max`/`wmem_max` with `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`
/// (which need `CAP_NET_ADMIN`), else as far as `SO_RCVBUF`/`SO_SNDBUF`
/// go. Best effort.
pub fn raise_buffers(socket: &impl AsFd, receive: usize, send: usize) {
    // The kernel doubles what it is given.
    if nix::sys::socket::getsockopt(socket, sockopt::RcvBuf).is_ok_and(|now| now < receive) {
        let ask = receive / 2;
        if setsockopt(socket, sockopt::RcvBufForce, &ask).is_err() {
            let _ = setsockopt(socket, sockopt::RcvBuf, &ask);
        }
    }
    if nix::sys::socket::getsockopt(socket, sockopt::SndBuf).is_ok_and(|now| now < send) {
        let ask = send / 2;
        if setsockopt(socket, sockopt::SndBufForce, &ask).is_err() {
            let _ = setsockopt(socket, sockopt::SndBuf, &ask);
        }
    }
}

/// A blocking netlink socket and its request loop (see the module
/// documentation). One exchange at a time; `Send`.
///
/// ```no_run
/// use ipvs_netlink::netlink_packet_core::NLM_F_DUMP;
/// use ipvs_netlink::transport::{Expect, Transport};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), ipvs_netlink::transport::Error> {
/// // NETLINK_ROUTE (0): list the addresses (RTM_GETADDR, 22).
/// let mut rtnl = Transport::open(0, 64 * 1024, Duration::from_secs(10))?;
/// let seq = rtnl.next_seq();
/// let mut request = vec![0u8; 24];
/// request[..4].copy_from_slice(&24u32.to_ne_bytes());
/// request[4..6].copy_from_slice(&22u16.to_ne_bytes());
/// request[6..8].copy_from_slice(&(1 | NLM_F_DUMP).to_ne_bytes());
/// request[8..12].copy_from_slice(&seq.to_ne_bytes());
/// request[12..16].copy_from_slice(&rtnl.port().to_ne_bytes());
/// rtnl.send(&request)?;
/// let mut count = 0;
/// rtnl.receive_replies(seq, Expect::Dump, |_kind, _payload| {
///     count += 1;
///     Ok(())
/// })?;
/// println!("{count} addresses");
/// # Ok(())
/// # }
/// ```
pub struct Transport {
    socket: Socket,
    port: u32,
    /// How many bytes each receive offers: the kernel sizes a dump's
    /// datagrams after the largest length a reader has offered on the
    /// socket, so this is a choice, not only a bound.
    recv_len: usize,
    seq: Sequence,
    timeout: Duration,
    buf: Vec<u8>,
    tracer: Option<Tracer>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("port", &self.port)
            .field("recv_len", &self.recv_len)
            .field("seq", &self.seq)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Opens a socket of netlink `protocol` in the caller's network
    /// namespace (see [`open_socket`]) whose receives offer `recv_len`
    /// bytes, with a receive timeout of `timeout`.
    pub fn open(protocol: isize, recv_len: usize, timeout: Duration) -> Result<Self> {
        let (socket, port) = open_socket(protocol).map_err(Error::Io)?;
        Self::from_socket(socket, port, recv_len, timeout)
    }

    /// A transport over `socket`, which must behave as a connected
    /// datagram socket to the kernel (a test may put a fake kernel on the
    /// other end of a `socketpair`); `port` is the netlink port the
    /// replies are addressed to.
    pub fn from_socket(
        socket: Socket,
        port: u32,
        recv_len: usize,
        timeout: Duration,
    ) -> Result<Self> {
        let mut transport = Transport {
            socket,
            port,
            recv_len,
            seq: Sequence::new(),
            timeout,
            buf: vec![0; recv_len],
            tracer: None,
        };
        transport.set_timeout(timeout)?;
        Ok(transport)
    }

    /// The netlink port replies are addressed to.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The receive timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the receive timeout.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        // SO_RCVTIMEO of zero means no timeout at all: round a timeout
        // below one microsecond up to one.
        let sock_timeout = timeout.max(Duration::from_micros(1));
        let tv = TimeVal::new(
            sock_timeout.as_secs().try_into().unwrap_or(i64::MAX),
            i64::from(sock_timeout.subsec_micros()),
        );
        setsockopt(&self.socket, sockopt::ReceiveTimeout, &tv)
            .map_err(|e| Error::Io(io::Error::from(e)))?;
        self.timeout = timeout;
        Ok(())
    }

    /// Calls `tracer` with every datagram sent and received (for debugging
    /// and for capturing fixtures).
    pub fn set_tracer(&mut self, tracer: impl FnMut(Direction, &[u8]) + Send + 'static) {
        self.tracer = Some(Box::new(tracer));
    }

    /// Exchanges the tracers of two transports.
    pub(crate) fn swap_tracer(&mut self, other: &mut Transport) {
        std::mem::swap(&mut self.tracer, &mut other.tracer);
    }

    /// The sequence number of the next request (never 0).
    pub fn next_seq(&mut self) -> u32 {
        self.next_seqs(1)
    }

    /// Reserves `n` consecutive sequence numbers (at least one) for the
    /// requests of one datagram; the first. None is 0 and they do not
    /// wrap, so that a reply's `seq - first` is its request's index.
    pub fn next_seqs(&mut self, n: usize) -> u32 {
        self.seq.reserve(n)
    }

    /// Appends `payload` as a request (`NLM_F_REQUEST` and `flags`) of
    /// sequence number `seq` from this transport's port to `out`.
    pub fn append<T>(&self, out: &mut Vec<u8>, payload: T, flags: u16, seq: u32)
    where
        T: NetlinkSerializable + fmt::Debug,
    {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        header.port_number = self.port;
        emit(out, &header, payload);
    }

    /// Sends one datagram (one or more requests) whole, retrying when a
    /// signal interrupts.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(trace) = self.tracer.as_mut() {
            trace(Direction::Sent, bytes);
        }
        loop {
            match self.socket.send(bytes, libc::MSG_NOSIGNAL) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("sent {n} of {} bytes", bytes.len()),
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Io(source)),
            }
        }
    }

    /// Reads the replies to request `seq` until `expect` is met, by the
    /// rules of [`reply_step`]: `on_data` gets each message that is not a
    /// control message (its type and payload).
    pub fn receive_replies(
        &mut self,
        seq: u32,
        expect: Expect,
        mut on_data: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.receive(seq, seq, |_, kind, payload| {
            reply_step(expect, kind, payload, &mut on_data)
        })
    }

    /// Receives datagrams and hands each reply to the requests
    /// `first..=last` to `f` ([`read_datagram`]) until it says
    /// [`Step::Done`]. The timeout runs from the last datagram that held a
    /// reply to them. After `ENOBUFS` the replies still queued are
    /// discarded: they belong to requests that can no longer complete;
    /// left there, they would fill the buffer again and the next
    /// request's reply would be dropped too.
    pub fn receive(
        &mut self,
        first: u32,
        last: u32,
        f: impl FnMut(u32, u16, &[u8]) -> Result<Step>,
    ) -> Result<()> {
        self.each_reply(first, last, true, f)
    }

    /// [`Transport::receive`] that leaves the queue alone after `ENOBUFS`
    /// (returned as [`Error::Io`]), for a caller that then reads what did
    /// arrive with [`Transport::read_queued`].
    pub fn receive_keeping(
        &mut self,
        first: u32,
        last: u32,
        f: impl FnMut(u32, u16, &[u8]) -> Result<Step>,
    ) -> Result<()> {
        self.each_reply(first, last, false, f)
    }

    fn each_reply(
        &mut self,
        first: u32,
        last: u32,
        drain_on_loss: bool,
        mut f: impl FnMut(u32, u16, &[u8]) -> Result<Step>,
    ) -> Result<()> {
        let port = self.port;
        self.each_datagram(drain_on_loss, |bytes| {
            read_datagram(bytes, port, first, last, &mut f)
        })
    }

    /// Receives datagrams and hands each to `read` until it says
    /// [`Progress::Done`]; the timeout runs from the last datagram it
    /// said [`Progress::More`] of.
    pub(crate) fn each_datagram(
        &mut self,
        drain_on_loss: bool,
        mut read: impl FnMut(&[u8]) -> Result<Progress>,
    ) -> Result<()> {
        let mut progress = Instant::now();
        loop {
            let len = match self.recv_datagram(0) {
                Err(e) if drain_on_loss && e.errno() == Some(libc::ENOBUFS) => {
                    self.drain();
                    return Err(e);
                }
                other => other?,
            };
            if progress.elapsed() > self.timeout {
                return Err(Error::Timeout(self.timeout));
            }
            match read(&self.buf[..len])? {
                Progress::Done => return Ok(()),
                Progress::More => progress = Instant::now(),
                Progress::Stale => {}
            }
        }
    }

    /// After `ENOBUFS`: hands the replies still queued (those that arrived
    /// before the kernel started dropping) to `f` without waiting, until
    /// the queue is empty. The queue is empty afterwards, whatever `f`
    /// says; its first error is returned.
    pub fn read_queued(
        &mut self,
        first: u32,
        last: u32,
        mut f: impl FnMut(u32, u16, &[u8]) -> Result<Step>,
    ) -> Result<()> {
        let port = self.port;
        self.each_queued(|bytes| read_datagram(bytes, port, first, last, &mut f))
    }

    /// [`Transport::read_queued`] handing each datagram to `read`.
    pub(crate) fn each_queued(
        &mut self,
        mut read: impl FnMut(&[u8]) -> Result<Progress>,
    ) -> Result<()> {
        let mut first_error = None;
        let mut done = false;
        for _ in 0..DRAIN_LIMIT {
            let len = match self.recv_datagram(libc::MSG_DONTWAIT) {
                Ok(len) => len,
                // Empty (a would-block reads as a timeout), or a socket
                // that failed: nothing more to read.
                Err(_) => break,
            };
            if done || first_error.is_some() {
                continue;
            }
            match read(&self.buf[..len]) {
                Ok(p) => done = p == Progress::Done,
                Err(e) => first_error = Some(e),
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Receives one datagram into the buffer (`flags` added to the recv
    /// flags); its length.
    fn recv_datagram(&mut self, flags: libc::c_int) -> Result<usize> {
        let len = self.recv_len;
        loop {
            // The kernel sizes dump skbs after the length offered.
            let mut window = &mut self.buf[..len];
            match self.socket.recv(&mut window, libc::MSG_TRUNC | flags) {
                Ok(n) if n > len => {
                    return Err(Error::Decode(format!(
                        "datagram of {n} bytes truncated to {len}"
                    )))
                }
                Ok(0) => {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "socket closed",
                    )))
                }
                Ok(n) => {
                    if let Some(trace) = self.tracer.as_mut() {
                        trace(Direction::Received, &self.buf[..n]);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(Error::Timeout(self.timeout))
                }
                Err(source) => return Err(Error::Io(source)),
            }
        }
    }

    /// Discards what is queued, without waiting.
    fn drain(&mut self) {
        for _ in 0..DRAIN_LIMIT {
            let mut window = &mut self.buf[..self.recv_len];
            match self.socket.recv(&mut window, libc::MSG_DONTWAIT) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }
}

/// The transport's socket (for socket options such as `SO_RCVBUF`;
/// reading or writing it behind the transport's back breaks the
/// exchange).
impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The transport's socket, as [`AsFd`] gives it.
impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The port the tests' sockets are bound to.
    pub(crate) const PORT: u32 = 4242;

    /// A netlink message: header and payload.
    pub(crate) fn message(kind: u16, seq: u32, port: u32, payload: &[u8]) -> Vec<u8> {
        let len = HEADER_LEN + payload.len();
        let mut out = Vec::with_capacity(len + 3);
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&port.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(len.next_multiple_of(4), 0);
        out
    }

    /// An NLMSG_ERROR reply (an ack when `code` is 0) to `seq`.
    pub(crate) fn error(seq: u32, code: i32) -> Vec<u8> {
        message(NLMSG_ERROR, seq, PORT, &code.to_ne_bytes())
    }

    fn seqs(bytes: &[u8], first: u32, last: u32) -> Result<(Progress, Vec<u32>)> {
        let mut seen = Vec::new();
        let p = read_datagram(bytes, PORT, first, last, |seq, _, _| {
            seen.push(seq);
            Ok(Step::Continue)
        })?;
        Ok((p, seen))
    }

    #[test]
    fn replies_in_the_window_are_handed_over_and_late_ones_skipped() {
        let bytes = [error(9, 0), error(12, -17), error(10, 0), error(11, 0)].concat();
        assert_eq!(
            seqs(&bytes, 10, 12).unwrap(),
            (Progress::More, vec![12, 10, 11])
        );
        assert_eq!(
            seqs(&error(9, 0), 10, 12).unwrap(),
            (Progress::Stale, vec![])
        );
        // Sequence numbers wrap: u32::MAX is behind 1, and a window may
        // span the wrap.
        let wrapped = [error(u32::MAX - 1, 0), error(u32::MAX, 0), error(1, 0)].concat();
        assert_eq!(
            seqs(&wrapped, u32::MAX, 1).unwrap(),
            (Progress::More, vec![u32::MAX, 1])
        );
    }

    #[test]
    fn replies_ahead_or_to_another_port_are_errors() {
        let e = seqs(&error(13, 0), 10, 12).unwrap_err();
        assert_eq!(
            e.to_string(),
            "netlink protocol error: reply with sequence number 13 to requests 10..=12"
        );
        let e = seqs(&error(10, 0), 9, 9).unwrap_err();
        assert_eq!(
            e.to_string(),
            "netlink protocol error: reply with sequence number 10 to request 9"
        );
        let foreign = message(NLMSG_ERROR, 10, PORT + 1, &0i32.to_ne_bytes());
        assert!(
            matches!(seqs(&foreign, 10, 10), Err(Error::Protocol(m)) if m.contains("port 4243"))
        );
        assert!(matches!(seqs(&[1, 2, 3], 10, 10), Err(Error::Decode(_))));
        // A length past the datagram's end.
        let cut = &error(10, 0)[..18];
        assert!(matches!(seqs(cut, 10, 10), Err(Error::Decode(_))));
    }

    #[test]
    fn done_stops_at_the_message_that_completes() {
        let bytes = [error(10, 0), error(11, 0)].concat();
        let mut seen = Vec::new();
        let p = read_datagram(&bytes, PORT, 10, 11, |seq, _, _| {
            seen.push(seq);
            Ok(Step::Done)
        })
        .unwrap();
        assert_eq!((p, seen), (Progress::Done, vec![10]));
    }

    #[test]
    fn sequence_numbers_skip_0_and_runs_do_not_wrap() {
        let route = netlink_sys::protocols::NETLINK_ROUTE;
        let mut t = Transport::open(route, 4096, Duration::from_secs(1)).unwrap();
        assert_eq!((t.next_seq(), t.next_seq()), (1, 2));
        assert_eq!(t.next_seqs(3), 3);
        assert_eq!(t.next_seq(), 6);
        t.seq.set_last(u32::MAX - 1);
        assert_eq!(t.next_seq(), u32::MAX);
        assert_eq!(t.next_seq(), 1);
        // A run of three from u32::MAX - 1 would hold 0: it starts at 1.
        t.seq.set_last(u32::MAX - 2);
        assert_eq!(t.next_seqs(3), 1);
        assert_eq!(t.next_seq(), 4);
    }

    #[test]
    fn control_messages_follow_the_netlink_rules() {
        let no_data = |_: u16, _: &[u8]| -> Result<()> { panic!("not data") };
        let ok = 0i32.to_ne_bytes();
        let refused = (-libc::EEXIST).to_ne_bytes();
        // An acknowledgement ends a write, not a dump or a GET.
        assert_eq!(
            reply_step(Expect::Ack, NLMSG_ERROR, &ok, no_data).unwrap(),
            Step::Done
        );
        assert_eq!(
            reply_step(Expect::Dump, NLMSG_ERROR, &ok, no_data).unwrap(),
            Step::Continue
        );
        let e = reply_step(Expect::Dump, NLMSG_ERROR, &refused, no_data).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        assert!(matches!(
            reply_step(Expect::Ack, NLMSG_ERROR, &[0, 0], no_data),
            Err(Error::Decode(_))
        ));
        // DONE ends a dump only; a negative code in it is the kernel's.
        assert_eq!(
            reply_step(Expect::Dump, NLMSG_DONE, &ok, no_data).unwrap(),
            Step::Done
        );
        assert!(matches!(
            reply_step(Expect::Reply, NLMSG_DONE, &ok, no_data),
            Err(Error::Protocol(_))
        ));
        let e = reply_step(Expect::Dump, NLMSG_DONE, &refused, no_data).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        assert_eq!(
            reply_step(Expect::Reply, NLMSG_NOOP, &[], no_data).unwrap(),
            Step::Continue
        );
        assert!(reply_step(Expect::Dump, NLMSG_OVERRUN, &[], no_data).is_err());
        // Data ends a GET, not a dump.
        let mut got = Vec::new();
        let step = reply_step(Expect::Reply, 20, b"abcd", |kind, p| {
            got.push((kind, p.to_vec()));
            Ok(())
        });
        assert_eq!(step.unwrap(), Step::Done);
        assert_eq!(got, vec![(20, b"abcd".to_vec())]);
        let step = reply_step(Expect::Dump, 20, b"abcd", |_, _| Ok(()));
        assert_eq!(step.unwrap(), Step::Continue);
    }
}
