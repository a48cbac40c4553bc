//! `ipvsadm -Lc`: the connection table, read from /proc/net/ip_vs_conn
//! of the caller's network namespace, printed as ipvsadm 1.31 does.

use std::net::{IpAddr, Ipv4Addr};

use ipvs_netlink::Protocol;

use crate::format::{addr_port, fmt, json};
use crate::io::{Flow, Out};
use crate::names::Names;
#[cfg(test)]
use crate::names::Numeric;

const CONN_PROC_FILE: &str = "/proc/net/ip_vs_conn";

/// The header lines.
pub fn header(format: u32) -> String {
    let mut s = String::from("IPVS connection entries\n");
    if format & fmt::PERSISTENTCONN != 0 {
        s.push_str(&format!(
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} {}\n",
            "state", "source", "virtual", "destination", "pe name", "pe_data"
        ));
    } else {
        s.push_str(&format!(
            "pro expire {:<11} {:<18} {:<18} {}\n",
            "state", "source", "virtual", "destination"
        ));
    }
    s
}

/// An address field of the file: IPv6 text, IPv4 text, or the kernel's
/// 8 hex digits of an IPv4 address (as `strtoul(s, 16)` reads them).
fn addr_field(s: &str) -> IpAddr {
    if let Ok(a) = s.parse::<std::net::Ipv6Addr>() {
        return IpAddr::V6(a);
    }
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return IpAddr::V4(a);
    }
    let digits: String = s.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    let v = u64::from_str_radix(&digits, 16).unwrap_or(0) as u32;
    IpAddr::V4(Ipv4Addr::from(v))
}

/// `%hX`: hex digits read into an unsigned short (wrapping).
fn hex_u16(s: &str) -> Option<u16> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    if digits.is_empty() {
        return None;
    }
    let mut v: u16 = 0;
    for c in digits.chars() {
        v = v
            .wrapping_mul(16)
            .wrapping_add(c.to_digit(16).unwrap_or(0) as u16);
    }
    Some(v)
}

/// The fields of one line of the file.
pub struct Fields<'a> {
    proto: &'a str,
    protocol: Protocol,
    client: (IpAddr, u16),
    virt: (IpAddr, u16),
    dest: (IpAddr, u16),
    state: &'a str,
    expires: i64,
    pe: Option<(&'a str, &'a str)>,
}

