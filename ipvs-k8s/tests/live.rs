//! The live mode's watch loop against the fake API server, with an
//! in-memory IPVS table behind the [`Kernel`] seam: it converges after the
//! initial list, creates, updates, endpoint churn and deletes; a burst is
//! one sync; a no-op resync sends no write; it recovers from 410 Gone,
//! dropped connections and watch timeouts.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fake_apiserver::objects::{endpoint_slice as slice, service};
use fake_apiserver::{Batch, FakeApiServer, Fault, Kind};
use ipvs_k8s::live::health::{serve_healthz, HealthState, Limits};
use ipvs_k8s::live::{self, Log, Settings, Stop, SyncReport};
use ipvs_k8s::ownership::StateFile;
use ipvs_k8s::pace::Schedule;
use ipvs_k8s::sync::Kernel;
use ipvs_k8s::Args;
use ipvs_netlink::{Error, Op, Operation, Service, ServiceId};
use ipvs_plan::VirtualServer;
use serde_json::json;

mod common;

/// How long a test waits for the loop before it fails (a hang guard, not
/// a speed check).
const PATIENCE: Duration = Duration::from_secs(60);

/// An in-memory IPVS table that answers as the kernel does.
#[derive(Debug, Clone, Default)]
struct MemKernel(
    Arc<Mutex<HashMap<ServiceId, VirtualServer>>>,
    /// How many times the whole table was read.
    Arc<AtomicUsize>,
);

fn refuse(op: Operation, errno: i32) -> ipvs_netlink::Result<()> {
    Err(Error::Kernel { op, errno })
}

impl MemKernel {
    fn add_foreign(&self, id: ServiceId) {
        let service = Service::new(id, "wlc");
        self.0.lock().unwrap().insert(
            id,
            VirtualServer {
                service,
                dests: Vec::new(),
            },
        );
    }

    /// The table as `service -> sorted real servers`.
    fn snapshot(&self) -> BTreeMap<String, Vec<String>> {
        self.0
            .lock()
            .unwrap()
            .values()
            .map(|v| {
                let mut d: Vec<String> = v
                    .dests
                    .iter()
                    .map(|d| d.socket_addr().to_string())
                    .collect();
                d.sort();
                (v.service.id.to_string(), d)
            })
            .collect()
    }

    fn one(&mut self, op: &Op) -> ipvs_netlink::Result<()> {
        let mut t = self.0.lock().unwrap();
        match op {
            Op::AddService(s) => {
                if t.contains_key(&s.id) {
                    return refuse(Operation::AddService, libc::EEXIST);
                }
                t.insert(
                    s.id,
                    VirtualServer {
                        service: s.clone(),
                        dests: Vec::new(),
                    },
                );
            }
            Op::EditService(s) => match t.get_mut(&s.id) {
                Some(v) => v.service = s.clone(),
                None => return refuse(Operation::EditService, libc::ESRCH),
            },
            Op::DeleteService(id) => {
                if t.remove(id).is_none() {
                    return refuse(Operation::DeleteService, libc::ESRCH);
                }
            }
            Op::AddDestination(id, d) => {
                let Some(v) = t.get_mut(id) else {
                    return refuse(Operation::AddDestination, libc::ESRCH);
                };
                if v.dests.iter().any(|x| x.socket_addr() == d.socket_addr()) {
                    return refuse(Operation::AddDestination, libc::EEXIST);
                }
                v.dests.push(d.clone());
            }
            Op::EditDestination(id, d) => {
                let Some(v) = t.get_mut(id) else {
                    return refuse(Operation::EditDestination, libc::ESRCH);
                };
                match v
                    .dests
                    .iter_mut()
                    .find(|x| x.socket_addr() == d.socket_addr())
                {
                    Some(x) => *x = d.clone(),
                    None => return refuse(Operation::EditDestination, libc::ENOENT),
                }
            }
            Op::DeleteDestination(id, a) => {
                let Some(v) = t.get_mut(id) else {
                    return refuse(Operation::DeleteDestination, libc::ESRCH);
                };
                let before = v.dests.len();
                v.dests.retain(|x| x.socket_addr() != *a);
                if v.dests.len() == before {
                    return refuse(Operation::DeleteDestination, libc::ENOENT);
                }
            }
            _ => return refuse(Operation::AddService, libc::EINVAL),
        }
        Ok(())
    }
}

impl Kernel for MemKernel {
    fn table(&mut self) -> Result<Vec<VirtualServer>, Error> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }

    fn apply(&mut self, ops: &[Op]) -> Result<Vec<ipvs_netlink::Result<()>>, Error> {
        Ok(ops.iter().map(|op| self.one(op)).collect())
    }

    // As the kernel answers them: one service dump, one real-server dump.
    fn services(&mut self) -> Result<Vec<Service>, Error> {
        let t = self.0.lock().unwrap();
        Ok(t.values().map(|v| v.service.clone()).collect())
    }

    fn destinations(&mut self, id: &ServiceId) -> Result<Vec<ipvs_netlink::Destination>, Error> {
        let t = self.0.lock().unwrap();
        Ok(t.get(id).map(|v| v.dests.clone()).unwrap_or_default())
    }
}

/// The expected table: `TCP vip:port -> real servers`.
fn table(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    entries
        .iter()
        .map(|(vs, rs)| {
            let id = ServiceId::tcp(vs.parse::<SocketAddr>().unwrap());
            let mut d: Vec<String> = rs.iter().map(|s| s.to_string()).collect();
            d.sort();
            (id.to_string(), d)
        })
        .collect()
}

