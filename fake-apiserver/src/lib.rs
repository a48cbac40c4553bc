//! A fake Kubernetes API server for tests, on loopback, plain HTTP.
//!
//! It serves what a Service proxy reads, with the real protocol and real
//! Kubernetes JSON:
//! - `GET /api/v1/services` and `GET /apis/discovery.k8s.io/v1/endpointslices`
//!   (all namespaces): lists with `limit`/`continue` pagination, each
//!   paginated list consistent at the resourceVersion of its first page,
//!   `metadata.resourceVersion` and `remainingItemCount`; a list with
//!   `resourceVersion=0` is answered whole, whatever its `limit`, as the
//!   real server answers it from its watch cache;
//! - the same with `watch=true`: a chunked stream of newline-delimited
//!   watch events (`ADDED`, `MODIFIED`, `DELETED`, and `BOOKMARK` when
//!   `allowWatchBookmarks=true`) from the given `resourceVersion`;
//!   `timeoutSeconds` ends the stream cleanly (a BOOKMARK first, as the
//!   real server's watch cache does);
//! - 410 Gone: a watch from a resourceVersion older than the history
//!   kept gets an `ERROR` event holding a `Status` of code 410 (as the
//!   real server does), and a `continue` token of a compacted list gets a
//!   410 response.
//!
//! The test drives it: [`FakeApiServer::apply`] and
//! [`FakeApiServer::delete`] change objects (one resourceVersion each, as
//! etcd's revisions, shared by both kinds), [`FakeApiServer::batch`]
//! makes several changes at once (the open watches get them in one
//! write), [`FakeApiServer::compact`] forgets the history,
//! [`FakeApiServer::expire_watches`] sends 410 on the open watches,
//! [`FakeApiServer::drop_connections`] cuts them without a word and
//! [`FakeApiServer::end_watches`] ends them as a timeout would. Counters
//! of what it served are in [`FakeApiServer::stats`].
//!
//! A [`Fault`] set with [`FakeApiServer::fault`] makes it misbehave on
//! every request of a kind until it is healed (`None`): stalls at the
//! head, in the body or in a watch, dropped connections, 5xx, 429 with
//! or without Retry-After, bodies that do not parse, 410, and watches
//! answered with a plain body.

pub mod objects;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The kinds served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` Services.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlices.
    EndpointSlice,
}

impl Kind {
    /// The kind's name, as in `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
        }
    }

    /// The kind's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Service => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
        }
    }

    /// The path of the collection of all namespaces.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Service => "/api/v1/services",
            Kind::EndpointSlice => "/apis/discovery.k8s.io/v1/endpointslices",
        }
    }

    /// The kind of an object, from its `kind` field.
    pub fn of(object: &Value) -> Option<Kind> {
        match object.get("kind")?.as_str()? {
            "Service" => Some(Kind::Service),
            "EndpointSlice" => Some(Kind::EndpointSlice),
            _ => None,
        }
    }
}

/// A way to misbehave on every request of a kind (see
/// [`FakeApiServer::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reads the request and answers nothing, the connection held open.
    StallHead,
    /// Answers a head and the first bytes of a body, then nothing.
    StallBody,
    /// Lists as usual; a watch gets its head, then nothing: neither an
    /// event nor its end.
    StallWatch,
    /// Lists as usual; a watch gets its head, then the connection closes
    /// (long before the watch's timeout).
    CutWatch,
    /// Closes the connection without a word.
    Drop,
    /// Answers this status (a 5xx) with a `Status` body.
    Status(u16),
    /// Answers 429 Too Many Requests, with `Retry-After` of these
    /// seconds when given.
    TooMany(Option<u64>),
    /// Answers 200 with a JSON body cut short.
    Garbage,
    /// Answers 410 Gone: lists with a 410 response, watches with a 410
    /// `ERROR` event.
    Gone,
    /// Lists as usual; a watch is answered with a plain list body (a
    /// `Content-Length`, no stream), as a proxy that ignores `watch`.
    PlainBody,
}

/// One change in the history.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: Kind,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    what: &'static str,
    object: Value,
}

