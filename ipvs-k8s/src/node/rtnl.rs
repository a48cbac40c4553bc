//! A small blocking rtnetlink client: just what the dummy interface needs
//! (find a link, create a dummy one, list, add and remove addresses), one
//! request at a time over a `NETLINK_ROUTE` socket.
//!
//! Every request carries a fresh sequence number. A reply to an earlier
//! request (one that timed out) is skipped; a reply to a request not yet
//! sent, or addressed to another port, is a protocol error, never guessed
//! at. Errors are typed: the kernel's errno, an I/O error, a timeout or a
//! message that does not read.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// How long one request waits for its reply.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The receive buffer: dump datagrams are at most 32 KiB.
const RECV_BUFFER: usize = 64 * 1024;

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// The kernel refused it with this errno.
    Kernel {
        /// What was asked.
        op: String,
        /// The errno (positive).
        errno: i32,
    },
    /// The socket failed.
    Io {
        /// What was asked.
        op: String,
        /// The error.
        source: io::Error,
    },
    /// No reply in time.
    Timeout {
        /// What was asked.
        op: String,
    },
    /// A reply that does not read or does not belong to the request.
    Protocol {
        /// What was asked.
        op: String,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The kernel's errno, when it refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Kernel { op, errno } => {
                write!(f, "{op}: {}", io::Error::from_raw_os_error(*errno))
            }
            Error::Io { op, source } => write!(f, "{op}: {source}"),
            Error::Timeout { op } => write!(f, "{op}: no reply from the kernel within {TIMEOUT:?}"),
            Error::Protocol { op, message } => write!(f, "{op}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its kind (`dummy`, `veth`, ...), when it has one.
    pub kind: Option<String>,
}

/// An address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// The interface's index.
    pub index: u32,
    /// The address.
    pub ip: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// What a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An acknowledgement (a write with `NLM_F_ACK`).
    Ack,
    /// One reply message.
    Reply,
    /// Messages up to `NLMSG_DONE`.
    Dump,
}

/// Where reading the replies to one request stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More is to come.
    More,
    /// The request is answered.
    Done,
}

/// Reads one datagram of replies to request `seq`, sent from `port`:
/// appends the messages to `out` and says whether the exchange is over.
/// Pure, so that the rules can be tested without a kernel.
pub fn read_datagram(
    op: &str,
    bytes: &[u8],
    seq: u32,
    port: u32,
    expect: Expect,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Result<Progress, Error> {
    let protocol = |message: String| Error::Protocol {
        op: op.to_owned(),
        message,
    };
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let buffer = NetlinkBuffer::new_checked(rest).map_err(|e| protocol(e.to_string()))?;
        let len = buffer.length() as usize;
        let (reply_seq, reply_port) = (buffer.sequence_number(), buffer.port_number());
        let one = &rest[..len];
        offset += (len + 3) & !3;
        if reply_port != port {
            return Err(protocol(format!(
                "reply addressed to port {reply_port} instead of {port}"
            )));
        }
        if reply_seq != seq {
            // Behind the request (wrapping): a late reply to an earlier one.
            if (seq.wrapping_sub(reply_seq) as i32) > 0 {
                continue;
            }
            return Err(protocol(format!(
                "reply with sequence number {reply_seq} to request {seq}"
            )));
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(one)
            .map_err(|e| protocol(e.to_string()))?;
        match msg.payload {
            NetlinkPayload::Error(e) => match e.code {
                Some(code) => {
                    return Err(Error::Kernel {
                        op: op.to_owned(),
                        errno: code.get().saturating_neg(),
                    })
                }
                None if expect == Expect::Ack => return Ok(Progress::Done),
                None => {}
            },
            NetlinkPayload::Done(d) => {
                if d.code < 0 {
                    return Err(Error::Kernel {
                        op: op.to_owned(),
                        errno: d.code.saturating_neg(),
                    });
                }
                if expect != Expect::Dump {
                    return Err(protocol(
                        "NLMSG_DONE in reply to a request that is not a dump".into(),
                    ));
                }
                return Ok(Progress::Done);
            }
            NetlinkPayload::Noop => {}
            NetlinkPayload::Overrun(_) => return Err(protocol("NLMSG_OVERRUN".into())),
            NetlinkPayload::InnerMessage(inner) => {
                out.push(inner);
                if expect == Expect::Reply {
                    return Ok(Progress::Done);
                }
            }
            _ => return Err(protocol("a message of an unknown kind".into())),
        }
    }
    Ok(Progress::More)
}

/// Reads one datagram of acknowledgements to the pipelined writes of
/// sequence numbers `first..first + results.len()`, sent from `port`:
/// fills `results` (`Ok` for an ack, `Err(errno)` for a refusal). A
/// reply to an earlier request is skipped; one to a request not sent, or
/// to another port, or that is not an acknowledgement, is a protocol
/// error (what was wrong). Pure, so that it can be tested without a
/// kernel.
pub fn read_acks(
    bytes: &[u8],
    first: u32,
    port: u32,
    results: &mut [Option<Result<(), i32>>],
) -> Result<(), String> {
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let buffer = NetlinkBuffer::new_checked(rest).map_err(|e| e.to_string())?;
        let len = buffer.length() as usize;
        let (reply_seq, reply_port) = (buffer.sequence_number(), buffer.port_number());
        let one = &rest[..len];
        offset += (len + 3) & !3;
        if reply_port != port {
            return Err(format!(
                "reply addressed to port {reply_port} instead of {port}"
            ));
        }
        let at = reply_seq.wrapping_sub(first) as usize;
        if at >= results.len() {
            // Behind the batch (wrapping): a late reply to an earlier request.
            if (first.wrapping_sub(reply_seq) as i32) > 0 {
                continue;
            }
            return Err(format!(
                "reply with sequence number {reply_seq} to no request sent"
            ));
        }
        let msg =
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(one).map_err(|e| e.to_string())?;
        match msg.payload {
            NetlinkPayload::Error(e) => {
                results[at] = Some(match e.code {
                    Some(code) => Err(code.get().saturating_neg()),
                    None => Ok(()),
                });
            }
            NetlinkPayload::Noop => {}
            _ => {
                return Err(format!(
                    "a reply to write {reply_seq} that is not an acknowledgement"
                ))
            }
        }
    }
    Ok(())
}