/// Service shop/cart (10.96.1.1) with `ports` (name, port, target port)
/// and its one EndpointSlice of `addrs`.
fn cart(server: &FakeApiServer, ports: &[(&str, u16, u16)], addrs: &[&str]) {
    let svc: Vec<(&str, u16)> = ports.iter().map(|&(n, p, _)| (n, p)).collect();
    let targets: Vec<(&str, u16)> = ports.iter().map(|&(n, _, t)| (n, t)).collect();
    let mut b = Batch::default();
    b.apply(service("shop", "cart", "10.96.1.1", &svc))
        .apply(slice("shop", "cart", "x", &targets, addrs));
    server.batch(b);
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ipvsadm-rs-live-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn quick_settings() -> Settings {
    Settings {
        // Long enough that no resync comes unasked in a test.
        resync: Duration::from_secs(3600),
        quiet: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        retry: Schedule {
            first: Duration::from_millis(100),
            ..Schedule::default()
        },
        drain_recheck: Duration::from_millis(200),
        once: false,
        dry_run: false,
        watch_timeout: None,
        page_size: Some(2),
        // Paginated, consistent lists: the tests see the pages.
        list_from_cache: false,
        deadlines: live::Deadlines::default(),
        stale_after: live::stale_bound(Duration::from_secs(3600)),
    }
}

/// A watch loop running on its own thread against a fake API server.
struct Running {
    kernel: MemKernel,
    reports: Receiver<SyncReport>,
    stop: Stop,
    thread: Option<JoinHandle<i32>>,
    dir: PathBuf,
}

/// The tests' options: those of every live test, on node node-a.
fn args(dir: &std::path::Path) -> Args {
    Args {
        node_name: Some("node-a".to_owned()),
        ..common::live_args(dir)
    }
}

fn start(server: &FakeApiServer, kernel: MemKernel, settings: Settings) -> Running {
    let dir = temp_dir();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    start_in(dir, kernel, settings)
}

fn start_in(dir: PathBuf, kernel: MemKernel, settings: Settings) -> Running {
    start_serving(dir, kernel.clone(), kernel, settings, None)
}

/// A watch loop on `kernel` (whose table `mem` holds), with the health
/// endpoint on `healthz` when given, on one current-thread runtime as
/// the command line runs them.
fn start_serving<K: Kernel + Send + 'static>(
    dir: PathBuf,
    kernel: K,
    mem: MemKernel,
    settings: Settings,
    healthz: Option<std::net::TcpListener>,
) -> Running {
    let (tx, reports) = mpsc::channel();
    let stop = Stop::new();
    let thread = {
        let stop = stop.clone();
        let args = args(&dir);
        std::thread::spawn(move || {
            common::runtime().block_on(async {
                // As `live::run` wires it.
                let (client, gates) = common::gated_client(&args, &settings).await;
                let health = HealthState::new(settings.stale_after, Some(gates.clone()));
                if let Some(listener) = healthz {
                    listener.set_nonblocking(true).unwrap();
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::spawn(serve_healthz(listener, health.clone(), Limits::default()));
                }
                let state = StateFile::open(&args.state, true).unwrap();
                let mut observe = |r: &SyncReport| {
                    health.record(r.last_sync());
                    let _ = tx.send(r.clone());
                };
                let to = live::Target {
                    kernel,
                    state,
                    dummy: None,
                    packet: None,
                    args,
                    settings,
                    log: Log { verbose: true },
                };
                live::watch_loop(client, gates, to, &mut observe, stop).await
            })
        })
    };
    Running {
        kernel: mem,
        reports,
        stop,
        thread: Some(thread),
        dir,
    }
}

impl Running {
    /// Waits for the next sync.
    fn next(&self) -> SyncReport {
        self.reports
            .recv_timeout(PATIENCE)
            .expect("a sync within the test's patience")
    }

    /// Waits for syncs until the table is `want`; returns the reports.
    fn converge(&self, want: &BTreeMap<String, Vec<String>>) -> Vec<SyncReport> {
        let mut seen = Vec::new();
        while self.kernel.snapshot() != *want {
            let r = self.reports.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                panic!(
                    "did not converge:\n have {:?}\n want {want:?}\n syncs {seen:?}",
                    self.kernel.snapshot()
                )
            });
            assert!(r.ok, "a sync failed: {r:?}");
            seen.push(r);
        }
        seen
    }

    /// Drains the reports of syncs already done.
    fn drain(&self) -> Vec<SyncReport> {
        self.reports.try_iter().collect()
    }

    fn finish(mut self) -> i32 {
        self.stop.stop();
        let code = self.thread.take().unwrap().join().unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
        code
    }
}

fn seed(server: &FakeApiServer) {
    let mut b = Batch::default();
    b.apply(service("default", "web", "10.96.0.10", &[("http", 80)]))
        .apply(slice(
            "default",
            "web",
            "a",
            &[("http", 8080)],
            &["10.244.0.1", "10.244.0.2"],
        ))
        .apply(service("default", "api", "10.96.0.11", &[("", 443)]))
        .apply(slice("default", "api", "a", &[("", 8443)], &["10.244.1.1"]))
        .apply(service("kube-system", "dns", "10.96.0.12", &[("dns", 53)]))
        .apply(slice(
            "kube-system",
            "dns",
            "a",
            &[("dns", 53)],
            &["10.244.2.1"],
        ))
        .apply(slice(
            "kube-system",
            "dns",
            "b",
            &[("dns", 53)],
            &["10.244.2.2"],
        ));
    server.batch(b);
}

