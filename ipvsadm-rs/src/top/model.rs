//! The pure part of `--top`: a sample of the table, the rates between two
//! samples, and the rows a view shows (filtered, sorted, expanded). No
//! I/O and no clock: samples carry the instant they were read at, given
//! by the caller.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ipvs_netlink::{Destination, Protocol, Service, ServiceId, Stats};

use crate::format::sort::{cmp_dests, cmp_services};

/// One read of the table: every service with its real servers, and when
/// it was read (time since an origin the caller chooses).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// When the read ended.
    pub at: Duration,
    /// How long the read took (one dump of services, one of each
    /// service's real servers).
    pub took: Duration,
    /// The table, in the kernel's order.
    pub table: Vec<(Service, Vec<Destination>)>,
}

/// Per-second rates computed from the 64-bit counters of two samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Connections scheduled per second.
    pub conns: f64,
    /// Incoming packets per second.
    pub in_packets: f64,
    /// Outgoing packets per second.
    pub out_packets: f64,
    /// Incoming bytes per second.
    pub in_bytes: f64,
    /// Outgoing bytes per second.
    pub out_bytes: f64,
}

/// The rates between two readings of one set of counters over `elapsed`,
/// or `None` when they cannot be told: no earlier reading (a new service
/// or real server, or the first sample), no counters, no time between
/// them, or a counter that went back (zeroed with `-Z`, or the object
/// deleted and made again between two samples): never a negative or a
/// wrapped-around rate.
pub fn rates(before: Option<&Stats>, after: Option<&Stats>, elapsed: Duration) -> Option<Rates> {
    let (b, a) = (before?, after?);
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let per = |x: u64, y: u64| y.checked_sub(x).map(|d| d as f64 / secs);
    Some(Rates {
        conns: per(b.conns, a.conns)?,
        in_packets: per(b.in_pkts, a.in_pkts)?,
        out_packets: per(b.out_pkts, a.out_pkts)?,
        in_bytes: per(b.in_bytes, a.in_bytes)?,
        out_bytes: per(b.out_bytes, a.out_bytes)?,
    })
}

/// A real server of a frame: what the kernel says, and its rates.
#[derive(Debug, Clone)]
pub struct DestRow {
    /// The real server as read.
    pub dest: Destination,
    /// Its rates since the previous sample (`None`: see [`rates`]).
    pub rates: Option<Rates>,
}

/// A virtual service of a frame.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    /// The service as read.
    pub service: Service,
    /// Its rates since the previous sample.
    pub rates: Option<Rates>,
    /// Its real servers, in the kernel's order.
    pub dests: Vec<DestRow>,
    /// The sum of its real servers' active connections.
    pub active: u64,
    /// The sum of their inactive connections.
    pub inactive: u64,
    /// The sum of their weights.
    pub weight: u64,
    /// Whether `--from-k8s` owns it (its state file records it), and
    /// the Kubernetes name when one is known.
    pub owner: Option<String>,
}

/// One refresh: a sample with the rates since the one before.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// The frame's number, from 1.
    pub number: u64,
    /// The time between the previous sample and this one (`None` for
    /// the first).
    pub interval: Option<Duration>,
    /// How long this frame's read of the table took.
    pub took: Duration,
    /// When its sample was read (from the view's start): the next
    /// frame's rates are over the time since.
    pub at: Duration,
    /// Every service, in the kernel's order.
    pub services: Vec<ServiceRow>,
}

/// What `--from-k8s` owns: each service it recorded, with the name to show
/// beside it (empty when the state file records none).
pub type Owners = HashMap<ServiceId, String>;

