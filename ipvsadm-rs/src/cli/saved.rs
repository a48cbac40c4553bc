//! The lines `ipvsadm -S` (`ipvsadm-save`) prints, read straight to
//! their write: the fast path of a restore.
//!
//! A restore of a saved table is tens of thousands of lines of two
//! shapes, in the order `-S` prints their options:
//!
//! ```text
//! -A -t|-u ADDR:PORT|-f MARK [-6] -s SCHED [-p TIMEOUT] [-M MASK] [-b FLAGS]
//! -a -t|-u ADDR:PORT|-f MARK [-6] -r ADDR[:PORT] [-g|-i|-m] [-w N] [-x N] [-y N]
//! ```
//!
//! with numeric addresses (dotted IPv4 without leading zeros, bracketed
//! IPv6) and decimal numbers. [`write()`] reads such a line in one pass
//! over its bytes, without the popt walker, the option table or any
//! allocation but the scheduler's name, and makes the write that
//! [`super::parse()`] and [`crate::commands::convert::to_op`] make of it.
//! Anything else, and anything 1.31 would refuse, gives `None`: the
//! caller then reads the line with the full parser, which prints 1.31's
//! message and exit code. So this path changes no behaviour; a property
//! test checks that whatever it accepts, the full parser turns into the
//! same write.

use std::net::{IpAddr, Ipv4Addr};

use ipvs_netlink::Op;

use super::cparse::{inet_pton6, parse_fwmark, string_to_number};
use super::parse::{
    parse_sched_flags, DestArgs, SvcArgs, AF_INET, AF_INET6, CONN_F_DROUTE, CONN_F_MASQ,
    CONN_F_TUNNEL, IPPROTO_TCP, IPPROTO_UDP, MAX_TIMEOUT, SVC_F_PERSISTENT,
};
use crate::commands::convert::{destination, service, service_id};

/// The most words a line of either shape has (`-a -f 1 -6 -r A -m -w 1
/// -x 1 -y 1` has 14).
const MAX_WORDS: usize = 16;

/// The longest line read here: far below the 4,096 bytes at which 1.31
/// cuts a word, so every word is whole.
const MAX_LINE: usize = 512;

/// The words of the line at the start of `buf`, split as a restore
/// splits them (on space, tab and CR), and the line's length with its
/// newline. The line ends at the first newline, or with `buf` if
/// `newline` is false. `None` unless every byte is printable ASCII or one
/// of those (no NUL, no other control byte, no UTF-8 to decode), the line
/// is at most [`MAX_LINE`] bytes, there are at most [`MAX_WORDS`] words,
/// and none is the word `ipvsadm` (which a restore drops). One pass over
/// the bytes.
fn words(buf: &[u8], newline: bool) -> Option<([&[u8]; MAX_WORDS], usize, usize)> {
    let mut out: [&[u8]; MAX_WORDS] = [&[]; MAX_WORDS];
    let mut n = 0;
    let mut start = None;
    let mut end = None;
    for (i, &b) in buf.iter().enumerate().take(MAX_LINE + 1) {
        match b {
            b'!'..=b'~' => {
                if start.is_none() {
                    start = Some(i);
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' => {
                if let Some(s) = start.take() {
                    *out.get_mut(n)? = &buf[s..i];
                    n += 1;
                }
                if b == b'\n' {
                    end = Some(i);
                    break;
                }
            }
            _ => return None,
        }
    }
    let used = match end {
        Some(end) if end <= MAX_LINE => end + 1,
        None if !newline && buf.len() <= MAX_LINE => {
            if let Some(s) = start {
                *out.get_mut(n)? = &buf[s..];
                n += 1;
            }
            buf.len()
        }
        _ => return None,
    };
    if out[..n].contains(&&b"ipvsadm"[..]) {
        return None;
    }
    Some((out, n, used))
}

/// The words of a line, taken in order.
struct Cursor<'a> {
    words: &'a [&'a [u8]],
}

impl<'a> Cursor<'a> {
    /// The next word.
    fn next(&mut self) -> Option<&'a [u8]> {
        let (first, rest) = self.words.split_first()?;
        self.words = rest;
        Some(first)
    }

    /// Takes the next word if it is `option`.
    fn take(&mut self, option: &[u8]) -> bool {
        let found = self.words.first() == Some(&option);
        if found {
            self.words = &self.words[1..];
        }
        found
    }

    /// The argument of an option: the next word, unless it looks like an
    /// option (popt would take it, but then it is not a line of `-S`).
    fn argument(&mut self) -> Option<&'a [u8]> {
        self.next().filter(|w| w.first() != Some(&b'-'))
    }

    /// [`Cursor::argument`] as text.
    fn text(&mut self) -> Option<&'a str> {
        // Printable ASCII ([`words`]): this cannot fail.
        std::str::from_utf8(self.argument()?).ok()
    }
}

