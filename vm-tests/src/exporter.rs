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

    /// `GET path` taking gzip, the text counted through `zcat`, and the
    /// compressed body ([`count_gzip`]).
    pub fn count_gzip(&self, path: &str) -> (Counted, Vec<u8>) {
        count_gzip(self.addr, path)
    }

    /// `GET path` taking gzip, the body decompressed ([`get_gzip`]).
    pub fn get_gzip(&self, path: &str) -> Answer {
        get_gzip(self.addr, path)
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
/// (HTTP/1.1) with the header lines `headers` (each ending in CRLF),
/// with a 60 s read timeout.
fn ask(addr: SocketAddr, path: &str, headers: &str) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap_or_else(|e| panic!("{e}"));
    // One write: `write!` would send each formatted piece on its own, and a
    // server that answers after its first read would close on the rest.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
    s.write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("send {addr}{path}: {e}"));
    s
}

/// `GET path` from the server at `addr` (HTTP/1.1, read until it closes).
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    answer(addr, path, "")
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
/// parent's peak at the spawn). Panics on a cut or malformed answer.
pub fn count(addr: SocketAddr, path: &str) -> Counted {
    let mut out = Counted::default();
    let (status, gzip) = read_body(addr, path, "", |piece| out.feed(piece));
    assert!(
        !gzip,
        "a compressed answer to a request that did not ask for one"
    );
    out.status = status;
    out
}

/// [`count`] of a request that takes gzip (`Accept-Encoding: gzip`, as
/// Prometheus sends), and the compressed bytes as they came
/// ([`fetch_gzip`], then [`count_compressed`]).
pub fn count_gzip(addr: SocketAddr, path: &str) -> (Counted, Vec<u8>) {
    let (status, wire) = fetch_gzip(addr, path);
    (count_compressed(status, &wire), wire)
}

/// `GET path` taking gzip from the server at `addr`: the status and the
/// body as it came, compressed (held: a few MB where the text is tens),
/// nothing decoded, so that a timer around it times the exporter and
/// the transfer alone. Panics when a 200 is not gzip's.
pub fn fetch_gzip(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut wire = Vec::new();
    let (status, gzip) = read_body(addr, path, "Accept-Encoding: gzip\r\n", |piece| {
        wire.extend_from_slice(piece)
    });
    assert!(
        gzip || status != 200,
        "a scrape that takes gzip was answered plain"
    );
    (status, wire)
}

/// What [`count`] counts of the answer `status` whose body is the gzip
/// stream `wire`, read through Debian's busybox `zcat` (an outside
/// decoder; a bad stream panics).
pub fn count_compressed(status: u16, wire: &[u8]) -> Counted {
    let mut out = Counted {
        status,
        ..Counted::default()
    };
    zcat(wire, |piece| out.feed(piece));
    out
}

/// `GET path` taking gzip from the server at `addr`: the answer, its
/// body decompressed by Debian's busybox `zcat` (an outside decoder);
/// its header block says whether it came compressed.
pub fn get_gzip(addr: SocketAddr, path: &str) -> Answer {
    answer(addr, path, "Accept-Encoding: gzip\r\n")
}

/// `GET path` with the header lines `headers` (each ending in CRLF): the
/// answer, its body whole (chunks decoded as [`read_body_head`] reads
/// them; a gzip body decompressed by [`zcat`]).
fn answer(addr: SocketAddr, path: &str, headers: &str) -> Answer {
    let (mut wire, mut head) = (Vec::new(), String::new());
    let (status, gzip) = read_body_head(addr, path, headers, &mut head, |piece| {
        wire.extend_from_slice(piece)
    });
    let body = if gzip {
        let mut text = Vec::new();
        zcat(&wire, |piece| text.extend_from_slice(piece));
        text
    } else {
        wire
    };
    Answer {
        status,
        headers: head,
        body: String::from_utf8(body).unwrap_or_else(|e| panic!("not UTF-8: {e}")),
    }
}

