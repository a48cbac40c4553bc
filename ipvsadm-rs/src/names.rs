//! Names for addresses and ports, as ipvsadm prints them without `-n`.
//!
//! Hosts are looked up as glibc's `gethostbyaddr` does for ipvsadm:
//! /etc/hosts and DNS in the order of nsswitch.conf (see
//! [`crate::resolve`]), each address once per run. Ports are looked up in
//! /etc/services the way `getservbyport` does: the first line with that
//! port and protocol.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

use ipvs_netlink::Protocol;

use crate::resolve::{self, DnsConfig, Source};

/// Turns addresses and ports into names.
pub trait Names {
    /// The host name of `addr`, if it has one.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// The service name of `port` for `protocol`, if it has one.
    fn service(&self, port: u16, protocol: Protocol) -> Option<String>;
}

/// The names a listing asks for: none with `-n` (`numeric`), the
/// system's otherwise.
pub fn for_numeric(numeric: bool) -> Box<dyn Names> {
    if numeric {
        Box::new(Numeric)
    } else {
        Box::new(System::new())
    }
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
    hosts: RefCell<Option<Hosts>>,
    cache: RefCell<HashMap<IpAddr, Option<String>>>,
}

/// What host lookups read, once and only when a host is looked up.
struct Hosts {
    sources: Option<Vec<Source>>,
    file: String,
    dns: DnsConfig,
}

impl Hosts {
    fn read() -> Self {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        Hosts {
            sources: resolve::nsswitch_hosts(&read("/etc/nsswitch.conf")),
            file: read("/etc/hosts"),
            dns: DnsConfig::parse(&read("/etc/resolv.conf")),
        }
    }
}

impl System {
    /// Reads /etc/services once; a missing file means no port names.
    pub fn new() -> Self {
        let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
        System {
            services: parse_services(&text),
            hosts: RefCell::new(None),
            cache: RefCell::new(HashMap::new()),
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
        if let Some(known) = self.cache.borrow().get(&addr) {
            return known.clone();
        }
        let name = {
            let mut hosts = self.hosts.borrow_mut();
            let h = hosts.get_or_insert_with(Hosts::read);
            resolve::lookup(h.sources.as_deref(), &h.file, &h.dns, addr)
        };
        self.cache.borrow_mut().insert(addr, name.clone());
        name
    }

    fn service(&self, port: u16, protocol: Protocol) -> Option<String> {
        let proto = proto_name(protocol)?;
        self.services
            .iter()
            .find(|(_, p, pr)| *p == port && pr == proto)
            .map(|(name, _, _)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_file_first_match_wins_and_comments_are_ignored() {
        let text = "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb\nhttp 80/udp\nalt 80/tcp\n";
        let sys = System {
            services: parse_services(text),
            hosts: RefCell::new(None),
            cache: RefCell::new(HashMap::new()),
        };
        assert_eq!(sys.service(80, Protocol::Tcp).as_deref(), Some("http"));
        assert_eq!(sys.service(80, Protocol::Udp).as_deref(), Some("http"));
        assert_eq!(sys.service(80, Protocol::Sctp), None);
        assert_eq!(sys.service(81, Protocol::Tcp), None);
    }
}