/// The value of 1 to `max_digits` decimal digits.
fn digits(s: &[u8], max_digits: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_digits {
        return None;
    }
    let mut value = 0u32;
    for &d in s {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(d - b'0');
    }
    Some(value)
}

/// A dotted IPv4 address of four decimal parts without leading zeros:
/// what `inet_aton` reads the same way (a leading zero would make a part
/// octal there).
fn ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut rest = s;
    for (k, octet) in octets.iter_mut().enumerate() {
        let end = if k == 3 {
            rest.len()
        } else {
            rest.iter().position(|&b| b == b'.')?
        };
        let part = &rest[..end];
        if part.len() > 1 && part[0] == b'0' {
            return None;
        }
        *octet = u8::try_from(digits(part, 3)?).ok()?;
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    Some(Ipv4Addr::from(octets))
}

/// A port of one to five decimal digits, at most 65535.
fn port(s: &[u8]) -> Option<u16> {
    u16::try_from(digits(s, 5)?).ok()
}

/// `ADDR:PORT`, `ADDR` or `[ADDR6]:PORT`, as `parse_service` reads them:
/// the family, the address and the port if one is given.
fn addr_port(word: &[u8]) -> Option<(u16, IpAddr, Option<u16>)> {
    if let Some(rest) = word.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let after = rest[close + 1..].strip_prefix(b":")?;
        let a6 = inet_pton6(std::str::from_utf8(&rest[..close]).ok()?)?;
        return Some((AF_INET6, IpAddr::V6(a6), Some(port(after)?)));
    }
    let (host, p) = match word.iter().rposition(|&b| b == b':') {
        Some(colon) => (&word[..colon], Some(port(&word[colon + 1..])?)),
        None => (word, None),
    };
    Some((AF_INET, IpAddr::V4(ipv4(host)?), p))
}

/// A decimal number within `min..=max`, as 1.31 reads it.
fn number(word: &str, min: i64, max: i64) -> Option<i64> {
    string_to_number(word, min, max)
}

/// The write of `line` (without its newline) if it is one of the two
/// shapes `-S` prints and 1.31 would accept it; `None` for anything else
/// (the caller reads it with the full parser).
pub fn write(line: &[u8]) -> Option<Op> {
    if line.contains(&b'\n') {
        return None;
    }
    let (words, n, _) = words(line, false)?;
    write_words(&words[..n])
}

/// [`write()`] of the line at the start of `buf`, which must end with a
/// newline within `buf`: the write and the bytes of the line with its
/// newline.
pub fn write_first_line(buf: &[u8]) -> Option<(Op, usize)> {
    let (words, n, used) = words(buf, true)?;
    Some((write_words(&words[..n])?, used))
}

/// The write of a line of `words`.
fn write_words(words: &[&[u8]]) -> Option<Op> {
    let mut at = Cursor { words };
    let add_dest = match at.next()? {
        b"-A" => false,
        b"-a" => true,
        _ => return None,
    };
    let mut svc = SvcArgs::unset();
    match at.next()? {
        option @ (b"-t" | b"-u") => {
            svc.protocol = if option == b"-t" {
                IPPROTO_TCP
            } else {
                IPPROTO_UDP
            };
            let (af, addr, port) = addr_port(at.argument()?)?;
            (svc.af, svc.addr) = (af, addr);
            if af == AF_INET6 {
                svc.netmask = 128;
            }
            svc.port = port.unwrap_or(0);
        }
        b"-f" => {
            svc.af = AF_INET;
            svc.protocol = IPPROTO_TCP;
            svc.fwmark = parse_fwmark(at.text()?)?;
            if at.take(b"-6") {
                svc.af = AF_INET6;
                svc.netmask = 128;
            }
        }
        _ => return None,
    }
    if add_dest {
        destination_line(at, svc)
    } else {
        service_line(at, svc)
    }
}

