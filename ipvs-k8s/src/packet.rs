//! The packet path around IPVS, planned from the [`Model`](crate::model):
//! what kube-proxy's IPVS mode keeps in iptables and ipset, as one
//! nftables table of our own (`inet ipvs-rs`) whose rules never change
//! after the start and whose sets and verdict maps hold the Services.
//! Pure: this module plans and spells; [`crate::node::nft`] writes.
//!
//! What the rules do, as kube-proxy's IPVS mode:
//! - masquerade (mark bit `0x4000`, fully randomised source ports) NodePort,
//!   external-IP and load-balancer traffic unless
//!   `externalTrafficPolicy: Local`; ClusterIP traffic from outside
//!   `--cluster-cidr` (or all of it with `--masquerade-all`); hairpin (an
//!   endpoint reaching itself through its Service); the node's own
//!   connections to a Service address (the kernel gives them the virtual
//!   address as source);
//! - `loadBalancerSourceRanges`: traffic to a load-balancer IP from
//!   elsewhere is dropped, from outside and from the node itself (whose
//!   connections come from the load-balancer IP: allowed when a range
//!   holds a node address, kube-proxy's `allowFromNode`);
//! - the IPVS filter: a new connection to an address on the dummy
//!   interface at a port no Service serves is rejected, so the node's own
//!   daemons are not reachable on Service addresses (kubernetes#72236);
//! - `healthCheckNodePort`s accepted;
//! - in-cluster traffic to the load-balancer and external IPs and the
//!   NodePort of an `externalTrafficPolicy: Local` Service port (from `--cluster-cidr`
//!   in prerouting, from the node itself in output) given the port's
//!   firewall mark (maps `fwmarks-v4`/`-v6`), whose IPVS firewall-mark
//!   service holds every ready endpoint
//!   ([`crate::mapping::assign_fwmarks`]), as kube-proxy's nftables mode
//!   short-circuits it to the cluster endpoints; the node's (and with
//!   `--masquerade-all` every) such connection masqueraded in
//!   postrouting by its mark being in `--fwmark-range`.
//! - with `--localhost-nodeports` (off by default), `127.0.0.1:NodePort`
//!   of every IPv4 NodePort, as kube-proxy's iptables mode serves it: a
//!   DNAT outside IPVS on the nat output hook to an endpoint chosen at
//!   random, masqueraded (IPVS cannot serve it: it drops a loopback
//!   source bound for a real server that is not local), and kube-proxy's
//!   drop of packets from elsewhere to 127.0.0.0/8 (CVE-2020-8558) early
//!   in prerouting. See [`LOCALHOST_MAX_ENDPOINTS`].
//!
//! The elements are typed ([`Key`], [`Value`]: addresses, protocols,
//! ports, ranges, marks, chains), encoded straight to nfnetlink's bytes
//! by [`crate::node::nft::netlink`]; their `Display` is nft's syntax, for
//! `nft -f` ([`Transaction::text`], the tests' second opinion). A run
//! keeps a [`Table`]: each Service port's elements, spelled anew only
//! when the port changed. The first write of a run replaces the whole
//! table in one transaction; later ones add and delete the elements the
//! changed ports moved, so a sync costs what changed, not what exists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::mapping::FwmarkRange;
use crate::model::{Cidr, Protocol, ServicePort};

/// The table's family and name: `inet` serves IPv4 and IPv6 at once.
pub const TABLE: &str = "ipvs-rs";
/// The table's family.
pub const FAMILY: &str = "inet";
/// The packet mark bit that asks for masquerading (kube-proxy's
/// `--iptables-masquerade-bit` 14): [`crate::model::MASQ_MARK`].
pub const MASQ_MARK: u32 = crate::model::MASQ_MARK;

/// The options of the packet path (kube-proxy's flags of the same names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Write no rules at all (`--no-nftables`): IPVS and the dummy
    /// interface only, as before the packet path existed.
    pub disabled: bool,
    /// `--cluster-cidr`: ClusterIP traffic from outside these ranges is
    /// masqueraded.
    pub cluster_cidrs: Vec<Cidr>,
    /// `--masquerade-all`: all Service traffic is masqueraded.
    pub masquerade_all: bool,
    /// `--fwmark-range`: the firewall marks of the in-cluster traffic
    /// of `externalTrafficPolicy: Local` Service ports.
    pub fwmarks: FwmarkRange,
    /// `--localhost-nodeports`: serve each IPv4 NodePort on 127.0.0.1 too
    /// (needs `net.ipv4.conf.all.route_localnet=1`; off by default).
    pub localhost_nodeports: bool,
}

/// The most endpoints a localhost NodePort spreads over: one chain per
/// count (`endpoints-1` to `endpoints-64`) picks `numgen random mod N`,
/// so that the rules stay fixed and a Service's endpoints are elements.
/// A Service with more has its first 64 (by address) on localhost.
pub const LOCALHOST_MAX_ENDPOINTS: usize = 64;

/// The address localhost NodePorts are served on.
pub const LOCALHOST: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

/// Where an address of a Service port sends traffic first: the name of
/// the chain a verdict map element jumps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    ClusterIp,
    External,
    ExternalLocal,
    Firewall,
    FirewallLocal,
}

