//! Deleting conntrack entries over ctnetlink (`NETLINK_NETFILTER`), as
//! kube-proxy does for UDP Services, without the `conntrack` binary.
//!
//! Why: a UDP "connection" has no end, so after a UDP Service changes or
//! one of its endpoints goes, the kernel keeps sending a client's
//! datagrams where its conntrack entry says (the old endpoint, a black
//! hole) for as long as the client keeps talking. kube-proxy
//! (`pkg/proxy/conntrack`) therefore deletes, for UDP only:
//! - the entries whose original destination is a Service's address and
//!   port that changed or went ([`Flush::udp_service_addrs`]);
//! - the entries translated to an endpoint that is no longer served:
//!   reply source the endpoint, original destination a Service address
//!   (or any address at a NodePort) ([`Flush::udp_endpoint_addrs`]; here
//!   the entry's reply source must differ from its original destination,
//!   so a client talking to the pod directly keeps its entry, and the
//!   endpoint's port must match too, which kube-proxy does not ask);
//!
//! and [`flush_for_addresses`] deletes every entry of any protocol whose
//! original destination is one of some addresses, for `--cleanup`. With
//! `net.ipv4.vs.conntrack=1` IPVS writes the real server into the reply
//! tuple of the entries of its connections, so these filters see IPVS
//! traffic as they see iptables' DNAT.
//!
//! In IPVS mode the kernel does part of this itself: with
//! `net.ipv4.vs.expire_nodest_conn=1` (5.9 and later) it expires the IPVS
//! connections of a removed real server within seconds and deletes their
//! conntrack entries with them; with 0, the entries stay until they time
//! out, naming the removed real server. Both are shown on 6.1 and 6.12 by
//! `vm-tests/tests/conntrack.rs`.
//!
//! How, on every kernel since ctnetlink exists: one dump of the table
//! (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`, of the families the filters
//! name), the entries matched here, then one `IPCTNL_MSG_CT_DELETE` per
//! match, [`rtnl::PIPELINE`] to a datagram, each naming the entry by its
//! original tuple exactly as the kernel listed it (whatever the
//! protocol's fields), its zone when it has one, and its `CTA_ID`, so that
//! an entry made anew with the same tuple since the dump is not deleted.
//! A deletion the kernel answers with `ENOENT` found the entry gone
//! already (expired, or deleted by someone else) and is counted as such.
//! The kernel's own filtered dumps and flushes (`CTA_FILTER`, 5.8 and
//! later) would spare the dump but not exist on every supported kernel.
//!
//! The request loop is ipvs-netlink's [`transport`], as for rtnetlink
//! ([`super::rtnl`]). The messages are encoded and read here, not with
//! rust-netlink's `netlink-packet-netfilter` (MIT, on the same
//! netlink-packet-core 0.9): it would fit, but brings a second
//! `derive_more` (0.99) and its nftables and nflog types to read the six
//! attributes needed here, two of which (`CTA_ID`, `CTA_ZONE`) it does not
//! type. The layout read is the kernel's
//! `include/uapi/linux/netfilter/nfnetlink_conntrack.h`; the reader is
//! tested on dumps captured from a kernel, checked against the kernel's
//! own `/proc/net/nf_conntrack` listing of the same moment.
//!
//! Everything works in the network namespace of the calling thread.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipvs_netlink::batch::Outcome;
use ipvs_netlink::transport::{self, Direction, Expect, Transport};
use netlink_packet_core::{NetlinkSerializable, NLM_F_DUMP};
use netlink_sys::protocols::NETLINK_NETFILTER;

use super::rtnl;

/// How long one request waits for its reply.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The receive buffer: dump datagrams are at most 32 KiB.
const RECV_BUFFER: usize = 64 * 1024;

/// `NFNL_SUBSYS_CTNETLINK`, the high byte of the message type.
pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
/// `IPCTNL_MSG_CT_NEW`: the type of a dump's entries (and of events).
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
/// `IPCTNL_MSG_CT_GET`: the dump request (and a reply to a single get).
pub const IPCTNL_MSG_CT_GET: u8 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
pub const IPCTNL_MSG_CT_DELETE: u8 = 2;

/// `CTA_TUPLE_ORIG`: the original direction's tuple (nested).
pub const CTA_TUPLE_ORIG: u16 = 1;
/// `CTA_TUPLE_REPLY`: the reply direction's tuple (nested).
pub const CTA_TUPLE_REPLY: u16 = 2;
/// `CTA_ID`: the entry's id (big-endian u32).
pub const CTA_ID: u16 = 12;
/// `CTA_ZONE`: the entry's zone (big-endian u16), sent when not 0.
pub const CTA_ZONE: u16 = 18;
/// `CTA_TUPLE_IP` in a tuple (nested).
pub const CTA_TUPLE_IP: u16 = 1;
/// `CTA_TUPLE_PROTO` in a tuple (nested).
pub const CTA_TUPLE_PROTO: u16 = 2;
/// `CTA_IP_V4_SRC`.
pub const CTA_IP_V4_SRC: u16 = 1;
/// `CTA_IP_V4_DST`.
pub const CTA_IP_V4_DST: u16 = 2;
/// `CTA_IP_V6_SRC`.
pub const CTA_IP_V6_SRC: u16 = 3;
/// `CTA_IP_V6_DST`.
pub const CTA_IP_V6_DST: u16 = 4;
/// `CTA_PROTO_NUM` (u8).
pub const CTA_PROTO_NUM: u16 = 1;
/// `CTA_PROTO_SRC_PORT` (big-endian u16).
pub const CTA_PROTO_SRC_PORT: u16 = 2;
/// `CTA_PROTO_DST_PORT` (big-endian u16).
pub const CTA_PROTO_DST_PORT: u16 = 3;

