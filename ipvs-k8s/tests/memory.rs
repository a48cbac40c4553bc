//! The live mode's heap at 10,000 Services x 4 endpoints, on the host:
//! a measurement (`#[ignore]`, run with `--ignored --nocapture`), not a
//! check. It mirrors the live run of `vm-tests/tests/bench_k8s.rs`: a
//! `--once` sync fills the table and the state file, then a live loop on
//! that table lists, syncs (a no-op) and resyncs once; its peak heap is
//! printed, as the heap in use at each step (a counting global
//! allocator: every byte the process asked for and has not given back).
//!
//! The fake API server runs in a child process (this test binary again,
//! [`serve_fake_apiserver`]) so that its objects and list bodies are not
//! counted; the in-memory IPVS table (the kernel's, in the VM) is
//! counted apart, as the baseline the live run starts from. No nftables,
//! no dummy interface: what the host cannot have.
//!
//! `MEMORY_SERVICES` sets the size (10,000); `MEMORY_PAUSE` below.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_apiserver::objects::bench_cluster;
use fake_apiserver::FakeApiServer;
use ipvs_k8s::live::{self, Log, Settings, Stop, SyncReport};
use ipvs_k8s::ownership::StateFile;
use ipvs_k8s::pace::Source;
use ipvs_k8s::sync::{patch_table, Kernel};
use ipvs_k8s::{self as k8s, Args};
use ipvs_netlink::{Destination, Error, Op, Service, ServiceId};
use ipvs_plan::VirtualServer;

mod common;

/// Counts the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator as it came;
// the counting touches atomics only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// bench_k8s.rs's objects ([`bench_cluster`]): N Services of one port and their slices.
fn populate(server: &FakeApiServer, services: usize) {
    server.batch(bench_cluster(services));
}

fn services() -> usize {
    std::env::var("MEMORY_SERVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

/// The child: serves the objects until killed, its kubeconfig written to
/// `MEMORY_KUBECONFIG`.
#[test]
#[ignore = "the child process of live_mode_heap"]
fn serve_fake_apiserver() {
    let Ok(path) = std::env::var("MEMORY_KUBECONFIG") else {
        return;
    };
    let server = FakeApiServer::start().unwrap();
    populate(&server, services());
    std::fs::write(&path, server.kubeconfig()).unwrap();
    println!("fake-apiserver ready");
    loop {
        std::thread::park();
    }
}

/// An in-memory IPVS table.
#[derive(Clone, Default)]
struct Mem(Arc<Mutex<Vec<VirtualServer>>>);

impl Kernel for Mem {
    fn table(&mut self) -> Result<Vec<VirtualServer>, Error> {
        Ok(self.0.lock().unwrap().clone())
    }

    fn apply(&mut self, ops: &[Op]) -> Result<Vec<ipvs_netlink::Result<()>>, Error> {
        patch_table(&mut self.0.lock().unwrap(), ops);
        Ok(ops.iter().map(|_| Ok(())).collect())
    }

    // As the kernel's dumps: no copy of the whole table for a part.
    fn services(&mut self) -> Result<Vec<Service>, Error> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|v| v.service.clone())
            .collect())
    }

    fn destinations(&mut self, id: &ServiceId) -> Result<Vec<Destination>, Error> {
        let table = self.0.lock().unwrap();
        let found = table.iter().find(|v| v.service.id == *id);
        Ok(found.map(|v| v.dests.clone()).unwrap_or_default())
    }
}

/// The live run's options, logging each sync's steps.
fn args(dir: &Path) -> Args {
    let mut args = common::live_args(dir);
    args.live.verbose = true;
    args
}

/// Records the heap at each step of the loop.
struct Steps {
    /// (step, bytes in use, peak so far).
    seen: Vec<(String, usize, usize)>,
    syncs: usize,
    stop: Stop,
    until: usize,
}

