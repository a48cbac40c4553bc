//! Every request of the live mode to the API server, under one discipline
//! (issues 22 and 26): a deadline for each, a backoff per resource
//! whatever the failure, and a record of how fresh each resource's data
//! is, for the health endpoint.
//!
//! [`Gates`] is a layer of the kube client's service stack, so no request
//! escapes it, whoever makes it (kube-runtime's watcher lists, pages,
//! watches and relists on its own):
//! - before a request for a resource (Services, EndpointSlices), it waits
//!   until that resource's [`Backoff`] allows the next attempt;
//! - the response's head must come within [`Deadlines::connect`] plus
//!   [`Deadlines::first_byte`], and no gap in the body may last longer
//!   than [`Deadlines::body_gap`] (a list) or the watch's own timeout
//!   plus [`Deadlines::watch_margin`] (a watch): past one, the request
//!   fails;
//! - every failure counts once per attempt, with its class ([`Failure`]):
//!   no connection, a deadline passed, a 5xx or other error status, a 429
//!   (whose `Retry-After` is obeyed), 410 Gone, a body that does not parse
//!   (the watcher says so), a watch answered with a plain body, a watch
//!   cut before its own timeout; a watch that ends at its timeout is no
//!   failure and is resumed at once;
//! - the log gets one line when a resource starts failing (the class and
//!   the next retry), one at the 2nd, 4th, 8th... failure in a row, one
//!   when it has recovered (an object arrived, a list completed, or a
//!   watch ran to its timeout); never one per request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use kube::client::{Body, DynBody};
use tower::{BoxError, Layer, Service};

use crate::log::Log;
use crate::pace::{Backoff, Jitter, Schedule, Source};

/// The deadlines of a request to the API server: past one, the request
/// counts as failed and is retried on the backoff [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// To open the connection (TCP and TLS).
    pub connect: Duration,
    /// From sending the request to the response's head (a real server
    /// answers a watch's head at once, a list's within seconds).
    pub first_byte: Duration,
    /// The longest gap between two pieces of a list's body.
    pub body_gap: Duration,
    /// Added to the watch's own timeout for the longest gap between two
    /// pieces of a watch's body: a second under kube-runtime's idle
    /// margin (5 s), so that a silent watch is cut here, as a failure
    /// that backs off, rather than ended there, as a clean end.
    pub watch_margin: Duration,
}

impl Default for Deadlines {
    /// 5 s to connect, 15 s to the head, 15 s between pieces of a list,
    /// the watch's timeout plus 4 s between pieces of a watch.
    fn default() -> Self {
        Deadlines {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(15),
            body_gap: Duration::from_secs(15),
            watch_margin: Duration::from_secs(4),
        }
    }
}

/// Why a request to the API server failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No connection, or it broke (refused, reset, name not found).
    Connection(String),
    /// A deadline passed (which one).
    Deadline(&'static str),
    /// An error status other than 410 and 429 (5xx mostly).
    Status(u16),
    /// 429 Too Many Requests, with its Retry-After.
    TooMany(Option<Duration>),
    /// 410 Gone: the watch's resourceVersion is too old (a relist).
    Gone,
    /// A body that does not parse.
    Unparsable,
    /// A watch answered with a plain, non-streamed body.
    PlainBody,
    /// A watch cut before its own timeout.
    CutEarly,
    /// Anything else the watcher reported.
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connection(e) => write!(f, "connection failed: {e}"),
            Failure::Deadline(what) => write!(f, "deadline passed: {what}"),
            Failure::Status(code) => write!(f, "status {code}"),
            Failure::TooMany(Some(d)) => write!(f, "429, Retry-After {} s", d.as_secs()),
            Failure::TooMany(None) => write!(f, "429"),
            Failure::Gone => write!(f, "410 Gone, relisting"),
            Failure::Unparsable => write!(f, "a body that does not parse"),
            Failure::PlainBody => write!(f, "a watch answered with a plain body"),
            Failure::CutEarly => write!(f, "a watch cut before its timeout"),
            Failure::Other(e) => write!(f, "{e}"),
        }
    }
}