impl Via {
    fn chain(self) -> &'static str {
        match self {
            Via::ClusterIp => "cluster-ip",
            Via::External => "external",
            Via::ExternalLocal => "external-local",
            Via::Firewall => "firewall-external",
            Via::FirewallLocal => "firewall-external-local",
        }
    }
}

/// One typed field of an element's key or value, as the set's type
/// declares it; [`crate::node::nft::netlink`] encodes each straight to
/// the kernel's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// An address (`ipv4_addr`, `ipv6_addr`).
    Addr(IpAddr),
    /// A range of addresses, in an interval set (`10.244.0.0/16`; one
    /// address is spelled as itself).
    Range(Cidr),
    /// A protocol (`inet_proto`).
    Proto(Protocol),
    /// A port (`inet_service`).
    Port(u16),
    /// A number in the host's byte order (`numgen random mod N`).
    Number(u32),
    /// A packet mark (`mark`, host order, spelled `0x00001000`).
    Mark(u32),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Addr(ip) => write!(f, "{ip}"),
            Field::Range(c) => {
                let full = if c.addr().is_ipv4() { 32 } else { 128 };
                if c.prefix() == full {
                    write!(f, "{}", c.addr())
                } else {
                    write!(f, "{c}")
                }
            }
            Field::Proto(p) => f.write_str(p.name()),
            Field::Port(p) => write!(f, "{p}"),
            Field::Number(n) => write!(f, "{n}"),
            Field::Mark(m) => write!(f, "{m:#010x}"),
        }
    }
}

/// The key of one element, typed: the fields its set's type declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A range of addresses (`cluster-cidrs-*`).
    Range(Cidr),
    /// An address (`vips-*`).
    Addr(IpAddr),
    /// A port (`health-check-ports`).
    Port(u16),
    /// An address, a protocol and a port (`served-*`, `services-*`,
    /// `fwmarks-*`).
    Service(IpAddr, Protocol, u16),
    /// A load-balancer address, protocol and port, and a source range
    /// allowed (`firewall-allow-*`).
    Source(IpAddr, Protocol, u16, Cidr),
    /// An endpoint's address, protocol and port, and its address again
    /// as the source (`hairpin-*`).
    Hairpin(IpAddr, Protocol, u16),
    /// A protocol and NodePort (`localhost-nodeports-v4`).
    NodePort(Protocol, u16),
    /// A protocol, NodePort and slot (`localhost-endpoints-v4`).
    Slot(Protocol, u16, u32),
}

impl Key {
    /// Its fields, in the order of the set's type.
    pub fn fields(&self) -> Fields {
        use Field::*;
        match *self {
            Key::Range(c) => Fields::of(&[Range(c)]),
            Key::Addr(ip) => Fields::of(&[Addr(ip)]),
            Key::Port(p) => Fields::of(&[Port(p)]),
            Key::Service(ip, pr, p) => Fields::of(&[Addr(ip), Proto(pr), Port(p)]),
            Key::Source(ip, pr, p, c) => Fields::of(&[Addr(ip), Proto(pr), Port(p), Range(c)]),
            Key::Hairpin(ip, pr, p) => Fields::of(&[Addr(ip), Proto(pr), Port(p), Addr(ip)]),
            Key::NodePort(pr, p) => Fields::of(&[Proto(pr), Port(p)]),
            Key::Slot(pr, p, s) => Fields::of(&[Proto(pr), Port(p), Number(s)]),
        }
    }
}

/// A chain of the table a verdict map's element goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chain {
    /// A chain by its name (`cluster-ip`, `external`, ...).
    Named(&'static str),
    /// The localhost NodePort chain of a count of endpoints
    /// (`endpoints-1` to `endpoints-64`, [`LOCALHOST_MAX_ENDPOINTS`]).
    Endpoints(u8),
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chain::Named(name) => f.write_str(name),
            Chain::Endpoints(n) => write!(f, "endpoints-{n}"),
        }
    }
}

/// The value of a map's element, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// `goto CHAIN` (a verdict map).
    Goto(Chain),
    /// A packet mark (`fwmarks-*`).
    Mark(u32),
    /// An address and port (`localhost-endpoints-v4`).
    Endpoint(IpAddr, u16),
}

impl Value {
    /// The fields of a value map's value; `None` for a verdict.
    pub fn fields(&self) -> Option<Fields> {
        match *self {
            Value::Goto(_) => None,
            Value::Mark(m) => Some(Fields::of(&[Field::Mark(m)])),
            Value::Endpoint(ip, p) => Some(Fields::of(&[Field::Addr(ip), Field::Port(p)])),
        }
    }
}

/// Up to four fields, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    fields: [Field; 4],
    len: usize,
}

impl Fields {
    fn of(fields: &[Field]) -> Fields {
        let mut out = [Field::Port(0); 4];
        out[..fields.len()].copy_from_slice(fields);
        Fields {
            fields: out,
            len: fields.len(),
        }
    }

    /// The fields, in order.
    pub fn as_slice(&self) -> &[Field] {
        &self.fields[..self.len]
    }
}

impl fmt::Display for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            write!(f, "{field}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Key {
    /// nft's syntax: `10.96.0.10 . tcp . 80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fields().fmt(f)
    }
}