/// What the server served, for the tests' checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// List requests (each page counts), per kind.
    pub lists: BTreeMap<&'static str, u64>,
    /// Watch requests, per kind.
    pub watches: BTreeMap<&'static str, u64>,
    /// Watches answered with a 410 `ERROR` event.
    pub gone_events: u64,
    /// Lists answered 410 (an expired `continue`).
    pub gone_lists: u64,
    /// Watches open now.
    pub open_watches: u64,
    /// Watch events sent (BOOKMARKs included).
    pub events_sent: u64,
    /// Requests for anything else (answered 404).
    pub not_found: u64,
    /// Every request of a kind (lists, their pages and watches, faulted
    /// or not).
    pub requests: BTreeMap<&'static str, u64>,
}

/// The encoded items of a list, shared by its pages.
type Items = Arc<Vec<Arc<str>>>;

#[derive(Debug, Default)]
struct State {
    rv: u64,
    objects: HashMap<Kind, BTreeMap<(String, String), Value>>,
    /// The same objects as list items print them (no kind or apiVersion),
    /// encoded once when they change.
    listed: HashMap<Kind, BTreeMap<(String, String), Arc<str>>>,
    history: Vec<Change>,
    /// Watches from a resourceVersion below this get 410.
    oldest: u64,
    /// Paginated lists in progress: token -> (rv, items).
    pages: HashMap<String, (u64, Items)>,
    next_token: u64,
    /// Bumped by each control action: watches look at them.
    drop_gen: u64,
    end_gen: u64,
    gone_gen: u64,
    bookmark_gen: u64,
    /// The faults in force, per kind.
    faults: HashMap<Kind, Fault>,
    stats: Stats,
    shut: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake API server. Dropping it stops it (open watches end).
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stopping: Arc<AtomicBool>,
}

/// One change of a batch.
#[derive(Debug)]
enum Edit {
    Apply(Value),
    Delete(Kind, String, String),
}

/// Changes made together by [`FakeApiServer::batch`].
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Edit>,
    compact: bool,
    drop_connections: bool,
}

impl Batch {
    /// Creates or replaces an object (as [`FakeApiServer::apply`]).
    pub fn apply(&mut self, object: Value) -> &mut Self {
        self.ops.push(Edit::Apply(object));
        self
    }

    /// Deletes an object (as [`FakeApiServer::delete`]).
    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> &mut Self {
        self.ops
            .push(Edit::Delete(kind, namespace.to_owned(), name.to_owned()));
        self
    }

    /// After the changes, compacts (as [`FakeApiServer::compact`]): the
    /// open watches have not sent them yet.
    pub fn compact(&mut self) -> &mut Self {
        self.compact = true;
        self
    }

    /// Cuts the open watches too, before they send any of the changes
    /// (as [`FakeApiServer::drop_connections`]).
    pub fn drop_connections(&mut self) -> &mut Self {
        self.drop_connections = true;
        self
    }
}

fn meta_str<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get("metadata")?.get(key)?.as_str()
}

impl FakeApiServer {
    /// Starts a server on `127.0.0.1`, on a port of the system's choice.
    pub fn start() -> io::Result<FakeApiServer> {
        Self::start_on("127.0.0.1:0".parse().map_err(io::Error::other)?)
    }

