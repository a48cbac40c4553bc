//! The connection table: `/proc/net/ip_vs_conn`, typed.
//!
//! IPVS has no netlink command for its connections; the kernel lists them
//! only in `/proc/net/ip_vs_conn` of each network namespace
//! (`ip_vs_conn_seq_show` in `net/netfilter/ipvs/ip_vs_conn.c`), one line
//! each:
//!
//! ```text
//! Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//! TCP 0A000001 9C40 0A616161 0050 0AF40127 1F90 ESTABLISHED     899
//! ```
//!
//! IPv4 addresses are 8 hex digits, IPv6 ones `%pI6` text (the real
//! server's in its own family, which may differ from the client's); ports
//! are 4 hex digits; the state is the protocol's state name; `Expires` is
//! seconds; a persistence engine (`sip`) adds its name and data.
//!
//! ```no_run
//! use ipvs_netlink::conn;
//!
//! for c in conn::connections()? {
//!     println!("{} {} -> {} -> {} {} {:?}",
//!         c.protocol, c.client, c.virtual_address, c.destination, c.state, c.expires);
//! }
//! // The connections of another network namespace.
//! let blue = conn::connections_in_netns("/run/netns/blue")?;
//! # let _ = blue;
//! # Ok::<(), ipvs_netlink::Error>(())
//! ```

use std::fmt;
#[cfg(test)]
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::Protocol;

/// Where the kernel lists the connections of the reader's namespace.
pub const PROC_FILE: &str = "/proc/net/ip_vs_conn";

/// One connection of the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Its protocol.
    pub protocol: Protocol,
    /// The client's address and port.
    pub client: SocketAddr,
    /// The virtual service's address and port it reached.
    pub virtual_address: SocketAddr,
    /// The real server's address and port it was sent to.
    pub destination: SocketAddr,
    /// The protocol's state name (`ESTABLISHED`, `TIME_WAIT`, `UDP`, ...).
    pub state: String,
    /// The time until the entry expires, in whole seconds.
    pub expires: Duration,
    /// The persistence engine's name and data, for a connection one keeps
    /// (`sip` and the Call-ID).
    pub persistence: Option<(String, String)>,
}

/// A line of `/proc/net/ip_vs_conn` that is not one the kernel writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParseError {
    /// What was wrong.
    pub what: String,
    /// The line.
    pub line: String,
}

impl fmt::Display for ConnParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a connection line ({}): {:?}", self.what, self.line)
    }
}

impl std::error::Error for ConnParseError {}

/// A protocol as `ip_vs_proto_name` names it.
fn protocol(name: &str) -> Option<Protocol> {
    Some(match name {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        "IP" => Protocol::Other(0),
        "ICMP" => Protocol::Other(1),
        "ICMPv6" => Protocol::Other(58),
        other => Protocol::Other(other.strip_prefix("IP_")?.parse().ok()?),
    })
}

/// An address: 8 hex digits (IPv4) or IPv6 text.
fn address(field: &str) -> Option<IpAddr> {
    if field.len() == 8 && field.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u32::from_str_radix(field, 16)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v)));
    }
    field.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// A port: 4 hex digits.
fn port(field: &str) -> Option<u16> {
    if field.len() != 4 {
        return None;
    }
    u16::from_str_radix(field, 16).ok()
}

impl FromStr for Connection {
    type Err = ConnParseError;

    /// One line of the file (not its header), with or without its newline.
    fn from_str(line: &str) -> std::result::Result<Self, ConnParseError> {
        let err = |what: &str| ConnParseError {
            what: what.to_owned(),
            line: line.to_owned(),
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 9 && f.len() != 11 {
            return Err(err("9 or 11 fields"));
        }
        let at = |a: &str, p: &str, what: &str| -> std::result::Result<SocketAddr, _> {
            let addr = address(a).ok_or_else(|| err(&format!("{what} address")))?;
            let port = port(p).ok_or_else(|| err(&format!("{what} port")))?;
            Ok(SocketAddr::new(addr, port))
        };
        Ok(Connection {
            protocol: protocol(f[0]).ok_or_else(|| err("protocol"))?,
            client: at(f[1], f[2], "client")?,
            virtual_address: at(f[3], f[4], "virtual")?,
            destination: at(f[5], f[6], "destination")?,
            state: f[7].to_owned(),
            expires: Duration::from_secs(f[8].parse().map_err(|_| err("expires"))?),
            persistence: (f.len() == 11).then(|| (f[9].to_owned(), f[10].to_owned())),
        })
    }
}

/// Reads the text of `/proc/net/ip_vs_conn`: its header, then one
/// [`Connection`] per line.
pub fn parse(text: &str) -> std::result::Result<Vec<Connection>, ConnParseError> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.starts_with("Pro FromIP") => {}
        other => {
            return Err(ConnParseError {
                what: "the header".into(),
                line: other.unwrap_or("").to_owned(),
            })
        }
    }
    lines.map(str::parse).collect()
}