impl Failure {
    /// The failure's class, as the live mode's metrics label it
    /// (`ipvs_k8s_api_failures_total{class}`): a few fixed words, so that
    /// the label set stays bounded.
    pub fn class(&self) -> &'static str {
        match self {
            Failure::Connection(_) => "connection",
            Failure::Deadline(_) => "deadline",
            Failure::Status(_) => "status",
            Failure::TooMany(_) => "too_many_requests",
            Failure::Gone => "gone",
            Failure::Unparsable => "unparsable",
            Failure::PlainBody => "plain_body",
            Failure::CutEarly => "cut_early",
            Failure::Other(_) => "other",
        }
    }

    /// The class of an error of kube-runtime's watcher.
    pub fn of(e: &kube::runtime::watcher::Error) -> Failure {
        use kube::runtime::watcher::Error as W;
        let client = |e: &kube::Error| match e {
            kube::Error::Api(s) if s.code == 410 => Failure::Gone,
            kube::Error::Api(s) if s.code == 429 => Failure::TooMany(None),
            kube::Error::Api(s) => Failure::Status(s.code),
            kube::Error::SerdeError(_) => Failure::Unparsable,
            other => {
                let text = other.to_string();
                if text.contains("parse") || text.contains("EOF") || text.contains("decode") {
                    Failure::Unparsable
                } else {
                    Failure::Connection(text)
                }
            }
        };
        match e {
            W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => client(e),
            W::WatchError(s) if s.code == 410 => Failure::Gone,
            W::WatchError(s) => Failure::Status(s.code),
            W::NoResourceVersion => Failure::Unparsable,
        }
    }
}

/// The time on the runtime's clock (which tests may pause).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A resource failing since `since`, `count` times in a row.
#[derive(Debug, Clone)]
struct Failing {
    since: Instant,
    count: u32,
    last: Failure,
}

/// One resource's state.
#[derive(Debug)]
struct Gate {
    backoff: Backoff,
    /// No request before this.
    next_at: Option<Instant>,
    /// The number of the current attempt.
    attempt: u64,
    /// Whether the current attempt failed already (it counts once).
    failed: bool,
    /// Whether the current attempt was a watch that ended early.
    ended_early: bool,
    failing: Option<Failing>,
    /// When the data was last known current.
    fresh_at: Option<Instant>,
    /// Whether a watch is open and answering (the data is current).
    watching: bool,
    /// The requests sent: lists, then watches.
    requests: [u64; 2],
    /// The failures, by [`Failure::class`].
    failures: std::collections::BTreeMap<&'static str, u64>,
}

/// What one resource's gate counted, for the live mode's metrics
/// ([`Gates::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateStats {
    /// The resource: `services` or `endpointslices` (as in its URL).
    pub resource: &'static str,
    /// The list requests sent (pages and relists each count).
    pub lists: u64,
    /// The watch requests sent.
    pub watches: u64,
    /// The failures, each counted once per attempt, by [`Failure::class`].
    pub failures: Vec<(&'static str, u64)>,
    /// The failures in a row now (0: it works).
    pub failing: u32,
    /// How long the next request must wait for the backoff (zero: none).
    pub backoff: Duration,
}

/// The per-resource gates of the API requests: a [`Layer`] of the kube
/// client, shared with the watch loop (which reports the watcher's
/// events) and the health endpoint (which asks for [`Gates::age`]).
#[derive(Debug)]
pub struct Gates {
    gates: Mutex<[Gate; 2]>,
    deadlines: Deadlines,
    /// The watches' own timeout.
    watch_timeout: Duration,
    log: Log,
}

fn index(source: Source) -> usize {
    match source {
        Source::Services => 0,
        Source::Slices => 1,
    }
}

