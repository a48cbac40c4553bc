//! `--json`: one JSON document per list command, with every field the
//! kernel gives. The schema is versioned by its `schema` member
//! (`ipvsadm-rs/v1`); fields are only ever added within a version.
//!
//! - numbers are JSON numbers (64-bit counters whole);
//! - addresses are strings, flags are lists of names;
//! - a service is `{protocol, address, port}` or `{fwmark, family}`;
//!   every address with a port is `address` and `port` members, every
//!   protocol a lower-case name, in every document.
//!
//! See `docs/json-schema.md` for the full description.

use serde::{Deserialize, Serialize};

use ipvs_netlink::{
    Daemon, DaemonState, Destination, Info, Netmask, Service, ServiceFlags, ServiceId, Timeouts,
    TunnelFlags, TunnelType,
};

/// The schema identifier of this version.
/// v2: `-c`'s protocol in lower case and its addresses as
/// `{address, port}`, as the table's; `--sysctls`.
pub const SCHEMA: &str = "ipvsadm-rs/v2";

/// A service of a table document: the library's serialization of the
/// service (ipvs-netlink's feature `serde`, the schema's members in its
/// order) followed by its real servers.
#[derive(Serialize)]
struct JsonService<'a> {
    #[serde(flatten)]
    service: &'a Service,
    destinations: &'a [Destination],
}

fn service<'a>(s: &'a Service, dests: &'a [Destination]) -> JsonService<'a> {
    JsonService {
        service: s,
        destinations: dests,
    }
}

#[derive(Serialize)]
struct Table<'a> {
    schema: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipvs_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_table_size: Option<u32>,
    services: Vec<JsonService<'a>>,
}

/// A document as `--json` prints it: two-space indentation, a final
/// newline.
pub(crate) fn to_text<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|e| {
        // Serialising these plain structs cannot fail; say so if it does.
        format!("{{\"error\": \"{e}\"}}")
    });
    s.push('\n');
    s
}

/// `--json=compact`: a document of this module without the whitespace
/// between its tokens (serde_json's compact form), on one line. Strings
/// are copied as they are.
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The document of a table listing; `info` is absent for one service.
pub fn table(info: Option<&Info>, services: &[(Service, Vec<Destination>)]) -> String {
    to_text(&Table {
        schema: SCHEMA,
        ipvs_version: info.map(|i| {
            let (a, b, c) = i.version_triple();
            format!("{a}.{b}.{c}")
        }),
        conn_table_size: info.map(|i| i.conn_table_size),
        services: services.iter().map(|(s, d)| service(s, d)).collect(),
    })
}

/// The document of `--timeout`.
pub fn timeouts(t: &Timeouts) -> String {
    #[derive(Serialize)]
    struct Doc {
        schema: &'static str,
        timeouts: T,
    }
    #[derive(Serialize)]
    struct T {
        tcp: u32,
        tcp_fin: u32,
        udp: u32,
    }
    to_text(&Doc {
        schema: SCHEMA,
        timeouts: T {
            tcp: t.tcp,
            tcp_fin: t.tcp_fin,
            udp: t.udp,
        },
    })
}

/// The document of `--daemon`.
pub fn daemons(list: &[Daemon]) -> String {
    #[derive(Serialize)]
    struct Doc {
        schema: &'static str,
        daemons: Vec<D>,
    }
    #[derive(Serialize)]
    struct D {
        state: String,
        interface: String,
        sync_id: u32,
        max_len: Option<u16>,
        group: Option<String>,
        port: Option<u16>,
        ttl: Option<u8>,
    }
    to_text(&Doc {
        schema: SCHEMA,
        daemons: list
            .iter()
            .map(|d| D {
                state: match d.state {
                    DaemonState::Master => "master".into(),
                    DaemonState::Backup => "backup".into(),
                    other => other.to_raw().to_string(),
                },
                interface: d.interface.clone(),
                sync_id: d.sync_id,
                max_len: d.max_len,
                group: d.group.map(|g| g.to_string()),
                port: d.port,
                ttl: d.ttl,
            })
            .collect(),
    })
}

/// An address and port, as services and real servers have them.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address (IPv6 without brackets).
    pub address: String,
    /// The port.
    pub port: u16,
}

