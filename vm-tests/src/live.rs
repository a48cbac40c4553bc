//! A running `ipvsadm-rs --from-k8s` in live mode, as the VM tests start
//! it: a child process of the test, its stderr (the live log) in a file,
//! killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ipvsadm_rs;

/// A cluster of `n` Services for the live mode's large first syncs:
/// `bulk/s{i}`, ClusterIP 10.97.x.y, port `http` 80, one EndpointSlice
/// of four ready pods (10.245.x.y, port 8080) each.
pub fn bulk_services(n: usize) -> fake_apiserver::Batch {
    use fake_apiserver::objects::{endpoint_slice, service};
    let mut b = fake_apiserver::Batch::default();
    for i in 0..n {
        let name = format!("s{i}");
        let ip = format!("10.97.{}.{}", i / 250, i % 250 + 1);
        let pods: Vec<String> = (0..4)
            .map(|k| format!("10.245.{}.{}", i % 250, k + 1 + 4 * (i / 250)))
            .collect();
        let pods: Vec<&str> = pods.iter().map(String::as_str).collect();
        b.apply(service("bulk", &name, &ip, &[("http", 80)]))
            .apply(endpoint_slice(
                "bulk",
                &name,
                "abcde",
                &[("http", 8080)],
                &pods,
            ));
    }
    b
}

/// `ipvsadm-rs --from-k8s --cleanup` of the live run whose files are in
/// `dir` (its state file `dir/owned`), which must exit 0; its outcome.
pub fn cleanup(dir: &Path) -> crate::Outcome {
    let state = dir.join("owned");
    let out = crate::run_as(
        &ipvsadm_rs(),
        "ipvsadm-rs",
        &[
            "--from-k8s",
            "--cleanup",
            "--state",
            &state.to_string_lossy(),
        ],
        b"",
    );
    assert_eq!(out.code, Some(0), "--cleanup: {out}");
    out
}

/// Whether a live log has a sync's summary line: a sync wrote its table.
pub fn synced(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("sync ") && l.contains(" virtual services; "))
}

/// A running `ipvsadm-rs --from-k8s` (live), its stderr in a file.
pub struct Live {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl Live {
    /// Starts `ipvsadm-rs --from-k8s --kubeconfig DIR/kubeconfig --state
    /// DIR/owned --verbose ARGS...`, its log in a new file of `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> Live {
        let log = unique(dir.join(format!("log-{}", std::process::id())));
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(ipvsadm_rs())
            .args(["--from-k8s", "--kubeconfig"])
            .arg(dir.join("kubeconfig"))
            .arg("--state")
            .arg(dir.join("owned"))
            .arg("--verbose")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Live { child, log }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` holds, panicking with the log if it has not
    /// within `patience` (a hang guard, not a speed check) or if the
    /// process ends.
    pub fn until(&mut self, what: &str, patience: Duration, mut ready: impl FnMut() -> bool) {
        self.wait_for(what, patience, |_| ready());
    }

    /// Waits as [`Live::until`] does, until `ready` holds of its log so far.
    pub fn until_logged(&mut self, what: &str, patience: Duration, ready: impl Fn(&str) -> bool) {
        self.wait_for(what, patience, |live| ready(&live.log()));
    }

    fn wait_for(&mut self, what: &str, patience: Duration, mut ready: impl FnMut(&Live) -> bool) {
        let end = Instant::now() + patience;
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ipvsadm-rs ended ({status}) before {what}:\n{}", self.log());
            }
            assert!(Instant::now() < end, "never {what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for it to end by itself: its exit code and log.
    pub fn wait(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        (status.code(), self.log())
    }

    /// SIGTERM, then its exit code and log.
    pub fn terminate(mut self) -> (Option<i32>, String) {
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

/// `path` with the first extension `.0`, `.1`, ... that names no file.
fn unique(path: PathBuf) -> PathBuf {
    (0..)
        .map(|n: u32| path.with_extension(n.to_string()))
        .find(|p| !p.exists())
        .unwrap()
}

/// `GET /healthz` on `addr` (one connection, closed by the answer): the
/// status line and the body, `None` when no whole answer came (a read
/// waits at most `patience`).
pub fn healthz(addr: &str, patience: Duration) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(patience)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}
