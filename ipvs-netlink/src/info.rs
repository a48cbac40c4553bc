//! The reply to `IPVS_CMD_GET_INFO`: version and connection table size.

use netlink_packet_core::{DecodeError, DefaultNla, Nla, NlaBuffer, Parseable};

use crate::nla_util::u32_ne;

const IPVS_INFO_ATTR_VERSION: u16 = 1;
const IPVS_INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

/// An attribute of the `GET_INFO` reply (`IPVS_INFO_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InfoAttr {
    /// IPVS version as `0x00MMmmpp` (1.2.1 is `0x010201`).
    Version(u32),
    /// Size of the connection hash table.
    ConnTableSize(u32),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

impl Nla for InfoAttr {
    fn value_len(&self) -> usize {
        match self {
            InfoAttr::Version(_) | InfoAttr::ConnTableSize(_) => 4,
            InfoAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            InfoAttr::Version(_) => IPVS_INFO_ATTR_VERSION,
            InfoAttr::ConnTableSize(_) => IPVS_INFO_ATTR_CONN_TAB_SIZE,
            InfoAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            InfoAttr::Version(v) | InfoAttr::ConnTableSize(v) => {
                buffer.copy_from_slice(&v.to_ne_bytes())
            }
            InfoAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for InfoAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() {
            IPVS_INFO_ATTR_VERSION => InfoAttr::Version(u32_ne(payload, "IPVS_INFO_ATTR_VERSION")?),
            IPVS_INFO_ATTR_CONN_TAB_SIZE => {
                InfoAttr::ConnTableSize(u32_ne(payload, "IPVS_INFO_ATTR_CONN_TAB_SIZE")?)
            }
            _ => InfoAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// IPVS version and connection table size, as `ipvsadm -L` prints them in
/// its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Info {
    /// Version as `0x00MMmmpp`.
    pub version: u32,
    /// Connection table size.
    pub conn_table_size: u32,
}

impl Info {
    /// The version as (major, minor, patch).
    pub fn version_triple(&self) -> (u32, u32, u32) {
        (
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff,
        )
    }

    /// Reads an `Info` from the attributes of a `SET_INFO` reply.
    pub fn from_attrs(attrs: &[InfoAttr]) -> Result<Self, DecodeError> {
        let mut version = None;
        let mut size = None;
        for attr in attrs {
            match attr {
                InfoAttr::Version(v) => version = Some(*v),
                InfoAttr::ConnTableSize(v) => size = Some(*v),
                InfoAttr::Other(_) => {}
            }
        }
        Ok(Info {
            version: version.ok_or("GET_INFO reply without IPVS_INFO_ATTR_VERSION")?,
            conn_table_size: size.ok_or("GET_INFO reply without IPVS_INFO_ATTR_CONN_TAB_SIZE")?,
        })
    }

    /// The attributes of a `SET_INFO` message carrying this value.
    pub fn to_attrs(&self) -> Vec<InfoAttr> {
        vec![
            InfoAttr::Version(self.version),
            InfoAttr::ConnTableSize(self.conn_table_size),
        ]
    }
}