fn seeded_table() -> BTreeMap<String, Vec<String>> {
    table(&[
        ("10.96.0.10:80", &["10.244.0.1:8080", "10.244.0.2:8080"]),
        ("10.96.0.11:443", &["10.244.1.1:8443"]),
        ("10.96.0.12:53", &["10.244.2.1:53", "10.244.2.2:53"]),
    ])
}

#[test]
fn lists_from_the_watch_cache_come_whole_in_one_request_per_kind() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    // As the command line runs it: resourceVersion=0, which the server
    // answers whole although a page would hold only 2.
    let settings = Settings {
        list_from_cache: true,
        ..quick_settings()
    };
    let run = start(&server, MemKernel::default(), settings);
    let first = run.next();
    assert_eq!(first.objects, (3, 4));
    assert_eq!(run.kernel.snapshot(), seeded_table());
    let stats = server.stats();
    assert_eq!(stats.lists["Service"], 1, "{stats:?}");
    assert_eq!(stats.lists["EndpointSlice"], 1, "{stats:?}");
    assert_eq!(run.finish(), 0);
}

#[test]
fn initial_list_converges_with_pagination() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let run = start(&server, MemKernel::default(), quick_settings());
    let first = run.next();
    // The first sync waits for both complete lists: it has everything.
    assert_eq!(first.number, 1);
    assert_eq!(first.objects, (3, 4));
    assert_eq!(first.services, 3);
    assert_eq!(first.sent, 3 + 5, "3 services and 5 real servers");
    assert_eq!(run.kernel.snapshot(), seeded_table());
    // Pages of 2: three objects took two list requests, four took two.
    let stats = server.stats();
    assert!(stats.lists["Service"] >= 2, "{stats:?}");
    assert!(stats.lists["EndpointSlice"] >= 2, "{stats:?}");
    // What it created is recorded.
    let owned = std::fs::read_to_string(run.dir.join("owned")).unwrap();
    assert!(owned.contains("tcp 10.96.0.10:80"), "{owned}");
    assert_eq!(run.finish(), 0);
}

#[test]
fn creates_updates_endpoint_churn_and_deletes_converge() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let kernel = MemKernel::default();
    let foreign = ServiceId::tcp("10.0.0.99:80".parse().unwrap());
    kernel.add_foreign(foreign);
    let run = start(&server, kernel, quick_settings());
    let mut want = seeded_table();
    want.insert(foreign.to_string(), Vec::new());
    run.converge(&want);

    // Create.
    cart(&server, &[("http", 80, 8080)], &["10.244.5.1"]);
    want.extend(table(&[("10.96.1.1:80", &["10.244.5.1:8080"])]));
    run.converge(&want);

    // Update: a second port.
    let ports = [("http", 80, 8080), ("admin", 9000, 9000)];
    cart(&server, &ports, &["10.244.5.1"]);
    want.extend(table(&[("10.96.1.1:9000", &["10.244.5.1:9000"])]));
    run.converge(&want);

    // Endpoint churn: one goes, two come.
    cart(&server, &ports, &["10.244.5.2", "10.244.5.3"]);
    want.extend(table(&[
        ("10.96.1.1:80", &["10.244.5.2:8080", "10.244.5.3:8080"]),
        ("10.96.1.1:9000", &["10.244.5.2:9000", "10.244.5.3:9000"]),
    ]));
    let syncs = run.converge(&want);
    let writes: usize = syncs.iter().map(|s| s.sent).sum();
    assert_eq!(writes, 6, "2 removed and 4 added real servers: {syncs:?}");

    // Delete: the Service goes, then its slice.
    server.delete(Kind::Service, "shop", "cart");
    server.delete(Kind::EndpointSlice, "shop", "cart-x");
    want.remove(&ServiceId::tcp("10.96.1.1:80".parse().unwrap()).to_string());
    want.remove(&ServiceId::tcp("10.96.1.1:9000".parse().unwrap()).to_string());
    run.converge(&want);
    // The foreign service was never touched.
    assert_eq!(
        run.kernel.snapshot()[&foreign.to_string()],
        Vec::<String>::new()
    );
    assert_eq!(run.finish(), 0);
}

#[test]
fn a_burst_is_one_sync_and_a_no_op_resync_sends_nothing() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let mut settings = quick_settings();
    // A quiet period long enough that one write of the burst is read
    // whole before the sync, however slow the machine.
    settings.quiet = Duration::from_millis(300);
    settings.max_delay = Duration::from_secs(5);
    let run = start(&server, MemKernel::default(), settings);
    run.converge(&seeded_table());
    assert!(run.drain().is_empty());

    let mut want = seeded_table();
    let mut b = Batch::default();
    for i in 0..40u16 {
        let name = format!("burst-{i}");
        let ip = format!("10.96.2.{}", i + 1);
        b.apply(service("burst", &name, &ip, &[("http", 80)]));
        b.apply(slice(
            "burst",
            &name,
            "a",
            &[("http", 8080)],
            &["10.244.9.1", "10.244.9.2"],
        ));
        want.extend(table(&[(
            &format!("{ip}:80"),
            &["10.244.9.1:8080", "10.244.9.2:8080"],
        )]));
    }
    server.batch(b);
    let r = run.next();
    assert_eq!(r.sent, 40 * 3, "the whole burst in the first sync: {r:?}");
    assert_eq!(run.kernel.snapshot(), want);
    assert_eq!(r.objects, (43, 44));
    run.finish();

    // A resync of a table that matches sends no write at all.
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let mut settings = quick_settings();
    settings.resync = Duration::from_millis(200);
    let run = start(&server, MemKernel::default(), settings);
    run.converge(&seeded_table());
    let mut resyncs = 0;
    while resyncs < 3 {
        let r = run.next();
        assert!(r.resync && r.ok, "{r:?}");
        assert_eq!((r.planned, r.sent), (0, 0), "{r:?}");
        resyncs += 1;
    }
    assert_eq!(run.finish(), 0);
}