/// How many writes [`Rtnl::add_addresses`] sends in one datagram: their
/// acknowledgements (36 bytes, or about 100 echoing a refused request)
/// fit any receive buffer many times over.
pub const PIPELINE: usize = 128;

/// A blocking rtnetlink socket.
pub struct Rtnl {
    socket: Socket,
    port: u32,
    seq: u32,
    buf: Vec<u8>,
}

impl fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rtnl")
            .field("port", &self.port)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Rtnl {
    /// Opens a socket in the caller's network namespace.
    pub fn open() -> Result<Rtnl, Error> {
        let io = |source| Error::Io {
            op: "opening an rtnetlink socket".into(),
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io)?;
        let local = socket.bind_auto().map_err(io)?;
        socket
            .connect(&netlink_sys::SocketAddr::new(0, 0))
            .map_err(io)?;
        let tv = TimeVal::new(TIMEOUT.as_secs() as i64, 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &tv).map_err(|e| io(e.into()))?;
        Ok(Rtnl {
            socket,
            port: local.port_number(),
            seq: 0,
            buf: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Sends `msg` and reads its replies.
    pub fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
        expect: Expect,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let mut bytes = Vec::new();
        self.append(&mut bytes, msg, flags, seq);
        self.send_all(&bytes).map_err(|f| f.into_error(op))?;
        let mut out = Vec::new();
        let started = Instant::now();
        loop {
            let n = self.recv_one().map_err(|f| f.into_error(op))?;
            let datagram = &self.buf[..n];
            if read_datagram(op, datagram, seq, self.port, expect, &mut out)? == Progress::Done {
                return Ok(out);
            }
            // Stale replies alone must not keep a request alive for ever.
            if started.elapsed() > TIMEOUT * 3 {
                return Err(Error::Timeout { op: op.to_owned() });
            }
        }
    }

    /// The interface named `name`, if there is one.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let op = format!("looking up interface {name}");
        match self.request(&op, RouteNetlinkMessage::GetLink(msg), 0, Expect::Reply) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a dummy interface named `name` (left down, as kube-proxy
    /// leaves kube-ipvs0).
    pub fn add_dummy(&mut self, name: &str) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Dummy,
            )]));
        self.request(
            &format!("creating dummy interface {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
            Expect::Ack,
        )?;
        Ok(())
    }

    /// Every address of every interface.
    pub fn addresses(&mut self) -> Result<Vec<Address>, Error> {
        let replies = self.request(
            "listing addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            Expect::Dump,
        )?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) => address_of(a),
                _ => None,
            })
            .collect())
    }

    /// Adds each of `ips` alone to interface `index` (a host prefix, and
    /// refused if already there), [`PIPELINE`] requests per datagram:
    /// one result per address, in order. A socket that fails or a reply
    /// that does not read fails every address not yet answered.
    pub fn add_addresses(&mut self, index: u32, ips: &[IpAddr]) -> Vec<Result<(), Error>> {
        let mut out = Vec::with_capacity(ips.len());
        for chunk in ips.chunks(PIPELINE) {
            self.add_chunk(index, chunk, &mut out);
        }
        out
    }

    fn add_chunk(&mut self, index: u32, ips: &[IpAddr], out: &mut Vec<Result<(), Error>>) {
        let op = |ip: &IpAddr| format!("adding {ip} to interface {index}");
        let first = self.seq.wrapping_add(1).max(1);
        let mut bytes = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let msg = address_message(index, *ip, host_prefix(*ip), true);
            self.append(
                &mut bytes,
                RouteNetlinkMessage::NewAddress(msg),
                NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
                first.wrapping_add(i as u32),
            );
        }
        // Sequence numbers skip 0, as `request` does.
        self.seq = first.wrapping_add(ips.len() as u32 - 1).max(1);
        let mut results: Vec<Option<Result<(), i32>>> = vec![None; ips.len()];
        let failure = self.send_and_read_acks(&bytes, first, &mut results);
        for (ip, result) in ips.iter().zip(results) {
            out.push(match (result, &failure) {
                (Some(Ok(())), _) => Ok(()),
                (Some(Err(errno)), _) => Err(Error::Kernel { op: op(ip), errno }),
                (None, None) => Err(Error::Timeout { op: op(ip) }),
                (None, Some(f)) => Err(f.clone().into_error(&op(ip))),
            });
        }
    }

    /// Appends `msg` as a request (`NLM_F_REQUEST` and `flags`) of
    /// sequence number `seq` from this socket's port to `out`.
    fn append(&self, out: &mut Vec<u8>, msg: RouteNetlinkMessage, flags: u16, seq: u32) {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        header.port_number = self.port;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let at = out.len();
        out.resize(at + nl.buffer_len(), 0);
        nl.serialize(&mut out[at..]);
    }

    /// Sends one datagram whole (retrying when a signal interrupts).
    fn send_all(&self, bytes: &[u8]) -> Result<(), Failure> {
        loop {
            match self.socket.send(bytes, libc::MSG_NOSIGNAL) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    return Err(Failure::Io(
                        io::ErrorKind::WriteZero,
                        format!("sent {n} of {} bytes", bytes.len()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e.kind(), e.to_string())),
            }
        }
    }

    /// Reads one datagram into the buffer (retrying when a signal
    /// interrupts); its length. A datagram larger than the buffer, a
    /// closed socket and the socket's timeout are failures.
    fn recv_one(&mut self) -> Result<usize, Failure> {
        loop {
            self.buf.clear();
            return match self.socket.recv(&mut self.buf, libc::MSG_TRUNC) {
                Ok(n) if n > RECV_BUFFER => Err(Failure::Protocol(format!(
                    "datagram of {n} bytes truncated to {RECV_BUFFER}"
                ))),
                Ok(0) => Err(Failure::Io(
                    io::ErrorKind::UnexpectedEof,
                    "socket closed".into(),
                )),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Failure::Timeout),
                Err(e) => Err(Failure::Io(e.kind(), e.to_string())),
            };
        }
    }

    /// Sends the datagram `bytes` of pipelined writes and reads their
    /// acknowledgements into `results`; what stopped it early, if
    /// anything did.
    fn send_and_read_acks(
        &mut self,
        bytes: &[u8],
        first: u32,
        results: &mut [Option<Result<(), i32>>],
    ) -> Option<Failure> {
        if let Err(f) = self.send_all(bytes) {
            return Some(f);
        }
        let started = Instant::now();
        while results.iter().any(Option::is_none) {
            let n = match self.recv_one() {
                Ok(n) => n,
                Err(f) => return Some(f),
            };
            if let Err(message) = read_acks(&self.buf[..n], first, self.port, results) {
                return Some(Failure::Protocol(message));
            }
            if started.elapsed() > TIMEOUT * 3 {
                return Some(Failure::Timeout);
            }
        }
        None
    }

    /// Removes `addr` from its interface.
    pub fn delete_address(&mut self, addr: &Address) -> Result<(), Error> {
        let msg = address_message(addr.index, addr.ip, addr.prefix_len, false);
        self.request(
            &format!(
                "removing {}/{} from interface {}",
                addr.ip, addr.prefix_len, addr.index
            ),
            RouteNetlinkMessage::DelAddress(msg),
            NLM_F_ACK,
            Expect::Ack,
        )?;
        Ok(())
    }
}

