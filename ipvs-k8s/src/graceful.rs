//! Graceful termination, as kube-proxy's IPVS mode does it: a TCP real
//! server that is no longer wanted while it still has connections is not
//! deleted but set to weight 0 (no new connection goes to it), and is
//! deleted by a later sync once the kernel counts no connection to it
//! (`ActiveConn + InActConn == 0`). UDP and SCTP real servers are deleted
//! at once, as kube-proxy deletes them (with
//! `net.ipv4.vs.expire_nodest_conn=1` their entries go on the next
//! packet). A firewall-mark service (the in-cluster traffic of an
//! `externalTrafficPolicy: Local` port, [`crate::mapping::assign_fwmarks`])
//! has no protocol: its real servers drain as TCP ones, as kube-proxy's
//! graceful termination drains every real server but UDP and SCTP ones.
//!
//! Unlike kube-proxy, which keeps a list of draining servers in memory and
//! re-checks it every minute, nothing is remembered between syncs: the
//! kernel's table is the state. An unwanted real server of a service this
//! tool owns is drained or deleted by whichever sync sees it, so a restart
//! loses nothing, and one that comes back while draining is simply edited
//! back to its wanted weight (kube-proxy deletes and re-adds it).
//!
//! Only real servers of services that stay are drained: a virtual service
//! whose Service is gone is deleted whole at once, as kube-proxy does.

use std::net::SocketAddr;

use ipvs_netlink::{Destination, Op, Protocol, ServiceId};

use ipvs_plan::{Plan, VirtualServer};

/// What to do with a real server that is no longer wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Delete it now.
    Delete,
    /// Set its weight to 0 and keep it while its connections last.
    Drain,
    /// It is at weight 0 already and still has connections: leave it.
    Wait,
}

/// The decision for `dest`, an unwanted real server of a service of
/// `protocol` (`None`: a firewall-mark service, drained as TCP), as the
/// kernel reports it now.
pub fn decide(protocol: Option<Protocol>, dest: &Destination) -> Decision {
    let connections = u64::from(dest.active_conns) + u64::from(dest.inactive_conns);
    let drains = matches!(protocol, Some(Protocol::Tcp) | None);
    if !drains || connections == 0 {
        Decision::Delete
    } else if dest.weight != 0 {
        Decision::Drain
    } else {
        Decision::Wait
    }
}

/// A real server kept at weight 0 while its connections last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draining {
    /// Its virtual service.
    pub service: ServiceId,
    /// The real server.
    pub dest: SocketAddr,
    /// Its active connections when the table was read.
    pub active: u32,
    /// Its inactive connections when the table was read.
    pub inactive: u32,
}

fn protocol_of(id: &ServiceId) -> Option<Protocol> {
    match id {
        ServiceId::Inet { protocol, .. } => Some(*protocol),
        ServiceId::Fwmark { .. } => None,
    }
}

/// Applies graceful termination to a plan made against `current`: each
/// deletion of a real server is kept, turned into an edit to weight 0, or
/// dropped, as [`decide`] says. Returns the real servers left draining
/// (to re-check soon: a later sync deletes them once idle).
pub fn apply(plan: &mut Plan, current: &[VirtualServer]) -> Vec<Draining> {
    let mut draining = Vec::new();
    // No real server removed (most syncs): no index of the table's real
    // servers (one entry per real server) is built.
    if !plan
        .ops
        .iter()
        .any(|op| matches!(op, Op::DeleteDestination(..)))
    {
        return draining;
    }
    let table = ipvs_plan::dest_index(current);
    let ops = std::mem::take(&mut plan.ops);
    for op in ops {
        let Op::DeleteDestination(id, addr) = &op else {
            plan.ops.push(op);
            continue;
        };
        let Some(dest) = table.get(&(*id, *addr)) else {
            plan.ops.push(op);
            continue;
        };
        let decision = decide(protocol_of(id), dest);
        if decision != Decision::Delete {
            draining.push(Draining {
                service: *id,
                dest: *addr,
                active: dest.active_conns,
                inactive: dest.inactive_conns,
            });
        }
        match decision {
            Decision::Delete => plan.ops.push(op),
            Decision::Drain => plan.ops.push(Op::EditDestination(*id, drained(dest))),
            Decision::Wait => {}
        }
    }
    draining
}

