//! The async handle (feature `tokio`): every operation of the blocking
//! [`crate::Handle`], under the same names, on a tokio runtime.
//!
//! It is a thin driver of the crate's sans-IO pieces: each request is a
//! [`Batch`] (of one request, or of up to [`MAX_IN_FLIGHT`] writes for
//! [`AsyncHandle::apply`]), written by [`Request::emit`]; its replies are
//! read by the batch machine and decoded by the same readers as the
//! blocking handle's. What is its own: the sockets registered with the
//! runtime's reactor ([`AsyncFd`]), the timeout on the runtime's timer,
//! and the sharing between tasks.
//!
//! # Many tasks, one handle
//!
//! An `AsyncHandle` is `Clone`, `Send` and `Sync`; its methods take
//! `&self`. Each of its two sockets (as the blocking handle's: the second
//! carries the service dump) sits behind an async mutex: a request holds
//! its socket from its send to its last reply, so the requests of many
//! tasks queue and run one at a time per socket, never mixing replies. (A
//! multiplexer keyed by sequence number would let requests overlap, but
//! the kernel handles a socket's requests one after another anyway, and
//! a dump keeps its socket busy until it ends: the kernel refuses a
//! second dump on it, `EBUSY`.) For requests that truly run at once, open
//! several handles.
//!
//! # Timeouts and cancellation
//!
//! A request waits at most the handle's timeout ([`DEFAULT_TIMEOUT`]
//! unless told otherwise) from its last reply, then fails with
//! [`Error::Timeout`], as the blocking handle does. A request's future may
//! be dropped at any await (say by `tokio::time::timeout`): replies to it
//! that arrive later are skipped by their sequence numbers, and a dump
//! left unfinished (a dropped [`AsyncHandle::service_stream`], too) is
//! read to its end before the socket's next request, since the kernel
//! keeps it running until then. Writes already sent stay applied.
//!
//! The runtime needs its I/O and time drivers (`enable_io`,
//! `enable_time`; `#[tokio::main]` enables both).
//!
//! ```no_run
//! use ipvs_netlink::{AsyncHandle, Destination, Service, ServiceId};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ipvs = AsyncHandle::new().await?;
//! let vip = ServiceId::tcp("10.97.97.97:80".parse()?);
//! ipvs.add_service(&Service::new(vip, "rr")).await?;
//! ipvs.add_destination(&vip, &Destination::new("10.244.1.39:80".parse()?)).await?;
//! for svc in ipvs.services().await? {
//!     println!("{} {}", svc.id, svc.scheduler);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use netlink_packet_core::{NetlinkHeader, ParseableParametrized};
use netlink_packet_generic::constants::GENL_ID_CTRL;
use netlink_packet_generic::ctrl::GenlCtrl;
use netlink_packet_generic::GenlMessage;
use netlink_sys::Socket;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

use crate::apply;
use crate::batch::{self, Batch, Event, Outcome, Sequence};
use crate::error::{Error, Operation, Result};
use crate::handle::{Place, Sockets, DEFAULT_TIMEOUT};
use crate::netns::named_netns_path;
use crate::op::{Op, MAX_IN_FLIGHT};
use crate::reply;
use crate::request::Request;
use crate::transport::{self, Expect, Progress};
use crate::{Daemon, Destination, Info, IpvsCmd, IpvsMessage, Service, ServiceId, Timeouts};

/// At most this many queued datagrams are read after `ENOBUFS`.
const DRAIN_LIMIT: usize = 4096;

/// One socket and the exchange under way on it.
struct Conn {
    fd: AsyncFd<Socket>,
    port: u32,
    seq: Sequence,
    /// The receive buffer; its length is what each receive offers (the
    /// kernel sizes a dump's datagrams after it, see [`crate::Handle`]).
    buf: Vec<u8>,
    timeout: Duration,
    /// The batch whose replies are being read.
    current: Option<Batch>,
    /// Whether `current` is a dump the kernel keeps running until it is
    /// read to its end.
    dumping: bool,
    /// When the current exchange times out: its last reply plus the
    /// timeout.
    deadline: Instant,
}