#[test]
fn a_resync_repairs_what_someone_else_changed() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let mut settings = quick_settings();
    settings.resync = Duration::from_millis(200);
    let run = start(&server, MemKernel::default(), settings);
    run.converge(&seeded_table());
    // Someone deletes one of its services behind its back.
    let id = ServiceId::tcp("10.96.0.11:443".parse().unwrap());
    run.kernel.0.lock().unwrap().remove(&id);
    run.converge(&seeded_table());
    assert_eq!(run.finish(), 0);
}

#[test]
fn gone_410_relists_and_converges() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let run = start(&server, MemKernel::default(), quick_settings());
    run.converge(&seeded_table());
    assert!(server.wait_for(PATIENCE, |s| s.open_watches == 2));
    let lists = server.stats().lists;

    // 410 on the open watches; a change made meanwhile comes with the relist.
    server.expire_watches();
    server.apply(service("new", "one", "10.96.3.1", &[("http", 80)]));
    server.apply(slice("new", "one", "a", &[("http", 80)], &["10.244.3.1"]));
    let mut want = seeded_table();
    want.extend(table(&[("10.96.3.1:80", &["10.244.3.1:80"])]));
    run.converge(&want);
    let stats = server.stats();
    assert!(stats.gone_events >= 2, "{stats:?}");
    assert!(
        stats.lists["Service"] > lists["Service"],
        "relisted: {stats:?}"
    );

    // A resume from a compacted resourceVersion: 410 then a relist.
    assert!(server.wait_for(PATIENCE, |s| s.open_watches == 2));
    let gone = server.stats().gone_events;
    let mut b = Batch::default();
    b.delete(Kind::Service, "default", "api")
        .compact()
        .drop_connections();
    server.batch(b);
    want.remove(&ServiceId::tcp("10.96.0.11:443".parse().unwrap()).to_string());
    run.converge(&want);
    assert!(server.wait_for(PATIENCE, |s| s.gone_events > gone));
    assert_eq!(run.finish(), 0);
}

#[test]
fn dropped_connections_resume_without_a_relist() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let run = start(&server, MemKernel::default(), quick_settings());
    run.converge(&seeded_table());
    assert!(server.wait_for(PATIENCE, |s| s.open_watches == 2));
    let before = server.stats();
    server.drop_connections();
    server.apply(slice("default", "api", "a", &[("", 8443)], &["10.244.1.7"]));
    let mut want = seeded_table();
    want.extend(table(&[("10.96.0.11:443", &["10.244.1.7:8443"])]));
    run.converge(&want);
    assert!(server.wait_for(PATIENCE, |s| s.watches["EndpointSlice"]
        > before.watches["EndpointSlice"]));
    let after = server.stats();
    assert_eq!(
        after.lists, before.lists,
        "resumed from its resourceVersion"
    );
    assert_eq!(after.gone_events, 0);
    assert_eq!(run.finish(), 0);
}

#[test]
fn watch_timeouts_end_streams_that_resume() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let mut settings = quick_settings();
    settings.watch_timeout = Some(1);
    let run = start(&server, MemKernel::default(), settings);
    run.converge(&seeded_table());
    let lists = server.stats().lists;
    // Each watch ends after a second (with a BOOKMARK) and is resumed.
    assert!(server.wait_for(PATIENCE, |s| s.watches["Service"] >= 3
        && s.watches["EndpointSlice"] >= 3));
    server.apply(service("late", "svc", "10.96.4.1", &[("http", 80)]));
    let mut want = seeded_table();
    want.extend(table(&[("10.96.4.1:80", &[])]));
    run.converge(&want);
    // Ended cleanly, so resumed: no new list.
    assert_eq!(server.stats().lists, lists);
    // Test-controlled ends too.
    server.end_watches();
    server.bookmark();
    server.delete(Kind::Service, "late", "svc");
    run.converge(&seeded_table());
    assert_eq!(run.finish(), 0);
}

#[test]
fn once_syncs_one_time_and_a_restart_removes_what_went_meanwhile() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let kernel = MemKernel::default();
    let mut settings = quick_settings();
    settings.once = true;
    let run = start(&server, kernel.clone(), settings.clone());
    let r = run.next();
    assert_eq!((r.code, r.ok), (0, true));
    let dir = run.dir.clone();
    let code = run.thread_code();
    assert_eq!(code, 0);
    assert_eq!(kernel.snapshot(), seeded_table());

    // While it is down, a Service goes; the next run removes it, from
    // the state file's record.
    server.delete(Kind::Service, "default", "web");
    let run = start_in(dir, kernel.clone(), settings);
    let r = run.next();
    assert_eq!(r.sent, 1, "one virtual service removed: {r:?}");
    let mut want = seeded_table();
    want.remove(&ServiceId::tcp("10.96.0.10:80".parse().unwrap()).to_string());
    assert_eq!(kernel.snapshot(), want);
    assert_eq!(run.thread_code(), 0);
}