impl fmt::Display for Value {
    /// nft's syntax: `goto cluster-ip`, `0x00001000`, `10.244.1.5 . 8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Goto(chain) => write!(f, "goto {chain}"),
            v => match v.fields() {
                Some(fields) => fields.fmt(f),
                None => Ok(()),
            },
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and runs, unlike the standard
/// library's hasher.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// Feeds `bytes` with no separator after them.
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn addr(&mut self, tag: u8, ip: &IpAddr) {
        self.bytes(&[tag]);
        match ip {
            IpAddr::V4(a) => self.bytes(&a.octets()),
            IpAddr::V6(a) => self.bytes(&a.octets()),
        }
    }

    fn field(&mut self, field: &Field) {
        match field {
            Field::Addr(a) => self.addr(1, a),
            Field::Range(c) => {
                self.addr(2, &c.addr());
                self.bytes(&[c.prefix()]);
            }
            Field::Proto(p) => self.bytes(&[3, *p as u8]),
            Field::Port(p) => {
                self.bytes(&[4]);
                self.bytes(&p.to_be_bytes());
            }
            Field::Number(n) => {
                self.bytes(&[5]);
                self.bytes(&n.to_be_bytes());
            }
            Field::Mark(m) => {
                self.bytes(&[6]);
                self.bytes(&m.to_be_bytes());
            }
        }
        // A separator.
        self.feed(&[]);
    }

    /// The fingerprint of one element.
    fn element(set: &str, key: &Key, value: &Option<Value>) -> u64 {
        let mut h = Fnv::new();
        h.feed(set.as_bytes());
        for f in key.fields().as_slice() {
            h.field(f);
        }
        match value {
            None => h.feed(b"-"),
            Some(Value::Goto(Chain::Named(name))) => h.feed(name.as_bytes()),
            Some(Value::Goto(Chain::Endpoints(n))) => h.feed(&[7, *n]),
            Some(v) => {
                if let Some(fields) = v.fields() {
                    for f in fields.as_slice() {
                        h.field(f);
                    }
                }
            }
        }
        h.0
    }
}

/// Who wants one element: how many Service ports want each value. The
/// element's value is the greatest wanted (two Services wanting one map
/// key differently is a conflict the mapping warns of; the greatest wins,
/// whatever order the Services come in).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The element's value (the greatest wanted).
    value: Option<Value>,
    /// How many want it.
    count: u32,
    /// Other values wanted, and by how many.
    others: Vec<(Option<Value>, u32)>,
}

/// Every set and map of the table with its elements: a key, and for a
/// map the value (a verdict, a mark, an address and port). What a sync
/// wants; the diff of two is a transaction. Each element counts the
/// Service ports that want it, so that [`Table`] can take one port's
/// elements out and put them back.
#[derive(Debug, Clone, Default)]
pub struct Elements {
    sets: BTreeMap<&'static str, BTreeMap<Key, Entry>>,
    /// The sum of the fingerprints of the elements (order-free, so kept
    /// as elements come and go).
    sum: u64,
}

impl PartialEq for Elements {
    /// The same elements with the same values (not counting wanters).
    fn eq(&self, other: &Elements) -> bool {
        let nonempty = |e: &Elements| {
            e.sets
                .iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(s, m)| (*s, m.iter().map(|(k, e)| (*k, e.value)).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        };
        nonempty(self) == nonempty(other)
    }
}

impl Eq for Elements {}

/// The sets and maps, in the order the table declares them, with their
/// declarations.
const SETS: &[(&str, &str)] = &[
    ("cluster-cidrs-v4", "type ipv4_addr; flags interval;"),
    ("cluster-cidrs-v6", "type ipv6_addr; flags interval;"),
    ("vips-v4", "type ipv4_addr;"),
    ("vips-v6", "type ipv6_addr;"),
    ("served-v4", "type ipv4_addr . inet_proto . inet_service;"),
    ("served-v6", "type ipv6_addr . inet_proto . inet_service;"),
    (
        "firewall-allow-v4",
        "type ipv4_addr . inet_proto . inet_service . ipv4_addr; flags interval;",
    ),
    (
        "firewall-allow-v6",
        "type ipv6_addr . inet_proto . inet_service . ipv6_addr; flags interval;",
    ),
    (
        "hairpin-v4",
        "type ipv4_addr . inet_proto . inet_service . ipv4_addr;",
    ),
    (
        "hairpin-v6",
        "type ipv6_addr . inet_proto . inet_service . ipv6_addr;",
    ),
    ("health-check-ports", "type inet_service;"),
];
/// The maps of `--localhost-nodeports`, declared only with it: protocol
/// and NodePort to the chain of its endpoint count; protocol, NodePort
/// and slot (`numgen random mod N`) to the endpoint.
const LOCALHOST_MAPS: &[(&str, &str)] = &[
    (
        "localhost-nodeports-v4",
        "type inet_proto . inet_service : verdict;",
    ),
    (
        "localhost-endpoints-v4",
        "typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport;",
    ),
];
const MAPS: &[(&str, &str)] = &[
    (
        "services-v4",
        "type ipv4_addr . inet_proto . inet_service : verdict;",
    ),
    (
        "services-v6",
        "type ipv6_addr . inet_proto . inet_service : verdict;",
    ),
    (
        "fwmarks-v4",
        "type ipv4_addr . inet_proto . inet_service : mark;",
    ),
    (
        "fwmarks-v6",
        "type ipv6_addr . inet_proto . inet_service : mark;",
    ),
];

/// A set or map by what it holds, of either family.
#[derive(Debug, Clone, Copy)]
enum Base {
    ClusterCidrs,
    Vips,
    Served,
    FirewallAllow,
    Hairpin,
    Services,
    Fwmarks,
}

impl Base {
    /// The set or map of `ip`'s family.
    fn set(self, ip: &IpAddr) -> &'static str {
        let (v4, v6) = match self {
            Base::ClusterCidrs => ("cluster-cidrs-v4", "cluster-cidrs-v6"),
            Base::Vips => ("vips-v4", "vips-v6"),
            Base::Served => ("served-v4", "served-v6"),
            Base::FirewallAllow => ("firewall-allow-v4", "firewall-allow-v6"),
            Base::Hairpin => ("hairpin-v4", "hairpin-v6"),
            Base::Services => ("services-v4", "services-v6"),
            Base::Fwmarks => ("fwmarks-v4", "fwmarks-v6"),
        };
        if ip.is_ipv4() {
            v4
        } else {
            v6
        }
    }
}