impl Gates {
    /// Gates with `schedule`, `deadlines` and the watches' timeout in
    /// seconds, logging to `log`.
    pub fn new(
        schedule: Schedule,
        deadlines: Deadlines,
        watch_timeout: u32,
        log: Log,
    ) -> Arc<Self> {
        let gate = || Gate {
            backoff: Backoff::new(schedule, Jitter::random()),
            next_at: None,
            attempt: 0,
            failed: false,
            ended_early: false,
            failing: None,
            fresh_at: None,
            watching: false,
            requests: [0; 2],
            failures: std::collections::BTreeMap::new(),
        };
        Arc::new(Gates {
            gates: Mutex::new([gate(), gate()]),
            deadlines,
            watch_timeout: Duration::from_secs(u64::from(watch_timeout)),
            log,
        })
    }

    fn with<T>(&self, source: Source, f: impl FnOnce(&mut Gate) -> T) -> T {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut gates[index(source)])
    }

    /// A new attempt on `source`: its number and how long it must wait.
    fn begin(&self, source: Source) -> (u64, Duration) {
        let now = now();
        self.with(source, |g| {
            if g.ended_early && !g.failed {
                self.fail(g, source, Failure::CutEarly, now);
            }
            g.attempt += 1;
            g.failed = false;
            g.ended_early = false;
            let wait = g
                .next_at
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
            (g.attempt, wait)
        })
    }

    fn fail(&self, g: &mut Gate, source: Source, failure: Failure, now: Instant) {
        if g.failed {
            return;
        }
        g.failed = true;
        g.watching = false;
        *g.failures.entry(failure.class()).or_insert(0) += 1;
        let delay = match failure {
            Failure::TooMany(Some(after)) => g.backoff.failed_asking(now, after),
            _ => g.backoff.failed(now),
        };
        g.next_at = Some(now + delay);
        let name = source.name();
        match &mut g.failing {
            None => {
                self.log.warn(&format!(
                    "{name}: failing ({failure}): next try in {} ms",
                    delay.as_millis()
                ));
                g.failing = Some(Failing {
                    since: now,
                    count: 1,
                    last: failure,
                });
            }
            Some(f) => {
                f.count += 1;
                if f.count.is_power_of_two() {
                    self.log.warn(&format!(
                        "{name}: still failing ({failure}): {} failures in {} s, next try in {} ms",
                        f.count,
                        now.saturating_duration_since(f.since).as_secs(),
                        delay.as_millis()
                    ));
                }
                f.last = failure;
            }
        }
    }

    /// A request on `source` is sent: a watch, or a list.
    fn requested(&self, source: Source, watch: bool) {
        self.with(source, |g| g.requests[usize::from(watch)] += 1);
    }

    /// What each resource's gate counted, Services first, at `now`.
    pub fn stats(&self, now: Instant) -> Vec<GateStats> {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        [Source::Services, Source::Slices]
            .into_iter()
            .map(|source| {
                let g = &gates[index(source)];
                GateStats {
                    resource: match source {
                        Source::Services => "services",
                        Source::Slices => "endpointslices",
                    },
                    lists: g.requests[0],
                    watches: g.requests[1],
                    failures: g.failures.iter().map(|(c, n)| (*c, *n)).collect(),
                    failing: g.failing.as_ref().map_or(0, |f| f.count),
                    backoff: g
                        .next_at
                        .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
                }
            })
            .collect()
    }

    /// The current attempt on `source` failed (counted once).
    pub fn failed(&self, source: Source, failure: Failure) {
        let now = now();
        self.with(source, |g| self.fail(g, source, failure, now));
    }

    fn failed_attempt(&self, source: Source, attempt: u64, failure: Failure) {
        let now = now();
        self.with(source, |g| {
            if g.attempt == attempt {
                self.fail(g, source, failure, now);
            }
        });
    }

    /// `source`'s data is current (an object, a page, a bookmark).
    pub fn fresh(&self, source: Source) {
        let now = now();
        self.with(source, |g| g.fresh_at = Some(now));
    }

    /// `source` works: an object arrived, a list completed, a watch ran
    /// to its timeout. A list after a 410 proves little (the next watch
    /// may get 410 again): `proof` false leaves the failing state on.
    pub fn succeeded(&self, source: Source, proof: bool) {
        let now = now();
        self.with(source, |g| {
            g.fresh_at = Some(now);
            g.backoff.succeeded(now);
            let proven = proof || g.failing.as_ref().is_none_or(|f| f.last != Failure::Gone);
            if proven {
                if let Some(f) = g.failing.take() {
                    self.log.info(&format!(
                        "{}: recovered after {} failures in {} s",
                        source.name(),
                        f.count,
                        now.saturating_duration_since(f.since).as_secs()
                    ));
                }
            }
        });
    }

    fn watch_ended(&self, source: Source, attempt: u64, at_timeout: bool) {
        if at_timeout {
            self.with(source, |g| g.watching = false);
            self.succeeded(source, true);
        } else {
            self.with(source, |g| {
                if g.attempt == attempt {
                    g.watching = false;
                    g.ended_early = true;
                }
            });
        }
    }

    /// How old the older of the two resources' data is at `now`: zero
    /// while both watches are open and answering; `None` before both
    /// were ever current.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        let mut oldest = Duration::ZERO;
        for g in gates.iter() {
            if !g.watching {
                oldest = oldest.max(now.saturating_duration_since(g.fresh_at?));
            }
        }
        Some(oldest)
    }
}

