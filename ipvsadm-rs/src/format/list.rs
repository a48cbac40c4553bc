//! `ipvsadm -L` in its default format.

use std::fmt::Write;

use ipvs_netlink::{
    AddressFamily, Destination, ForwardMethod, Info, Netmask, Protocol, Service, ServiceFlags,
    ServiceId,
};

use super::{addr_port, truncate};
use crate::names::Names;

/// The first line of a full listing.
pub fn version_line(info: &Info) -> String {
    let (major, minor, patch) = info.version_triple();
    format!(
        "IP Virtual Server version {major}.{minor}.{patch} (size={})\n",
        info.conn_table_size
    )
}

/// The two title lines of the default format.
pub const TITLE: &str = "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

/// How ipvsadm names a service in listings: `TCP  10.0.0.1:80`, cut to 33
/// characters for IPv4; `FWM  7` (the mark printed signed, as 1.31 does).
pub fn service_name(id: &ServiceId, names: &dyn Names) -> String {
    match id {
        ServiceId::Fwmark { family, mark } => {
            let mut s = format!("FWM  {}", *mark as i32);
            if *family == AddressFamily::Inet6 {
                s.push_str(" IPv6");
            }
            s
        }
        ServiceId::Inet {
            protocol,
            addr,
            port,
        } => {
            let proto = match protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
                Protocol::Sctp => "SCTP",
                _ => "?",
            };
            let mut s = format!("{proto:<4} {}", addr_port(*addr, *port, *protocol, names));
            if id.family() == AddressFamily::Inet {
                truncate(&mut s, 33);
            }
            s
        }
    }
}

/// The protocol used to name ports of a service's destinations.
fn service_protocol(id: &ServiceId) -> Protocol {
    match id {
        ServiceId::Inet { protocol, .. } => *protocol,
        // libipvs leaves the protocol of a fwmark entry unset (0): ports
        // get no names.
        ServiceId::Fwmark { .. } => Protocol::Other(0),
    }
}

/// ipvsadm's scheduler flag names: `sh-fallback,sh-port` for sh,
/// `mh-fallback,mh-port` for mh (their third flag is not shown),
/// `flag-1,flag-2,flag-3` for any other scheduler.
pub fn sched_flags(svc: &Service) -> Option<String> {
    let named: &[(ServiceFlags, &str)] = match svc.scheduler.as_str() {
        "sh" => &[
            (ServiceFlags::SCHED1, "sh-fallback"),
            (ServiceFlags::SCHED2, "sh-port"),
        ],
        "mh" => &[
            (ServiceFlags::SCHED1, "mh-fallback"),
            (ServiceFlags::SCHED2, "mh-port"),
        ],
        _ => &[
            (ServiceFlags::SCHED1, "flag-1"),
            (ServiceFlags::SCHED2, "flag-2"),
            (ServiceFlags::SCHED3, "flag-3"),
        ],
    };
    let names: Vec<&str> = named
        .iter()
        .filter(|(flag, _)| svc.flags.contains(*flag))
        .map(|(_, name)| *name)
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// Whether the listing shows the `(flags)` group: any scheduler flag set,
/// even one the scheduler's names leave out (then the group is empty).
fn has_sched_flags(svc: &Service) -> bool {
    svc.flags
        .intersects(ServiceFlags::SCHED1 | ServiceFlags::SCHED2 | ServiceFlags::SCHED3)
}

/// The name of a forwarding method in listings; 1.31 prints `(null)` for
/// the methods it has no name for (glibc's rendering of a NULL `%s`).
pub fn forward_name(fwd: ForwardMethod) -> &'static str {
    match fwd {
        ForwardMethod::Masquerade => "Masq",
        ForwardMethod::Local => "Local",
        ForwardMethod::Tunnel => "Tunnel",
        ForwardMethod::DirectRoute => "Route",
        _ => "(null)",
    }
}

