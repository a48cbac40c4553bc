//! The live mode of `--from-k8s`: watch a cluster's Services and
//! EndpointSlices and keep the IPVS table in sync with them.
//!
//! Two watches (kube-runtime's watcher, which lists then watches, resumes
//! from the last resourceVersion after a dropped connection or a watch
//! timeout, asks for bookmarks, relists after 410 Gone) feed two
//! reflector stores. Every request they make goes through the
//! [`Gates`]: a deadline for each, a backoff per
//! resource on the [`Schedule`] of [`Settings::retry`] after any failure,
//! and the data's age for the health endpoint. A sync maps the stores' objects with
//! [`mapping::map`] and runs [`sync::step`] on one kernel handle kept for
//! the whole run:
//! - the first sync waits until both initial lists are complete (an empty
//!   store is never taken for an empty cluster);
//! - a change schedules a sync [`Settings::quiet`] after the last event,
//!   at most [`Settings::max_delay`] after the first, so that a burst of
//!   events gives one sync;
//! - a full resync runs every `--resync` seconds, which also repairs what
//!   someone else changed in the table;
//! - a sync that fails (the table cannot be read, a write is refused) is
//!   retried with a backoff (exponential, jittered, capped at 30 s and at
//!   `--resync`: [`Schedule`]); nothing ends the loop but SIGTERM or
//!   SIGINT (or, with `--once`, the end of the first sync).
//!
//! Those rules are the pure state machine [`Pacing`], tested alone; the
//! loop here feeds it the watches' events and sleeps until it is due.
//!
//! Everything runs on one current-thread tokio runtime built here: the
//! rest of the command line stays blocking.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use ipvs_netlink::{Handle, Op, ServiceId};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

pub use super::api::Deadlines;
use super::api::{Failure, Gates, GatesLayer};
pub use super::log::Log;
use super::mapping::{self, Mapped, Node};
use super::node;
use super::ownership::StateFile;
use super::pace::{Backoff, Jitter, Pacing, Periods, Schedule, Source};
use super::sync::{self, Kernel};
use super::Args;
use ipvs_plan::rules::op_line;
use ipvs_plan::VirtualServer;

/// How the loop paces its syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The period of full resyncs.
    pub resync: Duration,
    /// How long after the last event a sync waits for more.
    pub quiet: Duration,
    /// How long after the first event of a burst the sync runs at the latest.
    pub max_delay: Duration,
    /// The retry delays of a failed sync (capped at `resync` too), and
    /// of each watch's failures.
    pub retry: Schedule,
    /// How soon after a sync that left real servers draining the next
    /// one runs (at most `resync`), to remove them once idle.
    pub drain_recheck: Duration,
    /// One sync, then return its status.
    pub once: bool,
    /// Print the plans instead of writing them.
    pub dry_run: bool,
    /// The watches' server-side timeout, in seconds (`None`: kube's 290).
    pub watch_timeout: Option<u32>,
    /// The page size of consistent lists (`None`: kube's 500).
    pub page_size: Option<u32>,
    /// Lists ask for `resourceVersion=0`, without a page size: the API
    /// server answers them from its watch cache, whole, as it does the
    /// first list of client-go's reflector (kube-proxy's). No quorum read
    /// from etcd for every node at once. `false`: consistent lists, in
    /// pages of `page_size`.
    pub list_from_cache: bool,
    /// The deadlines of each request to the API server.
    pub deadlines: Deadlines,
    /// How old the data behind the table may get before the health
    /// endpoint answers 503 (see [`Settings::from_args`]).
    pub stale_after: Duration,
}

/// The watches' server-side timeout when none is set (kube-runtime's).
pub const WATCH_TIMEOUT: u32 = 290;

impl Settings {
    /// The periods of the loop's [`Pacing`].
    pub fn periods(&self) -> Periods {
        Periods {
            resync: self.resync,
            quiet: self.quiet,
            max_delay: self.max_delay,
            drain_recheck: self.drain_recheck,
        }
    }

    /// The retry delays of a failed sync: [`Settings::retry`], at most
    /// `resync`, jittered apart from other nodes.
    pub fn backoff(&self) -> Backoff {
        let schedule = Schedule {
            cap: self.retry.cap.min(self.resync),
            ..self.retry
        };
        Backoff::new(schedule, Jitter::random())
    }

    /// The gates of the API requests: the [`Settings::retry`] schedule
    /// (at most `resync`), the deadlines and the watches' timeout.
    pub fn gates(&self, log: Log) -> Arc<Gates> {
        let schedule = Schedule {
            cap: self.retry.cap.min(self.resync),
            ..self.retry
        };
        Gates::new(
            schedule,
            self.deadlines,
            self.watch_timeout.unwrap_or(WATCH_TIMEOUT),
            log,
        )
    }

