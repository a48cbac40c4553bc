//! Declarative IPVS: from a desired table and the kernel's, the fewest
//! writes that make the kernel's table match, editing in place rather than
//! deleting and re-adding (which would drop connections and counters).
//!
//! Shared by `ipvsadm-rs --apply`/`--diff` and the Kubernetes sync
//! (`ipvs-k8s`), which owns only part of the table: [`plan`] takes a
//! predicate of the services the caller may touch, and a desired service
//! whose identity another tool's service holds is a conflict, left alone.
//!
//! - [`plan`], [`VirtualServer`], [`Plan`], [`PlanError`]: the planner
//!   (pure);
//! - [`current_table`]: the kernel's table as the planner reads it;
//! - [`rules`]: a write as the ipvsadm restore line that makes it;
//! - [`messages`]: ipvsadm's words for the kernel's errors;
//! - [`fates`]: what became of writes whose replies were lost;
//! - [`input`]: bounded reading of rules files and dumps.

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod fates;
pub mod input;
pub mod messages;
pub mod rules;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

use ipvs_netlink::{
    Destination, Handle, Op, Service, ServiceFlags, ServiceId, TunnelFlags, TunnelType,
};

/// A virtual service with its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// The service.
    pub service: Service,
    /// Its real servers.
    pub dests: Vec<Destination>,
}

/// What the planner decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The writes, in the order to send them.
    pub ops: Vec<Op>,
    /// Desired services whose identity a service the caller does not own
    /// already holds: left alone.
    pub conflicts: Vec<ServiceId>,
}

/// Whether two services have the same settings (the kernel's HASHED flag
/// aside).
pub fn same_service(a: &Service, b: &Service) -> bool {
    let flags = |s: &Service| s.flags - ServiceFlags::HASHED;
    a.scheduler == b.scheduler
        && flags(a) == flags(b)
        && a.timeout == b.timeout
        && a.netmask == b.netmask
        && a.persistence_engine == b.persistence_engine
}

/// Whether two destinations have the same settings. Tunnel fields a
/// writer left unset are the kernel's defaults.
pub fn same_dest(a: &Destination, b: &Destination) -> bool {
    let tunnel = |d: &Destination| {
        (
            d.tunnel_type.unwrap_or(TunnelType::Ipip),
            d.tunnel_port.unwrap_or(0),
            d.tunnel_flags.unwrap_or(TunnelFlags::empty()),
        )
    };
    a.forward == b.forward
        && a.weight == b.weight
        && a.upper_threshold == b.upper_threshold
        && a.lower_threshold == b.lower_threshold
        && tunnel(a) == tunnel(b)
}

