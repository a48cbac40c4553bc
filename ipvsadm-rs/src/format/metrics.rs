//! `--metrics`: one scrape of the table in Prometheus's text format
//! (version 0.0.4), encoded by prometheus-client. Pure: a [`Scrape`] in,
//! text out (docs/metrics.md lists every series).
//!
//! - node_exporter's `ipvs` collector, same names, labels and label
//!   values: the totals of /proc/net/ip_vs_stats
//!   (`node_ipvs_connections_total`, ...) and three gauges per real
//!   server (`node_ipvs_backend_connections_active`, `..._inactive`,
//!   `node_ipvs_backend_weight`), labelled `local_address`, `local_port`,
//!   `remote_address`, `remote_port`, `proto` and `local_mark`;
//! - per virtual service, its counters (`ipvs_service_*_total`, labelled
//!   as node_exporter labels a service) and kube-router's gauges of a
//!   Service port (`kube_router_service_*`, labels `namespace`,
//!   `service_name`, `service_vip`, `protocol`, `port`; firewall-mark
//!   services have no such port and are left out of them);
//! - per real server, its counters (`ipvs_backend_*_total`, node_exporter's
//!   backend labels).
//!
//! Every label comes from the table: the series are as many as its
//! services and real servers, nothing else.

use std::collections::HashMap;
use std::fmt;

use ipvs_netlink::{Destination, Service, ServiceId, Stats};

pub use super::families::Families;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The totals of /proc/net/ip_vs_stats: every packet IPVS handled in the
/// namespace, services since deleted included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections scheduled.
    pub conns: u64,
    /// Incoming packets.
    pub in_pkts: u64,
    /// Outgoing packets.
    pub out_pkts: u64,
    /// Incoming bytes.
    pub in_bytes: u64,
    /// Outgoing bytes.
    pub out_bytes: u64,
}

/// Reads the text of /proc/net/ip_vs_stats: two title lines, then the
/// five totals in hexadecimal (then the rates, not read). `None` when the
/// text is not of that shape.
pub fn parse_ip_vs_stats(text: &str) -> Option<Totals> {
    let line = text.lines().nth(2)?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|w| u64::from_str_radix(w, 16).ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [conns, in_pkts, out_pkts, in_bytes, out_bytes] => Some(Totals {
            conns,
            in_pkts,
            out_pkts,
            in_bytes,
            out_bytes,
        }),
        _ => None,
    }
}

/// What one scrape read: the totals (when /proc has them) and the table,
/// each service with its real servers.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// /proc/net/ip_vs_stats.
    pub totals: Option<Totals>,
    /// The services and their real servers, as one dump read them.
    pub services: Vec<(Service, Vec<Destination>)>,
    /// The Kubernetes names (`namespace/name:port`) the `--from-k8s`
    /// state file records of the services it created.
    pub names: HashMap<ServiceId, String>,
    /// The families to encode (all by default); the real servers may be
    /// left unread when none of these needs them
    /// ([`Families::reads_real_servers`]).
    pub families: Families,
}

/// A Kubernetes name `namespace/name:port` as kube-router's labels
/// `namespace`, `service_name` and ours `port_name` (the port's name, or
/// its number when unnamed); `None` when it is not of that shape.
pub fn name_labels(name: &str) -> Option<[(&'static str, &str); 3]> {
    let (namespace, rest) = name.split_once('/')?;
    let (service, port) = rest.rsplit_once(':')?;
    Some([
        ("namespace", namespace),
        ("service_name", service),
        ("port_name", port),
    ])
}

/// The scrape as Prometheus's text format, whole.
pub fn render(scrape: Scrape) -> Result<String, fmt::Error> {
    let mut text = String::new();
    encode(scrape, &mut text)?;
    Ok(text)
}

/// Writes the scrape in Prometheus's text format to `out` as it is
/// encoded, family after family (prometheus-client hands its writer a
/// few KB at a time): the table is held, the text never is whole. Each
/// service's and real server's label values are spelled once, and
/// every sample's labels borrow them.
pub fn encode<W: fmt::Write>(scrape: Scrape, out: &mut W) -> fmt::Result {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Table(scrape)));
    prometheus_client::encoding::prometheus_text::encode(out, &registry)
}

