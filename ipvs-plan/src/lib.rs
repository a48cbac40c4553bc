//! Declarative IPVS: from a desired table and the kernel's, the fewest
//! writes that make the kernel's table match, editing in place rather than
//! deleting and re-adding (which would drop connections and counters).
//!
//! Shared by `ipvsadm-rs --apply`/`--diff` and the Kubernetes sync
//! (`ipvs-k8s`), which owns only part of the table: [`plan`] takes a
//! predicate of the services the caller may touch, and a desired service
//! whose identity another tool's service holds is a conflict, left alone.
//!
//! - [`ServiceSpec`], [`DestinationSpec`], [`VirtualServerSpec`]: the
//!   desired state, without counters, with the kernel's equality;
//! - [`Planner`] (its ownership filter, [`Removal`] graceful or not),
//!   [`plan`], [`Plan`], [`PlanError`]: the planner (pure);
//! - [`VirtualServer`]: a service with its real servers as the kernel
//!   reports them;
//! - [`current_table`]: the kernel's table as the planner reads it;
//! - [`fates`]: what became of writes whose replies were lost.
//!
//! What is ipvsadm's (a write as its restore line, ipvsadm's words for
//! errors, the input bound of `ipvsadm-rs`) is in the crate
//! `ipvsadm-compat`.
//!
//! # A declarative sync
//!
//! Describe the wanted table in [`ServiceSpec`]s and [`DestinationSpec`]s
//! (or read it from JSON with the feature `serde`), read the kernel's
//! with [`current_table`], plan, and send the plan with
//! `ipvs_netlink::Handle::apply`, which returns a result per write. Run
//! again, the same wanted table plans nothing. `examples/declare.rs` does
//! it from a JSON file.
//!
//! ```no_run
//! use ipvs_netlink::{Handle, ServiceId};
//! use ipvs_plan::{
//!     current_table, DestinationSpec, Planner, Removal, ServiceSpec, VirtualServerSpec,
//! };
//!
//! let mut ipvs = Handle::new()?;
//! let vip = ServiceId::tcp("10.97.97.97:80".parse()?);
//! let web = VirtualServerSpec::new(ServiceSpec::new(vip, "rr"))
//!     .with_dest(DestinationSpec::new("10.244.1.39:80".parse()?))
//!     .with_dest(DestinationSpec::new("10.244.1.40:80".parse()?).weight(2));
//!
//! // Only this service is ours; real servers no longer wanted drain first.
//! let planner = Planner::new()
//!     .owning(|id: &ServiceId| *id == vip)
//!     .removal(Removal::Drain);
//! let plan = planner.plan(&[web], &current_table(&mut ipvs)?)?;
//! for id in &plan.conflicts {
//!     eprintln!("{id} belongs to another tool: left alone");
//! }
//! for (op, result) in plan.ops.iter().zip(ipvs.apply(&plan.ops)?) {
//!     if let Err(e) = result {
//!         eprintln!("{op:?}: {e}");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod fates;
mod spec;

pub use spec::{DestinationSpec, ServiceSpec, VirtualServerSpec};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

use ipvs_netlink::{Destination, Handle, Op, Service, ServiceId};

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
#[non_exhaustive]
pub struct Plan {
    /// The writes, in the order to send them.
    pub ops: Vec<Op>,
    /// Desired services whose identity a service the caller does not own
    /// already holds: left alone.
    pub conflicts: Vec<ServiceId>,
    /// Real servers kept at weight 0 while the kernel counts connections
    /// to them ([`Removal::Drain`]), by service and address: a later plan
    /// deletes them once it counts none.
    pub draining: Vec<(ServiceId, SocketAddr)>,
}

/// Whether two services have the same settings (the kernel's HASHED flag
/// aside): `==` on their [`ServiceSpec`]s.
#[deprecated(note = "compare `ServiceSpec::from(a) == ServiceSpec::from(b)`")]
pub fn same_service(a: &Service, b: &Service) -> bool {
    ServiceSpec::from(a) == ServiceSpec::from(b)
}

/// Whether two destinations have the same settings (tunnel fields a
/// writer left unset are the kernel's defaults): `==` on their
/// [`DestinationSpec`]s.
#[deprecated(note = "compare `DestinationSpec::from(a) == DestinationSpec::from(b)`")]
pub fn same_dest(a: &Destination, b: &Destination) -> bool {
    DestinationSpec::from(a) == DestinationSpec::from(b)
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
fn first_duplicate(desired: &[VirtualServerSpec]) -> Option<PlanError> {
    let mut ids = HashSet::new();
    for v in desired {
        let id = v.service.id;
        if !ids.insert(id) {
            return Some(PlanError::DuplicateService(id));
        }
        let mut addrs = HashSet::new();
        for d in &v.dests {
            if !addrs.insert(d.addr) {
                return Some(PlanError::DuplicateDestination(id, d.addr));
            }
        }
    }
    None
}

/// What a plan does with a real server that is no longer wanted, in a
/// service the caller owns and keeps. (A service no longer wanted is
/// deleted whole, its real servers with it, either way.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Removal {
    /// Delete it at once (`DEL_DEST`): its connections break.
    #[default]
    Delete,
    /// Graceful removal: while the kernel counts connections to it
    /// (active or inactive), set its weight to 0 so that no new one goes
    /// to it, and keep it; delete it once the kernel counts none. Such
    /// real servers are listed in [`Plan::draining`]: plan again later to
    /// remove them.
    Drain,
}

