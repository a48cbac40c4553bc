//! The restore's own cost per line, on the host (no kernel): the rules
//! `ipvsadm -Sn` prints for nlfloor's table of N services with 4 real
//! servers each (`-A -t VIP:80 -s rr`, `-a -t VIP:80 -r RIP:8080 -m -w 1`),
//! read, parsed and encoded into datagrams of
//! [`ipvs_netlink::MAX_IN_FLIGHT`] requests as `-R` does, without sending
//! them. Not a timed test: ignored by default, for counting instructions
//! (docs/speed.md, "What the restore costs"):
//!
//! ```text
//! cargo test --release -p ipvs-tests --test restore_cost --no-run
//! valgrind --tool=callgrind target/release/deps/restore_cost-* \
//!     --ignored --exact restore_for_callgrind
//! callgrind_annotate --inclusive=yes callgrind.out.*
//! ```
//!
//! `RESTORE_COST_SERVICES` sets N (10,000 by default). The test prints the
//! lines, the encoded bytes and the wall time of the reading loop
//! (`--nocapture`); under callgrind, `read_and_encode`'s inclusive count
//! over the line count is the cost of a line.

use std::fmt::Write;
use std::io::BufRead;
use std::time::Instant;

use ipvs_netlink::netlink_packet_core::NetlinkHeader;
use ipvs_netlink::{Request, MAX_IN_FLIGHT};
use ipvsadm_rs::commands::restore::{Next, Reader};

/// nlfloor's table as `-Sn` prints it: service `i` is
/// `10.(100+(i>>16)).(i>>8).(i&255):80` rr, its real servers
/// `172.(16+k+16*(i>>16)).(i>>8).(i&255):8080` masq weight 1.
fn rules(services: usize) -> String {
    let mut out = String::with_capacity(services * 260);
    for i in 0..services {
        let (hi, mid, lo) = (i >> 16, (i >> 8) & 255, i & 255);
        let vip = format!("10.{}.{mid}.{lo}:80", 100 + hi);
        let _ = writeln!(out, "-A -t {vip} -s rr");
        for k in 0..4 {
            let _ = writeln!(
                out,
                "-a -t {vip} -r 172.{}.{mid}.{lo}:8080 -m -w 1",
                16 + k + 16 * hi
            );
        }
    }
    out
}

/// What the restore does with each line before sending: read it, parse
/// it, and write its request into the datagram, a new datagram every
/// [`MAX_IN_FLIGHT`] requests. Returns the lines that were writes and the
/// bytes encoded.
#[inline(never)]
fn read_and_encode(input: &mut dyn BufRead) -> (usize, usize) {
    let mut reader = Reader::new();
    let mut header = NetlinkHeader::default();
    header.message_type = 0x20;
    let mut datagram = Vec::with_capacity(64 << 10);
    let (mut writes, mut bytes, mut in_datagram) = (0, 0, 0);
    loop {
        match reader.next(input, "ipvsadm") {
            Ok(Next::Write(op)) => {
                header.sequence_number = writes as u32;
                Request::Op(&op).emit(&header, &mut datagram);
                writes += 1;
                in_datagram += 1;
                if in_datagram == MAX_IN_FLIGHT {
                    bytes += datagram.len();
                    datagram.clear();
                    in_datagram = 0;
                }
            }
            Ok(Next::End) => break,
            Ok(Next::Blank) => {}
            other => panic!("not a write: {other:?}"),
        }
    }
    (writes, bytes + datagram.len())
}

#[test]
#[ignore = "an instruction count harness for callgrind, not a test"]
fn restore_for_callgrind() {
    let services = std::env::var("RESTORE_COST_SERVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let text = rules(services);
    // The reader of stdin: a BufReader of 8 KiB, as `StdinLock` is.
    let mut input = std::io::BufReader::with_capacity(8 << 10, text.as_bytes());
    let start = Instant::now();
    let (writes, bytes) = read_and_encode(&mut input);
    let took = start.elapsed();
    assert_eq!(writes, services * 5);
    println!(
        "{writes} lines, {bytes} bytes encoded, {:.1} ms, {:.0} ns a line",
        took.as_secs_f64() * 1e3,
        took.as_nanos() as f64 / writes as f64
    );
}