/// The service line of the default format.
pub fn service_line(svc: &Service, names: &dyn Names) -> String {
    let mut line = format!("{} {}", service_name(&svc.id, names), svc.scheduler);
    if has_sched_flags(svc) {
        let _ = write!(line, " ({})", sched_flags(svc).unwrap_or_default());
    }
    if svc.flags.contains(ServiceFlags::PERSISTENT) {
        let _ = write!(line, " persistent {}", svc.timeout);
        match svc.netmask {
            Netmask::V4(mask) if mask.octets() != [255; 4] => {
                let _ = write!(line, " mask {mask}");
            }
            Netmask::V6(prefix) if prefix != 128 => {
                let _ = write!(line, " mask {}", prefix as i32);
            }
            _ => {}
        }
        if let Some(pe) = &svc.persistence_engine {
            let _ = write!(line, " pe {pe}");
        }
    }
    if svc.flags.contains(ServiceFlags::ONE_PACKET) {
        line.push_str(" ops");
    }
    line.push('\n');
    line
}

/// How a destination is named under its service: cut to 28 characters
/// unless the destination is IPv6.
pub fn dest_name(svc: &ServiceId, dest: &Destination, names: &dyn Names) -> String {
    let mut s = addr_port(dest.addr, dest.port, service_protocol(svc), names);
    if dest.addr.is_ipv4() {
        truncate(&mut s, 28);
    }
    s
}

/// A destination line of the default format.
pub fn dest_line(svc: &ServiceId, dest: &Destination, names: &dyn Names) -> String {
    format!(
        "  -> {:<28} {:<7} {:<6} {:<10} {:<10}\n",
        dest_name(svc, dest, names),
        forward_name(dest.forward),
        dest.weight as i32,
        dest.active_conns,
        dest.inactive_conns
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Numeric;

    fn seed() -> (Service, Vec<Destination>) {
        let mut svc = Service::new(ServiceId::tcp("10.97.97.97:80".parse().unwrap()), "rr");
        svc.flags = ServiceFlags::HASHED;
        let dests = ["10.244.1.39:80", "10.244.1.40:80", "10.244.2.33:80"]
            .iter()
            .map(|a| Destination::new(a.parse().unwrap()))
            .collect();
        (svc, dests)
    }

    #[test]
    fn seed_table_lines_are_ipvsadms_bytes() {
        let (svc, dests) = seed();
        assert_eq!(service_line(&svc, &Numeric), "TCP  10.97.97.97:80 rr\n");
        assert_eq!(
            dest_line(&svc.id, &dests[0], &Numeric),
            "  -> 10.244.1.39:80               Masq    1      0          0         \n"
        );
    }

    #[test]
    fn persistence_mask_engine_and_ops() {
        let id = ServiceId::udp("10.0.0.1:5060".parse().unwrap());
        let svc = Service::new(id, "sh")
            .persistent(300)
            .with_netmask(Netmask::V4("255.255.255.0".parse().unwrap()))
            .with_persistence_engine("sip")
            .with_flags(
                ServiceFlags::PERSISTENT
                    | ServiceFlags::ONE_PACKET
                    | ServiceFlags::SCHED1
                    | ServiceFlags::SCHED2,
            );
        assert_eq!(
            service_line(&svc, &Numeric),
            "UDP  10.0.0.1:5060 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0 pe sip ops\n"
        );
    }

    #[test]
    fn fwmark_is_signed_and_ipv6_is_bracketed_and_not_cut() {
        let fwm = ServiceId::fwmark(AddressFamily::Inet6, u32::MAX);
        assert_eq!(service_name(&fwm, &Numeric), "FWM  -1 IPv6");
        let v6 = ServiceId::tcp(
            "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535"
                .parse()
                .unwrap(),
        );
        let name = service_name(&v6, &Numeric);
        assert_eq!(name, "TCP  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535");
        assert!(name.len() > 33);
    }

    #[test]
    fn ipv4_names_are_cut_at_33_and_28() {
        struct Long;
        impl Names for Long {
            fn host(&self, _: std::net::IpAddr) -> Option<String> {
                Some("kpng-proxy-control-plane.kind.example.internal".into())
            }
            fn service(&self, _: u16, _: Protocol) -> Option<String> {
                Some("http".into())
            }
        }
        let (svc, dests) = seed();
        assert_eq!(
            service_name(&svc.id, &Long),
            "TCP  kpng-proxy-control-plane.kin"
        );
        assert_eq!(
            dest_name(&svc.id, &dests[0], &Long),
            "kpng-proxy-control-plane.kin"
        );
    }

    #[test]
    fn bypass_prints_glibc_null() {
        let (svc, dests) = seed();
        let d = dests[0].clone().forward(ForwardMethod::Bypass);
        assert!(dest_line(&svc.id, &d, &Numeric).contains(" (null)  "));
    }
}
