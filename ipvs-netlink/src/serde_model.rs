//! With the feature `serde`: the model in the JSON schema of
//! `ipvsadm-rs -Ln --json` (`docs/json-schema.md`), so that a table a
//! program writes reads as the tool's and the other way round: the tool
//! writes its listings and reads `--apply`'s documents through these
//! impls.
//!
//! - [`Service`]: `{family, protocol, address, port, fwmark, scheduler,
//!   flags, timeout, netmask, persistence_engine, stats}`; a fwmark
//!   service has `fwmark` and null `protocol`, `address`, `port`, an inet
//!   one the other way round; protocols are `tcp`, `udp`, `sctp` or a
//!   number; flags a list of names (`sh-fallback` and `sh-port` for `sh`,
//!   `mh-*` for `mh`, `flag-1`.. otherwise, unknown bits as `0x..`); the
//!   netmask dotted for IPv4, a prefix length for IPv6;
//! - [`Destination`]: `{family, address, port, forward, weight,
//!   upper_threshold, lower_threshold, active_conns, inactive_conns,
//!   persistent_conns, tunnel, stats}`; forwarding methods `masquerade`,
//!   `local`, `tunnel`, `route`, `bypass` or a number; `tunnel` is
//!   `{type, port, flags}` for a tunnel, else null;
//! - [`Stats`]: `{conns, in_packets, out_packets, in_bytes, out_bytes,
//!   conns_per_second, ...}`;
//! - [`ServiceId`]: its `Display` string (`TCP 10.0.0.1:80`), fit for a map
//!   key.
//!
//! Reading, the counters, connection counts, `family` and `tunnel` may be
//! left out; a value of the wrong shape is an error naming it.

use std::net::{IpAddr, SocketAddr};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    AddressFamily, Destination, ForwardMethod, Netmask, Protocol, Service, ServiceFlags, ServiceId,
    Stats, TunnelFlags, TunnelType,
};

#[derive(Serialize, Deserialize)]
struct StatsRepr {
    conns: u64,
    in_packets: u64,
    out_packets: u64,
    in_bytes: u64,
    out_bytes: u64,
    conns_per_second: u64,
    in_packets_per_second: u64,
    out_packets_per_second: u64,
    in_bytes_per_second: u64,
    out_bytes_per_second: u64,
}

impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        StatsRepr {
            conns: self.conns,
            in_packets: self.in_pkts,
            out_packets: self.out_pkts,
            in_bytes: self.in_bytes,
            out_bytes: self.out_bytes,
            conns_per_second: self.cps,
            in_packets_per_second: self.in_pps,
            out_packets_per_second: self.out_pps,
            in_bytes_per_second: self.in_bps,
            out_bytes_per_second: self.out_bps,
        }
        .serialize(ser)
    }
}

impl<'de> Deserialize<'de> for Stats {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let r = StatsRepr::deserialize(de)?;
        Ok(Stats {
            conns: r.conns,
            in_pkts: r.in_packets,
            out_pkts: r.out_packets,
            in_bytes: r.in_bytes,
            out_bytes: r.out_bytes,
            cps: r.conns_per_second,
            in_pps: r.in_packets_per_second,
            out_pps: r.out_packets_per_second,
            in_bps: r.in_bytes_per_second,
            out_bps: r.out_bytes_per_second,
        })
    }
}

impl Serialize for ServiceId {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServiceId {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map_err(D::Error::custom)
    }
}

fn family_name(f: AddressFamily) -> &'static str {
    match f {
        AddressFamily::Inet => "inet",
        AddressFamily::Inet6 => "inet6",
    }
}

fn family_from(name: Option<&str>) -> Result<Option<AddressFamily>, String> {
    match name {
        None => Ok(None),
        Some("inet") => Ok(Some(AddressFamily::Inet)),
        Some("inet6") => Ok(Some(AddressFamily::Inet6)),
        Some(other) => Err(format!("family {other:?} is not inet or inet6")),
    }
}

fn protocol_name(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "tcp".into(),
        Protocol::Udp => "udp".into(),
        Protocol::Sctp => "sctp".into(),
        other => other.to_raw().to_string(),
    }
}

fn protocol_from(name: &str) -> Result<Protocol, String> {
    match name {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Ok(Protocol::Sctp),
        n => n
            .parse()
            .map(Protocol::from_raw)
            .map_err(|_| format!("protocol {n:?} is not tcp, udp, sctp or a number")),
    }
}

