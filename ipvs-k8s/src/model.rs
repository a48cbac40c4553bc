//! What a node must serve, as neither IPVS nor nftables sees it: the
//! ports of the Services kube-proxy would proxy, each with its addresses,
//! its policies and its endpoints, and a typed [`Problem`] for each
//! Service that cannot be served (skipped, the rest served). Built from
//! API objects by [`crate::mapping::model`]; the IPVS table
//! ([`crate::mapping::ipvs_table`]) and the packet-path rules
//! ([`crate::packet::elements`]) are both planned from it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The packet mark bit that asks for masquerading (kube-proxy's
/// `--iptables-masquerade-bit` 14), which the packet path sets and no
/// firewall mark (`--fwmark-range`) may hold; here so that the mapping
/// and the packet path share it without importing each other.
pub const MASQ_MARK: u32 = 0x4000;

/// The transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The Kubernetes spelling (`TCP`, `UDP`, `SCTP`); the default,
    /// when a port names none, is TCP.
    pub fn from_k8s(name: Option<&str>) -> Option<Protocol> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The lower-case name nftables and /etc/protocols use.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// An address range in CIDR notation, its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is no CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an address range (CIDR, such as 10.0.0.0/8 or fd00::/64)",
            self.0
        )
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The range of `addr`/`prefix`, host bits cleared; `None` when the
    /// prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
            _ => return None,
        };
        Some(Cidr { addr, prefix })
    }

    /// The first address of the range.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        Cidr::new(*ip, self.prefix).is_some_and(|c| c.addr == self.addr)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDR/PREFIX`; a bare address is the range of that one address
    /// (as kube-proxy reads `loadBalancerSourceRanges`, surrounding
    /// blanks allowed).
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(text.to_owned());
        let t = text.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let full = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => full,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One endpoint of one Service port, as kube-proxy's endpoint cache keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's first address and the port's number on it.
    pub addr: SocketAddr,
    /// `conditions.ready` (absent: true).
    pub ready: bool,
    /// `conditions.serving` (absent: true).
    pub serving: bool,
    /// `conditions.terminating` (absent: false).
    pub terminating: bool,
    /// Whether the endpoint is on this node (`nodeName`).
    pub local: bool,
    /// Its `hints.forZones`, as they concern this node's zone.
    pub zone_hint: Hint,
    /// Its `hints.forNodes`, as they concern this node.
    pub node_hint: Hint,
}

/// An endpoint's topology hints (`hints.forZones` or `hints.forNodes`)
/// as they concern this node: the model keeps no more than kube-proxy's
/// choice needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Hint {
    /// No hint of this kind.
    #[default]
    None,
    /// Hints that name neither this node nor its zone.
    Elsewhere,
    /// A hint for this node (or this node's zone).
    Here,
}

impl Hint {
    /// The hint of a list of names (`forZones` or `forNodes`) for
    /// `here` (this node's zone or name; `None`, unknown, matches none).
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>, here: Option<&str>) -> Hint {
        let mut out = Hint::None;
        for name in names {
            if Some(name) == here {
                return Hint::Here;
            }
            out = Hint::Elsewhere;
        }
        out
    }
}

/// Which endpoints topology leaves to Cluster traffic, as kube-proxy's
/// `topologyModeFromHints` decides it (pkg/proxy/topology.go, since 1.33
/// from the hints alone: the EndpointSlice controller writes them for
/// `trafficDistribution` and the topology annotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// Every endpoint.
    All,
    /// The endpoints hinted for this node (`PreferSameNode`).
    SameNode,
    /// The endpoints hinted for this node's zone (`PreferSameZone`,
    /// `PreferClose`).
    SameZone,
}

fn topology<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Topology {
    // Every ready endpoint must carry a hint of the kind, and one of them
    // must be for here; unready endpoints are not looked at. Node hints
    // first (kube-proxy's PreferSameTrafficDistribution gate, on by
    // default since 1.34), then zone hints.
    let ready = eps.filter(|e| e.ready);
    let decides = |hint: fn(&Endpoint) -> Hint| {
        ready.clone().all(|e| hint(e) != Hint::None) && ready.clone().any(|e| hint(e) == Hint::Here)
    };
    if decides(|e| e.node_hint) {
        Topology::SameNode
    } else if decides(|e| e.zone_hint) {
        Topology::SameZone
    } else {
        Topology::All
    }
}

/// kube-proxy's choice of the endpoints of Cluster traffic: the ready
/// ones topology leaves (those hinted for this node when every ready
/// endpoint has a node hint and one is for this node; else those hinted
/// for this node's zone, on the same terms; else all), else, when none
/// is ready anywhere, the serving and terminating ones, topology aside.
pub fn cluster_usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<SocketAddr> {
    let mode = topology(eps.clone());
    let ready: Vec<SocketAddr> = eps
        .clone()
        .filter(|e| e.ready)
        .filter(|e| match mode {
            Topology::All => true,
            Topology::SameNode => e.node_hint == Hint::Here,
            Topology::SameZone => e.zone_hint == Hint::Here,
        })
        .map(|e| e.addr)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating)
        .map(|e| e.addr)
        .collect()
}

