//! `ipvsadm -L` in every table format, and `-S`: pure functions from the
//! kernel's table to ipvsadm 1.31's bytes.

use std::fmt::Write;

use ipvs_netlink::{
    AddressFamily, Daemon, DaemonState, Destination, ForwardMethod, Info, Protocol, Service,
    ServiceFlags, ServiceId, Stats, Timeouts, TunnelType,
};

use ipvsadm_compat::rules::{
    dest_options, has_sched_flags, persistence, protocol_option, sched_flags, service_options,
    tun_flag_index,
};

use super::fmt;
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

/// The title lines of a format (none for `-S`).
pub fn title(format: u32) -> String {
    let head = "Prot LocalAddress:Port";
    if format & fmt::STATS != 0 {
        format!(
            "{head:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if format & fmt::RATE != 0 {
        format!(
            "{head:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        )
    } else if format & fmt::THRESHOLDS != 0 {
        format!(
            "{head:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if format & fmt::PERSISTENTCONN != 0 {
        format!(
            "{head:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if format & fmt::TUN_INFO != 0 {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_owned()
    } else if format & fmt::RULE == 0 {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_owned()
    } else {
        String::new()
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        _ => "?",
    }
}

/// How ipvsadm names a service: in listings `TCP  10.0.0.1:80` (cut to
/// 33 characters for IPv4) or `FWM  7`; with `-S` the options that give
/// it (`-t 10.0.0.1:80`, `-f 7 -6`). Marks print signed, as 1.31 does.
pub fn service_name(id: &ServiceId, format: u32, names: &dyn Names) -> String {
    let rule = format & fmt::RULE != 0;
    match id {
        ServiceId::Fwmark { family, mark } => {
            let v6 = *family == AddressFamily::Inet6;
            match (rule, v6) {
                (true, false) => format!("-f {}", *mark as i32),
                (true, true) => format!("-f {} -6", *mark as i32),
                (false, false) => format!("FWM  {}", *mark as i32),
                (false, true) => format!("FWM  {} IPv6", *mark as i32),
            }
        }
        ServiceId::Inet {
            protocol,
            addr,
            port,
        } => {
            let vname = addr_port(*addr, *port, *protocol, names);
            if rule {
                format!("{} {vname}", protocol_option(*protocol))
            } else {
                let mut s = format!("{:<4} {vname}", protocol_name(*protocol));
                if id.family() != AddressFamily::Inet6 {
                    truncate(&mut s, 33);
                }
                s
            }
        }
    }
}

/// The protocol used to name the ports of a service's destinations:
/// libipvs leaves it 0 for fwmark services, so their ports get no names.
fn service_protocol(id: &ServiceId) -> Protocol {
    match id {
        ServiceId::Inet { protocol, .. } => *protocol,
        ServiceId::Fwmark { .. } => Protocol::Other(0),
    }
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

/// `print_largenum`: 9 columns, K/M/G/T beyond 8 digits unless exact.
pub fn largenum(out: &mut String, i: u64, format: u32) {
    if format & fmt::EXACT != 0 {
        let len = i.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{i:>width$}");
    } else if i < 100_000_000 {
        let _ = write!(out, "{i:>9}");
    } else if i < 1_000_000_000 {
        let _ = write!(out, "{:>8}K", i / 1000);
    } else if i < 100_000_000_000 {
        let _ = write!(out, "{:>8}M", i / 1_000_000);
    } else if i < 100_000_000_000_000 {
        let _ = write!(out, "{:>8}G", i / 1_000_000_000);
    } else {
        let _ = write!(out, "{:>8}T", i / 1_000_000_000_000);
    }
}

const TUNFLAGS: [&str; 3] = ["-c", "+c", "r+c"];
/// `fwd_tun_info`: the TunnelInfo column.
fn tun_info(d: &Destination) -> String {
    if d.forward != ForwardMethod::Tunnel {
        return "n/a".into();
    }
    match d.tunnel_type.unwrap_or(TunnelType::Ipip) {
        TunnelType::Ipip => "ipip".into(),
        TunnelType::Gue => format!(
            "gue:{}:{}",
            d.tunnel_port.unwrap_or(0),
            TUNFLAGS[tun_flag_index(d)]
        ),
        TunnelType::Gre => format!("gre:{}", TUNFLAGS[tun_flag_index(d)]),
        _ => "n/a".into(),
    }
}

fn stats_of(s: &Option<Stats>) -> Stats {
    s.unwrap_or_default()
}

/// One service and its destinations in `format` (ipvsadm's
/// `print_service_entry`); `dests` are in the order to print.
pub fn service_entry(
    svc: &Service,
    dests: &[Destination],
    format: u32,
    names: &dyn Names,
) -> String {
    let svc_name = service_name(&svc.id, format, names);
    let mut out = String::new();
    let st = stats_of(&svc.stats);
    if format & fmt::RULE != 0 {
        out.push_str("-A ");
        out.push_str(&service_options(svc, &svc_name));
    } else if format & fmt::STATS != 0 {
        let _ = write!(out, "{svc_name:<33}");
        for v in [st.conns, st.in_pkts, st.out_pkts, st.in_bytes, st.out_bytes] {
            largenum(&mut out, v, format);
        }
    } else if format & fmt::RATE != 0 {
        let _ = write!(out, "{svc_name:<33}");
        for v in [st.cps, st.in_pps, st.out_pps, st.in_bps, st.out_bps] {
            largenum(&mut out, v, format);
        }
    } else {
        let _ = write!(out, "{svc_name} {}", svc.scheduler);
        if has_sched_flags(svc) {
            let _ = write!(out, " ({})", sched_flags(svc));
        }
        if svc.flags.contains(ServiceFlags::PERSISTENT) {
            persistence(&mut out, svc, "persistent");
            if let Some(pe) = &svc.persistence_engine {
                let _ = write!(out, " pe {pe}");
            }
        }
        if svc.flags.contains(ServiceFlags::ONE_PACKET) {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    for d in dests {
        let mut dname = addr_port(d.addr, d.port, service_protocol(&svc.id), names);
        if format & fmt::RULE == 0 && d.addr.is_ipv4() {
            truncate(&mut dname, 28);
        }
        let ds = stats_of(&d.stats);
        if format & fmt::RULE != 0 {
            let _ = writeln!(out, "-a {svc_name} -r {}", dest_options(d, &dname));
        } else if format & fmt::STATS != 0 {
            let _ = write!(out, "  -> {dname:<28}");
            for v in [ds.conns, ds.in_pkts, ds.out_pkts, ds.in_bytes, ds.out_bytes] {
                largenum(&mut out, v, format);
            }
            out.push('\n');
        } else if format & fmt::RATE != 0 {
            let _ = write!(
                out,
                "  -> {dname:<28} {:>8} {:>8} {:>8}",
                ds.cps, ds.in_pps, ds.out_pps
            );
            largenum(&mut out, ds.in_bps, format);
            largenum(&mut out, ds.out_bps, format);
            out.push('\n');
        } else if format & fmt::THRESHOLDS != 0 {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.upper_threshold, d.lower_threshold, d.active_conns, d.inactive_conns
            );
        } else if format & fmt::PERSISTENTCONN != 0 {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.weight, d.persistent_conns, d.active_conns, d.inactive_conns
            );
        } else if format & fmt::TUN_INFO != 0 {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                forward_name(d.forward),
                tun_info(d),
                d.weight as i32,
                d.active_conns,
                d.inactive_conns
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                forward_name(d.forward),
                d.weight as i32,
                d.active_conns,
                d.inactive_conns
            );
        }
    }
    out
}

/// `--timeout`.
pub fn timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp as i32, t.tcp_fin as i32, t.udp as i32
    )
}

/// `--daemon`: master first, then backup, whatever the kernel's order.
pub fn daemons(list: &[Daemon]) -> String {
    let mut out = String::new();
    for want in [DaemonState::Master, DaemonState::Backup] {
        for d in list.iter().filter(|d| d.state == want) {
            let kind = if want == DaemonState::Master {
                "master"
            } else {
                "backup"
            };
            let _ = write!(
                out,
                "{kind} sync daemon (mcast={}, syncid={}",
                d.interface, d.sync_id as i32
            );
            if let Some(v) = d.max_len.filter(|v| *v != 0) {
                let _ = write!(out, ", maxlen={v}");
            }
            if let Some(g) = d.group {
                let _ = write!(out, ", group={g}");
            }
            if let Some(v) = d.port.filter(|v| *v != 0) {
                let _ = write!(out, ", port={v}");
            }
            if let Some(v) = d.ttl.filter(|v| *v != 0) {
                let _ = write!(out, ", ttl={v}");
            }
            out.push_str(")\n");
        }
    }
    out
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
    fn seed_table_in_default_and_rule_formats() {
        let (svc, dests) = seed();
        assert_eq!(
            service_entry(&svc, &dests[..1], 0, &Numeric),
            "TCP  10.97.97.97:80 rr\n  -> 10.244.1.39:80               Masq    1      0          0         \n"
        );
        assert_eq!(
            service_entry(&svc, &dests[..1], fmt::RULE, &Numeric),
            "-A -t 10.97.97.97:80 -s rr\n-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 1\n"
        );
    }

    #[test]
    fn persistence_mask_engine_ops_and_flags() {
        let id = ServiceId::udp("10.0.0.1:5060".parse().unwrap());
        let svc = Service::new(id, "sh")
            .persistent(300)
            .with_netmask(ipvs_netlink::Netmask::V4("255.255.255.0".parse().unwrap()))
            .with_persistence_engine("sip")
            .with_flags(
                ServiceFlags::PERSISTENT
                    | ServiceFlags::ONE_PACKET
                    | ServiceFlags::SCHED1
                    | ServiceFlags::SCHED2,
            );
        assert_eq!(
            service_entry(&svc, &[], 0, &Numeric),
            "UDP  10.0.0.1:5060 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0 pe sip ops\n"
        );
        assert_eq!(
            service_entry(&svc, &[], fmt::RULE, &Numeric),
            "-A -u 10.0.0.1:5060 -s sh -p 300 -M 255.255.255.0 --pe sip -o -b sh-fallback,sh-port\n"
        );
    }

    #[test]
    fn fwmark_is_signed_and_ipv6_is_bracketed_and_not_cut() {
        let fwm = ServiceId::fwmark(AddressFamily::Inet6, u32::MAX);
        assert_eq!(service_name(&fwm, 0, &Numeric), "FWM  -1 IPv6");
        assert_eq!(service_name(&fwm, fmt::RULE, &Numeric), "-f -1 -6");
        let v6 = ServiceId::tcp(
            "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535"
                .parse()
                .unwrap(),
        );
        let name = service_name(&v6, 0, &Numeric);
        assert_eq!(name, "TCP  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535");
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
            service_name(&svc.id, 0, &Long),
            "TCP  kpng-proxy-control-plane.kin"
        );
        let block = service_entry(&svc, &dests[..1], 0, &Long);
        assert!(
            block.contains("  -> kpng-proxy-control-plane.kin Masq"),
            "{block}"
        );
    }

    #[test]
    fn largenum_abbreviates_unless_exact() {
        let f = |v, format| {
            let mut s = String::new();
            largenum(&mut s, v, format);
            s
        };
        assert_eq!(f(99_999_999, 0), " 99999999");
        assert_eq!(f(100_000_000, 0), "  100000K");
        assert_eq!(f(1_000_000_000, 0), "    1000M");
        assert_eq!(f(123_456_789_012, 0), "     123G");
        assert_eq!(f(u64::MAX, 0), "18446744T");
        assert_eq!(f(1_000_000_000, fmt::EXACT), " 1000000000");
        assert_eq!(f(5, fmt::EXACT), "        5");
    }

    /// The deliberate difference: 1.31 reads a destination's STATS64
    /// values into 32 bits and prints the low half (here 5 and 7); we
    /// print the kernel's 64-bit value whole. Services agree either way.
    #[test]
    fn destination_counters_beyond_32_bits_print_whole() {
        let (svc, dests) = seed();
        let mut d = dests[0].clone();
        let mut st = Stats::default();
        st.conns = (1 << 32) + 5;
        st.in_pkts = (1 << 32) + 7;
        d.stats = Some(st);
        let exact = service_entry(&svc, &[d.clone()], fmt::STATS | fmt::EXACT, &Numeric);
        assert!(
            exact.ends_with("  -> 10.244.1.39:80               4294967301 4294967303        0        0        0\n"),
            "{exact}"
        );
        let short = service_entry(&svc, &[d], fmt::STATS, &Numeric);
        assert!(
            short.ends_with(
                "  -> 10.244.1.39:80                  4294M    4294M        0        0        0\n"
            ),
            "{short}"
        );
    }

    #[test]
    fn bypass_prints_glibc_null_and_tunnels_show_their_info() {
        let (svc, dests) = seed();
        let d = dests[0].clone().forward(ForwardMethod::Bypass);
        assert!(service_entry(&svc, &[d], 0, &Numeric).contains(" (null)  "));
        let mut gue = dests[1].clone().forward(ForwardMethod::Tunnel);
        gue.tunnel_type = Some(TunnelType::Gue);
        gue.tunnel_port = Some(6080);
        gue.tunnel_flags = Some(ipvs_netlink::TunnelFlags::CSUM);
        assert_eq!(tun_info(&gue), "gue:6080:+c");
        assert!(service_entry(&svc, &[gue], fmt::RULE, &Numeric)
            .ends_with("-i -w 1 --tun-type gue --tun-port 6080 --tun-csum\n"));
    }
}
