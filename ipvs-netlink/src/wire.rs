//! The one emitter of the requests a [`crate::Handle`] sends: every IPVS
//! request (the typed methods, [`crate::Handle::apply`]'s ops and the
//! reads) is written here in one pass, straight into the datagram.
//!
//! The typed packet layer ([`crate::IpvsMessage`] and its attribute
//! enums) stays for parsing, for [`crate::Handle::request`]'s messages,
//! and as the reference of these bytes: the property test below checks
//! that both give the same bytes for any request. The typed path builds
//! an attribute vector per nest (and copies the scheduler name) and
//! computes each nest's length several times over; for a restore of
//! 50,000 lines that was a fifth of the process's time.

use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::NLM_F_REQUEST;

use crate::daemon as dm;
use crate::dest::attr as d;
use crate::message::{
    IpvsCmd, IPVS_CMD_ATTR_DAEMON, IPVS_CMD_ATTR_DEST, IPVS_CMD_ATTR_SERVICE,
    IPVS_CMD_ATTR_TIMEOUT_TCP, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, IPVS_CMD_ATTR_TIMEOUT_UDP,
    IPVS_GENL_VERSION,
};
use crate::op::Op;
use crate::service::attr as s;
use crate::types::{addr_bytes, AddressFamily};
use crate::{Daemon, Destination, Service, ServiceId, Timeouts};

