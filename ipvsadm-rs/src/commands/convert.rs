//! The parsed command line as the library's types: the write a command
//! makes ([`to_op`]), and the service, real server and daemon it names.

use ipvs_netlink::{
    AddressFamily, Daemon, DaemonState, Destination, ForwardMethod, Netmask, Op, Protocol, Service,
    ServiceFlags, ServiceId, Timeouts, TunnelFlags, TunnelType,
};

use crate::cli::parse::{DestArgs, SvcArgs, AF_INET6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use crate::cli::{Cmd, Entry};

/// The kernel write a command makes, if it is one.
pub fn to_op(e: &Entry) -> Option<Op> {
    let id = || service_id(&e.svc);
    Some(match e.cmd {
        Cmd::Flush => Op::Flush,
        Cmd::Add => Op::AddService(service(&e.svc)),
        Cmd::Edit => Op::EditService(service(&e.svc)),
        Cmd::Del => Op::DeleteService(id()),
        Cmd::Zero => {
            // libipvs zeroes everything unless a service is named.
            let named = e.svc.fwmark != 0 || !e.svc.addr.is_unspecified() || e.svc.port != 0;
            Op::Zero(named.then(id))
        }
        Cmd::AddDest => Op::AddDestination(id(), destination(&e.dest)),
        Cmd::EditDest => Op::EditDestination(id(), destination(&e.dest)),
        Cmd::DelDest => {
            Op::DeleteDestination(id(), std::net::SocketAddr::new(e.dest.addr, e.dest.port))
        }
        Cmd::SetTimeouts => {
            Op::SetTimeouts(Timeouts::new(e.timeouts[0], e.timeouts[1], e.timeouts[2]))
        }
        Cmd::StartDaemon => Op::StartDaemon(daemon(e)),
        Cmd::StopDaemon => Op::StopDaemon(daemon(e)),
        Cmd::List | Cmd::Restore | Cmd::Save => return None,
    })
}

fn protocol(p: u16) -> Protocol {
    match p {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        IPPROTO_SCTP => Protocol::Sctp,
        other => Protocol::Other(other),
    }
}

fn family(af: u16) -> AddressFamily {
    if af == AF_INET6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// The identity of the service the command line names.
pub fn service_id(s: &SvcArgs) -> ServiceId {
    if s.fwmark != 0 {
        ServiceId::fwmark(family(s.af), s.fwmark)
    } else {
        ServiceId::Inet {
            protocol: protocol(s.protocol),
            addr: s.addr,
            port: s.port,
        }
    }
}

/// The full service `-A`/`-E` send.
pub fn service(s: &SvcArgs) -> Service {
    let id = service_id(s);
    let netmask = match id.family() {
        AddressFamily::Inet => Netmask::V4(std::net::Ipv4Addr::from(s.netmask)),
        AddressFamily::Inet6 => Netmask::V6(s.netmask),
    };
    let mut svc = Service::new(id, s.sched_name.clone())
        .with_flags(ServiceFlags::from_bits_retain(s.flags))
        .with_netmask(netmask);
    svc.timeout = s.timeout;
    if !s.pe_name.is_empty() {
        svc = svc.with_persistence_engine(s.pe_name.clone());
    }
    svc
}

/// The full destination `-a`/`-e` send.
pub fn destination(d: &DestArgs) -> Destination {
    let mut dest = Destination::new(std::net::SocketAddr::new(d.addr, d.port))
        .forward(ForwardMethod::from_raw(d.conn_flags))
        .weight(d.weight as u32)
        .thresholds(d.u_threshold, d.l_threshold);
    dest.tunnel_type = Some(TunnelType::from_raw(d.tun_type));
    dest.tunnel_port = Some(d.tun_port);
    dest.tunnel_flags = Some(TunnelFlags::from_bits_retain(d.tun_flags));
    dest
}

fn daemon(e: &Entry) -> Daemon {
    let a = &e.daemon;
    let mut d = Daemon::new(DaemonState::from_raw(a.state), a.mcast_ifn.clone());
    d.sync_id = a.syncid;
    d.max_len = (a.sync_maxlen != 0).then_some(a.sync_maxlen);
    d.port = (a.mcast_port != 0).then_some(a.mcast_port);
    d.ttl = (a.mcast_ttl != 0).then_some(a.mcast_ttl);
    d.group = a.mcast_group;
    d
}