/// `dest` as it is, at weight 0.
fn drained(dest: &Destination) -> Destination {
    let mut d = dest.clone();
    d.weight = 0;
    d.active_conns = 0;
    d.inactive_conns = 0;
    d.persistent_conns = 0;
    d.stats = None;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::{Service, ServiceFlags};
    use ipvs_plan::plan;

    fn dest(a: &str, weight: u32, active: u32, inactive: u32) -> Destination {
        let mut d = Destination::new(a.parse().unwrap()).weight(weight);
        d.active_conns = active;
        d.inactive_conns = inactive;
        d
    }

    #[test]
    fn decisions() {
        for tcp in [Some(Protocol::Tcp), None] {
            decisions_of_tcp(tcp);
        }
        for other in [Some(Protocol::Udp), Some(Protocol::Sctp)] {
            assert_eq!(
                decide(other, &dest("10.1.0.1:80", 1, 4, 4)),
                Decision::Delete,
                "{other:?}"
            );
        }
    }

    fn decisions_of_tcp(tcp: Option<Protocol>) {
        assert_eq!(decide(tcp, &dest("10.1.0.1:80", 1, 0, 0)), Decision::Delete);
        assert_eq!(decide(tcp, &dest("10.1.0.1:80", 1, 1, 0)), Decision::Drain);
        assert_eq!(decide(tcp, &dest("10.1.0.1:80", 5, 0, 3)), Decision::Drain);
        assert_eq!(decide(tcp, &dest("10.1.0.1:80", 0, 2, 0)), Decision::Wait);
        assert_eq!(decide(tcp, &dest("10.1.0.1:80", 0, 0, 0)), Decision::Delete);
        // Counters that would overflow a u32 sum still count.
        assert_eq!(
            decide(tcp, &dest("10.1.0.1:80", 0, u32::MAX, 1)),
            Decision::Wait
        );
    }

    fn vs(id: ServiceId, dests: Vec<Destination>) -> VirtualServer {
        let mut service = Service::new(id, "rr");
        service.flags |= ServiceFlags::HASHED;
        VirtualServer { service, dests }
    }

    fn want(id: ServiceId, rs: &[&str]) -> VirtualServer {
        VirtualServer {
            service: Service::new(id, "rr"),
            dests: rs
                .iter()
                .map(|a| Destination::new(a.parse().unwrap()))
                .collect(),
        }
    }

    #[test]
    fn a_sync_drains_waits_deletes_and_restores() {
        let tcp = ServiceId::tcp("10.96.0.1:80".parse().unwrap());
        let udp = ServiceId::inet(Protocol::Udp, "10.96.0.10:53".parse().unwrap());
        let gone = ServiceId::tcp("10.96.0.9:80".parse().unwrap());
        let current = vec![
            vs(
                tcp,
                vec![
                    dest("10.1.0.1:80", 1, 0, 0), // stays
                    dest("10.1.0.2:80", 1, 2, 1), // went, busy: drain
                    dest("10.1.0.3:80", 0, 1, 0), // went earlier, still busy: wait
                    dest("10.1.0.4:80", 0, 0, 0), // went earlier, idle now: delete
                    dest("10.1.0.5:80", 1, 0, 0), // went, idle: delete
                    dest("10.1.0.6:80", 0, 3, 0), // came back while draining: restore
                ],
            ),
            vs(udp, vec![dest("10.1.0.7:53", 1, 0, 9)]), // went, UDP: delete
            vs(gone, vec![dest("10.1.0.8:80", 1, 5, 0)]), // Service deleted
        ];
        let desired = vec![want(tcp, &["10.1.0.1:80", "10.1.0.6:80"]), want(udp, &[])];
        let mut p = plan(&desired, &current, |_| true).unwrap();
        let draining = apply(&mut p, &current);
        assert_eq!(
            p.ops,
            vec![
                Op::EditDestination(tcp, dest("10.1.0.2:80", 0, 0, 0)),
                Op::DeleteDestination(tcp, "10.1.0.4:80".parse().unwrap()),
                Op::DeleteDestination(tcp, "10.1.0.5:80".parse().unwrap()),
                Op::EditDestination(tcp, Destination::new("10.1.0.6:80".parse().unwrap())),
                Op::DeleteDestination(udp, "10.1.0.7:53".parse().unwrap()),
                Op::DeleteService(gone),
            ]
        );
        assert_eq!(
            draining,
            vec![
                Draining {
                    service: tcp,
                    dest: "10.1.0.2:80".parse().unwrap(),
                    active: 2,
                    inactive: 1
                },
                Draining {
                    service: tcp,
                    dest: "10.1.0.3:80".parse().unwrap(),
                    active: 1,
                    inactive: 0
                },
            ]
        );
        // Once drained and idle, the next sync deletes it; nothing else.
        let later = vec![
            vs(
                tcp,
                vec![
                    dest("10.1.0.1:80", 1, 0, 0),
                    dest("10.1.0.2:80", 0, 0, 0),
                    dest("10.1.0.6:80", 1, 0, 0),
                ],
            ),
            vs(udp, vec![]),
        ];
        let mut p = plan(&desired, &later, |_| true).unwrap();
        assert!(apply(&mut p, &later).is_empty());
        assert_eq!(
            p.ops,
            vec![Op::DeleteDestination(tcp, "10.1.0.2:80".parse().unwrap())]
        );
    }

    #[test]
    fn the_drain_edit_keeps_the_servers_settings() {
        let mut d = dest("10.1.0.2:80", 7, 1, 0);
        d.upper_threshold = 100;
        d.forward = ipvs_netlink::ForwardMethod::Tunnel;
        let e = drained(&d);
        assert_eq!(
            (e.weight, e.upper_threshold, e.forward),
            (0, 100, d.forward)
        );
        assert_eq!(e.socket_addr(), d.socket_addr());
    }
}
