//! The typed view of a destination (real server).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{DecodeError, ErrorContext, NlasIterator};

use super::attr::*;
use crate::nla_util::{kind_and_value, u16_be, u16_ne, u32_ne, u8_of};
use crate::stats::Stats;
use crate::types::{addr_bytes, addr_from_wire, AddressFamily, ParseError};

/// How packets reach a real server (the low 3 bits of the connection flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardMethod {
    /// NAT (`-m`, "Masq").
    Masquerade,
    /// The real server is local ("Local").
    Local,
    /// IP-in-IP or other tunnel (`-i`, "Tunnel").
    Tunnel,
    /// Direct routing (`-g`, "Route"): ipvsadm's default.
    DirectRoute,
    /// Bypass.
    Bypass,
    /// A value this crate does not know (5 to 7).
    Other(u32),
}

impl ForwardMethod {
    /// The kernel's value (`IP_VS_CONN_F_*`).
    pub fn to_raw(self) -> u32 {
        match self {
            ForwardMethod::Masquerade => 0,
            ForwardMethod::Local => 1,
            ForwardMethod::Tunnel => 2,
            ForwardMethod::DirectRoute => 3,
            ForwardMethod::Bypass => 4,
            ForwardMethod::Other(n) => n,
        }
    }

    /// Reads the forwarding method from connection flags (masked with 7,
    /// as the kernel does).
    pub fn from_raw(raw: u32) -> Self {
        match raw & 0x7 {
            0 => ForwardMethod::Masquerade,
            1 => ForwardMethod::Local,
            2 => ForwardMethod::Tunnel,
            3 => ForwardMethod::DirectRoute,
            4 => ForwardMethod::Bypass,
            n => ForwardMethod::Other(n),
        }
    }
}

impl fmt::Display for ForwardMethod {
    /// ipvsadm's name in its listings: `Masq`, `Local`, `Tunnel`,
    /// `Route`; then `Bypass`, and `fwd-N` for a value without a name
    /// (where ipvsadm 1.31 prints `(null)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardMethod::Masquerade => f.write_str("Masq"),
            ForwardMethod::Local => f.write_str("Local"),
            ForwardMethod::Tunnel => f.write_str("Tunnel"),
            ForwardMethod::DirectRoute => f.write_str("Route"),
            ForwardMethod::Bypass => f.write_str("Bypass"),
            ForwardMethod::Other(n) => write!(f, "fwd-{n}"),
        }
    }
}

impl std::str::FromStr for ForwardMethod {
    type Err = ParseError;

    /// What `Display` writes (any case), or ipvsadm's long option names
    /// (`masquerading`, `gatewaying`, `ipip`).
    ///
    /// ```
    /// use ipvs_netlink::ForwardMethod;
    ///
    /// assert_eq!("Route".parse::<ForwardMethod>()?, ForwardMethod::DirectRoute);
    /// assert_eq!("masquerading".parse::<ForwardMethod>()?.to_string(), "Masq");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || {
            ParseError::new(
                "forwarding method",
                s,
                "Masq, Local, Tunnel, Route, Bypass or fwd-N",
            )
        };
        Ok(match s.to_ascii_lowercase().as_str() {
            "masq" | "masquerading" => ForwardMethod::Masquerade,
            "local" => ForwardMethod::Local,
            "tunnel" | "ipip" => ForwardMethod::Tunnel,
            "route" | "gatewaying" => ForwardMethod::DirectRoute,
            "bypass" => ForwardMethod::Bypass,
            other => {
                let n: u32 = other
                    .strip_prefix("fwd-")
                    .ok_or_else(err)?
                    .parse()
                    .map_err(|_| err())?;
                if n > 7 {
                    return Err(err());
                }
                ForwardMethod::from_raw(n)
            }
        })
    }
}

/// The encapsulation of a tunnelling destination (Linux 5.2 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TunnelType {
    /// IP in IP (the default).
    Ipip,
    /// Generic UDP Encapsulation; needs a port.
    Gue,
    /// GRE (Linux 5.3 and later).
    Gre,
    /// A value this crate does not know.
    Other(u8),
}

impl TunnelType {
    /// The kernel's value.
    pub fn to_raw(self) -> u8 {
        match self {
            TunnelType::Ipip => 0,
            TunnelType::Gue => 1,
            TunnelType::Gre => 2,
            TunnelType::Other(n) => n,
        }
    }