/// A test directory whose kubeconfig points at a loopback port nothing
/// listens on (yet); the directory and that address.
fn kubeconfig_of_no_server() -> (PathBuf, std::net::SocketAddr) {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let dir = temp_dir();
    let early = FakeApiServer::start().unwrap();
    let kubeconfig = early
        .kubeconfig()
        .replace(&early.url(), &format!("http://{addr}"));
    drop(early);
    std::fs::write(dir.join("kubeconfig"), kubeconfig).unwrap();
    (dir, addr)
}

#[test]
fn a_server_that_is_not_there_is_retried_not_fatal() {
    // Nothing listens yet on the kubeconfig's port: the watches fail and
    // back off; when the server comes, it converges.
    let (dir, addr) = kubeconfig_of_no_server();
    let run = start_in(dir, MemKernel::default(), quick_settings());
    std::thread::sleep(Duration::from_millis(300));
    assert!(run.drain().is_empty(), "no sync before the lists");
    let server = match FakeApiServer::start_on(addr) {
        Ok(s) => s,
        // The port was taken meanwhile: nothing to test on this run.
        Err(_) => return,
    };
    seed(&server);
    run.converge(&seeded_table());
    assert_eq!(run.finish(), 0);
}

#[test]
fn once_gives_up_when_the_cluster_cannot_be_listed() {
    let (dir, _) = kubeconfig_of_no_server();
    let mut settings = quick_settings();
    settings.once = true;
    let run = start_in(dir, MemKernel::default(), settings);
    let kernel = run.kernel.clone();
    assert_eq!(run.thread_code(), 2);
    assert!(kernel.snapshot().is_empty());
}

impl Running {
    /// The loop's status once it ended by itself (`--once`).
    fn thread_code(mut self) -> i32 {
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn bad_objects_do_not_end_the_loop() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let run = start(&server, MemKernel::default(), quick_settings());
    run.converge(&seeded_table());
    // A Service that cannot be used (an unknown affinity) beside a good
    // one: the bad one is skipped and reported (status 1, the sync a
    // success: retrying cannot help), the good one is written, as
    // kube-proxy skips one Service; fixing it converges.
    let mut bad = service("x", "bad", "10.96.5.1", &[("http", 80)]);
    bad["spec"]["sessionAffinity"] = json!("Sticky");
    server.apply(bad);
    server.apply(service("x", "good", "10.96.5.2", &[("http", 80)]));
    let mut want = seeded_table();
    want.extend(table(&[("10.96.5.2:80", &[])]));
    let seen = run.converge(&want);
    let r = seen.last().expect("a sync wrote the good Service");
    assert_eq!((r.code, r.ok, r.sent), (1, true, 1), "{r:?}");
    server.apply(service("x", "bad", "10.96.5.1", &[("http", 80)]));
    want.extend(table(&[("10.96.5.1:80", &[])]));
    run.converge(&want);
    assert_eq!(run.finish(), 0);
}

#[test]
fn syncs_after_changes_plan_against_the_known_table_and_recover_when_it_is_wrong() {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let run = start(&server, MemKernel::default(), quick_settings());
    run.converge(&seeded_table());
    let dumps = run.kernel.1.load(Ordering::SeqCst);
    assert_eq!(dumps, 1, "the first sync reads the table");

    // Changes: no dump of the whole table.
    server.apply(slice("default", "api", "a", &[("", 8443)], &["10.244.1.8"]));
    let mut want = seeded_table();
    want.extend(table(&[("10.96.0.11:443", &["10.244.1.8:8443"])]));
    run.converge(&want);
    assert_eq!(run.kernel.1.load(Ordering::SeqCst), dumps);

    // Someone deletes web's virtual service behind its back: the next
    // change to web fails on the kernel (no such service), and the retry
    // reads the table and repairs it.
    let web = ServiceId::tcp("10.96.0.10:80".parse().unwrap());
    run.kernel.0.lock().unwrap().remove(&web);
    server.apply(slice(
        "default",
        "web",
        "a",
        &[("http", 8080)],
        &["10.244.0.1", "10.244.0.2", "10.244.0.9"],
    ));
    want.extend(table(&[(
        "10.96.0.10:80",
        &["10.244.0.1:8080", "10.244.0.2:8080", "10.244.0.9:8080"],
    )]));
    let mut failed = false;
    while run.kernel.snapshot() != want {
        let r = run.next();
        failed |= !r.ok;
    }
    assert!(failed, "the sync against the stale table failed first");
    assert!(run.kernel.1.load(Ordering::SeqCst) > dumps);
    assert_eq!(run.finish(), 0);
}

/// A server at `addr` that answers every request with the head of a
/// JSON body cut short, and counts the requests per kind.
fn truncating_server(addr: std::net::SocketAddr) -> Option<Arc<Mutex<BTreeMap<String, usize>>>> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(addr).ok()?;
    let counts = Arc::new(Mutex::new(BTreeMap::new()));
    let seen = counts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let kind = if head.contains("/endpointslices") {
                    "EndpointSlice"
                } else {
                    "Service"
                };
                *seen.lock().unwrap().entry(kind.to_owned()).or_insert(0) += 1;
                let body = r#"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Some(counts)
}