/// What a request is, from its URI.
fn classify(req: &Request<Body>) -> Option<(Source, bool, Option<Duration>)> {
    let uri = req.uri();
    let path = uri.path();
    let source = if path.ends_with("/services") {
        Source::Services
    } else if path.ends_with("/endpointslices") {
        Source::Slices
    } else {
        return None;
    };
    let query = uri.query().unwrap_or("");
    let mut watch = false;
    let mut timeout = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("watch", v)) => watch = v == "true" || v == "1",
            Some(("timeoutSeconds", v)) => {
                timeout = v.parse::<u64>().ok().map(Duration::from_secs);
            }
            _ => {}
        }
    }
    Some((source, watch, timeout))
}

/// The layer that puts [`Gates`] in the kube client's stack.
#[derive(Debug, Clone)]
pub struct GatesLayer(pub Arc<Gates>);

impl<S> Layer<S> for GatesLayer {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gates: self.0.clone(),
        }
    }
}

/// The kube client's service behind its [`Gates`].
#[derive(Debug)]
pub struct Gated<S> {
    inner: S,
    gates: Arc<Gates>,
}

type Answer = Response<Box<DynBody>>;

impl<S> Service<Request<Body>> for Gated<S>
where
    S: Service<Request<Body>, Response = Answer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let what = classify(&req);
        // hyper's request future does nothing before it is polled: the
        // request leaves after the wait below.
        let sent = self.inner.call(req);
        let Some((source, watch, timeout)) = what else {
            return Box::pin(sent);
        };
        let gates = self.gates.clone();
        Box::pin(async move {
            let (attempt, wait) = gates.begin(source);
            gates.requested(source, watch);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let d = gates.deadlines;
            let head = match tokio::time::timeout(d.connect + d.first_byte, sent).await {
                Err(_) => {
                    gates.failed_attempt(source, attempt, Failure::Deadline("no response head"));
                    return Err("deadline passed: no response head".into());
                }
                Ok(Err(e)) => {
                    gates.failed_attempt(source, attempt, Failure::Connection(e.to_string()));
                    return Err(e);
                }
                Ok(Ok(r)) => r,
            };
            let status = head.status().as_u16();
            let failure = match status {
                200..=299 if watch && head.headers().contains_key(http::header::CONTENT_LENGTH) => {
                    Some(Failure::PlainBody)
                }
                200..=299 => None,
                410 => Some(Failure::Gone),
                429 => Some(Failure::TooMany(
                    head.headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs),
                )),
                other => Some(Failure::Status(other)),
            };
            match failure {
                Some(f) => gates.failed_attempt(source, attempt, f),
                None if watch => gates.with(source, |g| {
                    if g.attempt == attempt {
                        g.watching = true;
                        g.fresh_at = Some(now());
                    }
                }),
                None => {}
            }
            let timeout = timeout.unwrap_or(gates.watch_timeout);
            let gap = if watch {
                timeout + d.watch_margin
            } else {
                d.body_gap
            };
            let (parts, body) = head.into_parts();
            let body = Watched {
                inner: body,
                gap,
                idle: Box::pin(tokio::time::sleep(gap)),
                gates,
                source,
                attempt,
                watch,
                started: now(),
                timeout,
            };
            Ok(Response::from_parts(parts, Box::new(body) as Box<DynBody>))
        })
    }
}