fn read(path: &Path) -> Result<Vec<Connection>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        op: crate::Operation::ReadConnections,
        source,
    })?;
    parse(&text).map_err(|e| Error::Decode {
        op: crate::Operation::ReadConnections,
        message: e.to_string(),
    })
}

/// The connections of the calling thread's network namespace (read from
/// `/proc/thread-self/net/ip_vs_conn`: `/proc/net` follows the process's
/// first thread, which may be elsewhere).
///
/// Errors: [`Error::Io`] when the file cannot be read (`NotFound`: IPVS
/// is not loaded), [`Error::Decode`] for a line the kernel would not
/// write.
pub fn connections() -> Result<Vec<Connection>> {
    read(Path::new(THREAD_FILE))
}

/// [`PROC_FILE`] as the calling thread sees it.
const THREAD_FILE: &str = "/proc/thread-self/net/ip_vs_conn";

/// The connections of the network namespace at `path` (a file such as
/// `/run/netns/NAME` or `/proc/PID/ns/net`), read on a short-lived thread
/// that enters it, as [`crate::Handle::in_netns`] opens its socket: the
/// caller's threads never change namespace.
///
/// Errors: [`Error::Namespace`] when the namespace cannot be entered
/// (entering needs `CAP_SYS_ADMIN`), then those of [`connections`].
pub fn connections_in_netns(path: impl AsRef<Path>) -> Result<Vec<Connection>> {
    crate::netns::on_thread_in(path.as_ref(), connections)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n";

    #[test]
    fn an_ipv4_line_as_the_kernel_writes_it() {
        let c: Connection = "TCP 0A000001 9C40 0A616161 0050 0AF40127 1F90 ESTABLISHED     899"
            .parse()
            .unwrap();
        assert_eq!(c.protocol, Protocol::Tcp);
        assert_eq!(c.client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(c.virtual_address, "10.97.97.97:80".parse().unwrap());
        assert_eq!(c.destination, "10.244.1.39:8080".parse().unwrap());
        assert_eq!(c.state, "ESTABLISHED");
        assert_eq!(c.expires, Duration::from_secs(899));
        assert_eq!(c.persistence, None);
    }

    #[test]
    fn ipv6_and_a_mixed_family_real_server() {
        // %pI6 writes every group in full; the real server of an IPv6
        // service may be IPv4 (its own family, in hex).
        let text = format!(
            "{HEADER}TCP 2001:0db8:0000:0000:0000:0000:0000:0001 C350 2001:0db8:0000:0000:0000:0000:0000:0064 0050 0A000005 0050 SYN_RECV         59\n\
             UDP 0A000001 13C4 0A000002 13C4 0A000003 13C4 UDP             179 sip abc@host\n"
        );
        let conns = parse(&text).unwrap();
        assert_eq!(conns[0].client, "[2001:db8::1]:50000".parse().unwrap());
        assert_eq!(
            conns[0].virtual_address,
            "[2001:db8::64]:80".parse().unwrap()
        );
        assert_eq!(conns[0].destination, "10.0.0.5:80".parse().unwrap());
        assert_eq!(
            conns[1].persistence,
            Some(("sip".to_owned(), "abc@host".to_owned()))
        );
    }

    #[test]
    fn protocols_as_ip_vs_proto_name_writes_them() {
        for (name, want) in [
            ("SCTP", Protocol::Sctp),
            ("IP", Protocol::Other(0)),
            ("ICMP", Protocol::Other(1)),
            ("ICMPv6", Protocol::Other(58)),
            ("IP_47", Protocol::Other(47)),
        ] {
            let line = format!("{name} 0A000001 0000 0A000002 0000 0A000003 0000 NONE 1");
            assert_eq!(line.parse::<Connection>().unwrap().protocol, want, "{name}");
        }
    }

    #[test]
    fn lines_the_kernel_never_writes_are_refused() {
        for line in [
            "",
            "TCP 0A000001 9C40",
            "XYZ 0A000001 9C40 0A616161 0050 0AF40127 1F90 ESTABLISHED 1",
            "TCP 0A00001 9C40 0A616161 0050 0AF40127 1F90 ESTABLISHED 1",
            "TCP 0A000001 9C4 0A616161 0050 0AF40127 1F90 ESTABLISHED 1",
            "TCP 0A000001 9C40 0A616161 0050 0AF40127 1F90 ESTABLISHED -1",
            "TCP 0A000001 9C40 0A616161 0050 0AF40127 1F90 ESTABLISHED 1 sip",
        ] {
            let e = line.parse::<Connection>().unwrap_err();
            assert_eq!(e.line, line);
        }
        assert!(parse("TCP 0A000001 9C40\n").is_err());
        assert_eq!(parse(HEADER).unwrap(), vec![]);
    }

    #[test]
    fn a_missing_namespace_is_a_namespace_error() {
        match connections_in_netns("/nonexistent/ns") {
            Err(Error::Namespace { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
    }
}