    /// Starts a server on `addr`.
    pub fn start_on(addr: SocketAddr) -> io::Result<FakeApiServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let stopping = Arc::new(AtomicBool::new(false));
        {
            let shared = shared.clone();
            let stopping = stopping.clone();
            thread::Builder::new()
                .name("fake-apiserver".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stopping.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let shared = shared.clone();
                        let _ = thread::Builder::new()
                            .name("fake-apiserver-conn".into())
                            .spawn(move || serve(conn, &shared));
                    }
                })?;
        }
        Ok(FakeApiServer {
            addr,
            shared,
            stopping,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context (`fake`) points at this server,
    /// on plain HTTP and with no certificate authority, as for `kubectl
    /// proxy` (the VM has no system CA certificates: a client that looked
    /// for them there would fail).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            self.url()
        )
    }

    /// Creates or replaces an object (its `kind`, `metadata.namespace` and
    /// `metadata.name` say which); returns its new resourceVersion. An
    /// object of another kind, or without a name, is ignored.
    pub fn apply(&self, object: Value) -> u64 {
        let mut b = Batch::default();
        b.apply(object);
        self.batch(b)
    }

    /// Deletes an object if it exists; returns the resourceVersion after.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> u64 {
        let mut b = Batch::default();
        b.delete(kind, namespace, name);
        self.batch(b)
    }

    /// Makes the changes of `batch` at once: the open watches see them
    /// together. Returns the resourceVersion after them.
    pub fn batch(&self, batch: Batch) -> u64 {
        let mut st = self.shared.lock();
        for op in batch.ops {
            match op {
                Edit::Apply(mut object) => {
                    let (Some(kind), Some(name)) = (Kind::of(&object), meta_str(&object, "name"))
                    else {
                        continue;
                    };
                    let name = name.to_owned();
                    let ns = meta_str(&object, "namespace")
                        .unwrap_or("default")
                        .to_owned();
                    st.rv += 1;
                    let rv = st.rv;
                    let key = (ns.clone(), name.clone());
                    let old = st.objects.entry(kind).or_default().get(&key).cloned();
                    object["apiVersion"] = json!(kind.api_version());
                    let meta = &mut object["metadata"];
                    meta["namespace"] = json!(ns);
                    meta["resourceVersion"] = json!(rv.to_string());
                    let (uid, created) = match &old {
                        Some(o) => (
                            o["metadata"]["uid"].clone(),
                            o["metadata"]["creationTimestamp"].clone(),
                        ),
                        None => (
                            json!(format!("00000000-0000-4000-8000-{rv:012}")),
                            json!("2026-01-01T00:00:00Z"),
                        ),
                    };
                    meta["uid"] = uid;
                    meta["creationTimestamp"] = created;
                    let what = if old.is_some() { "MODIFIED" } else { "ADDED" };
                    let mut item = object.clone();
                    if let Some(map) = item.as_object_mut() {
                        // List items carry no kind or apiVersion, as the real server's.
                        map.remove("kind");
                        map.remove("apiVersion");
                    }
                    st.listed
                        .entry(kind)
                        .or_default()
                        .insert(key.clone(), Arc::from(item.to_string()));
                    st.objects
                        .entry(kind)
                        .or_default()
                        .insert(key, object.clone());
                    st.history.push(Change {
                        rv,
                        kind,
                        what,
                        object,
                    });
                }
                Edit::Delete(kind, ns, name) => {
                    let key = (ns, name);
                    st.listed.entry(kind).or_default().remove(&key);
                    let removed = st.objects.entry(kind).or_default().remove(&key);
                    if let Some(mut object) = removed {
                        st.rv += 1;
                        let rv = st.rv;
                        object["metadata"]["resourceVersion"] = json!(rv.to_string());
                        st.history.push(Change {
                            rv,
                            kind,
                            what: "DELETED",
                            object,
                        });
                    }
                }
            }
        }
        if batch.compact {
            st.oldest = st.rv;
            st.history.clear();
            st.pages.clear();
        }
        if batch.drop_connections {
            st.drop_gen += 1;
        }
        let rv = st.rv;
        drop(st);
        self.shared.changed.notify_all();
        rv
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// The objects of a kind now, by namespace and name.
    pub fn objects(&self, kind: Kind) -> Vec<Value> {
        let st = self.shared.lock();
        st.objects
            .get(&kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets the history (as etcd's compaction): a watch from an older
    /// resourceVersion gets 410, and so does a `continue` of a list in
    /// progress. Open watches go on.
    pub fn compact(&self) {
        let mut st = self.shared.lock();
        st.oldest = st.rv;
        st.history.clear();
        st.pages.clear();
    }

    /// Compacts, then ends each open watch with an `ERROR` event holding
    /// a 410 `Status`: the client must list again.
    pub fn expire_watches(&self) {
        self.compact();
        self.control(|st| st.gone_gen += 1);
    }

    /// Cuts every open watch connection, without ending its stream.
    pub fn drop_connections(&self) {
        self.control(|st| st.drop_gen += 1);
    }

    /// Ends every open watch cleanly, as its timeout would.
    pub fn end_watches(&self) {
        self.control(|st| st.end_gen += 1);
    }

    /// Sends a BOOKMARK on every open watch that allows them.
    pub fn bookmark(&self) {
        self.control(|st| st.bookmark_gen += 1);
    }

    fn control(&self, f: impl FnOnce(&mut State)) {
        let mut st = self.shared.lock();
        f(&mut st);
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Makes every request of `kind` (both kinds for `None`) misbehave as
    /// `fault` says from now on; `None` heals. Requests stalled by a
    /// fault end (the connection closed) when it is healed.
    pub fn fault(&self, kind: Option<Kind>, fault: Option<Fault>) {
        self.control(|st| {
            for k in [Kind::Service, Kind::EndpointSlice] {
                if kind.is_none_or(|want| want == k) {
                    match fault {
                        Some(f) => st.faults.insert(k, f),
                        None => st.faults.remove(&k),
                    };
                }
            }
        });
    }

    /// What it served so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Waits until `cond` holds of the stats, or `limit` passed; returns
    /// whether it held.
    pub fn wait_for(&self, limit: Duration, cond: impl Fn(&Stats) -> bool) -> bool {
        let end = Instant::now() + limit;
        let mut st = self.shared.lock();
        loop {
            if cond(&st.stats) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, end - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.control(|st| st.shut = true);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// One request line and its query.
#[derive(Debug)]
struct Request {
    path: String,
    query: HashMap<String, String>,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    // Skip the headers (GET requests carry no body).
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Ok(Some(Request {
        path: path.to_owned(),
        query,
    }))
}

/// Answers and closes the connection.
fn respond(stream: &mut TcpStream, status: &str, body: &Value) -> io::Result<()> {
    respond_text(stream, status, &body.to_string(), false)
}

fn respond_text(stream: &mut TcpStream, status: &str, body: &str, keep: bool) -> io::Result<()> {
    let connection = if keep { "keep-alive" } else { "close" };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn serve(stream: TcpStream, shared: &Shared) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    // Lists keep the connection open for the next request (as a real
    // server's HTTP/1.1 keep-alive); errors and watches close it.
    while let Ok(Some(req)) = read_request(&mut reader) {
        match serve_one(&mut stream, shared, &req) {
            Some(open) if open => continue,
            _ => return,
        }
    }
}

/// Serves one request; `Some(true)` when the connection stays open.
fn serve_one(stream: &mut TcpStream, shared: &Shared, req: &Request) -> Option<bool> {
    let kind = [Kind::Service, Kind::EndpointSlice]
        .into_iter()
        .find(|k| k.path() == req.path);
    let Some(kind) = kind else {
        shared.lock().stats.not_found += 1;
        let _ = respond(
            stream,
            "404 Not Found",
            &status(
                404,
                "NotFound",
                &format!("the server could not find {}", req.path),
            ),
        );
        return None;
    };
    let watching = req
        .query
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1");
    let fault = {
        let mut st = shared.lock();
        *st.stats.requests.entry(kind.name()).or_default() += 1;
        st.faults.get(&kind).copied()
    };
    shared.changed.notify_all();
    if let Some(f) = fault {
        if let Some(open) = misbehave(stream, shared, kind, watching, f) {
            return open;
        }
    }
    if watching {
        let _ = watch(stream.try_clone().ok()?, shared, kind, req);
        None
    } else {
        list(stream, shared, kind, req).ok()
    }
}

/// Holds the connection until the server stops (healing the fault does
/// not end a stalled request: the client must give up on it).
fn stall(shared: &Shared) {
    let mut st = shared.lock();
    while !st.shut {
        st = shared
            .changed
            .wait_timeout(st, Duration::from_millis(200))
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

/// Answers a request with `fault`; `None` when the fault lets this
/// request be served as usual, else whether the connection stays open.
fn misbehave(
    stream: &mut TcpStream,
    shared: &Shared,
    kind: Kind,
    watching: bool,
    fault: Fault,
) -> Option<Option<bool>> {
    let done = Some(None);
    match fault {
        Fault::StallHead => stall(shared),
        Fault::StallBody => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{\"kind\":";
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.flush());
            stall(shared);
        }
        Fault::StallWatch if watching => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.flush());
            stall(shared);
        }
        Fault::CutWatch if watching => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.flush());
            let _ = stream.shutdown(Shutdown::Both);
        }
        Fault::StallWatch | Fault::PlainBody | Fault::CutWatch if !watching => return None,
        Fault::Drop => {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Fault::Status(code) => {
            let _ = respond(
                stream,
                &format!("{code} Error"),
                &status(code, "InternalError", "the fake server fails on purpose"),
            );
        }
        Fault::TooMany(after) => {
            let body = status(429, "TooManyRequests", "the fake server is busy").to_string();
            let retry = after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
            let _ = write!(
                stream,
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .and_then(|()| stream.flush());
        }
        Fault::Garbage => {
            let body = format!(
                "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"1\"}},\"items\":[{{",
                kind.name(),
                kind.api_version()
            );
            let _ = respond_text(stream, "200 OK", &body, false);
        }
        Fault::Gone if watching => {
            shared.lock().stats.gone_events += 1;
            let line = event_line("ERROR", &status(410, "Expired", "too old resource version"));
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| chunk(stream, &line))
                .and_then(|()| stream.write_all(b"0\r\n\r\n"))
                .and_then(|()| stream.flush());
        }
        Fault::Gone => {
            shared.lock().stats.gone_lists += 1;
            let _ = respond(
                stream,
                "410 Gone",
                &status(410, "Expired", "gone on purpose"),
            );
        }
        Fault::StallWatch | Fault::PlainBody | Fault::CutWatch => {
            let body = format!(
                "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"1\"}},\"items\":[]}}",
                kind.name(),
                kind.api_version()
            );
            let _ = respond_text(stream, "200 OK", &body, false);
        }
    }
    done
}

/// Serves a list page; `Ok(true)` when the connection stays open.
fn list(stream: &mut TcpStream, shared: &Shared, kind: Kind, req: &Request) -> io::Result<bool> {
    // resourceVersion=0 asks for any version: the real server answers
    // from its watch cache, whole, whatever the limit.
    let from_cache = req.query.get("resourceVersion").is_some_and(|v| v == "0")
        && req.query.get("continue").is_none_or(|c| c.is_empty());
    let limit = req
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0 && !from_cache);
    let mut st = shared.lock();
    *st.stats.lists.entry(kind.name()).or_default() += 1;
    shared.changed.notify_all();
    let (rv, items, offset) = match req.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (token_id, offset) = token.split_once(':').unwrap_or((token, "0"));
            let offset: usize = offset.parse().unwrap_or(0);
            match st.pages.get(token_id) {
                Some((rv, items)) => (*rv, Arc::clone(items), offset),
                None => {
                    st.stats.gone_lists += 1;
                    drop(st);
                    return respond(
                        stream,
                        "410 Gone",
                        &status(
                            410,
                            "Expired",
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                        ),
                    ).map(|()| false);
                }
            }
        }
        None => {
            let items: Vec<Arc<str>> = st
                .listed
                .get(&kind)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            (st.rv, Arc::new(items), 0)
        }
    };
    let end = limit.map_or(items.len(), |l| (offset + l).min(items.len()));
    let page = &items[offset.min(items.len())..end];
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if end < items.len() {
        let token_id = match req.query.get("continue").filter(|c| !c.is_empty()) {
            Some(t) => t.split_once(':').map_or(t.clone(), |(id, _)| id.to_owned()),
            None => {
                st.next_token += 1;
                let id = format!("page{}", st.next_token);
                st.pages.insert(id.clone(), (rv, Arc::clone(&items)));
                id
            }
        };
        metadata["continue"] = json!(format!("{token_id}:{end}"));
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    drop(st);
    // The items are encoded already: the body is put together around them.
    let mut body = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{metadata},\"items\":[",
        kind.name(),
        kind.api_version()
    );
    for (n, item) in page.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}");
    respond_text(stream, "200 OK", &body, true).map(|()| true)
}

fn chunk(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    let mut buf = format!("{:x}\r\n", data.len()).into_bytes();
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
    stream.write_all(&buf)
}

fn event_line(what: &str, object: &Value) -> Vec<u8> {
    let mut line = json!({ "type": what, "object": object })
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

fn bookmark_line(kind: Kind, rv: u64) -> Vec<u8> {
    event_line(
        "BOOKMARK",
        &json!({
            "kind": kind.name(),
            "apiVersion": kind.api_version(),
            "metadata": {
                "resourceVersion": rv.to_string(),
                "annotations": { "k8s.io/initial-events-end": "true" },
            },
        }),
    )
}

/// Why a watch stream ends.
enum End {
    /// Cleanly: the terminating chunk.
    Clean,
    /// Cut: the connection shut without the terminating chunk.
    Cut,
}

fn watch(mut stream: TcpStream, shared: &Shared, kind: Kind, req: &Request) -> io::Result<()> {
    let bookmarks = req
        .query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let from: Option<u64> = req
        .query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let deadline = timeout.map(|t| Instant::now() + t);

    let mut st = shared.lock();
    *st.stats.watches.entry(kind.name()).or_default() += 1;
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    // Where this watch is: the last resourceVersion it has sent.
    let mut at = match from {
        Some(rv) if rv < st.oldest => {
            st.stats.gone_events += 1;
            let line = event_line(
                "ERROR",
                &status(
                    410,
                    "Expired",
                    &format!("too old resource version: {rv} ({})", st.oldest),
                ),
            );
            drop(st);
            chunk(&mut stream, &line)?;
            stream.write_all(b"0\r\n\r\n")?;
            return stream.flush();
        }
        Some(rv) => rv,
        None => {
            // From "now", with every object as ADDED first.
            let mut lines = Vec::new();
            for o in st.objects.get(&kind).into_iter().flat_map(|m| m.values()) {
                lines.extend(event_line("ADDED", o));
            }
            let rv = st.rv;
            drop(st);
            if !lines.is_empty() {
                chunk(&mut stream, &lines)?;
            }
            st = shared.lock();
            rv
        }
    };
    st.stats.open_watches += 1;
    shared.changed.notify_all();
    let (drop_gen, end_gen, gone_gen, mut bookmark_gen) =
        (st.drop_gen, st.end_gen, st.gone_gen, st.bookmark_gen);
    let end = loop {
        if st.shut || st.drop_gen != drop_gen {
            break End::Cut;
        }
        if st.gone_gen != gone_gen || at < st.oldest {
            st.stats.gone_events += 1;
            let line = event_line("ERROR", &status(410, "Expired", "too old resource version"));
            drop(st);
            let sent = chunk(&mut stream, &line);
            st = shared.lock();
            if sent.is_err() {
                break End::Cut;
            }
            break End::Clean;
        }
        // New changes of this kind since `at`: sent before anything else,
        // so that a BOOKMARK never claims a change it did not send.
        let mut lines = Vec::new();
        let mut sent = 0;
        for c in st.history.iter().filter(|c| c.rv > at) {
            if c.kind == kind {
                let mut object = c.object.clone();
                object["kind"] = json!(kind.name());
                lines.extend(event_line(c.what, &object));
                sent += 1;
            }
        }
        // Everything up to the current resourceVersion is now sent.
        at = at.max(st.rv);
        if !lines.is_empty() {
            st.stats.events_sent += sent;
            drop(st);
            let result = chunk(&mut stream, &lines);
            st = shared.lock();
            if result.is_err() {
                break End::Cut;
            }
            continue;
        }
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
        if st.end_gen != end_gen || timed_out {
            if bookmarks {
                let line = bookmark_line(kind, at);
                st.stats.events_sent += 1;
                drop(st);
                let _ = chunk(&mut stream, &line);
                st = shared.lock();
            }
            break End::Clean;
        }
        if st.bookmark_gen != bookmark_gen {
            bookmark_gen = st.bookmark_gen;
            if bookmarks {
                let line = bookmark_line(kind, at);
                st.stats.events_sent += 1;
                drop(st);
                let result = chunk(&mut stream, &line);
                st = shared.lock();
                if result.is_err() {
                    break End::Cut;
                }
                continue;
            }
        }
        let wait = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        st = shared
            .changed
            .wait_timeout(st, wait.max(Duration::from_millis(1)))
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    };
    st.stats.open_watches -= 1;
    drop(st);
    shared.changed.notify_all();
    match end {
        End::Clean => {
            stream.write_all(b"0\r\n\r\n")?;
            stream.flush()
        }
        End::Cut => stream.shutdown(Shutdown::Both),
    }
}