/// A response body under its gap deadline, which tells the gates how it
/// ended.
struct Watched {
    inner: Box<DynBody>,
    gap: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    gates: Arc<Gates>,
    source: Source,
    attempt: u64,
    watch: bool,
    started: Instant,
    timeout: Duration,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.gap;
                this.idle.as_mut().reset(next);
                if this.watch {
                    this.gates.fresh(this.source);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let failure = Failure::Connection(e.to_string());
                this.gates
                    .failed_attempt(this.source, this.attempt, failure);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if this.watch {
                    // The server ends a watch at its timeout (a second's
                    // slack for its clock and ours).
                    let lasted = now().saturating_duration_since(this.started);
                    let at_timeout = lasted + Duration::from_secs(1) >= this.timeout;
                    this.gates
                        .watch_ended(this.source, this.attempt, at_timeout);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    let what = if this.watch {
                        "a watch silent past its timeout"
                    } else {
                        "a gap in a list's body"
                    };
                    this.gates
                        .failed_attempt(this.source, this.attempt, Failure::Deadline(what));
                    return Poll::Ready(Some(Err(format!("deadline passed: {what}").into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Delays of 1, 2, 4... s without jitter.
    fn gates() -> Arc<Gates> {
        let schedule = Schedule {
            first: S,
            cap: 30 * S,
            jitter_percent: 0,
            reset_after: 120 * S,
        };
        Gates::new(schedule, Deadlines::default(), 290, Log { verbose: false })
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_failure_counts_once_and_holds_back_its_resource_alone() {
        let g = gates();
        let (a, wait) = g.begin(Source::Services);
        assert_eq!(wait, Duration::ZERO);
        // The layer sees a 500, then the watcher reports the same attempt.
        g.failed_attempt(Source::Services, a, Failure::Status(500));
        g.failed(Source::Services, Failure::Status(500));
        let (b, wait) = g.begin(Source::Services);
        assert_eq!(wait, S, "one failure, the first delay");
        assert_eq!(g.begin(Source::Slices).1, Duration::ZERO);
        // A late report of the old attempt counts for nothing.
        g.failed_attempt(Source::Services, a, Failure::CutEarly);
        tokio::time::advance(S).await;
        g.failed_attempt(Source::Services, b, Failure::Deadline("no response head"));
        assert_eq!(g.begin(Source::Services).1, 2 * S);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_watch_cut_early_backs_off_and_one_at_its_timeout_resumes_at_once() {
        let g = gates();
        let (a, _) = g.begin(Source::Slices);
        g.watch_ended(Source::Slices, a, true);
        assert_eq!(g.begin(Source::Slices).1, Duration::ZERO);
        let (b, _) = g.begin(Source::Slices);
        g.watch_ended(Source::Slices, b, false);
        // Classified when the next attempt begins.
        assert_eq!(g.begin(Source::Slices).1, S);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_retry_after_longer_than_the_schedule_is_obeyed() {
        let g = gates();
        let (a, _) = g.begin(Source::Services);
        g.failed_attempt(Source::Services, a, Failure::TooMany(Some(7 * S)));
        assert_eq!(g.begin(Source::Services).1, 7 * S);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_data_ages_only_while_a_watch_is_not_answering() {
        let g = gates();
        assert_eq!(g.age(now()), None, "never current");
        g.succeeded(Source::Services, true);
        g.succeeded(Source::Slices, true);
        assert_eq!(g.age(now()), Some(Duration::ZERO));
        g.with(Source::Slices, |x| x.watching = true);
        tokio::time::advance(100 * S).await;
        // Services' watch is not open: 100 s old; Slices' is current.
        assert_eq!(g.age(now()), Some(100 * S));
        g.failed(Source::Slices, Failure::CutEarly);
        tokio::time::advance(S).await;
        assert_eq!(g.age(now()), Some(101 * S));
    }
}
