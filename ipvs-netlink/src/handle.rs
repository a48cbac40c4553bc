//! A blocking handle on the kernel's IPVS table over the netlink
//! [`crate::transport`].

use std::collections::HashSet;
use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use netlink_packet_core::{NetlinkHeader, ParseableParametrized};
use netlink_packet_generic::constants::GENL_ID_CTRL;
use netlink_packet_generic::ctrl::GenlCtrl;
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket};

use crate::error::{Error, Operation, Result};
use crate::op::MAX_IN_FLIGHT;
use crate::reply;
use crate::request::{self, Body};
use crate::transport::{self, Direction, Expect, Transport};
use crate::{Daemon, Destination, Info, IpvsCmd, IpvsMessage, Service, ServiceId, Timeouts};

/// How long a request waits for its reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The receive buffer of the service dump's socket. The kernel sizes the
/// skbs of a dump after the largest buffer the reader has offered on that
/// socket, up to 32 KiB; large skbs matter for the service dump, which
/// the kernel resumes by walking its table from the start for each
/// datagram (quadratic in the number of datagrams). Every IPVS message is
/// well under 1 KiB; a datagram larger than the length offered is
/// reported as truncated, never cut silently.
pub(crate) const RECV_BUFFER: usize = 64 * 1024;
/// The socket receive buffer (the kernel's `sk_rcvbuf`, what
/// `SO_RCVBUF` reports) a handle opened by [`Handle::new`] asks for at
/// least (so does [`Handle::in_netns`]): room for the replies of [`crate::MAX_IN_FLIGHT`] failing
/// writes at 1,280 bytes each (an error reply echoes its request; the
/// kernel counts it with its allocation, 768 bytes for most requests and
/// 1,280 for the largest), so that a batch never loses replies however
/// low `net.core.rmem_default` is set.
pub const MIN_RECEIVE_BUFFER: usize = MAX_IN_FLIGHT * 1280;
/// The socket send buffer a handle opened by [`Handle::new`] asks for at
/// least: room for one datagram of [`crate::MAX_IN_FLIGHT`] requests of
/// up to 512 bytes each (the largest IPVS request is under 300), since
/// the kernel refuses a datagram larger than the send buffer
/// (`EMSGSIZE`) however low `net.core.wmem_default` is set.
pub const MIN_SEND_BUFFER: usize = MAX_IN_FLIGHT * 512;

/// A blocking handle on the IPVS table of the network namespace its socket
/// was opened in.
///
/// Two netlink sockets (the second only for the service dump, see
/// [`Handle::for_each_service`]), the family id resolved once, a sequence number per
/// request checked on every reply, dumps followed to `NLMSG_DONE`, and a
/// receive timeout so a lost reply is an error, never a hang. A `Handle`
/// is `Send`; methods take `&mut self`, one request at a time.
///
/// ```no_run
/// use ipvs_netlink::{Destination, Handle, Service, ServiceId};
///
/// # fn main() -> Result<(), ipvs_netlink::Error> {
/// let mut ipvs = Handle::new()?;
/// let id = ServiceId::tcp("10.97.97.97:80".parse().unwrap());
/// ipvs.add_service(&Service::new(id, "rr"))?;
/// ipvs.add_destination(&id, &Destination::new("10.244.1.39:80".parse().unwrap()))?;
/// for svc in ipvs.services()? {
///     println!("{} {}", svc.id, svc.scheduler);
///     for rs in ipvs.destinations(&svc.id)? {
///         println!("  -> {} weight {}", rs.socket_addr(), rs.weight);
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct Handle {
    /// The socket of every request but the service dump: its receives
    /// offer a page (see [`small_recv_len`]), or [`RECV_BUFFER`] over a
    /// caller's socket, where it carries the service dump too.
    pub(crate) main: Transport,
    /// A second socket of the same namespace for the service dump, whose
    /// receives offer [`RECV_BUFFER`]; `None` over a caller's socket.
    /// Swapped with `main` for the length of that dump.
    bulk: Option<Transport>,
    family_id: u16,
    /// The request being sent, reused from one request to the next.
    out: Vec<u8>,
}