/// The attribute type bits (`NLA_TYPE_MASK`): without `NLA_F_NESTED` and
/// `NLA_F_NET_BYTEORDER`.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;

/// An entry's address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// Its `AF_*` number, as `nfgenmsg` carries it.
    pub fn af(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }

    fn from_af(af: u8) -> Option<Family> {
        match i32::from(af) {
            libc::AF_INET => Some(Family::V4),
            libc::AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }
}

/// One direction of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port, for the protocols that have ports.
    pub src_port: Option<u16>,
    /// Destination port, for the protocols that have ports.
    pub dst_port: Option<u16>,
}

/// A conntrack entry, as much of it as the flush reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its family.
    pub family: Family,
    /// Its layer-4 protocol (`IPPROTO_*`).
    pub protocol: u8,
    /// The original direction: the client to the address it asked for.
    pub orig: Tuple,
    /// The reply direction: for a translated entry, from the endpoint.
    pub reply: Tuple,
    /// The kernel's id of the entry, when it sent one.
    pub id: Option<u32>,
    /// Its zone, when not the default one.
    pub zone: Option<u16>,
    /// The `CTA_TUPLE_ORIG` attribute as the kernel sent it.
    orig_attr: Vec<u8>,
    /// The `CTA_ZONE` attribute as the kernel sent it.
    zone_attr: Option<Vec<u8>>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = |ip: IpAddr, port: Option<u16>| match port {
            Some(p) => SocketAddr::new(ip, p).to_string(),
            None => ip.to_string(),
        };
        write!(
            f,
            "proto {} {} -> {} (reply from {})",
            self.protocol,
            end(self.orig.src, self.orig.src_port),
            end(self.orig.dst, self.orig.dst_port),
            end(self.reply.src, self.reply.src_port),
        )
    }
}

/// Which entries to delete: those matching every field that is set. A
/// filter names at least one address; one that names none matches
/// nothing (so that an empty filter never empties the table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// The layer-4 protocol (`IPPROTO_*`).
    pub protocol: Option<u8>,
    /// The original destination address (`--orig-dst`).
    pub orig_dst: Option<IpAddr>,
    /// The original destination port (`--orig-port-dst`).
    pub orig_dst_port: Option<u16>,
    /// The reply source address (`--reply-src`): the endpoint.
    pub reply_src: Option<IpAddr>,
    /// The reply source port (`--reply-port-src`).
    pub reply_src_port: Option<u16>,
    /// Only translated entries: reply source not the original
    /// destination (DNAT, or IPVS with `net.ipv4.vs.conntrack=1`).
    pub translated: bool,
}

impl Filter {
    /// Whether `entry` matches.
    pub fn matches(&self, entry: &Entry) -> bool {
        if self.orig_dst.is_none() && self.reply_src.is_none() {
            return false;
        }
        let is = |want: Option<IpAddr>, have: IpAddr| want.is_none_or(|w| w == have);
        let port = |want: Option<u16>, have: Option<u16>| want.is_none_or(|w| have == Some(w));
        self.protocol.is_none_or(|p| p == entry.protocol)
            && is(self.orig_dst, entry.orig.dst)
            && port(self.orig_dst_port, entry.orig.dst_port)
            && is(self.reply_src, entry.reply.src)
            && port(self.reply_src_port, entry.reply.src_port)
            && (!self.translated || entry.reply.src != entry.orig.dst)
    }

    /// The families it can match: that of its addresses.
    fn family(&self) -> Option<Family> {
        self.orig_dst.or(self.reply_src).map(Family::of)
    }
}

/// The UDP entries a sync deletes, as kube-proxy does (see the module
/// documentation). A port of 0 stands for every port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flush {
    /// The addresses and ports of UDP Services that changed or went
    /// (ClusterIP, external IP, load-balancer IP, node address at a
    /// NodePort): every UDP entry whose original destination they are.
    pub udp_service_addrs: Vec<SocketAddr>,
    /// The UDP endpoints (pod address and port) no longer served: every
    /// UDP entry translated to one of them.
    pub udp_endpoint_addrs: Vec<SocketAddr>,
}

impl Flush {
    /// Nothing to delete.
    pub fn is_empty(&self) -> bool {
        self.udp_service_addrs.is_empty() && self.udp_endpoint_addrs.is_empty()
    }

    /// The filters of this flush.
    pub fn filters(&self) -> Vec<Filter> {
        let port = |p: u16| (p != 0).then_some(p);
        let services = self.udp_service_addrs.iter().map(|a| Filter {
            protocol: Some(IPPROTO_UDP),
            orig_dst: Some(a.ip()),
            orig_dst_port: port(a.port()),
            ..Filter::default()
        });
        let endpoints = self.udp_endpoint_addrs.iter().map(|a| Filter {
            protocol: Some(IPPROTO_UDP),
            reply_src: Some(a.ip()),
            reply_src_port: port(a.port()),
            translated: true,
            ..Filter::default()
        });
        services.chain(endpoints).collect()
    }
}

/// What a flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Entries the dump listed.
    pub listed: usize,
    /// Entries deleted.
    pub deleted: usize,
    /// Entries matched but gone before their deletion (`ENOENT`).
    pub gone: usize,
}

/// Why an entry of a dump does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn bad<T>(message: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(message.into()))
}