/// The planner with its options: which services the caller owns, and
/// how unwanted real servers go.
///
/// ```
/// use ipvs_netlink::{Destination, Op, Service, ServiceId};
/// use ipvs_plan::{
///     DestinationSpec, Planner, Removal, ServiceSpec, VirtualServer, VirtualServerSpec,
/// };
///
/// let id = ServiceId::tcp("10.0.0.1:80".parse()?);
/// let want = [VirtualServerSpec::new(ServiceSpec::new(id, "rr"))
///     .with_dest(DestinationSpec::new("10.1.0.1:80".parse()?))];
/// // The kernel also has 10.1.0.2, with a connection still open.
/// let mut old = Destination::new("10.1.0.2:80".parse()?);
/// old.active_conns = 1;
/// let have = [VirtualServer {
///     service: Service::new(id, "rr"),
///     dests: vec![Destination::new("10.1.0.1:80".parse()?), old.clone()],
/// }];
/// let p = Planner::new()
///     .owning(|id: &ServiceId| id.to_string().starts_with("TCP 10.0.0."))
///     .removal(Removal::Drain)
///     .plan(&want, &have)?;
/// // Kept at weight 0 while its connection lasts, its settings otherwise kept.
/// let drained = DestinationSpec::from(&old).weight(0);
/// assert_eq!(p.ops, [Op::EditDestination(id, Destination::from(drained))]);
/// assert_eq!(p.draining, [(id, old.socket_addr())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Planner<F = fn(&ServiceId) -> bool> {
    owns: F,
    removal: Removal,
}

impl Planner {
    /// A planner that owns every service and deletes unwanted real
    /// servers at once.
    pub fn new() -> Self {
        Planner {
            owns: |_| true,
            removal: Removal::Delete,
        }
    }
}

impl Default for Planner {
    fn default() -> Self {
        Planner::new()
    }
}

impl<F: Fn(&ServiceId) -> bool> Planner<F> {
    /// Owns only the services `owns` accepts. Services outside it are
    /// never changed or removed; a desired service whose identity one of
    /// them holds is a conflict ([`Plan::conflicts`]), left alone.
    pub fn owning<G: Fn(&ServiceId) -> bool>(self, owns: G) -> Planner<G> {
        Planner {
            owns,
            removal: self.removal,
        }
    }

    /// How unwanted real servers go (at once by default).
    pub fn removal(mut self, removal: Removal) -> Self {
        self.removal = removal;
        self
    }

    /// Plans the writes that turn `current` (the kernel's table, as
    /// [`current_table`] reads it) into `desired` for the services the
    /// planner owns: the fewest, each service and real server that
    /// differs edited in place. A desired table that names a service, or
    /// a real server of a service, twice is refused ([`PlanError`]).
    pub fn plan(
        &self,
        desired: &[VirtualServerSpec],
        current: &[VirtualServer],
    ) -> Result<Plan, PlanError> {
        if let Some(e) = first_duplicate(desired) {
            return Err(e);
        }
        let owns = &self.owns;
        let now: HashMap<ServiceId, &VirtualServer> =
            current.iter().map(|v| (v.service.id, v)).collect();
        let wanted: HashSet<ServiceId> = desired.iter().map(|v| v.service.id).collect();
        let mut out = Plan::default();
        for want in desired {
            let id = want.service.id;
            match now.get(&id) {
                None => {
                    out.ops.push(Op::AddService(Service::from(&want.service)));
                    for d in &want.dests {
                        out.ops.push(Op::AddDestination(id, Destination::from(d)));
                    }
                }
                Some(_) if !owns(&id) => out.conflicts.push(id),
                Some(have) => self.edit(want, have, &mut out),
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

    /// The writes that turn `have`, a service the caller owns, into
    /// `want`.
    fn edit(&self, want: &VirtualServerSpec, have: &VirtualServer, out: &mut Plan) {
        let id = want.service.id;
        if want.service != ServiceSpec::from(&have.service) {
            out.ops.push(Op::EditService(Service::from(&want.service)));
        }
        let have_dests: HashMap<SocketAddr, &Destination> =
            have.dests.iter().map(|d| (d.socket_addr(), d)).collect();
        let want_addrs: HashSet<SocketAddr> = want.dests.iter().map(|d| d.addr).collect();
        for d in &have.dests {
            let addr = d.socket_addr();
            if want_addrs.contains(&addr) {
                continue;
            }
            let connections = u64::from(d.active_conns) + u64::from(d.inactive_conns);
            match self.removal {
                Removal::Drain if connections > 0 => {
                    out.draining.push((id, addr));
                    if d.weight != 0 {
                        let drained = DestinationSpec::from(d).weight(0);
                        out.ops
                            .push(Op::EditDestination(id, Destination::from(drained)));
                    }
                }
                Removal::Delete | Removal::Drain => {
                    out.ops.push(Op::DeleteDestination(id, addr));
                }
            }
        }
        for d in &want.dests {
            match have_dests.get(&d.addr) {
                None => out.ops.push(Op::AddDestination(id, Destination::from(d))),
                Some(h) if *d != DestinationSpec::from(*h) => {
                    out.ops.push(Op::EditDestination(id, Destination::from(d)))
                }
                Some(_) => {}
            }
        }
    }
}

/// Plans the writes that turn `current` into `desired` for the services
/// `owns` accepts, unwanted real servers deleted at once: [`Planner`]
/// with a desired table of the kernel's types (their counters are not
/// read). Services outside `owns` are never changed or removed; a
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
    let desired: Vec<VirtualServerSpec> = desired.iter().map(VirtualServerSpec::from).collect();
    Planner::new().owning(owns).plan(&desired, current)
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
    use ipvs_netlink::{ForwardMethod, ServiceFlags, TunnelFlags, TunnelType};

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