    /// Reads a kernel value.
    pub fn from_raw(raw: u8) -> Self {
        match raw {
            0 => TunnelType::Ipip,
            1 => TunnelType::Gue,
            2 => TunnelType::Gre,
            n => TunnelType::Other(n),
        }
    }
}

bitflags::bitflags! {
    /// Tunnel checksum flags (`IP_VS_TUNNEL_ENCAP_FLAG_*`); empty means no
    /// checksum.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct TunnelFlags: u16 {
        /// Checksum (`--tun-csum`).
        const CSUM = 0x1;
        /// Remote checksum offload (`--tun-remcsum`).
        const REMCSUM = 0x2;
        const _ = !0;
    }
}

/// A destination (real server) of a service.
///
/// ```
/// use ipvs_netlink::{Destination, ForwardMethod};
///
/// let rs = Destination::new("10.244.1.39:80".parse().unwrap()).weight(3);
/// assert_eq!(rs.forward, ForwardMethod::Masquerade);
/// assert_eq!(rs.weight, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Destination {
    /// The real server's address; its family may differ from the
    /// service's only for tunnels.
    pub addr: IpAddr,
    /// The real server's port.
    pub port: u16,
    /// Forwarding method.
    pub forward: ForwardMethod,
    /// Scheduling weight (0 takes the server out of rotation).
    pub weight: u32,
    /// Upper connection threshold, 0 for none.
    pub upper_threshold: u32,
    /// Lower connection threshold.
    pub lower_threshold: u32,
    /// Active connections (from the kernel; ignored when writing).
    pub active_conns: u32,
    /// Inactive connections (from the kernel).
    pub inactive_conns: u32,
    /// Persistent connection templates (from the kernel).
    pub persistent_conns: u32,
    /// Tunnel type, when the kernel reports one or the caller sets one.
    pub tunnel_type: Option<TunnelType>,
    /// Tunnel (GUE) port.
    pub tunnel_port: Option<u16>,
    /// Tunnel checksum flags.
    pub tunnel_flags: Option<TunnelFlags>,
    /// Counters, when the kernel reported them (64-bit ones preferred).
    pub stats: Option<Stats>,
}

impl Destination {
    /// A masquerading destination of weight 1 without thresholds.
    pub fn new(addr: SocketAddr) -> Self {
        Destination {
            addr: addr.ip(),
            port: addr.port(),
            forward: ForwardMethod::Masquerade,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            tunnel_type: None,
            tunnel_port: None,
            tunnel_flags: None,
            stats: None,
        }
    }

    crate::__destination_builders!();

    /// Makes the destination a tunnel of `kind` (forwarding method
    /// [`ForwardMethod::Tunnel`]) with `port` (the GUE port; the kernel
    /// refuses GUE without one) and checksum `flags`. Its address family
    /// may then differ from the service's.
    ///
    /// ```
    /// use ipvs_netlink::{Destination, ForwardMethod, TunnelFlags, TunnelType};
    ///
    /// let rs = Destination::new("[2001:db8::7]:80".parse().unwrap())
    ///     .tunnel(TunnelType::Gue, Some(6080), TunnelFlags::CSUM);
    /// assert_eq!(rs.forward, ForwardMethod::Tunnel);
    /// assert_eq!(rs.tunnel_port, Some(6080));
    /// ```
    pub fn tunnel(mut self, kind: TunnelType, port: Option<u16>, flags: TunnelFlags) -> Self {
        self.forward = ForwardMethod::Tunnel;
        self.tunnel_type = Some(kind);
        self.tunnel_port = port;
        self.tunnel_flags = Some(flags);
        self
    }

    /// The address and port.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// The attributes that identify the destination (DEL_DEST).
    pub fn id_attrs(addr: SocketAddr) -> Vec<DestAttr> {
        Self::id_attrs_of(addr)
            .into_iter()
            .map(DestAttr::into_owned)
            .collect()
    }

    /// [`Destination::id_attrs`] allocating nothing: what the handle
    /// writes.
    pub(crate) fn id_attrs_of(addr: SocketAddr) -> [DestAttr<[u8; 16]>; 3] {
        [
            DestAttr::AddressFamily(AddressFamily::of(&addr.ip()).to_raw()),
            DestAttr::Address(addr_bytes(&addr.ip())),
            DestAttr::Port(addr.port()),
        ]
    }

