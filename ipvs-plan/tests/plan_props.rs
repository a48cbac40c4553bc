//! Properties of the planner, on a model of the kernel's table that
//! applies each write as ip_vs_ctl.c does: an add of what exists fails
//! (EEXIST), an edit or delete of what is missing fails (ESRCH, ENOENT),
//! a service goes with its destinations, an edit replaces the settings
//! and keeps the connection counts, and every service is listed with
//! HASHED. For any current table and desired table, deleting unwanted
//! real servers at once or draining them: the plan applies without one of
//! those failures, the result is the desired table for the owned services
//! (plus, when draining, the unwanted real servers that still have
//! connections, at weight 0) and the current one elsewhere, a second plan
//! is empty, and a desired table with a duplicate is refused.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::SocketAddr;

use ipvs_netlink::{Destination, ForwardMethod, Op, Service, ServiceFlags, ServiceId};
use ipvs_plan::{
    plan, DestinationSpec, PlanError, Planner, Removal, ServiceSpec, VirtualServer,
    VirtualServerSpec,
};
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
            let mut s = s.clone();
            s.flags |= ServiceFlags::HASHED;
            t.insert(s.id, (s, BTreeMap::new()));
        }
        Op::EditService(s) => {
            let mut s = s.clone();
            s.flags |= ServiceFlags::HASHED;
            let id = s.id;
            t.get_mut(&id).ok_or(libc::ESRCH)?.0 = s;
        }
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
            let have = dests.get_mut(&d.socket_addr()).ok_or(libc::ENOENT)?;
            let (active, inactive) = (have.active_conns, have.inactive_conns);
            *have = d.clone();
            have.active_conns = active;
            have.inactive_conns = inactive;
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

/// The settings of a service and its real servers, as a set.
fn spec(
    s: &(Service, BTreeMap<SocketAddr, Destination>),
) -> (ServiceSpec, HashSet<DestinationSpec>) {
    (
        ServiceSpec::from(&s.0),
        s.1.values().map(DestinationSpec::from).collect(),
    )
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
    (0u8..5, 0u32..3, any::<bool>(), 0u32..3).prop_map(|(n, w, dr, conns)| {
        let mut d = Destination::new(SocketAddr::from(([10, 1, 0, n], 80))).weight(w);
        if dr {
            d = d.forward(ForwardMethod::DirectRoute);
        }
        // Connection counts only the kernel reports: the planner reads
        // them only to drain.
        d.active_conns = conns / 2;
        d.inactive_conns = conns % 2;
        d
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

fn connections(d: &Destination) -> u32 {
    d.active_conns + d.inactive_conns
}

proptest! {
    #[test]
    fn a_plan_applied_gives_the_wanted_table_and_a_second_plan_is_empty(
        current in servers().prop_map(as_listed),
        desired in servers(),
        own_all in any::<bool>(),
        drain in any::<bool>(),
    ) {
        let owned = |id: &ServiceId| own_all || owns(id);
        let removal = if drain { Removal::Drain } else { Removal::Delete };
        let planner = Planner::new().owning(owned).removal(removal);
        let desired: Vec<VirtualServerSpec> = desired.iter().map(VirtualServerSpec::from).collect();
        let p = planner.plan(&desired, &current).unwrap();
        let mut t = table(&current);
        for op in &p.ops {
            prop_assert_eq!(apply(&mut t, op), Ok(()), "{:?} of {:?}", op, p.ops);
        }
        let before = table(&current);
        let mut draining = Vec::new();
        for want in &desired {
            let id = want.service.id;
            if p.conflicts.contains(&id) {
                // Another's service holds the identity: left as it was.
                prop_assert!(!owned(&id) && before.contains_key(&id));
                prop_assert_eq!(t.get(&id), before.get(&id));
                continue;
            }
            let got = t.get(&id).map(spec);
            let mut expected = (want.service.clone(), want.dests.iter().cloned().collect::<HashSet<_>>());
            // Drained: an unwanted real server with connections stays, at
            // weight 0, its settings otherwise kept.
            for d in before.get(&id).into_iter().flat_map(|(_, ds)| ds.values()) {
                let unwanted = !want.dests.iter().any(|w| w.addr == d.socket_addr());
                if drain && unwanted && connections(d) > 0 {
                    expected.1.insert(DestinationSpec::from(d).weight(0));
                    draining.push((id, d.socket_addr()));
                }
            }
            prop_assert_eq!(got.as_ref(), Some(&expected), "{:?}", id);
        }
        let reported: HashSet<_> = p.draining.iter().copied().collect();
        prop_assert_eq!(reported.len(), p.draining.len());
        prop_assert_eq!(&reported, &draining.into_iter().collect::<HashSet<_>>());
        // Nothing outside the owned part changed; nothing owned and
        // unwanted is left.
        for (id, was) in &before {
            if !owned(id) {
                prop_assert_eq!(t.get(id), Some(was));
            } else if !desired.iter().any(|v| v.service.id == *id) {
                prop_assert!(!t.contains_key(id));
            }
        }
        let again = planner.plan(&desired, &listing(&t)).unwrap();
        prop_assert!(again.ops.is_empty(), "{:?}", again.ops);
        // Still draining, listed in the kernel's order.
        prop_assert_eq!(again.draining.iter().copied().collect::<HashSet<_>>(), reported);
    }

    /// The shorthand `plan` over the kernel's types plans as the planner
    /// over their specs.
    #[test]
    fn plan_of_the_kernels_types_is_the_planners(
        current in servers().prop_map(as_listed),
        desired in servers(),
    ) {
        let specs: Vec<VirtualServerSpec> = desired.iter().map(VirtualServerSpec::from).collect();
        prop_assert_eq!(
            plan(&desired, &current, owns),
            Planner::new().owning(owns).plan(&specs, &current)
        );
    }

    /// A spec read back from what the kernel lists for it is the spec
    /// written, and hashes alike; and it is the spec of the same writes.
    #[test]
    fn a_spec_is_what_the_kernel_lists_for_it(servers in servers()) {
        for v in &servers {
            let want = VirtualServerSpec::from(v);
            let written = VirtualServer::from(&want);
            let listed = as_listed(vec![written.clone()]).remove(0);
            let back = VirtualServerSpec::from(&listed);
            prop_assert_eq!(&back, &want);
            let state = std::hash::RandomState::new();
            prop_assert_eq!(state.hash_one(&back), state.hash_one(&want));
            // What the writes carry: the settings, no counters.
            prop_assert!(written.dests.iter().all(|d| d.stats.is_none() && d.active_conns == 0));
            prop_assert_eq!(VirtualServerSpec::from(&written), want);
        }
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