impl Steps {
    fn note(&mut self, what: String) {
        self.seen.push((
            what,
            IN_USE.load(Ordering::Relaxed),
            PEAK.load(Ordering::Relaxed),
        ));
    }
}

impl live::Observer for Steps {
    fn changed(&mut self, _source: Source, _change: &live::watch::Change) {}

    fn sync_started(&mut self) {
        self.note(format!("sync {} starts (lists done)", self.syncs + 1));
    }

    fn synced(&mut self, report: &SyncReport) {
        self.syncs += 1;
        assert!(report.ok, "{report:?}");
        self.note(format!(
            "sync {} done ({} planned, {} sent)",
            report.number, report.planned, report.sent
        ));
        if self.syncs >= self.until {
            self.stop.stop();
        }
    }
}

/// Runs a loop on `kernel` until `until` syncs are done.
fn run(dir: &Path, kernel: Mem, settings: Settings, until: usize) -> Steps {
    let args = args(dir);
    common::runtime().block_on(async {
        let (client, gates) = common::gated_client(&args, &settings).await;
        let state = StateFile::open(&args.state, true).unwrap();
        let stop = Stop::new();
        let mut steps = Steps {
            seen: Vec::new(),
            syncs: 0,
            stop: stop.clone(),
            until,
        };
        let to = live::Target {
            kernel,
            state,
            dummy: None,
            packet: None,
            args,
            settings,
            log: Log { verbose: false },
        };
        live::watch_loop(client, gates, to, &mut steps, stop).await;
        steps
    })
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn live_mode_heap() {
    let n = services();
    let dir: PathBuf = std::env::temp_dir().join(format!("ipvs-k8s-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "serve_fake_apiserver",
            "--ignored",
            "--nocapture",
        ])
        .env("MEMORY_KUBECONFIG", dir.join("kubeconfig"))
        .env("MEMORY_SERVICES", n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("fake-apiserver ready"))),
        "the fake API server did not start"
    );

    // As the bench: `--once` fills the table and the state file...
    let kernel = Mem::default();
    let mut once = Settings::from_args(&args(&dir));
    once.once = true;
    run(&dir, kernel.clone(), once, 1);
    let table = kernel.0.lock().unwrap().len();
    assert_eq!(table, n);

    // ...then the live loop runs on them: its first sync (a no-op) and a
    // resync. `MEMORY_PAUSE=S` waits S seconds first (to attach a heap
    // profiler: `heaptrack -p PID`).
    if let Some(s) = std::env::var("MEMORY_PAUSE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("pid {}: the live loop starts in {s} s", std::process::id());
        std::thread::sleep(Duration::from_secs(s));
    }
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut live = Settings::from_args(&args(&dir));
    live.resync = Duration::from_secs(1);
    let steps = run(&dir, kernel.clone(), live, 2);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    println!("{n} Services x 4 endpoints; the in-memory IPVS table and the rest before the loop: {:.1} MiB", mib(base));
    println!(
        "sizes: Service {} B, EndpointSlice {} B, Endpoint {} B, Desired {} B, VirtualServer {} B, ServicePort {} B",
        std::mem::size_of::<k8s_openapi::api::core::v1::Service>(),
        std::mem::size_of::<k8s_openapi::api::discovery::v1::EndpointSlice>(),
        std::mem::size_of::<k8s_openapi::api::discovery::v1::Endpoint>(),
        std::mem::size_of::<k8s::mapping::Desired>(),
        std::mem::size_of::<VirtualServer>(),
        std::mem::size_of::<k8s::model::ServicePort>(),
    );
    println!("| step | heap in use (MiB) | peak so far (MiB) |");
    println!("| --- | --- | --- |");
    for (what, now, peak) in &steps.seen {
        println!(
            "| {what} | {:.1} | {:.1} |",
            mib(now.saturating_sub(base)),
            mib(peak.saturating_sub(base))
        );
    }
    println!(
        "the live loop's peak heap: {:.1} MiB",
        mib(PEAK.load(Ordering::Relaxed) - base)
    );
}