/// The collector of one scrape: it encodes what was read, no more.
#[derive(Debug)]
struct Table(Scrape);

/// A piece of [`Spelled::text`]: its start and end.
#[derive(Debug, Clone, Copy)]
struct Span(u32, u32);

/// The label values of a table, spelled once into one string: every
/// sample's labels are slices of it.
#[derive(Debug, Default)]
struct Spelled {
    text: String,
}

impl Spelled {
    /// Appends `value` as written by `Display`; its span.
    fn push(&mut self, value: impl fmt::Display) -> Result<Span, fmt::Error> {
        use fmt::Write;
        let start = self.text.len();
        write!(self.text, "{value}")?;
        Ok(Span(span_at(start)?, span_at(self.text.len())?))
    }

    fn get(&self, span: Span) -> &str {
        self.text
            .get(span.0 as usize..span.1 as usize)
            .unwrap_or("")
    }
}

/// An offset of [`Spelled::text`] (under 4 GiB: a table of 16 million
/// real servers).
fn span_at(offset: usize) -> Result<u32, fmt::Error> {
    u32::try_from(offset).map_err(|_| fmt::Error)
}

/// A virtual service's label values, as node_exporter spells them from
/// /proc/net/ip_vs (a firewall mark in eight upper-case hex digits, its
/// address empty and its port 0) and kube-router from the service
/// (protocol in lower case), with the Kubernetes name the state file
/// records.
#[derive(Debug)]
struct ServiceText {
    addr: Span,
    port: Span,
    proto: Span,
    mark: Span,
    /// kube-router's `protocol`: `None` for a firewall mark (no Service
    /// port: no kube-router series).
    protocol: Option<Span>,
    /// `namespace`, `service_name`, `port_name`.
    names: Option<[Span; 3]>,
}

/// A real server's own label values: `remote_address`, `remote_port`.
#[derive(Debug)]
struct BackendText {
    addr: Span,
    port: Span,
}

/// Spells the label values of service `id` (named `name` by the state
/// file) into `spelled`. Addresses are written as Go's `net.IP.String`
/// writes them (node_exporter's label values): dotted quad, or IPv6's
/// shortest form, as `IpAddr`'s `Display` does.
fn spell_service(
    spelled: &mut Spelled,
    id: &ServiceId,
    name: Option<&String>,
) -> Result<ServiceText, fmt::Error> {
    let names = match name.and_then(|n| name_labels(n)) {
        Some([(_, ns), (_, svc), (_, port)]) => {
            Some([spelled.push(ns)?, spelled.push(svc)?, spelled.push(port)?])
        }
        None => None,
    };
    Ok(match *id {
        ServiceId::Inet {
            protocol,
            addr,
            port,
        } => ServiceText {
            addr: spelled.push(addr)?,
            port: spelled.push(port)?,
            proto: spelled.push(protocol)?,
            mark: spelled.push("")?,
            protocol: Some(spelled.push(protocol.to_string().to_lowercase())?),
            names,
        },
        ServiceId::Fwmark { mark, .. } => ServiceText {
            addr: spelled.push("")?,
            port: spelled.push(0)?,
            proto: spelled.push("FWM")?,
            mark: spelled.push(format_args!("{mark:08X}"))?,
            protocol: None,
            names,
        },
    })
}

