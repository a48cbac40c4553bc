//! Properties of the planner, on a table that applies each write as the
//! kernel does (ip_vs_ctl.c): an add of what exists fails (EEXIST), an
//! edit or delete of what is missing fails (ESRCH, ENOENT), a service
//! goes with its destinations. For any current table and desired table:
//! the plan applies without one of those failures, the result is the
//! desired table for the owned services and the current one elsewhere,
//! a second plan is empty, and a desired table with a duplicate is
//! refused.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use ipvs_netlink::{Destination, ForwardMethod, Op, Service, ServiceFlags, ServiceId};
use ipvs_plan::{plan, same_dest, same_service, PlanError, VirtualServer};
use proptest::prelude::*;

/// A table as the kernel holds it: services by identity, each with its
/// destinations by address.
type Table = HashMap<ServiceId, (Service, BTreeMap<SocketAddr, Destination>)>;

fn table(servers: &[VirtualServer]) -> Table {
    servers
        .iter()
        .map(|v| {
            let dests = v
                .dests
                .iter()
                .map(|d| (d.socket_addr(), d.clone()))
                .collect();
            (v.service.id, (v.service.clone(), dests))
        })
        .collect()
}

/// Applies `op` as the kernel would; the errno it would refuse with.
fn apply(t: &mut Table, op: &Op) -> Result<(), i32> {
    match op {
        Op::AddService(s) => {
            if t.contains_key(&s.id) {
                return Err(libc::EEXIST);
            }
            t.insert(s.id, (s.clone(), BTreeMap::new()));
        }
        Op::EditService(s) => t.get_mut(&s.id).ok_or(libc::ESRCH)?.0 = s.clone(),
        Op::DeleteService(id) => {
            t.remove(id).ok_or(libc::ESRCH)?;
        }
        Op::AddDestination(id, d) => {
            let dests = &mut t.get_mut(id).ok_or(libc::ESRCH)?.1;
            if dests.insert(d.socket_addr(), d.clone()).is_some() {
                return Err(libc::EEXIST);
            }
        }
        Op::EditDestination(id, d) => {
            let dests = &mut t.get_mut(id).ok_or(libc::ESRCH)?.1;
            *dests.get_mut(&d.socket_addr()).ok_or(libc::ENOENT)? = d.clone();
        }
        Op::DeleteDestination(id, addr) => {
            let dests = &mut t.get_mut(id).ok_or(libc::ESRCH)?.1;
            dests.remove(addr).ok_or(libc::ENOENT)?;
        }
        other => panic!("the planner wrote {other:?}"),
    }
    Ok(())
}

fn listing(t: &Table) -> Vec<VirtualServer> {
    t.values()
        .map(|(service, dests)| VirtualServer {
            service: service.clone(),
            dests: dests.values().cloned().collect(),
        })
        .collect()
}

/// Whether the services agree in every setting the planner writes.
fn same(a: &(Service, BTreeMap<SocketAddr, Destination>), b: &VirtualServer) -> bool {
    same_service(&a.0, &b.service)
        && a.1.len() == b.dests.len()
        && b.dests
            .iter()
            .all(|d| a.1.get(&d.socket_addr()).is_some_and(|h| same_dest(h, d)))
}

/// Services from a small pool of identities, so that tables overlap.
fn service() -> impl Strategy<Value = Service> {
    (
        0u8..6,
        prop::sample::select(vec!["rr", "wrr", "sh"]),
        any::<bool>(),
    )
        .prop_map(|(n, sched, persistent)| {
            let id = ServiceId::tcp(SocketAddr::from(([10, 0, 0, n], 80)));
            let s = Service::new(id, sched);
            if persistent {
                s.persistent(300)
            } else {
                s
            }
        })
}

fn dest() -> impl Strategy<Value = Destination> {
    (0u8..5, 0u32..3, any::<bool>()).prop_map(|(n, w, dr)| {
        let d = Destination::new(SocketAddr::from(([10, 1, 0, n], 80))).weight(w);
        if dr {
            d.forward(ForwardMethod::DirectRoute)
        } else {
            d
        }
    })
}

/// A table without duplicates: the first of each identity and address
/// kept.
fn servers() -> impl Strategy<Value = Vec<VirtualServer>> {
    prop::collection::vec((service(), prop::collection::vec(dest(), 0..5)), 0..6).prop_map(|raw| {
        let mut seen = std::collections::HashSet::new();
        raw.into_iter()
            .filter(|(s, _)| seen.insert(s.id))
            .map(|(service, dests)| {
                let mut addrs = std::collections::HashSet::new();
                let dests = dests
                    .into_iter()
                    .filter(|d| addrs.insert(d.socket_addr()))
                    .collect();
                VirtualServer { service, dests }
            })
            .collect()
    })
}

/// As the kernel lists what it was given: HASHED set.
fn as_listed(mut v: Vec<VirtualServer>) -> Vec<VirtualServer> {
    for s in &mut v {
        s.service.flags |= ServiceFlags::HASHED;
    }
    v
}

/// The caller owns the services of even last octet.
fn owns(id: &ServiceId) -> bool {
    match id {
        ServiceId::Inet { addr, .. } => addr.to_string().ends_with(['0', '2', '4']),
        ServiceId::Fwmark { .. } => false,
    }
}

proptest! {
    #[test]
    fn a_plan_applied_gives_the_wanted_table_and_a_second_plan_is_empty(
        current in servers().prop_map(as_listed),
        desired in servers(),
        own_all in any::<bool>(),
    ) {
        let owned = |id: &ServiceId| own_all || owns(id);
        let p = plan(&desired, &current, owned).unwrap();
        let mut t = table(&current);
        for op in &p.ops {
            prop_assert_eq!(apply(&mut t, op), Ok(()), "{:?} of {:?}", op, p.ops);
        }
        let before = table(&current);
        for want in &desired {
            let id = want.service.id;
            if p.conflicts.contains(&id) {
                // Another's service holds the identity: left as it was.
                prop_assert!(!owned(&id) && before.contains_key(&id));
                prop_assert_eq!(t.get(&id), before.get(&id));
            } else {
                let got = t.get(&id);
                prop_assert!(got.is_some_and(|g| same(g, want)), "{:?}: {:?}", id, got);
            }
        }
        // Nothing outside the owned part changed; nothing owned and
        // unwanted is left.
        for (id, was) in &before {
            if !owned(id) {
                prop_assert_eq!(t.get(id), Some(was));
            } else if !desired.iter().any(|v| v.service.id == *id) {
                prop_assert!(!t.contains_key(id));
            }
        }
        let again = plan(&desired, &as_listed(listing(&t)), owned).unwrap();
        prop_assert!(again.ops.is_empty(), "{:?}", again.ops);
    }

    #[test]
    fn duplicates_are_refused(
        desired in servers().prop_filter("a service", |v| !v.is_empty()),
        current in servers().prop_map(as_listed),
        pick in any::<prop::sample::Index>(),
        extra in dest(),
    ) {
        // The same service twice.
        let i = pick.index(desired.len());
        let mut twice = desired.clone();
        twice.push(desired[i].clone());
        prop_assert_eq!(
            plan(&twice, &current, |_| true),
            Err(PlanError::DuplicateService(desired[i].service.id))
        );
        // A real server twice in one service.
        let mut dup = desired.clone();
        dup[i].dests.push(extra.clone());
        dup[i].dests.push(extra.clone().weight(7));
        // The services before it have none: this is the first.
        let expected = Some(PlanError::DuplicateDestination(dup[i].service.id, extra.socket_addr()));
        prop_assert_eq!(plan(&dup, &current, |_| true).err(), expected);
    }
}
