//! A planned write as a restore line that `ipvsadm -R` applies (numeric,
//! with the thresholds that `-S` leaves out).

use std::fmt::Write;

use ipvs_netlink::{Destination, Op, Protocol};

use super::list::{dest_options, service_name, service_options};
use super::{addr_port, fmt};
use crate::names::Numeric;

fn svc(id: &ipvs_netlink::ServiceId) -> String {
    service_name(id, fmt::RULE, &Numeric)
}

fn dest(cmd: &str, id: &ipvs_netlink::ServiceId, d: &Destination) -> String {
    let dname = addr_port(d.addr, d.port, Protocol::Other(0), &Numeric);
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
        Op::DeleteDestination(id, a) => format!(
            "-d {} -r {}",
            svc(id),
            addr_port(a.ip(), a.port(), Protocol::Other(0), &Numeric)
        ),
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