#[test]
fn lists_that_do_not_parse_are_retried_on_the_backoff_schedule() {
    // Every list answers a body cut short: each watch backs off on the
    // schedule of `retry` (100, 200, 400, 800, 1,600 ms..., each less up
    // to half by jitter). In 3 s that allows at most 6 lists per kind
    // (at 0, then after at least 50, 100, 200, 400, 800 ms: 1.55 s;
    // the next after 800 ms more).
    let (dir, addr) = kubeconfig_of_no_server();
    let Some(counts) = truncating_server(addr) else {
        // The port was taken meanwhile: nothing to test on this run.
        return;
    };
    let run = start_in(dir, MemKernel::default(), quick_settings());
    std::thread::sleep(Duration::from_secs(3));
    let counts = counts.lock().unwrap().clone();
    assert!(run.drain().is_empty(), "no sync without lists");
    assert_eq!(run.finish(), 0);
    for kind in ["Service", "EndpointSlice"] {
        let n = counts.get(kind).copied().unwrap_or(0);
        assert!((2..=6).contains(&n), "{kind}: {n} lists in 3 s: {counts:?}");
    }
}

#[test]
fn repeated_410s_back_off_more_and_more() {
    // Every watch is answered 410 Gone at once: each relist works, yet
    // the watches keep failing. On the default schedule the delays do
    // not start over at each relist (only after 2 minutes of health):
    // 0.4-0.8 s, then 0.8-1.6 s, 1.6-3.2 s, 3.2-6.4 s, 6.4-12.8 s. In
    // 10 s that allows at most 4 relists per kind (after at least 0.4,
    // 1.2, 2.8, 6.0 s; the next after 12.4 s), where delays starting
    // over at each relist (kube-runtime's default backoff) make 5 or more.
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let settings = Settings {
        retry: Schedule::default(),
        // One request per list.
        list_from_cache: true,
        ..quick_settings()
    };
    let run = start(&server, MemKernel::default(), settings);
    run.converge(&seeded_table());
    let before = server.stats().lists;
    let began = std::time::Instant::now();
    while began.elapsed() < Duration::from_secs(10) {
        server.expire_watches();
        std::thread::sleep(Duration::from_millis(50));
    }
    let lists = server.stats().lists;
    for kind in ["Service", "EndpointSlice"] {
        let n = lists[kind] - before[kind];
        assert!((1..=4).contains(&n), "{kind}: {n} relists in 10 s");
    }
    // Healed, it converges.
    server.apply(service("late", "svc", "10.96.4.1", &[("http", 80)]));
    let mut want = seeded_table();
    want.extend(table(&[("10.96.4.1:80", &[])]));
    run.converge(&want);
    assert_eq!(run.finish(), 0);
}

/// The settings of the fault tests: the default schedule and deadlines
/// scaled down ten times (delays 80 ms doubling to a cap of 3 s, jitter
/// up to half; 0.5 s to connect, 1.5 s to a head or between pieces of a
/// list; watches of 29 s plus 0.4 s), so that their "first minute" of an
/// outage lasts 6 s.
fn scaled_settings() -> Settings {
    let scale = |d: Duration| d / 10;
    let retry = Schedule::default();
    let deadlines = live::Deadlines::default();
    Settings {
        retry: Schedule {
            first: scale(retry.first),
            cap: scale(retry.cap),
            jitter_percent: retry.jitter_percent,
            reset_after: scale(retry.reset_after),
        },
        deadlines: live::Deadlines {
            connect: scale(deadlines.connect),
            first_byte: scale(deadlines.first_byte),
            body_gap: scale(deadlines.body_gap),
            watch_margin: scale(deadlines.watch_margin),
        },
        watch_timeout: Some(live::WATCH_TIMEOUT / 10),
        list_from_cache: true,
        page_size: None,
        ..quick_settings()
    }
}

/// One failure class, at ten times the speed (see [`scaled_settings`]):
/// the fault on both kinds (from the start, or once the first sync is
/// done for the faults of watches alone), 6 s of it (the first minute
/// scaled), a change made meanwhile, then healed. Returns the requests
/// per kind in those 6 s and the time from healing to a table with the
/// change.
fn under(fault: Fault) -> (BTreeMap<&'static str, u64>, Duration) {
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let watches_only = matches!(
        fault,
        Fault::StallWatch | Fault::PlainBody | Fault::CutWatch
    );
    if !watches_only {
        server.fault(None, Some(fault));
    }
    let run = start(&server, MemKernel::default(), scaled_settings());
    if watches_only {
        run.converge(&seeded_table());
        assert!(server.wait_for(PATIENCE, |s| s.open_watches == 2));
        server.fault(None, Some(fault));
        server.drop_connections();
    }
    let before = server.stats().requests;
    std::thread::sleep(Duration::from_secs(6));
    let after = server.stats().requests;
    let counts = ["Service", "EndpointSlice"]
        .into_iter()
        .map(|k| {
            let was = before.get(k).copied().unwrap_or(0);
            (k, after.get(k).copied().unwrap_or(0) - was)
        })
        .collect();
    eprintln!("{fault:?}: requests in 6 s {counts:?}");
    server.apply(service("late", "svc", "10.96.4.1", &[("http", 80)]));
    let healed = std::time::Instant::now();
    server.fault(None, None);
    let mut want = seeded_table();
    want.extend(table(&[("10.96.4.1:80", &[])]));
    while run.kernel.snapshot() != want {
        let _ = run.reports.recv_timeout(Duration::from_millis(50));
        assert!(healed.elapsed() < PATIENCE, "{fault:?}: did not converge");
    }
    let took = healed.elapsed();
    eprintln!("{fault:?}: converged {took:?} after healing");
    assert_eq!(run.finish(), 0);
    (counts, took)
}

