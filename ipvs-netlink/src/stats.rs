//! Traffic counters of a service or destination (`IPVS_STATS_ATTR_*`).
//!
//! The kernel sends the same counters twice: in the `STATS` nest, where
//! connections, packets and rates are 32 bits wide (bytes are 64), and in
//! the `STATS64` nest (Linux 4.1 and later), where all are 64 bits wide.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer, Parseable,
};

use crate::nla_util::{parse_nest, u32_or_u64_ne};

const IPVS_STATS_ATTR_CONNS: u16 = 1;
const IPVS_STATS_ATTR_INPKTS: u16 = 2;
const IPVS_STATS_ATTR_OUTPKTS: u16 = 3;
const IPVS_STATS_ATTR_INBYTES: u16 = 4;
const IPVS_STATS_ATTR_OUTBYTES: u16 = 5;
const IPVS_STATS_ATTR_CPS: u16 = 6;
const IPVS_STATS_ATTR_INPPS: u16 = 7;
const IPVS_STATS_ATTR_OUTPPS: u16 = 8;
const IPVS_STATS_ATTR_INBPS: u16 = 9;
const IPVS_STATS_ATTR_OUTBPS: u16 = 10;

/// One attribute of a `STATS` or `STATS64` nest.
///
/// Values are held as `u64` whatever their width on the wire; the width is
/// decided by the nest when the attribute is emitted (see [`StatsWidth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatsAttr {
    /// Connections scheduled.
    Conns(u64),
    /// Incoming packets.
    InPkts(u64),
    /// Outgoing packets.
    OutPkts(u64),
    /// Incoming bytes.
    InBytes(u64),
    /// Outgoing bytes.
    OutBytes(u64),
    /// Connections per second (rate estimator).
    Cps(u64),
    /// Incoming packets per second.
    InPps(u64),
    /// Outgoing packets per second.
    OutPps(u64),
    /// Incoming bytes per second.
    InBps(u64),
    /// Outgoing bytes per second.
    OutBps(u64),
    /// An attribute this crate does not know (for example `PAD`).
    Other(DefaultNla),
}

/// The layout of a stats nest: which counters are 32 bits wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsWidth {
    /// `IPVS_*_ATTR_STATS`: bytes are 64 bits, everything else 32.
    Legacy,
    /// `IPVS_*_ATTR_STATS64`: everything is 64 bits.
    Wide,
}

impl StatsAttr {
    fn kind_and_value(&self) -> Option<(u16, u64)> {
        use StatsAttr::*;
        Some(match *self {
            Conns(v) => (IPVS_STATS_ATTR_CONNS, v),
            InPkts(v) => (IPVS_STATS_ATTR_INPKTS, v),
            OutPkts(v) => (IPVS_STATS_ATTR_OUTPKTS, v),
            InBytes(v) => (IPVS_STATS_ATTR_INBYTES, v),
            OutBytes(v) => (IPVS_STATS_ATTR_OUTBYTES, v),
            Cps(v) => (IPVS_STATS_ATTR_CPS, v),
            InPps(v) => (IPVS_STATS_ATTR_INPPS, v),
            OutPps(v) => (IPVS_STATS_ATTR_OUTPPS, v),
            InBps(v) => (IPVS_STATS_ATTR_INBPS, v),
            OutBps(v) => (IPVS_STATS_ATTR_OUTBPS, v),
            Other(_) => return None,
        })
    }
}

/// A stats attribute together with the width of the nest it is emitted in.
pub(crate) struct WidthNla<'a> {
    pub(crate) attr: &'a StatsAttr,
    pub(crate) width: StatsWidth,
}

impl WidthNla<'_> {
    fn is_wide(&self, kind: u16) -> bool {
        self.width == StatsWidth::Wide
            || kind == IPVS_STATS_ATTR_INBYTES
            || kind == IPVS_STATS_ATTR_OUTBYTES
    }
}

