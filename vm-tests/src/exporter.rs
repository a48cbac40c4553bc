//! `ipvsadm-rs --metrics` as the tests run it: started as a child of
//! the calling thread (in its network namespace), scraped over plain
//! HTTP/1.1, killed by its pid on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `ipvsadm-rs --metrics ADDR [extra]`.
pub struct Exporter {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// One HTTP answer: status code, header lines, body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The header block (lower-cased names as sent).
    pub headers: String,
    /// The body.
    pub body: String,
}

impl Exporter {
    /// Starts `ipvsadm-rs [extra] --metrics ADDR` and waits until its
    /// port answers.
    pub fn start(addr: &str, extra: &[&str]) -> Exporter {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        let child = Command::new(crate::ipvsadm_rs())
            .args(extra)
            .args(["--metrics", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ipvsadm-rs --metrics: {e}"));
        let mut exporter = Exporter { child, addr };
        for _ in 0..500 {
            if TcpStream::connect(addr).is_ok() {
                return exporter;
            }
            if let Ok(Some(status)) = exporter.child.try_wait() {
                panic!("ipvsadm-rs --metrics {addr} exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ipvsadm-rs --metrics never listened on {addr}");
    }

    /// `GET path`, the whole answer.
    pub fn get(&self, path: &str) -> Answer {
        get(self.addr, path)
    }

    /// The exporter's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exporter's peak resident memory (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> i64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` from the server at `addr` (HTTP/1.1, read until it closes).
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap_or_else(|e| panic!("{e}"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap_or_else(|e| panic!("{e}"));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read {addr}{path}: {e}"));
    let text = String::from_utf8(raw).unwrap_or_else(|e| panic!("not UTF-8: {e}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Answer {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}