    /// The settings of a command line.
    pub fn from_args(args: &Args) -> Self {
        Settings {
            resync: args.live.resync,
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            retry: Schedule::default(),
            drain_recheck: DRAIN_RECHECK,
            once: args.live.once,
            dry_run: args.dry_run,
            watch_timeout: None,
            page_size: None,
            list_from_cache: true,
            deadlines: Deadlines::default(),
            stale_after: stale_bound(args.live.resync),
        }
    }
}

/// The staleness bound of a resync period: twice the period (as
/// kube-proxy's healthz), at least a minute, so that it is always longer
/// than the backoff's cap (30 s) plus a request's deadlines: one failed
/// retry alone never turns the node unhealthy, an outage of more than
/// the bound always does.
pub fn stale_bound(resync: Duration) -> Duration {
    (resync * 2).max(Duration::from_secs(60))
}

/// How soon after a sync that left real servers draining the next one
/// runs (kube-proxy checks its draining servers every minute; the table
/// is cheaper to read than to leave a dead server at weight 0 that long).
pub const DRAIN_RECHECK: Duration = Duration::from_secs(5);

/// What one sync did, for the log, the health endpoint and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// 1 for the first sync, then counting.
    pub number: u64,
    /// Whether a periodic resync (rather than a change) started it.
    pub resync: bool,
    /// The sync's status: 0 done, 1 a conflict or a failed write, 2 the
    /// objects did not map (nothing written).
    pub code: i32,
    /// Whether it counts as successful: the objects mapped, the table was
    /// read and every write went through (conflicts are no failure).
    pub ok: bool,
    /// The writes planned.
    pub planned: usize,
    /// The writes sent to the kernel.
    pub sent: usize,
    /// The writes the kernel refused.
    pub failed: usize,
    /// The virtual services wanted.
    pub services: usize,
    /// The Services and EndpointSlices it was computed from.
    pub objects: (usize, usize),
    /// How long it took.
    pub elapsed: Duration,
    /// The real servers it left draining at weight 0 (graceful
    /// termination): another sync comes soon to remove them once idle.
    pub draining: usize,
    /// How long each of its steps took.
    pub phases: sync::Phases,
}

/// A way to end a running loop from elsewhere (tests; the CLI uses the
/// signals).
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<Notify>);

impl Stop {
    /// A new, unfired stop.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Ends the loop at its next turn (also if it has not started yet).
    pub fn stop(&self) {
        self.0.notify_one();
    }

    async fn fired(&self) {
        self.0.notified().await;
    }
}

/// The health endpoint's view of the loop.
#[derive(Debug, Clone, Default)]
struct Health {
    /// How old the data may get (see [`Settings::stale_after`]).
    stale_after: Duration,
    /// How fresh the watches' data is.
    gates: Option<Arc<Gates>>,
    last_success: Option<jiff::Timestamp>,
    last_success_at: Option<Instant>,
    last: Option<SyncReport>,
}

/// A kube configuration as kubectl would find it: `kubeconfig` (else
/// `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account)
/// and `context` (else the current context).
pub async fn config(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Config, String> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let mut config = match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        (None, Some(name)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("kubeconfig context {name}: {e}"))?,
        (None, None) => Config::infer()
            .await
            .map_err(|e| format!("no cluster configuration found: {e}"))?,
    };
    // A server on plain HTTP (`kubectl proxy`) needs no CA. Without one
    // in the kubeconfig, rustls would load the system's first and fail
    // where there are none (a `FROM scratch` container, a minimal node).
    if config.cluster_url.scheme_str() == Some("http") && config.root_cert.is_none() {
        config.root_cert = Some(Vec::new());
    }
    Ok(config)
}

/// A kube client of `config` whose every request goes through `gates`
/// (deadlines, backoff, freshness: [`crate::api`]), connecting within
/// the settings' deadline.
pub fn gated_client(
    mut config: Config,
    settings: &Settings,
    gates: Arc<Gates>,
) -> Result<Client, String> {
    config.connect_timeout = Some(settings.deadlines.connect);
    // The gates' deadlines replace a socket read timeout, and their
    // backoff kube's own retries (which would send requests the gates
    // never see).
    config.read_timeout = None;
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot make a Kubernetes client: {e}"))?;
    Ok(builder.with_layer(&GatesLayer(gates)).build())
}