/// Why a flush failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConntrackError {
    /// The ctnetlink socket could not be opened.
    Open(transport::Error),
    /// Listing the table failed (the kernel refused, the socket failed,
    /// a reply broke the protocol).
    List(transport::Error),
    /// An entry of the listing does not read.
    Decode(DecodeError),
    /// Deletions failed; the others were done.
    Delete {
        /// The first entry whose deletion failed.
        entry: String,
        /// Why.
        source: transport::Error,
        /// How many deletions failed or were not tried.
        failed: usize,
        /// What was done.
        done: Flushed,
    },
}

impl fmt::Display for ConntrackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConntrackError::Open(e) if e.errno() == Some(libc::EPROTONOSUPPORT) => write!(
                f,
                "opening a ctnetlink socket: {e} (no nfnetlink in this kernel: modprobe nf_conntrack_netlink)"
            ),
            ConntrackError::Open(e) => write!(f, "opening a ctnetlink socket: {e}"),
            ConntrackError::List(e) => write!(f, "listing the conntrack table: {e}"),
            ConntrackError::Decode(e) => {
                write!(
                    f,
                    "listing the conntrack table: an entry does not read: {e}"
                )
            }
            ConntrackError::Delete {
                entry,
                source,
                failed,
                done,
            } => write!(
                f,
                "deleting conntrack entry {entry}: {source} ({failed} deletions failed, {} done)",
                done.deleted
            ),
        }
    }
}

impl std::error::Error for ConntrackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConntrackError::Open(e) | ConntrackError::List(e) => Some(e),
            ConntrackError::Decode(e) => Some(e),
            ConntrackError::Delete { source, .. } => Some(source),
        }
    }
}

/// Deletes the UDP entries of `flush` (see [`Flush`]) in the calling
/// thread's network namespace. Nothing is sent for an empty flush.
pub fn flush(flush: &Flush) -> Result<Flushed, ConntrackError> {
    if flush.is_empty() {
        return Ok(Flushed::default());
    }
    Ctnetlink::open()?.delete_matching(&flush.filters())
}

/// What a sync needs of the conntrack table: delete the entries of a
/// [`Flush`]. [`Kernel`] is the real one (ctnetlink); tests record.
pub trait Conntrack {
    /// Deletes the entries `flush` names.
    fn flush(&mut self, flush: &Flush) -> Result<Flushed, ConntrackError>;
}

/// The kernel's conntrack table of the calling thread's network
/// namespace, a ctnetlink socket opened for each flush.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

impl Conntrack for Kernel {
    fn flush(&mut self, f: &Flush) -> Result<Flushed, ConntrackError> {
        flush(f)
    }
}

/// Deletes every entry, of any protocol, whose original destination is
/// one of `ips` (`--cleanup`: the entries of our Services' addresses).
pub fn flush_for_addresses(ips: &[IpAddr]) -> Result<Flushed, ConntrackError> {
    if ips.is_empty() {
        return Ok(Flushed::default());
    }
    let filters: Vec<Filter> = ips
        .iter()
        .map(|ip| Filter {
            orig_dst: Some(*ip),
            ..Filter::default()
        })
        .collect();
    Ctnetlink::open()?.delete_matching(&filters)
}

/// A ctnetlink message: `nfgenmsg` (family, version 0, resource id 0)
/// and attributes already encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `IPCTNL_MSG_CT_*`.
    pub op: u8,
    /// `AF_*`, or 0 for every family.
    pub family: u8,
    /// The attributes.
    pub attrs: Vec<u8>,
}

impl NetlinkSerializable for Request {
    fn message_type(&self) -> u16 {
        u16::from(NFNL_SUBSYS_CTNETLINK) << 8 | u16::from(self.op)
    }

    fn buffer_len(&self) -> usize {
        4 + self.attrs.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[0] = self.family;
        buffer[1] = 0; // NFNETLINK_V0
        buffer[2..4].copy_from_slice(&0u16.to_be_bytes());
        buffer[4..4 + self.attrs.len()].copy_from_slice(&self.attrs);
    }
}

/// The deletion of `entry`: its original tuple and zone as the kernel
/// listed them, and its id.
pub fn delete_request(entry: &Entry) -> Request {
    let mut attrs = Vec::new();
    push_padded(&mut attrs, &entry.orig_attr);
    if let Some(zone) = &entry.zone_attr {
        push_padded(&mut attrs, zone);
    }
    if let Some(id) = entry.id {
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&CTA_ID.to_ne_bytes());
        attrs.extend_from_slice(&id.to_be_bytes());
    }
    Request {
        op: IPCTNL_MSG_CT_DELETE,
        family: entry.family.af(),
        attrs,
    }
}

fn push_padded(out: &mut Vec<u8>, attr: &[u8]) {
    out.extend_from_slice(attr);
    out.resize(out.len() + (4 - attr.len() % 4) % 4, 0);
}

