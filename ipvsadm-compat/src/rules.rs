//! The ipvsadm restore syntax of a write: the line that `ipvsadm -R`
//! (1.31, or `ipvsadm-rs -R`) applies to make it, always numeric, with the
//! thresholds that `-S` leaves out. The pieces that `-S` shares with it
//! ([`service_options`], [`dest_options`], [`persistence`], the flag and
//! switch names) live here too, so that a saved table and a planned write
//! are spelled by one hand.

use std::fmt::Write;
use std::net::IpAddr;

use ipvs_netlink::{
    AddressFamily, Destination, ForwardMethod, Netmask, Op, Protocol, Service, ServiceFlags,
    ServiceId, TunnelType,
};

/// The switch that names a service's protocol in a rule (`-t`, `-u`,
/// `--sctp-service`).
pub fn protocol_option(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
        Protocol::Sctp => "--sctp-service",
        _ => "--xxx-service",
    }
}

/// `host:port` as ipvsadm prints it without names: IPv6 in brackets.
pub fn numeric_addr_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(_) => format!("{addr}:{port}"),
        IpAddr::V6(_) => format!("[{addr}]:{port}"),
    }
}

/// How a rule names a service: `-t 10.0.0.1:80`, `-f 7 -6`, with the
/// address already rendered as `vname` (numeric or with names). Marks
/// print signed, as 1.31 does.
pub fn service_rule(id: &ServiceId, vname: &str) -> String {
    match id {
        ServiceId::Fwmark { family, mark } => match family {
            AddressFamily::Inet6 => format!("-f {} -6", *mark as i32),
            _ => format!("-f {}", *mark as i32),
        },
        ServiceId::Inet { protocol, .. } => format!("{} {vname}", protocol_option(*protocol)),
    }
}

fn svc(id: &ServiceId) -> String {
    match id {
        ServiceId::Inet { addr, port, .. } => service_rule(id, &numeric_addr_port(*addr, *port)),
        ServiceId::Fwmark { .. } => service_rule(id, ""),
    }
}

/// ipvsadm's scheduler flag names: `sh-fallback,sh-port` for sh,
/// `mh-fallback,mh-port` for mh (their third flag is not shown),
/// `flag-1,flag-2,flag-3` for any other scheduler.
pub fn sched_flags(svc: &Service) -> String {
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
    names.join(",")
}

/// Whether any scheduler flag is set.
pub fn has_sched_flags(svc: &Service) -> bool {
    svc.flags
        .intersects(ServiceFlags::SCHED1 | ServiceFlags::SCHED2 | ServiceFlags::SCHED3)
}

/// The switch of a forwarding method in a rule (`-m`, `-i`, `-g`).
pub fn forward_switch(fwd: ForwardMethod) -> &'static str {
    match fwd {
        ForwardMethod::Masquerade => "-m",
        ForwardMethod::Tunnel => "-i",
        ForwardMethod::Local | ForwardMethod::DirectRoute => "-g",
        _ => "(null)",
    }
}

/// Appends ` OPT TIMEOUT` and the persistence netmask when it is not the
/// whole address: `-p 300 -M 255.255.255.0` in a rule (`opt` `-p`),
/// `persistent 300 mask 255.255.255.0` in a listing.
pub fn persistence(out: &mut String, svc: &Service, opt: &str) {
    let _ = write!(out, " {opt} {}", svc.timeout);
    match (svc.id.family(), svc.netmask) {
        (AddressFamily::Inet, Netmask::V4(mask)) if mask.octets() != [255; 4] => {
            let m = if opt == "-p" { "-M" } else { "mask" };
            let _ = write!(out, " {m} {mask}");
        }
        (AddressFamily::Inet6, Netmask::V6(prefix)) if prefix != 128 => {
            let m = if opt == "-p" { "-M" } else { "mask" };
            let _ = write!(out, " {m} {}", prefix as i32);
        }
        _ => {}
    }
}

const TUN_FLAGS_OPTS: [&str; 3] = ["--tun-nocsum", "--tun-csum", "--tun-remcsum"];

/// The index of a destination's tunnel checksum flags in ipvsadm's name
/// tables (0 none, 1 csum, 2 remote csum).
pub fn tun_flag_index(d: &Destination) -> usize {
    usize::from(d.tunnel_flags.map(|f| f.bits()).unwrap_or(0).min(2))
}

