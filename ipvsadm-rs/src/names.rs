//! Names for addresses and ports, as ipvsadm prints them without `-n`.
//!
//! Hosts go through the C library's resolver (`getnameinfo` with
//! `NI_NAMEREQD`: /etc/hosts, then DNS, as nsswitch says), the same source
//! as ipvsadm's `gethostbyaddr`. Ports are looked up in /etc/services the
//! way `getservbyport` does: the first line with that port and protocol.

use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};

use ipvs_netlink::Protocol;
use nix::sys::socket::{SockaddrIn, SockaddrIn6, SockaddrLike};

/// Turns addresses and ports into names.
pub trait Names {
    /// The host name of `addr`, if it has one.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// The service name of `port` for `protocol`, if it has one.
    fn service(&self, port: u16, protocol: Protocol) -> Option<String>;
}

/// No names at all (`-n`).
pub struct Numeric;

impl Names for Numeric {
    fn host(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
}

/// Names from the system: the resolver for hosts, /etc/services for ports.
pub struct System {
    services: Vec<(String, u16, String)>,
}

impl System {
    /// Reads /etc/services once; a missing file means no port names.
    pub fn new() -> Self {
        let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
        System {
            services: parse_services(&text),
        }
    }
}

/// The (name, port, protocol) entries of an /etc/services text.
pub fn parse_services(text: &str) -> Vec<(String, u16, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let (port, proto) = words.next()?.split_once('/')?;
            Some((name.to_owned(), port.parse().ok()?, proto.to_owned()))
        })
        .collect()
}

fn proto_name(protocol: Protocol) -> Option<&'static str> {
    match protocol {
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Sctp => Some("sctp"),
        _ => None,
    }
}

impl Names for System {
    fn host(&self, addr: IpAddr) -> Option<String> {
        match SocketAddr::new(addr, 0) {
            SocketAddr::V4(a) => name_of(&SockaddrIn::from(a)),
            SocketAddr::V6(a) => name_of(&SockaddrIn6::from(a)),
        }
    }

    fn service(&self, port: u16, protocol: Protocol) -> Option<String> {
        let proto = proto_name(protocol)?;
        self.services
            .iter()
            .find(|(_, p, pr)| *p == port && pr == proto)
            .map(|(name, _, _)| name.clone())
    }
}

/// The host name of a socket address through `getnameinfo`.
fn name_of(sa: &impl SockaddrLike) -> Option<String> {
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `sa` is a valid sockaddr of `sa.len()` bytes; `host` is a
    // writable buffer of the length passed; no service buffer is asked
    // for (null with length 0). getnameinfo NUL-terminates on success.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into
    // `host`, which lives until the end of this function.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_file_first_match_wins_and_comments_are_ignored() {
        let text = "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb\nhttp 80/udp\nalt 80/tcp\n";
        let sys = System {
            services: parse_services(text),
        };
        assert_eq!(sys.service(80, Protocol::Tcp).as_deref(), Some("http"));
        assert_eq!(sys.service(80, Protocol::Udp).as_deref(), Some("http"));
        assert_eq!(sys.service(80, Protocol::Sctp), None);
        assert_eq!(sys.service(81, Protocol::Tcp), None);
    }
}