    /// The full attribute set NEW_DEST and SET_DEST need.
    pub fn to_attrs(&self) -> Vec<DestAttr> {
        self.attrs()
            .into_iter()
            .flatten()
            .map(DestAttr::into_owned)
            .collect()
    }

    /// [`Destination::to_attrs`] allocating nothing, the absent ones
    /// `None`: what the handle writes.
    pub(crate) fn attrs(&self) -> [Option<DestAttr<[u8; 16]>>; 10] {
        let [af, addr, port] = Self::id_attrs_of(self.socket_addr());
        [
            Some(af),
            Some(addr),
            Some(port),
            Some(DestAttr::ForwardMethod(self.forward.to_raw())),
            Some(DestAttr::Weight(self.weight)),
            self.tunnel_type.map(|t| DestAttr::TunnelType(t.to_raw())),
            self.tunnel_port.map(DestAttr::TunnelPort),
            self.tunnel_flags.map(|f| DestAttr::TunnelFlags(f.bits())),
            Some(DestAttr::UpperThreshold(self.upper_threshold)),
            Some(DestAttr::LowerThreshold(self.lower_threshold)),
        ]
    }

    /// Reads a destination from a destination nest. `service_family` is
    /// the address family when the nest has no ADDR_FAMILY (kernels before
    /// 3.18). Address, port, forwarding method and weight are required.
    pub fn from_attrs(
        attrs: &[DestAttr],
        service_family: AddressFamily,
    ) -> Result<Self, DecodeError> {
        let (mut addr, mut port, mut fwd, mut weight, mut af) = (None, None, None, None, None);
        let mut d = Destination::new(SocketAddr::from(([0, 0, 0, 0], 0)));
        let (mut stats, mut stats64) = (None, None);
        for attr in attrs {
            match attr {
                DestAttr::Address(v) => addr = Some(v.as_slice()),
                DestAttr::Port(v) => port = Some(*v),
                DestAttr::ForwardMethod(v) => fwd = Some(*v),
                DestAttr::Weight(v) => weight = Some(*v),
                DestAttr::UpperThreshold(v) => d.upper_threshold = *v,
                DestAttr::LowerThreshold(v) => d.lower_threshold = *v,
                DestAttr::ActiveConns(v) => d.active_conns = *v,
                DestAttr::InactiveConns(v) => d.inactive_conns = *v,
                DestAttr::PersistentConns(v) => d.persistent_conns = *v,
                DestAttr::AddressFamily(v) => af = Some(*v),
                DestAttr::TunnelType(v) => d.tunnel_type = Some(TunnelType::from_raw(*v)),
                DestAttr::TunnelPort(v) => d.tunnel_port = Some(*v),
                DestAttr::TunnelFlags(v) => {
                    d.tunnel_flags = Some(TunnelFlags::from_bits_retain(*v))
                }
                DestAttr::Stats(s) => stats = Some(Stats::from_attrs(s)),
                DestAttr::Stats64(s) => stats64 = Some(Stats::from_attrs(s)),
                DestAttr::Other(_) => {}
            }
        }
        d.finish(addr, port, fwd, weight, af, service_family)?;
        d.stats = stats64.or(stats);
        Ok(d)
    }

