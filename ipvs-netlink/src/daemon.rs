//! Connection-sync daemons: the `IPVS_DAEMON_ATTR_*` nest and its model.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{DecodeError, DefaultNla, Nla, NlaBuffer, Parseable};

use crate::nla_util::{emit_string, exact, string, u16_ne, u32_ne, u8_of};

pub(crate) const IPVS_DAEMON_ATTR_STATE: u16 = 1;
pub(crate) const IPVS_DAEMON_ATTR_MCAST_IFN: u16 = 2;
pub(crate) const IPVS_DAEMON_ATTR_SYNC_ID: u16 = 3;
pub(crate) const IPVS_DAEMON_ATTR_SYNC_MAXLEN: u16 = 4;
pub(crate) const IPVS_DAEMON_ATTR_MCAST_GROUP: u16 = 5;
pub(crate) const IPVS_DAEMON_ATTR_MCAST_GROUP6: u16 = 6;
pub(crate) const IPVS_DAEMON_ATTR_MCAST_PORT: u16 = 7;
pub(crate) const IPVS_DAEMON_ATTR_MCAST_TTL: u16 = 8;

/// One attribute of a daemon nest, close to the wire.
///
/// Its [`Nla`] impl is the one encoder of these attributes; `S` holds the
/// interface name: owned (`String`, the default) when parsed, borrowed
/// (`&str`) when the handle writes a request from the model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaemonAttr<S = String> {
    /// 1 master, 2 backup.
    State(u32),
    /// Multicast interface name.
    McastInterface(S),
    /// Sync id.
    SyncId(u32),
    /// Maximum sync message length.
    SyncMaxLen(u16),
    /// IPv4 multicast group, as the 4 bytes of the address.
    McastGroup([u8; 4]),
    /// IPv6 multicast group.
    McastGroup6([u8; 16]),
    /// UDP port, in host order on the wire (unlike service ports).
    McastPort(u16),
    /// Multicast TTL.
    McastTtl(u8),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

impl<S: AsRef<str>> DaemonAttr<S> {
    /// The attribute with its interface name owned.
    pub fn into_owned(self) -> DaemonAttr {
        use DaemonAttr::*;
        match self {
            State(v) => State(v),
            McastInterface(s) => McastInterface(s.as_ref().to_owned()),
            SyncId(v) => SyncId(v),
            SyncMaxLen(v) => SyncMaxLen(v),
            McastGroup(b) => McastGroup(b),
            McastGroup6(b) => McastGroup6(b),
            McastPort(v) => McastPort(v),
            McastTtl(v) => McastTtl(v),
            Other(nla) => Other(nla),
        }
    }
}

