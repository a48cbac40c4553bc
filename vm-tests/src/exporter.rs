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
        Exporter::start_with(addr, extra, &[])
    }

    /// Starts `ipvsadm-rs [before] --metrics ADDR [after]` (`after`: the
    /// options of `--metrics`) and waits until its port answers.
    pub fn start_with(addr: &str, before: &[&str], after: &[&str]) -> Exporter {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        let child = Command::new(crate::ipvsadm_rs())
            .args(before)
            .args(["--metrics", &addr.to_string()])
            .args(after)
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

    /// `GET path`, the body counted as it is read, not kept ([`count`]).
    pub fn count(&self, path: &str) -> Counted {
        count(self.addr, path)
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

    /// The processor time the exporter has used since it started, user
    /// and system (`utime` and `stime` of /proc/PID/stat, every thread's;
    /// the kernel's work for its netlink dumps is its system time), in
    /// seconds at the clock tick's resolution.
    pub fn cpu_seconds(&self) -> (f64, f64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the command's name in parentheses: field 3 is the state,
        // fields 14 and 15 utime and stime (proc(5)).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let field = |n: usize| -> f64 {
            rest.split_whitespace()
                .nth(n - 3)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        // SAFETY: sysconf only reads a configuration value.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        (field(14) / tick, field(15) / tick)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection to the server at `addr` that has sent `GET path`
/// (HTTP/1.1), with a 60 s read timeout.
fn ask(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap_or_else(|e| panic!("{e}"));
    // One write: `write!` would send each formatted piece on its own, and a
    // server that answers after its first read would close on the rest.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("send {addr}{path}: {e}"));
    s
}

/// `GET path` from the server at `addr` (HTTP/1.1, read until it closes).
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut s = ask(addr, path);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read {addr}{path}: {e}"));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..end].to_vec()).unwrap_or_else(|e| panic!("head: {e}"));
    let rest = &raw[end + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("\r\ntransfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    let body = String::from_utf8(body).unwrap_or_else(|e| panic!("not UTF-8: {e}"));
    Answer {
        status,
        headers,
        body,
    }
}

/// What [`count`] read of an answer: its status, and of its body the
/// bytes, the lines and the last line; the body itself is not kept.
#[derive(Debug, Default)]
pub struct Counted {
    /// The status code.
    pub status: u16,
    /// The body's bytes (chunks decoded).
    pub bytes: u64,
    /// Its newlines.
    pub lines: u64,
    /// Its last complete line, without the newline.
    pub last_line: String,
    /// The bytes after the last newline (a line not yet ended).
    tail: Vec<u8>,
}

impl Counted {
    /// Counts `piece`'s bytes and newlines and keeps the last complete
    /// line: one pass to count, none per line (a scrape of 10,000
    /// services is 470,000 lines, and in the one-vCPU VM this reader's
    /// time is the exporter's lost: it reads as a scraper on another
    /// machine would, without parsing).
    fn feed(&mut self, piece: &[u8]) {
        self.bytes += piece.len() as u64;
        let Some(last) = piece.iter().rposition(|&b| b == b'\n') else {
            self.tail.extend_from_slice(piece);
            return;
        };
        let before = &piece[..last];
        self.lines += 1 + before.iter().filter(|&&b| b == b'\n').count() as u64;
        match before.iter().rposition(|&b| b == b'\n') {
            Some(nl) => self.last_line = String::from_utf8_lossy(&before[nl + 1..]).into_owned(),
            None => {
                self.tail.extend_from_slice(before);
                self.last_line = String::from_utf8_lossy(&self.tail).into_owned();
            }
        }
        self.tail.clear();
        self.tail.extend_from_slice(&piece[last + 1..]);
    }
}

/// `GET path` from the server at `addr`, its body counted as it is read
/// (chunks decoded on the way, [`dechunk`]'s checks) and never held: the
/// test process's memory does not grow with a scrape of tens of MB (the
/// bench's children would report it: a child's `ru_maxrss` includes its
/// parent's peak at the spawn), and the time is a scraper's that parses
/// as it reads. Panics on a cut or malformed answer.
pub fn count(addr: SocketAddr, path: &str) -> Counted {
    use std::io::{BufRead, BufReader};
    let s = ask(addr, path);
    let mut r = BufReader::with_capacity(1 << 16, s);
    let mut line = Vec::new();
    let read_line = |r: &mut BufReader<TcpStream>, line: &mut Vec<u8>| {
        line.clear();
        r.read_until(b'\n', line)
            .unwrap_or_else(|e| panic!("read {addr}{path}: {e}"));
        assert!(
            line.ends_with(b"\r\n"),
            "a line cut: {:?}",
            String::from_utf8_lossy(line)
        );
        line.truncate(line.len() - 2);
    };
    read_line(&mut r, &mut line);
    let mut out = Counted {
        status: String::from_utf8_lossy(&line)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {:?}", String::from_utf8_lossy(&line))),
        ..Counted::default()
    };
    let mut chunked = false;
    loop {
        read_line(&mut r, &mut line);
        if line.is_empty() {
            break;
        }
        chunked |= line.eq_ignore_ascii_case(b"transfer-encoding: chunked");
    }
    let mut buf = vec![0u8; 1 << 16];
    if !chunked {
        loop {
            let n = r
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("read {addr}{path}: {e}"));
            if n == 0 {
                return out;
            }
            out.feed(&buf[..n]);
        }
    }
    loop {
        read_line(&mut r, &mut line);
        let size = std::str::from_utf8(&line)
            .ok()
            .and_then(|l| usize::from_str_radix(l, 16).ok())
            .unwrap_or_else(|| panic!("not a chunk size: {:?}", String::from_utf8_lossy(&line)));
        if size == 0 {
            read_line(&mut r, &mut line);
            assert!(line.is_empty(), "after the last chunk");
            return out;
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len());
            r.read_exact(&mut buf[..want]).unwrap_or_else(|e| {
                panic!(
                    "a chunk of {size} bytes is cut after {} bytes of body: {e}",
                    out.bytes
                )
            });
            out.feed(&buf[..want]);
            left -= want;
        }
        read_line(&mut r, &mut line);
        assert!(line.is_empty(), "a chunk's end");
    }
}

/// A body in HTTP/1.1's chunked transfer coding (RFC 9112, 7.1) decoded:
/// each chunk is its size in hexadecimal, CRLF, the bytes, CRLF; the last
/// has size 0 and is followed by an empty line (no trailers are sent).
/// Panics on anything else, a body cut before its last chunk included.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("a chunk's size line is cut after {} bytes", body.len()));
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|l| usize::from_str_radix(l, 16).ok())
            .unwrap_or_else(|| {
                panic!(
                    "not a chunk size: {:?}",
                    String::from_utf8_lossy(&raw[..line_end.min(40)])
                )
            });
        raw = &raw[line_end + 2..];
        if size == 0 {
            assert_eq!(raw, b"\r\n", "after the last chunk");
            return body;
        }
        assert!(
            raw.len() >= size + 2,
            "a chunk of {size} bytes is cut after {} bytes of body",
            body.len()
        );
        body.extend_from_slice(&raw[..size]);
        assert_eq!(&raw[size..size + 2], b"\r\n", "a chunk's end");
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `answer` once on a local port; its address.
    fn serve_once(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request before the answer: a close with unread
            // bytes would send a reset.
            let mut req = Vec::new();
            let mut piece = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut piece).unwrap();
                assert!(n > 0, "the request is cut: {req:?}");
                req.extend_from_slice(&piece[..n]);
            }
            s.write_all(answer).unwrap();
        });
        addr
    }

    #[test]
    fn a_chunked_answer_is_counted_as_get_reads_it() {
        const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
            7\r\na 1\nb 2\r\n5\r\n\nc 3\n\r\n0\r\n\r\n";
        let got = get(serve_once(CHUNKED), "/metrics");
        let counted = count(serve_once(CHUNKED), "/metrics");
        assert_eq!((got.status, counted.status), (200, 200));
        assert_eq!(got.body, "a 1\nb 2\nc 3\n");
        assert_eq!(counted.bytes, got.body.len() as u64);
        assert_eq!(counted.lines, 3);
        assert_eq!(counted.last_line, "c 3");
        const WHOLE: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 10\r\n\r\nnot here\nx";
        let counted = count(serve_once(WHOLE), "/nothing");
        assert_eq!((counted.status, counted.bytes, counted.lines), (404, 10, 1));
        assert_eq!(counted.last_line, "not here");
    }

    #[test]
    #[should_panic(expected = "cut")]
    fn a_chunked_answer_cut_short_is_refused() {
        const CUT: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nonly 8 b";
        count(serve_once(CUT), "/metrics");
    }
}