/// Runs the live mode of a command line: opens IPVS with `open`, the
/// state file and a client, then syncs until SIGTERM or SIGINT (or once).
/// Exit 0 on a clean stop (or, with `--once`, a sync that left the table
/// matching), 1 for a failed `--once` sync, 2 when it could not start.
pub fn run(open: impl FnOnce() -> Result<Handle, String>, args: &Args) -> i32 {
    let started = Instant::now();
    let log = Log {
        verbose: args.live.verbose,
    };
    let fail = |msg: &str| {
        eprintln!("ipvsadm-rs: --from-k8s: {msg}");
        2
    };
    raise_open_files();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    // Everything that can refuse the start is checked before anything is
    // written (no lock, no state file, no dummy interface): two
    // reconcilers must not fight; the kubeconfig must be read and the
    // health port taken; IPVS must answer.
    match node::kube_proxy_check(args.node.force, args.dry_run) {
        Ok(None) => {}
        Ok(Some(warning)) => log.warn(&warning),
        Err(msg) => return fail(&msg),
    }
    runtime.block_on(async {
        let config = match config(
            args.live.kubeconfig.as_deref(),
            args.live.context.as_deref(),
        )
        .await
        {
            Ok(c) => c,
            Err(msg) => return fail(&msg),
        };
        let settings = Settings::from_args(args);
        let gates = settings.gates(log);
        let client = match gated_client(config, &settings, gates.clone()) {
            Ok(c) => c,
            Err(msg) => return fail(&msg),
        };
        let listener = match args.live.healthz {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => Some((addr, listener)),
                Err(e) => return fail(&format!("--healthz {addr}: cannot listen: {e}")),
            },
            None => None,
        };
        let mut handle = match open() {
            Ok(h) => h,
            Err(message) => {
                eprint!("{message}");
                return 2;
            }
        };
        // The first write: the lock (a dry run changes nothing, so it
        // takes none), then the dummy interface (one of that name that is
        // not a dummy stops here); then the sysctls, which exist once
        // IPVS is.
        // One instance that writes per network namespace (issue 34).
        let _netns = match (!args.dry_run)
            .then(|| super::ownership::lock_netns(&args.state))
            .transpose()
        {
            Ok(lock) => lock,
            Err(msg) => return fail(&msg),
        };
        let mut state = match StateFile::open(&args.state, !args.dry_run) {
            Ok(s) => s,
            Err(msg) => return fail(&msg),
        };
        for note in std::mem::take(&mut state.notes) {
            log.warn(&note);
        }
        let (mut dummy, sysctls) = match node::prepare(&args.node, args.dry_run) {
            Ok(p) => p,
            Err(msg) => return fail(&msg),
        };
        for note in &sysctls.notes {
            log.warn(note);
        }
        let health = Arc::new(Mutex::new(Health {
            stale_after: settings.stale_after,
            gates: Some(gates.clone()),
            ..Health::default()
        }));
        if let Some((addr, listener)) = listener {
            log.info(&format!("health endpoint on http://{addr}/healthz"));
            tokio::spawn(serve_health(
                listener,
                health.clone(),
                HEALTH_CONNECTIONS,
                HEALTH_DEADLINE,
            ));
        }
        let stop = Stop::new();
        let signals = {
            let stop = stop.clone();
            async move {
                let name = wait_for_signal().await;
                log.info(&format!("{name}: stopping"));
                stop.stop();
            }
        };
        tokio::spawn(signals);
        log.debug(&format!(
            "started in {} ms (runtime, client, IPVS, state file, node)",
            started.elapsed().as_millis()
        ));
        let mut observe = |r: &SyncReport| {
            let mut h = health.lock().unwrap_or_else(|p| p.into_inner());
            if r.ok {
                h.last_success = Some(jiff::Timestamp::now());
                h.last_success_at = Some(Instant::now());
            }
            h.last = Some(r.clone());
        };
        let to = Target {
            kernel: &mut handle,
            state: &mut state,
            dummy: dummy.as_mut(),
            args,
            settings: &settings,
            log,
        };
        watch_loop(client, gates, to, &mut observe, stop).await
    })
}

/// Raises the soft limit of open files to the hard one (as Go does at
/// start since 1.19, kube-proxy included): the watches, the netlink
/// socket and the state file never run short because clients of the
/// health endpoint came in numbers (which are bounded anyway). A failure
/// leaves the limit as it was.
fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: never fires (the process is then ended
        // by the default disposition, as any other).
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// How many health connections are served at once: more wait in the
/// kernel's accept queue, holding none of the process's descriptors.
pub const HEALTH_CONNECTIONS: usize = 16;

/// How long one health connection may take, from accept to the last
/// byte of the answer (a client that sends nothing is cut then).
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// Serves `GET /healthz` (any path, in fact): 200 with a JSON body when
/// healthy (see [`health_response`]), 503 otherwise.
///
/// At most `limit` connections at once, each cut after `deadline`
/// whatever it does: a thousand idle clients hold at most `limit`
/// descriptors, never the sync's (issue 22, bug 6).
async fn serve_health(
    listener: tokio::net::TcpListener,
    health: Arc<Mutex<Health>>,
    limit: usize,
    deadline: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    loop {
        // A slot before the accept: the others wait in the kernel's queue.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((mut conn, _)) = listener.accept().await else {
            // EMFILE and the like: no spin, and the slot goes back.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(deadline, answer_health(&mut conn, &health)).await;
            drop(conn);
            drop(slot);
        });
    }
}