/// The flags' names as `-Ln --json` gives them: the scheduler's names of
/// flags 1 and 2 for `sh` and `mh`.
fn flag_names(flags: ServiceFlags, scheduler: &str) -> Vec<String> {
    let (one, two) = match scheduler {
        "sh" => ("sh-fallback", "sh-port"),
        "mh" => ("mh-fallback", "mh-port"),
        _ => ("flag-1", "flag-2"),
    };
    let named = [
        (ServiceFlags::PERSISTENT, "persistent"),
        (ServiceFlags::HASHED, "hashed"),
        (ServiceFlags::ONE_PACKET, "one-packet"),
        (ServiceFlags::SCHED1, one),
        (ServiceFlags::SCHED2, two),
        (ServiceFlags::SCHED3, "flag-3"),
    ];
    let mut out: Vec<String> = named
        .iter()
        .filter(|(bit, _)| flags.contains(*bit))
        .map(|(_, name)| (*name).to_owned())
        .collect();
    let rest = named
        .iter()
        .fold(flags.bits(), |rest, (bit, _)| rest & !bit.bits());
    for bit in (0..32).map(|i| 1u32 << i).filter(|b| rest & b != 0) {
        out.push(format!("{bit:#x}"));
    }
    out
}

fn forward_name(f: ForwardMethod) -> String {
    match f {
        ForwardMethod::Masquerade => "masquerade".into(),
        ForwardMethod::Local => "local".into(),
        ForwardMethod::Tunnel => "tunnel".into(),
        ForwardMethod::DirectRoute => "route".into(),
        ForwardMethod::Bypass => "bypass".into(),
        other => other.to_raw().to_string(),
    }
}

fn forward_from(name: &str) -> Result<ForwardMethod, String> {
    match name {
        "masquerade" => Ok(ForwardMethod::Masquerade),
        "local" => Ok(ForwardMethod::Local),
        "tunnel" => Ok(ForwardMethod::Tunnel),
        "route" => Ok(ForwardMethod::DirectRoute),
        "bypass" => Ok(ForwardMethod::Bypass),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|&n| n <= 7)
            .map(ForwardMethod::from_raw)
            .ok_or_else(|| {
                format!("forward {n:?} is not masquerade, local, tunnel, route, bypass or 0 to 7")
            }),
    }
}

#[derive(Serialize, Deserialize)]
struct ServiceRepr {
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    fwmark: Option<u32>,
    scheduler: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    timeout: u32,
    #[serde(default)]
    netmask: Option<String>,
    #[serde(default)]
    persistence_engine: Option<String>,
    #[serde(default)]
    stats: Option<Stats>,
}

impl Serialize for Service {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let (protocol, address, port, fwmark) = match self.id {
            ServiceId::Inet {
                protocol,
                addr,
                port,
            } => (
                Some(protocol_name(protocol)),
                Some(addr.to_string()),
                Some(port),
                None,
            ),
            ServiceId::Fwmark { mark, .. } => (None, None, None, Some(mark)),
        };
        ServiceRepr {
            family: Some(family_name(self.id.family()).to_owned()),
            protocol,
            address,
            port,
            fwmark,
            scheduler: self.scheduler.clone(),
            flags: flag_names(self.flags, &self.scheduler),
            timeout: self.timeout,
            netmask: Some(match self.netmask {
                Netmask::V4(m) => m.to_string(),
                Netmask::V6(p) => p.to_string(),
            }),
            persistence_engine: self.persistence_engine.clone(),
            stats: self.stats,
        }
        .serialize(ser)
    }
}

fn service_from(r: ServiceRepr) -> Result<Service, String> {
    let family = family_from(r.family.as_deref())?;
    let id = match (r.fwmark, r.protocol, r.address, r.port) {
        (Some(mark), None, None, None) => {
            ServiceId::fwmark(family.unwrap_or(AddressFamily::Inet), mark)
        }
        (None, Some(p), Some(a), Some(port)) => {
            let addr: IpAddr = a
                .parse()
                .map_err(|_| format!("address {a:?} is not an IP address"))?;
            if let Some(f) = family.filter(|&f| f != AddressFamily::of(&addr)) {
                return Err(format!(
                    "address {addr} is not of family {}",
                    family_name(f)
                ));
            }
            ServiceId::inet(protocol_from(&p)?, SocketAddr::new(addr, port))
        }
        _ => {
            return Err(
                "a service has either fwmark, or protocol, address and port (the others null)"
                    .to_owned(),
            )
        }
    };
    let mut flags = ServiceFlags::empty();
    for f in &r.flags {
        // One name, or one bit in hex, per member (as `flag_names` writes
        // them): not `FromStr`'s comma-separated list.
        let one = f
            .parse::<ServiceFlags>()
            .ok()
            .filter(|bits| !f.contains(',') && bits.bits().count_ones() == 1);
        flags |= one.ok_or_else(|| format!("{id}: flag {f:?} has no meaning"))?;
    }
    let mut service = Service::new(id, r.scheduler).with_flags(flags);
    service.timeout = r.timeout;
    if let Some(mask) = r.netmask {
        service.netmask = match id.family() {
            AddressFamily::Inet => Netmask::V4(
                mask.parse()
                    .map_err(|_| format!("{id}: netmask {mask:?} is not a dotted IPv4 mask"))?,
            ),
            AddressFamily::Inet6 => Netmask::V6(
                mask.parse()
                    .map_err(|_| format!("{id}: netmask {mask:?} is not a prefix length"))?,
            ),
        };
    }
    service.persistence_engine = r.persistence_engine;
    service.stats = r.stats;
    Ok(service)
}

