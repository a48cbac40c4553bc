//! A small blocking rtnetlink client: just what the dummy interface needs
//! (find a link, create a dummy one, list, add and remove addresses) over
//! a `NETLINK_ROUTE` socket.
//!
//! The request loop is ipvs-netlink's [`transport`]: every request
//! carries a fresh sequence number; a reply to an earlier request (one
//! that timed out) is skipped; a reply to a request not yet sent, or
//! addressed to another port, is a protocol error, never guessed at.
//! Here are the messages, and errors typed with the request they belong
//! to: the kernel's errno, an I/O error, a timeout or a message that does
//! not read.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use ipvs_netlink::batch::{self, Batch, Outcome};
use ipvs_netlink::transport::{self, Step, Transport};
use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;

pub use ipvs_netlink::transport::Expect;

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

    /// The transport's error `e`, met while doing `op`.
    fn at(op: &str, e: &transport::Error) -> Error {
        let op = op.to_owned();
        match e {
            transport::Error::Kernel(errno) => Error::Kernel { op, errno: *errno },
            transport::Error::Io(source) => Error::Io {
                op,
                source: match source.raw_os_error() {
                    Some(errno) => io::Error::from_raw_os_error(errno),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            transport::Error::Timeout(_) => Error::Timeout { op },
            transport::Error::Decode(message) | transport::Error::Protocol(message) => {
                Error::Protocol {
                    op,
                    message: message.clone(),
                }
            }
            other => Error::Protocol {
                op,
                message: other.to_string(),
            },
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
    /// Its alias (`IFLA_IFALIAS`), when it has one: [`CREATED_ALIAS`] on
    /// an interface this tool created.
    pub alias: Option<String>,
}

/// The alias this tool gives the dummy interface it creates, so that
/// `--cleanup` removes the interface only when this tool made it.
pub const CREATED_ALIAS: &str = "created by ipvsadm-rs --from-k8s";

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

/// The routing protocol number of this tool's local routes (`proto 118`
/// in `ip route`; name it in `/etc/iproute2/rt_protos.d/` to read
/// `proto ipvs-rs`): how they are told from every other route of the
/// local table. Unassigned in the kernel's list (`RTPROT_*`) and in
/// iproute2's.
pub const ROUTE_PROTOCOL: u8 = 118;

/// The metric of this tool's local routes (`metric 1024`, IPv6's default
/// for routes added by hand): other than the 0 of the local route the
/// kernel keeps for an address, so that both can be there at once while
/// an address is replaced by a route (with the same metric the kernel
/// refuses the route, `EEXIST`).
pub const ROUTE_METRIC: u32 = 1024;

/// The kernel's local table (`RT_TABLE_LOCAL`).
const RT_TABLE_LOCAL: u8 = 255;

/// A local route of this tool: packets to `ip` are the node's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalRoute {
    /// The interface it goes through (the dummy interface).
    pub index: u32,
    /// The address (a host prefix).
    pub ip: IpAddr,
}

/// Where reading the replies to one request stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More is to come.
    More,
    /// The request is answered.
    Done,
}

/// Parses a reply of message type `kind`.
fn parse(kind: u16, payload: &[u8]) -> transport::Result<RouteNetlinkMessage> {
    let mut header = NetlinkHeader::default();
    header.message_type = kind;
    RouteNetlinkMessage::deserialize(&header, payload)
        .map_err(|e| transport::Error::Decode(e.to_string()))
}

/// The reader of the replies to one request that ends as `expect` says:
/// the rules are the transport's ([`transport::reply_step`]), each route
/// message is appended to `out`.
fn reply_reader(
    expect: Expect,
    out: &mut Vec<RouteNetlinkMessage>,
) -> impl FnMut(u32, u16, &[u8]) -> transport::Result<Step> + '_ {
    move |_seq, kind, payload| {
        transport::reply_step(expect, kind, payload, |kind, payload| {
            out.push(parse(kind, payload)?);
            Ok(())
        })
    }
}