impl<S: AsRef<str>> Nla for DaemonAttr<S> {
    fn value_len(&self) -> usize {
        use DaemonAttr::*;
        match self {
            State(_) | SyncId(_) | McastGroup(_) => 4,
            McastInterface(s) => s.as_ref().len() + 1,
            SyncMaxLen(_) | McastPort(_) => 2,
            McastGroup6(_) => 16,
            McastTtl(_) => 1,
            Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use DaemonAttr::*;
        match self {
            State(_) => IPVS_DAEMON_ATTR_STATE,
            McastInterface(_) => IPVS_DAEMON_ATTR_MCAST_IFN,
            SyncId(_) => IPVS_DAEMON_ATTR_SYNC_ID,
            SyncMaxLen(_) => IPVS_DAEMON_ATTR_SYNC_MAXLEN,
            McastGroup(_) => IPVS_DAEMON_ATTR_MCAST_GROUP,
            McastGroup6(_) => IPVS_DAEMON_ATTR_MCAST_GROUP6,
            McastPort(_) => IPVS_DAEMON_ATTR_MCAST_PORT,
            McastTtl(_) => IPVS_DAEMON_ATTR_MCAST_TTL,
            Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use DaemonAttr::*;
        match self {
            State(v) | SyncId(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            McastInterface(s) => emit_string(buffer, s.as_ref()),
            SyncMaxLen(v) | McastPort(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            McastGroup(b) => buffer.copy_from_slice(b),
            McastGroup6(b) => buffer.copy_from_slice(b),
            McastTtl(v) => buffer[0] = *v,
            Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DaemonAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let p = buf.value();
        Ok(match buf.kind() {
            IPVS_DAEMON_ATTR_STATE => Self::State(u32_ne(p, "IPVS_DAEMON_ATTR_STATE")?),
            IPVS_DAEMON_ATTR_MCAST_IFN => {
                Self::McastInterface(string(p, "IPVS_DAEMON_ATTR_MCAST_IFN")?)
            }
            IPVS_DAEMON_ATTR_SYNC_ID => Self::SyncId(u32_ne(p, "IPVS_DAEMON_ATTR_SYNC_ID")?),
            IPVS_DAEMON_ATTR_SYNC_MAXLEN => {
                Self::SyncMaxLen(u16_ne(p, "IPVS_DAEMON_ATTR_SYNC_MAXLEN")?)
            }
            IPVS_DAEMON_ATTR_MCAST_GROUP => {
                Self::McastGroup(exact(p, "IPVS_DAEMON_ATTR_MCAST_GROUP")?)
            }
            IPVS_DAEMON_ATTR_MCAST_GROUP6 => {
                Self::McastGroup6(exact(p, "IPVS_DAEMON_ATTR_MCAST_GROUP6")?)
            }
            IPVS_DAEMON_ATTR_MCAST_PORT => {
                Self::McastPort(u16_ne(p, "IPVS_DAEMON_ATTR_MCAST_PORT")?)
            }
            IPVS_DAEMON_ATTR_MCAST_TTL => Self::McastTtl(u8_of(p, "IPVS_DAEMON_ATTR_MCAST_TTL")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The role of a sync daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DaemonState {
    /// Sends connection state (1).
    Master,
    /// Receives connection state (2).
    Backup,
    /// A value this crate does not know.
    Other(u32),
}

impl DaemonState {
    /// The kernel's value.
    pub fn to_raw(self) -> u32 {
        match self {
            DaemonState::Master => 1,
            DaemonState::Backup => 2,
            DaemonState::Other(n) => n,
        }
    }

    /// Reads a kernel value.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            1 => DaemonState::Master,
            2 => DaemonState::Backup,
            n => DaemonState::Other(n),
        }
    }
}

/// A connection-sync daemon: what `--start-daemon` starts and `--daemon`
/// lists. Optional fields left `None` take the kernel's defaults when
/// starting (group 224.0.0.81, port 8848, TTL 1, length from the MTU).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Daemon {
    /// Master or backup.
    pub state: DaemonState,
    /// Multicast interface.
    pub interface: String,
    /// Sync id (0 to 255).
    pub sync_id: u32,
    /// Maximum sync message length.
    pub max_len: Option<u16>,
    /// Multicast group.
    pub group: Option<IpAddr>,
    /// UDP port.
    pub port: Option<u16>,
    /// Multicast TTL.
    pub ttl: Option<u8>,
}

impl Daemon {
    /// A daemon of `state` on `interface` with sync id 0 and the kernel's
    /// defaults for the rest.
    pub fn new(state: DaemonState, interface: impl Into<String>) -> Self {
        Daemon {
            state,
            interface: interface.into(),
            sync_id: 0,
            max_len: None,
            group: None,
            port: None,
            ttl: None,
        }
    }

    /// The attributes NEW_DAEMON takes, in libipvs's order.
    pub fn to_attrs(&self) -> Vec<DaemonAttr> {
        self.attrs()
            .into_iter()
            .flatten()
            .map(DaemonAttr::into_owned)
            .collect()
    }

    /// [`Daemon::to_attrs`] borrowed from the daemon, allocating nothing,
    /// the absent ones `None`: what the handle writes. The first three
    /// (state, interface, sync id) are what stopping a daemon sends.
    pub(crate) fn attrs(&self) -> [Option<DaemonAttr<&str>>; 7] {
        [
            Some(DaemonAttr::State(self.state.to_raw())),
            Some(DaemonAttr::McastInterface(self.interface.as_str())),
            Some(DaemonAttr::SyncId(self.sync_id)),
            self.max_len.map(DaemonAttr::SyncMaxLen),
            self.port.map(DaemonAttr::McastPort),
            self.ttl.map(DaemonAttr::McastTtl),
            self.group.map(|g| match g {
                IpAddr::V6(g) => DaemonAttr::McastGroup6(g.octets()),
                IpAddr::V4(g) => DaemonAttr::McastGroup(g.octets()),
            }),
        ]
    }

    /// Reads a daemon from a daemon nest; state, interface and sync id are
    /// required.
    pub fn from_attrs(attrs: &[DaemonAttr]) -> Result<Self, DecodeError> {
        let (mut state, mut ifn, mut id) = (None, None, None);
        let mut d = Daemon::new(DaemonState::Master, "");
        for attr in attrs {
            match attr {
                DaemonAttr::State(v) => state = Some(*v),
                DaemonAttr::McastInterface(v) => ifn = Some(v.clone()),
                DaemonAttr::SyncId(v) => id = Some(*v),
                DaemonAttr::SyncMaxLen(v) => d.max_len = Some(*v),
                DaemonAttr::McastGroup(b) => d.group = Some(IpAddr::V4(Ipv4Addr::from(*b))),
                DaemonAttr::McastGroup6(b) => d.group = Some(IpAddr::V6(Ipv6Addr::from(*b))),
                DaemonAttr::McastPort(v) => d.port = Some(*v),
                DaemonAttr::McastTtl(v) => d.ttl = Some(*v),
                DaemonAttr::Other(_) => {}
            }
        }
        d.state = DaemonState::from_raw(state.ok_or("daemon without IPVS_DAEMON_ATTR_STATE")?);
        d.interface = ifn.ok_or("daemon without IPVS_DAEMON_ATTR_MCAST_IFN")?;
        d.sync_id = id.ok_or("daemon without IPVS_DAEMON_ATTR_SYNC_ID")?;
        Ok(d)
    }
}