impl Elements {
    /// The element of `key` in `set`: `Some(value)` (`Some(None)` of a
    /// set's element) when there is one.
    fn get(&self, set: &str, key: &Key) -> Option<Option<Value>> {
        self.sets.get(set)?.get(key).map(|e| e.value)
    }

    /// One more Service port wants the element.
    fn want(&mut self, set: &'static str, key: Key, value: Option<Value>) {
        use std::collections::btree_map::Entry as Slot;
        let e = match self.sets.entry(set).or_default().entry(key) {
            Slot::Vacant(slot) => {
                slot.insert(Entry {
                    value,
                    count: 1,
                    others: Vec::new(),
                });
                self.sum = self.sum.wrapping_add(Fnv::element(set, &key, &value));
                return;
            }
            Slot::Occupied(slot) => slot.into_mut(),
        };
        if e.value == value {
            e.count += 1;
            return;
        }
        match e.others.iter().position(|(v, _)| *v == value) {
            Some(at) => e.others[at].1 += 1,
            None => e.others.push((value, 1)),
        }
        if value > e.value {
            let old = e.value;
            if let Some(at) = e.others.iter().position(|(v, _)| *v == value) {
                let (v, n) = e.others.swap_remove(at);
                e.others.push((e.value, e.count));
                e.value = v;
                e.count = n;
            }
            self.sum = self
                .sum
                .wrapping_sub(Fnv::element(set, &key, &old))
                .wrapping_add(Fnv::element(set, &key, &value));
        }
    }

    /// One Service port fewer wants the element.
    fn unwant(&mut self, set: &'static str, key: Key, value: Option<Value>) {
        let Some(entries) = self.sets.get_mut(set) else {
            return;
        };
        let Some(e) = entries.get_mut(&key) else {
            return;
        };
        if e.value != value {
            if let Some(at) = e.others.iter().position(|(v, _)| *v == value) {
                e.others[at].1 -= 1;
                if e.others[at].1 == 0 {
                    e.others.swap_remove(at);
                }
            }
            return;
        }
        e.count -= 1;
        if e.count > 0 {
            return;
        }
        let old = e.value;
        let greatest = (0..e.others.len()).max_by_key(|&i| e.others[i].0);
        self.sum = self.sum.wrapping_sub(Fnv::element(set, &key, &old));
        match greatest {
            Some(at) => {
                let (v, n) = e.others.swap_remove(at);
                e.value = v;
                e.count = n;
                self.sum = self.sum.wrapping_add(Fnv::element(set, &key, &v));
            }
            None => {
                entries.remove(&key);
            }
        }
    }