/// Reads a line as `print_conn` does (`sscanf("%s %s %hX %s %hX %s %hX
/// %s %d %s %s")`); `None` for an empty line.
pub fn fields(line: &str) -> Option<Fields<'_>> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.is_empty() {
        return None;
    }
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let protocol = match get(0) {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        _ => Protocol::Other(0),
    };
    let caddr = addr_field(get(1));
    let vaddr = match (caddr, addr_field(get(3))) {
        // The virtual address is read in the client's family.
        (IpAddr::V6(_), v @ IpAddr::V6(_)) | (IpAddr::V4(_), v @ IpAddr::V4(_)) => v,
        (IpAddr::V6(_), _) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        (IpAddr::V4(_), _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Some(Fields {
        proto: get(0),
        protocol,
        client: (caddr, hex_u16(get(2)).unwrap_or(0)),
        virt: (vaddr, hex_u16(get(4)).unwrap_or(0)),
        dest: (addr_field(get(5)), hex_u16(get(6)).unwrap_or(0)),
        state: get(7),
        expires: get(8).parse().unwrap_or(0),
        pe: (f.len() >= 11).then(|| (get(9), get(10))),
    })
}

/// One row of the file as `print_conn` prints it; `None` for a line
/// without a word, on which 1.31 exits with status 1.
pub fn row(line: &str, format: u32, names: &dyn Names) -> Option<String> {
    let c = fields(line)?;
    let name = |(a, p): (IpAddr, u16)| addr_port(a, p, c.protocol, names);
    let (cname, vname, dname) = (name(c.client), name(c.virt), name(c.dest));
    let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
    let (proto, state) = (c.proto, c.state);
    Some(match c.pe {
        Some((pe_name, pe_data)) if format & fmt::PERSISTENTCONN != 0 => format!(
            "{proto:<3} {expire:<6} {state:<11} {cname:<18} {vname:<18} {dname:<16} {pe_name:<18} {pe_data}\n"
        ),
        _ => format!("{proto:<3} {expire:<6} {state:<11} {cname:<18} {vname:<18} {dname}\n"),
    })
}

/// The connections of the file, for `-c --json`: the library's typed
/// reading ([`ipvs_netlink::conn`]), which refuses a line the kernel
/// would not write (the text rows keep 1.31's `sscanf` reading).
pub fn connections() -> Result<Vec<json::Connection>, String> {
    let text = std::fs::read_to_string(CONN_PROC_FILE)
        .map_err(|e| format!("cannot open file {CONN_PROC_FILE}: {e}"))?;
    connections_of(&text)
}

/// The connections of a text of /proc/net/ip_vs_conn.
pub fn connections_of(text: &str) -> Result<Vec<json::Connection>, String> {
    let conns = ipvs_netlink::conn::parse(text)
        .map_err(|e| format!("unexpected input from {CONN_PROC_FILE}: {e}"))?;
    Ok(conns
        .into_iter()
        .map(|c| {
            let (pe_name, pe_data) = c.persistence.unzip();
            json::Connection {
                protocol: c.protocol.to_string().to_ascii_lowercase(),
                client: (c.client.ip(), c.client.port()).into(),
                virtual_address: (c.virtual_address.ip(), c.virtual_address.port()).into(),
                destination: (c.destination.ip(), c.destination.port()).into(),
                state: c.state,
                expires: c.expires.as_secs(),
                pe_name,
                pe_data,
            }
        })
        .collect())
}

/// The pieces `fgets` with ipvsadm's 256-byte buffer cuts `text` into:
/// each ends after a newline or at 255 bytes, whichever comes first.
pub fn fgets_chunks(text: &[u8]) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let limit = rest.len().min(255);
        let end = rest[..limit]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(limit, |i| i + 1);
        let (chunk, tail) = rest.split_at(end);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// `-Lc`: the header, then every connection. The file is read in
/// `fgets` pieces as 1.31 reads it: a line longer than 254 characters
/// gives several rows, and a piece with nothing but blanks (`sscanf`
/// returns EOF) ends the program with status 1.
pub fn list(format: u32, io: &mut Out) -> Flow {
    let text = match std::fs::read(CONN_PROC_FILE) {
        Ok(t) => t,
        Err(_) => {
            let _ = io
                .err
                .write_all(format!("cannot open file {CONN_PROC_FILE}\n").as_bytes());
            return Flow::Exit(1);
        }
    };
    let names = crate::names::for_numeric(format & fmt::NUMERIC != 0);
    let chunks = fgets_chunks(&text);
    let Some((_, rows)) = chunks.split_first() else {
        let _ = io
            .err
            .write_all(format!("unexpected input from {CONN_PROC_FILE}\n").as_bytes());
        return Flow::Exit(1);
    };
    let _ = io.out.write_all(header(format).as_bytes());
    for chunk in rows {
        let line = String::from_utf8_lossy(chunk);
        match row(&line, format, names.as_ref()) {
            Some(r) => {
                if io.out.write_all(r.as_bytes()).is_err() {
                    return Flow::Exit(0);
                }
            }
            None => return Flow::Exit(1),
        }
    }
    Flow::Return(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_row_from_the_kernels_hex() {
        let line = "TCP  0A000001 9C40 0A616161 0050 0AF40127 0050 ESTABLISHED     899";
        assert_eq!(
            row(line, fmt::NUMERIC, &Numeric).unwrap(),
            "TCP 14:59  ESTABLISHED 10.0.0.1:40000     10.97.97.97:80     10.244.1.39:80\n"
        );
    }

    /// `-c --json` names protocols and addresses as the table's document
    /// does (`"tcp"`, `address` and `port`).
    #[test]
    fn json_connections_use_the_tables_convention() {
        let text =
            "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n\
                    TCP  0A000001 9C40 0A616161 0050 0AF40127 0050 ESTABLISHED     899\n";
        let v = serde_json::to_value(connections_of(text).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{
                "protocol": "tcp",
                "client": {"address": "10.0.0.1", "port": 40000},
                "virtual_address": {"address": "10.97.97.97", "port": 80},
                "destination": {"address": "10.244.1.39", "port": 80},
                "state": "ESTABLISHED",
                "expires": 899,
                "pe_name": null,
                "pe_data": null,
            }])
        );
    }

    #[test]
    fn long_lines_are_cut_as_fgets_cuts_them() {
        let long = format!("{}\nnext\n", "x".repeat(300));
        let chunks = fgets_chunks(long.as_bytes());
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(lens, [255, 46, 5]);
        // A line of exactly 255 bytes leaves its newline as a piece.
        let exact = format!("{}\n", "y".repeat(255));
        assert_eq!(fgets_chunks(exact.as_bytes())[1], b"\n");
        assert_eq!(row("\n", 0, &Numeric), None);
        assert_eq!(fgets_chunks(b"").len(), 0);
    }

    #[test]
    fn persistent_row_with_pe_data() {
        let line = "UDP  0A000001 13C4 0A000002 13C4 0A000003 13C4 UDP             179 sip abc";
        let r = row(line, fmt::NUMERIC | fmt::PERSISTENTCONN, &Numeric).unwrap();
        assert_eq!(
            r,
            "UDP 02:59  UDP         10.0.0.1:5060      10.0.0.2:5060      10.0.0.3:5060    sip                abc\n"
        );
    }
}
