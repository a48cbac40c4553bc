//! The one HTTP server of the project: hyper's HTTP/1 server, on which
//! the live mode serves its health endpoint and health-check node ports
//! ([`crate::live::health`]) and `ipvsadm-rs --metrics` its scrapes.
//!
//! Every connection is served on its own task (no pool a few clients can
//! fill) and bounded three ways ([`Limits`]):
//! - its request head must arrive within [`Limits::header_read`] (hyper's
//!   header-read timeout: an idle or trickling client is cut then);
//! - the whole connection lasts at most [`Limits::lifetime`];
//! - at most [`Limits::max_connections`] are open at once: at the cap,
//!   the oldest is closed (its task ended, its descriptor closed) before
//!   the next is accepted, so descriptors and memory stay bounded and a
//!   new probe is never kept waiting behind old connections (issue 34,
//!   finding 1; vm-tests/tests/flood.rs floods it with 1,000).
//!
//! Every listener's accept queue is [`BACKLOG`] long, so that a burst of
//! connections does not drop a probe's SYN.
//!
//! Answers close the connection (`Connection: close`): the answer
//! functions set it ([`plain`] does).
//!
//! [`run`] makes each answer on a blocking thread of its own, at most a
//! given number at once, and an answer may be streamed ([`Reply::stream`]):
//! its head is sent first, then its body in chunks of [`CHUNK`] bytes as
//! it is written, at most [`CHUNKS_AHEAD`] of them ahead of the client
//! (HTTP/1.1's chunked transfer coding; a body cut short by its writer is
//! a connection closed without the last chunk, never a short answer that
//! looks whole). `ipvsadm-rs --metrics` streams its scrapes so: at 10,000
//! services a scrape is 68 MB of text, of which it holds a few chunks.
//!
//! A streamed body may be compressed ([`Reply::stream_negotiated`]) when
//! the request's `Accept-Encoding` takes gzip ([`accepts_gzip`], as
//! Prometheus always asks): gzip's fastest level, compressed as it is
//! written (the 68 MB scrape is about 4 MB on the wire).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flate2::write::GzEncoder;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, CONNECTION, CONTENT_ENCODING, CONTENT_TYPE, VARY,
};
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::socket::{listen, Backlog};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The bounds of one HTTP server's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many connections are open at once; at the cap, the oldest is
    /// closed before the next is accepted.
    pub max_connections: usize,
    /// How long a connection may take to send its request head (from
    /// accept; an idle or trickling client is cut then).
    pub header_read: Duration,
    /// How long a connection may last, whatever it does.
    pub lifetime: Duration,
}

/// The connections open at once by default: at most 8 KiB of read
/// buffer and about 20 KiB in all each, so about 40 MiB at worst, as
/// Go's server (kube-proxy's, which has no cap) holds for as many. The
/// cap is above the 1,000 connections of the flood tests
/// (vm-tests/tests/flood.rs): with 512, half the flood waited in the
/// accept queue, a probe behind it, and two probes of `--metrics` in 34
/// found no answer within their 1 s. [`run`] and the live mode raise
/// the descriptor limit to make room for them
/// ([`raise_open_files`]).
pub const MAX_CONNECTIONS: usize = 2048;

/// The default deadline of a request head (a kubelet probe sends its
/// request at once; its own timeout is 1 s by default).
pub const HEADER_READ: Duration = Duration::from_secs(2);

/// The default lifetime of a connection.
pub const LIFETIME: Duration = Duration::from_secs(5);

/// The accept queue every server asks for (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default since Linux 5.4; Go's servers,
/// kube-proxy's among them, ask for that too). Connections the kernel
/// has completed wait there for an accept, and a SYN that finds it full
/// is dropped, to be sent again a second later: with the standard
/// library's 128, 1,000 trickling clients cut and reconnecting at once
/// filled it and two probes of `--metrics` found no answer within their
/// 1 s (vm-tests/tests/flood.rs).
pub const BACKLOG: i32 = 4096;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read: HEADER_READ,
            lifetime: LIFETIME,
        }
    }
}