/// Issues 22 (bug 1) and 26: under each failure class, at most 15
/// requests per kind in the first (scaled) minute, and convergence
/// within the cap (3 s) plus a deadline (1.5 s) and a round trip (1 s)
/// once healed.
fn polite_under(fault: Fault) {
    polite_within(fault, Duration::from_millis(5_500));
}

fn polite_within(fault: Fault, bound: Duration) {
    let (counts, took) = under(fault);
    for (kind, n) in counts {
        assert!(n <= 15, "{fault:?}: {kind}: {n} requests in 6 s");
    }
    assert!(took < bound, "{fault:?}: {took:?}");
}

/// One test per failure class that needs nothing beyond [`polite_under`].
macro_rules! polite_under {
    ($($name:ident: $fault:expr;)*) => {
        $(
            #[test]
            fn $name() {
                polite_under($fault);
            }
        )*
    };
}

polite_under! {
    polite_under_stalled_heads: Fault::StallHead;
    polite_under_stalled_bodies: Fault::StallBody;
    polite_under_watches_cut_early: Fault::CutWatch;
    polite_under_dropped_connections: Fault::Drop;
    polite_under_500: Fault::Status(500);
    polite_under_garbage: Fault::Garbage;
    polite_under_410: Fault::Gone;
    polite_under_plain_watch_bodies: Fault::PlainBody;
}

#[test]
fn polite_under_stalled_watches() {
    // A watch that answered its head and then falls silent can only be
    // told from a quiet cluster after its own timeout plus the margin
    // (29.4 s scaled, 294 s at full scale, as client-go's watches): it
    // started 6 s before healing; then the cap and a round trip.
    polite_within(
        Fault::StallWatch,
        Duration::from_millis(29_500 - 6_000 + 3_000 + 1_000),
    );
}

#[test]
fn polite_under_429_with_and_without_retry_after() {
    polite_under(Fault::TooMany(None));
    // Retry-After of 2 s: at most 3 tries per kind in 6 s, each after
    // the server's 2 s.
    let (counts, _) = under(Fault::TooMany(Some(2)));
    for (kind, n) in counts {
        assert!(n <= 4, "{kind}: {n} requests in 6 s");
    }
}

/// A kernel whose every table read takes `delay`, as a sync of 10,000
/// Services does.
#[derive(Debug, Clone)]
struct SlowKernel(MemKernel, Duration);

impl Kernel for SlowKernel {
    fn table(&mut self) -> Result<Vec<VirtualServer>, Error> {
        std::thread::sleep(self.1);
        self.0.table()
    }

    fn apply(&mut self, ops: &[Op]) -> Result<Vec<ipvs_netlink::Result<()>>, Error> {
        self.0.apply(ops)
    }
}

/// Issue 29: the health endpoint answers while a sync runs (the syncs
/// run on the sync thread, off the runtime's). A sync of 3 s; a probe
/// every 100 ms meanwhile, each answered 503 (no sync recorded yet): a
/// runtime blocked by the sync answers the first probe sent during it
/// only after the sync, with 200. The latencies are printed (before the
/// change the probes waited for the sync: about 3 s).
#[test]
fn healthz_answers_during_a_long_sync() {
    use std::io::{Read, Write};
    let server = FakeApiServer::start().unwrap();
    seed(&server);
    let dir = temp_dir();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mem = MemKernel::default();
    let slow = SlowKernel(mem.clone(), Duration::from_secs(3));
    let run = start_serving(dir, slow, mem, quick_settings(), Some(listener));
    // The sync begins once both lists are in; probe until it is done.
    let began = std::time::Instant::now();
    let mut times = Vec::new();
    while run.kernel.snapshot() != seeded_table() {
        assert!(began.elapsed() < PATIENCE, "no sync");
        let asked = std::time::Instant::now();
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 "), "{reply}");
        times.push((asked.elapsed(), reply.starts_with("HTTP/1.1 503 ")));
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = run.next();
    assert!(first.ok, "{first:?}");
    assert!(first.elapsed >= Duration::from_secs(3), "{first:?}");
    let max = times.iter().map(|t| t.0).max().unwrap_or_default();
    eprintln!(
        "/healthz during a {} ms sync: {} probes, the slowest {:.1} ms",
        first.elapsed.as_millis(),
        times.len(),
        max.as_secs_f64() * 1000.0
    );
    // Answered while the sync ran: 503, no sync recorded yet (the last
    // probe may see the sync end).
    let during = times.iter().filter(|t| t.1).count();
    assert!(during >= 20, "{during} probes answered during the sync");
    assert!(during >= times.len() - 1, "{times:?}");
    // Then healthy: 200.
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert_eq!(run.finish(), 0);
}

/// A server on the kubeconfig's address that answers every request with
/// `status` and `body` (`None`: never answers), and keeps the request
/// lines it was sent.
fn node_server(
    status: &'static str,
    body: Option<&'static str>,
) -> Option<(PathBuf, Arc<Mutex<Vec<String>>>)> {
    use std::io::{Read, Write};
    let (dir, addr) = kubeconfig_of_no_server();
    let listener = std::net::TcpListener::bind(addr).ok()?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            seen.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or("").to_owned());
            match body {
                Some(body) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                None => std::thread::sleep(Duration::from_secs(5)),
            }
        }
    });
    Some((dir, lines))
}

