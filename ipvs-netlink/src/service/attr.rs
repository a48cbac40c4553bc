//! The attributes of an `IPVS_CMD_ATTR_SERVICE` nest (`IPVS_SVC_ATTR_*`).

use netlink_packet_core::{DecodeError, DefaultNla, ErrorContext, Nla, NlaBuffer, Parseable};

use crate::nla_util::{emit_string, exact, string, u16_be, u16_ne, u32_ne};
use crate::stats::{emit_nest, nest_len, parse_stats_nest, StatsAttr, StatsWidth};

pub(crate) const IPVS_SVC_ATTR_AF: u16 = 1;
pub(crate) const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
pub(crate) const IPVS_SVC_ATTR_ADDR: u16 = 3;
pub(crate) const IPVS_SVC_ATTR_PORT: u16 = 4;
pub(crate) const IPVS_SVC_ATTR_FWMARK: u16 = 5;
pub(crate) const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
pub(crate) const IPVS_SVC_ATTR_FLAGS: u16 = 7;
pub(crate) const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
pub(crate) const IPVS_SVC_ATTR_NETMASK: u16 = 9;
pub(crate) const IPVS_SVC_ATTR_STATS: u16 = 10;
pub(crate) const IPVS_SVC_ATTR_PE_NAME: u16 = 11;
pub(crate) const IPVS_SVC_ATTR_STATS64: u16 = 12;

/// One attribute of a service nest, close to the wire.
///
/// Values are kept as the kernel sends them (the address as its raw bytes,
/// the netmask as the raw 32-bit field), so that a message parses and
/// re-emits byte for byte. [`crate::Service`] is the typed view. Nests are
/// emitted without `NLA_F_NESTED`, as the kernel's own IPVS replies are.
///
/// This enum's [`Nla`] impl is the crate's one encoder of these
/// attributes: the handle's requests are written through it too. `B`
/// holds an address's bytes and `S` a name. Parsed attributes own them
/// (`Vec<u8>` and `String`, the defaults, which plain `ServiceAttr`
/// means); a request written from the model holds them inline or
/// borrowed (`[u8; 16]`, `&str`), so that writing one allocates nothing.
/// [`ServiceAttr::into_owned`] turns the one into the other.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceAttr<B = Vec<u8>, S = String> {
    /// Address family (`AF_INET` 2 or `AF_INET6` 10).
    AddressFamily(u16),
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    Protocol(u16),
    /// The virtual address: 16 bytes from the kernel, an IPv4 address in
    /// the first 4 bytes; the address family tells which.
    Address(B),
    /// The virtual port (network byte order on the wire).
    Port(u16),
    /// Firewall mark of a fwmark service.
    Fwmark(u32),
    /// Scheduler name, such as `rr` or `wlc`.
    SchedulerName(S),
    /// Service flags and the mask of the flags to change.
    Flags {
        /// `IP_VS_SVC_F_*` bits.
        flags: u32,
        /// Which bits of `flags` apply (the kernel reports `!0`).
        mask: u32,
    },
    /// Persistence timeout in seconds.
    Timeout(u32),
    /// Persistence netmask as the raw 32-bit field: for IPv4 the mask's
    /// bytes in network order, for IPv6 a prefix length in host order.
    Netmask(u32),
    /// 32-bit style counters.
    Stats(Vec<StatsAttr>),
    /// Persistence engine name, such as `sip`.
    PersistenceEngine(S),
    /// 64-bit counters (Linux 4.1 and later).
    Stats64(Vec<StatsAttr>),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

impl<B, S> ServiceAttr<B, S>
where
    B: AsRef<[u8]>,
    S: AsRef<str>,
{
    /// The attribute with its address and names owned.
    pub fn into_owned(self) -> ServiceAttr {
        use ServiceAttr::*;
        match self {
            AddressFamily(v) => AddressFamily(v),
            Protocol(v) => Protocol(v),
            Address(b) => Address(b.as_ref().to_vec()),
            Port(v) => Port(v),
            Fwmark(v) => Fwmark(v),
            SchedulerName(s) => SchedulerName(s.as_ref().to_owned()),
            Flags { flags, mask } => Flags { flags, mask },
            Timeout(v) => Timeout(v),
            Netmask(v) => Netmask(v),
            Stats(v) => Stats(v),
            PersistenceEngine(s) => PersistenceEngine(s.as_ref().to_owned()),
            Stats64(v) => Stats64(v),
            Other(nla) => Other(nla),
        }
    }
}