/// The open connections of one server, oldest first, each with the
/// sender that cuts it.
#[derive(Default)]
struct Open {
    next: u64,
    cut: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Open {
    fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
        open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the oldest connection; whether there was one.
    fn cut_oldest(&mut self) -> bool {
        match self.cut.pop_first() {
            Some((_, cut)) => {
                let _ = cut.send(());
                true
            }
            None => false,
        }
    }
}

/// Serves `answer` on every connection of `listener`, within `limits`,
/// until the task is dropped (which ends every connection too).
pub async fn serve<F>(listener: TcpListener, limits: Limits, answer: F)
where
    F: Fn(&Request<Incoming>) -> Response<String> + Clone + Send + Sync + 'static,
{
    serve_async(listener, limits, move |req: &Request<Incoming>| {
        std::future::ready(answer(req))
    })
    .await
}

/// [`serve`] with an answer made by a future, of any body: the answer's
/// future runs on the connection's task (the connection's deadlines
/// running), and is dropped with it.
pub async fn serve_async<F, A, B>(listener: TcpListener, limits: Limits, answer: F)
where
    F: Fn(&Request<Incoming>) -> A + Clone + Send + Sync + 'static,
    A: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // listen() again on a listening socket sets its queue's length; a
    // failure leaves the queue it had.
    if let Ok(backlog) = Backlog::new(BACKLOG) {
        let _ = listen(&listener, backlog);
    }
    let open = Arc::new(Mutex::new(Open::default()));
    let mut tasks = JoinSet::new();
    let max = limits.max_connections.max(1);
    loop {
        while tasks.try_join_next().is_some() {}
        // At the cap, room is made before the next accept: the oldest is
        // cut and its task awaited, so its descriptor is closed. (Cutting
        // alone only signals the task: under a flood the accepts outran
        // the cut tasks and held 604 descriptors at a cap of 512.)
        while tasks.len() >= max {
            Open::lock(&open).cut_oldest();
            if tasks.join_next().await.is_none() {
                break;
            }
        }
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and the like: free a descriptor (the oldest
                // connection's), no spin.
                Open::lock(&open).cut_oldest();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (cut, cut_here) = oneshot::channel();
        let id = {
            let mut o = Open::lock(&open);
            o.next += 1;
            let id = o.next;
            o.cut.insert(id, cut);
            id
        };
        let open = open.clone();
        let answer = answer.clone();
        tasks.spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = answer(&req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .keep_alive(false)
                .max_buf_size(8192);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = cut_here => {}
                _ = tokio::time::sleep(limits.lifetime) => {}
            }
            Open::lock(&open).cut.remove(&id);
        });
    }
}

/// An answer made without the `http` crate's types: what [`run`]'s
/// answer function returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain {
    /// The status code (200, 404, 503...).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// `answer` as an HTTP response that closes the connection (a status
