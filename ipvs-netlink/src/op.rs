//! The writes a handle sends, one value per request: what
//! [`crate::Handle::apply`] pipelines, and what the planners build.
//! [`crate::Request::emit`] writes one as bytes; [`Op::message`] gives
//! the same request as a typed [`IpvsMessage`] (the same attributes, from
//! the same mapping of the model: `to_attrs`).

use std::net::SocketAddr;

use crate::error::Operation;
use crate::{Daemon, Destination, IpvsAttr, IpvsCmd, IpvsMessage, Service, ServiceId, Timeouts};

/// How many requests one datagram of [`crate::Handle::apply`] carries at
/// most: so that their replies, if all fail, fit the default receive
/// buffer (212,992 bytes hold about 277 error replies). The kernel
/// applies every request even when it has to drop replies, so a lost
/// reply cannot be fixed by sending again.
pub const MAX_IN_FLIGHT: usize = 200;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// NEW_SERVICE.
    AddService(Service),
    /// SET_SERVICE (the full service).
    EditService(Service),
    /// DEL_SERVICE.
    DeleteService(ServiceId),
    /// NEW_DEST.
    AddDestination(ServiceId, Destination),
    /// SET_DEST (the full destination).
    EditDestination(ServiceId, Destination),
    /// DEL_DEST.
    DeleteDestination(ServiceId, SocketAddr),
    /// FLUSH.
    Flush,
    /// ZERO of one service, or of all with `None`.
    Zero(Option<ServiceId>),
    /// SET_CONFIG.
    SetTimeouts(Timeouts),
    /// NEW_DAEMON.
    StartDaemon(Daemon),
    /// DEL_DAEMON.
    StopDaemon(Daemon),
}

impl Op {
    /// The operation errors of this op are reported under.
    pub fn operation(&self) -> Operation {
        match self {
            Op::AddService(_) => Operation::AddService,
            Op::EditService(_) => Operation::EditService,
            Op::DeleteService(_) => Operation::DeleteService,
            Op::AddDestination(..) => Operation::AddDestination,
            Op::EditDestination(..) => Operation::EditDestination,
            Op::DeleteDestination(..) => Operation::DeleteDestination,
            Op::Flush => Operation::Flush,
            Op::Zero(_) => Operation::Zero,
            Op::SetTimeouts(_) => Operation::SetTimeouts,
            Op::StartDaemon(_) => Operation::StartDaemon,
            Op::StopDaemon(_) => Operation::StopDaemon,
        }
    }

    /// The request message of this op.
    pub fn message(&self) -> IpvsMessage {
        let svc = |id: &ServiceId| IpvsAttr::Service(id.to_attrs());
        let (cmd, attrs) = match self {
            Op::AddService(s) => (IpvsCmd::NewService, vec![IpvsAttr::Service(s.to_attrs())]),
            Op::EditService(s) => (IpvsCmd::SetService, vec![IpvsAttr::Service(s.to_attrs())]),
            Op::DeleteService(id) => (IpvsCmd::DelService, vec![svc(id)]),
            Op::AddDestination(id, d) => (
                IpvsCmd::NewDest,
                vec![svc(id), IpvsAttr::Dest(d.to_attrs())],
            ),
            Op::EditDestination(id, d) => (
                IpvsCmd::SetDest,
                vec![svc(id), IpvsAttr::Dest(d.to_attrs())],
            ),
            Op::DeleteDestination(id, a) => (
                IpvsCmd::DelDest,
                vec![svc(id), IpvsAttr::Dest(Destination::id_attrs(*a))],
            ),
            Op::Flush => (IpvsCmd::Flush, vec![]),
            Op::Zero(id) => (IpvsCmd::Zero, id.iter().map(svc).collect()),
            Op::SetTimeouts(t) => (
                IpvsCmd::SetConfig,
                vec![
                    IpvsAttr::TimeoutTcp(t.tcp),
                    IpvsAttr::TimeoutTcpFin(t.tcp_fin),
                    IpvsAttr::TimeoutUdp(t.udp),
                ],
            ),
            Op::StartDaemon(d) => (IpvsCmd::NewDaemon, vec![IpvsAttr::Daemon(d.to_attrs())]),
            Op::StopDaemon(d) => (
                IpvsCmd::DelDaemon,
                vec![IpvsAttr::Daemon(d.to_attrs().into_iter().take(3).collect())],
            ),
        };
        IpvsMessage::new(cmd, attrs)
    }
}