impl Nla for WidthNla<'_> {
    fn value_len(&self) -> usize {
        match self.attr.kind_and_value() {
            Some((kind, _)) if self.is_wide(kind) => 8,
            Some(_) => 4,
            None => match self.attr {
                StatsAttr::Other(nla) => nla.value_len(),
                _ => 0,
            },
        }
    }

    fn kind(&self) -> u16 {
        match (self.attr.kind_and_value(), self.attr) {
            (Some((kind, _)), _) => kind,
            (None, StatsAttr::Other(nla)) => nla.kind(),
            (None, _) => 0,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self.attr.kind_and_value() {
            Some((kind, v)) if self.is_wide(kind) => buffer.copy_from_slice(&v.to_ne_bytes()),
            // The legacy nest carries these counters as u32: the kernel
            // truncates them the same way.
            Some((_, v)) => buffer.copy_from_slice(&(v as u32).to_ne_bytes()),
            None => {
                if let StatsAttr::Other(nla) = self.attr {
                    nla.emit_value(buffer)
                }
            }
        }
    }
}

/// The emitted length of a stats nest's attributes.
pub(crate) fn nest_len(attrs: &[StatsAttr], width: StatsWidth) -> usize {
    attrs
        .iter()
        .map(|attr| WidthNla { attr, width }.buffer_len())
        .sum()
}

/// Emits a stats nest's attributes into `buffer`.
pub(crate) fn emit_nest(attrs: &[StatsAttr], width: StatsWidth, buffer: &mut [u8]) {
    let mut at = 0;
    for attr in attrs {
        let nla = WidthNla { attr, width };
        let len = nla.buffer_len();
        nla.emit(&mut buffer[at..at + len]);
        at += len;
    }
}

/// The name of a known stats attribute, for errors.
fn stats_name(kind: u16) -> &'static str {
    match kind {
        IPVS_STATS_ATTR_CONNS => "IPVS_STATS_ATTR_CONNS",
        IPVS_STATS_ATTR_INPKTS => "IPVS_STATS_ATTR_INPKTS",
        IPVS_STATS_ATTR_OUTPKTS => "IPVS_STATS_ATTR_OUTPKTS",
        IPVS_STATS_ATTR_INBYTES => "IPVS_STATS_ATTR_INBYTES",
        IPVS_STATS_ATTR_OUTBYTES => "IPVS_STATS_ATTR_OUTBYTES",
        IPVS_STATS_ATTR_CPS => "IPVS_STATS_ATTR_CPS",
        IPVS_STATS_ATTR_INPPS => "IPVS_STATS_ATTR_INPPS",
        IPVS_STATS_ATTR_OUTPPS => "IPVS_STATS_ATTR_OUTPPS",
        IPVS_STATS_ATTR_INBPS => "IPVS_STATS_ATTR_INBPS",
        _ => "IPVS_STATS_ATTR_OUTBPS",
    }
}