/// Calls `f` with each attribute of `bytes`: its type (without the flag
/// bits), its value and the whole attribute. An attribute shorter than
/// its header or longer than what is left is an error.
fn each_attr<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(u16, &'a [u8], &'a [u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (Some(len), Some(kind)) = (read_u16_ne(rest, 0), read_u16_ne(rest, 2)) else {
            return bad(format!("{} bytes left, not an attribute", rest.len()));
        };
        let len = usize::from(len);
        if len < 4 || len > rest.len() {
            return bad(format!(
                "attribute {} of length {len} with {} bytes left",
                kind & NLA_TYPE_MASK,
                rest.len()
            ));
        }
        f(kind & NLA_TYPE_MASK, &rest[4..len], &rest[..len])?;
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    Ok(())
}

fn read_u16_ne(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be16(value: &[u8], what: &str) -> Result<u16, DecodeError> {
    match <[u8; 2]>::try_from(value) {
        Ok(b) => Ok(u16::from_be_bytes(b)),
        Err(_) => bad(format!("{what} of {} bytes instead of 2", value.len())),
    }
}

fn be32(value: &[u8], what: &str) -> Result<u32, DecodeError> {
    match <[u8; 4]>::try_from(value) {
        Ok(b) => Ok(u32::from_be_bytes(b)),
        Err(_) => bad(format!("{what} of {} bytes instead of 4", value.len())),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, what: &str) -> Result<(), DecodeError> {
    if slot.is_some() {
        return bad(format!("{what} twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// A tuple's addresses, protocol and ports.
fn decode_tuple(family: Family, bytes: &[u8], dir: &str) -> Result<(u8, Tuple), DecodeError> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    each_attr(bytes, |kind, value, _| match kind {
        CTA_TUPLE_IP => each_attr(value, |kind, value, _| {
            let ip = match (kind, family) {
                (CTA_IP_V4_SRC | CTA_IP_V4_DST, Family::V4) => match <[u8; 4]>::try_from(value) {
                    Ok(b) => IpAddr::V4(Ipv4Addr::from(b)),
                    Err(_) => return bad(format!("{dir} IPv4 address of {} bytes", value.len())),
                },
                (CTA_IP_V6_SRC | CTA_IP_V6_DST, Family::V6) => match <[u8; 16]>::try_from(value) {
                    Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
                    Err(_) => return bad(format!("{dir} IPv6 address of {} bytes", value.len())),
                },
                (CTA_IP_V4_SRC..=CTA_IP_V6_DST, _) => {
                    return bad(format!(
                        "{dir} address attribute {kind} in a {family:?} entry"
                    ))
                }
                _ => return Ok(()),
            };
            match kind {
                CTA_IP_V4_SRC | CTA_IP_V6_SRC => set_once(&mut src, ip, "source address"),
                _ => set_once(&mut dst, ip, "destination address"),
            }
        }),
        CTA_TUPLE_PROTO => each_attr(value, |kind, value, _| match kind {
            CTA_PROTO_NUM => match value {
                [p] => set_once(&mut proto, *p, "protocol"),
                _ => bad(format!("{dir} protocol of {} bytes", value.len())),
            },
            CTA_PROTO_SRC_PORT => set_once(&mut sport, be16(value, "source port")?, "source port"),
            CTA_PROTO_DST_PORT => set_once(
                &mut dport,
                be16(value, "destination port")?,
                "destination port",
            ),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })?;
    match (src, dst, proto) {
        (Some(src), Some(dst), Some(proto)) => Ok((
            proto,
            Tuple {
                src,
                dst,
                src_port: sport,
                dst_port: dport,
            },
        )),
        _ => bad(format!(
            "{dir} tuple without its source, destination or protocol"
        )),
    }
}

/// Reads one entry of a dump: the payload of a ctnetlink message after
/// its `nlmsghdr` (`nfgenmsg`, then the attributes).
pub fn decode_entry(payload: &[u8]) -> Result<Entry, DecodeError> {
    let Some((header, attrs)) = payload.split_at_checked(4) else {
        return bad(format!("{} bytes, shorter than nfgenmsg", payload.len()));
    };
    let Some(family) = Family::from_af(header[0]) else {
        return bad(format!("address family {}", header[0]));
    };
    let (mut orig, mut reply, mut id, mut zone) = (None, None, None, None);
    each_attr(attrs, |kind, value, whole| match kind {
        CTA_TUPLE_ORIG => set_once(
            &mut orig,
            (decode_tuple(family, value, "original")?, whole),
            "original tuple",
        ),
        CTA_TUPLE_REPLY => set_once(
            &mut reply,
            decode_tuple(family, value, "reply")?,
            "reply tuple",
        ),
        CTA_ID => set_once(&mut id, be32(value, "id")?, "id"),
        CTA_ZONE => set_once(&mut zone, (be16(value, "zone")?, whole), "zone"),
        _ => Ok(()),
    })?;
    let (Some(((protocol, orig), orig_attr)), Some((reply_protocol, reply))) = (orig, reply) else {
        return bad("an entry without its original or reply tuple");
    };
    if reply_protocol != protocol {
        return bad(format!(
            "original protocol {protocol}, reply protocol {reply_protocol}"
        ));
    }
    Ok(Entry {
        family,
        protocol,
        orig,
        reply,
        id,
        zone: zone.map(|(z, _)| z),
        orig_attr: orig_attr.to_vec(),
        zone_attr: zone.map(|(_, whole)| whole.to_vec()),
    })
}

/// Why a message of a dump is not an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DumpMessage {
    /// Not a ctnetlink entry: this message type.
    Unexpected(u16),
    /// An entry that does not read.
    Undecodable(DecodeError),
}

/// Reads a message of a dump (not a control message) of type `kind`:
/// an entry, whose type is `IPCTNL_MSG_CT_NEW` (or `_GET`) of ctnetlink.
fn dump_message(kind: u16, payload: &[u8]) -> Result<Entry, DumpMessage> {
    let [subsys, op] = kind.to_be_bytes();
    if subsys != NFNL_SUBSYS_CTNETLINK || !(op == IPCTNL_MSG_CT_NEW || op == IPCTNL_MSG_CT_GET) {
        return Err(DumpMessage::Unexpected(kind));
    }
    decode_entry(payload).map_err(DumpMessage::Undecodable)
}

/// A blocking ctnetlink socket in the network namespace of the thread
/// that opened it.
#[derive(Debug)]
pub struct Ctnetlink {
    transport: Transport,
}

impl Ctnetlink {
    /// Opens a `NETLINK_NETFILTER` socket.
    pub fn open() -> Result<Ctnetlink, ConntrackError> {
        let transport = Transport::open(NETLINK_NETFILTER, RECV_BUFFER, TIMEOUT)
            .map_err(ConntrackError::Open)?;
        Ok(Ctnetlink { transport })
    }

    /// Calls `tracer` with every datagram sent and received (to capture
    /// fixtures).
    pub fn set_tracer(&mut self, tracer: impl FnMut(Direction, &[u8]) + Send + 'static) {
        self.transport.set_tracer(tracer);
    }

    /// Hands every entry of `family` (`None`: both) to `f`. An entry that
    /// does not read ends the listing with [`ConntrackError::Decode`].
    pub fn list(
        &mut self,
        family: Option<Family>,
        mut f: impl FnMut(Entry),
    ) -> Result<(), ConntrackError> {
        let seq = self.transport.next_seq();
        let mut bytes = Vec::new();
        let request = Request {
            op: IPCTNL_MSG_CT_GET,
            family: family.map_or(0, Family::af),
            attrs: Vec::new(),
        };
        self.transport.append(&mut bytes, request, NLM_F_DUMP, seq);
        self.transport.send(&bytes).map_err(ConntrackError::List)?;
        let mut undecodable = None;
        let listed = self
            .transport
            .receive_replies(seq, Expect::Dump, |kind, payload| {
                match dump_message(kind, payload) {
                    Ok(entry) => {
                        f(entry);
                        Ok(())
                    }
                    Err(DumpMessage::Unexpected(kind)) => Err(transport::Error::Protocol(format!(
                        "message type {kind:#06x} in a conntrack dump"
                    ))),
                    Err(DumpMessage::Undecodable(e)) => {
                        let text = e.to_string();
                        undecodable = Some(e);
                        Err(transport::Error::Decode(text))
                    }
                }
            });
        match (listed, undecodable) {
            (_, Some(e)) => Err(ConntrackError::Decode(e)),
            (Err(e), None) => Err(ConntrackError::List(e)),
            (Ok(()), None) => Ok(()),
        }
    }

    /// Deletes the entries any of `filters` matches (one dump of the
    /// families they name, then the deletions).
    pub fn delete_matching(&mut self, filters: &[Filter]) -> Result<Flushed, ConntrackError> {
        let mut families = filters.iter().filter_map(Filter::family);
        let Some(first) = families.next() else {
            return Ok(Flushed::default());
        };
        let family = families.all(|f| f == first).then_some(first);
        let mut done = Flushed::default();
        let mut doomed = Vec::new();
        self.list(family, |entry| {
            done.listed += 1;
            if filters.iter().any(|f| f.matches(&entry)) {
                doomed.push(entry);
            }
        })?;
        let mut failure: Option<(String, transport::Error)> = None;
        let mut failed = 0;
        for chunk in doomed.chunks(rtnl::PIPELINE) {
            let results = self
                .delete_chunk(chunk)
                .map_err(|source| ConntrackError::Delete {
                    entry: chunk.first().map(Entry::to_string).unwrap_or_default(),
                    source,
                    failed: doomed.len() - done.deleted - done.gone,
                    done,
                })?;
            for (entry, result) in chunk.iter().zip(results) {
                match result {
                    Ok(()) => done.deleted += 1,
                    Err(libc::ENOENT) => done.gone += 1,
                    Err(errno) => {
                        failed += 1;
                        failure.get_or_insert((entry.to_string(), transport::Error::Kernel(errno)));
                    }
                }
            }
        }
        match failure {
            None => Ok(done),
            Some((entry, source)) => Err(ConntrackError::Delete {
                entry,
                source,
                failed,
                done,
            }),
        }
    }

    /// Sends the deletions of `entries` in one datagram; the kernel's
    /// answer to each (`Err(errno)` for a refusal).
    fn delete_chunk(&mut self, entries: &[Entry]) -> transport::Result<Vec<Result<(), i32>>> {
        let first = self.transport.next_seqs(entries.len());
        let requests = entries.iter().map(|e| (delete_request(e), 0));
        let mut batch = rtnl::ack_batch(self.transport.port(), first, requests);
        self.transport.exchange_batch(&mut batch, |_| Ok(()))?;
        batch
            .outcomes()
            .into_iter()
            .map(|o| match o {
                Outcome::Ok => Ok(Ok(())),
                Outcome::Refused(errno) => Ok(Err(errno)),
                Outcome::Unknown => Err(transport::Error::Timeout(TIMEOUT)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::Write as _;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};

    /// An entry as the kernel's `/proc/net/nf_conntrack` prints it:
    /// protocol, original (source, destination), reply source.
    type Line = (u8, SocketAddr, SocketAddr, SocketAddr);

    fn line_of(e: &Entry) -> Line {
        let at = |ip, port: Option<u16>| SocketAddr::new(ip, port.unwrap_or(0));
        (
            e.protocol,
            at(e.orig.src, e.orig.src_port),
            at(e.orig.dst, e.orig.dst_port),
            at(e.reply.src, e.reply.src_port),
        )
    }

    /// The kernel's text listing, read as [`Line`]s: the first `src=`,
    /// `dst=`, `sport=`, `dport=` are the original direction's, the
    /// second `src=` and `sport=` the reply's.
    fn proc_lines(text: &str) -> BTreeSet<Line> {
        text.lines()
            .map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let proto: u8 = words[3].parse().unwrap();
                let all = |key: &str| -> Vec<&str> {
                    words.iter().filter_map(|w| w.strip_prefix(key)).collect()
                };
                let (src, dst, sport, dport) =
                    (all("src="), all("dst="), all("sport="), all("dport="));
                let at = |ip: &str, port: &str| {
                    SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap())
                };
                (
                    proto,
                    at(src[0], sport[0]),
                    at(dst[0], dport[0]),
                    at(src[1], sport[1]),
                )
            })
            .collect()
    }

    /// The conntrack entries of the netlink messages in `datagrams`
    /// (a dump's replies), `NLMSG_DONE` skipped.
    fn entries_of(datagrams: &[Vec<u8>]) -> Vec<Entry> {
        let mut out = Vec::new();
        for d in datagrams {
            let mut rest = &d[..];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
                if kind >> 8 == u16::from(NFNL_SUBSYS_CTNETLINK) {
                    out.push(decode_entry(&rest[16..len]).unwrap());
                }
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
        out
    }

    fn run(cmd: &str, args: &[&str], stdin: &str) {
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd}: {e} (the host test needs iproute2 and nftables)"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "{cmd} {args:?} failed");
    }

    fn kernel_listing() -> String {
        std::fs::read_to_string("/proc/thread-self/net/nf_conntrack").unwrap()
    }

    /// Our listing, with the datagrams the kernel sent for it.
    fn our_listing() -> (Vec<Entry>, Vec<Vec<u8>>) {
        let mut ct = Ctnetlink::open().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        ct.set_tracer(move |dir, bytes| {
            if dir == Direction::Received {
                keep.lock().unwrap().push(bytes.to_vec());
            }
        });
        let mut entries = Vec::new();
        ct.list(None, |e| entries.push(e)).unwrap();
        let datagrams = seen.lock().unwrap().clone();
        (entries, datagrams)
    }

    const RULES: &str = "table inet ct-test {
        chain out {
            type nat hook output priority -100; policy accept;
            ip daddr 127.10.0.10 udp dport 8053 udp sport 40001 dnat ip to 127.0.0.5:5353
            ip daddr 127.10.0.10 udp dport 8053 udp sport 40002 dnat ip to 127.0.0.6:5353
            ip daddr 127.10.0.11 udp dport 8053 dnat ip to 127.0.0.6:5353
            ip6 daddr fd00::10 udp dport 8053 udp sport 40001 dnat ip6 to [fd00::5]:5353
            ip6 daddr fd00::10 udp dport 8053 udp sport 40002 dnat ip6 to [fd00::6]:5353
            ip6 daddr fd00::11 udp dport 8053 dnat ip6 to [fd00::6]:5353
        }
    }
";

    /// Real UDP and TCP entries made in a fresh namespace, the
    /// translated ones by nftables' DNAT (as IPVS with
    /// `net.ipv4.vs.conntrack=1` writes its real server into the reply
    /// tuple): the flush deletes those of the removed endpoint and of the
    /// changed Service, and no other, as the kernel's own listing shows.
    #[test]
    fn flush_deletes_what_kube_proxy_would_and_nothing_else() {
        super::super::testns::in_new_netns(
            "node::conntrack::tests::flush_deletes_what_kube_proxy_would_and_nothing_else",
            || {
                run("ip", &["link", "set", "lo", "up"], "");
                for a in ["fd00::1", "fd00::5", "fd00::6", "fd00::10", "fd00::11"] {
                    run(
                        "ip",
                        &[
                            "-6",
                            "addr",
                            "add",
                            &format!("{a}/128"),
                            "dev",
                            "lo",
                            "nodad",
                        ],
                        "",
                    );
                }
                run("nft", &["-f", "-"], RULES);
                let mut keep = Vec::new(); // TCP connections stay open
                for (client, vip10, vip11, ep5) in [
                    ("127.0.0.1", "127.10.0.10", "127.10.0.11", "127.0.0.5"),
                    ("[fd00::1]", "[fd00::10]", "[fd00::11]", "[fd00::5]"),
                ] {
                    let udp = |sport: u16, to: String| {
                        let s = UdpSocket::bind(format!("{client}:{sport}")).unwrap();
                        s.send_to(b"x", to).unwrap();
                    };
                    udp(40001, format!("{vip10}:8053")); // -> ep5: deleted
                    udp(40002, format!("{vip10}:8053")); // -> ep6: stays
                    udp(40003, format!("{vip11}:8053")); // changed Service: deleted
                    udp(40004, format!("{vip11}:8054")); // another port: stays
                    udp(40005, format!("{ep5}:5353")); // to the pod itself: stays
                    let l = TcpListener::bind(format!("{vip11}:8053")).unwrap();
                    keep.push(TcpStream::connect(format!("{vip11}:8053")).unwrap());
                    keep.push(l.accept().unwrap().0);
                }
                let before = proc_lines(&kernel_listing());
                assert_eq!(before.len(), 12, "{before:#?}");
                // Our reading of the table is the kernel's own listing.
                let (entries, datagrams) = our_listing();
                let ours: BTreeSet<Line> = entries.iter().map(line_of).collect();
                assert_eq!(ours, before);
                assert!(entries.iter().all(|e| e.id.is_some() && e.zone.is_none()));
                if let Some(dir) = std::env::var_os("IPVS_CT_FIXTURE_DIR") {
                    let dir = std::path::PathBuf::from(dir);
                    let hex: Vec<String> = datagrams
                        .iter()
                        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
                        .collect();
                    std::fs::write(dir.join("conntrack-dump.hex"), hex.join("\n") + "\n").unwrap();
                    std::fs::write(dir.join("conntrack-proc.txt"), kernel_listing()).unwrap();
                }

                let sa = |s: &str| -> SocketAddr { s.parse().unwrap() };
                let plan = Flush {
                    udp_service_addrs: vec![sa("127.10.0.11:8053"), sa("[fd00::11]:8053")],
                    udp_endpoint_addrs: vec![sa("127.0.0.5:5353"), sa("[fd00::5]:5353")],
                };
                let done = flush(&plan).unwrap();
                assert_eq!(
                    done,
                    Flushed {
                        listed: 12,
                        deleted: 4,
                        gone: 0
                    }
                );
                let after = proc_lines(&kernel_listing());
                let gone: BTreeSet<Line> = before.difference(&after).cloned().collect();
                let udp =
                    |src: &str, dst: &str, reply: &str| (IPPROTO_UDP, sa(src), sa(dst), sa(reply));
                assert_eq!(
                    gone,
                    BTreeSet::from([
                        udp("127.0.0.1:40001", "127.10.0.10:8053", "127.0.0.5:5353"),
                        udp("127.0.0.1:40003", "127.10.0.11:8053", "127.0.0.6:5353"),
                        udp("[fd00::1]:40001", "[fd00::10]:8053", "[fd00::5]:5353"),
                        udp("[fd00::1]:40003", "[fd00::11]:8053", "[fd00::6]:5353"),
                    ])
                );
                assert!(after.is_subset(&before));
                // A deleted entry is gone (ENOENT); a live entry named
                // with another id is not deleted: the id is checked.
                let mut ct = Ctnetlink::open().unwrap();
                let deleted = entries.iter().find(|e| gone.contains(&line_of(e))).unwrap();
                assert_eq!(
                    ct.delete_chunk(std::slice::from_ref(deleted)).unwrap(),
                    [Err(libc::ENOENT)]
                );
                let mut live = entries
                    .iter()
                    .find(|e| after.contains(&line_of(e)))
                    .unwrap()
                    .clone();
                live.id = live.id.map(|id| id.wrapping_add(1));
                assert_eq!(
                    ct.delete_chunk(std::slice::from_ref(&live)).unwrap(),
                    [Err(libc::ENOENT)]
                );
                assert!(proc_lines(&kernel_listing()).contains(&line_of(&live)));
                // Again: nothing left to delete.
                assert_eq!(flush(&plan).unwrap().deleted, 0);
                assert_eq!(flush(&Flush::default()).unwrap(), Flushed::default());

                // --cleanup: everything to the addresses, TCP included.
                let vips = ["127.10.0.11".parse().unwrap(), "fd00::11".parse().unwrap()];
                let done = flush_for_addresses(&vips).unwrap();
                assert_eq!((done.listed, done.deleted), (8, 4));
                let left = proc_lines(&kernel_listing());
                assert_eq!(left.len(), 4, "{left:#?}");
                assert!(left.iter().all(|l| !vips.contains(&l.2.ip())));
                drop(keep);
            },
        );
    }

    fn unhex(line: &str) -> Vec<u8> {
        (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
            .collect()
    }

    fn captured() -> Vec<Vec<u8>> {
        include_str!("../../tests/dumps/conntrack-dump.hex")
            .lines()
            .map(unhex)
            .collect()
    }

    /// The payloads (after `nlmsghdr`) of the captured dump's entries.
    fn captured_payloads() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for d in captured() {
            let mut rest = &d[..];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
                if kind >> 8 == u16::from(NFNL_SUBSYS_CTNETLINK) {
                    out.push(rest[16..len].to_vec());
                }
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
        out
    }

    #[test]
    fn a_kernel_dump_reads_as_the_kernels_own_listing() {
        let entries = entries_of(&captured());
        assert_eq!(entries.len(), 12);
        let ours: BTreeSet<Line> = entries.iter().map(line_of).collect();
        let kernel = proc_lines(include_str!("../../tests/dumps/conntrack-proc.txt"));
        assert_eq!(ours, kernel);
        // The kernel's dump entries are IPCTNL_MSG_CT_NEW of ctnetlink.
        let first = &captured()[0];
        assert_eq!(u16::from_ne_bytes([first[4], first[5]]), 0x0100);
        let v6 = entries.iter().filter(|e| e.family == Family::V6).count();
        assert_eq!(v6, 6);
        assert!(entries.iter().all(|e| e.id.is_some() && e.zone.is_none()));
    }

    #[test]
    fn the_flush_picks_kube_proxys_entries_from_a_kernel_dump() {
        let entries = entries_of(&captured());
        let sa = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let picked = |filters: &[Filter]| -> BTreeSet<(u8, SocketAddr, SocketAddr)> {
            entries
                .iter()
                .filter(|e| filters.iter().any(|f| f.matches(e)))
                .map(|e| {
                    let l = line_of(e);
                    (l.0, l.1, l.3)
                })
                .collect()
        };
        // A removed endpoint: the entries translated to it, not the
        // client's own flow to the pod (40005).
        let endpoint = Flush {
            udp_endpoint_addrs: vec![sa("127.0.0.5:5353")],
            ..Flush::default()
        };
        assert_eq!(
            picked(&endpoint.filters()),
            BTreeSet::from([(17, sa("127.0.0.1:40001"), sa("127.0.0.5:5353"))])
        );
        // The endpoint at another port is another endpoint.
        let other_port = Flush {
            udp_endpoint_addrs: vec![sa("127.0.0.6:5354")],
            ..Flush::default()
        };
        assert!(picked(&other_port.filters()).is_empty());
        // A changed Service: its UDP entries at that port, not 8054,
        // not TCP; port 0 takes every port.
        let service = Flush {
            udp_service_addrs: vec![sa("[fd00::11]:8053")],
            ..Flush::default()
        };
        assert_eq!(
            picked(&service.filters()),
            BTreeSet::from([(17, sa("[fd00::1]:40003"), sa("[fd00::6]:5353"))])
        );
        let any_port = Flush {
            udp_service_addrs: vec![sa("[fd00::11]:0")],
            ..Flush::default()
        };
        assert_eq!(picked(&any_port.filters()).len(), 2);
        // A filter without an address matches nothing.
        assert!(picked(&[Filter::default()]).is_empty());
        assert!(picked(&[Filter {
            protocol: Some(IPPROTO_UDP),
            translated: true,
            ..Filter::default()
        }])
        .is_empty());
    }

    #[test]
    fn a_deletion_names_the_entry_as_the_kernel_listed_it() {
        for payload in captured_payloads() {
            let entry = decode_entry(&payload).unwrap();
            let request = delete_request(&entry);
            assert_eq!(request.message_type(), 0x0102);
            assert_eq!(request.family, payload[0]);
            let mut bytes = vec![0; request.buffer_len()];
            request.serialize(&mut bytes);
            assert_eq!(bytes[..4], [payload[0], 0, 0, 0]);
            // The original tuple, byte for byte as the kernel sent it ...
            assert_eq!(bytes[4..4 + entry.orig_attr.len()], entry.orig_attr[..]);
            assert!(payload
                .windows(entry.orig_attr.len())
                .any(|w| w == entry.orig_attr));
            // ... then CTA_ID, the kernel's id in network order.
            let id = &bytes[bytes.len() - 8..];
            assert_eq!(id[..4], [8, 0, 12, 0]);
            assert_eq!(
                u32::from_be_bytes(id[4..].try_into().unwrap()),
                entry.id.unwrap()
            );
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        let good = captured_payloads()[0].clone();
        let e = |bytes: &[u8]| decode_entry(bytes).unwrap_err().to_string();
        assert_eq!(e(&[2, 0]), "2 bytes, shorter than nfgenmsg");
        let mut other = good.clone();
        other[0] = 7;
        assert_eq!(e(&other), "address family 7");
        // An IPv6 entry read as IPv4.
        let mut v4 = good.clone();
        v4[0] = libc::AF_INET as u8;
        assert!(
            e(&v4).contains("address attribute 3 in a V4 entry"),
            "{}",
            e(&v4)
        );
        // An attribute longer than what is left.
        let mut long = good.clone();
        long[4] = 0xff;
        assert!(e(&long).contains("with"), "{}", e(&long));
        // No reply tuple.
        let orig_len = usize::from(u16::from_ne_bytes([good[4], good[5]]));
        assert_eq!(
            e(&good[..4 + orig_len]),
            "an entry without its original or reply tuple"
        );
        // The original tuple twice.
        let mut twice = good[..4 + orig_len].to_vec();
        twice.extend_from_slice(&good[4..]);
        assert_eq!(e(&twice), "original tuple twice");
        // Another message type in a dump.
        assert_eq!(
            dump_message(0x0300, &good),
            Err(DumpMessage::Unexpected(0x0300))
        );
        assert_eq!(
            dump_message(0x0102, &good),
            Err(DumpMessage::Unexpected(0x0102))
        );
        assert!(dump_message(0x0101, &good).is_ok());
        // Errors say what failed and keep their cause.
        let err = ConntrackError::Delete {
            entry: "proto 17 1.2.3.4:5 -> 6.7.8.9:10 (reply from 6.7.8.9:10)".into(),
            source: transport::Error::Kernel(libc::EPERM),
            failed: 2,
            done: Flushed {
                listed: 9,
                deleted: 3,
                gone: 1,
            },
        };
        assert_eq!(
            err.to_string(),
            "deleting conntrack entry proto 17 1.2.3.4:5 -> 6.7.8.9:10 (reply from 6.7.8.9:10): \
             Operation not permitted (os error 1) (2 deletions failed, 3 done)"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "Operation not permitted (os error 1)");
        let open = ConntrackError::Open(transport::Error::Io(std::io::Error::from_raw_os_error(
            libc::EPROTONOSUPPORT,
        )));
        assert!(
            open.to_string().ends_with("modprobe nf_conntrack_netlink)"),
            "{open}"
        );
        let decode = ConntrackError::Decode(DecodeError("x".into()));
        assert!(std::error::Error::source(&decode).is_some());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode_entry(&bytes);
        }

        #[test]
        fn a_damaged_kernel_entry_reads_without_panic(
            which in 0usize..12,
            at in 0usize..400,
            byte in proptest::num::u8::ANY,
            cut in 0usize..400,
        ) {
            let payloads = captured_payloads();
            let good = &payloads[which % payloads.len()];
            let full = decode_entry(good).unwrap();
            let mut bad = good.clone();
            let at = at % bad.len();
            bad[at] = byte;
            let _ = decode_entry(&bad);
            // Cut short: an error, or the entry itself when only
            // attributes after its tuples were cut.
            let cut = cut % good.len();
            if let Ok(e) = decode_entry(&good[..cut]) {
                proptest::prop_assert_eq!((e.orig, e.reply), (full.orig, full.reply));
            }
        }
    }
}