/// Reads a request head (or whatever comes within 4 KiB) and answers.
async fn answer_health(conn: &mut tokio::net::TcpStream, health: &Mutex<Health>) {
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    while got < buf.len() {
        match conn.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got += n;
                if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let (status, body) = {
        let h = health.lock().unwrap_or_else(|p| p.into_inner());
        health_response(&h, Instant::now())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// The health endpoint's answer at `now`: healthy when a sync succeeded
/// within [`Settings::stale_after`] and the data of both watches is no
/// older than that (an open, answering watch is current; a failing one
/// ages from its last object, page, bookmark or clean end).
fn health_response(h: &Health, now: Instant) -> (&'static str, String) {
    let age = h.gates.as_ref().map(|g| g.age(now));
    let data_fresh = match age {
        None => true,
        Some(Some(age)) => age <= h.stale_after,
        Some(None) => false,
    };
    let fresh = data_fresh
        && h.last_success_at
            .is_some_and(|at| now.saturating_duration_since(at) <= h.stale_after);
    let last = h.last.as_ref().map(|r| {
        serde_json::json!({
            "number": r.number,
            "ok": r.ok,
            "code": r.code,
            "writes": r.sent,
            "failedWrites": r.failed,
            "virtualServices": r.services,
            "milliseconds": r.elapsed.as_millis() as u64,
        })
    });
    let body = serde_json::json!({
        "healthy": fresh,
        "dataAgeSeconds": age.flatten().map(|a| a.as_secs()),
        "lastSuccessfulSync": h.last_success.map(|t| t.to_string()),
        "lastSync": last,
    });
    let status = if fresh {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    (status, format!("{body}\n"))
}

/// A watch event, reduced to what the loop needs.
enum Seen {
    /// An object changed (name for the debug log).
    Changed(String),
    /// A (re)list began.
    ListStarted,
    /// A (re)list is complete: the store holds it.
    Listed,
    /// The watch failed; it will be retried.
    Failed(String),
}

fn describe<K: kube::Resource>(verb: &str, kind: &str, obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{verb} {kind} {}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("?")
    )
}

fn reduce<K: kube::Resource>(kind: &str, item: Result<Event<K>, watcher::Error>) -> Seen {
    match item {
        Ok(Event::Apply(obj)) => Seen::Changed(describe("applied", kind, &obj)),
        Ok(Event::Delete(obj)) => Seen::Changed(describe("deleted", kind, &obj)),
        Ok(Event::Init) => Seen::ListStarted,
        Ok(Event::InitApply(_)) => Seen::ListStarted,
        Ok(Event::InitDone) => Seen::Listed,
        Err(e) => Seen::Failed(e.to_string()),
    }
}

/// A watch of one kind into a store: its events, reduced, each reported
/// to the `gates` (which pace every request: kube-runtime's own backoff
/// is not used).
fn watch<K>(
    client: &Client,
    settings: &Settings,
    source: Source,
    gates: Arc<Gates>,
) -> (Store<K>, impl Stream<Item = Seen>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    // Bookmarks are asked for (kube-runtime's default), so that a
    // reconnect resumes from a recent resourceVersion, rarely a relist.
    let mut config =
        watcher::Config::default().timeout(settings.watch_timeout.unwrap_or(WATCH_TIMEOUT));
    if let Some(n) = settings.page_size {
        config = config.page_size(n);
    }
    if settings.list_from_cache {
        // kube leaves resourceVersion=0 out of a list with a limit.
        config = config.any_semantic();
        config.page_size = None;
    }
    let api: Api<K> = Api::all(client.clone());
    let kind = K::kind(&()).into_owned();
    let stream = reflector::reflector(writer, watcher::watcher(api, config)).map(move |item| {
        match &item {
            Ok(Event::Init) => {}
            Ok(Event::InitApply(_)) => gates.fresh(source),
            Ok(Event::InitDone) => gates.succeeded(source, false),
            Ok(Event::Apply(_) | Event::Delete(_)) => gates.succeeded(source, true),
            Err(e) => gates.failed(source, Failure::of(e)),
        }
        reduce(&kind, item)
    });
    (reader, stream)
}

/// The objects of both stores (shared, not copied).
struct Cache {
    services: Vec<Arc<core::Service>>,
    slices: Vec<Arc<discovery::EndpointSlice>>,
}

fn objects(services: &Store<core::Service>, slices: &Store<discovery::EndpointSlice>) -> Cache {
    Cache {
        services: services.state(),
        slices: slices.state(),
    }
}

/// One line of the log for a write: what changes, and the Service it
/// comes from.
pub fn describe_op(op: &Op, origins: &HashMap<ServiceId, &str>) -> String {
    let mut line = String::new();
    write_op(&mut line, op, origins);
    line
}

/// [`describe_op`], appended to `out`.
fn write_op(out: &mut String, op: &Op, origins: &HashMap<ServiceId, &str>) {
    use std::fmt::Write as _;
    let _ = match op {
        Op::AddService(s) => write!(out, "add virtual service {}", s.id),
        Op::EditService(s) => write!(out, "change virtual service {}", s.id),
        Op::DeleteService(id) => write!(out, "remove virtual service {id}"),
        Op::AddDestination(id, d) => write!(out, "add real server {} to {id}", d.socket_addr()),
        Op::EditDestination(id, d) => {
            write!(out, "change real server {} of {id}", d.socket_addr())
        }
        Op::DeleteDestination(id, a) => write!(out, "remove real server {a} from {id}"),
        other => write!(out, "write {}", op_line(other)),
    };
    // The Service a write comes from; a removed virtual service has none.
    let id = match op {
        Op::AddService(s) | Op::EditService(s) => Some(&s.id),
        Op::AddDestination(id, _) | Op::EditDestination(id, _) | Op::DeleteDestination(id, _) => {
            Some(id)
        }
        _ => None,
    };
    if let Some(origin) = id.and_then(|id| origins.get(id)) {
        let _ = write!(out, " ({origin})");
    }
}

/// The node as the mapping needs it, read anew at each sync (addresses
/// may come and go).
fn node(args: &Args) -> Result<Node, String> {
    Ok(Node {
        ips: super::node_ips(args)?,
        name: args.node_name.clone().or_else(super::host_name),
        scheduler: args.scheduler.clone(),
    })
}

/// The kernel of a sync, with the table as the last good sync left it:
/// a sync after a change plans against that instead of dumping the whole
/// table again (one destination dump per service). A resync, and the
/// sync after one that failed, read the kernel.
struct Remembered<'k, K: Kernel> {
    kernel: &'k mut K,
    known: Option<Vec<VirtualServer>>,
    /// The table the sync planned against.
    seen: Vec<VirtualServer>,
}

impl<K: Kernel> Kernel for Remembered<'_, K> {
    fn table(&mut self) -> Result<Vec<VirtualServer>, ipvs_netlink::Error> {
        let table = match self.known.take() {
            Some(t) => t,
            None => self.kernel.table()?,
        };
        self.seen = table.clone();
        Ok(table)
    }

    fn apply(&mut self, ops: &[Op]) -> Result<Vec<ipvs_netlink::Result<()>>, ipvs_netlink::Error> {
        self.kernel.apply(ops)
    }

    // The kernel's own answer (a service dump for a handle), not the
    // default's whole table: one destination dump per service.
    fn service_ids(&mut self) -> Result<HashSet<ServiceId>, ipvs_netlink::Error> {
        self.kernel.service_ids()
    }
}

/// The table after a sync whose writes all went through: the services it
/// did not own as they were, and the desired ones but conflicts.
fn table_after(
    seen: Vec<VirtualServer>,
    mapped: &Mapped,
    sync: &sync::SyncPlan,
) -> Vec<VirtualServer> {
    let conflicts: HashSet<ServiceId> = sync.plan.conflicts.iter().copied().collect();
    let mut table: Vec<VirtualServer> = seen
        .into_iter()
        .filter(|v| !sync.owned.contains(&v.service.id))
        .collect();
    let present: HashSet<ServiceId> = table.iter().map(|v| v.service.id).collect();
    table.extend(
        mapped
            .desired
            .iter()
            .filter(|d| !conflicts.contains(&d.server.service.id))
            .filter(|d| !present.contains(&d.server.service.id))
            .map(|d| d.server.clone()),
    );
    table
}

/// What the loop syncs, and with what: the kernel, the state file, the
/// dummy interface, the command line, the settings, the log.
pub struct Target<'a, K: Kernel> {
    /// The IPVS table (a netlink handle; an in-memory table in tests).
    pub kernel: &'a mut K,
    /// The record of the virtual services it created.
    pub state: &'a mut StateFile,
    /// The dummy interface that holds the service addresses (`None`:
    /// none is managed).
    pub dummy: Option<&'a mut node::Dummy>,
    /// The command line.
    pub args: &'a Args,
    /// How the loop paces its syncs, and the mode.
    pub settings: &'a Settings,
    /// Where it logs.
    pub log: Log,
}