impl Conn {
    fn new(socket: Socket, port: u32, recv_len: usize, timeout: Duration) -> io::Result<Conn> {
        socket.set_non_blocking(true)?;
        // SAFETY: `Socket` owns its descriptor (it closes it on drop and
        // nothing else does), and its `as_raw_fd` always returns that one
        // descriptor; the `AsyncFd` owns the `Socket` and never gives it
        // away, so the descriptor stays open and the same while registered.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(Conn {
            fd,
            port,
            seq: Sequence::new(),
            buf: vec![0; recv_len],
            timeout,
            current: None,
            dumping: false,
            deadline: Instant::now(),
        })
    }

    /// A batch of one request, numbered.
    fn one(
        &mut self,
        expect: Expect,
        encode: impl FnOnce(&mut NetlinkHeader, &mut Vec<u8>),
    ) -> Batch {
        let mut batch = Batch::new(self.port, self.seq.reserve(1));
        batch.push(expect, encode);
        batch
    }

    /// Sends `batch` (after reading an unfinished dump to its end) and
    /// makes it the current exchange.
    async fn start(&mut self, batch: Batch, dump: bool) -> transport::Result<()> {
        self.settle().await;
        self.send(batch.datagram()).await?;
        self.current = Some(batch);
        self.dumping = dump;
        self.deadline = Instant::now() + self.timeout;
        Ok(())
    }

    /// Reads one datagram into the current batch, its events to
    /// `on_event`; whether the batch is complete. After `ENOBUFS` the
    /// replies that did arrive are read without waiting, and the error
    /// returned.
    async fn next(
        &mut self,
        mut on_event: impl FnMut(Event<'_>) -> transport::Result<()>,
    ) -> transport::Result<bool> {
        let Some(batch) = self.current.as_ref() else {
            return Ok(true);
        };
        if batch.is_complete() {
            return Ok(true);
        }
        let len = match self.recv().await {
            Ok(len) => len,
            Err(transport::Error::Io(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.read_queued(&mut on_event);
                self.dumping = false;
                return Err(transport::Error::Io(e));
            }
            Err(e) => {
                // Nothing comes: no use waiting for the rest later.
                self.dumping = false;
                return Err(e);
            }
        };
        let Conn {
            current,
            buf,
            deadline,
            timeout,
            ..
        } = self;
        let Some(batch) = current.as_mut() else {
            return Ok(true);
        };
        match batch.read(&buf[..len], on_event)? {
            Progress::Stale => {}
            Progress::More | Progress::Done => *deadline = Instant::now() + *timeout,
        }
        Ok(batch.is_complete())
    }

    /// Reads the current batch to its end.
    async fn run(
        &mut self,
        mut on_event: impl FnMut(Event<'_>) -> transport::Result<()>,
    ) -> transport::Result<()> {
        while !self.next(&mut on_event).await? {}
        Ok(())
    }

    /// Ends the current exchange; its batch.
    fn finish(&mut self) -> Option<Batch> {
        self.dumping = false;
        self.current.take()
    }

    /// Reads a dump left unfinished to its end (its replies ignored), so
    /// that the kernel takes the next one.
    async fn settle(&mut self) {
        if self.dumping {
            let _ = self.run(|_| Ok(())).await;
        }
        self.finish();
    }

    async fn send(&self, bytes: &[u8]) -> transport::Result<()> {
        loop {
            let mut guard = self.fd.writable().await.map_err(transport::Error::Io)?;
            match guard.try_io(|s| s.get_ref().send(bytes, libc::MSG_NOSIGNAL)) {
                Ok(Ok(n)) if n == bytes.len() => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(transport::Error::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("sent {n} of {} bytes", bytes.len()),
                    )))
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(transport::Error::Io(e)),
                Err(_would_block) => {}
            }
        }
    }

    /// Receives one datagram into the buffer by the deadline; its length.
    async fn recv(&mut self) -> transport::Result<usize> {
        let Conn {
            fd,
            buf,
            deadline,
            timeout,
            ..
        } = self;
        loop {
            let mut guard = match tokio::time::timeout_at(*deadline, fd.readable()).await {
                Err(_elapsed) => return Err(transport::Error::Timeout(*timeout)),
                Ok(ready) => ready.map_err(transport::Error::Io)?,
            };
            match guard.try_io(|s| recv_raw(s.get_ref(), buf)) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(result) => return checked_len(result, buf.len()),
                Err(_would_block) => {}
            }
        }
    }

    /// After `ENOBUFS`: the replies still queued into the current batch,
    /// without waiting; the queue is empty afterwards.
    fn read_queued(&mut self, on_event: &mut impl FnMut(Event<'_>) -> transport::Result<()>) {
        let Conn {
            fd, buf, current, ..
        } = self;
        let mut done = false;
        for _ in 0..DRAIN_LIMIT {
            let Ok(len) = checked_len(recv_raw(fd.get_ref(), buf), buf.len()) else {
                break;
            };
            if done {
                continue;
            }
            if let Some(batch) = current.as_mut() {
                // A malformed late reply leaves its request's fate unknown.
                done = !matches!(
                    batch.read(&buf[..len], &mut *on_event),
                    Ok(Progress::More | Progress::Stale)
                );
            }
        }
    }
}