fn zone_from(dir: &std::path::Path, node_zone: Option<&str>) -> Option<String> {
    let args = Args {
        node_zone: node_zone.map(str::to_owned),
        ..args(dir)
    };
    common::runtime().block_on(async {
        let (client, _) = common::gated_client(&args, &quick_settings()).await;
        live::node_zone(
            &client,
            &args,
            Duration::from_millis(500),
            Log { verbose: true },
        )
        .await
    })
}

/// The zone comes from `--node-zone`, else from the label of the node's
/// own Node, read with one GET of that Node alone; a Node without the
/// label, an error or no answer within the deadline leave no zone.
#[test]
fn the_zone_is_the_flag_else_the_label_of_the_nodes_own_node() {
    const NODE: &str = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a",
        "labels":{"kubernetes.io/hostname":"node-a","topology.kubernetes.io/region":"r1",
                  "topology.kubernetes.io/zone":"zone-a"}},"spec":{},"status":{}}"#;
    const BARE: &str = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-a"}}"#;
    const FORBIDDEN: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure",
        "message":"nodes \"node-a\" is forbidden","reason":"Forbidden","code":403}"#;
    let Some((dir, lines)) = node_server("200 OK", Some(NODE)) else {
        return; // the port was taken meanwhile
    };
    assert_eq!(zone_from(&dir, None).as_deref(), Some("zone-a"));
    assert_eq!(
        *lines.lock().unwrap(),
        ["GET /api/v1/nodes/node-a HTTP/1.1"],
        "one GET, of its own Node only"
    );
    // The flag wins, and no request is made.
    assert_eq!(zone_from(&dir, Some("zone-x")).as_deref(), Some("zone-x"));
    assert_eq!(lines.lock().unwrap().len(), 1);
    for (status, body) in [
        ("200 OK", Some(BARE)),
        ("403 Forbidden", Some(FORBIDDEN)),
        ("200 OK", None),
    ] {
        let Some((dir, _)) = node_server(status, body) else {
            return;
        };
        assert_eq!(zone_from(&dir, None), None, "{status} {body:?}");
    }
}

/// A measuring tool, not a check (`cargo test -p ipvs-k8s --test live --
/// --ignored --nocapture measured`; `LIVE_SERVICES` Services of 4
/// endpoints, 10,000 by default): the phases of the first sync, of a
/// no-op resync and of a sync after one EndpointSlice changed, by the
/// loop's own account, against the in-memory table (no kernel: the
/// `table` step is what the loop itself does around the dumps).
#[test]
#[ignore = "a measurement: run it by hand"]
fn a_no_op_resync_and_one_change_measured() {
    let n: usize = std::env::var("LIVE_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let server = FakeApiServer::start().unwrap();
    let ip = |i: usize| format!("10.{}.{}.{}", 100 + (i >> 16), (i >> 8) & 255, i & 255);
    let pods = |i: usize, g: usize| -> Vec<String> {
        (0..4)
            .map(|k| format!("172.{}.{}.{}", 16 + k + 4 * g, (i >> 8) & 255, i & 255))
            .collect()
    };
    let mut b = Batch::default();
    for i in 0..n {
        let name = format!("svc-{i}");
        let eps = pods(i, 0);
        let eps: Vec<&str> = eps.iter().map(String::as_str).collect();
        b.apply(service("bench", &name, &ip(i), &[("http", 80)]));
        b.apply(slice("bench", &name, "a", &[("http", 8080)], &eps));
    }
    server.batch(b);
    let mut settings = quick_settings();
    settings.resync = Duration::from_secs(5);
    settings.page_size = None;
    settings.list_from_cache = true;
    let run = start(&server, MemKernel::default(), settings);
    let show = |what: &str, r: &SyncReport| {
        eprintln!(
            "{what}: sync {} (resync {}): {} writes, {} ms: {}",
            r.number,
            r.resync,
            r.sent,
            r.elapsed.as_millis(),
            r.phases.describe()
        )
    };
    let first = run.reports.recv_timeout(Duration::from_secs(600)).unwrap();
    show("full sync", &first);
    assert_eq!(first.sent, 5 * n);
    for _ in 0..2 {
        let r = run.reports.recv_timeout(Duration::from_secs(600)).unwrap();
        assert!(r.resync && r.sent == 0, "{r:?}");
        show("no-op resync", &r);
    }
    let eps = pods(4321 % n, 1);
    let eps: Vec<&str> = eps.iter().map(String::as_str).collect();
    let name = format!("svc-{}", 4321 % n);
    let mut b = Batch::default();
    b.apply(slice("bench", &name, "a", &[("http", 8080)], &eps));
    server.batch(b);
    let r = run.reports.recv_timeout(Duration::from_secs(600)).unwrap();
    show("one EndpointSlice changed", &r);
    assert!(r.sent > 0, "{r:?}");
    run.finish();
}