/// What one sync leaves for the next.
#[derive(Debug, Default)]
struct Memory {
    /// The number of the last sync (0 before the first).
    number: u64,
    /// The table as the last good sync left it (see [`Remembered`]).
    known: Option<Vec<VirtualServer>>,
    /// The warnings and conflicts the last sync logged.
    last_errors: String,
}

impl<K: Kernel> Target<'_, K> {
    /// One sync from the stores' objects: map, plan, log each change, write.
    fn sync(&mut self, memory: &mut Memory, objects: &Cache, resync: bool) -> SyncReport {
        memory.number += 1;
        let Target {
            kernel,
            state,
            dummy,
            args,
            settings,
            log,
        } = self;
        let (kernel, state, log) = (&mut **kernel, &mut **state, *log);
        let number = memory.number;
        let known = &mut memory.known;
        let last_errors = &mut memory.last_errors;
        let started = Instant::now();
        let mut report = SyncReport {
            number,
            resync,
            code: 2,
            ok: false,
            planned: 0,
            sent: 0,
            failed: 0,
            services: 0,
            objects: (objects.services.len(), objects.slices.len()),
            elapsed: Duration::ZERO,
            draining: 0,
            phases: sync::Phases::default(),
        };
        let services: Vec<&core::Service> = objects.services.iter().map(|s| &**s).collect();
        let slices: Vec<&discovery::EndpointSlice> = objects.slices.iter().map(|s| &**s).collect();
        let mapped: Result<Mapped, String> =
            node(args).and_then(|n| mapping::map_refs(services, &slices, &n));
        let mapped = match mapped {
            Ok(m) => m,
            Err(msg) => {
                log.warn(&format!(
                    "sync {number}: the cluster's objects do not map, nothing written: {msg}"
                ));
                report.elapsed = started.elapsed();
                return report;
            }
        };
        report.phases.done("map", started);
        report.services = mapped.desired.len();
        let (outcome, at) = {
            let mut remembered = Remembered {
                kernel,
                known: if resync { None } else { known.take() },
                seen: Vec::new(),
            };
            let outcome = sync::step(
                &mut remembered,
                &mapped,
                state,
                settings.dry_run,
                dummy.as_deref_mut(),
            );
            report.phases.0.extend(outcome.phases.0.iter().copied());
            let at = Instant::now();
            // Real servers left draining are not in the desired table: the
            // next sync reads the kernel.
            *known = (!settings.dry_run
                && outcome.failed == 0
                && !outcome.error
                && outcome.sync.draining.is_empty())
            .then(|| table_after(std::mem::take(&mut remembered.seen), &mapped, &outcome.sync));
            (outcome, report.phases.done("remember", at))
        };
        // Warnings and conflicts are repeated at each sync: logged at info
        // level only when they change.
        let mut notes: String = mapped
            .warnings
            .iter()
            .map(|w| format!("warning: {w}\n"))
            .collect();
        for note in &outcome.notes {
            notes.push_str(&format!("{note}\n"));
        }
        if !notes.is_empty() {
            if notes != *last_errors {
                log.warn(&notes);
            } else {
                log.debug(&notes);
            }
        }
        *last_errors = notes;
        if settings.dry_run && !outcome.sync.plan.ops.is_empty() {
            let mut out = io::stdout().lock();
            for op in &outcome.sync.plan.ops {
                let _ = writeln!(out, "{}", op_line(op));
            }
            let _ = out.flush();
        }
        let origins: HashMap<ServiceId, &str> = mapped
            .desired
            .iter()
            .map(|d| (d.server.service.id, d.origin.as_str()))
            .collect();
        let ops = &outcome.sync.plan.ops;
        if !settings.dry_run && outcome.sent > 0 {
            // One write for all the lines (a first sync has one per service
            // and real server); refused writes were logged above.
            log.info_each(ops, |out, op| write_op(out, op, &origins));
        }
        if !outcome.bound.is_empty() {
            log.info_each(&outcome.bound, |text, line| text.push_str(line));
        }
        report.phases.done("log", at);
        report.draining = outcome.sync.draining.len();
        report.code = outcome.code;
        report.planned = ops.len();
        report.sent = outcome.sent;
        report.failed = outcome.failed;
        // Conflicts alone leave the sync successful: retrying cannot help.
        report.ok = outcome.failed == 0 && !outcome.error;
        report.elapsed = started.elapsed();
        report
    }
}