/// code out of range is a 500).
pub fn plain(answer: Plain) -> Response<String> {
    let mut response = Response::new(answer.body);
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Raises the soft limit of open files to the hard one (as Go does at
/// start since 1.19, kube-proxy included), so that the
/// connections a server holds ([`MAX_CONNECTIONS`]), and the netlink
/// sockets and files of the program beside them, never run short. A
/// failure leaves the limit as it was.
pub fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// How many bytes of a streamed body ([`Reply::stream`]) are sent at a
/// time: at 68 MB a scrape of 10,000 services is about a thousand chunks.
pub const CHUNK: usize = 64 * 1024;

/// How many chunks a streamed body's writer may be ahead of the client:
/// past them, it waits for the client to read (so a body held at once is
/// at most `(CHUNKS_AHEAD + 1) * CHUNK` bytes, with the socket's buffer
/// beside it).
pub const CHUNKS_AHEAD: usize = 4;

/// The body of an answer: whole, or in chunks sent by the thread that
/// writes it ([`Reply::stream`]). An answer of [`run`] holds its turn
/// until its body is sent or dropped.
#[derive(Debug)]
pub struct Body {
    inner: Inner,
    _turn: Option<OwnedSemaphorePermit>,
}

#[derive(Debug)]
enum Inner {
    Whole(Option<Bytes>),
    Chunks {
        chunks: mpsc::Receiver<Bytes>,
        /// Set by [`Chunks::finish`] before its last chunk: a stream that
        /// ends without it was cut short by its writer.
        finished: Arc<AtomicBool>,
    },
}

/// A streamed body whose writer stopped before its end ([`Chunks`]
/// dropped without [`Chunks::finish`]): the connection is closed without
/// the last chunk, so that the client sees an answer cut, not a short one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutShort;

impl fmt::Display for CutShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the answer's writer stopped before its end")
    }
}

impl std::error::Error for CutShort {}

impl Body {
    /// A whole body, sent with its length.
    pub fn whole(text: String) -> Body {
        Body {
            inner: Inner::Whole(Some(Bytes::from(text))),
            _turn: None,
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = CutShort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CutShort>>> {
        match &mut self.get_mut().inner {
            Inner::Whole(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            Inner::Chunks { chunks, finished } => match chunks.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Poll::Ready(None) if finished.load(Ordering::Acquire) => Poll::Ready(None),
                Poll::Ready(None) => Poll::Ready(Some(Err(CutShort))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, Inner::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Whole(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Chunks { .. } => SizeHint::default(),
        }
    }
}

/// `head` with `body`, closing the connection (a status code out of
/// range is a 500); `gzip`: the body is gzip's (`Content-Encoding`).
fn response(status: u16, content_type: &'static str, gzip: bool, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    response
}

/// Whether `headers`' `Accept-Encoding` takes gzip (RFC 9110, 12.5.3):
/// `gzip` or `x-gzip` with a weight above 0, or `*` above 0 when gzip is
/// not named. A weight that does not read is taken as 0 (the answer is
/// then plain, which every client takes); no header, plain.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = false;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for coding in value.split(',') {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let weight = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
                })
                .map_or(Some(1.0), |q| {
                    q.parse::<f32>().ok().filter(|w| (0.0..=1.0).contains(w))
                });
            let taken = weight.is_some_and(|w| w > 0.0);
            if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                return taken;
            }
            if name == "*" {
                star = taken;
            }
        }
    }
    star
}

/// Where an answer of [`run`], made on a blocking thread, is written:
/// whole ([`Reply::whole`]), or its head now and its body as it is made
/// ([`Reply::stream`]). Dropped unanswered, the client gets a 500. It
/// holds the answer's turn, which its body takes over until it is sent.
#[derive(Debug)]
pub struct Reply {
    head: oneshot::Sender<Response<Body>>,
    turn: OwnedSemaphorePermit,
    /// The request's `Accept-Encoding` takes gzip.
    gzip: bool,
}

impl Reply {
    /// Whether the connection is gone already (cut by its deadline or
    /// closed by the client): an answer need not be made.
    pub fn is_gone(&self) -> bool {
        self.head.is_closed()
    }

    /// Answers `answer`, whole.
    pub fn whole(self, answer: Plain) {
        self.whole_bytes(
            answer.status,
            answer.content_type,
            false,
            Bytes::from(answer.body),
        );
    }

    /// Answers `body`, whole, gzip's when `gzip`.
    fn whole_bytes(self, status: u16, content_type: &'static str, gzip: bool, body: Bytes) {
        let body = Body {
            inner: Inner::Whole(Some(body)),
            _turn: Some(self.turn),
        };
        let _ = self.head.send(response(status, content_type, gzip, body));
    }