    /// Reads a destination straight from the bytes of a destination nest
    /// (the value of `IPVS_CMD_ATTR_DEST`), as [`Destination::from_attrs`]
    /// reads the parsed attributes, with the same checks and errors but
    /// without building the attribute list: the destination dumps of a
    /// listing read tens of thousands of these.
    pub fn parse_nest(nest: &[u8], service_family: AddressFamily) -> Result<Self, DecodeError> {
        const WHAT: &str = "IPVS_CMD_ATTR_DEST";
        let (mut addr, mut port, mut fwd, mut weight, mut af) = (None, None, None, None, None);
        let mut d = Destination::new(SocketAddr::from(([0, 0, 0, 0], 0)));
        let (mut stats, mut stats64) = (None, None);
        for nla in NlasIterator::new(nest) {
            let nla = nla.with_context(|| format!("malformed attribute in {WHAT}"))?;
            let (kind, v) = kind_and_value(nla);
            let parsed: Result<(), DecodeError> = (|| {
                match kind {
                    IPVS_DEST_ATTR_ADDR => {
                        if v.len() > 16 {
                            return Err(format!(
                                "IPVS_DEST_ATTR_ADDR: at most 16 bytes, got {}",
                                v.len()
                            )
                            .into());
                        }
                        addr = Some(v);
                    }
                    IPVS_DEST_ATTR_PORT => port = Some(u16_be(v, "IPVS_DEST_ATTR_PORT")?),
                    IPVS_DEST_ATTR_FWD_METHOD => {
                        fwd = Some(u32_ne(v, "IPVS_DEST_ATTR_FWD_METHOD")?)
                    }
                    IPVS_DEST_ATTR_WEIGHT => weight = Some(u32_ne(v, "IPVS_DEST_ATTR_WEIGHT")?),
                    IPVS_DEST_ATTR_U_THRESH => {
                        d.upper_threshold = u32_ne(v, "IPVS_DEST_ATTR_U_THRESH")?
                    }
                    IPVS_DEST_ATTR_L_THRESH => {
                        d.lower_threshold = u32_ne(v, "IPVS_DEST_ATTR_L_THRESH")?
                    }
                    IPVS_DEST_ATTR_ACTIVE_CONNS => {
                        d.active_conns = u32_ne(v, "IPVS_DEST_ATTR_ACTIVE_CONNS")?
                    }
                    IPVS_DEST_ATTR_INACT_CONNS => {
                        d.inactive_conns = u32_ne(v, "IPVS_DEST_ATTR_INACT_CONNS")?
                    }
                    IPVS_DEST_ATTR_PERSIST_CONNS => {
                        d.persistent_conns = u32_ne(v, "IPVS_DEST_ATTR_PERSIST_CONNS")?
                    }
                    IPVS_DEST_ATTR_STATS => {
                        stats = Some(
                            Stats::parse_nest(v, "IPVS_DEST_ATTR_STATS")
                                .context("destination stats")?,
                        )
                    }
                    IPVS_DEST_ATTR_ADDR_FAMILY => {
                        af = Some(u16_ne(v, "IPVS_DEST_ATTR_ADDR_FAMILY")?)
                    }
                    IPVS_DEST_ATTR_STATS64 => {
                        stats64 = Some(
                            Stats::parse_nest(v, "IPVS_DEST_ATTR_STATS64")
                                .context("destination stats64")?,
                        )
                    }
                    IPVS_DEST_ATTR_TUN_TYPE => {
                        d.tunnel_type =
                            Some(TunnelType::from_raw(u8_of(v, "IPVS_DEST_ATTR_TUN_TYPE")?))
                    }
                    IPVS_DEST_ATTR_TUN_PORT => {
                        d.tunnel_port = Some(u16_be(v, "IPVS_DEST_ATTR_TUN_PORT")?)
                    }
                    IPVS_DEST_ATTR_TUN_FLAGS => {
                        d.tunnel_flags = Some(TunnelFlags::from_bits_retain(u16_ne(
                            v,
                            "IPVS_DEST_ATTR_TUN_FLAGS",
                        )?))
                    }
                    _ => {}
                }
                Ok(())
            })();
            parsed.with_context(|| format!("invalid attribute in {WHAT}"))?;
        }
        d.finish(addr, port, fwd, weight, af, service_family)?;
        d.stats = stats64.or(stats);
        Ok(d)
    }

    /// Checks and sets the required fields of a destination being read.
    fn finish(
        &mut self,
        addr: Option<&[u8]>,
        port: Option<u16>,
        fwd: Option<u32>,
        weight: Option<u32>,
        af: Option<u16>,
        service_family: AddressFamily,
    ) -> Result<(), DecodeError> {
        let family = match af {
            Some(raw) => AddressFamily::from_raw(raw)?,
            None => service_family,
        };
        self.addr = addr_from_wire(
            addr.ok_or("destination without IPVS_DEST_ATTR_ADDR")?,
            family,
            "IPVS_DEST_ATTR_ADDR",
        )?;
        self.port = port.ok_or("destination without IPVS_DEST_ATTR_PORT")?;
        self.forward =
            ForwardMethod::from_raw(fwd.ok_or("destination without IPVS_DEST_ATTR_FWD_METHOD")?);
        self.weight = weight.ok_or("destination without IPVS_DEST_ATTR_WEIGHT")?;
        Ok(())
    }
}