/// The watch loop: syncs `to` to the cluster of `client` until `stop`
/// fires (or after one sync with [`Settings::once`]). `observe` sees the
/// report of every sync. Returns 0 after a stop, or the status of the
/// `--once` sync (2 when a list or watch failed before it).
pub async fn watch_loop<K: Kernel>(
    client: Client,
    gates: Arc<Gates>,
    mut to: Target<'_, K>,
    observe: &mut dyn FnMut(&SyncReport),
    stop: Stop,
) -> i32 {
    let (settings, log) = (to.settings, to.log);
    let (services, service_events) =
        watch::<core::Service>(&client, settings, Source::Services, gates.clone());
    let (slices, slice_events) =
        watch::<discovery::EndpointSlice>(&client, settings, Source::Slices, gates);
    let events = futures_util::stream::select(
        service_events.map(|e| (Source::Services, e)),
        slice_events.map(|e| (Source::Slices, e)),
    );
    let mut events = std::pin::pin!(events);
    let stopped = stop.fired();
    let mut stopped = std::pin::pin!(stopped);

    let mut pacing = Pacing::new(settings.periods(), settings.backoff());
    let mut memory = Memory::default();
    log.info("watching Services and EndpointSlices");
    let watching = now();
    loop {
        let sleep = sleep_until(pacing.due());
        tokio::select! {
            biased;
            _ = &mut stopped => return 0,
            event = events.next() => {
                let Some((source, seen)) = event else {
                    // The watcher streams never end; if they did, nothing
                    // more would come: stop rather than spin.
                    log.warn("the watches ended");
                    return 1;
                };
                match seen {
                    Seen::Changed(what) => {
                        log.debug(&what);
                        pacing.changed(now());
                    }
                    Seen::ListStarted => {}
                    Seen::Listed => {
                        let now = now();
                        log.debug(&format!(
                            "listed {} ({} ms after the watch began)",
                            source.name(),
                            now.duration_since(watching).as_millis()
                        ));
                        pacing.listed(source, now);
                    }
                    Seen::Failed(msg) if settings.once => {
                        // One sync was asked for: no waiting for the cluster.
                        log.warn(&format!("watch of {}: {msg}", source.name()));
                        return 2;
                    }
                    Seen::Failed(msg) => {
                        // The gates log the failing and the recovery.
                        log.debug(&format!("watch of {}: {msg}", source.name()));
                    }
                }
            }
            _ = sleep => {
                let resync = pacing.start(now());
                let objects = objects(&services, &slices);
                let report = to.sync(&mut memory, &objects, resync);
                log_sync(log, &report);
                observe(&report);
                if settings.once {
                    return report.code;
                }
                let number = report.number;
                if report.draining > 0 {
                    log.debug(&format!("{} real server(s) draining: next sync in {} ms", report.draining, settings.drain_recheck.as_millis()));
                }
                if let Some(delay) = pacing.finished(now(), report.ok, report.draining > 0) {
                    log.warn(&format!("sync {number} failed: retrying in {} ms", delay.as_millis()));
                }
            }
        }
    }
}

