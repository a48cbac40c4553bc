//! [`run`]'s answers over a real socket: whole, streamed in chunks,
//! streamed and cut short by their writer, and a writer whose client
//! went away.

use super::*;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc as std_mpsc;

/// What the streaming answers write: `lines` numbered lines.
fn numbered(out: &mut Chunks, lines: usize) -> fmt::Result {
    for i in 0..lines {
        writeln!(out, "line {i:08} of the streamed answer")?;
    }
    Ok(())
}

/// A server of `run` on a port of its own, forever (its thread ends with
/// the test binary); what the writer of `/gone` saw comes back on the
/// receiver.
fn server() -> (SocketAddr, std_mpsc::Receiver<fmt::Result>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (told, seen) = std_mpsc::channel();
    let told = Arc::new(Mutex::new(told));
    std::thread::spawn(move || {
        run(
            listener,
            Limits::default(),
            2,
            move |path, query, reply| match path {
                "/query" => reply.whole(Plain {
                    status: 200,
                    content_type: "text/plain",
                    body: format!("[{query}]"),
                }),
                "/whole" => reply.whole(Plain {
                    status: 200,
                    content_type: "text/plain",
                    body: "all of it\n".to_owned(),
                }),
                "/stream" => {
                    let mut out = reply.stream(200, "text/plain");
                    numbered(&mut out, 20_000).unwrap();
                    out.finish().unwrap();
                }
                "/stream-gz" => {
                    let mut out = reply.stream_negotiated(200, "text/plain");
                    // 7.4 MB: several chunks even compressed.
                    numbered(&mut out, 200_000).unwrap();
                    out.finish().unwrap();
                }
                "/small-gz" => {
                    let mut out = reply.stream_gzip(200, "text/plain");
                    out.write_str("a little\n").unwrap();
                    out.finish().unwrap();
                }
                "/small" => {
                    let mut out = reply.stream(200, "text/plain");
                    out.write_str("a little\n").unwrap();
                    out.finish().unwrap();
                }
                "/cut" => {
                    let mut out = reply.stream(200, "text/plain");
                    numbered(&mut out, 20_000).unwrap();
                    // Dropped unfinished.
                }
                "/gone" => {
                    let mut out = reply.stream(200, "text/plain");
                    // Far more than the socket and the chunks ahead hold.
                    let result = numbered(&mut out, 10_000_000);
                    let _ = told.lock().unwrap().send(result);
                }
                _ => drop(reply),
            },
        )
        .unwrap();
    });
    (addr, seen)
}

/// `GET path`, the raw answer read to its end.
fn get(addr: SocketAddr, path: &str) -> String {
    String::from_utf8(get_with(addr, path, "")).unwrap()
}

/// `GET path` with the header lines `headers` (each ending in CRLF), the
/// raw answer's bytes read to its end.
fn get_with(addr: SocketAddr, path: &str, headers: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    raw
}

/// An answer's head (lower case) and body, its chunks joined.
fn head_and_body(raw: &[u8]) -> (String, Vec<u8>) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec())
        .unwrap()
        .to_ascii_lowercase();
    let mut rest = &raw[end + 4..];
    if !head.contains("\r\ntransfer-encoding: chunked") {
        return (head, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        rest = &rest[line + 2..];
        if size == 0 {
            assert_eq!(rest, b"\r\n");
            return (head, body);
        }
        body.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n");
        rest = &rest[size + 2..];
    }
}

/// `bytes` decompressed by the system's gzip (`gzip -dc`), the outside
/// judge of what we compress.
fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip (Debian's gzip package) runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -dc: {out:?}");
    out.stdout
}

#[test]
fn a_streamed_answer_is_gzip_when_the_client_takes_it() {
    let (addr, _) = server();
    let plain = head_and_body(&get_with(addr, "/stream-gz", "")).1;
    assert_eq!(plain.len(), 7_400_000);

    // As Prometheus asks: compressed, in chunks, and the system's gzip
    // reads back the very text.
    let raw = get_with(addr, "/stream-gz", "Accept-Encoding: gzip\r\n");
    let (head, body) = head_and_body(&raw);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-encoding: gzip\r\n"), "{head}");
    assert!(head.contains("\r\nvary: accept-encoding"), "{head}");
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    assert!(body.len() < plain.len() / 4, "{} bytes", body.len());
    assert_eq!(gunzip(&body), plain);

    // Refused (a weight of 0), or not named: plain.
    for refused in [
        "Accept-Encoding: gzip;q=0, identity\r\n",
        "Accept-Encoding: br\r\n",
        "Accept-Encoding: *;q=0\r\n",
    ] {
        let (head, body) = head_and_body(&get_with(addr, "/stream-gz", refused));
        assert!(!head.contains("content-encoding"), "{refused}: {head}");
        assert_eq!(body, plain, "{refused}");
    }

    // Ended before its first chunk: whole, with the compressed length.
    let (head, body) = head_and_body(&get_with(addr, "/small-gz", "Accept-Encoding: gzip\r\n"));
    assert!(head.contains("\r\ncontent-encoding: gzip\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", body.len())),
        "{head}"
    );
    assert_eq!(gunzip(&body), b"a little\n");
}