/// Reads one datagram of replies to request `seq`, sent from `port`:
/// appends the messages to `out` and says whether the exchange is over.
/// Pure (what [`Rtnl::request`] does with each datagram), so that the
/// rules can be tested without a kernel.
pub fn read_datagram(
    op: &str,
    bytes: &[u8],
    seq: u32,
    port: u32,
    expect: Expect,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Result<Progress, Error> {
    match transport::read_datagram(bytes, port, seq, seq, reply_reader(expect, out)) {
        Ok(transport::Progress::Done) => Ok(Progress::Done),
        Ok(_) => Ok(Progress::More),
        Err(e) => Err(Error::at(op, &e)),
    }
}

/// The batch of the writes `requests` (each a route message and its
/// flags beyond `NLM_F_ACK`), every one acknowledged, numbered from
/// `first` and sent from `port`: ipvs-netlink's batch machine
/// ([`Batch`]) reads their replies.
pub fn ack_batch<M>(port: u32, first: u32, requests: impl IntoIterator<Item = (M, u16)>) -> Batch
where
    M: netlink_packet_core::NetlinkSerializable + fmt::Debug,
{
    let mut batch = Batch::new(port, first);
    for (msg, flags) in requests {
        batch.push(Expect::Ack, |header, out| {
            header.flags |= flags;
            batch::emit(out, header, msg);
        });
    }
    batch
}

/// How many writes [`Rtnl::add_addresses`] sends in one datagram: their
/// acknowledgements (36 bytes, or about 100 echoing a refused request)
/// fit any receive buffer many times over.
pub const PIPELINE: usize = 128;

/// A blocking rtnetlink socket.
#[derive(Debug)]
pub struct Rtnl {
    transport: Transport,
}

impl Rtnl {
    /// Opens a socket in the caller's network namespace.
    pub fn open() -> Result<Rtnl, Error> {
        let transport = Transport::open(NETLINK_ROUTE, RECV_BUFFER, TIMEOUT)
            .map_err(|e| Error::at("opening an rtnetlink socket", &e))?;
        Ok(Rtnl { transport })
    }

    /// Sends `msg` and reads its replies.
    pub fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
        expect: Expect,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        let seq = self.transport.next_seq();
        let mut bytes = Vec::new();
        self.transport.append(&mut bytes, msg, flags, seq);
        self.transport.send(&bytes).map_err(|e| Error::at(op, &e))?;
        let mut out = Vec::new();
        self.transport
            .receive(seq, seq, reply_reader(expect, &mut out))
            .map_err(|e| Error::at(op, &e))?;
        Ok(out)
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

    /// Deletes the interface of index `index`.
    pub fn delete_link(&mut self, index: u32) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(
            &format!("deleting interface {index}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
            Expect::Ack,
        )?;
        Ok(())
    }

    /// Sets the interface of index `index` up (IPv6 takes a route through
    /// an interface only while it is up); nothing changes if it is.
    pub fn set_up(&mut self, index: u32) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("setting interface {index} up"),
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
            Expect::Ack,
        )?;
        Ok(())
    }

    /// Creates a dummy interface named `name` (left down, as kube-proxy
    /// leaves kube-ipvs0), then gives it the alias [`CREATED_ALIAS`] (the
    /// kernel sets an alias on an existing link only, not at creation).
    pub fn add_dummy(&mut self, name: &str) -> Result<(), Error> {
        self.create_dummy(name)?;
        let Some(link) = self.link(name)? else {
            return Ok(());
        };
        let mut msg = LinkMessage::default();
        msg.header.index = link.index;
        msg.attributes
            .push(LinkAttribute::IfAlias(CREATED_ALIAS.to_owned()));
        self.request(
            &format!("naming interface {name} as created by ipvsadm-rs"),
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
            Expect::Ack,
        )?;
        Ok(())
    }

    fn create_dummy(&mut self, name: &str) -> Result<(), Error> {
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
        self.dump(
            "listing addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            |r| match r {
                RouteNetlinkMessage::NewAddress(a) => address_of(a),
                _ => None,
            },
        )
    }

    /// Adds each of `ips` alone to interface `index` (a host prefix, and
    /// refused if already there), [`PIPELINE`] requests per datagram:
    /// one result per address, in order. A socket that fails or a reply
    /// that does not read fails every address not yet answered.
    pub fn add_addresses(&mut self, index: u32, ips: &[IpAddr]) -> Vec<Result<(), Error>> {
        self.pipelined(ips, |ip| {
            (
                format!("adding {ip} to interface {index}"),
                RouteNetlinkMessage::NewAddress(address_message(
                    index,
                    *ip,
                    host_prefix(*ip),
                    true,
                )),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        })
    }

    /// Every local route of this tool ([`ROUTE_PROTOCOL`] in the local
    /// table, a host prefix, of type `local`), of every interface.
    pub fn local_routes(&mut self) -> Result<Vec<LocalRoute>, Error> {
        self.dump(
            "listing routes",
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            |r| match r {
                RouteNetlinkMessage::NewRoute(m) => local_route_of(m),
                _ => None,
            },
        )
    }

    /// Dumps `msg` (doing `op`) and keeps what `pick` takes of each reply.
    fn dump<T>(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        pick: impl Fn(&RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>, Error> {
        let replies = self.request(op, msg, NLM_F_DUMP, Expect::Dump)?;
        Ok(replies.iter().filter_map(pick).collect())
    }

    /// Adds a local route of this tool for each of `ips` through
    /// interface `index` (refused if already there): the kernel then
    /// takes packets to them as its own, as it does for an address, but
    /// without walking the interface's address list on every add.
    /// Pipelined as [`Rtnl::add_addresses`]; one result per address.
    pub fn add_local_routes(&mut self, index: u32, ips: &[IpAddr]) -> Vec<Result<(), Error>> {
        self.pipelined(ips, |ip| {
            (
                format!("adding a local route for {ip} through interface {index}"),
                RouteNetlinkMessage::NewRoute(local_route_message(index, *ip)),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        })
    }

    /// Removes this tool's local route of each of `ips` through interface
    /// `index`. Pipelined as [`Rtnl::add_addresses`]; one result per
    /// address.
    pub fn delete_local_routes(&mut self, index: u32, ips: &[IpAddr]) -> Vec<Result<(), Error>> {
        self.pipelined(ips, |ip| {
            (
                format!("removing the local route for {ip} through interface {index}"),
                RouteNetlinkMessage::DelRoute(local_route_message(index, *ip)),
                0,
            )
        })
    }

    /// Sends one acked request per item, [`PIPELINE`] per datagram: one
    /// result per item, in order. `request` gives what is asked (for the
    /// error), the message and its flags (`NLM_F_ACK` is added).
    fn pipelined<T>(
        &mut self,
        items: &[T],
        request: impl Fn(&T) -> (String, RouteNetlinkMessage, u16),
    ) -> Vec<Result<(), Error>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(PIPELINE) {
            let requests: Vec<_> = chunk.iter().map(&request).collect();
            let first = self.transport.next_seqs(requests.len());
            let mut ops = Vec::with_capacity(requests.len());
            let messages = requests.into_iter().map(|(op, msg, flags)| {
                ops.push(op);
                (msg, flags)
            });
            let mut batch = ack_batch(self.transport.port(), first, messages.collect::<Vec<_>>());
            let failure = self.transport.exchange_batch(&mut batch, |_| Ok(())).err();
            for (op, outcome) in ops.iter().zip(batch.outcomes()) {
                out.push(match (outcome, &failure) {
                    (Outcome::Ok, _) => Ok(()),
                    (Outcome::Refused(errno), _) => Err(Error::Kernel {
                        op: op.clone(),
                        errno,
                    }),
                    (Outcome::Unknown, None) => Err(Error::Timeout { op: op.clone() }),
                    (Outcome::Unknown, Some(f)) => Err(Error::at(op, f)),
                });
            }
        }
        out
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

/// `ip route add local IP/32 dev INDEX table local proto 118 scope host`
/// (or its deletion: the kernel matches the same fields).
fn local_route_message(index: u32, ip: IpAddr) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.header.destination_prefix_length = host_prefix(ip);
    msg.header.table = RT_TABLE_LOCAL;
    msg.header.protocol = RouteProtocol::Other(ROUTE_PROTOCOL);
    msg.header.scope = RouteScope::Host;
    msg.header.kind = RouteType::Local;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(ip)));
    msg.attributes.push(RouteAttribute::Oif(index));
    msg.attributes.push(RouteAttribute::Priority(ROUTE_METRIC));
    msg
}

/// The route of `msg` when it is one of this tool's local routes.
fn local_route_of(msg: &RouteMessage) -> Option<LocalRoute> {
    let h = &msg.header;
    let ours = u8::from(h.protocol) == ROUTE_PROTOCOL && h.kind == RouteType::Local;
    let mut table = u32::from(h.table);
    let (mut ip, mut index) = (None, None);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => ip = Some(IpAddr::V6(*a)),
            RouteAttribute::Oif(i) => index = Some(*i),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    let ip = ip?;
    (ours && table == u32::from(RT_TABLE_LOCAL) && h.destination_prefix_length == host_prefix(ip))
        .then_some(LocalRoute { index: index?, ip })
}

fn link_of(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        alias: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
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
    use netlink_packet_core::{DoneMessage, ErrorMessage, NetlinkMessage, NetlinkPayload};
    use std::num::NonZeroI32;

    const PORT: u32 = 4242;

    /// The local routes of proto 118 as iproute2 lists them: `(dst, dev)`.
    fn ip_local_routes(family: &str) -> Vec<(String, String)> {
        let out = std::process::Command::new("ip")
            .args([
                family, "-j", "route", "show", "table", "local", "proto", "118",
            ])
            .output()
            .expect("iproute2's ip");
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut routes: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .inspect(|r| assert_eq!(r["type"], "local", "{r}"))
            .map(|r| {
                (
                    r["dst"].as_str().unwrap().to_owned(),
                    r["dev"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        routes.sort();
        routes
    }

    #[test]
    fn local_routes_are_what_iproute2_lists_and_the_kernel_takes_as_local() {
        crate::node::testns::in_new_netns(
            "local_routes_are_what_iproute2_lists_and_the_kernel_takes_as_local",
            || {
                let mut rtnl = Rtnl::open().unwrap();
                let lo = rtnl.link("lo").unwrap().unwrap().index;
                // IPv6 routes through a down interface are refused: the
                // dummy interface is set up with --local-routes.
                rtnl.set_up(lo).unwrap();
                let ips: Vec<IpAddr> = ["10.96.0.1", "10.96.0.10", "fd00::10"]
                    .iter()
                    .map(|s| s.parse().unwrap())
                    .collect();
                for r in rtnl.add_local_routes(lo, &ips) {
                    r.unwrap();
                }
                let pair = |d: &str| (d.to_owned(), "lo".to_owned());
                assert_eq!(
                    ip_local_routes("-4"),
                    [pair("10.96.0.1"), pair("10.96.0.10")]
                );
                assert_eq!(ip_local_routes("-6"), [pair("fd00::10")]);
                // The kernel routes them as the node's own.
                let get = std::process::Command::new("ip")
                    .args(["route", "get", "10.96.0.10"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&get.stdout);
                assert!(text.starts_with("local 10.96.0.10 dev lo"), "{text}");
                // Our listing reads them back, and nothing else of the
                // local table (lo's own 127.0.0.0/8 is not ours).
                let mut ours = rtnl.local_routes().unwrap();
                ours.sort();
                let want: Vec<LocalRoute> =
                    ips.iter().map(|&ip| LocalRoute { index: lo, ip }).collect();
                assert_eq!(ours, want);
                // Beside an address of the same IP (whose own local route
                // the kernel keeps): both, and the route stays when the
                // address goes.
                let both: IpAddr = "10.96.0.20".parse().unwrap();
                for r in rtnl.add_addresses(lo, &[both]) {
                    r.unwrap();
                }
                for r in rtnl.add_local_routes(lo, &[both]) {
                    r.unwrap();
                }
                let addr = Address {
                    index: lo,
                    ip: both,
                    prefix_len: 32,
                };
                rtnl.delete_address(&addr).unwrap();
                let get = std::process::Command::new("ip")
                    .args(["route", "get", "10.96.0.20"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&get.stdout);
                assert!(text.starts_with("local 10.96.0.20 dev lo"), "{text}");
                for r in rtnl.delete_local_routes(lo, &[both]) {
                    r.unwrap();
                }
                // A second add is refused, one result per address.
                let again = rtnl.add_local_routes(lo, &ips[..1]);
                assert_eq!(again[0].as_ref().unwrap_err().errno(), Some(libc::EEXIST));
                for r in rtnl.delete_local_routes(lo, &ips) {
                    r.unwrap();
                }
                assert!(ip_local_routes("-4").is_empty());
                assert!(ip_local_routes("-6").is_empty());
                assert!(rtnl.local_routes().unwrap().is_empty());
            },
        );
    }

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
        let ips: Vec<IpAddr> = ["10.96.0.1", "fd00::1", "10.96.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let requests = ips.iter().map(|ip| {
            let msg = address_message(3, *ip, host_prefix(*ip), true);
            (
                RouteNetlinkMessage::NewAddress(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        });
        let mut batch = ack_batch(PORT, 10, requests);
        // The datagram holds the three route messages, as a kernel (here
        // netlink-packet-route's parser) reads them.
        let sent = batch.datagram().to_vec();
        let mut at = 0;
        for (i, ip) in ips.iter().enumerate() {
            let nl = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&sent[at..]).unwrap();
            assert_eq!(nl.header.sequence_number, 10 + i as u32);
            assert_eq!(nl.header.port_number, PORT);
            assert_eq!(
                nl.header.flags,
                netlink_packet_core::NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
            );
            match nl.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => {
                    assert_eq!(address_of(&a).map(|a| a.ip), Some(*ip));
                }
                other => panic!("{other:?}"),
            }
            at += nl.header.length as usize;
        }
        assert_eq!(at, sent.len());
        // In order, with a stale ack of an earlier request skipped; the
        // last comes in a datagram of its own.
        let bytes = datagram(&[(9, PORT, ack(0)), (10, PORT, ack(0)), (11, PORT, ack(-17))]);
        batch.read(&bytes, |_| Ok(())).unwrap();
        assert_eq!(
            batch.outcomes(),
            [Outcome::Ok, Outcome::Refused(17), Outcome::Unknown]
        );
        let bytes = datagram(&[(12, PORT, ack(-99))]);
        batch.read(&bytes, |_| Ok(())).unwrap();
        assert!(batch.is_complete());
        assert_eq!(
            batch.outcomes(),
            [Outcome::Ok, Outcome::Refused(17), Outcome::Refused(99)]
        );
    }

    #[test]
    fn pipelined_acks_refuse_what_is_not_theirs() {
        let two = || {
            let msg = |ip: &str| {
                let ip = ip.parse().unwrap();
                RouteNetlinkMessage::NewAddress(address_message(3, ip, 32, true))
            };
            ack_batch(PORT, 10, [(msg("10.0.0.1"), 0), (msg("10.0.0.2"), 0)])
        };
        let refused = |bytes: &[u8]| {
            let mut batch = two();
            let e = batch.read(bytes, |_| Ok(())).unwrap_err().to_string();
            assert_eq!(batch.outcomes(), [Outcome::Unknown, Outcome::Unknown]);
            e
        };
        assert!(refused(&datagram(&[(12, PORT, ack(0))]))
            .contains("reply with sequence number 12 to requests 10..=11"));
        assert!(refused(&datagram(&[(10, PORT + 1, ack(0))])).contains("port"));
        assert!(refused(&datagram(&[(10, PORT, done())])).contains("not an acknowledgement"));
        assert!(!refused(&[1, 2, 3]).is_empty());
        // The kernel answers in order: a gap or a reply out of order is
        // not guessed at.
        assert!(refused(&datagram(&[(11, PORT, ack(0))])).contains("no reply to request 10"));
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
