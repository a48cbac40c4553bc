//! IPVS generic-netlink messages: the command and its top-level attributes.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer, Parseable,
    ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::daemon::DaemonAttr;
use crate::dest::DestAttr;
use crate::info::InfoAttr;
use crate::nla_util::{parse_nest, u32_ne};
use crate::service::ServiceAttr;

/// The generic-netlink family name of IPVS.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// The family version this crate speaks.
pub const IPVS_GENL_VERSION: u8 = 1;

pub(crate) const IPVS_CMD_ATTR_SERVICE: u16 = 1;
pub(crate) const IPVS_CMD_ATTR_DEST: u16 = 2;
pub(crate) const IPVS_CMD_ATTR_DAEMON: u16 = 3;
pub(crate) const IPVS_CMD_ATTR_TIMEOUT_TCP: u16 = 4;
pub(crate) const IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
pub(crate) const IPVS_CMD_ATTR_TIMEOUT_UDP: u16 = 6;

/// An IPVS command (`IPVS_CMD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpvsCmd {
    /// Add a service; also the command of service dump replies.
    NewService,
    /// Replace a service's scheduler, flags, timeout and netmask.
    SetService,
    /// Delete a service.
    DelService,
    /// Get one service (doit) or all (dump).
    GetService,
    /// Add a destination; also the command of destination dump replies.
    NewDest,
    /// Replace a destination's settings.
    SetDest,
    /// Delete a destination.
    DelDest,
    /// Dump the destinations of one service.
    GetDest,
    /// Start a sync daemon; also the command of daemon dump replies.
    NewDaemon,
    /// Stop a sync daemon.
    DelDaemon,
    /// Dump the sync daemons.
    GetDaemon,
    /// Set the tcp, tcpfin and udp timeouts; also the GET_CONFIG reply.
    SetConfig,
    /// Get the timeouts.
    GetConfig,
    /// The reply to [`IpvsCmd::GetInfo`].
    SetInfo,
    /// Get the IPVS version and connection table size.
    GetInfo,
    /// Zero the counters of one or all services.
    Zero,
    /// Delete every service.
    Flush,
    /// A command number this crate does not know.
    Other(u8),
}

impl From<IpvsCmd> for u8 {
    fn from(cmd: IpvsCmd) -> u8 {
        use IpvsCmd::*;
        match cmd {
            NewService => 1,
            SetService => 2,
            DelService => 3,
            GetService => 4,
            NewDest => 5,
            SetDest => 6,
            DelDest => 7,
            GetDest => 8,
            NewDaemon => 9,
            DelDaemon => 10,
            GetDaemon => 11,
            SetConfig => 12,
            GetConfig => 13,
            SetInfo => 14,
            GetInfo => 15,
            Zero => 16,
            Flush => 17,
            Other(n) => n,
        }
    }
}

impl From<u8> for IpvsCmd {
    fn from(n: u8) -> IpvsCmd {
        use IpvsCmd::*;
        match n {
            1 => NewService,
            2 => SetService,
            3 => DelService,
            4 => GetService,
            5 => NewDest,
            6 => SetDest,
            7 => DelDest,
            8 => GetDest,
            9 => NewDaemon,
            10 => DelDaemon,
            11 => GetDaemon,
            12 => SetConfig,
            13 => GetConfig,
            14 => SetInfo,
            15 => GetInfo,
            16 => Zero,
            17 => Flush,
            n => Other(n),
        }
    }
}

/// A top-level attribute of an IPVS message (`IPVS_CMD_ATTR_*`).
///
/// The reply to `GET_INFO` (command `SET_INFO`) numbers its attributes
/// differently; they parse as [`IpvsAttr::Info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsAttr {
    /// A service nest.
    Service(Vec<ServiceAttr>),
    /// A destination nest.
    Dest(Vec<DestAttr>),
    /// A sync-daemon nest.
    Daemon(Vec<DaemonAttr>),
    /// TCP established timeout in seconds (0: keep the current value).
    TimeoutTcp(u32),
    /// TCP FIN_WAIT timeout in seconds.
    TimeoutTcpFin(u32),
    /// UDP timeout in seconds.
    TimeoutUdp(u32),
    /// An attribute of a `SET_INFO` message.
    Info(InfoAttr),
    /// An attribute this crate does not know.
    Other(DefaultNla),
}