/// Parses the attributes of a stats nest.
pub(crate) fn parse_stats_nest(payload: &[u8], what: &str) -> Result<Vec<StatsAttr>, DecodeError> {
    parse_nest(payload, what)
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for StatsAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        let v = |what| u32_or_u64_ne(payload, what);
        Ok(match buf.kind() {
            IPVS_STATS_ATTR_CONNS => Self::Conns(v("IPVS_STATS_ATTR_CONNS")?),
            IPVS_STATS_ATTR_INPKTS => Self::InPkts(v("IPVS_STATS_ATTR_INPKTS")?),
            IPVS_STATS_ATTR_OUTPKTS => Self::OutPkts(v("IPVS_STATS_ATTR_OUTPKTS")?),
            IPVS_STATS_ATTR_INBYTES => Self::InBytes(v("IPVS_STATS_ATTR_INBYTES")?),
            IPVS_STATS_ATTR_OUTBYTES => Self::OutBytes(v("IPVS_STATS_ATTR_OUTBYTES")?),
            IPVS_STATS_ATTR_CPS => Self::Cps(v("IPVS_STATS_ATTR_CPS")?),
            IPVS_STATS_ATTR_INPPS => Self::InPps(v("IPVS_STATS_ATTR_INPPS")?),
            IPVS_STATS_ATTR_OUTPPS => Self::OutPps(v("IPVS_STATS_ATTR_OUTPPS")?),
            IPVS_STATS_ATTR_INBPS => Self::InBps(v("IPVS_STATS_ATTR_INBPS")?),
            IPVS_STATS_ATTR_OUTBPS => Self::OutBps(v("IPVS_STATS_ATTR_OUTBPS")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Traffic counters of a service or a destination, as the kernel keeps them.
///
/// Rates are the kernel's estimator values: per second, with bytes per
/// second in the units the kernel reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Stats {
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
    /// Connections per second.
    pub cps: u64,
    /// Incoming packets per second.
    pub in_pps: u64,
    /// Outgoing packets per second.
    pub out_pps: u64,
    /// Incoming bytes per second.
    pub in_bps: u64,
    /// Outgoing bytes per second.
    pub out_bps: u64,
}

impl Stats {
    /// Collects counters from a nest's attributes; unknown ones are skipped.
    pub fn from_attrs(attrs: &[StatsAttr]) -> Self {
        let mut s = Stats::default();
        for attr in attrs {
            match *attr {
                StatsAttr::Conns(v) => s.conns = v,
                StatsAttr::InPkts(v) => s.in_pkts = v,
                StatsAttr::OutPkts(v) => s.out_pkts = v,
                StatsAttr::InBytes(v) => s.in_bytes = v,
                StatsAttr::OutBytes(v) => s.out_bytes = v,
                StatsAttr::Cps(v) => s.cps = v,
                StatsAttr::InPps(v) => s.in_pps = v,
                StatsAttr::OutPps(v) => s.out_pps = v,
                StatsAttr::InBps(v) => s.in_bps = v,
                StatsAttr::OutBps(v) => s.out_bps = v,
                StatsAttr::Other(_) => {}
            }
        }
        s
    }

    /// Reads the counters straight from the bytes of a `STATS` or
    /// `STATS64` nest (named `what` in errors), as [`Stats::from_attrs`]
    /// reads the parsed attributes; unknown attributes are skipped.
    pub(crate) fn parse_nest(nest: &[u8], what: &str) -> Result<Self, DecodeError> {
        let mut s = Stats::default();
        for nla in netlink_packet_core::NlasIterator::new(nest) {
            let nla = nla.with_context(|| format!("malformed attribute in {what}"))?;
            let field = match nla.kind() {
                IPVS_STATS_ATTR_CONNS => &mut s.conns,
                IPVS_STATS_ATTR_INPKTS => &mut s.in_pkts,
                IPVS_STATS_ATTR_OUTPKTS => &mut s.out_pkts,
                IPVS_STATS_ATTR_INBYTES => &mut s.in_bytes,
                IPVS_STATS_ATTR_OUTBYTES => &mut s.out_bytes,
                IPVS_STATS_ATTR_CPS => &mut s.cps,
                IPVS_STATS_ATTR_INPPS => &mut s.in_pps,
                IPVS_STATS_ATTR_OUTPPS => &mut s.out_pps,
                IPVS_STATS_ATTR_INBPS => &mut s.in_bps,
                IPVS_STATS_ATTR_OUTBPS => &mut s.out_bps,
                _ => continue,
            };
            *field = u32_or_u64_ne(nla.value(), stats_name(nla.kind()))
                .with_context(|| format!("invalid attribute in {what}"))?;
        }
        Ok(s)
    }

    /// The counters as nest attributes, in the kernel's order.
    pub fn to_attrs(&self) -> Vec<StatsAttr> {
        vec![
            StatsAttr::Conns(self.conns),
            StatsAttr::InPkts(self.in_pkts),
            StatsAttr::OutPkts(self.out_pkts),
            StatsAttr::InBytes(self.in_bytes),
            StatsAttr::OutBytes(self.out_bytes),
            StatsAttr::Cps(self.cps),
            StatsAttr::InPps(self.in_pps),
            StatsAttr::OutPps(self.out_pps),
            StatsAttr::InBps(self.in_bps),
            StatsAttr::OutBps(self.out_bps),
        ]
    }
}