impl<'de> Deserialize<'de> for Service {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        service_from(ServiceRepr::deserialize(de)?).map_err(D::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct TunnelRepr {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    flags: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct DestinationRepr {
    #[serde(default)]
    family: Option<String>,
    address: String,
    port: u16,
    forward: String,
    weight: u32,
    #[serde(default)]
    upper_threshold: u32,
    #[serde(default)]
    lower_threshold: u32,
    #[serde(default)]
    active_conns: u32,
    #[serde(default)]
    inactive_conns: u32,
    #[serde(default)]
    persistent_conns: u32,
    #[serde(default)]
    tunnel: Option<TunnelRepr>,
    #[serde(default)]
    stats: Option<Stats>,
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let tunnel = (self.forward == ForwardMethod::Tunnel).then(|| {
            let flags = self.tunnel_flags.unwrap_or(TunnelFlags::empty());
            TunnelRepr {
                kind: match self.tunnel_type.unwrap_or(TunnelType::Ipip) {
                    TunnelType::Ipip => "ipip".into(),
                    TunnelType::Gue => "gue".into(),
                    TunnelType::Gre => "gre".into(),
                    other => other.to_raw().to_string(),
                },
                port: self.tunnel_port.unwrap_or(0),
                flags: [
                    (TunnelFlags::CSUM, "csum"),
                    (TunnelFlags::REMCSUM, "remcsum"),
                ]
                .iter()
                .filter(|(bit, _)| flags.contains(*bit))
                .map(|(_, name)| (*name).to_owned())
                .collect(),
            }
        });
        DestinationRepr {
            family: Some(family_name(AddressFamily::of(&self.addr)).to_owned()),
            address: self.addr.to_string(),
            port: self.port,
            forward: forward_name(self.forward),
            weight: self.weight,
            upper_threshold: self.upper_threshold,
            lower_threshold: self.lower_threshold,
            active_conns: self.active_conns,
            inactive_conns: self.inactive_conns,
            persistent_conns: self.persistent_conns,
            tunnel,
            stats: self.stats,
        }
        .serialize(ser)
    }
}

fn destination_from(r: DestinationRepr) -> Result<Destination, String> {
    let family = family_from(r.family.as_deref())?;
    let addr: IpAddr = r
        .address
        .parse()
        .map_err(|_| format!("real server address {:?} is not an IP address", r.address))?;
    if let Some(f) = family.filter(|&f| f != AddressFamily::of(&addr)) {
        return Err(format!(
            "real server address {addr} is not of family {}",
            family_name(f)
        ));
    }
    let at = SocketAddr::new(addr, r.port);
    let mut d = Destination::new(at)
        .forward(forward_from(&r.forward).map_err(|e| format!("real server {at}: {e}"))?)
        .weight(r.weight)
        .thresholds(r.upper_threshold, r.lower_threshold);
    d.active_conns = r.active_conns;
    d.inactive_conns = r.inactive_conns;
    d.persistent_conns = r.persistent_conns;
    d.stats = r.stats;
    if let Some(t) = r.tunnel {
        let kind = match t.kind.as_str() {
            "ipip" => TunnelType::Ipip,
            "gue" => TunnelType::Gue,
            "gre" => TunnelType::Gre,
            n => TunnelType::from_raw(n.parse().map_err(|_| {
                format!("real server {at}: tunnel type {n:?} is not ipip, gue, gre or a number")
            })?),
        };
        let mut flags = TunnelFlags::empty();
        for f in &t.flags {
            flags |= match f.as_str() {
                "csum" => TunnelFlags::CSUM,
                "remcsum" => TunnelFlags::REMCSUM,
                other => {
                    return Err(format!(
                        "real server {at}: tunnel flag {other:?} is not csum or remcsum"
                    ))
                }
            };
        }
        d.tunnel_type = Some(kind);
        d.tunnel_port = Some(t.port);
        d.tunnel_flags = Some(flags);
    }
    Ok(d)
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        destination_from(DestinationRepr::deserialize(de)?).map_err(D::Error::custom)
    }
}