/// One non-blocking receive into `buf`: the datagram's whole length
/// (`MSG_TRUNC`), which may exceed `buf`'s.
fn recv_raw(socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    let mut window = buf;
    socket.recv(&mut window, libc::MSG_TRUNC | libc::MSG_DONTWAIT)
}

/// The length of a datagram received into `len` bytes: one larger is
/// truncated, reported, never cut silently.
fn checked_len(received: io::Result<usize>, len: usize) -> transport::Result<usize> {
    match received {
        Ok(n) if n > len => Err(transport::Error::Decode(format!(
            "datagram of {n} bytes truncated to {len}"
        ))),
        Ok(0) => Err(transport::Error::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "socket closed",
        ))),
        Ok(n) => Ok(n),
        Err(e) => Err(transport::Error::Io(e)),
    }
}

/// An async handle on the IPVS table of the network namespace its
/// sockets were opened in: the blocking [`crate::Handle`]'s operations
/// under the same names, `async`, taking `&self` (see the module
/// documentation for how tasks share it). Clones share the sockets.
#[derive(Clone)]
pub struct AsyncHandle {
    inner: Arc<Inner>,
}

struct Inner {
    main: Arc<Mutex<Conn>>,
    /// The service dump's socket; `None` over a caller's socket.
    bulk: Option<Arc<Mutex<Conn>>>,
    family_id: u16,
}

impl fmt::Debug for AsyncHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncHandle")
            .field("family_id", &self.inner.family_id)
            .finish_non_exhaustive()
    }
}

/// What a dump lists.
#[derive(Debug, Clone, Copy)]
enum DumpOf {
    Services,
    Destinations(ServiceId),
}

impl AsyncHandle {
    /// Opens the netlink sockets in the caller's network namespace and
    /// resolves the IPVS family, as [`crate::Handle::new`].
    pub async fn new() -> Result<Self> {
        Self::with_timeout(DEFAULT_TIMEOUT).await
    }

    /// Like [`AsyncHandle::new`] with a timeout of `timeout`.
    pub async fn with_timeout(timeout: Duration) -> Result<Self> {
        Self::open(Sockets::open(Place::Here)?, timeout).await
    }

    /// Opens a handle on the IPVS table of the network namespace at
    /// `path`, as [`crate::Handle::in_netns`]: a short-lived thread enters
    /// the namespace and opens the sockets (this call blocks for that
    /// thread's life, well under a millisecond); no thread of the caller
    /// or of the runtime changes namespace.
    pub async fn in_netns(path: impl AsRef<Path>) -> Result<Self> {
        Self::in_netns_with_timeout(path, DEFAULT_TIMEOUT).await
    }