/// Sleeps until `due` on the runtime's clock; forever when `None`.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Now, on the runtime's clock (which tests may pause) as the pacing
/// takes it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The log lines of a sync done.
fn log_sync(log: Log, report: &SyncReport) {
    let line = format!(
        "sync {}{}: {} Services, {} EndpointSlices, {} virtual services; {} writes{}, {} ms",
        report.number,
        if report.resync { " (resync)" } else { "" },
        report.objects.0,
        report.objects.1,
        report.services,
        report.sent,
        if report.failed > 0 {
            format!(" ({} refused)", report.failed)
        } else {
            String::new()
        },
        report.elapsed.as_millis()
    );
    if report.sent > 0 || !report.ok {
        log.info(&line);
    } else {
        log.debug(&line);
    }
    log.debug(&format!(
        "sync {} took: {}",
        report.number,
        report.phases.describe()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::{Destination, Service};

    fn report(ok: bool) -> SyncReport {
        SyncReport {
            number: 3,
            resync: false,
            code: if ok { 0 } else { 1 },
            ok,
            planned: 2,
            sent: 2,
            failed: if ok { 0 } else { 1 },
            services: 5,
            objects: (4, 4),
            elapsed: Duration::from_millis(12),
            draining: 0,
            phases: sync::Phases::default(),
        }
    }

    #[test]
    fn health_is_503_before_the_first_good_sync_then_200() {
        let mut h = Health {
            stale_after: stale_bound(Duration::from_secs(30)),
            ..Health::default()
        };
        let now = Instant::now();
        let (status, body) = health_response(&h, now);
        assert_eq!(status, "503 Service Unavailable");
        assert!(body.contains("\"lastSuccessfulSync\":null"), "{body}");
        h.last = Some(report(false));
        assert_eq!(health_response(&h, now).0, "503 Service Unavailable");
        h.last = Some(report(true));
        h.last_success = Some(jiff::Timestamp::now());
        h.last_success_at = Some(now);
        let (status, body) = health_response(&h, now);
        assert_eq!(status, "200 OK");
        // Stale past the bound: a minute at a resync of 30 s.
        let late = now + Duration::from_secs(60);
        assert_eq!(health_response(&h, late).0, "200 OK");
        let later = late + Duration::from_millis(1);
        assert_eq!(health_response(&h, later).0, "503 Service Unavailable");
        // Issue 22, bug 1: syncs that go on do not hide watches whose data
        // is older than the bound (a stalled or failing watch).
        let gates = Settings::from_args(&crate::tests::args_with("x", Vec::new()))
            .gates(Log { verbose: false });
        gates.succeeded(Source::Services, true);
        gates.succeeded(Source::Slices, true);
        let fresh_at = Instant::now();
        h.gates = Some(gates);
        h.last_success_at = Some(fresh_at + Duration::from_secs(120));
        let synced = fresh_at + Duration::from_secs(120);
        let (status, stale) = health_response(&h, synced);
        assert_eq!(status, "503 Service Unavailable");
        assert!(stale.contains("\"dataAgeSeconds\":120"), "{stale}");
        assert_eq!(
            health_response(&h, fresh_at + Duration::from_secs(59)).0,
            "200 OK"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["healthy"], true);
        assert_eq!(v["lastSync"]["writes"], 2);
        assert!(v["lastSuccessfulSync"].as_str().unwrap().ends_with('Z'));
    }

    /// The loop's clock and sleeps, with the pacing, on paused time: it
    /// wakes exactly when a sync is due, and never when none is.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_loop_sleeps_until_the_pacing_is_due_on_paused_time() {
        use crate::pace::{Schedule, Source};
        use tokio::time::{advance, timeout};
        let settings = Settings {
            resync: Duration::from_secs(30),
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            retry: Schedule::default(),
            drain_recheck: DRAIN_RECHECK,
            once: false,
            dry_run: false,
            watch_timeout: None,
            page_size: None,
            list_from_cache: true,
            deadlines: Deadlines::default(),
            stale_after: stale_bound(Duration::from_secs(30)),
        };
        // The timer's resolution is a millisecond.
        let woke_at = |at: Instant| {
            let n = now();
            assert!(
                n >= at && n <= at + Duration::from_millis(1),
                "{n:?} for {at:?}"
            );
        };
        let mut pacing = Pacing::new(settings.periods(), settings.backoff());
        let t0 = now();
        // Nothing is due before the lists: a day goes by without a sync.
        pacing.changed(t0);
        let day = Duration::from_secs(86_400);
        assert!(timeout(day, sleep_until(pacing.due())).await.is_err());
        woke_at(t0 + day);
        let t1 = now();
        pacing.listed(Source::Services, t1);
        advance(Duration::from_millis(60)).await;
        pacing.listed(Source::Slices, now());
        // A burst began a day ago: due at once.
        sleep_until(pacing.due()).await;
        woke_at(t1 + Duration::from_millis(60));
        assert!(!pacing.start(now()));
        // A failed sync: the retry after 0.4-0.8 s.
        let delay = pacing.finished(now(), false, false).unwrap();
        assert!((400..=800).contains(&delay.as_millis()), "{delay:?}");
        let failed = now();
        sleep_until(pacing.due()).await;
        woke_at(failed + delay);
        assert!(!pacing.start(now()), "a retry");
        pacing.finished(now(), true, false);
        // Then a resync every 30 s.
        let ok = now();
        sleep_until(pacing.due()).await;
        woke_at(ok + settings.resync);
        assert!(pacing.start(now()), "a resync");
    }

    /// Issue 22, bug 6: a thousand idle clients hold at most
    /// `HEALTH_CONNECTIONS` of the process's descriptors, each for at most
    /// the deadline; a real request is answered once they are cut.
    #[tokio::test(flavor = "current_thread")]
    async fn idle_health_clients_hold_few_descriptors_and_are_cut() {
        use tokio::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(Mutex::new(Health::default()));
        let deadline = Duration::from_millis(300);
        tokio::spawn(serve_health(listener, health, 4, deadline));
        // Descriptors of this process: the clients' own, and the server's.
        let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let before = fds();
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // 200 clients, 4 served, the rest in the kernel's queue (other
        // tests in this process may open a few descriptors meanwhile).
        let held = fds() - before;
        assert!((200..200 + 4 + 8).contains(&held), "{held} descriptors");
        // The idle ones are cut after the deadline, each slot in turn;
        // a real request then gets its answer.
        let started = Instant::now();
        let mut asking = TcpStream::connect(addr).await.unwrap();
        asking
            .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        drop(idle);
        asking.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn each_write_is_one_readable_line() {
        let id = ServiceId::tcp("10.96.0.10:80".parse().unwrap());
        let origins: HashMap<ServiceId, &str> = [(id, "default/web:http")].into();
        let d = Destination::new("10.244.0.3:8080".parse().unwrap());
        assert_eq!(
            describe_op(&Op::AddService(Service::new(id, "rr")), &origins),
            "add virtual service TCP 10.96.0.10:80 (default/web:http)"
        );
        assert_eq!(
            describe_op(&Op::AddDestination(id, d.clone()), &origins),
            "add real server 10.244.0.3:8080 to TCP 10.96.0.10:80 (default/web:http)"
        );
        assert_eq!(
            describe_op(&Op::DeleteDestination(id, d.socket_addr()), &origins),
            "remove real server 10.244.0.3:8080 from TCP 10.96.0.10:80 (default/web:http)"
        );
        assert_eq!(
            describe_op(&Op::DeleteService(id), &HashMap::new()),
            "remove virtual service TCP 10.96.0.10:80"
        );
    }
}
