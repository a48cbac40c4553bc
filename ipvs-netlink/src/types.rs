//! Small value types shared by services and destinations.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::DecodeError;

/// `AF_INET` as the kernel numbers it.
pub const AF_INET: u16 = libc::AF_INET as u16;
/// `AF_INET6` as the kernel numbers it.
pub const AF_INET6: u16 = libc::AF_INET6 as u16;

/// The address family of a service or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    /// IPv4 (`AF_INET`).
    Inet,
    /// IPv6 (`AF_INET6`).
    Inet6,
}

impl AddressFamily {
    /// The kernel's number for the family.
    pub fn to_raw(self) -> u16 {
        match self {
            AddressFamily::Inet => AF_INET,
            AddressFamily::Inet6 => AF_INET6,
        }
    }

    /// The family of a kernel number; IPVS knows no other two.
    pub fn from_raw(raw: u16) -> Result<Self, DecodeError> {
        match raw {
            AF_INET => Ok(AddressFamily::Inet),
            AF_INET6 => Ok(AddressFamily::Inet6),
            other => Err(format!("unknown address family {other}").into()),
        }
    }

    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }
}

/// The IP protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
    /// Any other protocol number the kernel reports.
    Other(u16),
}

impl Protocol {
    /// The protocol number.
    pub fn to_raw(self) -> u16 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u16,
            Protocol::Udp => libc::IPPROTO_UDP as u16,
            Protocol::Sctp => libc::IPPROTO_SCTP as u16,
            Protocol::Other(n) => n,
        }
    }

    /// The protocol of a number.
    pub fn from_raw(raw: u16) -> Self {
        match i32::from(raw) {
            libc::IPPROTO_TCP => Protocol::Tcp,
            libc::IPPROTO_UDP => Protocol::Udp,
            libc::IPPROTO_SCTP => Protocol::Sctp,
            _ => Protocol::Other(raw),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("TCP"),
            Protocol::Udp => f.write_str("UDP"),
            Protocol::Sctp => f.write_str("SCTP"),
            Protocol::Other(n) => write!(f, "proto-{n}"),
        }
    }
}

/// An address as IPVS takes it: IPv4 in the first four of the 16 bytes
/// of `union nf_inet_addr`.
pub(crate) fn addr_bytes(addr: &IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
    }
    out
}

/// Reads an address of `family` from its wire bytes.
pub(crate) fn addr_from_wire(
    bytes: &[u8],
    family: AddressFamily,
    what: &str,
) -> Result<IpAddr, DecodeError> {
    match family {
        AddressFamily::Inet => match bytes.get(..4) {
            Some(b) => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            None => Err(format!("{what}: IPv4 address needs 4 bytes, got {}", bytes.len()).into()),
        },
        AddressFamily::Inet6 => match <[u8; 16]>::try_from(bytes) {
            Ok(b) => Ok(IpAddr::V6(Ipv6Addr::from(b))),
            Err(_) => {
                Err(format!("{what}: IPv6 address needs 16 bytes, got {}", bytes.len()).into())
            }
        },
    }
}

/// A [`crate::ServiceId`], [`crate::ForwardMethod`] or
/// [`crate::ServiceFlags`] that could not be read from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    what: &'static str,
    input: String,
    expected: &'static str,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, input: &str, expected: &'static str) -> Self {
        ParseError {
            what,
            input: input.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: expected {}",
            self.what, self.input, self.expected
        )
    }
}

impl std::error::Error for ParseError {}

impl std::str::FromStr for Protocol {
    type Err = ParseError;

    /// `TCP`, `UDP`, `SCTP` (any case) or `proto-N`, as [`Protocol`]'s
    /// `Display` writes them.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::new("protocol", s, "TCP, UDP, SCTP or proto-N");
        Ok(match s.to_ascii_uppercase().as_str() {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => {
                let n = other.strip_prefix("PROTO-").ok_or_else(err)?;
                Protocol::from_raw(n.parse().map_err(|_| err())?)
            }
        })
    }
}
