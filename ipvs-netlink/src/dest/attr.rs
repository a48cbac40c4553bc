//! The attributes of an `IPVS_CMD_ATTR_DEST` nest (`IPVS_DEST_ATTR_*`).

use netlink_packet_core::{DecodeError, DefaultNla, ErrorContext, Nla, NlaBuffer, Parseable};

use crate::nla_util::{u16_be, u16_ne, u32_ne, u8_of};
use crate::stats::{emit_nest, nest_len, parse_stats_nest, StatsAttr, StatsWidth};

pub(crate) const IPVS_DEST_ATTR_ADDR: u16 = 1;
pub(crate) const IPVS_DEST_ATTR_PORT: u16 = 2;
pub(crate) const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
pub(crate) const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
pub(crate) const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
pub(crate) const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
pub(crate) const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
pub(crate) const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
pub(crate) const IPVS_DEST_ATTR_PERSIST_CONNS: u16 = 9;
pub(crate) const IPVS_DEST_ATTR_STATS: u16 = 10;
pub(crate) const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
pub(crate) const IPVS_DEST_ATTR_STATS64: u16 = 12;
pub(crate) const IPVS_DEST_ATTR_TUN_TYPE: u16 = 13;
pub(crate) const IPVS_DEST_ATTR_TUN_PORT: u16 = 14;
pub(crate) const IPVS_DEST_ATTR_TUN_FLAGS: u16 = 15;

/// One attribute of a destination (real server) nest, close to the wire.
///
/// [`crate::Destination`] is the typed view. As with
/// [`crate::ServiceAttr`], this enum's [`Nla`] impl is the one encoder of
/// these attributes, and `B` holds the address's bytes: owned
/// (`Vec<u8>`, the default) when parsed, inline (`[u8; 16]`) when the
/// handle writes a request from the model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestAttr<B = Vec<u8>> {
    /// The real server's address: 16 bytes from the kernel; the family is
    /// [`DestAttr::AddressFamily`] when present, else the service's.
    Address(B),
    /// The real server's port (network byte order on the wire).
    Port(u16),
    /// Connection flags; the low 3 bits are the forwarding method.
    ForwardMethod(u32),
    /// Scheduling weight.
    Weight(u32),
    /// Upper connection threshold (0: none).
    UpperThreshold(u32),
    /// Lower connection threshold.
    LowerThreshold(u32),
    /// Active connections (read only).
    ActiveConns(u32),
    /// Inactive connections (read only).
    InactiveConns(u32),
    /// Persistent connection templates (read only).
    PersistentConns(u32),
    /// 32-bit style counters.
    Stats(Vec<StatsAttr>),
    /// Address family of the destination (Linux 3.18 and later).
    AddressFamily(u16),
    /// 64-bit counters.
    Stats64(Vec<StatsAttr>),
    /// Tunnel type: 0 ipip, 1 gue, 2 gre (Linux 5.2 and later).
    TunnelType(u8),
    /// Tunnel port for GUE (network byte order on the wire).
    TunnelPort(u16),
    /// Tunnel checksum flags: 0 nocsum, 1 csum, 2 remcsum.
    TunnelFlags(u16),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

impl<B: AsRef<[u8]>> DestAttr<B> {
    /// The attribute with its address owned.
    pub fn into_owned(self) -> DestAttr {
        use DestAttr::*;
        match self {
            Address(b) => Address(b.as_ref().to_vec()),
            Port(v) => Port(v),
            ForwardMethod(v) => ForwardMethod(v),
            Weight(v) => Weight(v),
            UpperThreshold(v) => UpperThreshold(v),
            LowerThreshold(v) => LowerThreshold(v),
            ActiveConns(v) => ActiveConns(v),
            InactiveConns(v) => InactiveConns(v),
            PersistentConns(v) => PersistentConns(v),
            Stats(v) => Stats(v),
            AddressFamily(v) => AddressFamily(v),
            Stats64(v) => Stats64(v),
            TunnelType(v) => TunnelType(v),
            TunnelPort(v) => TunnelPort(v),
            TunnelFlags(v) => TunnelFlags(v),
            Other(nla) => Other(nla),
        }
    }
}

