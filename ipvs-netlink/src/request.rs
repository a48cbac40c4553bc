//! The requests a handle sends, written as bytes: every IPVS request (the
//! typed methods, [`crate::Handle::apply`]'s ops and the reads) goes
//! through [`Request::emit`].
//!
//! There is one encoder of attributes, the attribute enums' [`Nla`]
//! impls ([`crate::ServiceAttr`], [`crate::DestAttr`],
//! [`crate::DaemonAttr`], [`IpvsAttr`]);
//! this module only chooses which attributes a request carries (the
//! model's `attrs()`, the same mapping `to_attrs()` collects) and writes
//! them one after the other into the datagram. It builds no attribute
//! vector and copies no name: the attributes of a request hold the
//! address inline (`[u8; 16]`) and borrow the names from the model, so
//! writing a request allocates nothing beyond growing the datagram's
//! buffer. (Building the typed [`crate::IpvsMessage`] for every op, a
//! vector per nest and a copy of each name, was a fifth of the time of a
//! restore of 50,000 lines: docs/speed.md.)

use std::net::SocketAddr;

use netlink_packet_core::{
    Emitable, NetlinkHeader, Nla, NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_HEADER_SIZE,
    NLA_TYPE_MASK, NLM_F_REQUEST,
};
use netlink_packet_generic::GenlHeader;

use crate::message::{IpvsCmd, IPVS_CMD_ATTR_DAEMON, IPVS_CMD_ATTR_DEST, IPVS_CMD_ATTR_SERVICE};
use crate::op::Op;
use crate::{Daemon, Destination, IpvsAttr, Service, ServiceId, Timeouts, IPVS_GENL_VERSION};