/// The frame of `now`, with rates against `before` (the previous frame:
/// its services and real servers are the previous sample's, so a view
/// keeps one table, not a sample beside its frame).
pub fn frame(number: u64, before: Option<&Frame>, now: Sample, owners: &Owners) -> Frame {
    let interval = before.and_then(|b| now.at.checked_sub(b.at));
    let elapsed = interval.unwrap_or_default();
    let earlier: HashMap<ServiceId, (&Service, HashMap<_, &Destination>)> = before
        .map(|b| {
            b.services
                .iter()
                .map(|s| {
                    let dests = s.dests.iter().map(|d| (d.dest.socket_addr(), &d.dest));
                    (s.service.id, (&s.service, dests.collect()))
                })
                .collect()
        })
        .unwrap_or_default();
    let services = now
        .table
        .into_iter()
        .map(|(service, dests)| {
            let old = earlier.get(&service.id);
            let dests: Vec<DestRow> = dests
                .into_iter()
                .map(|dest| {
                    let was = old.and_then(|(_, d)| d.get(&dest.socket_addr()));
                    DestRow {
                        rates: rates(
                            was.and_then(|w| w.stats.as_ref()),
                            dest.stats.as_ref(),
                            elapsed,
                        ),
                        dest,
                    }
                })
                .collect();
            ServiceRow {
                rates: rates(
                    old.and_then(|(s, _)| s.stats.as_ref()),
                    service.stats.as_ref(),
                    elapsed,
                ),
                active: dests.iter().map(|d| u64::from(d.dest.active_conns)).sum(),
                inactive: dests.iter().map(|d| u64::from(d.dest.inactive_conns)).sum(),
                weight: dests.iter().map(|d| u64::from(d.dest.weight)).sum(),
                owner: owners.get(&service.id).cloned(),
                service,
                dests,
            }
        })
        .collect();
    Frame {
        number,
        interval,
        took: now.took,
        at: now.at,
        services,
    }
}

/// A column of the view, by which it can be sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// The service (protocol, address, port) in ipvsadm's order; a real
    /// server by address.
    Service,
    /// The scheduler (real servers: the forwarding method).
    Scheduler,
    /// Weight (a service: the sum of its real servers').
    Weight,
    /// Active connections.
    Active,
    /// Inactive connections.
    Inactive,
    /// Connections per second.
    Conns,
    /// Incoming packets per second.
    InPackets,
    /// Outgoing packets per second.
    OutPackets,
    /// Incoming bytes per second.
    InBytes,
    /// Outgoing bytes per second.
    OutBytes,
    /// The Kubernetes name.
    Name,
}

impl Column {
    /// Every column, in the order shown.
    pub const ALL: [Column; 11] = [
        Column::Service,
        Column::Scheduler,
        Column::Weight,
        Column::Active,
        Column::Inactive,
        Column::Conns,
        Column::InPackets,
        Column::OutPackets,
        Column::InBytes,
        Column::OutBytes,
        Column::Name,
    ];

    /// Its heading.
    pub fn title(self) -> &'static str {
        match self {
            Column::Service => "Prot LocalAddress:Port",
            Column::Scheduler => "Sched",
            Column::Weight => "Weight",
            Column::Active => "ActConn",
            Column::Inactive => "InActConn",
            Column::Conns => "Conn/s",
            Column::InPackets => "InPkt/s",
            Column::OutPackets => "OutPkt/s",
            Column::InBytes => "InByte/s",
            Column::OutBytes => "OutByte/s",
            Column::Name => "Kubernetes",
        }
    }

    /// The next column (wrapping), for the sort keys.
    pub fn next(self) -> Column {
        let i = Column::ALL.iter().position(|c| *c == self).unwrap_or(0);
        Column::ALL[(i + 1) % Column::ALL.len()]
    }

    /// The previous column (wrapping).
    pub fn previous(self) -> Column {
        let i = Column::ALL.iter().position(|c| *c == self).unwrap_or(0);
        Column::ALL[(i + Column::ALL.len() - 1) % Column::ALL.len()]
    }

    /// Whether it is a number, sorted largest first by default.
    pub fn numeric(self) -> bool {
        !matches!(self, Column::Service | Column::Scheduler | Column::Name)
    }
}

fn rate_of(r: Option<&Rates>, c: Column) -> f64 {
    // An unknown rate sorts below every known one.
    let Some(r) = r else { return -1.0 };
    match c {
        Column::Conns => r.conns,
        Column::InPackets => r.in_packets,
        Column::OutPackets => r.out_packets,
        Column::InBytes => r.in_bytes,
        Column::OutBytes => r.out_bytes,
        _ => 0.0,
    }
}

fn ordering(v: i32) -> Ordering {
    v.cmp(&0)
}

