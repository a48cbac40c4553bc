//! Reverse lookups of host addresses, as glibc's `gethostbyaddr` answers
//! them for ipvsadm, without glibc.
//!
//! The static musl build cannot use glibc's resolver, and musl's own
//! waits its full timeout for every address when no DNS server answers
//! (its UDP sockets are not connected, so an ICMP "port unreachable" is
//! never seen). This module does what glibc does for the common setups:
//! - the sources and their order come from the `hosts:` line of
//!   /etc/nsswitch.conf: `files` and `dns` are used, other sources and
//!   bracketed actions are skipped. Without that line, glibc's default
//!   `dns [!UNAVAIL=return] files` applies: /etc/hosts is read only when
//!   no name server could be reached;
//! - `files`: the first line of /etc/hosts whose address equals the one
//!   looked up gives its first name (the canonical name). As in glibc, an
//!   IPv4 lookup also matches lines with an IPv4-mapped IPv6 address, and
//!   `::1` stands for 127.0.0.1;
//! - `dns`: a PTR query (`in-addr.arpa`, `ip6.arpa`) over a connected
//!   UDP socket to each `nameserver` of /etc/resolv.conf in turn (none
//!   means 127.0.0.1), for `attempts` rounds with `timeout` seconds each
//!   (`options timeout:N attempts:N`, default 5 and 2, as glibc's). A
//!   refused socket (ICMP unreachable) moves to the next server at once,
//!   as glibc's resolver does. The first PTR record of the answer is the
//!   name. Truncated answers are not retried over TCP.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A source of host names (`hosts:` in nsswitch.conf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// /etc/hosts.
    Files,
    /// DNS, configured by /etc/resolv.conf.
    Dns,
}

/// The sources of the `hosts:` line of an nsswitch.conf text, in order;
/// `None` when there is no such line (glibc's default then applies).
pub fn nsswitch_hosts(text: &str) -> Option<Vec<Source>> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let Some(rest) = line.trim_start().strip_prefix("hosts:") else {
            continue;
        };
        let mut sources = Vec::new();
        let mut in_action = false;
        for word in rest.split_whitespace() {
            if word.starts_with('[') {
                in_action = true;
            }
            if in_action {
                in_action = !word.ends_with(']');
                continue;
            }
            match word {
                "files" => sources.push(Source::Files),
                "dns" => sources.push(Source::Dns),
                _ => {}
            }
        }
        return Some(sources);
    }
    None
}

/// The canonical name /etc/hosts (as `text`) gives `addr`, as glibc's
/// files backend finds it: the first matching line wins.
pub fn hosts_lookup(text: &str, addr: IpAddr) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(field), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let matches = match addr {
            IpAddr::V4(a) => match field.parse::<Ipv4Addr>() {
                Ok(v4) => v4 == a,
                Err(_) => match field.parse::<Ipv6Addr>() {
                    Ok(v6) if v6 == Ipv6Addr::LOCALHOST => a == Ipv4Addr::LOCALHOST,
                    Ok(v6) => v6.to_ipv4_mapped() == Some(a),
                    Err(_) => false,
                },
            },
            IpAddr::V6(a) => field.parse::<Ipv6Addr>().is_ok_and(|v6| v6 == a),
        };
        if matches {
            return Some(name.to_owned());
        }
    }
    None
}

/// The name servers and retry policy of a resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Servers in the order to ask them (at most 3, as glibc's MAXNS).
    pub servers: Vec<SocketAddr>,
    /// Seconds to wait for each answer.
    pub timeout: u64,
    /// Rounds over all servers.
    pub attempts: u32,
}

impl DnsConfig {
    /// Reads a resolv.conf text: `nameserver` lines and the `timeout:`
    /// and `attempts:` options (glibc caps them at 30 and 5).
    pub fn parse(text: &str) -> Self {
        let mut conf = DnsConfig {
            servers: Vec::new(),
            timeout: 5,
            attempts: 2,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    let addr = words.next().and_then(|w| w.parse::<IpAddr>().ok());
                    if let (Some(addr), true) = (addr, conf.servers.len() < 3) {
                        conf.servers.push(SocketAddr::new(addr, 53));
                    }
                }
                Some("options") => {
                    for opt in words {
                        if let Some(v) = opt.strip_prefix("timeout:") {
                            conf.timeout = v.parse::<u64>().map_or(conf.timeout, |v| v.min(30));
                        } else if let Some(v) = opt.strip_prefix("attempts:") {
                            conf.attempts = v.parse::<u32>().map_or(conf.attempts, |v| v.min(5));
                        }
                    }
                }
                _ => {}
            }
        }
        if conf.servers.is_empty() {
            conf.servers
                .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
        }
        conf.timeout = conf.timeout.max(1);
        conf.attempts = conf.attempts.max(1);
        conf
    }
}

/// What a DNS lookup gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dns {
    /// The first PTR record's name.
    Found(String),
    /// A server answered without a name (NXDOMAIN, no PTR record, an
    /// error code).
    NotFound,
    /// No server answered; the last error says why (for instance
    /// `ConnectionRefused` when nothing listens on port 53).
    Unreachable(io::ErrorKind),
}