#[test]
fn accept_encoding_is_read_as_rfc_9110_weighs_it() {
    let takes = |values: &[&str]| {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        accepts_gzip(&headers)
    };
    // Prometheus's own header, and the usual shapes.
    assert!(takes(&["gzip"]));
    assert!(takes(&["gzip, deflate, br"]));
    assert!(takes(&["deflate;q=1.0, GZIP;q=0.5"]));
    assert!(takes(&["x-gzip"]));
    assert!(takes(&["identity", "gzip;q=0.001"]));
    assert!(takes(&["*"]));
    assert!(takes(&["br;q=1, *;q=0.1"]));
    // None, refused, or a weight that does not read.
    assert!(!takes(&[]));
    assert!(!takes(&["identity"]));
    assert!(!takes(&["gzip;q=0"]));
    assert!(!takes(&["gzip;q=0.000, *"]));
    assert!(!takes(&["*;q=0"]));
    assert!(!takes(&["gzip;q=high"]));
    assert!(!takes(&["gzip;q=2"]));
}

#[test]
fn answers_are_whole_streamed_or_cut_and_a_gone_client_stops_the_writer() {
    let (addr, seen) = server();

    let whole = get(addr, "/whole");
    assert!(whole.starts_with("HTTP/1.1 200 OK\r\n"), "{whole}");
    assert!(whole.contains("\r\ncontent-length: 10\r\n"), "{whole}");
    assert!(whole.ends_with("\r\n\r\nall of it\n"), "{whole}");
    // The query as sent, undecoded; none is "".
    let query = get(addr, "/query?collect%5B%5D=node&x=1");
    assert!(
        query.ends_with("\r\n\r\n[collect%5B%5D=node&x=1]"),
        "{query}"
    );
    assert!(get(addr, "/query").ends_with("\r\n\r\n[]"));

    // 20,000 lines of 37 bytes: 740,000 bytes, in chunks of CHUNK bytes
    // (the last shorter), then the last chunk.
    let streamed = get(addr, "/stream");
    let (head, mut body) = streamed.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    let mut text = String::new();
    let mut sizes = Vec::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        sizes.push(size);
        if size == 0 {
            assert_eq!(rest, "\r\n");
            break;
        }
        text.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap();
    }
    assert_eq!(text.lines().count(), 20_000);
    assert_eq!(text.len(), 740_000);
    assert!(text
        .lines()
        .enumerate()
        .all(|(i, l)| l == format!("line {i:08} of the streamed answer")));
    assert!(
        sizes[..sizes.len() - 2]
            .iter()
            .all(|s| (CHUNK..CHUNK + 37).contains(s)),
        "{sizes:?}"
    );

    // A streamed body that ends before its first chunk is full: whole,
    // with its length.
    let small = get(addr, "/small");
    assert!(small.contains("\r\ncontent-length: 9\r\n"), "{small}");
    assert!(small.ends_with("\r\n\r\na little\n"), "{small}");

    // Cut by its writer: no last chunk (the connection is closed).
    let cut = get(addr, "/cut");
    assert!(cut.contains("\r\ntransfer-encoding: chunked"), "{cut}");
    assert!(
        !cut.ends_with("\r\n0\r\n\r\n"),
        "a cut answer ended as whole"
    );

    // A client that reads the head and leaves: the writer's next chunks
    // fail, and it stops.
    {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET /gone HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut first = [0u8; 15];
        s.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200 OK");
    }
    assert_eq!(seen.recv().unwrap(), Err(fmt::Error));

    // An answer dropped unanswered: 500.
    assert!(get(addr, "/nothing").starts_with("HTTP/1.1 500 "));
}