/// node_exporter's labels of a virtual service: `local_address`,
/// `local_port`, `proto`, `local_mark`, then (a service the state file
/// names) `namespace`, `service_name`, `port_name`; the labels are the
/// first `n` of the array.
fn service_labels<'a>(s: &'a Spelled, t: &ServiceText) -> ([(&'static str, &'a str); 7], usize) {
    let mut labels = [
        ("local_address", s.get(t.addr)),
        ("local_port", s.get(t.port)),
        ("proto", s.get(t.proto)),
        ("local_mark", s.get(t.mark)),
        ("", ""),
        ("", ""),
        ("", ""),
    ];
    match t.names {
        Some([ns, svc, port]) => {
            labels[4] = ("namespace", s.get(ns));
            labels[5] = ("service_name", s.get(svc));
            labels[6] = ("port_name", s.get(port));
            (labels, 7)
        }
        None => (labels, 4),
    }
}

/// node_exporter's labels of a real server of a service, in its order.
fn backend_labels<'a>(
    s: &'a Spelled,
    t: &ServiceText,
    b: &BackendText,
) -> [(&'static str, &'a str); 6] {
    [
        ("local_address", s.get(t.addr)),
        ("local_port", s.get(t.port)),
        ("remote_address", s.get(b.addr)),
        ("remote_port", s.get(b.port)),
        ("proto", s.get(t.proto)),
        ("local_mark", s.get(t.mark)),
    ]
}

/// kube-router's labels of a Service port: `namespace` and
/// `service_name` (empty for a service the state file does not name),
/// `service_vip`, `protocol` (lower case, as kube-router), `port`.
/// `None` for a firewall-mark service.
fn kube_router_labels<'a>(s: &'a Spelled, t: &ServiceText) -> Option<[(&'static str, &'a str); 5]> {
    let protocol = t.protocol?;
    let (namespace, service) = match t.names {
        Some([ns, svc, _]) => (s.get(ns), s.get(svc)),
        None => ("", ""),
    };
    Some([
        ("namespace", namespace),
        ("service_name", service),
        ("service_vip", s.get(t.addr)),
        ("protocol", s.get(protocol)),
        ("port", s.get(t.port)),
    ])
}

/// One counter of [`Stats`], with its name and help.
type StatsField = (&'static str, &'static str, fn(&Stats) -> u64);

/// The counters of a service or real server, by the name after the
/// prefix (`_total` is added by the encoder).
const COUNTERS: [StatsField; 5] = [
    ("connections", "Connections scheduled", |s| s.conns),
    ("incoming_packets", "Incoming packets", |s| s.in_pkts),
    ("outgoing_packets", "Outgoing packets", |s| s.out_pkts),
    ("incoming_bytes", "Incoming bytes", |s| s.in_bytes),
    ("outgoing_bytes", "Outgoing bytes", |s| s.out_bytes),
];

/// kube-router's gauges of a Service port: the counters and the kernel's
/// rate estimates.
const KUBE_ROUTER: [StatsField; 10] = [
    (
        "kube_router_service_total_connections",
        "Total incoming connections made",
        |s| s.conns,
    ),
    (
        "kube_router_service_packets_in",
        "Total incoming packets",
        |s| s.in_pkts,
    ),
    (
        "kube_router_service_packets_out",
        "Total outgoing packets",
        |s| s.out_pkts,
    ),
    (
        "kube_router_service_bytes_in",
        "Total incoming bytes",
        |s| s.in_bytes,
    ),
    (
        "kube_router_service_bytes_out",
        "Total outgoing bytes",
        |s| s.out_bytes,
    ),
    (
        "kube_router_service_pps_in",
        "Incoming packets per second",
        |s| s.in_pps,
    ),
    (
        "kube_router_service_pps_out",
        "Outgoing packets per second",
        |s| s.out_pps,
    ),
    (
        "kube_router_service_cps",
        "Service connections per second",
        |s| s.cps,
    ),
    (
        "kube_router_service_bps_in",
        "Incoming bytes per second",
        |s| s.in_bps,
    ),
    (
        "kube_router_service_bps_out",
        "Outgoing bytes per second",
        |s| s.out_bps,
    ),
];

/// One gauge of a [`Destination`], with its name and help.
type DestField = (&'static str, &'static str, fn(&Destination) -> u64);