impl From<(std::net::IpAddr, u16)> for Endpoint {
    fn from((addr, port): (std::net::IpAddr, u16)) -> Self {
        Endpoint {
            address: addr.to_string(),
            port,
        }
    }
}

/// One connection of `-c --json`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `tcp`, `udp`, `sctp` (as in the table's documents): the kernel's
    /// name in lower case.
    pub protocol: String,
    /// The client.
    pub client: Endpoint,
    /// The virtual service's address and port.
    pub virtual_address: Endpoint,
    /// The real server.
    pub destination: Endpoint,
    /// Connection state.
    pub state: String,
    /// Seconds until it expires.
    pub expires: u64,
    /// Persistence engine, if any.
    pub pe_name: Option<String>,
    /// Persistence engine data, if any.
    pub pe_data: Option<String>,
}

/// The document of `-c`.
pub fn connections(list: &[Connection]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        schema: &'static str,
        connections: &'a [Connection],
    }
    to_text(&Doc {
        schema: SCHEMA,
        connections: list,
    })
}

/// A real server of a table document, as [`read_table`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDestination {
    /// The real server's settings (its counters and connections are not
    /// read).
    pub destination: Destination,
    /// Whether the document gives `upper_threshold` (else it is 0 here
    /// and the caller may keep the kernel's).
    pub upper_given: bool,
    /// Whether the document gives `lower_threshold`.
    pub lower_given: bool,
}

/// A service of a table document with its real servers, as
/// [`read_table`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadService {
    /// The service's settings (its counters are not read).
    pub service: Service,
    /// Its real servers, in the document's order.
    pub destinations: Vec<ReadDestination>,
}

#[derive(Deserialize)]
struct InTable {
    schema: Option<String>,
    services: Option<Vec<serde_json::Value>>,
}

/// The longest scheduler or persistence engine name the kernel takes
/// (`IP_VS_SCHEDNAME_MAXLEN` and `IP_VS_PENAME_MAXLEN` less the NUL).
const MAX_NAME: usize = 15;

/// The largest weight (ipvsadm's and the kernel's bound).
const MAX_WEIGHT: u32 = 65_535;

/// The members of a service or real server that are counters or
/// connection counts: not read, whatever their shape.
const COUNTERS: [&str; 4] = [
    "stats",
    "active_conns",
    "inactive_conns",
    "persistent_conns",
];

/// `value` without its counters and without the members given as null
/// (what the document does not say).
fn settings(mut value: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(members) = &mut value {
        members.retain(|name, v| !v.is_null() && !COUNTERS.contains(&name.as_str()));
    }
    value
}

/// One service of a table document: read by the model's own reader
/// (ipvs-netlink's feature `serde`, the schema of [`table`]), then held to
/// what the kernel takes.
fn service_from(mut value: serde_json::Value) -> Result<ReadService, String> {
    let dests = match &mut value {
        serde_json::Value::Object(members) => members.remove("destinations"),
        _ => None,
    };
    let read = Service::deserialize(settings(value)).map_err(|e| e.to_string())?;
    let id = read.id;
    let at = |e: String| format!("{id}: {e}");
    if id == ServiceId::fwmark(id.family(), 0) {
        return Err("fwmark 0 marks no packet".to_owned());
    }
    if read.scheduler.is_empty() || read.scheduler.len() > MAX_NAME {
        return Err(at(format!(
            "scheduler {:?} is not a name of 1 to {MAX_NAME} bytes",
            read.scheduler
        )));
    }
    if let Netmask::V6(p) = read.netmask {
        if !(1..=128).contains(&p) {
            return Err(at(format!(
                "netmask \"{p}\" is not a prefix length of 1 to 128"
            )));
        }
    }
    let mut service = Service::new(id, read.scheduler)
        .with_flags(read.flags - ServiceFlags::HASHED)
        .with_netmask(read.netmask);
    service.timeout = read.timeout;
    if let Some(pe) = read.persistence_engine {
        if pe.is_empty() || pe.len() > MAX_NAME {
            return Err(at(format!(
                "persistence engine {pe:?} is not a name of 1 to {MAX_NAME} bytes"
            )));
        }
        service = service.with_persistence_engine(pe);
    }
    let dests = match dests {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(dests)) => dests,
        Some(_) => return Err(at("\"destinations\" is not a list".to_owned())),
    };
    let mut destinations = Vec::with_capacity(dests.len());
    for value in dests {
        let value = settings(value);
        let given = |name: &str| value.get(name).is_some();
        let (upper_given, lower_given) = (given("upper_threshold"), given("lower_threshold"));
        let mut destination = Destination::deserialize(value).map_err(|e| at(e.to_string()))?;
        if destination.weight > MAX_WEIGHT {
            return Err(at(format!(
                "real server {}: weight {} is over {MAX_WEIGHT}",
                destination.socket_addr(),
                destination.weight
            )));
        }
        // Without a tunnel, the kernel's defaults, as a restore line
        // without --tun-type gives them.
        destination.tunnel_type = destination.tunnel_type.or(Some(TunnelType::Ipip));
        destination.tunnel_port = destination.tunnel_port.or(Some(0));
        destination.tunnel_flags = destination.tunnel_flags.or(Some(TunnelFlags::empty()));
        destinations.push(ReadDestination {
            destination,
            upper_given,
            lower_given,
        });
    }
    Ok(ReadService {
        service,
        destinations,
    })
}