    /// Like [`AsyncHandle::in_netns`] with a timeout of `timeout`.
    pub async fn in_netns_with_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let (main, bulk) = crate::netns::socket_in(path.as_ref())?;
        Self::open(Sockets::open(Place::Opened(main, bulk))?, timeout).await
    }

    /// Opens a handle in the namespace `ip netns` calls `name`, as
    /// [`crate::Handle::in_named_netns`].
    pub async fn in_named_netns(name: &str) -> Result<Self> {
        let path = named_netns_path(name)?;
        Self::in_netns(path).await
    }

    /// Builds a handle over a socket the caller supplies, as
    /// [`crate::Handle::from_socket`] (a test may put a fake kernel on
    /// the other end of a `socketpair`).
    pub async fn from_socket(fd: OwnedFd, port_id: u32, timeout: Duration) -> Result<Self> {
        Self::open(Sockets::open(Place::Supplied(fd, port_id))?, timeout).await
    }

    /// A handle over `sockets`, the IPVS family resolved.
    async fn open(sockets: Sockets, timeout: Duration) -> Result<Self> {
        let conn = |(socket, port, recv_len): (Socket, u32, usize)| {
            Conn::new(socket, port, recv_len, timeout).map_err(|source| Error::Io {
                op: Operation::ResolveFamily,
                source,
            })
        };
        let mut main = conn(sockets.main)?;
        let bulk = sockets.bulk.map(conn).transpose()?;
        let family_id = resolve_family(&mut main).await?;
        Ok(AsyncHandle {
            inner: Arc::new(Inner {
                main: Arc::new(Mutex::new(main)),
                bulk: bulk.map(|b| Arc::new(Mutex::new(b))),
                family_id,
            }),
        })
    }

    /// Changes the timeout of the requests that start after it.
    pub async fn set_timeout(&self, timeout: Duration) {
        self.inner.main.lock().await.timeout = timeout;
        if let Some(bulk) = &self.inner.bulk {
            bulk.lock().await.timeout = timeout;
        }
    }

    /// The generic-netlink family id of IPVS in this kernel.
    pub fn family_id(&self) -> u16 {
        self.inner.family_id
    }

    /// IPVS version and connection table size.
    pub async fn info(&self) -> Result<Info> {
        let op = Operation::GetInfo;
        let replies = self.messages(op, Request::GetInfo, Expect::Reply).await?;
        reply::info(&replies).map_err(|e| Error::at(op, e))
    }

    /// Every service of the table, as [`crate::Handle::services`].
    pub async fn services(&self) -> Result<Vec<Service>> {
        collect(self.service_stream()).await
    }

    /// The service dump as a stream: each service as its datagram is
    /// decoded (repeats dropped, as [`crate::Handle::for_each_service`]
    /// does), ending at the dump's end or at its first error. Nothing is
    /// sent until it is first polled; dropped early, the rest of the dump
    /// is read (and ignored) before the socket's next request.
    pub fn service_stream(&self) -> impl Stream<Item = Result<Service>> + Send + 'static {
        let conn = self.inner.bulk.as_ref().unwrap_or(&self.inner.main).clone();
        let family_id = self.inner.family_id;
        let mut seen = HashSet::new();
        dump(
            conn,
            family_id,
            Operation::ListServices,
            DumpOf::Services,
            move |kind, payload| {
                let msg = reply::message(family_id, kind, payload)?;
                Ok(reply::service(&msg)?.filter(|svc| seen.insert(svc.id)))
            },
        )
    }

    /// One service, or `None` when the table has no such service.
    pub async fn service(&self, id: &ServiceId) -> Result<Option<Service>> {
        let op = Operation::GetService;
        match self
            .messages(op, Request::GetService(id), Expect::Reply)
            .await
        {
            Ok(replies) => replies
                .iter()
                .find(|m| m.service_attrs().is_some())
                .map_or(Ok(None), reply::service)
                .map_err(|e| Error::at(op, e)),
            Err(Error::Kernel { errno, .. }) if errno == libc::ESRCH => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds a service, as [`crate::Handle::add_service`].
    pub async fn add_service(&self, svc: &Service) -> Result<()> {
        self.write(Op::AddService(svc.clone())).await
    }

    /// Replaces a service, as [`crate::Handle::edit_service`].
    pub async fn edit_service(&self, svc: &Service) -> Result<()> {
        self.write(Op::EditService(svc.clone())).await
    }

    /// Deletes a service and its destinations.
    pub async fn delete_service(&self, id: &ServiceId) -> Result<()> {
        self.write(Op::DeleteService(*id)).await
    }

    /// The destinations of a service, as [`crate::Handle::destinations`].
    pub async fn destinations(&self, id: &ServiceId) -> Result<Vec<Destination>> {
        collect(self.destination_stream(id)).await
    }

    /// The destination dump of a service as a stream, as
    /// [`AsyncHandle::service_stream`] streams services; repeats (by
    /// address and port) are dropped.
    pub fn destination_stream(
        &self,
        id: &ServiceId,
    ) -> impl Stream<Item = Result<Destination>> + Send + 'static {
        let conn = self.inner.main.clone();
        let family_id = self.inner.family_id;
        let family = id.family();
        let mut seen = HashSet::new();
        let what = DumpOf::Destinations(*id);
        dump(
            conn,
            family_id,
            Operation::ListDestinations,
            what,
            move |kind, payload| {
                if kind != family_id {
                    return Err(transport::Error::Protocol(format!(
                        "unexpected message type {kind}"
                    )));
                }
                Ok(reply::destination(payload, family)?.filter(|d| seen.insert(d.socket_addr())))
            },
        )
    }

    /// Adds a destination to a service.
    pub async fn add_destination(&self, id: &ServiceId, dest: &Destination) -> Result<()> {
        self.write(Op::AddDestination(*id, dest.clone())).await
    }

    /// Replaces a destination's settings.
    pub async fn edit_destination(&self, id: &ServiceId, dest: &Destination) -> Result<()> {
        self.write(Op::EditDestination(*id, dest.clone())).await
    }

    /// Deletes a destination.
    pub async fn delete_destination(&self, id: &ServiceId, addr: SocketAddr) -> Result<()> {
        self.write(Op::DeleteDestination(*id, addr)).await
    }

    /// Deletes every service.
    pub async fn flush(&self) -> Result<()> {
        self.write(Op::Flush).await
    }

    /// Zeroes the counters of one service, or of every service with
    /// `None`.
    pub async fn zero(&self, id: Option<&ServiceId>) -> Result<()> {
        self.write(Op::Zero(id.copied())).await
    }

    /// The tcp, tcpfin and udp connection timeouts.
    pub async fn timeouts(&self) -> Result<Timeouts> {
        let op = Operation::GetTimeouts;
        let replies = self
            .messages(op, Request::GetTimeouts, Expect::Reply)
            .await?;
        Ok(reply::timeouts(&replies))
    }

    /// Sets the timeouts; a value of 0 keeps the current one.
    pub async fn set_timeouts(&self, t: &Timeouts) -> Result<()> {
        self.write(Op::SetTimeouts(*t)).await
    }

    /// The running sync daemons (none, one or two).
    pub async fn daemons(&self) -> Result<Vec<Daemon>> {
        let op = Operation::ListDaemons;
        let replies = self.messages(op, Request::GetDaemons, Expect::Dump).await?;
        let mut out = Vec::new();
        for msg in &replies {
            out.extend(reply::daemon(msg).map_err(|e| Error::at(op, e))?);
        }
        Ok(out)
    }

    /// Starts a sync daemon.
    pub async fn start_daemon(&self, daemon: &Daemon) -> Result<()> {
        self.write(Op::StartDaemon(daemon.clone())).await
    }

    /// Stops the sync daemon of `daemon.state`.
    pub async fn stop_daemon(&self, daemon: &Daemon) -> Result<()> {
        self.write(Op::StopDaemon(daemon.clone())).await
    }

    /// Applies `ops` in order, pipelined, one result per op: the same
    /// batches, the same outer error and the same [`Error::ReplyLost`] as
    /// [`crate::Handle::apply`]. The socket is held for the whole batch.
    pub async fn apply(&self, ops: &[Op]) -> Result<Vec<Result<()>>> {
        let mut conn = self.inner.main.lock().await;
        let mut results = Vec::with_capacity(ops.len());
        for chunk in ops.chunks(MAX_IN_FLIGHT) {
            let Some(last_op) = chunk.last() else {
                continue;
            };
            let first = conn.seq.reserve(chunk.len());
            let batch = apply::op_batch(chunk, self.inner.family_id, conn.port, first);
            let blame = |batch: Option<&Batch>| {
                batch
                    .and_then(Batch::blame)
                    .map_or(last_op, |i| &chunk[i])
                    .operation()
            };
            if let Err(e) = conn.start(batch, false).await {
                return Err(Error::at(last_op.operation(), e));
            }
            let exchanged = conn.run(|_| Ok(())).await;
            let batch = conn.finish();
            let Some(batch) = batch else {
                continue;
            };
            let done = apply::finish(chunk, &batch, exchanged)
                .map_err(|e| Error::at(blame(Some(&batch)), e))?;
            results.extend(done);
        }
        Ok(results)
    }

    /// Sends any IPVS message and returns the replies, as
    /// [`crate::Handle::request`].
    pub async fn request(&self, msg: IpvsMessage, dump: bool) -> Result<Vec<IpvsMessage>> {
        let expect = match (dump, msg.cmd) {
            (true, _) => Expect::Dump,
            (false, IpvsCmd::GetService | IpvsCmd::GetInfo | IpvsCmd::GetConfig) => Expect::Reply,
            _ => Expect::Ack,
        };
        let op = Operation::Raw(msg.cmd);
        let family_id = self.inner.family_id;
        let mut genl = GenlMessage::from_payload(msg);
        genl.set_resolved_family_id(family_id);
        let mut out = Vec::new();
        let encode = |h: &mut NetlinkHeader, bytes: &mut Vec<u8>| batch::emit(bytes, h, genl);
        exchange(&self.inner.main, op, expect, encode, |kind, payload| {
            out.push(reply::message(family_id, kind, payload)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// One write, acknowledged.
    async fn write(&self, op: Op) -> Result<()> {
        let family_id = self.inner.family_id;
        let encode = |h: &mut NetlinkHeader, out: &mut Vec<u8>| {
            h.message_type = family_id;
            Request::Op(&op).emit(h, out);
        };
        exchange(
            &self.inner.main,
            op.operation(),
            Expect::Ack,
            encode,
            |_, _| Err(transport::Error::Protocol("a reply to a write".into())),
        )
        .await
    }

    /// The replies to one read, decoded.
    async fn messages(
        &self,
        op: Operation,
        request: Request<'_>,
        expect: Expect,
    ) -> Result<Vec<IpvsMessage>> {
        let family_id = self.inner.family_id;
        let encode = |h: &mut NetlinkHeader, out: &mut Vec<u8>| {
            h.message_type = family_id;
            request.emit(h, out);
        };
        let mut out = Vec::new();
        exchange(&self.inner.main, op, expect, encode, |kind, payload| {
            out.push(reply::message(family_id, kind, payload)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }
}

/// Sends one request on `conn` and hands each data reply to `on_data`;
/// a refusal is the kernel's error of `op`.
async fn exchange(
    conn: &Mutex<Conn>,
    op: Operation,
    expect: Expect,
    encode: impl FnOnce(&mut NetlinkHeader, &mut Vec<u8>),
    mut on_data: impl FnMut(u16, &[u8]) -> transport::Result<()>,
) -> Result<()> {
    let mut conn = conn.lock().await;
    let batch = conn.one(expect, encode);
    conn.start(batch, expect == Expect::Dump)
        .await
        .map_err(|e| Error::at(op, e))?;
    let mut refused = None;
    let ran = conn
        .run(|e| {
            match e {
                Event::Data { kind, payload, .. } => on_data(kind, payload)?,
                Event::Complete {
                    outcome: Outcome::Refused(errno),
                    ..
                } => refused = Some(errno),
                Event::Complete { .. } => {}
            }
            Ok(())
        })
        .await;
    if ran.is_ok() {
        conn.finish();
    }
    ran.map_err(|e| Error::at(op, e))?;
    refused.map_or(Ok(()), |errno| Err(Error::from_errno(op, errno)))
}

/// Looks the IPVS family up on `conn`.
async fn resolve_family(conn: &mut Conn) -> Result<u16> {
    let op = Operation::ResolveFamily;
    let batch = conn.one(Expect::Reply, |h, out| {
        h.message_type = GENL_ID_CTRL;
        batch::emit(out, h, reply::family_request());
    });
    conn.start(batch, false)
        .await
        .map_err(|e| Error::at(op, e))?;
    let mut id = None;
    let mut refused = None;
    conn.run(|e| {
        match e {
            Event::Data { kind, payload, .. } => {
                if kind != GENL_ID_CTRL {
                    return Err(transport::Error::Protocol(format!(
                        "unexpected message type {kind}"
                    )));
                }
                let genl = GenlMessage::<GenlCtrl>::parse_with_param(payload, kind)
                    .map_err(reply::decode)?;
                id = reply::family_id(&genl.payload);
            }
            Event::Complete {
                outcome: Outcome::Refused(errno),
                ..
            } => refused = Some(errno),
            Event::Complete { .. } => {}
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::at(op, e))?;
    conn.finish();
    reply::resolved_family(refused, id)
}

/// Everything a stream yields, or its first error.
async fn collect<T>(stream: impl Stream<Item = Result<T>>) -> Result<Vec<T>> {
    let mut stream = pin!(stream);
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item?);
    }
    Ok(out)
}

struct DumpState<T, D> {
    /// The socket, before the request is sent.
    idle: Option<Arc<Mutex<Conn>>>,
    /// The socket, held from the request to the dump's end.
    conn: Option<OwnedMutexGuard<Conn>>,
    family_id: u16,
    op: Operation,
    what: DumpOf,
    decode: D,
    queue: VecDeque<T>,
    done: bool,
}

/// The dump `what` on `conn` as a stream of what `decode` makes of each
/// data reply (`None`: nothing, say a repeat).
fn dump<T, D>(
    conn: Arc<Mutex<Conn>>,
    family_id: u16,
    op: Operation,
    what: DumpOf,
    decode: D,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Send + 'static,
    D: FnMut(u16, &[u8]) -> transport::Result<Option<T>> + Send + 'static,
{
    let state = DumpState {
        idle: Some(conn),
        conn: None,
        family_id,
        op,
        what,
        decode,
        queue: VecDeque::new(),
        done: false,
    };
    futures_util::stream::try_unfold(state, |mut st| async move {
        let op = st.op;
        if let Some(idle) = st.idle.take() {
            let mut conn = idle.lock_owned().await;
            let family_id = st.family_id;
            let what = st.what;
            let batch = conn.one(Expect::Dump, |h, out| {
                h.message_type = family_id;
                match &what {
                    DumpOf::Services => Request::GetServices.emit(h, out),
                    DumpOf::Destinations(id) => Request::GetDestinations(id).emit(h, out),
                }
            });
            conn.start(batch, true)
                .await
                .map_err(|e| Error::at(op, e))?;
            st.conn = Some(conn);
        }
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Ok(Some((item, st)));
            }
            if st.done {
                return Ok(None);
            }
            let DumpState {
                conn,
                decode,
                queue,
                ..
            } = &mut st;
            let Some(conn) = conn.as_mut() else {
                return Ok(None);
            };
            let mut refused = None;
            let complete = conn
                .next(|e| {
                    match e {
                        Event::Data { kind, payload, .. } => queue.extend(decode(kind, payload)?),
                        Event::Complete {
                            outcome: Outcome::Refused(errno),
                            ..
                        } => refused = Some(errno),
                        Event::Complete { .. } => {}
                    }
                    Ok(())
                })
                .await
                .map_err(|e| Error::at(op, e))?;
            if let Some(errno) = refused {
                conn.finish();
                return Err(Error::from_errno(op, errno));
            }
            if complete {
                conn.finish();
                st.done = true;
                // The socket is free for the next request.
                st.conn = None;
            }
        }
    })
}