impl Nla for IpvsAttr {
    fn value_len(&self) -> usize {
        use IpvsAttr::*;
        match self {
            Service(attrs) => attrs.as_slice().buffer_len(),
            Dest(attrs) => attrs.as_slice().buffer_len(),
            Daemon(attrs) => attrs.as_slice().buffer_len(),
            TimeoutTcp(_) | TimeoutTcpFin(_) | TimeoutUdp(_) => 4,
            Info(attr) => attr.value_len(),
            Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use IpvsAttr::*;
        match self {
            Service(_) => IPVS_CMD_ATTR_SERVICE,
            Dest(_) => IPVS_CMD_ATTR_DEST,
            Daemon(_) => IPVS_CMD_ATTR_DAEMON,
            TimeoutTcp(_) => IPVS_CMD_ATTR_TIMEOUT_TCP,
            TimeoutTcpFin(_) => IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            TimeoutUdp(_) => IPVS_CMD_ATTR_TIMEOUT_UDP,
            Info(attr) => attr.kind(),
            Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use IpvsAttr::*;
        match self {
            Service(attrs) => attrs.as_slice().emit(buffer),
            Dest(attrs) => attrs.as_slice().emit(buffer),
            Daemon(attrs) => attrs.as_slice().emit(buffer),
            TimeoutTcp(v) | TimeoutTcpFin(v) | TimeoutUdp(v) => {
                buffer.copy_from_slice(&v.to_ne_bytes())
            }
            Info(attr) => attr.emit_value(buffer),
            Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl IpvsAttr {
    fn parse_for(cmd: IpvsCmd, buf: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        if cmd == IpvsCmd::SetInfo {
            return Ok(IpvsAttr::Info(InfoAttr::parse(buf)?));
        }
        let payload = buf.value();
        Ok(match buf.kind() {
            IPVS_CMD_ATTR_SERVICE => {
                IpvsAttr::Service(parse_nest(payload, "IPVS_CMD_ATTR_SERVICE")?)
            }
            IPVS_CMD_ATTR_DEST => IpvsAttr::Dest(parse_nest(payload, "IPVS_CMD_ATTR_DEST")?),
            IPVS_CMD_ATTR_DAEMON => IpvsAttr::Daemon(parse_nest(payload, "IPVS_CMD_ATTR_DAEMON")?),
            IPVS_CMD_ATTR_TIMEOUT_TCP => {
                IpvsAttr::TimeoutTcp(u32_ne(payload, "IPVS_CMD_ATTR_TIMEOUT_TCP")?)
            }
            IPVS_CMD_ATTR_TIMEOUT_TCP_FIN => {
                IpvsAttr::TimeoutTcpFin(u32_ne(payload, "IPVS_CMD_ATTR_TIMEOUT_TCP_FIN")?)
            }
            IPVS_CMD_ATTR_TIMEOUT_UDP => {
                IpvsAttr::TimeoutUdp(u32_ne(payload, "IPVS_CMD_ATTR_TIMEOUT_UDP")?)
            }
            _ => IpvsAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// An IPVS generic-netlink message: a command and its attributes.
///
/// It is the payload of a [`netlink_packet_generic::GenlMessage`]; the
/// family id is resolved at run time.
///
/// ```
/// use ipvs_netlink::{IpvsCmd, IpvsMessage};
/// use netlink_packet_core::Emitable;
///
/// let flush = IpvsMessage::new(IpvsCmd::Flush, vec![]);
/// assert_eq!(flush.buffer_len(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The command.
    pub cmd: IpvsCmd,
    /// Top-level attributes.
    pub attrs: Vec<IpvsAttr>,
}

impl IpvsMessage {
    /// A message of `cmd` with `attrs`.
    pub fn new(cmd: IpvsCmd, attrs: Vec<IpvsAttr>) -> Self {
        IpvsMessage { cmd, attrs }
    }

    /// The attributes of the first service nest, if any.
    pub fn service_attrs(&self) -> Option<&[ServiceAttr]> {
        self.attrs.iter().find_map(|a| match a {
            IpvsAttr::Service(attrs) => Some(attrs.as_slice()),
            _ => None,
        })
    }

    /// The attributes of the first daemon nest, if any.
    pub fn daemon_attrs(&self) -> Option<&[DaemonAttr]> {
        self.attrs.iter().find_map(|a| match a {
            IpvsAttr::Daemon(attrs) => Some(attrs.as_slice()),
            _ => None,
        })
    }

    /// The attributes of the first destination nest, if any.
    pub fn dest_attrs(&self) -> Option<&[DestAttr]> {
        self.attrs.iter().find_map(|a| match a {
            IpvsAttr::Dest(attrs) => Some(attrs.as_slice()),
            _ => None,
        })
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.cmd.into()
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let cmd = IpvsCmd::from(header.cmd);
        let mut attrs = Vec::new();
        for nla in netlink_packet_core::NlasIterator::new(buf) {
            let nla = nla.context("malformed IPVS attribute")?;
            attrs.push(
                IpvsAttr::parse_for(cmd, &nla)
                    .with_context(|| format!("invalid attribute of IPVS command {cmd:?}"))?,
            );
        }
        Ok(IpvsMessage { cmd, attrs })
    }
}
