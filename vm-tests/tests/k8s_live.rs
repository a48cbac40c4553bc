//! `ipvsadm-rs --from-k8s` in live mode against the real kernel: the fake
//! API server (in this test process) and ipvsadm-rs (a child process) run
//! in the VM, in a network namespace of their own; the real `ipvsadm -Sn`
//! must show the expected table after creates, updates, endpoint churn and
//! deletes, next to a service the real ipvsadm created first; a restart
//! removes a Service deleted while it was down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::objects::{endpoint_slice, service};
use fake_apiserver::{Batch, FakeApiServer, Kind};
use serde_json::{json, Value};
use vm_tests::{diff, enter_fresh_netns, ipvsadm_ok, ipvsadm_rs};

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

/// A running `ipvsadm-rs --from-k8s` (live), its stderr in a file.
struct Live {
    child: Child,
    log: PathBuf,
}

impl Live {
    fn start(dir: &Path, extra: &[&str]) -> Live {
        let log = dir.join(format!("log-{}", std::process::id()));
        let log = unique(log);
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(ipvsadm_rs())
            .args([
                "--from-k8s",
                "--kubeconfig",
                dir.join("kubeconfig").to_str().unwrap(),
                "--node-ip",
                "192.168.49.2",
                "--node-name",
                "node-a",
                "--state",
                dir.join("owned").to_str().unwrap(),
                "--verbose",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Live { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then its exit code.
    fn terminate(mut self) -> (Option<i32>, String) {
        // SAFETY: kill takes no pointers; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        (status.code(), self.log())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(path: PathBuf) -> PathBuf {
    let mut n = 0;
    loop {
        let p = path.with_extension(n.to_string());
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// `GET /healthz` on `addr`: the status line and the body.
fn healthz(addr: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

fn wait_healthz(addr: &str, want: &str) -> String {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Some((status, body)) = healthz(addr) {
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

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn live_sync_follows_the_cluster_and_a_restart_catches_up() {
    enter_fresh_netns().unwrap();
    let dir = std::env::temp_dir().join("k8s-live");
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
    let mut np = service("default", "np", "10.96.0.12", &[("http", 80)]);
    np["spec"]["type"] = json!("NodePort");
    np["spec"]["ports"][0]["nodePort"] = json!(30012);
    b.apply(np)
        .apply(slice("default", "np", &[("http", 80)], &["10.244.2.1"]));
    server.batch(b);

    let health = "127.0.0.1:10256";
    let mut live = Live::start(&dir, &["--healthz", health, "--resync", "3600"]);
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
    let mut live = Live::start(&dir, &[]);
    let table_5: String = table_4
        .lines()
        .filter(|l| !l.contains("10.96.0.12:80") && !l.contains("30012"))
        .map(|l| format!("{l}\n"))
        .collect();
    converge(&format!("{table_5}{FOREIGN}"), &mut live);
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");

    // --once: one sync with nothing to do, zero writes, exit 0.
    let once = Live::start(&dir, &["--once"]);
    let mut once = once;
    let status = once.child.wait().unwrap();
    let log = once.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("; 0 writes,"), "{log}");
    assert_eq!(
        sorted(&ipvsadm_ok(&["-Sn"])),
        sorted(&format!("{table_5}{FOREIGN}"))
    );
    drop(server);
}