    /// How many elements there are in all.
    pub fn len(&self) -> usize {
        self.sets.values().map(BTreeMap::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of one set or map, in order, as nft spells them (for
    /// tests and reports).
    pub fn keys(&self, set: &str) -> Vec<String> {
        self.sets
            .get(set)
            .map(|m| m.keys().map(Key::to_string).collect())
            .unwrap_or_default()
    }

    /// Every element: its set, key and value, by set and key.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Key, &Option<Value>)> + '_ {
        self.sets
            .iter()
            .flat_map(|(set, m)| m.iter().map(move |(k, e)| (*set, k, &e.value)))
    }
}

/// The elements the table wants for `ports`: `node_ips` are the addresses
/// NodePorts are served on; `skip(ip, protocol, port)` leaves out what
/// this node does not serve (say, an address another tool's virtual
/// service holds). The whole table at once; a sync keeps a [`Table`].
pub fn elements(
    ports: &[ServicePort],
    node_ips: &[IpAddr],
    options: &Options,
    skip: impl Fn(IpAddr, Protocol, u16) -> bool,
) -> Elements {
    let mut table = Table::default();
    table.update(ports, node_ips, options, skip);
    table.elements
}

/// The elements of the options alone (the cluster CIDRs).
fn option_elements(options: &Options, emit: &mut impl FnMut(&'static str, Key, Option<Value>)) {
    for cidr in &options.cluster_cidrs {
        emit(
            Base::ClusterCidrs.set(&cidr.addr()),
            Key::Range(*cidr),
            None,
        );
    }
}

/// The elements one Service port wants, each given to `emit`; `skip` as
/// [`elements`]'.
fn port_elements(
    p: &ServicePort,
    node_ips: &[IpAddr],
    localhost: bool,
    skip: &mut impl FnMut(IpAddr, Protocol, u16) -> bool,
    emit: &mut impl FnMut(&'static str, Key, Option<Value>),
) {
    let proto = p.protocol;
    let key = |ip: &IpAddr, port: u16| Key::Service(*ip, proto, port);
    let mut any = false;
    let external = if p.external_local {
        Via::ExternalLocal
    } else {
        Via::External
    };
    // A ClusterIP and an external IP: served, and sent to its chain.
    for (ips, via) in [
        (&p.cluster_ips, Via::ClusterIp),
        (&p.external_ips, external),
    ] {
        for ip in ips {
            if skip(*ip, proto, p.port) {
                continue;
            }
            any = true;
            emit(Base::Vips.set(ip), Key::Addr(*ip), None);
            emit(Base::Served.set(ip), key(ip, p.port), None);
            emit(
                Base::Services.set(ip),
                key(ip, p.port),
                Some(Value::Goto(Chain::Named(via.chain()))),
            );
        }
    }
    for ip in &p.lb_ips {
        if skip(*ip, proto, p.port) {
            continue;
        }
        any = true;
        emit(Base::Vips.set(ip), Key::Addr(*ip), None);
        emit(Base::Served.set(ip), key(ip, p.port), None);
        let ranges = p
            .source_ranges
            .iter()
            .filter(|c| c.addr().is_ipv4() == ip.is_ipv4());
        let via = match (p.source_ranges.is_empty(), p.external_local) {
            (true, _) => external,
            (false, false) => Via::Firewall,
            (false, true) => Via::FirewallLocal,
        };
        // The node's own connections come from the load-balancer IP
        // (its route is local): allowed when a range holds a node
        // address, as kube-proxy's allowFromNode.
        let mut from_node = false;
        for range in ranges {
            from_node |= node_ips.iter().any(|n| range.contains(n));
            emit(
                Base::FirewallAllow.set(ip),
                Key::Source(*ip, proto, p.port, *range),
                None,
            );
        }
        if from_node {
            let full = if ip.is_ipv4() { 32 } else { 128 };
            if let Some(itself) = Cidr::new(*ip, full) {
                emit(
                    Base::FirewallAllow.set(ip),
                    Key::Source(*ip, proto, p.port, itself),
                    None,
                );
            }
        }
        emit(
            Base::Services.set(ip),
            key(ip, p.port),
            Some(Value::Goto(Chain::Named(via.chain()))),
        );
    }
    if let Some(mark) = p.fwmark {
        let addrs = p
            .lb_ips
            .iter()
            .chain(&p.external_ips)
            .map(|ip| (ip, p.port));
        let nodes = node_ips.iter().filter_map(|ip| Some((ip, p.node_port?)));
        for (ip, port) in addrs.chain(nodes) {
            let family_served = p.cluster_ips.iter().any(|c| c.is_ipv4() == ip.is_ipv4());
            if family_served && !skip(*ip, proto, port) {
                emit(
                    Base::Fwmarks.set(ip),
                    key(ip, port),
                    Some(Value::Mark(mark)),
                );
            }
        }
    }
    if let Some(np) = p.node_port {
        for ip in node_ips {
            let family_served = p.cluster_ips.iter().any(|c| c.is_ipv4() == ip.is_ipv4());
            if !family_served || skip(*ip, proto, np) {
                continue;
            }
            any = true;
            emit(
                Base::Services.set(ip),
                key(ip, np),
                Some(Value::Goto(Chain::Named(external.chain()))),
            );
        }
    }
    if any {
        for v4 in [true, false] {
            let mut eps = p.internal_endpoints(v4);
            eps.extend(p.external_endpoints(v4));
            for ep in eps {
                let ip = ep.ip();
                emit(
                    Base::Hairpin.set(&ip),
                    Key::Hairpin(ip, proto, ep.port()),
                    None,
                );
            }
        }
        if let Some(hc) = p.health_check_node_port {
            emit("health-check-ports", Key::Port(hc), None);
        }
    }
    if localhost {
        localhost_elements(p, skip, emit);
    }
}

/// The elements of `127.0.0.1:NodePort` for an IPv4 NodePort (a
/// Service with an IPv4 ClusterIP; `::1` cannot be routed off the node at
/// all, so IPv6 has none, as kube-proxy): the endpoints of Cluster
/// traffic whatever `externalTrafficPolicy` says, since kube-proxy's
/// iptables mode sends the node's own traffic to an external address to
/// its cluster endpoints (masqueraded) under either policy. A NodePort
/// with no endpoint has none (the connection is then refused by the
/// node, nothing listening on 127.0.0.1 there).
fn localhost_elements(
    p: &ServicePort,
    skip: &mut impl FnMut(IpAddr, Protocol, u16) -> bool,
    emit: &mut impl FnMut(&'static str, Key, Option<Value>),
) {
    let Some(np) = p.node_port else { return };
    if !p.cluster_ips.iter().any(IpAddr::is_ipv4) || skip(IpAddr::V4(LOCALHOST), p.protocol, np) {
        return;
    }
    let mut eps = crate::model::cluster_usable(p.endpoints.iter().filter(|e| e.addr.is_ipv4()));
    eps.sort();
    eps.dedup();
    eps.truncate(LOCALHOST_MAX_ENDPOINTS);
    if eps.is_empty() {
        return;
    }
    let proto = p.protocol;
    let count = u8::try_from(eps.len()).unwrap_or(u8::MAX);
    emit(
        "localhost-nodeports-v4",
        Key::NodePort(proto, np),
        Some(Value::Goto(Chain::Endpoints(count))),
    );
    for (slot, ep) in eps.iter().enumerate() {
        emit(
            "localhost-endpoints-v4",
            Key::Slot(proto, np, slot as u32),
            Some(Value::Endpoint(ep.ip(), ep.port())),
        );
    }
}

/// One Service port's part of the table: the port as last seen, the
/// answers `skip` gave for it, and the elements it wants.
#[derive(Debug)]
struct Part {
    port: ServicePort,
    asked: Vec<(IpAddr, Protocol, u16, bool)>,
    elements: Vec<(&'static str, Key, Option<Value>)>,
    /// The last update that saw the port.
    round: u64,
}

/// The elements of the table kept per Service port, as the IPVS side
/// keeps each Service's part of the desired table: an update spells anew
/// only the ports that changed (compared as values, no text built) and
/// tells which elements moved ([`Touched`]), so that a sync's nftables
/// step costs in the changes, not in the cluster. The node addresses and
/// the options are the basis of every port's part: when they change,
/// every part is spelled anew.
#[derive(Debug, Default)]
pub struct Table {
    basis: Option<(Vec<IpAddr>, Options)>,
    parts: HashMap<String, Part>,
    round: u64,
    elements: Elements,
}

/// What one [`Table::update`] changed: each element it touched, with
/// its value before (`None`: there was none).
#[derive(Debug, Default)]
pub struct Touched {
    before: HashMap<(&'static str, Key), Option<Option<Value>>>,
    /// The update filled an empty table: every element is new, none
    /// was recorded one by one.
    fresh: bool,
    /// The Service ports spelled anew (changed, added or removed).
    pub ports: usize,
}

impl Table {
    /// The whole table's elements.
    pub fn elements(&self) -> &Elements {
        &self.elements
    }

    fn touch(&mut self, touched: &mut Touched, set: &'static str, key: Key) {
        if touched.fresh {
            return;
        }
        let elements = &self.elements;
        touched
            .before
            .entry((set, key))
            .or_insert_with(|| elements.get(set, &key));
    }

    fn retract(&mut self, touched: &mut Touched, elements: &[(&'static str, Key, Option<Value>)]) {
        for (set, key, value) in elements {
            self.touch(touched, set, *key);
            self.elements.unwant(set, *key, *value);
        }
    }

    fn put(&mut self, touched: &mut Touched, elements: &[(&'static str, Key, Option<Value>)]) {
        for (set, key, value) in elements {
            self.touch(touched, set, *key);
            self.elements.want(set, *key, *value);
        }
    }

    /// Makes the table the one `ports` want (see [`elements`]): only the
    /// ports that differ from the last update, or whose `skip` answers
    /// changed, are spelled anew.
    pub fn update(
        &mut self,
        ports: &[ServicePort],
        node_ips: &[IpAddr],
        options: &Options,
        skip: impl Fn(IpAddr, Protocol, u16) -> bool,
    ) -> Touched {
        let mut touched = Touched {
            fresh: self.basis.is_none(),
            ..Touched::default()
        };
        let same_basis = self
            .basis
            .as_ref()
            .is_some_and(|(n, o)| n == node_ips && o == options);
        if !same_basis {
            for (_, part) in std::mem::take(&mut self.parts) {
                self.retract(&mut touched, &part.elements);
            }
            if let Some((_, old)) = self.basis.take() {
                let mut gone = Vec::new();
                option_elements(&old, &mut |s, k, v| gone.push((s, k, v)));
                self.retract(&mut touched, &gone);
            }
            let mut new = Vec::new();
            option_elements(options, &mut |s, k, v| new.push((s, k, v)));
            self.put(&mut touched, &new);
            self.basis = Some((node_ips.to_vec(), options.clone()));
        }
        self.round += 1;
        let round = self.round;
        for p in ports {
            // A second port of one origin (no two should be) is a part
            // of its own.
            let mut name = std::borrow::Cow::Borrowed(p.origin.as_str());
            let mut n = 1;
            while self
                .parts
                .get(&*name)
                .is_some_and(|part| part.round == round)
            {
                n += 1;
                name = std::borrow::Cow::Owned(format!("{}#{n}", p.origin));
            }
            if let Some(part) = self.parts.get_mut(&*name) {
                if part.port == *p
                    && part
                        .asked
                        .iter()
                        .all(|(ip, proto, port, answer)| skip(*ip, *proto, *port) == *answer)
                {
                    part.round = round;
                    continue;
                }
            }
            if let Some(old) = self.parts.remove(&*name) {
                self.retract(&mut touched, &old.elements);
            }
            let mut asked = Vec::new();
            let mut elements = Vec::new();
            port_elements(
                p,
                node_ips,
                options.localhost_nodeports,
                &mut |ip, proto, port| {
                    let answer = skip(ip, proto, port);
                    asked.push((ip, proto, port, answer));
                    answer
                },
                &mut |s, k, v| elements.push((s, k, v)),
            );
            self.put(&mut touched, &elements);
            touched.ports += 1;
            self.parts.insert(
                name.into_owned(),
                Part {
                    port: p.clone(),
                    asked,
                    elements,
                    round,
                },
            );
        }
        let gone: Vec<String> = self
            .parts
            .iter()
            .filter(|(_, part)| part.round != round)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(old) = self.parts.remove(&name) {
                self.retract(&mut touched, &old.elements);
                touched.ports += 1;
            }
        }
        touched
    }

    /// The transaction that moves the kernel's table from what it held
    /// before the update that `touched` tells of to what it holds now:
    /// the touched elements whose value changed, deletions first, each
    /// by set and key.
    pub fn transaction(&self, touched: &Touched) -> Transaction {
        if touched.fresh {
            return transaction(
                Some(&Elements::default()),
                &self.elements,
                &Options::default(),
            );
        }
        let mut deletions = Vec::new();
        let mut additions = Vec::new();
        for ((set, key), before) in &touched.before {
            let after = self.elements.get(set, key);
            if *before == after {
                continue;
            }
            if before.is_some() {
                deletions.push(Change {
                    add: false,
                    set,
                    key: *key,
                    value: None,
                });
            }
            if let Some(value) = after {
                additions.push(Change {
                    add: true,
                    set,
                    key: *key,
                    value,
                });
            }
        }
        deletions.sort_by(|a, b| (a.set, a.key).cmp(&(b.set, b.key)));
        additions.sort_by(|a, b| (a.set, a.key).cmp(&(b.set, b.key)));
        Transaction::of_elements(deletions, additions)
    }
}

/// One element added to or deleted from a set or map of the table,
/// typed: [`crate::node::nft`] encodes it over nfnetlink; its `Display`
/// is nft's syntax, what `nft -f` reads in [`Transaction::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Added (else deleted).
    pub add: bool,
    /// The set or map.
    pub set: &'static str,
    /// The key.
    pub key: Key,
    /// Of a map's element being added, its verdict or value.
    pub value: Option<Value>,
}

impl fmt::Display for Change {
    /// The element as an `add element` or `delete element` command
    /// lists it: `10.96.0.10 . tcp . 80 : goto cluster-ip`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) if self.add => write!(f, "{} : {v}", self.key),
            _ => write!(f, "{}", self.key),
        }
    }
}

/// The declaration of the set or map `set` (`type ipv4_addr . inet_proto
/// . inet_service : verdict;`, with `flags interval;` for an interval
/// set), as the table declares it.
pub fn declaration(set: &str) -> Option<&'static str> {
    SETS.iter()
        .chain(MAPS)
        .chain(LOCALHOST_MAPS)
        .find(|(n, _)| *n == set)
        .map(|(_, d)| *d)
}

/// One nftables transaction: what it does ([`Transaction::changes`],
/// and the whole table first when [`Transaction::full`]). The node side
/// writes it over nfnetlink; [`Transaction::text`] spells the same for
/// `nft -f` (the tests' second opinion, and the fake's record), built
/// only when asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Of a whole write: the table's chains and rules; empty otherwise.
    pub chains: Vec<rules::Chain>,
    /// Of a whole write: the table's sets and maps, [`declarations`];
    /// empty otherwise.
    pub sets: Vec<(&'static str, &'static str, bool)>,
    /// The element changes, deletions first.
    pub changes: Vec<Change>,
    /// Whether it replaces the whole table (the first write of a run, or
    /// after a failed one).
    pub full: bool,
    /// Elements added.
    pub added: usize,
    /// Elements deleted.
    pub deleted: usize,
}

impl Transaction {
    /// A transaction of elements only (not a whole write): `deletions`
    /// first, then `additions`.
    fn of_elements(mut deletions: Vec<Change>, additions: Vec<Change>) -> Transaction {
        let deleted = deletions.len();
        let added = additions.len();
        deletions.extend(additions);
        Transaction {
            chains: Vec::new(),
            sets: Vec::new(),
            changes: deletions,
            full: false,
            added,
            deleted,
        }
    }

    /// Whether it changes nothing (a no-op sync sends nothing).
    pub fn is_empty(&self) -> bool {
        !self.full && self.changes.is_empty()
    }

    /// Of a whole write, the table with its chains and rules and its sets
    /// and maps empty, as `nft -f` reads it (replacing the table: `add`
    /// then `delete` so that a missing table is no error); empty
    /// otherwise.
    pub fn skeleton_text(&self) -> String {
        let mut text = String::new();
        if !self.full {
            return text;
        }
        let _ = writeln!(text, "add table {FAMILY} {TABLE}");
        let _ = writeln!(text, "delete table {FAMILY} {TABLE}");
        let _ = writeln!(text, "table {FAMILY} {TABLE} {{");
        let _ = writeln!(text, "\tcomment \"{COMMENT}\"");
        for (name, decl, map) in &self.sets {
            let kind = if *map { "map" } else { "set" };
            let _ = writeln!(text, "\t{kind} {name} {{ {decl} }}");
        }
        for chain in &self.chains {
            text.push_str(&chain.text());
        }
        text.push_str("}\n");
        text
    }

    /// The whole transaction as `nft -f` reads it, one command a line:
    /// [`Transaction::skeleton_text`], then the element changes.
    pub fn text(&self) -> String {
        let mut text = self.skeleton_text();
        let mut at = 0;
        while at < self.changes.len() {
            let first = &self.changes[at];
            let run = self.changes[at..]
                .iter()
                .take_while(|c| c.add == first.add && c.set == first.set)
                .count();
            let items: Vec<String> = self.changes[at..at + run]
                .iter()
                .map(Change::to_string)
                .collect();
            let verb = if first.add { "add" } else { "delete" };
            element_commands(&mut text, verb, first.set, &items);
            at += run;
        }
        text
    }
}

/// The table's comment.
pub const COMMENT: &str = "ipvsadm-rs --from-k8s: the packet path of Kubernetes Services";

/// Every set and map of the table `options` shape with its declaration,
/// in the order the table declares them; `true` for a map (of verdicts,
/// marks or values): `--localhost-nodeports`' maps only with it.
pub fn declarations(
    options: &Options,
) -> impl Iterator<Item = (&'static str, &'static str, bool)> + '_ {
    all_declarations().filter(|(n, _, _)| {
        options.localhost_nodeports || !LOCALHOST_MAPS.iter().any(|(l, _)| l == n)
    })
}

/// Every set and map any table declares, whatever its options.
fn all_declarations() -> impl Iterator<Item = (&'static str, &'static str, bool)> {
    SETS.iter().map(|(n, d)| (*n, *d, false)).chain(
        MAPS.iter()
            .chain(LOCALHOST_MAPS)
            .map(|(n, d)| (*n, *d, true)),
    )
}

/// Elements per `add element` command: nft reads any number, but a
/// bounded line keeps its parser's memory small.
const CHUNK: usize = 1000;

fn element_commands(text: &mut String, verb: &str, set: &str, items: &[String]) {
    for chunk in items.chunks(CHUNK) {
        let _ = writeln!(
            text,
            "{verb} element {FAMILY} {TABLE} {set} {{ {} }}",
            chunk.join(", ")
        );
    }
}

/// The transaction that makes the table hold `next`: the whole table when
/// `prev` is `None` (what the kernel holds is unknown: it is replaced in
/// the same transaction, `add` then `delete` so that a missing table is
/// no error), else the elements that differ (a whole comparison: a sync
/// keeps a [`Table`], whose [`Table::transaction`] costs in the changes).
pub fn transaction(prev: Option<&Elements>, next: &Elements, options: &Options) -> Transaction {
    let Some(prev) = prev else {
        let changes: Vec<Change> = next
            .iter()
            .map(|(set, key, value)| Change {
                add: true,
                set,
                key: *key,
                value: *value,
            })
            .collect();
        return Transaction {
            chains: rules::chains(options),
            sets: declarations(options).collect(),
            added: changes.len(),
            changes,
            full: true,
            deleted: 0,
        };
    };
    let empty = BTreeMap::new();
    let names: BTreeSet<&&str> = prev.sets.keys().chain(next.sets.keys()).collect();
    let mut changes = Vec::new();
    let mut add_changes = Vec::new();
    for name in names {
        let old = prev.sets.get(*name).unwrap_or(&empty);
        let new = next.sets.get(*name).unwrap_or(&empty);
        changes.extend(
            old.iter()
                .filter(|(k, e)| new.get(*k).map(|n| n.value) != Some(e.value))
                .map(|(k, _)| Change {
                    add: false,
                    set: name,
                    key: *k,
                    value: None,
                }),
        );
        add_changes.extend(
            new.iter()
                .filter(|(k, e)| old.get(*k).map(|o| o.value) != Some(e.value))
                .map(|(k, e)| Change {
                    add: true,
                    set: name,
                    key: *k,
                    value: e.value,
                }),
        );
    }
    Transaction::of_elements(changes, add_changes)
}

/// A fingerprint of the structure of the table `options` make (its
/// declarations and chains, FNV-1a over their text).
pub fn structure_fingerprint(options: &Options) -> u64 {
    let mut h = Fnv::new();
    h.feed(
        transaction(None, &Elements::default(), options)
            .skeleton_text()
            .as_bytes(),
    );
    h.0
}

/// A fingerprint of the whole table `elements` make on the structure of
/// fingerprint `structure` ([`structure_fingerprint`]): FNV-1a of each
/// element's typed fields, summed (so kept as elements come and go),
/// stable across builds and runs, unlike the standard library's hasher.
pub fn fingerprint_on(structure: u64, elements: &Elements) -> u64 {
    let mut h = Fnv(structure);
    h.feed(&elements.sum.to_be_bytes());
    h.0
}

/// [`fingerprint_on`] the structure of `options`.
pub fn fingerprint(elements: &Elements, options: &Options) -> u64 {
    fingerprint_on(structure_fingerprint(options), elements)
}

/// The transaction that removes the table (and everything in it):
/// `add` first, so that it holds whether or not the table exists.
pub fn removal() -> String {
    format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
}

pub mod rules;
#[cfg(test)]
mod tests;
