//! The IPVS replies read into the model: one reader per kind of reply,
//! shared by the blocking [`crate::Handle`] and the async handle, so
//! that each reply is decoded by one piece of code whoever drives the
//! socket.

use netlink_packet_core::{ErrorContext, NlasIterator, ParseableParametrized};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;

use crate::error::{Error, Operation};
use crate::message::{IPVS_CMD_ATTR_DEST, IPVS_GENL_NAME};
use crate::nla_util::kind_and_value;
use crate::transport;
use crate::{AddressFamily, Daemon, Destination, Info, IpvsAttr, IpvsMessage, Service, Timeouts};

/// `struct genlmsghdr`: command, version, reserved.
const GENL_HEADER_LEN: usize = 4;

/// A decode error as the transport reports it.
pub(crate) fn decode(e: netlink_packet_core::DecodeError) -> transport::Error {
    transport::Error::Decode(e.to_string())
}

/// The payload of a reply of message type `kind` (generic-netlink header
/// and attributes) as an IPVS message of the family `family_id`.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn message(family_id: u16, kind: u16, payload: &[u8]) -> transport::Result<IpvsMessage> {
    if kind != family_id {
        return Err(transport::Error::Protocol(format!(
            "unexpected message type {kind}"
        )));
    }
    GenlMessage::<IpvsMessage>::parse_with_param(payload, kind)
        .map(|m| m.payload)
        .map_err(decode)
}

/// The service of a GET_SERVICE reply (dump or doit), if it has one.
pub(crate) fn service(msg: &IpvsMessage) -> transport::Result<Option<Service>> {
    msg.service_attrs()
        .map(|attrs| Service::from_attrs(attrs).map_err(decode))
        .transpose()
}

/// The destination of a GET_DEST reply's payload, read straight into a
/// [`Destination`]: its first destination nest, the other attributes
/// only checked for framing.
pub(crate) fn destination(
    payload: &[u8],
    family: AddressFamily,
) -> transport::Result<Option<Destination>> {
    let attrs = payload
        .get(GENL_HEADER_LEN..)
        .ok_or_else(|| transport::Error::Decode("generic netlink header cut short".into()))?;
    let mut nest = None;
    for nla in NlasIterator::new(attrs) {
        let nla = nla.context("malformed IPVS attribute").map_err(decode)?;
        let (kind, value) = kind_and_value(nla);
        if nest.is_none() && kind == IPVS_CMD_ATTR_DEST {
            nest = Some(value);
        }
    }
    nest.map(|nest| Destination::parse_nest(nest, family).map_err(decode))
        .transpose()
}

/// The info of the GET_INFO replies.
pub(crate) fn info<'a>(
    replies: impl IntoIterator<Item = &'a IpvsMessage>,
) -> transport::Result<Info> {
    let attrs: Vec<_> = replies
        .into_iter()
        .flat_map(|m| m.attrs.iter())
        .filter_map(|a| match a {
            IpvsAttr::Info(i) => Some(i.clone()),
            _ => None,
        })
        .collect();
    Info::from_attrs(&attrs).map_err(decode)
}

/// The timeouts of the GET_CONFIG replies.
pub(crate) fn timeouts<'a>(replies: impl IntoIterator<Item = &'a IpvsMessage>) -> Timeouts {
    let mut t = Timeouts::default();
    for attr in replies.into_iter().flat_map(|m| m.attrs.iter()) {
        match attr {
            IpvsAttr::TimeoutTcp(v) => t.tcp = *v,
            IpvsAttr::TimeoutTcpFin(v) => t.tcp_fin = *v,
            IpvsAttr::TimeoutUdp(v) => t.udp = *v,
            _ => {}
        }
    }
    t
}

/// The sync daemon of a GET_DAEMON reply, if it has one.
pub(crate) fn daemon(msg: &IpvsMessage) -> transport::Result<Option<Daemon>> {
    msg.daemon_attrs()
        .map(|attrs| Daemon::from_attrs(attrs).map_err(decode))
        .transpose()
}

/// The request that looks the IPVS family up.
pub(crate) fn family_request() -> GenlMessage<GenlCtrl> {
    GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(
            <IpvsMessage as netlink_packet_generic::GenlFamily>::family_name().to_owned(),
        )],
    })
}

/// The family id of the family lookup's reply.
pub(crate) fn family_id(reply: &GenlCtrl) -> Option<u16> {
    reply.nlas.iter().find_map(|a| match a {
        GenlCtrlAttrs::FamilyId(id) => Some(*id),
        _ => None,
    })
}

/// What a lookup of the IPVS family comes to, for both handles: the
/// kernel's refusal (`ENOENT`: no such family, IPVS is not loaded), or the
/// id its reply carried ([`family_id`]).
pub(crate) fn resolved_family(refused: Option<i32>, id: Option<u16>) -> crate::Result<u16> {
    let op = Operation::ResolveFamily;
    match refused {
        Some(libc::ENOENT) => Err(Error::NotAvailable),
        Some(errno) => Err(Error::from_errno(op, errno)),
        None => id.ok_or_else(|| Error::Protocol {
            op,
            message: format!("the {IPVS_GENL_NAME} family reply has no family id"),
        }),
    }
}