impl Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("family_id", &self.family_id)
            .field("main", &self.main)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Opens the netlink sockets in the caller's network namespace and
    /// resolves the IPVS family. [`Error::NotAvailable`] when the kernel
    /// has no IPVS.
    pub fn new() -> Result<Self> {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }

    /// Like [`Handle::new`] with a receive timeout of `timeout`.
    pub fn with_timeout(timeout: Duration) -> Result<Self> {
        Self::open(Sockets::open(Place::Here)?, timeout)
    }

    /// Builds a handle over a socket the caller supplies, which must
    /// behave as a connected datagram socket to the kernel's generic
    /// netlink (a test may put a fake kernel on the other end of a
    /// `socketpair`). `port_id` is the netlink port the replies are
    /// addressed to. The IPVS family is resolved over the socket.
    pub fn from_socket(fd: OwnedFd, port_id: u32, timeout: Duration) -> Result<Self> {
        Self::open(Sockets::open(Place::Supplied(fd, port_id))?, timeout)
    }

    /// A handle over `sockets`, the IPVS family resolved.
    pub(crate) fn open(sockets: Sockets, timeout: Duration) -> Result<Self> {
        let at = |e| Error::at(Operation::ResolveFamily, e);
        let transport = |(socket, port, recv_len): (Socket, u32, usize)| {
            Transport::from_socket(socket, port, recv_len, timeout).map_err(at)
        };
        let mut handle = Handle {
            main: transport(sockets.main)?,
            bulk: sockets.bulk.map(transport).transpose()?,
            family_id: 0,
            out: Vec::new(),
        };
        handle.family_id = handle.resolve_family()?;
        Ok(handle)
    }

    /// Changes the receive timeout.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        let at = |e| Error::at(Operation::ResolveFamily, e);
        self.main.set_timeout(timeout).map_err(at)?;
        if let Some(bulk) = self.bulk.as_mut() {
            bulk.set_timeout(timeout).map_err(at)?;
        }
        Ok(())
    }

    /// Calls `tracer` with every datagram sent and received (for debugging
    /// and for capturing fixtures).
    pub fn set_tracer(&mut self, tracer: impl FnMut(Direction, &[u8]) + Send + 'static) {
        self.main.set_tracer(tracer);
    }

    /// The generic-netlink family id of IPVS in this kernel.
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    /// IPVS version and connection table size.
    pub fn info(&mut self) -> Result<Info> {
        let op = Operation::GetInfo;
        let replies = self.exchange(op, IpvsCmd::GetInfo, Body::Empty, Expect::Reply)?;
        reply::info(&replies).map_err(|e| Error::at(op, e))
    }

    /// Every service of the table, in the kernel's (hash) order.
    ///
    /// IPVS dumps do not flag a table changed between two reads of one
    /// dump (it never sets `NLM_F_DUMP_INTR`), so a concurrent writer can
    /// make a dump miss or repeat an entry; repeats are dropped here.
    pub fn services(&mut self) -> Result<Vec<Service>> {
        let mut out = Vec::new();
        self.for_each_service(|svc| out.push(svc))?;
        Ok(out)
    }

    /// Streams the service dump: `f` gets each service as its datagram is
    /// decoded, so memory stays bounded by one datagram and the set of
    /// identities seen (used to drop repeats, as [`Handle::services`]
    /// does), whatever the size of the table. If `f` or the dump fails,
    /// the services already passed to `f` are all there is.
    ///
    /// The dump goes over the handle's second socket (when it has one),
    /// whose datagrams are large, so that the destination dumps on the
    /// first keep small ones.
    pub fn for_each_service(&mut self, mut f: impl FnMut(Service)) -> Result<()> {
        self.try_for_each_service(|s| {
            f(s);
            ControlFlow::<std::convert::Infallible>::Continue(())
        })
        .map(|_| ())
    }

    /// Walks the service dump as [`Handle::for_each_service`] until `f`
    /// breaks: what it broke with, or `Continue` when it saw every
    /// service. The rest of the dump is still read off the socket (the
    /// kernel sends it whole, and the next request must not read it) but
    /// not decoded.
    ///
    /// ```no_run
    /// use std::ops::ControlFlow;
    /// use ipvs_netlink::Handle;
    ///
    /// let mut h = Handle::new()?;
    /// // The first service with no persistence, if any.
    /// let found = h.try_for_each_service(|s| {
    ///     if s.timeout == 0 { ControlFlow::Break(s.id) } else { ControlFlow::Continue(()) }
    /// })?;
    /// if let ControlFlow::Break(id) = found {
    ///     println!("{id}");
    /// }
    /// # Ok::<(), ipvs_netlink::Error>(())
    /// ```
    pub fn try_for_each_service<B>(
        &mut self,
        f: impl FnMut(Service) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>> {
        // On the bulk socket: its skbs stay large (see RECV_BUFFER) while
        // the main socket's stay small for the destination dumps.
        self.swap_bulk();
        let result = self.service_dump(f);
        self.swap_bulk();
        result
    }

    /// Swaps the main socket with the bulk one (when there is one); the
    /// tracer stays on `main`.
    fn swap_bulk(&mut self) {
        if let Some(bulk) = self.bulk.as_mut() {
            std::mem::swap(&mut self.main, bulk);
            self.main.swap_tracer(bulk);
        }
    }

    fn service_dump<B>(
        &mut self,
        mut f: impl FnMut(Service) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>> {
        let op = Operation::ListServices;
        let mut seen = HashSet::new();
        let mut flow = ControlFlow::Continue(());
        self.exchange_with(op, IpvsCmd::GetService, Body::Empty, Expect::Dump, |msg| {
            if flow.is_break() {
                return Ok(());
            }
            if let Some(svc) = reply::service(&msg)? {
                if seen.insert(svc.id) {
                    flow = f(svc);
                }
            }
            Ok(())
        })?;
        Ok(flow)
    }

    /// One service, or `None` when the table has no such service.
    pub fn service(&mut self, id: &ServiceId) -> Result<Option<Service>> {
        let op = Operation::GetService;
        match self.exchange(op, IpvsCmd::GetService, Body::ServiceId(id), Expect::Reply) {
            Ok(replies) => replies
                .iter()
                .find(|m| m.service_attrs().is_some())
                .map_or(Ok(None), reply::service)
                .map_err(|e| Error::at(op, e)),
            Err(Error::Kernel { errno, .. }) if errno == libc::ESRCH => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds a service (EEXIST if it exists, ENOENT for an unknown
    /// scheduler or persistence engine).
    pub fn add_service(&mut self, svc: &Service) -> Result<()> {
        self.write(
            Operation::AddService,
            IpvsCmd::NewService,
            Body::Service(svc),
        )
    }

    /// Replaces a service's scheduler, flags, timeout, netmask and
    /// persistence engine (ESRCH if it does not exist).
    pub fn edit_service(&mut self, svc: &Service) -> Result<()> {
        self.write(
            Operation::EditService,
            IpvsCmd::SetService,
            Body::Service(svc),
        )
    }

    /// Deletes a service and its destinations (ESRCH if missing).
    pub fn delete_service(&mut self, id: &ServiceId) -> Result<()> {
        self.write(
            Operation::DeleteService,
            IpvsCmd::DelService,
            Body::ServiceId(id),
        )
    }

    /// The destinations of a service, newest first as the kernel keeps
    /// them. A service that does not exist has none (the kernel answers
    /// its dump with nothing, not with an error).
    pub fn destinations(&mut self, id: &ServiceId) -> Result<Vec<Destination>> {
        let mut out = Vec::new();
        self.for_each_destination(id, |dest| out.push(dest))?;
        Ok(out)
    }

    /// Streams the destination dump of a service, as
    /// [`Handle::for_each_service`] streams services; repeats (by address
    /// and port) are dropped.
    pub fn for_each_destination(
        &mut self,
        id: &ServiceId,
        mut f: impl FnMut(Destination),
    ) -> Result<()> {
        self.try_for_each_destination(id, |d| {
            f(d);
            ControlFlow::<std::convert::Infallible>::Continue(())
        })
        .map(|_| ())
    }

    /// Walks the destination dump of a service until `f` breaks, as
    /// [`Handle::try_for_each_service`] walks the services.
    pub fn try_for_each_destination<B>(
        &mut self,
        id: &ServiceId,
        mut f: impl FnMut(Destination) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>> {
        let op = Operation::ListDestinations;
        let family = id.family();
        let mut seen = HashSet::new();
        let mut flow = ControlFlow::Continue(());
        let seq = self.send_request(op, IpvsCmd::GetDest, Body::ServiceId(id), Expect::Dump)?;
        let family_id = self.family_id;
        // Each reply is read straight into a Destination.
        self.receive_raw(op, seq, family_id, Expect::Dump, |payload| {
            if flow.is_break() {
                return Ok(());
            }
            if let Some(dest) = reply::destination(payload, family)? {
                if seen.insert(dest.socket_addr()) {
                    flow = f(dest);
                }
            }
            Ok(())
        })?;
        Ok(flow)
    }

    /// Adds a destination to a service (ESRCH: no such service, EEXIST:
    /// the destination exists).
    pub fn add_destination(&mut self, id: &ServiceId, dest: &Destination) -> Result<()> {
        self.write(
            Operation::AddDestination,
            IpvsCmd::NewDest,
            Body::Dest(id, dest),
        )
    }

    /// Replaces a destination's forwarding method, weight, thresholds and
    /// tunnel settings (ENOENT: no such destination).
    pub fn edit_destination(&mut self, id: &ServiceId, dest: &Destination) -> Result<()> {
        self.write(
            Operation::EditDestination,
            IpvsCmd::SetDest,
            Body::Dest(id, dest),
        )
    }

    /// Deletes a destination (ENOENT: no such destination).
    pub fn delete_destination(&mut self, id: &ServiceId, addr: SocketAddr) -> Result<()> {
        self.write(
            Operation::DeleteDestination,
            IpvsCmd::DelDest,
            Body::DestId(id, addr),
        )
    }

    /// Deletes every service.
    pub fn flush(&mut self) -> Result<()> {
        self.write(Operation::Flush, IpvsCmd::Flush, Body::Empty)
    }

    /// Zeroes the counters of one service, or of every service with
    /// `None` (ESRCH: no such service).
    pub fn zero(&mut self, id: Option<&ServiceId>) -> Result<()> {
        let body = id.map_or(Body::Empty, Body::ServiceId);
        self.write(Operation::Zero, IpvsCmd::Zero, body)
    }

    /// The tcp, tcpfin and udp connection timeouts.
    pub fn timeouts(&mut self) -> Result<Timeouts> {
        let op = Operation::GetTimeouts;
        let replies = self.exchange(op, IpvsCmd::GetConfig, Body::Empty, Expect::Reply)?;
        Ok(reply::timeouts(&replies))
    }

    /// Sets the timeouts; a value of 0 keeps the current one.
    pub fn set_timeouts(&mut self, t: &Timeouts) -> Result<()> {
        self.write(
            Operation::SetTimeouts,
            IpvsCmd::SetConfig,
            Body::Timeouts(t),
        )
    }

    /// The running sync daemons (none, one or two).
    pub fn daemons(&mut self) -> Result<Vec<Daemon>> {
        let op = Operation::ListDaemons;
        let mut out = Vec::new();
        self.exchange_with(op, IpvsCmd::GetDaemon, Body::Empty, Expect::Dump, |msg| {
            out.extend(reply::daemon(&msg)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Starts a sync daemon (EEXIST: already running; ENODEV: no such
    /// interface).
    pub fn start_daemon(&mut self, daemon: &Daemon) -> Result<()> {
        self.write(
            Operation::StartDaemon,
            IpvsCmd::NewDaemon,
            Body::Daemon(daemon),
        )
    }

    /// Stops the sync daemon of `daemon.state` (ESRCH: none running). The
    /// interface and sync id are sent as ipvsadm sends them.
    pub fn stop_daemon(&mut self, daemon: &Daemon) -> Result<()> {
        self.write(
            Operation::StopDaemon,
            IpvsCmd::DelDaemon,
            Body::DaemonId(daemon),
        )
    }

    /// Sends any IPVS message and returns the replies: for `dump` every
    /// message up to `NLMSG_DONE`, otherwise the reply of a doit GET or
    /// nothing for an acknowledged write (commands whose name starts with
    /// `Get` are sent without `NLM_F_ACK`). An escape hatch for what the
    /// typed methods do not cover.
    pub fn request(&mut self, msg: IpvsMessage, dump: bool) -> Result<Vec<IpvsMessage>> {
        let expect = match (dump, msg.cmd) {
            (true, _) => Expect::Dump,
            (false, IpvsCmd::GetService | IpvsCmd::GetInfo | IpvsCmd::GetConfig) => Expect::Reply,
            _ => Expect::Ack,
        };
        // The caller's message is given typed: it is emitted through the
        // packet layer, the one request not written by `wire`.
        let op = Operation::Raw(msg.cmd);
        let mut genl = GenlMessage::from_payload(msg);
        genl.set_resolved_family_id(self.family_id);
        let seq = self.send(op, genl, expect)?;
        let mut out = Vec::new();
        let family_id = self.family_id;
        self.receive(op, seq, family_id, expect, |m| {
            out.push(m);
            Ok(())
        })?;
        Ok(out)
    }

    fn write(&mut self, op: Operation, cmd: IpvsCmd, body: Body<'_>) -> Result<()> {
        self.exchange_with(op, cmd, body, Expect::Ack, |_| Ok(()))
    }

    fn exchange(
        &mut self,
        op: Operation,
        cmd: IpvsCmd,
        body: Body<'_>,
        expect: Expect,
    ) -> Result<Vec<IpvsMessage>> {
        let mut out = Vec::new();
        self.exchange_with(op, cmd, body, expect, |m| {
            out.push(m);
            Ok(())
        })?;
        Ok(out)
    }

    /// Sends the request `cmd` with `body` and hands each reply, parsed,
    /// to `on_msg`.
    fn exchange_with(
        &mut self,
        op: Operation,
        cmd: IpvsCmd,
        body: Body<'_>,
        expect: Expect,
        on_msg: impl FnMut(IpvsMessage) -> transport::Result<()>,
    ) -> Result<()> {
        let seq = self.send_request(op, cmd, body, expect)?;
        let family_id = self.family_id;
        self.receive(op, seq, family_id, expect, on_msg)
    }

    /// Sends the request `cmd` with `body`, written by [`request::encode`];
    /// its sequence number.
    fn send_request(
        &mut self,
        op: Operation,
        cmd: IpvsCmd,
        body: Body<'_>,
        expect: Expect,
    ) -> Result<u32> {
        let seq = self.main.next_seq();
        let mut bytes = std::mem::take(&mut self.out);
        bytes.clear();
        let port = self.main.port();
        request::encode(
            cmd,
            body,
            &request_header(self.family_id, expect.flags(), seq, port),
            &mut bytes,
        );
        let sent = self.main.send(&bytes);
        self.out = bytes;
        sent.map(|()| seq).map_err(|e| Error::at(op, e))
    }

    fn resolve_family(&mut self) -> Result<u16> {
        let op = Operation::ResolveFamily;
        let seq = self.send(op, reply::family_request(), Expect::Reply)?;
        let mut id = None;
        let result = self.receive(op, seq, GENL_ID_CTRL, Expect::Reply, |r: GenlCtrl| {
            id = reply::family_id(&r);
            Ok(())
        });
        let refused = match result {
            Err(Error::Kernel { errno, .. }) => Some(errno),
            Err(e) => return Err(e),
            Ok(()) => None,
        };
        reply::resolved_family(refused, id)
    }

    /// Sends a typed generic-netlink request (the family lookup, and
    /// [`Handle::request`]'s messages); its sequence number.
    fn send<F>(&mut self, op: Operation, genl: GenlMessage<F>, expect: Expect) -> Result<u32>
    where
        F: GenlFamily + netlink_packet_core::Emitable + Debug,
    {
        let seq = self.main.next_seq();
        let mut bytes = Vec::new();
        self.main.append(&mut bytes, genl, expect.flags(), seq);
        self.main.send(&bytes).map_err(|e| Error::at(op, e))?;
        Ok(seq)
    }

    /// Reads the replies to `seq` until `expect` is met, each reply of
    /// `msg_type` parsed as a generic-netlink message of `F`. Replies to
    /// earlier requests (say, one that timed out) are skipped; a sequence
    /// number not yet sent, a foreign port or a malformed message is an
    /// error.
    fn receive<F>(
        &mut self,
        op: Operation,
        seq: u32,
        msg_type: u16,
        expect: Expect,
        mut on_msg: impl FnMut(F) -> transport::Result<()>,
    ) -> Result<()>
    where
        F: ParseableParametrized<[u8], GenlHeader> + Debug,
    {
        self.receive_raw(op, seq, msg_type, expect, |payload| {
            let genl = GenlMessage::<F>::parse_with_param(payload, msg_type).map_err(decode)?;
            on_msg(genl.payload)
        })
    }

    /// [`Handle::receive`] handing over the bytes of each reply of
    /// `msg_type` (generic-netlink header and attributes) unparsed.
    fn receive_raw(
        &mut self,
        op: Operation,
        seq: u32,
        msg_type: u16,
        expect: Expect,
        mut on_payload: impl FnMut(&[u8]) -> transport::Result<()>,
    ) -> Result<()> {
        self.main
            .receive_replies(seq, expect, |kind, payload| {
                if kind != msg_type {
                    return Err(transport::Error::Protocol(format!(
                        "unexpected message type {kind}"
                    )));
                }
                on_payload(payload)
            })
            .map_err(|e| Error::at(op, e))
    }
}

/// The handle's main netlink socket (for socket options such as
/// `SO_RCVBUF`; reading or writing it behind the handle's back breaks the
/// exchange).
impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.main.as_fd()
    }
}

/// The handle's netlink socket, as [`AsFd`] gives it.
impl AsRawFd for Handle {
    fn as_raw_fd(&self) -> RawFd {
        self.main.as_raw_fd()
    }
}

/// Raises the socket's receive and send buffers to [`MIN_RECEIVE_BUFFER`]
/// and [`MIN_SEND_BUFFER`] when they are smaller
/// ([`transport::raise_buffers`]; `CAP_NET_ADMIN`, which every IPVS
/// command needs, lifts the system's caps). Best effort: with smaller
/// buffers a batch may lose replies (reported as [`Error::ReplyLost`])
/// or be refused.
pub(crate) fn raise_buffers(socket: &Socket) {
    transport::raise_buffers(socket, MIN_RECEIVE_BUFFER, MIN_SEND_BUFFER);
}

/// Where a handle's sockets come from.
pub(crate) enum Place {
    /// Opened in the calling thread's network namespace.
    Here,
    /// The main and bulk sockets, each with its port, opened elsewhere
    /// (in another network namespace, by [`crate::netns::socket_in`]).
    Opened((Socket, u32), (Socket, u32)),
    /// The caller's socket and its port (no bulk socket).
    Supplied(OwnedFd, u32),
}

/// A handle's sockets, each with its port and the receive length its
/// reads offer: what the blocking [`Handle`] and the async handle are
/// built over, decided once here.
pub(crate) struct Sockets {
    /// The socket of every request: reads offer a page
    /// ([`small_recv_len`]) beside a bulk socket, else [`RECV_BUFFER`].
    pub(crate) main: (Socket, u32, usize),
    /// The socket of the service dump, reads of [`RECV_BUFFER`]; none
    /// over a caller's socket.
    pub(crate) bulk: Option<(Socket, u32, usize)>,
}

impl Sockets {
    /// Opens (or takes) the sockets of a handle at `place`.
    pub(crate) fn open(place: Place) -> Result<Self> {
        let ((main, port), (bulk, bulk_port)) = match place {
            Place::Here => open_sockets()?,
            Place::Opened(main, bulk) => (main, bulk),
            Place::Supplied(fd, port) => {
                // SAFETY: `into_raw_fd` hands over an open descriptor that
                // nothing else owns; `Socket` takes that ownership and
                // closes it on drop.
                let socket = unsafe { Socket::from_raw_fd(fd.into_raw_fd()) };
                return Ok(Sockets {
                    main: (socket, port, RECV_BUFFER),
                    bulk: None,
                });
            }
        };
        Ok(Sockets {
            main: (main, port, small_recv_len()),
            bulk: Some((bulk, bulk_port, RECV_BUFFER)),
        })
    }
}

/// The two sockets of a handle, in the calling thread's namespace: the
/// main one (its buffers raised) and the bulk one, each with its port.
pub(crate) fn open_sockets() -> Result<((Socket, u32), (Socket, u32))> {
    let io = |source| Error::Io {
        op: Operation::ResolveFamily,
        source,
    };
    let main = open_socket().map_err(io)?;
    raise_buffers(&main.0);
    let bulk = open_socket().map_err(io)?;
    Ok((main, bulk))
}

pub(crate) fn open_socket() -> io::Result<(Socket, u32)> {
    transport::open_socket(NETLINK_GENERIC)
}

/// The receive length of the main socket: the page size, at most 8 KiB.
///
/// The kernel allocates a dump's skbs of the largest length the reader
/// has offered on the socket (capped near 32 KiB), but never smaller than
/// its `NLMSG_GOODSIZE`: a page, at most 8 KiB, less the skb's overhead.
/// Offering one page therefore gets one-page skbs, of which every
/// datagram fits the length offered, while 64 KiB gets 32 KiB skbs, which
/// the kernel takes from the page allocator and zeroes (`init_on_alloc`)
/// twice for every destination dump (its data, then its `NLMSG_DONE`).
/// With 10,000 services that was about a quarter of `-Ln`'s time in the
/// test VM.
pub(crate) fn small_recv_len() -> usize {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(4096);
    page.clamp(4096, 8192)
}

fn decode(e: netlink_packet_core::DecodeError) -> transport::Error {
    transport::Error::Decode(e.to_string())
}

/// The netlink header of a request of the IPVS family `family_id`.
fn request_header(family_id: u16, flags: u16, seq: u32, port: u32) -> NetlinkHeader {
    let mut header = NetlinkHeader::default();
    header.message_type = family_id;
    header.flags = flags;
    header.sequence_number = seq;
    header.port_number = port;
    header
}
