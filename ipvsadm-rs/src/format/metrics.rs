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
use std::net::IpAddr;

use ipvs_netlink::{Destination, Service, ServiceId, Stats};
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
}

/// A Kubernetes name `namespace/name:port` as kube-router's labels
/// `namespace`, `service_name` and ours `port_name` (the port's name, or
/// its number when unnamed); `None` when it is not of that shape.
pub fn name_labels(name: &str) -> Option<[(&'static str, String); 3]> {
    let (namespace, rest) = name.split_once('/')?;
    let (service, port) = rest.rsplit_once(':')?;
    Some([
        ("namespace", namespace.to_owned()),
        ("service_name", service.to_owned()),
        ("port_name", port.to_owned()),
    ])
}

/// The scrape as Prometheus's text format.
pub fn render(scrape: Scrape) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Table(scrape)));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The collector of one scrape: it encodes what was read, no more.
#[derive(Debug)]
struct Table(Scrape);

/// node_exporter's labels of a virtual service: `local_address`,
/// `local_port`, `proto`, `local_mark` (as /proc/net/ip_vs shows a
/// service: a firewall mark in eight upper-case hex digits, its address
/// empty and its port 0).
fn service_labels(id: &ServiceId) -> [(&'static str, String); 4] {
    let (addr, port, proto, mark) = match *id {
        ServiceId::Inet {
            protocol,
            addr,
            port,
        } => (ip(addr), port, protocol.to_string(), String::new()),
        ServiceId::Fwmark { mark, .. } => {
            (String::new(), 0, "FWM".to_owned(), format!("{mark:08X}"))
        }
    };
    [
        ("local_address", addr),
        ("local_port", port.to_string()),
        ("proto", proto),
        ("local_mark", mark),
    ]
}

/// node_exporter's labels of a real server of a service, in its order.
fn backend_labels(id: &ServiceId, dest: &Destination) -> [(&'static str, String); 6] {
    let [addr, port, proto, mark] = service_labels(id);
    [
        addr,
        port,
        ("remote_address", ip(dest.addr)),
        ("remote_port", dest.port.to_string()),
        proto,
        mark,
    ]
}

/// An address as Go's `net.IP.String` spells it (node_exporter's label
/// values): dotted quad, or IPv6's shortest form.
fn ip(addr: IpAddr) -> String {
    addr.to_string()
}

/// kube-router's labels of a Service port: `namespace` and
/// `service_name` (empty: the state file of `--from-k8s` records no
/// names yet), `service_vip`, `protocol` (lower case, as kube-router),
/// `port`. `None` for a firewall-mark service.
fn kube_router_labels(
    id: &ServiceId,
    names: &HashMap<ServiceId, String>,
) -> Option<[(&'static str, String); 5]> {
    let [(_, namespace), (_, service), _] = names
        .get(id)
        .and_then(|n| name_labels(n))
        .unwrap_or_default();
    match *id {
        ServiceId::Inet {
            protocol,
            addr,
            port,
        } => Some([
            ("namespace", namespace),
            ("service_name", service),
            ("service_vip", ip(addr)),
            ("protocol", protocol.to_string().to_lowercase()),
            ("port", port.to_string()),
        ]),
        ServiceId::Fwmark { .. } => None,
    }
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

impl Collector for Table {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let scrape = &self.0;
        let zero = Stats::default();
        let stats = |s: &Option<Stats>| s.unwrap_or(zero);
        if let Some(t) = scrape.totals {
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
        // Each service's and real server's labels, spelled once for all
        // the families that carry them.
        let backends: Vec<_> = scrape
            .services
            .iter()
            .flat_map(|(svc, dests)| dests.iter().map(|d| (backend_labels(&svc.id, d), d)))
            .collect();
        let services: Vec<_> = scrape
            .services
            .iter()
            .map(|(svc, _)| {
                let mut labels = service_labels(&svc.id).to_vec();
                // The Kubernetes name of a service `--from-k8s` created.
                if let Some(named) = scrape.names.get(&svc.id).and_then(|n| name_labels(n)) {
                    labels.extend(named);
                }
                (labels, kube_router_labels(&svc.id, &scrape.names), svc)
            })
            .collect();
        for (name, help, value) in BACKEND_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, dest) in &backends {
                ConstGauge::new(value(dest)).encode(family.encode_family(labels)?)?;
            }
        }
        for (name, help, value) in COUNTERS {
            let name = format!("ipvs_service_{name}");
            let help = format!("{help} by the virtual service.");
            let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
            for (labels, _, svc) in &services {
                ConstCounter::new(value(&stats(&svc.stats)))
                    .encode(family.encode_family(labels)?)?;
            }
        }
        for (name, help, value) in COUNTERS {
            let name = format!("ipvs_backend_{name}");
            let help = format!("{help} by the real server of a virtual service.");
            let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
            for (labels, dest) in &backends {
                ConstCounter::new(value(&stats(&dest.stats)))
                    .encode(family.encode_family(labels)?)?;
            }
        }
        for (name, help, value) in KUBE_ROUTER {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (_, labels, svc) in &services {
                if let Some(labels) = labels {
                    ConstGauge::new(value(&stats(&svc.stats)))
                        .encode(family.encode_family(labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