/// The rest of `-A`: `-s SCHED [-p TIMEOUT] [-M MASK] [-b FLAGS]`.
fn service_line(mut at: Cursor<'_>, mut svc: SvcArgs) -> Option<Op> {
    if !at.take(b"-s") {
        return None;
    }
    let sched = at.text()?;
    // 1.31 copies at most 15 bytes of the name.
    if sched.len() > 15 {
        return None;
    }
    if at.take(b"-p") {
        // A bare `-p` is 1.31's default timeout: the full parser's.
        svc.timeout = u32::try_from(number(at.text()?, 1, MAX_TIMEOUT)?).ok()?;
        svc.flags |= SVC_F_PERSISTENT;
    }
    if at.take(b"-M") {
        let mask = at.argument()?;
        svc.netmask = if svc.af == AF_INET6 {
            digits(mask, 3).filter(|n| (1..=128).contains(n))?
        } else {
            u32::from(ipv4(mask)?)
        };
    }
    if at.take(b"-b") {
        let flags = at.text()?;
        // 1.31 copies at most 127 bytes of the flags.
        if flags.len() > 127 {
            return None;
        }
        svc.flags |= parse_sched_flags(sched, flags).ok()?;
    }
    if at.next().is_some() {
        return None;
    }
    if svc.fwmark == 0 && svc.port == 0 && svc.flags & SVC_F_PERSISTENT == 0 {
        // "Zero port specified for non-persistent service".
        return None;
    }
    svc.sched_name = sched.to_owned();
    Some(Op::AddService(service(&svc)))
}