/// Orders two services by `column` alone (ties: `Equal`).
pub fn by_column(a: &ServiceRow, b: &ServiceRow, column: Column) -> Ordering {
    match column {
        Column::Service => Ordering::Equal,
        Column::Scheduler => a.service.scheduler.cmp(&b.service.scheduler),
        Column::Weight => a.weight.cmp(&b.weight),
        Column::Active => a.active.cmp(&b.active),
        Column::Inactive => a.inactive.cmp(&b.inactive),
        Column::Name => a.owner.cmp(&b.owner),
        rate => rate_of(a.rates.as_ref(), rate).total_cmp(&rate_of(b.rates.as_ref(), rate)),
    }
}

/// Orders two services by `column` (ties: ipvsadm's order).
pub fn cmp_service_rows(a: &ServiceRow, b: &ServiceRow, column: Column) -> Ordering {
    by_column(a, b, column).then_with(|| ordering(cmp_services(&a.service, &b.service)))
}

/// Orders two real servers by `column` alone (ties: `Equal`).
pub fn dest_by_column(a: &DestRow, b: &DestRow, column: Column) -> Ordering {
    match column {
        Column::Service | Column::Name => Ordering::Equal,
        Column::Scheduler => a.dest.forward.to_raw().cmp(&b.dest.forward.to_raw()),
        Column::Weight => a.dest.weight.cmp(&b.dest.weight),
        Column::Active => a.dest.active_conns.cmp(&b.dest.active_conns),
        Column::Inactive => a.dest.inactive_conns.cmp(&b.dest.inactive_conns),
        rate => rate_of(a.rates.as_ref(), rate).total_cmp(&rate_of(b.rates.as_ref(), rate)),
    }
}

/// Orders two real servers by `column` (ties: ipvsadm's order).
pub fn cmp_dest_rows(a: &DestRow, b: &DestRow, column: Column) -> Ordering {
    dest_by_column(a, b, column).then_with(|| ordering(cmp_dests(&a.dest, &b.dest)))
}

/// The protocol's name as the view shows it.
pub fn protocol_name(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "TCP".into(),
        Protocol::Udp => "UDP".into(),
        Protocol::Sctp => "SCTP".into(),
        other => other.to_raw().to_string(),
    }
}

/// A service as the view names it: `TCP  10.0.0.1:80`, `FWM  42`.
pub fn service_label(id: &ServiceId) -> String {
    match *id {
        ServiceId::Inet {
            protocol,
            addr,
            port,
        } => format!(
            "{:<4} {}",
            protocol_name(protocol),
            std::net::SocketAddr::new(addr, port)
        ),
        ServiceId::Fwmark { mark, .. } => format!("FWM  {mark}"),
    }
}

/// Whether a service matches the filter `text` (empty: all do): each
/// blank-separated word must be found, without regard to case, in the
/// service's label (protocol, address, port), its Kubernetes name, or
/// one of its real servers' `address:port`.
pub fn matches(row: &ServiceRow, text: &str) -> bool {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    if words.is_empty() {
        return true;
    }
    let mut haystack = service_label(&row.service.id).to_lowercase();
    if let Some(name) = &row.owner {
        haystack.push(' ');
        haystack.push_str(&name.to_lowercase());
    }
    for d in &row.dests {
        haystack.push(' ');
        haystack.push_str(&d.dest.socket_addr().to_string().to_lowercase());
    }
    words.iter().all(|w| haystack.contains(w.as_str()))
}

/// How the rows are chosen and ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The sort column.
    pub column: Column,
    /// Reversed: numbers smallest first, text Z to A.
    pub reversed: bool,
    /// The filter ([`matches()`]).
    pub filter: String,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            column: Column::Service,
            reversed: false,
            filter: String::new(),
        }
    }
}

/// One line of the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A service: index in [`Frame::services`].
    Service(usize),
    /// A real server: index of its service, and its own index.
    Dest(usize, usize),
}