    /// Returns the writer of a body of `status` and `content_type`: what
    /// is written goes to the client in chunks of [`CHUNK`] bytes, the
    /// writer waiting while [`CHUNKS_AHEAD`] are unread; [`Chunks::finish`]
    /// ends it. The head goes with the first chunk; a body that ends
    /// before one is full is sent whole, with its length (one hand-over
    /// to the server's thread, not three: a small answer is as quick as a
    /// whole one under a flood of connections).
    pub fn stream(self, status: u16, content_type: &'static str) -> Chunks {
        self.chunks(status, content_type, Out::Plain(Vec::with_capacity(CHUNK)))
    }

    /// [`Reply::stream`], the body compressed as it is written (gzip's
    /// fastest level, `Content-Encoding: gzip`), whatever the request
    /// takes. The chunks are of compressed bytes.
    pub fn stream_gzip(self, status: u16, content_type: &'static str) -> Chunks {
        let out = GzEncoder::new(Vec::with_capacity(CHUNK), flate2::Compression::fast());
        self.chunks(status, content_type, Out::Gzip(out))
    }

    /// [`Reply::stream_gzip`] when the request's `Accept-Encoding` takes
    /// gzip ([`accepts_gzip`]), else [`Reply::stream`]: what a scrape of
    /// `--metrics` answers.
    pub fn stream_negotiated(self, status: u16, content_type: &'static str) -> Chunks {
        if self.gzip {
            self.stream_gzip(status, content_type)
        } else {
            self.stream(status, content_type)
        }
    }

    fn chunks(self, status: u16, content_type: &'static str, out: Out) -> Chunks {
        Chunks {
            state: Stream::Before {
                reply: self,
                status,
                content_type,
            },
            out,
        }
    }
}

/// What a [`Chunks`] writes into: the chunk being filled, or the
/// compressor that fills it.
enum Out {
    Plain(Vec<u8>),
    Gzip(GzEncoder<Vec<u8>>),
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (coding, pending) = match self {
            Out::Plain(buf) => ("plain", buf.len()),
            Out::Gzip(z) => ("gzip", z.get_ref().len()),
        };
        write!(f, "{coding} ({pending} bytes pending)")
    }
}

impl Out {
    fn write(&mut self, s: &str) -> fmt::Result {
        match self {
            Out::Plain(buf) => {
                buf.extend_from_slice(s.as_bytes());
                Ok(())
            }
            Out::Gzip(z) => io::Write::write_all(z, s.as_bytes()).map_err(|_| fmt::Error),
        }
    }

    /// The bytes ready to send.
    fn pending(&mut self) -> &mut Vec<u8> {
        match self {
            Out::Plain(buf) => buf,
            Out::Gzip(z) => z.get_mut(),
        }
    }

    /// Writes what the coding still holds (gzip's last block and trailer)
    /// into [`Out::pending`].
    fn end(&mut self) -> fmt::Result {
        match self {
            Out::Plain(_) => Ok(()),
            Out::Gzip(z) => z.try_finish().map_err(|_| fmt::Error),
        }
    }

    fn is_gzip(&self) -> bool {
        matches!(self, Out::Gzip(_))
    }
}

/// Where a [`Chunks`] is: before its first chunk (the head not sent), or
/// sending.
#[derive(Debug)]
enum Stream {
    Before {
        reply: Reply,
        status: u16,
        content_type: &'static str,
    },
    Sending {
        tx: mpsc::Sender<Bytes>,
        finished: Arc<AtomicBool>,
    },
    Gone,
}

/// The writer of a streamed body ([`Reply::stream`]), on a blocking
/// thread: each write fails (`fmt::Error`) once the client is gone.
#[derive(Debug)]
pub struct Chunks {
    state: Stream,
    out: Out,
}