/// Why [`plan`] refused a desired table: it names a service, or a real
/// server of one service, twice. Planned, the second would be a second
/// add that the kernel refuses (EEXIST) after the first went through.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// Two desired services have this identity.
    DuplicateService(ServiceId),
    /// The desired service lists the real server at this address twice.
    DuplicateDestination(ServiceId, SocketAddr),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::DuplicateService(id) => {
                write!(f, "the desired table has service {id} twice")
            }
            PlanError::DuplicateDestination(id, addr) => {
                write!(f, "the desired service {id} has real server {addr} twice")
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// The first service, or real server of a service, `desired` has twice.
fn first_duplicate(desired: &[VirtualServer]) -> Option<PlanError> {
    let mut ids = HashSet::new();
    for v in desired {
        let id = v.service.id;
        if !ids.insert(id) {
            return Some(PlanError::DuplicateService(id));
        }
        let mut addrs = HashSet::new();
        for d in &v.dests {
            if !addrs.insert(d.socket_addr()) {
                return Some(PlanError::DuplicateDestination(id, d.socket_addr()));
            }
        }
    }
    None
}

/// Plans the writes that turn `current` into `desired` for the services
/// `owns` accepts. Services outside it are never changed or removed; a
/// desired one that collides with one of them is a conflict. A desired
/// table that names a service, or a real server of a service, twice is
/// refused ([`PlanError`]); `current` is the kernel's, which cannot.
///
/// ```
/// use ipvs_netlink::{Destination, Op, Service, ServiceId};
/// use ipvs_plan::{plan, PlanError, VirtualServer};
///
/// let id = ServiceId::tcp("10.0.0.1:80".parse()?);
/// let web = VirtualServer {
///     service: Service::new(id, "rr"),
///     dests: vec![Destination::new("10.1.0.1:80".parse()?)],
/// };
/// let p = plan(std::slice::from_ref(&web), &[], |_| true)?;
/// assert!(matches!(&p.ops[..], [Op::AddService(_), Op::AddDestination(..)]));
/// assert_eq!(
///     plan(&[web.clone(), web], &[], |_| true),
///     Err(PlanError::DuplicateService(id))
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn plan(
    desired: &[VirtualServer],
    current: &[VirtualServer],
    owns: impl Fn(&ServiceId) -> bool,
) -> Result<Plan, PlanError> {
    if let Some(e) = first_duplicate(desired) {
        return Err(e);
    }
    let now: HashMap<ServiceId, &VirtualServer> =
        current.iter().map(|v| (v.service.id, v)).collect();
    let wanted: HashSet<ServiceId> = desired.iter().map(|v| v.service.id).collect();
    let mut out = Plan::default();
    for want in desired {
        let id = want.service.id;
        match now.get(&id) {
            None => {
                out.ops.push(Op::AddService(want.service.clone()));
                for d in &want.dests {
                    out.ops.push(Op::AddDestination(id, d.clone()));
                }
            }
            Some(_) if !owns(&id) => out.conflicts.push(id),
            Some(have) => {
                if !same_service(&want.service, &have.service) {
                    out.ops.push(Op::EditService(want.service.clone()));
                }
                let have_dests: HashMap<SocketAddr, &Destination> =
                    have.dests.iter().map(|d| (d.socket_addr(), d)).collect();
                let want_addrs: HashSet<SocketAddr> =
                    want.dests.iter().map(|d| d.socket_addr()).collect();
                for d in &have.dests {
                    if !want_addrs.contains(&d.socket_addr()) {
                        out.ops.push(Op::DeleteDestination(id, d.socket_addr()));
                    }
                }
                for d in &want.dests {
                    match have_dests.get(&d.socket_addr()) {
                        None => out.ops.push(Op::AddDestination(id, d.clone())),
                        Some(h) if !same_dest(d, h) => {
                            out.ops.push(Op::EditDestination(id, d.clone()))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    for have in current {
        let id = have.service.id;
        if !wanted.contains(&id) && owns(&id) {
            out.ops.push(Op::DeleteService(id));
        }
    }
    Ok(out)
}

/// The real servers of `table`, by their service and address.
pub fn dest_index(table: &[VirtualServer]) -> HashMap<(ServiceId, SocketAddr), &Destination> {
    table
        .iter()
        .flat_map(|v| {
            v.dests
                .iter()
                .map(move |d| ((v.service.id, d.socket_addr()), d))
        })
        .collect()
}

/// The kernel's table, as the planner reads it: every virtual service
/// with its real servers, in the kernel's order.
pub fn current_table(handle: &mut Handle) -> Result<Vec<VirtualServer>, ipvs_netlink::Error> {
    let mut out = Vec::new();
    for service in handle.services()? {
        let dests = handle.destinations(&service.id)?;
        out.push(VirtualServer { service, dests });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::ForwardMethod;

    fn vs(vip: &str, sched: &str, rs: &[(&str, u32)]) -> VirtualServer {
        let service = Service::new(ServiceId::tcp(vip.parse().unwrap()), sched);
        let dests = rs
            .iter()
            .map(|(a, w)| Destination::new(a.parse().unwrap()).weight(*w))
            .collect();
        VirtualServer { service, dests }
    }

    /// As the kernel lists it: HASHED set, tunnel fields reported.
    fn listed(mut v: VirtualServer) -> VirtualServer {
        v.service.flags |= ServiceFlags::HASHED;
        for d in &mut v.dests {
            d.tunnel_type = Some(TunnelType::Ipip);
            d.tunnel_port = Some(0);
            d.tunnel_flags = Some(TunnelFlags::empty());
        }
        v
    }

    #[test]
    fn equal_tables_need_nothing() {
        let t = vec![vs(
            "10.0.0.1:80",
            "rr",
            &[("10.1.0.1:80", 1), ("10.1.0.2:80", 1)],
        )];
        let now: Vec<_> = t.iter().cloned().map(listed).collect();
        assert_eq!(plan(&t, &now, |_| true).unwrap(), Plan::default());
    }

    #[test]
    fn edits_in_place_and_adds_and_removes_only_the_difference() {
        let now = vec![listed(vs(
            "10.0.0.1:80",
            "rr",
            &[("10.1.0.1:80", 1), ("10.1.0.2:80", 1)],
        ))];
        let want = vec![vs(
            "10.0.0.1:80",
            "wrr",
            &[("10.1.0.2:80", 5), ("10.1.0.3:80", 1)],
        )];
        let id = want[0].service.id;
        let p = plan(&want, &now, |_| true).unwrap();
        assert_eq!(
            p.ops,
            vec![
                Op::EditService(want[0].service.clone()),
                Op::DeleteDestination(id, "10.1.0.1:80".parse().unwrap()),
                Op::EditDestination(id, want[0].dests[0].clone()),
                Op::AddDestination(id, want[0].dests[1].clone()),
            ]
        );
    }

    #[test]
    fn new_services_come_with_their_servers_and_old_ones_go() {
        let now = vec![listed(vs("10.0.0.9:80", "rr", &[("10.1.0.1:80", 1)]))];
        let want = vec![vs("10.0.0.1:80", "rr", &[("10.1.0.1:80", 1)])];
        let p = plan(&want, &now, |_| true).unwrap();
        assert_eq!(
            p.ops,
            vec![
                Op::AddService(want[0].service.clone()),
                Op::AddDestination(want[0].service.id, want[0].dests[0].clone()),
                Op::DeleteService(now[0].service.id),
            ]
        );
    }

    #[test]
    fn foreign_services_are_never_touched_and_collisions_are_conflicts() {
        let foreign = listed(vs("10.0.0.9:80", "rr", &[("10.1.0.1:80", 1)]));
        let collide = listed(vs("10.0.0.1:80", "wlc", &[]));
        let now = vec![foreign.clone(), collide.clone()];
        let want = vec![vs("10.0.0.1:80", "rr", &[("10.1.0.1:80", 1)])];
        let p = plan(&want, &now, |_| false).unwrap();
        assert!(p.ops.is_empty());
        assert_eq!(p.conflicts, vec![collide.service.id]);
    }

    #[test]
    fn a_change_of_forwarding_or_thresholds_is_an_edit() {
        let now = vec![listed(vs("10.0.0.1:80", "rr", &[("10.1.0.1:80", 1)]))];
        let mut want = vs("10.0.0.1:80", "rr", &[("10.1.0.1:80", 1)]);
        want.dests[0] = want.dests[0].clone().forward(ForwardMethod::DirectRoute);
        let p = plan(std::slice::from_ref(&want), &now, |_| true).unwrap();
        assert_eq!(p.ops.len(), 1);
        want.dests[0] = Destination::new("10.1.0.1:80".parse().unwrap()).thresholds(10, 2);
        let p = plan(&[want], &now, |_| true).unwrap();
        assert!(matches!(p.ops[..], [Op::EditDestination(..)]));
    }
}