/// The lines of `frame` as the view shows them: the services that match
/// the filter, sorted, each followed (unless collapsed) by its real
/// servers, sorted by the same column; ties in ipvsadm's order, whichever
/// the direction.
pub fn lines(frame: &Frame, order: &Order, collapsed: &HashSet<ServiceId>) -> Vec<Line> {
    let flip = |o: Ordering, numeric: bool| {
        // Numbers: largest first unless reversed; text: A to Z unless reversed.
        if numeric != order.reversed {
            o.reverse()
        } else {
            o
        }
    };
    let numeric = order.column.numeric();
    let mut services: Vec<usize> = (0..frame.services.len())
        .filter(|&i| matches(&frame.services[i], &order.filter))
        .collect();
    services.sort_by(|&a, &b| {
        let (a, b) = (&frame.services[a], &frame.services[b]);
        flip(by_column(a, b, order.column), numeric)
            .then_with(|| ordering(cmp_services(&a.service, &b.service)))
    });
    let mut out = Vec::with_capacity(services.len());
    for i in services {
        out.push(Line::Service(i));
        let row = &frame.services[i];
        if collapsed.contains(&row.service.id) {
            continue;
        }
        let mut dests: Vec<usize> = (0..row.dests.len()).collect();
        dests.sort_by(|&a, &b| {
            let (a, b) = (&row.dests[a], &row.dests[b]);
            flip(dest_by_column(a, b, order.column), numeric)
                .then_with(|| ordering(cmp_dests(&a.dest, &b.dest)))
        });
        out.extend(dests.into_iter().map(|d| Line::Dest(i, d)));
    }
    out
}

