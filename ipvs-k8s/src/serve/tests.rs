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
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw
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