/// The rest of `-a`: `-r ADDR[:PORT] [-g|-i|-m] [-w N] [-x N] [-y N]`.
fn destination_line(mut at: Cursor<'_>, svc: SvcArgs) -> Option<Op> {
    if !at.take(b"-r") {
        return None;
    }
    let mut dest = DestArgs::unset();
    let (af, addr, port) = addr_port(at.argument()?)?;
    (dest.af, dest.addr) = (af, addr);
    // Without a port, the service's.
    dest.port = port.unwrap_or(svc.port);
    if at.take(b"-g") {
        dest.conn_flags = CONN_F_DROUTE;
    } else if at.take(b"-i") {
        dest.conn_flags = CONN_F_TUNNEL;
    } else if at.take(b"-m") {
        dest.conn_flags = CONN_F_MASQ;
    }
    let int_max = i64::from(i32::MAX);
    if at.take(b"-w") {
        dest.weight = number(at.text()?, 0, int_max)?;
    }
    if at.take(b"-x") {
        dest.u_threshold = u32::try_from(number(at.text()?, 0, int_max)?).ok()?;
    }
    if at.take(b"-y") {
        dest.l_threshold = u32::try_from(number(at.text()?, 0, int_max)?).ok()?;
    }
    if at.next().is_some() {
        return None;
    }
    let fwd = dest.conn_flags;
    // Direct routing and tunnels keep the service's port.
    if svc.fwmark == 0 && (fwd == CONN_F_TUNNEL || fwd == CONN_F_DROUTE) {
        dest.port = svc.port;
    }
    if dest.af != svc.af && fwd != CONN_F_TUNNEL {
        // "Different address family is allowed only for tunneling servers".
        return None;
    }
    Some(Op::AddDestination(service_id(&svc), destination(&dest)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::commands::convert::to_op;
    use crate::commands::restore::restore_tokens;
    use ipvs_netlink::{
        AddressFamily, Destination, ForwardMethod, Netmask, Service, ServiceFlags, ServiceId,
    };
    use proptest::prelude::*;
    use std::net::{Ipv6Addr, SocketAddr};

    /// The full parser's write of a line: its words as a restore splits
    /// them, parsed as 1.31 parses them, made a write if they are one.
    fn full(line: &[u8]) -> Option<Op> {
        let words = restore_tokens(line);
        if words.is_empty() {
            return None;
        }
        crate::cli::parse("ipvsadm", &words)
            .ok()
            .and_then(|e| to_op(&e))
    }

    #[test]
    fn the_lines_of_a_saved_table_are_read_as_the_full_parser_reads_them() {
        let lines: [&[u8]; 9] = [
            b"-A -t 10.100.0.1:80 -s rr",
            b"-a -t 10.100.0.1:80 -r 172.16.0.1:8080 -m -w 1",
            b"-A -u [2001:db8::1]:53 -s sh -p 300 -M 64 -b sh-fallback,sh-port",
            b"-A -f 7 -6 -s wlc -p 60 -M 96",
            b"-a -f 7 -6 -r [2001:db8::2]:0 -g -w 0",
            b"-A -t 10.0.0.1:0 -s lc -p 1 -M 255.255.255.0",
            b"-a -t 10.0.0.1:80 -r 10.0.0.2 -i -w 2147483647 -x 10 -y 5",
            b"-a -t 10.0.0.1:80 -r [2001:db8::2]:90 -i -w 3",
            b"  -a\t-u 1.2.3.4:5\r  -r 5.6.7.8:9 -m -w 2 \r",
        ];
        for line in lines {
            let fast = write(line);
            assert!(fast.is_some(), "{}", String::from_utf8_lossy(line));
            assert_eq!(fast, full(line), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn what_1_31_refuses_or_the_shapes_do_not_cover_goes_to_the_full_parser() {
        let lines: [&[u8]; 22] = [
            // 1.31's refusals: the full parser prints them.
            b"-A -t 10.0.0.1 -s rr",
            b"-A -t 10.0.0.1:80 -s rr -p 0",
            b"-a -t 10.0.0.1:80 -r [2001:db8::2]:90 -m",
            b"-A -t 10.0.0.1:80 -s rr -b sh-port",
            b"-A -t 10.0.0.1:80 -s rr -s wrr",
            b"-a -t 10.0.0.1:80 -r 10.0.0.2 -w 2147483648",
            b"-A -f 0 -s rr",
            // Other spellings: the full parser reads them.
            b"-A -t10.0.0.1:80 -s rr",
            b"-A -s rr -t 10.0.0.1:80",
            b"-A --tcp-service 10.0.0.1:80 -s rr",
            b"-A -t 010.0.0.1:80 -s rr",
            b"-A -t 10.0.0.1:http -s rr",
            b"-A -t [1.2.3.4]:80 -s rr",
            b"-A -t 10.0.0.1:80 -s rr -p",
            b"-A -t 10.0.0.1:80 -s rr -o",
            b"-A -t 10.0.0.1:80 -s rr --pe sip",
            b"-a -t 10.0.0.1:80 -r 10.0.0.2 -i -w 1 --tun-type ipip",
            b"ipvsadm -A -t 10.0.0.1:80 -s rr",
            b"-A -t 10.0.0.1:80 -s rr\x00",
            b"-A -t 10.0.0.1:80 -s r\xc3\xa9",
            b"-A -t 10.0.0.1:80 -s averyveryverylongname",
            b"-E -t 10.0.0.1:80 -s rr",
        ];
        for line in lines {
            assert_eq!(write(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    /// The words lines are made of: each shape's words with valid and
    /// invalid values, other options and commands, odd spellings.
    const VOCABULARY: &[&str] = &[
        "-A",
        "-a",
        "-E",
        "-e",
        "-d",
        "-L",
        "-C",
        "ipvsadm",
        "-t",
        "-u",
        "-f",
        "-6",
        "--tcp-service",
        "-t10.0.0.1:80",
        "10.0.0.1:80",
        "10.0.0.1",
        "10.0.0.1:0",
        "010.0.0.1:80",
        "10.0.0.256:80",
        "10.0.0.1:65536",
        "10.0.0.1:00080",
        "10.0.0.1:",
        "1.2.3:80",
        "10.0.0.1:80:90",
        "[2001:db8::1]:80",
        "[2001:db8::1]",
        "2001:db8::1",
        "[1.2.3.4]:80",
        "[::ffff:1.2.3.4]:8",
        "localhost:80",
        "1",
        "0",
        "4294967295",
        "4294967296",
        "-1",
        "+5",
        "-s",
        "rr",
        "wlc",
        "sh",
        "mh",
        "abcdefghijklmnopq",
        "-p",
        "300",
        "2678401",
        "-M",
        "255.255.255.0",
        "64",
        "129",
        "0255.0.0.0",
        "-b",
        "sh-port",
        "flag-1,flag-2",
        "mh-fallback",
        ",",
        "nope",
        "-r",
        "-g",
        "-i",
        "-m",
        "-w",
        "-x",
        "-y",
        "5",
        "2147483647",
        "2147483648",
        "-o",
        "--pe",
        "sip",
        "-n",
        "--",
        "-",
        "x",
    ];

    /// A line of one of the two shapes with random values.
    fn shaped() -> impl Strategy<Value = Vec<String>> {
        let v4 = any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string());
        let v6 = any::<[u16; 8]>().prop_map(|g| format!("[{}]", Ipv6Addr::from(g)));
        let host = prop_oneof![3 => v4, 1 => v6];
        let addr = (host.clone(), prop::option::of(0u16..=65535)).prop_map(|(h, p)| match p {
            Some(p) => format!("{h}:{p}"),
            None => h,
        });
        let svc = prop_oneof![
            (prop_oneof![Just("-t"), Just("-u")], addr.clone())
                .prop_map(|(o, a)| vec![o.to_owned(), a]),
            (1u32..=u32::MAX, any::<bool>()).prop_map(|(m, v6)| {
                let mut w = vec!["-f".to_owned(), m.to_string()];
                if v6 {
                    w.push("-6".into());
                }
                w
            }),
        ];
        let number = prop_oneof![Just(0u64), 1u64..1000, Just(2_147_483_647), Just(2_678_400)];
        let opt = |name: &'static str, value: BoxedStrategy<String>| {
            prop::option::of(value.prop_map(move |v| vec![name.to_owned(), v]))
                .prop_map(Option::unwrap_or_default)
        };
        let sched = prop_oneof![Just("rr"), Just("wlc"), Just("sh"), Just("mh")];
        let flags = prop_oneof![
            Just("sh-fallback"),
            Just("sh-port"),
            Just("mh-fallback,mh-port"),
            Just("flag-1,flag-3"),
        ];
        let mask = prop_oneof![
            Just("255.255.255.0".to_owned()),
            Just("255.0.0.0".to_owned()),
            (0u32..=129).prop_map(|n| n.to_string()),
        ];
        let service_rest = (
            sched,
            opt("-p", number.clone().prop_map(|n| n.to_string()).boxed()),
            opt("-M", mask.boxed()),
            opt("-b", flags.prop_map(str::to_owned).boxed()),
        )
            .prop_map(|(s, p, m, b)| [vec!["-s".to_owned(), s.to_owned()], p, m, b].concat());
        let fwd = prop_oneof![
            Just(vec![]),
            Just(vec!["-g"]),
            Just(vec!["-i"]),
            Just(vec!["-m"])
        ]
        .prop_map(|w| w.into_iter().map(str::to_owned).collect::<Vec<_>>());
        let dest_rest = (
            addr,
            fwd,
            opt("-w", number.clone().prop_map(|n| n.to_string()).boxed()),
            opt("-x", number.clone().prop_map(|n| n.to_string()).boxed()),
            opt("-y", number.prop_map(|n| n.to_string()).boxed()),
        )
            .prop_map(|(a, f, w, x, y)| [vec!["-r".to_owned(), a], f, w, x, y].concat());
        prop_oneof![
            (svc.clone(), service_rest).prop_map(|(s, r)| [vec!["-A".to_owned()], s, r].concat()),
            (svc, dest_rest).prop_map(|(s, r)| [vec!["-a".to_owned()], s, r].concat()),
        ]
    }

    /// What may happen to a line: nothing, or a word dropped, swapped,
    /// replaced or inserted.
    #[derive(Debug, Clone)]
    enum Edit {
        Drop(usize),
        Swap(usize, usize),
        Replace(usize, &'static str),
        Insert(usize, &'static str),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let word = prop::sample::select(VOCABULARY);
        prop_oneof![
            any::<usize>().prop_map(Edit::Drop),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
            (any::<usize>(), word.clone()).prop_map(|(i, w)| Edit::Replace(i, w)),
            (any::<usize>(), word).prop_map(|(i, w)| Edit::Insert(i, w)),
        ]
    }

    /// Restore lines near the two shapes: a shaped line with up to three
    /// edits, or words of the vocabulary, joined by runs of blanks.
    pub(crate) fn lines() -> impl Strategy<Value = Vec<u8>> {
        let words = prop_oneof![
            3 => (shaped(), prop::collection::vec(edit(), 0..3)).prop_map(|(mut w, edits)| {
                for e in edits {
                    let n = w.len();
                    match e {
                        Edit::Drop(i) if n > 0 => {
                            w.remove(i % n);
                        }
                        Edit::Swap(a, b) if n > 0 => w.swap(a % n, b % n),
                        Edit::Replace(i, x) if n > 0 => w[i % n] = x.to_owned(),
                        Edit::Insert(i, x) => w.insert(i % (n + 1), x.to_owned()),
                        _ => {}
                    }
                }
                w
            }),
            1 => prop::collection::vec(prop::sample::select(VOCABULARY), 0..10)
                .prop_map(|w| w.into_iter().map(str::to_owned).collect()),
        ];
        let blank = prop_oneof![
            4 => Just(" "),
            1 => Just("  "),
            1 => Just("\t"),
            1 => Just(" \r"),
            1 => Just("\r \t"),
        ];
        (
            words,
            prop::collection::vec(blank, 12),
            prop::option::of(Just("\r")),
        )
            .prop_map(|(words, blanks, lead)| {
                let mut line = String::from(lead.unwrap_or(""));
                for (i, w) in words.iter().enumerate() {
                    if i > 0 {
                        line.push_str(blanks[i % blanks.len()]);
                    }
                    line.push_str(w);
                }
                line.into_bytes()
            })
    }

    /// A service and its real servers, written by `-S` and by the restore
    /// lines of writes (`ipvsadm_compat::rules::op_line`).
    fn table() -> impl Strategy<Value = (Service, Vec<Destination>)> {
        let id = prop_oneof![
            (any::<[u8; 4]>(), any::<u16>(), any::<bool>()).prop_map(|(a, p, udp)| {
                let addr = SocketAddr::from((a, p));
                if udp {
                    ServiceId::udp(addr)
                } else {
                    ServiceId::tcp(addr)
                }
            }),
            (any::<[u16; 8]>(), any::<u16>())
                .prop_map(|(a, p)| ServiceId::tcp(SocketAddr::from((a, p)))),
            (1u32..=u32::MAX, any::<bool>()).prop_map(|(m, v6)| {
                let family = if v6 {
                    AddressFamily::Inet6
                } else {
                    AddressFamily::Inet
                };
                ServiceId::fwmark(family, m)
            }),
        ];
        let sched = prop_oneof![
            Just("rr"),
            Just("wlc"),
            Just("sh"),
            Just("mh"),
            Just("lblcr")
        ];
        let svc = (
            id,
            sched,
            prop::option::of(1u32..=2_678_400),
            0u32..=3,
            1u8..=128,
        )
            .prop_map(|(id, sched, persistent, sched_flags, prefix)| {
                let mut s = Service::new(id, sched);
                if let Some(t) = persistent {
                    s.flags |= ServiceFlags::PERSISTENT;
                    s.timeout = t;
                    s.netmask = match id.family() {
                        AddressFamily::Inet => {
                            Netmask::V4(Ipv4Addr::from(u32::MAX << (32 - prefix.min(32))))
                        }
                        AddressFamily::Inet6 => Netmask::V6(u32::from(prefix)),
                    };
                }
                s.flags |= ServiceFlags::from_bits_retain(sched_flags << 3);
                s
            });
        let dest = (
            any::<[u8; 4]>(),
            any::<u16>(),
            0u8..3,
            0u32..=i32::MAX as u32,
            any::<(u16, u16)>(),
        )
            .prop_map(|(a, p, fwd, weight, (x, y))| {
                let mut d = Destination::new(SocketAddr::from((a, p)));
                d.forward = [
                    ForwardMethod::Masquerade,
                    ForwardMethod::DirectRoute,
                    ForwardMethod::Local,
                ][usize::from(fwd)];
                d.weight = weight;
                (d.upper_threshold, d.lower_threshold) = (u32::from(x), u32::from(y));
                d
            });
        (svc, prop::collection::vec(dest, 0..4))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Whatever line the fast path reads, the full parser makes the
        /// same write of it: the fast path declines the rest.
        #[test]
        fn a_line_read_fast_is_the_full_parsers_write(line in lines()) {
            if let Some(op) = write(&line) {
                prop_assert_eq!(Some(op), full(&line), "{}", String::from_utf8_lossy(&line));
            }
        }

        /// The lines of a saved table (`-S`) and the restore lines of
        /// writes that 1.31 takes are all read fast, to the full
        /// parser's write.
        #[test]
        fn a_saved_table_is_read_fast((svc, dests) in table()) {
            use crate::format::{fmt, list::service_entry};
            use crate::names::Numeric;
            let saved = service_entry(&svc, &dests, fmt::RULE, &Numeric);
            let mut lines: Vec<String> = saved.lines().map(str::to_owned).collect();
            let id = svc.id;
            lines.push(ipvsadm_compat::rules::op_line(&Op::AddService(svc)));
            for d in dests {
                lines.push(ipvsadm_compat::rules::op_line(&Op::AddDestination(id, d)));
            }
            // Each is read fast exactly when 1.31 takes it (it refuses a
            // port 0 without persistence).
            for line in lines {
                prop_assert_eq!(write(line.as_bytes()), full(line.as_bytes()), "{}", line);
            }
        }
    }
}
