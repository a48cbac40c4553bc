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
//! A sync is a diff of [`Elements`]: the first write of a run replaces the
//! whole table in one transaction; later ones add and delete elements
//! only, so a sync costs what changed, not what exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
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

/// Every set and map of the table with its elements: a key, and for a
/// verdict map the verdict. What a sync wants; the diff of two is a
/// transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elements {
    sets: BTreeMap<&'static str, BTreeMap<String, Option<String>>>,
}

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

fn fam(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "v4"
    } else {
        "v6"
    }
}

impl Elements {
    fn insert(&mut self, set: &'static str, key: String, verdict: Option<String>) {
        self.sets.entry(set).or_default().insert(key, verdict);
    }

    fn by_family(&mut self, base: &str, ip: &IpAddr, key: String, verdict: Option<String>) {
        let name = SETS
            .iter()
            .chain(MAPS)
            .map(|(n, _)| *n)
            .find(|n| n.strip_prefix(base).and_then(|r| r.strip_prefix('-')) == Some(fam(ip)));
        if let Some(name) = name {
            self.insert(name, key, verdict);
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

    /// The keys of one set or map, in order (for tests and reports).
    pub fn keys(&self, set: &str) -> Vec<&str> {
        self.sets
            .get(set)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

/// The elements the table wants for `ports`: `node_ips` are the addresses
/// NodePorts are served on; `skip(ip, protocol, port)` leaves out what
/// this node does not serve (say, an address another tool's virtual
/// service holds).
pub fn elements(
    ports: &[ServicePort],
    node_ips: &[IpAddr],
    options: &Options,
    skip: impl Fn(IpAddr, Protocol, u16) -> bool,
) -> Elements {
    let mut out = Elements::default();
    for cidr in &options.cluster_cidrs {
        out.by_family("cluster-cidrs", &cidr.addr(), cidr.to_string(), None);
    }
    let mut health = BTreeSet::new();
    for p in ports {
        let proto = p.protocol.name();
        let key = |ip: &IpAddr, port: u16| format!("{ip} . {proto} . {port}");
        let mut any = false;
        for ip in &p.cluster_ips {
            if skip(*ip, p.protocol, p.port) {
                continue;
            }
            any = true;
            out.by_family("vips", ip, ip.to_string(), None);
            out.by_family("served", ip, key(ip, p.port), None);
            let verdict = format!("goto {}", Via::ClusterIp.chain());
            out.by_family("services", ip, key(ip, p.port), Some(verdict));
        }
        let external = if p.external_local {
            Via::ExternalLocal
        } else {
            Via::External
        };
        for ip in &p.external_ips {
            if skip(*ip, p.protocol, p.port) {
                continue;
            }
            any = true;
            out.by_family("vips", ip, ip.to_string(), None);
            out.by_family("served", ip, key(ip, p.port), None);
            out.by_family(
                "services",
                ip,
                key(ip, p.port),
                Some(format!("goto {}", external.chain())),
            );
        }
        for ip in &p.lb_ips {
            if skip(*ip, p.protocol, p.port) {
                continue;
            }
            any = true;
            out.by_family("vips", ip, ip.to_string(), None);
            out.by_family("served", ip, key(ip, p.port), None);
            let ranges: Vec<&Cidr> = p
                .source_ranges
                .iter()
                .filter(|c| c.addr().is_ipv4() == ip.is_ipv4())
                .collect();
            let via = match (p.source_ranges.is_empty(), p.external_local) {
                (true, _) => external,
                (false, false) => Via::Firewall,
                (false, true) => Via::FirewallLocal,
            };
            // The node's own connections come from the load-balancer IP
            // (its route is local): allowed when a range holds a node
            // address, as kube-proxy's allowFromNode.
            let from_node = ranges
                .iter()
                .any(|r| node_ips.iter().any(|n| r.contains(n)));
            for range in ranges {
                out.by_family(
                    "firewall-allow",
                    ip,
                    format!("{} . {range}", key(ip, p.port)),
                    None,
                );
            }
            if from_node {
                out.by_family(
                    "firewall-allow",
                    ip,
                    format!("{} . {ip}", key(ip, p.port)),
                    None,
                );
            }
            out.by_family(
                "services",
                ip,
                key(ip, p.port),
                Some(format!("goto {}", via.chain())),
            );
        }
        if let Some(mark) = p.fwmark {
            let mark = format!("{mark:#010x}");
            let addrs = p
                .lb_ips
                .iter()
                .chain(&p.external_ips)
                .map(|ip| (ip, p.port));
            let nodes = node_ips.iter().filter_map(|ip| Some((ip, p.node_port?)));
            for (ip, port) in addrs.chain(nodes) {
                let family_served = p.cluster_ips.iter().any(|c| c.is_ipv4() == ip.is_ipv4());
                if family_served && !skip(*ip, p.protocol, port) {
                    out.by_family("fwmarks", ip, key(ip, port), Some(mark.clone()));
                }
            }
        }
        if let Some(np) = p.node_port {
            for ip in node_ips {
                let family_served = p.cluster_ips.iter().any(|c| c.is_ipv4() == ip.is_ipv4());
                if !family_served || skip(*ip, p.protocol, np) {
                    continue;
                }
                any = true;
                out.by_family(
                    "services",
                    ip,
                    key(ip, np),
                    Some(format!("goto {}", external.chain())),
                );
            }
        }
        if !any {
            continue;
        }
        for v4 in [true, false] {
            let mut eps = p.internal_endpoints(v4);
            eps.extend(p.external_endpoints(v4));
            for ep in eps {
                let ip = ep.ip();
                out.by_family(
                    "hairpin",
                    &ip,
                    format!("{ip} . {proto} . {} . {ip}", ep.port()),
                    None,
                );
            }
        }
        if let Some(hc) = p.health_check_node_port {
            health.insert(hc);
        }
    }
    for port in health {
        out.insert("health-check-ports", port.to_string(), None);
    }
    if options.localhost_nodeports {
        localhost_elements(&mut out, ports, &skip);
    }
    out
}

/// The elements of `127.0.0.1:NodePort` for each IPv4 NodePort (a
/// Service with an IPv4 ClusterIP; `::1` cannot be routed off the node at
/// all, so IPv6 has none, as kube-proxy): the endpoints of Cluster
/// traffic whatever `externalTrafficPolicy` says, since kube-proxy's
/// iptables mode sends the node's own traffic to an external address to
/// its cluster endpoints (masqueraded) under either policy. A NodePort
/// with no endpoint has none (the connection is then refused by the
/// node, nothing listening on 127.0.0.1 there).
fn localhost_elements(
    out: &mut Elements,
    ports: &[ServicePort],
    skip: &impl Fn(IpAddr, Protocol, u16) -> bool,
) {
    for p in ports {
        let Some(np) = p.node_port else { continue };
        if !p.cluster_ips.iter().any(IpAddr::is_ipv4) || skip(IpAddr::V4(LOCALHOST), p.protocol, np)
        {
            continue;
        }
        let mut eps = crate::model::cluster_usable(p.endpoints.iter().filter(|e| e.addr.is_ipv4()));
        eps.sort();
        eps.dedup();
        eps.truncate(LOCALHOST_MAX_ENDPOINTS);
        if eps.is_empty() {
            continue;
        }
        let proto = p.protocol.name();
        out.insert(
            "localhost-nodeports-v4",
            format!("{proto} . {np}"),
            Some(format!("goto endpoints-{}", eps.len())),
        );
        for (slot, ep) in eps.iter().enumerate() {
            out.insert(
                "localhost-endpoints-v4",
                format!("{proto} . {np} . {slot}"),
                Some(format!("{} . {}", ep.ip(), ep.port())),
            );
        }
    }
}

/// One element added to or deleted from a set or map of the table, as
/// [`Elements`] holds it: the key in nft's syntax (`10.96.0.10 . tcp .
/// 80`, `10.244.0.0/16`), and for a map's element being added its
/// verdict (`goto cluster-ip`) or value (`10.244.1.5 . 8080`). [`crate::node::nft`] writes these over
/// nfnetlink; `nft -f` reads the same in [`Transaction::text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Added (else deleted).
    pub add: bool,
    /// The set or map.
    pub set: &'static str,
    /// The key.
    pub key: String,
    /// The verdict (or, of a value map, the value) of a map element
    /// being added.
    pub verdict: Option<String>,
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
                .map(|c| {
                    if c.add {
                        item(&c.key, &c.verdict)
                    } else {
                        c.key.clone()
                    }
                })
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

fn item(key: &str, verdict: &Option<String>) -> String {
    match verdict {
        Some(v) => format!("{key} : {v}"),
        None => key.to_owned(),
    }
}

/// The transaction that makes the table hold `next`: the whole table when
/// `prev` is `None` (what the kernel holds is unknown: it is replaced in
/// the same transaction, `add` then `delete` so that a missing table is
/// no error), else the elements that differ.
pub fn transaction(prev: Option<&Elements>, next: &Elements, options: &Options) -> Transaction {
    let Some(prev) = prev else {
        let changes: Vec<Change> = next
            .sets
            .iter()
            .flat_map(|(set, elems)| {
                elems.iter().map(|(k, v)| Change {
                    add: true,
                    set,
                    key: k.clone(),
                    verdict: v.clone(),
                })
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
                .filter(|(k, v)| new.get(*k) != Some(v))
                .map(|(k, _)| Change {
                    add: false,
                    set: name,
                    key: k.clone(),
                    verdict: None,
                }),
        );
        add_changes.extend(
            new.iter()
                .filter(|(k, v)| old.get(*k) != Some(v))
                .map(|(k, v)| Change {
                    add: true,
                    set: name,
                    key: k.clone(),
                    verdict: v.clone(),
                }),
        );
    }
    let deleted = changes.len();
    let added = add_changes.len();
    changes.extend(add_changes);
    Transaction {
        chains: Vec::new(),
        sets: Vec::new(),
        changes,
        full: false,
        added,
        deleted,
    }
}

/// A fingerprint of the whole table `elements` and `options` make: its
/// structure (declarations and chains) and every element, FNV-1a over
/// their text (stable across builds and runs, unlike the standard
/// library's hasher).
pub fn fingerprint(elements: &Elements, options: &Options) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator no element holds.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    feed(
        transaction(None, &Elements::default(), options)
            .skeleton_text()
            .as_bytes(),
    );
    for (set, elems) in &elements.sets {
        feed(set.as_bytes());
        for (key, verdict) in elems {
            feed(key.as_bytes());
            feed(verdict.as_deref().unwrap_or("").as_bytes());
        }
    }
    hash
}

/// The transaction that removes the table (and everything in it):
/// `add` first, so that it holds whether or not the table exists.
pub fn removal() -> String {
    format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
}

pub mod rules;
#[cfg(test)]
mod tests;
