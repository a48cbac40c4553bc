//! The typed view of a virtual service.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use netlink_packet_core::DecodeError;

use super::attr::ServiceAttr;
use crate::stats::Stats;
use crate::types::{addr_bytes, addr_from_wire, AddressFamily, ParseError, Protocol};

bitflags::bitflags! {
    /// Service flags (`IP_VS_SVC_F_*`). Bits this crate does not name are
    /// kept as they are.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ServiceFlags: u32 {
        /// Persistent service (`-p`).
        const PERSISTENT = 0x1;
        /// Set by the kernel on every service in its table.
        const HASHED = 0x2;
        /// One-packet scheduling (`-o`).
        const ONE_PACKET = 0x4;
        /// Scheduler flag 1: `sh-fallback` for sh, `mh-fallback` for mh.
        const SCHED1 = 0x8;
        /// Scheduler flag 2: `sh-port` for sh, `mh-port` for mh.
        const SCHED2 = 0x10;
        /// Scheduler flag 3.
        const SCHED3 = 0x20;
        const _ = !0;
    }
}

/// What identifies a service in the kernel's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceId {
    /// A service on protocol, address and port (`-t`, `-u`, `--sctp-service`).
    Inet {
        /// IP protocol.
        protocol: Protocol,
        /// Virtual address; its family is the service's.
        addr: IpAddr,
        /// Virtual port (0 for an all-ports persistent service).
        port: u16,
    },
    /// A firewall-mark service (`-f`).
    Fwmark {
        /// Address family of the service.
        family: AddressFamily,
        /// The mark.
        mark: u32,
    },
}

impl ServiceId {
    /// A TCP service on `addr`.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self::inet(Protocol::Tcp, addr)
    }

    /// A UDP service on `addr`.
    pub fn udp(addr: SocketAddr) -> Self {
        Self::inet(Protocol::Udp, addr)
    }

    /// An SCTP service on `addr`.
    pub fn sctp(addr: SocketAddr) -> Self {
        Self::inet(Protocol::Sctp, addr)
    }

    /// A service of `protocol` on `addr`.
    pub fn inet(protocol: Protocol, addr: SocketAddr) -> Self {
        ServiceId::Inet {
            protocol,
            addr: addr.ip(),
            port: addr.port(),
        }
    }

    /// A firewall-mark service.
    pub fn fwmark(family: AddressFamily, mark: u32) -> Self {
        ServiceId::Fwmark { family, mark }
    }

    /// The service's address family.
    pub fn family(&self) -> AddressFamily {
        match self {
            ServiceId::Inet { addr, .. } => AddressFamily::of(addr),
            ServiceId::Fwmark { family, .. } => *family,
        }
    }

    /// The attributes that identify the service (what DEL_SERVICE and the
    /// GET_DEST dump need).
    pub fn to_attrs(&self) -> Vec<ServiceAttr> {
        self.attrs()
            .into_iter()
            .flatten()
            .map(ServiceAttr::into_owned)
            .collect()
    }

    /// [`ServiceId::to_attrs`] allocating nothing, the absent ones `None`:
    /// what the handle writes.
    pub(crate) fn attrs(&self) -> [Option<ServiceAttr<[u8; 16], &'static str>>; 4] {
        let family = Some(ServiceAttr::AddressFamily(self.family().to_raw()));
        match self {
            ServiceId::Inet {
                protocol,
                addr,
                port,
            } => [
                family,
                Some(ServiceAttr::Protocol(protocol.to_raw())),
                Some(ServiceAttr::Address(addr_bytes(addr))),
                Some(ServiceAttr::Port(*port)),
            ],
            ServiceId::Fwmark { mark, .. } => {
                [family, Some(ServiceAttr::Fwmark(*mark)), None, None]
            }
        }
    }

    /// Reads the identity from a service nest. A nest with a non-zero
    /// FWMARK is a fwmark service, as the kernel decides.
    pub fn from_attrs(attrs: &[ServiceAttr]) -> Result<Self, DecodeError> {
        let (mut af, mut protocol, mut addr, mut port, mut fwmark) = (None, None, None, None, None);
        for attr in attrs {
            match attr {
                ServiceAttr::AddressFamily(v) => af = Some(*v),
                ServiceAttr::Protocol(v) => protocol = Some(*v),
                ServiceAttr::Address(v) => addr = Some(v.as_slice()),
                ServiceAttr::Port(v) => port = Some(*v),
                ServiceAttr::Fwmark(v) => fwmark = Some(*v),
                _ => {}
            }
        }
        let family = AddressFamily::from_raw(af.ok_or("service without IPVS_SVC_ATTR_AF")?)?;
        if let Some(mark) = fwmark.filter(|m| *m != 0) {
            return Ok(ServiceId::Fwmark { family, mark });
        }
        let protocol = protocol.ok_or("service without IPVS_SVC_ATTR_PROTOCOL or FWMARK")?;
        let addr = addr.ok_or("service without IPVS_SVC_ATTR_ADDR")?;
        Ok(ServiceId::Inet {
            protocol: Protocol::from_raw(protocol),
            addr: addr_from_wire(addr, family, "IPVS_SVC_ATTR_ADDR")?,
            port: port.ok_or("service without IPVS_SVC_ATTR_PORT")?,
        })
    }
}

