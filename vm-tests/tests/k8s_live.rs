//! `ipvsadm-rs --from-k8s` in live mode against the real kernel: the fake
//! API server (in this test process) and ipvsadm-rs (a child process) run
//! in the VM, in a network namespace of their own; the real `ipvsadm -Sn`
//! must show the expected table after creates, updates, endpoint churn and
//! deletes, next to a service the real ipvsadm created first; a restart
//! removes a Service deleted while it was down.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fake_apiserver::objects::{endpoint_slice, service};
use fake_apiserver::{Batch, FakeApiServer, Kind};
use serde_json::{json, Value};
use vm_tests::live::{healthz, Live};
use vm_tests::{diff, enter_fresh_netns, ipvsadm_ok};

/// The one EndpointSlice of Service `ns/svc`.
fn slice(ns: &str, svc: &str, ports: &[(&str, u16)], addrs: &[&str]) -> Value {
    endpoint_slice(ns, svc, "abcde", ports, addrs)
}

/// How long to wait for the table to converge (a hang guard on a slow
/// emulated VM, not a speed check).
const PATIENCE: Duration = Duration::from_secs(120);

const FOREIGN: &str = "-A -t 10.96.99.99:80 -s wlc\n-a -t 10.96.99.99:80 -r 10.9.9.9:80 -g -w 3\n";

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Waits until `ipvsadm -Sn` shows `want` (any order).
fn converge(want: &str, child: &mut Live) {
    let want = sorted(want);
    let end = Instant::now() + PATIENCE;
    loop {
        let got = sorted(&ipvsadm_ok(&["-Sn"]));
        if got == want {
            return;
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            panic!("ipvsadm-rs ended ({status}):\n{}", child.log());
        }
        if Instant::now() > end {
            panic!(
                "ipvsadm -Sn did not converge:\n{}\nlog:\n{}",
                diff(&want, &got),
                child.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the live mode on node `node-a` (192.168.49.2) with `extra`.
fn start(dir: &Path, extra: &[&str]) -> Live {
    let mut args = vec!["--node-ip", "192.168.49.2", "--node-name", "node-a"];
    args.extend_from_slice(extra);
    Live::start(dir, &args)
}

fn wait_healthz(addr: &str, want: &str) -> String {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Some((status, body)) = healthz(addr, PATIENCE) {
            if status.contains(want) {
                return body;
            }
        }
        assert!(Instant::now() < end, "healthz never answered {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const TABLE_1: &str = "\
-A -t 10.96.0.10:80 -s rr
-a -t 10.96.0.10:80 -r 10.244.0.1:8080 -m -w 1
-a -t 10.96.0.10:80 -r 10.244.0.2:8080 -m -w 1
-A -t 10.96.0.11:443 -s rr
-a -t 10.96.0.11:443 -r 10.244.1.1:8443 -m -w 1
-A -t 10.96.0.12:80 -s rr
-a -t 10.96.0.12:80 -r 10.244.2.1:80 -m -w 1
-A -t 192.168.49.2:30012 -s rr
-a -t 192.168.49.2:30012 -r 10.244.2.1:80 -m -w 1
";

/// The start of the live tests: a fresh namespace holding another tool's
/// services (`FOREIGN`), a fresh directory `name` with a kubeconfig of a
/// new fake API server, and a batch of the Services web and api with
/// their EndpointSlices (to add to, then send).
fn lab(name: &str) -> (std::path::PathBuf, FakeApiServer, Batch) {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for line in FOREIGN.lines() {
        let args: Vec<&str> = line.split_whitespace().collect();
        ipvsadm_ok(&args);
    }
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let mut b = Batch::default();
    b.apply(service("default", "web", "10.96.0.10", &[("http", 80)]))
        .apply(slice(
            "default",
            "web",
            &[("http", 8080)],
            &["10.244.0.1", "10.244.0.2"],
        ))
        .apply(service("default", "api", "10.96.0.11", &[("", 443)]))
        .apply(slice("default", "api", &[("", 8443)], &["10.244.1.1"]));
    (dir, server, b)
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn live_sync_follows_the_cluster_and_a_restart_catches_up() {
    let (dir, server, mut b) = lab("k8s-live");
    let mut np = service("default", "np", "10.96.0.12", &[("http", 80)]);
    np["spec"]["type"] = json!("NodePort");
    np["spec"]["ports"][0]["nodePort"] = json!(30012);
    b.apply(np)
        .apply(slice("default", "np", &[("http", 80)], &["10.244.2.1"]));
    server.batch(b);

    let health = "127.0.0.1:10256";
    let mut live = start(&dir, &["--healthz", health, "--resync", "3600"]);
    converge(&format!("{TABLE_1}{FOREIGN}"), &mut live);
    let body = wait_healthz(health, "200");
    assert!(body.contains("\"lastSuccessfulSync\":\"20"), "{body}");
    assert!(body.contains("\"writes\":"), "{body}");

    // Create.
    server.apply(service("shop", "cart", "10.96.1.1", &[("http", 80)]));
    server.apply(slice("shop", "cart", &[("http", 8080)], &["10.244.5.1"]));
    let cart = "-A -t 10.96.1.1:80 -s rr\n-a -t 10.96.1.1:80 -r 10.244.5.1:8080 -m -w 1\n";
    converge(&format!("{TABLE_1}{FOREIGN}{cart}"), &mut live);

    // Update: affinity on, a second port.
    let mut cart2 = service(
        "shop",
        "cart",
        "10.96.1.1",
        &[("http", 80), ("admin", 9000)],
    );
    cart2["spec"]["sessionAffinity"] = json!("ClientIP");
    server.apply(cart2);
    server.apply(slice(
        "shop",
        "cart",
        &[("http", 8080), ("admin", 9000)],
        &["10.244.5.1"],
    ));
    let cart = "\
-A -t 10.96.1.1:80 -s rr -p 10800
-a -t 10.96.1.1:80 -r 10.244.5.1:8080 -m -w 1
-A -t 10.96.1.1:9000 -s rr -p 10800
-a -t 10.96.1.1:9000 -r 10.244.5.1:9000 -m -w 1
";
    converge(&format!("{TABLE_1}{FOREIGN}{cart}"), &mut live);

    // Endpoint churn on web: one pod goes, two come.
    server.apply(slice(
        "default",
        "web",
        &[("http", 8080)],
        &["10.244.0.2", "10.244.0.3", "10.244.0.4"],
    ));
    let table_2 = TABLE_1.replace(
        "-a -t 10.96.0.10:80 -r 10.244.0.1:8080 -m -w 1\n",
        "-a -t 10.96.0.10:80 -r 10.244.0.3:8080 -m -w 1\n-a -t 10.96.0.10:80 -r 10.244.0.4:8080 -m -w 1\n",
    );
    converge(&format!("{table_2}{FOREIGN}{cart}"), &mut live);

    // Delete.
    server.delete(Kind::Service, "shop", "cart");
    server.delete(Kind::EndpointSlice, "shop", "cart-abcde");
    converge(&format!("{table_2}{FOREIGN}"), &mut live);

    // A dropped connection and a 410: still following.
    server.drop_connections();
    server.apply(slice("default", "api", &[("", 8443)], &["10.244.1.2"]));
    let table_3 = table_2.replace("10.244.1.1:8443", "10.244.1.2:8443");
    converge(&format!("{table_3}{FOREIGN}"), &mut live);
    server.expire_watches();
    server.apply(slice("default", "api", &[("", 8443)], &["10.244.1.3"]));
    let table_4 = table_2.replace("10.244.1.1:8443", "10.244.1.3:8443");
    converge(&format!("{table_4}{FOREIGN}"), &mut live);

    // SIGTERM ends it cleanly; each change was logged.
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("info add virtual service TCP 10.96.1.1:9000 (shop/cart:admin)"),
        "{log}"
    );
    assert!(
        log.contains("info remove real server 10.244.0.1:8080 from TCP 10.96.0.10:80"),
        "{log}"
    );
    assert!(log.contains("SIGTERM: stopping"), "{log}");

    // While it is down, np is deleted; at the restart it goes, and the
    // foreign service is still there.
    server.delete(Kind::Service, "default", "np");
    let mut live = start(&dir, &[]);
    let table_5: String = table_4
        .lines()
        .filter(|l| !l.contains("10.96.0.12:80") && !l.contains("30012"))
        .map(|l| format!("{l}\n"))
        .collect();
    converge(&format!("{table_5}{FOREIGN}"), &mut live);
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");

    // --once: one sync with nothing to do, zero writes, exit 0.
    let (code, log) = start(&dir, &["--once"]).wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("; 0 writes,"), "{log}");
    assert_eq!(
        sorted(&ipvsadm_ok(&["-Sn"])),
        sorted(&format!("{table_5}{FOREIGN}"))
    );
    drop(server);
}

/// The periodic resync repairs what another tool changed in our virtual
/// services (a real server's weight edited, one deleted, one added) and
/// leaves another tool's virtual service as that tool changed it (issue
/// 32: a resync reads less than the whole table, but all of a small one).
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_resync_repairs_our_real_servers_changed_behind_our_back() {
    let (dir, server, b) = lab("k8s-live-repair");
    server.batch(b);
    let table = "\
-A -t 10.96.0.10:80 -s rr
-a -t 10.96.0.10:80 -r 10.244.0.1:8080 -m -w 1
-a -t 10.96.0.10:80 -r 10.244.0.2:8080 -m -w 1
-A -t 10.96.0.11:443 -s rr
-a -t 10.96.0.11:443 -r 10.244.1.1:8443 -m -w 1
";
    let mut live = start(&dir, &["--resync", "1"]);
    converge(&format!("{table}{FOREIGN}"), &mut live);
    // Another tool's hand, on our services and on its own.
    ipvsadm_ok(&[
        "-e",
        "-t",
        "10.96.0.10:80",
        "-r",
        "10.244.0.1:8080",
        "-m",
        "-w",
        "5",
    ]);
    ipvsadm_ok(&["-d", "-t", "10.96.0.10:80", "-r", "10.244.0.2:8080"]);
    ipvsadm_ok(&[
        "-a",
        "-t",
        "10.96.0.11:443",
        "-r",
        "10.244.9.9:8443",
        "-m",
        "-w",
        "1",
    ]);
    ipvsadm_ok(&[
        "-e",
        "-t",
        "10.96.99.99:80",
        "-r",
        "10.9.9.9:80",
        "-g",
        "-w",
        "7",
    ]);
    let theirs = FOREIGN.replace("-g -w 3", "-g -w 7");
    converge(&format!("{table}{theirs}"), &mut live);
    // An address of ours removed from the dummy interface: a resync that
    // reads the interface (every 10th: `--resync 1`) puts it back.
    let bound = dummy_addresses();
    assert!(bound.contains(&"10.96.0.10/32".to_owned()), "{bound:?}");
    let out = Command::new("ip")
        .args(["addr", "del", "10.96.0.10/32", "dev", "kube-ipvs0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!dummy_addresses().contains(&"10.96.0.10/32".to_owned()));
    let end = Instant::now() + PATIENCE;
    while dummy_addresses() != bound {
        assert!(
            Instant::now() < end,
            "the address was never put back: {:?}\n{}",
            dummy_addresses(),
            live.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("info change real server 10.244.0.1:8080 of TCP 10.96.0.10:80"),
        "{log}"
    );
    assert!(
        log.contains("info remove real server 10.244.9.9:8443 from TCP 10.96.0.11:443"),
        "{log}"
    );
    drop(server);
}

/// A live start refused for a missing kubeconfig or a health port in use
/// exits 2 and writes nothing: no state file, no lock, no dummy interface.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_refused_start_writes_nothing() {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join("k8s-live-refused");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nothing_written = |what: &str| {
        assert!(!dir.join("owned").exists(), "{what}: a state file");
        assert!(!dir.join("owned.lock").exists(), "{what}: a lock file");
        assert!(
            !Path::new("/sys/class/net/kube-ipvs0").exists(),
            "{what}: kube-ipvs0"
        );
        assert_eq!(ipvsadm_ok(&["-Sn"]), "", "{what}: the table");
    };

    // No kubeconfig where it is said to be.
    let live = start(&dir, &[]);
    let (code, log) = live.wait();
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("cannot read kubeconfig"), "{log}");
    nothing_written("missing kubeconfig");

    // The health port is taken.
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let live = start(&dir, &["--healthz", &addr]);
    let (code, log) = live.wait();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(&format!("--healthz {addr}: cannot listen")),
        "{log}"
    );
    nothing_written("health port in use");
}

/// The IPv4 addresses on `kube-ipvs0` (from `ip -o -4 addr`).
fn dummy_addresses() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "kube-ipvs0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    let mut found = Vec::new();
    while let Some(w) = words.next() {
        if w == "inet" {
            found.extend(words.next().map(str::to_owned));
        }
    }
    found.sort();
    found
}

/// Issue 34: a second live instance in the same network namespace, with
/// a state file of its own, is refused at start, naming the first one's
/// state file; so is an offline run that would write. The first keeps its
/// table and its addresses throughout (the issue sampled kube-ipvs0 empty
/// 31 times in 40 when both ran).
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_second_instance_in_the_network_namespace_is_refused() {
    enter_fresh_netns().unwrap();
    let root = std::env::temp_dir().join("k8s-live-two");
    let _ = std::fs::remove_dir_all(&root);
    let (a, b) = (root.join("a"), root.join("b"));
    let server = FakeApiServer::start().unwrap();
    for dir in [&a, &b] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    }
    let mut batch = Batch::default();
    batch
        .apply(service("default", "web", "10.96.0.10", &[("http", 80)]))
        .apply(slice("default", "web", &[("http", 8080)], &["10.244.0.1"]));
    server.batch(batch);
    let table = "-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.244.0.1:8080 -m -w 1\n";
    let mut first = start(&a, &["--healthz", "127.0.0.1:10256", "--resync", "1"]);
    converge(table, &mut first);
    let end = Instant::now() + PATIENCE;
    while dummy_addresses() != ["10.96.0.10/32"] {
        assert!(Instant::now() < end, "{}", first.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let holder = format!(
        "another --from-k8s runs in this network namespace (its state file is {}): one instance per network namespace, whatever its --state; stop it first",
        a.join("owned").display()
    );
    let second = start(&b, &["--healthz", "127.0.0.1:10257", "--resync", "1"]);
    let (code, log) = second.wait();
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains(&holder), "{log}");
    assert!(!b.join("owned").exists());
    let dump = r#"{"kind":"List","apiVersion":"v1","items":[]}"#;
    let offline = vm_tests::from_k8s(dump, &b.join("owned"), &[]);
    assert_eq!(offline.code, Some(2), "{offline}");
    assert!(
        String::from_utf8_lossy(&offline.stderr).contains(&holder),
        "{offline}"
    );
    // The first one's resyncs (every second) keep all as it was.
    for _ in 0..20 {
        assert_eq!(dummy_addresses(), ["10.96.0.10/32"], "{}", first.log());
        assert_eq!(sorted(&ipvsadm_ok(&["-Sn"])), sorted(table));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, log) = first.terminate();
    assert_eq!(code, Some(0), "{log}");
}

/// Issue 34: a Service whose name holds a newline (a real API server
/// refuses it; the log must not trust that) cannot forge a log line: every
/// line of the live log starts with its time stamp.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_newline_in_a_name_cannot_forge_a_log_line() {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join("k8s-live-forge");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let name = "web\ninfo FAKE LINE";
    let mut batch = Batch::default();
    batch
        .apply(service("default", name, "10.96.0.10", &[("http", 80)]))
        .apply(slice("default", name, &[("http", 8080)], &["10.244.0.1"]));
    server.batch(batch);
    let mut live = start(&dir, &["--healthz", "127.0.0.1:10256"]);
    converge(
        "-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.244.0.1:8080 -m -w 1\n",
        &mut live,
    );
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("web\\ninfo FAKE LINE"), "{log}");
    for line in log.lines() {
        assert!(
            line.starts_with("20"),
            "a line without its time stamp: {line:?}\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------
// The soak: the live mode under churn for a while, its memory and
// descriptors sampled, the table compared with the cluster at the end.

/// One sample of the live process: seconds since the start, resident
/// memory (KiB) and open descriptors.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: u64,
    rss_kib: u64,
    fds: usize,
}

fn sample(pid: u32, at: u64) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    Sample { at, rss_kib, fds }
}

/// A small deterministic generator (xorshift64*): the same churn on
/// every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What the cluster holds for the soak: Service `soak/s{i}` (ClusterIP
/// 10.97.x.y port 80, session affinity or not) with its endpoints (a
/// non-empty subset of eight pods, target port 8080).
#[derive(Clone, Default)]
struct SoakService {
    affinity: bool,
    pods: Vec<u8>,
}

fn soak_ip(i: usize) -> String {
    format!("10.97.{}.{}", i / 250, i % 250 + 1)
}

fn soak_pod(i: usize, k: u8) -> String {
    format!(
        "10.245.{}.{}",
        i % 250,
        u32::from(k) + 1 + 8 * (i as u32 / 250)
    )
}

/// The table kube-proxy's IPVS mode makes of `model`, in `-Sn` lines
/// (its mapping: rr, masquerading, weight 1, 10800 s with ClientIP).
fn soak_table(model: &[Option<SoakService>]) -> String {
    let mut out = String::new();
    for (i, s) in model.iter().enumerate() {
        let Some(s) = s else { continue };
        let vip = format!("{}:80", soak_ip(i));
        let p = if s.affinity { " -p 10800" } else { "" };
        out.push_str(&format!("-A -t {vip} -s rr{p}\n"));
        for &k in &s.pods {
            out.push_str(&format!("-a -t {vip} -r {}:8080 -m -w 1\n", soak_pod(i, k)));
        }
    }
    out
}

fn soak_objects(i: usize, s: &SoakService) -> (Value, Value) {
    let name = format!("s{i}");
    let mut svc = service("soak", &name, &soak_ip(i), &[("http", 80)]);
    if s.affinity {
        svc["spec"]["sessionAffinity"] = json!("ClientIP");
    }
    let pods: Vec<String> = s.pods.iter().map(|&k| soak_pod(i, k)).collect();
    let pods: Vec<&str> = pods.iter().map(String::as_str).collect();
    (svc, slice("soak", &name, &[("http", 8080)], &pods))
}

/// Runs the live mode for `seconds` of churn over `services` Service
/// slots: every quarter second one to three changes (a Service created
/// or deleted, its endpoints replaced, its affinity switched), every 20 s
/// the watches ended (a normal reconnect), once a compaction and expired
/// watches (410 Gone, a relist) twice: at the end of the warm-up (a
/// sixth of the run) and at half time. Samples memory and descriptors
/// every 5 s; at the end the table must be the cluster's, and neither may
/// have grown after the warm-up ([`assert_no_growth`]). Returns the
/// samples, the number of changes and the warm-up's end in seconds.
fn soak(seconds: u64, services: usize, filled: fn(usize) -> bool) -> (Vec<Sample>, u64, u64) {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join(format!("k8s-soak-{seconds}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut model: Vec<Option<SoakService>> = vec![None; services];
    let mut b = Batch::default();
    for (i, slot) in model.iter_mut().enumerate().filter(|(i, _)| filled(*i)) {
        let s = SoakService {
            affinity: false,
            pods: vec![0, 1, 2],
        };
        let (svc, sl) = soak_objects(i, &s);
        b.apply(svc).apply(sl);
        *slot = Some(s);
    }
    server.batch(b);

    let mut live = start(&dir, &["--resync", "30"]);
    let pid = live.child.id();
    converge(&soak_table(&model), &mut live);
    let start = Instant::now();
    let mut samples = vec![sample(pid, 0)];
    let mut changes = 0u64;
    let (mut next_sample, mut next_reconnect) = (5, 20);
    // The relists: at the warm-up's end, and at half time.
    let warm_up = seconds / 6;
    let mut relists = vec![seconds / 2, warm_up];
    while start.elapsed() < Duration::from_secs(seconds) {
        let mut b = Batch::default();
        for _ in 0..=rng.below(3) {
            let i = rng.below(services as u64) as usize;
            let name = format!("s{i}");
            match (&mut model[i], rng.below(4)) {
                (None, _) => {
                    let mut pods: Vec<u8> = (0..8).filter(|_| rng.below(2) == 0).collect();
                    if pods.is_empty() {
                        pods.push(rng.below(8) as u8);
                    }
                    model[i] = Some(SoakService {
                        affinity: false,
                        pods,
                    });
                }
                (Some(_), 0) => {
                    b.delete(Kind::Service, "soak", &name);
                    b.delete(Kind::EndpointSlice, "soak", &format!("{name}-abcde"));
                    model[i] = None;
                    changes += 1;
                    continue;
                }
                (Some(s), 1) => s.affinity = !s.affinity,
                (Some(s), _) => {
                    let k = rng.below(8) as u8;
                    match s.pods.iter().position(|&p| p == k) {
                        Some(at) if s.pods.len() > 1 => {
                            s.pods.remove(at);
                        }
                        Some(_) => {}
                        None => s.pods.push(k),
                    }
                    s.pods.sort_unstable();
                }
            }
            if let Some(s) = &model[i] {
                let (svc, sl) = soak_objects(i, s);
                b.apply(svc).apply(sl);
            }
            changes += 1;
        }
        server.batch(b);
        let at = start.elapsed().as_secs();
        if relists.last().is_some_and(|&r| at >= r) {
            server.compact();
            server.expire_watches();
            relists.pop();
        } else if at >= next_reconnect {
            server.end_watches();
            next_reconnect += 20;
        }
        if at >= next_sample {
            samples.push(sample(pid, at));
            next_sample += 5;
        }
        if let Ok(Some(status)) = live.child.try_wait() {
            panic!("ipvsadm-rs ended ({status}):\n{}", live.log());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    converge(&soak_table(&model), &mut live);
    samples.push(sample(pid, start.elapsed().as_secs()));
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    drop(server);
    (samples, changes, warm_up)
}

/// No growth: from the first sample 10 s after the warm-up's relist (the
/// runtime's pools and the stores filled, and the allocator's high-water
/// mark of a relist reached: a relist holds the old store and the new
/// list at once, and dlmalloc keeps what it freed), resident memory stays
/// within a quarter (and 2 MiB) of what it was, through the churn and the
/// second relist, and descriptors within four.
fn assert_no_growth(samples: &[Sample], warm_up: u64) {
    let warm = soak_base(samples, warm_up);
    let base = samples[warm];
    for s in &samples[warm..] {
        assert!(
            s.rss_kib <= rss_bound(&base),
            "memory grew: {s:?} against {base:?}\n{samples:#?}"
        );
        assert!(
            s.fds <= base.fds + 4,
            "descriptors grew: {s:?} against {base:?}\n{samples:#?}"
        );
    }
}

/// The index of the sample growth is judged from: the first 10 s after
/// the warm-up's relist.
fn soak_base(samples: &[Sample], warm_up: u64) -> usize {
    samples
        .iter()
        .position(|s| s.at >= warm_up + 10)
        .unwrap_or(samples.len() - 1)
}

/// The most resident memory allowed after `base`: a quarter and 2 MiB more.
fn rss_bound(base: &Sample) -> u64 {
    base.rss_kib + base.rss_kib / 4 + 2048
}

fn soak_report(samples: &[Sample], changes: u64, services: usize, warm_up: u64) -> String {
    let last = samples[samples.len() - 1];
    let base = &samples[soak_base(samples, warm_up)];
    let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let max_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    format!(
        "soak: {} s, {services} Service slots, {changes} changes; RSS {} -> {} KiB (max {max_rss}; after the warm-up's relist, at {} s: {} KiB, bound {} KiB); descriptors {} -> {} (max {max_fds}); {} samples",
        last.at,
        samples[0].rss_kib,
        last.rss_kib,
        base.at,
        base.rss_kib,
        rss_bound(base),
        samples[0].fds,
        last.fds,
        samples.len()
    )
}

/// The soak at smoke size (CI): 60 s of churn over 60 Service slots.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn soak_smoke() {
    let (samples, changes, warm_up) = soak(60, 60, |i| i % 2 == 0);
    eprintln!("{}", soak_report(&samples, changes, 60, warm_up));
    assert!(changes > 100, "{changes}");
    assert_no_growth(&samples, warm_up);
}

/// The soak of the benchmark (`vm-tests/bench.sh`, full): 30 minutes of
/// churn over 1,000 Service slots.
#[test]
#[ignore = "the benchmark's soak: vm-tests/bench.sh"]
fn bench_soak_full() {
    // Four slots in five filled from the start: the churn's balance (a
    // filled slot is emptied one time in four, an empty one filled at
    // once), so that memory is judged on a cluster of a steady size.
    let (samples, changes, warm_up) = soak(1800, 1000, |i| i % 5 != 0);
    let report = soak_report(&samples, changes, 1000, warm_up);
    println!("BENCH-TABLE-BEGIN\n| live soak | value |\n|---|---|");
    // A row a minute (the samples are every 5 s), and the last one.
    let last = samples.len() - 1;
    for (i, s) in samples.iter().enumerate() {
        if s.at % 60 < 5 || i == last {
            println!(
                "| at {} s | RSS {} KiB, {} descriptors |",
                s.at, s.rss_kib, s.fds
            );
        }
    }
    println!("| total | {report} |\nBENCH-TABLE-END");
    assert_no_growth(&samples, warm_up);
}