/// The gauges node_exporter has per real server.
const BACKEND_GAUGES: [DestField; 3] = [
    (
        "node_ipvs_backend_connections_active",
        "The current active connections by local and remote address.",
        |d| u64::from(d.active_conns),
    ),
    (
        "node_ipvs_backend_connections_inactive",
        "The current inactive connections by local and remote address.",
        |d| u64::from(d.inactive_conns),
    ),
    (
        "node_ipvs_backend_weight",
        "The current backend weight by local and remote address.",
        |d| u64::from(d.weight),
    ),
];

/// `all` when its family is `on`, else nothing.
fn only<T>(on: bool, all: &[T]) -> &[T] {
    if on {
        all
    } else {
        &[]
    }
}

impl Collector for Table {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let scrape = &self.0;
        let families = scrape.families;
        let zero = Stats::default();
        let stats = |s: &Option<Stats>| s.unwrap_or(zero);
        if let Some(t) = scrape.totals.filter(|_| families.node) {
            let totals: [(&str, &str, u64); 5] = [
                (
                    "node_ipvs_connections",
                    "The total number of connections made.",
                    t.conns,
                ),
                (
                    "node_ipvs_incoming_packets",
                    "The total number of incoming packets.",
                    t.in_pkts,
                ),
                (
                    "node_ipvs_outgoing_packets",
                    "The total number of outgoing packets.",
                    t.out_pkts,
                ),
                (
                    "node_ipvs_incoming_bytes",
                    "The total amount of incoming data.",
                    t.in_bytes,
                ),
                (
                    "node_ipvs_outgoing_bytes",
                    "The total amount of outgoing data.",
                    t.out_bytes,
                ),
            ];
            for (name, help, value) in totals {
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                ConstCounter::new(value).encode(metric)?;
            }
        }
        // Each service's and real server's label values, spelled once
        // for all the families that carry them.
        let mut spelled = Spelled::default();
        let mut services = Vec::with_capacity(scrape.services.len());
        let mut backends = Vec::new();
        for (svc, dests) in &scrape.services {
            services.push(spell_service(
                &mut spelled,
                &svc.id,
                scrape.names.get(&svc.id),
            )?);
            if !families.reads_real_servers() {
                continue;
            }
            for d in dests {
                backends.push(BackendText {
                    addr: spelled.push(d.addr)?,
                    port: spelled.push(d.port)?,
                });
            }
        }
        let s = &spelled;
        // Every real server with its service's spelling and its own.
        let each_backend = || {
            scrape
                .services
                .iter()
                .zip(&services)
                .flat_map(|((_, dests), t)| dests.iter().map(move |d| (t, d)))
                .zip(&backends)
        };
        for &(name, help, value) in only(families.node, &BACKEND_GAUGES) {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((t, dest), b) in each_backend() {
                ConstGauge::new(value(dest))
                    .encode(family.encode_family(&backend_labels(s, t, b))?)?;
            }
        }
        for &(name, help, value) in only(families.service, &COUNTERS) {
            let name = format!("ipvs_service_{name}");
            let help = format!("{help} by the virtual service.");
            let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
            for ((svc, _), t) in scrape.services.iter().zip(&services) {
                let (labels, n) = service_labels(s, t);
                ConstCounter::new(value(&stats(&svc.stats)))
                    .encode(family.encode_family(&labels.get(..n).unwrap_or(&labels[..]))?)?;
            }
        }
        for &(name, help, value) in only(families.backend, &COUNTERS) {
            let name = format!("ipvs_backend_{name}");
            let help = format!("{help} by the real server of a virtual service.");
            let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
            for ((t, dest), b) in each_backend() {
                ConstCounter::new(value(&stats(&dest.stats)))
                    .encode(family.encode_family(&backend_labels(s, t, b))?)?;
            }
        }
        for &(name, help, value) in only(families.kube_router, &KUBE_ROUTER) {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((svc, _), t) in scrape.services.iter().zip(&services) {
                if let Some(labels) = kube_router_labels(s, t) {
                    ConstGauge::new(value(&stats(&svc.stats)))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