/// kube-proxy's choice among endpoints, topology aside (as for Local
/// traffic): the ready ones, else the serving and terminating ones.
pub fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<SocketAddr> {
    let ready: Vec<SocketAddr> = eps.clone().filter(|e| e.ready).map(|e| e.addr).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating)
        .map(|e| e.addr)
        .collect()
}

/// One port of one Service, with everything any backend needs to serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// `namespace/name:port` (the port's name, or its number when unnamed).
    pub origin: String,
    /// The port's protocol.
    pub protocol: Protocol,
    /// The Service port.
    pub port: u16,
    /// The NodePort, where the node serves one.
    pub node_port: Option<u16>,
    /// The ClusterIPs (both families of a dual-stack Service).
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// The load-balancer ingress IPs (not those of `ipMode: Proxy`).
    pub lb_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges` (empty: every source).
    pub source_ranges: Vec<Cidr>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `spec.healthCheckNodePort` of an `externalTrafficPolicy: Local`
    /// LoadBalancer Service (`None` for any other).
    pub health_check_node_port: Option<u16>,
    /// The persistence timeout of `sessionAffinity: ClientIP`, in seconds.
    pub affinity_timeout: Option<u32>,
    /// The scheduling the Service's annotations ask for (`None`: the
    /// node's default, `-s`).
    pub scheduling: Option<Scheduling>,
    /// Every endpoint of the port, local and not, of both families.
    pub endpoints: Vec<Endpoint>,
    /// The firewall mark of the port's in-cluster traffic to its
    /// load-balancer and external IPs and its NodePort, when
    /// `externalTrafficPolicy: Local` (assigned by [`crate::mapping::assign_fwmarks`]; `None`
    /// before, and for every other port).
    pub fwmark: Option<u32>,
}

/// How a Service's annotations ask its virtual services to be scheduled
/// (`ipvsadm-rs.io/scheduler`, `kube-router.io/service.scheduler` and
/// their flags: [`mod@crate::mapping::scheduling`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduling {
    /// The IPVS scheduler (`rr`, `mh`, ...).
    pub scheduler: String,
    /// The scheduler flags `flag-1`, `flag-2`, `flag-3` (IPVS's
    /// `IP_VS_SVC_F_SCHED1` to `3`: for `sh` and `mh`, fallback and port).
    pub flags: [bool; 3],
}

impl ServicePort {
    /// The endpoints of one family that serve ClusterIP traffic
    /// (`internalTrafficPolicy`, topology hints), as kube-proxy's
    /// `CategorizeEndpoints` chooses them.
    pub fn internal_endpoints(&self, v4: bool) -> Vec<SocketAddr> {
        self.select(v4, self.internal_local)
    }

    /// The endpoints of one family that serve NodePort, external and
    /// load-balancer traffic (`externalTrafficPolicy`, topology hints).
    pub fn external_endpoints(&self, v4: bool) -> Vec<SocketAddr> {
        self.select(v4, self.external_local)
    }

    /// The endpoints of one family that serve Cluster traffic (topology
    /// hints, no traffic policy): those of in-cluster traffic to an
    /// `externalTrafficPolicy: Local` port's load-balancer and external
    /// IPs, as kube-proxy's nftables mode short-circuits it to the
    /// Service's cluster chain.
    pub fn cluster_endpoints(&self, v4: bool) -> Vec<SocketAddr> {
        self.select(v4, false)
    }

    /// Whether the port's in-cluster traffic to its load-balancer and
    /// external IPs and its NodePort needs a firewall-mark virtual
    /// service of its own (`externalTrafficPolicy: Local` with such an
    /// address or a NodePort: kube-proxy's nftables mode short-circuits
    /// all of its external traffic from pods and the node).
    pub fn wants_fwmark(&self) -> bool {
        self.external_local
            && (!self.lb_ips.is_empty()
                || !self.external_ips.is_empty()
                || self.node_port.is_some())
    }

    /// A Local policy: this node's ready endpoints, else its serving and
    /// terminating ones (whatever other nodes have), topology ignored.
    /// Cluster: [`cluster_usable`]. Per family, as kube-proxy runs one
    /// proxier per family.
    fn select(&self, v4: bool, local_only: bool) -> Vec<SocketAddr> {
        let fam = self.endpoints.iter().filter(|e| e.addr.is_ipv4() == v4);
        if local_only {
            usable(fam.filter(|e| e.local))
        } else {
            cluster_usable(fam)
        }
    }

    /// The addresses this port is served on that the node binds to its
    /// dummy interface: ClusterIPs, external IPs, load-balancer IPs.
    pub fn bound_ips(&self) -> impl Iterator<Item = &IpAddr> {
        self.cluster_ips
            .iter()
            .chain(&self.external_ips)
            .chain(&self.lb_ips)
    }
}

/// Why a Service cannot be served: it is skipped, the rest are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The Service has no `spec`.
    NoSpec,
    /// An address field holds no IP address.
    BadAddress {
        /// Which field (`ClusterIP`, `externalIP`, ...).
        field: &'static str,
        /// Its text.
        text: String,
    },
    /// A port's protocol is none of TCP, UDP and SCTP.
    UnknownProtocol {
        /// The port (Service port number, or the slice port's name).
        port: String,
        /// The protocol's text.
        protocol: String,
    },
    /// A port number out of 1 to 65535.
    BadPort {
        /// Which field (`port`, `nodePort`, `healthCheckNodePort`).
        field: &'static str,
        /// The number.
        value: i32,
    },
    /// A `loadBalancerSourceRanges` entry that is no CIDR.
    BadSourceRange(String),
    /// `sessionAffinity` or its timeout cannot be used.
    BadAffinity(String),
    /// One of the Service's EndpointSlices cannot be read.
    BadSlice {
        /// `namespace/name` of the slice.
        slice: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A Service that cannot be served, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `namespace/name` of the Service.
    pub service: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Service {}: ", self.service)?;
        match &self.kind {
            ProblemKind::NoSpec => f.write_str("no spec")?,
            ProblemKind::BadAddress { field, text } => {
                write!(f, "{field} {text:?} is not an IP address")?
            }
            ProblemKind::UnknownProtocol { port, protocol } => {
                write!(f, "port {port}: unknown protocol {protocol:?}")?
            }
            ProblemKind::BadPort { field, value } => {
                write!(f, "{field} {value} is not a port number")?
            }
            ProblemKind::BadSourceRange(text) => {
                write!(f, "loadBalancerSourceRanges: {text:?} is not a CIDR")?
            }
            ProblemKind::BadAffinity(why) => f.write_str(why)?,
            ProblemKind::BadSlice { slice, reason } => {
                write!(f, "EndpointSlice {slice}: {reason}")?
            }
        }
        f.write_str(": skipped")
    }
}

impl std::error::Error for Problem {}

/// What the node must serve: every usable Service port, and the
/// Services skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// The ports, in the order of their Services (by namespace and name).
    pub ports: Vec<ServicePort>,
    /// The Services that cannot be served.
    pub problems: Vec<Problem>,
    /// Notes for the operator (an address that can be no virtual
    /// address, say), none of which stops a Service.
    pub warnings: Vec<String>,
}

/// A `healthCheckNodePort` this node answers, as kube-proxy's service
/// health server does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The Service's ready endpoints on this node (distinct addresses
    /// over all its ports).
    pub local_endpoints: usize,
}

/// The `healthCheckNodePort`s of the `externalTrafficPolicy: Local`
/// LoadBalancer Services among `ports`, by port, each with the Service's
/// ready endpoints on this node (distinct addresses over all its ports,
/// as kube-proxy's `LocalReadyEndpoints`); a port two Services claim
/// (which the API server does not allow) goes to the first.
pub fn health_checks(ports: &[ServicePort]) -> std::collections::BTreeMap<u16, HealthCheck> {
    let mut out = std::collections::BTreeMap::new();
    let mut locals: std::collections::BTreeMap<(&str, &str), Vec<IpAddr>> =
        std::collections::BTreeMap::new();
    for p in ports.iter().filter(|p| p.health_check_node_port.is_some()) {
        let list = locals.entry((&p.namespace, &p.name)).or_default();
        for ep in p.endpoints.iter().filter(|e| e.local && e.ready) {
            if !list.contains(&ep.addr.ip()) {
                list.push(ep.addr.ip());
            }
        }
    }
    for p in ports {
        let Some(port) = p.health_check_node_port else {
            continue;
        };
        let count = locals
            .get(&(&p.namespace[..], &p.name[..]))
            .map_or(0, Vec::len);
        out.entry(port).or_insert_with(|| HealthCheck {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            local_endpoints: count,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_read_as_kube_proxy_reads_them() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(&"10.255.0.1".parse().unwrap()));
        assert!(!c.contains(&"11.0.0.1".parse().unwrap()));
        assert!(!c.contains(&"::a00:1".parse().unwrap()));
        assert_eq!(
            " 192.0.2.7 ".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            "fd00::1/64".parse::<Cidr>().unwrap().to_string(),
            "fd00::/64"
        );
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
            "::/129",
            "1.2.3.4/08x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }
}