impl Chunks {
    /// Sends what is buffered as one chunk (the head first, with it),
    /// waiting for room.
    fn send(&mut self) -> fmt::Result {
        if let Stream::Before { .. } = self.state {
            if let Stream::Before {
                reply,
                status,
                content_type,
            } = std::mem::replace(&mut self.state, Stream::Gone)
            {
                let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
                let finished = Arc::new(AtomicBool::new(false));
                let body = Body {
                    inner: Inner::Chunks {
                        chunks: rx,
                        finished: finished.clone(),
                    },
                    _turn: Some(reply.turn),
                };
                let gzip = self.out.is_gzip();
                let _ = reply.head.send(response(status, content_type, gzip, body));
                self.state = Stream::Sending { tx, finished };
            }
        }
        let Stream::Sending { tx, .. } = &self.state else {
            return Err(fmt::Error);
        };
        let chunk = std::mem::replace(self.out.pending(), Vec::with_capacity(CHUNK));
        tx.blocking_send(Bytes::from(chunk)).map_err(|_| fmt::Error)
    }

    /// Ends the body: the rest is sent, then the last chunk (or, before
    /// any chunk, the whole body). Without it (the writer dropped), the
    /// body is cut short ([`CutShort`]; before any chunk, a 500).
    pub fn finish(mut self) -> fmt::Result {
        self.out.end()?;
        match std::mem::replace(&mut self.state, Stream::Gone) {
            Stream::Before {
                reply,
                status,
                content_type,
            } => {
                let gzip = self.out.is_gzip();
                let body = Bytes::from(std::mem::take(self.out.pending()));
                reply.whole_bytes(status, content_type, gzip, body);
                Ok(())
            }
            state @ Stream::Sending { .. } => {
                self.state = state;
                if !self.out.pending().is_empty() {
                    self.send()?;
                }
                if let Stream::Sending { finished, .. } = &self.state {
                    finished.store(true, Ordering::Release);
                }
                Ok(())
            }
            Stream::Gone => Err(fmt::Error),
        }
    }
}

impl fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.out.write(s)?;
        if self.out.pending().len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }
}

/// Serves `listener` (already bound, in blocking mode or not) within
/// `limits` on a current-thread runtime of its own, forever (the limit
/// of open files raised first: [`raise_open_files`]): each request's
/// path and query (`""` when none, undecoded) go to `answer`, run on a
/// blocking thread of its own with the
/// request's [`Reply`], at most `at_once` at a time, each from its start
/// until its body is sent or its connection gone (the others wait for
/// their turn, their connections' deadlines running; a connection cut
/// while it waits is never answered). The server's thread only moves
/// bytes, so a slow answer delays no other connection.
/// Returns only when the runtime or the listener cannot be set up.
pub fn run<F>(
    listener: std::net::TcpListener,
    limits: Limits,
    at_once: usize,
    answer: F,
) -> io::Result<()>
where
    F: Fn(&str, &str, Reply) + Clone + Send + Sync + 'static,
{
    raise_open_files();
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let turns = Arc::new(Semaphore::new(at_once.max(1)));
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        serve_async(listener, limits, move |req: &Request<Incoming>| {
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            let gzip = accepts_gzip(req.headers());
            let (answer, turns) = (answer.clone(), turns.clone());
            async move {
                let (head, told) = oneshot::channel();
                let Ok(turn) = turns.acquire_owned().await else {
                    return unanswered();
                };
                let made = tokio::task::spawn_blocking(move || {
                    answer(&path, &query, Reply { head, turn, gzip })
                });
                match told.await {
                    Ok(response) => response,
                    Err(_) => {
                        // The answer was dropped (a panic among others):
                        // its thread is done.
                        let _ = made.await;
                        unanswered()
                    }
                }
            }
        })
        .await;
        Ok(())
    })
}

/// The answer when none was made.
fn unanswered() -> Response<Body> {
    response(
        500,
        "text/plain; charset=utf-8",
        false,
        Body::whole("no answer was made\n".to_owned()),
    )
}

#[cfg(test)]
mod tests;