impl<B: AsRef<[u8]>> Nla for DestAttr<B> {
    fn value_len(&self) -> usize {
        use DestAttr::*;
        match self {
            Address(bytes) => bytes.as_ref().len(),
            TunnelType(_) => 1,
            Port(_) | AddressFamily(_) | TunnelPort(_) | TunnelFlags(_) => 2,
            ForwardMethod(_) | Weight(_) | UpperThreshold(_) | LowerThreshold(_)
            | ActiveConns(_) | InactiveConns(_) | PersistentConns(_) => 4,
            Stats(attrs) => nest_len(attrs, StatsWidth::Legacy),
            Stats64(attrs) => nest_len(attrs, StatsWidth::Wide),
            Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use DestAttr::*;
        match self {
            Address(_) => IPVS_DEST_ATTR_ADDR,
            Port(_) => IPVS_DEST_ATTR_PORT,
            ForwardMethod(_) => IPVS_DEST_ATTR_FWD_METHOD,
            Weight(_) => IPVS_DEST_ATTR_WEIGHT,
            UpperThreshold(_) => IPVS_DEST_ATTR_U_THRESH,
            LowerThreshold(_) => IPVS_DEST_ATTR_L_THRESH,
            ActiveConns(_) => IPVS_DEST_ATTR_ACTIVE_CONNS,
            InactiveConns(_) => IPVS_DEST_ATTR_INACT_CONNS,
            PersistentConns(_) => IPVS_DEST_ATTR_PERSIST_CONNS,
            Stats(_) => IPVS_DEST_ATTR_STATS,
            AddressFamily(_) => IPVS_DEST_ATTR_ADDR_FAMILY,
            Stats64(_) => IPVS_DEST_ATTR_STATS64,
            TunnelType(_) => IPVS_DEST_ATTR_TUN_TYPE,
            TunnelPort(_) => IPVS_DEST_ATTR_TUN_PORT,
            TunnelFlags(_) => IPVS_DEST_ATTR_TUN_FLAGS,
            Other(nla) => nla.kind(),
        }
    }

    // Only an unknown attribute can carry the flags in its kind: the
    // defaults would ask `kind()` for them on every attribute written.
    fn is_nested(&self) -> bool {
        match self {
            DestAttr::Other(nla) => nla.is_nested(),
            _ => false,
        }
    }

    fn is_network_byteorder(&self) -> bool {
        match self {
            DestAttr::Other(nla) => nla.is_network_byteorder(),
            _ => false,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use DestAttr::*;
        match self {
            Address(bytes) => buffer.copy_from_slice(bytes.as_ref()),
            TunnelType(v) => buffer[0] = *v,
            Port(v) | TunnelPort(v) => buffer.copy_from_slice(&v.to_be_bytes()),
            AddressFamily(v) | TunnelFlags(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            ForwardMethod(v) | Weight(v) | UpperThreshold(v) | LowerThreshold(v)
            | ActiveConns(v) | InactiveConns(v) | PersistentConns(v) => {
                buffer.copy_from_slice(&v.to_ne_bytes())
            }
            Stats(attrs) => emit_nest(attrs, StatsWidth::Legacy, buffer),
            Stats64(attrs) => emit_nest(attrs, StatsWidth::Wide, buffer),
            Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() {
            IPVS_DEST_ATTR_ADDR => {
                if payload.len() > 16 {
                    return Err(format!(
                        "IPVS_DEST_ATTR_ADDR: at most 16 bytes, got {}",
                        payload.len()
                    )
                    .into());
                }
                Self::Address(payload.to_vec())
            }
            IPVS_DEST_ATTR_PORT => Self::Port(u16_be(payload, "IPVS_DEST_ATTR_PORT")?),
            IPVS_DEST_ATTR_FWD_METHOD => {
                Self::ForwardMethod(u32_ne(payload, "IPVS_DEST_ATTR_FWD_METHOD")?)
            }
            IPVS_DEST_ATTR_WEIGHT => Self::Weight(u32_ne(payload, "IPVS_DEST_ATTR_WEIGHT")?),
            IPVS_DEST_ATTR_U_THRESH => {
                Self::UpperThreshold(u32_ne(payload, "IPVS_DEST_ATTR_U_THRESH")?)
            }
            IPVS_DEST_ATTR_L_THRESH => {
                Self::LowerThreshold(u32_ne(payload, "IPVS_DEST_ATTR_L_THRESH")?)
            }
            IPVS_DEST_ATTR_ACTIVE_CONNS => {
                Self::ActiveConns(u32_ne(payload, "IPVS_DEST_ATTR_ACTIVE_CONNS")?)
            }
            IPVS_DEST_ATTR_INACT_CONNS => {
                Self::InactiveConns(u32_ne(payload, "IPVS_DEST_ATTR_INACT_CONNS")?)
            }
            IPVS_DEST_ATTR_PERSIST_CONNS => {
                Self::PersistentConns(u32_ne(payload, "IPVS_DEST_ATTR_PERSIST_CONNS")?)
            }
            IPVS_DEST_ATTR_STATS => Self::Stats(
                parse_stats_nest(payload, "IPVS_DEST_ATTR_STATS").context("destination stats")?,
            ),
            IPVS_DEST_ATTR_ADDR_FAMILY => {
                Self::AddressFamily(u16_ne(payload, "IPVS_DEST_ATTR_ADDR_FAMILY")?)
            }
            IPVS_DEST_ATTR_STATS64 => Self::Stats64(
                parse_stats_nest(payload, "IPVS_DEST_ATTR_STATS64")
                    .context("destination stats64")?,
            ),
            IPVS_DEST_ATTR_TUN_TYPE => Self::TunnelType(u8_of(payload, "IPVS_DEST_ATTR_TUN_TYPE")?),
            IPVS_DEST_ATTR_TUN_PORT => {
                Self::TunnelPort(u16_be(payload, "IPVS_DEST_ATTR_TUN_PORT")?)
            }
            IPVS_DEST_ATTR_TUN_FLAGS => {
                Self::TunnelFlags(u16_ne(payload, "IPVS_DEST_ATTR_TUN_FLAGS")?)
            }
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}