/// What follows `-A ` (or `-E `) in a saved rule: the service named by
/// `svc_name` (from [`service_rule`]) and its options.
pub fn service_options(svc: &Service, svc_name: &str) -> String {
    let mut out = format!("{svc_name} -s {}", svc.scheduler);
    if svc.flags.contains(ServiceFlags::PERSISTENT) {
        persistence(&mut out, svc, "-p");
    }
    if let Some(pe) = &svc.persistence_engine {
        let _ = write!(out, " --pe {pe}");
    }
    if svc.flags.contains(ServiceFlags::ONE_PACKET) {
        out.push_str(" -o");
    }
    if has_sched_flags(svc) {
        let _ = write!(out, " -b {}", sched_flags(svc));
    }
    out
}

/// What follows `-r ` in a saved real-server rule: the server named
/// `dname`, its forwarding method, weight and tunnel options (`-S`
/// leaves thresholds out, as 1.31 does).
pub fn dest_options(d: &Destination, dname: &str) -> String {
    let mut out = format!(
        "{dname} {} -w {}",
        forward_switch(d.forward),
        d.weight as i32
    );
    if d.forward == ForwardMethod::Tunnel {
        let flag = TUN_FLAGS_OPTS[tun_flag_index(d)];
        match d.tunnel_type {
            Some(TunnelType::Gre) => {
                let _ = write!(out, " --tun-type gre {flag}");
            }
            Some(TunnelType::Gue) => {
                let _ = write!(
                    out,
                    " --tun-type gue --tun-port {} {flag}",
                    d.tunnel_port.unwrap_or(0)
                );
            }
            Some(TunnelType::Ipip) | None => out.push_str(" --tun-type ipip"),
            Some(_) => {}
        }
    }
    out
}

fn dest(cmd: &str, id: &ServiceId, d: &Destination) -> String {
    let dname = numeric_addr_port(d.addr, d.port);
    let mut line = format!("{cmd} {} -r {}", svc(id), dest_options(d, &dname));
    if d.upper_threshold != 0 {
        let _ = write!(line, " -x {}", d.upper_threshold);
    }
    if d.lower_threshold != 0 {
        let _ = write!(line, " -y {}", d.lower_threshold);
    }
    line
}

/// The restore line of one write.
pub fn op_line(op: &Op) -> String {
    match op {
        Op::AddService(s) => format!("-A {}", service_options(s, &svc(&s.id))),
        Op::EditService(s) => format!("-E {}", service_options(s, &svc(&s.id))),
        Op::DeleteService(id) => format!("-D {}", svc(id)),
        Op::AddDestination(id, d) => dest("-a", id, d),
        Op::EditDestination(id, d) => dest("-e", id, d),
        Op::DeleteDestination(id, a) => {
            format!("-d {} -r {}", svc(id), numeric_addr_port(a.ip(), a.port()))
        }
        Op::Flush => "-C".to_owned(),
        Op::Zero(None) => "-Z".to_owned(),
        Op::Zero(Some(id)) => format!("-Z {}", svc(id)),
        Op::SetTimeouts(t) => format!("--set {} {} {}", t.tcp, t.tcp_fin, t.udp),
        other => format!("# {other:?} has no restore line"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::{ForwardMethod, Service, ServiceId};

    #[test]
    fn lines_ipvsadm_restores() {
        let id = ServiceId::tcp("10.0.0.1:80".parse().unwrap());
        let s = Service::new(id, "rr").persistent(300);
        assert_eq!(
            op_line(&Op::AddService(s.clone())),
            "-A -t 10.0.0.1:80 -s rr -p 300"
        );
        assert_eq!(
            op_line(&Op::EditService(s)),
            "-E -t 10.0.0.1:80 -s rr -p 300"
        );
        assert_eq!(op_line(&Op::DeleteService(id)), "-D -t 10.0.0.1:80");
        let d = Destination::new("10.1.0.1:8080".parse().unwrap())
            .weight(3)
            .thresholds(100, 10);
        assert_eq!(
            op_line(&Op::AddDestination(id, d.clone())),
            "-a -t 10.0.0.1:80 -r 10.1.0.1:8080 -m -w 3 -x 100 -y 10"
        );
        assert_eq!(
            op_line(&Op::EditDestination(
                id,
                d.forward(ForwardMethod::DirectRoute)
            )),
            "-e -t 10.0.0.1:80 -r 10.1.0.1:8080 -g -w 3 -x 100 -y 10"
        );
        assert_eq!(
            op_line(&Op::DeleteDestination(
                id,
                "[2001:db8::1]:80".parse().unwrap()
            )),
            "-d -t 10.0.0.1:80 -r [2001:db8::1]:80"
        );
    }
}