impl<B, S> Nla for ServiceAttr<B, S>
where
    B: AsRef<[u8]>,
    S: AsRef<str>,
{
    fn value_len(&self) -> usize {
        use ServiceAttr::*;
        match self {
            AddressFamily(_) | Protocol(_) | Port(_) => 2,
            Fwmark(_) | Timeout(_) | Netmask(_) => 4,
            Address(bytes) => bytes.as_ref().len(),
            SchedulerName(s) | PersistenceEngine(s) => s.as_ref().len() + 1,
            Flags { .. } => 8,
            Stats(attrs) => nest_len(attrs, StatsWidth::Legacy),
            Stats64(attrs) => nest_len(attrs, StatsWidth::Wide),
            Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use ServiceAttr::*;
        match self {
            AddressFamily(_) => IPVS_SVC_ATTR_AF,
            Protocol(_) => IPVS_SVC_ATTR_PROTOCOL,
            Address(_) => IPVS_SVC_ATTR_ADDR,
            Port(_) => IPVS_SVC_ATTR_PORT,
            Fwmark(_) => IPVS_SVC_ATTR_FWMARK,
            SchedulerName(_) => IPVS_SVC_ATTR_SCHED_NAME,
            Flags { .. } => IPVS_SVC_ATTR_FLAGS,
            Timeout(_) => IPVS_SVC_ATTR_TIMEOUT,
            Netmask(_) => IPVS_SVC_ATTR_NETMASK,
            Stats(_) => IPVS_SVC_ATTR_STATS,
            PersistenceEngine(_) => IPVS_SVC_ATTR_PE_NAME,
            Stats64(_) => IPVS_SVC_ATTR_STATS64,
            Other(nla) => nla.kind(),
        }
    }

    // Only an unknown attribute can carry the flags in its kind: the
    // defaults would ask `kind()` for them on every attribute written.
    fn is_nested(&self) -> bool {
        match self {
            ServiceAttr::Other(nla) => nla.is_nested(),
            _ => false,
        }
    }

    fn is_network_byteorder(&self) -> bool {
        match self {
            ServiceAttr::Other(nla) => nla.is_network_byteorder(),
            _ => false,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use ServiceAttr::*;
        match self {
            AddressFamily(v) | Protocol(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            Port(v) => buffer.copy_from_slice(&v.to_be_bytes()),
            Fwmark(v) | Timeout(v) | Netmask(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            Address(bytes) => buffer.copy_from_slice(bytes.as_ref()),
            SchedulerName(s) | PersistenceEngine(s) => emit_string(buffer, s.as_ref()),
            Flags { flags, mask } => {
                buffer[..4].copy_from_slice(&flags.to_ne_bytes());
                buffer[4..8].copy_from_slice(&mask.to_ne_bytes());
            }
            Stats(attrs) => emit_nest(attrs, StatsWidth::Legacy, buffer),
            Stats64(attrs) => emit_nest(attrs, StatsWidth::Wide, buffer),
            Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for ServiceAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() {
            IPVS_SVC_ATTR_AF => Self::AddressFamily(u16_ne(payload, "IPVS_SVC_ATTR_AF")?),
            IPVS_SVC_ATTR_PROTOCOL => Self::Protocol(u16_ne(payload, "IPVS_SVC_ATTR_PROTOCOL")?),
            IPVS_SVC_ATTR_ADDR => {
                if payload.len() > 16 {
                    return Err(format!(
                        "IPVS_SVC_ATTR_ADDR: at most 16 bytes, got {}",
                        payload.len()
                    )
                    .into());
                }
                Self::Address(payload.to_vec())
            }
            IPVS_SVC_ATTR_PORT => Self::Port(u16_be(payload, "IPVS_SVC_ATTR_PORT")?),
            IPVS_SVC_ATTR_FWMARK => Self::Fwmark(u32_ne(payload, "IPVS_SVC_ATTR_FWMARK")?),
            IPVS_SVC_ATTR_SCHED_NAME => {
                Self::SchedulerName(string(payload, "IPVS_SVC_ATTR_SCHED_NAME")?)
            }
            IPVS_SVC_ATTR_FLAGS => {
                let raw: [u8; 8] = exact(payload, "IPVS_SVC_ATTR_FLAGS")?;
                let (flags, mask) = raw.split_at(4);
                Self::Flags {
                    flags: u32_ne(flags, "IPVS_SVC_ATTR_FLAGS")?,
                    mask: u32_ne(mask, "IPVS_SVC_ATTR_FLAGS")?,
                }
            }
            IPVS_SVC_ATTR_TIMEOUT => Self::Timeout(u32_ne(payload, "IPVS_SVC_ATTR_TIMEOUT")?),
            IPVS_SVC_ATTR_NETMASK => Self::Netmask(u32_ne(payload, "IPVS_SVC_ATTR_NETMASK")?),
            IPVS_SVC_ATTR_STATS => Self::Stats(
                parse_stats_nest(payload, "IPVS_SVC_ATTR_STATS").context("service stats")?,
            ),
            IPVS_SVC_ATTR_PE_NAME => {
                Self::PersistenceEngine(string(payload, "IPVS_SVC_ATTR_PE_NAME")?)
            }
            IPVS_SVC_ATTR_STATS64 => Self::Stats64(
                parse_stats_nest(payload, "IPVS_SVC_ATTR_STATS64").context("service stats64")?,
            ),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}