/// One IPVS request: a write, or one of the reads a [`crate::Handle`]
/// makes. [`Request::emit`] writes it as one netlink message, the bytes
/// the handle sends; a program that drives its own socket (an async
/// runtime, a batch of its own) sends the same.
///
/// ```
/// use ipvs_netlink::netlink_packet_core::{NetlinkHeader, NLM_F_ACK};
/// use ipvs_netlink::{Op, Request, Service, ServiceId};
///
/// let op = Op::AddService(Service::new(ServiceId::tcp("10.0.0.1:80".parse()?), "rr"));
/// let mut header = NetlinkHeader::default();
/// header.message_type = 0x20; // the IPVS family id, resolved at run time
/// header.flags = NLM_F_ACK;
/// header.sequence_number = 1;
/// let mut datagram = Vec::new();
/// Request::Op(&op).emit(&header, &mut datagram);
/// // nlmsghdr, genlmsghdr, and the service nest of 84 bytes.
/// assert_eq!(datagram.len(), 16 + 4 + 84);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request<'a> {
    /// A write.
    Op(&'a Op),
    /// GET_INFO: the version and the connection table's size.
    GetInfo,
    /// GET_SERVICE of every service: a dump (`NLM_F_DUMP`).
    GetServices,
    /// GET_SERVICE of one service.
    GetService(&'a ServiceId),
    /// GET_DEST of one service's destinations: a dump (`NLM_F_DUMP`).
    GetDestinations(&'a ServiceId),
    /// GET_CONFIG: the timeouts.
    GetTimeouts,
    /// GET_DAEMON of every sync daemon: a dump (`NLM_F_DUMP`).
    GetDaemons,
}

impl Request<'_> {
    /// The command of this request.
    pub fn command(&self) -> IpvsCmd {
        self.body().0
    }

    /// Appends this request to `out` as one netlink message: `header`
    /// gives the generic-netlink family id of IPVS (`message_type`), the
    /// flags (`NLM_F_REQUEST` is added; a dump needs `NLM_F_DUMP`), the
    /// sequence number and the port; its `length` is ignored and written
    /// from the request. What `out` holds already is kept, and the
    /// message is aligned from where it starts, so several requests
    /// appended one after another make one datagram.
    pub fn emit(&self, header: &NetlinkHeader, out: &mut Vec<u8>) {
        let (cmd, body) = self.body();
        encode(cmd, body, header, out);
    }

    fn body(&self) -> (IpvsCmd, Body<'_>) {
        match *self {
            Request::Op(op) => op_request(op),
            Request::GetInfo => (IpvsCmd::GetInfo, Body::Empty),
            Request::GetServices => (IpvsCmd::GetService, Body::Empty),
            Request::GetService(id) => (IpvsCmd::GetService, Body::ServiceId(id)),
            Request::GetDestinations(id) => (IpvsCmd::GetDest, Body::ServiceId(id)),
            Request::GetTimeouts => (IpvsCmd::GetConfig, Body::Empty),
            Request::GetDaemons => (IpvsCmd::GetDaemon, Body::Empty),
        }
    }
}

/// The attributes of one request, borrowed from what the caller holds
/// (the handle's typed methods hold a `&Service`, not an [`Op`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// No attribute.
    Empty,
    /// A whole service nest.
    Service(&'a Service),
    /// A service nest of the identity alone.
    ServiceId(&'a ServiceId),
    /// A service identity nest and a whole destination nest.
    Dest(&'a ServiceId, &'a Destination),
    /// A service identity nest and a destination nest of address and port.
    DestId(&'a ServiceId, SocketAddr),
    /// The three timeouts.
    Timeouts(&'a Timeouts),
    /// A whole daemon nest.
    Daemon(&'a Daemon),
    /// A daemon nest of state, interface and sync id, as ipvsadm stops a
    /// daemon.
    DaemonId(&'a Daemon),
}

/// The command and attributes of `op`.
pub(crate) fn op_request(op: &Op) -> (IpvsCmd, Body<'_>) {
    match op {
        Op::AddService(svc) => (IpvsCmd::NewService, Body::Service(svc)),
        Op::EditService(svc) => (IpvsCmd::SetService, Body::Service(svc)),
        Op::DeleteService(id) => (IpvsCmd::DelService, Body::ServiceId(id)),
        Op::AddDestination(id, dest) => (IpvsCmd::NewDest, Body::Dest(id, dest)),
        Op::EditDestination(id, dest) => (IpvsCmd::SetDest, Body::Dest(id, dest)),
        Op::DeleteDestination(id, addr) => (IpvsCmd::DelDest, Body::DestId(id, *addr)),
        Op::Flush => (IpvsCmd::Flush, Body::Empty),
        Op::Zero(Some(id)) => (IpvsCmd::Zero, Body::ServiceId(id)),
        Op::Zero(None) => (IpvsCmd::Zero, Body::Empty),
        Op::SetTimeouts(t) => (IpvsCmd::SetConfig, Body::Timeouts(t)),
        Op::StartDaemon(daemon) => (IpvsCmd::NewDaemon, Body::Daemon(daemon)),
        Op::StopDaemon(daemon) => (IpvsCmd::DelDaemon, Body::DaemonId(daemon)),
    }
}

/// Appends `attr` to `out` as netlink-packet-core's `Emitable` writes it
/// (its header, its value, zeros to align), asking it for its length once:
/// the generic writer asks four times, and each asking is a match over
/// the attribute enum.
fn put_attr(out: &mut Vec<u8>, attr: &impl Nla) {
    let value_len = attr.value_len();
    let at = out.len();
    out.resize(at + NLA_HEADER_SIZE + nla_align(value_len), 0);
    let mut kind = attr.kind() & NLA_TYPE_MASK;
    if attr.is_network_byteorder() {
        kind |= NLA_F_NET_BYTEORDER;
    }
    if attr.is_nested() {
        kind |= NLA_F_NESTED;
    }
    let header_len = (NLA_HEADER_SIZE + value_len) as u16;
    out[at..at + 2].copy_from_slice(&header_len.to_ne_bytes());
    out[at + 2..at + 4].copy_from_slice(&kind.to_ne_bytes());
    attr.emit_value(&mut out[at + NLA_HEADER_SIZE..at + NLA_HEADER_SIZE + value_len]);
}

/// Appends a nest of `kind` to `out` whose members are the attributes
/// `members` holds (`None` for an attribute a request leaves out), each
/// written in place by [`put_attr`], then the nest's header. (An
/// [`IpvsAttr`] nest holds a vector of its members; this one is written
/// from them where they are.) The nest's kind carries no flag, as
/// ipvsadm writes IPVS's nests.
fn put_nest<A: Nla, const N: usize>(out: &mut Vec<u8>, kind: u16, members: &[Option<A>; N]) {
    let at = out.len();
    out.extend_from_slice(&[0; NLA_HEADER_SIZE]);
    for member in members.iter().flatten() {
        put_attr(out, member);
    }
    // Every member ends aligned: the nest needs no padding.
    let len = (out.len() - at) as u16;
    out[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    out[at + 2..at + 4].copy_from_slice(&(kind & NLA_TYPE_MASK).to_ne_bytes());
}

/// `NLA_ALIGN`: `len` rounded up to 4 bytes.
fn nla_align(len: usize) -> usize {
    (len + 3) & !3
}

/// Appends the request `cmd` with `body` to `out`, as
/// [`Request::emit`] says.
pub(crate) fn encode(cmd: IpvsCmd, body: Body<'_>, header: &NetlinkHeader, out: &mut Vec<u8>) {
    // Alignment counts from the message's start: a datagram's messages
    // each start on 4 bytes, and padding the end of the previous one is
    // the caller's (every message here ends aligned).
    let start = out.len();
    let genl = GenlHeader {
        cmd: cmd.into(),
        version: IPVS_GENL_VERSION,
    };
    let (nl_len, genl_len) = (header.buffer_len(), genl.buffer_len());
    out.resize(start + nl_len + genl_len, 0);
    genl.emit(&mut out[start + nl_len..]);
    match body {
        Body::Empty => {}
        Body::Service(svc) => put_nest(out, IPVS_CMD_ATTR_SERVICE, &svc.attrs()),
        Body::ServiceId(id) => put_nest(out, IPVS_CMD_ATTR_SERVICE, &id.attrs()),
        Body::Dest(id, dest) => {
            put_nest(out, IPVS_CMD_ATTR_SERVICE, &id.attrs());
            put_nest(out, IPVS_CMD_ATTR_DEST, &dest.attrs());
        }
        Body::DestId(id, addr) => {
            put_nest(out, IPVS_CMD_ATTR_SERVICE, &id.attrs());
            let members = Destination::id_attrs_of(addr).map(Some);
            put_nest(out, IPVS_CMD_ATTR_DEST, &members);
        }
        Body::Timeouts(t) => {
            put_attr(out, &IpvsAttr::TimeoutTcp(t.tcp));
            put_attr(out, &IpvsAttr::TimeoutTcpFin(t.tcp_fin));
            put_attr(out, &IpvsAttr::TimeoutUdp(t.udp));
        }
        Body::Daemon(daemon) => put_nest(out, IPVS_CMD_ATTR_DAEMON, &daemon.attrs()),
        Body::DaemonId(daemon) => {
            let mut members = daemon.attrs();
            members[3..].fill(None);
            put_nest(out, IPVS_CMD_ATTR_DAEMON, &members);
        }
    }
    let mut header = *header;
    header.length = (out.len() - start) as u32;
    header.flags |= NLM_F_REQUEST;
    header.emit(&mut out[start..start + nl_len]);
}