/// The attributes of one request, borrowed from what the caller holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// No attribute.
    Empty,
    /// A whole service nest.
    Service(&'a Service),
    /// A service nest of the identity alone.
    ServiceId(&'a ServiceId),
    /// A service identity nest and a whole destination nest.
    Dest(&'a ServiceId, &'a Destination),
    /// A service identity nest and a destination nest of address and port.
    DestId(&'a ServiceId, SocketAddr),
    /// The three timeouts.
    Timeouts(&'a Timeouts),
    /// A whole daemon nest.
    Daemon(&'a Daemon),
    /// A daemon nest of state, interface and sync id, as ipvsadm stops a
    /// daemon.
    DaemonId(&'a Daemon),
}

/// The command and attributes of `op`.
pub(crate) fn op_request(op: &Op) -> (IpvsCmd, Body<'_>) {
    match op {
        Op::AddService(svc) => (IpvsCmd::NewService, Body::Service(svc)),
        Op::EditService(svc) => (IpvsCmd::SetService, Body::Service(svc)),
        Op::DeleteService(id) => (IpvsCmd::DelService, Body::ServiceId(id)),
        Op::AddDestination(id, dest) => (IpvsCmd::NewDest, Body::Dest(id, dest)),
        Op::EditDestination(id, dest) => (IpvsCmd::SetDest, Body::Dest(id, dest)),
        Op::DeleteDestination(id, addr) => (IpvsCmd::DelDest, Body::DestId(id, *addr)),
        Op::Flush => (IpvsCmd::Flush, Body::Empty),
        Op::Zero(Some(id)) => (IpvsCmd::Zero, Body::ServiceId(id)),
        Op::Zero(None) => (IpvsCmd::Zero, Body::Empty),
        Op::SetTimeouts(t) => (IpvsCmd::SetConfig, Body::Timeouts(t)),
        Op::StartDaemon(daemon) => (IpvsCmd::NewDaemon, Body::Daemon(daemon)),
        Op::StopDaemon(daemon) => (IpvsCmd::DelDaemon, Body::DaemonId(daemon)),
    }
}

/// A netlink message being written at the end of a buffer.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Where the message starts: alignment counts from there.
    base: usize,
}

impl Writer<'_> {
    /// An attribute of `kind` holding `value`, padded to 4 bytes.
    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.out.extend_from_slice(&(len as u16).to_ne_bytes());
        self.out.extend_from_slice(&kind.to_ne_bytes());
        self.out.extend_from_slice(value);
        self.pad();
    }

    fn pad(&mut self) {
        let padded = self.base + (self.out.len() - self.base).next_multiple_of(4);
        self.out.resize(padded, 0);
    }

    /// Opens a nest (without `NLA_F_NESTED`, as the typed path writes
    /// them); [`Writer::end`] sets its length.
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.out.len();
        self.out.extend_from_slice(&[0, 0]);
        self.out.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.out.len() - at) as u16;
        self.out[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn string(&mut self, kind: u16, text: &str) {
        let len = 4 + text.len() + 1;
        self.out.extend_from_slice(&(len as u16).to_ne_bytes());
        self.out.extend_from_slice(&kind.to_ne_bytes());
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(0);
        self.pad();
    }

    /// The 16 address bytes IPVS takes (IPv4 in the first four).
    fn address(&mut self, kind: u16, addr: &IpAddr) {
        self.attr(kind, &addr_bytes(addr));
    }

    fn service_id(&mut self, id: &ServiceId) {
        self.attr(s::IPVS_SVC_ATTR_AF, &id.family().to_raw().to_ne_bytes());
        match id {
            ServiceId::Inet {
                protocol,
                addr,
                port,
            } => {
                self.attr(s::IPVS_SVC_ATTR_PROTOCOL, &protocol.to_raw().to_ne_bytes());
                self.address(s::IPVS_SVC_ATTR_ADDR, addr);
                self.attr(s::IPVS_SVC_ATTR_PORT, &port.to_be_bytes());
            }
            ServiceId::Fwmark { mark, .. } => {
                self.attr(s::IPVS_SVC_ATTR_FWMARK, &mark.to_ne_bytes());
            }
        }
    }

    fn service_nest(&mut self, id: &ServiceId) {
        let at = self.begin(IPVS_CMD_ATTR_SERVICE);
        self.service_id(id);
        self.end(at);
    }

    fn service(&mut self, svc: &Service) {
        let at = self.begin(IPVS_CMD_ATTR_SERVICE);
        self.service_id(&svc.id);
        self.string(s::IPVS_SVC_ATTR_SCHED_NAME, &svc.scheduler);
        if let Some(pe) = &svc.persistence_engine {
            self.string(s::IPVS_SVC_ATTR_PE_NAME, pe);
        }
        let mut flags = [0u8; 8];
        flags[..4].copy_from_slice(&svc.flags.bits().to_ne_bytes());
        flags[4..].copy_from_slice(&(!0u32).to_ne_bytes());
        self.attr(s::IPVS_SVC_ATTR_FLAGS, &flags);
        self.attr(s::IPVS_SVC_ATTR_TIMEOUT, &svc.timeout.to_ne_bytes());
        self.attr(
            s::IPVS_SVC_ATTR_NETMASK,
            &svc.netmask.to_raw().to_ne_bytes(),
        );
        self.end(at);
    }

    fn dest_id(&mut self, addr: &IpAddr, port: u16) {
        let family = AddressFamily::of(addr).to_raw();
        self.attr(d::IPVS_DEST_ATTR_ADDR_FAMILY, &family.to_ne_bytes());
        self.address(d::IPVS_DEST_ATTR_ADDR, addr);
        self.attr(d::IPVS_DEST_ATTR_PORT, &port.to_be_bytes());
    }

    fn dest(&mut self, dest: &Destination) {
        let at = self.begin(IPVS_CMD_ATTR_DEST);
        self.dest_id(&dest.addr, dest.port);
        self.attr(
            d::IPVS_DEST_ATTR_FWD_METHOD,
            &dest.forward.to_raw().to_ne_bytes(),
        );
        self.attr(d::IPVS_DEST_ATTR_WEIGHT, &dest.weight.to_ne_bytes());
        if let Some(t) = dest.tunnel_type {
            self.attr(d::IPVS_DEST_ATTR_TUN_TYPE, &[t.to_raw()]);
        }
        if let Some(p) = dest.tunnel_port {
            self.attr(d::IPVS_DEST_ATTR_TUN_PORT, &p.to_be_bytes());
        }
        if let Some(f) = dest.tunnel_flags {
            self.attr(d::IPVS_DEST_ATTR_TUN_FLAGS, &f.bits().to_ne_bytes());
        }
        self.attr(
            d::IPVS_DEST_ATTR_U_THRESH,
            &dest.upper_threshold.to_ne_bytes(),
        );
        self.attr(
            d::IPVS_DEST_ATTR_L_THRESH,
            &dest.lower_threshold.to_ne_bytes(),
        );
        self.end(at);
    }

    fn dest_id_nest(&mut self, addr: &SocketAddr) {
        let at = self.begin(IPVS_CMD_ATTR_DEST);
        self.dest_id(&addr.ip(), addr.port());
        self.end(at);
    }

    fn timeouts(&mut self, t: &Timeouts) {
        self.attr(IPVS_CMD_ATTR_TIMEOUT_TCP, &t.tcp.to_ne_bytes());
        self.attr(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, &t.tcp_fin.to_ne_bytes());
        self.attr(IPVS_CMD_ATTR_TIMEOUT_UDP, &t.udp.to_ne_bytes());
    }

    /// A daemon nest in libipvs's order; `whole: false` stops after the
    /// sync id.
    fn daemon(&mut self, daemon: &Daemon, whole: bool) {
        let at = self.begin(IPVS_CMD_ATTR_DAEMON);
        self.attr(
            dm::IPVS_DAEMON_ATTR_STATE,
            &daemon.state.to_raw().to_ne_bytes(),
        );
        self.string(dm::IPVS_DAEMON_ATTR_MCAST_IFN, &daemon.interface);
        self.attr(dm::IPVS_DAEMON_ATTR_SYNC_ID, &daemon.sync_id.to_ne_bytes());
        if whole {
            if let Some(v) = daemon.max_len {
                self.attr(dm::IPVS_DAEMON_ATTR_SYNC_MAXLEN, &v.to_ne_bytes());
            }
            if let Some(v) = daemon.port {
                self.attr(dm::IPVS_DAEMON_ATTR_MCAST_PORT, &v.to_ne_bytes());
            }
            if let Some(v) = daemon.ttl {
                self.attr(dm::IPVS_DAEMON_ATTR_MCAST_TTL, &[v]);
            }
            match daemon.group {
                Some(IpAddr::V6(g)) => self.attr(dm::IPVS_DAEMON_ATTR_MCAST_GROUP6, &g.octets()),
                Some(IpAddr::V4(g)) => self.attr(dm::IPVS_DAEMON_ATTR_MCAST_GROUP, &g.octets()),
                None => {}
            }
        }
        self.end(at);
    }
}

/// Appends the request `cmd` with `body` of generic netlink family
/// `family` (with `NLM_F_REQUEST` and `flags`, sequence number `seq`,
/// port `port`) to `out`.
pub(crate) fn encode(
    cmd: IpvsCmd,
    body: Body<'_>,
    family: u16,
    flags: u16,
    seq: u32,
    port: u32,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    // nlmsghdr, its length set at the end; then genlmsghdr.
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&family.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&port.to_ne_bytes());
    out.extend_from_slice(&[u8::from(cmd), IPVS_GENL_VERSION, 0, 0]);
    let mut w = Writer { out, base: start };
    match body {
        Body::Empty => {}
        Body::Service(svc) => w.service(svc),
        Body::ServiceId(id) => w.service_nest(id),
        Body::Dest(id, dest) => {
            w.service_nest(id);
            w.dest(dest);
        }
        Body::DestId(id, addr) => {
            w.service_nest(id);
            w.dest_id_nest(&addr);
        }
        Body::Timeouts(t) => w.timeouts(t),
        Body::Daemon(daemon) => w.daemon(daemon, true),
        Body::DaemonId(daemon) => w.daemon(daemon, false),
    }
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_generic::GenlMessage;
    use proptest::prelude::*;

    use super::*;
    use crate::{
        DaemonState, ForwardMethod, IpvsAttr, IpvsMessage, Netmask, Protocol, ServiceFlags,
        TunnelFlags, TunnelType,
    };

    /// A request of the handle: a write, or a read of `cmd` naming a
    /// service or none.
    #[derive(Debug)]
    enum Request {
        Write(Op),
        Read(IpvsCmd, Option<ServiceId>),
    }

    impl Request {
        fn body(&self) -> (IpvsCmd, Body<'_>) {
            match self {
                Request::Write(op) => op_request(op),
                Request::Read(cmd, id) => (*cmd, id.as_ref().map_or(Body::Empty, Body::ServiceId)),
            }
        }

        /// The request through the typed packet layer.
        fn message(&self) -> IpvsMessage {
            match self {
                Request::Write(op) => op.message(),
                Request::Read(cmd, id) => IpvsMessage::new(
                    *cmd,
                    id.iter()
                        .map(|id| IpvsAttr::Service(id.to_attrs()))
                        .collect(),
                ),
            }
        }
    }

    /// The bytes of `request` through the typed packet layer.
    fn typed(request: &Request, family: u16, flags: u16, seq: u32, port: u32) -> Vec<u8> {
        let mut genl = GenlMessage::from_payload(request.message());
        genl.set_resolved_family_id(family);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        header.port_number = port;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
        nl.finalize();
        let mut out = vec![0; nl.buffer_len()];
        nl.serialize(&mut out);
        out
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    fn service_id() -> impl Strategy<Value = ServiceId> {
        prop_oneof![
            (0u16..300, ip(), any::<u16>()).prop_map(|(p, addr, port)| ServiceId::Inet {
                protocol: Protocol::from_raw(p),
                addr,
                port,
            }),
            (any::<bool>(), any::<u32>()).prop_map(|(v6, mark)| ServiceId::Fwmark {
                family: if v6 {
                    AddressFamily::Inet6
                } else {
                    AddressFamily::Inet
                },
                mark,
            }),
        ]
    }

    fn service() -> impl Strategy<Value = Service> {
        (
            service_id(),
            "[a-z0-9]{0,16}",
            any::<u32>(),
            any::<u32>(),
            prop_oneof![
                any::<[u8; 4]>().prop_map(|b| Netmask::V4(Ipv4Addr::from(b))),
                (0u32..=128).prop_map(Netmask::V6),
            ],
            proptest::option::of("[a-z0-9]{0,16}"),
        )
            .prop_map(|(id, sched, flags, timeout, netmask, pe)| {
                let mut s = Service::new(id, sched);
                s.flags = ServiceFlags::from_bits_retain(flags);
                s.timeout = timeout;
                s.netmask = netmask;
                s.persistence_engine = pe;
                s
            })
    }

    fn destination() -> impl Strategy<Value = Destination> {
        (
            ip(),
            any::<u16>(),
            0u32..8,
            any::<(u32, u32, u32)>(),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
        )
            .prop_map(
                |(addr, port, fwd, (w, up, low), tun, tun_port, tun_flags)| {
                    let mut d = Destination::new(SocketAddr::new(addr, port))
                        .forward(ForwardMethod::from_raw(fwd))
                        .weight(w)
                        .thresholds(up, low);
                    d.tunnel_type = tun.map(TunnelType::from_raw);
                    d.tunnel_port = tun_port;
                    d.tunnel_flags = tun_flags.map(TunnelFlags::from_bits_retain);
                    d
                },
            )
    }

    fn daemon() -> impl Strategy<Value = Daemon> {
        (
            any::<u32>(),
            "[a-z0-9]{0,15}",
            any::<u32>(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(ip()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
        )
            .prop_map(|(state, ifname, sync_id, max_len, group, port, ttl)| {
                let mut d = Daemon::new(DaemonState::from_raw(state), ifname);
                d.sync_id = sync_id;
                d.max_len = max_len;
                d.group = group;
                d.port = port;
                d.ttl = ttl;
                d
            })
    }

    fn request() -> impl Strategy<Value = Request> {
        let read = prop_oneof![
            Just(IpvsCmd::GetInfo),
            Just(IpvsCmd::GetService),
            Just(IpvsCmd::GetDest),
            Just(IpvsCmd::GetConfig),
            Just(IpvsCmd::GetDaemon),
        ];
        prop_oneof![
            op().prop_map(Request::Write),
            (read, proptest::option::of(service_id())).prop_map(|(cmd, id)| Request::Read(cmd, id)),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            service().prop_map(Op::AddService),
            service().prop_map(Op::EditService),
            service_id().prop_map(Op::DeleteService),
            (service_id(), destination()).prop_map(|(id, d)| Op::AddDestination(id, d)),
            (service_id(), destination()).prop_map(|(id, d)| Op::EditDestination(id, d)),
            (service_id(), ip(), any::<u16>())
                .prop_map(|(id, a, p)| Op::DeleteDestination(id, SocketAddr::new(a, p))),
            Just(Op::Flush),
            proptest::option::of(service_id()).prop_map(Op::Zero),
            any::<(u32, u32, u32)>()
                .prop_map(|(tcp, fin, udp)| Op::SetTimeouts(Timeouts::new(tcp, fin, udp))),
            daemon().prop_map(Op::StartDaemon),
            daemon().prop_map(Op::StopDaemon),
        ]
    }

    proptest! {
        #[test]
        fn direct_bytes_are_the_typed_bytes(
            request in request(),
            family in any::<u16>(),
            flags in any::<u16>(),
            seq in any::<u32>(),
            port in any::<u32>(),
            prefix in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            // Appended after what the datagram holds already.
            let mut out = prefix.clone();
            let (cmd, body) = request.body();
            encode(cmd, body, family, flags, seq, port, &mut out);
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&out[prefix.len()..], &typed(&request, family, flags, seq, port)[..]);
        }
    }
}