impl fmt::Display for ServiceId {
    /// `TCP 10.0.0.1:80`, `UDP [::1]:53` or `FWM 7` (`FWM 7 IPv6`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceId::Inet {
                protocol,
                addr,
                port,
            } => write!(f, "{protocol} {}", SocketAddr::new(*addr, *port)),
            ServiceId::Fwmark { family, mark } => {
                write!(f, "FWM {mark}")?;
                if *family == AddressFamily::Inet6 {
                    f.write_str(" IPv6")?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for ServiceId {
    type Err = ParseError;

    /// What `Display` writes, as ipvsadm's listings name a service
    /// (`TCP  10.0.0.1:80`, `FWM  7`; any run of blanks between the
    /// words, the protocol in any case).
    ///
    /// ```
    /// use ipvs_netlink::ServiceId;
    ///
    /// let id: ServiceId = "UDP [2001:db8::1]:53".parse()?;
    /// assert_eq!(id, ServiceId::udp("[2001:db8::1]:53".parse()?));
    /// assert_eq!(id.to_string().parse::<ServiceId>()?, id);
    /// assert_eq!("FWM  42 IPv6".parse::<ServiceId>()?.to_string(), "FWM 42 IPv6");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || {
            ParseError::new(
                "service",
                s,
                "PROTOCOL ADDRESS:PORT (TCP 10.0.0.1:80, UDP [::1]:53) or FWM MARK [IPv6]",
            )
        };
        let words: Vec<&str> = s.split_whitespace().collect();
        match words[..] {
            [fwm, mark] if fwm.eq_ignore_ascii_case("FWM") => Ok(ServiceId::Fwmark {
                family: AddressFamily::Inet,
                mark: mark.parse().map_err(|_| err())?,
            }),
            [fwm, mark, v6]
                if fwm.eq_ignore_ascii_case("FWM") && v6.eq_ignore_ascii_case("IPv6") =>
            {
                Ok(ServiceId::Fwmark {
                    family: AddressFamily::Inet6,
                    mark: mark.parse().map_err(|_| err())?,
                })
            }
            [protocol, addr] => {
                let protocol: Protocol = protocol.parse().map_err(|_| err())?;
                let addr: SocketAddr = addr.parse().map_err(|_| err())?;
                Ok(ServiceId::Inet {
                    protocol,
                    addr: addr.ip(),
                    port: addr.port(),
                })
            }
            _ => Err(err()),
        }
    }
}

/// The names of the flags in ipvsadm's notation (its `-b` option and the
/// JSON listing), bit by bit.
const FLAG_NAMES: [(ServiceFlags, &str); 6] = [
    (ServiceFlags::PERSISTENT, "persistent"),
    (ServiceFlags::HASHED, "hashed"),
    (ServiceFlags::ONE_PACKET, "one-packet"),
    (ServiceFlags::SCHED1, "flag-1"),
    (ServiceFlags::SCHED2, "flag-2"),
    (ServiceFlags::SCHED3, "flag-3"),
];

