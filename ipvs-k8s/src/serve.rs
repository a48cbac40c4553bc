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

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::socket::{listen, Backlog};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
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
                async move { Ok::<_, Infallible>(response) }
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

/// Serves `listener` (already bound, in blocking mode or not) within
/// `limits` on a current-thread runtime of its own, forever (the limit
/// of open files raised first: [`raise_open_files`]): each
/// request's path goes to `answer`, whose [`Plain`] is the response.
/// `answer` runs on the runtime's thread, so a slow one delays the other
/// connections (their deadlines included) but never runs twice at once.
/// Returns only when the runtime or the listener cannot be set up.
pub fn run<F>(listener: std::net::TcpListener, limits: Limits, answer: F) -> io::Result<()>
where
    F: Fn(&str) -> Plain + Clone + Send + Sync + 'static,
{
    raise_open_files();
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        serve(listener, limits, move |req: &Request<Incoming>| {
            plain(answer(req.uri().path()))
        })
        .await;
        Ok(())
    })
}