/// Reads back a table document as [`table`] writes it (`ipvsadm-rs -Ln
/// --json`, schema `ipvsadm-rs/v1` or `v2`, pretty or compact): each
/// service's and real server's settings, in the document's order;
/// counters, connection counts and members it does not know are ignored.
/// A real server without `upper_threshold` (`lower_threshold`) says
/// nothing about it ([`ReadDestination::upper_given`]). Refused, with a
/// message for a person: text that is not JSON (with its line and
/// column), another document, and any value the kernel would refuse or
/// that has no meaning (a weight over 65,535, an unknown flag, a
/// scheduler name of more than 15 bytes...). Duplicates are the
/// caller's to find.
pub fn read_table(text: &[u8]) -> Result<Vec<ReadService>, String> {
    // serde reads a struct from an array too (its members in order).
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            "not a table document of `ipvsadm-rs -Ln --json`: not a JSON object".to_owned(),
        );
    }
    let doc: InTable = serde_json::from_slice(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            format!("not a table document of `ipvsadm-rs -Ln --json`: {e}")
        }
        _ => format!("not valid JSON: {e}"),
    })?;
    match doc.schema.as_deref() {
        Some("ipvsadm-rs/v1" | "ipvsadm-rs/v2") => {}
        Some(other) => {
            return Err(format!(
                "schema {other:?}: this version reads ipvsadm-rs/v1 and ipvsadm-rs/v2"
            ))
        }
        None => return Err("no \"schema\": not a document of `ipvsadm-rs -Ln --json`".to_owned()),
    }
    let services = doc.services.ok_or_else(|| {
        "no \"services\": not a table document of `ipvsadm-rs -Ln --json`".to_owned()
    })?;
    services
        .into_iter()
        .enumerate()
        .map(|(i, s)| service_from(s).map_err(|e| format!("services[{i}]: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::{AddressFamily, Stats};

    #[test]
    fn compact_is_serde_jsons_compact_form() {
        let v = serde_json::json!({
            "schema": SCHEMA,
            "a": [1, {"b": "x y\n\"z\\"}, null],
            "c": "  ",
        });
        let pretty = to_text(&v);
        assert_eq!(compact(&pretty), serde_json::to_string(&v).unwrap() + "\n");
        assert_eq!(compact(""), "");
    }

    /// The document of the seed table is the hand-written golden one.
    #[test]
    fn golden_seed_table() {
        let mut svc = Service::new(ServiceId::tcp("10.97.97.97:80".parse().unwrap()), "rr");
        svc.flags = ServiceFlags::HASHED;
        svc.stats = Some(Stats::default());
        let mut d = Destination::new("10.244.1.39:80".parse().unwrap());
        let mut stats = Stats::default();
        stats.conns = 5_000_000_000;
        d.stats = Some(stats);
        let info = Info::from_attrs(&[
            ipvs_netlink::InfoAttr::Version(0x010201),
            ipvs_netlink::InfoAttr::ConnTableSize(4096),
        ])
        .unwrap();
        let doc = table(Some(&info), &[(svc, vec![d])]);
        // Written by hand from docs/json-schema.md and reviewed, never by
        // this code: every member the schema documents, in its order.
        // (vm-tests/tests/json.rs checks the members of real documents
        // against the schema and their values against the real ipvsadm.)
        let golden = include_str!("../../tests/golden/seed.json");
        assert_eq!(doc, golden);
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            v["services"][0]["destinations"][0]["stats"]["conns"],
            5_000_000_000u64
        );
    }

    #[test]
    fn fwmark_and_flags() {
        let svc = Service::new(ServiceId::fwmark(AddressFamily::Inet6, 7), "sh").with_flags(
            ServiceFlags::PERSISTENT | ServiceFlags::SCHED1 | ServiceFlags::from_bits_retain(0x100),
        );
        let doc = table(None, &[(svc, vec![])]);
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let s = &v["services"][0];
        assert_eq!(s["fwmark"], 7);
        assert_eq!(s["family"], "inet6");
        assert!(s["address"].is_null());
        assert_eq!(s["netmask"], "128");
        assert_eq!(
            s["flags"],
            serde_json::json!(["persistent", "sh-fallback", "0x100"])
        );
        assert!(v.get("ipvs_version").is_none());
    }

    /// A table with every kind of member (fwmark and inet services, IPv6,
    /// scheduler flag names and an unnamed bit, a persistence engine,
    /// tunnel, route and masquerade real servers, counters and none).
    fn every_member_table() -> Vec<(Service, Vec<Destination>)> {
        use ipvs_netlink::ForwardMethod;
        let mut fwm = Service::new(ServiceId::fwmark(AddressFamily::Inet6, 7), "sh")
            .with_flags(
                ServiceFlags::PERSISTENT
                    | ServiceFlags::HASHED
                    | ServiceFlags::SCHED1
                    | ServiceFlags::SCHED2
                    | ServiceFlags::from_bits_retain(0x100),
            )
            .with_netmask(Netmask::V6(64));
        fwm.timeout = 300;
        let mut tun = Destination::new("[2001:db8::10]:0".parse().unwrap())
            .forward(ForwardMethod::Tunnel)
            .weight(3)
            .thresholds(10, 5);
        tun.tunnel_type = Some(TunnelType::Gue);
        tun.tunnel_port = Some(6080);
        tun.tunnel_flags = Some(TunnelFlags::CSUM | TunnelFlags::REMCSUM);
        tun.active_conns = 4;
        tun.persistent_conns = 2;
        let mut udp = Service::new(ServiceId::udp("10.0.0.2:5060".parse().unwrap()), "wlc")
            .with_flags(ServiceFlags::PERSISTENT | ServiceFlags::ONE_PACKET | ServiceFlags::SCHED3)
            .with_netmask(Netmask::V4("255.255.255.0".parse().unwrap()))
            .with_persistence_engine("sip");
        udp.timeout = 60;
        let mut stats = Stats::default();
        (stats.conns, stats.in_pkts, stats.out_pkts) = (1, 2, 3);
        (stats.in_bytes, stats.out_bytes, stats.cps) = (u64::MAX, 5, 6);
        (stats.in_pps, stats.out_pps, stats.in_bps, stats.out_bps) = (7, 8, 9, 10);
        udp.stats = Some(stats);
        let mut route = Destination::new("10.1.0.1:5060".parse().unwrap())
            .forward(ForwardMethod::DirectRoute)
            .weight(0);
        route.stats = Some(stats);
        route.inactive_conns = 11;
        let nat = Destination::new("10.1.0.2:5060".parse().unwrap())
            .forward(ForwardMethod::Masquerade)
            .weight(65_535);
        let sctp = Service::new(
            ServiceId::inet(
                ipvs_netlink::Protocol::Sctp,
                "[2001:db8::1]:9".parse().unwrap(),
            ),
            "mh",
        )
        .with_flags(ServiceFlags::SCHED1);
        vec![(fwm, vec![tun]), (udp, vec![route, nat]), (sctp, vec![])]
    }

    /// The document of a table with every kind of member is the one the
    /// tool printed before it serialized through ipvs-netlink's `serde`
    /// (byte for byte: members, their order, numbers and names), reviewed
    /// against docs/json-schema.md.
    #[test]
    fn golden_every_member() {
        let doc = table(None, &every_member_table());
        let golden = include_str!("../../tests/golden/every-member.json");
        assert_eq!(doc, golden);
    }
}