impl fmt::Display for ServiceFlags {
    /// The flags set, comma-separated, in ipvsadm's words (`flag-1`,
    /// `flag-2`, `flag-3` for the scheduler flags, as its `-b` takes them
    /// whatever the scheduler), bits without a name in hex (`0x100`);
    /// nothing for no flag.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut rest = self.bits();
        for (flag, name) in FLAG_NAMES {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = ",";
                rest &= !flag.bits();
            }
        }
        for bit in (0..32).map(|i| 1u32 << i).filter(|b| rest & b != 0) {
            write!(f, "{sep}{bit:#x}")?;
            sep = ",";
        }
        Ok(())
    }
}

impl std::str::FromStr for ServiceFlags {
    type Err = ParseError;

    /// What `Display` writes; also ipvsadm's scheduler names of flags 1
    /// and 2 (`sh-fallback`, `sh-port`, `mh-fallback`, `mh-port`). The
    /// empty string is no flag.
    ///
    /// ```
    /// use ipvs_netlink::ServiceFlags;
    ///
    /// let f: ServiceFlags = "persistent,sh-fallback,sh-port".parse()?;
    /// assert_eq!(f, ServiceFlags::PERSISTENT | ServiceFlags::SCHED1 | ServiceFlags::SCHED2);
    /// assert_eq!(f.to_string(), "persistent,flag-1,flag-2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut out = ServiceFlags::empty();
        for word in s.split(',').filter(|w| !w.is_empty()) {
            let word = word.trim();
            let known = FLAG_NAMES
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(word))
                .map(|(flag, _)| *flag);
            let flag = match (known, word) {
                (Some(flag), _) => flag,
                (None, "sh-fallback" | "mh-fallback") => ServiceFlags::SCHED1,
                (None, "sh-port" | "mh-port") => ServiceFlags::SCHED2,
                (None, w) => w
                    .strip_prefix("0x")
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .map(ServiceFlags::from_bits_retain)
                    .ok_or_else(|| {
                        ParseError::new(
                            "service flags",
                            s,
                            "comma-separated persistent, hashed, one-packet, flag-1, flag-2, \
                             flag-3 (sh-/mh-fallback, sh-/mh-port) or 0xBITS",
                        )
                    })?,
            };
            out |= flag;
        }
        Ok(out)
    }
}

/// The persistence netmask of a service: which client addresses share a
/// persistence template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// An IPv4 mask such as 255.255.255.0.
    V4(Ipv4Addr),
    /// An IPv6 prefix length, 1 to 128.
    V6(u32),
}

impl Netmask {
    /// The mask that makes every client its own: /32 or /128.
    pub fn full(family: AddressFamily) -> Self {
        match family {
            AddressFamily::Inet => Netmask::V4(Ipv4Addr::BROADCAST),
            AddressFamily::Inet6 => Netmask::V6(128),
        }
    }

    /// The raw 32-bit field: mask bytes in network order for IPv4, a
    /// prefix length in host order for IPv6 (as the kernel reads it).
    pub fn to_raw(self) -> u32 {
        match self {
            Netmask::V4(mask) => u32::from_ne_bytes(mask.octets()),
            Netmask::V6(prefix) => prefix,
        }
    }

    /// Reads the raw field for a service of `family`.
    pub fn from_raw(raw: u32, family: AddressFamily) -> Self {
        match family {
            AddressFamily::Inet => Netmask::V4(Ipv4Addr::from(raw.to_ne_bytes())),
            AddressFamily::Inet6 => Netmask::V6(raw),
        }
    }
}