/// What ended an exchange early, before it is put to a request ([`Error`]
/// names the request; one failure can end the requests of a whole
/// pipelined batch).
#[derive(Clone)]
enum Failure {
    Timeout,
    Io(io::ErrorKind, String),
    Protocol(String),
}

impl Failure {
    fn into_error(self, op: &str) -> Error {
        let op = op.to_owned();
        match self {
            Failure::Timeout => Error::Timeout { op },
            Failure::Io(kind, text) => Error::Io {
                op,
                source: io::Error::new(kind, text),
            },
            Failure::Protocol(message) => Error::Protocol { op, message },
        }
    }
}

/// 32 or 128.
pub fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn address_message(index: u32, ip: IpAddr, prefix_len: u8, adding: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    if adding && ip.is_ipv6() {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

fn link_of(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// An address message's interface, address and prefix: the local address
/// (`IFA_LOCAL`, which differs from `IFA_ADDRESS` on point-to-point
/// links), else `IFA_ADDRESS`.
fn address_of(msg: &AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    Some(Address {
        index: msg.header.index,
        ip: local.or(address)?,
        prefix_len: msg.header.prefix_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage};
    use std::num::NonZeroI32;

    const PORT: u32 = 4242;

    fn datagram(parts: &[(u32, u32, NetlinkPayload<RouteNetlinkMessage>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, port, payload) in parts {
            let mut header = NetlinkHeader::default();
            header.sequence_number = *seq;
            header.port_number = *port;
            let mut nl = NetlinkMessage::new(header, payload.clone());
            nl.finalize();
            let at = out.len();
            out.resize(at + nl.buffer_len(), 0);
            nl.serialize(&mut out[at..]);
        }
        out
    }

    fn addr_msg(index: u32, ip: &str) -> RouteNetlinkMessage {
        let ip: IpAddr = ip.parse().unwrap();
        RouteNetlinkMessage::NewAddress(address_message(index, ip, host_prefix(ip), false))
    }

    fn ack(code: i32) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(code);
        NetlinkPayload::Error(e)
    }

    fn done() -> NetlinkPayload<RouteNetlinkMessage> {
        NetlinkPayload::Done(DoneMessage::default())
    }

    #[test]
    fn pipelined_acks_land_on_their_writes() {
        let mut results = vec![None; 3];
        // Out of order, with a stale ack of an earlier request skipped.
        let bytes = datagram(&[(9, PORT, ack(0)), (12, PORT, ack(-17)), (10, PORT, ack(0))]);
        read_acks(&bytes, 10, PORT, &mut results).unwrap();
        assert_eq!(results, vec![Some(Ok(())), None, Some(Err(17))]);
        let bytes = datagram(&[(11, PORT, ack(-99))]);
        read_acks(&bytes, 10, PORT, &mut results).unwrap();
        assert_eq!(results, vec![Some(Ok(())), Some(Err(99)), Some(Err(17))]);
    }

    #[test]
    fn pipelined_acks_refuse_what_is_not_theirs() {
        let mut results = vec![None; 2];
        let ahead = datagram(&[(12, PORT, ack(0))]);
        assert!(read_acks(&ahead, 10, PORT, &mut results)
            .unwrap_err()
            .contains("no request"));
        let elsewhere = datagram(&[(10, PORT + 1, ack(0))]);
        assert!(read_acks(&elsewhere, 10, PORT, &mut results)
            .unwrap_err()
            .contains("port"));
        let not_ack = datagram(&[(10, PORT, done())]);
        assert!(read_acks(&not_ack, 10, PORT, &mut results)
            .unwrap_err()
            .contains("not an acknowledgement"));
        assert!(read_acks(&[1, 2, 3], 10, PORT, &mut results).is_err());
        assert_eq!(results, vec![None, None]);
    }

    #[test]
    fn a_dump_collects_until_done_and_skips_stale_replies() {
        let mut out = Vec::new();
        let first = datagram(&[
            (6, PORT, ack(-libc::EEXIST)), // late answer to request 6
            (
                7,
                PORT,
                NetlinkPayload::InnerMessage(addr_msg(3, "10.96.0.1")),
            ),
        ]);
        let step = read_datagram("dump", &first, 7, PORT, Expect::Dump, &mut out).unwrap();
        assert_eq!(step, Progress::More);
        let second = datagram(&[
            (
                7,
                PORT,
                NetlinkPayload::InnerMessage(addr_msg(3, "fd00::1")),
            ),
            (7, PORT, done()),
        ]);
        let step = read_datagram("dump", &second, 7, PORT, Expect::Dump, &mut out).unwrap();
        assert_eq!(step, Progress::Done);
        let addrs: Vec<Address> = out
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => address_of(a),
                _ => None,
            })
            .collect();
        assert_eq!(
            addrs,
            vec![
                Address {
                    index: 3,
                    ip: "10.96.0.1".parse().unwrap(),
                    prefix_len: 32
                },
                Address {
                    index: 3,
                    ip: "fd00::1".parse().unwrap(),
                    prefix_len: 128
                },
            ]
        );
    }

    #[test]
    fn errors_are_typed() {
        let mut out = Vec::new();
        let refused = datagram(&[(9, PORT, ack(-libc::EEXIST))]);
        let e = read_datagram("adding", &refused, 9, PORT, Expect::Ack, &mut out).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        assert_eq!(e.to_string(), "adding: File exists (os error 17)");
        let ok = datagram(&[(9, PORT, ack(0))]);
        let step = read_datagram("adding", &ok, 9, PORT, Expect::Ack, &mut out).unwrap();
        assert_eq!(step, Progress::Done);
        // A reply to a request not sent yet, or to another port.
        let future = datagram(&[(10, PORT, ack(0))]);
        let e = read_datagram("x", &future, 9, PORT, Expect::Ack, &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x: reply with sequence number 10 to request 9"
        );
        let foreign = datagram(&[(9, 1, ack(0))]);
        let e = read_datagram("x", &foreign, 9, PORT, Expect::Ack, &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x: reply addressed to port 1 instead of 4242"
        );
        // DONE for a request that is not a dump; a cut message.
        let d = datagram(&[(9, PORT, done())]);
        assert!(read_datagram("x", &d, 9, PORT, Expect::Reply, &mut out).is_err());
        let cut = &ok[..10];
        assert!(matches!(
            read_datagram("x", cut, 9, PORT, Expect::Ack, &mut out),
            Err(Error::Protocol { .. })
        ));
        // Sequence numbers wrap: u32::MAX is behind 1.
        let wrapped = datagram(&[(u32::MAX, PORT, ack(0)), (1, PORT, ack(0))]);
        let step = read_datagram("x", &wrapped, 1, PORT, Expect::Ack, &mut out).unwrap();
        assert_eq!(step, Progress::Done);
        assert!(out.is_empty());
    }

    #[test]
    fn requests_name_the_address_and_flag_v6_nodad() {
        let v6 = address_message(5, "fd00::7".parse().unwrap(), 128, true);
        assert!(v6
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        assert_eq!(v6.header.family, AddressFamily::Inet6);
        let v4 = address_message(5, "10.0.0.7".parse().unwrap(), 32, true);
        assert!(!v4
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Flags(_))));
        assert_eq!(
            address_of(&v4).unwrap(),
            Address {
                index: 5,
                ip: "10.0.0.7".parse().unwrap(),
                prefix_len: 32
            }
        );
    }
}