/// `compressed` decompressed by busybox's `zcat` (in the VM, Debian's
/// busybox-static), each piece of the text to `piece`. Panics when zcat
/// fails (a bad gzip stream).
pub fn zcat(compressed: &[u8], mut piece: impl FnMut(&[u8])) {
    let mut zcat = Command::new("zcat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("zcat: {e}"));
    let mut stdin = zcat.stdin.take().unwrap_or_else(|| panic!("zcat's stdin"));
    let input = compressed.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let mut text = zcat
        .stdout
        .take()
        .unwrap_or_else(|| panic!("zcat's stdout"));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = text.read(&mut buf).unwrap_or_else(|e| panic!("zcat: {e}"));
        if n == 0 {
            break;
        }
        piece(&buf[..n]);
    }
    let status = zcat.wait().unwrap_or_else(|e| panic!("zcat: {e}"));
    feeder
        .join()
        .unwrap_or_else(|_| panic!("zcat's feeder"))
        .unwrap_or_else(|e| panic!("to zcat: {e}"));
    assert!(status.success(), "zcat: {status} (a bad gzip stream)");
}

/// [`read_body_head`] without the header block.
fn read_body(addr: SocketAddr, path: &str, headers: &str, piece: impl FnMut(&[u8])) -> (u16, bool) {
    read_body_head(addr, path, headers, &mut String::new(), piece)
}

/// `GET path` (with the header lines `headers`, each ending in CRLF)
/// from the server at `addr`: the status line and the header block
/// (lower case, each line ending in CRLF) into `head`, each piece of the body as it is read goes
/// to `piece` (chunks decoded on the way, [`dechunk`]'s checks); the
/// status and whether the body is gzip's (`Content-Encoding`). Panics on
/// a cut or malformed answer.
fn read_body_head(
    addr: SocketAddr,
    path: &str,
    headers: &str,
    head: &mut String,
    mut piece: impl FnMut(&[u8]),
) -> (u16, bool) {
    use std::io::{BufRead, BufReader};
    let s = ask(addr, path, headers);
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
    head.push_str(&String::from_utf8_lossy(&line).to_ascii_lowercase());
    head.push_str("\r\n");
    let status = String::from_utf8_lossy(&line)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {:?}", String::from_utf8_lossy(&line)));
    let (mut chunked, mut gzip) = (false, false);
    loop {
        read_line(&mut r, &mut line);
        if line.is_empty() {
            break;
        }
        chunked |= line.eq_ignore_ascii_case(b"transfer-encoding: chunked");
        gzip |= line.eq_ignore_ascii_case(b"content-encoding: gzip");
        head.push_str(&String::from_utf8_lossy(&line).to_ascii_lowercase());
        head.push_str("\r\n");
    }
    let mut buf = vec![0u8; 1 << 16];
    if !chunked {
        loop {
            let n = r
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("read {addr}{path}: {e}"));
            if n == 0 {
                return (status, gzip);
            }
            piece(&buf[..n]);
        }
    }
    let mut read = 0usize;
    loop {
        read_line(&mut r, &mut line);
        let size = std::str::from_utf8(&line)
            .ok()
            .and_then(|l| usize::from_str_radix(l, 16).ok())
            .unwrap_or_else(|| panic!("not a chunk size: {:?}", String::from_utf8_lossy(&line)));
        if size == 0 {
            read_line(&mut r, &mut line);
            assert!(line.is_empty(), "after the last chunk");
            return (status, gzip);
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len());
            r.read_exact(&mut buf[..want]).unwrap_or_else(|e| {
                panic!("a chunk of {size} bytes is cut after {read} bytes of body: {e}")
            });
            piece(&buf[..want]);
            read += want;
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
    fn counting_is_the_same_however_the_body_is_cut_into_pieces() {
        let text = b"first line\n\nthird {a=\"1\"} 2\nlast line\nunfinished";
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let mut counted = Counted::default();
                for piece in [&text[..cut], &text[cut..cut2], &text[cut2..]] {
                    counted.feed(piece);
                }
                assert_eq!(counted.bytes, text.len() as u64);
                assert_eq!(counted.lines, 4, "cut at {cut}, {cut2}");
                assert_eq!(counted.last_line, "last line", "cut at {cut}, {cut2}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "cut")]
    fn a_chunked_answer_cut_short_is_refused() {
        const CUT: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nonly 8 b";
        count(serve_once(CUT), "/metrics");
    }
}