/// The PTR owner name of `addr`.
pub fn ptr_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::new();
            for byte in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// A standard recursive PTR query for `name` with identifier `id`.
pub fn ptr_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 12, 0, 1]);
    q
}

/// Reads a (possibly compressed) domain name at `pos`; returns it and
/// the offset just after it in the record.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        match len {
            0 => {
                let name = labels.join(".");
                return Some((name, end.unwrap_or(pos + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let target = ((l & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
                end.get_or_insert(pos + 2);
                pos = target;
            }
            l if l < 64 => {
                let label = msg.get(pos + 1..pos + 1 + l)?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                pos += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

/// The answer to query `id`: `None` when `msg` is not an answer to it
/// (to be ignored), else what it says.
pub fn parse_answer(msg: &[u8], id: u16) -> Option<Dns> {
    if msg.len() < 12 || msg[0..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return None;
    }
    if msg[3] & 0x0f != 0 {
        return Some(Dns::NotFound);
    }
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let (qd, an) = (count(4), count(6));
    let mut pos = 12;
    for _ in 0..qd {
        let Some((_, next)) = read_name(msg, pos) else {
            return Some(Dns::NotFound);
        };
        pos = next + 4;
    }
    for _ in 0..an {
        let Some((_, next)) = read_name(msg, pos) else {
            break;
        };
        let Some(fixed) = msg.get(next..next + 10) else {
            break;
        };
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let rdata = next + 10;
        if rtype == 12 {
            if let Some((name, _)) = read_name(msg, rdata) {
                return Some(Dns::Found(name));
            }
        }
        pos = rdata + rdlen;
    }
    Some(Dns::NotFound)
}

fn query_id() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish() as u16
}

/// Asks one server once; `Err` when it cannot be reached or is silent.
fn ask(server: SocketAddr, query: &[u8], id: u16, timeout: Duration) -> io::Result<Dns> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(server)?;
    sock.send(query)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        sock.set_read_timeout(Some(left))?;
        let n = sock.recv(&mut buf)?;
        if let Some(answer) = parse_answer(&buf[..n], id) {
            return Ok(answer);
        }
    }
}

/// The name DNS gives `addr`.
pub fn dns_lookup(conf: &DnsConfig, addr: IpAddr) -> Dns {
    let id = query_id();
    let query = ptr_query(id, &ptr_name(addr));
    let timeout = Duration::from_secs(conf.timeout);
    let mut dead = vec![false; conf.servers.len()];
    let mut last = io::ErrorKind::NotFound;
    for _ in 0..conf.attempts {
        for (i, server) in conf.servers.iter().enumerate() {
            if dead[i] {
                continue;
            }
            match ask(*server, &query, id, timeout) {
                Ok(answer) => return answer,
                Err(e) => {
                    last = match e.kind() {
                        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut,
                        kind => kind,
                    };
                    // Refused or unroutable: this server will not answer.
                    dead[i] = last != io::ErrorKind::TimedOut;
                }
            }
        }
        if dead.iter().all(|d| *d) {
            break;
        }
    }
    Dns::Unreachable(last)
}

/// The host name of `addr` from `sources` in order; `hosts` is the text
/// of /etc/hosts. `None` in `sources` means glibc's default
/// (`dns [!UNAVAIL=return] files`).
pub fn lookup(
    sources: Option<&[Source]>,
    hosts: &str,
    dns: &DnsConfig,
    addr: IpAddr,
) -> Option<String> {
    let Some(sources) = sources else {
        return match dns_lookup(dns, addr) {
            Dns::Found(name) => Some(name),
            Dns::NotFound => None,
            Dns::Unreachable(_) => hosts_lookup(hosts, addr),
        };
    };
    for source in sources {
        let found = match source {
            Source::Files => hosts_lookup(hosts, addr),
            Source::Dns => match dns_lookup(dns, addr) {
                Dns::Found(name) => Some(name),
                _ => None,
            },
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The answer a DNS server gives to `question` (a query of one PTR
/// question, up to the question's end): `name` as the one answer,
/// compressed against the question, or NXDOMAIN when `None`. For the fake
/// servers of the tests, which check [`parse_answer`] against the wire
/// format rather than against itself.
pub fn ptr_answer(question: &[u8], name: Option<&str>) -> Vec<u8> {
    let mut reply = question.to_vec();
    if reply.len() < 12 {
        return reply;
    }
    reply[2] |= 0x80; // a response
    reply[3] |= 0x80; // recursion available
    match name {
        Some(name) => {
            reply[7] = 1;
            reply.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 60]);
            let mut rdata = Vec::new();
            for label in name.split('.') {
                rdata.push(label.len() as u8);
                rdata.extend_from_slice(label.as_bytes());
            }
            rdata.push(0);
            reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            reply.extend_from_slice(&rdata);
        }
        None => reply[3] |= 3,
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\
        # 10.0.0.1 commented\n10.97.97.97 vip.example vip # the VIP\n\
        10.97.97.97 second.example\n::ffff:10.0.0.9 mapped.example\n\
        2001:db8::1 six.example\n10.0.0.7\n";

    #[test]
    fn hosts_first_matching_line_gives_its_first_name() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            hosts_lookup(HOSTS, ip("10.97.97.97")).as_deref(),
            Some("vip.example")
        );
        assert_eq!(
            hosts_lookup(HOSTS, ip("127.0.0.1")).as_deref(),
            Some("localhost")
        );
        assert_eq!(hosts_lookup(HOSTS, ip("::1")).as_deref(), Some("localhost"));
        assert_eq!(
            hosts_lookup(HOSTS, ip("10.0.0.9")).as_deref(),
            Some("mapped.example")
        );
        assert_eq!(
            hosts_lookup(HOSTS, ip("2001:db8::1")).as_deref(),
            Some("six.example")
        );
        assert_eq!(hosts_lookup(HOSTS, ip("10.0.0.1")), None);
        assert_eq!(hosts_lookup(HOSTS, ip("10.0.0.7")), None);
        // An IPv4 line never answers an IPv6 lookup.
        assert_eq!(hosts_lookup(HOSTS, ip("::ffff:10.97.97.97")), None);
    }

    #[test]
    fn nsswitch_sources_skip_actions_and_unknown_services() {
        let text = "passwd: files\nhosts: files mdns4_minimal [NOTFOUND=return] dns myhostname\n";
        assert_eq!(nsswitch_hosts(text), Some(vec![Source::Files, Source::Dns]));
        assert_eq!(nsswitch_hosts("hosts: files\n"), Some(vec![Source::Files]));
        assert_eq!(nsswitch_hosts("passwd: files\n"), None);
    }

    #[test]
    fn resolv_conf_servers_and_options() {
        let conf = DnsConfig::parse(
            "search example\nnameserver 192.0.2.1\nnameserver ::1\noptions timeout:1 attempts:9\n",
        );
        assert_eq!(
            conf.servers,
            vec!["192.0.2.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!((conf.timeout, conf.attempts), (1, 5));
        let empty = DnsConfig::parse("");
        assert_eq!(empty.servers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!((empty.timeout, empty.attempts), (5, 2));
    }

    #[test]
    fn ptr_names_of_both_families() {
        assert_eq!(
            ptr_name("10.97.97.1".parse().unwrap()),
            "1.97.97.10.in-addr.arpa"
        );
        let v6 = ptr_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
    }

    /// A one-query DNS server on 127.0.0.1 that answers with `name`
    /// (compressed against the question) or NXDOMAIN.
    fn fake_server(name: Option<&'static str>) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, peer) = sock.recv_from(&mut buf).unwrap();
            let query = buf[..n].to_vec();
            sock.send_to(&ptr_answer(&query, name), peer).unwrap();
            query
        });
        (addr, t)
    }

    #[test]
    fn dns_answer_gives_the_ptr_name() {
        let (server, t) = fake_server(Some("real1.example.org"));
        let conf = DnsConfig {
            servers: vec![server],
            timeout: 30,
            attempts: 1,
        };
        let addr: IpAddr = "10.244.1.39".parse().unwrap();
        assert_eq!(
            dns_lookup(&conf, addr),
            Dns::Found("real1.example.org".into())
        );
        let query = t.join().unwrap();
        assert_eq!(
            &query[12..],
            &ptr_query(0, "39.1.244.10.in-addr.arpa")[12..]
        );
    }

    #[test]
    fn dns_nxdomain_is_not_found_and_hosts_are_not_read_by_default() {
        let (server, t) = fake_server(None);
        let conf = DnsConfig {
            servers: vec![server],
            timeout: 30,
            attempts: 1,
        };
        let addr: IpAddr = "10.97.97.97".parse().unwrap();
        assert_eq!(lookup(None, HOSTS, &conf, addr), None);
        t.join().unwrap();
    }

    /// Nothing listens on the server's port: the refusal ends the lookup
    /// (it does not wait out the 30 s × 5 configured), and files answer.
    #[test]
    fn a_refusing_server_is_unreachable_and_files_answer() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = closed.local_addr().unwrap();
        drop(closed);
        let conf = DnsConfig {
            servers: vec![server],
            timeout: 30,
            attempts: 5,
        };
        let vip: IpAddr = "10.97.97.97".parse().unwrap();
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            dns_lookup(&conf, other),
            Dns::Unreachable(io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(
            lookup(None, HOSTS, &conf, vip).as_deref(),
            Some("vip.example")
        );
        let files_then_dns = [Source::Files, Source::Dns];
        assert_eq!(lookup(Some(&files_then_dns), HOSTS, &conf, other), None);
        assert_eq!(
            lookup(Some(&[Source::Dns, Source::Files]), HOSTS, &conf, vip).as_deref(),
            Some("vip.example")
        );
    }

    #[test]
    fn answers_to_other_queries_are_ignored() {
        let mut reply = ptr_query(7, "1.0.0.10.in-addr.arpa");
        assert_eq!(parse_answer(&reply, 7), None, "a query is not an answer");
        reply[2] |= 0x80;
        assert_eq!(parse_answer(&reply, 8), None);
        assert_eq!(parse_answer(&reply, 7), Some(Dns::NotFound));
    }
}