/// A rate as the view shows it: `-` when unknown, else rounded to a whole
/// number below 10,000 (one decimal below 10), then with K, M, G, T
/// (powers of 1,000) and one decimal.
pub fn human_rate(r: Option<f64>) -> String {
    let Some(v) = r else { return "-".into() };
    if v < 10.0 {
        return format!("{v:.1}");
    }
    if v < 10_000.0 {
        return format!("{v:.0}");
    }
    let mut v = v;
    for unit in ["K", "M", "G", "T"] {
        v /= 1000.0;
        if v < 1000.0 || unit == "T" {
            return format!("{v:.1}{unit}");
        }
    }
    format!("{v:.1}T")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::ForwardMethod;

    fn stats(conns: u64, pkts: u64, bytes: u64) -> Stats {
        let mut s = Stats::default();
        s.conns = conns;
        s.in_pkts = pkts;
        s.out_pkts = pkts / 2;
        s.in_bytes = bytes;
        s.out_bytes = bytes / 2;
        s
    }

    fn svc(vip: &str, s: Option<Stats>) -> Service {
        let mut svc = Service::new(ServiceId::tcp(vip.parse().unwrap()), "rr");
        svc.stats = s;
        svc
    }

    fn dest(addr: &str, weight: u32, active: u32, s: Option<Stats>) -> Destination {
        let mut d = Destination::new(addr.parse().unwrap()).weight(weight);
        d.forward = ForwardMethod::Masquerade;
        d.active_conns = active;
        d.stats = s;
        d
    }

    fn sample(secs: u64, table: Vec<(Service, Vec<Destination>)>) -> Sample {
        Sample {
            at: Duration::from_secs(secs),
            took: Duration::ZERO,
            table,
        }
    }

    #[test]
    fn rates_are_the_counters_difference_over_the_time_between() {
        let r = rates(
            Some(&stats(10, 100, 1000)),
            Some(&stats(30, 500, 9000)),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(r.conns, 10.0);
        assert_eq!(r.in_packets, 200.0);
        assert_eq!(r.out_packets, 100.0);
        assert_eq!(r.in_bytes, 4000.0);
        assert_eq!(r.out_bytes, 2000.0);
    }

    #[test]
    fn a_counter_that_went_back_or_no_time_gives_no_rate() {
        let big = stats(u64::MAX, 5, 5);
        let zeroed = stats(0, 0, 0);
        let one = Duration::from_secs(1);
        assert_eq!(rates(Some(&big), Some(&zeroed), one), None);
        assert_eq!(rates(Some(&zeroed), Some(&zeroed), Duration::ZERO), None);
        assert_eq!(rates(None, Some(&zeroed), one), None);
        // 64-bit counters: a large step is a rate, not an overflow.
        let r = rates(Some(&zeroed), Some(&stats(0, u64::MAX, 0)), one).unwrap();
        assert_eq!(r.in_packets, u64::MAX as f64);
    }

    #[test]
    fn frames_rate_each_service_and_server_against_the_same_one_before() {
        let owners: Owners = [(
            ServiceId::tcp("10.0.0.2:80".parse().unwrap()),
            "default/web:http".to_owned(),
        )]
        .into();
        let first = sample(
            10,
            vec![(
                svc("10.0.0.1:80", Some(stats(1, 10, 100))),
                vec![dest("10.1.0.1:80", 1, 0, Some(stats(1, 10, 100)))],
            )],
        );
        let second = sample(
            14,
            vec![
                (
                    svc("10.0.0.2:80", Some(stats(0, 0, 0))),
                    vec![dest("10.1.0.9:80", 3, 2, Some(stats(0, 0, 0)))],
                ),
                (
                    svc("10.0.0.1:80", Some(stats(5, 50, 500))),
                    vec![
                        dest("10.1.0.2:80", 1, 4, Some(stats(2, 2, 2))),
                        dest("10.1.0.1:80", 2, 1, Some(stats(3, 30, 300))),
                    ],
                ),
            ],
        );
        let first = frame(1, None, first, &owners);
        let f = frame(2, Some(&first), second, &owners);
        assert_eq!(f.interval, Some(Duration::from_secs(4)));
        // New: no rate.
        assert_eq!(f.services[0].rates, None);
        assert_eq!(f.services[0].owner.as_deref(), Some("default/web:http"));
        let old = &f.services[1];
        assert_eq!(old.rates.unwrap().conns, 1.0);
        assert_eq!(old.rates.unwrap().in_bytes, 100.0);
        assert_eq!((old.active, old.weight), (5, 3));
        assert_eq!(old.dests[0].rates, None);
        assert_eq!(old.dests[1].rates.unwrap().in_packets, 5.0);
        assert_eq!(old.owner, None);
    }

    #[test]
    fn sorting_filtering_and_collapsing() {
        let table = vec![
            (
                svc("10.0.0.2:80", Some(stats(0, 0, 0))),
                vec![dest("10.1.0.9:80", 3, 2, None)],
            ),
            (
                svc("10.0.0.1:443", Some(stats(0, 0, 0))),
                vec![
                    dest("10.1.0.2:80", 1, 4, None),
                    dest("10.1.0.1:80", 2, 1, None),
                ],
            ),
        ];
        let f = frame(1, None, sample(1, table), &Owners::new());
        let mut order = Order::default();
        let none = HashSet::new();
        // ipvsadm's order: 10.0.0.1 first, real servers by address.
        assert_eq!(
            lines(&f, &order, &none),
            [
                Line::Service(1),
                Line::Dest(1, 1),
                Line::Dest(1, 0),
                Line::Service(0),
                Line::Dest(0, 0)
            ]
        );
        order.column = Column::Active;
        let collapsed: HashSet<ServiceId> = [f.services[1].service.id].into();
        // Largest first: 5 active before 2.
        assert_eq!(
            lines(&f, &order, &collapsed),
            [Line::Service(1), Line::Service(0), Line::Dest(0, 0)]
        );
        order.reversed = true;
        assert_eq!(lines(&f, &order, &collapsed)[0], Line::Service(0));
        // Equal weights (3 and 3): ipvsadm's order either way.
        order.column = Column::Weight;
        for reversed in [false, true] {
            order.reversed = reversed;
            assert_eq!(
                lines(&f, &order, &collapsed)[..2],
                [Line::Service(1), Line::Service(0)]
            );
        }
        order.reversed = true;
        order.filter = "TCP :443".into();
        assert_eq!(lines(&f, &order, &collapsed), [Line::Service(1)]);
        order.filter = "10.1.0.9".into();
        assert_eq!(
            lines(&f, &order, &none),
            [Line::Service(0), Line::Dest(0, 0)]
        );
        order.filter = "udp".into();
        assert!(lines(&f, &order, &none).is_empty());
    }

    #[test]
    fn human_rates() {
        assert_eq!(human_rate(None), "-");
        assert_eq!(human_rate(Some(0.0)), "0.0");
        assert_eq!(human_rate(Some(2.25)), "2.2");
        assert_eq!(human_rate(Some(9999.4)), "9999");
        assert_eq!(human_rate(Some(12_345.0)), "12.3K");
        assert_eq!(human_rate(Some(4.5e9)), "4.5G");
        assert_eq!(human_rate(Some(7e15)), "7000.0T");
    }
}