/// A virtual service with its settings and, when read from the kernel, its
/// counters.
///
/// ```
/// use ipvs_netlink::{Service, ServiceId};
///
/// let svc = Service::new(ServiceId::tcp("10.97.97.97:80".parse().unwrap()), "rr");
/// assert_eq!(svc.scheduler, "rr");
/// assert_eq!(svc.id.to_string(), "TCP 10.97.97.97:80");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Service {
    /// What identifies the service.
    pub id: ServiceId,
    /// Scheduler name (`rr`, `wlc`, ... or any name a kernel module offers).
    pub scheduler: String,
    /// Flags; the kernel adds [`ServiceFlags::HASHED`] to every service.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (meaningful with `PERSISTENT`).
    pub timeout: u32,
    /// Persistence netmask.
    pub netmask: Netmask,
    /// Persistence engine (`sip`), if any.
    pub persistence_engine: Option<String>,
    /// Counters, when the kernel reported them (64-bit ones preferred).
    pub stats: Option<Stats>,
}

impl Service {
    /// A service with `scheduler`, no flags, no persistence and the full
    /// netmask of its family.
    pub fn new(id: ServiceId, scheduler: impl Into<String>) -> Self {
        Service {
            netmask: Netmask::full(id.family()),
            id,
            scheduler: scheduler.into(),
            flags: ServiceFlags::empty(),
            timeout: 0,
            persistence_engine: None,
            stats: None,
        }
    }

    crate::__service_builders!();

    /// The full attribute set NEW_SERVICE and SET_SERVICE need. The flag
    /// mask is all ones: the flags given replace the service's.
    pub fn to_attrs(&self) -> Vec<ServiceAttr> {
        self.attrs()
            .into_iter()
            .flatten()
            .map(ServiceAttr::into_owned)
            .collect()
    }

    /// [`Service::to_attrs`] borrowed from the service, allocating
    /// nothing, the absent ones `None`: what the handle writes.
    pub(crate) fn attrs(&self) -> [Option<ServiceAttr<[u8; 16], &str>>; 9] {
        let [af, protocol, addr, port] = self.id.attrs();
        [
            af,
            protocol,
            addr,
            port,
            Some(ServiceAttr::SchedulerName(self.scheduler.as_str())),
            self.persistence_engine
                .as_deref()
                .map(ServiceAttr::PersistenceEngine),
            Some(ServiceAttr::Flags {
                flags: self.flags.bits(),
                mask: !0,
            }),
            Some(ServiceAttr::Timeout(self.timeout)),
            Some(ServiceAttr::Netmask(self.netmask.to_raw())),
        ]
    }

    /// Reads a service from a service nest. Scheduler, flags, timeout and
    /// netmask are required (the kernel always reports them); the
    /// persistence engine and counters are optional.
    pub fn from_attrs(attrs: &[ServiceAttr]) -> Result<Self, DecodeError> {
        let id = ServiceId::from_attrs(attrs)?;
        let (mut sched, mut flags, mut timeout, mut netmask) = (None, None, None, None);
        let (mut pe, mut stats, mut stats64) = (None, None, None);
        for attr in attrs {
            match attr {
                ServiceAttr::SchedulerName(s) => sched = Some(s.clone()),
                ServiceAttr::Flags { flags: f, .. } => flags = Some(*f),
                ServiceAttr::Timeout(t) => timeout = Some(*t),
                ServiceAttr::Netmask(n) => netmask = Some(*n),
                ServiceAttr::PersistenceEngine(p) => pe = Some(p.clone()),
                ServiceAttr::Stats(s) => stats = Some(Stats::from_attrs(s)),
                ServiceAttr::Stats64(s) => stats64 = Some(Stats::from_attrs(s)),
                _ => {}
            }
        }
        Ok(Service {
            scheduler: sched.ok_or_else(|| missing(&id, "SCHED_NAME"))?,
            flags: ServiceFlags::from_bits_retain(flags.ok_or_else(|| missing(&id, "FLAGS"))?),
            timeout: timeout.ok_or_else(|| missing(&id, "TIMEOUT"))?,
            netmask: Netmask::from_raw(
                netmask.ok_or_else(|| missing(&id, "NETMASK"))?,
                id.family(),
            ),
            persistence_engine: pe.filter(|p| !p.is_empty()),
            stats: stats64.or(stats),
            id,
        })
    }
}

fn missing(id: &ServiceId, attr: &str) -> DecodeError {
    format!("service {id} without IPVS_SVC_ATTR_{attr}").into()
}
